"""High-frequency perturbations of Xu et al. 2024 Fig. 6, plus JPEG (the robustness axis of the other papers).

The paper gives only "Gaussian blur radius 5/10, bilateral diameter 5/10, noise std 15/25, SDEdit
strength 0.01/0.05" -- not sigmas, colour ranges or step counts. The conventions chosen here are
parameters of each spec (defaults filled into every shard row), so a different reading is one
spec value away and never silently mixed with this one.
"""

from __future__ import annotations

import io
from functools import lru_cache
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from attribench.transforms.common import chunked, image_seed, to_float, to_uint8
from attribench.transforms.registry import BatchMeta, register
from attribench.transforms.runtime import Runtime, current, device, load_pipeline
from attribench.transforms.weights import resolve_weights

if TYPE_CHECKING:
    import torch

# Peak floats one window filter may materialise (kornia unfolds k*k windows on GPU): ~256 MB.
_MAX_WINDOW_FLOATS = 1 << 26


@register("gaussian_blur", kind="perturbation")
def gaussian_blur(images: np.ndarray, meta: BatchMeta, *, radius: int, sigma_ratio: float = 0.5) -> np.ndarray:
    """Gaussian blur, kernel 2*radius+1 (radius = kernel half-width, as OpenCV's ksize), sigma = sigma_ratio*radius.

    Default sigma = radius/2 puts the kernel edge at 2 sigma. PIL's GaussianBlur(radius) instead means
    sigma = radius (sigma_ratio=1.0 here, then truncated at 1 sigma); the paper does not say which.
    Reflect padding, so borders do not darken.
    """
    import kornia

    k, sigma = 2 * int(radius) + 1, float(sigma_ratio) * radius
    return to_uint8(kornia.filters.gaussian_blur2d(to_float(images), (k, k), (sigma, sigma), border_type="reflect"))


def blur_sigma(image: np.ndarray, sigma: float) -> np.ndarray:
    """uint8 (H, W, 3) -> uint8: scipy's Gaussian filter of standard deviation `sigma` per channel
    (truncated at 4 sigma, reflect borders), rounded. Ju et al.'s blur: their training augmentation
    (methods.ju_fusion.ju_augment) and their Fig. 3 test axis are both given as sigma."""
    from scipy.ndimage import gaussian_filter

    if sigma <= 0:
        return np.ascontiguousarray(image)
    out = gaussian_filter(image.astype(np.float32), sigma=(float(sigma), float(sigma), 0))
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


@register("gaussian_blur_sigma", kind="perturbation")
def gaussian_blur_sigma(images: np.ndarray, meta: BatchMeta, *, sigma: float) -> np.ndarray:
    """Gaussian blur given by its sigma (Ju et al. 2022 Fig. 3, sigma 0..3), the same op as their
    training augmentation; sigma 0 leaves the images as they are. (`gaussian_blur` takes Xu et al.'s
    kernel radius instead.)"""
    return np.stack([blur_sigma(img, sigma) for img in images]) if len(images) else images


@register("bilateral", kind="perturbation")
def bilateral(
    images: np.ndarray, meta: BatchMeta, *, diameter: int, sigma_color: float = 0.1, space_ratio: float = 0.5
) -> np.ndarray:
    """Bilateral filter with OpenCV's `d` semantics: window 2*(diameter//2)+1 (5 -> 5x5, 10 -> 11x11).

    sigma_color is on [0, 1] images (0.1 ~ 25 grey levels) with OpenCV's L1 colour distance summed over
    channels; sigma_space = space_ratio * diameter (default diameter/2). Processed in chunks so a big batch
    never materialises all k*k windows at once.
    """
    import kornia

    k = 2 * (int(diameter) // 2) + 1
    space = float(space_ratio) * diameter
    x = to_float(images)

    def run(part: torch.Tensor) -> torch.Tensor:
        return kornia.filters.bilateral_blur(
            part, k, float(sigma_color), (space, space), border_type="reflect", color_distance_type="l1"
        )

    per_chunk = _MAX_WINDOW_FLOATS // (3 * images.shape[1] * images.shape[2] * k * k)
    return to_uint8(chunked(run, x, per_chunk))


@register("gaussian_noise", kind="perturbation")
def gaussian_noise(images: np.ndarray, meta: BatchMeta, *, std: float, seed: int = 0) -> np.ndarray:
    """Add N(0, std) noise per pixel and channel, std in 0-255 units; round and clip to [0, 255].

    Seeded per image from (image id, std, seed): the same image always gets the same noise, whatever
    batch it lands in, and two images never share a noise field.
    """
    out = np.empty_like(images)
    for i, (img, image_id) in enumerate(zip(images, meta.ids)):
        rng = np.random.default_rng(image_seed(image_id, "gaussian_noise", std, seed))
        noisy = img.astype(np.float32) + rng.normal(0.0, std, img.shape).astype(np.float32)
        out[i] = np.clip(np.rint(noisy), 0, 255).astype(np.uint8)
    return out


def _jpeg_bytes(images: np.ndarray, meta: BatchMeta, *, quality: int, subsampling: str = "4:2:0") -> list[bytes]:
    # Explicit subsampling: Pillow's default depends on quality/"keep", and the pinned value must be the spec's.
    outs = []
    for img in images:
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, format="JPEG", quality=int(quality), subsampling=subsampling, optimize=False)
        outs.append(buf.getvalue())
    return outs


@register("jpeg", kind="perturbation", to_bytes=_jpeg_bytes, fmt="jpeg")
def jpeg(images: np.ndarray, meta: BatchMeta, *, quality: int, subsampling: str = "4:2:0") -> np.ndarray:
    """Real JPEG re-encoding with Pillow/libjpeg (not a differentiable proxy); in a shard the JPEG bytes are kept."""
    decoded = []
    for data in _jpeg_bytes(images, meta, quality=quality, subsampling=subsampling):
        with Image.open(io.BytesIO(data)) as im:
            decoded.append(np.asarray(im.convert("RGB")))
    return np.stack(decoded)


def sdedit_schedule(strength: float, steps: int) -> int:
    """Full schedule length so that diffusers runs >= 1 denoising step: it runs int(steps*strength).

    With the paper's strength 0.01 and 50 steps that is 0 steps, and diffusers then "noises" with an
    empty timestep list -- a VAE round trip at best. So the schedule is lengthened until one step runs
    (0.01 -> 100, giving 1 step at t~10/1000; 0.05 with 50 steps already gives 2 steps).
    """
    if not 0 < strength <= 1:
        raise ValueError(f"SDEdit strength must be in (0, 1], got {strength}")
    steps = int(steps)
    while int(steps * strength) < 1:
        steps += 1
    return steps


@lru_cache(maxsize=2)
def _img2img(path: str, device: str, runtime: Runtime):
    from diffusers import AutoPipelineForImage2Image

    # The auto class maps a text-to-image checkpoint (SD, SDXL, ...) onto its img2img pipeline. fp16 on CUDA,
    # the SDXL VAE upcast to fp32 by its `force_upcast` config (runtime.load_pipeline); fp32 on CPU.
    return load_pipeline(AutoPipelineForImage2Image, path, device)


@register("sdedit", kind="perturbation", model_param="model")
def sdedit(
    images: np.ndarray,
    meta: BatchMeta,
    *,
    strength: float,
    model: str = "stabilityai/stable-diffusion-xl-base-1.0",
    steps: int = 50,
    guidance: float = 5.0,
    seed: int = 0,
) -> np.ndarray:
    """SDEdit (Meng et al.): noise to `strength`, then denoise with an img2img pipeline of `model`.

    Paper: SDXL. Prompt = the image's own prompt ("" for none); noise seeded per image id. `steps` is the
    full schedule length, lengthened by `sdedit_schedule` so at least one denoising step runs. `guidance`
    5.0 is diffusers' SDXL img2img default. Output is resized back to the input size if the pipeline
    rounded it to a multiple of 8.
    """
    import torch  # deferred: transform modules register at DAG-build time; torch loads when one runs

    pipe = _img2img(resolve_weights(model), device(), current())
    n_steps = sdedit_schedule(strength, steps)
    # Seed without the strength: every strength draws the same noise for an image, so 0.01 vs 0.05 differ by
    # strength alone. CPU generators keep the draws identical on GPU and CPU.
    gens = [torch.Generator("cpu").manual_seed(image_seed(i, "sdedit", seed)) for i in meta.ids]
    out = pipe(
        prompt=list(meta.prompts),
        image=[Image.fromarray(im) for im in images],
        strength=float(strength),
        num_inference_steps=n_steps,
        guidance_scale=float(guidance),
        generator=gens,
        output_type="pt",
    ).images
    h, w = images.shape[1:3]
    if out.shape[-2:] != (h, w):
        out = torch.nn.functional.interpolate(out.float(), size=(h, w), mode="bicubic", align_corners=False)
    return to_uint8(out.float().cpu())
