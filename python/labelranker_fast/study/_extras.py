"""The report's newer parts: the order-free lda arm, the linear probe (control 3), the
ranker's fold stability, the power of the order-effect test, and the ranking files."""

from __future__ import annotations

import os
import re

import numpy as np

from .._ranking import LabelRanking
from ._power import minimal_detectable_effect

__all__ = ["AGREE_IMAGES", "extras", "extra_lines", "write_rankings"]

# Two lda runs "agree" when their accuracies differ by at most this many test images.
# Bit equality is not promised: the gradient into the features sums over head positions
# in position order, so the orders round differently, and fine-tuning can grow that into
# a test image or so; the seed-to-seed spread is tens of images.
AGREE_IMAGES = 2


def _stats(values) -> dict | None:
    v = np.asarray(values, dtype=float)
    if v.size == 0:
        return None
    return {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if v.size > 1 else 0.0,
            "n": int(v.size)}  # fmt: skip


def _pair(main, prefix: str, n_test: int) -> dict | None:
    """Sequence and random-order runs of one arm: their stats and per-seed differences."""
    seq = {r["seed"]: r["accuracy"] for r in main if r["label_state"] == f"{prefix} sequence"}
    rnd = {r["seed"]: r["accuracy"] for r in main if r["label_state"] == f"{prefix} random"}
    seeds = sorted(set(seq) & set(rnd))
    if not seeds:
        return None
    diffs = [abs(seq[s] - rnd[s]) for s in seeds]
    return {
        "sequence": _stats([seq[s] for s in seeds]),
        "random": _stats([rnd[s] for s in seeds]),
        "max_abs_diff": float(max(diffs)),
        "max_abs_diff_images": int(round(max(diffs) * n_test)),
        "agree": bool(max(diffs) * n_test <= AGREE_IMAGES + 1e-9),
    }


def residual_sd(per_seed: np.ndarray) -> float:
    """SD of the seed-by-order residual of a (seeds, orders) table: the noise that the
    order-effect test sets the order effect against."""
    s, o = per_seed.shape
    if s < 2 or o < 2:
        return float("nan")
    a = per_seed
    resid = a - a.mean(1, keepdims=True) - a.mean(0, keepdims=True) + a.mean()
    return float(np.sqrt((resid**2).sum() / ((s - 1) * (o - 1))))


def extras(main: list, per_seed: np.ndarray, ranking: dict | None, n_test: int) -> dict:
    """The lda arm, the probe, stability and power of one backbone. ``main``: its runs with
    head seed = seed; ``per_seed``: the (seeds, orders) table of the order-effect test."""
    noise = residual_sd(per_seed)
    s, o = per_seed.shape
    mde = minimal_detectable_effect(noise, s, o) if np.isfinite(noise) and s >= 2 else None
    stability = None
    if ranking is not None and ranking.get("stability"):
        st = ranking["stability"]
        widths = [hi - lo for lo, hi in st["position_interval"]]
        stability = {
            "folds": len(st["fold_orders"]),
            "kendall_tau": float(st["kendall_tau"]),
            "widest_interval": int(max(widths)),
            "widest_class": int(np.argmax(widths)),
            "sign_flips": int(st["sign_flips"]),
        }
    return {
        "lda": _pair(main, "lda", n_test),
        "probe": _pair(main, "probe", n_test),
        "stability": stability,
        "power": {
            "seeds": s,
            "orders": o,
            "noise_sd": noise,
            "mde": mde,
            "alpha": 0.05,
            "power": 0.8,
        },
    }


def _pct(x) -> str:
    return "n/a" if x is None or not np.isfinite(x) else f"{100 * x:.2f}"


def _mde(x) -> str:
    if x is not None and np.isinf(x):  # too few distinct permutations for p <= 0.05
        return "not reachable at this design"
    return _pct(x)


def _ms(st) -> str:
    return "n/a" if st is None else f"{_pct(st['mean'])} ± {_pct(st['std'])}"


def _section(title: str, prose: str, columns: list[str], rows: list[str]) -> list[str]:
    """A markdown section: heading, a paragraph, and a table of ``rows`` under ``columns``."""
    return [
        "",
        f"## {title}",
        "",
        prose,
        "",
        "| " + " | ".join(columns) + " |",
        "|" + "---|" * len(columns),
        *rows,
    ]


def extra_lines(summary: dict, n_test: int) -> list[str]:
    """Markdown sections for ``extras`` of every backbone (``summary[kind]["extras"]``)."""
    lda = [
        f"| {kind} | {_ms(e['sequence'])} | {_ms(e['random'])} | "
        f"{_pct(e['max_abs_diff'])} ({e['max_abs_diff_images']} images) | "
        f"{'yes' if e['agree'] else 'NO'} | {_ms(s['random'])} | "
        f"{_ms(s['conditions'].get('ranker'))} |"
        for kind, s in summary.items()
        if (e := s["extras"]["lda"]) is not None
    ]
    probe = [
        f"| {kind} | {_ms(e['sequence'])} | {_ms(e['random'])} | {_pct(e['max_abs_diff'])} |"
        for kind, s in summary.items()
        if (e := s["extras"]["probe"]) is not None
    ]
    stability = [
        f"| {kind} | {st['folds']} | {st['kendall_tau']:.3f} | {st['widest_interval']} "
        f"(class {st['widest_class']}) | {st['sign_flips']} |"
        for kind, s in summary.items()
        if (st := s["extras"]["stability"]) is not None
    ]
    powers = {kind: s["extras"]["power"] for kind, s in summary.items()}
    power = [
        f"| {kind} | {p['seeds']} x {p['orders']} | {_pct(p['noise_sd'])} | {_mde(p['mde'])} |"
        for kind, p in powers.items()
    ]
    return [
        *_section(
            "Order-free arm: LDA-initialised head",
            "Row p of the head starts as the LDA classifier of the class at position p, from "
            "the ranker's statistics, so a class keeps its row wherever it sits. Fine-tuned in "
            "the sequence order and in random order 1; the two should agree up to float "
            f"rounding (here: at most {AGREE_IMAGES} test images, "
            f"{100 * AGREE_IMAGES / n_test:.2f} points).",
            [
                "Backbone",
                "lda sequence",
                "lda random",
                "largest \\|difference\\|",
                "agree",
                "random orders (head: random)",
                "ranker",
            ],
            lda,
        ),
        *_section(
            "Control 3: linear probe",
            "The backbone frozen, the head alone trained with the same recipe on the features "
            "of the un-augmented training images (a convex problem: order can act only through "
            "the optimiser's path from the random initial head).",
            ["Backbone", "probe sequence", "probe random", "largest \\|difference\\|"],
            probe,
        ),
        *_section(
            "Ranking stability",
            "The ranker's order on K disjoint folds of the training set (sample j of each class "
            "in fold j mod K): mean pairwise Kendall tau, the widest range of positions one "
            "class takes, and folds whose sign rule reversed the direction.",
            ["Backbone", "folds", "kendall_tau", "widest position interval", "sign flips"],
            stability,
        ),
        *_section(
            "Power: minimal detectable effect",
            "The smallest standard deviation of the true order means (accuracy points) that the "
            "order-effect test at this design detects with 80 % power at alpha 0.05, from 400 "
            "simulated studies of that same permutation test (199 permutations each) with normal "
            "noise of the measured seed-by-order residual SD.",
            ["Backbone", "design (seeds x orders)", "noise SD", "minimal detectable effect"],
            power,
        ),
    ]


def _file_safe(kind: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", kind).strip("-") or "backbone"


def write_rankings(results: dict, out_dir: str) -> dict[str, str]:
    """``ranking_<backbone>.json`` (with class names and stability) and
    ``class_map_<backbone>.txt`` (timm's format) for every backbone; {name: path}."""
    paths = {}
    for kind, data in results.get("rankings", {}).items():
        ranking = LabelRanking.from_dict(data)
        base = _file_safe(kind)
        paths[f"ranking {kind}"] = os.path.join(out_dir, f"ranking_{base}.json")
        paths[f"class map {kind}"] = os.path.join(out_dir, f"class_map_{base}.txt")
        ranking.to_json(paths[f"ranking {kind}"])
        ranking.to_class_map(paths[f"class map {kind}"])
    return paths
