"""Pontorno et al. 2024, "DeepFeatureX Net": three Base Models, each a CNN trained on a deliberately
unbalanced "class vs others" subset (DM, GAN, real), frozen and used as feature extractors; their
features are stacked as a 3-channel 1-D signal and classified by a small 1-D CNN, trained with
class-frequency-weighted cross-entropy.

Paper references: sec. 4.1 (base models, 90:10 subsets), 4.2 (architecture, Eq. 1 weighted CE).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import timm
import torch

from attribench.data.views import GROUPS, base_model_subsets  # noqa: F401  (the 90:10 subsets are a data view)
from attribench.models.attributors.registry import register
from attribench.training.hooks import register_loss


class DeepFeatureX(torch.nn.Module):
    """Sec. 4.2 / Fig. 1(b): phi(I) = phi_DM(I) (+) phi_GAN(I) (+) phi_REAL(I), stacked as a
    3-channel (B, 3, feature_dim) tensor -> five Conv1d (kernels 7, 5, 3, 3, 3; stride 1, padding 1)
    -> global average pooling -> linear classifier. The paper's text gives no channel widths or
    activations: `channels` defaults to (32, 64, 128, 128, 128) with ReLU between convolutions.
    Base models are frozen (requires_grad False, kept in eval mode so BatchNorm statistics stay too)."""

    KERNELS = (7, 5, 3, 3, 3)

    def __init__(
        self,
        base_models: Sequence[torch.nn.Module],
        feature_dim: int,
        num_classes: int,
        channels: Sequence[int] = (32, 64, 128, 128, 128),
    ):
        super().__init__()
        if len(base_models) != 3 or len(channels) != len(self.KERNELS):
            raise ValueError("DeepFeatureX takes 3 base models and 5 channel widths")
        self.bases = torch.nn.ModuleList(base_models)
        for p in self.bases.parameters():
            p.requires_grad_(False)
        layers, c_in = [], len(base_models)
        for k, c in zip(self.KERNELS, channels):
            layers += [torch.nn.Conv1d(c_in, c, k, stride=1, padding=1), torch.nn.ReLU()]
            c_in = c
        if feature_dim - sum(k - 3 for k in self.KERNELS) < 1:
            raise ValueError(f"feature_dim {feature_dim} is too short for kernels {self.KERNELS} with padding 1")
        self.head = torch.nn.Sequential(
            *layers, torch.nn.AdaptiveAvgPool1d(1), torch.nn.Flatten(), torch.nn.Linear(c_in, num_classes)
        )
        self.feature_dim = feature_dim
        self.bases.eval()

    def train(self, mode: bool = True) -> "DeepFeatureX":
        super().train(mode)
        self.bases.eval()  # frozen: never update BatchNorm running statistics
        return self

    def features(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return torch.stack([m(x).flatten(1) for m in self.bases], 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def _base(spec: dict, run_dir: str | None) -> torch.nn.Module:
    """One base model without its binary classifier ("last linear layer removed"): a fresh timm
    backbone, or the backbone of a trained timm_scratch run (a 2-class [c, "others"] train_run)."""
    if run_dir is not None:
        from attribench.training.loop import load_model  # lazy: train imports the attributor registry

        model, _ = load_model(run_dir)
        if hasattr(model, "reset_classifier"):  # a timm_scratch run
            model.reset_classifier(0)
        elif isinstance(getattr(model, "head", None), torch.nn.Linear) and hasattr(model, "backbone"):
            # a `finetune` run (pretrained backbone + linear head, e.g. the paper's ImageNet DenseNet)
            model.num_features = model.head.in_features
            model.head = torch.nn.Identity()
        else:
            raise ValueError(f"{run_dir}: cannot remove the classifier of a {type(model).__name__}")
        return model
    kwargs = dict(spec.get("model_kwargs") or {})
    if kwargs.pop("pretrained", False):
        raise ValueError("weights are never downloaded: pretrained must be false")
    return timm.create_model(spec.get("base_model", "densenet121"), pretrained=False, num_classes=0, **kwargs)


@register("deepfeaturex")
def build(spec: dict, num_classes: int) -> torch.nn.Module:
    """spec: base_model (timm name, default densenet121 as in sec. 5.2), model_kwargs, channels,
    base_runs {dm, gan, real: run dir} to start from trained base models. A reloaded checkpoint
    carries the base weights itself, so base_runs only matter when a run starts."""
    runs = spec.get("base_runs") or {}
    bases = [_base(spec, runs.get(g)) for g in GROUPS]
    dims = {m.num_features for m in bases}
    if len(dims) != 1:
        raise ValueError(f"base models must share a feature size; got {sorted(dims)}")
    return DeepFeatureX(bases, dims.pop(), num_classes, spec.get("channels", (32, 64, 128, 128, 128)))


def class_weights(labels, num_classes: int) -> torch.Tensor:
    """w_c = 1 / (#images of class c), as Eq. 1's definition states: not normalised. A class with
    no images gets weight 0 (it never appears in the loss anyway)."""
    counts = torch.bincount(torch.as_tensor(np.asarray(labels), dtype=torch.long), minlength=num_classes).double()
    return torch.where(counts > 0, 1.0 / counts.clamp_min(1), 0.0).float()


def weighted_cross_entropy(logits: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Eq. 1: -1/N sum_i w_{y_i} log p_{i,y_i}. Divides by N, unlike F.cross_entropy(weight=...),
    whose mean divides by sum_i w_{y_i}; the two differ only by a per-batch scale."""
    logp = torch.log_softmax(logits, 1).gather(1, labels[:, None])[:, 0]
    return -(weights.to(logits)[labels] * logp).mean()


@register_loss("weighted_ce")
def weighted_ce_loss(train_labels, num_classes: int):
    """Training hook (`training.loss: weighted_ce`): Eq. 1 with w_c = 1 / (#training images of c),
    counted once on the run's training labels."""
    weights = class_weights(train_labels, num_classes)
    loss = lambda logits, y: weighted_cross_entropy(logits, y, weights)  # noqa: E731
    loss.weights = weights
    return loss
