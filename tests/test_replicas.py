"""Hub-shaped replicas: the paper's own hub ids load offline through from_pretrained at the pinned
revision from the project's hub cache; fetch_models verifies them and names what is missing."""

import hashlib
import inspect

import huggingface_hub
import pytest
import yaml

from attribench.core import config, hub
from attribench.core.schema import ConfigError, deep_merge
from attribench.data.generators.base import RenderItem, pinned
from attribench.data.generators.diffusers_backend import DiffusersBackend
from attribench.data.replicas import build_replicas, snapshot_dir

SD15 = "stable-diffusion-v1-5/stable-diffusion-v1-5"


def rehearsal_pins(raw):
    """Test-only revisions (sha1 of the id) standing in for the real commit ids, which need confirming."""
    pins = raw["profiles"]["paper"]["hub_models"]
    for model in pins:
        pins[model]["revision"] = hashlib.sha1(model.encode()).hexdigest()
    return raw


@pytest.fixture(scope="module")
def paper_raw():
    with open("params.yaml") as f:
        return rehearsal_pins(deep_merge(yaml.safe_load(f), {"profile": "paper"}))


@pytest.fixture(scope="module")
def cache(tmp_path_factory, paper_raw):
    cache = tmp_path_factory.mktemp("hub")
    build_replicas(config.resolve(paper_raw), cache, only=[SD15, "SimianLuo/LCM_Dreamshaper_v7"])
    return cache


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)


def test_paper_sd15_entry_loads_offline_from_the_replica_with_its_real_class(cache, paper_raw, one_torch_thread):
    cfg = config.resolve(paper_raw)
    spec = {
        **pinned(cfg, cfg["generators"]["sd15"]),
        "cache_dir": str(cache),
        "dtype": "float32",
        "width": 64,
        "height": 64,
        "steps": 2,
    }  # only size, steps and dtype scaled down
    pipe = DiffusersBackend().load(spec, "cpu")
    assert type(pipe).__name__ == "StableDiffusionPipeline" and pipe.safety_checker is None
    item = RenderItem(key="p:0", prompt="a cat", prompt_id="p", prompt_source="natural", image_index=0, seed=1)
    row = DiffusersBackend().render(pipe, "sd15", spec, [item])[0]
    assert row["checkpoint"] == f"{SD15}@{spec['revision']}" and (row["width"], row["height"]) == (64, 64)


def test_the_replica_ships_a_safety_checker_that_the_backend_turns_off(cache, paper_raw):
    import diffusers

    cfg = config.resolve(paper_raw)
    rev = hub.revision(cfg, "SimianLuo/LCM_Dreamshaper_v7")
    raw_pipe = diffusers.LatentConsistencyModelPipeline.from_pretrained(
        "SimianLuo/LCM_Dreamshaper_v7", revision=rev, cache_dir=str(cache)
    )
    assert raw_pipe.safety_checker is not None  # what the paper entry got before the fix
    spec = {**pinned(cfg, cfg["generators"]["lcm_4step"]), "cache_dir": str(cache), "dtype": "float32"}
    assert DiffusersBackend().load(spec, "cpu").safety_checker is None


def test_reverting_the_hub_id_fix_fails(cache, paper_raw):
    old = deep_merge(
        paper_raw, {"profiles": {"paper": {"generators": {"sd15": {"model": "runwayml/stable-diffusion-v1-5"}}}}}
    )
    with pytest.raises(ConfigError, match="runwayml/stable-diffusion-v1-5"):
        config.resolve(old)  # not pinned anywhere
    spec = {
        **config.resolve(paper_raw)["generators"]["sd15"],
        "model": "runwayml/stable-diffusion-v1-5",
        "cache_dir": str(cache),
        "dtype": "float32",
    }
    with pytest.raises(OSError):  # and not loadable: the id does not exist (offline: not in the cache)
        DiffusersBackend().load(spec, "cpu")


def test_fetch_models_verifies_present_ids_and_names_a_missing_file(cache, paper_raw, monkeypatch):
    cfg = config.resolve(paper_raw)
    cfg["hub_models"] = {m: p for m, p in cfg["hub_models"].items() if m in (SD15, "SimianLuo/LCM_Dreamshaper_v7")}

    def no_network(*a, **k):
        raise AssertionError("fetch_models downloaded although everything was present")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", no_network)
    assert hub.fetch_models(cfg, cache) == []
    unet = snapshot_dir(cache, SD15, cfg["hub_models"][SD15]["revision"]) / "unet"
    weights = next(unet.glob("*.safetensors"))
    moved = weights.rename(weights.with_suffix(".away"))
    try:
        with pytest.raises(
            FileNotFoundError, match=rf"hub model {SD15}@\w+ is not complete.*'unet' has no weight file"
        ):
            hub.fetch_models(cfg, cache, download=False)
    finally:
        moved.rename(weights)


def test_unconfirmed_revisions_stop_fetch_naming_each_id():
    cfg = config.load("params.yaml", {"profile": "paper"})
    with pytest.raises(ConfigError, match=r"not confirmed \(null\) for:\n  CompVis/stable-diffusion-v1-1"):
        hub.fetch_models(cfg, "/nonexistent")


# ------------------------------------------------ every other paper hub id, timm files, input folders ----

TWO_STAGE_IDS = ["stabilityai/stable-cascade", "kandinsky-community/kandinsky-2-1"]
TRANSFORM_IDS = [
    "diffusers/stable-diffusion-xl-1.0-inpainting-0.1",
    "prs-eth/marigold-normals-v1-1",
    "prs-eth/marigold-iid-lighting-v1-1",
    "LiheYoung/depth-anything-small-hf",
    "openai/clip-vit-base-patch16",
]


@pytest.fixture(scope="module")
def cache2(tmp_path_factory, paper_raw):
    cache = tmp_path_factory.mktemp("hub2")
    cfg = config.resolve(paper_raw)
    cfg["hub_models"]["openai/clip-vit-base-patch16"].pop("local_dir")  # not into models/ from a test
    build_replicas(cfg, cache, only=TWO_STAGE_IDS + TRANSFORM_IDS)
    return cache


def test_every_hub_id_of_the_paper_profile_has_a_replica_builder(paper_raw):
    from attribench.data.replicas import DECODER_OF, prior_id, targets

    cfg = config.resolve(paper_raw)
    todo = targets(cfg)
    covered = set(todo) | {prior_id(m) for m, p in todo.items() if p in DECODER_OF}
    assert covered == set(cfg["hub_models"])


@pytest.mark.parametrize("gen", ["stable_cascade", "kandinsky21"])
def test_two_stage_entries_load_both_repos_at_their_own_pins_and_render(cache2, paper_raw, gen, one_torch_thread):
    cfg = config.resolve(paper_raw)
    spec = {
        **pinned(cfg, cfg["generators"][gen]),
        "cache_dir": str(cache2),
        "dtype": "float32",
        "width": 128 if gen == "stable_cascade" else 64,
        "height": 128 if gen == "stable_cascade" else 64,
        "steps": 2,
        "prior_steps": 2,
    }  # only scale changes
    pipe = DiffusersBackend().load(spec, "cpu")
    assert type(pipe).__name__ == cfg["generators"][gen]["pipeline"]
    item = RenderItem(key="p:0", prompt="a cat", prompt_id="p", prompt_source="natural", image_index=0, seed=1)
    row = DiffusersBackend().render(pipe, gen, spec, [item])[0]
    assert (row["width"], row["height"]) == (spec["width"], spec["height"])
    assert '"prior_num_inference_steps": 2' in row["call_settings"]


def test_reverting_the_stable_cascade_fixes_fails(cache2, paper_raw, monkeypatch):
    import diffusers

    from attribench.data.generators import diffusers_backend as db

    cfg = config.resolve(paper_raw)
    spec = {**pinned(cfg, cfg["generators"]["stable_cascade"]), "cache_dir": str(cache2), "dtype": "float32"}
    # 1. loading as before (the combined class's own from_pretrained at the pinned revision): the prior
    #    repo its model card names is asked for at the decoder's commit, which it does not have.
    with pytest.raises((OSError, ValueError)):
        diffusers.StableCascadeCombinedPipeline.from_pretrained(
            spec["model"], revision=spec["revision"], cache_dir=str(cache2)
        )
    # 2. per-stage settings: without prior_steps / prior_guidance the call is refused, and with the
    #    old mapping (guidance -> guidance_scale) the pipeline has no such parameter.
    pipe = DiffusersBackend().load(spec, "cpu")
    params = set(inspect.signature(pipe.__call__).parameters)
    no_prior = {k: v for k, v in spec.items() if k not in ("prior_steps", "prior_guidance")}
    with pytest.raises(db.UnsupportedSetting, match="two-stage"):
        db.call_settings("StableCascadeCombinedPipeline", params, no_prior, "stable_cascade")
    monkeypatch.setattr(
        db, "TWO_STAGE", {k: v for k, v in db.TWO_STAGE.items() if k != "StableCascadeCombinedPipeline"}
    )
    with pytest.raises(db.UnsupportedSetting, match="has no 'guidance_scale'"):
        db.call_settings("StableCascadeCombinedPipeline", params, no_prior, "stable_cascade")


def test_transform_and_text_encoder_replicas_load_offline_with_their_real_classes(
    cache2, paper_raw, monkeypatch, one_torch_thread
):
    import numpy as np

    from attribench.models.text_encoders import CLIPText
    from attribench.transforms import inpaint, learned
    from attribench.transforms.registry import BatchMeta
    from attribench.transforms import weights
    from attribench.transforms.weights import NeedsWeights, resolve_weights
    from attribench.experiments.specs import transform_status

    monkeypatch.setattr(weights, "_HUB", dict(weights._HUB))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache2))
    # Main before: transforms looked hub ids up unpinned (refs/main), which a fetched commit does not
    # have: the real run failed where the rehearsal (whose replicas wrote refs/main) passed.
    with pytest.raises(NeedsWeights):
        resolve_weights("LiheYoung/depth-anything-small-hf")
    # At DAG build (no CLI has configured the pins) a report's runs come out as the report job sees them.
    monkeypatch.setattr(weights, "HUB_CACHE", cache2)
    assert transform_status(config.resolve(paper_raw), "fig7_depth") == "ok"
    assert transform_status(config.resolve(paper_raw), "fig7_normals") == "ok"
    weights.configure(config.resolve(paper_raw), cache2)  # as the CLI does for every job
    imgs = (np.random.default_rng(0).random((1, 64, 64, 3)) * 255).astype(np.uint8)
    meta = BatchMeta.build(imgs, ids=["a"], prompts=["a cat"])
    for fn, kw in [
        (learned.depth, {}),
        (learned.normals, {}),
        (learned.albedo, {}),
        (inpaint.inpaint, {"band": "small", "steps": 2}),
    ]:
        assert fn(imgs, meta, **kw).shape == imgs.shape
    clip = CLIPText(resolve_weights("openai/clip-vit-base-patch16"))
    assert type(clip.model).__name__ == "CLIPTextModelWithProjection"


def test_timm_weight_file_has_exactly_timms_keys_and_loads(tmp_path):
    import timm
    import torch
    from safetensors import safe_open
    from safetensors.torch import save_file

    from attribench.data.replicas import timm_weight_files, write_timm_weights
    from attribench.models.backbones import load_backbone

    cfg = config.load("params.yaml", {"profile": "paper"})
    files = timm_weight_files(cfg)
    assert files["models/densenet121.safetensors"] == "densenet121.tv_in1k"
    assert files["models/dinov2_vitl14.safetensors"] == "vit_large_patch14_dinov2.lvd142m"
    path = write_timm_weights("densenet121.tv_in1k", tmp_path / "densenet121.safetensors")
    with safe_open(str(path), "pt") as f:
        assert set(f.keys()) == set(timm.create_model("densenet121.tv_in1k", pretrained=False).state_dict())
    assert load_backbone("timm:densenet121.tv_in1k", {"weights_file": str(path)}).dim == 1024
    real = tmp_path / "real.safetensors"
    save_file({"w": torch.zeros(1)}, str(real))
    with pytest.raises(FileExistsError, match="real weight file"):
        write_timm_weights("densenet121.tv_in1k", real)


def test_rehearsal_inputs_in_the_layouts_the_paper_profile_reads(tmp_path):
    from attribench.data.generators.folder_backend import caption_sources, read_captions
    from attribench.data.prompts import coco_captions
    from attribench.data.replicas import build_rehearsal_inputs

    cfg = config.load("params.yaml", {"profile": "paper", "rehearsal": True})
    build_rehearsal_inputs(cfg, tmp_path)
    gens = cfg["generators"]
    assert len(coco_captions(tmp_path / cfg["prompts"]["sources"]["natural"]["path"], 40)) == 40
    caps = read_captions(tmp_path / gens["real"]["captions"])
    assert all((tmp_path / gens["real"]["path"] / f).is_file() for f in caps)
    for mj in ("midjourney_52", "midjourney_6"):
        spec = {**gens[mj], "captions": str(tmp_path / gens[mj]["captions"])}
        assert set(caption_sources(mj, spec, cfg).values()) == {"natural", "creative"}
    # No two stand-in images share bytes, across folders too (Midjourney 5.2 and 6 did: an image in two classes)
    files = [f for g in ("real", "midjourney_52", "midjourney_6") for f in (tmp_path / gens[g]["path"]).iterdir()]
    images = [f for f in files if f.suffix in (".png", ".jpg")]
    assert len(images) == 3 * 120 and len({hashlib.sha256(f.read_bytes()).digest() for f in images}) == len(images)
    real_data = tmp_path / "data/external/edits/magnific"
    (real_data / ".replica").unlink()
    with pytest.raises(FileExistsError, match="real data"):
        build_rehearsal_inputs(cfg, tmp_path)
