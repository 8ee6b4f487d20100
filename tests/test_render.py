import os
import signal
import subprocess
import sys
import time

import pytest

from attribench.data.prompts import write_prompts
from attribench.data.render import render_shard
from attribench.data.shards import read_shard


def _gan_cfg(count=64, batch=4):
    return {
        "profile": "test",
        "seed": 0,
        "device": "cpu",
        "prompts": {
            "chunk_size": count,
            "sources": {"natural": {"kind": "grammar", "style": "natural", "count": count}},
        },
        "generators": {"faces": {"backend": "gan", "family": "gan", "batch_size": batch}},
    }


@pytest.fixture()
def prompts(tmp_path):
    return write_prompts("natural", _gan_cfg()["prompts"]["sources"]["natural"], tmp_path / "natural.parquet")


def test_rerender_is_byte_identical(tmp_path, prompts):
    cfg = _gan_cfg()
    a = read_shard(render_shard(cfg, "faces", "natural-0000", tmp_path / "a.parquet", prompts))
    b = read_shard(render_shard(cfg, "faces", "natural-0000", tmp_path / "b.parquet", prompts))
    assert len(a) == 64 and a.image_id.is_unique
    assert list(a.image) == list(b.image)
    # Batch layout does not change any image: seeds are per image.
    c = read_shard(render_shard(_gan_cfg(batch=7), "faces", "natural-0000", tmp_path / "c.parquet", prompts))
    assert list(a.image_id) == list(c.image_id)


def test_kill_during_render_then_rerun_completes_without_partial_or_duplicate(tmp_path, prompts):
    import json

    cfg = _gan_cfg(count=64, batch=1)
    cfg_path = tmp_path / "cfg.json"
    cfg_path.write_text(json.dumps(cfg))
    out = tmp_path / "shards" / "faces.parquet"
    cmd = [
        sys.executable,
        "-m",
        "attribench.cli",
        "--config-json",
        str(cfg_path),
        "render",
        "--generator",
        "faces",
        "--chunk",
        "natural-0000",
        "--prompts",
        str(prompts),
        "--out",
        str(out),
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    parts = []
    while time.time() < deadline and len(parts) < 3:  # wait until some batches are done
        parts = list((tmp_path / "shards").glob(".faces.parts-*/*.parquet")) if (tmp_path / "shards").exists() else []
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert len(parts) >= 3
    assert not out.exists(), "a killed render must not leave a shard behind"

    finished_parts = len(list((tmp_path / "shards").glob(".faces.parts-*/*.parquet")))
    assert finished_parts < 64, "the kill came too late to test anything"
    assert subprocess.run(cmd, capture_output=True).returncode == 0
    df = read_shard(out)
    assert len(df) == 64 and df.image_id.is_unique
    assert sorted(p.name for p in out.parent.iterdir()) == ["faces.parquet"]  # parts and temps cleaned up
    fresh = read_shard(render_shard(cfg, "faces", "natural-0000", tmp_path / "fresh.parquet", prompts))
    assert list(df.image_id) == list(fresh.image_id)
