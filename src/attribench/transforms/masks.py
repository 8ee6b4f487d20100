"""Free-form brush-stroke masks in the three area bands of Xu et al. 2024 sec. 4.3 (Table 4, Fig. 5).

The paper edits images under "free-form masks" of small (0-15%), medium (15-30%) and large (30-60%)
area, but publishes neither the generator nor the masks. This is a simple generator in the spirit of
DeepFill v2 / LaMa: each stroke is a polyline of random vertices (random angle and length) drawn with
a round brush of random width. Strokes are added until the area reaches a target drawn uniformly in
the band; a stroke that would push the area past the band is discarded and the brush shrinks, so the
area always lands in (lo, hi]. Everything comes from one seed, so a mask is a pure function of
(height, width, band, seed) -- and `mask_seed` ties the seed to the image, so any inpainting model (or
a Photoshop export) sees the same mask for the same image.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw

from attribench.transforms.common import image_seed

# Area fraction band (lo, hi]: the mask's area is > lo and <= hi.
BANDS: dict[str, tuple[float, float]] = {"small": (0.0, 0.15), "medium": (0.15, 0.30), "large": (0.30, 0.60)}

# Brush width range as a fraction of the short side: bigger bands use bigger brushes, so every band is a
# handful of strokes (like the thin/medium/thick masks of LaMa) rather than dozens of thin scribbles.
_BRUSH = {"small": (0.03, 0.08), "medium": (0.05, 0.12), "large": (0.08, 0.18)}
_MAX_TRIES = 2000  # strokes drawn or discarded before giving up (never reached in practice)


def mask_seed(image_id: str, band: str) -> int:
    """The mask seed of an image: from its id and the band only (not the model), so all editors share masks."""
    return image_seed(image_id, "inpaint_mask", band)


def mask_area(mask: np.ndarray) -> float:
    return float(np.count_nonzero(mask)) / mask.size


def _stroke(
    draw: ImageDraw.ImageDraw,
    rng: np.random.Generator,
    height: int,
    width: int,
    brush: tuple[float, float],
    scale: float,
) -> None:
    side = min(height, width)
    bw = max(1, round(rng.uniform(*brush) * side * scale))
    x, y = rng.uniform(0, width), rng.uniform(0, height)
    angle = rng.uniform(0, 2 * math.pi)
    for _ in range(int(rng.integers(3, 9))):
        angle += rng.uniform(-math.pi / 2, math.pi / 2)  # meandering, not a straight bar
        length = rng.uniform(0.05, 0.25) * side * scale
        nx = float(np.clip(x + length * math.cos(angle), 0, width - 1))
        ny = float(np.clip(y + length * math.sin(angle), 0, height - 1))
        draw.line([(x, y), (nx, ny)], fill=255, width=bw)
        r = bw / 2  # round joints, as a brush leaves
        draw.ellipse([nx - r, ny - r, nx + r, ny + r], fill=255)
        x, y = nx, ny


def free_form_mask(height: int, width: int, band: str, seed: int) -> np.ndarray:
    """Bool (height, width) mask, True = region to regenerate, area fraction in `BANDS[band]`."""
    if band not in BANDS:
        raise ValueError(f"unknown mask band {band!r}; known: {sorted(BANDS)}")
    lo, hi = BANDS[band]
    if height * width < 1 / (hi - lo):  # a band narrower than one pixel cannot be hit
        raise ValueError(f"{height}x{width} is too small for band {band!r}")
    rng = np.random.default_rng(seed)
    target = rng.uniform(lo, hi)
    mask, area, scale = Image.new("L", (width, height), 0), 0.0, 1.0
    for _ in range(_MAX_TRIES):
        cand = mask.copy()
        _stroke(ImageDraw.Draw(cand), rng, height, width, _BRUSH[band], scale)
        a = mask_area(np.asarray(cand))
        if a > hi:
            if area > lo:  # already in the band and the next stroke overshoots: stop short of the target
                return np.asarray(mask) > 0
            scale *= 0.8  # overshoot: drop the stroke and use a smaller brush/shorter strokes from here on
            continue
        mask, area = cand, a
        if area > lo and area >= target:
            return np.asarray(mask) > 0
    raise RuntimeError(f"no {band} mask for {height}x{width} after {_MAX_TRIES} strokes (area {area:.3f})")
