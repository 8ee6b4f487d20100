"""Study figures (Xu et al. Fig. 6, 7, 15): one E.F. trained and tested per transform / input size /
patch size. Each configured experiment is one CSV row; a run whose transform cannot run here (weights
missing, no implementation) is a row with its status and no number, never a faked one."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from attribench.reports.figures import register_figure  # noqa: E402
from attribench.core.io import save_png  # noqa: E402
from attribench.data.shards import decode, load_images  # noqa: E402
from attribench.data.views import select  # noqa: E402
from attribench.experiments.specs import experiment_spec, transform_status  # noqa: E402


def study_rows(runs: list[dict], cfg: dict, name: str) -> pd.DataFrame:
    by_exp = {m["experiment"]: m for m in runs}
    rows = []
    for exp in cfg["tables"][name]["experiments"]:
        spec = experiment_spec(cfg, exp)
        tr = spec.get("transform")
        row = {
            "experiment": exp,
            "transform": tr["name"] if tr else "rgb",
            "params": json.dumps({k: v for k, v in tr.items() if k != "name"}, sort_keys=True) if tr else "",
            "input_size": spec["training"]["input_size"],
            "delivery_size": cfg["delivery"]["size"],
        }
        m = by_exp.get(exp)
        if m is None:
            status = transform_status(cfg, exp)
            row["status"] = {"ok": "missing run", "needs weights": f"needs weights ({tr and tr.get('model', '')})"}.get(
                status, status
            )
        else:
            b = m["test"][next(iter(m["test"]))]
            row.update(
                status="ran",
                accuracy=b["accuracy"],
                accuracy_ci95_lo=b["accuracy_ci95"][0],
                accuracy_ci95_hi=b["accuracy_ci95"][1],
                macro_f1=b["macro_f1"],
                n_test=b["n"],
                n_train=m["n_train"],
                n_classes=m["n_classes"],
                chance=m["chance"],
                attributor=m["attributor_label"],
                train_seconds=m["train_seconds"],
            )
        row["profile"] = cfg["profile"]
        rows.append(row)
    df = pd.DataFrame(rows)
    for col in ("accuracy", "accuracy_ci95_lo", "accuracy_ci95_hi", "chance"):
        if col not in df:
            df[col] = np.nan
    return df


def _label(r) -> str:
    if r.transform == "rgb":
        return "RGB (clean)"
    params = json.loads(r.params) if r.params else {}
    shown = {k: v for k, v in params.items() if k in ("radius", "diameter", "std", "strength", "k", "quality")}
    return r.transform + ("" if not shown else " " + ",".join(f"{k}={v}" for k, v in shown.items()))


def _example(cfg: dict, index_path: str, generator: str = "real") -> tuple[np.ndarray, dict]:
    """One test image of the study view (a real photo when there is one) as uint8 HxWx3."""
    index = pd.read_parquet(index_path)
    ds = select(index, "study", cfg["datasets"]["study"], cfg["split"]["seed"])
    test = ds[ds["split"] == "test"]
    pick = test[test["generator"] == generator] if (test["generator"] == generator).any() else test
    row = pick.sort_values("image_id").iloc[0]
    data = load_images(pick.loc[[row.name]])[row["image_id"]]
    return np.asarray(decode(data)), row.to_dict()


def _panels(cfg: dict, df: pd.DataFrame, index_path: str, fig, gs_row) -> None:
    """One example image under each row's transform; grey panel + status where it cannot run."""
    from attribench.transforms import apply  # the transform plugins load torch: only when the figure is built

    image, row = _example(cfg, index_path)
    axes = [fig.add_subplot(gs_row[i]) for i in range(len(df))]
    for ax, r in zip(axes, df.itertuples()):
        tr = experiment_spec(cfg, r.experiment).get("transform")
        if tr is None:
            shown = image
        elif r.status == "ran":
            shown = apply(tr, image[None], ids=[row["image_id"]], prompts=[row.get("prompt") or ""])[0]
        else:
            shown = None
        if shown is None:
            ax.set_facecolor("0.85")
            ax.text(0.5, 0.5, r.status.split(" (")[0].replace(" ", "\n"), ha="center", va="center", fontsize=7)
        else:
            ax.imshow(shown)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(_label(r), fontsize=7)


def _bars(ax, df: pd.DataFrame, title: str) -> None:
    x = np.arange(len(df))
    ran = df["status"] == "ran"
    acc = 100 * df["accuracy"].fillna(0)
    err = 100 * np.array([(df.accuracy - df.accuracy_ci95_lo).fillna(0), (df.accuracy_ci95_hi - df.accuracy).fillna(0)])
    ax.bar(x[ran], acc[ran], yerr=err[:, ran], capsize=3, color="tab:blue")
    for i in x[~ran]:
        ax.text(i, 2, df.status.iloc[i].split(" (")[0], rotation=90, ha="center", va="bottom", fontsize=7, color="0.3")
    if ran.any():
        ax.axhline(100 * df.loc[ran, "chance"].iloc[0], ls="--", c="grey", label="chance")
        ax.legend(fontsize=7)
    ax.set_xticks(x, [_label(r) for r in df.itertuples()], rotation=35, ha="right", fontsize=7)
    ax.set_ylabel("test accuracy (%)")
    ax.set_ylim(0, 100)
    ax.set_title(title, fontsize=9)


def _bar_figure(runs, png, cfg, index_path, name, title) -> pd.DataFrame:
    df = study_rows(runs, cfg, name)
    fig = plt.figure(figsize=(max(6, 1.1 * len(df)), 6))
    gs = fig.add_gridspec(2, len(df), height_ratios=[3, 1.2])
    _bars(fig.add_subplot(gs[0, :]), df, f"{title} ({cfg['profile']}): train and test on each")
    _panels(cfg, df, index_path, fig, gs[1, :].subgridspec(1, len(df)))
    fig.tight_layout()
    save_png(fig, png, dpi=120)
    return df


@register_figure("fig6_perturbations")
def fig6_perturbations(
    runs, png: Path, cfg: dict, index_path: str, name: str = "fig6_perturbations", **_
) -> pd.DataFrame:
    """Accuracy of an E.F. trained and tested on blurred / bilateral-filtered / noisy / SDEdited images."""
    return _bar_figure(runs, png, cfg, index_path, name, "Perturbations (Fig. 6)")


@register_figure("fig7_representations")
def fig7_representations(
    runs, png: Path, cfg: dict, index_path: str, name: str = "fig7_representations", **_
) -> pd.DataFrame:
    """Accuracy of an E.F. trained and tested on a mid-level representation of every image."""
    return _bar_figure(runs, png, cfg, index_path, name, "Mid-level representations (Fig. 7)")


def _curve(
    df: pd.DataFrame, png: Path, cfg: dict, x_col: str, xlabel: str, title: str, whole_image_line: bool = False
) -> pd.DataFrame:
    """Accuracy (95% CI) against x_col on a log2 axis; with whole_image_line the untransformed (`rgb`)
    row is drawn as a reference line instead of a point."""
    ref = df[df["transform"] == "rgb"] if whole_image_line else df.iloc[:0]
    pts = df.drop(ref.index).sort_values(x_col)
    fig, ax = plt.subplots(figsize=(5, 3.5))
    err = 100 * np.array([pts.accuracy - pts.accuracy_ci95_lo, pts.accuracy_ci95_hi - pts.accuracy])
    ax.errorbar(pts[x_col], 100 * pts.accuracy, yerr=err, marker="o", capsize=3)
    if len(ref):
        ax.axhline(100 * ref.accuracy.iloc[0], c="green", ls=":", label="whole image")
    ax.axhline(100 * df.chance.dropna().iloc[0], ls="--", c="grey", label="chance")
    ax.set_xscale("log", base=2)
    ax.set_xticks(pts[x_col], [str(int(v)) for v in pts[x_col]])
    ax.set_xlabel(xlabel)
    ax.set_ylabel("test accuracy (%)")
    ax.set_ylim(0, 100)
    ax.set_title(f"{title} ({cfg['profile']})", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    save_png(fig, png, dpi=120)
    return df


@register_figure("fig15_resolution")
def fig15_resolution(runs, png: Path, cfg: dict, name: str = "fig15_resolution", **_) -> pd.DataFrame:
    """Accuracy vs the attributor's input resolution (app. C.3). Sizes above the delivery size are upsampled."""
    df = study_rows(runs, cfg, name)
    df["upsampled"] = df["input_size"] > df["delivery_size"]
    return _curve(df, png, cfg, "input_size", "input resolution (px)", "Input resolution (Fig. 15 left)")


@register_figure("fig15_patches")
def fig15_patches(runs, png: Path, cfg: dict, name: str = "fig15_patches", **_) -> pd.DataFrame:
    """Accuracy vs centre-patch size k (app. C.4): a k x k centre patch resized to the model input."""
    df = study_rows(runs, cfg, name)
    df["k"] = [json.loads(p)["k"] if p else np.nan for p in df["params"]]
    return _curve(
        df, png, cfg, "k", "patch size k (k x k pixels)", "Centre patches (Fig. 15 right)", whole_image_line=True
    )
