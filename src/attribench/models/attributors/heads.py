"""Classifier heads on precomputed vectors (frozen-backbone embeddings, + text, Gram style vectors);
Xu et al. 2024 app. B: a linear probe (LP) or an MLP of "three linear layers with sigmoid activation
and hidden dimension 256". Spec: in_dim (input width), hidden (MLP only, default 256)."""

from __future__ import annotations

from torch import nn

from attribench.models.attributors.registry import register


@register("linear_probe")
def linear_probe(spec: dict, num_classes: int) -> nn.Module:
    return nn.Linear(int(spec["in_dim"]), num_classes)


@register("mlp")
def mlp(spec: dict, num_classes: int) -> nn.Module:
    hidden = int(spec.get("hidden", 256))
    return nn.Sequential(
        nn.Linear(int(spec["in_dim"]), hidden), nn.Sigmoid(),
        nn.Linear(hidden, hidden), nn.Sigmoid(),
        nn.Linear(hidden, num_classes),
    )
