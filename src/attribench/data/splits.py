"""Prompt-disjoint splits: every image of one prompt, across generators, lands in one split.

Prompts (groups) are shuffled with a seeded RNG and cut by `split.fractions`; then each class is
sampled down to `split.counts` per split. The index keeps every image (with its split) and marks
the per-class sample in `in_benchmark`, so experiments that need other subsets can draw from it.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from attribench.core.io import atomic_path
from attribench.data.shards import read_metadata

log = logging.getLogger(__name__)
SPLITS = ("train", "val", "test")


def group_key(meta: pd.DataFrame) -> pd.Series:
    """The unit that never crosses splits: the prompt, or the image itself when it has none."""
    return meta["prompt_id"].fillna("img:" + meta["image_id"])


def assign_splits(groups: pd.Series, fractions: dict, seed: int) -> pd.Series:
    uniq = np.array(sorted(groups.unique()))
    rank = np.random.default_rng(seed).permutation(len(uniq))  # a random position per group
    weights = np.array([fractions[s] for s in SPLITS], dtype=float)
    bounds = np.cumsum(weights / weights.sum()) * len(uniq)
    labels = np.array(SPLITS)[np.minimum(np.searchsorted(bounds, rank, side="right"), len(SPLITS) - 1)]
    return groups.map(dict(zip(uniq, labels)))


def sample_per_class(index: pd.DataFrame, counts: dict, seed: int) -> pd.Series:
    rng = np.random.default_rng(seed + 1)
    chosen = pd.Series(False, index=index.index)
    for (gen, split), rows in index.sort_values("image_id").groupby(["generator", "split"], sort=True):
        want = counts[split]
        if len(rows) < want:
            log.warning("class %s has %d %s images; params ask for %d", gen, len(rows), split, want)
        take = rows.index.to_numpy()[rng.permutation(len(rows))[:want]]
        chosen[take] = True
    return chosen


def build_index(shards: list[str | Path], split_cfg: dict) -> pd.DataFrame:
    meta = read_metadata(shards)
    meta["group"] = group_key(meta)
    meta["split"] = assign_splits(meta["group"], split_cfg["fractions"], split_cfg["seed"])
    meta["in_benchmark"] = sample_per_class(meta, split_cfg["counts"], split_cfg["seed"])
    return meta.sort_values(["generator", "split", "image_id"]).reset_index(drop=True)


def write_index(shards: list[str | Path], split_cfg: dict, out: str | Path) -> pd.DataFrame:
    index = build_index(shards, split_cfg)
    with atomic_path(out) as tmp:
        index.to_parquet(tmp, index=False)
    return index
