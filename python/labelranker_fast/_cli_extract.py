"""``labelranker extract``: an image folder streamed through a model, its classes ranked.

Nothing here imports torch until the command runs, so the rest of the command line works
without it.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from ._cli_outputs import (
    add_output_options,
    add_ranking_options,
    check_outputs,
    parse_shrinkage,
    print_ranking,
    write_outputs,
)
from ._ranking_text import _check_lines

# extract_and_rank's poolings (torch/_pooling.py POOLINGS; a test keeps them equal).
POOLINGS = ("avg", "cls", "max", "avgmax", "head")


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {value}")
    return value


def add_parser(sub) -> None:
    """The ``extract`` sub-command's arguments."""
    p = sub.add_parser(
        "extract",
        help="rank the classes of an image folder on a model's features (needs torch)",
        description="Streams FOLDER (one sub-folder of images per class) through the "
        "model's eval transform and the model, ranks the classes by LDA on the pooled "
        "features and writes the ranking, named by the folders.",
    )
    p.add_argument(
        "--model",
        required=True,
        metavar="SPEC",
        help="timm:NAME@CHECKPOINT (timm.create_model(NAME, num_classes=0) with the "
        "checkpoint's weights), timm:NAME (random weights: needs --allow-random-weights) "
        "or hf:DIR (a transformers save_pretrained folder with its image processor)",
    )
    p.add_argument(
        "--data", required=True, metavar="FOLDER", help="image folder: one sub-folder per class"
    )
    add_output_options(p, required=True)
    add_ranking_options(p)
    p.add_argument("--pooling", choices=POOLINGS, default="avg", help="default: avg")
    p.add_argument(
        "--input-size", type=_positive, metavar="N", help="timm models: images resized to N x N"
    )
    p.add_argument("--batch-size", type=_positive, default=64, help="default: 64")
    p.add_argument("--device", default="auto", help="auto (default), cpu, cuda, cuda:1, xla")
    p.add_argument(
        "--num-workers",
        type=_count,
        default=min(8, os.cpu_count() or 1),
        help="image-reading processes (default: min(8, cores); 0: in this process)",
    )
    p.add_argument(
        "--shrinkage",
        type=parse_shrinkage,
        default="oas",
        help="oas (default), none, or a number in [0, 1]",
    )
    p.add_argument(
        "--allow-random-weights",
        action="store_true",
        help="rank on weights no checkpoint gave (seeded, so reruns agree)",
    )
    p.add_argument(
        "--no-progress", dest="progress", action="store_false", help="do not show a progress bar"
    )


def run(args) -> int:
    """Runs ``labelranker extract``; errors are raised for the command's one-line report."""
    check_outputs(args)
    try:
        import torch

        from .torch import extract_and_rank, pick_device
        from .torch._images import ImageBatches, image_folder, load_model, worker_error
    except ImportError as exc:
        raise ImportError(
            f"extract needs PyTorch and torchvision ({exc}): pip install "
            "'labelranker_fast[torch]' torchvision, and timm or transformers"
        ) from None
    # The same arguments give the same ranking: no autotuned kernel choice on CUDA.
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True
    # Every input is checked before the model is loaded, and the model before the pass.
    try:
        dev = pick_device(args.device)
        torch.empty(0, device=dev)  # an unusable device fails here, not after the model
    except (RuntimeError, ValueError, TypeError, AssertionError) as exc:
        raise ValueError(f"--device {args.device!r}: {exc}") from None
    dataset = image_folder(os.path.expanduser(args.data), None)  # listed once: it may be big
    if args.class_map:  # folder names a class map cannot hold: refused before the pass
        _check_lines(list(dataset.classes))
    loaded = load_model(
        args.model, input_size=args.input_size, allow_random_weights=args.allow_random_weights
    )
    dataset.transform = loaded.transform
    loader = ImageBatches(
        dataset,
        batch_size=args.batch_size,
        num_workers=args.num_workers,
        pin_memory=dev.type == "cuda",
    )
    t = time.perf_counter()
    try:
        ranking = extract_and_rank(
            loaded.model,
            loader,
            num_classes=len(dataset.classes),
            pooling=args.pooling,
            device=dev,
            shrinkage=args.shrinkage,
            progress=args.progress,
            method=args.method,
            folds=args.folds,
        )
    except Exception as exc:
        message = worker_error(exc)  # a worker's error arrives as its whole traceback
        if message is None:
            raise
        raise ValueError(message) from None
    finally:
        loader.close()
    dt = time.perf_counter() - t
    title = (
        f"{args.data}: {len(dataset)} images, {len(dataset.classes)} classes; "
        f"{loaded.description}; pooling={args.pooling}, device={dev}"
    )
    print_ranking(ranking, title, dt, sys.stdout)
    write_outputs(ranking, args)
    return 0
