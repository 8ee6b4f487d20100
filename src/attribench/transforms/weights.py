"""Where pretrained weights come from: a local directory or the Hugging Face cache, never the network.

A transform that downloaded on demand would hang an offline run or silently change what a run
means; so a hub id is used only if it is already cached, and otherwise `NeedsWeights` names it.
"""

from __future__ import annotations

from pathlib import Path


class NeedsWeights(RuntimeError):
    """The transform needs pretrained weights that are not on this machine (never substituted)."""

    def __init__(self, model: str, why: str = ""):
        self.model = model
        super().__init__(
            f"needs weights: {model!r} is neither a local directory nor in the Hugging Face cache{why}. "
            f"Fetch it on a machine with network (`hf download {model}`) or point the spec's `model` at a local copy; "
            "transforms never download and never fall back to random weights."
        )


def resolve_weights(model: str) -> str:
    """Local path for `model` (a directory, or a hub id already in the cache); else NeedsWeights."""
    if Path(model).expanduser().is_dir():
        return str(Path(model).expanduser())
    if Path(model).exists() or model.startswith((".", "/", "~")):
        raise NeedsWeights(model, " (a path, but not a model directory)")
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HFValidationError, LocalEntryNotFoundError

    try:
        return snapshot_download(model, local_files_only=True)
    except (LocalEntryNotFoundError, HFValidationError, OSError, ValueError) as err:
        raise NeedsWeights(model) from err


def weights_present(model: str) -> bool:
    try:
        resolve_weights(model)
    except NeedsWeights:
        return False
    return True
