"""Makes docs/ranking_plot.png, the README's example of ``ranking.plot``: scikit-learn's
digits (raw 8x8 pixels as features), shrinkage "oas", stability over 5 folds.

    python docs/make_ranking_plot.py
"""

import os

import matplotlib

matplotlib.use("Agg")
from sklearn.datasets import load_digits  # noqa: E402

import labelranker_fast as lrf  # noqa: E402

X, y = load_digits(return_X_y=True)
ranking = lrf.rank_labels(X, y, shrinkage="oas", folds=5)
ranking = ranking.with_names([f"digit {d}" for d in range(10)])
ax = ranking.plot()
ax.set_title(f"digits: mean fold Kendall tau {ranking.stability.kendall_tau:.2f}")
out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "ranking_plot.png")
ax.figure.savefig(out, dpi=90, bbox_inches="tight")
print(out, ranking.ranked_names, ranking.stability.kendall_tau)
