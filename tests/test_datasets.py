import pandas as pd
import pytest

from attribench.data.views import select, split_counts


def _index(n_prompts=40, gens=("a", "b", "real")):
    rows = []
    for g in gens:
        for p in range(n_prompts):
            src = "caption" if g == "real" else ("natural" if p % 2 else "creative")
            split = ["train", "train", "val", "test"][(p // 2) % 4]
            rows.append(
                {
                    "image_id": f"{g}{p}",
                    "generator": g,
                    "prompt_id": f"p{p}",
                    "prompt_source": src,
                    "split": split,
                    "in_benchmark": p < 30,
                    "shard": "x",
                }
            )
    return pd.DataFrame(rows)


def test_no_counts_takes_the_benchmark_sample():
    df = select(_index(), "all", {})
    assert df["in_benchmark"].all() and set(df.generator) == {"a", "b", "real"}


def test_both_has_the_same_total_as_one_source_with_an_equal_share():
    idx = _index()
    counts = {"train": 6, "val": 2, "test": 4}
    nat = select(idx, "natural", {"prompt_sources": ["natural"], "exclude": ["real"], "counts": counts})
    both = select(idx, "both", {"prompt_sources": ["natural", "creative"], "exclude": ["real"], "counts": counts})
    assert split_counts(nat) == split_counts(both) == {"train": 12, "val": 4, "test": 8}
    per_source = both[both.split == "train"].groupby(["generator", "prompt_source"]).size()
    assert (per_source == 3).all()
    assert "real" not in set(both.generator)


def test_a_test_set_is_the_same_images_wherever_it_is_used():
    idx = _index()
    spec = {"prompt_sources": ["creative"], "counts": {"train": 4, "val": 1, "test": 2}}
    a, b = select(idx, "creative", spec), select(idx.sample(frac=1, random_state=1), "creative", spec)
    assert list(a.image_id) == list(b.image_id)


def test_too_few_images_is_a_clear_error():
    with pytest.raises(ValueError, match=r"dataset 'big'.*lower datasets.big.counts"):
        select(_index(), "big", {"prompt_sources": ["natural"], "counts": {"train": 500, "val": 1, "test": 1}})
    with pytest.raises(KeyError, match="zzz"):
        select(_index(), "x", {"classes": ["zzz"]})
