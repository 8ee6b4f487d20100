"""Prompt-disjoint splits: every image of one prompt, across generators, lands in one split.

Stable by construction, so adding or removing a class or a prompt never moves another image:
a group's split is a function of (seed, group key) alone (a hash mapped to [0, 1) and cut by
`split.fractions`), and each class's benchmark sample ranks its own images by a hash keyed by
(seed, class, image id) and keeps the first `split.counts`. The index keeps every image (with its
split) and marks the per-class sample in `in_benchmark`. A class that cannot meet a count is an
error naming class, split and numbers, unless `split.allow_short` lists it.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from attribench.core.io import atomic_path
from attribench.data.shards import read_metadata

log = logging.getLogger(__name__)
SPLITS = ("train", "val", "test")
INDEX_ORDER = ["generator", "split", "image_id"]  # the row order of every index file


class ShortClassError(ValueError):
    """A class has fewer images in a split than `split.counts` asks for."""


def group_key(meta: pd.DataFrame) -> pd.Series:
    """The unit that never crosses splits: the prompt, or the image itself when it has none."""
    return meta["prompt_id"].fillna("img:" + meta["image_id"])


def unit_hash(*parts) -> float:
    """A uniform number in [0, 1) that depends only on `parts` (SHA-256, not Python's salted hash)."""
    digest = hashlib.sha256("\x1f".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def assign_splits(groups: pd.Series, fractions: dict, seed: int) -> pd.Series:
    weights = np.array([fractions[s] for s in SPLITS], dtype=float)
    cuts = np.cumsum(weights / weights.sum())
    labels = {g: SPLITS[min(int(np.searchsorted(cuts, unit_hash(seed, "split", g), side="right")), len(SPLITS) - 1)]
              for g in groups.unique()}
    return groups.map(labels)


def sample_per_class(index: pd.DataFrame, counts: dict, seed: int, allow_short=()) -> pd.Series:
    """Per class and split, the `counts[split]` images of smallest (seed, class, image id) hash."""
    rank = pd.Series([unit_hash(seed, "sample", g, i) for g, i in zip(index["generator"], index["image_id"])],
                     index=index.index)
    chosen = pd.Series(False, index=index.index)
    short = []
    for gen, rows in index.groupby("generator", sort=True):
        for split in SPLITS:
            ids = rank[rows.index[rows["split"] == split]].sort_values(kind="stable").index
            want = counts[split]
            if len(ids) < want:
                msg = f"class {gen}: {len(ids)} {split} images, split.counts.{split} asks for {want}"
                if gen not in allow_short:
                    short.append(msg)
                log.warning("%s%s", msg, " (allowed: split.allow_short)" if gen in allow_short else "")
            chosen[ids[:want]] = True
    if short:
        raise ShortClassError("; ".join(short) + ". Lower split.counts, render more prompts, or list the "
                              "class in split.allow_short")
    return chosen


def build_index(shards: list[str | Path], split_cfg: dict) -> pd.DataFrame:
    meta = read_metadata(shards)
    meta["group"] = group_key(meta)
    meta["split"] = assign_splits(meta["group"], split_cfg["fractions"], split_cfg["seed"])
    meta["in_benchmark"] = sample_per_class(meta, split_cfg["counts"], split_cfg["seed"], split_cfg.get("allow_short", ()))
    return meta.sort_values(INDEX_ORDER).reset_index(drop=True)


def class_split_config(split_cfg: dict, generator: str) -> dict:
    """One class's split settings: `allow_short` narrowed to that class (so listing another class there
    changes nothing about this one's index)."""
    return {**split_cfg, "allow_short": [generator] if generator in (split_cfg.get("allow_short") or ()) else []}


def write_index(shards: list[str | Path], split_cfg: dict, out: str | Path, generator: str | None = None) -> pd.DataFrame:
    """The index of `shards`; with `generator`, one class's part of it (a split is a function of each
    group and each class alone, so the parts of all classes concatenate to the whole index)."""
    index = build_index(shards, split_cfg)
    if generator is not None:
        other = sorted(set(index["generator"]) - {generator})
        if other:
            raise ValueError(f"class index of '{generator}': its shards also hold images of {other}")
    with atomic_path(out) as tmp:
        index.to_parquet(tmp, index=False)
    return index


def read_index(paths: list[str | Path]) -> pd.DataFrame:
    """Class index files as one index, in the order `build_index` gives the whole."""
    index = pd.concat([pd.read_parquet(p) for p in paths], ignore_index=True)
    return index.sort_values(INDEX_ORDER).reset_index(drop=True)


def merge_index(class_files: list[str | Path], out: str | Path) -> pd.DataFrame:
    index = read_index(class_files)
    check_one_class_per_image(index)
    with atomic_path(out) as tmp:
        index.to_parquet(tmp, index=False)
    return index


def check_one_class_per_image(index: pd.DataFrame) -> None:
    """An image id is a content hash: the same bytes in two classes have no one label (e.g. two import
    folders holding the same files). Every such pair of classes is named, with how many images."""
    classes = index.groupby("image_id")["generator"].unique()
    shared = classes[classes.map(len) > 1]
    if len(shared):
        pairs = shared.map(lambda g: " + ".join(sorted(g))).value_counts()
        raise ValueError(
            f"{len(shared)} image(s) are in more than one class ("
            + "; ".join(f"{k}: {v}" for k, v in pairs.items())
            + f"), e.g. {shared.index[0]}: the same bytes cannot carry two labels (do two import folders hold the same files?)"
        )
