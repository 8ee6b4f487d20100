"""Tiny colour-class datasets for the tests that train: each class is one colour plus Gaussian noise, so a
few epochs on a tiny net separate the classes. One place builds the images, shard rows and indexes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from attribench.data.shards import encode_png, make_row, read_metadata, write_shard

# The training block of the small end-to-end runs (a 16 px test_resnet, 6 epochs).
TOY_TRAINING = {
    "epochs": 6,
    "warmup_epochs": 1,
    "batch_size": 8,
    "lr": 2e-3,
    "min_lr": 1e-5,
    "weight_decay": 0.05,
    "input_size": 16,
    "seed": 0,
}
TOY_NET = {"toy": {"kind": "timm_scratch", "label": "toy net", "spec": {"model": "test_resnet"}}}


def noisy(colour, rng: np.random.Generator, shape: tuple[int, int], sigma: float = 30) -> np.ndarray:
    """An HxWx3 uint8 image: `colour` plus N(0, sigma) noise per pixel and channel."""
    return np.clip(np.array(colour) + rng.normal(0, sigma, (*shape, 3)), 0, 255).astype(np.uint8)


def png_row(img: np.ndarray, generator: str, **meta) -> dict:
    return make_row(encode_png(Image.fromarray(img)), "png", generator=generator, **meta)


def prompt_split_rows(colours: dict, rng, counts: dict, shape, sigma: float) -> dict[str, list[dict]]:
    """Rows per class: `counts[split]` noisy images of the class colour, prompt '<split> <i>' (read back as
    the split by `prompt_split_index`)."""
    return {
        g: [
            png_row(
                noisy(colour, rng, shape, sigma),
                g,
                source="generated",
                prompt=f"{split} {i}",
                prompt_source="toy",
            )
            for split, n in counts.items()
            for i in range(n)
        ]
        for g, colour in colours.items()
    }


def natural_rows(colours: dict, rng, per_class: int, real: str) -> list[dict]:
    """`per_class` 24 px images per colour class with prompts p0, p1, ... (source 'natural'), family =
    class; the class named `real` plays the real photos."""
    return [
        png_row(
            noisy(colour, rng, (24, 24), sigma=25),
            g,
            family=g,
            source="real" if g == real else "generated",
            prompt=f"p{i}",
            prompt_id=f"p{i}",
            prompt_source="natural",
        )
        for g, colour in colours.items()
        for i in range(per_class)
    ]


def prompt_split_index(shards: list[Path]) -> pd.DataFrame:
    """The shards' index with the split each row's prompt names."""
    index = read_metadata(shards)
    index["split"] = index["prompt"].str.split().str[0]
    return index


def quarter_split_index(rows: list[dict], root: Path) -> Path:
    """Rows written as one shard under `root`, indexed with splits train, train, val, test in turn and
    every row in the benchmark; returns the index file's path."""
    index = read_metadata([write_shard(rows, root / "toy.parquet")])
    index["split"] = np.array(["train", "train", "val", "test"])[np.arange(len(index)) % 4]
    index["in_benchmark"] = True
    index.to_parquet(root / "index.parquet")
    return root / "index.parquet"
