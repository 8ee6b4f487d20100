"""How the big-model transforms run (never what they compute): weight dtype, VAE slicing, inner batch.

These come from params.yaml's `derive` block (`configure(cfg)`, called by whatever writes a derived
shard) and are not part of a transform's spec: a spec names what an image becomes, the runtime only
how fast and in how much memory. They do change bytes on CUDA (fp16 vs fp32 arithmetic), so the
resumable-part fingerprint includes them (`fingerprint_keys`); on CPU the dtype is always float32
and the outputs are those of the fp32 code this replaced, bit for bit.

- dtype `auto`: float16 weights on CUDA, float32 on CPU (`float32` / `float16` / `bfloat16` force one).
  SDXL's VAE overflows in fp16 (NaN/black images): its config carries `force_upcast: true`, and the
  SDXL img2img / inpaint pipelines then run the VAE encode and decode in fp32 (`upcast_vae`); the SD
  1.x/2.x and Marigold VAEs are fine in fp16. `load_pipeline` checks the flag is honoured.
- vae_slicing: decode the batch one image at a time (`vae.enable_slicing()`): the VAE decode at
  1024 px is the memory peak of a batched SDXL call. Only on CUDA, so the CPU path stays unchanged.
- model_batch_size: images per UNet batch inside a Marigold call (it batches ensemble members itself).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

DTYPES = ("auto", "float32", "float16", "bfloat16")


@dataclass(frozen=True)
class Runtime:
    dtype: str = "auto"
    vae_slicing: bool = True
    model_batch_size: int = 8


_current = Runtime()


def configure(cfg: dict | None) -> Runtime:
    """Take the `derive` block of a resolved config (missing keys keep their defaults)."""
    global _current
    block = dict((cfg or {}).get("derive") or {})
    kw = {k: block[k] for k in ("dtype", "vae_slicing", "model_batch_size") if k in block}
    if kw.get("dtype", "auto") not in DTYPES:
        raise ValueError(f"derive.dtype must be one of {DTYPES}, got {kw['dtype']!r}")
    _current = Runtime(**kw)
    return _current


def current() -> Runtime:
    return _current


def device() -> str:
    import torch  # deferred: transform modules register at DAG-build time; torch loads when one runs

    return "cuda" if torch.cuda.is_available() else "cpu"


def model_dtype(dev: str, dtype: str | None = None) -> torch.dtype:
    """float16 on CUDA and float32 elsewhere for `auto`; CPU is always float32 (half kernels are slow or missing)."""
    import torch

    dtype = dtype or _current.dtype
    if dev == "cpu" or dtype == "float32" or (dtype == "auto" and not dev.startswith("cuda")):
        return torch.float32
    return torch.float16 if dtype == "auto" else getattr(torch, dtype)


def fingerprint_keys(dev: str | None = None) -> dict[str, Any]:
    """What the resumable parts of a derived shard are keyed on besides the content: parts written in
    fp16 on CUDA are never joined with parts written in fp32 on CPU."""
    dev = dev or device()
    return {
        "device": dev,
        "dtype": str(model_dtype(dev)).removeprefix("torch."),
        **{k: v for k, v in asdict(_current).items() if k != "dtype"},
    }


def load_pipeline(loader, path: str, dev: str, dtype: str | None = None):
    """`loader.from_pretrained(path)` in the runtime dtype on `dev`, VAE upcast where its config asks, slicing on CUDA."""
    import torch

    torch_dtype = model_dtype(dev, dtype)
    pipe = loader.from_pretrained(path, dtype=torch_dtype)
    vae = getattr(pipe, "vae", None)
    if vae is not None and torch_dtype == torch.float16 and getattr(vae.config, "force_upcast", False):
        # SDXL: the pipeline's own upcast path runs the VAE in fp32 when it is fp16 and force_upcast is set.
        # A pipeline class without that path would overflow, so keep the whole pipeline in fp32 rather than guess.
        if not hasattr(pipe, "upcast_vae"):
            pipe = loader.from_pretrained(path, dtype=torch.float32)
            vae = pipe.vae
    if dev != "cpu":  # a no-op .to("cpu") still warns about dtype casting
        pipe.to(dev)
        if vae is not None and _current.vae_slicing and hasattr(vae, "enable_slicing"):
            vae.enable_slicing()
    pipe.set_progress_bar_config(disable=True)
    return pipe
