"""One table for every attributor on the same splits (issue: the methods bench).

Per entry: N-way accuracy with its 95% CI and macro-F1 (the run's own test block), real-vs-fake AP
(fake score = 1 - P(real), from the same run), accuracy on the same test images re-encoded at JPEG QF
`jpeg_quality`, real-vs-fake AP on generators held out of training (a twin run trained on the `seen`
view), training time (including the runs it builds on, e.g. DeepFeatureX's base models or Jiang's
encoder; frozen-feature extraction, computed once and cached, is not in it) and inference throughput
(encoded image in, probabilities out, features recomputed, this machine's threads).
Calibration: ECE (15 bins) on the test set before and after the run's temperature scaling (predict.json).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from attribench.core.paths import RUNS  # noqa: E402
from attribench.experiments.specs import experiment_spec, run_metrics, upstream_runs, uses_text  # noqa: E402
from attribench.reports.common import index_input  # noqa: E402
from attribench.reports.registry import ReportContext, register_report  # noqa: E402
from attribench.data.shards import load_images  # noqa: E402
from attribench.data.views import test_rows  # noqa: E402
from attribench.core.io import atomic_path, save_png  # noqa: E402


def total_train_seconds(cfg: dict, exp: str) -> float:
    """The run's own training time plus that of every run it builds on (recursively)."""
    ups = upstream_runs(experiment_spec(cfg, exp)["attributor"])
    return float(run_metrics(exp)["train_seconds"]) + sum(total_train_seconds(cfg, u) for u in ups)


def inference_seconds(spec: dict, run_dir: Path, rows: pd.DataFrame) -> float:
    """Wall time of `train.predict` on the rows' encoded images: decode, resize, any frozen backbone
    (recomputed, never the feature cache), the model. What a user pays per new image."""
    from attribench.training.loop import predict  # torch: only when the report is built, not at DAG time

    images = load_images(rows)
    blobs = [images[i] for i in rows["image_id"]]
    prompts = list(rows["prompt"].fillna("")) if uses_text(spec["attributor"]) else None
    t0 = time.perf_counter()
    predict(run_dir, blobs, prompts=prompts)
    return time.perf_counter() - t0


def calibration_columns(exp: str) -> dict:
    """ECE (15 bins) on the run's test set before / after its temperature scaling (fit on validation)."""
    path = RUNS / exp / "predict.json"
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: run '{exp}' predates calibration; retrain it")
    test = json.loads(path.read_text())["calibration"]["test"]
    return {"ece": test["before"]["ece"], "ece_calibrated": test["after"]["ece"]}


def method_row(cfg: dict, key: str, entry: dict, test_rows: pd.DataFrame) -> dict:
    from attribench.experiments.runs import predict_rows  # torch: only when the report is built, not at DAG time

    mt = cfg["methods_table"]
    m = run_metrics(entry["experiment"])
    spec = experiment_spec(cfg, entry["experiment"])
    block = m["test"].get(mt["dataset"])
    if block is None:
        raise KeyError(f"methods_table.entries.{key}: run '{entry['experiment']}' was not tested on '{mt['dataset']}'")
    rows = test_rows[test_rows["generator"].isin(m["classes"])].reset_index(drop=True)
    seconds = inference_seconds(spec, RUNS / entry["experiment"], rows)
    # The same test images re-encoded (cached derived view: parents' classes, derived image ids).
    from attribench.transforms.derived import derived_view  # transform plugins load torch: not at DAG time

    jpeg = derived_view(cfg, rows, {"name": "jpeg", "quality": mt["jpeg_quality"]})
    jpeg_pred = np.asarray(m["classes"])[predict_rows(cfg, spec, RUNS / entry["experiment"], jpeg).argmax(1)]
    jpeg_acc = float((jpeg_pred == jpeg["generator"].to_numpy()).mean())
    row = {
        "method": entry.get("method", ""),
        "attributor": entry.get("label") or m["attributor_label"],
        "key": key,
        "experiment": entry["experiment"],
        "model": m["model"],
        "n_classes": m["n_classes"],
        "chance": m["chance"],
        "accuracy": block["accuracy"],
        "accuracy_ci95_lo": block["accuracy_ci95"][0],
        "accuracy_ci95_hi": block["accuracy_ci95"][1],
        "macro_f1": block["macro_f1"],
        "real_vs_fake_ap": block.get("real_vs_fake_ap", np.nan),
        f"accuracy_jpeg{mt['jpeg_quality']}": jpeg_acc,
        "train_seconds": total_train_seconds(cfg, entry["experiment"]),
        "inference_images_per_second": len(rows) / seconds if seconds > 0 else np.nan,
        "n_test": block["n"],
        **calibration_columns(entry["experiment"]),
    }
    held = entry.get("heldout_experiment")
    if held:
        hm = run_metrics(held)
        seen = next((b for t, b in hm["test"].items() if cfg["datasets"][t].get("heldout") == "seen"), {})
        unseen = next((b for t, b in hm["test"].items() if cfg["datasets"][t].get("heldout") == "unseen"), None)
        if unseen is None:
            raise KeyError(
                f"methods_table.entries.{key}.heldout_experiment '{held}' has no test set with heldout: unseen"
            )
        row.update(
            heldout_experiment=held,
            seen_real_vs_fake_ap=seen.get("real_vs_fake_ap", np.nan),
            seen_real_vs_fake_accuracy=seen.get("real_vs_fake_accuracy", np.nan),
            heldout_real_vs_fake_ap=unseen.get("real_vs_fake_ap", np.nan),
            heldout_real_vs_fake_accuracy=unseen.get("real_vs_fake_accuracy", np.nan),
        )
    row["profile"] = cfg["profile"]
    return row


def build_methods_table(cfg: dict, index_path: str | Path, csv_out: str | Path, png_out: str | Path) -> pd.DataFrame:
    from tqdm.auto import tqdm

    mt = cfg["methods_table"]
    rows = test_rows(cfg, index_path, mt["dataset"])
    out = [
        method_row(cfg, key, entry, rows) for key, entry in tqdm(mt["entries"].items(), desc="methods", unit="method")
    ]
    df = pd.DataFrame(out)
    with atomic_path(csv_out) as tmp:
        df.to_csv(tmp, index=False, float_format="%.6g")
    plot_methods(df, png_out, mt["jpeg_quality"])
    return df


def plot_methods(df: pd.DataFrame, path: str | Path, quality: int) -> None:
    """Left: N-way accuracy (95% CI), clean vs JPEG; right: real-vs-fake AP, all / seen / held-out generators."""
    fig, (a, b) = plt.subplots(1, 2, figsize=(12, 0.45 * len(df) + 2.2), sharey=True)
    y = np.arange(len(df))
    err = 100 * np.array([df.accuracy - df.accuracy_ci95_lo, df.accuracy_ci95_hi - df.accuracy])
    a.barh(y - 0.2, 100 * df.accuracy, 0.4, xerr=err, capsize=2, label="clean")
    a.barh(y + 0.2, 100 * df[f"accuracy_jpeg{quality}"], 0.4, label=f"JPEG QF {quality}")
    a.axvline(100 * df.chance.iloc[0], ls="--", c="grey", label="chance")
    a.set_yticks(y, [f"{r.attributor}" + (f" [{r.method}]" if r.method else "") for r in df.itertuples()], fontsize=7)
    a.invert_yaxis()
    a.set_xlabel(f"{df.n_classes.iloc[0]}-way accuracy (%)")
    a.set_xlim(0, 100)
    a.legend(fontsize=7, loc="lower right")
    cols = [
        ("real_vs_fake_ap", "all generators"),
        ("seen_real_vs_fake_ap", "seen (held-out run)"),
        ("heldout_real_vs_fake_ap", "held-out generators"),
    ]
    for i, (col, label) in enumerate(c for c in cols if c[0] in df):
        b.barh(y + (i - 1) * 0.27, 100 * df[col], 0.27, label=label)
    b.set_xlabel("real-vs-fake AP (%)")
    b.set_xlim(0, 100)
    b.legend(fontsize=7, loc="lower right")
    fig.suptitle(f"Methods on one bench ({df.profile.iloc[0]})", fontsize=10)
    fig.tight_layout()
    save_png(fig, path, dpi=120)


def methods_runs(cfg: dict) -> list[str]:
    """Each entry's every-class run and its held-out twin."""
    entries = cfg["methods_table"]["entries"].values()
    return [e["experiment"] for e in entries] + [e["heldout_experiment"] for e in entries if "heldout_experiment" in e]


@register_report(
    "methods",
    outputs=("csv", "png"),
    runs=methods_runs,
    inputs=index_input,
    gpu=True,
    settings=lambda cfg: [cfg.get("methods_table"), cfg.get("heldout_generators"), cfg["delivery"]],
)
def methods_report(ctx: ReportContext) -> pd.DataFrame:
    """Every attributor on the same splits: N-way accuracy (95% CI), macro-F1, real-vs-fake AP, accuracy at
    JPEG QF, AP on held-out generators, train time, inference images/s."""
    return build_methods_table(ctx.cfg, ctx.index, ctx.out["csv"], ctx.out["png"])
