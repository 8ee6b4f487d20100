"""Transform registry: name -> function over a batch of images, plus its canonical JSON spec.

Image convention (every transform, in and out): a numpy ``uint8`` array of shape ``(N, H, W, 3)``,
RGB, values 0-255 -- the layout PIL decodes to, so shards round-trip without a transpose.
Representations that are naturally one channel (edges, depth) are returned replicated to three
channels, so every attributor reads the same input shape. Functions may work in torch inside.

A transform is registered with ``@register(name, kind=...)`` on a function

    fn(images: np.ndarray, meta: BatchMeta, *, <params>) -> np.ndarray

whose keyword-only parameters *are* its spec: defaults come from the signature, so there is no
second list to keep in sync. ``make_spec`` fills every default in, so the spec written to a shard
pins the behaviour completely (e.g. ``{"name": "gaussian_blur", "radius": 5, "sigma_ratio": 0.5}``).
"""

from __future__ import annotations

import hashlib
import inspect
import json
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

from attribench.data.shards import encode_png
from attribench.transforms.weights import NeedsWeights, weights_present  # noqa: F401  (re-exported)

AVAILABILITY = ("ok", "needs weights", "not available")


class NotAvailable(RuntimeError):
    """The transform has no maintained, installable implementation; the entry only documents why."""


@dataclass(frozen=True)
class BatchMeta:
    """Per-image context some transforms need: ids seed the randomness, prompts drive SDEdit."""

    ids: tuple[str, ...]
    prompts: tuple[str, ...]

    @classmethod
    def build(cls, images: np.ndarray, ids: Sequence[str] | None = None, prompts: Sequence[str | None] | None = None):
        n = len(images)
        # Without shard ids the pixels' own hash is the id, so the same image still gets the same noise.
        ids = tuple(ids) if ids is not None else tuple(hashlib.sha256(im.tobytes()).hexdigest() for im in images)
        prompts = tuple(p or "" for p in prompts) if prompts is not None else ("",) * n
        if len(ids) != n or len(prompts) != n:
            raise ValueError(f"{n} images but {len(ids)} ids and {len(prompts)} prompts")
        return cls(ids, prompts)


Fn = Callable[..., np.ndarray]


@dataclass(frozen=True)
class Transform:
    name: str
    kind: str  # "perturbation" | "representation"
    fn: Fn
    defaults: dict  # every parameter; value `inspect.Parameter.empty` marks a required one
    model_param: str | None = None  # the parameter naming pretrained weights, checked by `availability`
    unavailable: str | None = None  # why it cannot run at all (then `fn` is never called)
    to_bytes: Callable[..., list[bytes]] | None = None  # a transform that *is* an encoding (JPEG) gives its bytes
    fmt: str = "png"
    doc: str = field(default="", compare=False)


TRANSFORMS: dict[str, Transform] = {}


def register(
    name: str,
    *,
    kind: str,
    model_param: str | None = None,
    unavailable: str | None = None,
    to_bytes: Callable[..., list[bytes]] | None = None,
    fmt: str = "png",
) -> Callable[[Fn], Fn]:
    def deco(fn: Fn) -> Fn:
        if name in TRANSFORMS:
            raise ValueError(f"transform {name!r} is already registered")
        params = list(inspect.signature(fn).parameters.values())[2:]  # after (images, meta)
        if any(p.kind is not inspect.Parameter.KEYWORD_ONLY for p in params):
            raise TypeError(f"{fn.__name__}: spec parameters must be keyword-only")
        defaults = {p.name: p.default for p in params}
        TRANSFORMS[name] = Transform(
            name, kind, fn, defaults, model_param, unavailable, to_bytes, fmt, inspect.getdoc(fn) or ""
        )
        return fn

    return deco


def get(name: str) -> Transform:
    try:
        return TRANSFORMS[name]
    except KeyError:
        raise KeyError(f"unknown transform {name!r}; registered: {sorted(TRANSFORMS)}") from None


def make_spec(spec: str | dict) -> dict:
    """Canonical spec: the name plus *every* parameter (defaults filled), keys sorted."""
    spec = {"name": spec} if isinstance(spec, str) else dict(spec)
    tr = get(spec.pop("name"))
    unknown = set(spec) - set(tr.defaults)
    if unknown:
        raise TypeError(f"{tr.name}: unknown parameter(s) {sorted(unknown)}; accepted: {sorted(tr.defaults)}")
    params = {k: spec.get(k, v) for k, v in tr.defaults.items()}
    missing = [k for k, v in params.items() if v is inspect.Parameter.empty]
    if missing:
        raise TypeError(f"{tr.name}: missing required parameter(s) {missing}")
    return {"name": tr.name, **dict(sorted(params.items()))}


def spec_json(spec: str | dict) -> str:
    """The string stored in a shard's `transform` column (stable: sorted keys, no spaces)."""
    return json.dumps(make_spec(spec), sort_keys=True, separators=(",", ":"))


def _params(spec: dict) -> tuple[Transform, dict]:
    spec = make_spec(spec)
    return get(spec.pop("name")), spec


def availability(spec: str | dict) -> str:
    """Return "ok", "needs weights" or "not available": lets a table mark a row instead of failing the run."""
    tr, params = _params(spec)
    if tr.unavailable:
        return "not available"
    if tr.model_param and not weights_present(params[tr.model_param]):
        return "needs weights"
    return "ok"


def _check_images(images: np.ndarray, where: str) -> None:
    if not (isinstance(images, np.ndarray) and images.dtype == np.uint8 and images.ndim == 4 and images.shape[-1] == 3):
        got = getattr(images, "dtype", type(images)), getattr(images, "shape", None)
        raise ValueError(f"{where}: expected uint8 array (N, H, W, 3), got {got}")


def _prepare(spec, images, ids, prompts) -> tuple[Transform, dict, BatchMeta]:
    tr, params = _params(spec)
    if tr.unavailable:
        raise NotAvailable(f"transform {tr.name!r} is not available: {tr.unavailable}")
    _check_images(images, f"{tr.name} input")
    return tr, params, BatchMeta.build(images, ids, prompts)


def apply(
    spec: str | dict, images: np.ndarray, ids: Sequence[str] | None = None, prompts: Sequence[str | None] | None = None
) -> np.ndarray:
    """Run one transform on a batch: uint8 (N, H, W, 3) in, the same shape out (a contract every entry keeps)."""
    tr, params, meta = _prepare(spec, images, ids, prompts)
    out = tr.fn(images, meta, **params)
    _check_images(out, f"{tr.name} output")
    if out.shape != images.shape:
        raise RuntimeError(f"{tr.name}: {images.shape} in, {out.shape} out")
    return out


def encode(
    spec: str | dict, images: np.ndarray, ids: Sequence[str] | None = None, prompts: Sequence[str | None] | None = None
) -> tuple[list[bytes], str]:
    """Encoded outputs and their format: lossless PNG, or the transform's own bytes (JPEG *is* its output)."""
    from PIL import Image

    tr, params, meta = _prepare(spec, images, ids, prompts)
    if tr.to_bytes is not None:
        return tr.to_bytes(images, meta, **params), tr.fmt
    return [encode_png(Image.fromarray(im)) for im in apply(spec, images, meta.ids, meta.prompts)], "png"
