"""`--config rehearsal=true`: a profile's own entries at toy scale (a leaf module).

The profile's `rehearsal` block overlays the resolved profile, and it may change only scale: counts,
image sizes, epochs, batch sizes, device and dtype. Model ids, pipeline classes, schedulers, steps,
guidance and every other setting stay the paper's, so the rehearsal fails wherever the real run would.
Its data lives under data/<profile>-rehearsal, so it never mixes with the real run's.
"""

from __future__ import annotations

import hashlib

from attribench.core.schema import ConfigError, deep_merge

SCALE_KEYS = {
    "count",
    "counts",
    "train",
    "val",
    "test",
    "chunk_size",
    "max_prompts",
    "train_per_class",
    "queries_per_class",
    "width",
    "height",
    "size",
    "input_size",
    "img_size",
    "epochs",
    "warmup_epochs",
    "batch_size",
    "device",
    "dtype",
    "shards",
    "expand_to",
    "images_per_prompt",
    "patch_size",
}
# Blocks the schema lets every attributor and experiment carry: a rehearsal may add one that an entry
# leaves out (e.g. a smaller `training.input_size` for an attributor that trains at the default).
SETTING_BLOCKS = {"training"}


def _check(block: dict, base: dict, where: str) -> None:
    for key, value in block.items():
        path = f"{where}.{key}"
        if isinstance(value, dict) and key not in SCALE_KEYS:
            inner = base.get(key)
            if not isinstance(inner, dict) and key not in SETTING_BLOCKS:
                raise ConfigError(
                    f"params.yaml: {path}: a rehearsal only rescales existing entries; '{key}' is not one"
                )
            _check(value, inner if isinstance(inner, dict) else {}, path)
        elif key not in SCALE_KEYS:
            raise ConfigError(
                f"params.yaml: {path}: a rehearsal may change only scale ({', '.join(sorted(SCALE_KEYS))}), not '{key}'"
            )


def rehearse(cfg: dict, block: dict | None, profile: str) -> dict:
    if not block:
        raise ConfigError(
            f"params.yaml: rehearsal=true needs a profiles.{profile}.rehearsal block (what to scale down)"
        )
    _check(block, cfg, f"profiles.{profile}.rehearsal")
    out = deep_merge(cfg, block)
    out["profile"] = f"{profile}-rehearsal"
    out["rehearsal"] = True
    for model, pin in (out.get("hub_models") or {}).items():
        if pin.get("revision") is None:  # not confirmed yet: the replica stands at a revision no real repo has
            out["hub_models"][model] = {**pin, "revision": stand_in_revision(model), "stand_in": True}
    return out


def stand_in_revision(model: str) -> str:
    """The revision a rehearsal uses for a hub id whose real pin is still null (sha1 of "rehearsal:<id>"):
    40 hex digits like a commit id, never one on the hub, so a replica never poses as fetched weights."""
    return hashlib.sha1(f"rehearsal:{model}".encode()).hexdigest()
