"""Unseen-generator split and the methods table, end to end on a tiny colour dataset."""

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import average_precision_score

from attribench.core import config
from attribench.experiments.runs import run_experiment
from attribench.reports.methods_table import build_methods_table
from attribench.training.calibration import ece
from toy_data import TOY_NET, TOY_TRAINING, natural_rows, quarter_split_index

COLOURS = {"real": (120, 120, 120), "red": (190, 60, 60), "blue": (60, 80, 190), "green": (60, 170, 80)}


def _index(tmp_path):
    return quarter_split_index(natural_rows(COLOURS, np.random.default_rng(1), 16, real="real"), tmp_path)


def _cfg():
    raw = {
        "profile": "test",
        "seed": 0,
        "device": "cpu",
        "delivery": {"size": 24, "format": "png"},
        "split": {
            "seed": 0,
            "fractions": {"train": 0.5, "val": 0.25, "test": 0.25},
            "counts": {"train": 8, "val": 4, "test": 4},
        },
        "prompts": {"chunk_size": 10, "sources": {"natural": {"kind": "grammar", "style": "natural", "count": 16}}},
        "generators": {
            g: {"backend": "folder", "family": g, "path": "x", **({"source": "real"} if g == "real" else {})}
            for g in COLOURS
        },
        "training": dict(TOY_TRAINING),
        "attributors": dict(TOY_NET),
        "datasets": {"all": {}, "seen": {"heldout": "seen"}, "heldout": {"heldout": "unseen"}},
        "experiments": {
            "toy_all": {"attributor": "toy", "train": "all"},
            "toy_seen": {"attributor": "toy", "train": "seen", "test": ["seen", "heldout"]},
        },
        "heldout_generators": ["green"],
        "methods_table": {
            "dataset": "all",
            "jpeg_quality": 75,
            "entries": {"toy": {"method": "test", "experiment": "toy_all", "heldout_experiment": "toy_seen"}},
        },
        "profiles": {"test": {}},
    }
    return config.resolve(raw)


def test_heldout_views_are_expanded_from_one_list():
    cfg = _cfg()
    assert cfg["datasets"]["seen"]["exclude"] == ["green"]
    assert cfg["datasets"]["heldout"]["classes"] == ["green", "real"]
    raw = {**_cfg(), "heldout_generators": ["purple"], "profiles": {"test": {}}}
    with pytest.raises(config.ConfigError, match="purple"):
        config.resolve(raw)


def test_heldout_run_never_trains_on_heldout_and_scores_it_as_fake(tmp_path, monkeypatch):
    index = _index(tmp_path)
    cfg = _cfg()  # before chdir: the schema path is relative to the repository
    monkeypatch.chdir(tmp_path)
    m = run_experiment(cfg, "toy_seen", index, tmp_path / "results" / "runs" / "toy_seen", threads=1)
    assert "green" not in m["classes"] and m["n_classes"] == 3
    held = m["test"]["heldout"]
    assert held["n_unseen_class"] == 4 and held["n_fake"] == 4 and held["n_real"] == 4
    preds = pd.read_parquet(tmp_path / "results" / "runs" / "toy_seen" / "predictions_heldout.parquet")
    assert set(preds.true_label) == {"green", "real"}
    expected = average_precision_score(preds.true_label != "real", 1 - preds.p_real)
    assert held["real_vs_fake_ap"] == pytest.approx(expected)


def test_methods_table_row(tmp_path, monkeypatch):
    index = _index(tmp_path)
    cfg = _cfg()  # before chdir: the schema path is relative to the repository
    monkeypatch.chdir(tmp_path)
    for exp in ("toy_all", "toy_seen"):
        run_experiment(cfg, exp, index, tmp_path / "results" / "runs" / exp, threads=1)
    df = build_methods_table(cfg, index, tmp_path / "methods.csv", tmp_path / "methods.png")
    (row,) = df.to_dict("records")
    preds = pd.read_parquet(tmp_path / "results" / "runs" / "toy_all" / "predictions_all.parquet")
    assert row["accuracy"] == pytest.approx((preds.true_label == preds.pred_label).mean())
    assert row["real_vs_fake_ap"] == pytest.approx(
        average_precision_score(preds.true_label != "real", 1 - preds.p_real)
    )
    assert 0 <= row["accuracy_jpeg75"] <= 1 and 0 <= row["heldout_real_vs_fake_ap"] <= 1
    assert row["inference_images_per_second"] > 0 and row["train_seconds"] > 0 and row["n_classes"] == 4
    # ECE of the recorded test probabilities (temperature 1); temperature scaling fit on val is recorded beside it.
    classes = sorted(preds.true_label.unique())
    probs, labels = preds[[f"p_{c}" for c in classes]].to_numpy(), preds.true_label.map(classes.index).to_numpy()
    assert row["ece"] == pytest.approx(ece(probs, labels), abs=1e-6) and 0 <= row["ece_calibrated"] <= 1
    assert (tmp_path / "methods.png").stat().st_size > 0
    assert list(pd.read_csv(tmp_path / "methods.csv")["experiment"]) == ["toy_all"]


def test_every_report_builds_from_the_report_command():
    """`attribench report NAME` is the one command for every table and figure (the old per-report commands are gone)."""
    from attribench.cli import build_parser
    from attribench.reports.registry import load_reports

    for name in load_reports():
        args = build_parser().parse_args(["report", name])
        assert args.name == name and callable(args.fn)
