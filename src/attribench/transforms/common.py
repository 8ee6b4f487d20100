"""Array plumbing shared by the transforms: uint8 NHWC <-> float NCHW, and per-image seeds."""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Callable, Iterator

import numpy as np

if TYPE_CHECKING:
    import torch


def to_float(images: np.ndarray) -> torch.Tensor:
    """uint8 (N, H, W, 3) -> float32 (N, 3, H, W) in [0, 1] (kornia's convention)."""
    import torch  # deferred: transform modules register at DAG-build time; torch loads when one runs

    return torch.from_numpy(np.require(images, requirements=["C", "W"])).permute(0, 3, 1, 2).float().div_(255.0)


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """float (N, C, H, W) in [0, 1], C in {1, 3} -> uint8 (N, H, W, 3); one channel is replicated."""
    import torch  # deferred: transform modules register at DAG-build time; torch loads when one runs

    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    return x.clamp(0, 1).mul(255).round_().to(torch.uint8).permute(0, 2, 3, 1).contiguous().numpy()


def image_seed(image_id: str, *salt) -> int:
    """Stable 63-bit seed from an image id (and the transform's own name/params), independent of batch order."""
    digest = hashlib.sha256("/".join(map(str, (image_id, *salt))).encode()).digest()
    return int.from_bytes(digest[:8], "little") & 0x7FFF_FFFF_FFFF_FFFF


def chunked(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, per_chunk: int) -> torch.Tensor:
    """Apply `fn` over batch chunks: bounds the peak memory of window-unfolding filters."""
    import torch  # deferred: transform modules register at DAG-build time; torch loads when one runs

    return torch.cat([fn(part) for part in _split(x, max(1, per_chunk))])


def _split(x: torch.Tensor, n: int) -> Iterator[torch.Tensor]:
    for i in range(0, len(x), n):
        yield x[i : i + n]
