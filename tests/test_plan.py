"""`attribench plan`: what a profile renders, what its tables read, and what that costs."""

import inspect
import math
from pathlib import Path

import diffusers
import pandas as pd
import pytest

from attribench.cli import main
from attribench.core import config
from attribench.data.generators.base import PRIOR_DEFAULT_STEPS
from attribench.data.plan import plan


@pytest.fixture(scope="module")
def paper():
    return config.load("params.yaml", {"profile": "paper"})


def test_rendered_is_prompts_times_images_and_covers_what_is_read(paper):
    df = plan(paper).set_index("generator")
    for gen, row in df.drop("total").iterrows():
        if pd.isna(row["images_rendered"]):  # folder imports: the folder decides
            continue
        assert row["images_rendered"] == row["prompts"] * row["images_per_prompt"]
        if row["kind"].startswith("study:"):  # each study class renders what its split reads, + <= 5%
            assert row["images_read"] <= row["images_rendered"] <= 1.05 * row["images_read"], gen
    assert df.loc["total", "gpu_hours"] == pytest.approx(df.drop("total")["gpu_hours"].sum())


def test_every_paper_diffusers_class_has_a_throughput_with_a_source(paper):
    df = plan(paper)
    diff = df[df["backend"] == "diffusers"]
    assert diff["gpu_hours"].notna().all() and diff["throughput_source"].str.len().gt(10).all()


def test_unset_prior_steps_are_costed_at_the_pipelines_real_default():
    for name, steps in PRIOR_DEFAULT_STEPS.items():
        assert (
            inspect.signature(getattr(diffusers, name).__call__).parameters["prior_num_inference_steps"].default
            == steps
        )


def test_paper_render_hours_at_least_40_percent_below_the_old_settings(paper):
    raw = config.yaml.safe_load(Path("params.yaml").read_text())
    old = raw["profiles"]["paper"]
    for spec in old["generators"].values():  # the settings before the fix: 5 images per prompt ...
        if spec["backend"] == "diffusers":
            spec["images_per_prompt"] = 5
    old["generators"]["stable_cascade"].pop("prior_steps")  # ... the prior at its default 60 steps
    old["generators"]["stable_cascade"]["steps"] = 20
    for st in old["hyperparameter_studies"].values():  # ... and every prompt for the studies
        st["spec"].pop("max_prompts", None)
    before = plan(config.resolve({**raw, "profile": "paper"})).iloc[-1]
    after = plan(paper).iloc[-1]
    assert after["gpu_hours"] <= 0.6 * before["gpu_hours"]
    assert after["raw_gb"] < before["raw_gb"]


def test_cli_writes_the_csv_for_smoke_without_throughputs(tmp_path, capsys):
    out = tmp_path / "plan.csv"
    assert main(["plan", "--out", str(out)]) == 0
    df = pd.read_csv(out)
    assert df["generator"].iloc[-1] == "total" and math.isnan(df["gpu_hours"].iloc[-1])
    assert "render plan, profile smoke" in capsys.readouterr().out
