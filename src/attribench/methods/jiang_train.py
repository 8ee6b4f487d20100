"""The `supcon` trainer (kind `jiang_siamese`): Jiang et al.'s encoder trained with Eq. 1 on batches
of whole prompt groups of the train split (sec. III-C, IV-B), registered in attribench.training.trainers.

- Batches: `prompts_per_batch` whole prompt groups (`make_prompt_groups`, reshuffled each epoch with
  seed + epoch), so every anchor meets the other generators' renders of its own prompt, the
  contrast the paper builds its loss on.
- Eq. 1's set I: `loss_groups: prompt` takes one prompt as I, as printed; it needs several images per
  prompt and generator (the paper renders 3), else P(i) is empty and the loss is zero.
  `loss_groups: batch` (our bench: one image per prompt and generator, and real photos whose captions
  no generator rendered) takes the batch of prompt groups as I: positives are the same generator's
  renders of the other prompts in the batch, contrasts every other source, same-prompt ones included.
- Optimiser: AdamW (weight_decay 0 = the paper's Adam), lr stepped down by `lr_gamma` every
  `lr_step_epochs` epochs (paper: 1e-4, x0.4 every 20 of 100 epochs); h-flip 0.5 as in train_run.
- The loop is training.fit's (resumable checkpoints, history, selection); this module gives it hooks:
  the prompt-group batches, the SupCon loss, the val pair AUC, the step LR; on finish it sets the
  prototypes and the Youden threshold into model.json.
- Checkpoint: the epoch with the best validation pair AUC (all val pairs, "same generator?" scored
  by cosine similarity), ties keep the earlier epoch. Then the class prototypes (N-way head) are set
  from the train embeddings, and the Youden threshold of the val pairs is recorded in model.json.
Seeded; on CPU with a fixed thread count, bit-for-bit repeatable.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from safetensors.torch import save_file
from sklearn.metrics import roc_auc_score, roc_curve

from attribench.models.attributors import build_attributor
from attribench.data.imagedata import normalise, resize_crop
from attribench.core.io import atomic_path
from attribench.methods.jiang_siamese import make_prompt_groups, supcon_loss
from attribench.data.shards import load_images
from attribench.training.fit import Hooks, fit
from attribench.training.loop import _param_groups, checkpoint_dir, run_key, run_log, write_summary
from attribench.training.trainers import register_trainer

DEFAULTS = {
    "lr": 1e-4,
    "weight_decay": 0.0,
    "seed": 0,
    "num_threads": None,
    "device": "cpu",
    "lr_step_epochs": 20,
    "lr_gamma": 0.4,
    "batch_size": 64,
}
SPEC_DEFAULTS = {"prompts_per_batch": 16, "loss_groups": "batch", "contrast": "different_source", "temperature": 0.1}


def pixels_of(rows: pd.DataFrame, images: dict[str, bytes], size: int) -> torch.Tensor:
    ids = rows["image_id"].tolist()
    return (
        torch.stack([resize_crop(images[i], size) for i in ids])
        if ids
        else torch.empty((0, 3, size, size), dtype=torch.uint8)
    )


@torch.no_grad()
def embed_pixels(model: torch.nn.Module, pixels: torch.Tensor, batch_size: int, device: str = "cpu") -> torch.Tensor:
    """Unit embeddings (n, D) of uint8 images (normalised here), in eval mode, batch by batch."""
    was = model.training
    model.eval()
    out = [
        model.embed(normalise(pixels[s : s + batch_size]).to(device)).float().cpu()
        for s in range(0, len(pixels), batch_size)
    ]
    model.train(was)
    return torch.cat(out) if out else torch.zeros((0, 0))


def pair_scores(emb: torch.Tensor | np.ndarray, labels) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Every unordered pair i<j: (i, j, cosine score, same label)."""
    e = torch.as_tensor(emb, dtype=torch.float32)
    e = torch.nn.functional.normalize(e, dim=1)
    i, j = np.triu_indices(len(e), k=1)
    sim = (e @ e.T).numpy()
    labels = np.asarray(labels)
    return i, j, sim[i, j].astype(np.float64), labels[i] == labels[j]


def youden_threshold(scores, same) -> float:
    """The score threshold maximising TPR - FPR (Youden's J) on these pairs; balanced, so the many
    more different-source pairs do not push it to 'always different'."""
    same = np.asarray(same, dtype=bool)
    if same.all() or not same.any():
        raise ValueError("a threshold needs both same- and different-source pairs")
    fpr, tpr, thr = roc_curve(same, np.asarray(scores, dtype=float))
    finite = np.isfinite(thr)
    k = np.argmax(np.where(finite, tpr - fpr, -np.inf))
    return float(thr[k])


def _lr(spec: dict, epoch: int) -> float:
    return float(spec["lr"]) * float(spec["lr_gamma"]) ** ((epoch - 1) // max(1, int(spec["lr_step_epochs"])))


@register_trainer("supcon", kinds=["jiang_siamese"])
def train_supcon(index: pd.DataFrame, spec: dict, out_dir: str | Path, inputs=None, text_inputs=None) -> dict:
    if inputs is not None or text_inputs is not None:
        raise ValueError("the supcon trainer trains the encoder on images; jiang_siamese takes no feature/text inputs")
    for key in ("attributor", "attributor_spec", "input_size", "epochs", "classes"):
        if key not in spec:
            raise KeyError(f"training spec lacks {key!r}")
    spec = {**DEFAULTS, **spec}
    spec["attributor_spec"] = {**SPEC_DEFAULTS, **spec["attributor_spec"]}
    with run_log(Path(out_dir), spec["num_threads"]) as log:
        return _train(index, spec, Path(out_dir), log)


def _train(index: pd.DataFrame, spec: dict, out_dir: Path, log) -> dict:
    classes, seed, device = list(spec["classes"]), int(spec["seed"]), spec["device"]
    aspec = spec["attributor_spec"]
    size, eval_bs = int(spec["input_size"]), int(spec.get("eval_batch_size") or spec["batch_size"])
    if aspec["loss_groups"] not in ("batch", "prompt"):
        raise ValueError(f"loss_groups must be 'batch' or 'prompt', not {aspec['loss_groups']!r}")
    log(f"spec {json.dumps(spec, sort_keys=True, default=str)}")
    kept = index[index["generator"].isin(classes) & index["split"].isin(["train", "val"])]
    train_rows = kept[kept["split"] == "train"].reset_index(drop=True)
    val_rows = kept[kept["split"] == "val"].sort_values(["generator", "image_id"]).reset_index(drop=True)
    if train_rows.empty or val_rows.empty:
        raise ValueError(f"supcon needs train and val images for classes {classes}")
    images = load_images(kept)
    train_px, val_px = pixels_of(train_rows, images, size), pixels_of(val_rows, images, size)
    del images
    pos_of = {iid: k for k, iid in enumerate(train_rows["image_id"])}
    cls_idx = {c: k for k, c in enumerate(classes)}
    train_y = torch.tensor([cls_idx[g] for g in train_rows["generator"]])
    val_y = np.array([cls_idx[g] for g in val_rows["generator"]])
    log(f"n_train={len(train_rows)} n_val={len(val_rows)} prompts={train_rows['prompt_id'].nunique()}")

    torch.manual_seed(seed)
    model = build_attributor(spec["attributor"], aspec, len(classes)).to(device)
    n_params = sum(p.numel() for p in model.parameters())
    log(f"attributor {spec['attributor']} {json.dumps(aspec)}: {n_params} parameters")
    opt = torch.optim.AdamW(_param_groups(model, spec["weight_decay"]), lr=spec["lr"])
    flip_rng = torch.Generator().manual_seed(seed)
    min_sources = 2 if aspec["loss_groups"] == "prompt" else 1
    tau = float(aspec["temperature"])

    def batches(epoch: int):
        """Prompt-group batches (reshuffled with seed + epoch), flipped; lone images skipped."""
        for batch in make_prompt_groups(
            train_rows, groups_per_batch=int(aspec["prompts_per_batch"]), min_sources=min_sources, seed=seed + epoch
        ):
            if len(batch) < 2:  # BatchNorm needs two samples; a lone image has no pair anyway
                continue
            pos = torch.tensor([pos_of[i] for i in batch["image_id"]])
            px = train_px[pos]
            flip = torch.rand(len(px), generator=flip_rng) < 0.5
            px = torch.where(flip.view(-1, 1, 1, 1), px.flip(-1), px)
            groups = torch.as_tensor(pd.factorize(batch["prompt_id"])[0]) if aspec["loss_groups"] == "prompt" else None
            yield px, train_y[pos], groups

    def loss(model, batch):
        px, y, groups = batch
        emb = model.embed(normalise(px.to(device)))
        return supcon_loss(emb, y, tau, groups=groups, contrast=aspec["contrast"]), len(px), None

    def validate(model) -> float:
        _, _, scores, same = pair_scores(embed_pixels(model, val_px, eval_bs, device), val_y)
        return float(roc_auc_score(same, scores))

    hooks = Hooks(
        batches=batches,
        loss=loss,
        validate=validate,
        metric="val_pair_auc",
        lr=lambda step, epoch: _lr(spec, epoch),
        generators={"flip": flip_rng},
        splittable=False,
    )
    epochs = int(spec["epochs"])
    res = fit(
        model,
        opt,
        hooks,
        epochs=epochs,
        device=device,
        log=log,
        checkpoint_dir=checkpoint_dir(out_dir),
        checkpoint_every=int(spec.get("checkpoint_every") or 0),
        key=run_key(spec, train_rows, val_rows),
        log_every=int(spec.get("log_every") or 0),
        desc="supcon",
    )
    best_auc, best_epoch = res.best_value, res.best_epoch

    # The best checkpoint, its N-way prototypes (train split, no flips) and its val-pair threshold.
    model.load_state_dict(res.best_state)
    train_emb = embed_pixels(model, train_px, eval_bs, device)
    protos = torch.stack(
        [
            train_emb[train_y == k].mean(0) if (train_y == k).any() else torch.zeros(train_emb.shape[1])
            for k in range(len(classes))
        ]
    )
    model.prototypes.copy_(torch.nn.functional.normalize(protos, dim=1))
    val_emb = embed_pixels(model, val_px, eval_bs, device)
    _, _, scores, same = pair_scores(val_emb, val_y)
    threshold = youden_threshold(scores, same)
    val_acc = float(((val_emb @ model.prototypes.T).argmax(1).numpy() == val_y).mean())
    log(
        f"best epoch {best_epoch} val_pair_auc={best_auc:.6g} threshold={threshold:.6g} "
        f"val_accuracy(prototypes)={val_acc:.6g}; {res.train_seconds:.1f}s"
    )

    state = {k: v.detach().to("cpu", copy=True).contiguous() for k, v in model.state_dict().items()}
    with atomic_path(out_dir / "model.safetensors") as tmp:
        save_file(state, str(tmp))
    meta = {
        "attributor": spec["attributor"],
        "attributor_spec": aspec,
        "trainer": "supcon",
        "classes": classes,
        "input_size": size,
        "eval_batch_size": eval_bs,
        "num_threads": spec["num_threads"],
        "best_epoch": best_epoch,
        "seed": seed,
        "n_parameters": n_params,
        "selection": "val_pair_auc",
        "best_val_pair_auc": best_auc,
        "pair_threshold": threshold,
        "pair_threshold_rule": "youden",
    }
    with atomic_path(out_dir / "model.json") as tmp:
        tmp.write_text(json.dumps(meta, indent=2) + "\n")
    with atomic_path(out_dir / "history.csv") as tmp:
        pd.DataFrame(res.history, columns=["epoch", "lr", "train_loss", "val_pair_auc"]).to_csv(tmp, index=False)
    # The experiment's accuracy column is the prototype head's val accuracy, not the selection AUC.
    return write_summary(
        out_dir,
        res,
        best_val_accuracy=val_acc,
        n_train=len(train_rows),
        n_val=len(val_rows),
        epochs=epochs,
        n_parameters=n_params,
        extra={
            "trainer": "supcon",
            "selection": "val_pair_auc",
            "best_val_pair_auc": best_auc,
            "pair_threshold": threshold,
            "pair_threshold_rule": "youden",
            "n_way_head": "nearest class prototype (cosine / temperature)",
        },
    )
