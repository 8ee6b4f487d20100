"""Where pretrained weights come from: a local directory or the Hugging Face cache, never the network.

A transform that downloaded on demand would hang an offline run or silently change what a run
means; so a hub id is used only if it is already cached, and otherwise `NeedsWeights` names it.
"""

from __future__ import annotations

from pathlib import Path

from attribench.core.paths import HUB_CACHE


class NeedsWeights(RuntimeError):
    """The transform needs pretrained weights that are not on this machine (never substituted)."""

    def __init__(self, model: str, why: str = ""):
        self.model = model
        super().__init__(
            f"needs weights: {model!r} is neither a local directory nor in the Hugging Face cache{why}. "
            f"Fetch it on a machine with network (`hf download {model}`) or point the spec's `model` at a local copy; "
            "transforms never download and never fall back to random weights."
        )


# Hub ids load at the revision params pin (`hub_models`), from the cache fetch_models fills, as the
# generators do: a fetched commit has no `refs/main`, so an unpinned lookup would miss it.
_HUB: dict = {"pins": None, "cache": None}


def configure(cfg: dict, cache: str | Path | None = None) -> None:
    """Pins and hub cache for every later `resolve_weights` (the CLI calls this for each job)."""
    _HUB["pins"] = {m: (p or {}).get("revision") for m, p in (cfg.get("hub_models") or {}).items()}
    _HUB["cache"] = str(cache or HUB_CACHE)


def resolve_weights(model: str) -> str:
    """Local path for `model` (a directory, or a hub id already in the cache at its pinned revision);
    else NeedsWeights."""
    if Path(model).expanduser().is_dir():
        return str(Path(model).expanduser())
    if Path(model).exists() or model.startswith((".", "/", "~")):
        raise NeedsWeights(model, " (a path, but not a model directory)")
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HFValidationError, LocalEntryNotFoundError

    where = {}
    if _HUB["pins"] is not None:
        if model not in _HUB["pins"]:
            raise NeedsWeights(model, " (not in hub_models: no pinned revision to load)")
        if _HUB["pins"][model] is None:
            raise NeedsWeights(model, " (hub_models pins no revision yet)")
        where = {"revision": _HUB["pins"][model], "cache_dir": _HUB["cache"]}
    try:
        return snapshot_download(model, local_files_only=True, **where)
    except (LocalEntryNotFoundError, HFValidationError, OSError, ValueError) as err:
        at = f" at revision {where['revision']} in {where['cache_dir']}" if where else ""
        raise NeedsWeights(model, at) from err


def weights_present(model: str) -> bool:
    try:
        resolve_weights(model)
    except NeedsWeights:
        return False
    return True
