"""What a finished run needs to answer for new images on its own (written after training):

  predict.json           classes, delivery policy, preprocessing, temperature, unknown-generator
                         thresholds, calibration before / after temperature scaling (val and test)
  openset.safetensors    Mahalanobis class means + shared precision on penultimate features
  reliability.png        reliability diagram (test, before / after temperature scaling)
  README.md              the model card

Temperature and thresholds are fit on validation images only (known classes by construction).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from safetensors.torch import save_file

import attribench.plugins  # noqa: F401  every attributor a run may name (the methods' too): runs are rebuilt here
from attribench.core import paths
from attribench.core.io import atomic_path
from attribench.data.imagedata import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    normalise,
    resize_crop,
)
from attribench.data.pixelcache import pixel_cache
from attribench.data.shards import load_images
from attribench.data.views import label_of
from attribench.experiments.specs import streams_pixels
from attribench.training import calibration as cal
from attribench.training import openset
from attribench.training.loop import load_model, torch_settings

PREDICT_JSON, OPENSET_FILE, RELIABILITY_PNG, CARD = (
    "predict.json",
    "openset.safetensors",
    "reliability.png",
    "README.md",
)
DEFAULT_TPR = 0.95


def forward_rows(cfg: dict, spec: dict, run_dir: Path, rows: pd.DataFrame) -> tuple[np.ndarray, np.ndarray | None]:
    """Logits and penultimate features of a trained run for index rows, from what the run eats:
    images, cached frozen-feature vectors, or images + cached prompt embeddings."""
    from attribench.models.features import feature_inputs  # backbones load only for feature runs

    device = spec["training"].get("device", "cpu")  # where the run predicts (a paper run: the GPU, not the host)
    model, meta = load_model(run_dir, device)
    features, text, x, prepare = spec["attributor"].get("features"), None, None, normalise
    if features:
        vectors = feature_inputs(rows, features, paths.features_dir(cfg), device=device)
        stacked = torch.stack([vectors[i] for i in rows["image_id"]]).float()
        if spec["attributor"].get("kind", "").endswith("_text"):  # image model + prompt embedding
            text = stacked
        else:
            x, prepare = stacked, (lambda v: v.float())
    if x is None:
        x = _pixels(cfg, spec, rows, int(meta["input_size"]))
    with torch_settings(meta.get("num_threads")):
        return openset.logits_and_features(
            model, x, meta["eval_batch_size"], len(meta["classes"]), prepare, device=device, text=text
        )


def _pixels(cfg: dict, spec: dict, rows: pd.DataFrame, size: int):
    """uint8 images at the run's input size, row-aligned: streamed from the pixel file the training
    read (the same pixels; a paper run's 41,600 train images at 224 px would be 25 GB of float host
    memory, at Fig. 15's 1024 px 520 GB), or decoded into memory where the run turned the cache off."""
    if streams_pixels(spec["training"]):
        return pixel_cache(rows, size, paths.pixel_cache_dir(cfg), resize_crop)
    images = load_images(rows)
    return torch.stack([resize_crop(images[i], size) for i in rows["image_id"]])


def _labels(rows: pd.DataFrame, classes: list[str]) -> np.ndarray:
    return np.array([classes.index(c) for c in label_of(rows)], dtype=int)


def write_inference_files(
    cfg: dict,
    spec: dict,
    run_dir: str | Path,
    run_index: pd.DataFrame,
    test_rows: pd.DataFrame,
    classes: list[str],
    metrics: dict,
    test_logits: np.ndarray | None = None,
) -> dict:
    """Fit temperature + open-set statistics on the run's train / val rows (`run_index`, labelled)
    and write the files above. `test_rows`: the primary test set's rows of known classes;
    `test_logits`: their logits where the caller already has them (the test pass runs once)."""
    run_dir = Path(run_dir)
    train, val = (run_index[run_index["split"] == s].reset_index(drop=True) for s in ("train", "val"))
    z_val, f_val = forward_rows(cfg, spec, run_dir, val)
    y_val = _labels(val, classes)
    temperature = cal.fit_temperature(z_val, y_val)
    stats = None
    if f_val is not None:
        _, f_train = forward_rows(cfg, spec, run_dir, train)
        stats = openset.fit_mahalanobis(f_train, _labels(train, classes), len(classes))
        with atomic_path(run_dir / OPENSET_FILE) as tmp:
            save_file(stats, str(tmp))
    thresholds = openset.fit_thresholds(openset.unknown_scores(z_val, f_val, stats), DEFAULT_TPR)

    calib = {"val": _before_after(z_val, y_val, temperature)}
    if len(test_rows):
        z_test = (
            test_logits
            if test_logits is not None
            else forward_rows(cfg, spec, run_dir, test_rows.reset_index(drop=True))[0]
        )
        y_test = _labels(test_rows, classes)
        calib["test"] = _before_after(z_test, y_test, temperature)
        cal.plot_reliability(
            {
                "before": (openset.probabilities(z_test), y_test),
                f"after (T={temperature:.2f})": (openset.probabilities(z_test, temperature), y_test),
            },
            run_dir / RELIABILITY_PNG,
            f"{run_dir.name}: test reliability",
        )
    model_meta = json.loads((run_dir / "model.json").read_text())
    card = {
        "run": run_dir.name,
        "classes": classes,
        "delivery": cfg.get("delivery"),
        "input_kind": model_meta.get("input_kind", "image"),
        "input_size": model_meta.get("input_size"),
        "normalise": {"mean": IMAGENET_MEAN.flatten().tolist(), "std": IMAGENET_STD.flatten().tolist()},
        "resize": "short side bicubic (antialias) + centre crop",
        "needs_text": bool(model_meta.get("text") or "text" in (model_meta.get("features") or {})),
        "temperature": temperature,
        "unknown": {
            "tpr": DEFAULT_TPR,
            "thresholds": thresholds,
            "decision_score": "mahalanobis" if stats is not None else "energy",
            "higher_is_unknown": True,
        },
        "calibration": calib,
    }
    with atomic_path(run_dir / PREDICT_JSON) as tmp:
        tmp.write_text(json.dumps(card, indent=2) + "\n")
    write_model_card(run_dir, card, metrics, spec)
    return card


def _before_after(logits: np.ndarray, labels: np.ndarray, temperature: float) -> dict:
    return {
        "before": cal.calibration_scores(openset.probabilities(logits), labels),
        "after": cal.calibration_scores(openset.probabilities(logits, temperature), labels),
    }


def write_model_card(run_dir: Path, card: dict, metrics: dict, spec: dict) -> None:
    """results/runs/<name>/README.md: data, classes, recipe, metrics with CIs, calibration, limits."""
    tests = metrics.get("test", {})
    lines = [
        f"# Model card: `{card['run']}`",
        "",
        (
            f"- attributor: {metrics.get('attributor_label', spec['attributor_name'])} ({metrics.get('model', '?')}), "
            f"profile `{metrics.get('profile', '?')}`"
        ),
        (
            f"- trained on dataset view `{spec['train']}`: {metrics.get('n_train', '?')} train / "
            f"{metrics.get('n_val', '?')} val images; best epoch {metrics.get('best_epoch', '?')} of {metrics.get('epochs', '?')}"
        ),
        f"- classes ({len(card['classes'])}, chance {100 / len(card['classes']):.1f}%): {', '.join(card['classes'])}",
        f"- input: {card['input_kind']}, {card['input_size']} px, {card['resize']}; delivery {json.dumps(card['delivery'])}",
        f"- recipe: {json.dumps({k: v for k, v in spec['training'].items() if k in ('lr', 'weight_decay', 'batch_size', 'epochs', 'warmup_epochs', 'min_lr', 'augment', 'loss')})}",
        "",
        "## Test metrics (95% bootstrap CI)",
        "",
        "| test set | n | accuracy | CI | macro F1 | real-vs-fake AP |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for t, b in tests.items():
        if "accuracy" in b:
            lo, hi = b["accuracy_ci95"]
            lines.append(
                f"| {t} | {b['n']} | {100 * b['accuracy']:.1f}% | {100 * lo:.1f}-{100 * hi:.1f}% | "
                f"{b['macro_f1']:.3f} | {b.get('real_vs_fake_ap', float('nan')):.3f} |"
            )
    lines += [
        "",
        f"## Calibration (temperature T = {card['temperature']:.3f}, fit on validation)",
        "",
        "| set | ECE before | ECE after | NLL before | NLL after | Brier before | Brier after |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for s, c in card["calibration"].items():
        b, a = c["before"], c["after"]
        lines.append(
            f"| {s} | {b['ece']:.4f} | {a['ece']:.4f} | {b['nll']:.4f} | {a['nll']:.4f} | {b['brier']:.4f} | {a['brier']:.4f} |"
        )
    u = card["unknown"]
    lines += [
        "",
        "![reliability](reliability.png)",
        "",
        "## Unknown generators",
        "",
        (
            f"Decision score `{u['decision_score']}`; thresholds keep {100 * u['tpr']:.0f}% of known-class validation "
            f"images: {json.dumps({k: round(v, 4) for k, v in u['thresholds'].items()})}."
        ),
        "",
        "## Known limits",
        "",
        (
            "- A closed-set attributor: an image from a generator not in the classes gets one of them; "
            "the unknown flag is a threshold, not a guarantee."
        ),
        (
            "- Numbers hold for images delivered like the training data (the delivery policy above); other "
            "sizes and codecs are re-delivered before prediction, which cannot undo earlier compression."
        ),
        "- Validation images fit the temperature and thresholds: few images per class make them noisy.",
    ]
    if metrics.get("profile") == "smoke":
        lines.append("- Smoke profile: tiny random-weight generators; the numbers prove code paths, not paper claims.")
    with atomic_path(run_dir / CARD) as tmp:
        tmp.write_text("\n".join(lines) + "\n")
