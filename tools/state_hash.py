"""SHA-256 of ScatterAccumulator.get_state() over a fixed set of in-memory inputs.

Run before and after a change to the engine or the Python layer: the digests must match
(float32/float64 input, unweighted/weighted/tiny-weighted, 1, 2 and 3 threads, one call
and several calls).

    python tools/state_hash.py
"""

from __future__ import annotations

import hashlib

import numpy as np

import labelranker_fast as lrf


def digest(acc) -> str:
    h = hashlib.sha256()
    state = acc.get_state()
    for key in sorted(state):
        h.update(key.encode())
        h.update(np.ascontiguousarray(state[key]).tobytes())
    return h.hexdigest()[:16]


def main() -> None:
    rng = np.random.default_rng(2024)
    n, d, c = 20011, 67, 13
    y = rng.integers(0, c, n)
    X = rng.standard_normal((n, d)) * 3.0 + rng.standard_normal((c, d))[y] * 5.0 + 100.0
    w = rng.uniform(0.1, 3.0, n)
    for dtype in (np.float32, np.float64):
        Xd = X.astype(dtype)
        for wname, weights in (("none", None), ("uniform", w), ("1e-100", w * 1e-100)):
            for threads in (1, 2, 3):
                one = lrf.ScatterAccumulator(d, c, n_threads=threads).update(Xd, y, weights)
                parts = lrf.ScatterAccumulator(d, c, n_threads=threads)
                for a in range(0, n, 7000):
                    parts.update(Xd[a:a + 7000], y[a:a + 7000],
                                 None if weights is None else weights[a:a + 7000])
                print(f"{np.dtype(dtype).name:8s} w={wname:8s} threads={threads} "
                      f"one={digest(one)} chunks={digest(parts)}")


if __name__ == "__main__":
    main()
