import subprocess
import sys

import pytest
import yaml

from attribench.core import config


def test_smoke_and_paper_profiles_resolve(repo):
    smoke = config.load(repo / "params.yaml", {"profile": "smoke"})
    paper = config.load(repo / "params.yaml", {"profile": "paper"})
    assert smoke["device"] == "cpu" and paper["split"]["counts"] == {"train": 3200, "val": 450, "test": 450}
    # The paper lists 12 generators plus the real class; the GAN class DeepFeatureX needs comes on top
    # and stays out of Xu et al.'s 13-way views.
    gans = {g for g, s in paper["generators"].items() if s["family"] == "gan"}
    assert gans == {"dcgan_faces"} and len(paper["generators"]) - len(gans) == 13 and "real" in paper["generators"]
    for view in ("all", "all_n400", "natural", "creative", "both"):
        assert gans <= set(paper["datasets"][view]["exclude"]), view
    assert {"diffusers", "gan", "folder"} <= {g["backend"] for g in smoke["generators"].values()}


@pytest.mark.parametrize(
    "override, key",
    [
        ({"profiles": {"smoke": {"generators": {"sd_tiny": {"stepz": 3}}}}}, "profiles.smoke.generators.sd_tiny.stepz"),
        (
            {"profiles": {"smoke": {"generators": {"sd_tiny": {"steps": "four"}}}}},
            "profiles.smoke.generators.sd_tiny.steps",
        ),
        ({"delivery": {"format": "gif"}}, "delivery.format"),
        ({"seeed": 1}, "seeed"),
    ],
)
def test_schema_error_names_the_key(repo, override, key):
    with pytest.raises(config.ConfigError) as err:
        config.load(repo / "params.yaml", override)
    assert key in str(err.value)


def test_unknown_profile_is_named(repo):
    with pytest.raises(config.ConfigError, match="'laptop' is not one of"):
        config.load(repo / "params.yaml", {"profile": "laptop"})


def test_snakemake_stops_before_any_job_and_names_the_key(repo, tmp_path):
    bad = yaml.safe_load((repo / "params.yaml").read_text())
    bad["profiles"]["smoke"]["generators"]["sd_tiny"]["guidnce"] = 3.0
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(yaml.safe_dump(bad))
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", "-n", "results/dataset_summary.csv", "--configfile", str(cfg)],
        cwd=repo,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode != 0
    out = proc.stdout + proc.stderr
    assert "guidnce" in out and "Job stats" not in out
