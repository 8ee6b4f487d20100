"""Post-editing attribution (Xu et al. sec. 4.3, Table 4): edit the test images, ask the trained attributor.

Edits come from a transform (inpainting with free-form masks per area band) or from a folder of
externally edited files (Photoshop Generative Fill, Magnific) named `<original image_id>.<ext>`.
Edited images get the delivery policy's format again, so the attributor sees the same container
as in training; `parent_id` always points at the original (delivered) test image.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from attribench.datasets import select
from attribench.delivery import encode as deliver_encode
from attribench.delivery import resize_center_crop
from attribench.generators.folder_backend import IMAGE_SUFFIXES, check_image
from attribench.io import atomic_path
from attribench.shards import META_COLUMNS, decode, load_images, make_row, read_metadata, write_shard

log = logging.getLogger(__name__)


def test_rows(cfg: dict, index_path: str | Path, dataset: str) -> pd.DataFrame:
    """The test split of a dataset view: the images that get edited or perturbed."""
    index = pd.read_parquet(index_path)
    ds = select(index, dataset, cfg["datasets"][dataset], cfg["split"]["seed"])
    return ds[ds["split"] == "test"].reset_index(drop=True)


def _redeliver(data: bytes, policy: dict) -> bytes:
    return deliver_encode(resize_center_crop(decode(data), policy["size"]), policy["format"], policy.get("quality", 95))


def derived_row(parent: dict, data: bytes, policy: dict, transform: dict, source: str = "edited") -> dict:
    """A derived image row: re-delivered bytes, the parent's provenance, `parent_id` = the original."""
    prov = {k: parent[k] for k in META_COLUMNS if k in parent and k not in ("image_id", "format")}
    prov.update(parent_id=parent["image_id"], source=source, transform=json.dumps(transform, sort_keys=True),
                delivery=json.dumps(policy, sort_keys=True), width=policy["size"], height=policy["size"])
    return make_row(_redeliver(data, policy), policy["format"], **prov)


def transform_rows(cfg: dict, rows: pd.DataFrame, spec: dict, out: str | Path, record: dict,
                   source: str | None = None, batch_size: int = 32) -> Path:
    """Derived shard of `rows` under transform `spec`, re-delivered; `record` goes into `transform`,
    `source` replaces the parent's (None keeps it)."""
    from attribench.transforms import encode

    images = load_images(rows)
    records = rows.to_dict("records")
    out_rows = []
    for start in range(0, len(records), batch_size):
        batch = records[start : start + batch_size]
        pixels = np.stack([np.asarray(decode(images[r["image_id"]])) for r in batch])
        blobs, _ = encode(spec, pixels, ids=[r["image_id"] for r in batch], prompts=[r.get("prompt") or "" for r in batch])
        out_rows += [derived_row(r, b, cfg["delivery"], record, source=source or r.get("source") or "generated")
                     for r, b in zip(batch, blobs)]
    return write_shard(out_rows, out)


def edit_with_transform(cfg: dict, tool: str, band: str, index_path: str | Path, out: str | Path) -> Path:
    from attribench.transforms import make_spec

    spec = make_spec({**cfg["post_editing"]["tools"][tool]["transform"], "band": band})
    rows = test_rows(cfg, index_path, cfg["post_editing"]["dataset"])
    return transform_rows(cfg, rows, spec, out, {"tool": tool, **spec}, source="edited")


def import_external_edits(cfg: dict, tool: str, index_path: str | Path, out: str | Path) -> Path:
    """Files named after the original image id; unknown ids and unreadable files are reported and skipped."""
    folder = Path(cfg["post_editing"]["tools"][tool]["folder"])
    if not folder.is_dir():
        raise FileNotFoundError(f"post_editing.tools.{tool}.folder not found: {folder}")
    parents = {r["image_id"]: r for r in test_rows(cfg, index_path, cfg["post_editing"]["dataset"]).to_dict("records")}
    out_rows = []
    for path in sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES):
        why = check_image(path)
        if why or path.stem not in parents:
            log.warning("%s: skipped %s: %s", tool, path, why or "no test image has this id")
            continue
        out_rows.append(derived_row(parents[path.stem], path.read_bytes(), cfg["delivery"], {"tool": tool, "file": path.name}))
    if not out_rows:
        raise ValueError(f"{tool}: no edited file in {folder} is named after a test image id")
    return write_shard(out_rows, out)


def edit_targets(cfg: dict) -> dict[tuple[str, str], str]:
    """(tool, band) -> edited shard path, for every tool in params (band 'all' for imported edits)."""
    base = Path("data") / cfg["profile"] / "edits"
    out = {}
    for tool, t in cfg.get("post_editing", {}).get("tools", {}).items():
        for band in t.get("bands", ["all"]):
            out[(tool, band)] = str(base / tool / f"{band}.parquet")
    return out


def build_table4(cfg: dict, index_path: str | Path, edited: dict[tuple[str, str], str], run_dir: str | Path,
                 csv_out: str | Path, md_out: str | Path, confusion_dir: str | Path) -> pd.DataFrame:
    from attribench.experiments import experiment_spec, predict_rows
    from attribench.metrics import bootstrap_ci, classification_metrics, plot_confusion
    from attribench.transforms.masks import BANDS

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
        plot_confusion(post["confusion_matrix"], classes, Path(confusion_dir) / f"{tool}_{band}.png", f"{tool}, mask {band}")
        rows.append({"tool": tool, "mask_band": band, "mask_area": "-".join(f"{100 * x:.0f}%" for x in BANDS.get(band, ())) or "n/a",
                     "n_images": len(ed), "original_accuracy": before["accuracy"], "post_edit_accuracy": post["accuracy"],
                     "post_edit_ci95_lo": lo, "post_edit_ci95_hi": hi, "post_edit_f1": post["macro_f1"],
                     "attributor": meta["attributor_label"], "experiment": meta["experiment"],
                     "n_classes": len(classes), "chance": 1 / len(classes), "profile": cfg["profile"]})
    df = pd.DataFrame(rows)
    with atomic_path(csv_out) as tmp:
        df.to_csv(tmp, index=False, float_format="%.6g")
    md = ["| edit tool | mask area | images | original % | post-edit % [95% CI] |", "| --- | --- | --- | --- | --- |"]
    md += [f"| {r.tool} | {r.mask_area} | {r.n_images} | {100 * r.original_accuracy:.2f} | {100 * r.post_edit_accuracy:.2f} "
           f"[{100 * r.post_edit_ci95_lo:.2f}, {100 * r.post_edit_ci95_hi:.2f}] |" for r in df.itertuples()]
    with atomic_path(md_out) as tmp:
        tmp.write_text("# table4\n\nAttribution of post-edited test images by the best Table 1 attributor "
                       f"({meta['attributor_label']}, Xu et al. Table 4).\n\n" + "\n".join(md) +
                       f"\n\nProfile `{cfg['profile']}`; {len(classes)} classes, chance {100 / len(classes):.2f}%.\n")
    return df

