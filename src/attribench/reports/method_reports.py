"""The tables of two methods from the literature, from runs the `train` rule made on our bench.

Ju et al. 2022 (`results/ju_detection.csv`, their Table 2 + Fig. 3): real-vs-fake average precision
of the real photos against each generator family, mAP over families and global AP (all fakes mixed),
for the detector on clean test images, on blurred (sigma) and JPEG-compressed copies, for the same
network trained N-way (fake score 1 - p(real), head swapped), and for the detector trained without
the held-out generators, tested on seen and held-out ones.

DeepFeatureX (`results/deepfeaturex.csv`, Pontorno et al. Tables 1-3): each base model on its 90:10
test subset (accuracy, recall, precision, F1 of its class); the DM / GAN / real model (accuracy,
macro F1, balanced accuracy) and its binary reading (DM and GAN predictions = fake: accuracy, F1,
AP of p(dm) + p(gan)), clean and under JPEG QF 90..50; and the N-way head on the same frozen bases.

Long format, one number a row, with a 95% bootstrap CI (resampling test images, stratified by
class/family for AP). Perturbed test images are re-delivered in the `delivery` container, as in
robustness.py.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from attribench.data.views import label_of, select  # noqa: E402
from attribench.core.paths import RUNS  # noqa: E402
from attribench.experiments.specs import experiment_spec, run_metrics  # noqa: E402
from attribench.reports.common import index_input, named_runs  # noqa: E402
from attribench.training.metrics import bootstrap_ci, classification_metrics  # noqa: E402
from attribench.reports.registry import ReportContext, register_report  # noqa: E402
from attribench.core.io import atomic_path, save_png  # noqa: E402
from attribench.reports.robustness import perturbed_points  # noqa: E402

N_BOOT = 200


def average_precision(y: np.ndarray, score: np.ndarray) -> float:
    """scikit-learn's average precision (tied scores form one threshold); NaN without positives."""
    from sklearn.metrics import average_precision_score  # sklearn: only when the report is built, not at DAG time

    y = np.asarray(y, dtype=bool)
    return float(average_precision_score(y, np.asarray(score, dtype=np.float64))) if y.any() else float("nan")


def detection_aps(
    is_fake: np.ndarray, score: np.ndarray, family: np.ndarray, seed: int = 0, n_boot: int = N_BOOT
) -> list[dict]:
    """AP of real vs each fake family, their mean (mAP) and the global AP (all fakes vs real), each
    with a percentile bootstrap CI (resampling within each family and within the real images)."""
    is_fake, score, family = np.asarray(is_fake, bool), np.asarray(score, float), np.asarray(family, object)
    families = sorted(set(family[is_fake]))
    real = np.nonzero(~is_fake)[0]

    def stats(idx: np.ndarray) -> dict:
        y, s, f = is_fake[idx], score[idx], family[idx]
        out = {fam: average_precision(y[(~y) | (f == fam)], s[(~y) | (f == fam)]) for fam in families}
        out["mAP"] = float(np.mean([out[fam] for fam in families]))
        out["global"] = average_precision(y, s)
        return out

    point = stats(np.arange(len(score)))
    rng = np.random.default_rng(seed)
    strata = [real] + [np.nonzero(is_fake & (family == fam))[0] for fam in families]
    boots = [
        stats(np.concatenate([st[rng.integers(0, len(st), len(st))] for st in strata if len(st)]))
        for _ in range(n_boot)
    ]
    rows = []
    for key, value in point.items():
        lo, hi = np.nanquantile([b[key] for b in boots], [0.025, 0.975])
        n_fake = int((is_fake & (family == key)).sum()) if key in families else int(is_fake.sum())
        metric = {"mAP": "map", "global": "global_ap"}.get(key, "ap")
        rows.append(
            {
                "family": key,
                "metric": metric,
                "value": value,
                "ci95_lo": float(lo),
                "ci95_hi": float(hi),
                "n_real": len(real),
                "n_fake": n_fake,
            }
        )
    return rows


def _recorded(experiment: str, test: str, index: pd.DataFrame) -> pd.DataFrame:
    """A run's recorded test predictions joined with the index (generator, family)."""
    preds = pd.read_parquet(RUNS / experiment / f"predictions_{test}.parquet")
    preds = preds.drop(columns=[c for c in ("generator",) if c in preds.columns])
    return preds.merge(index[["image_id", "generator", "family"]], on="image_id", how="left", validate="1:1")


def _test_view(cfg: dict, index: pd.DataFrame, dataset: str, classes: list[str]) -> pd.DataFrame:
    ds = select(index, dataset, cfg["datasets"][dataset], cfg["split"]["seed"])
    ds = ds[(ds["split"] == "test") & label_of(ds).isin(classes)]
    return ds.reset_index(drop=True)


def _probs(cfg: dict, experiment: str, rows: pd.DataFrame) -> np.ndarray:
    from attribench.experiments.runs import predict_rows  # torch: only when the report is built, not at DAG time

    return predict_rows(cfg, experiment_spec(cfg, experiment), RUNS / experiment, rows)


# ------------------------------------------------------------------------------------ Ju et al.


def ju_detection(cfg: dict, index_path: str | Path, csv_out: str | Path, png_out: str | Path) -> pd.DataFrame:
    block, seed = cfg["ju_detection"], cfg["split"]["seed"]
    index = pd.read_parquet(index_path)
    det = run_metrics(block["detector"])
    classes, positive = det["classes"], block["positive"]
    if positive not in classes or len(classes) != 2:
        raise ValueError(
            f"ju_detection.detector {block['detector']} must be binary with class '{positive}'; has {classes}"
        )
    common = {"profile": cfg["profile"]}
    out = []

    def add(rows, **ctx):
        out.extend({**common, **ctx, **r} for r in rows)

    # 1. The detector: clean (its recorded predictions are what predict_rows gives) and perturbed.
    test = experiment_spec(cfg, block["detector"])["test"][0]
    rows = _test_view(cfg, index, test, classes)
    for axis, level, ds in perturbed_points(cfg, rows, block.get("perturbations", {})):
        probs = _probs(cfg, block["detector"], ds)
        y = (label_of(ds) == positive).to_numpy()
        ctx = dict(
            experiment=block["detector"],
            attributor=det["attributor_label"],
            train=det["train_dataset"],
            test_set=test,
            generators="all",
            perturbation=axis,
            level=level,
        )
        add(detection_aps(y, probs[:, classes.index(positive)], ds["family"].to_numpy(), seed), **ctx)
        pred = probs.argmax(1) == classes.index(positive)
        lo, hi = bootstrap_ci(y, pred, seed=seed)
        add(
            [
                {
                    "family": "all",
                    "metric": "accuracy",
                    "value": float((y == pred).mean()),
                    "ci95_lo": lo,
                    "ci95_hi": hi,
                    "n_real": int((~y).sum()),
                    "n_fake": int(y.sum()),
                }
            ],
            **ctx,
        )

    # 2. The same network N-way (head swapped): attribution accuracy, and detection by 1 - p(real).
    if block.get("attribution"):
        exp = block["attribution"]
        meta = run_metrics(exp)
        t = experiment_spec(cfg, exp)["test"][0]
        rec = _recorded(exp, t, index)
        ctx = dict(
            experiment=exp,
            attributor=meta["attributor_label"],
            train=meta["train_dataset"],
            test_set=t,
            generators="all",
            perturbation="clean",
            level=None,
        )
        blk = meta["test"][t]
        add(
            [
                {
                    "family": "all",
                    "metric": f"{meta['n_classes']}way_accuracy",
                    "value": blk["accuracy"],
                    "ci95_lo": blk["accuracy_ci95"][0],
                    "ci95_hi": blk["accuracy_ci95"][1],
                },
                {"family": "all", "metric": f"{meta['n_classes']}way_macro_f1", "value": blk["macro_f1"]},
            ],
            **ctx,
        )
        if "real" in meta["classes"]:
            y = (rec["true_label"] != "real").to_numpy()
            add(detection_aps(y, 1.0 - rec["p_real"].to_numpy(), rec["family"].to_numpy(), seed), **ctx)

    # 3. Trained without the held-out generators: AP on seen (in-distribution) and held-out test sets.
    if block.get("heldout"):
        exp = block["heldout"]
        meta = run_metrics(exp)
        tests = experiment_spec(cfg, exp)["test"]
        trained_on = set(
            select(index, meta["train_dataset"], cfg["datasets"][meta["train_dataset"]], seed)["generator"]
        )
        for t in tests:
            rec = _recorded(exp, t, index)
            fake = rec["true_label"] == positive
            kind = "seen" if set(rec.loc[fake, "generator"]) <= trained_on else "held-out"
            ctx = dict(
                experiment=exp,
                attributor=meta["attributor_label"],
                train=meta["train_dataset"],
                test_set=t,
                generators=kind,
                perturbation="clean",
                level=None,
            )
            add(detection_aps(fake.to_numpy(), rec[f"p_{positive}"].to_numpy(), rec["family"].to_numpy(), seed), **ctx)

    cols = [
        "experiment",
        "attributor",
        "train",
        "test_set",
        "generators",
        "perturbation",
        "level",
        "family",
        "metric",
        "value",
        "ci95_lo",
        "ci95_hi",
        "n_real",
        "n_fake",
        "profile",
    ]
    df = pd.DataFrame(out).reindex(columns=cols)
    with atomic_path(csv_out) as tmp:
        df.to_csv(tmp, index=False, float_format="%.6g")
    _plot_ju(df, block, png_out)
    return df


def _plot_ju(df: pd.DataFrame, block: dict, path: str | Path) -> None:
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6), gridspec_kw={"width_ratios": [1.6, 1, 1]})
    ax = axes[0]
    bars = []
    det = df[(df.experiment == block["detector"]) & (df.perturbation == "clean")]
    bars.append(("detector", det))
    if block.get("attribution"):
        bars.append(("N-way, 1-p(real)", df[df.experiment == block["attribution"]]))
    if block.get("heldout"):
        bars.append(("trained on seen", df[df.experiment == block["heldout"]]))
    fams = sorted(set(det[det.metric == "ap"].family))
    keys = fams + ["mAP", "global"]
    width = 0.8 / len(bars)
    for i, (name, d) in enumerate(bars):
        vals, lo_err, hi_err, hatches = [], [], [], []
        for k in keys:
            m = "map" if k == "mAP" else "global_ap" if k == "global" else "ap"
            sel = d[(d.family == k) & (d.metric == m)]
            if k in ("mAP", "global") and name == "trained on seen":
                sel = sel[sel.generators == "held-out"]  # the held-out numbers are the point here
            vals.append(100 * sel.value.iloc[0] if len(sel) else np.nan)
            lo_err.append(100 * (sel.value.iloc[0] - sel.ci95_lo.iloc[0]) if len(sel) else 0)
            hi_err.append(100 * (sel.ci95_hi.iloc[0] - sel.value.iloc[0]) if len(sel) else 0)
            hatches.append("//" if len(sel) and sel.generators.iloc[0] == "held-out" else "")
        x = np.arange(len(keys)) + (i - (len(bars) - 1) / 2) * width
        rects = ax.bar(x, vals, width, yerr=[lo_err, hi_err], capsize=2, label=name)
        for r, h in zip(rects, hatches):
            r.set_hatch(h)
    ax.set_xticks(range(len(keys)), keys, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("AP real vs family (%)")
    ax.set_ylim(0, 105)
    ax.legend(fontsize=7, loc="lower left")
    ax.set_title("AP per family (hatched: held-out generators)", fontsize=9)
    clean = det.set_index("metric")
    for ax, axis, xlabel in ((axes[1], "gaussian_blur_sigma", "blur sigma"), (axes[2], "jpeg", "JPEG quality")):
        d = df[(df.experiment == block["detector"]) & (df.perturbation == axis)]
        if d.empty:
            ax.set_visible(False)
            continue
        for metric, name in (("global_ap", "global AP"), ("map", "mAP")):
            dm = d[d.metric == metric].copy()
            lv = dm.level.astype(float).tolist()
            vals = (100 * dm.value).tolist()
            lo, hi = (100 * dm.ci95_lo).tolist(), (100 * dm.ci95_hi).tolist()
            if axis == "gaussian_blur_sigma":  # sigma 0 is the clean point
                c = clean.loc[metric]
                lv, vals, lo, hi = [0.0] + lv, [100 * c.value] + vals, [100 * c.ci95_lo] + lo, [100 * c.ci95_hi] + hi
            else:
                ax.axhline(100 * clean.loc[metric].value, ls=":", c="grey")
            ax.plot(lv, vals, marker="o", label=name)
            ax.fill_between(lv, lo, hi, alpha=0.2)
        if axis == "jpeg":
            ax.invert_xaxis()
        ax.set_xlabel(xlabel)
        ax.set_ylim(0, 105)
        ax.set_title(f"robustness: {xlabel}", fontsize=9)
        ax.legend(fontsize=7)
    fig.suptitle(f"real-vs-fake detection: {det.attributor.iloc[0]} ({det.profile.iloc[0]})", fontsize=9)
    fig.tight_layout()
    save_png(fig, path, dpi=110)


# ------------------------------------------------------------------------------------ DeepFeatureX


def _class_rows(y_true, y_pred, classes, seed) -> list[dict]:
    m = classification_metrics(y_true, y_pred, classes)
    lo, hi = bootstrap_ci(y_true, y_pred, seed=seed)
    recalls = [v for v in m["per_class_accuracy"].values() if v is not None]
    return [
        {"metric": "accuracy", "value": m["accuracy"], "ci95_lo": lo, "ci95_hi": hi},
        {"metric": "macro_f1", "value": m["macro_f1"]},
        {"metric": "balanced_accuracy", "value": float(np.mean(recalls))},
    ]


def _binary_rows(y_pos, pred_pos, score, seed) -> list[dict]:
    """Positive-class accuracy (+CI), recall, precision, F1 and AP of `score`."""
    y_pos, pred_pos = np.asarray(y_pos, bool), np.asarray(pred_pos, bool)
    tp, fp, fn = int((y_pos & pred_pos).sum()), int((~y_pos & pred_pos).sum()), int((y_pos & ~pred_pos).sum())
    prec = tp / (tp + fp) if tp + fp else 0.0
    rec = tp / (tp + fn) if tp + fn else 0.0
    lo, hi = bootstrap_ci(y_pos, pred_pos, seed=seed)
    rows = [
        {"metric": "accuracy", "value": float((y_pos == pred_pos).mean()), "ci95_lo": lo, "ci95_hi": hi},
        {"metric": "recall", "value": rec},
        {"metric": "precision", "value": prec},
        {"metric": "f1", "value": 2 * prec * rec / (prec + rec) if prec + rec else 0.0},
    ]
    if score is not None:
        rows.append({"metric": "ap", "value": average_precision(y_pos, score)})
    return rows


def deepfeaturex_table(cfg: dict, index_path: str | Path, csv_out: str | Path, png_out: str | Path) -> pd.DataFrame:
    block, seed = cfg["deepfeaturex"], cfg["split"]["seed"]
    index = pd.read_parquet(index_path)
    common = {"profile": cfg["profile"]}
    out = []

    def add(rows, **ctx):
        out.extend({**common, **ctx, **r} for r in rows)

    # Base models (Table 1): each on its own 90:10 test subset, its class as the positive.
    for exp in block.get("bases", []):
        meta = run_metrics(exp)
        t = experiment_spec(cfg, exp)["test"][0]
        rec = pd.read_parquet(RUNS / exp / f"predictions_{t}.parquet")
        pos = next(c for c in meta["classes"] if c != "others")
        add(
            _binary_rows(rec["true_label"] == pos, rec["pred_label"] == pos, rec[f"p_{pos}"].to_numpy(), seed),
            experiment=exp,
            attributor=meta["attributor_label"],
            task=f"base_{pos}_vs_others",
            test_set=t,
            perturbation="clean",
            level=None,
            n=len(rec),
            n_classes=2,
        )

    # The DM / GAN / real model (Tables 2, 3), clean and under JPEG; the N-way head on the same images.
    meta = run_metrics(block["experiment"])
    classes, real = meta["classes"], block["real_label"]
    test = experiment_spec(cfg, block["experiment"])["test"][0]
    rows = _test_view(cfg, index, test, classes)
    nway = run_metrics(block["attribution"]) if block.get("attribution") else None
    for axis, level, ds in perturbed_points(cfg, rows, block.get("perturbations", {})):
        ctx = dict(perturbation=axis, level=level, test_set=test, n=len(ds))
        probs = _probs(cfg, block["experiment"], ds)
        y = np.array([classes.index(c) for c in label_of(ds)])
        add(
            _class_rows(y, probs.argmax(1), classes, seed),
            experiment=block["experiment"],
            attributor=meta["attributor_label"],
            task=f"{len(classes)}class",
            n_classes=len(classes),
            **ctx,
        )
        fake_score = 1.0 - probs[:, classes.index(real)]
        add(
            _binary_rows(y != classes.index(real), probs.argmax(1) != classes.index(real), fake_score, seed),
            experiment=block["experiment"],
            attributor=meta["attributor_label"],
            task="binary_fake_vs_real",
            n_classes=2,
            **ctx,
        )
        if nway:
            # On the generators the head was trained on: the paper's N-way view (Xu's 13 classes) leaves
            # out the GAN classes the 3-class test set holds.
            known = ds[ds["generator"].isin(nway["classes"])].reset_index(drop=True)
            p = _probs(cfg, block["attribution"], known)
            yn = np.array([nway["classes"].index(g) for g in known["generator"]])
            add(
                _class_rows(yn, p.argmax(1), nway["classes"], seed),
                experiment=block["attribution"],
                attributor=nway["attributor_label"],
                task=f"{nway['n_classes']}way",
                n_classes=nway["n_classes"],
                **{**ctx, "n": len(known)},
            )

    cols = [
        "experiment",
        "attributor",
        "task",
        "test_set",
        "perturbation",
        "level",
        "metric",
        "value",
        "ci95_lo",
        "ci95_hi",
        "n",
        "n_classes",
        "profile",
    ]
    df = pd.DataFrame(out).reindex(columns=cols)
    with atomic_path(csv_out) as tmp:
        df.to_csv(tmp, index=False, float_format="%.6g")
    _plot_dfx(df, png_out)
    return df


def _plot_dfx(df: pd.DataFrame, path: str | Path) -> None:
    tasks = [t for t in dict.fromkeys(df.task) if not t.startswith("base_")]
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    for task in tasks:
        d = df[(df.task == task) & (df.metric == "accuracy")]
        clean = d[d.perturbation == "clean"]
        jp = d[d.perturbation == "jpeg"]
        x = [101.0] + jp.level.astype(float).tolist()  # "raw" plotted left of QF 100
        v = 100 * np.r_[clean.value.to_numpy(), jp.value.to_numpy()]
        lo = 100 * np.r_[clean.ci95_lo.to_numpy(), jp.ci95_lo.to_numpy()]
        hi = 100 * np.r_[clean.ci95_hi.to_numpy(), jp.ci95_hi.to_numpy()]
        ax.errorbar(
            x,
            v,
            yerr=[v - lo, hi - v],
            marker="s" if task.startswith("binary") else "o",
            capsize=3,
            label=task,
            ls="--" if task.startswith("binary") else "-",
            mfc="none" if task.startswith("binary") else None,
        )
    ax.invert_xaxis()
    ax.set_xlabel("JPEG quality (101 = raw)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_ylim(0, 105)
    ax.legend(fontsize=7)
    ax.set_title(f"DeepFeatureX: {df.attributor.iloc[-1]} ({df.profile.iloc[0]})", fontsize=8)
    fig.tight_layout()
    save_png(fig, path, dpi=110)


@register_report(
    "ju_detection",
    outputs=("csv", "png"),
    runs=named_runs("ju_detection"),
    inputs=index_input,
    gpu=True,
    settings=lambda cfg: [cfg.get("ju_detection"), cfg["delivery"]],
)
def ju_detection_report(ctx: ReportContext) -> pd.DataFrame:
    """Ju et al. 2022: real-vs-fake AP per family, mAP, global AP, blur / JPEG robustness, N-way, held-out."""
    return ju_detection(ctx.cfg, ctx.index, ctx.out["csv"], ctx.out["png"])


@register_report(
    "deepfeaturex",
    outputs=("csv", "png"),
    runs=named_runs("deepfeaturex"),
    inputs=index_input,
    gpu=True,
    settings=lambda cfg: [cfg.get("deepfeaturex"), cfg["delivery"]],
)
def deepfeaturex_report(ctx: ReportContext) -> pd.DataFrame:
    """DeepFeatureX (Pontorno et al. 2024): base models, 3-class + binary, JPEG QF robustness, N-way head."""
    return deepfeaturex_table(ctx.cfg, ctx.index, ctx.out["csv"], ctx.out["png"])
