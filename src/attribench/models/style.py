"""Fig. 9 (right) of Xu et al. 2024: how Gram-matrix values alone separate generators, with no training.

One curve per class, on a log-scaled x axis as in the paper, of either
- `values="image_mean"` (default): each image's average Gram value (the mean of its Gram vector), or
- `values="class_mean"`: the entries of the class's Gram matrix averaged over its images, which is
  the paper's exact recipe ("we average the Gram matrix from a single layer ... across 450 images per
  generator, and we visualize the density distribution of its values").

A Gaussian KDE is fitted in log10 space, so the curve is smooth on the log axis. Values <= 0 have no
logarithm; they occur because EfficientNet stage outputs, unlike VGG's post-ReLU maps, are signed
(gram features with `rectify` avoid them). They are left out and counted in the legend.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from scipy.stats import gaussian_kde  # noqa: E402

from attribench.core.io import save_png  # noqa: E402


def gram_density_plot(gram_vectors_by_class: dict[str, np.ndarray], path: str | Path,
                      values: str = "image_mean", title: str | None = None) -> Path:
    """gram_vectors_by_class: class -> (n_images, gram size) array. Writes a PNG to `path`."""
    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=120)
    axis = {"image_mean": 1, "class_mean": 0}[values]  # mean over a row (image) or over images
    means = {c: np.asarray(v, dtype=np.float64).reshape(len(v), -1).mean(axis=axis) for c, v in gram_vectors_by_class.items()}
    positive = np.concatenate([m[m > 0] for m in means.values()] or [np.zeros(0)])
    lo, hi = (np.log10(positive.min()), np.log10(positive.max())) if len(positive) else (-1.0, 0.0)
    pad = max(hi - lo, 1e-3) * 0.15
    grid = np.linspace(lo - pad, hi + pad, 400)
    for cls, m in means.items():
        logs, dropped = np.log10(m[m > 0]), int((m <= 0).sum())
        label = cls + (f" ({dropped} <= 0 left out)" if dropped else "")
        if len(np.unique(logs)) >= 2:
            # Density per unit log10(x): the area under each curve on the log axis is 1.
            ax.plot(10**grid, gaussian_kde(logs)(grid), label=label)
        elif len(logs):  # a KDE needs spread: mark the single value instead
            ax.axvline(10 ** logs[0], linestyle="--", label=label)
    ax.set_xscale("log")
    ax.set_xlabel("average Gram value (log scale)")
    ax.set_ylabel("density")
    ax.set_title(title or {"image_mean": "Average Gram value per image",
                           "class_mean": "Values of the class-averaged Gram matrix"}[values])
    ax.legend(fontsize="small")
    fig.tight_layout()
    path = Path(path)
    save_png(fig, path)
    return path
