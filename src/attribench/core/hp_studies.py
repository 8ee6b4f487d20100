"""Hyperparameter studies (Xu et al. sec. 4.2, Table 3 + Fig. 4): vary one thing, keep the rest fixed.

A study in `params.yaml: hyperparameter_studies` names a `base` generator, the generator key it
varies (`vary`: model, scheduler, steps, fixed_seed, guidance) and the `values`. It expands into one
class generator per value, named `<study>__<label>`: the base spec, then the study's `spec` overrides
(e.g. fewer prompts), then `{vary: value}`. Those classes go through the same render and deliver
rules as every generator but never into the main benchmark index: each study has its own split index
(`data/<profile>/studies/<study>/index.parquet`, the same split code with the study's `split`), and an
experiment with `study: <name>` trains on it through the ordinary `train` rule.
"""

from __future__ import annotations

import copy
import re

from attribench.core.schema import ConfigError, deep_merge, validate

SEP = "__"  # <study>__<label>; generator names never contain it
VARIABLE_KEYS = ("model", "scheduler", "steps", "fixed_seed", "guidance")


def studies(cfg: dict) -> dict:
    return cfg.get("hyperparameter_studies") or {}


def _label(value) -> str:
    text = str(value).rstrip("/").rsplit("/", 1)[-1].lower()
    return re.sub(r"[^a-z0-9_]+", "_", text).strip("_") or "v"


def class_labels(study: dict) -> list[str]:
    return list(study.get("labels") or [_label(v) for v in study["values"]])


def class_name(study_name: str, label: str) -> str:
    return f"{study_name}{SEP}{label}"


def study_classes(cfg: dict, name: str) -> dict[str, dict]:
    """Class generator name -> full generator spec, in the order of `values`."""
    if name not in studies(cfg):
        raise KeyError(f"hyperparameter study '{name}' is not in params.yaml (known: {sorted(studies(cfg))})")
    st = studies(cfg)[name]
    base = cfg["generators"][st["base"]]
    common = deep_merge(base, st.get("spec") or {})
    return {
        class_name(name, lab): {**copy.deepcopy(common), st["vary"]: v}
        for lab, v in zip(class_labels(st), st["values"])
    }


def all_study_generators(cfg: dict) -> dict[str, dict]:
    out: dict[str, dict] = {}
    for name in studies(cfg):
        out.update(study_classes(cfg, name))
    return out


def generator_spec(cfg: dict, name: str) -> dict:
    """A main-benchmark generator or a study class (`<study>__<label>`)."""
    if name in cfg["generators"]:
        return cfg["generators"][name]
    study = name.split(SEP, 1)[0] if SEP in name else None
    if study in studies(cfg):
        classes = study_classes(cfg, study)
        if name in classes:
            return classes[name]
        raise KeyError(f"study '{study}' has no class '{name}' (classes: {sorted(classes)})")
    raise KeyError(
        f"generator '{name}' is not in params.yaml (profile {cfg['profile']}); known: {sorted(cfg['generators'])}"
    )


def split_config(cfg: dict, name: str) -> dict:
    """The study's split: the benchmark's split settings overlaid by the study's `split`."""
    return deep_merge(cfg["split"], studies(cfg)[name].get("split") or {})


def index_path(cfg: dict, name: str) -> str:
    return f"data/{cfg['profile']}/studies/{name}/index.parquet"


def describe(cfg: dict, name: str) -> dict:
    """What a run records about its study (and what the experiment's params hash covers)."""
    st = studies(cfg)[name]
    base = cfg["generators"][st["base"]]
    return {
        "name": name,
        "label": st.get("label", name),
        "base": st["base"],
        "vary": st["vary"],
        "architecture": st.get("architecture") or base.get("pipeline") or base["family"],
        "values": list(st["values"]),
        "labels": class_labels(st),
        "classes": list(study_classes(cfg, name)),
        "spec": st.get("spec") or {},
        "split": split_config(cfg, name),
    }


def check(cfg: dict, schema: dict) -> None:
    """Semantic checks the schema cannot express; every class spec must be a valid generator."""
    for name, st in studies(cfg).items():
        where = f"hyperparameter_studies.{name}"
        for key in ("base", "vary", "values"):
            if key not in st:
                raise ConfigError(f"params.yaml: {where}.{key}: required (profile {cfg['profile']})")
        if SEP in name:
            raise ConfigError(f"params.yaml: {where}: study names may not contain '{SEP}'")
        if st["base"] not in cfg["generators"]:
            raise ConfigError(
                f"params.yaml: {where}.base: '{st['base']}' is not a generator (known: {sorted(cfg['generators'])})"
            )
        labels = class_labels(st)
        if st.get("labels") is not None and len(labels) != len(st["values"]):
            raise ConfigError(f"params.yaml: {where}.labels: {len(labels)} labels for {len(st['values'])} values")
        if len(set(labels)) != len(labels) or len(set(map(str, st["values"]))) != len(st["values"]):
            raise ConfigError(f"params.yaml: {where}: values and labels must be distinct")
        gen_schema = dict(schema["$defs"]["generator"], **{"$defs": schema["$defs"]})
        for cls, spec in study_classes(cfg, name).items():
            validate(spec, gen_schema, source=f"params.yaml: {where} (class {cls})")
            if "fixed_seed" in spec and spec.get("images_per_prompt", 1) > 1:
                raise ConfigError(
                    f"params.yaml: {where}: fixed_seed with images_per_prompt > 1 renders identical copies"
                )
