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
from attribench.data.plan import MIN_SPLIT_MARGIN_SD, plan, split_margin
from attribench.data.splits import assign_splits


@pytest.fixture(scope="module")
def paper():
    return config.load("params.yaml", {"profile": "paper"})


def test_rendered_is_prompts_times_images_and_covers_what_is_read(paper):
    df = plan(paper).set_index("generator")
    for gen, row in df.drop("total").iterrows():
        if pd.isna(row["images_rendered"]):  # folder imports: the folder decides
            continue
        assert row["images_rendered"] == row["prompts"] * row["images_per_prompt"]
        if row["kind"].startswith("study:"):  # what its split reads, + the margin a hash split needs (<= 10%)
            assert row["images_read"] <= row["images_rendered"] <= 1.10 * row["images_read"], gen
    assert df.loc["total", "gpu_hours"] == pytest.approx(df.drop("total")["gpu_hours"].sum())


def test_every_paper_split_clears_its_counts_by_three_sd(paper):
    # Main before: the studies' 8,500 prompts at 0.8/0.1/0.1 cleared 2500 val / test images by 0.6 sd,
    # so a study's split could come up short after all its renders (the rehearsal's did: 0 val images).
    df = plan(paper).set_index("generator").drop("total")
    known = df[df["prompts"].notna() & (df["backend"] != "folder")]
    assert len(known) > 60 and (known["split_margin_sd"] >= MIN_SPLIT_MARGIN_SD).all(), known[
        "split_margin_sd"
    ].nsmallest(3)


def test_split_margin_predicts_how_often_the_hash_split_comes_up_short():
    # 400 prompt groups at 0.8/0.1/0.1, 2 images each: val and test hold 40 groups on average.
    ids = pd.Series([f"prompt-{i}" for i in range(400)])
    fractions = {"train": 0.8, "val": 0.1, "test": 0.1}

    def short_rate(counts):
        short = 0
        for seed in range(200):
            sizes = assign_splits(ids, fractions, seed).value_counts()
            short += any(2 * sizes.get(s, 0) < n for s, n in counts.items())
        return short / 200

    at_mean = {"train": 600, "val": 80, "test": 80}  # exactly the expected sizes: margin 0
    assert split_margin(400, 2, fractions, at_mean) == pytest.approx(0.0)
    assert 0.5 <= short_rate(at_mean) <= 0.9  # either of val / test short about half the time
    safe = {"train": 580, "val": 44, "test": 44}  # val / test need 22 groups of 40 +- 6
    assert split_margin(400, 2, fractions, safe) == pytest.approx((40 - 22) / 6, rel=1e-6)
    assert short_rate(safe) == 0


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
