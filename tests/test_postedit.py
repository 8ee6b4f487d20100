"""Post-editing: imported external edits are keyed to the original test image id and re-delivered."""

import json
import logging

import numpy as np
import pytest

from PIL import Image

from attribench.core.paths import edit_targets
from attribench.transforms.postedit import import_external_edits
from attribench.data.shards import encode_png, make_row, read_metadata, read_shard, write_shard


def _setup(tmp_path):
    rng = np.random.default_rng(0)
    rows = [
        make_row(
            encode_png(Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8))),
            "png",
            generator=g,
            family=g,
            prompt=f"p{i}",
            prompt_id=f"p{i}",
            prompt_source="natural",
        )
        for g in ("a", "b")
        for i in range(4)
    ]
    index = read_metadata([write_shard(rows, tmp_path / "s.parquet")])
    index["split"], index["in_benchmark"] = "test", True
    index.to_parquet(tmp_path / "index.parquet")
    folder = tmp_path / "genfill"
    folder.mkdir()
    for image_id in index["image_id"][:3]:
        Image.new("RGB", (80, 80), "purple").save(folder / f"{image_id}.png")
    Image.new("RGB", (8, 8)).save(folder / "not-a-test-image.png")
    cfg = {
        "profile": "t",
        "split": {"seed": 0},
        "datasets": {"all": {}},
        "delivery": {"size": 16, "format": "jpeg", "quality": 90},
        "post_editing": {
            "experiment": "x",
            "dataset": "all",
            "tools": {
                "genfill": {"folder": str(folder)},
                "inp": {"transform": {"name": "inpaint"}, "bands": ["small", "large"]},
            },
        },
    }
    return cfg, index


def test_external_edits_keep_their_original_and_the_delivery(tmp_path, caplog):
    cfg, index = _setup(tmp_path)
    with caplog.at_level(logging.WARNING):
        out = import_external_edits(cfg, "genfill", tmp_path / "index.parquet", tmp_path / "edited.parquet")
    df = read_shard(out)
    assert list(df.parent_id) == sorted(index["image_id"][:3])
    assert set(df.source) == {"edited"} and set(df.format) == {"jpeg"} and set(df.width) == {16}
    parents = index.set_index("image_id")
    assert list(df.generator) == list(parents.loc[df.parent_id, "generator"])  # the class comes from the original
    assert "not-a-test-image.png" in caplog.text
    assert json.loads(df["transform"].iloc[0])["tool"] == "genfill"


def test_edit_targets_cover_every_tool_and_band():
    cfg = {
        "profile": "smoke",
        "post_editing": {"tools": {"genfill": {"folder": "x"}, "inp": {"bands": ["small", "large"]}}},
    }
    assert edit_targets(cfg) == {
        ("genfill", "all"): "data/smoke/edits/genfill/all.parquet",
        ("inp", "small"): "data/smoke/edits/inp/small.parquet",
        ("inp", "large"): "data/smoke/edits/inp/large.parquet",
    }


def test_perturbed_test_set_keeps_parents_and_the_delivery(tmp_path):
    from attribench.transforms.derived import derived_view

    cfg, index = _setup(tmp_path)
    out = tmp_path / "blur.parquet"
    view = derived_view(cfg, index, {"name": "gaussian_blur", "radius": 2}, shard=out)
    assert list(view["parent_id"]) == list(index["image_id"]) and (view["shard"] == str(out)).all()
    df = read_shard(out)
    assert sorted(df.parent_id) == sorted(index.image_id) and list(df.generator) == list(index.generator)
    assert set(df.format) == {"jpeg"} and set(df.width) == {16}
    assert all(json.loads(t)["name"] == "gaussian_blur" for t in df["transform"])


def test_exported_edit_inputs_come_back_as_edits_of_their_originals(tmp_path):
    # Main before: nothing exported the images an external tool must edit; the rehearsal's stand-in
    # edit folders stayed empty and Table 4's import failed.
    from attribench.transforms.postedit import export_edit_inputs

    cfg, index = _setup(tmp_path)
    exported = export_edit_inputs(cfg, tmp_path / "index.parquet", tmp_path / "to_edit")
    assert sorted(p.stem for p in exported) == sorted(index["image_id"]) and {p.suffix for p in exported} == {".png"}
    folder = tmp_path / "genfill"
    for p in folder.iterdir():
        p.unlink()
    for p in exported:  # the user's edit: any change, saved under the same stem
        Image.open(p).rotate(90).save(folder / f"{p.stem}.png")
    df = read_shard(import_external_edits(cfg, "genfill", tmp_path / "index.parquet", tmp_path / "edited.parquet"))
    assert sorted(df.parent_id) == sorted(index["image_id"])


def test_an_empty_edit_folder_says_how_to_fill_it(tmp_path):
    cfg, _index = _setup(tmp_path)
    for p in (tmp_path / "genfill").iterdir():
        p.unlink()
    with pytest.raises(ValueError, match=r"attribench edit-inputs .*index.parquet <dir>"):
        import_external_edits(cfg, "genfill", tmp_path / "index.parquet", tmp_path / "edited.parquet")
