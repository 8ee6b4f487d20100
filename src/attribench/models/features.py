"""Compute-once feature caches: frozen-backbone embeddings, Gram style vectors and prompt embeddings,
the inputs of the probe/MLP attributors (Xu et al. 2024, sec. 4.1, sec. 5 "Image Style", app. B).

A cache is a Parquet file: a key column (`image_id` or `prompt_id`) and `features`, a fixed-size
list<float32> column; the schema metadata records how it was made (`attribench` key, JSON). Frozen
features are computed once per image and reused by every head, epoch and experiment.

A *feature spec* names what an attributor's input vector is, in a fixed order of parts:
    {"image": {"backbone": "efficientnet_lite0", "spec": {}, "input_size": 64},
     "gram":  {"backbone": "efficientnet_lite0", "spec": {}, "input_size": 64, "layers": [0, 1, 2, 3],
               "max_channels": None, "rectify": False},
     "text":  {"encoder": "minilm", "spec": {}}}
(any non-empty subset). `feature_inputs` turns it into {image_id: vector} for `train_run(inputs=...)`,
`compute_vectors` recomputes the same vector for new images (`attribench predict`).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from tqdm.auto import tqdm

from attribench.models.backbones import Backbone, load_backbone
from attribench.data.imagedata import resize_crop
from attribench.core.io import atomic_path
from attribench.data.shards import load_images
from attribench.models.text_encoders import load_text_encoder

EMPTY_PROMPT = ""  # prompt_id under which text caches store the embedding of a missing prompt
DEFAULT_GRAM_LAYERS = (0, 1, 2, 3)  # EfficientNet-Lite0 stages 1-4: 16, 24, 40, 80 channels -> 4496 values


# ------------------------------------------------------------------------------ Parquet ----


def write_vectors(keys: Sequence[str], vectors: np.ndarray, out_path: str | Path, key: str = "image_id",
                  meta: dict | None = None) -> Path:
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    flat = pa.array(vectors.reshape(-1), type=pa.float32())
    table = pa.table({key: pa.array(list(keys), pa.string()),
                      "features": pa.FixedSizeListArray.from_arrays(flat, vectors.shape[1])})
    table = table.replace_schema_metadata({"attribench": json.dumps(meta or {}, sort_keys=True, default=str)})
    with atomic_path(out_path) as tmp:
        pq.write_table(table, tmp, compression="zstd")
    return Path(out_path)


def read_vectors(path: str | Path) -> tuple[list[str], np.ndarray, dict]:
    """(keys, (n, D) float32 array, metadata) of a cache file."""
    table = pq.read_table(path)
    col = table.column("features").combine_chunks()
    dim = col.type.list_size
    vectors = col.values.to_numpy(zero_copy_only=False).reshape(-1, dim).astype(np.float32, copy=False)
    meta = json.loads((table.schema.metadata or {}).get(b"attribench", b"{}"))
    return table.column(0).to_pylist(), vectors, meta


# ------------------------------------------------------------------------------- Gram ----


def gram_matrix(fmap: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B, C, C) cosine similarity between channels (paper sec. 5): each channel's
    flattened activation scaled to unit L2 norm, G = F F^T. An all-zero channel gives a zero row."""
    f = torch.nn.functional.normalize(fmap.flatten(2).float(), dim=2, eps=1e-8)
    return f @ f.transpose(1, 2)


def _pool_channels(fmap: torch.Tensor, max_channels: int | None) -> torch.Tensor:
    # Average neighbouring channels into max_channels groups: Gram size grows as C^2, pooled ~max^2/2.
    if not max_channels or fmap.shape[1] <= max_channels:
        return fmap
    b, c, h, w = fmap.shape
    pooled = torch.nn.functional.adaptive_avg_pool1d(fmap.flatten(2).transpose(1, 2).reshape(b * h * w, 1, c), max_channels)
    return pooled.reshape(b, h * w, max_channels).transpose(1, 2).reshape(b, max_channels, h, w)


def gram_vector(fmaps: Sequence[torch.Tensor], max_channels: int | None = None) -> torch.Tensor:
    """Upper triangle (incl. diagonal) of each map's Gram matrix, concatenated: (B, sum C'(C'+1)/2)."""
    parts = []
    for fmap in fmaps:
        g = gram_matrix(_pool_channels(fmap, max_channels))
        rows, cols = torch.triu_indices(g.shape[1], g.shape[1])
        parts.append(g[:, rows, cols])
    return torch.cat(parts, dim=1)


def gram_size(channels: Sequence[int], max_channels: int | None = None) -> int:
    return sum(c * (c + 1) // 2 for c in (min(c, max_channels) if max_channels else c for c in channels))


# ------------------------------------------------------------------- image -> vectors ----


def _batches(images: Sequence[bytes], bb: Backbone, size: int, batch_size: int, desc: str):
    mean = torch.tensor(bb.mean).view(1, 3, 1, 1)
    std = torch.tensor(bb.std).view(1, 3, 1, 1)
    for s in tqdm(range(0, len(images), batch_size), desc=desc, unit="batch", leave=False, dynamic_ncols=True):
        pixels = torch.stack([resize_crop(b, size) for b in images[s : s + batch_size]])
        yield (pixels.float() / 255.0 - mean) / std  # the backbone's own statistics (CLIP's differ)


def _with_size(cfg: dict) -> dict:
    """The backbone spec plus the input size the features are taken at (fixed-size ViTs are built for it)."""
    spec = dict(cfg.get("spec") or {})
    return {**spec, "input_size": cfg["input_size"]} if cfg.get("input_size") else spec


@torch.inference_mode()
def _embed(images: Sequence[bytes], bb: Backbone, cfg: dict, device: str) -> np.ndarray:
    size, bs = int(cfg.get("input_size") or bb.input_size), int(cfg.get("batch_size", 32))
    out = [bb.module(x.to(device)).float().cpu() for x in _batches(images, bb, size, bs, "embed")]
    return torch.cat(out).numpy() if out else np.zeros((0, bb.dim), np.float32)


@torch.inference_mode()
def _gram(images: Sequence[bytes], bb: Backbone, cfg: dict, device: str) -> np.ndarray:
    size, bs = int(cfg.get("input_size") or bb.input_size), int(cfg.get("batch_size", 32))
    layers, max_ch = list(cfg.get("layers", DEFAULT_GRAM_LAYERS)), cfg.get("max_channels")
    # rectify: VGG's style layers are post-ReLU (Gram entries in [0, 1]); EfficientNet stage outputs
    # are linear bottlenecks, signed, so without it some entries are negative.
    act = torch.relu if cfg.get("rectify") else (lambda t: t)
    out = []
    for x in _batches(images, bb, size, bs, "gram"):
        maps = bb.module.feature_maps(x.to(device))
        out.append(gram_vector([act(maps[i]) for i in layers], max_ch).cpu())
    return torch.cat(out).numpy() if out else np.zeros((0, 0), np.float32)


# Image-derived parts of a feature spec: name -> fn(images, backbone, part cfg, device) -> (n, D).
IMAGE_PARTS: dict[str, Callable[[Sequence[bytes], Backbone, dict, str], np.ndarray]] = {"image": _embed, "gram": _gram}
PART_ORDER = ("image", "gram", "text")


def _check_spec(feature_spec: dict) -> list[str]:
    unknown = set(feature_spec) - set(PART_ORDER)
    if unknown or not feature_spec:
        raise ValueError(f"feature spec parts must be a non-empty subset of {PART_ORDER}, got {sorted(feature_spec)}")
    return [p for p in PART_ORDER if p in feature_spec]


def _image_part(name: str, cfg: dict, images: Sequence[bytes], bb: Backbone | None = None,
                device: str = "cpu") -> np.ndarray:
    bb = bb or load_backbone(cfg["backbone"], _with_size(cfg))
    bb.module.to(device)  # device is not part of the spec: it must not change the cache key
    return IMAGE_PARTS[name](images, bb, cfg, device)


def fuse(image_vecs: np.ndarray, text_vecs: np.ndarray) -> np.ndarray:
    """Image embedding ++ text embedding, row by row (app. B: the head sees both)."""
    image_vecs, text_vecs = np.asarray(image_vecs, np.float32), np.asarray(text_vecs, np.float32)
    if len(image_vecs) != len(text_vecs):
        raise ValueError(f"{len(image_vecs)} image vectors but {len(text_vecs)} text vectors")
    return np.concatenate([image_vecs, text_vecs], axis=1)


def compute_vectors(feature_spec: dict, images: Sequence[bytes], prompts: Sequence[str | None] | None = None,
                    device: str = "cpu") -> np.ndarray:
    """The attributor input for new images, made exactly as the caches make it (no cache)."""
    parts = []
    for name in _check_spec(feature_spec):
        cfg = feature_spec[name]
        if name == "text":
            enc = load_text_encoder(cfg["encoder"], cfg.get("spec"))
            parts.append(enc.encode(list(prompts) if prompts is not None else [None] * len(images)))
        else:
            parts.append(_image_part(name, cfg, images, device=device))
    out = parts[0]
    for p in parts[1:]:
        out = fuse(out, p)
    return out


# ---------------------------------------------------------------------- cache writers ----


def _image_cache(index: pd.DataFrame, part: str, cfg: dict, out_path: str | Path, device: str = "cpu") -> Path:
    """Vectors for every image of `index` (needs image_id, shard), one shard in memory at a time."""
    bb = load_backbone(cfg["backbone"], _with_size(cfg))
    index = index.drop_duplicates("image_id")
    ids, vecs = [], []
    for _, group in tqdm(index.groupby("shard", sort=False), desc=f"{part} features", unit="shard", dynamic_ncols=True):
        blobs = load_images(group)
        ids += list(group["image_id"])
        vecs.append(_image_part(part, cfg, [blobs[i] for i in group["image_id"]], bb, device))
    dim = vecs[0].shape[1] if vecs else 0
    return write_vectors(ids, np.concatenate(vecs) if vecs else np.zeros((0, dim), np.float32), out_path,
                         meta={part: cfg, "dim": dim})


def image_features(index: pd.DataFrame, backbone: str, spec: dict | None, input_size: int | None,
                   out_path: str | Path, batch_size: int = 32, device: str = "cpu") -> Path:
    """Pooled backbone embedding per image (efficientnet_lite0: 1280 floats)."""
    cfg = {"backbone": backbone, "spec": spec or {}, "input_size": input_size, "batch_size": batch_size}
    return _image_cache(index, "image", cfg, out_path, device)


def gram_features(index: pd.DataFrame, backbone: str, spec: dict | None, layers: Sequence[int],
                  out_path: str | Path, input_size: int | None = None, max_channels: int | None = None,
                  rectify: bool = False, batch_size: int = 32, device: str = "cpu") -> Path:
    """Gram style vector per image over `layers` (indices into the backbone's feature_maps). Size
    sum_l C_l(C_l+1)/2 with C_l capped at max_channels: efficientnet_lite0 layers [0,1,2,3] -> 4496.
    rectify: ReLU the maps first, like VGG's post-ReLU style layers (entries then lie in [0, 1])."""
    cfg = {"backbone": backbone, "spec": spec or {}, "input_size": input_size, "layers": list(layers),
           "max_channels": max_channels, "rectify": rectify, "batch_size": batch_size}
    return _image_cache(index, "gram", cfg, out_path, device)


def text_features(prompts: pd.DataFrame, encoder: str, out_path: str | Path, spec: dict | None = None) -> Path:
    """Embedding per prompt_id (+ one row keyed EMPTY_PROMPT for images without a prompt)."""
    rows = prompts[["prompt_id", "prompt"]].dropna(subset=["prompt_id"]).drop_duplicates("prompt_id")
    rows = rows[rows["prompt_id"] != EMPTY_PROMPT]
    enc = load_text_encoder(encoder, spec)
    keys, texts = [*rows["prompt_id"], EMPTY_PROMPT], [*rows["prompt"], None]
    vecs = np.concatenate([enc.encode(texts[s : s + 1024])
                           for s in tqdm(range(0, len(texts), 1024), desc="text features", unit="chunk")])
    return write_vectors(keys, vecs, out_path, key="prompt_id",
                         meta={"text": {"encoder": encoder, "spec": spec or {}}, "dim": enc.dim})


# ------------------------------------------------------------------- spec -> inputs ----


def _cache_path(cache_dir: Path, part: str, cfg: dict) -> Path:
    digest = hashlib.sha256(json.dumps(cfg, sort_keys=True, default=str).encode()).hexdigest()[:12]
    return cache_dir / f"{part}-{digest}.parquet"


def _cached(part: str, cfg: dict, keys: set[str], path: Path, compute: Callable[[set[str], Path], Path]) -> dict[str, np.ndarray]:
    """Load a cache; compute only the keys it lacks (into a side file, then merged atomically)."""
    have: dict[str, np.ndarray] = {}
    if path.exists():
        ids, vecs, _ = read_vectors(path)
        have = dict(zip(ids, vecs))
    missing = keys - set(have)
    if missing:
        side = path.with_suffix(f".new-{os.getpid()}.parquet")  # per process: parallel jobs may share a cache
        ids, vecs, _ = read_vectors(compute(missing, side))
        side.unlink()
        have.update(zip(ids, vecs))
        vectors = np.stack(list(have.values()))
        write_vectors(list(have), vectors, path, key="prompt_id" if part == "text" else "image_id",
                      meta={part: cfg, "dim": vectors.shape[1]})
    return have


def feature_inputs(index: pd.DataFrame, feature_spec: dict, cache_dir: str | Path,
                   device: str = "cpu") -> dict[str, torch.Tensor]:
    """{image_id: float32 vector} for the rows of `index` (image_id, shard; prompt_id, prompt for a
    text part). Caches live in `cache_dir`, named by a hash of each part's config, and are extended
    in place when new images appear."""
    cache_dir = Path(cache_dir)
    parts = []
    for name in _check_spec(feature_spec):
        cfg = dict(feature_spec[name])
        path = _cache_path(cache_dir, name, cfg)
        if name == "text":
            pids = index["prompt_id"].where(index["prompt_id"].notna() & index["prompt"].notna(), EMPTY_PROMPT)
            prompts = index.assign(prompt_id=pids).drop_duplicates("prompt_id")
            table = _cached(name, cfg, set(pids) | {EMPTY_PROMPT}, path, lambda keys, p: text_features(
                prompts[prompts["prompt_id"].isin(keys)], cfg["encoder"], p, cfg.get("spec")))
            parts.append(np.stack([table[k] for k in pids]))
        else:
            table = _cached(name, cfg, set(index["image_id"]), path,
                            lambda keys, p: _image_cache(index[index["image_id"].isin(keys)], name, cfg, p, device))
            parts.append(np.stack([table[k] for k in index["image_id"]]))
    vectors = parts[0]
    for p in parts[1:]:
        vectors = fuse(vectors, p)
    return {i: torch.from_numpy(v.copy()) for i, v in zip(index["image_id"], vectors)}
