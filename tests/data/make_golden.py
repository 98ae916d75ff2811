"""Writes the golden files of tests/test_golden.py (format/state version 1).

Run once, with the version whose formats these files freeze:

    python tests/data/make_golden.py

Never regenerate them to make a test pass: every later version must keep loading the
committed files unchanged (tests/test_golden.py checks their SHA-256 too).
"""

from __future__ import annotations

import pathlib

import numpy as np
from sklearn.datasets import load_iris, load_wine  # bundled with scikit-learn, no download

import labelranker_fast as lrf

HERE = pathlib.Path(__file__).resolve().parent
WINE_NAMES = np.array(["barolo", "grignolino", "barbera"])  # wine's three cultivars


def accumulator_inputs():
    """Iris as float64, with weights that are exact in binary (0.25 .. 1.75)."""
    X, y = load_iris(return_X_y=True)
    w = 0.25 + 0.25 * (np.arange(len(X)) % 7)
    return X.astype(np.float64), y.astype(np.int64), w


def ranking_inputs():
    """Wine, with string labels."""
    X, y = load_wine(return_X_y=True)
    return X.astype(np.float64), WINE_NAMES[y]


def main():
    X, y, w = accumulator_inputs()
    acc = lrf.ScatterAccumulator(X.shape[1], 3, n_threads=1).update(X, y, sample_weight=w)
    acc.save(HERE / "accumulator_v1.npz")
    X, labels = ranking_inputs()
    lrf.rank_labels(X, labels, n_components=2).to_json(HERE / "ranking_v1.json")


if __name__ == "__main__":
    main()
