"""Train one image attributor on a dataset index and evaluate it (Xu et al. 2024, sec. 4.1, app. B).

Recipe: AdamW (lr 2e-4, weight decay 0.05, none on biases/norm weights as in MMPretrain's AdamW
schedule), linear warm-up then cosine to `min_lr`, both stepped per iteration; the checkpoint with
the best validation accuracy is the one saved and tested. Runs are seeded and, on CPU with a
fixed thread count, bit-for-bit repeatable.

Inputs are either images (decoded from the shards, flipped in training, ImageNet-normalised) or, with
`train_run(..., inputs={image_id: vector})`, precomputed vectors (frozen-backbone features, + text,
Gram style vectors; see features.py) fed to the model as they are. Both share this one loop.
With `train_run(..., text_inputs={image_id: text vector})` the image path also hands each image's
prompt embedding to the model, `model(pixels, text)` (app. B: an image attributor "with text prompts",
e.g. attributor `timm_scratch_text`), trained end to end on the images as before.
"""

from __future__ import annotations

import contextlib
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
from tqdm.auto import tqdm

from attribench.models.attributors import build_attributor
from attribench.training.hooks import make_augmentation, make_loss
from attribench.data.imagedata import index_dataset, normalise, resize_crop, vector_dataset
from attribench.core.io import atomic_path
from attribench.training.metrics import bootstrap_ci, classification_metrics, plot_confusion
from attribench.data.shards import load_images

REQUIRED = ("attributor", "attributor_spec", "input_size", "epochs", "classes")
REQUIRED_FEATURES = ("attributor", "attributor_spec", "epochs", "classes")  # no pixels, no input size
# Paper values (app. B) for everything a spec leaves out; epochs stay required (paper: 2000).
DEFAULTS = {"batch_size": 128, "lr": 2e-4, "weight_decay": 0.05, "warmup_epochs": 20,
            "min_lr": 1e-5, "seed": 0, "num_threads": None, "device": "cpu",
            "augment": None, "loss": "ce"}  # hooks.py: training-image augmentation, loss


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
def predict_batches(model: torch.nn.Module, x: torch.Tensor, batch_size: int, device: str = "cpu",
                    prepare: Callable[[torch.Tensor], torch.Tensor] = normalise,
                    text: torch.Tensor | None = None) -> np.ndarray:
    """Softmax probabilities for stored inputs, `prepare`d batch by batch (with `text`, row-aligned
    text vectors, the model is called as model(x, text)). Validation, test and `predict*` all go
    through here with the same batch size, so recorded and re-computed predictions match exactly."""
    model.eval()
    out = []
    for s in range(0, len(x), batch_size):
        args = [prepare(x[s : s + batch_size]).to(device)]
        if text is not None:
            args.append(text[s : s + batch_size].to(device))
        out.append(F.softmax(model(*args).float(), dim=1).cpu())
    return torch.cat(out).numpy() if out else np.zeros((0, 0), dtype=np.float32)


def predict_pixels(model: torch.nn.Module, pixels: torch.Tensor, batch_size: int, device: str = "cpu",
                   text: torch.Tensor | None = None) -> np.ndarray:
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


def predict(run_dir: str | Path, images: Sequence[bytes], device: str = "cpu",
            prompts: Sequence[str | None] | None = None,
            text_vectors: np.ndarray | torch.Tensor | Sequence | None = None) -> np.ndarray:
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
    pixels = torch.stack([resize_crop(b, size) for b in images]) if len(images) else torch.empty((0, 3, size, size), dtype=torch.uint8)
    with torch_settings(meta.get("num_threads")):
        text = _text_vectors(run_dir, meta, len(images), prompts, text_vectors) if meta.get("text") else None
        return predict_pixels(model, pixels, meta["eval_batch_size"], device, text)


def _text_vectors(run_dir, meta: dict, n: int, prompts, text_vectors) -> torch.Tensor:
    """(n, text_dim) float32 text input of a run trained with text: given, or embedded from prompts
    with the run's recorded text_spec (as features.feature_inputs embeds them)."""
    if text_vectors is None:
        spec = meta.get("text_spec")
        if prompts is None or not spec:
            raise ValueError(f"{run_dir} was trained with text vectors: pass text_vectors="
                             + (" or prompts=" if spec else " (it records no text_spec to embed prompts with)"))
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


def train_run(index: pd.DataFrame, spec: dict, out_dir: str | Path,
              inputs: dict[str, torch.Tensor] | None = None,
              text_inputs: dict[str, torch.Tensor] | None = None) -> dict:
    """Train on split 'train', pick the epoch by 'val' accuracy, test it on 'test'; write the run
    (model, metrics, confusion, predictions, history, log) into `out_dir`. Returns the metrics.

    inputs: {image_id: 1-D vector} to train on instead of the images (no augmentation, no
    normalisation); spec["features"], if given, is recorded so `predict` can remake the vectors.
    text_inputs: {image_id: 1-D text vector} fed with each image, model(pixels, text) (images
    augmented as usual, the vectors as they are); spec["text_spec"] (a feature-spec text part, e.g.
    {"encoder": "minilm"}), if given, is recorded so `predict` can embed prompts itself."""
    if inputs is not None and text_inputs is not None:
        raise ValueError("text_inputs go with the image path; fuse text into `inputs` for vector runs")
    missing = [k for k in (REQUIRED if inputs is None else REQUIRED_FEATURES) if k not in spec]
    if missing:
        raise KeyError(f"training spec lacks {missing}")
    spec = {**DEFAULTS, **spec}
    out_dir = Path(out_dir)
    with run_log(out_dir, spec["num_threads"]) as log:
        return _train(index, spec, out_dir, log, inputs, text_inputs)


def cpu_state(model: torch.nn.Module) -> dict:
    """A detached CPU copy of the weights: the best-validation checkpoint kept while training goes on."""
    return {k: v.detach().to("cpu", copy=True).contiguous() for k, v in model.state_dict().items()}


def history_line(row: dict) -> str:
    return " ".join(f"{k}={v:.6g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items())


@contextlib.contextmanager
def run_log(out_dir: Path, num_threads: int | None) -> Iterator[Callable[[str], None]]:
    """The run's thread settings plus a `log(msg)` writing timestamped lines to out_dir/train.log."""
    out_dir.mkdir(parents=True, exist_ok=True)
    with torch_settings(num_threads), open(out_dir / "train.log", "w") as log_file:
        def log(msg: str) -> None:
            log_file.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {msg}\n")
            log_file.flush()

        yield log


@torch.no_grad()
def _check_input(model: torch.nn.Module, example: tuple[torch.Tensor, ...], what: str, attributor_spec: dict,
                 device: str) -> None:
    """Fail before training, with a readable message, when the architecture cannot take the input
    (timm's EfficientFormer v1 only takes 224 px; V2 needs model_kwargs img_size == input_size; a
    head's in_dim must match the vectors; a model given text must take it, and of its text_dim)."""
    model.eval()  # no BN statistics updated, no dropout draws: the run's RNG stream is untouched
    try:
        model(*(e.to(device) for e in example))
    except (RuntimeError, TypeError) as err:  # TypeError: e.g. an image-only model handed text
        raise ValueError(f"attributor {attributor_spec} does not accept {what} inputs: {err}") from err


def _train(index: pd.DataFrame, spec: dict, out_dir: Path, log, inputs: dict[str, torch.Tensor] | None,
           text_inputs: dict[str, torch.Tensor] | None) -> dict:
    classes, seed, device = list(spec["classes"]), int(spec["seed"]), spec["device"]
    size = int(spec["input_size"]) if spec.get("input_size") is not None else None
    eval_bs = int(spec.get("eval_batch_size") or spec["batch_size"])
    kept = index[index["generator"].isin(classes)]
    log(f"spec {json.dumps(spec, sort_keys=True, default=str)}")
    log(f"{len(kept)} of {len(index)} images have a generator in classes")
    parts = {s: kept[kept["split"] == s].reset_index(drop=True) for s in ("train", "val", "test")}
    empty = [s for s, df in parts.items() if df.empty]
    if empty:
        raise ValueError(f"no images in split(s) {empty} for classes {classes}")

    val_t = test_t = None  # text vectors row-aligned with val_x / test_x, for runs with text
    if inputs is None:
        images = load_images(kept)
        train_ds = index_dataset(parts["train"], images, classes, size, train=True, seed=seed, text_inputs=text_inputs,
                                 augment=make_augmentation(spec["augment"]))
        val_ds = index_dataset(parts["val"], images, classes, size, train=False, text_inputs=text_inputs)
        test_ds = index_dataset(parts["test"], images, classes, size, train=False, text_inputs=text_inputs)
        del images
        val_x, test_x, prepare = val_ds.pixels, test_ds.pixels, normalise
        example, what, extra_meta = (torch.zeros(1, 3, size, size),), f"{size}px", {}
        if text_inputs is not None:
            text_dim = train_ds.text.shape[1]
            val_t, test_t = val_ds.text, test_ds.text
            example, what = (*example, torch.zeros(1, text_dim)), f"{what} + {text_dim}-d text"
            extra_meta = {"text": True, "text_dim": text_dim, "text_spec": spec.get("text_spec")}
    else:
        if spec["augment"]:
            raise ValueError("augment acts on training images; this run trains on precomputed vectors")
        train_ds, val_ds, test_ds = (vector_dataset(parts[s], inputs, classes) for s in ("train", "val", "test"))
        val_x, test_x, prepare = val_ds.vectors, test_ds.vectors, _as_float
        dim = train_ds.vectors.shape[1]
        example, what = (torch.zeros(1, dim),), f"{dim}-d vector"
        extra_meta = {"input_kind": "features", "input_dim": dim, "features": spec.get("features")}
    log(f"n_train={len(train_ds)} n_val={len(val_ds)} n_test={len(test_ds)} input={what}")

    torch.manual_seed(seed)
    model = build_attributor(spec["attributor"], spec["attributor_spec"], len(classes)).to(device)
    _check_input(model, example, what, spec["attributor_spec"], device)
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
    bs = int(spec["batch_size"])
    loader = DataLoader(
        train_ds, batch_size=bs, shuffle=True, num_workers=0,
        generator=torch.Generator().manual_seed(seed),
        # A lone final sample would break BatchNorm's batch statistics; drop it instead.
        drop_last=len(train_ds) % bs == 1 and len(train_ds) > 1,
    )
    epochs = int(spec["epochs"])
    total, warmup = epochs * len(loader), int(spec["warmup_epochs"]) * len(loader)

    history, best_acc, best_epoch, best_state = [], -1.0, 0, None
    step, step_seconds, seen_total, t_start = 0, 0.0, 0, time.perf_counter()
    bar = tqdm(range(1, epochs + 1), desc="train", unit="epoch", dynamic_ncols=True)
    for epoch in bar:
        if hasattr(train_ds, "set_epoch"):
            train_ds.set_epoch(epoch)  # augmentation draws are seeded per (seed, epoch, image)
        model.train()
        loss_sum, correct, seen, t0 = 0.0, 0, 0, time.perf_counter()
        for *xs, y in loader:  # (x, y), or (pixels, text, y) with text_inputs
            lr = lr_at(step, total, warmup, spec["lr"], spec["min_lr"])
            for group in opt.param_groups:
                group["lr"] = lr
            xs, y = [x.to(device) for x in xs], y.to(device)
            logits = model(*xs)
            loss = loss_fn(logits, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            loss_sum += loss.item() * len(y)
            correct += int((logits.argmax(1) == y).sum())
            seen += len(y)
        step_seconds += time.perf_counter() - t0
        seen_total += seen
        val_acc = float((predict_batches(model, val_x, eval_bs, device, prepare, val_t).argmax(1) == val_ds.labels.numpy()).mean())
        row = {"epoch": epoch, "lr": lr, "train_loss": loss_sum / seen, "train_acc": correct / seen, "val_acc": val_acc}
        history.append(row)
        if val_acc > best_acc:  # strict: a tie keeps the earlier epoch
            best_acc, best_epoch = val_acc, epoch
            best_state = cpu_state(model)
        bar.set_postfix(loss=f"{row['train_loss']:.4f}", val_acc=f"{val_acc:.4f}", best=f"{best_acc:.4f}")
        log(history_line(row))
    bar.close()
    train_seconds = time.perf_counter() - t_start
    log(f"best epoch {best_epoch} val_acc={best_acc:.6g}; {train_seconds:.1f}s")

    # Save the best checkpoint, then test exactly what was saved.
    with atomic_path(out_dir / "model.safetensors") as tmp:
        save_file(best_state, str(tmp))
    _write_json({"attributor": spec["attributor"], "attributor_spec": spec["attributor_spec"],
                 "classes": classes, "input_size": size, "eval_batch_size": eval_bs,
                 "num_threads": spec["num_threads"], "best_epoch": best_epoch, "seed": seed,
                 "n_parameters": n_params, **extra_meta}, out_dir / "model.json")
    best_model, _ = load_model(out_dir, device)
    probs = predict_batches(best_model, test_x, eval_bs, device, prepare, test_t)
    y_true, y_pred = test_ds.labels.numpy(), probs.argmax(1)
    _write_outputs(out_dir, classes, test_ds.image_ids, y_true, y_pred, probs, history)

    m = classification_metrics(y_true, y_pred, classes)
    lo, hi = bootstrap_ci(y_true, y_pred, seed=seed)
    metrics = {
        "test_accuracy": m["accuracy"], "test_accuracy_ci95": [lo, hi],
        "macro_precision": m["macro_precision"], "macro_recall": m["macro_recall"], "macro_f1": m["macro_f1"],
        "per_class_accuracy": m["per_class_accuracy"],
        "best_epoch": best_epoch, "best_val_accuracy": best_acc,
        "n_train": len(train_ds), "n_val": len(val_ds), "n_test": len(test_ds), "classes": classes,
        "epochs": epochs, "n_parameters": n_params,
        "train_seconds": train_seconds,  # whole loop, validation included
        "train_images_per_second": seen_total / step_seconds if step_seconds else None,  # optimisation steps only
    }
    _write_json(metrics, out_dir / "metrics.json")  # last: its presence marks a finished run
    log(f"test accuracy {m['accuracy']:.6g} (95% CI {lo:.4g}-{hi:.4g}), macro F1 {m['macro_f1']:.6g}")
    return metrics


def _write_outputs(out_dir: Path, classes: list[str], image_ids: list[str], y_true: np.ndarray,
                   y_pred: np.ndarray, probs: np.ndarray, history: list[dict]) -> None:
    labels = np.asarray(classes, dtype=object)
    preds = pd.DataFrame({"image_id": image_ids, "split": "test", "true_label": labels[y_true], "pred_label": labels[y_pred]})
    preds = pd.concat([preds, pd.DataFrame(probs, columns=[f"p_{c}" for c in classes])], axis=1)
    with atomic_path(out_dir / "predictions.parquet") as tmp:
        preds.to_parquet(tmp, index=False)

    cm = classification_metrics(y_true, y_pred, classes)["confusion_matrix"]
    cm_df = pd.DataFrame(cm, index=pd.Index(classes, name="true\\predicted"), columns=classes)
    with atomic_path(out_dir / "confusion.csv") as tmp:
        cm_df.to_csv(tmp)
    plot_confusion(cm, classes, out_dir / "confusion.png", title=f"{out_dir.name}: test confusion")

    with atomic_path(out_dir / "history.csv") as tmp:
        pd.DataFrame(history, columns=["epoch", "lr", "train_loss", "train_acc", "val_acc"]).to_csv(tmp, index=False)
