"""An experiment trains on one dataset view and tests on several, each with its own metrics block."""

import json

import numpy as np
import pandas as pd

from attribench.experiments.runs import experiment_spec, run_experiment
from attribench.training.loop import predict
from attribench.data.shards import load_images
from toy_data import TOY_NET, TOY_TRAINING, noisy, png_row, quarter_split_index

COLOURS = {"red": (190, 60, 60), "blue": (60, 80, 190)}


def _index(tmp_path):
    rng = np.random.default_rng(0)
    rows = [
        png_row(
            noisy(colour, rng, (24, 24), sigma=30),
            g,
            family=g,
            prompt=f"{src} {i}",
            prompt_id=f"{src}{i}",
            prompt_source=src,
        )
        for g, colour in COLOURS.items()
        for src in ("natural", "creative")
        for i in range(24)
    ]
    return quarter_split_index(rows, tmp_path)


def _cfg():
    counts = {"train": 8, "val": 2, "test": 4}
    return {
        "profile": "test",
        "split": {"seed": 0},
        "training": {**TOY_TRAINING, "epochs": 8},
        "attributors": dict(TOY_NET),
        "datasets": {
            "natural": {"prompt_sources": ["natural"], "counts": counts},
            "creative": {"prompt_sources": ["creative"], "counts": counts},
        },
        "experiments": {"xd": {"attributor": "toy", "train": "natural", "test": ["natural", "creative"]}},
    }


def test_run_experiment_tests_on_every_named_dataset(tmp_path):
    cfg = _cfg()
    out = tmp_path / "runs" / "xd"
    m = run_experiment(cfg, "xd", _index(tmp_path), out, threads=1)
    assert set(m["test"]) == {"natural", "creative"} and m["n_classes"] == 2 and m["chance"] == 0.5
    assert json.loads((out / "metrics.json").read_text()) == json.loads(json.dumps(m))
    for test in ("natural", "creative"):
        block = m["test"][test]
        assert block["n"] == 8 and block["accuracy_ci95"][0] <= block["accuracy"] <= block["accuracy_ci95"][1]
        preds = pd.read_parquet(out / f"predictions_{test}.parquet")
        assert (preds.true_label == preds.pred_label).mean() == block["accuracy"]
        assert (out / f"confusion_{test}.png").stat().st_size > 0
    # The colour classes are separable from either prompt source.
    assert m["test"]["creative"]["accuracy"] > 0.5
    # The saved checkpoint reproduces the recorded probabilities.
    preds = pd.read_parquet(out / "predictions_creative.parquet")
    index = pd.read_parquet(tmp_path / "index.parquet").set_index("image_id").loc[preds.image_id].reset_index()
    images = load_images(index)
    probs = predict(out, [images[i] for i in preds.image_id])
    np.testing.assert_array_equal(probs, preds[["p_blue", "p_red"]].to_numpy())


def test_experiment_spec_names_missing_pieces():
    cfg = _cfg()
    cfg["experiments"]["bad"] = {"attributor": "toy", "train": "nope"}
    try:
        experiment_spec(cfg, "bad")
    except KeyError as err:
        assert "nope" in str(err)
    else:
        raise AssertionError("an unknown dataset must be an error")


def test_a_finished_run_sees_each_image_once(tmp_path, monkeypatch):
    """After training, predictions, calibration and open-set statistics share one pass over each
    image (a paper test set is 5,850 images; the primary one used to go through the model twice)."""
    from attribench.experiments import inference
    from attribench.training import loop

    images_in, load = [], loop.load_model

    def counting_load(*args, **kwargs):  # every pass after training rebuilds the run from its files
        model, meta = load(*args, **kwargs)
        model.register_forward_hook(lambda m, inp, out: images_in.append(len(inp[0])))
        return model, meta

    monkeypatch.setattr(loop, "load_model", counting_load)
    monkeypatch.setattr(inference, "load_model", counting_load)
    cfg = _cfg()
    out = tmp_path / "runs" / "xd"
    m = run_experiment(cfg, "xd", _index(tmp_path), out, threads=1)
    # the open-set statistics read the train images once, the temperature the val images once, and
    # each test set is predicted once: its logits also give the primary set's calibration
    assert sum(images_in) == m["n_train"] + m["n_val"] + sum(b["n"] for b in m["test"].values())
    card = json.loads((out / "predict.json").read_text())
    assert card["calibration"]["test"]["before"]["ece"] >= 0 and card["unknown"]["decision_score"] == "mahalanobis"
