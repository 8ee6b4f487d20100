"""Import a directory of images: closed tools (Midjourney, Ps Generative Fill, Magnific) and real photos.

Captions come from an optional CSV (`file,caption`) or a COCO captions JSON. A file that is not a
readable image (by the one decoder, `data/decode.py`: over `decode.max_pixels`, transparency under
`alpha: reject`, not an image) is reported by name; with `on_bad_file: skip` (default) the import goes
on without it and lists it in `<shard>.skipped.csv`, with `stop` it fails listing every bad file and
the previous shard stays (the render rule's output is `update()`: Snakemake restores it on failure).
"""

from __future__ import annotations

import csv
import json
import logging
import math
import random
from pathlib import Path
from typing import Any

from PIL import Image

from attribench.data.decode import Undecodable, open_image, policy_of
from attribench.data.generators.base import (
    Backend,
    RenderItem,
    image_seed,
    register_backend,
)
from attribench.data.prompts import prompt_id
from attribench.data.shards import content_id, encode_png

log = logging.getLogger(__name__)
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff"}
SIDE_FILES = {"captions.csv", "captions.json", "readme.md", "readme.txt", ".gitkeep"}


class BadImportFiles(ValueError):
    pass


def read_captions(path: str | Path | None) -> dict[str, str]:
    if not path:
        return {}
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"captions file not found: {path}")
    if path.suffix == ".json":  # COCO captions: first caption per image
        data = json.loads(path.read_text())
        names = {im["id"]: im["file_name"] for im in data["images"]}
        out: dict[str, str] = {}
        for a in sorted(data["annotations"], key=lambda a: a["id"]):
            out.setdefault(names[a["image_id"]], a["caption"].strip())
        return out
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        missing = {"file", "caption"} - set(reader.fieldnames or [])
        if missing:
            raise ValueError(f"{path}: captions CSV needs columns file,caption (missing {sorted(missing)})")
        return {r["file"]: r["caption"].strip() for r in reader}


def caption_sources(gen: str, spec: dict, cfg: dict) -> dict[str, str] | str | None:
    """The prompt source of each captioned file. `prompt_sources: [s]`: every caption is from s (e.g.
    Midjourney renders of the creative prompts); several: the captions CSV names each file's source in
    a `prompt_source` column. Without `prompt_sources`: "caption" (real photos, not in the prompt views)."""
    declared = spec.get("prompt_sources")
    if not declared:
        return "caption"
    unknown = set(declared) - set(cfg["prompts"]["sources"])
    if unknown:
        raise KeyError(f"generators.{gen}.prompt_sources names unknown prompt source(s) {sorted(unknown)}")
    if len(declared) == 1:
        return declared[0]
    path = Path(spec.get("captions") or "")
    if path.suffix != ".csv":
        raise ValueError(f"generators.{gen}: several prompt_sources need a captions CSV with a prompt_source column")
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    if rows and "prompt_source" not in rows[0]:
        raise ValueError(f"{path}: generators.{gen} declares prompt_sources {declared}: the CSV needs a prompt_source column")
    out = {r["file"]: r["prompt_source"].strip() for r in rows}
    bad = sorted({s for s in out.values() if s not in declared})
    if bad:
        raise ValueError(f"{path}: prompt_source value(s) {bad} are not in generators.{gen}.prompt_sources {declared}")
    return out


def list_files(folder: Path) -> list[Path]:
    if not folder.is_dir():
        raise FileNotFoundError(f"import folder not found: {folder}")
    return sorted(p for p in folder.iterdir() if p.is_file() and p.name.lower() not in SIDE_FILES and not p.name.startswith("."))


def check_image(path: Path, policy: dict | None = None) -> str | None:
    """None if `path` decodes as an image under the decode policy, else the reason it does not."""
    if path.suffix.lower() not in IMAGE_SUFFIXES:
        return f"not an image file type ({path.suffix or 'no suffix'})"
    try:
        open_image(path, policy)
    except Undecodable as err:
        return str(err)
    return None


CROP_MAX_SIDE = 512  # crops are resized down to this: keeps lossless PNGs small and fast


def _crop(img: Image.Image, rng: random.Random) -> Image.Image:
    """A random square crop covering 40-90% of the short side: more samples of one photo."""
    w, h = img.size
    side = int(min(w, h) * rng.uniform(0.4, 0.9))
    x, y = rng.randint(0, w - side), rng.randint(0, h - side)
    crop = img.crop((x, y, x + side, y + side))
    return crop.resize((CROP_MAX_SIDE,) * 2, Image.Resampling.BICUBIC) if side > CROP_MAX_SIDE else crop


@register_backend
class FolderBackend(Backend):
    name = "folder"
    prompt_driven = False

    def chunks(self, gen: str, spec: dict, cfg: dict) -> list[str]:
        return [f"folder-{i:04d}" for i in range(spec.get("shards", 1))]

    def items(self, gen: str, spec: dict, chunk: str, cfg: dict, prompts_path: str | None) -> list[RenderItem]:
        folder = Path(spec["path"])
        files = list_files(folder)
        self.policy = policy = policy_of(cfg)  # render() decodes under the same policy
        bad = {f: why for f in files if (why := check_image(f, policy))}
        for f, why in bad.items():
            log.warning("%s: skipped %s: %s", gen, f, why)
        self.last_skipped = [{"file": str(f), "reason": why} for f, why in bad.items()]
        if bad and spec.get("on_bad_file", "skip") == "stop":
            raise BadImportFiles(f"{gen}: {len(bad)} bad file(s) in {folder}:\n" + "\n".join(f"  {f}: {w}" for f, w in bad.items()))
        good = [f for f in files if f not in bad]
        if not good:
            raise BadImportFiles(f"{gen}: no readable images in {folder}")
        n_shards, index = spec.get("shards", 1), int(chunk.rsplit("-", 1)[1])
        mine = good[index::n_shards]
        captions = read_captions(spec.get("captions"))
        sources = caption_sources(gen, spec, cfg)
        per_file = max(1, math.ceil(spec.get("expand_to", len(good)) / len(good)))
        target = round(spec.get("expand_to", len(good)) * len(mine) / len(good)) if "expand_to" in spec else len(mine)
        items = []
        for k in range(per_file):  # variant-major, so a cut at `target` spreads over all photos
            for f in mine:
                cap = captions.get(f.name)
                # Without a caption the file's content hash is its group: its crops stay in one split.
                pid = prompt_id(cap) if cap else "file:" + content_id(f.read_bytes())[:16]
                items.append(RenderItem(key=f"{f.name}:{k}", prompt=cap, prompt_id=pid,
                                        prompt_source=(sources if isinstance(sources, str) else sources.get(f.name)) if cap else None, image_index=k,
                                        seed=image_seed(cfg["seed"], gen, pid, k), origin=str(f)))
        return items[:target]

    def load(self, spec: dict, device: str) -> Any:
        return None

    def render(self, state: Any, gen: str, spec: dict, items: list[RenderItem]) -> list[dict]:
        rows = []
        for it in items:
            path = Path(it.origin)
            if it.image_index == 0:  # the file itself, bytes untouched (JPEG stays JPEG); delivery decodes it
                data = path.read_bytes()
                with Image.open(path) as im:
                    fmt = (im.format or path.suffix.lstrip(".")).lower()
                (w, h) = open_image(data, self.policy)[0].size  # as delivered: after EXIF orientation
                transform = parent = None
            else:
                crop = _crop(open_image(path, self.policy)[0], random.Random(it.seed))
                data, fmt, (w, h) = encode_png(crop), "png", crop.size
                transform = json.dumps({"op": "random_crop", "seed": it.seed})
                parent = content_id(path.read_bytes())
            rows.append(dict(
                image=data, format=fmt, generator=gen, family=spec["family"], backend="folder",
                source=spec.get("source", "imported"), prompt=it.prompt, prompt_id=it.prompt_id,
                prompt_source=it.prompt_source, image_index=it.image_index, seed=it.seed if it.image_index else None,
                width=w, height=h, origin=path.name, transform=transform, parent_id=parent,
            ))
        return rows
