"""The one training loop every trainer runs (cross-entropy in loop.py, SupCon in methods.jiang_train).

A trainer hands `fit` a model, an optimizer and a `Hooks` object saying what differs between methods:
the batches of an epoch, the loss of a batch, the validation metric that picks the checkpoint, the
learning-rate schedule, and the torch generators the batches draw from. `fit` owns what they share:
LR setting, optional gradient accumulation, bf16 autocast on CUDA, loss/accuracy sums kept on the
device (no host sync per step; `log_every` steps logs one), best-validation selection (strictly
better; ties keep the earlier epoch), the epoch history, and resumable checkpoints every
`checkpoint_every` epochs (checkpoint.py). A killed run re-run with the same key resumes from its
last checkpoint; on CPU it ends bit-identical to an uninterrupted one.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from attribench.training.checkpoint import (
    load_checkpoint,
    remove_checkpoint,
    save_checkpoint,
)


@dataclass
class Hooks:
    batches: Callable[[int], Iterable[Any]]  # epoch (1-based) -> its training batches
    # (model, batch) -> (mean loss, n samples, n correct or None); batch as `batches` yields it
    loss: Callable[[torch.nn.Module, Any], tuple[torch.Tensor, int, torch.Tensor | None]]
    validate: Callable[[torch.nn.Module], float]  # higher is better; picks the checkpoint
    metric: str  # the history column of the validation metric, e.g. val_acc
    lr: Callable[[int, int], float]  # (global step, epoch) -> learning rate
    generators: dict[str, torch.Generator] = field(default_factory=dict)  # RNG streams to checkpoint
    # Batches are tuples of tensors split along dim 0 for gradient accumulation (`micro_batch`);
    # False for losses over the whole batch (SupCon), which cannot be split.
    splittable: bool = True


@dataclass
class FitResult:
    best_state: dict
    best_value: float
    best_epoch: int
    history: list[dict]
    train_seconds: float
    images_per_second: float | None
    resumed_from: int  # epochs restored from a checkpoint (0: a fresh run)


def cpu_state(model: torch.nn.Module) -> dict:
    """A detached CPU copy of the weights: the best-validation checkpoint kept while training goes on."""
    return {k: v.detach().to("cpu", copy=True).contiguous() for k, v in model.state_dict().items()}


def history_line(row: dict) -> str:
    return " ".join(f"{k}={v:.6g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items())


def split_batch(batch: tuple[torch.Tensor, ...], micro: int) -> list[tuple[torch.Tensor, ...]]:
    """A batch of row-aligned tensors as micro-batches of at most `micro` rows."""
    return list(zip(*(t.split(micro) for t in batch)))


def autocast(device: str, amp: str | None):
    """bf16/fp16 autocast on CUDA when asked; CPU runs stay fp32 (the deterministic path)."""
    if amp and str(device).startswith("cuda"):
        return torch.autocast("cuda", dtype={"bf16": torch.bfloat16, "fp16": torch.float16}[amp])
    return contextlib.nullcontext()


def fit(
    model: torch.nn.Module,
    opt: torch.optim.Optimizer,
    hooks: Hooks,
    *,
    epochs: int,
    device: str,
    log: Callable[[str], None],
    checkpoint_dir: Path | None = None,
    checkpoint_every: int = 0,
    key: str = "",
    micro_batch: int | None = None,
    amp: str | None = None,
    log_every: int = 0,
    desc: str = "train",
) -> FitResult:
    history, best_value, best_epoch, best_state = [], -float("inf"), 0, None
    step, step_seconds, seen_total, start = 0, 0.0, 0, 1
    if checkpoint_dir is not None and checkpoint_every:
        restored = load_checkpoint(checkpoint_dir, key, model, opt, hooks.generators)
        if restored is not None:
            loop, best_state = restored
            history, best_value, best_epoch = loop["history"], loop["best_value"], loop["best_epoch"]
            step, step_seconds, seen_total, start = loop["step"], loop["step_seconds"], loop["seen"], loop["epoch"] + 1
            log(f"resumed from the checkpoint of epoch {loop['epoch']} in {checkpoint_dir}")
    t_start = time.perf_counter() - step_seconds
    lr = hooks.lr(step, start)
    bar = tqdm(range(start, epochs + 1), desc=desc, unit="epoch", dynamic_ncols=True)
    for epoch in bar:
        model.train()
        lr = hooks.lr(step, epoch)
        # Sums stay on the device in float64 (same arithmetic as Python floats): no sync per step.
        loss_sum = torch.zeros((), dtype=torch.float64, device=device)
        correct = torch.zeros((), dtype=torch.int64, device=device)
        seen, has_acc, t0 = 0, False, time.perf_counter()
        for batch in hooks.batches(epoch):
            lr = hooks.lr(step, epoch)
            for group in opt.param_groups:
                group["lr"] = lr
            parts = split_batch(batch, micro_batch) if hooks.splittable and micro_batch else [batch]
            opt.zero_grad(set_to_none=True)
            for part in parts:
                with autocast(device, amp):
                    loss, n, right = hooks.loss(model, part)
                # Accumulated parts weigh by their share of the batch: the mean loss's gradient.
                (loss if len(parts) == 1 else loss * (n / len(batch[-1]))).backward()
                loss_sum += loss.detach().double() * n
                if right is not None:
                    correct += right
                    has_acc = True
                seen += n
            opt.step()
            step += 1
            if log_every and step % log_every == 0:
                log(f"step {step} epoch {epoch} lr={lr:.6g} loss={float(loss):.6g}")
        step_seconds += time.perf_counter() - t0
        seen_total += seen
        value = float(hooks.validate(model))
        row = {"epoch": epoch, "lr": lr, "train_loss": float(loss_sum) / max(1, seen)}
        if has_acc:
            row["train_acc"] = int(correct) / seen
        row[hooks.metric] = value
        history.append(row)
        if value > best_value:  # strict: a tie keeps the earlier epoch
            best_value, best_epoch, best_state = value, epoch, cpu_state(model)
        bar.set_postfix(loss=f"{row['train_loss']:.4f}", val=f"{value:.4f}", best=f"{best_value:.4f}")
        log(history_line(row))
        if checkpoint_dir is not None and checkpoint_every and epoch % checkpoint_every == 0 and epoch < epochs:
            save_checkpoint(
                checkpoint_dir,
                key,
                model,
                opt,
                hooks.generators,
                best_state,
                {
                    "epoch": epoch,
                    "history": history,
                    "best_value": best_value,
                    "best_epoch": best_epoch,
                    "step": step,
                    "step_seconds": step_seconds,
                    "seen": seen_total,
                },
            )
    bar.close()
    if checkpoint_dir is not None:
        remove_checkpoint(checkpoint_dir)  # the run's outputs now stand for it
    return FitResult(
        best_state,
        best_value,
        best_epoch,
        history,
        time.perf_counter() - t_start,
        seen_total / step_seconds if step_seconds else None,
        start - 1,
    )
