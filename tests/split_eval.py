"""Test a trained run on its index's 'test' rows the way experiments.run_experiment does (predict,
then experiments.runs.metrics_block), for tests that call a trainer directly: trainers no longer
test or write metrics.json."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from attribench.data.shards import load_images
from attribench.experiments.runs import metrics_block
from attribench.training.loop import predict, predict_features


def evaluate_split(
    run_dir, index: pd.DataFrame, summary: dict | None = None, inputs=None, text=None, split: str = "test"
) -> tuple[dict, pd.DataFrame]:
    """(summary + test_accuracy, n_test, test_accuracy_ci95, per_class_accuracy; predictions frame
    image_id, true_label, pred_label, p_<class>) for the `split` rows of the run's classes."""
    meta = json.loads((Path(run_dir) / "model.json").read_text())
    classes = meta["classes"]
    rows = index[(index["split"] == split) & index["generator"].isin(classes)].reset_index(drop=True)
    ids = rows["image_id"].tolist()
    if inputs is not None:
        probs = predict_features(run_dir, torch.stack([inputs[i] for i in ids]))
    else:
        blobs = load_images(rows)
        extra = {"text_vectors": [text[i] for i in ids]} if text is not None else {}
        probs = predict(run_dir, [blobs[i] for i in ids], **extra)
    y_true = np.array([classes.index(g) for g in rows["generator"]])
    block = metrics_block(y_true, probs.argmax(1), classes, meta.get("seed", 0))
    preds = pd.DataFrame(
        {
            "image_id": ids,
            "true_label": rows["generator"].to_numpy(),
            "pred_label": np.asarray(classes)[probs.argmax(1)],
        }
    )
    preds = pd.concat([preds, pd.DataFrame(probs, columns=[f"p_{c}" for c in classes])], axis=1)
    metrics = {
        **(summary or {}),
        "test_accuracy": block["accuracy"],
        "test_accuracy_ci95": block["accuracy_ci95"],
        "per_class_accuracy": block["per_class_accuracy"],
        "n_test": block["n"],
        "confusion_matrix": block["confusion_matrix"],
    }
    return metrics, preds
