"""The delivery policy: one size, format and quality for every class, applied before splitting.

Without it a detector can learn the container (real photos arrive as camera JPEGs, renders as PNG;
sizes differ per generator) instead of the generator's traces.
"""

from __future__ import annotations

import io
import json
import logging
import sys
from collections import Counter
from pathlib import Path

from PIL import Image

from attribench.data.decode import Undecodable, open_image, write_skip_report
from attribench.data.shards import make_row, read_shard, write_shard

log = logging.getLogger(__name__)

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


def deliver_image(data: bytes, policy: dict, decode_policy: dict | None = None) -> tuple[bytes, int, list[str]]:
    """(delivered bytes, size, notes); raises decode.Undecodable."""
    img, notes = open_image(data, decode_policy)
    if min(img.size) < policy["size"]:
        notes.append(f"upscaled from {img.size[0]}x{img.size[1]}")
    img = resize_center_crop(img, policy["size"])
    return encode(img, policy["format"], policy.get("quality", 95)), policy["size"], notes


def deliver_shard(raw: str | Path, out: str | Path, policy: dict, decode_policy: dict | None = None) -> Path:
    df = read_shard(raw)
    spec = json.dumps(policy, sort_keys=True)
    rows, skipped, noted = [], [], Counter()
    for r in df.to_dict("records"):
        name = r.get("origin") or r["image_id"]
        try:
            data, size, notes = deliver_image(r.pop("image"), policy, decode_policy)
        except Undecodable as err:
            log.warning("skipped %s: %s", name, err)
            skipped.append({"file": name, "reason": str(err)})
            continue
        for n in notes:
            log.info("%s: %s", name, n)
            noted[n.split(" from ")[0]] += 1
        parent = r.pop("image_id")
        r.pop("format")
        r.update(parent_id=parent, width=size, height=size, delivery=spec)
        rows.append(make_row(data, policy["format"], **r))
    path = write_shard(rows, out)
    lines = [write_skip_report(out, skipped, f"image(s) of {raw}")]
    lines += [f"attribench: {k} ({c} image(s) of {raw})" for k, c in sorted(noted.items())]
    for line in filter(None, lines):
        print(line, file=sys.stderr)  # the deliver rule repeats `attribench:` lines on the console
    return path
