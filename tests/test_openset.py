"""Calibration scores, temperature scaling, unknown-generator scores and the openset report on a
tiny run that never saw one of its test classes."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from attribench.core import paths
from attribench.experiments.runs import run_experiment
from attribench.reports.openset import build_openset
from attribench.reports.registry import REPORTS, ReportContext
from attribench.training import calibration as cal
from attribench.training import openset
from toy_data import TOY_NET, TOY_TRAINING, natural_rows, quarter_split_index


def test_calibration_scores_by_hand():
    probs = np.array([[0.9, 0.1], [0.6, 0.4], [0.3, 0.7], [0.2, 0.8]])
    labels = np.array([0, 1, 1, 1])
    # Bins (15 wide): 0.9 -> right; 0.6 -> wrong; 0.7 -> right; 0.8 -> right: each alone in its bin.
    assert cal.ece(probs, labels) == pytest.approx((0.1 + 0.6 + 0.3 + 0.2) / 4)
    assert cal.nll(probs, labels) == pytest.approx(-np.mean(np.log([0.9, 0.4, 0.7, 0.8])))
    assert cal.brier(probs, labels) == pytest.approx(np.mean([2 * 0.1**2, 2 * 0.6**2, 2 * 0.3**2, 2 * 0.2**2]))
    perfect = np.eye(3)[[0, 1, 2]]
    assert cal.ece(perfect, np.array([0, 1, 2])) == 0 and cal.brier(perfect, np.array([0, 1, 2])) == 0


def test_temperature_scaling_repairs_overconfidence():
    """Logits 5x too sharp for their labels: the fit temperature undoes it, ECE and NLL drop, argmax stays."""
    rng = np.random.default_rng(0)
    true_logits = rng.normal(0, 1.0, (4000, 4))
    labels = np.array([rng.choice(4, p=p) for p in cal.softmax(true_logits)])
    sharp = 5 * true_logits
    t = cal.fit_temperature(sharp, labels)
    assert 4.0 < t < 6.0
    before, after = cal.softmax(sharp), cal.softmax(sharp, t)
    assert cal.ece(after, labels) < cal.ece(before, labels) / 3 and cal.nll(after, labels) < cal.nll(before, labels)
    assert (after.argmax(1) == before.argmax(1)).all()


def test_openset_metrics_by_construction():
    known, unknown = np.zeros(50), np.ones(50)
    score, is_unknown = np.concatenate([known, unknown]), np.r_[np.zeros(50, bool), np.ones(50, bool)]
    correct = np.r_[np.ones(50, bool), np.zeros(50, bool)]
    m = openset.openset_metrics(score, is_unknown, correct)
    assert m["auroc"] == 1 and m["tpr_at_5fpr"] == 1 and m["oscr"] == pytest.approx(1.0)
    half = correct.copy()
    half[:25] = False  # half the knowns misclassified: OSCR is capped by closed-set accuracy
    assert openset.oscr(score, is_unknown, half) == pytest.approx(0.5)
    assert openset.openset_metrics(-score, is_unknown, correct)["auroc"] == 0


COLOURS = {
    "red": (190, 60, 60),
    "blue": (60, 80, 190),
    "green": (60, 170, 80),
    "grey": (128, 128, 128),
    "photo": (200, 200, 90),
}


@pytest.fixture(scope="module")
def seen_run(tmp_path_factory, one_torch_thread):
    """A run trained on red / blue / green / photo (grey held out; `photo` plays the real photos, which
    the held-out view keeps as in params), written where the report looks for it."""
    tmp = tmp_path_factory.mktemp("openset")
    quarter_split_index(natural_rows(COLOURS, np.random.default_rng(0), 24, real="photo"), tmp)
    counts = {"train": 12, "val": 6, "test": 6}
    cfg = {
        "profile": "test",
        "split": {"seed": 0},
        "heldout_generators": ["grey"],
        "training": dict(TOY_TRAINING),
        "attributors": dict(TOY_NET),
        "datasets": {
            "seen": {"counts": counts, "exclude": ["grey"]},
            "heldout": {"counts": counts, "classes": ["grey", "photo"]},
        },
        "experiments": {"toy_seen": {"attributor": "toy", "train": "seen", "test": ["seen", "heldout"]}},
        "methods_table": {
            "entries": {
                "toy": {
                    "method": "test",
                    "label": "toy net",
                    "experiment": "toy_seen",
                    "heldout_experiment": "toy_seen",
                }
            }
        },
    }
    return tmp, cfg


def test_run_records_calibration_and_the_openset_report_builds(seen_run, monkeypatch):
    tmp, cfg = seen_run
    monkeypatch.chdir(tmp)  # results/runs/... relative to the working directory, as in the workflow
    run_experiment(cfg, "toy_seen", tmp / "index.parquet", paths.run_dir("toy_seen"), threads=1)
    card = json.loads((paths.run_dir("toy_seen") / "predict.json").read_text())
    assert card["classes"] == ["blue", "green", "photo", "red"] and card["temperature"] > 0
    assert set(card["unknown"]["thresholds"]) == {"msp", "energy", "mahalanobis"}
    for split in ("val", "test"):
        assert set(card["calibration"][split]["before"]) == {"ece", "nll", "brier", "n"}
    assert card["calibration"]["val"]["after"]["nll"] <= card["calibration"]["val"]["before"]["nll"] + 1e-9
    assert (paths.run_dir("toy_seen") / "reliability.png").stat().st_size > 0
    assert "## Calibration" in (paths.run_dir("toy_seen") / "README.md").read_text()

    report = REPORTS.get("openset")
    assert report.runs(cfg) == ["toy_seen"]
    out = {"csv": tmp / "results" / "openset.csv", "png": tmp / "results" / "openset.png"}
    build_openset(ReportContext("openset", cfg, ["toy_seen"], {"index": [str(tmp / "index.parquet")]}, out))
    df = pd.read_csv(out["csv"])
    assert list(df["score"]) == ["msp", "energy", "mahalanobis"]
    assert (df["n_known"] == 24).all() and (df["n_unknown"] == 6).all() and (df["heldout_generators"] == "grey").all()
    for m in ("auroc", "oscr", "tpr_at_5fpr", "closed_set_accuracy"):
        assert ((df[f"{m}_ci95_lo"] <= df[m] + 1e-12) & (df[m] <= df[f"{m}_ci95_hi"] + 1e-12)).all()
    assert (df["oscr"] <= df["closed_set_accuracy"] + 1e-9).all()
    recorded = pd.concat([pd.read_parquet(paths.run_dir("toy_seen") / f"predictions_{t}.parquet") for t in ("seen",)])
    assert df["closed_set_accuracy"].iloc[0] == pytest.approx((recorded.true_label == recorded.pred_label).mean())
    assert out["png"].stat().st_size > 0


def test_rebuilding_a_run_knows_the_methods_attributors():
    # The open-set report rebuilds every `seen` run, DeepFeatureX's included: its report process failed
    # with "unknown attributor 'deepfeaturex'" (only the runs' own process loaded the methods).
    import subprocess
    import sys

    code = (
        "import attribench.experiments.inference\n"
        "from attribench.models.attributors.registry import ATTRIBUTORS\n"
        "assert {'deepfeaturex', 'ju_fusion', 'jiang_probe'} <= set(ATTRIBUTORS), sorted(ATTRIBUTORS)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=300)
