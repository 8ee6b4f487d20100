"""Image shards: Parquet files of encoded image bytes plus one provenance row per image.

A shard holds the images of one (generator, prompt chunk). The image id is the SHA-256 of the
encoded bytes, so identical content has one id everywhere and any tampering is detectable.
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path
from typing import Iterable, Sequence

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from attribench.core.io import atomic_path
from attribench.data.decode import open_image

# Provenance columns in schema order (DESIGN.md §2). `image` holds the encoded bytes.
SHARD_SCHEMA = pa.schema(
    [
        ("image_id", pa.string()),
        ("image", pa.binary()),
        ("format", pa.string()),
        ("generator", pa.string()),
        ("family", pa.string()),
        ("source", pa.string()),  # generated | real | edited | imported
        ("backend", pa.string()),
        ("prompt", pa.string()),
        ("prompt_id", pa.string()),
        ("prompt_source", pa.string()),
        ("image_index", pa.int32()),
        ("seed", pa.int64()),
        ("scheduler", pa.string()),
        ("steps", pa.int32()),
        ("guidance", pa.float32()),
        ("checkpoint", pa.string()),
        ("width", pa.int32()),
        ("height", pa.int32()),
        ("parent_id", pa.string()),
        ("transform", pa.string()),
        ("origin", pa.string()),  # file name for imports, model id/path for renders
        ("delivery", pa.string()),  # JSON of the delivery policy applied, null for raw shards
        ("call_settings", pa.string()),  # JSON of the generator call settings actually passed (renders)
    ]
)
COLUMNS = SHARD_SCHEMA.names
META_COLUMNS = [c for c in COLUMNS if c != "image"]


def content_id(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def encode_png(img: Image.Image) -> bytes:
    """Lossless, deterministic PNG bytes (no timestamps or text chunks)."""
    buf = io.BytesIO()
    # Level 1: lossless all the same, several times faster than the default on large crops.
    img.convert("RGB").save(buf, format="PNG", optimize=False, compress_level=1)
    return buf.getvalue()


def decode(data: bytes) -> Image.Image:
    """8-bit RGB through the one decoder (EXIF, 16-bit, alpha, CMYK handled the same everywhere)."""
    return open_image(data)[0]


def make_row(image_bytes: bytes, fmt: str, **provenance) -> dict:
    """One shard row; unknown provenance keys are an error so typos cannot hide."""
    unknown = set(provenance) - set(META_COLUMNS)
    if unknown:
        raise KeyError(f"unknown shard column(s): {sorted(unknown)}")
    row = {c: None for c in COLUMNS}
    row.update(provenance)
    row.update(image=image_bytes, format=fmt, image_id=content_id(image_bytes))
    return row


def write_shard(rows: Sequence[dict] | pd.DataFrame, path: str | Path) -> Path:
    """Write rows atomically. Identical bytes from the same parent are kept once; identical bytes from
    different parents (e.g. edge maps of two flat images) stay separate rows, so lineage is not lost."""
    df = pd.DataFrame(rows, columns=COLUMNS) if not isinstance(rows, pd.DataFrame) else rows[COLUMNS]
    df = df.drop_duplicates(["image_id", "parent_id"], keep="first").reset_index(drop=True)
    table = pa.Table.from_pandas(df, schema=SHARD_SCHEMA, preserve_index=False)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression="zstd")
    return Path(path)


def read_shard(path: str | Path, columns: Iterable[str] | None = None) -> pd.DataFrame:
    return pq.read_table(path, columns=list(columns) if columns else None).to_pandas()


def read_metadata(paths: Iterable[str | Path]) -> pd.DataFrame:
    """Provenance of many shards without loading image bytes; adds a `shard` column."""
    frames = []
    for p in paths:
        df = read_shard(p, META_COLUMNS)
        df["shard"] = str(p)
        frames.append(df)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=META_COLUMNS + ["shard"])


def load_images(index: pd.DataFrame) -> dict[str, bytes]:
    """Encoded bytes for the rows of an index (needs `shard` and `image_id`), one read per shard."""
    out: dict[str, bytes] = {}
    for shard, group in index.groupby("shard", sort=False):
        wanted = set(group["image_id"])
        table = pq.read_table(shard, columns=["image_id", "image"])
        ids, blobs = table.column("image_id").to_pylist(), table.column("image").to_pylist()
        out.update({i: b for i, b in zip(ids, blobs) if i in wanted})
    missing = set(index["image_id"]) - set(out)
    if missing:
        raise KeyError(f"{len(missing)} image id(s) not found in their shards, e.g. {sorted(missing)[:3]}")
    return out
