"""Robustness curves: a model trained on clean images, tested on perturbed test images (train clean /
test perturbed). One transform spec per point; JPEG QF 90..50 is the other papers' robustness axis."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from attribench.core.io import atomic_path, save_png  # noqa: E402
from attribench.training.metrics import bootstrap_ci, classification_metrics  # noqa: E402
from attribench.core import paths  # noqa: E402
from attribench.experiments.specs import experiment_spec  # noqa: E402
from attribench.reports.common import index_input  # noqa: E402
from attribench.reports.registry import ReportContext, register_report  # noqa: E402
from attribench.data.views import test_rows  # noqa: E402


# The parameter a curve puts on its x axis; JSON snapshots sort keys, so "first parameter" is not it.
LEVEL_KEYS = ("quality", "radius", "diameter", "std", "sigma", "strength", "k")


def level_of(spec: dict):
    return next((spec[k] for k in LEVEL_KEYS if k in spec), next((v for k, v in spec.items() if k != "name"), None))


def perturbed_points(cfg: dict, rows: pd.DataFrame, perturbations: dict):
    """(axis, level, rows) for the clean rows and each perturbation spec; perturbed rows are the
    parents' rows (class, label, split) with the derived image ids (cached derived shards)."""
    from attribench.transforms.derived import derived_view  # transform plugins load torch: not at DAG time

    yield "clean", None, rows
    for axis, specs in perturbations.items():
        for s in specs:
            spec = {"name": axis, **s}
            yield axis, level_of(spec), derived_view(cfg, rows, spec)


def robustness_curves(
    cfg: dict, index_path: str | Path, run_dir: str | Path, csv_out: str | Path, png_out: str | Path
) -> pd.DataFrame:
    from attribench.experiments.runs import predict_rows  # torch: only when the report is built, not at DAG time

    rb, run_dir = cfg["robustness"], Path(run_dir)
    meta = json.loads((run_dir / "metrics.json").read_text())
    classes, spec = meta["classes"], experiment_spec(cfg, meta["experiment"])
    rows = test_rows(cfg, index_path, rb["dataset"])
    rows = rows[rows["generator"].isin(classes)]
    out = []
    for axis, level, ds in perturbed_points(cfg, rows, rb["perturbations"]):
        y_true = [classes.index(g) for g in ds["generator"]]
        y_pred = predict_rows(cfg, spec, run_dir, ds).argmax(1)
        m = classification_metrics(y_true, y_pred, classes)
        lo, hi = bootstrap_ci(y_true, y_pred, seed=cfg["split"]["seed"])
        out.append(
            {
                "perturbation": axis,
                "level": level,
                "accuracy": m["accuracy"],
                "accuracy_ci95_lo": lo,
                "accuracy_ci95_hi": hi,
                "macro_f1": m["macro_f1"],
                "n_test": len(ds),
                "experiment": meta["experiment"],
                "attributor": meta["attributor_label"],
                "n_classes": len(classes),
                "chance": 1 / len(classes),
                "profile": cfg["profile"],
            }
        )
    df = pd.DataFrame(out)
    with atomic_path(csv_out) as tmp:
        df.to_csv(tmp, index=False, float_format="%.6g")
    _plot(df, png_out)
    return df


def _plot(df: pd.DataFrame, path: str | Path) -> None:
    axes_names = [a for a in dict.fromkeys(df.perturbation) if a != "clean"]
    clean = df[df.perturbation == "clean"].iloc[0]
    fig, axes = plt.subplots(1, len(axes_names), figsize=(3.2 * len(axes_names), 3), squeeze=False)
    for ax, name in zip(axes[0], axes_names):
        d = df[df.perturbation == name]
        err = 100 * np.array([d.accuracy - d.accuracy_ci95_lo, d.accuracy_ci95_hi - d.accuracy])
        ax.errorbar(d.level.astype(float), 100 * d.accuracy, yerr=err, marker="o", capsize=3)
        ax.axhline(100 * clean.accuracy, c="green", ls=":", label="clean")
        ax.axhline(100 * clean.chance, c="grey", ls="--", label="chance")
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("quality" if name == "jpeg" else "level")
        ax.set_ylim(0, 100)
    axes[0][0].set_ylabel("test accuracy (%)")
    axes[0][0].legend(fontsize=7)
    fig.suptitle(f"train clean / test perturbed: {clean.attributor} ({clean.profile})", fontsize=9)
    fig.tight_layout()
    save_png(fig, path, dpi=110)


def _zoo_models(cfg: dict) -> dict[str, list[str]]:
    """Zoo pipelines a perturbation runs (e.g. SDEdit's img2img in smoke) are inputs too."""
    specs = [s for specs in (cfg.get("robustness") or {}).get("perturbations", {}).values() for s in specs]
    models = sorted({m for m in (paths.zoo_model_dir(cfg, {"backend": "diffusers", **s}) for s in specs) if m})
    return index_input(cfg, models=models)


@register_report(
    "robustness",
    outputs=("csv", "png"),
    runs=lambda cfg: [cfg["robustness"]["experiment"]],
    inputs=_zoo_models,
    gpu=True,
    settings=lambda cfg: [cfg.get("robustness"), cfg["delivery"]],
)
def robustness_report(ctx: ReportContext) -> pd.DataFrame:
    """Train clean / test perturbed: accuracy per perturbation level (JPEG, blur, noise, bilateral, SDEdit)."""
    return robustness_curves(ctx.cfg, ctx.index, paths.run_dir(ctx.runs[0]), ctx.out["csv"], ctx.out["png"])
