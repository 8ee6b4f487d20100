"""Experiment specs: what a named experiment is (dataset views x attributor x training), resolved from params.

Pure functions over the resolved config, cheap to import: the Snakemake DAG uses them to name each run's
inputs (its split index, the runs it builds on) without importing torch.
"""

from __future__ import annotations

import json

from attribench.core import paths
from attribench.core.hp_studies import describe, index_path, studies
from attribench.core.paths import RUNS
from attribench.data.views import experiment_views, view_generators


def run_metrics(experiment: str) -> dict:
    """A finished run's metrics.json (a run is finished when that file exists)."""
    path = RUNS / experiment / "metrics.json"
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: train experiment '{experiment}' first")
    return json.loads(path.read_text())


def upstream_runs(attributor: dict) -> list[str]:
    """Experiments whose trained runs an attributor builds on: spec keys ending in `_run` name one
    experiment, keys ending in `_runs` a mapping or list of them (e.g. DeepFeatureX's base models)."""
    names = []
    for key, value in (attributor.get("spec") or {}).items():
        if key.endswith("_run"):
            names.append(value)
        elif key.endswith("_runs"):
            names += list(value.values()) if isinstance(value, dict) else list(value)
    return names


def resolve_runs(attributor_spec: dict) -> dict:
    """The spec with experiment names in `*_run(s)` keys replaced by their run directories."""
    out = dict(attributor_spec)
    for key, value in attributor_spec.items():
        if key.endswith("_run"):
            out[key] = str(RUNS / value)
        elif key.endswith("_runs"):
            out[key] = (
                {k: str(RUNS / v) for k, v in value.items()}
                if isinstance(value, dict)
                else [str(RUNS / v) for v in value]
            )
    return out


def experiment_spec(cfg: dict, name: str) -> dict:
    """Everything that determines a run's result (rule params hash this)."""
    if name not in cfg["experiments"]:
        raise KeyError(f"experiment '{name}' is not in params.yaml (known: {sorted(cfg['experiments'])})")
    exp = cfg["experiments"][name]
    att_name = exp["attributor"]
    if att_name not in cfg["attributors"]:
        raise KeyError(f"experiments.{name}.attributor: '{att_name}' is not in attributors")
    attributor = cfg["attributors"][att_name]
    training = {**cfg["training"], **attributor.get("training", {}), **exp.get("training", {})}
    tests = exp.get("test") or [exp["train"]]
    for up in upstream_runs(attributor):
        if up not in cfg["experiments"]:
            raise KeyError(f"attributors.{att_name}.spec names run '{up}', which is not in experiments")
    for ds in [exp["train"], *tests]:
        if ds not in cfg["datasets"]:
            raise KeyError(f"experiments.{name}: dataset '{ds}' is not in datasets")
    spec = {
        "name": name,
        "attributor_name": att_name,
        "attributor": attributor,
        "training": training,
        "train": exp["train"],
        "test": tests,
        "datasets": {d: cfg["datasets"][d] for d in {exp["train"], *tests}},
        "seed": cfg["split"]["seed"],
    }
    if exp.get("transform"):  # train and test on transformed images (Fig. 6 / 7 / 15 studies)
        from attribench.transforms import make_spec  # the transform plugins load torch: only for runs that have one

        try:
            spec["transform"] = make_spec(exp["transform"])
        except (KeyError, TypeError) as err:
            raise type(err)(f"experiments.{name}.transform: {err}") from None
        spec["delivery"] = cfg["delivery"]  # derived images are re-delivered
    if exp.get("study"):  # a hyperparameter study: its own split index and classes (Table 3)
        if exp["study"] not in studies(cfg):
            raise KeyError(f"experiments.{name}.study: '{exp['study']}' is not in hyperparameter_studies")
        spec["study"] = describe(cfg, exp["study"])  # only when set: other runs keep their params hash
    return spec


def streams_pixels(training: dict) -> bool:
    """A run's images stream from uint8 pixel files (pixelcache.py) unless its training turns the cache off."""
    return training.get("pixel_cache", True) is not False


def transform_status(cfg: dict, name: str) -> str:
    """ "ok", or why an experiment's transform cannot run here ("needs weights" / "not available")."""
    transform = experiment_spec(cfg, name).get("transform")
    if not transform:
        return "ok"
    from attribench.transforms import availability  # every transform plugin (torch): only for runs with one
    from attribench.transforms.weights import configure  # with availability: a transform's hub pins

    # Hub ids at their pinned revisions, as every job's CLI looks them up: a fetched commit has no
    # refs/main, so an unpinned look-up at DAG build said "needs weights" and left the run out of its
    # figure, while the report job (pinned) then asked for it (the all-targets rehearsal found this).
    configure(cfg)
    status = availability(transform)
    if status == "needs weights" and paths.zoo_model_dir(cfg, {"backend": "diffusers", **transform}):
        # A zoo pipeline the DAG builds before the run (a train input): on a fresh clone it is not there
        # yet when the DAG is built, but it will be when the run and its report run.
        return "ok"
    return status


def model_kwargs_for_size(attributor_spec: dict, input_size: int) -> dict:
    """A timm model built for a fixed input (e.g. EfficientFormerV2's `img_size`) follows the run's
    input size, so a resolution study (Fig. 15 left) only changes `training.input_size`."""
    kwargs = attributor_spec.get("model_kwargs") or {}
    if "img_size" in kwargs and kwargs["img_size"] != input_size:
        return {**attributor_spec, "model_kwargs": {**kwargs, "img_size": input_size}}
    return attributor_spec


def experiment_index(cfg: dict, name: str) -> list[str]:
    """The index files an experiment reads: its hyperparameter study's index, or the class index of
    every generator its train and test views can hold (so adding a class re-trains only the runs
    whose views contain it)."""
    exp = cfg["experiments"].get(name) or {}
    if exp.get("study"):
        return [index_path(cfg, exp["study"])]
    views = experiment_views(exp) if exp else []
    gens = sorted({g for v in views for g in view_generators(cfg, v)}) if exp else sorted(cfg["generators"])
    return [str(paths.class_index(cfg, g)) for g in gens]


def describe_model(attributor: dict) -> str:
    """What really ran, for the tables: the timm model, or backbone (+ text encoder) of a frozen head."""
    features = attributor.get("features") or {}
    parts = [f"{k}:{v.get('backbone') or v.get('encoder')}" for k, v in features.items()]
    spec = attributor.get("spec") or {}
    return " + ".join(parts) or spec.get("model") or spec.get("backbone") or attributor.get("kind", "?")


def uses_text(attributor: dict) -> bool:
    return "text" in (attributor.get("features") or {})


def is_image_text_model(attributor: dict) -> bool:
    """An image model trained end to end that also takes the prompt embedding (e.g. E.F. w/ text)."""
    return attributor.get("kind", "").endswith("_text")
