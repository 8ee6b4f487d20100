"""Studies that train and test on transformed images (Fig. 6 / 7 / 15): derived shards keep parent ids,
patches crop what they say, and transforms that cannot run here are reported, not faked."""

import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from attribench.experiments.runs import experiment_spec, run_experiment, transform_status
from attribench.data.shards import decode, load_images, read_metadata
from attribench.reports.study_figures import study_rows
from attribench.transforms import apply, make_spec
from test_experiments import _cfg, _index


def _study_cfg():
    cfg = _cfg()
    cfg["delivery"] = {"size": 24, "format": "png"}
    cfg["experiments"]["blurred"] = {
        "attributor": "toy",
        "train": "natural",
        "test": ["natural", "creative"],
        "transform": {"name": "gaussian_blur", "radius": 2},
    }
    cfg["experiments"]["depth"] = {"attributor": "toy", "train": "natural", "transform": {"name": "depth"}}
    cfg["experiments"]["perspective"] = {
        "attributor": "toy",
        "train": "natural",
        "transform": {"name": "perspective_field"},
    }
    cfg["tables"] = {"fig7_representations": {"experiments": ["xd", "blurred", "depth", "perspective"]}}
    return cfg


def _high_freq(img: np.ndarray) -> float:
    g = img.astype(float).mean(-1)
    return float(np.abs(np.diff(g, axis=0)).mean() + np.abs(np.diff(g, axis=1)).mean())


def test_derived_rows_keep_parent_ids_split_and_transform(tmp_path, monkeypatch):
    index_path = _index(tmp_path)
    monkeypatch.chdir(tmp_path)  # derived shards go under data/<profile>/derived
    cfg = _study_cfg()
    m = run_experiment(cfg, "blurred", index_path, tmp_path / "runs" / "blurred", threads=1)
    assert m["transform"] == make_spec({"name": "gaussian_blur", "radius": 2})

    (shard,) = sorted((tmp_path / "data" / "test" / "derived").glob("gaussian_blur-*.parquet"))
    derived = read_metadata([shard])
    parents = pd.read_parquet(index_path).set_index("image_id")
    assert derived["parent_id"].isin(parents.index).all()
    assert not derived["image_id"].isin(parents.index).any()
    assert {json.dumps(json.loads(t), sort_keys=True) for t in derived["transform"]} == {
        json.dumps(m["transform"], sort_keys=True)
    }
    for col in ("generator", "prompt_id", "prompt_source"):
        assert (derived[col].to_numpy() == parents.loc[derived["parent_id"], col].to_numpy()).all()

    # What was tested is the derived images, and they really are blurred versions of their parents.
    preds = pd.read_parquet(tmp_path / "runs" / "blurred" / "predictions_creative.parquet")
    assert preds["image_id"].isin(derived["image_id"]).all() and len(preds) == m["test"]["creative"]["n"]
    sample = derived.head(6)
    kids = load_images(sample)
    moms = load_images(parents.loc[sample["parent_id"]].reset_index())
    for kid, mom in zip(sample["image_id"], sample["parent_id"]):
        assert _high_freq(np.asarray(decode(kids[kid]))) < 0.6 * _high_freq(np.asarray(decode(moms[mom])))

    # A second experiment over the same images and transform reuses the shard instead of rebuilding it.
    before = shard.stat().st_mtime_ns
    cfg["experiments"]["blurred2"] = dict(cfg["experiments"]["blurred"])
    run_experiment(cfg, "blurred2", index_path, tmp_path / "runs" / "blurred2", threads=1)
    assert shard.stat().st_mtime_ns == before


def test_study_rows_mark_transforms_that_cannot_run_here():
    cfg = _study_cfg()
    cfg["profile"], cfg["delivery"] = "test", {"size": 24}
    assert transform_status(cfg, "blurred") == "ok"
    assert transform_status(cfg, "depth") == "needs weights"  # no depth weights on this machine
    assert transform_status(cfg, "perspective") == "not available"
    run = {
        "experiment": "xd",
        "test": {"natural": {"accuracy": 0.9, "accuracy_ci95": [0.8, 1.0], "macro_f1": 0.9, "n": 8}},
        "n_train": 16,
        "n_classes": 2,
        "chance": 0.5,
        "attributor_label": "toy",
        "train_seconds": 1.0,
    }
    df = study_rows([run], cfg, "fig7_representations").set_index("experiment")
    assert df.loc["xd", "status"] == "ran" and df.loc["xd", "accuracy"] == 0.9
    assert df.loc["depth", "status"].startswith("needs weights") and np.isnan(df.loc["depth", "accuracy"])
    assert df.loc["perspective", "status"] == "not available"
    assert df.loc["blurred", "status"] == "missing run"


def test_experiment_spec_rejects_unknown_transform_parameters():
    cfg = _study_cfg()
    cfg["experiments"]["bad"] = {
        "attributor": "toy",
        "train": "natural",
        "transform": {"name": "gaussian_blur", "radius": 2, "sigma": 3},
    }
    with pytest.raises(TypeError, match="experiments.bad.transform"):
        experiment_spec(cfg, "bad")


def test_center_patch_is_the_centre_k_by_k_resized_back():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (1, 16, 16, 3), dtype=np.uint8)
    same = apply({"name": "center_patch", "k": 16}, img)
    np.testing.assert_array_equal(same, img)  # the whole image: nothing cropped, nothing resized
    out = apply({"name": "center_patch", "k": 2}, img)
    expected = np.asarray(Image.fromarray(img[0, 7:9, 7:9]).resize((16, 16), Image.BICUBIC))
    np.testing.assert_array_equal(out[0], expected)
    assert _high_freq(out[0]) < 0.25 * _high_freq(img[0])
    # `base` first brings the short side to that size (paper: 512), then crops.
    up = apply({"name": "center_patch", "k": 4, "base": 32}, img)
    base = Image.fromarray(img[0]).resize((32, 32), Image.BICUBIC)
    np.testing.assert_array_equal(up[0], np.asarray(base.crop((14, 14, 18, 18)).resize((16, 16), Image.BICUBIC)))
    with pytest.raises(ValueError, match="k=32"):
        apply({"name": "center_patch", "k": 32}, img)


def test_a_transform_on_a_zoo_model_counts_as_available_before_the_zoo_is_built(smoke_cfg, tmp_path, monkeypatch):
    # A fresh clone: the DAG (and a report's declared runs) are decided before models/zoo exists. The
    # SDEdit runs were left out of fig6's inputs, and the report then failed on their missing metrics.
    monkeypatch.chdir(tmp_path)
    assert transform_status(smoke_cfg, "fig6_sdedit_s001") == "ok"
    spec = experiment_spec(smoke_cfg, "fig6_sdedit_s001")["transform"]
    assert spec["model"].startswith("models/zoo/") and not (tmp_path / spec["model"]).exists()


def test_a_view_too_short_for_its_counts_fails_when_the_index_is_merged(tmp_path):
    # Main before: the index job checked only which classes a view holds; a view whose `counts` one class
    # could not meet (the rehearsal's Midjourney stand-ins: 1 creative test image, 2 wanted) failed in
    # its training job, after the other runs had trained.
    from attribench.data.views import check_view_inputs
    from toy_data import natural_rows, quarter_split_index

    colours = {"red": (190, 60, 60), "blue": (60, 80, 190)}
    index = pd.read_parquet(quarter_split_index(natural_rows(colours, np.random.default_rng(0), 8, real=""), tmp_path))
    cfg = {
        "split": {"seed": 0},
        "prompts": {"sources": {"natural": {}}},
        "generators": {g: {"backend": "folder", "family": g, "prompt_sources": ["natural"]} for g in colours},
        "datasets": {"natural": {"prompt_sources": ["natural"], "counts": {"train": 4, "val": 2, "test": 2}}},
        "experiments": {"xd": {"attributor": "toy", "train": "natural"}},
    }
    check_view_inputs(cfg, index)  # 4 / 2 / 2 per class: met
    cfg["datasets"]["natural"]["counts"]["test"] = 3
    with pytest.raises(ValueError, match=r"dataset 'natural': class blue has 2 test images from source natural; 3"):
        check_view_inputs(cfg, index)
    cfg["experiments"] = {}  # a view no run reads is not drawn
    check_view_inputs(cfg, index)
