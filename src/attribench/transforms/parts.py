"""Derived shards written in resumable parts, as render writes raw shards (data/render.py).

Each batch of images is transformed and saved atomically as a part file in a hidden folder beside the
shard, keyed by a fingerprint of everything that decides its bytes (spec, parent ids in order, batch
size, delivery, and the runtime: device and dtype). A re-run after a kill reuses the finished parts --
the transforms are seeded per image id, so a part is the same whenever it is made -- runs the rest,
joins the parts into the shard with one atomic rename and removes the folder. Parts of any other key
are deleted (never joined). The joined shard equals an uninterrupted run's byte for byte: write_shard
of the concatenated parts gives what write_shard of all rows at once gives.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Callable, Sequence

import pandas as pd
from tqdm.auto import tqdm

from attribench.core.config import fingerprint
from attribench.core.io import remove_stale_temps
from attribench.data.shards import COLUMNS, read_shard, write_shard


def parts_folder(out: Path, key: dict) -> Path:
    return out.parent / f".{out.stem}.parts-{fingerprint(key)}"


def write_in_parts(
    out: str | Path,
    key: dict,
    n_batches: int,
    make_rows: Callable[[Sequence[int]], Callable[[int], list[dict]]],
    sizes: Sequence[int],
    desc: str,
) -> pd.DataFrame:
    """Write the shard `out` from `n_batches` batches; `make_rows(todo)` prepares the batches still to do
    (e.g. loads only their images) and returns `rows_of(b)`, the rows of batch b. Returns the joined frame."""
    out = Path(out)
    parts = parts_folder(out, key)
    remove_stale_temps(out)
    for stale in out.parent.glob(f".{out.stem}.parts-*"):
        if stale != parts:  # parts of another config, dataset or runtime can never be reused
            shutil.rmtree(stale, ignore_errors=True)
    parts.mkdir(parents=True, exist_ok=True)
    path = [parts / f"{b:05d}.parquet" for b in range(n_batches)]
    todo = [b for b in range(n_batches) if not path[b].exists()]
    if todo:
        rows_of = make_rows(todo)
        with tqdm(
            total=sum(sizes),
            initial=sum(sizes) - sum(sizes[b] for b in todo),
            desc=desc,
            unit="img",
            dynamic_ncols=True,
        ) as bar:
            for b in todo:
                remove_stale_temps(path[b])
                write_shard(rows_of(b), path[b])
                bar.update(sizes[b])
    frames = [read_shard(p) for p in path]
    df = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=COLUMNS)
    # As records, not the frame: the file's pandas metadata records the in-memory dtypes, and a frame
    # read back from parquet has other dtypes (str, int32) than one built from rows; records give the
    # dtypes, hence the bytes, of writing all rows at once.
    write_shard(df.to_dict("records"), out)
    shutil.rmtree(parts, ignore_errors=True)
    return df
