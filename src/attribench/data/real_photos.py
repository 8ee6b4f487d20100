"""The offline "real photo" class: genuine photographs that ship inside installed wheels.

Which files count as photos (and their captions) is curated by hand in
data/sample_photo_captions.csv; this module only resolves and exports them.
"""
from __future__ import annotations

import csv
import importlib.util
import os
import shutil
import uuid
from pathlib import Path

from PIL import Image

CAPTIONS_CSV = Path(__file__).parent / "sample_photo_captions.csv"

# source -> (importable package, folder inside it that holds the photos)
_SOURCES = {
    "skimage": ("skimage", ("data",)),
    "sklearn": ("sklearn", ("datasets", "images")),
    "interior_photos": ("interior_photos", ("images",)),
}


def _package_dir(package: str) -> Path:
    # find_spec locates the package without importing it (sklearn/skimage imports are slow).
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"package {package!r} is not installed")
    return Path(next(iter(spec.submodule_search_locations)))


def sample_photo_paths() -> list[tuple[str, Path, str]]:
    """(source, absolute path, caption) for every row of the captions CSV."""
    out = []
    with open(CAPTIONS_CSV, newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            package, sub = _SOURCES[row["source"]]
            path = _package_dir(package).joinpath(*sub, row["file"]).resolve()
            if not path.is_file():
                raise FileNotFoundError(f"{package}: photo {row['file']!r} not found at {path}")
            out.append((row["source"], path, row["caption"]))
    return out


def export_sample_photos(out_dir: str | Path) -> Path:
    """Write every photo to out_dir as <source>__<stem>.jpg plus captions.csv (file,caption)."""
    out_dir = Path(out_dir).absolute()
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    # Build beside out_dir so the final rename stays on one filesystem; mkdir honours the umask.
    tmp = out_dir.with_name(f".{out_dir.name}.{uuid.uuid4().hex[:8]}.tmp")
    tmp.mkdir()
    try:
        rows = []
        for source, path, caption in sample_photo_paths():
            name = f"{source}__{path.stem}.jpg"
            with Image.open(path) as im:
                if im.format == "JPEG":
                    # Re-encoding would add a second compression pass that is ours, not the camera's.
                    shutil.copyfile(path, tmp / name)
                else:
                    im.convert("RGB").save(tmp / name, "JPEG", quality=95)
            rows.append((name, caption))
        with open(tmp / "captions.csv", "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f, lineterminator="\n")
            w.writerow(["file", "caption"])
            w.writerows(rows)
        # A non-empty directory can't be renamed over, so move the old one aside first.
        old = None
        if out_dir.exists():
            old = out_dir.with_name(f".{out_dir.name}.{uuid.uuid4().hex[:8]}.old")
            os.rename(out_dir, old)
        try:
            os.rename(tmp, out_dir)
        except OSError:
            if old is not None:
                os.rename(old, out_dir)  # put the previous export back rather than leave nothing
            raise
        if old is not None:
            shutil.rmtree(old)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir
