"""Hub-shaped replicas: the paper's own hub ids load offline through from_pretrained at the pinned
revision from the project's hub cache; fetch_models verifies them and names what is missing."""

import hashlib

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
