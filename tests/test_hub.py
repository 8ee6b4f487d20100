"""Every hub id a profile loads is pinned in `hub_models`; the list is complete and checked."""

import inspect

import pytest
import yaml

from attribench.core import config, hub
from attribench.core.schema import ConfigError, deep_merge


def paper_raw():
    return deep_merge(yaml.safe_load(open("params.yaml")), {"profile": "paper"})


def test_paper_names_only_current_pinned_hub_ids():
    cfg = config.resolve(paper_raw())
    refs = hub.referenced(cfg)
    assert "runwayml/stable-diffusion-v1-5" not in refs  # removed from the hub
    assert "stable-diffusion-v1-5/stable-diffusion-v1-5" in refs
    assert set(refs) == set(cfg["hub_models"])


def test_a_hub_id_missing_from_hub_models_is_a_config_error_naming_it():
    raw = paper_raw()
    del raw["profiles"]["paper"]["hub_models"]["SimianLuo/LCM_Dreamshaper_v7"]
    with pytest.raises(ConfigError, match=r"SimianLuo/LCM_Dreamshaper_v7 \(named by generators.lcm_2step.model"):
        config.resolve(raw)


def test_branch_names_are_not_pins_and_unconfirmed_pins_refuse_to_load():
    raw = paper_raw()
    raw["profiles"]["paper"]["hub_models"]["stabilityai/sdxl-turbo"]["revision"] = "main"
    with pytest.raises(ConfigError, match="sdxl-turbo.revision: 'main' is not a 40-hex commit id"):
        config.resolve(raw)
    cfg = config.resolve(paper_raw())
    with pytest.raises(ConfigError, match="stabilityai/sdxl-turbo.revision is not confirmed"):
        hub.revision(cfg, "stabilityai/sdxl-turbo")
    assert hub.revision(cfg, "models/zoo/sd_tiny") is None


def test_transform_default_models_match_the_transforms():
    from attribench.transforms import inpaint, learned, perturb

    funcs = {
        "sdedit": perturb.sdedit,
        "inpaint": inpaint.inpaint,
        "depth": learned.depth,
        "normals": learned.normals,
        "albedo": learned.albedo,
        "shading": learned.shading,
    }
    for name, fn in funcs.items():
        assert inspect.signature(fn).parameters["model"].default == hub.TRANSFORM_DEFAULT_MODELS[name], name
