"""Synthetic image shards for the streaming benchmarks: smooth random colour fields (cheap to encode,
PNG sizes like photos) at a delivery size, written as real shards with a split index."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from PIL import Image

from attribench.data.shards import encode_png, make_row, read_metadata, write_shard

CLASSES = ["a", "b", "c", "d"]


def smooth_image(rng: np.random.Generator, size: int) -> Image.Image:
    coarse = torch.from_numpy(rng.integers(0, 256, (1, 3, 16, 16)).astype(np.float32))
    img = F.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=False)[0]
    img = img + torch.from_numpy(rng.normal(0, 6, (3, size, size)).astype(np.float32))
    return Image.fromarray(img.clamp(0, 255).byte().permute(1, 2, 0).numpy())


def synthetic_index(root: Path, n: int, size: int, per_shard: int = 50, seed: int = 0) -> pd.DataFrame:
    """n images (train 70% / val 15% / test 15%, classes round-robin) at size x size, cached by (n, size)."""
    root = Path(root) / f"n{n}_s{size}"
    if (root / "index.parquet").exists():
        return pd.read_parquet(root / "index.parquet")
    rng = np.random.default_rng(seed)
    shards, rows = [], []
    for k in range(n):
        split = "train" if k % 20 < 14 else ("val" if k % 20 < 17 else "test")
        rows.append(
            make_row(
                encode_png(smooth_image(rng, size)),
                "png",
                generator=CLASSES[k % len(CLASSES)],
                source="generated",
                prompt=f"{split} {k}",
                prompt_source="synthetic",
            )
        )
        if len(rows) == per_shard or k == n - 1:
            shards.append(write_shard(rows, root / f"shard{len(shards):04d}.parquet"))
            rows = []
    index = read_metadata(shards)
    index["split"] = index["prompt"].str.split().str[0]
    index.to_parquet(root / "index.parquet")
    return index
