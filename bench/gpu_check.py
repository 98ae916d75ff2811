"""The PyTorch layer on a GPU: extraction and fine-tuning overhead, host syncs, correctness.

    python bench/gpu_check.py                 # on CUDA: the full check, JSON to --out
    python bench/gpu_check.py --smoke         # on the CPU in seconds (the test run's)

Full mode (one CUDA GPU; about two minutes on an H200) writes one JSON
(default bench/results/gpu_check.json) with:

1. extraction: a timm ``vit_base_patch16_224``, randomly initialised (nothing is
   downloaded), bf16 autocast, batch 256, over a DataLoader whose workers deliver uint8
   images (as a JPEG decoder does) into pinned memory; the model normalises them on the
   device. A plain inference loop (copy, forward, pool, discard) against
   ``extract_and_rank`` over the same loader, interleaved, three rounds; images/s of both
   (best round each) and the overhead, with the loader alone (iterate and copy) and the
   model alone (one resident batch) beside them, to say which bounds the loop;
2. fine-tuning: steps/s of ``finetune`` against a hand-written loop with the same model,
   batch, bf16 autocast, AdamW and warm-up/cosine schedule, each measured as the
   difference between a long and a short run (which cancels the start-up both pay); and
   ``finetune`` for a few steps under ``torch.cuda.set_sync_debug_mode("error")`` from its
   second step to its last (the end of epoch reads the loss on purpose);
3. correctness (of the way from the GPU to the engine: both orders come from the engine):
   ``extract_and_rank`` in float32 on the GPU, with a pooling that also keeps
   the pooled features it hands over; the CPU engine then ranks those very features copied
   out. The orders must be equal; the statistics' relative differences against each
   other and against a float64 two-pass numpy reference are given;
4. the GPU, the versions, peak GPU memory and wall time per part;
5. reused buffers: ``evaluate`` over a producer that refills one pinned buffer for every
   batch, behind matrix products that keep the GPU busy; accuracy 1 means that every
   batch was scored on its own pixels (its copy was read before the buffer was refilled),
   and the same loop without the wait is given beside it (below 1: the race was real).
   Each part runs on its own (an error is recorded with its traceback) and the JSON is
   written after each.

--smoke runs every part with a tiny ViT of the same timm family on 32 x 32 images, on the
CPU (a sync check needs CUDA, and says so), and is part of the normal test run
(tests/test_gpu_check.py) so that the script cannot rot. On the device machine,
``bench/gpu_check.sh`` installs the carried wheels and runs it.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
import traceback
from contextlib import contextmanager

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

import labelranker_fast as lrf
from labelranker_fast.torch import Classifier, extract_and_rank, finetune

FULL = dict(size=224, batch=256, classes=16, extract_batches=60, steps=(10, 50), rounds=3)
SMOKE = dict(size=32, batch=8, classes=4, extract_batches=4, steps=(2, 4), rounds=2)
TINY_VIT = dict(img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2)


# --------------------------------------------------------------------------- data, model
class SyntheticImages(Dataset):
    """uint8 images, class ``i % classes``: a per-class pattern with per-image noise, from
    a small bank each worker builds once, rolled by an offset drawn from ``i`` (so that
    images differ). An item costs a copy, as a decoded image does."""

    def __init__(self, n: int, classes: int, size: int, seed: int = 0, per_class: int = 4):
        self.n, self.classes, self.size, self.seed = n, classes, size, seed
        self.per_class = per_class
        self._bank: torch.Tensor | None = None

    def __len__(self) -> int:
        return self.n

    def _make_bank(self) -> torch.Tensor:
        g = torch.Generator().manual_seed(self.seed)
        shape = (self.classes, 1, 3, self.size, self.size)
        pattern = torch.randint(0, 256, shape, generator=g, dtype=torch.int16)
        noise = torch.randint(-48, 49, (self.classes, self.per_class, *shape[2:]), generator=g)
        return (pattern + noise.to(torch.int16)).clamp_(0, 255).to(torch.uint8)

    def __getitem__(self, i: int):
        if self._bank is None:
            self._bank = self._make_bank()
        c = i % self.classes
        image = self._bank[c, (i // self.classes) % self.per_class]
        step = (i * 7919) % (self.size * self.size)
        return torch.roll(image, shifts=(step // self.size, step % self.size), dims=(1, 2)), c


def make_loader(
    n_batches: int, cfg: dict, workers: int, pin: bool, seed: int = 0, kind=DataLoader
) -> DataLoader:
    data = SyntheticImages(n_batches * cfg["batch"], cfg["classes"], cfg["size"], seed)
    return kind(
        data,
        batch_size=cfg["batch"],
        num_workers=workers,
        pin_memory=pin,
        persistent_workers=workers > 0,
        prefetch_factor=4 if workers > 0 else None,
        drop_last=True,
    )


class Normalised(torch.nn.Module):
    """uint8 images normalised on the device (ImageNet mean and std), then the ViT's
    tokens; declares the ViT's prefix tokens, so that "avg" pooling skips them."""

    def __init__(self, vit: torch.nn.Module):
        super().__init__()
        self.vit = vit
        self.num_prefix_tokens = vit.num_prefix_tokens
        self.has_class_token = vit.has_class_token
        mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1) * 255
        std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1) * 255
        self.register_buffer("mean", mean, persistent=False)
        self.register_buffer("std", std, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.vit.forward_features((x.float() - self.mean) / self.std)


def make_model(smoke: bool, seed: int = 0) -> Normalised:
    import timm

    torch.manual_seed(seed)
    extra = TINY_VIT if smoke else {}
    vit = timm.create_model("vit_base_patch16_224", pretrained=False, num_classes=0, **extra)
    return Normalised(vit)


def avg_pool(model: Normalised, tokens: torch.Tensor) -> torch.Tensor:
    return tokens[:, model.num_prefix_tokens :].mean(1)


# --------------------------------------------------------------------------- helpers
def sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


@contextmanager
def part(name: str, dev: torch.device, out: dict, keep_going: bool):
    """Wall time and peak GPU memory of one part, into out["parts"][name]. With
    ``keep_going`` (the full run, which has one chance) an error is recorded with its
    traceback and the next part runs; the smoke run raises it."""
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    sync(dev)
    t0 = time.perf_counter()
    entry: dict = {}
    out.setdefault("parts", {})[name] = entry
    try:
        yield entry
        sync(dev)
    except Exception as exc:
        if not keep_going:
            raise
        entry["error"] = f"{type(exc).__name__}: {exc}"
        entry["traceback"] = traceback.format_exc()[-4000:]
        if dev.type == "cuda":
            torch.cuda.set_sync_debug_mode("default")
    finally:
        entry["wall_s"] = time.perf_counter() - t0
        if dev.type == "cuda":
            entry["peak_gpu_memory_gib"] = torch.cuda.max_memory_allocated(dev) / 2**30
        print(f"  {name}: {entry['wall_s']:.1f} s", file=sys.stderr, flush=True)


def autocast(dev: torch.device, enabled: bool):
    return torch.autocast(device_type=dev.type, dtype=torch.bfloat16, enabled=enabled)


# --------------------------------------------------------------------------- 1. extraction
def plain_extraction(model: Normalised, loader, dev: torch.device, amp: bool) -> int:
    """The loop extract_and_rank is measured against: copy, forward, pool, discard."""
    model.eval()
    seen = 0
    with torch.inference_mode(), autocast(dev, amp):
        for x, _ in loader:
            avg_pool(model, model(x.to(dev, non_blocking=True)))
            seen += x.shape[0]
    sync(dev)
    return seen


def loader_alone(loader, dev) -> tuple[float, torch.Tensor]:
    """Seconds to iterate the loader and copy its batches to the device, nothing else;
    and the last batch, on the device (a whole epoch: no worker is left mid-epoch)."""
    t = time.perf_counter()
    for x, _ in loader:
        last = x.to(dev, non_blocking=True)
    sync(dev)
    return time.perf_counter() - t, last


def model_alone(model: Normalised, x: torch.Tensor, dev, amp: bool, batches: int) -> float:
    """Seconds for as many forward passes on one batch already on the device."""
    model.eval()
    with torch.inference_mode(), autocast(dev, amp):
        avg_pool(model, model(x))
        sync(dev)
        t = time.perf_counter()
        for _ in range(batches):
            avg_pool(model, model(x))
        sync(dev)
    return time.perf_counter() - t


def check_extraction(model, loader, dev, cfg, amp: bool, out: dict) -> None:
    images = cfg["extract_batches"] * cfg["batch"]
    plain_extraction(model, loader, dev, amp)  # warm-up: workers, kernels, allocator
    best = {"plain loop": math.inf, "extract_and_rank": math.inf}
    for _ in range(cfg["rounds"]):
        t = time.perf_counter()
        assert plain_extraction(model, loader, dev, amp) == images
        best["plain loop"] = min(best["plain loop"], time.perf_counter() - t)
        t = time.perf_counter()
        acc = extract_and_rank(
            model,
            loader,
            num_classes=cfg["classes"],
            device=dev,
            amp=amp,
            shrinkage="oas",
            progress=False,
            return_accumulator=True,
        )[1]
        best["extract_and_rank"] = min(best["extract_and_rank"], time.perf_counter() - t)
        assert acc.n_samples == images, (acc.n_samples, images)
    best["loader alone"], resident = loader_alone(loader, dev)
    best["model alone"] = model_alone(model, resident, dev, amp, cfg["extract_batches"])
    out["images"] = images
    out["seconds"] = best
    out["images_per_s"] = {k: images / v for k, v in best.items()}
    out["overhead"] = best["extract_and_rank"] / best["plain loop"] - 1.0
    # What bounds the plain loop: if the loader alone is as slow, the overhead measures
    # nothing of extract_and_rank's cost.
    out["bound_by"] = "loader" if best["loader alone"] > best["model alone"] else "model"
    out["plain_over_bound"] = best["plain loop"] / max(best["loader alone"], best["model alone"])
    # extract_and_rank's time includes its final solve, timed here on its statistics.
    t = time.perf_counter()
    acc.rank("oas")
    out["rank_solve_s"] = time.perf_counter() - t


# --------------------------------------------------------------------------- 2. fine-tuning
def warmup_cosine(warmup: int, total: int):
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1.0 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))

    return factor


def hand_finetune(model: Normalised, loader, dev, classes: int, amp: bool) -> None:
    """AdamW with warm-up then cosine decay, bf16 autocast, a fresh linear head."""
    head = torch.nn.Linear(model.vit.num_features, classes).to(dev)
    params = [*model.parameters(), *head.parameters()]
    opt = torch.optim.AdamW(params, lr=5e-4, weight_decay=0.05)
    steps = len(loader)
    # No warm-up, as finetune(warmup_epochs=0) below: the schedule's cost is the same.
    sched = torch.optim.lr_scheduler.LambdaLR(opt, warmup_cosine(0, steps))
    model.train()
    for x, y in loader:
        x, y = x.to(dev, non_blocking=True), y.to(dev, non_blocking=True)
        with autocast(dev, amp):
            logits = head(avg_pool(model, model(x)))
        loss = F.cross_entropy(logits.float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    sync(dev)


def ours_finetune(model, loader, dev, classes: int, amp: bool) -> None:
    """finetune on a Classifier built here, as the hand-written loop builds its head: a
    backbone alone would first read a batch to learn the feature width, which on a
    loader with persistent workers also drains what they prefetched."""
    clf = Classifier(model, model.vit.num_features, classes, pooling="avg").to(dev)
    finetune(
        clf,
        loader,
        num_classes=classes,
        epochs=1,
        warmup_epochs=0,
        device=dev,
        amp=amp,
        progress=False,
    )
    sync(dev)


class SyncCheckedLoader(DataLoader):
    """A DataLoader whose batches after the first run under set_sync_debug_mode("error"): a
    step that synchronises with the host raises. The mode is reset when the batches end,
    before finetune reads the epoch's loss. (A DataLoader still: finetune treats other
    iterables of pinned batches with more care, see device_batches.)"""

    def __iter__(self):
        for i, batch in enumerate(super().__iter__()):
            if i == 1:
                torch.cuda.set_sync_debug_mode("error")
            yield batch
        torch.cuda.set_sync_debug_mode("default")


def check_finetuning(model, loaders, dev, cfg, amp: bool, out: dict) -> None:
    short, long_ = loaders
    steps = (len(short), len(long_))
    runs = {"hand-written loop": hand_finetune, "finetune": ours_finetune}
    for fn in runs.values():  # warm-up
        fn(model, short, dev, cfg["classes"], amp)
    best = {name: [math.inf, math.inf] for name in runs}
    for _ in range(cfg["rounds"]):
        for name, fn in runs.items():
            for j, loader in enumerate((short, long_)):
                t = time.perf_counter()
                fn(model, loader, dev, cfg["classes"], amp)
                best[name][j] = min(best[name][j], time.perf_counter() - t)
    rate = {name: (steps[1] - steps[0]) / (t[1] - t[0]) for name, t in best.items()}
    out["steps"] = list(steps)
    out["seconds"] = best
    out["steps_per_s"] = rate
    out["relative_throughput"] = rate["finetune"] / rate["hand-written loop"]
    checked = make_loader(6, cfg, 0, dev.type == "cuda", seed=1, kind=SyncCheckedLoader)
    out["sync_check"] = sync_check(model, checked, dev, cfg, amp)


def sync_check(model, loader, dev, cfg, amp: bool) -> dict:
    """finetune's steps 2 to 6 under set_sync_debug_mode("error"), on a DataLoader. The
    mode sees PyTorch's synchronising calls (item, bool, non_blocking=False copies to the
    host, synchronize); it does not see an event's wait."""
    if dev.type != "cuda":
        return {"ran": False, "why": "set_sync_debug_mode needs CUDA"}
    try:
        ours_finetune(model, loader, dev, cfg["classes"], amp)
    except RuntimeError as exc:
        if "synchroniz" not in str(exc):
            raise  # not the sync check's error (out of memory, say): the part fails
        return {"ran": True, "steps": len(loader) - 1, "host_syncs": True, "error": str(exc)}
    finally:
        torch.cuda.set_sync_debug_mode("default")
    return {"ran": True, "steps": len(loader) - 1, "host_syncs": False}


# --------------------------------------------------------------------------- 3. correctness
def float64_statistics(X: np.ndarray, y: np.ndarray, classes: int):
    """Class means and the within-class scatter, two-pass in float64."""
    X = X.astype(np.float64)
    means = np.stack([X[y == c].mean(0) for c in range(classes)])
    centred = X - means[y]
    return means, centred.T @ centred


def relative(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).max() / np.abs(b).max())


def check_correctness(model, loader, dev, cfg, out: dict) -> None:
    kept: list[torch.Tensor] = []

    def pool_and_keep(tokens: torch.Tensor) -> torch.Tensor:
        feats = avg_pool(model, tokens)
        kept.append(feats.detach().clone())
        return feats

    ranking, acc = extract_and_rank(
        model,
        loader,
        num_classes=cfg["classes"],
        pooling=pool_and_keep,
        device=dev,
        amp=False,
        shrinkage="oas",
        progress=False,
        return_accumulator=True,
    )
    X = torch.cat(kept).float().cpu().numpy()
    y = np.concatenate([np.asarray(b[1]) for b in loader])
    assert X.dtype == np.float32 and len(X) == len(y) == acc.n_samples
    cpu = lrf.ScatterAccumulator(X.shape[1], cfg["classes"]).update(X, y)
    cpu_ranking = cpu.rank("oas")
    means, within = float64_statistics(X, y, cfg["classes"])
    out["samples"] = int(len(X))
    out["order_extract_and_rank"] = ranking.order.tolist()
    out["order_cpu_engine"] = cpu_ranking.order.tolist()
    out["orders_equal"] = bool(np.array_equal(ranking.order, cpu_ranking.order))
    out["relative_difference"] = {
        "class_means, extract_and_rank vs cpu engine": relative(acc.class_means, cpu.class_means),
        "within_scatter, extract_and_rank vs cpu engine": relative(
            acc.within_scatter(), cpu.within_scatter()
        ),
        "centroids, extract_and_rank vs cpu engine": relative(
            ranking.centroids, cpu_ranking.centroids
        ),
        "class_means, extract_and_rank vs float64 two-pass": relative(acc.class_means, means),
        "within_scatter, extract_and_rank vs float64 two-pass": relative(
            acc.within_scatter(), within
        ),
    }


# --------------------------------------------------------------------------- 5. reused buffers
class RefilledPinned:
    """A producer that refills one pinned buffer in place for every batch, as some fast
    loaders do: every pixel of batch b is b % classes. Its targets (b % classes) are new
    tensors, pinned too, so that both copies are asynchronous (a pageable copy may wait
    for the stream and hide the race)."""

    def __init__(self, n_batches: int, cfg: dict, pin: bool):
        self.n, self.classes = n_batches, cfg["classes"]
        shape = (cfg["batch"], 3, cfg["size"], cfg["size"])
        self.buffer = torch.empty(shape, dtype=torch.uint8, pin_memory=pin)

    def __len__(self) -> int:
        return self.n

    def __iter__(self):
        for b in range(self.n):
            self.buffer.fill_(b % self.classes)
            targets = torch.full((self.buffer.shape[0],), b % self.classes)
            yield self.buffer, targets.pin_memory() if self.buffer.is_pinned() else targets


class PixelClassifier(torch.nn.Module):
    """Logits that name an image's first pixel, after matrix products that keep the device
    busy for a while (so that the host, not waiting, would run ahead of the copies)."""

    def __init__(self, classes: int, work: int):
        super().__init__()
        self.classes = classes
        self.weight = torch.nn.Parameter(torch.randn(work, work) / math.sqrt(work))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.weight
        for _ in range(8):
            h = h @ self.weight
        logits = F.one_hot(x[:, 0, 0, 0].long(), self.classes).float() * 10.0
        return logits + 0.0 * h[0, 0]


def check_refilled_buffer(dev, cfg, out: dict) -> None:
    """evaluate over a producer that refills its pinned buffer: every batch must be scored
    on its own pixels (accuracy 1), not on the next batch's."""
    from labelranker_fast.torch import evaluate

    model = PixelClassifier(cfg["classes"], 64 if dev.type == "cpu" else 4096).to(dev)
    loader = RefilledPinned(cfg["extract_batches"], cfg, pin=dev.type == "cuda")
    res = evaluate(model, loader, num_classes=cfg["classes"], device=dev, amp=False)
    out["batches"] = len(loader)
    out["asynchronous_copies"] = dev.type == "cuda"
    out["accuracy"] = res["accuracy"]
    # The same loop without the wait: below 1 shows that the race was there to be lost.
    out["accuracy_without_wait"] = accuracy_without_wait(model, loader, dev)


def accuracy_without_wait(model, loader, dev) -> float:
    hits, count = torch.zeros((), device=dev, dtype=torch.long), 0
    with torch.no_grad():
        for x, y in loader:
            x, y = x.to(dev, non_blocking=True), y.to(dev, non_blocking=True)
            hits += (model(x).argmax(1) == y).sum()
            count += y.shape[0]
    return float(hits) / count


# --------------------------------------------------------------------------- main
def environment(dev: torch.device, smoke: bool, workers: int) -> dict:
    import timm

    env = {
        "date": time.strftime("%Y-%m-%d"),
        "mode": "smoke" if smoke else "full",
        "device": str(dev),
        "torch": torch.__version__,
        "timm": timm.__version__,
        "labelranker_fast": lrf.__version__,
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "loader_workers": workers,
        "dev_shm_free_bytes": shared_memory_bytes(),
    }
    if dev.type == "cuda":
        env["gpu"] = torch.cuda.get_device_name(dev)
        env["cuda"] = torch.version.cuda
        env["bf16_supported"] = torch.cuda.is_bf16_supported()
    return env


def shared_memory_bytes() -> int | None:
    """Free bytes of /dev/shm, through which DataLoader workers hand over their batches:
    None for a tmpfs without a size limit (it reports no blocks), 0 without /dev/shm."""
    try:
        st = os.statvfs("/dev/shm")
    except OSError:
        return 0
    if st.f_blocks == 0:
        return None
    return st.f_bavail * st.f_frsize


def loader_workers(cfg: dict, wanted: int) -> int:
    """As many workers as /dev/shm holds the batches of (prefetch 4 each, twice over for
    the batches in the main process); 0 (the main process loads) if it holds none."""
    free = shared_memory_bytes()
    if free is None:
        return wanted
    batch_bytes = cfg["batch"] * 3 * cfg["size"] ** 2
    return int(min(wanted, free // (8 * batch_bytes)))


def run(smoke: bool, device: str, workers: int | None, save=None) -> dict:
    dev = torch.device(device)
    if not smoke and dev.type != "cuda":
        raise SystemExit("the full check needs a CUDA device (--smoke runs on the CPU)")
    cfg = SMOKE if smoke else FULL
    if workers is None:
        workers = 1 if smoke else loader_workers(cfg, max(1, min(12, (os.cpu_count() or 2) - 2)))
    amp = dev.type == "cuda"
    pin = dev.type == "cuda"
    out: dict = {"environment": environment(dev, smoke, workers), "config": cfg}
    save = save or (lambda out: None)
    keep_going = not smoke
    t0 = time.perf_counter()
    model = make_model(smoke).to(dev)
    with part("extraction", dev, out, keep_going) as entry:
        loader = make_loader(cfg["extract_batches"], cfg, workers, pin)
        check_extraction(model, loader, dev, cfg, amp, entry)
    loader = None  # its persistent workers end here, not beside the next part's
    save(out)
    with part("finetuning", dev, out, keep_going) as entry:
        loaders = [make_loader(s, cfg, workers, pin, seed=1) for s in cfg["steps"]]
        check_finetuning(model, loaders, dev, cfg, amp, entry)
    loaders = []
    save(out)
    model = make_model(smoke, seed=1).to(dev)  # fresh weights (fine-tuning moved them)
    with part("correctness", dev, out, keep_going) as entry:
        loader = make_loader(cfg["extract_batches"], cfg, 0, pin, seed=2)
        check_correctness(model, loader, dev, cfg, entry)
    save(out)
    with part("refilled_buffer", dev, out, keep_going) as entry:
        check_refilled_buffer(dev, cfg, entry)
    out["wall_s"] = time.perf_counter() - t0
    save(out)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--smoke", action="store_true", help="tiny model on the CPU, in seconds")
    ap.add_argument("--device", default=None, help="default: cuda, or cpu with --smoke")
    ap.add_argument("--workers", type=int, default=None, help="DataLoader workers")
    ap.add_argument("--out", default=None, help="JSON path (full: bench/results/gpu_check.json)")
    args = ap.parse_args(argv)
    device = args.device or ("cpu" if args.smoke else "cuda")
    path = args.out
    if path is None and not args.smoke:
        path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "gpu_check.json")

    def save(out: dict) -> None:  # after every part: a later crash keeps what ran
        if path:
            with open(path, "w") as f:
                f.write(json.dumps(out, indent=1) + "\n")

    out = run(args.smoke, device, args.workers, save)
    print(json.dumps(out, indent=1))
    failed = [name for name, entry in out["parts"].items() if "error" in entry]
    return 1 if failed else 0


if __name__ == "__main__":
    rc = main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(rc)  # the JSON is written: no teardown of loader workers to hang on
