"""Views of an image that keep only part of it (Xu et al. app. C.4, Fig. 15 right): a centre patch."""

from __future__ import annotations

import numpy as np
from PIL import Image

from attribench.transforms.registry import BatchMeta, register


def _resize_short(im: Image.Image, short: int) -> Image.Image:
    w, h = im.size
    scale = short / min(w, h)
    return im.resize((max(short, round(w * scale)), max(short, round(h * scale))), Image.BICUBIC)


@register("center_patch", kind="representation")
def center_patch(images: np.ndarray, meta: BatchMeta, *, k: int, base: int | None = None) -> np.ndarray:
    """Resize the short side to `base` (bicubic; None keeps the image's own), centre-crop a k x k patch,
    and resize the patch back to the input's size (bicubic), so the attributor sees k x k pixels'
    worth of content at its usual input size (paper: base 512, k in 2..256, patch resized to 224)."""
    n, h, w, _ = images.shape
    out = np.empty_like(images)
    for i, arr in enumerate(images):
        im = Image.fromarray(arr)
        if base is not None:
            im = _resize_short(im, int(base))
        bw, bh = im.size
        if not 1 <= k <= min(bw, bh):
            raise ValueError(f"center_patch: k={k} must be between 1 and the short side {min(bw, bh)}")
        left, top = (bw - k) // 2, (bh - k) // 2
        patch = im.crop((left, top, left + k, top + k))
        out[i] = np.asarray(patch.resize((w, h), Image.BICUBIC))
    return out
