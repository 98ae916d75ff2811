"""The cost of multi-label and soft labels: ScatterAccumulator.update with a label-weight
matrix against the same rows with one label each, timed interleaved in one run (minimum
over --repeat rounds).

    python bench/multilabel_cost.py [--n 100000] [--d 768] [--classes 80] [--repeat 3]

Cases: multi-hot rows with 1 to 3 labels (2.9 on average, as COCO's 80 classes), dense
soft labels (every entry non-zero), and the single-label pass. Prints the times and the
ratios, and writes bench/results/multilabel_cost.json. The issue's target: at most 1.5x
for the multi-hot rows.
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
    parser.add_argument("--classes", type=int, default=80)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results"))
    args = parser.parse_args()
    n, d, C = args.n, args.d, args.classes
    rng = np.random.default_rng(0)
    y = rng.integers(0, C, n)
    labels = rng.choice([1, 3], size=n, p=[0.05, 0.95])  # 2.9 labels per row on average
    multi = np.zeros((n, C))
    multi[np.arange(n), y] = 1.0
    for extra in range(2):
        rows = labels > 1
        multi[np.flatnonzero(rows), (y[rows] + 1 + extra) % C] = 1.0
    soft = rng.dirichlet(np.ones(C), n)
    X = (rng.normal(size=(C, d))[y] + rng.normal(size=(n, d))).astype(np.float32)

    def run(target):
        return lambda: lrf.ScatterAccumulator(d, C).update(X, target)

    cases = {"single label": run(y), "multi-hot (2.9 labels)": run(multi), "soft": run(soft)}
    best = dict.fromkeys(cases, float("inf"))
    for _ in range(args.repeat):
        for name, fn in cases.items():
            start = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - start)
    base = best["single label"]
    ratios = {name: t / base for name, t in best.items()}
    for name, t in best.items():
        print(f"{name:>24}: {t:.3f} s  ({ratios[name]:.2f}x)")
    result = {"n": n, "d": d, "classes": C, "seconds": best, "ratio": ratios}
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "multilabel_cost.json"), "w") as f:
        json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
