"""Table 4 (Xu et al.): the best Table 1 attributor on post-edited test images, per mask band and tool."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from attribench.core.io import atomic_path
from attribench.data.shards import read_metadata
from attribench.core import paths
from attribench.experiments.specs import experiment_spec
from attribench.reports.common import index_input
from attribench.reports.registry import ReportContext, register_report
from attribench.training.metrics import bootstrap_ci, classification_metrics, plot_confusion
from attribench.core.paths import edit_targets
from attribench.data.views import test_rows


def build_table4(
    cfg: dict,
    index_path: str | Path,
    edited: dict[tuple[str, str], str],
    run_dir: str | Path,
    csv_out: str | Path,
    md_out: str | Path,
    confusion_dir: str | Path,
) -> pd.DataFrame:
    from attribench.experiments.runs import predict_rows  # torch: only when the report is built, not at DAG time
    from attribench.transforms.masks import BANDS  # the transforms package loads torch: not at DAG time

    run_dir = Path(run_dir)
    meta = json.loads((run_dir / "metrics.json").read_text())
    classes, spec = meta["classes"], experiment_spec(cfg, meta["experiment"])
    originals = test_rows(cfg, index_path, cfg["post_editing"]["dataset"])
    originals = originals[originals["generator"].isin(classes)]
    orig_pred = dict(zip(originals["image_id"], predict_rows(cfg, spec, run_dir, originals).argmax(1)))
    rows = []
    for (tool, band), path in edited.items():
        ed = read_metadata([path])
        ed = ed[ed["generator"].isin(classes)]
        y_true = [classes.index(g) for g in ed["generator"]]
        y_pred = predict_rows(cfg, spec, run_dir, ed).argmax(1)
        y_orig = [orig_pred[p] for p in ed["parent_id"]]
        post, before = classification_metrics(y_true, y_pred, classes), classification_metrics(y_true, y_orig, classes)
        lo, hi = bootstrap_ci(y_true, y_pred, seed=cfg["split"]["seed"])
        plot_confusion(
            post["confusion_matrix"], classes, Path(confusion_dir) / f"{tool}_{band}.png", f"{tool}, mask {band}"
        )
        rows.append(
            {
                "tool": tool,
                "mask_band": band,
                "mask_area": "-".join(f"{100 * x:.0f}%" for x in BANDS.get(band, ())) or "n/a",
                "n_images": len(ed),
                "original_accuracy": before["accuracy"],
                "post_edit_accuracy": post["accuracy"],
                "post_edit_ci95_lo": lo,
                "post_edit_ci95_hi": hi,
                "post_edit_f1": post["macro_f1"],
                "attributor": meta["attributor_label"],
                "experiment": meta["experiment"],
                "n_classes": len(classes),
                "chance": 1 / len(classes),
                "profile": cfg["profile"],
            }
        )
    df = pd.DataFrame(rows)
    with atomic_path(csv_out) as tmp:
        df.to_csv(tmp, index=False, float_format="%.6g")
    md = ["| edit tool | mask area | images | original % | post-edit % [95% CI] |", "| --- | --- | --- | --- | --- |"]
    md += [
        f"| {r.tool} | {r.mask_area} | {r.n_images} | {100 * r.original_accuracy:.2f} | {100 * r.post_edit_accuracy:.2f} "
        f"[{100 * r.post_edit_ci95_lo:.2f}, {100 * r.post_edit_ci95_hi:.2f}] |"
        for r in df.itertuples()
    ]
    with atomic_path(md_out) as tmp:
        tmp.write_text(
            "# table4\n\nAttribution of post-edited test images by the best Table 1 attributor "
            f"({meta['attributor_label']}, Xu et al. Table 4).\n\n"
            + "\n".join(md)
            + f"\n\nProfile `{cfg['profile']}`; {len(classes)} classes, chance {100 / len(classes):.2f}%.\n"
        )
    return df


def _edits(cfg: dict) -> dict[str, list[str]]:
    return index_input(cfg, edits=sorted(edit_targets(cfg).values()))


@register_report(
    "table4",
    outputs=("csv", "md", "dir"),
    dir_suffix="confusion",
    inputs=_edits,
    gpu=True,
    runs=lambda cfg: [cfg["post_editing"]["experiment"]],
    settings=lambda cfg: [cfg.get("post_editing")],
)
def table4_report(ctx: ReportContext) -> pd.DataFrame:
    """Post-editing: the best Table 1 attributor on inpainted test images per mask band and on external edits."""
    return build_table4(
        ctx.cfg,
        ctx.index,
        edit_targets(ctx.cfg),
        paths.run_dir(ctx.runs[0]),
        ctx.out["csv"],
        ctx.out["md"],
        ctx.out["dir"],
    )
