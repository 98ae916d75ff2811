"""XLA smoke run: extract_and_rank and two fine-tuning epochs of a tiny timm ViT on
torch_xla's CPU device (PJRT_DEVICE=CPU). Run by bench/xla_cpu_smoke.sh in its own
environment (torch 2.9.0 + torch_xla 2.9.0); prints what it did and how long it took."""

import json
import os
import time

import numpy as np
import timm
import torch
from sklearn.datasets import load_digits
from torch.utils.data import DataLoader, TensorDataset

from labelranker_fast.torch import extract_and_rank, finetune, pick_device, predict

assert os.environ.get("PJRT_DEVICE") == "CPU", "run with PJRT_DEVICE=CPU"
device = pick_device("auto")
print(f"torch {torch.__version__}, timm {timm.__version__}, device {device}")
assert device.type == "xla", "device='auto' should pick the XLA device"

# Real images offline: scikit-learn's digits, 8x8 upsampled to 32x32, three channels.
X, y = load_digits(return_X_y=True)
images = torch.from_numpy(X / 16.0).float().reshape(-1, 1, 8, 8)
images = torch.nn.functional.interpolate(images, size=32, mode="nearest").repeat(1, 3, 1, 1)
labels = torch.from_numpy(y)
perm = torch.from_numpy(np.random.default_rng(0).permutation(len(y)))
train, test = perm[:1400], perm[1400:]


def loader(idx, shuffle):
    return DataLoader(
        TensorDataset(images[idx], labels[idx]),
        batch_size=64,
        shuffle=shuffle,
        drop_last=shuffle,
        generator=torch.Generator().manual_seed(0),
    )


torch.manual_seed(0)
model = timm.create_model(
    "vit_tiny_patch16_224",
    pretrained=False,
    img_size=32,
    patch_size=8,
    embed_dim=96,
    depth=4,
    num_heads=3,
    num_classes=0,
)
t = time.perf_counter()
ranking = extract_and_rank(
    model, loader(train, False), num_classes=10, shrinkage="oas", device="auto", progress=False
)
print(
    f"extract_and_rank: {time.perf_counter() - t:.1f} s, order {ranking.order.tolist()}, "
    f"eigenvalue {ranking.eigenvalues[0]:.4f}"
)

t = time.perf_counter()
result = finetune(
    model,
    loader(train, True),
    num_classes=10,
    ranking=ranking,
    val_loader=loader(test, False),
    epochs=2,
    warmup_epochs=1,
    lr=1e-3,
    device="auto",
    progress=False,
)
print(f"finetune, 2 epochs: {time.perf_counter() - t:.1f} s")
for h in result.history:
    print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in h.items()}))
pred = predict(result.model, loader(test, False), ranking=ranking, device="auto")
print(
    f"test accuracy from predictions mapped back to digits: {np.mean(pred == y[test.numpy()]):.3f}"
)
