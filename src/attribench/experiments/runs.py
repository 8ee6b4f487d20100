"""One named experiment = dataset spec x attributor spec x training spec, run into results/runs/<name>/.

It trains on the train/val splits of its `train` dataset (the trainer writes model.json,
model.safetensors, history.csv, train.log, training.json and, while it runs, checkpoint/) and tests
on the test split of every dataset in `test` (the first one is the primary test set); confusion
matrices and predictions are written per test set.

metrics.json is written here and only here, last, so a run is finished iff it exists. Schema:
  experiment, profile, attributor, attributor_label, model, uses_text, input_size, train_dataset,
  transform, classes, n_classes, chance; from the trainer's summary: n_train, n_val, best_epoch,
  best_val_accuracy, epochs, train_seconds, train_images_per_second, n_parameters, plus its `extra`
  keys (e.g. supcon: trainer, selection, best_val_pair_auc, pair_threshold, ...);
  test: {test set: {accuracy, accuracy_ci95, macro_precision, macro_recall, macro_f1,
  per_class_accuracy, confusion_matrix, n, n_unseen_class[, real_vs_fake_ap, real_vs_fake_accuracy,
  n_fake, n_real]}}; study (hyperparameter-study runs only).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

import attribench.plugins  # noqa: F401  every attributor, trainer and hook a run may name
from attribench.core import paths
from attribench.core.io import atomic_path
from attribench.data.views import label_of, select
from attribench.training.metrics import bootstrap_ci, classification_metrics, plot_confusion
from attribench.data.splits import read_index
from attribench.core.paths import PLOTS, RUNS  # noqa: F401  (re-exported)
from attribench.transforms.derived import derived_view
from attribench.training.trainers import trainer_for
from attribench.models.features import feature_inputs
from attribench.experiments.specs import (  # noqa: F401  (re-exported)
    describe_model,
    experiment_index,
    experiment_spec,
    model_kwargs_for_size,
    resolve_runs,
    run_metrics,
    streams_pixels,
    transform_status,
    upstream_runs,
    uses_text,
    is_image_text_model,
)


def metrics_block(y_true, y_pred, classes, seed) -> dict:
    m = classification_metrics(y_true, y_pred, classes)
    lo, hi = bootstrap_ci(y_true, y_pred, seed=seed)
    return {
        "accuracy": m["accuracy"],
        "accuracy_ci95": [lo, hi],
        "macro_precision": m["macro_precision"],
        "macro_recall": m["macro_recall"],
        "macro_f1": m["macro_f1"],
        "per_class_accuracy": m["per_class_accuracy"],
        "confusion_matrix": m["confusion_matrix"],
        "n": int(len(y_true)),
    }


def real_vs_fake(rows: pd.DataFrame, probs: np.ndarray, classes: list[str], real_classes: list[str]) -> dict:
    """Detection from an attributor: fake score = 1 - P(real classes); AP with fakes as positives
    (the metric of Ju et al. and DeepFeatureX), accuracy at the argmax decision."""
    from sklearn.metrics import average_precision_score

    is_fake = (
        (rows["source"] != "real").to_numpy() if "source" in rows else ~rows["generator"].isin(real_classes).to_numpy()
    )
    p_real = probs[:, [classes.index(c) for c in real_classes]].sum(1)
    if is_fake.all() or not is_fake.any():
        return {}
    pred_fake = ~np.isin(np.asarray(classes)[probs.argmax(1)], real_classes)
    return {
        "real_vs_fake_ap": float(average_precision_score(is_fake, 1.0 - p_real)),
        "real_vs_fake_accuracy": float((pred_fake == is_fake).mean()),
        "n_fake": int(is_fake.sum()),
        "n_real": int((~is_fake).sum()),
    }


def _write_test_outputs(out_dir: Path, test: str, classes, rows: pd.DataFrame, known: np.ndarray, probs) -> None:
    labels = np.asarray(classes, dtype=object)
    y_pred = probs.argmax(1)
    preds = pd.DataFrame(
        {
            "image_id": rows["image_id"].to_numpy(),
            "test_set": test,
            "true_label": label_of(rows).to_numpy(),
            "pred_label": labels[y_pred],
        }
    )
    if "label" in rows.columns:  # a view with `labels`: the generator behind each label, for per-generator metrics
        preds.insert(1, "generator", rows["generator"].to_numpy())
    if "source" in rows:
        preds["source"] = rows["source"].to_numpy()
    preds = pd.concat([preds, pd.DataFrame(probs, columns=[f"p_{c}" for c in classes])], axis=1)
    with atomic_path(out_dir / f"predictions_{test}.parquet") as tmp:
        preds.to_parquet(tmp, index=False)
    preds = preds[known]
    y_true = np.array([classes.index(g) for g in preds["true_label"]], dtype=int)
    cm = classification_metrics(y_true, y_pred[known], classes)["confusion_matrix"]
    with atomic_path(out_dir / f"confusion_{test}.csv") as tmp:
        pd.DataFrame(cm, index=pd.Index(classes, name="true\\predicted"), columns=classes).to_csv(tmp)
    plot_confusion(cm, classes, out_dir / f"confusion_{test}.png", title=f"{out_dir.name}: test on {test}")
    # Per-image (actual, predicted) pairs for DVC's confusion template (`dvc plots show`).
    pairs = PLOTS / "confusion" / f"{out_dir.name}__{test}.csv"
    with atomic_path(pairs) as tmp:
        preds[["true_label", "pred_label"]].set_axis(["actual", "predicted"], axis=1).to_csv(tmp, index=False)


def feature_cache_dir(cfg: dict) -> Path:
    return paths.features_dir(cfg)


def predict_rows(cfg: dict, spec: dict, run_dir: str | Path, rows: pd.DataFrame) -> np.ndarray:
    """Class probabilities of a trained run for index rows (image_id, shard, prompt_id, prompt),
    whatever the attributor eats: softmax of the logits of `forward_rows`, the one pass a finished
    run makes over images (what run_experiment records, and what `predict()` gives back)."""
    from attribench.experiments.inference import forward_rows  # torch: only when a run or report predicts
    from attribench.training.openset import probabilities  # torch: as above

    return probabilities(forward_rows(cfg, spec, Path(run_dir), rows.reset_index(drop=True))[0])


def _labelled(df: pd.DataFrame) -> pd.DataFrame:
    """Rows as train_run reads them (the class in `generator`): a view with `labels` hands over its
    label; any other view is passed through untouched."""
    return df.assign(generator=df["label"]) if "label" in df.columns else df


def run_experiment(
    cfg: dict, name: str, index_path: str | Path | list, out_dir: str | Path, threads: int | None = None
) -> dict:
    """`index_path`: the split index, or the list of index files it is made of (`experiment_index`)."""
    spec = experiment_spec(cfg, name)
    out_dir = Path(out_dir)
    index = read_index(index_path if isinstance(index_path, (list, tuple)) else [index_path])
    train_ds = select(index, spec["train"], spec["datasets"][spec["train"]], spec["seed"])
    tests = {t: select(index, t, spec["datasets"][t], spec["seed"]) for t in spec["test"]}
    # Classes are the view's labels (`labels`: e.g. real / fake) or else its generators.
    classes = sorted(label_of(train_ds).unique())
    for t, ds in tests.items():
        if ("label" in ds.columns) != ("label" in train_ds.columns):
            raise ValueError(
                f"experiments.{name}: train view '{spec['train']}' and test view '{t}' must both "
                "have `labels` or both not (their classes would not match)"
            )
    primary = spec["test"][0]
    primary_test = tests[primary][tests[primary]["split"] == "test"]
    run_index = pd.concat(
        [
            _labelled(train_ds[train_ds["split"] != "test"]),
            _labelled(primary_test[label_of(primary_test).isin(classes)]),
        ]
    )
    # Test sets may hold classes the run never saw (held-out generators): they get predictions and
    # count in real-vs-fake AP, while accuracy and the confusion matrix cover the known classes.
    test_rows = {t: ds[ds["split"] == "test"] for t, ds in tests.items()}
    real_classes = sorted(set(label_of(train_ds)[train_ds["source"] == "real"])) if "source" in train_ds else []
    if spec.get("transform"):
        everything = pd.concat([run_index, *test_rows.values()])
        view = derived_view(cfg, everything, spec["transform"]).drop_duplicates("parent_id").set_index("parent_id")

        def swap(rows: pd.DataFrame) -> pd.DataFrame:
            d = view.loc[rows["image_id"], ["image_id", "shard", "transform"]].reset_index()
            return (
                rows.drop(columns=["image_id", "shard", "parent_id", "transform"], errors="ignore")
                .reset_index(drop=True)
                .join(d)
            )

        run_index = swap(run_index)
        test_rows = {t: swap(rows) for t, rows in test_rows.items()}

    # Frozen-backbone attributors train on cached feature vectors (computed once per image); image
    # models "with text" (kind *_text) train on images plus the cached prompt embedding.
    features = spec["attributor"].get("features")
    attributor_spec = resolve_runs(spec["attributor"].get("spec") or {})
    inputs = text_inputs = None
    if features:
        needed = pd.concat([run_index, *test_rows.values()]).drop_duplicates("image_id")
        vectors = feature_inputs(needed, features, feature_cache_dir(cfg), device=spec["training"].get("device", "cpu"))
        dim = int(next(iter(vectors.values())).numel())
        if is_image_text_model(spec["attributor"]):
            text_inputs = vectors
            attributor_spec.setdefault("text_dim", dim)
        else:
            inputs = vectors
            attributor_spec.setdefault("in_dim", dim)

    training = dict(spec["training"])
    num_threads = threads or training.pop("num_threads", None)
    training.pop("num_threads", None)
    input_size = training.pop("input_size")
    run_spec = {
        "attributor": spec["attributor"]["kind"],
        "attributor_spec": model_kwargs_for_size(attributor_spec, input_size),
        "input_size": input_size,
        "classes": classes,
        **training,
    }
    if text_inputs is not None:
        run_spec["text_spec"] = features["text"]  # lets `predict(prompts=...)` re-embed new prompts
    elif features:
        run_spec["features"] = features
    if num_threads:
        run_spec["num_threads"] = num_threads
    if inputs is None and streams_pixels(run_spec):  # stream images (pixelcache.py)
        run_spec["pixel_cache"] = str(paths.pixel_cache_dir(cfg))
    extra = {"text_inputs": text_inputs} if text_inputs is not None else {}
    # The attributor kind picks its trainer (attribench.training.trainers): cross-entropy unless a method
    # registered its own (Jiang et al.'s encoder: supcon).
    summary = trainer_for(spec["attributor"]["kind"])(run_index, run_spec, out_dir, inputs=inputs, **extra)

    # Each test set goes through the model once: its logits give the predictions here and the primary
    # set's calibration in write_inference_files (softmax(logits) is what predict_rows returns).
    from attribench.experiments.inference import forward_rows, write_inference_files  # torch: runs only
    from attribench.training.openset import probabilities  # torch: runs only

    blocks, logits = {}, {}
    for test, rows in test_rows.items():
        logits[test], _ = forward_rows(cfg, spec, out_dir, rows.reset_index(drop=True))
        probs = probabilities(logits[test])
        known = label_of(rows).isin(classes).to_numpy()
        y_true = np.array([classes.index(g) for g in label_of(rows)[known]])
        y_pred = probs.argmax(1)
        blocks[test] = metrics_block(y_true, y_pred[known], classes, spec["seed"]) if known.any() else {"n": 0}
        blocks[test]["n_unseen_class"] = int((~known).sum())
        if real_classes:
            blocks[test].update(real_vs_fake(rows, probs, classes, real_classes))
        _write_test_outputs(out_dir, test, classes, rows, known, probs)

    metrics = {
        "experiment": name,
        "profile": cfg["profile"],
        "attributor": spec["attributor_name"],
        "attributor_label": spec["attributor"].get("label", spec["attributor_name"]),
        "model": describe_model(spec["attributor"]),
        "uses_text": uses_text(spec["attributor"]),
        "input_size": next(
            (v["input_size"] for v in (features or {}).values() if "input_size" in v), run_spec["input_size"]
        ),
        "train_dataset": spec["train"],
        "transform": spec.get("transform"),
        "classes": classes,
        "n_classes": len(classes),
        "chance": 1.0 / len(classes),
        "n_train": summary["n_train"],
        "n_val": summary["n_val"],
        "best_epoch": summary["best_epoch"],
        "best_val_accuracy": summary["best_val_accuracy"],
        "epochs": summary["epochs"],
        "train_seconds": summary["train_seconds"],
        "train_images_per_second": summary["train_images_per_second"],
        "n_parameters": summary["n_parameters"],
        **(summary.get("extra") or {}),
        "test": blocks,
    }
    if spec.get("study"):
        metrics["study"] = spec["study"]
    # The run answers for new images on its own: temperature, unknown-generator thresholds, model card.
    known = label_of(test_rows[primary]).isin(classes).to_numpy()
    write_inference_files(
        cfg, spec, out_dir, run_index, _labelled(test_rows[primary][known]), classes, metrics, logits[primary][known]
    )
    with atomic_path(out_dir / "metrics.json") as tmp:
        tmp.write_text(json.dumps(metrics, indent=2) + "\n")
    return metrics
