"""The Snakemake layer: a new generator flows into the dataset with no other edit; the paper DAG
dry-runs quickly with job counts in the low thousands."""

import re
import shutil
import subprocess
import sys
import time
import zipfile

import pytest
import yaml
from PIL import Image


def _snakemake(repo, workdir, *args, timeout=300):
    cmd = [sys.executable, "-m", "snakemake", "-s", str(repo / "Snakefile"), "-d", str(workdir), *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


@pytest.fixture()
def workdir(repo, tmp_path):
    shutil.copy(repo / "params.yaml", tmp_path / "params.yaml")
    return tmp_path


def test_custom_rule_generator_reaches_the_dataset(repo, workdir):
    # A closed tool's export, as a user would drop it in data/external/.
    (workdir / "data/external").mkdir(parents=True)
    with zipfile.ZipFile(workdir / "data/external/my_tool.zip", "w") as zf:
        for i, colour in enumerate(["red", "teal", "olive"]):
            img = workdir / f"out{i}.png"
            Image.new("RGB", (96, 96), colour).save(img)
            zf.write(img, f"my_tool_{i}.png")
        zf.writestr("captions.csv", "file,caption\nmy_tool_0.png,A red square.\n")
    extra = {
        "profiles": {
            "smoke": {
                "generators": {
                    "my_tool": {
                        "backend": "folder",
                        "family": "my_tool",
                        "source": "imported",
                        "path": "data/imports/unzipped/my_tool",
                        "captions": "data/imports/unzipped/my_tool/captions.csv",
                    }
                }
            }
        }
    }
    (workdir / "extra.yaml").write_text(yaml.safe_dump(extra))

    dry = _snakemake(repo, workdir, "-n", "results/dataset_summary.csv", "--configfile", str(workdir / "extra.yaml"))
    assert dry.returncode == 0, dry.stderr
    assert "unpack_import_archive" in dry.stdout
    # Its delivered shard is the input of its class index, like every registry generator's.
    split_job = re.search(
        r"rule split_class:\n\s+input: ([^\n]+)\n\s+output: data/smoke/dataset/classes/my_tool", dry.stdout
    )
    assert split_job and split_job.group(1) == "data/smoke/shards/delivered/my_tool/folder-0000.parquet"

    target = "data/smoke/shards/delivered/my_tool/folder-0000.parquet"
    run = _snakemake(repo, workdir, "--cores", "1", target, "--configfile", str(workdir / "extra.yaml"))
    assert run.returncode == 0, run.stderr
    import pandas as pd

    df = pd.read_parquet(workdir / target)
    assert len(df) == 3 and set(df.generator) == {"my_tool"} and set(df.width) == {64}
    assert df.set_index("origin").loc["my_tool_0.png", "prompt"] == "A red square."


def test_paper_dag_dry_runs_quickly_with_low_thousands_of_jobs(repo, workdir):
    t0 = time.time()
    dry = _snakemake(
        repo, workdir, "-n", "results/dataset_summary.csv", "results/table2.csv", "--config", "profile=paper"
    )
    elapsed = time.time() - t0
    assert dry.returncode == 0, dry.stderr
    total = int(re.search(r"^total\s+(\d+)", dry.stdout, re.M).group(1))
    assert 200 <= total <= 5000, total  # render jobs sized to >= 30 GPU-minutes each (prompts.job_gpu_minutes)
    assert elapsed < 60
    # GPU-backed rules declare the resource in the paper profile.
    assert re.search(r"rule render:.*?resources: [^\n]*gpu=1", dry.stdout, re.S)
