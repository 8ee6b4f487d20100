"""Round trip through the DVC remote: build, `dvc push`, a fresh clone, `dvc pull`, and Snakemake has
nothing left to do (no re-render, no re-split).

The `dataset` stage of dvc.yaml is the unit: its outs (data/<profile> = prompts, shards, dataset index;
data/real; models/zoo; the summary) go to the remote and come back. A fresh clone has no .snakemake/
metadata and the pulled files carry pull-order mtimes, so after `dvc pull` the documented step is
`snakemake --touch <targets>`: it walks the DAG in order and marks the pulled outputs up to date (it
fails on a missing file; dvc.lock already vouches that the outs belong together).
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
TARGETS = ["results/dataset_summary.csv", "results/dataset_montage.png"]  # the `dataset` stage's command
INDEX = "data/smoke/dataset/index.parquet"  # (with its shards) cached by DVC; the summary CSV/PNG are cache: false
BUILT = ["data/smoke", "data/real", "models/zoo", *TARGETS, ".snakemake/metadata"]

pytestmark = pytest.mark.skipif(
    not (BIN / "dvc").exists() or not (BIN / "snakemake").exists(),
    reason="dvc / snakemake not installed in this environment",
)


def sh(cmd: str, cwd: Path, env: dict) -> str:
    out = subprocess.run(cmd, shell=True, cwd=cwd, env=env, capture_output=True, text=True)
    assert out.returncode == 0, f"`{cmd}` failed in {cwd}:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    return out.stdout + out.stderr


def test_dvc_push_clone_pull_then_nothing_to_do(tmp_path):
    env = {
        **os.environ,
        "PATH": f"{BIN}:{os.environ['PATH']}",
        "DVC_NO_ANALYTICS": "1",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@t",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@t",
    }
    env.pop("SNAKEMAKE_PROFILE", None)
    a, b, remote = tmp_path / "a", tmp_path / "b", tmp_path / "remote"
    sh(f"git clone -q {ROOT} {a}", tmp_path, env)
    env["PYTHONPATH"] = f"{a / 'src'}"
    # Build. The checkout's own smoke build (CI makes it before pytest) is reused with its Snakemake
    # metadata, so this step only verifies it is complete; without one it builds from scratch.
    if all((ROOT / p).exists() for p in BUILT):
        for p in BUILT:
            (a / p).parent.mkdir(parents=True, exist_ok=True)
            sh(f"cp -a {ROOT / p} {a / p}", tmp_path, env)
    sh(f"snakemake --cores 2 {' '.join(TARGETS)}", a, env)
    sh(f"dvc remote modify --local shared url {remote}", a, env)
    sh("dvc commit -f dataset", a, env)  # dvc.lock: the stage's deps and outs as they now are
    pushed = sh("dvc push dataset", a, env)
    assert remote.is_dir() and any(remote.rglob("*")), pushed
    sh("git add dvc.lock && git commit -qm 'dataset stage lock'", a, env)

    # A fresh clone: no data, no .snakemake/, the remote named in .dvc/config.local as on a new machine.
    sh(f"git clone -q {a} {b}", tmp_path, env)
    env["PYTHONPATH"] = f"{b / 'src'}"
    assert not (b / "data").exists() and not (b / ".snakemake").exists()
    sh(f"dvc remote modify --local shared url {remote}", b, env)
    sh("dvc pull dataset", b, env)
    shards = sorted(p.relative_to(a) for p in (a / "data/smoke/shards").rglob("*.parquet"))
    assert shards
    for p in [INDEX, *map(str, shards)]:
        assert (b / p).read_bytes() == (a / p).read_bytes(), p
    print("snakemake -n right after dvc pull:\n" + sh(f"snakemake -n --cores 2 {INDEX}", b, env)[-2000:])
    sh(f"snakemake --touch --cores 1 {INDEX}", b, env)
    dry = sh(f"snakemake -n --cores 2 {INDEX}", b, env)
    assert "Nothing to be done" in dry, dry
