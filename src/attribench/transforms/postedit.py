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

from attribench.data.delivery import encode as deliver_encode
from attribench.data.delivery import resize_center_crop
from attribench.data.generators.folder_backend import IMAGE_SUFFIXES, check_image
from attribench.data.shards import (
    META_COLUMNS,
    decode,
    load_images,
    make_row,
    write_shard,
)
from attribench.data.views import test_rows
from attribench.transforms import runtime
from attribench.transforms.parts import write_in_parts

log = logging.getLogger(__name__)


def _redeliver(data: bytes, policy: dict) -> bytes:
    return deliver_encode(resize_center_crop(decode(data), policy["size"]), policy["format"], policy.get("quality", 95))


def derived_row(parent: dict, data: bytes, policy: dict, transform: dict, source: str = "edited") -> dict:
    """A derived image row: re-delivered bytes, the parent's provenance, `parent_id` = the original."""
    prov = {k: parent[k] for k in META_COLUMNS if k in parent and k not in ("image_id", "format")}
    prov.update(
        parent_id=parent["image_id"],
        source=source,
        transform=json.dumps(transform, sort_keys=True),
        delivery=json.dumps(policy, sort_keys=True),
        width=policy["size"],
        height=policy["size"],
    )
    return make_row(_redeliver(data, policy), policy["format"], **prov)


def derive_batch_size(cfg: dict, spec: dict, kind: str = "batch_size") -> int:
    """Images per transform call (and per resumable part) for `spec`: `derive.batch_sizes[name]`, else
    `derive.batch_size` (derived views) or `derive.edit_batch_size` (post-editing)."""
    block = cfg.get("derive") or {}
    default = {"batch_size": 64, "edit_batch_size": 32}[kind]
    return int((block.get("batch_sizes") or {}).get(spec["name"], block.get(kind, default)))


def transform_rows(
    cfg: dict,
    rows: pd.DataFrame,
    spec: dict,
    out: str | Path,
    record: dict,
    source: str | None = None,
    batch_size: int | None = None,
) -> Path:
    """Derived shard of `rows` under transform `spec`, re-delivered; `record` goes into `transform`,
    `source` replaces the parent's (None keeps it). Written in resumable parts of `batch_size` images
    (default: from the config's `derive` block): a killed run, started again, redoes only unfinished parts."""
    from attribench.transforms import encode  # every transform plugin (torch): only when images are edited

    runtime.configure(cfg)
    batch_size = batch_size or derive_batch_size(cfg, spec, "edit_batch_size")
    records = rows.to_dict("records")
    batches = [records[i : i + batch_size] for i in range(0, len(records), batch_size)]
    key = {
        "spec": spec,
        "record": record,
        "source": source,
        "delivery": cfg["delivery"],
        "batch": batch_size,
        "rows": [(r["image_id"], r.get("shard"), r.get("prompt"), r.get("source")) for r in records],
        "runtime": runtime.fingerprint_keys(),
    }

    def make_rows(todo):
        images = load_images(rows[rows["image_id"].isin({r["image_id"] for b in todo for r in batches[b]})])

        def rows_of(b: int) -> list[dict]:
            batch = batches[b]
            pixels = np.stack([np.asarray(decode(images[r["image_id"]])) for r in batch])
            blobs, _ = encode(
                spec, pixels, ids=[r["image_id"] for r in batch], prompts=[r.get("prompt") or "" for r in batch]
            )
            return [
                derived_row(r, b, cfg["delivery"], record, source=source or r.get("source") or "generated")
                for r, b in zip(batch, blobs)
            ]

        return rows_of

    write_in_parts(out, key, len(batches), make_rows, [len(b) for b in batches], spec["name"])
    return Path(out)


def edit_with_transform(cfg: dict, tool: str, band: str, index_path: str | Path, out: str | Path) -> Path:
    from attribench.transforms import make_spec  # every transform plugin (torch): only when images are edited

    spec = make_spec({**cfg["post_editing"]["tools"][tool]["transform"], "band": band})
    rows = test_rows(cfg, index_path, cfg["post_editing"]["dataset"])
    return transform_rows(cfg, rows, spec, out, {"tool": tool, **spec}, source="edited")


def export_edit_inputs(cfg: dict, index_path: str | Path, out_dir: str | Path) -> list[Path]:
    """The test images an external tool (Photoshop, Magnific) must edit, as `<image_id>.<ext>` with their
    delivered bytes: edit each and save it under the same stem in the tool's `folder`."""
    rows = test_rows(cfg, index_path, cfg["post_editing"]["dataset"])
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    formats = dict(zip(rows["image_id"], rows["format"]))
    written = []
    for image_id, data in load_images(rows).items():
        written.append(out / f"{image_id}.{'jpg' if formats[image_id] == 'jpeg' else formats[image_id]}")
        written[-1].write_bytes(data)
    return written


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
        out_rows.append(
            derived_row(parents[path.stem], path.read_bytes(), cfg["delivery"], {"tool": tool, "file": path.name})
        )
    if not out_rows:
        raise ValueError(
            f"{tool}: no edited file in {folder} is named after a test image id. Export the images to edit with "
            f"`attribench edit-inputs {index_path} <dir>`, edit them with {tool} and save each as <image_id>.<ext> "
            f"in {folder}"
        )
    return write_shard(out_rows, out)
