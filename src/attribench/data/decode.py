"""The one image decoder (folder import, delivery, training and prediction): bytes or a file in,
8-bit RGB out, plus notes saying what was done to get there.

What it makes explicit instead of leaving to Pillow's defaults: EXIF orientation applied; 16-bit
images scaled to 8 bits (Pillow's convert("RGB") clips them, nearly white); palette transparency
and alpha composited on `decode.background` (or rejected with `alpha: reject`); CMYK to RGB; the
first frame of an animation; images over `decode.max_pixels` (from the header, before any pixel is
decoded) rejected by name instead of a DecompressionBombError traceback. Settings: params `decode:`.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageOps, UnidentifiedImageError

from attribench.core.io import atomic_path

DEFAULTS = {"max_pixels": 89_478_485, "background": [255, 255, 255], "alpha": "composite", "min_side": 1}
SIXTEEN_BIT = {"I;16", "I;16B", "I;16L", "I;16N", "I"}


class Undecodable(ValueError):
    """This file cannot become an image under the decode policy; the message says why."""


def policy_of(cfg: dict | None) -> dict:
    return {**DEFAULTS, **((cfg or {}).get("decode") or {})}


def open_image(source: bytes | str | Path, policy: dict | None = None) -> tuple[Image.Image, list[str]]:
    """(RGB 8-bit image, notes). The image's info records the container and mode the source held
    (`source_format`, `source_mode`). Raises Undecodable with the reason."""
    pol = {**DEFAULTS, **(policy or {})}
    fp = io.BytesIO(source) if isinstance(source, (bytes, bytearray)) else source
    notes: list[str] = []
    try:
        with warnings.catch_warnings():  # our own limit below replaces Pillow's bomb warning
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(fp)
        with im:
            w, h = im.size
            if w * h > pol["max_pixels"]:
                raise Undecodable(f"{w}x{h} = {w * h} pixels, over decode.max_pixels {pol['max_pixels']}")
            if min(w, h) < pol["min_side"]:
                raise Undecodable(f"{w}x{h}, a side under decode.min_side {pol['min_side']}")
            frames = getattr(im, "n_frames", 1)
            if frames > 1:
                im.seek(0)
                notes.append(f"first of {frames} frames")
            im.load()
            rgb = _to_rgb(im, pol, notes)
            rgb.info.update(source_format=im.format, source_mode=im.mode)
            return rgb, notes
    except Image.DecompressionBombError as err:  # a header far over Pillow's own limit
        raise Undecodable(f"over decode.max_pixels {pol['max_pixels']} and Pillow's own pixel limit ({err})") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        if isinstance(err, Undecodable):
            raise
        raise Undecodable(f"cannot decode image ({err.__class__.__name__}: {err})") from None


def _to_rgb(im: Image.Image, pol: dict, notes: list[str]) -> Image.Image:
    orientation = im.getexif().get(0x0112, 1)
    if orientation not in (1, None):
        im = ImageOps.exif_transpose(im)
        notes.append(f"EXIF orientation {orientation} applied")
    if im.mode in SIXTEEN_BIT:
        arr = np.asarray(im).astype(np.float64)
        if im.mode != "I" or arr.max() > 255:  # mode I also holds 8-bit data from some files
            arr = arr / 257.0
            notes.append(f"16-bit ({im.mode}) scaled to 8-bit")
        im = Image.fromarray(np.clip(np.rint(arr), 0, 255).astype(np.uint8), "L")
    if im.mode == "CMYK":
        notes.append("CMYK converted to RGB")
        im = im.convert("RGB")
    has_alpha = im.mode in ("RGBA", "LA", "PA", "La", "RGBa") or (im.mode in ("P", "L", "RGB") and "transparency" in im.info)
    if has_alpha:
        rgba = im.convert("RGBA")
        if rgba.getchannel("A").getextrema()[0] < 255:  # some pixel is (partly) transparent
            if pol["alpha"] == "reject":
                raise Undecodable("has transparency (decode.alpha: reject)")
            bg = Image.new("RGBA", rgba.size, tuple(pol["background"]) + (255,))
            notes.append(f"transparency composited on {tuple(pol['background'])}")
            return Image.alpha_composite(bg, rgba).convert("RGB")
        return rgba.convert("RGB")
    return im.convert("RGB")


def skipped_path(shard: str | Path) -> Path:
    """`<shard>.skipped.csv`, beside the shard it belongs to."""
    shard = Path(shard)
    return shard.with_name(shard.name + ".skipped.csv")


def write_skip_report(shard: str | Path, skipped: list[dict], what: str) -> str | None:
    """List skipped files (columns file, reason) beside `shard`; the one console line, or None.

    No skips removes a stale report, so the file always describes the shard next to it."""
    path = skipped_path(shard)
    if not skipped:
        path.unlink(missing_ok=True)
        return None
    with atomic_path(path) as tmp:
        pd.DataFrame(skipped, columns=["file", "reason"]).to_csv(tmp, index=False)
    return f"attribench: skipped {len(skipped)} {what}, listed in {path}"
