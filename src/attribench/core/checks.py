"""Cross-references in the resolved params, checked before the first job (Snakefile and CLI).

The schema checks shapes; this checks that every name points at something that exists: generator
and family names in dataset views and `heldout_generators`, prompt sources, the datasets and
attributors an experiment names, the experiments a table names, and diffusers pipeline and
scheduler classes (against the installed diffusers, read without importing it: `import diffusers`
pulls torch, which the DAG build must not).
"""

from __future__ import annotations

import ast
import importlib.util
from functools import lru_cache
from pathlib import Path

from attribench.core.schema import ConfigError

ANY = "*"


@lru_cache(maxsize=1)
def diffusers_names() -> frozenset[str] | None:
    """Every public name of the installed diffusers (its lazy `_import_structure` lists them as
    strings in `__init__.py`); None when diffusers is not installed."""
    spec = importlib.util.find_spec("diffusers")
    if spec is None or not spec.origin:
        return None
    tree = ast.parse(Path(spec.origin).read_text())
    return frozenset(
        n.value
        for n in ast.walk(tree)
        if isinstance(n, ast.Constant) and isinstance(n.value, str) and n.value.isidentifier()
    )


def check_references(cfg: dict, study_generators: dict | None = None, declared: dict | None = None) -> None:
    """Raise one ConfigError listing every dangling name (dotted key path, the bad name, what exists).

    `declared`: every generator params.yaml names, disabled ones too (views may exclude those)."""
    errors: list[str] = []
    declared = declared or cfg["generators"]
    gens = set(declared)
    families = {s.get("family") for s in declared.values()} - {None}
    sources = set((cfg.get("prompts") or {}).get("sources", {})) | {"caption"}  # folder imports' captions

    def need(key: str, names, known: set, what: str) -> None:
        bad = sorted(set(names) - known)
        if bad:
            errors.append(f"{key}: {bad} {'is' if len(bad) == 1 else 'are'} not {what} (known: {sorted(known)})")

    for name, view in cfg.get("datasets", {}).items():
        need(f"datasets.{name}.exclude", view.get("exclude", []), gens, "generators")
        need(f"datasets.{name}.classes", view.get("classes", []), gens, "generators")
        need(f"datasets.{name}.prompt_sources", view.get("prompt_sources", []), sources, "prompt sources")
        for cls, members in (view.get("labels") or {}).items():
            if members != ANY:
                need(f"datasets.{name}.labels.{cls}", members, gens | families, "generators or families")
    for name, exp in cfg.get("experiments", {}).items():
        need(f"experiments.{name}.attributor", [exp["attributor"]], set(cfg.get("attributors", {})), "attributors")
        views = [exp["train"], *(exp.get("test") or [])]
        need(f"experiments.{name}.train/test", views, set(cfg.get("datasets", {})), "datasets")
    for name, table in cfg.get("tables", {}).items():
        need(f"tables.{name}.experiments", table.get("experiments", []), set(cfg.get("experiments", {})), "experiments")
    for name, spec in {**cfg["generators"], **(study_generators or {})}.items():
        if spec.get("backend") != "diffusers":
            continue
        for key in ("pipeline", "scheduler"):
            known = diffusers_names()
            if spec.get(key) and known is not None and spec[key] not in known:
                errors.append(f"generators.{name}.{key}: '{spec[key]}' is not a class of the installed diffusers")
    if errors:
        raise ConfigError("params.yaml:\n  " + "\n  ".join(errors))
