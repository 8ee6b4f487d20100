"""Hub-shaped replicas: for a hub id the paper profile loads, a tiny random-weight pipeline of the same
class and components, saved the way the hub serves it, into a Hugging Face hub cache at the pinned
revision (`models--org--name/snapshots/<revision>/` + `refs/main`). `from_pretrained(id, revision=...,
cache_dir=...)` then resolves it offline exactly as it would resolve the fetched repo, so a rehearsal
exercises the paper's own ids, classes, schedulers and call settings.

Built from the smoke zoo's tiny components (attribench.data.zoo). Repos that ship a safety checker
(SD 1.x, LCM Dreamshaper) get a tiny one too, so "safety checker off" is exercised, not assumed.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from attribench.core.hp_studies import all_study_generators
from attribench.core.hub import is_hub_id, revision
from attribench.data.zoo import build_pipeline

# pipeline class -> zoo family; the replica is that family's tiny pipeline (same class and components).
FAMILY_OF = {
    "StableDiffusionPipeline": "sd",
    "StableDiffusionXLPipeline": "sdxl",
    "LatentConsistencyModelPipeline": "lcm",
}
# Repos that ship a safety checker (model_index.json lists one); others have none.
WITH_SAFETY_CHECKER = ("CompVis/stable-diffusion-v1-", "stable-diffusion-v1-5/", "SimianLuo/LCM_Dreamshaper")


def snapshot_dir(cache: str | Path, model_id: str, revision: str) -> Path:
    return Path(cache) / f"models--{model_id.replace('/', '--')}" / "snapshots" / revision


def _tiny_safety_checker():
    from diffusers.pipelines.stable_diffusion.safety_checker import StableDiffusionSafetyChecker as Checker
    from transformers import CLIPConfig, CLIPImageProcessor

    cfg = CLIPConfig(
        text_config={"hidden_size": 16, "intermediate_size": 32, "num_attention_heads": 2, "num_hidden_layers": 1,
                     "vocab_size": 64},
        vision_config={"hidden_size": 16, "intermediate_size": 32, "num_attention_heads": 2, "num_hidden_layers": 1,
                       "image_size": 32, "patch_size": 8},
        projection_dim=16,
    )
    return Checker(cfg), CLIPImageProcessor(crop_size=32, size={"shortest_edge": 32})


def build_replica(model_id: str, revision: str, pipeline: str, cache: str | Path, seed: int = 0,
                  variant: str | None = None, resolution: int = 64) -> Path:
    """Write the replica of `model_id` at `revision` into the hub cache; returns the snapshot dir."""
    if pipeline not in FAMILY_OF:
        raise NotImplementedError(f"no replica builder for {pipeline} ({model_id}); replicas exist for {sorted(FAMILY_OF)}")
    pipe = build_pipeline(FAMILY_OF[pipeline], seed=seed, resolution=resolution)
    if model_id.startswith(WITH_SAFETY_CHECKER):
        checker, extractor = _tiny_safety_checker()
        pipe.register_modules(safety_checker=checker, feature_extractor=extractor)
        pipe.register_to_config(requires_safety_checker=True)
    snap = snapshot_dir(cache, model_id, revision)
    if snap.exists():
        shutil.rmtree(snap)
    pipe.save_pretrained(snap, variant=variant)
    refs = snap.parent.parent / "refs"
    refs.mkdir(parents=True, exist_ok=True)
    (refs / "main").write_text(revision)
    return snap


def targets(cfg: dict) -> dict[str, str]:
    """{hub id: pipeline class} for every diffusers generator and study class that loads a hub id."""
    out: dict[str, str] = {}
    for spec in {**cfg["generators"], **all_study_generators(cfg)}.values():
        if spec.get("backend") == "diffusers" and is_hub_id(spec["model"]):
            out.setdefault(spec["model"], spec.get("pipeline", "DiffusionPipeline"))
    return out


def build_replicas(cfg: dict, cache: str | Path, only: list[str] | None = None) -> list[Path]:
    made = []
    for i, (model, pipeline) in enumerate(sorted(targets(cfg).items())):
        if only and model not in only:
            continue
        pin = cfg["hub_models"][model]
        made.append(build_replica(model, revision(cfg, model), pipeline, cache, seed=i, variant=pin.get("variant")))
    return made
