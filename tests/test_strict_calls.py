"""Generator settings reach the pipeline or stop the render, naming the pipeline and what it takes;
two-stage pipelines get both stages explicitly; provenance records what was passed."""

import inspect
import json

import diffusers
import pytest

from attribench.core import config
from attribench.data.generators.base import RenderItem
from attribench.data.generators.diffusers_backend import (
    DiffusersBackend,
    UnsupportedSetting,
    call_settings,
    load_kwargs,
)
from attribench.data.zoo import build_pipeline


def accepted(name):
    return set(inspect.signature(getattr(diffusers, name).__call__).parameters)


def test_cascade_guidance_without_a_stage_is_an_error_naming_the_pipeline_and_its_parameters():
    spec = {"steps": 20, "guidance": 4.0, "width": 1024, "height": 1024}  # the old paper entry
    with pytest.raises(UnsupportedSetting, match="StableCascadeCombinedPipeline is two-stage"):
        call_settings(
            "StableCascadeCombinedPipeline", accepted("StableCascadeCombinedPipeline"), spec, "stable_cascade"
        )


def test_every_paper_diffusers_entry_maps_onto_its_real_call_signature():
    cfg = config.load("params.yaml", {"profile": "paper"})
    for gen, spec in cfg["generators"].items():
        if spec["backend"] != "diffusers":
            continue
        settings = call_settings(spec["pipeline"], accepted(spec["pipeline"]), spec, gen)
        assert set(settings) <= accepted(spec["pipeline"])
    cascade = call_settings(
        "StableCascadeCombinedPipeline",
        accepted("StableCascadeCombinedPipeline"),
        cfg["generators"]["stable_cascade"],
        "stable_cascade",
    )
    assert cascade == {
        "prior_num_inference_steps": 20,
        "prior_guidance_scale": 4.0,
        "num_inference_steps": 10,
        "decoder_guidance_scale": 0.0,
        "width": 1024,
        "height": 1024,
    }


def test_unknown_call_kwarg_and_stray_prior_setting_are_errors():
    sd = accepted("StableDiffusionPipeline")
    with pytest.raises(
        UnsupportedSetting,
        match=r"call_kwargs.use_resolution_binning: StableDiffusionPipeline.__call__ has no .* it takes: .*guidance_scale",
    ):
        call_settings("StableDiffusionPipeline", sd, {"call_kwargs": {"use_resolution_binning": False}}, "x")
    with pytest.raises(UnsupportedSetting, match="two-stage"):
        call_settings("StableDiffusionPipeline", sd, {"prior_steps": 10}, "x")
    with pytest.raises(UnsupportedSetting, match="DDPMPipeline.__call__ has no 'guidance_scale'"):
        call_settings("DDPMPipeline", accepted("DDPMPipeline"), {"steps": 4, "guidance": 5.0}, "x")


def test_safety_checker_off_wherever_the_pipeline_has_one():
    for name in ("StableDiffusionPipeline", "LatentConsistencyModelPipeline"):
        kw = load_kwargs(getattr(diffusers, name), {})
        assert kw["safety_checker"] is None and kw["requires_safety_checker"] is False
    assert "safety_checker" not in load_kwargs(diffusers.StableDiffusionXLPipeline, {})


def test_render_records_the_settings_actually_passed(one_torch_thread):
    pipe = build_pipeline("lcm", seed=0, resolution=64)
    spec = {
        "backend": "diffusers",
        "family": "lcm",
        "model": "models/zoo/x",
        "steps": 2,
        "guidance": 1.0,
        "width": 64,
        "height": 64,
    }
    item = RenderItem(key="p:0", prompt="a red cube", prompt_id="p", prompt_source="natural", image_index=0, seed=3)
    row = DiffusersBackend().render(pipe, "lcm_x", spec, [item])[0]
    assert json.loads(row["call_settings"]) == {
        "num_inference_steps": 2,
        "guidance_scale": 1.0,
        "width": 64,
        "height": 64,
    }
    ddpm = {"backend": "diffusers", "family": "ddpm", "model": "models/zoo/y", "steps": 2, "width": 32, "height": 32}
    with pytest.raises(UnsupportedSetting, match=r"width x height \(32, 32\) asked, DDPMPipeline rendered \(64, 64\)"):
        DiffusersBackend().render(build_pipeline("ddpm", seed=0, resolution=64), "ddpm_x", ddpm, [item])
