"""A pretrained backbone trained end to end with a linear head (Xu et al. 2024, Table 5 "fine-tuned").

It takes images normalised with ImageNet statistics (what train_run feeds every image attributor) and
re-normalises them to the backbone's own statistics (CLIP's differ), so it trains and predicts through
the unchanged image path of train_run. Spec: backbone (a backbones registry name), backbone_spec.
"""

from __future__ import annotations

import torch
from torch import nn

from attribench.models.attributors.registry import register
from attribench.models.backbones import load_backbone
from attribench.data.imagedata import IMAGENET_MEAN, IMAGENET_STD


class FineTuned(nn.Module):
    def __init__(self, backbone: nn.Module, dim: int, num_classes: int, mean, std) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = nn.Linear(dim, num_classes)
        # x_bb = (x * s_in + m_in - m_bb) / s_bb, folded into one scale and shift; buffers, not
        # parameters, and non-persistent so checkpoints hold only learned weights.
        mean, std = torch.tensor(mean).view(3, 1, 1), torch.tensor(std).view(3, 1, 1)
        self.register_buffer("scale", IMAGENET_STD / std, persistent=False)
        self.register_buffer("shift", (IMAGENET_MEAN - mean) / std, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x * self.scale + self.shift))


@register("finetune")
def build(spec: dict, num_classes: int) -> nn.Module:
    bb = load_backbone(spec["backbone"], spec.get("backbone_spec"))
    bb.module.requires_grad_(True)  # unfrozen: load_backbone hands it back frozen
    return FineTuned(bb.module, bb.dim, num_classes, bb.mean, bb.std)
