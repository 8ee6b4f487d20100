"""The cross-entropy trainer (Xu et al. 2024, sec. 4.1, app. B) on the one loop (fit.py), plus
loading a trained run and predicting with it.

Recipe: AdamW (lr 2e-4, weight decay 0.05, none on biases/norm weights as in MMPretrain's AdamW
schedule), linear warm-up then cosine to `min_lr`, both stepped per iteration; the checkpoint with
the best validation accuracy is the one saved (the experiment tests it: experiments/runs.py).
Runs are seeded and, on CPU with a fixed thread count, bit-for-bit repeatable, resumed or not.

Inputs are either images (decoded from the shards, flipped in training, ImageNet-normalised) or, with
`train_run(..., inputs={image_id: vector})`, precomputed vectors (frozen-backbone features, + text,
Gram style vectors; see features.py) fed to the model as they are. Both share this one loop.
With `train_run(..., text_inputs={image_id: text vector})` the image path also hands each image's
prompt embedding to the model, `model(pixels, text)` (app. B: an image attributor "with text prompts",
e.g. attributor `timm_scratch_text`), trained end to end on the images as before.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import time
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch.utils.data import DataLoader

from attribench.core.io import atomic_path
from attribench.data.imagedata import index_dataset, normalise, resize_crop, vector_dataset
from attribench.data.pixelcache import encoded_cache, pixel_cache
from attribench.data.shards import load_images
from attribench.models.attributors import build_attributor
from attribench.training.fit import FitResult, Hooks, cpu_state, fit, history_line  # noqa: F401  (re-exported)
from attribench.training.hooks import make_augmentation, make_loss

REQUIRED = ("attributor", "attributor_spec", "input_size", "epochs", "classes")
REQUIRED_FEATURES = ("attributor", "attributor_spec", "epochs", "classes")  # no pixels, no input size
# Paper values (app. B) for everything a spec leaves out; epochs stay required (paper: 2000).
DEFAULTS = {
    "batch_size": 128,
    "lr": 2e-4,
    "weight_decay": 0.05,
    "warmup_epochs": 20,
    "min_lr": 1e-5,
    "seed": 0,
    "num_threads": None,
    "device": "cpu",
    "augment": None,
    "loss": "ce",  # hooks.py: training-image augmentation, loss
    "checkpoint_every": 0,
    "log_every": 0,  # epochs between resumable checkpoints; steps between log lines
    "num_workers": 0,
    "micro_batch_size": None,  # DataLoader workers; gradient accumulation chunk
    "amp": "bf16",
    "pixel_cache": None,
}  # autocast dtype on CUDA (None: fp32); streamed pixel folder


def lr_at(step: int, total_steps: int, warmup_steps: int, lr: float, min_lr: float) -> float:
    """Learning rate of iteration `step` (0-based): linear warm-up to `lr`, then cosine to `min_lr`
    reached at the last iteration."""
    if step < warmup_steps:
        return lr * (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - 1 - warmup_steps)
    return min_lr + 0.5 * (lr - min_lr) * (1 + math.cos(math.pi * min(1.0, progress)))


@contextlib.contextmanager
def torch_settings(num_threads: int | None) -> Iterator[None]:
    """Thread count and deterministic kernels for the block; the caller's settings come back after."""
    threads, det = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    if num_threads:
        torch.set_num_threads(int(num_threads))
    # warn_only: an op without a deterministic kernel warns instead of aborting the run.
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(det, warn_only=warn_only)


@torch.inference_mode()
def predict_batches(
    model: torch.nn.Module,
    x: torch.Tensor,
    batch_size: int,
    device: str = "cpu",
    prepare: Callable[[torch.Tensor], torch.Tensor] = normalise,
    text: torch.Tensor | None = None,
) -> np.ndarray:
    """Softmax probabilities for stored inputs, `prepare`d batch by batch (with `text`, row-aligned
    text vectors, the model is called as model(x, text)). Validation, test and `predict*` all go
    through here with the same batch size, so recorded and re-computed predictions match exactly."""
    model.eval()
    out = []
    for s in range(0, len(x), batch_size):
        args = [prepare(x[s : s + batch_size].to(device))]
        if text is not None:
            args.append(text[s : s + batch_size].to(device))
        out.append(F.softmax(model(*args).float(), dim=1).cpu())
    return torch.cat(out).numpy() if out else np.zeros((0, 0), dtype=np.float32)


def predict_pixels(
    model: torch.nn.Module, pixels: torch.Tensor, batch_size: int, device: str = "cpu", text: torch.Tensor | None = None
) -> np.ndarray:
    """Softmax probabilities for preprocessed uint8 images (normalised here), plus their text
    vectors for a model trained with text."""
    return predict_batches(model, pixels, batch_size, device, normalise, text)


def _as_float(x: torch.Tensor) -> torch.Tensor:
    return x.float()  # vectors are the model input as they are: no normalisation


def load_model(run_dir: str | Path, device: str = "cpu") -> tuple[torch.nn.Module, dict]:
    """Rebuild a trained attributor from model.json + model.safetensors (never unpickles)."""
    run_dir = Path(run_dir)
    meta = json.loads((run_dir / "model.json").read_text())
    model = build_attributor(meta["attributor"], meta["attributor_spec"], len(meta["classes"]))
    model.load_state_dict(load_file(run_dir / "model.safetensors"), strict=True)
    return model.to(device).eval(), meta


def predict(
    run_dir: str | Path,
    images: Sequence[bytes],
    device: str = "cpu",
    prompts: Sequence[str | None] | None = None,
    text_vectors: np.ndarray | torch.Tensor | Sequence | None = None,
) -> np.ndarray:
    """Class probabilities (n_images, n_classes; columns in model.json's `classes` order). A run
    trained on feature vectors recomputes them from the images with its recorded feature spec
    (`prompts` are needed when that spec has a text part). An image run trained with text takes the
    images' text vectors (`text_vectors`, (n_images, text_dim): the ones it was tested on give back
    exactly its recorded predictions), or `prompts` to embed with its recorded `text_spec`."""
    meta = json.loads((Path(run_dir) / "model.json").read_text())
    if text_vectors is not None and not meta.get("text"):
        raise ValueError(f"{run_dir} was trained without text vectors; do not pass text_vectors=")
    if meta.get("input_kind") == "features":
        from attribench.models.features import compute_vectors  # backbones load only for feature runs

        if "text" in (meta.get("features") or {}) and prompts is None:
            raise ValueError(f"{run_dir} was trained with prompt embeddings: pass prompts=")
        if not meta.get("features"):
            raise ValueError(f"{run_dir} records no feature spec; use predict_features(run_dir, vectors)")
        with torch_settings(meta.get("num_threads")):
            vectors = compute_vectors(meta["features"], images, prompts, device)
        return predict_features(run_dir, vectors, device)
    model, meta = load_model(run_dir, device)
    size = meta["input_size"]
    pixels = (
        torch.stack([resize_crop(b, size) for b in images])
        if len(images)
        else torch.empty((0, 3, size, size), dtype=torch.uint8)
    )
    with torch_settings(meta.get("num_threads")):
        text = _text_vectors(run_dir, meta, len(images), prompts, text_vectors) if meta.get("text") else None
        return predict_pixels(model, pixels, meta["eval_batch_size"], device, text)


def _text_vectors(run_dir, meta: dict, n: int, prompts, text_vectors) -> torch.Tensor:
    """(n, text_dim) float32 text input of a run trained with text: given, or embedded from prompts
    with the run's recorded text_spec (as features.feature_inputs embeds them)."""
    if text_vectors is None:
        spec = meta.get("text_spec")
        if prompts is None or not spec:
            raise ValueError(
                f"{run_dir} was trained with text vectors: pass text_vectors="
                + (" or prompts=" if spec else " (it records no text_spec to embed prompts with)")
            )
        from attribench.models.text_encoders import load_text_encoder  # the encoder loads only when needed

        text_vectors = load_text_encoder(spec["encoder"], spec.get("spec")).encode(list(prompts))
    if isinstance(text_vectors, torch.Tensor):
        text_vectors = text_vectors.detach().cpu().numpy()
    rows = [np.asarray(v, dtype=np.float32).reshape(-1) for v in text_vectors]
    text = torch.from_numpy(np.stack(rows)) if rows else torch.zeros((0, meta["text_dim"]))
    if tuple(text.shape) != (n, meta["text_dim"]):
        raise ValueError(f"{n} images need ({n}, {meta['text_dim']}) text vectors, got {tuple(text.shape)}")
    return text


def predict_features(run_dir: str | Path, vectors: np.ndarray | torch.Tensor, device: str = "cpu") -> np.ndarray:
    """Class probabilities for precomputed input vectors (n, input_dim) of a feature run; the
    vectors the run was trained/tested on give back exactly its recorded predictions."""
    model, meta = load_model(run_dir, device)
    if meta.get("input_kind") != "features":
        raise ValueError(f"{run_dir} was trained on images; use predict(run_dir, images)")
    x = torch.as_tensor(np.asarray(vectors, dtype=np.float32)).reshape(-1, meta["input_dim"])
    with torch_settings(meta.get("num_threads")):
        return predict_batches(model, x, meta["eval_batch_size"], device, _as_float)


def _write_json(obj: dict, path: Path) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2) + "\n")


def _param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    # Biases and norm weights (the 1-D tensors) get no decay, as in MMPretrain's AdamW schedule.
    decay = [p for p in model.parameters() if p.requires_grad and p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.ndim <= 1]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def train_run(
    index: pd.DataFrame,
    spec: dict,
    out_dir: str | Path,
    inputs: dict[str, torch.Tensor] | None = None,
    text_inputs: dict[str, torch.Tensor] | None = None,
) -> dict:
    """Train on split 'train' and pick the epoch by 'val' accuracy (other splits are ignored); write
    the run's model (model.json + model.safetensors), history.csv, train.log and training.json.
    Returns the training summary (see trainers.py); testing and metrics.json are the experiment's.

    inputs: {image_id: 1-D vector} to train on instead of the images (no augmentation, no
    normalisation); spec["features"], if given, is recorded so `predict` can remake the vectors.
    text_inputs: {image_id: 1-D text vector} fed with each image, model(pixels, text) (images
    augmented as usual, the vectors as they are); spec["text_spec"] (a feature-spec text part, e.g.
    {"encoder": "minilm"}), if given, is recorded so `predict` can embed prompts itself.
    spec["pixel_cache"]: a folder for the streamed uint8 pixel files (pixelcache.py); without it the
    images are decoded into memory."""
    if inputs is not None and text_inputs is not None:
        raise ValueError("text_inputs go with the image path; fuse text into `inputs` for vector runs")
    missing = [k for k in (REQUIRED if inputs is None else REQUIRED_FEATURES) if k not in spec]
    if missing:
        raise KeyError(f"training spec lacks {missing}")
    spec = {**DEFAULTS, **spec}
    out_dir = Path(out_dir)
    with run_log(out_dir, spec["num_threads"]) as log:
        return _train(index, spec, out_dir, log, inputs, text_inputs)


@contextlib.contextmanager
def run_log(out_dir: Path, num_threads: int | None) -> Iterator[Callable[[str], None]]:
    """The run's thread settings plus a `log(msg)` writing timestamped lines to out_dir/train.log
    (appended to when a checkpoint is there to resume from)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    mode = "a" if (checkpoint_dir(out_dir) / "state.json").exists() else "w"
    with torch_settings(num_threads), open(out_dir / "train.log", mode) as log_file:

        def log(msg: str) -> None:
            log_file.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {msg}\n")
            log_file.flush()

        yield log


@torch.no_grad()
def _check_input(
    model: torch.nn.Module, example: tuple[torch.Tensor, ...], what: str, attributor_spec: dict, device: str
) -> None:
    """Fail before training, with a readable message, when the architecture cannot take the input
    (timm's EfficientFormer v1 only takes 224 px; V2 needs model_kwargs img_size == input_size; a
    head's in_dim must match the vectors; a model given text must take it, and of its text_dim)."""
    model.eval()  # no BN statistics updated, no dropout draws: the run's RNG stream is untouched
    try:
        model(*(e.to(device) for e in example))
    except (RuntimeError, TypeError) as err:  # TypeError: e.g. an image-only model handed text
        raise ValueError(f"attributor {attributor_spec} does not accept {what} inputs: {err}") from err


def checkpoint_dir(out_dir: Path) -> Path:
    return Path(out_dir) / "checkpoint"


def run_key(spec: dict, *frames: pd.DataFrame) -> str:
    """What a checkpoint must match to be resumed: the spec and the images trained / validated on."""
    h = hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode())
    for df in frames:
        h.update("\n".join(df["image_id"]).encode())
    return h.hexdigest()


def prepare_device(model: torch.nn.Module, device: str, images: bool) -> torch.nn.Module:
    """CUDA: TF32 matmuls/convolutions and channels_last image models; CPU: as it is (deterministic)."""
    if str(device).startswith("cuda"):
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        if images:
            model = model.to(memory_format=torch.channels_last)
    return model


def flip_batch(px: torch.Tensor, rng: torch.Generator) -> torch.Tensor:
    """h-flip p=0.5 per image, drawn one scalar per image in batch order from `rng` (the stream the
    per-item dataset flips used), applied on the batch's device."""
    flips = torch.tensor([torch.rand((), generator=rng).item() < 0.5 for _ in range(len(px))], device=px.device)
    return torch.where(flips.view(-1, 1, 1, 1), px.flip(-1), px)


def make_loader(ds, spec: dict, generator: torch.Generator, device: str) -> DataLoader:
    bs, workers = int(spec["batch_size"]), int(spec["num_workers"])
    return DataLoader(
        ds,
        batch_size=bs,
        shuffle=True,
        generator=generator,
        num_workers=workers,
        pin_memory=str(device).startswith("cuda"),
        # Persistent workers would keep an old epoch's copy of the dataset: not with augmentation.
        persistent_workers=workers > 0 and getattr(ds, "augment", None) is None,
        # A lone final sample would break BatchNorm's batch statistics; drop it instead.
        drop_last=len(ds) % bs == 1 and len(ds) > 1,
    )


def _datasets(parts: dict[str, pd.DataFrame], spec: dict, classes: list[str], text_inputs, log):
    """Train / val image datasets: streamed from a pixel file when spec["pixel_cache"] is set."""
    size, seed, augment = int(spec["input_size"]), int(spec["seed"]), make_augmentation(spec["augment"])
    common = {"classes": classes, "input_size": size, "text_inputs": text_inputs}
    if spec.get("pixel_cache"):
        px = {s: pixel_cache(df, size, spec["pixel_cache"], resize_crop) for s, df in parts.items()}
        log(f"streaming pixels from {', '.join(str(p.path) for p in px.values())}")
        # the hook decodes originals: streamed from their own file too
        images = encoded_cache(parts["train"], spec["pixel_cache"]) if augment is not None else None
        train_ds = index_dataset(
            parts["train"], images, train=True, seed=seed, augment=augment, pixels=px["train"], **common
        )
        val_ds = index_dataset(parts["val"], None, train=False, pixels=px["val"], **common)
    else:
        images = load_images(pd.concat(parts.values()))
        train_ds = index_dataset(parts["train"], images, train=True, seed=seed, augment=augment, **common)
        val_ds = index_dataset(parts["val"], images, train=False, **common)
    train_ds.flip = False  # flip_batch does it on the device, from the same stream
    return train_ds, val_ds


def _train(
    index: pd.DataFrame,
    spec: dict,
    out_dir: Path,
    log,
    inputs: dict[str, torch.Tensor] | None,
    text_inputs: dict[str, torch.Tensor] | None,
) -> dict:
    classes, seed, device = list(spec["classes"]), int(spec["seed"]), spec["device"]
    size = int(spec["input_size"]) if spec.get("input_size") is not None else None
    eval_bs = int(spec.get("eval_batch_size") or spec["batch_size"])
    kept = index[index["generator"].isin(classes)]
    log(f"spec {json.dumps(spec, sort_keys=True, default=str)}")
    log(f"{len(kept)} of {len(index)} images have a generator in classes")
    parts = {s: kept[kept["split"] == s].reset_index(drop=True) for s in ("train", "val")}
    empty = [s for s, df in parts.items() if df.empty]
    if empty:
        raise ValueError(f"no images in split(s) {empty} for classes {classes}")

    val_t = None  # text vectors row-aligned with val_x, for runs with text
    if inputs is None:
        train_ds, val_ds = _datasets(parts, spec, classes, text_inputs, log)
        val_x, prepare = val_ds.pixels, normalise
        example, what, extra_meta = (torch.zeros(1, 3, size, size),), f"{size}px", {}
        if text_inputs is not None:
            text_dim = train_ds.text.shape[1]
            val_t = val_ds.text
            example, what = (*example, torch.zeros(1, text_dim)), f"{what} + {text_dim}-d text"
            extra_meta = {"text": True, "text_dim": text_dim, "text_spec": spec.get("text_spec")}
    else:
        if spec["augment"]:
            raise ValueError("augment acts on training images; this run trains on precomputed vectors")
        train_ds, val_ds = (vector_dataset(parts[s], inputs, classes) for s in ("train", "val"))
        val_x, prepare = val_ds.vectors, _as_float
        dim = train_ds.vectors.shape[1]
        example, what = (torch.zeros(1, dim),), f"{dim}-d vector"
        extra_meta = {"input_kind": "features", "input_dim": dim, "features": spec.get("features")}
    log(f"n_train={len(train_ds)} n_val={len(val_ds)} input={what}")

    torch.manual_seed(seed)
    model = build_attributor(spec["attributor"], spec["attributor_spec"], len(classes)).to(device)
    _check_input(model, example, what, spec["attributor_spec"], device)
    model = prepare_device(model, device, images=inputs is None)
    n_params = sum(p.numel() for p in model.parameters())
    log(f"attributor {spec['attributor']} {json.dumps(spec['attributor_spec'])}: {n_params} parameters")
    # Only trainable parameters are optimised: frozen parts (e.g. DeepFeatureX's base models) stay put.
    n_trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    if n_trainable < n_params:
        log(f"{n_trainable} of {n_params} parameters are trainable (the rest frozen)")
    loss_fn = make_loss(spec["loss"], train_ds.labels, len(classes))
    if spec["loss"] != "ce" or spec["augment"]:
        log(f"loss {spec['loss']}, augment {json.dumps(spec['augment'])}")
    opt = torch.optim.AdamW(_param_groups(model, spec["weight_decay"]), lr=spec["lr"])
    loader_rng, flip_rng = torch.Generator().manual_seed(seed), torch.Generator().manual_seed(seed)
    loader = make_loader(train_ds, spec, loader_rng, device)
    epochs = int(spec["epochs"])
    total, warmup = epochs * len(loader), int(spec["warmup_epochs"]) * len(loader)
    val_y = val_ds.labels.numpy()

    def batches(epoch: int):
        if hasattr(train_ds, "set_epoch"):
            train_ds.set_epoch(epoch)  # augmentation draws are seeded per (seed, epoch, image)
        return loader

    def loss(model, batch):  # (x, y), or (pixels, text, y) with text_inputs
        *xs, y = (t.to(device, non_blocking=True) for t in batch)
        if inputs is None:
            xs[0] = normalise(flip_batch(xs[0], flip_rng))
            if str(device).startswith("cuda"):
                xs[0] = xs[0].contiguous(memory_format=torch.channels_last)
        logits = model(*xs)
        return loss_fn(logits, y), len(y), (logits.argmax(1) == y).sum()

    hooks = Hooks(
        batches=batches,
        loss=loss,
        metric="val_acc",
        generators={"loader": loader_rng, "flip": flip_rng},
        validate=lambda m: (predict_batches(m, val_x, eval_bs, device, prepare, val_t).argmax(1) == val_y).mean(),
        lr=lambda step, epoch: lr_at(step, total, warmup, spec["lr"], spec["min_lr"]),
    )
    res = fit(
        model,
        opt,
        hooks,
        epochs=epochs,
        device=device,
        log=log,
        checkpoint_dir=checkpoint_dir(out_dir),
        checkpoint_every=int(spec["checkpoint_every"] or 0),
        key=run_key(spec, parts["train"], parts["val"]),
        micro_batch=spec["micro_batch_size"],
        amp=spec["amp"],
        log_every=int(spec["log_every"] or 0),
    )
    log(f"best epoch {res.best_epoch} val_acc={res.best_value:.6g}; {res.train_seconds:.1f}s")

    with atomic_path(out_dir / "model.safetensors") as tmp:
        save_file(res.best_state, str(tmp))
    _write_json(
        {
            "attributor": spec["attributor"],
            "attributor_spec": spec["attributor_spec"],
            "classes": classes,
            "input_size": size,
            "eval_batch_size": eval_bs,
            "num_threads": spec["num_threads"],
            "best_epoch": res.best_epoch,
            "seed": seed,
            "n_parameters": n_params,
            **extra_meta,
        },
        out_dir / "model.json",
    )
    with atomic_path(out_dir / "history.csv") as tmp:
        pd.DataFrame(res.history, columns=["epoch", "lr", "train_loss", "train_acc", "val_acc"]).to_csv(
            tmp, index=False
        )
    return write_summary(out_dir, res, n_train=len(train_ds), n_val=len(val_ds), epochs=epochs, n_parameters=n_params)


def write_summary(out_dir: Path, res: FitResult, **fields) -> dict:
    """training.json: what the trainer reports to the experiment (trainers.py lists the keys)."""
    summary = {
        "best_epoch": res.best_epoch,
        "best_val_accuracy": res.best_value,
        "train_seconds": res.train_seconds,  # whole loop, validation included
        "train_images_per_second": res.images_per_second,  # optimisation steps only
        "resumed_from_epoch": res.resumed_from,
        **fields,
    }
    _write_json(summary, out_dir / "training.json")
    return summary
