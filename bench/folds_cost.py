"""The cost of stability: rank_labels(..., folds=5) against a plain rank_labels pass on the
same array, timed interleaved in one run (minimum over --repeat rounds).

    python bench/folds_cost.py [--n 100000] [--d 768] [--classes 100] [--repeat 3]

Prints the times and their ratio, and writes bench/results/folds_cost.json. The issue's
target is a ratio of at most 1.3.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np

import labelranker_fast as lrf


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--d", type=int, default=768)
    parser.add_argument("--classes", type=int, default=100)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results"))
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    y = rng.integers(0, args.classes, args.n)
    X = (rng.normal(size=(args.classes, args.d))[y] + rng.normal(size=(args.n, args.d))).astype(
        np.float32
    )
    cases = {
        "plain": lambda: lrf.rank_labels(X, y, shrinkage="oas"),
        f"folds={args.folds}": lambda: lrf.rank_labels(X, y, shrinkage="oas", folds=args.folds),
    }
    best = dict.fromkeys(cases, float("inf"))
    orders = {}
    for _ in range(args.repeat):
        for name, fn in cases.items():
            start = time.perf_counter()
            orders[name] = fn().order
            best[name] = min(best[name], time.perf_counter() - start)
    plain, folded = best.values()
    assert np.array_equal(*orders.values()), "folds changed the order"
    result = {
        "n": args.n,
        "d": args.d,
        "classes": args.classes,
        "folds": args.folds,
        "seconds": best,
        "ratio": folded / plain,
    }
    for name, t in best.items():
        print(f"{name:>10}: {t:.3f} s")
    print(f"ratio folds/plain: {folded / plain:.2f}")
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "folds_cost.json"), "w") as f:
        json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
