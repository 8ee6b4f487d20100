"""Derived shards: one transform over every image of a shard, provenance kept.

Each output row copies its parent's provenance (generator, prompt, split keys...), points back with
`parent_id`, and records the transform chain in `transform`: the canonical JSON spec for a first
transform, a JSON list (oldest first) once transforms stack, e.g. delivery -> jpeg(50) -> canny.
"""

from __future__ import annotations

import json
import math
import warnings
from collections import defaultdict
from pathlib import Path

import numpy as np

from attribench.data.shards import decode, make_row, read_shard
from attribench.transforms.registry import encode, make_spec
from attribench.transforms import runtime
from attribench.transforms.parts import write_in_parts


def transform_chain(value: str | None) -> list[dict]:
    """The specs applied to a row, oldest first ([] for an original image)."""
    if value is None or (isinstance(value, float) and math.isnan(value)) or value == "":
        return []
    parsed = json.loads(value)
    return parsed if isinstance(parsed, list) else [parsed]


def compose(existing: str | None, spec: str | dict) -> str:
    chain = transform_chain(existing) + [make_spec(spec)]
    return json.dumps(chain[0] if len(chain) == 1 else chain, sort_keys=True, separators=(",", ":"))


def _text(value) -> str:
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else str(value)


def derive_rows(records: list[dict], spec: dict) -> list[dict]:
    """Transformed rows for shard records (dicts with `image` bytes); images are batched by size."""
    images = [np.asarray(decode(r["image"])) for r in records]
    by_shape: dict[tuple, list[int]] = defaultdict(list)
    for i, im in enumerate(images):
        by_shape[im.shape].append(i)  # a batched filter needs one shape; raw shards may mix sizes
    encoded: list[tuple[bytes, str] | None] = [None] * len(records)
    for idx in by_shape.values():
        blobs, fmt = encode(
            spec,
            np.stack([images[i] for i in idx]),
            ids=[records[i]["image_id"] for i in idx],
            prompts=[_text(records[i].get("prompt")) for i in idx],
        )
        for i, data in zip(idx, blobs):
            encoded[i] = (data, fmt)
    rows = []
    for r, im, (data, fmt) in zip(records, images, encoded):
        prov = {k: v for k, v in r.items() if k not in ("image", "image_id", "format")}
        prov.update(
            parent_id=r["image_id"], transform=compose(r.get("transform"), spec), height=im.shape[0], width=im.shape[1]
        )
        rows.append(make_row(data, fmt, **prov))
    return rows


def apply_to_shard(
    in_path: str | Path, out_path: str | Path, spec: str | dict, batch_size: int = 64, cfg: dict | None = None
) -> Path:
    """Write the derived shard of `in_path` under `spec` to `out_path` (atomic; progress on stderr), in
    resumable parts of `batch_size` images (transforms.parts); `cfg` (its `derive` block) sets the runtime."""

    spec = make_spec(spec)
    runtime.configure(cfg)
    in_path = Path(in_path)
    ids = read_shard(in_path, ["image_id"])["image_id"].tolist()
    starts = list(range(0, len(ids), batch_size))
    key = {"spec": spec, "in": [in_path.name, ids], "batch": batch_size, "runtime": runtime.fingerprint_keys()}

    def make_rows(todo):
        df = read_shard(in_path)  # only when some part is still to do

        def rows_of(b: int) -> list[dict]:
            return derive_rows(df.iloc[starts[b] : starts[b] + batch_size].to_dict("records"), spec)

        return rows_of

    sizes = [min(batch_size, len(ids) - s) for s in starts]
    df = write_in_parts(out_path, key, len(starts), make_rows, sizes, spec["name"])
    n_unique = df["image_id"].nunique()
    if n_unique < len(df):
        # write_shard keeps identical bytes once (content ids): e.g. two flat images give one blank edge map.
        warnings.warn(f"{spec['name']}: {len(df) - n_unique} output(s) identical to another; kept once", stacklevel=2)
    return Path(out_path)
