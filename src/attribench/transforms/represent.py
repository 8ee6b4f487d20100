"""Mid-level representations computed by fixed filters (no weights): Canny edges, high-pass residual, FFT spectrum.

All map to a *fixed* scale (never per-image min-max), so the magnitude of what a generator leaves in
the residual or the spectrum stays visible to the attributor.
"""

from __future__ import annotations

import math

import numpy as np

from attribench.transforms.common import to_float, to_uint8
from attribench.transforms.registry import BatchMeta, register


@register("canny", kind="representation")
def canny(
    images: np.ndarray,
    meta: BatchMeta,
    *,
    low: float = 0.4,
    high: float = 0.8,
    sigma: float = 1.0,
    kernel_size: int = 5,
) -> np.ndarray:
    """Binary Canny edges as 255/0, replicated to 3 channels: kornia.filters.canny + connected-component hysteresis.

    kornia converts RGB to grey, blurs (kernel_size, sigma), and thresholds the *unnormalised* Sobel
    magnitude of the [0, 1] image (a unit step gives ~2.6 after the blur). low/high 0.4/0.8 are about
    OpenCV's Canny(100, 200) on 0-255 images, the usual (ControlNet) setting; the paper gives none, and
    kornia's own 0.1/0.2 keep faint texture. Hysteresis keeps weak pixels 8-connected to a strong one --
    kornia's iterative version advances one pixel per pass (~0.6 s per 256 px photo on one thread), so
    the same rule is applied here as a connected-component labelling of kornia's weak/strong map.
    """
    import kornia
    import torch  # deferred: transform modules register at DAG-build time; torch loads when one runs
    from scipy import ndimage

    _, marks = kornia.filters.canny(
        to_float(images),
        low_threshold=low,
        high_threshold=high,
        kernel_size=kernel_size,
        sigma=(sigma, sigma),
        hysteresis=False,
    )
    marks = marks[:, 0].numpy()  # 1 strong, 0.5 weak, 0 none
    edges = np.zeros(marks.shape, bool)
    for i, m in enumerate(marks):
        labels, n = ndimage.label(m > 0, structure=np.ones((3, 3)))
        keep = np.zeros(n + 1, bool)
        keep[labels[m > 0.75]] = True
        keep[0] = False
        edges[i] = keep[labels]
    return to_uint8(torch.from_numpy(edges[:, None]).float())


@register("highpass", kind="representation")
def highpass(
    images: np.ndarray, meta: BatchMeta, *, radius: int = 2, sigma_ratio: float = 0.5, gain: float = 4.0
) -> np.ndarray:
    """Residual image - GaussianBlur(image) (blur as `gaussian_blur`), shown as 128 + gain*residual, clipped.

    In grey levels: a residual of +-32 fills the 0-255 range at gain 4; larger residuals (strong edges)
    saturate, which is acceptable because the fine traces of interest are small.
    """
    import kornia

    x = to_float(images)
    k, s = 2 * int(radius) + 1, float(sigma_ratio) * radius
    residual = x - kornia.filters.gaussian_blur2d(x, (k, k), (s, s), border_type="reflect")
    return to_uint8(0.5 + gain * residual)


@register("fft_spectrum", kind="representation")
def fft_spectrum(images: np.ndarray, meta: BatchMeta) -> np.ndarray:
    """log(1 + |FFT|) per channel, DC centred (fftshift), divided by log(1 + H*W).

    H*W is the largest amplitude a [0, 1] image can have (the DC of an all-white image), so the scale
    is fixed per image size and comparable across images, and values stay within [0, 1].
    """
    import torch  # deferred: transform modules register at DAG-build time; torch loads when one runs

    x = to_float(images)
    h, w = x.shape[-2:]
    amp = torch.fft.fftshift(torch.fft.fft2(x).abs(), dim=(-2, -1))
    return to_uint8(torch.log1p(amp) / math.log1p(h * w))
