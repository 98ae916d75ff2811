"""What the command's sub-commands share: option types, the printed ranking, the
``--names`` file and the output files."""

from __future__ import annotations

import argparse
import os

import numpy as np

from ._io import as_path, atomic_write, write_json


def parse_shrinkage(text: str):
    """A ``--shrinkage`` value: none, oas or a number (the range is checked by the solve)."""
    if text.lower() in ("none", ""):
        return None
    if text.lower() == "oas":
        return "oas"
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected none, oas or a number in [0, 1], got {text!r}"
        ) from None


def print_ranking(ranking, title: str, seconds: float, out) -> None:
    """The ranking as a table, by position, its classes named when it has names."""
    print(title, file=out)
    print(
        f"shrinkage={ranking.shrinkage:.4g}  "
        f"eigenvalue(s)={np.round(ranking.eigenvalues, 4).tolist()}"
        f"  time={seconds * 1e3:.1f} ms",
        file=out,
    )
    stability = ranking.stability
    folds = "" if stability is None else f"  {'fold positions':>14}"
    print(f"{'position':>8}  {'class':>12}  centroid{folds}", file=out)
    labels = ranking.classes if ranking.names is None else ranking.names
    for p, c in enumerate(ranking.order):
        cent = ", ".join(f"{v:+.4f}" for v in ranking.centroids[c])
        span = "" if stability is None else "  {:>6}-{}".format(*stability.position_interval[c])
        print(f"{p:>8}  {str(labels[c]):>12}  {cent}{span}", file=out)
    ranked = ranking.ranked_names or ranking.ranked_classes.tolist()
    print("order: " + " ".join(str(v) for v in ranked), file=out)
    if stability is not None:
        widths = stability.position_interval[:, 1] - stability.position_interval[:, 0]
        print(
            f"stability over {stability.folds} folds: mean Kendall tau "
            f"{stability.kendall_tau:.3f}, widest position interval {int(widths.max())}, "
            f"sign flips {stability.sign_flips}",
            file=out,
        )


def read_names(path) -> list[str]:
    """The class names in a ``--names`` file: UTF-8 text (a BOM allowed), one name per
    line, line k naming the k-th class in sorted label order (``ranking.classes``).
    Line ends are \\n or \\r\\n; the last line may end without one. An empty line is
    an error, as everything else ``LabelRanking.with_names`` refuses."""
    path = as_path(path, "--names")
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except FileNotFoundError:
        raise FileNotFoundError(f"--names {path!r}: no such file") from None
    except OSError as exc:
        raise ValueError(f"--names {path!r} cannot be read: {exc.strerror or exc}") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ValueError(f"--names {path!r} is not UTF-8 text: {exc}") from None
    if text.endswith("\n"):
        text = text[:-1]
    lines = [line[:-1] if line.endswith("\r") else line for line in text.split("\n")]
    empty = [i + 1 for i, line in enumerate(lines) if not line]
    if empty:
        raise ValueError(f"--names {path!r}: line {empty[0]} is empty (one name per line)")
    return lines


def check_outputs(args, flags=("output", "class_map", "label_maps", "plot")) -> None:
    """Refuses, before any work, output paths that could not be written: a folder, a
    path in a folder that does not exist, or one path given for two outputs."""
    seen: dict[str, str] = {}
    for flag in flags:
        path = getattr(args, flag, None)
        if path is None:
            continue
        option = "--" + flag.replace("_", "-")
        path = as_path(path, option)
        if os.path.isdir(path):
            raise ValueError(f"{option} {path!r} is a folder")
        parent = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(parent):
            raise FileNotFoundError(f"{option} {path!r}: no such folder {parent!r}")
        real = os.path.realpath(path)
        if real in seen:
            raise ValueError(f"{option} and {seen[real]} are the same file {path!r}")
        seen[real] = option
    if "plot" in flags and getattr(args, "plot", None):
        _plot_format(args.plot)  # before the pass, which may take hours


def write_outputs(ranking, args) -> None:
    """Writes the ranking (-o), its class map and its label maps, each atomically. What
    can fail on the ranking's content (names a class map or label maps refuse) fails
    before anything is written."""
    maps = ranking.to_hf_label_maps() if getattr(args, "label_maps", None) else None
    if getattr(args, "class_map", None):
        ranking.to_class_map(args.class_map)
    if args.output:
        ranking.to_json(args.output)
    if maps is not None:
        id2label, label2id = maps
        write_json(args.label_maps, {"id2label": id2label, "label2id": label2id})
    if getattr(args, "plot", None):
        _save_plot(ranking, args.plot)
    for flag in ("output", "class_map", "label_maps", "plot"):
        if getattr(args, flag, None):
            print(f"wrote {getattr(args, flag)}")


def _plot_format(path) -> str:
    """The image format of ``--plot`` ``path`` (its suffix; png without one), or
    ImportError without matplotlib, ValueError for a format it cannot write."""
    try:
        import matplotlib

        matplotlib.use("Agg")  # files only: no display needed
    except ImportError:
        raise ImportError("--plot needs matplotlib (pip install matplotlib)") from None
    from matplotlib.backend_bases import FigureCanvasBase

    suffix = os.path.splitext(os.fsdecode(as_path(path, "--plot")))[1].lstrip(".").lower()
    known = FigureCanvasBase.get_supported_filetypes()
    if suffix and suffix not in known:
        raise ValueError(
            f"--plot {path!r}: matplotlib cannot write .{suffix} (use {sorted(known)})"
        )
    return suffix or "png"


def _save_plot(ranking, path) -> None:
    """``ranking.plot()`` saved to ``path`` (the format from its suffix), atomically."""
    fmt = _plot_format(path)  # selects the Agg backend before pyplot is imported
    import matplotlib.pyplot as plt

    fig = ranking.plot().figure
    try:
        save = lambda fh: fig.savefig(fh, format=fmt, dpi=100, bbox_inches="tight")  # noqa: E731
        atomic_write(path, save, "--plot")
    finally:
        plt.close(fig)


def add_ranking_options(p) -> None:
    """``--method`` and ``--folds``: how the order is made, and its stability."""
    p.add_argument(
        "--method",
        choices=("anchor", "seriation"),
        default="anchor",
        help="anchor (default, the paper's rule) or seriation (neighbours adjacent)",
    )
    p.add_argument(
        "--folds",
        type=int,
        default=None,
        metavar="K",
        help="also report the ranking's stability over K folds of the same pass",
    )


def add_output_options(p, required: bool = False) -> None:
    """``-o``, ``--class-map``, ``--label-maps`` and ``--plot``, as ``write_outputs``
    reads them."""
    p.add_argument(
        "--output",
        "-o",
        required=required,
        metavar="RANKING_JSON",
        help="write the ranking as JSON to this path",
    )
    p.add_argument(
        "--class-map",
        metavar="PATH",
        help="write timm's class map: line p is the name of the class at position p",
    )
    p.add_argument(
        "--label-maps",
        metavar="PATH",
        help='write {"id2label": ..., "label2id": ...} JSON (to_hf_label_maps) for a '
        "Hugging Face config",
    )
    p.add_argument(
        "--plot",
        metavar="PATH",
        help="save ranking.plot() (the paper's Figure 3) there, e.g. ranking.png",
    )
