"""Folder imports carry the prompt source of their captions, so the prompt views keep them."""

import csv

import pytest
from PIL import Image

from attribench.data.render import render_shard
from attribench.data.shards import read_shard


@pytest.fixture()
def mj_folder(tmp_path):
    folder = tmp_path / "mj"
    folder.mkdir()
    rows = [["a.png", "A red wall.", "natural"], ["b.png", "A dragon of glass, art nouveau.", "creative"]]
    for (name, _, _), color in zip(rows, ["red", "blue"]):
        Image.new("RGB", (32, 32), color).save(folder / name)
    with open(folder / "captions.csv", "w", newline="") as f:
        csv.writer(f).writerows([["file", "caption", "prompt_source"], *rows])
    return folder


def _cfg(folder, **extra):
    spec = {
        "backend": "folder",
        "family": "midjourney",
        "source": "imported",
        "path": str(folder),
        "captions": str(folder / "captions.csv"),
        **extra,
    }
    return {
        "profile": "test",
        "seed": 0,
        "device": "cpu",
        "generators": {"mj": spec},
        "prompts": {"chunk_size": 10, "sources": {"natural": {}, "creative": {}}},
    }


def test_per_file_sources_from_the_captions_csv(mj_folder, tmp_path):
    df = read_shard(
        render_shard(
            _cfg(mj_folder, prompt_sources=["natural", "creative"]), "mj", "folder-0000", tmp_path / "o.parquet"
        )
    )
    assert dict(zip(df["origin"], df["prompt_source"])) == {"a.png": "natural", "b.png": "creative"}


def test_one_declared_source_applies_to_every_caption(mj_folder, tmp_path):
    df = read_shard(
        render_shard(_cfg(mj_folder, prompt_sources=["creative"]), "mj", "folder-0000", tmp_path / "o.parquet")
    )
    assert set(df["prompt_source"]) == {"creative"}


def test_undeclared_source_in_the_csv_is_an_error_naming_it(mj_folder, tmp_path):
    with pytest.raises(
        ValueError, match=r"prompt_source value\(s\) \['natural'\] are not in generators.mj.prompt_sources"
    ):
        render_shard(
            _cfg(mj_folder, prompt_sources=["creative", "other"])
            | {"prompts": {"chunk_size": 10, "sources": {"creative": {}, "other": {}}}},
            "mj",
            "folder-0000",
            tmp_path / "o.parquet",
        )


def test_without_declared_sources_captions_stay_captions(mj_folder, tmp_path):
    df = read_shard(render_shard(_cfg(mj_folder), "mj", "folder-0000", tmp_path / "o.parquet"))
    assert set(df["prompt_source"]) == {"caption"}
