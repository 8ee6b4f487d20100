"""Classification metrics for attributors: sklearn point estimates, bootstrap CI, confusion plot."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from attribench.core.io import atomic_path


def as_indices(y: Sequence, labels: Sequence[str]) -> np.ndarray:
    """Class indices from either label strings or integer indices into `labels`."""
    arr = np.asarray(y)
    if arr.dtype.kind in "iu":
        return arr.astype(np.int64)
    pos = {lab: i for i, lab in enumerate(labels)}
    return np.array([pos[v] for v in arr.tolist()], dtype=np.int64)


def classification_metrics(y_true: Sequence, y_pred: Sequence, labels: list[str]) -> dict:
    """Accuracy, macro P/R/F1, per-class accuracy and confusion matrix.

    Macro averages follow scikit-learn's default: over the classes present in y_true or y_pred
    (a class absent from the test set is not counted as a zero). Per-class accuracy is the
    recall of each class, None for a class with no test images (JSON has no NaN).
    """
    # scikit-learn loads here, not at import: reports are declared at Snakemake DAG time
    from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support

    t, p = as_indices(y_true, labels), as_indices(y_pred, labels)
    k = len(labels)
    prec, rec, f1, _ = precision_recall_fscore_support(t, p, average="macro", zero_division=0)
    cm = confusion_matrix(t, p, labels=list(range(k)))
    support = cm.sum(axis=1)
    per_class = {lab: (float(cm[i, i] / support[i]) if support[i] else None) for i, lab in enumerate(labels)}
    return {
        "accuracy": float(accuracy_score(t, p)),
        "macro_precision": float(prec),
        "macro_recall": float(rec),
        "macro_f1": float(f1),
        "per_class_accuracy": per_class,
        "confusion_matrix": cm.tolist(),
        "n": int(len(t)),
    }


def bootstrap_ci(
    y_true: Sequence, y_pred: Sequence, n_boot: int = 1000, alpha: float = 0.05, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap CI of accuracy, resampling test images with replacement."""
    correct = np.asarray(y_true) == np.asarray(y_pred)
    n = len(correct)
    if n == 0:
        return (float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    # Resample in row chunks so memory stays ~10M indices however large the test set is.
    rows = max(1, 10_000_000 // n)
    accs = np.concatenate(
        [
            correct[rng.integers(0, n, size=(min(rows, n_boot - s), n), dtype=np.int64)].mean(axis=1)
            for s in range(0, n_boot, rows)
        ]
    )
    lo, hi = np.quantile(accs, [alpha / 2, 1 - alpha / 2])
    return float(lo), float(hi)


def plot_confusion(cm: Sequence[Sequence[int]], labels: Sequence[str], path: str | Path, title: str) -> Path:
    """Confusion matrix PNG: rows true, columns predicted, counts in cells, row-normalised colours."""
    # A bare Figure renders with Agg and leaves pyplot's global backend/state alone.
    from matplotlib.figure import Figure

    cm = np.asarray(cm)
    k = len(labels)
    # Colour by row share so small classes are as readable as large ones; the text shows counts.
    share = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    side = max(4.0, 0.6 * k + 2)
    fig = Figure(figsize=(side, side))
    ax = fig.subplots()
    ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(k), labels, rotation=45, ha="right")
    ax.set_yticks(range(k), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    for i in range(k):
        for j in range(k):
            ax.text(
                j,
                i,
                str(cm[i, j]),
                ha="center",
                va="center",
                fontsize=8,
                color="white" if share[i, j] > 0.5 else "black",
            )
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    return Path(path)
