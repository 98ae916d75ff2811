"""Accumulation against the number of classes: ScatterAccumulator.update on N x d float32
features of C classes, against numpy's X.T @ X (the floor), and the process's peak
resident memory growth during the pass beside the statistics it must hold.

    python bench/class_sweep.py [--n 200000] [--d 768] [--classes 100,1000,10000,20000,100000]
                                [--repeat 3] [--out bench/results]

Each C runs in a fresh process: the features are generated, then VmHWM is reset to the
current resident size (/proc/self/clear_refs) and one update measures the peak growth
(a new accumulator: its state and the pass's buffers); then --repeat rounds interleave
the update, X.T @ X and a first write of new memory of the statistics' size (np.full) for
the times (minimum per side). The statistics are
2 C d + d^2 + C doubles; the issue's target is a growth of at most that plus 160 MiB, and
a throughput of at least 0.85x X.T @ X at C = 20,000 and 100,000. Writes
class_sweep.json to --out and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

MIB = 1 << 20
CLASSES = (100, 1000, 10_000, 20_000, 100_000)


def child(n: int, d: int, C: int, repeat: int) -> dict:
    """One C, in this process: peak growth of one update, then interleaved times."""
    import gc

    import numpy as np

    import labelranker_fast as lrf

    sys.path.insert(0, os.path.dirname(__file__))
    import baselines as B

    X, y = B.make_features(n, d, C)
    gc.collect()
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # VmHWM := VmRSS
    before = B.status_kib("VmRSS")
    acc = lrf.ScatterAccumulator(d, C).update(X, y)
    peak = B.status_kib("VmHWM")
    assert acc.n_samples == n
    del acc
    stats = (2 * C * d + d * d + C) * 8
    times = {"ours": np.inf, "numpy X.T @ X": np.inf, "fresh statistics": np.inf}
    for _ in range(repeat):
        B.settle()  # each timed call after the BLAS threads of the one before sleep
        t = time.perf_counter()
        lrf.ScatterAccumulator(d, C).update(X, y)
        times["ours"] = min(times["ours"], time.perf_counter() - t)
        B.settle()
        t = time.perf_counter()
        B.numpy_gram(X)
        times["numpy X.T @ X"] = min(times["numpy X.T @ X"], time.perf_counter() - t)
        # Writing new memory of the statistics' size once (page faults and the kernel's
        # zeroing included): a cost any new accumulator of C classes pays on top of X.T @ X.
        B.settle()
        t = time.perf_counter()
        np.full(stats // 8, 1.0)
        times["fresh statistics"] = min(times["fresh statistics"], time.perf_counter() - t)
    return {
        "C": C,
        "times": times,
        "ratio": times["numpy X.T @ X"] / times["ours"],
        "peak_growth_mib": (peak - before) / 1024,
        "statistics_mib": stats / MIB,
        "beyond_statistics_mib": (peak - before) / 1024 - stats / MIB,
    }


def run(classes, n: int, d: int, repeat: int) -> list[dict]:
    """Every C in its own process; returns their rows."""
    rows = []
    for C in classes:
        out = subprocess.run(
            [
                sys.executable,
                __file__,
                "--child",
                str(C),
                "--n",
                str(n),
                "--d",
                str(d),
                "--repeat",
                str(repeat),
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        row = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"  C={C}: {row}", file=sys.stderr)
        rows.append(row)
    return rows


def table(rows, n: int, d: int) -> str:
    lines = [
        f"N = {n:,}, d = {d}, float32; time against numpy X.T @ X in the same process:",
        "",
        "| C | ours | numpy X.T @ X | throughput (X.T @ X = 1) | writing the statistics' size "
        "fresh | statistics | peak growth | beyond the statistics |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        t = r["times"]
        lines.append(
            f"| {r['C']:,} | {t['ours']:.3f} s | {t['numpy X.T @ X']:.3f} s | {r['ratio']:.2f}x "
            f"| {t['fresh statistics']:.3f} s | {r['statistics_mib']:.0f} MiB "
            f"| {r['peak_growth_mib']:.0f} MiB "
            f"| {r['beyond_statistics_mib']:+.0f} MiB |"
        )
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200_000)
    parser.add_argument("--d", type=int, default=768)
    parser.add_argument("--classes", default=",".join(map(str, CLASSES)))
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results"))
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child is not None:
        print(json.dumps(child(args.n, args.d, args.child, args.repeat)))
        return
    classes = [int(c) for c in args.classes.split(",")]
    rows = run(classes, args.n, args.d, args.repeat)
    print(table(rows, args.n, args.d))
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "class_sweep.json"), "w") as f:
        json.dump({"n": args.n, "d": args.d, "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()
