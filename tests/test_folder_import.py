import csv
import logging

import pandas as pd
import pytest
from PIL import Image

from attribench.data.generators.folder_backend import BadImportFiles
from attribench.data.render import render_shard
from attribench.data.shards import read_shard


@pytest.fixture()
def messy_folder(tmp_path):
    folder = tmp_path / "imports"
    folder.mkdir()
    for i, color in enumerate(["red", "green", "blue"]):
        Image.new("RGB", (80, 60), color).save(folder / f"img{i}.jpg", quality=90)
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg")
    (folder / "notes.txt").write_text("not an image")
    with open(folder / "captions.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["file", "caption"])
        w.writerows([["img0.jpg", "A red wall."], ["img1.jpg", "A green field."]])
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
        "prompts": {"chunk_size": 10, "sources": {}},
    }


def test_skip_mode_reports_each_bad_file_and_imports_the_rest(messy_folder, tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        out = render_shard(_cfg(messy_folder), "mj", "folder-0000", tmp_path / "mj.parquet")
    assert "broken.jpg" in caplog.text and "cannot decode" in caplog.text
    assert "notes.txt" in caplog.text and "not an image file type" in caplog.text
    df = read_shard(out)
    assert sorted(df.origin) == ["img0.jpg", "img1.jpg", "img2.jpg"]
    assert set(df.format) == {"jpeg"} and set(df.source) == {"imported"}
    caps = dict(zip(df.origin, df.prompt))
    assert caps["img0.jpg"] == "A red wall." and pd.isna(caps["img2.jpg"])
    # An uncaptioned file is its own split group.
    assert df.set_index("origin").loc["img2.jpg", "prompt_id"].startswith("file:")


def test_stop_mode_names_every_bad_file_and_leaves_existing_shard(messy_folder, tmp_path):
    out = tmp_path / "mj.parquet"
    out.write_bytes(b"an earlier shard")
    with pytest.raises(BadImportFiles) as err:
        render_shard(_cfg(messy_folder, on_bad_file="stop"), "mj", "folder-0000", out)
    assert "broken.jpg" in str(err.value) and "notes.txt" in str(err.value)
    assert out.read_bytes() == b"an earlier shard"


def test_expand_to_makes_deterministic_crops(messy_folder, tmp_path):
    a = read_shard(render_shard(_cfg(messy_folder, expand_to=7), "mj", "folder-0000", tmp_path / "a.parquet"))
    b = read_shard(render_shard(_cfg(messy_folder, expand_to=7), "mj", "folder-0000", tmp_path / "b.parquet"))
    assert len(a) == 7 and list(a.image_id) == list(b.image_id)
    crops = a[a.image_index > 0]
    assert len(crops) == 4 and crops.parent_id.notna().all() and crops["transform"].str.contains("random_crop").all()
    # Crops keep their photo's caption group, so they can never land in another split.
    assert set(crops.prompt_id) <= set(a[a.image_index == 0].prompt_id)
