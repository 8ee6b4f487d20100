"""Image attributors with text prompts (Xu et al. 2024, sec. 4.1, app. B: "we concatenate image
embeddings from the backbone with text embeddings as input to the classifier head").

`TextFused` wraps any image model that maps a batch of images to a (B, image_dim) embedding and puts a
linear head on concat(image embedding, text vector); `forward(x, t)`. Trained end to end on the images
by `train_run(..., text_inputs={image_id: text vector})`, the text vectors as they come (e.g. the
L2-normalised prompt embeddings of `features.feature_inputs(index, {"text": {"encoder": "minilm"}}, ...)`).

- `timm_scratch_text`: timm_scratch's spec (model, model_kwargs) + `text_dim`; the timm model from
  scratch without its classifier (num_classes=0: the pooled embedding).
- `finetune_text`: finetune's spec (backbone, backbone_spec) + `text_dim`; the pretrained backbone,
  unfrozen, re-normalising its ImageNet-normalised input as `finetune` does.
"""

from __future__ import annotations

import torch
from torch import nn

from attribench.models.attributors import finetune, timm_scratch
from attribench.models.attributors.registry import register


class TextFused(nn.Module):
    """logits = head(concat(image_model(x), t)); head input width = image_dim + text_dim."""

    def __init__(self, image_model: nn.Module, image_dim: int, text_dim: int, num_classes: int) -> None:
        super().__init__()
        self.image_model = image_model
        self.head = nn.Linear(image_dim + text_dim, num_classes)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        emb = self.image_model(x)
        return self.head(torch.cat([emb, t.to(emb.dtype)], dim=1))


def _text_dim(spec: dict, name: str) -> int:
    if "text_dim" not in spec:
        raise KeyError(f"{name} spec needs text_dim (the width of the text vectors)")
    return int(spec["text_dim"])


@register("timm_scratch_text")
def build_timm_scratch_text(spec: dict, num_classes: int) -> nn.Module:
    text_dim = _text_dim(spec, "timm_scratch_text")
    model = timm_scratch.build(spec, 0)  # num_classes=0: pooled embedding, no classifier; never pretrained
    # head_hidden_size: the pooled width where a model has a pre-logits layer (MobileNetV3), else num_features.
    image_dim = getattr(model, "head_hidden_size", None) or model.num_features
    return TextFused(model, image_dim, text_dim, num_classes)


@register("finetune_text")
def build_finetune_text(spec: dict, num_classes: int) -> nn.Module:
    text_dim = _text_dim(spec, "finetune_text")
    image_model = finetune.build(spec, 1)  # FineTuned: backbone + re-normalisation + a throwaway head
    image_dim = image_model.head.in_features
    image_model.head = nn.Identity()  # it now returns the backbone embedding
    return TextFused(image_model, image_dim, text_dim, num_classes)
