"""Confidence calibration: temperature scaling fit on validation logits (Guo et al. 2017), and the
scores that say how far probabilities are from frequencies: ECE (15 equal-width confidence bins),
negative log-likelihood and the multi-class Brier score; plus a reliability diagram.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from attribench.core.io import save_png

ECE_BINS = 15


def fit_temperature(logits: np.ndarray, labels: np.ndarray, max_iter: int = 200) -> float:
    """The T > 0 minimising the NLL of softmax(logits / T) on (validation) labels. Optimised in
    log T so T stays positive; argmax, hence accuracy, never changes."""
    z = torch.as_tensor(np.asarray(logits), dtype=torch.float64)
    y = torch.as_tensor(np.asarray(labels), dtype=torch.long)
    if len(z) == 0:
        raise ValueError("fit_temperature needs at least one validation logit row")
    log_t = torch.zeros((), dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([log_t], lr=0.1, max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(z / log_t.exp(), y)
        loss.backward()
        return loss

    opt.step(closure)
    # Separable validation data drives T -> 0 (ever sharper); clamp to a sane range.
    return float(np.clip(log_t.exp().item(), 1e-2, 1e2))


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    return F.softmax(torch.as_tensor(np.asarray(logits), dtype=torch.float64) / temperature, dim=1).numpy()


def ece(probs: np.ndarray, labels: np.ndarray, n_bins: int = ECE_BINS) -> float:
    """Expected calibration error of the top-1 confidence: sum over equal-width bins of
    (bin share) x |accuracy - mean confidence|."""
    conf, correct = probs.max(1), (probs.argmax(1) == labels)
    bins = np.minimum((conf * n_bins).astype(int), n_bins - 1)  # confidence 1.0 goes in the last bin
    total = 0.0
    for b in np.unique(bins):
        m = bins == b
        total += m.mean() * abs(correct[m].mean() - conf[m].mean())
    return float(total)


def nll(probs: np.ndarray, labels: np.ndarray) -> float:
    return float(-np.log(np.clip(probs[np.arange(len(labels)), labels], 1e-12, None)).mean())


def brier(probs: np.ndarray, labels: np.ndarray) -> float:
    """Multi-class Brier score: mean over images of sum_k (p_k - 1[y = k])^2 (0 best, 2 worst)."""
    onehot = np.eye(probs.shape[1])[labels]
    return float(((probs - onehot) ** 2).sum(1).mean())


def calibration_scores(probs: np.ndarray, labels: np.ndarray) -> dict:
    return {"ece": ece(probs, labels), "nll": nll(probs, labels), "brier": brier(probs, labels), "n": len(labels)}


def reliability_bins(probs: np.ndarray, labels: np.ndarray, n_bins: int = ECE_BINS) -> list[dict]:
    """Per non-empty bin: its range, image count, mean confidence and accuracy (the diagram's bars)."""
    conf, correct = probs.max(1), (probs.argmax(1) == labels)
    bins = np.minimum((conf * n_bins).astype(int), n_bins - 1)
    return [
        {
            "lo": b / n_bins,
            "hi": (b + 1) / n_bins,
            "n": int((bins == b).sum()),
            "confidence": float(conf[bins == b].mean()),
            "accuracy": float(correct[bins == b].mean()),
        }
        for b in np.unique(bins)
    ]


def plot_reliability(curves: dict[str, tuple[np.ndarray, np.ndarray]], path: str | Path, title: str) -> None:
    """Reliability diagram: accuracy per confidence bin for each named (probs, labels), e.g. before /
    after temperature scaling; the diagonal is perfect calibration."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.2, 4.2))
    ax.plot([0, 1], [0, 1], ls="--", c="grey", lw=1, label="perfect")
    for name, (probs, labels) in curves.items():
        rows = reliability_bins(probs, labels)
        ax.plot(
            [r["confidence"] for r in rows],
            [r["accuracy"] for r in rows],
            marker="o",
            ms=3,
            label=f"{name} (ECE {100 * ece(probs, labels):.1f}%)",
        )
    ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="confidence (top-1 probability)", ylabel="accuracy", title=title)
    ax.title.set_fontsize(8)
    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    save_png(fig, path, dpi=110)
