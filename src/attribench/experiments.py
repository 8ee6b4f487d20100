"""One named experiment = dataset spec x attributor spec x training spec, run into results/runs/<name>/.

It trains on the train/val splits of its `train` dataset and tests on the test split of every
dataset in `test` (the first one is the primary test set). metrics.json holds one block per test
set; confusion matrices and predictions are written per test set too.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from attribench.datasets import select
from attribench.io import atomic_path
from attribench.metrics import bootstrap_ci, classification_metrics, plot_confusion
from attribench.shards import load_images

PLOTS = Path("results/plots")  # DVC plot data (dvc.yaml `plots:`), one file per run and test set


def experiment_spec(cfg: dict, name: str) -> dict:
    """Everything that determines a run's result (rule params hash this)."""
    if name not in cfg["experiments"]:
        raise KeyError(f"experiment '{name}' is not in params.yaml (known: {sorted(cfg['experiments'])})")
    exp = cfg["experiments"][name]
    att_name = exp["attributor"]
    if att_name not in cfg["attributors"]:
        raise KeyError(f"experiments.{name}.attributor: '{att_name}' is not in attributors")
    attributor = cfg["attributors"][att_name]
    training = {**cfg["training"], **attributor.get("training", {}), **exp.get("training", {})}
    tests = exp.get("test") or [exp["train"]]
    for ds in [exp["train"], *tests]:
        if ds not in cfg["datasets"]:
            raise KeyError(f"experiments.{name}: dataset '{ds}' is not in datasets")
    spec = {
        "name": name, "attributor_name": att_name, "attributor": attributor, "training": training,
        "train": exp["train"], "test": tests, "datasets": {d: cfg["datasets"][d] for d in {exp["train"], *tests}},
        "seed": cfg["split"]["seed"],
    }
    if exp.get("study"):  # a hyperparameter study: its own split index and classes (Table 3)
        from attribench.studies import describe, studies

        if exp["study"] not in studies(cfg):
            raise KeyError(f"experiments.{name}.study: '{exp['study']}' is not in hyperparameter_studies")
        spec["study"] = describe(cfg, exp["study"])  # only when set: other runs keep their params hash
    return spec


def experiment_index(cfg: dict, name: str) -> str:
    """The split index an experiment reads: the benchmark's, or its hyperparameter study's."""
    study = cfg["experiments"][name].get("study") if name in cfg["experiments"] else None
    if study:
        from attribench.studies import index_path

        return index_path(cfg, study)
    return f"data/{cfg['profile']}/dataset/index.parquet"


def describe_model(attributor: dict) -> str:
    """What really ran, for the tables: the timm model, or backbone (+ text encoder) of a frozen head."""
    features = attributor.get("features") or {}
    parts = [f"{k}:{v.get('backbone') or v.get('encoder')}" for k, v in features.items()]
    spec = attributor.get("spec") or {}
    return " + ".join(parts) or spec.get("model") or spec.get("backbone") or attributor.get("kind", "?")


def _metrics_block(y_true, y_pred, classes, seed) -> dict:
    m = classification_metrics(y_true, y_pred, classes)
    lo, hi = bootstrap_ci(y_true, y_pred, seed=seed)
    return {"accuracy": m["accuracy"], "accuracy_ci95": [lo, hi], "macro_precision": m["macro_precision"],
            "macro_recall": m["macro_recall"], "macro_f1": m["macro_f1"],
            "per_class_accuracy": m["per_class_accuracy"], "confusion_matrix": m["confusion_matrix"],
            "n": int(len(y_true))}


def _write_test_outputs(out_dir: Path, test: str, classes, image_ids, y_true, y_pred, probs) -> None:
    labels = np.asarray(classes, dtype=object)
    preds = pd.DataFrame({"image_id": image_ids, "test_set": test, "true_label": labels[y_true], "pred_label": labels[y_pred]})
    preds = pd.concat([preds, pd.DataFrame(probs, columns=[f"p_{c}" for c in classes])], axis=1)
    with atomic_path(out_dir / f"predictions_{test}.parquet") as tmp:
        preds.to_parquet(tmp, index=False)
    cm = classification_metrics(y_true, y_pred, classes)["confusion_matrix"]
    with atomic_path(out_dir / f"confusion_{test}.csv") as tmp:
        pd.DataFrame(cm, index=pd.Index(classes, name="true\\predicted"), columns=classes).to_csv(tmp)
    plot_confusion(cm, classes, out_dir / f"confusion_{test}.png", title=f"{out_dir.name}: test on {test}")
    # Per-image (actual, predicted) pairs for DVC's confusion template (`dvc plots show`).
    pairs = PLOTS / "confusion" / f"{out_dir.name}__{test}.csv"
    with atomic_path(pairs) as tmp:
        preds[["true_label", "pred_label"]].set_axis(["actual", "predicted"], axis=1).to_csv(tmp, index=False)


def uses_text(attributor: dict) -> bool:
    return "text" in (attributor.get("features") or {})


def is_image_text_model(attributor: dict) -> bool:
    """An image model trained end to end that also takes the prompt embedding (e.g. E.F. w/ text)."""
    return attributor.get("kind", "").endswith("_text")


def feature_cache_dir(cfg: dict) -> Path:
    return Path("data") / cfg["profile"] / "features"


def predict_rows(cfg: dict, spec: dict, run_dir: str | Path, rows: pd.DataFrame) -> np.ndarray:
    """Class probabilities of a trained run for index rows (image_id, shard, prompt_id, prompt),
    whatever the attributor eats: images, cached feature vectors, or images + prompt embedding."""
    import torch

    from attribench.features import feature_inputs
    from attribench.train import predict, predict_features

    features = spec["attributor"].get("features")
    vectors = None
    if features:
        vectors = feature_inputs(rows, features, feature_cache_dir(cfg), device=spec["training"].get("device", "cpu"))
        stacked = torch.stack([vectors[i] for i in rows["image_id"]])
        if not is_image_text_model(spec["attributor"]):
            return predict_features(run_dir, stacked)
    images = load_images(rows)
    extra = {"text_vectors": stacked} if vectors is not None else {}
    return predict(run_dir, [images[i] for i in rows["image_id"]], **extra)


def run_experiment(cfg: dict, name: str, index_path: str | Path, out_dir: str | Path, threads: int | None = None) -> dict:
    from attribench.features import feature_inputs
    from attribench.train import train_run

    spec = experiment_spec(cfg, name)
    out_dir = Path(out_dir)
    index = pd.read_parquet(index_path)
    train_ds = select(index, spec["train"], spec["datasets"][spec["train"]], spec["seed"])
    tests = {t: select(index, t, spec["datasets"][t], spec["seed"]) for t in spec["test"]}
    classes = sorted(train_ds["generator"].unique())
    primary = spec["test"][0]
    run_index = pd.concat([train_ds[train_ds["split"] != "test"], tests[primary][tests[primary]["split"] == "test"]])
    test_rows = {t: ds[(ds["split"] == "test") & ds["generator"].isin(classes)] for t, ds in tests.items()}

    # Frozen-backbone attributors train on cached feature vectors (computed once per image); image
    # models "with text" (kind *_text) train on images plus the cached prompt embedding.
    features = spec["attributor"].get("features")
    attributor_spec = dict(spec["attributor"].get("spec") or {})
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
    run_spec = {
        "attributor": spec["attributor"]["kind"], "attributor_spec": attributor_spec,
        "input_size": training.pop("input_size"), "classes": classes, **training,
    }
    if text_inputs is not None:
        run_spec["text_spec"] = features["text"]  # lets `predict(prompts=...)` re-embed new prompts
    elif features:
        run_spec["features"] = features
    if num_threads:
        run_spec["num_threads"] = num_threads
    extra = {"text_inputs": text_inputs} if text_inputs is not None else {}
    summary = train_run(run_index, run_spec, out_dir, inputs=inputs, **extra)

    blocks = {}
    for test, rows in test_rows.items():
        probs = predict_rows(cfg, spec, out_dir, rows)
        y_true = np.array([classes.index(g) for g in rows["generator"]])
        y_pred = probs.argmax(1)
        blocks[test] = _metrics_block(y_true, y_pred, classes, spec["seed"])
        _write_test_outputs(out_dir, test, classes, list(rows["image_id"]), y_true, y_pred, probs)

    metrics = {
        "experiment": name, "profile": cfg["profile"], "attributor": spec["attributor_name"],
        "attributor_label": spec["attributor"].get("label", spec["attributor_name"]),
        "model": describe_model(spec["attributor"]), "uses_text": uses_text(spec["attributor"]),
        "input_size": next((v["input_size"] for v in (features or {}).values() if "input_size" in v), run_spec["input_size"]),
        "train_dataset": spec["train"], "classes": classes, "n_classes": len(classes),
        "chance": 1.0 / len(classes), "n_train": summary["n_train"], "n_val": summary["n_val"],
        "best_epoch": summary["best_epoch"], "best_val_accuracy": summary["best_val_accuracy"],
        "epochs": summary["epochs"], "train_seconds": summary["train_seconds"],
        "train_images_per_second": summary["train_images_per_second"], "n_parameters": summary["n_parameters"],
        "test": blocks,
    }
    if spec.get("study"):
        metrics["study"] = spec["study"]
    with atomic_path(out_dir / "metrics.json") as tmp:
        tmp.write_text(json.dumps(metrics, indent=2) + "\n")
    return metrics
