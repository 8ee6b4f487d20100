"""Unknown-generator (open-set) scores for a closed-set attributor, their threshold, their metrics.

Scores, higher = more likely an unknown generator:
  msp          1 - maximum softmax probability (Hendrycks & Gimpel 2017)
  energy       -logsumexp(logits) (Liu et al. 2020)
  mahalanobis  min over known classes of the Mahalanobis distance of the penultimate features (input of
               the classifier's last Linear layer) to the class mean, shared Ledoit-Wolf covariance fit
               on training features (Lee et al. 2018)
The operating threshold keeps `tpr` (95%) of known-class validation images. Metrics on a test set
mixing known and unknown generators: AUROC (unknown = positive), TPR at 5% FPR, OSCR (Dhamija et
al. 2018: area under correct-classification rate of knowns vs false-accept rate of unknowns).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

SCORES = ("msp", "energy", "mahalanobis")


def head_layer(model: torch.nn.Module, num_classes: int) -> torch.nn.Linear | None:
    """The classifier: the last nn.Linear with `num_classes` outputs (None if the model has none,
    e.g. a prototype classifier; then the feature-space score is not available)."""
    heads = [m for m in model.modules() if isinstance(m, torch.nn.Linear) and m.out_features == num_classes]
    return heads[-1] if heads else None


@torch.inference_mode()
def logits_and_features(
    model: torch.nn.Module,
    x: torch.Tensor,
    batch_size: int,
    num_classes: int,
    prepare: Callable[[torch.Tensor], torch.Tensor],
    device: str = "cpu",
    text: torch.Tensor | None = None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Logits (n, C) and penultimate features (n, D) (None without a Linear head), batch by batch as
    training.loop.predict_batches does, so softmax(logits) equals the recorded probabilities."""
    model.eval()
    head, feats, logits = head_layer(model, num_classes), [], []
    hook = head.register_forward_hook(lambda m, inp, out: feats.append(inp[0].detach().float().cpu())) if head else None
    try:
        for s in range(0, len(x), batch_size):
            args = [prepare(x[s : s + batch_size].to(device))]  # moved, then prepared: as predict_batches does
            if text is not None:
                args.append(text[s : s + batch_size].to(device))
            logits.append(model(*args).float().cpu())
    finally:
        if hook:
            hook.remove()
    z = torch.cat(logits).numpy() if logits else np.zeros((0, num_classes), np.float32)
    f = torch.cat([t.reshape(len(t), -1) for t in feats]).numpy() if feats and len(feats) == len(logits) else None
    return z, f


def probabilities(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """float32 softmax exactly as the training loop computes it (temperature 1: recorded predictions)."""
    z = torch.as_tensor(np.asarray(logits, dtype=np.float32))
    return F.softmax(z / temperature if temperature != 1.0 else z, dim=1).numpy()


def fit_mahalanobis(features: np.ndarray, labels: np.ndarray, num_classes: int) -> dict[str, torch.Tensor]:
    """Class means and the shared precision matrix (Ledoit-Wolf shrinkage: stable with few images
    per class and wide features), as float32 tensors to store in safetensors."""
    from sklearn.covariance import LedoitWolf

    means = np.stack(
        [
            features[labels == c].mean(0) if (labels == c).any() else np.full(features.shape[1], np.nan)
            for c in range(num_classes)
        ]
    )
    centred = features - means[labels]
    precision = LedoitWolf().fit(centred).precision_
    return {
        "means": torch.from_numpy(means.astype(np.float32)),
        "precision": torch.from_numpy(precision.astype(np.float32)),
    }


def mahalanobis(features: np.ndarray, stats: dict[str, torch.Tensor]) -> np.ndarray:
    f = torch.as_tensor(features, dtype=torch.float64)
    mu, p = stats["means"].double(), stats["precision"].double()
    d = f[:, None, :] - mu[None]  # (n, C, D)
    dist = torch.einsum("ncd,de,nce->nc", d, p, d)
    return torch.nan_to_num(dist, nan=float("inf")).min(1).values.numpy()


def unknown_scores(logits: np.ndarray, features: np.ndarray | None, stats: dict | None) -> dict[str, np.ndarray]:
    z = torch.as_tensor(np.asarray(logits), dtype=torch.float64)
    out = {"msp": 1.0 - F.softmax(z, 1).max(1).values.numpy(), "energy": -torch.logsumexp(z, 1).numpy()}
    if features is not None and stats is not None:
        out["mahalanobis"] = mahalanobis(features, stats)
    return out


def fit_thresholds(val_scores: dict[str, np.ndarray], tpr: float = 0.95) -> dict[str, float]:
    """Per score, the value below which `tpr` of known-class validation images fall (accepted as known)."""
    return {k: float(np.quantile(v, tpr)) for k, v in val_scores.items()}


def tpr_at_fpr(score: np.ndarray, is_unknown: np.ndarray, fpr: float = 0.05) -> float:
    """Share of unknowns flagged when the threshold flags `fpr` of the knowns."""
    thr = np.quantile(score[~is_unknown], 1.0 - fpr)
    return float((score[is_unknown] > thr).mean())


def oscr(score: np.ndarray, is_unknown: np.ndarray, correct: np.ndarray) -> float:
    """Area under (false-accept rate of unknowns, correct-classification rate of knowns) as the
    acceptance threshold sweeps from strict to lax; 1 is perfect, closed-set accuracy bounds it."""
    order = np.argsort(score, kind="stable")  # most confidently known first
    unk, ok = is_unknown[order], (correct & ~is_unknown)[order]
    ccr = np.concatenate([[0.0], np.cumsum(ok) / max(1, (~is_unknown).sum())])
    far = np.concatenate([[0.0], np.cumsum(unk) / max(1, unk.sum())])
    return float(np.trapezoid(ccr, far))


def openset_metrics(score: np.ndarray, is_unknown: np.ndarray, correct: np.ndarray) -> dict[str, float]:
    from sklearn.metrics import roc_auc_score

    return {
        "auroc": float(roc_auc_score(is_unknown, score)),
        "oscr": oscr(score, is_unknown, correct),
        "tpr_at_5fpr": tpr_at_fpr(score, is_unknown),
    }


def bootstrap_openset(
    score: np.ndarray, is_unknown: np.ndarray, correct: np.ndarray, n_boot: int = 1000, seed: int = 0
) -> dict[str, tuple[float, float]]:
    """95% percentile CIs of openset_metrics, resampling knowns and unknowns separately (both present)."""
    rng = np.random.default_rng(seed)
    kn, un = np.flatnonzero(~is_unknown), np.flatnonzero(is_unknown)
    draws = []
    for _ in range(n_boot):
        i = np.concatenate([rng.choice(kn, len(kn)), rng.choice(un, len(un))])
        draws.append(openset_metrics(score[i], is_unknown[i], correct[i]))
    return {
        k: (float(np.percentile([d[k] for d in draws], 2.5)), float(np.percentile([d[k] for d in draws], 97.5)))
        for k in draws[0]
    }
