"""Streamed images: shards read by Parquet row group, and a uint8 pixel cache at the training input size.

`iter_encoded(rows)` yields (image_id, encoded bytes) reading one row group at a time, so memory
holds one row group, never a split. `pixel_cache(rows, size, folder)` resizes + centre-crops each
image once (imagedata.resize_crop: the same pixels as the in-memory path) into one flat uint8 file
named by the content of what it holds (input size + image ids, which are content hashes), and
returns a `PixelFile` that reads items with `os.pread`: nothing stays resident, so host memory does
not grow with the dataset, and DataLoader workers share the file through the page cache.
`encoded_cache(rows, folder)` does the same for the encoded bytes an augmentation hook decodes (Ju et
al. blur + JPEG the original image): a paper Ju run would otherwise hold its 41,600 1024 px JPEGs
(~17 GB) in host memory.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import torch

from attribench.core.io import atomic_path

BATCH_ROWS = 32  # rows decoded per Parquet read: bounds memory when a shard is one big row group


def iter_encoded(rows: pd.DataFrame) -> Iterator[tuple[str, bytes]]:
    """(image_id, bytes) of the rows (needs `shard`, `image_id`), shard by shard, in file order."""
    seen = set()
    for shard, group in rows.groupby("shard", sort=False):
        wanted = set(group["image_id"])
        for batch in pq.ParquetFile(shard).iter_batches(batch_size=BATCH_ROWS, columns=["image_id", "image"]):
            for iid, blob in zip(batch.column("image_id").to_pylist(), batch.column("image").to_pylist()):
                if iid in wanted and iid not in seen:
                    seen.add(iid)
                    yield iid, blob
    missing = set(rows["image_id"]) - seen
    if missing:
        raise KeyError(f"{len(missing)} image id(s) not found in their shards, e.g. {sorted(missing)[:3]}")


class _FlatFile:
    """A file read with os.pread, one descriptor per process (DataLoader workers open their own)."""

    path: Path
    _fd: int | None = None
    _pid: int | None = None

    def __getstate__(self) -> dict:  # spawned workers reopen the file themselves
        return {**self.__dict__, "_fd": None, "_pid": None}

    def _pread(self, count: int, offset: int) -> bytes:
        if self._pid != os.getpid():  # a forked worker gets its own descriptor
            self._fd, self._pid = os.open(self.path, os.O_RDONLY), os.getpid()
        return os.pread(self._fd, count, offset)


class PixelFile(_FlatFile):
    """n uint8 (3, size, size) images in one flat file; items and slices are read on demand."""

    def __init__(self, path: str | Path, n: int, size: int):
        self.path, self.n, self.size = Path(path), int(n), int(size)
        self.item_bytes = 3 * self.size * self.size
        if self.path.stat().st_size != self.n * self.item_bytes:
            raise ValueError(f"{self.path}: {self.path.stat().st_size} bytes, expected {n} images of {size}px")

    def _read(self, start: int, count: int) -> torch.Tensor:
        buf = self._pread(count * self.item_bytes, start * self.item_bytes)
        arr = np.frombuffer(bytearray(buf), dtype=np.uint8)
        return torch.from_numpy(arr).view(count, 3, self.size, self.size)

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i):
        if isinstance(i, slice):
            start, stop, step = i.indices(self.n)
            if step != 1:
                raise IndexError("PixelFile slices must be contiguous")
            return self._read(start, max(0, stop - start))
        i = int(i) + (self.n if int(i) < 0 else 0)
        if not 0 <= i < self.n:
            raise IndexError(f"image {i} of {self.n}")
        return self._read(i, 1)[0]


def cache_key(image_ids: list[str], size: int, what: str = "uint8 resize_crop") -> str:
    h = hashlib.sha256(f"{what} {size}\n".encode())
    h.update("\n".join(image_ids).encode())
    return h.hexdigest()[:24]


def pixel_cache(
    rows: pd.DataFrame, size: int, folder: str | Path, resize: Callable[[bytes, int], torch.Tensor]
) -> PixelFile:
    """The rows' images (in row order) at `size`, built once into folder/<content key>.u8."""
    ids = rows["image_id"].tolist()
    path = Path(folder) / f"{cache_key(ids, size)}.u8"
    if not path.exists():
        pos: dict[str, list[int]] = {}
        for k, iid in enumerate(ids):
            pos.setdefault(iid, []).append(k)
        item = 3 * size * size
        # atomic: a killed build leaves no cache behind
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            f.truncate(len(ids) * item)
            for iid, blob in iter_encoded(rows):
                data = resize(blob, size).numpy().tobytes()
                for k in pos[iid]:
                    os.pwrite(f.fileno(), data, k * item)
    return PixelFile(path, len(ids), size)


class EncodedFile(_FlatFile):
    """n encoded images (any length each) in one flat file, row-aligned through an (n, 2) table of
    (offset, length); item i is read on demand."""

    def __init__(self, path: str | Path, spans: np.ndarray):
        self.path, self.spans = Path(path), np.asarray(spans, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.spans)

    def __getitem__(self, i: int) -> bytes:
        offset, length = self.spans[int(i)]
        return self._pread(int(length), int(offset))


def encoded_cache(rows: pd.DataFrame, folder: str | Path) -> EncodedFile:
    """The rows' encoded bytes (in row order) as they are in their shards, built once into
    folder/<content key>.enc (each image once, in shard order) + <key>.spans.npy (per row)."""
    ids = rows["image_id"].tolist()
    key = cache_key(ids, 0, "encoded")
    data, table = Path(folder) / f"{key}.enc", Path(folder) / f"{key}.spans.npy"
    if not table.exists():  # written last: its presence means the data file is whole
        where: dict[str, tuple[int, int]] = {}
        with atomic_path(data) as tmp, open(tmp, "wb") as f:
            for iid, blob in iter_encoded(rows):
                where[iid] = (f.tell(), len(blob))
                f.write(blob)
        with atomic_path(table) as tmp, open(tmp, "wb") as f:
            np.save(f, np.array([where[i] for i in ids], dtype=np.int64).reshape(len(ids), 2))
    return EncodedFile(data, np.load(table))
