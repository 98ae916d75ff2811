"""Statistics, the Markdown report, the plot and the raw JSON of a study."""

from __future__ import annotations

import datetime
import os
import platform

import numpy as np

from .._io import atomic_write, write_json, write_text
from ._extras import extra_lines, extras, write_rankings

__all__ = ["summarize", "order_effect_test", "write_report"]


def order_effect_test(acc: np.ndarray, n_perm: int = 5000, seed: int = 0) -> dict:
    """Does accuracy depend on the label order? ``acc`` is (seeds, orders).

    Two-way layout without replication: seeds are blocks, orders the treatment. The
    statistic is the F ratio of the order effect to the residual; its p-value comes from
    permuting the orders within each seed (no distributional assumption).

    Parameters
    ----------
    acc : array-like of shape (seeds, orders)
        Test accuracy of each fine-tuning seed under each label order.
    n_perm : int, default=5000
        Number of within-seed permutations.
    seed : int, default=0
        Seed of the permutations.

    Returns
    -------
    dict
        "F", "p" (permutation p-value, (1 + hits) / (1 + n_perm)) and "permutations";
        NaN with a "note" under 2 seeds or 2 orders.

    Raises
    ------
    ValueError
        ``acc`` not two-dimensional.
    """
    acc = np.asarray(acc, dtype=float)
    if acc.ndim != 2:
        raise ValueError(f"acc must be (seeds, orders), got shape {acc.shape}")
    s, o = acc.shape
    if s < 2 or o < 2:
        return {"F": float("nan"), "p": float("nan"), "note": "needs at least 2 seeds and 2 orders"}

    def f_ratio(a):
        resid = a - a.mean(1, keepdims=True) - a.mean(0, keepdims=True) + a.mean()
        ss_order = s * ((a.mean(0) - a.mean()) ** 2).sum()
        ss_resid = (resid**2).sum()
        return (ss_order / (o - 1)) / max(ss_resid / ((o - 1) * (s - 1)), 1e-300)

    observed = f_ratio(acc)
    rng = np.random.default_rng(seed)
    hits = sum(f_ratio(rng.permuted(acc, axis=1)) >= observed for _ in range(n_perm))
    return {"F": float(observed), "p": (1 + hits) / (1 + n_perm), "permutations": n_perm}


def _stats(values) -> dict:
    v = np.asarray(values, dtype=float)
    return {
        "mean": float(v.mean()),
        "std": float(v.std(ddof=1)) if v.size > 1 else 0.0,
        "min": float(v.min()),
        "max": float(v.max()),
        "n": int(v.size),
    }


def summarize(results: dict) -> dict:
    """Per backbone: accuracy per condition, spread over random orders, the ranker's rank,
    the order-effect test and both controls.

    Parameters
    ----------
    results : dict
        As ``run_study`` returns it ("config" and "runs").

    Returns
    -------
    dict
        ``{backbone: summary}``.

    Raises
    ------
    KeyError
        ``results`` without the keys ``run_study`` writes.
    """
    out = {}
    seeds = results["config"]["seeds"]
    for kind in dict.fromkeys(r["backbone"] for r in results["runs"]):
        runs = [r for r in results["runs"] if r["backbone"] == kind]
        main = [r for r in runs if r["head_seed"] == r["seed"]]

        def acc(state, seed=None, main=main):  # main: this backbone's runs
            return [
                r["accuracy"]
                for r in main
                if r["label_state"] == state and (seed is None or r["seed"] == seed)
            ]

        random_states = sorted(
            {r["label_state"] for r in main if r["label_state"].startswith("random")},
            key=lambda n: int(n.split()[1]),
        )
        per_seed = np.array(
            [[acc("sequence", s)[0]] + [acc(n, s)[0] for n in random_states] for s in range(seeds)]
        )
        random_all = [a for n in random_states for a in acc(n)]
        ranks = []
        for s in range(seeds):
            rk, rand = acc("ranker", s)[0], [acc(n, s)[0] for n in random_states]
            ranks.append(1 + sum(a > rk for a in rand))
        equivalent = [
            {
                "seed": s,
                "sequence": acc("sequence", s)[0],
                "equivalent": acc("equivalent", s)[0],
                "random 1": acc("random 1", s)[0] if random_states else None,
            }
            for s in range(seeds)
            if acc("equivalent", s)
        ]
        head = [r["accuracy"] for r in runs if r["label_state"] == "sequence" and r["seed"] == 0]
        out[kind] = {
            "model": runs[0]["model"],
            "pretraining": runs[0]["pretraining"],
            "conditions": {
                n: _stats(acc(n))
                for n in ["sequence", *random_states, "ranker", "equivalent"]
                if acc(n)
            },
            "random": _stats(random_all) if random_all else None,
            "ranker_rank": ranks,
            "n_random": len(random_states),
            "order_effect": order_effect_test(per_seed),
            "equivalent": equivalent,
            "head_seed_spread": _stats(head) if len(head) > 1 else None,
            "order_spread_seed0": _stats(per_seed[0]) if per_seed.shape[1] > 1 else None,
            "extras": extras(
                main, per_seed, results.get("rankings", {}).get(kind), results["data"]["test"]
            ),
        }
    return out


def _pct(x) -> str:
    return "n/a" if x is None else f"{100 * x:.2f}"


def _markdown(results: dict, summary: dict, plot_name: str | None) -> str:
    cfg = results["config"]
    d = results["data"]
    lines = [
        "# Does label order matter? Study report",
        "",
        f"- date: {datetime.datetime.now().isoformat(timespec='seconds')}; device: "
        f"{results['device']} ({platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cores)",
        f"- data: {d['name']}, {d['train']} train / {d['test']} test images {tuple(d['shape'])}, "
        f"{d['classes']} classes (fixed stratified split)",
        f"- fine-tuning: {cfg['epochs']} epochs, AdamW lr {cfg['lr']}, weight decay "
        f"{cfg['weight_decay']}, {cfg['warmup_epochs']} warm-up epoch(s) then cosine, batch "
        f"{cfg['batch_size']}; {cfg['seeds']} seed(s) x ({cfg['random_orders']} random orders + "
        f"sequence + ranker + equivalent control + lda arm in 2 orders + linear probe in 2 "
        f"orders) + {max(0, cfg['head_seeds'] - 1)} extra head seeds",
        f"- total time: {results['seconds'] / 60:.1f} min",
        "",
        "## Accuracy (%), the paper's layout",
        "",
        "Accuracy is the mean over fine-tuning seeds (± standard deviation over seeds); "
        "Average is the mean over all random-order runs.",
        "",
        "| Model | Pretraining | Label state | Accuracy | Average |",
        "|---|---|---|---|---|",
    ]
    for kind, s in summary.items():
        first = True
        for name, st in s["conditions"].items():
            if name == "equivalent":
                continue
            avg = _pct(s["random"]["mean"]) if name.startswith("random") and s["random"] else ""
            acc = f"{_pct(st['mean'])} ± {_pct(st['std'])}" if st["n"] > 1 else _pct(st["mean"])
            model = f"{s['model']} ({kind})" if first else ""
            pre = s["pretraining"] if first else ""
            lines.append(f"| {model} | {pre} | {name} | {acc} | {avg} |")
            first = False
    lines += [
        "",
        "## Spread over label orders",
        "",
        "| Backbone | sequence | random: mean ± std | min | max | ranker | ranker's rank "
        "among random orders (per seed) | order effect F, p |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for kind, s in summary.items():
        r, c = s["random"], s["conditions"]
        oe = s["order_effect"]
        test = f"{oe['F']:.2f}, {oe['p']:.3f}" if np.isfinite(oe["F"]) else oe.get("note", "")
        ranks = ", ".join(f"{k} of {s['n_random'] + 1}" for k in s["ranker_rank"])
        lines.append(
            f"| {kind} | {_pct(c['sequence']['mean'])} | {_pct(r['mean'])} ± {_pct(r['std'])} | "
            f"{_pct(r['min'])} | {_pct(r['max'])} | {_pct(c['ranker']['mean'])} | {ranks} | "
            f"{test} |"
        )
    lines += [
        "",
        "The order-effect test treats seeds as blocks and permutes the orders "
        "(sequence and random) within each seed; p is the share of permutations with an "
        "F ratio at least as large as observed.",
        "",
        "## Control 1: equivalent network",
        "",
        "Random order 1 with the head's initial rows permuted the same way, so that every "
        "class meets the initial weights it meets in the sequence run.",
        "",
        "| Backbone | seed | sequence | equivalent | random 1 | equivalent − sequence |",
        "|---|---|---|---|---|---|",
    ]
    for kind, s in summary.items():
        for e in s["equivalent"]:
            lines.append(
                f"| {kind} | {e['seed']} | {_pct(e['sequence'])} | {_pct(e['equivalent'])} | "
                f"{_pct(e['random 1'])} | {100 * (e['equivalent'] - e['sequence']):+.2f} |"
            )
    lines += [
        "",
        "## Control 2: head-seed spread against order spread",
        "",
        "| Backbone | std over head seeds (sequence order, data seed 0) | std over orders "
        "(seed 0: sequence + random) |",
        "|---|---|---|",
    ]
    for kind, s in summary.items():
        h, o = s["head_seed_spread"], s["order_spread_seed0"]
        lines.append(
            f"| {kind} | {_pct(h['std']) if h else 'n/a'} (n = {h['n'] if h else 0}) | "
            f"{_pct(o['std']) if o else 'n/a'} (n = {o['n'] if o else 0}) |"
        )
    lines += extra_lines(summary, d["test"])
    if plot_name:
        lines += ["", f"![accuracy per condition]({plot_name})"]
    return "\n".join(lines) + "\n"


def _plot(results: dict, path: str) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    kinds = list(dict.fromkeys(r["backbone"] for r in results["runs"]))
    groups = ["sequence", "random", "ranker", "equivalent", "head seeds", "lda", "probe"]
    fig, axes = plt.subplots(
        1, len(kinds), figsize=(4.8 * len(kinds), 3.6), squeeze=False, sharey=False
    )
    rng = np.random.default_rng(0)
    for ax, kind in zip(axes[0], kinds):
        for r in (r for r in results["runs"] if r["backbone"] == kind):
            state = r["label_state"]
            g = (
                "head seeds"
                if r["head_seed"] != r["seed"]
                else state.split()[0]  # "random 3" -> random, "lda sequence" -> lda
            )
            x = groups.index(g) + rng.uniform(-0.15, 0.15)
            ax.plot(x, 100 * r["accuracy"], "o", ms=4, alpha=0.75, color=f"C{groups.index(g)}")
        ax.set_xticks(range(len(groups)), groups, rotation=30)
        ax.set_title(kind)
        ax.set_ylabel("test accuracy (%)")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    atomic_write(path, lambda fh: fig.savefig(fh, dpi=120, format="png"))
    plt.close(fig)
    return True


def write_report(results: dict, out_dir: str) -> dict:
    """Writes results.json, report.md, accuracy.png (when matplotlib is installed) and
    each backbone's ranking (``ranking_<backbone>.json``, ``class_map_<backbone>.txt``)
    to ``out_dir``, each atomically.

    Parameters
    ----------
    results : dict
        As ``run_study`` returns it.
    out_dir : str
        Folder to write to (created if missing).

    Returns
    -------
    dict
        "paths" (json, markdown, plot: None without matplotlib, and "ranking <backbone>",
        "class map <backbone>"), "summary", "markdown".

    Raises
    ------
    KeyError
        ``results`` without the keys ``run_study`` writes.
    OSError
        ``out_dir`` cannot be created or written.
    """
    os.makedirs(out_dir, exist_ok=True)
    summary = summarize(results)
    plot_path = os.path.join(out_dir, "accuracy.png")
    paths: dict[str, str | None] = {
        "json": os.path.join(out_dir, "results.json"),
        "markdown": os.path.join(out_dir, "report.md"),
        "plot": plot_path,
    }
    write_json(paths["json"], {**results, "summary": summary}, allow_nan=True)
    paths.update(write_rankings(results, out_dir))
    if not _plot(results, plot_path):
        paths["plot"] = None
    text = _markdown(results, summary, "accuracy.png" if paths["plot"] else None)
    write_text(paths["markdown"], text)
    return {"paths": paths, "summary": summary, "markdown": text}
