"""Hugging Face hub ids a profile loads, and the revision each is pinned to (`hub_models` in params).

A hub id that moves or is deleted (runwayml/stable-diffusion-v1-5 did) silently changes, or stops,
the run; so a profile that declares `hub_models` must list every hub id it names there, each with a
`revision`. `revision: null` means "not confirmed yet": the config still resolves (dry-runs work),
but `fetch_models` and every load refuse it, naming the id.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from attribench.core.hp_studies import all_study_generators
from attribench.core.schema import ConfigError

# Defaults of transforms that load hub models when a spec gives no `model` (kept equal to the
# keyword defaults in attribench.transforms by tests/test_hub.py; core cannot import transforms).
TRANSFORM_DEFAULT_MODELS = {
    "sdedit": "stabilityai/stable-diffusion-xl-base-1.0",
    "inpaint": "diffusers/stable-diffusion-xl-1.0-inpainting-0.1",
    "depth": "LiheYoung/depth-anything-small-hf",
    "normals": "prs-eth/marigold-normals-v1-1",
    "albedo": "prs-eth/marigold-iid-lighting-v1-1",
    "shading": "prs-eth/marigold-iid-lighting-v1-1",
}
SHA = re.compile(r"^[0-9a-f]{40}$")


def is_hub_id(model: str) -> bool:
    """`org/name` that is not a path in this project (models/..., data/..., ./..., absolute)."""
    if not isinstance(model, str) or model.count("/") != 1 or model.startswith((".", "/", "~", "models/", "data/")):
        return False
    return not Path(model).exists()


def _transform_model(spec: dict | None) -> str | None:
    if not spec or "name" not in spec:
        return None
    return spec.get("model") or TRANSFORM_DEFAULT_MODELS.get(spec["name"])


def referenced(cfg: dict) -> dict[str, list[str]]:
    """Every hub id the resolved config would load -> the dotted keys that name it."""
    refs: dict[str, list[str]] = {}

    def add(model, where):
        if is_hub_id(model):
            refs.setdefault(model, []).append(where)

    gens = {**cfg.get("generators", {}), **all_study_generators(cfg)}
    for name, spec in gens.items():
        if spec.get("backend") == "diffusers":
            add(spec["model"], f"generators.{name}.model")
    for name, exp in cfg.get("experiments", {}).items():
        add(_transform_model(exp.get("transform")), f"experiments.{name}.transform")
    for tool, t in (cfg.get("post_editing") or {}).get("tools", {}).items():
        add(_transform_model(t.get("transform")), f"post_editing.tools.{tool}.transform")
    for kind, points in (cfg.get("robustness") or {}).get("perturbations", {}).items():
        for i, p in enumerate(points):
            add(_transform_model({"name": kind, **p}), f"robustness.perturbations.{kind}[{i}]")
    for name, att in cfg.get("attributors", {}).items():
        text = ((att.get("features") or {}).get("text") or {}).get("encoder", "")
        if text.startswith("clip:"):
            add(text.split(":", 1)[1], f"attributors.{name}.features.text.encoder")
    for model in cfg.get("hub_models") or {}:
        refs.setdefault(model, [])
    return refs


def check(cfg: dict) -> None:
    """With `hub_models` declared: every referenced hub id is listed there (ConfigError naming it)."""
    pins = cfg.get("hub_models")
    if pins is None:
        return
    missing = {m: w for m, w in referenced(cfg).items() if m not in pins}
    if missing:
        lines = [f"{m} (named by {', '.join(w)})" for m, w in sorted(missing.items())]
        raise ConfigError(
            f"params.yaml (profile {cfg['profile']}): hub_models has no pinned revision for:\n  " + "\n  ".join(lines)
        )
    for model, pin in pins.items():
        rev = pin.get("revision")
        if rev is not None and not SHA.match(str(rev)):
            raise ConfigError(
                f"params.yaml: hub_models.{model}.revision: '{rev}' is not a 40-hex commit id (branches and tags move)"
            )


def revision(cfg: dict, model: str) -> str | None:
    """The pinned revision of a hub id; None for local paths. Unconfirmed pins are an error here."""
    pins = cfg.get("hub_models")
    if pins is None or not is_hub_id(model):
        return None
    if model not in pins:
        raise ConfigError(f"hub_models has no entry for '{model}'")
    rev = pins[model].get("revision")
    if rev is None:
        raise ConfigError(
            f"hub_models.{model}.revision is not confirmed (null): put the commit id from "
            f"https://huggingface.co/{model}/commits/main into params.yaml before loading it"
        )
    return rev


def _snapshot_problem(snap: Path, variant: str | None) -> str | None:
    """Why a cached snapshot is incomplete, or None. Diffusers repos: every component model_index.json
    names has its folder, and folders with a config.json have weights (of the variant, if pinned)."""
    if not snap.is_dir():
        return f"no snapshot {snap}"
    index = snap / "model_index.json"
    if not index.is_file():
        return None if (snap / "config.json").is_file() else f"{snap} has neither model_index.json nor config.json"
    for comp, spec in json.loads(index.read_text()).items():
        if comp.startswith("_") or not isinstance(spec, list) or spec[0] is None:
            continue
        folder = snap / comp
        if not folder.is_dir() or not any(folder.iterdir()):
            return f"component '{comp}' missing in {snap}"
        if (folder / "config.json").is_file():
            weights = [p.name for p in folder.iterdir() if p.suffix in (".safetensors", ".bin")]
            if variant:
                weights = [w for w in weights if f".{variant}." in w]
            if not weights:
                return f"component '{comp}' has no{' ' + variant if variant else ''} weight file in {folder}"
    return None


def fetch_models(cfg: dict, cache: str | Path, download: bool = True) -> list[str]:
    """Make every `hub_models` id present in `cache` at its pinned revision (and variant). Present and
    complete -> nothing happens. Returns the ids downloaded. Errors name the id."""
    pins = cfg.get("hub_models") or {}
    unconfirmed = sorted(m for m, p in pins.items() if p.get("revision") is None)
    if unconfirmed:
        raise ConfigError(
            "hub_models: revision not confirmed (null) for:\n  "
            + "\n  ".join(unconfirmed)
            + "\nput each commit id (huggingface.co/<id>/commits/main) into params.yaml"
        )
    fetched = []
    for model, pin in sorted(pins.items()):
        snap = Path(cache) / f"models--{model.replace('/', '--')}" / "snapshots" / pin["revision"]
        problem = _snapshot_problem(snap, pin.get("variant"))
        if problem is None:
            continue
        if not download:
            raise FileNotFoundError(f"hub model {model}@{pin['revision']} is not complete in {cache}: {problem}")
        from huggingface_hub import snapshot_download  # reason: network client, login node only

        try:
            snapshot_download(model, revision=pin["revision"], cache_dir=str(cache))
            if pin.get("local_dir"):
                snapshot_download(model, revision=pin["revision"], cache_dir=str(cache), local_dir=pin["local_dir"])
        except Exception as err:  # offline, gated, moved: say which id and why
            raise RuntimeError(f"fetch of hub model {model}@{pin['revision']} failed ({problem}): {err}") from err
        problem = _snapshot_problem(snap, pin.get("variant"))
        if problem:
            raise RuntimeError(f"hub model {model}@{pin['revision']}: downloaded but still incomplete: {problem}")
        fetched.append(model)
    return fetched
