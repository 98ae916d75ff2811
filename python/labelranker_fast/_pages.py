"""Page-cache hints for memory-mapped arrays (madvise), so a pass over a mapped file
reads ahead of the computation and does not keep the file resident in this process.

Reading a mapped file maps its pages into the process: they count in its resident size
(what ``top`` shows) until unmapped. ``release`` drops the pages of a chunk that has been
processed from this process's page tables (the kernel's page cache keeps them, so a
second pass is still fast); ``prefetch`` starts reading a chunk's pages from disk in the
background without mapping them. Both are no-ops where madvise is unavailable.
"""

from __future__ import annotations

import ctypes
import mmap
import sys

import numpy as np

__all__ = ["prefetch", "release", "releasable"]

_PAGE = mmap.PAGESIZE
_byte_bounds = getattr(np.lib, "array_utils", np).byte_bounds  # numpy 2 / 1
_WILLNEED = getattr(mmap, "MADV_WILLNEED", None)
_DONTNEED = getattr(mmap, "MADV_DONTNEED", None)


def _load_madvise():
    if not sys.platform.startswith(("linux", "darwin")) or _DONTNEED is None:
        return None
    try:
        fn = ctypes.CDLL(None, use_errno=True).madvise
    except (OSError, AttributeError):  # pragma: no cover - no libc symbol
        return None
    fn.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
    fn.restype = ctypes.c_int
    return fn


_madvise = _load_madvise()


def releasable(arr) -> bool:
    """True if dropping ``arr``'s pages cannot lose data: a shared file mapping.

    A copy-on-write mapping (``np.memmap`` mode "c") may hold the caller's private
    changes, which dropping its pages would discard; arrays not known to be mapped are
    left alone too.
    """
    return _madvise is not None and isinstance(arr, np.memmap) and arr.mode in ("r", "r+", "w+")


def _advise(arr: np.ndarray, advice) -> None:
    if _madvise is None or advice is None or arr.size == 0:
        return
    lo, hi = _byte_bounds(arr)
    start = lo - lo % _PAGE  # mappings start on a page boundary, so this stays inside
    _madvise(start, hi - start, advice)  # a failed hint changes nothing: ignore it


def prefetch(arr: np.ndarray) -> None:
    """Asks the kernel to start reading ``arr``'s pages (asynchronous)."""
    _advise(arr, _WILLNEED)


def release(arr: np.ndarray) -> None:
    """Unmaps ``arr``'s pages from this process; only for ``releasable`` arrays."""
    _advise(arr, _DONTNEED)
