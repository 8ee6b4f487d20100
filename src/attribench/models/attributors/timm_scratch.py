"""A timm architecture trained from scratch (the paper's EfficientFormer-L3 is `efficientformer_l3`).

Weights are never downloaded: `pretrained=False` always. Note for small inputs: timm's
EfficientFormer (v1) hard-codes a 7x7 attention grid, so it only accepts 224 px. EfficientFormerV2
sizes its attention from `img_size`, e.g. spec {"model": "efficientformerv2_s0",
"model_kwargs": {"img_size": 64}} for 64 px inputs.
"""

from __future__ import annotations

import timm
import torch

from attribench.models.attributors.registry import register


@register("timm_scratch")
def build(spec: dict, num_classes: int) -> torch.nn.Module:
    kwargs = dict(spec.get("model_kwargs") or {})
    if kwargs.pop("pretrained", False):
        raise ValueError("timm_scratch trains from scratch; pretrained weights are not allowed")
    return timm.create_model(spec["model"], pretrained=False, num_classes=num_classes, **kwargs)
