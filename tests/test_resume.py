"""Resumable training: a run killed with SIGKILL after a checkpoint and started again ends with the
same model, history and test metrics, bit for bit on CPU, as a run never interrupted."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from attribench.data.shards import write_shard
from attribench.training.checkpoint import load_checkpoint, save_checkpoint
from split_eval import evaluate_split
from toy_data import prompt_split_index, prompt_split_rows

HERE = Path(__file__).parent
CLASSES = ["red", "green", "blue"]
SPEC = {
    "attributor": "timm_scratch",
    "attributor_spec": {"model": "test_resnet"},
    "input_size": 32,
    "epochs": 8,
    "batch_size": 8,
    "lr": 2e-3,
    "warmup_epochs": 2,
    "min_lr": 1e-5,
    "seed": 0,
    "classes": CLASSES,
    "num_threads": 1,
    "checkpoint_every": 1,
}
TIMING = {"train_seconds", "train_images_per_second", "resumed_from_epoch"}


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    root = tmp_path_factory.mktemp("resume")
    per_class = prompt_split_rows(
        dict(zip(CLASSES, [(190, 60, 60), (60, 170, 70), (60, 80, 190)])),
        np.random.default_rng(0),
        {"train": 12, "val": 6, "test": 6},
        (36, 40),
        sigma=60,
    )
    index = prompt_split_index([write_shard(sum(per_class.values(), []), root / "toy.parquet")])
    index.to_parquet(root / "index.parquet")
    return root, index


def _start(root: Path, out: Path, spec: dict) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), *sys.path])}
    return subprocess.Popen(
        [sys.executable, str(HERE / "resume_worker.py"), str(root / "index.parquet"), json.dumps(spec), str(out)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def _finish(proc: subprocess.Popen) -> None:
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err.decode()[-3000:]


def test_kill9_then_resume_is_bit_identical(toy):
    root, index = toy
    _finish(_start(root, root / "whole", SPEC))

    killed = root / "killed"
    proc = _start(root, killed, SPEC)
    state = killed / "checkpoint" / "state.json"
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if state.exists() and json.loads(state.read_text())["loop"]["epoch"] >= 3:
            os.kill(proc.pid, signal.SIGKILL)
            break
        time.sleep(0.02)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed mid-training"
    assert not (killed / "model.safetensors").exists() and state.exists()
    stopped_at = json.loads(state.read_text())["loop"]["epoch"]
    assert 3 <= stopped_at < SPEC["epochs"]

    _finish(_start(root, killed, SPEC))  # the same command again: resumes
    summary_w = json.loads((root / "whole" / "training.json").read_text())
    summary_k = json.loads((killed / "training.json").read_text())
    assert summary_w["resumed_from_epoch"] == 0 and summary_k["resumed_from_epoch"] >= stopped_at
    assert (killed / "model.safetensors").read_bytes() == (root / "whole" / "model.safetensors").read_bytes()
    assert (killed / "history.csv").read_bytes() == (root / "whole" / "history.csv").read_bytes()
    assert {k: v for k, v in summary_k.items() if k not in TIMING} == {
        k: v for k, v in summary_w.items() if k not in TIMING
    }
    m_w, p_w = evaluate_split(root / "whole", index)
    m_k, p_k = evaluate_split(killed, index)
    assert m_k == m_w and p_k.equals(p_w)
    assert not (killed / "checkpoint").exists()  # a finished run keeps no checkpoint
    assert "resumed from the checkpoint of epoch" in (killed / "train.log").read_text()


def test_checkpoint_of_another_spec_is_not_resumed(toy):
    root, index = toy
    spec = {**SPEC, "epochs": 3}
    out = root / "other"
    proc = _start(root, out, {**spec, "lr": 1e-3})
    state = out / "checkpoint" / "state.json"
    while proc.poll() is None and not state.exists():
        time.sleep(0.02)
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    _finish(_start(root, out, spec))  # another lr: starts from scratch
    assert json.loads((out / "training.json").read_text())["resumed_from_epoch"] == 0


def test_checkpoint_round_trips_optimizer_and_rng_without_pickle(tmp_path):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    model(torch.randn(5, 4)).sum().backward()
    opt.step()
    gen = torch.Generator().manual_seed(3)
    torch.rand(2, generator=gen)
    save_checkpoint(tmp_path, "k", model, opt, {"g": gen}, None, {"epoch": 1})
    want = (torch.rand(3, generator=gen), torch.rand(3), np.random.rand(2))

    model2 = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3))
    opt2 = torch.optim.AdamW(model2.parameters(), lr=1e-2)
    gen2 = torch.Generator()
    assert load_checkpoint(tmp_path, "other key", model2, opt2, {"g": gen2}) is None
    loop, best = load_checkpoint(tmp_path, "k", model2, opt2, {"g": gen2})
    assert loop == {"epoch": 1} and best is None
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), model2.state_dict().values()))
    s1, s2 = opt.state_dict(), opt2.state_dict()
    assert all(torch.equal(s1["state"][k][n], s2["state"][k][n]) for k in s1["state"] for n in s1["state"][k])
    got = (torch.rand(3, generator=gen2), torch.rand(3), np.random.rand(2))
    assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1]) and np.array_equal(got[2], want[2])
    assert not list(tmp_path.glob("*.pt")) and not list(tmp_path.glob("*.pkl"))
