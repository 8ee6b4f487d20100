"""Train-and-test on a transformed dataset (Xu et al. Fig. 6, 7, 15): every image of an experiment's
views goes through one transform, once, into a cached derived shard.

Derived rows keep the parent's split, class and prompt (the split stays prompt-disjoint), carry the
transform spec in `transform` and point back with `parent_id`; they are re-delivered (size, format,
quality of `delivery`) so the container stays the same as for the clean images.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pandas as pd

from attribench.data.shards import read_metadata
from attribench.transforms.postedit import derive_batch_size, transform_rows


def derived_shard_path(cfg: dict, spec: dict, parent_ids) -> Path:
    key = json.dumps([spec, cfg["delivery"], sorted(set(parent_ids))], sort_keys=True)
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return Path("data") / cfg["profile"] / "derived" / f"{spec['name']}-{digest}.parquet"


def derived_view(cfg: dict, rows: pd.DataFrame, spec: dict, shard: str | Path | None = None) -> pd.DataFrame:
    """`rows` (index rows: image_id, shard, split, generator, ...) with image_id/shard swapped for
    their transformed copies; `parent_id` holds the original id. The derived shard is built once
    (atomically) and reused by every experiment that asks for the same transform of the same images."""
    from attribench.transforms import make_spec  # every transform plugin (torch): only when a view is derived

    spec = make_spec(spec)
    parents = rows.drop_duplicates("image_id")
    shard = Path(shard) if shard else derived_shard_path(cfg, spec, parents["image_id"])
    if not shard.exists():
        transform_rows(cfg, parents, spec, shard, spec, batch_size=derive_batch_size(cfg, spec))
    derived = read_metadata([shard])[["image_id", "parent_id", "shard", "transform"]]
    missing = set(parents["image_id"]) - set(derived["parent_id"])
    if missing:
        raise RuntimeError(
            f"{shard}: no derived image for {len(missing)} parent(s), e.g. {sorted(missing)[:3]}; delete it to rebuild"
        )
    derived = derived.drop_duplicates("parent_id")
    out = rows.drop(columns=[c for c in ("parent_id", "transform") if c in rows]).rename(
        columns={"image_id": "parent_id", "shard": "parent_shard"}
    )
    return out.merge(derived, on="parent_id", how="left", validate="many_to_one")
