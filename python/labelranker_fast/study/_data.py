"""Data sets for the study: images as a float tensor (N, C, H, W) in [0, 1] and labels.

- ``"digits"``: scikit-learn's bundled handwritten digits (1,797 8x8 images, 10 classes,
  offline);
- a path: an image folder (one sub-folder per class, read with Pillow, resized);
- a torch dataset of (image tensor, label) pairs, passed from Python.

The split is fixed and stratified: the same seed gives the same train/test rows.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["ImageData", "load_data", "stratified_split"]


@dataclass
class ImageData:
    name: str
    images: torch.Tensor  # (N, C, H, W) float32 in [0, 1]
    labels: torch.Tensor  # (N,) int64 class indices
    class_names: list

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


def _digits() -> ImageData:
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    images = torch.from_numpy(X.reshape(-1, 1, 8, 8) / 16.0).float()
    return ImageData("digits", images, torch.from_numpy(y).long(), [str(d) for d in range(10)])


def _image_folder(root: str, size: int) -> ImageData:
    from PIL import Image

    names = sorted(e.name for e in os.scandir(root) if e.is_dir())
    if len(names) < 2:
        raise ValueError(f"{root!r} must hold one sub-folder per class (found {len(names)})")
    images, labels = [], []
    for k, name in enumerate(names):
        for entry in sorted(os.scandir(os.path.join(root, name)), key=lambda e: e.name):
            if entry.is_file():
                with Image.open(entry.path) as img:
                    arr = np.asarray(img.convert("RGB").resize((size, size)), dtype=np.float32)
                images.append(torch.from_numpy(arr / 255.0).permute(2, 0, 1))
                labels.append(k)
    return ImageData(
        os.path.basename(os.path.normpath(root)), torch.stack(images), torch.tensor(labels), names
    )


def _torch_dataset(dataset) -> ImageData:
    xs, ys = zip(*(dataset[i][:2] for i in range(len(dataset))))
    images = torch.stack([torch.as_tensor(x, dtype=torch.float32) for x in xs])
    labels = torch.as_tensor([int(y) for y in ys])
    classes = getattr(dataset, "classes", None) or [str(k) for k in range(int(labels.max()) + 1)]
    return ImageData(type(dataset).__name__, images, labels, list(classes))


def load_data(data="digits", image_size: int = 32) -> ImageData:
    """The study's data set (see the module docstring)."""
    if isinstance(data, ImageData):
        return data
    if data == "digits":
        out = _digits()
    elif isinstance(data, (str, os.PathLike)):
        if not os.path.isdir(data):
            raise ValueError(f"data must be 'digits', an image folder or a dataset, got {data!r}")
        out = _image_folder(os.fspath(data), image_size)
    elif hasattr(data, "__getitem__") and hasattr(data, "__len__"):
        out = _torch_dataset(data)
    else:
        raise TypeError(
            f"data must be 'digits', a folder path or a torch dataset, got {type(data).__name__}"
        )
    if out.images.ndim != 4 or out.images.shape[2] != out.images.shape[3]:
        raise ValueError(f"images must be square (N, C, H, W), got {tuple(out.images.shape)}")
    if out.num_classes < 2:
        raise ValueError("the data set must have at least 2 classes")
    return out


def stratified_split(labels: torch.Tensor, test_fraction: float = 0.3, seed: int = 0):
    """(train indices, test indices): each class split in the same proportion."""
    rng = np.random.default_rng(seed)
    y = labels.numpy()
    train, test = [], []
    for k in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == k))
        n_test = max(1, int(round(test_fraction * idx.size)))
        test.append(idx[:n_test])
        train.append(idx[n_test:])
    return torch.from_numpy(np.sort(np.concatenate(train))), torch.from_numpy(
        np.sort(np.concatenate(test))
    )
