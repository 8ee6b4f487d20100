"""Benchmark tables: each is one registry entry that aggregates named experiment runs.

Every CSV is long-format (one row per number, with its 95% CI where it is an accuracy) and names
the profile, the class count and chance level; a Markdown rendering in the paper's layout sits beside it.
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import Callable

import pandas as pd

from attribench.core.io import atomic_path
from attribench.reports.common import experiment_runs, load_runs
from attribench.reports.registry import ReportContext, register_report

TableBuilder = Callable[[list[dict]], tuple[pd.DataFrame, str]]


def register_table(name: str, figure: Callable[[list[dict], Path], object] | None = None, png_name: str | None = None):
    """A table over named runs: `builder(runs) -> (long-format frame, Markdown)`; CSV + MD + DVC metrics
    (flat accuracies for `dvc metrics show`), plus the table's figure when it has one (Table 3 -> Fig. 4)."""

    def deco(builder: TableBuilder) -> TableBuilder:
        def build(ctx: ReportContext) -> pd.DataFrame:
            return write_table(ctx.name, builder, load_runs(ctx.inputs["runs"]), ctx.out, figure)

        build.__doc__ = builder.__doc__
        outputs = ("csv", "md", "metrics") + (("png",) if figure else ())
        register_report(
            name,
            outputs=outputs,
            runs=experiment_runs(name),
            inputs=lambda cfg: {},
            files={"png": png_name} if png_name else None,
        )(build)
        return builder

    return deco


def _pct(x: float) -> str:
    return f"{100 * x:.2f}"


def _rows(runs: list[dict]) -> pd.DataFrame:
    rows = []
    for m in runs:
        for test, b in m["test"].items():
            rows.append(
                {
                    "experiment": m["experiment"],
                    "attributor": m["attributor_label"],
                    "model": m["model"],
                    "text": bool(m.get("uses_text", False)),
                    "input_size": m["input_size"],
                    "train_on": m["train_dataset"],
                    "test_on": test,
                    "accuracy": b["accuracy"],
                    "accuracy_ci95_lo": b["accuracy_ci95"][0],
                    "accuracy_ci95_hi": b["accuracy_ci95"][1],
                    "precision": b["macro_precision"],
                    "recall": b["macro_recall"],
                    "f1": b["macro_f1"],
                    "n_test": b["n"],
                    "n_train": m["n_train"],
                    "n_classes": m["n_classes"],
                    "chance": m["chance"],
                    "profile": m["profile"],
                }
            )
    return pd.DataFrame(rows)


def _acc_ci(r) -> str:
    return f"{_pct(r.accuracy)} [{_pct(r.accuracy_ci95_lo)}, {_pct(r.accuracy_ci95_hi)}]"


def _footer(df: pd.DataFrame) -> str:
    r = df.iloc[0]
    return (
        f"\nProfile `{r.profile}`; {r.n_classes} classes, chance {_pct(r.chance)}%. "
        "Accuracy in % with a 95% bootstrap CI over test images.\n"
    )


@register_table("table1")
def table1(runs: list[dict]) -> tuple[pd.DataFrame, str]:
    """N-way attribution accuracy per attributor, without / with the text prompt (Xu et al. Table 1:
    12 generators + real)."""
    df = _rows(runs)
    md = [
        "| attributor | backbone / model | w/o text: accuracy % [95% CI] | w/ text: accuracy % [95% CI] |",
        "| --- | --- | --- | --- |",
    ]
    for label, rows in df.groupby("attributor", sort=False):
        cell = {
            t: _acc_ci(rows[rows.text == t].iloc[0]) if (rows.text == t).any() else "not run" for t in (False, True)
        }
        md.append(f"| {label} | `{rows.iloc[0].model}` | {cell[False]} | {cell[True]} |")
    return df, "\n".join(md) + "\n" + _footer(df)


@register_table("table5")
def table5(runs: list[dict]) -> tuple[pd.DataFrame, str]:
    """Frozen vs fine-tuned backbone: accuracy, precision, recall, F1 (Xu et al. Table 5)."""
    df = _rows(runs)
    md = ["| attributor | accuracy % [95% CI] | precision % | recall % | F1 % |", "| --- | --- | --- | --- | --- |"]
    md += [
        f"| {r.attributor} | {_acc_ci(r)} | {_pct(r.precision)} | {_pct(r.recall)} | {_pct(r.f1)} |"
        for r in df.itertuples()
    ]
    return df, "\n".join(md) + "\n" + _footer(df)


@register_table("table6")
def table6(runs: list[dict]) -> tuple[pd.DataFrame, str]:
    """Accuracy, macro precision, recall and F1 of the Table 1 attributors, without / with text (Xu et al. Table 6)."""
    df = _rows(runs)
    md = ["| attributor | text | accuracy % | precision % | recall % | F1 % |", "| --- | --- | --- | --- | --- | --- |"]
    md += [
        f"| {r.attributor} | {'w/' if r.text else 'w/o'} | {_pct(r.accuracy)} | {_pct(r.precision)} | "
        f"{_pct(r.recall)} | {_pct(r.f1)} |"
        for r in df.itertuples()
    ]
    return df, "\n".join(md) + "\n" + _footer(df)


def _cross_domain_grid(df: pd.DataFrame, cell: Callable) -> str:
    trains = list(dict.fromkeys(df.train_on))
    tests = list(dict.fromkeys(df.test_on))
    md = ["| | " + " | ".join(f"train on {t}" for t in trains) + " |", "| --- |" + " --- |" * len(trains)]
    for test in tests:
        cells = [cell(df[(df.train_on == t) & (df.test_on == test)].iloc[0]) for t in trains]
        md.append(f"| test on {test} | " + " | ".join(cells) + " |")
    return "\n".join(md) + "\n"


@register_table("table2")
def table2(runs: list[dict]) -> tuple[pd.DataFrame, str]:
    """Cross-domain accuracy: train on natural / creative / both, test on each (Xu et al. Table 2)."""
    df = _rows(runs)
    cols = [
        "train_on",
        "test_on",
        "accuracy",
        "accuracy_ci95_lo",
        "accuracy_ci95_hi",
        "n_train",
        "n_test",
        "attributor",
        "model",
        "n_classes",
        "chance",
        "profile",
        "experiment",
    ]
    return df[cols], _cross_domain_grid(df, lambda r: _acc_ci(r)) + _footer(df)


@register_table("table7")
def table7(runs: list[dict]) -> tuple[pd.DataFrame, str]:
    """Cross-domain accuracy, macro precision, recall and F1 (Xu et al. Table 7)."""
    df = _rows(runs)
    cols = [
        "train_on",
        "test_on",
        "accuracy",
        "precision",
        "recall",
        "f1",
        "accuracy_ci95_lo",
        "accuracy_ci95_hi",
        "n_test",
        "attributor",
        "model",
        "n_classes",
        "chance",
        "profile",
        "experiment",
    ]
    cell = lambda r: f"A {_pct(r.accuracy)} / P {_pct(r.precision)} / R {_pct(r.recall)} / F1 {_pct(r.f1)}"  # noqa: E731
    return df[cols], _cross_domain_grid(df, cell) + _footer(df)


def _study_rows(runs: list[dict]) -> pd.DataFrame:
    rows = []
    for m in runs:
        if "study" not in m:
            raise ValueError(f"run {m['experiment']} is not a hyperparameter study (no `study:` in its experiment)")
        st, test = m["study"], next(iter(m["test"]))
        b = m["test"][test]
        rows.append(
            {
                "study": st["name"],
                "label": st["label"],
                "varied": st["vary"],
                "architecture": st["architecture"],
                "values": " | ".join(map(str, st["values"])),
                "n_classes": m["n_classes"],
                "chance": m["chance"],
                "accuracy": b["accuracy"],
                "accuracy_ci95_lo": b["accuracy_ci95"][0],
                "accuracy_ci95_hi": b["accuracy_ci95"][1],
                "macro_f1": b["macro_f1"],
                "n_test": b["n"],
                "n_train": m["n_train"],
                "epochs": m["epochs"],
                "attributor": m["attributor_label"],
                "model": m["model"],
                "input_size": m["input_size"],
                "profile": m["profile"],
                "experiment": m["experiment"],
            }
        )
    return pd.DataFrame(rows)


def table3(runs: list[dict]) -> tuple[pd.DataFrame, str]:
    """Detectability of inference hyperparameters: one attributor per study (checkpoint, scheduler,
    sampling steps, seed), each vs its own chance level (Xu et al. Table 3)."""
    df = _study_rows(runs)
    head = [f"{r.label} ({r.architecture})" for r in df.itertuples()]
    md = [
        "| | " + " | ".join(head) + " |",
        "| --- |" + " --- |" * len(df),
        "| random chance % | " + " | ".join(_pct(r.chance) for r in df.itertuples()) + " |",
        "| accuracy % [95% CI] | " + " | ".join(_acc_ci(r) for r in df.itertuples()) + " |",
        "| macro-F1 % | " + " | ".join(_pct(r.macro_f1) for r in df.itertuples()) + " |",
        "| classes / test images | " + " | ".join(f"{r.n_classes} / {r.n_test}" for r in df.itertuples()) + " |",
    ]
    r = df.iloc[0]
    foot = (
        f"\nProfile `{r.profile}`; attributor {r.attributor} (`{r.model}`, {r.input_size} px), "
        f"{', '.join(sorted({f'{e} epochs' for e in df.epochs}))}, {', '.join(sorted({str(n // k) for n, k in zip(df.n_train, df.n_classes)}))} "
        "train images per class. Accuracy with a 95% bootstrap CI over test images.\n"
    )
    return df, "\n".join(md) + "\n" + foot


def _short(label: str) -> str:
    return label.split("__", 1)[-1]  # study classes are <study>__<label>


def study_confusion_grid(runs: list[dict], png: str | Path) -> Path:
    """Fig. 4: the row-normalised test confusion matrix of every study run, side by side."""
    import matplotlib

    matplotlib.use("Agg")
    import numpy as np
    from matplotlib.figure import Figure

    n = len(runs)
    cols = min(3, n)
    rows = -(-n // cols)
    fig = Figure(figsize=(4.6 * cols, 4.4 * rows))
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax in axes.flat[n:]:
        ax.axis("off")
    for ax, m in zip(axes.flat, runs):
        b = m["test"][next(iter(m["test"]))]
        cm = np.asarray(b["confusion_matrix"], dtype=float)
        # Runs sort classes by name (steps 10 < 5); draw them in the study's value order instead.
        wanted = [c for c in m.get("study", {}).get("classes", []) if c in m["classes"]]
        order = [m["classes"].index(c) for c in wanted] if len(wanted) == len(m["classes"]) else list(range(len(cm)))
        cm = cm[np.ix_(order, order)]
        share = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
        labels = [_short(m["classes"][i]) for i in order]
        ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
        ax.set_xticks(range(len(labels)), labels, rotation=60, ha="right", fontsize=7)
        ax.set_yticks(range(len(labels)), labels, fontsize=7)
        st = m.get("study", {})
        ax.set_title(
            f"{st.get('label', m['experiment'])} ({st.get('architecture', '')})\n"
            f"acc {_pct(b['accuracy'])}% vs chance {_pct(m['chance'])}%",
            fontsize=9,
        )
        ax.set_xlabel("predicted", fontsize=8)
        ax.set_ylabel("true", fontsize=8)
    fig.suptitle(f"Hyperparameter detectability: test confusion, row-normalised ({runs[0]['profile']})", fontsize=10)
    fig.tight_layout()
    with atomic_path(png) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    return Path(png)


register_table("table3", figure=study_confusion_grid, png_name="table3_confusion.png")(table3)


def write_table(
    name: str, builder: TableBuilder, runs: list[dict], out: dict[str, Path], figure: Callable | None = None
) -> pd.DataFrame:
    df, md = builder(runs)
    if figure and "png" in out:
        figure(runs, out["png"])
    with atomic_path(out["csv"]) as tmp:
        df.to_csv(tmp, index=False, float_format="%.6g")
    with atomic_path(out["md"]) as tmp:
        doc = " ".join(inspect.cleandoc(builder.__doc__ or "").split())
        tmp.write_text(f"# {name}\n\n{doc}\n\n{md}")
    if "metrics" in out:  # flat accuracies for `dvc metrics show`
        flat = {f"{r.experiment}/{r.test_on}": round(float(r.accuracy), 6) for r in _rows(runs).itertuples()}
        with atomic_path(out["metrics"]) as tmp:
            tmp.write_text(json.dumps(flat, indent=1) + "\n")
    return df
