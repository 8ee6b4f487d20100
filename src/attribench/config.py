"""Load params.yaml, overlay the chosen profile, and validate against the one schema.

Snakemake validates the raw file with `snakemake.utils.validate` (same schema); this module is the
path for the CLI, DVC stages and tests, and formats errors so the offending key is named.
"""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path
from typing import Any, Mapping

import jsonschema
import yaml

ROOT = Path(__file__).resolve().parents[2]
SCHEMA_PATH = ROOT / "workflow" / "schemas" / "params.schema.yaml"
DEFAULT_PARAMS = ROOT / "params.yaml"


class ConfigError(ValueError):
    """A params problem, with the dotted path of the offending key."""


def load_schema() -> dict:
    return yaml.safe_load(SCHEMA_PATH.read_text())


def _key_path(error: jsonschema.ValidationError) -> str:
    parts = [str(p) for p in error.absolute_path]
    if error.validator == "additionalProperties":
        # jsonschema reports the parent object; name the unexpected key itself.
        extra = sorted(set(error.instance) - set(error.schema.get("properties", {})))
        parts += extra[:1]
    return ".".join(parts) or "<top level>"


def validate(cfg: Mapping, schema: Mapping | None = None, source: str = "params.yaml") -> None:
    schema = schema or load_schema()
    errors = sorted(jsonschema.Draft202012Validator(schema).iter_errors(cfg), key=lambda e: list(e.absolute_path))
    if errors:
        lines = [f"{source}: {_key_path(e)}: {e.message}" for e in errors[:10]]
        raise ConfigError("invalid config\n  " + "\n  ".join(lines))


def deep_merge(base: Mapping, over: Mapping) -> dict:
    out = copy.deepcopy(dict(base))
    for k, v in over.items():
        out[k] = deep_merge(out[k], v) if isinstance(v, Mapping) and isinstance(out.get(k), Mapping) else copy.deepcopy(v)
    return out


def resolve(raw: Mapping) -> dict:
    """The effective config: common keys overlaid by `profiles[profile]`; validated."""
    schema = load_schema()
    validate(raw, schema)
    name = raw["profile"]
    if name not in raw["profiles"]:
        raise ConfigError(f"params.yaml: profile: '{name}' is not one of {sorted(raw['profiles'])}")
    cfg = {k: v for k, v in raw.items() if k != "profiles"}
    cfg = deep_merge(cfg, raw["profiles"][name])
    cfg.setdefault("seed", 0)
    for key in ("zoo", "attributors", "datasets", "experiments", "tables", "hyperparameter_studies"):
        cfg.setdefault(key, {})
    cfg["generators"] = {k: v for k, v in cfg["generators"].items() if v.get("enabled", True)}
    _expand_heldout(cfg)
    resolved_schema = dict(schema["$defs"]["resolved"], **{"$defs": schema["$defs"]})
    validate(cfg, resolved_schema, source=f"params.yaml (profile {name})")
    for zname, z in cfg["zoo"].items():  # training stages (Table 3 checkpoints) continue an earlier stage
        prev = cfg["zoo"].get(z.get("resume_from"), {}) if z.get("resume_from") else None
        if prev is not None and prev.get("train_steps", 0) >= z.get("train_steps", 0):
            raise ConfigError(f"params.yaml: zoo.{zname}.resume_from: '{z['resume_from']}' must be a zoo entry "
                              "trained for fewer train_steps")
    from attribench.studies import check as check_studies

    check_studies(cfg, schema)
    return cfg


def load(path: str | Path = DEFAULT_PARAMS, overrides: Mapping[str, Any] | None = None) -> dict:
    raw = yaml.safe_load(Path(path).read_text())
    if overrides:
        raw = deep_merge(raw, overrides)
    return resolve(raw)


def fingerprint(obj: Any) -> str:
    """Stable short hash of a JSON-able object (used to key resumable partial work)."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:12]


def snapshot(cfg: Mapping, folder: str | Path = ".snakemake/attribench") -> Path:
    """Write the resolved config for the jobs of this run (rewritten only when it changes).

    One file per profile: a paper dry-run must never change what running smoke jobs read."""
    path = Path(folder) / f"config-{cfg['profile']}.json"
    text = json.dumps(cfg, indent=1, sort_keys=True)
    if not path.exists() or path.read_text() != text:
        from attribench.io import atomic_path

        with atomic_path(path) as tmp:
            tmp.write_text(text)
    return path


def _expand_heldout(cfg: dict) -> None:
    """Dataset views with `heldout: seen | unseen` become explicit class filters, so the held-out
    generators are named once (`heldout_generators`) and every run's settings list them."""
    held = list(cfg.get("heldout_generators") or [])
    unknown = sorted(set(held) - set(cfg["generators"]))
    if unknown:
        raise ConfigError(f"params.yaml: heldout_generators: {unknown} are not generators (known: {sorted(cfg['generators'])})")
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
