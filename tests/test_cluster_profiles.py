"""The SLURM profiles: GPU rules declare `gpu`, no GPU flags in slurm_extra, every rule sized explicitly,
the smoke-scale profile fits the one-node test cluster, and render job sizing per generator."""

import re
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
PROFILES = {name: ROOT / "workflow/profiles" / name / "config.yaml" for name in ("slurm", "slurm-smoke")}
# Rules that run a GPU model: diffusion renders, training (and SDEdit/depth transforms inside it), SDXL
# inpainting, and every report entry declared `gpu=True` (Jiang's regenerate flow, SDEdit robustness, ...).
BASE_GPU_RULES = {"render", "train", "edit_test_images"}
# Network-only (the OpenAI chat / images API, hub downloads) or instant (the render plan): login node.
LOCAL_RULES = {"prompts", "render_api", "fetch_models", "plan"}
# What snakemake-executor-plugin-slurm refuses in slurm_extra (it sets GPUs itself from gpu / gpu_model).
GPU_FLAGS = re.compile(r"--gres[=\s]|--gpus[=\s]|--gpus-per-\w+|(^|\s)-G\s")


def rule_blocks() -> dict[str, str]:
    blocks = {}
    for f in sorted((ROOT / "workflow/rules").rglob("*.smk")):
        parts = re.split(r"^(?:rule (\w+):|use rule \w+ as (\w+) with:)\s*$", f.read_text(), flags=re.M)
        for i in range(1, len(parts), 3):
            blocks[parts[i] or parts[i + 1]] = parts[i + 2].split("\n\n\n")[0]
    return blocks


@pytest.fixture(scope="module")
def rules() -> set[str]:
    """The rule set as Snakemake builds it (report rules are generated from the report registry)."""
    out = subprocess.run(["snakemake", "--list-rules"], cwd=ROOT, capture_output=True, text=True, check=True)
    return set(out.stdout.split()) - {"all"}


def gpu_report_rules() -> set[str]:
    from attribench.reports.registry import load_reports

    return {f"report_{name}" for name, rep in load_reports().items() if rep.gpu}


def profile(name: str) -> dict:
    return yaml.safe_load(PROFILES[name].read_text())


def test_gpu_model_rules_declare_gpu(rules):
    blocks = rule_blocks()
    for rule in BASE_GPU_RULES:
        assert re.search(r"resources:\s*\n\s+gpu=", blocks[rule]), f"rule {rule} runs a GPU model but declares no gpu"
    # the generic report rule asks for a GPU exactly for the entries that declare one
    assert "gpu=on_gpu() if _report.gpu else 0" in (ROOT / "workflow/rules/reports.smk").read_text()
    assert gpu_report_rules() <= rules and {"report_jiang_pairs", "report_robustness"} <= gpu_report_rules()


@pytest.mark.parametrize("name", sorted(PROFILES))
def test_profile_gpus_only_through_gpu_resource(name):
    cfg = profile(name)
    assert cfg["executor"] == "slurm"
    extras = [cfg.get("default-resources", {}).get("slurm_extra", "")]
    extras += [r.get("slurm_extra", "") for r in cfg["set-resources"].values()]
    assert not any(GPU_FLAGS.search(str(e)) for e in extras), "GPU flags in slurm_extra (use the gpu resource)"
    for rule in BASE_GPU_RULES | gpu_report_rules():
        assert cfg["set-resources"][rule]["slurm_partition"] == "gpu", f"{name}: {rule} not on the gpu partition"


@pytest.mark.parametrize("name", sorted(PROFILES))
def test_every_cluster_rule_is_sized(name, rules):
    """Every rule has explicit sizes, except local rules and CPU report rules (tables over finished runs:
    default-resources)."""
    cfg = profile(name)
    sized = set(cfg["set-resources"])
    assert sized <= rules, f"{name}: sizes for unknown rules {sorted(sized - rules)}"
    cpu_reports = {r for r in rules if r.startswith("report_")} - gpu_report_rules()
    unsized = rules - sized - LOCAL_RULES - cpu_reports
    assert unsized == set(), f"{name}: rules without explicit sizes {sorted(unsized)}"
    for rule, res in cfg["set-resources"].items():
        assert {"mem_mb", "runtime"} <= set(res), f"{name}: {rule} lacks mem_mb or runtime"
    # `threads: workflow.cores` would follow the submitting node: every such rule has explicit threads
    blocks = rule_blocks()
    for rule, block in blocks.items():
        if "workflow.cores" in block:
            assert rule in cfg["set-threads"], f"{name}: {rule} takes workflow.cores; set its threads"
    for rule in gpu_report_rules():  # the generic report rule gives GPU reports workflow.cores
        assert rule in cfg["set-threads"], f"{name}: {rule} takes workflow.cores; set its threads"


def test_profiles_agree_on_rules_and_partitions():
    big, small = profile("slurm"), profile("slurm-smoke")
    assert set(big["set-threads"]) == set(small["set-threads"])
    assert set(big["set-resources"]) == set(small["set-resources"])
    for rule, res in big["set-resources"].items():
        assert res.get("slurm_partition", "cpu") == small["set-resources"][rule].get("slurm_partition", "cpu"), rule


def test_local_rules_are_local():
    blocks = rule_blocks()
    declared = set()
    for f in (ROOT / "workflow/rules").rglob("*.smk"):  # `localrules: a, b,` directives
        for m in re.finditer(r"^localrules:\s*\n?((?:\s+\w+,?\s*\n?)+)", f.read_text(), flags=re.M):
            declared |= set(re.findall(r"\w+", m.group(1)))
    for rule in LOCAL_RULES:
        local = rule in declared or re.search(r"^\s+localrule: True", blocks[rule], flags=re.M)
        assert local, f"{rule} must be a local rule"


def test_smoke_profile_fits_a_two_cpu_node():
    cfg = profile("slurm-smoke")
    assert max(cfg["set-threads"].values()) <= 2
    mems = [cfg["default-resources"]["mem_mb"]] + [r["mem_mb"] for r in cfg["set-resources"].values()]
    assert max(mems) <= 16000  # the CI machine's node advertises ~24 GB (slurmd -C)


def test_render_chunks_grow_to_job_gpu_minutes():
    from attribench.data.generators.base import prompts_per_job

    cfg = {"prompts": {"chunk_size": 250, "job_gpu_minutes": 30}}
    sdxl = {
        "backend": "diffusers",
        "steps": 50,
        "images_per_prompt": 5,
        "throughput": {"s_per_image": 2.5, "steps": 30},
    }
    sd15 = {
        "backend": "diffusers",
        "steps": 50,
        "images_per_prompt": 5,
        "throughput": {"s_per_image": 0.9, "steps": 50},
    }
    assert prompts_per_job(sdxl, cfg) == 250  # 250 x 5 x 4.2 s = 87 min: already enough
    assert prompts_per_job(sd15, cfg) == 500  # 250 prompts = 19 min -> 500 = 37.5 min
    assert prompts_per_job({**sd15, "steps": 5}, cfg) == 250 * 16  # a 5-step class costs a tenth
    assert prompts_per_job({**sd15}, {"prompts": {"chunk_size": 250}}) == 250  # no target: unchanged
    assert prompts_per_job({"backend": "diffusers", "images_per_prompt": 5}, cfg) == 250  # no throughput: unchanged


def test_smoke_chunking_unchanged_and_paper_sized():
    from attribench.core import config as ab_config
    from attribench.data.generators.base import prompts_per_job, seconds_per_image

    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    smoke = ab_config.resolve({**raw, "profile": "smoke"})
    assert {prompts_per_job(s, smoke) for s in smoke["generators"].values()} == {smoke["prompts"]["chunk_size"]}
    paper = ab_config.resolve({**raw, "profile": "paper"})
    for gen, spec in paper["generators"].items():
        n = prompts_per_job(spec, paper)
        assert n % paper["prompts"]["chunk_size"] == 0
        if "throughput" in spec:  # one job holds >= job_gpu_minutes of GPU work, or the whole source
            minutes = n * spec.get("images_per_prompt", 1) * seconds_per_image(spec) / 60
            assert minutes >= paper["prompts"]["job_gpu_minutes"], gen
