"""Load params.yaml, overlay the chosen profile, and validate against the one schema.

Snakemake validates the raw file with `snakemake.utils.validate` (same schema); this module is the
path for the CLI, DVC stages and tests, and formats errors so the offending key is named.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Mapping

import yaml

from attribench.core.io import atomic_path
from attribench.core.checks import check_references
from attribench.core.hub import check as check_hub
from attribench.core.rehearsal import rehearse
from attribench.core.hp_studies import all_study_generators, check as check_studies
from attribench.core.schema import SCHEMA_PATH, ConfigError, deep_merge, load_schema, validate  # noqa: F401  (re-exported)

# Relative to the working directory (the workflow root, where Snakemake and DVC run): the CLI reads the
# params and schema of the project it is run in, not of the checkout it happened to be installed from.
DEFAULT_PARAMS = Path("params.yaml")


def resolve(raw: Mapping) -> dict:
    """The effective config: common keys overlaid by `profiles[profile]`; validated."""
    schema = load_schema()
    validate(raw, schema)
    name = raw["profile"]
    if name not in raw["profiles"]:
        raise ConfigError(f"params.yaml: profile: '{name}' is not one of {sorted(raw['profiles'])}")
    cfg = {k: v for k, v in raw.items() if k not in ("profiles", "rehearsal")}
    block = raw["profiles"][name]
    cfg = deep_merge(cfg, {k: v for k, v in block.items() if k != "rehearsal"})
    if (
        str(raw.get("rehearsal", False)).lower() == "true"
    ):  # (snakemake --config passes "true"); the profile's own entries at toy scale (attribench.core.rehearsal)
        cfg = rehearse(cfg, block.get("rehearsal"), name)
    cfg.setdefault("seed", 0)
    for key in ("zoo", "attributors", "datasets", "experiments", "tables", "hyperparameter_studies"):
        cfg.setdefault(key, {})
    declared = dict(cfg["generators"])  # a view may name a disabled generator (it is simply absent)
    cfg["generators"] = {k: v for k, v in cfg["generators"].items() if v.get("enabled", True)}
    _expand_heldout(cfg)
    resolved_schema = dict(schema["$defs"]["resolved"], **{"$defs": schema["$defs"]})
    validate(cfg, resolved_schema, source=f"params.yaml (profile {name})")
    for zname, z in cfg["zoo"].items():  # training stages (Table 3 checkpoints) continue an earlier stage
        prev = cfg["zoo"].get(z.get("resume_from"), {}) if z.get("resume_from") else None
        if prev is not None and prev.get("train_steps", 0) >= z.get("train_steps", 0):
            raise ConfigError(
                f"params.yaml: zoo.{zname}.resume_from: '{z['resume_from']}' must be a zoo entry "
                "trained for fewer train_steps"
            )
    check_studies(cfg, schema)
    check_references(cfg, all_study_generators(cfg), declared)  # every name points at something that exists
    check_hub(cfg)
    return cfg


def load(path: str | Path = DEFAULT_PARAMS, overrides: Mapping[str, Any] | None = None) -> dict:
    raw = yaml.safe_load(Path(path).read_text())
    if overrides:
        raw = deep_merge(raw, overrides)
    return resolve(raw)


def typed_overrides(config: dict, overrides: Mapping[str, Any]) -> dict:
    """Re-type nested `--config key={a: {b: 1}}` values in place and return `config`.

    Snakemake types a top-level value (int, float, bool) but parses a nested one with YAML's
    BaseLoader, so every leaf arrives as a string ("1", "true"), which the schema rejects or, worse,
    a string compare misreads. Each leaf is read again as YAML scalars are in params.yaml."""

    def typed(v):
        if isinstance(v, dict):
            return {k: typed(x) for k, x in v.items()}
        if isinstance(v, list):
            return [typed(x) for x in v]
        if isinstance(v, str) and v:
            try:
                parsed = yaml.safe_load(v)
            except yaml.YAMLError:
                return v
            return v if isinstance(parsed, (dict, list)) else parsed
        return v

    for key, value in overrides.items():
        if isinstance(value, dict):
            config[key] = deep_merge(config.get(key) or {}, typed(value))
        elif isinstance(value, list):
            config[key] = typed(value)
    return config


def fingerprint(obj: Any) -> str:
    """Stable short hash of a JSON-able object (used to key resumable partial work)."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:12]


def snapshot(cfg: Mapping, folder: str | Path = ".snakemake/attribench") -> Path:
    """Write the resolved config to a content-addressed file that nothing ever rewrites.

    A job reads the exact settings of the Snakemake start that scheduled it: editing params.yaml and
    starting another Snakemake (even `-n`) writes a new file beside it and never changes this one."""
    text = json.dumps(cfg, indent=1, sort_keys=True)
    path = Path(folder) / f"config-{hashlib.sha256(text.encode()).hexdigest()[:16]}.json"
    if not path.exists():  # same name = same bytes, so an existing file is already right
        with atomic_path(path) as tmp:
            tmp.write_text(text)
    return path


def _expand_heldout(cfg: dict) -> None:
    """Dataset views with `heldout: seen | unseen` become explicit class filters, so the held-out
    generators are named once (`heldout_generators`) and every run's settings list them."""
    held = list(cfg.get("heldout_generators") or [])
    unknown = sorted(set(held) - set(cfg["generators"]))
    if unknown:
        raise ConfigError(
            f"params.yaml: heldout_generators: {unknown} are not generators (known: {sorted(cfg['generators'])})"
        )
    real = sorted(g for g, s in cfg["generators"].items() if s.get("source") == "real")
    for name, spec in cfg.get("datasets", {}).items():
        if "heldout" not in spec:
            continue
        if not held:
            raise ConfigError(f"params.yaml: datasets.{name}.heldout needs heldout_generators")
        if spec["heldout"] == "seen":
            spec["exclude"] = sorted(set(spec.get("exclude", [])) | set(held))
        else:
            spec["classes"] = sorted(set(held) | set(real))
