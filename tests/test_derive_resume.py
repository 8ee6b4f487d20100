"""Derived shards in resumable parts: a big-model transform (SDEdit on a tiny zoo pipeline, the real
diffusers code path) killed with SIGKILL mid-shard and started again redoes only the unfinished parts
and writes the same shard, byte for byte, as a run never interrupted; runtime settings (dtype)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from attribench.data.shards import encode_png, make_row, read_metadata, read_shard, write_shard
from attribench.transforms import runtime

HERE = Path(__file__).parent
CFG = {
    "profile": "test",
    "delivery": {"size": 32, "format": "jpeg", "quality": 95},
    "derive": {"batch_size": 2, "batch_sizes": {"sdedit": 2}},
}


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    from attribench.data import zoo

    root = tmp_path_factory.mktemp("derive_resume")
    rng = np.random.default_rng(0)
    rows = [
        make_row(
            encode_png(Image.fromarray((rng.random((32, 32, 3)) * 255).astype(np.uint8))),
            "png",
            generator=f"g{i % 2}",
            source="generated",
            prompt=f"a photo {i}",
            prompt_source="toy",
        )
        for i in range(6)
    ]
    index = read_metadata([write_shard(rows, root / "raw.parquet")])
    index.to_parquet(root / "index.parquet")
    model = zoo.save_zoo_model("sd", root / "sd", seed=1)
    return root, {"name": "sdedit", "strength": 0.05, "model": str(model)}


def _run(root: Path, spec: dict, out: Path, kill_after: int = 0) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), *sys.path])}
    return subprocess.run(
        [
            sys.executable,
            str(HERE / "derive_worker.py"),
            json.dumps(CFG),
            str(root / "index.parquet"),
            json.dumps(spec),
            str(out),
            str(kill_after),
        ],
        env=env,
        capture_output=True,
        timeout=600,
    )


@pytest.fixture(scope="module")
def whole(toy) -> bytes:
    """The shard of an uninterrupted run."""
    root, spec = toy
    run = _run(root, spec, root / "whole" / "sdedit.parquet")
    assert run.returncode == 0, run.stderr.decode()[-3000:]
    assert json.loads(run.stdout.decode().splitlines()[-1]) == {"parts_written": 3}  # 6 images, 2 per part
    return (root / "whole" / "sdedit.parquet").read_bytes()


def test_kill9_mid_shard_then_rerun_is_byte_identical(toy, whole):
    root, spec = toy

    out = root / "killed" / "sdedit.parquet"
    killed = _run(root, spec, out, kill_after=2)
    assert killed.returncode == -9  # SIGKILL: no handler, no cleanup
    assert not out.exists()
    (parts,) = out.parent.glob(".sdedit.parts-*")
    assert sorted(p.name for p in parts.iterdir()) == ["00000.parquet", "00001.parquet"]

    again = _run(root, spec, out)
    assert again.returncode == 0, again.stderr.decode()[-3000:]
    assert json.loads(again.stdout.decode().splitlines()[-1]) == {"parts_written": 1}  # only the unfinished part
    assert not parts.exists()
    assert out.read_bytes() == whole
    assert len(read_shard(out)) == 6


def test_parts_of_another_runtime_or_batch_are_never_joined(toy, whole, tmp_path):
    root, spec = toy
    out = tmp_path / "sdedit.parquet"
    stale = tmp_path / ".sdedit.parts-000000000000"
    stale.mkdir()
    (stale / "00000.parquet").write_bytes(b"not a part of this key")
    assert _run(root, spec, out).returncode == 0
    assert not stale.exists() and out.read_bytes() == whole


def test_runtime_dtype_and_fingerprint():
    try:
        runtime.configure({"derive": {"dtype": "auto"}})
        assert runtime.model_dtype("cpu") == torch.float32 and runtime.model_dtype("cuda") == torch.float16
        assert runtime.model_dtype("cpu", "float16") == torch.float32  # CPU always fp32: its outputs never change
        assert runtime.model_dtype("cuda", "bfloat16") == torch.bfloat16
        cpu, cuda = runtime.fingerprint_keys("cpu"), runtime.fingerprint_keys("cuda")
        assert cpu["dtype"] == "float32" and cuda["dtype"] == "float16" and cpu != cuda
        with pytest.raises(ValueError, match="dtype"):
            runtime.configure({"derive": {"dtype": "float8"}})
    finally:
        runtime.configure(None)


def test_tiny_sdxl_pipeline_loads_with_its_vae_upcast_flag(tmp_path):
    """The SDXL VAE config carries force_upcast; loading keeps it (the pipeline upcasts the fp16 VAE on CUDA)."""
    from diffusers import AutoPipelineForImage2Image

    from attribench.data import zoo

    path = zoo.save_zoo_model("sdxl", tmp_path / "sdxl", seed=2)
    pipe = runtime.load_pipeline(AutoPipelineForImage2Image, str(path), "cpu")
    assert pipe.unet.dtype == torch.float32 and pipe.vae.dtype == torch.float32  # CPU: fp32 throughout
    assert pipe.vae.config.force_upcast and hasattr(pipe, "upcast_vae")  # the SDXL path: an fp16 VAE runs in fp32
