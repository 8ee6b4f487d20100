"""Unknown-generator detection of each attributor (results/openset.csv + .png).

For each methods-table entry, its `seen` twin (trained without `heldout_generators`) is tested on all
its test sets: images of the held-out generators are the unknowns, the other images of its classes
the knowns.
Per unknown score (MSP, energy, Mahalanobis; training.openset): AUROC, OSCR, TPR at 5% FPR with 95%
bootstrap CIs, the closed-set accuracy on the knowns, and what the run's own threshold (fit on known
validation images, predict.json) flags on each side.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from attribench.core import paths
from attribench.core.io import atomic_path, save_png
from attribench.data.views import label_of, select
from attribench.experiments.specs import experiment_spec
from attribench.reports.registry import ReportContext, register_report
from attribench.training.metrics import bootstrap_ci


def seen_runs(cfg: dict) -> list[str]:
    return [
        e["heldout_experiment"]
        for e in (cfg.get("methods_table") or {}).get("entries", {}).values()
        if e.get("heldout_experiment")
    ]


def run_test_rows(cfg: dict, index: pd.DataFrame, exp: str) -> pd.DataFrame:
    """Every test image of the run's test sets, once."""
    spec = experiment_spec(cfg, exp)
    parts = [select(index, t, spec["datasets"][t], spec["seed"]) for t in spec["test"]]
    rows = pd.concat([p[p["split"] == "test"] for p in parts]).drop_duplicates("image_id")
    return rows.reset_index(drop=True)


def openset_rows(cfg: dict, index: pd.DataFrame, key: str, entry: dict, n_boot: int = 500) -> list[dict]:
    from attribench.experiments.inference import PREDICT_JSON, forward_rows  # torch: report modules load at DAG time
    from attribench.training import openset  # torch: only when this report runs

    exp = entry["heldout_experiment"]
    run_dir = paths.run_dir(exp)
    card_path = run_dir / PREDICT_JSON
    if not card_path.exists():
        raise FileNotFoundError(f"methods_table.entries.{key}: {card_path} is missing (retrain '{exp}')")
    card = json.loads(card_path.read_text())
    classes = card["classes"]
    rows = run_test_rows(cfg, index, exp)
    labels = label_of(rows).to_numpy()
    # Unknown = made by a held-out generator (also for a view with `labels`, e.g. real / fake, where
    # the held-out images carry a known label); other images of no trained class are left out.
    is_unknown = rows["generator"].isin(cfg.get("heldout_generators") or []).to_numpy()
    keep = is_unknown | np.isin(labels, classes)
    rows, labels, is_unknown = rows[keep].reset_index(drop=True), labels[keep], is_unknown[keep]
    if is_unknown.all() or not is_unknown.any():
        raise ValueError(
            f"openset: run '{exp}' needs known and held-out test images (got {int(is_unknown.sum())} "
            f"unknown of {len(rows)}); is it trained on a `heldout: seen` view?"
        )
    logits, feats = forward_rows(cfg, experiment_spec(cfg, exp), run_dir, rows)
    stats_path = run_dir / "openset.safetensors"
    stats = None
    if stats_path.exists():
        from safetensors.torch import load_file  # torch: only when this report runs

        stats = load_file(stats_path)
    pred = np.asarray(classes)[logits.argmax(1)]
    correct = pred == labels
    y_true = np.array([classes.index(c) for c in labels[~is_unknown]])
    y_pred = logits.argmax(1)[~is_unknown]
    acc = float((y_true == y_pred).mean())
    acc_lo, acc_hi = bootstrap_ci(y_true, y_pred, seed=cfg["split"]["seed"])
    out = []
    for name, score in openset.unknown_scores(logits, feats, stats).items():
        m = openset.openset_metrics(score, is_unknown, correct)
        ci = openset.bootstrap_openset(score, is_unknown, correct, n_boot=n_boot, seed=cfg["split"]["seed"])
        thr = card["unknown"]["thresholds"].get(name, np.nan)
        row = {
            "key": key,
            "method": entry.get("method", ""),
            "attributor": entry.get("label", key),
            "experiment": exp,
            "score": name,
            "n_classes": len(classes),
            "chance": 1 / len(classes),
            "n_known": int((~is_unknown).sum()),
            "n_unknown": int(is_unknown.sum()),
            "heldout_generators": " ".join(sorted(set(rows["generator"][is_unknown]))),
            "closed_set_accuracy": acc,
            "closed_set_accuracy_ci95_lo": acc_lo,
            "closed_set_accuracy_ci95_hi": acc_hi,
        }
        for k, v in m.items():
            row.update({k: v, f"{k}_ci95_lo": ci[k][0], f"{k}_ci95_hi": ci[k][1]})
        row.update(
            threshold=thr,
            flagged_known=float((score[~is_unknown] > thr).mean()),
            flagged_unknown=float((score[is_unknown] > thr).mean()),
            profile=cfg["profile"],
        )
        out.append(row)
    return out


@register_report("openset", outputs=("csv", "png"), runs=seen_runs, gpu=True)
def build_openset(ctx: ReportContext) -> pd.DataFrame:
    """Unknown-generator detection (AUROC, OSCR, TPR at 5% FPR, 95% CIs) per attributor and score."""
    from tqdm.auto import tqdm  # progress only when the report runs

    index = pd.read_parquet(ctx.index)
    entries = {k: e for k, e in ctx.cfg["methods_table"]["entries"].items() if e.get("heldout_experiment")}
    df = pd.DataFrame(
        [r for k, e in tqdm(entries.items(), desc="openset", unit="run") for r in openset_rows(ctx.cfg, index, k, e)]
    )
    with atomic_path(ctx.out["csv"]) as tmp:
        df.to_csv(tmp, index=False, float_format="%.6g")
    plot_openset(df, ctx.out["png"])
    return df


def plot_openset(df: pd.DataFrame, path) -> None:
    """AUROC and OSCR per attributor (bars: scores; whiskers: 95% CI)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(dict.fromkeys(df["attributor"]))
    scores = list(dict.fromkeys(df["score"]))
    fig, axes = plt.subplots(1, 2, figsize=(11, 0.5 * len(names) + 2), sharey=True)
    y, h = np.arange(len(names)), 0.8 / max(1, len(scores))
    for ax, metric in zip(axes, ("auroc", "oscr")):
        for i, s in enumerate(scores):
            d = df[df["score"] == s].set_index("attributor").reindex(names)
            err = np.array([d[metric] - d[f"{metric}_ci95_lo"], d[f"{metric}_ci95_hi"] - d[metric]])
            ax.barh(y + (i - (len(scores) - 1) / 2) * h, d[metric], h, xerr=err, capsize=2, label=s)
        ax.set_xlim(0, 1)
        ax.set_xlabel(metric.upper() + (" (0.5 = chance)" if metric == "auroc" else ""))
        ax.legend(fontsize=7, loc="lower right")
    axes[0].set_yticks(y, names, fontsize=7)
    axes[0].invert_yaxis()
    fig.suptitle(
        f"Unknown-generator detection on held-out generators ({df['profile'].iloc[0]}, "
        f"{df['n_classes'].iloc[0]} known classes)",
        fontsize=10,
    )
    fig.tight_layout()
    save_png(fig, path, dpi=120)
