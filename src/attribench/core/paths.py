"""Every path the pipeline reads or writes, in one place; the Snakemake rules use it too.

All paths are relative to the working directory (the workflow root): data of one profile under
data/<profile>/, so a paper run never overwrites smoke data; results, runs and logs under results/.
"""

from __future__ import annotations

from pathlib import Path

RESULTS = Path("results")
RUNS = RESULTS / "runs"
PLOTS = RESULTS / "plots"  # DVC plot data (dvc.yaml `plots:`), one file per run and test set
METRICS = RESULTS / "metrics"  # DVC metrics, one JSON per report
MODELS_ZOO = Path("models/zoo")
EXTERNAL = Path("data/external")  # where users put data this workflow does not make
REAL_SAMPLES = Path("data/real/samples")
PLAN = RESULTS / "plan.csv"  # `attribench plan`: renders, reads, GPU-hours and GB per class
HUB_CACHE = Path("models/hub")  # HF_HUB_CACHE for fetch_models and the rehearsal replicas


def data_root(cfg_or_profile: dict | str) -> Path:
    profile = cfg_or_profile if isinstance(cfg_or_profile, str) else cfg_or_profile["profile"]
    return Path("data") / profile


def logs(cfg: dict) -> Path:
    return RESULTS / "logs" / cfg["profile"]


def prompts(cfg: dict, source: str) -> Path:
    return data_root(cfg) / "prompts" / f"{source}.parquet"


def raw_shard(cfg: dict, generator: str, chunk: str) -> Path:
    return data_root(cfg) / "shards" / "raw" / generator / f"{chunk}.parquet"


def delivered_shard(cfg: dict, generator: str, chunk: str) -> Path:
    return data_root(cfg) / "shards" / "delivered" / generator / f"{chunk}.parquet"


def dataset_index(cfg: dict) -> Path:
    return data_root(cfg) / "dataset" / "index.parquet"


def class_index(cfg: dict, generator: str) -> Path:
    """One class's rows of the split index: what a run reads, so a new class leaves other runs alone."""
    return data_root(cfg) / "dataset" / "classes" / f"{generator}.parquet"


def study_index(cfg: dict, study: str) -> Path:
    return data_root(cfg) / "studies" / study / "index.parquet"


def features_dir(cfg: dict) -> Path:
    return data_root(cfg) / "features"


def pixel_cache_dir(cfg: dict) -> Path:
    """uint8 images at a training input size, one file per (size, image ids) content key."""
    return data_root(cfg) / "cache" / "pixels"


def derived_dir(cfg: dict) -> Path:
    return data_root(cfg) / "derived"


def edited_shard(cfg: dict, tool: str, band: str) -> Path:
    return data_root(cfg) / "edits" / tool / f"{band}.parquet"


def run_dir(experiment: str) -> Path:
    return RUNS / experiment


def run_metrics(experiment: str) -> Path:
    return RUNS / experiment / "metrics.json"


def run_model(experiment: str) -> Path:
    return RUNS / experiment / "model.safetensors"


def report_output(name: str, kind: str, dir_suffix: str = "") -> Path:
    """results/<name>.csv|.md|.png, results/metrics/<name>.json, results/<name>_<dir_suffix>/."""
    if kind == "metrics":
        return METRICS / f"{name}.json"
    if kind == "dir":
        return RESULTS / f"{name}_{dir_suffix}"
    return RESULTS / f"{name}.{kind}"


def zoo_model_dir(cfg: dict, spec: dict) -> str | None:
    """The zoo pipeline a diffusers spec loads, if the project builds it (smoke): then it is a job input."""
    model = Path(spec.get("model", ""))
    if spec.get("backend") == "diffusers" and model.parent == MODELS_ZOO and model.name in cfg.get("zoo", {}):
        return str(model)
    return None


def edit_targets(cfg: dict) -> dict[tuple[str, str], str]:
    """(tool, band) -> edited shard path, for every tool in params (band 'all' for imported edits)."""
    out = {}
    for tool, t in cfg.get("post_editing", {}).get("tools", {}).items():
        for band in t.get("bands", ["all"]):
            out[(tool, band)] = str(edited_shard(cfg, tool, band))
    return out
