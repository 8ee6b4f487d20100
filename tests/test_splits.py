import numpy as np
import pandas as pd

from attribench.data.shards import encode_png, make_row, write_shard
from attribench.data.splits import assign_splits, build_index


def _shards(tmp_path, gens=("a", "b", "c"), n_prompts=60):
    paths = []
    rng = np.random.default_rng(0)
    for g in gens:
        rows = []
        for p in range(n_prompts):
            for k in range(2):
                from PIL import Image

                img = Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8))
                rows.append(
                    make_row(
                        encode_png(img),
                        "png",
                        generator=g,
                        family=g,
                        prompt_id=f"p{p}",
                        prompt=f"prompt {p}",
                        prompt_source="natural" if p % 2 else "creative",
                    )
                )
        paths.append(write_shard(rows, tmp_path / f"{g}.parquet"))
    return paths


def test_no_prompt_crosses_splits_and_counts_hold(tmp_path):
    cfg = {
        "seed": 3,
        "fractions": {"train": 0.6, "val": 0.2, "test": 0.2},
        "counts": {"train": 40, "val": 10, "test": 10},
    }
    index = build_index(_shards(tmp_path), cfg)
    assert (index.groupby("prompt_id")["split"].nunique() == 1).all()
    bench = index[index.in_benchmark]
    counts = bench.groupby(["generator", "split"]).size()
    assert (counts.xs("train", level="split") == 40).all() and (counts.xs("test", level="split") == 10).all()
    # Deterministic in the seed.
    again = build_index(_shards(tmp_path), cfg)
    pd.testing.assert_frame_equal(index, again)


def test_split_fractions_are_respected():
    groups = pd.Series([f"g{i}" for i in range(1000)])
    s = assign_splits(groups, {"train": 0.7, "val": 0.15, "test": 0.15}, seed=0)
    frac = s.value_counts(normalize=True)
    assert abs(frac["train"] - 0.7) < 0.01 and abs(frac["test"] - 0.15) < 0.01


def test_images_without_prompt_are_their_own_group(tmp_path):
    from PIL import Image

    rows = [
        make_row(encode_png(Image.new("RGB", (4, 4), (i, 0, 0))), "png", generator="g", family="g") for i in range(30)
    ]
    path = write_shard(rows, tmp_path / "g.parquet")
    cfg = {
        "seed": 0,
        "fractions": {"train": 0.5, "val": 0.25, "test": 0.25},
        "counts": {"train": 5, "val": 2, "test": 2},
    }
    index = build_index([path], cfg)
    assert index.group.is_unique and set(index.split) == {"train", "val", "test"}


def test_an_image_in_two_classes_stops_the_index_merge(tmp_path):
    """Two import folders holding the same files (the rehearsal's Midjourney 5.2 / 6 stand-ins did) make
    images with two labels: the merge names the classes and how many, and writes no index."""
    import pytest

    from attribench.data.splits import merge_index

    cfg = {"seed": 0, "fractions": {"train": 0.6, "val": 0.2, "test": 0.2}, "counts": {"train": 4, "val": 1, "test": 1}}
    a, b = _shards(tmp_path, gens=("a", "b"), n_prompts=10)
    index = build_index([a, b], cfg)
    clean = []
    for g, rows in index.groupby("generator"):
        clean.append(tmp_path / f"{g}.index.parquet")
        rows.to_parquet(clean[-1])
    assert len(merge_index(clean, tmp_path / "index.parquet")) == len(index)
    copy = index[index.generator == "a"].head(3).assign(generator="b")  # a's bytes under class b too
    copy.to_parquet(tmp_path / "dup.index.parquet")
    with pytest.raises(ValueError, match=r"3 image\(s\) are in more than one class \(a \+ b: 3\)"):
        merge_index([*clean, tmp_path / "dup.index.parquet"], tmp_path / "bad.parquet")
    assert not (tmp_path / "bad.parquet").exists()
