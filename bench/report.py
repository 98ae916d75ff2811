"""Benchmark report: the size sweep and, unless --quick, the headline comparisons, timed
with the same functions as the pytest benchmarks (bench/baselines.py).

    python bench/report.py [--quick] [--out bench/results] [--repeat 3]

- sweep: rank_labels and numpy's X.T @ X (the floor) for N in SWEEP_N at several d, and
  d in SWEEP_D at fixed N (C = 100, float32), with a linear fit of time against N;
- accumulation: ScatterAccumulator.update against X.T @ X, float32 and float64;
- end to end: rank_labels against X.T @ X, scikit-learn LDA (eigen and svd solvers) +
  centroid ranking, and plain torch, on 200,000 x 768; orders checked to agree;
- solver: ScatterAccumulator._solve against scipy.linalg.eigh(Sb, Sw), full and top pair,
  for d in {768, 2048, 4096}, C in {100, 1000}; eigenpairs checked to agree.
- classes: accumulation at C in {100, 1000, 10,000, 20,000, 100,000} on 200,000 x 768,
  against X.T @ X, with the peak resident memory growth of the pass (bench/class_sweep.py,
  one process per C).

Each time is the minimum over --repeat rounds that interleave ours and the baselines (the
slow baselines run once). Writes results.json (raw times), report.md (printed too) and
sweep.png to --out. --quick (the sweep at smaller sizes only) takes about a minute; the
full report several minutes. Exits with status 1 if an agreement check failed.
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import importlib.util
import json
import os
import platform
import sys
import time

import numpy as np

import baselines as B
import class_sweep

OURS, GRAM = "ours", "numpy X.T @ X"


def machine_info():
    cpu = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    versions = {}
    for mod in ("labelranker_fast", "numpy", "scipy", "sklearn", "torch"):
        try:
            versions[mod] = importlib.import_module(mod).__version__
        except ImportError:
            versions[mod] = "not installed"
    return {
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "versions": versions,
    }


def check(fn, *args):
    """Runs an agreement check; returns "yes" or the assertion's message."""
    try:
        fn(*args)
        return "yes"
    except AssertionError as e:
        return f"NO: {e}".splitlines()[0]


# ------------------------------------------------------------ sections
def sweep(ns, ds_for_n, ds, n_for_d, repeat):
    """Times at the (N, d) points of both sweeps, each point once."""
    points = sorted({(n, d) for n in ns for d in ds_for_n} | {(n_for_d, d) for d in ds})
    max_n, max_d = max(n for n, _ in points), max(d for _, d in points)
    # One untimed call of each first: thread pools, BLAS buffers and imports start here.
    X, y = B.sweep_data(*points[0], max_n, max_d)
    B.ours_rank(X, y), B.numpy_gram(X)
    rows = []
    for n, d in points:
        X, y = B.sweep_data(n, d, max_n, max_d)
        fns = {
            OURS: lambda X=X, y=y: B.ours_rank(X, y),
            GRAM: lambda X=X: B.numpy_gram(X),
        }
        times, _ = B.time_interleaved(fns, repeat)
        rows.append({"N": n, "d": d, "C": B.C, "times": times})
        print(f"  sweep N={n} d={d}: {times}", file=sys.stderr)
    B.drop_sweep_data()
    return rows


def accumulate(X, y, repeat):
    import labelranker_fast as lrf

    rows = []
    for dtype in ("float32", "float64"):
        Xd = np.ascontiguousarray(X, dtype=dtype)
        times, _ = B.time_interleaved(
            {
                OURS: lambda Xd=Xd: lrf.ScatterAccumulator(Xd.shape[1], B.C).update(Xd, y),
                GRAM: lambda Xd=Xd: B.numpy_gram(Xd),
            },
            repeat,
        )
        rows.append({"dtype": dtype, "times": times})
        print(f"  accumulate {dtype}: {times}", file=sys.stderr)
    return rows


def end_to_end(X, y, repeat):
    fns = {OURS: lambda: B.ours_rank(X, y), GRAM: lambda: B.numpy_gram(X)}
    if importlib.util.find_spec("torch"):
        fns["torch"] = lambda: B.torch_rank(X, y, B.C)
    slow = {"sklearn eigen + centroids": "eigen", "sklearn svd + centroids": "svd"}
    for name, solver_name in slow.items():
        fns[name] = lambda s=solver_name: B.sklearn_rank(X, y, s)
    times, results = B.time_interleaved(fns, repeat, once=slow)
    agrees = {
        name: check(B.assert_same_order, results[OURS][0], *res)
        for name, res in results.items()
        if name not in (OURS, GRAM)
    }
    print(f"  end to end: {times} {agrees}", file=sys.stderr)
    return {"N": len(X), "d": X.shape[1], "C": B.C, "times": times, "agrees": agrees}


def solver(repeat):
    rows = []
    full, top = "scipy eigh(Sb, Sw)", "scipy eigh(Sb, Sw) top pair only"
    for d, c in B.SOLVER_SIZES:
        acc, Sb, S = B.solver_inputs(B.make_solver_problem(d, c))
        times, results = B.time_interleaved(
            {
                OURS: lambda acc=acc: B.ours_solve_top(acc),
                full: lambda Sb=Sb, S=S: B.scipy_eigh_top(Sb, S),
                top: lambda Sb=Sb, S=S: B.scipy_eigh_top(Sb, S, subset=True),
            },
            repeat,
            once={full, top} if d > 1000 else (),
        )  # a full eigh at d=4096: seconds to a minute
        agrees = {
            name: check(B.assert_same_top, *results[OURS], *results[name]) for name in (full, top)
        }
        rows.append({"d": d, "C": c, "times": times, "agrees": agrees})
        print(f"  solver d={d} C={c}: {times}", file=sys.stderr)
    return rows


# -------------------------------------------------------------- output
def linear_fit(ns, ts):
    """Least-squares t = a N + b and its R^2."""
    ns, ts = np.asarray(ns, dtype=float), np.asarray(ts, dtype=float)
    a, b = np.polyfit(ns, ts, 1)
    resid = ts - (a * ns + b)
    r2 = 1 - np.sum(resid**2) / np.sum((ts - np.mean(ts)) ** 2)
    return a, b, r2


def _table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _ratio(t, ours):
    return f"{t / ours:.2f}x"


def _ours_gram(t):
    """[ours, X.T @ X, ratio] cells of a times dict."""
    return [f"{t[OURS]:.4f}", f"{t[GRAM]:.4f}", _ratio(t[GRAM], t[OURS])]


def markdown(res):
    m, v = res["machine"], res["machine"]["versions"]
    out = [
        "# labelranker_fast benchmark report",
        "",
        f"- date: {m['date']}",
        f"- machine: {m['cpu']}, {m['cores']} cores, Python {m['python']}",
        f"- versions: labelranker_fast {v['labelranker_fast']}, numpy {v['numpy']}, "
        f"scipy {v['scipy']}, "
        f"scikit-learn {v['sklearn']}, torch {v['torch']}",
        f"- times in seconds, the minimum of {res['repeat']} interleaved rounds "
        "(the slow baselines, "
        "sklearn and scipy's eigh at d > 1000, one round); "
        "ratio = baseline / ours (> 1: ours is faster)",
        "",
    ]
    sw = res["sweep"]
    by_n = {}
    for r in sw:
        by_n.setdefault(r["d"], []).append(r)
    out += [f"## Time against N (C = {B.C}, float32)", ""]
    rows, fits = [], []
    for d in res["sweep_ds_for_n"]:
        pts = [r for r in by_n[d] if r["N"] in res["sweep_ns"]]
        for r in pts:
            t = r["times"]
            rows.append([d, f"{r['N']:,}", *_ours_gram(t), f"{t[OURS] / r['N'] * 1e9:.0f}"])
        a, b, r2 = linear_fit([r["N"] for r in pts], [r["times"][OURS] for r in pts])
        fits.append(f"- d = {d}: t = {a * 1e6:.3f} s per million rows + {b:.4f} s, R^2 = {r2:.4f}")
    out += [
        _table(["d", "N", "ours", GRAM, "ratio", "ours ns/row"], rows),
        "",
        "Linear fit of our time against N:",
        "",
        *fits,
        "",
    ]
    out += [f"## Time against d (N = {res['sweep_n_for_d']:,}, C = {B.C}, float32)", ""]
    rows = [
        [r["d"], *_ours_gram(r["times"])]
        for r in sorted(sw, key=lambda r: r["d"])
        if r["N"] == res["sweep_n_for_d"] and r["d"] in res["sweep_ds"]
    ]
    out += [_table(["d", "ours", GRAM, "ratio"], rows), ""]

    if "accumulate" in res:
        n, d = B.HEADLINE
        out += [f"## Accumulation ({n:,} x {d}, C = {B.C})", ""]
        rows = [[r["dtype"], *_ours_gram(r["times"])] for r in res["accumulate"]]
        out += [_table(["dtype", "ours", GRAM, "ratio"], rows), ""]
    if "end_to_end" in res:
        e = res["end_to_end"]
        t = e["times"]
        out += [f"## Ranking end to end ({e['N']:,} x {e['d']} float32, C = {e['C']})", ""]
        rows = [
            [
                name,
                f"{s:.4f}",
                _ratio(s, t[OURS]) if name != OURS else "",
                e["agrees"].get(name, ""),
            ]
            for name, s in t.items()
        ]
        out += [_table(["implementation", "time", "ratio", "same order as ours"], rows), ""]
    if "solver" in res:
        out += ["## Solver alone (synthetic well-conditioned S_w)", ""]
        rows = []
        for r in res["solver"]:
            t = r["times"]
            names = [n for n in t if n != OURS]
            rows.append(
                [r["d"], r["C"], f"{t[OURS]:.4f}"]
                + [f"{t[n]:.3f} ({_ratio(t[n], t[OURS])})" for n in names]
                + [", ".join(f"{a}" for a in r["agrees"].values())]
            )
        out += [
            _table(["d", "C", "ours", *names, "agree (eigenvalue 1e-8, direction 1e-6)"], rows),
            "",
        ]
        target = next((r for r in res["solver"] if (r["d"], r["C"]) == (4096, 1000)), None)
        if target:
            ratio = target["times"]["scipy eigh(Sb, Sw)"] / target["times"][OURS]
            out += [
                f"Target (ours >= 5x faster than scipy eigh(Sb, Sw) at d = 4096, C = 1000): "
                f"{ratio:.1f}x, {'met' if ratio >= 5 else 'NOT met'}.",
                "",
            ]
    if "class_sweep" in res:
        n, d = B.HEADLINE
        out += [
            "## Accumulation against the number of classes",
            "",
            class_sweep.table(res["class_sweep"], n, d),
            "",
        ]
    out.append(f"Report took {res['elapsed_s']:.0f} s.")
    return "\n".join(out) + "\n"


def plot(res, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_n, ax_d) = plt.subplots(1, 2, figsize=(11, 4.2))
    for i, d in enumerate(res["sweep_ds_for_n"]):
        pts = sorted(
            (r for r in res["sweep"] if r["d"] == d and r["N"] in res["sweep_ns"]),
            key=lambda r: r["N"],
        )
        ns = np.array([r["N"] for r in pts], dtype=float)
        ts = np.array([r["times"][OURS] for r in pts])
        a, b, r2 = linear_fit(ns, ts)
        color = f"C{i}"
        k = ns / 1e3  # thousands of rows, for readable ticks
        ax_n.plot(k, ts, "o", color=color, label=f"ours, d={d} (linear fit, R²={r2:.3f})")
        grid = np.linspace(0, ns.max(), 50)
        ax_n.plot(grid / 1e3, a * grid + b, "-", color=color, lw=1)
        ax_n.plot(
            k, [r["times"][GRAM] for r in pts], "x--", color=color, lw=0.8, label=f"X.T @ X, d={d}"
        )
    ax_n.set(
        xlabel="N (thousand rows)", ylabel="time (s)", title=f"time against N (C={B.C}, float32)"
    )
    ax_n.legend(fontsize=7)
    pts = sorted(
        (r for r in res["sweep"] if r["N"] == res["sweep_n_for_d"] and r["d"] in res["sweep_ds"]),
        key=lambda r: r["d"],
    )
    ds = [r["d"] for r in pts]
    ax_d.plot(ds, [r["times"][OURS] for r in pts], "o-", label="ours (rank_labels)")
    ax_d.plot(ds, [r["times"][GRAM] for r in pts], "x--", label="numpy X.T @ X")
    ax_d.set(
        xlabel="d (features)",
        ylabel="time (s)",
        title=f"time against d (N={res['sweep_n_for_d']:,})",
    )
    ax_d.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# ---------------------------------------------------------------- main
def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--quick", action="store_true", help="the sweep only, at smaller sizes (about a minute)"
    )
    ap.add_argument(
        "--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
    )
    ap.add_argument("--repeat", type=int, default=None, help="rounds per measurement (default 3)")
    args = ap.parse_args(argv)
    repeat = args.repeat or 3
    if args.quick:
        ns, ds_for_n = (12_500, 25_000, 50_000, 100_000), (256, 768)
        ds, n_for_d = (128, 256, 512, 768), 50_000
    else:
        ns, ds_for_n, ds, n_for_d = B.SWEEP_N, (256, 512, 768), B.SWEEP_D, B.SWEEP_D_AT_N
    os.makedirs(args.out, exist_ok=True)

    start = time.perf_counter()
    res = {
        "machine": machine_info(),
        "quick": args.quick,
        "repeat": repeat,
        "sweep_ns": list(ns),
        "sweep_ds_for_n": list(ds_for_n),
        "sweep_ds": list(ds),
        "sweep_n_for_d": n_for_d,
    }
    res["sweep"] = sweep(ns, ds_for_n, ds, n_for_d, repeat)
    if not args.quick:
        X, y = B.make_features(*B.HEADLINE, B.C)
        res["accumulate"] = accumulate(X, y, repeat)
        res["end_to_end"] = end_to_end(X, y, repeat)
        del X, y
        res["solver"] = solver(repeat)
        res["class_sweep"] = class_sweep.run(class_sweep.CLASSES, *B.HEADLINE, repeat)
    res["elapsed_s"] = time.perf_counter() - start

    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump(res, f, indent=1)
    md = markdown(res)
    with open(os.path.join(args.out, "report.md"), "w") as f:
        f.write(md)
    plot(res, os.path.join(args.out, "sweep.png"))
    print(md)
    failed = [
        a
        for sec in ("solver",)
        for r in res.get(sec, [])
        for a in r["agrees"].values()
        if a != "yes"
    ]
    failed += [a for a in res.get("end_to_end", {}).get("agrees", {}).values() if a != "yes"]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
