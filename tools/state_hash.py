"""SHA-256 of ScatterAccumulator.get_state() over a fixed set of in-memory inputs, and of
rank()'s result (order, centroids, eigenvalues).

Run before and after a change to the engine or the Python layer: the digests must match
(float32/float64 input, unweighted/weighted/tiny-weighted, 1, 2 and 3 threads, one call
and several calls). The `rank` lines hash rankings for shrinkage None, "oas" and 0.3 with
1, 2 and 3 threads, for d > C and C > d; within a line the three thread counts must give
one digest (the line ends in "same" or "DIFFER").

    python tools/state_hash.py            # statistics, then rankings
    python tools/state_hash.py --state    # statistics only (the lines of earlier versions)
"""

from __future__ import annotations

import hashlib
import sys

import numpy as np

import labelranker_fast as lrf


def digest(acc) -> str:
    h = hashlib.sha256()
    state = acc.get_state()
    for key in sorted(state):
        h.update(key.encode())
        h.update(np.ascontiguousarray(state[key]).tobytes())
    return h.hexdigest()[:16]


def ranking_digest(ranking) -> str:
    h = hashlib.sha256()
    for name in ("order", "centroids", "eigenvalues"):
        h.update(name.encode())
        h.update(np.ascontiguousarray(getattr(ranking, name)).tobytes())
    return h.hexdigest()[:16]


def rankings() -> None:
    for d, c in ((300, 40), (40, 300), (67, 13)):
        rng = np.random.default_rng(d * 1000 + c)
        n = max(4 * d, 20 * c)
        y = rng.integers(0, c, n)
        y[:c] = np.arange(c)
        X = rng.standard_normal((n, d)) * 2.0 + rng.standard_normal((c, d))[y] + 10.0
        for dtype in (np.float32, np.float64):
            accs = [
                lrf.ScatterAccumulator(d, c, n_threads=t).update(X.astype(dtype), y)
                for t in (1, 2, 3)
            ]
            for shrinkage in (None, "oas", 0.3):
                for k in (1, 3):
                    digests = [
                        ranking_digest(a.rank(shrinkage=shrinkage, n_components=k)) for a in accs
                    ]
                    verdict = "same" if len(set(digests)) == 1 else "DIFFER"
                    print(
                        f"rank d={d:3d} C={c:3d} {np.dtype(dtype).name:8s} "
                        f"shrinkage={str(shrinkage):4s} k={k} threads 1-3: "
                        f"{' '.join(digests)} {verdict}"
                    )


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
                    parts.update(
                        Xd[a : a + 7000],
                        y[a : a + 7000],
                        None if weights is None else weights[a : a + 7000],
                    )
                print(
                    f"{np.dtype(dtype).name:8s} w={wname:8s} threads={threads} "
                    f"one={digest(one)} chunks={digest(parts)}"
                )


if __name__ == "__main__":
    main()
    if "--state" not in sys.argv[1:]:
        rankings()
