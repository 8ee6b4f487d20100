"""Training hooks of the one training loop (train.train_run): named, registered, set in params.

- augmentation (`training.augment: {name: ju, p: 0.1}`): a factory(**params) -> draw(rng), where
  draw returns an op on one uint8 (3, H, W) training image before it is resized, or None (no-op).
  The loop seeds rng per (run seed, epoch, image), so a run is repeatable and order-independent.
  Only training images are augmented; validation and test never are.
- loss (`training.loss: ce | weighted_ce`): a factory(train_labels, num_classes) -> loss(logits, y).

Methods register their own (methods.ju_fusion: `ju`; methods.deepfeaturex: `weighted_ce`).
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

AUGMENTATIONS: dict[str, Callable] = {}
LOSSES: dict[str, Callable] = {}


def register_augmentation(name: str):
    def deco(fn):
        AUGMENTATIONS[name] = fn
        return fn

    return deco


def register_loss(name: str):
    def deco(fn):
        LOSSES[name] = fn
        return fn

    return deco


def make_augmentation(spec: dict | None) -> Callable[[np.random.Generator], Callable | None] | None:
    """spec {name, **params} -> draw(rng) -> op or None; None spec -> None (no augmentation)."""
    if not spec:
        return None
    params = dict(spec)
    name = params.pop("name")
    if name not in AUGMENTATIONS:
        raise KeyError(f"unknown augmentation '{name}' (known: {sorted(AUGMENTATIONS)})")
    return AUGMENTATIONS[name](**params)


def make_loss(name: str | None, train_labels: torch.Tensor, num_classes: int) -> Callable:
    name = name or "ce"
    if name not in LOSSES:
        raise KeyError(f"unknown loss '{name}' (known: {sorted(LOSSES)})")
    return LOSSES[name](train_labels, num_classes)


@register_loss("ce")
def _cross_entropy(train_labels: torch.Tensor, num_classes: int) -> Callable:
    return F.cross_entropy
