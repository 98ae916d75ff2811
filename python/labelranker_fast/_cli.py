"""The `labelranker` command.

labelranker                      rank scikit-learn's bundled digits (a built-in demo)
labelranker rank X.npy y.npy     rank the classes of a features file and a labels file
labelranker extract --model M --data FOLDER -o ranking.json
                                 rank the classes of an image folder on a model's features
                                 (needs torch, torchvision and timm or transformers)
labelranker study [--quick]      does label order matter? (needs the torch extra)
labelranker --version
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import NoReturn

from . import _cli_extract
from ._api import rank_labels
from ._cli_outputs import (
    add_output_options,
    add_ranking_options,
    check_outputs,
    parse_shrinkage,
    print_ranking,
    read_names,
    write_outputs,
)
from ._ranking_text import check_names
from ._sources import open_npy
from ._version import __version__


def _study(args) -> int:
    try:
        from .study import run_study
    except ImportError as exc:
        print(
            f"labelranker: error: the study needs PyTorch ({exc}); pip install "
            "'labelranker_fast[study]'",
            file=sys.stderr,
        )
        return 2
    options = {
        k: getattr(args, k)
        for k in (
            "random_orders",
            "seeds",
            "head_seeds",
            "epochs",
            "pretrain_epochs",
            "batch_size",
            "lr",
            "image_size",
            "input_size",
            "folds",
            "lda_shrinkage",
        )
        if getattr(args, k) is not None
    }
    if args.backbones:
        options["backbones"] = tuple(b.strip() for b in args.backbones.split(",") if b.strip())
    out = run_study(
        quick=args.quick,
        out_dir=args.out,
        data=args.data,
        device=args.device,
        cache_dir=args.cache_dir,
        checkpoint=args.checkpoint,
        **options,
    )
    print(out["markdown"])
    print("wrote " + ", ".join(p for p in out["paths"].values() if p))
    return 0


def main(argv=None) -> int:
    """Runs the command; returns the exit status (0, 2 on an error, 130 on Ctrl-C).

    Errors are one line on standard error, never a traceback.
    """
    try:
        return _main(argv)
    except KeyboardInterrupt:
        print("labelranker: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - the command's one place to report errors
        return _error(exc)


class _Parser(argparse.ArgumentParser):
    """argparse, with its usage errors as one line too (``--help`` still shows usage)."""

    def error(self, message: str) -> NoReturn:
        print(f"labelranker: error: {message} (see {self.prog} --help)", file=sys.stderr)
        raise SystemExit(2)


def _error(exc: BaseException) -> int:
    text = " ".join(str(exc).split()) or type(exc).__name__
    if isinstance(exc, MemoryError):
        text = f"out of memory: {text}"
    print(f"labelranker: error: {text}", file=sys.stderr)
    return 2


def _main(argv) -> int:
    parser = _Parser(
        prog="labelranker",
        description="Order classification labels by LDA on features (Label Ranker). With no "
        "command, ranks scikit-learn's bundled digits data set.",
    )
    parser.add_argument("--version", action="version", version=f"labelranker_fast {__version__}")
    sub = parser.add_subparsers(dest="command", parser_class=_Parser)
    p = sub.add_parser("rank", help="rank the classes of FEATURES.npy / LABELS.npy")
    p.add_argument("features", help=".npy file of shape (n_samples, n_features)")
    p.add_argument("labels", help=".npy file of shape (n_samples,)")
    p.add_argument(
        "--shrinkage",
        type=parse_shrinkage,
        default=None,
        help="none (default), oas, or a number in [0, 1]",
    )
    p.add_argument("--n-components", type=int, default=1)
    p.add_argument(
        "--names",
        metavar="PATH",
        help="class names: a UTF-8 text file, line k naming the k-th class in sorted "
        "label order (for labels 0..C-1: label k)",
    )
    add_output_options(p)
    add_ranking_options(p)
    p.add_argument("--n-threads", type=int, default=None, help="threads (default: all cores)")
    p.add_argument(
        "--chunk-size",
        type=int,
        default=None,
        help="rows read per chunk (default: one 4096-row block per thread)",
    )
    p.add_argument(
        "--no-progress", dest="progress", action="store_false", help="do not show a progress bar"
    )
    _cli_extract.add_parser(sub)
    st = sub.add_parser(
        "study",
        help="rerun the label-order experiment (needs torch)",
        description="Fine-tunes each backbone under the sequence order, random "
        "orders and the Label Ranker order over several seeds, with two "
        "controls, and writes report.md, accuracy.png and results.json.",
    )
    st.add_argument(
        "--quick", action="store_true", help="a smoke run (fewer orders, seeds, epochs)"
    )
    st.add_argument(
        "--data",
        default="digits",
        help="'digits' (default, bundled) or an image folder (one sub-folder per class)",
    )
    st.add_argument(
        "--backbones",
        default=None,
        help="comma-separated: scratch, mae, rotation, timm:<model name> "
        "(default: scratch,mae,rotation)",
    )
    st.add_argument("--checkpoint", help="weights for a timm:<name> backbone")
    for name, kind in (
        ("random-orders", int),
        ("seeds", int),
        ("head-seeds", int),
        ("epochs", int),
        ("pretrain-epochs", int),
        ("batch-size", int),
        ("lr", float),
        ("image-size", int),
        ("input-size", int),
        ("folds", int),
    ):
        st.add_argument(f"--{name}", type=kind, default=None)
    st.add_argument(
        "--lda-shrinkage",
        type=lambda v: v if v == "oas" else float(v),
        default=None,
        help="shrinkage of the lda arm's head: 'oas' or a number in [0, 1] (default 1.0)",
    )
    st.add_argument("--device", default="auto")
    st.add_argument("--cache-dir", help="where pretrained weights are cached")
    st.add_argument("--out", default="study_results", help="output folder (default: study_results)")
    args = parser.parse_args(argv)
    if args.command == "study":
        return _study(args)
    if args.command == "extract":
        return _cli_extract.run(args)

    if args.command is None:
        from sklearn.datasets import load_digits

        X, y = load_digits(return_X_y=True)
        t = time.perf_counter()
        # Digits has pixels that are always 0, so its within-class scatter is singular.
        ranking = rank_labels(X, y, shrinkage="oas")
        dt = time.perf_counter() - t
        title = (
            f"digits (scikit-learn, bundled): {X.shape[0]} samples, {X.shape[1]} "
            "features, 10 classes, shrinkage='oas'"
        )
        print_ranking(ranking, title, dt, sys.stdout)
        return 0
    check_outputs(args)
    names = None if args.names is None else read_names(args.names)
    # The files are streamed (memory-mapped, read ahead, released): never held whole.
    X = open_npy(args.features, "features")
    t = time.perf_counter()
    ranking = rank_labels(
        args.features,
        args.labels,
        shrinkage=args.shrinkage,
        n_components=args.n_components,
        n_threads=args.n_threads,
        chunk_size=args.chunk_size,
        progress=args.progress,
        method=args.method,
        folds=args.folds,
    )
    dt = time.perf_counter() - t
    if names is not None:
        ranking = ranking.with_names(
            check_names(names, ranking.n_classes, f"--names {args.names!r}")
        )
    if args.class_map and ranking.names is None and ranking.classes.dtype.kind in "iu":
        raise ValueError(
            "--class-map of integer labels needs --names (line k naming label k): timm "
            "matches class-map lines against folder names, which sort as text ('10' "
            "before '2')"
        )
    title = (
        f"{args.features}: {X.shape[0]} samples, {X.shape[1]} features, {ranking.n_classes} classes"
    )
    print_ranking(ranking, title, dt, sys.stdout)
    write_outputs(ranking, args)
    return 0
