"""`rehearsal=true`: the paper profile's own entries, only scaled down."""

import pytest
import yaml

from attribench.core import config
from attribench.core.rehearsal import SCALE_KEYS, stand_in_revision
from attribench.core.schema import ConfigError, deep_merge
from attribench.data.plan import plan

IDENTITY = (
    "backend",
    "model",
    "pipeline",
    "scheduler",
    "steps",
    "guidance",
    "prior_steps",
    "prior_guidance",
    "pipeline_kwargs",
    "call_kwargs",
    "prompt_sources",
    "path",
    "captions",
    "family",
    "source",
)


def unscaled(entry):
    """An entry without its scale settings (what a rehearsal may change), blocks left empty dropped."""
    if not isinstance(entry, dict):
        return entry
    out = {k: unscaled(v) for k, v in entry.items() if k not in SCALE_KEYS}
    return {k: v for k, v in out.items() if v != {}}


@pytest.fixture(scope="module")
def raw():
    with open("params.yaml") as f:
        return deep_merge(yaml.safe_load(f), {"profile": "paper"})


def test_rehearsal_keeps_every_entry_and_setting_and_only_scales(raw):
    paper = config.resolve(raw)
    reh = config.resolve({**raw, "rehearsal": True})
    assert reh["profile"] == "paper-rehearsal"  # its own data/ tree
    assert reh["generators"].keys() == paper["generators"].keys()
    assert reh["tables"] == paper["tables"]
    for kind in ("experiments", "attributors"):  # same entries; only their scale may differ
        assert reh[kind].keys() == paper[kind].keys()
        assert {n: unscaled(e) for n, e in reh[kind].items()} == {n: unscaled(e) for n, e in paper[kind].items()}
    assert reh["experiments"]["fig15_res1024"]["training"]["input_size"] < 1024  # the scale did change
    assert reh["hub_models"].keys() == paper["hub_models"].keys()
    for model, pin in paper["hub_models"].items():  # confirmed pins stay; null ones get a stand-in revision
        want = pin["revision"] or stand_in_revision(model)
        assert reh["hub_models"][model]["revision"] == want and reh["hub_models"][model].get("stand_in") == (
            pin["revision"] is None
        )
    for gen, spec in paper["generators"].items():
        assert {k: spec.get(k) for k in IDENTITY} == {k: reh["generators"][gen].get(k) for k in IDENTITY}, gen
    for name in paper["datasets"]:
        assert {k: v for k, v in paper["datasets"][name].items() if k not in ("counts", "train_per_class")} == {
            k: v for k, v in reh["datasets"][name].items() if k not in ("counts", "train_per_class")
        }
    assert plan(reh).iloc[-1]["images_rendered"] < 2500  # toy scale


def test_rehearsal_block_may_not_change_what_runs(raw):
    bad = deep_merge(
        raw,
        {
            "rehearsal": True,
            "profiles": {"paper": {"rehearsal": {"generators": {"sd15": {"model": "models/zoo/sd_tiny"}}}}},
        },
    )
    with pytest.raises(
        ConfigError, match=r"profiles.paper.rehearsal.generators.sd15.model: a rehearsal may change only scale"
    ):
        config.resolve(bad)
    bad = deep_merge(
        raw, {"rehearsal": True, "profiles": {"paper": {"rehearsal": {"generators": {"sd_tiny": {"width": 64}}}}}}
    )
    with pytest.raises(ConfigError, match="'sd_tiny' is not one"):
        config.resolve(bad)
    # an entry without a `training` block may get one, but only to scale it
    extra = {"rehearsal": True, "profiles": {"paper": {"rehearsal": {"attributors": {"clip_finetune": {}}}}}}
    extra["profiles"]["paper"]["rehearsal"]["attributors"]["clip_finetune"]["training"] = {"lr": 1.0}
    with pytest.raises(ConfigError, match=r"clip_finetune.training.lr: a rehearsal may change only scale"):
        config.resolve(deep_merge(raw, extra))


def test_smoke_has_no_rehearsal_block():
    with pytest.raises(ConfigError, match="needs a profiles.smoke.rehearsal block"):
        config.load("params.yaml", {"rehearsal": True})
