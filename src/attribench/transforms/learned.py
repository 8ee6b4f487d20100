"""Mid-level representations from pretrained models (Xu et al. 2024 Fig. 7): depth, normals, albedo, shading.

No offline weights exist for any of these (DESIGN.md §3): the loaders are the real ones
(transformers depth models, diffusers Marigold pipelines), tested on tiny random models of the same
classes; a hub id that is not cached raises `NeedsWeights` -- random weights are never substituted.

Deviations from the paper, which used Du et al. [21] (intrinsic LoRA on SD, no package) for albedo,
shading and normals: we use Marigold (Ke et al.), the maintained diffusers pipelines for the same
quantities. Depth: Depth Anything [75], as in the paper (size not given; default Small).
Perspective Fields [37] has no installable package (see `perspective_field`).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from attribench.transforms.common import image_seed, to_float, to_uint8
from attribench.transforms.registry import BatchMeta, NotAvailable, register
from attribench.transforms.runtime import Runtime, current, device, load_pipeline, model_dtype
from attribench.transforms.weights import resolve_weights


@lru_cache(maxsize=2)
def _depth_model(path: str, device: str, runtime: Runtime):
    from transformers import AutoImageProcessor, AutoModelForDepthEstimation

    net = AutoModelForDepthEstimation.from_pretrained(path, dtype=model_dtype(device))  # fp16 on CUDA
    return AutoImageProcessor.from_pretrained(path), net.to(device).eval()


@register("depth", kind="representation", model_param="model")
def depth(images: np.ndarray, meta: BatchMeta, *, model: str = "LiheYoung/depth-anything-small-hf") -> np.ndarray:
    """Relative depth (AutoModelForDepthEstimation), resized to the input size, min-max per image, grey x3.

    Monocular depth is only defined up to scale/shift (Depth Anything predicts relative inverse depth),
    so per-image normalisation is the meaningful picture -- what transformers' depth pipeline shows too.
    Any depth class works: Depth Anything v1/v2 (`depth-anything/Depth-Anything-V2-Small-hf`), DPT/MiDaS.
    """
    import torch  # deferred: transform modules register at DAG-build time; torch loads when one runs

    processor, net = _depth_model(resolve_weights(model), device(), current())
    inputs = processor(images=list(images), return_tensors="pt").to(net.device)
    inputs["pixel_values"] = inputs["pixel_values"].to(net.dtype)
    with torch.no_grad():
        pred = net(**inputs).predicted_depth.float()  # (N, h, w)
    pred = torch.nn.functional.interpolate(pred[:, None], size=images.shape[1:3], mode="bicubic", align_corners=False)
    lo = pred.amin(dim=(1, 2, 3), keepdim=True)
    hi = pred.amax(dim=(1, 2, 3), keepdim=True)
    return to_uint8(((pred - lo) / (hi - lo).clamp_min(1e-8)).cpu())


@lru_cache(maxsize=2)
def _marigold(cls_name: str, path: str, device: str, runtime: Runtime):
    import diffusers

    # fp16 on CUDA (Marigold's VAE is SD 2's, fine in fp16), fp32 on CPU; VAE slicing on CUDA.
    return load_pipeline(getattr(diffusers, cls_name), path, device)


def _marigold_predict(
    cls_name: str,
    images: np.ndarray,
    meta: BatchMeta,
    model: str,
    steps: int | None,
    ensemble_size: int,
    processing_resolution: int | None,
    seed: int,
    tag: str,
):
    import torch  # deferred: transform modules register at DAG-build time; torch loads when one runs

    pipe = _marigold(cls_name, resolve_weights(model), device(), current())
    # One generator per (image, ensemble member), from the image id: results do not depend on batching.
    gens = [
        torch.Generator("cpu").manual_seed(image_seed(i, tag, e, seed)) for i in meta.ids for e in range(ensemble_size)
    ]
    out = pipe(
        to_float(images),
        num_inference_steps=steps,
        ensemble_size=ensemble_size,
        processing_resolution=processing_resolution,
        batch_size=current().model_batch_size,
        generator=gens,
        output_type="pt",
    )
    return pipe, out.prediction.float().cpu()


@register("normals", kind="representation", model_param="model")
def normals(
    images: np.ndarray,
    meta: BatchMeta,
    *,
    model: str = "prs-eth/marigold-normals-v1-1",
    steps: int | None = None,
    ensemble_size: int = 1,
    processing_resolution: int | None = None,
    seed: int = 0,
) -> np.ndarray:
    """Surface normals (MarigoldNormalsPipeline), shown as RGB = (n + 1) / 2 (Marigold's own visualisation).

    steps / processing_resolution None = the checkpoint's defaults (v1-1: 4 steps, 768 px); the output is
    resized back to the input size by the pipeline. Noise is seeded per image id.
    """
    pipe, pred = _marigold_predict(
        "MarigoldNormalsPipeline", images, meta, model, steps, ensemble_size, processing_resolution, seed, "normals"
    )
    return np.stack([np.asarray(im.convert("RGB")) for im in pipe.image_processor.visualize_normals(pred)])


def _intrinsic(target: str, images, meta, model, steps, ensemble_size, processing_resolution, seed) -> np.ndarray:
    pipe, pred = _marigold_predict(
        "MarigoldIntrinsicsPipeline",
        images,
        meta,
        model,
        steps,
        ensemble_size,
        processing_resolution,
        seed,
        "intrinsics",
    )
    names = (pipe.target_properties or {}).get("target_names", [])
    if target not in names:
        raise ValueError(f"{model!r} predicts {names}, not {target!r} (albedo+shading: marigold-iid-lighting)")
    # Marigold's visualisation: linear targets gamma-encoded, scale-free ones (shading) divided by their max.
    vis = pipe.image_processor.visualize_intrinsics(pred, pipe.target_properties)
    return np.stack([np.asarray(v[target].convert("RGB")) for v in vis])


@register("albedo", kind="representation", model_param="model")
def albedo(
    images: np.ndarray,
    meta: BatchMeta,
    *,
    model: str = "prs-eth/marigold-iid-lighting-v1-1",
    steps: int | None = None,
    ensemble_size: int = 1,
    processing_resolution: int | None = None,
    seed: int = 0,
) -> np.ndarray:
    """Albedo from MarigoldIntrinsicsPipeline (the lighting model predicts albedo, shading, residual)."""
    return _intrinsic("albedo", images, meta, model, steps, ensemble_size, processing_resolution, seed)


@register("shading", kind="representation", model_param="model")
def shading(
    images: np.ndarray,
    meta: BatchMeta,
    *,
    model: str = "prs-eth/marigold-iid-lighting-v1-1",
    steps: int | None = None,
    ensemble_size: int = 1,
    processing_resolution: int | None = None,
    seed: int = 0,
) -> np.ndarray:
    """Shading from MarigoldIntrinsicsPipeline: same model and noise as `albedo`, so the two come from one decomposition."""
    return _intrinsic("shading", images, meta, model, steps, ensemble_size, processing_resolution, seed)


_PERSPECTIVE_WHY = (
    "Perspective Fields (Jin et al. 2023, the paper's [37]; 640x640 latitude + 2-channel gravity maps) ships only "
    "as source on GitHub (jinlinyi/PerspectiveFields, built on detectron2) with weights from its own server; no "
    "maintained package exists on PyPI (none under perspective2d / perspective-fields), so it cannot be installed "
    "by this project's setup. Import the maps as a folder of images instead."
)


@register("perspective_field", kind="representation", unavailable=_PERSPECTIVE_WHY)
def perspective_field(images: np.ndarray, meta: BatchMeta) -> np.ndarray:
    raise NotAvailable(_PERSPECTIVE_WHY)  # unreachable through `apply`, which checks `unavailable` first
