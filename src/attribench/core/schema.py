"""The params schema and its checks: errors name the dotted key path of the offending key (a leaf module)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Mapping

import jsonschema
import yaml

# Shipped with the package (any install, any working directory); workflow/schemas/params.schema.yaml is a
# link to it, where Snakemake's own `validate` and the snakemake-workflows layout expect it.
SCHEMA_PATH = Path(__file__).with_name("params.schema.yaml")


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
        out[k] = (
            deep_merge(out[k], v) if isinstance(v, Mapping) and isinstance(out.get(k), Mapping) else copy.deepcopy(v)
        )
    return out
