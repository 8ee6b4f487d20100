"""Named dataset specs: which images of the split index an experiment trains or tests on.

A spec filters the index (classes, prompt sources) and either takes the split's per-class sample
(`in_benchmark`) or draws its own per-class counts, split by split. With several prompt sources and
counts, each source contributes an equal share, so "train on both" has the same total as "train on
one" (Xu et al. Table 2). Selection is seeded by the dataset name: a test set is the same images in
every experiment that uses it.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd

from attribench.splits import SPLITS


def _seed(name: str, base: int) -> int:
    return base + int.from_bytes(hashlib.sha256(name.encode()).digest()[:4], "big")


def select(index: pd.DataFrame, name: str, spec: dict, seed: int = 0) -> pd.DataFrame:
    df = index
    if spec.get("classes"):
        unknown = set(spec["classes"]) - set(index["generator"])
        if unknown:
            raise KeyError(f"datasets.{name}.classes names generators not in the index: {sorted(unknown)}")
        df = df[df["generator"].isin(spec["classes"])]
    if spec.get("exclude"):
        df = df[~df["generator"].isin(spec["exclude"])]
    sources = spec.get("prompt_sources")
    if sources:
        df = df[df["prompt_source"].isin(sources)]
    if "counts" not in spec:
        out = df[df["in_benchmark"]]
    else:
        rng = np.random.default_rng(_seed(name, seed))
        picks = []
        groups = df.sort_values("image_id").groupby(["generator", "split", "prompt_source"], sort=True)
        for (gen, split, _src), rows in groups:
            want = spec["counts"][split] // (len(sources) if sources else 1)
            if len(rows) < want:
                raise ValueError(
                    f"dataset '{name}': class {gen} has {len(rows)} {split} images from source {_src}; "
                    f"{want} wanted (lower datasets.{name}.counts or render more prompts)"
                )
            picks.append(rows.iloc[rng.permutation(len(rows))[:want]])
        out = pd.concat(picks) if picks else df.iloc[:0]
    if spec.get("train_per_class"):  # training-size curves (Xu et al. Fig. 3 right): fewer train images
        out = _cap_train(out, spec["train_per_class"], _seed(name, seed))
    if out.empty:
        raise ValueError(f"dataset '{name}' selects no images")
    return out.sort_values(["generator", "split", "image_id"]).reset_index(drop=True)


def _cap_train(df: pd.DataFrame, per_class: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    train = df[df["split"] == "train"].sort_values("image_id")
    keep = [rows.iloc[rng.permutation(len(rows))[:per_class]] for _, rows in train.groupby("generator", sort=True)]
    return pd.concat([df[df["split"] != "train"], *keep])


def split_counts(df: pd.DataFrame) -> dict:
    return {s: int((df["split"] == s).sum()) for s in SPLITS}
