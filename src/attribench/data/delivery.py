"""The delivery policy: one size, format and quality for every class, applied before splitting.

Without it a detector can learn the container (real photos arrive as camera JPEGs, renders as PNG;
sizes differ per generator) instead of the generator's traces.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

from PIL import Image

from attribench.data.shards import decode, make_row, read_shard, write_shard

PIL_FORMATS = {"jpeg": "JPEG", "png": "PNG", "webp": "WEBP"}


def resize_center_crop(img: Image.Image, size: int) -> Image.Image:
    """Resize the short side to `size` (bicubic), then centre-crop a `size` square."""
    w, h = img.size
    scale = size / min(w, h)
    nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
    img = img.resize((nw, nh), Image.Resampling.BICUBIC)
    left, top = (nw - size) // 2, (nh - size) // 2
    return img.crop((left, top, left + size, top + size))


def encode(img: Image.Image, fmt: str, quality: int) -> bytes:
    buf = io.BytesIO()
    opts = {"quality": quality} if fmt in ("jpeg", "webp") else {"compress_level": 6}
    if fmt == "jpeg":
        opts["subsampling"] = 0 if quality >= 90 else 2  # 4:4:4 at high quality, as cameras do
    img.convert("RGB").save(buf, format=PIL_FORMATS[fmt], **opts)
    return buf.getvalue()


def deliver_image(data: bytes, policy: dict) -> tuple[bytes, int]:
    img = resize_center_crop(decode(data), policy["size"])
    return encode(img, policy["format"], policy.get("quality", 95)), policy["size"]


def deliver_shard(raw: str | Path, out: str | Path, policy: dict) -> Path:
    df = read_shard(raw)
    spec = json.dumps(policy, sort_keys=True)
    rows = []
    for r in df.to_dict("records"):
        data, size = deliver_image(r.pop("image"), policy)
        parent = r.pop("image_id")
        r.pop("format")
        r.update(parent_id=parent, width=size, height=size, delivery=spec)
        rows.append(make_row(data, policy["format"], **r))
    return write_shard(rows, out)
