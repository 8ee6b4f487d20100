"""Ju et al. 2022, "Fusing global and local features for generalized AI-synthesized image detection":
a global CNN branch, a Patch Selection Module (PSM) that picks informative windows on the global
feature map, a local CNN branch on the cropped patches, and multi-head attention fusion (AFFM).

Paper references: sec. 3.2 (global branch), 3.3 (PSM, Eq. 1), 3.4 (AFFM), 4.2 (hyper-parameters:
ResNet-50, 224 px, windows 3x3 and 2x2 with 3 proposals each, 128-d embeddings, 3 attention layers
of 4 heads, blur/JPEG augmentation with p=0.1).
"""

from __future__ import annotations

import io

import numpy as np
import timm
import torch
from PIL import Image
from torchvision.ops import roi_align

from attribench.models.attributors.registry import register
from attribench.training.hooks import register_augmentation
from attribench.transforms.perturb import blur_sigma


def _iou(boxes: torch.Tensor) -> torch.Tensor:
    """Pairwise IoU of (N, 4) xyxy boxes (half-open cell ranges, so area = w * h)."""
    lo = torch.maximum(boxes[:, None, :2], boxes[None, :, :2])
    hi = torch.minimum(boxes[:, None, 2:], boxes[None, :, 2:])
    inter = (hi - lo).clamp_min(0).prod(-1)
    area = (boxes[:, 2:] - boxes[:, :2]).prod(-1)
    return inter / (area[:, None] + area[None, :] - inter)


def _nms(boxes: torch.Tensor, scores: torch.Tensor, iou_thr: float, k: int) -> list[int]:
    """Greedy NMS keeping k windows. Stable sort: equal scores keep raster order (deterministic). If
    fewer than k windows survive, the best suppressed ones fill up so every image has k patches."""
    order = torch.argsort(scores, descending=True, stable=True).tolist()
    iou = _iou(boxes.float())
    kept, dropped = [], []
    for i in order:
        if len(kept) == k:
            break
        (kept if all(iou[i, j] <= iou_thr for j in kept) else dropped).append(i)
    if len(kept) < k and len(kept) + len(dropped) < k:
        raise ValueError(f"the feature map has only {len(order)} windows; {k} wanted")
    return kept + dropped[: k - len(kept)]


def select_patches(
    activation: torch.Tensor, window_sizes=((3, 3), (2, 2)), per_size: int = 3, nms_iou: float = 0.25
) -> torch.Tensor:
    """PSM of sec. 3.3. The activation map is the channel sum A(x,y) = sum_j F^j(x,y) (a (B,H,W)
    input is taken as A already); every (h, w) window slides with stride 1 and scores its mean
    activation (Eq. 1); within each window size, windows are taken by score after NMS, `per_size` of
    them (sec. 4.2: 3 of 3x3 and 3 of 2x2). The paper gives no NMS threshold: 0.25 is that of
    NTS-Net, the scheme this PSM follows. Returns (B, per_size * len(window_sizes), 4) integer boxes
    (x0, y0, x1, y1), half-open, in feature-map cells, grouped by window size, best first."""
    a = activation.detach().float().cpu()  # a few dozen windows: the greedy NMS runs on the CPU
    a = a.sum(1) if a.dim() == 4 else a
    out = []
    for amap in a:
        boxes = []
        for h, w in window_sizes:
            scores = torch.nn.functional.avg_pool2d(amap[None, None], (h, w), stride=1)[0, 0]
            ys, xs = torch.meshgrid(torch.arange(scores.shape[0]), torch.arange(scores.shape[1]), indexing="ij")
            cand = torch.stack([xs, ys, xs + w, ys + h], -1).reshape(-1, 4)
            boxes.append(cand[_nms(cand, scores.reshape(-1), nms_iou, per_size)])
        out.append(torch.cat(boxes))
    return torch.stack(out)


def boxes_to_image(boxes: torch.Tensor, feature_hw: tuple[int, int], image_hw: tuple[int, int]) -> torch.Tensor:
    """Feature-map boxes -> input-image pixel boxes (float xyxy) by the image/feature size ratio
    ("coordinates of these patch proposals are then mapped back to the original input image")."""
    ry, rx = image_hw[0] / feature_hw[0], image_hw[1] / feature_hw[1]
    return boxes.float() * torch.tensor([rx, ry, rx, ry])


def _timm(name: str, num_classes: int, kwargs: dict) -> torch.nn.Module:
    kwargs = dict(kwargs or {})
    if kwargs.pop("pretrained", False):
        raise ValueError("weights are never downloaded: pretrained must be false")
    return timm.create_model(name, pretrained=False, num_classes=num_classes, **kwargs)


class GlobalLocalFusion(torch.nn.Module):
    """Fig. 2. Global branch: backbone feature map F (last conv stage, ResNet-50 Conv5b) -> average
    pool + FC -> 128-d global embedding. PSM on F (no gradient: the selection is discrete, the
    paper leaves a differentiable PSM to future work) -> patches cropped from the input and resized
    to `patch_size` -> local CNN -> 128-d patch embeddings. AFFM: `layers` multi-head self-attention
    layers (`heads` heads, Q = K = V = the 1 + K embeddings) -> flattened into one vector -> classifier.
    The local branch is its own backbone (Fig. 2 draws two branches); share_backbone=True reuses
    the global one."""

    def __init__(
        self,
        num_classes: int,
        backbone: str = "resnet50",
        patch_size: int = 224,
        heads: int = 4,
        layers: int = 3,
        embed_dim: int = 128,
        window_sizes=((3, 3), (2, 2)),
        per_size: int = 3,
        nms_iou: float = 0.25,
        local_backbone: str | None = None,
        share_backbone: bool = False,
        model_kwargs: dict | None = None,
    ):
        super().__init__()
        self.global_net = _timm(backbone, embed_dim, model_kwargs)  # its fc is the "FC" of sec. 3.2
        self.local_net = None if share_backbone else _timm(local_backbone or backbone, embed_dim, model_kwargs)
        self.window_sizes = tuple(tuple(int(v) for v in s) for s in window_sizes)
        self.per_size, self.nms_iou, self.patch_size = per_size, nms_iou, patch_size
        self.attn = torch.nn.ModuleList(
            torch.nn.MultiheadAttention(embed_dim, heads, batch_first=True) for _ in range(layers)
        )
        n_tokens = 1 + per_size * len(self.window_sizes)
        self.classifier = torch.nn.Linear(n_tokens * embed_dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        fmap = self.global_net.forward_features(x)
        g = self.global_net.forward_head(fmap)  # (B, D)
        boxes = select_patches(fmap, self.window_sizes, self.per_size, self.nms_iou)
        px = boxes_to_image(boxes, fmap.shape[-2:], x.shape[-2:]).to(x)
        b, k = px.shape[:2]
        rois = torch.cat(
            [torch.arange(b, device=x.device, dtype=x.dtype).repeat_interleave(k)[:, None], px.reshape(-1, 4)], 1
        )
        # Crop + bilinear resize of each patch to patch_size (sec. 4.2: "resized into 224").
        patches = roi_align(x, rois, output_size=self.patch_size, spatial_scale=1.0, sampling_ratio=2, aligned=True)
        local = (self.local_net or self.global_net)(patches).reshape(b, k, -1)
        tokens = torch.cat([g[:, None], local], 1)
        for layer in self.attn:
            tokens = layer(tokens, tokens, tokens, need_weights=False)[0]
        return self.classifier(tokens.flatten(1))


@register("ju_fusion")
def build(spec: dict, num_classes: int) -> torch.nn.Module:
    """spec: backbone (default resnet50), local_backbone, share_backbone, patch_size, embed_dim,
    heads, layers, window_sizes, per_size, nms_iou, model_kwargs (timm, from scratch)."""
    keys = {
        "backbone",
        "local_backbone",
        "share_backbone",
        "patch_size",
        "embed_dim",
        "heads",
        "layers",
        "window_sizes",
        "per_size",
        "nms_iou",
        "model_kwargs",
    }
    unknown = set(spec) - keys
    if unknown:
        raise KeyError(f"ju_fusion spec: unknown key(s) {sorted(unknown)}; known: {sorted(keys)}")
    return GlobalLocalFusion(num_classes, **spec)


def ju_augment_params(rng: np.random.Generator, p: float = 0.1) -> dict:
    """The random draws of sec. 4.2: blur sigma ~ U[0, 3] with prob. p, JPEG quality ~ U{30..100}
    with prob. p (independently, as in Wang et al.'s recipe they follow). None = op not applied.
    Both coin flips are always drawn, so the stream position does not depend on the outcomes."""
    blur, jpeg = rng.random() < p, rng.random() < p
    sigma = float(rng.uniform(0.0, 3.0)) if blur else None
    quality = int(rng.integers(30, 101)) if jpeg else None
    return {"sigma": sigma, "quality": quality}


def apply_ju_params(image: torch.Tensor, params: dict) -> torch.Tensor:
    """uint8 (3, H, W) -> uint8 (3, H, W): Gaussian blur of params["sigma"] then a real JPEG round
    trip (Pillow) at params["quality"]; a None skips that op."""
    arr = image.permute(1, 2, 0).numpy()
    if params["sigma"] is not None:
        arr = blur_sigma(arr, params["sigma"])
    if params["quality"] is not None:
        buf = io.BytesIO()
        Image.fromarray(np.ascontiguousarray(arr)).save(buf, format="JPEG", quality=params["quality"])
        arr = np.array(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))
    return torch.from_numpy(np.ascontiguousarray(arr)).permute(2, 0, 1).contiguous()


def ju_augment(image: torch.Tensor, rng: np.random.Generator, p: float = 0.1) -> torch.Tensor:
    """uint8 (3, H, W) -> uint8 (3, H, W): Gaussian blur then a real JPEG round trip (Pillow), each
    with probability p; applied before resizing (sec. 4.2). Deterministic given the rng state."""
    return apply_ju_params(image, ju_augment_params(rng, p))


@register_augmentation("ju")
def ju_augmentation(p: float = 0.1):
    """Training hook (`training.augment: {name: ju, p: 0.1}`): draw(rng) -> the op ju_augment would
    apply with that rng, or None when neither coin fires (the image is then left as it is)."""

    def draw(rng: np.random.Generator):
        params = ju_augment_params(rng, p)
        if params["sigma"] is None and params["quality"] is None:
            return None
        return lambda image: apply_ju_params(image, params)

    return draw
