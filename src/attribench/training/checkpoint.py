"""Resumable training state: model, optimizer, RNG streams and loop counters, without pickle.

A checkpoint is a folder with `state.safetensors` (every tensor: model and best-so-far weights,
optimizer moments, torch RNG states as uint8 tensors) and `state.json` (everything else: epoch,
history, optimizer hyperparameters, numpy / python RNG states, and the `key` of the run it belongs
to). Both are written atomically, the JSON last, so a kill -9 at any moment leaves either the
previous checkpoint or the new one. A checkpoint whose key differs (another spec or other images)
is ignored: a changed run starts from scratch.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from attribench.core.io import atomic_path

TENSORS, META = "state.safetensors", "state.json"


def _rng_tensors(generators: dict[str, torch.Generator]) -> dict[str, torch.Tensor]:
    out = {"rng.torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        out.update({f"rng.cuda.{i}": s for i, s in enumerate(torch.cuda.get_rng_state_all())})
    out.update({f"rng.gen.{name}": g.get_state() for name, g in generators.items()})
    return out


def _restore_rng(tensors: dict[str, torch.Tensor], generators: dict[str, torch.Generator]) -> None:
    torch.set_rng_state(tensors["rng.torch"])
    cuda = [tensors[k] for k in sorted(k for k in tensors if k.startswith("rng.cuda."))]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda)
    for name, g in generators.items():
        g.set_state(tensors[f"rng.gen.{name}"])


def _optimizer_split(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    """Optimizer state dict -> (tensors keyed opt.<param>.<name>, JSON-able rest)."""
    sd = opt.state_dict()
    tensors, scalars = {}, {}
    for pid, st in sd["state"].items():
        for name, v in st.items():
            if isinstance(v, torch.Tensor):
                tensors[f"opt.{pid}.{name}"] = v.detach().cpu().contiguous()
            else:
                scalars[f"{pid}.{name}"] = v
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def _optimizer_join(tensors: dict[str, torch.Tensor], meta: dict) -> dict:
    state: dict[int, dict] = {}
    for key, v in tensors.items():
        if key.startswith("opt."):
            _, pid, name = key.split(".", 2)
            state.setdefault(int(pid), {})[name] = v
    for key, v in meta["scalars"].items():
        pid, name = key.split(".", 1)
        state.setdefault(int(pid), {})[name] = v
    return {"state": state, "param_groups": meta["param_groups"]}


def save_checkpoint(
    folder: Path,
    key: str,
    model: torch.nn.Module,
    opt: torch.optim.Optimizer,
    generators: dict[str, torch.Generator],
    best_state: dict | None,
    loop: dict,
) -> None:
    """Write the state after a finished epoch. `loop` is the loop's JSON-able counters/history."""
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    if best_state is not None:
        tensors.update({f"best.{k}": v for k, v in best_state.items()})
    opt_tensors, opt_meta = _optimizer_split(opt)
    tensors.update(opt_tensors)
    tensors.update(_rng_tensors(generators))
    meta = {
        "key": key,
        "loop": loop,
        "optimizer": opt_meta,
        "has_best": best_state is not None,
        "rng_numpy": _numpy_state(),
        "rng_python": _python_state(),
    }
    with atomic_path(folder / TENSORS) as tmp:
        save_file(tensors, str(tmp))
    with atomic_path(folder / META) as tmp:  # last: a checkpoint counts once its JSON is there
        tmp.write_text(json.dumps(meta) + "\n")


def load_checkpoint(
    folder: Path, key: str, model: torch.nn.Module, opt: torch.optim.Optimizer, generators: dict[str, torch.Generator]
) -> tuple[dict, dict | None] | None:
    """Restore model, optimizer and RNG states in place; returns (loop, best_state), or None when
    there is no checkpoint of this run (absent, or written for another key)."""
    if not (folder / META).exists() or not (folder / TENSORS).exists():
        return None
    meta = json.loads((folder / META).read_text())
    if meta.get("key") != key:
        return None
    tensors = load_file(folder / TENSORS)
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")}, strict=True)
    opt.load_state_dict(_optimizer_join(tensors, meta["optimizer"]))
    best = {k[5:]: v for k, v in tensors.items() if k.startswith("best.")} if meta["has_best"] else None
    _restore_rng(tensors, generators)
    np.random.set_state(_numpy_from(meta["rng_numpy"]))
    random.setstate(_python_from(meta["rng_python"]))
    return meta["loop"], best


def remove_checkpoint(folder: Path) -> None:
    for name in (META, TENSORS):  # JSON first: a half-removed checkpoint is never taken for one
        (folder / name).unlink(missing_ok=True)
    if folder.exists() and not any(folder.iterdir()):
        folder.rmdir()


def _numpy_state() -> list:
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return [name, keys.tolist(), int(pos), int(has_gauss), float(cached)]


def _numpy_from(s: list) -> tuple:
    return (s[0], np.asarray(s[1], dtype=np.uint32), s[2], s[3], s[4])


def _python_state() -> list:
    version, internal, gauss = random.getstate()
    return [version, list(internal), gauss]


def _python_from(s: list) -> tuple:
    return (s[0], tuple(s[1]), s[2])
