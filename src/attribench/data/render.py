"""Produce one raw shard: the images of one (generator, chunk), resumable after a kill.

Work is done in batches; each finished batch is saved atomically as a part file in a hidden
folder keyed by a fingerprint of everything that determines its bytes. A re-run after an
interruption reuses finished parts (rendering is deterministic, so reuse is exact), then the parts
are joined into the shard with one atomic rename and the folder is removed.
"""

from __future__ import annotations

import logging
import shutil
import sys
from pathlib import Path

import pandas as pd
from tqdm.auto import tqdm

from attribench.core.config import fingerprint
from attribench.data.decode import write_skip_report
from attribench.data.generators import get_backend
from attribench.data.generators.base import pinned
from attribench.core.io import remove_stale_temps
from attribench.core.hp_studies import generator_spec
from attribench.data.shards import COLUMNS, make_row, read_shard, write_shard

log = logging.getLogger(__name__)


# Settings that change how a shard is fetched, never its bytes: editing them must not throw away
# finished (and, for paid APIs, paid-for) batches.
RUNTIME_ONLY_KEYS = {"budget_usd", "price_usd", "state_dir", "base_url", "api_key_env", "max_retries", "retry_delay", "timeout",
                     "cache_dir", "throughput"}  # throughput only sizes render jobs (prompt ranges are in the item keys)


def content_spec(spec: dict) -> dict:
    return {k: v for k, v in spec.items() if k not in RUNTIME_ONLY_KEYS}


def default_batch_size(spec: dict) -> int:
    return spec.get("batch_size", 8)


def render_shard(cfg: dict, generator: str, chunk: str, out: str | Path, prompts_path: str | None = None) -> Path:
    out = Path(out)
    spec = pinned(cfg, generator_spec(cfg, generator))  # a benchmark generator or a study class; + hub revision
    backend = get_backend(spec["backend"])
    backend.last_skipped = []
    items = backend.items(generator, spec, chunk, cfg, prompts_path)
    size = default_batch_size(spec)
    batches = [items[i : i + size] for i in range(0, len(items), size)]
    key = fingerprint({"spec": content_spec(spec), "seed": cfg["seed"], "items": [(i.key, i.seed) for i in items], "batch": size})
    parts_dir = out.parent / f".{out.stem}.parts-{key}"
    remove_stale_temps(out)
    for stale in out.parent.glob(f".{out.stem}.parts-*"):
        if stale != parts_dir:  # parts of an older config can never be reused
            shutil.rmtree(stale, ignore_errors=True)
    parts_dir.mkdir(parents=True, exist_ok=True)

    todo = [b for b in range(len(batches)) if not (parts_dir / f"{b:05d}.parquet").exists()]
    # Load (and fail: missing weights, missing API key) before any progress is shown.
    state = backend.load(spec, spec.get("device", cfg["device"])) if todo else None
    done = len(items) - sum(len(batches[b]) for b in todo)
    bar = tqdm(total=len(items), desc=f"{generator}/{chunk}", unit="img", initial=done)
    for b in todo:
        batch, part = batches[b], parts_dir / f"{b:05d}.parquet"
        rows = [make_row(r.pop("image"), r.pop("format"), **r) for r in backend.render(state, generator, spec, batch)]
        write_shard(rows, part)
        bar.update(len(batch))
    bar.close()

    frames = [read_shard(parts_dir / f"{b:05d}.parquet") for b in range(len(batches))]
    df = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=COLUMNS)
    write_shard(df, out)
    shutil.rmtree(parts_dir, ignore_errors=True)
    log.info("%s: %d images -> %s", generator, len(df), out)
    note = write_skip_report(out, list(backend.last_skipped), f"input file(s) of {generator}")
    if note:
        print(note, file=sys.stderr)  # the render rule repeats `attribench:` lines on the console
    return out
