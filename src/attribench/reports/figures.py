"""Benchmark figures: each is one registry entry over named experiment runs (CSV + PNG)."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from attribench.core.io import atomic_path, save_png  # noqa: E402
from attribench.core import paths  # noqa: E402
from attribench.data.views import select  # noqa: E402
from attribench.experiments.specs import experiment_spec  # noqa: E402
from attribench.reports.common import experiment_runs, load_runs  # noqa: E402
from attribench.reports.registry import ReportContext, register_report  # noqa: E402

FigureBuilder = Callable[..., pd.DataFrame]


def _index_input(cfg: dict) -> dict[str, list[str]]:
    return {"index": [str(paths.dataset_index(cfg))]}


def register_figure(name: str):
    """A figure over named runs: `builder(runs, png, cfg=, index_path=, name=) -> frame`; CSV + PNG."""

    def deco(builder: FigureBuilder) -> FigureBuilder:
        def build(ctx: ReportContext) -> pd.DataFrame:
            return write_figure(
                builder, load_runs(ctx.inputs["runs"]), ctx.out, cfg=ctx.cfg, index_path=str(ctx.index), name=ctx.name
            )

        build.__doc__ = builder.__doc__
        register_report(name, outputs=("csv", "png"), runs=experiment_runs(name), inputs=_index_input)(build)
        return builder

    return deco


@register_figure("fig3_train_size")
def fig3_train_size(runs: list[dict], png: Path, **_) -> pd.DataFrame:
    """Accuracy vs training images per class (Xu et al. Fig. 3 right), with 95% CIs."""
    rows = []
    for m in runs:
        test = next(iter(m["test"]))
        b = m["test"][test]
        rows.append(
            {
                "experiment": m["experiment"],
                "train_per_class": m["n_train"] // m["n_classes"],
                "n_train": m["n_train"],
                "accuracy": b["accuracy"],
                "accuracy_ci95_lo": b["accuracy_ci95"][0],
                "accuracy_ci95_hi": b["accuracy_ci95"][1],
                "test_on": test,
                "attributor": m["attributor_label"],
                "n_classes": m["n_classes"],
                "chance": m["chance"],
                "profile": m["profile"],
            }
        )
    df = pd.DataFrame(rows).sort_values("n_train").reset_index(drop=True)
    fig, ax = plt.subplots(figsize=(5, 3.5))
    err = [df.accuracy - df.accuracy_ci95_lo, df.accuracy_ci95_hi - df.accuracy]
    ax.errorbar(df.train_per_class, 100 * df.accuracy, yerr=100 * np.array(err), marker="o", capsize=3)
    ax.axhline(100 * df.chance.iloc[0], ls="--", c="grey", label="chance")
    ax.set_xscale("log")
    ax.set_xlabel("training images per class")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(f"{df.attributor.iloc[0]} ({df.profile.iloc[0]})", fontsize=9)
    ax.legend()
    fig.tight_layout()
    save_png(fig, png, dpi=120)
    return df


@register_figure("fig9_gram_density")
def fig9_gram_density(runs: list[dict], png: Path, cfg: dict, index_path: str, **_) -> pd.DataFrame:
    """Density of the average Gram value per image, per class, log scale (Xu et al. Fig. 9)."""
    from attribench.experiments.runs import feature_cache_dir  # torch: only when built
    from attribench.models.features import feature_inputs  # torch: only when built
    from attribench.models.style import gram_density_plot  # torch: only when built

    m = runs[0]
    spec = experiment_spec(cfg, m["experiment"])
    index = pd.read_parquet(index_path)
    test = select(index, spec["train"], spec["datasets"][spec["train"]], spec["seed"])
    test = test[test["split"] == "test"]
    vectors = feature_inputs(test, spec["attributor"]["features"], feature_cache_dir(cfg))
    by_class = {g: np.stack([vectors[i].numpy() for i in rows["image_id"]]) for g, rows in test.groupby("generator")}
    gram_density_plot(by_class, png)
    df = pd.DataFrame(
        [
            {
                "generator": g,
                "n_images": len(v),
                "mean_gram": float(v.mean()),
                "median_image_mean": float(np.median(v.mean(1))),
            }
            for g, v in by_class.items()
        ]
    )
    df["accuracy_of_gram_attributor"] = m["test"][next(iter(m["test"]))]["accuracy"]
    df["profile"] = m["profile"]
    return df


def write_figure(builder: FigureBuilder, runs: list[dict], out: dict[str, Path], **ctx) -> pd.DataFrame:
    df = builder(runs, Path(out["png"]), **ctx)
    with atomic_path(out["csv"]) as tmp:
        df.to_csv(tmp, index=False, float_format="%.6g")
    return df
