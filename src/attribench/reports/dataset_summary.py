"""What the dataset holds, at a glance: a count table and a montage of a few images per class."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from attribench.core.io import atomic_path, save_png
from attribench.data.shards import decode, load_images
from attribench.reports.registry import ReportContext, register_report


def dataset_summary(index: pd.DataFrame) -> pd.DataFrame:
    """Images per class x split x prompt source: all rendered, and the per-class benchmark sample."""
    idx = index.assign(prompt_source=index["prompt_source"].fillna("none"))
    keys = ["generator", "family", "source", "split", "prompt_source"]
    all_ = idx.groupby(keys, dropna=False).size().rename("images")
    bench = idx[idx["in_benchmark"]].groupby(keys, dropna=False).size().rename("in_benchmark")
    return pd.concat([all_, bench], axis=1).fillna(0).astype(int).reset_index()


def write_summary(index: pd.DataFrame, out: str | Path) -> Path:
    with atomic_path(out) as tmp:
        dataset_summary(index).to_csv(tmp, index=False)
    return Path(out)


def write_montage(index: pd.DataFrame, out: str | Path, per_class: int = 6, seed: int = 0) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    classes = sorted(index["generator"].unique())
    bench = index[index["in_benchmark"]]
    picks = bench.sample(frac=1.0, random_state=seed).groupby("generator").head(per_class)
    blobs = load_images(picks)
    fig, axes = plt.subplots(len(classes), per_class, figsize=(1.4 * per_class, 1.4 * len(classes)), squeeze=False)
    for r, cls in enumerate(classes):
        rows = picks[picks["generator"] == cls]
        for c in range(per_class):
            ax = axes[r][c]
            ax.set_xticks([]), ax.set_yticks([])
            if c < len(rows):
                ax.imshow(decode(blobs[rows.iloc[c]["image_id"]]))
            if c == 0:
                ax.set_ylabel(cls, rotation=0, ha="right", va="center", fontsize=8)
    fig.suptitle("attribench: delivered images per class", fontsize=10)
    fig.tight_layout()
    save_png(fig, out, dpi=110)
    return Path(out)


@register_report(
    "dataset_summary", outputs=("csv", "png"), files={"png": "dataset_montage.png"}, settings=lambda cfg: None
)
def dataset_summary_report(ctx: ReportContext) -> None:
    """Images per class x split x prompt source (all rendered, and the benchmark sample), and a montage."""
    index = pd.read_parquet(ctx.index)
    write_summary(index, ctx.out["csv"])
    write_montage(index, ctx.out["png"], seed=ctx.cfg["seed"])
