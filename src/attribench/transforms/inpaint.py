"""Regional post-editing by diffusion inpainting (Xu et al. 2024 sec. 4.3, Table 4: "SDXL Inpainting").

Each image is inpainted under its own free-form mask (`masks.free_form_mask`, seeded by image id and
band), prompted with its own prompt, and -- by default -- the original pixels are pasted back outside
the mask, so the edit is confined to the masked region as with Photoshop Generative Fill. Without the
paste-back every pixel would also carry the inpainting VAE's round trip, and the area bands would no
longer measure how much of the image was edited.

Per-image mask area: a shard row has no free column for it (`make_row` rejects unknown keys), but the
mask is a pure function of (parent image id, band, height, width), so `edit_mask(row.parent_id,
row.height, row.width, band)` recovers it exactly for any derived row.

Registered on import of this module (``import attribench.transforms.inpaint``).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from PIL import Image

from attribench.transforms.common import image_seed, to_uint8
from attribench.transforms.masks import BANDS, free_form_mask, mask_seed
from attribench.transforms.registry import BatchMeta, register
from attribench.transforms.runtime import Runtime, current, device, load_pipeline
from attribench.transforms.weights import resolve_weights

SDXL_INPAINT = "diffusers/stable-diffusion-xl-1.0-inpainting-0.1"


def edit_mask(image_id: str, height: int, width: int, band: str) -> np.ndarray:
    """The mask `inpaint` uses for the image `image_id` (bool, True = regenerated)."""
    return free_form_mask(height, width, band, mask_seed(image_id, band))


@lru_cache(maxsize=2)
def _inpainter(path: str, device: str, runtime: Runtime):
    from diffusers import AutoPipelineForInpainting

    # The auto class maps inpainting checkpoints (SD/SDXL, 9-channel UNet) and plain text-to-image ones
    # (4-channel UNet: diffusers then blends the noised original back outside the mask at every step).
    # fp16 on CUDA with the SDXL VAE upcast by its `force_upcast` config, as sdedit; fp32 on CPU.
    return load_pipeline(AutoPipelineForInpainting, path, device)


@register("inpaint", kind="perturbation", model_param="model")
def inpaint(
    images: np.ndarray,
    meta: BatchMeta,
    *,
    band: str,
    model: str = SDXL_INPAINT,
    steps: int = 20,
    guidance: float = 8.0,
    strength: float = 0.99,
    paste_back: bool = True,
    seed: int = 0,
) -> np.ndarray:
    """Inpaint a free-form mask of area `band` (small 0-15%, medium 15-30%, large 30-60%) with `model`.

    The paper names only the model (SDXL Inpainting) and the bands. steps=20, guidance=8.0, strength=0.99
    follow that model's card (its limitations note less sharp images at strength 1.0; diffusers' SDXL inpaint
    pipeline likewise defaults to 0.9999). Noise is seeded by image id and `seed`,
    not the band, so the bands differ by mask alone. Sizes not divisible by 8 are inpainted at the size
    rounded down and resized back (bicubic) before the paste-back, which copies the input outside the mask
    bit for bit.
    """
    import torch  # deferred: transform modules register at DAG-build time; torch loads when one runs

    if band not in BANDS:
        raise ValueError(f"unknown mask band {band!r}; known: {sorted(BANDS)}")
    pipe = _inpainter(resolve_weights(model), device(), current())
    h, w = images.shape[1:3]
    masks = np.stack([edit_mask(i, h, w, band) for i in meta.ids])
    gens = [torch.Generator("cpu").manual_seed(image_seed(i, "inpaint", seed)) for i in meta.ids]
    out = pipe(
        prompt=list(meta.prompts),
        image=[Image.fromarray(im) for im in images],
        mask_image=[Image.fromarray(m.astype(np.uint8) * 255) for m in masks],
        height=max(8, h - h % 8),
        width=max(8, w - w % 8),
        strength=float(strength),
        num_inference_steps=int(steps),
        guidance_scale=float(guidance),
        generator=gens,
        output_type="pt",
    ).images
    if out.shape[-2:] != (h, w):
        out = torch.nn.functional.interpolate(out.float(), size=(h, w), mode="bicubic", align_corners=False)
    out = to_uint8(out.float().cpu())
    # What diffusers' `image_processor.apply_overlay` does, on arrays: exact for a binary mask.
    return np.where(masks[..., None], out, images) if paste_back else out
