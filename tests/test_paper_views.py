"""The paper profile's views are the paper's tasks: 13 classes (12 generators + real) for the main
and study views, 12 generators for the cross-domain views (Xu et al. Tables 1-7, Figs. 3/6/7/15)."""

import pytest

from attribench.core import config
from attribench.data.views import planned_classes

PAPER_GENERATORS = {
    "sd15",
    "sd20",
    "sdxl",
    "sdxl_turbo",
    "lcm_2step",
    "lcm_4step",
    "stable_cascade",
    "kandinsky21",
    "dalle2",
    "dalle3",
    "midjourney_52",
    "midjourney_6",
}


@pytest.fixture(scope="module")
def paper():
    return config.load("params.yaml", {"profile": "paper"})


@pytest.mark.parametrize("view", ["all", "all_n400", "all_n800", "all_n1600", "study"])
def test_main_and_study_views_are_13_way(paper, view):
    assert set(planned_classes(paper, view)) == PAPER_GENERATORS | {"real"}


@pytest.mark.parametrize("view", ["natural", "creative", "both"])
def test_cross_domain_views_are_12_way(paper, view):
    assert set(planned_classes(paper, view)) == PAPER_GENERATORS


def test_seen_view_leaves_out_exactly_the_heldout_generators(paper):
    assert set(planned_classes(paper, "seen")) == (PAPER_GENERATORS | {"real"}) - set(paper["heldout_generators"])


def test_every_view_an_experiment_trains_on_exists_and_is_nonempty(paper):
    for name, exp in paper["experiments"].items():
        if exp.get("study"):
            continue
        for view in [exp["train"], *exp.get("test", [])]:
            assert planned_classes(paper, view), f"experiment {name}: view {view} has no classes"
