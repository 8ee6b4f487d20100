"""`attribench predict`: a trained run's answer for anyone's images.

Each readable image is decoded by the one image decoder (`data.decode`, via `decode_for_predict`), put in the run's delivery container (size,
format, quality from predict.json) and scored: top-k classes with temperature-scaled probabilities,
and the unknown-generator decision. An image already in that container (format and size, upright) is
used as it is: re-encoding a JPEG would add a compression the training images never had, and a run's
own test images then give back exactly its recorded predictions. Unreadable files are skipped and
listed with the reason.
"""

from __future__ import annotations

import glob
import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image
from safetensors.torch import load_file

from attribench.core import paths
from attribench.data.decode import Undecodable, open_image
from attribench.data.generators.base import resolve_device
from attribench.data.delivery import PIL_FORMATS, encode, resize_center_crop
from attribench.data.imagedata import normalise, resize_crop
from attribench.experiments.inference import OPENSET_FILE, PREDICT_JSON
from attribench.training import openset
from attribench.training.loop import load_model, torch_settings


class BadImage(ValueError):
    """An input that cannot be predicted; `reason` is one of: zero-byte, not an image, truncated,
    decompression bomb, unreadable."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


def _reason(message: str) -> str:
    """The skip reason of a decode failure (data.decode says why in words)."""
    low = message.lower()
    if "max_pixels" in low or "pixel limit" in low:
        return "decompression bomb"
    if "truncated" in low or "eoferror" in low or "end of file" in low:
        return "truncated"
    if "unidentifiedimageerror" in low or "cannot identify" in low:
        return "not an image"
    return "unreadable"


def decode_for_predict(data: bytes, policy: dict | None = None) -> tuple[Image.Image, bool]:
    """Bytes -> (upright 8-bit RGB image, whether it needed any conversion), through the one image
    decoder (data.decode: EXIF orientation, 16-bit, palette/alpha, CMYK, first frame, size limit)."""
    if not data:
        raise BadImage("zero-byte")
    try:
        img, notes = open_image(data, policy)
    except Undecodable as err:
        raise BadImage(_reason(str(err)), str(err)) from None
    return img, bool(notes) or img.info["source_mode"] != "RGB"


def deliver_for_run(data: bytes, policy: dict | None) -> bytes:
    """Encoded bytes the run's model reads: the input itself when it already is in the delivery
    container (or, without a policy, a plain RGB image), else the decoded image re-delivered
    (without a policy: lossless PNG)."""
    img, converted = decode_for_predict(data)
    fmt = img.info.get("source_format")
    if policy is None:
        if not converted:
            return data
        return encode(img, "png", 0)
    size = int(policy["size"])
    if not converted and fmt == PIL_FORMATS[policy["format"]] and img.size == (size, size):
        return data
    return encode(resize_center_crop(img, size), policy["format"], policy.get("quality", 95))


@dataclass
class Predictor:
    """A run directory loaded for prediction: model, predict.json, open-set statistics."""

    run_dir: Path
    device: str = "cpu"

    def __post_init__(self):
        self.run_dir = Path(self.run_dir)
        card_path = self.run_dir / PREDICT_JSON
        if not card_path.exists():
            raise FileNotFoundError(
                f"{card_path} is missing: the run predates calibration; retrain it "
                "(`attribench train`) to make it self-contained"
            )
        self.card = json.loads(card_path.read_text())
        if self.card.get("needs_text"):
            raise ValueError(f"{self.run_dir} was trained with prompt embeddings: `predict` takes images only")
        self.model, self.meta = load_model(self.run_dir, self.device)
        stats = self.run_dir / OPENSET_FILE
        self.stats = load_file(stats) if stats.exists() else None
        self.classes = self.card["classes"]

    def logits(self, blobs: Sequence[bytes]) -> tuple[np.ndarray, np.ndarray | None]:
        """Logits + penultimate features for already-delivered encoded images."""
        prepare = normalise
        with torch_settings(self.meta.get("num_threads")):
            if self.meta.get("input_kind") == "features":  # frozen backbone: vectors made as the caches make them
                from attribench.models.features import compute_vectors  # backbones load only for feature runs

                x = torch.as_tensor(compute_vectors(self.meta["features"], list(blobs), None, self.device)).float()
                x, prepare = x.reshape(len(blobs), self.meta["input_dim"]), (lambda v: v.float())
            else:
                size = self.meta["input_size"]
                x = (
                    torch.stack([resize_crop(b, size) for b in blobs])
                    if blobs
                    else torch.empty((0, 3, size, size), dtype=torch.uint8)
                )
            return openset.logits_and_features(
                self.model, x, self.meta["eval_batch_size"], len(self.classes), prepare, self.device
            )

    def answer(self, blobs: Sequence[bytes], top_k: int = 3, calibrated: bool = True) -> list[dict]:
        z, f = self.logits(blobs)
        probs = openset.probabilities(z, self.card["temperature"] if calibrated else 1.0)
        unknown = self.card["unknown"]
        name = unknown["decision_score"]
        score = openset.unknown_scores(z, f, self.stats)[name]
        out = []
        for p, s in zip(probs, score):
            order = np.argsort(-p, kind="stable")[:top_k]
            out.append(
                {
                    "top_k": [{"class": self.classes[i], "p": float(p[i])} for i in order],
                    "unknown": bool(s > unknown["thresholds"][name]),
                    "unknown_score": float(s),
                    "score": name,
                }
            )
        return out


def expand_inputs(items: Iterable[str]) -> list[Path]:
    """Files, folders (recursively, hidden files left out) and glob patterns, sorted, de-duplicated."""
    found: list[Path] = []
    for item in items:
        matches = [Path(m) for m in sorted(glob.glob(item, recursive=True))] if glob.has_magic(item) else [Path(item)]
        if not matches:
            raise FileNotFoundError(f"{item}: no such file, folder or glob match")
        for m in matches:
            if m.is_dir():
                found += sorted(
                    p
                    for p in m.rglob("*")
                    if p.is_file() and not any(s.startswith(".") for s in p.relative_to(m).parts)
                )
            elif m.exists():
                found.append(m)
            else:
                raise FileNotFoundError(f"{m}: no such file or folder")
    return list(dict.fromkeys(found))


def resolve_run(run: str) -> Path:
    """A run directory, or an experiment name under results/runs/."""
    p = Path(run)
    if p.is_dir():
        return p
    if paths.run_dir(run).is_dir():
        return paths.run_dir(run)
    raise FileNotFoundError(f"--run {run}: neither a run directory nor an experiment in {paths.RUNS}")


def predict_paths(
    run: str | Path,
    inputs: Iterable[str],
    top_k: int = 3,
    device: str = "cpu",
    batch: int = 64,
    calibrated: bool = True,
) -> tuple[list[dict], list[dict]]:
    """(one record per predicted image, one {path, reason} per skipped file)."""
    from tqdm.auto import tqdm  # only the CLI path shows progress

    run_dir = resolve_run(str(run))
    pred = Predictor(run_dir, resolve_device(device))
    files = expand_inputs(inputs)
    records, skipped, pending = [], [], []

    def flush():
        for (path, digest, _), ans in zip(pending, pred.answer([b for _, _, b in pending], top_k, calibrated)):
            records.append({"path": str(path), "sha256": digest, "run": run_dir.name, **ans})
        pending.clear()

    for path in tqdm(files, desc="predict", unit="img"):
        data = path.read_bytes()
        try:
            delivered = deliver_for_run(data, pred.card.get("delivery"))
        except BadImage as err:
            skipped.append({"path": str(path), "reason": err.reason})
            continue
        pending.append((path, hashlib.sha256(data).hexdigest(), delivered))
        if len(pending) >= batch:
            flush()
    flush()
    return records, skipped


def write_predictions(records: list[dict], out: str | Path) -> None:
    """JSON lines (one object per image) or CSV (top-k flattened to class_1, p_1, ...)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix == ".csv":
        flat = []
        for r in records:
            row = {k: v for k, v in r.items() if k != "top_k"}
            for i, t in enumerate(r["top_k"], 1):
                row[f"class_{i}"], row[f"p_{i}"] = t["class"], t["p"]
            flat.append(row)
        pd.DataFrame(flat).to_csv(out, index=False)
    else:
        out.write_text("".join(json.dumps(r) + "\n" for r in records))
