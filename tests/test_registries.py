"""Every entry of every plugin registry is exercised, so a new entry is tested the day it is registered.

Parametrised over the registries themselves (filled by `import attribench.plugins` in conftest): generator
backends, transforms, attributors and reports. Where an entry needs an example (a transform's required
parameters, an attributor's spec and input), the example lives in a dict here, and an entry without one
fails with a message saying what to add. Everything is tiny: no rendering, no downloads, no training.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

from attribench.data.generators.base import BACKENDS, Backend, get_backend
from attribench.models.attributors.registry import ATTRIBUTORS, build_attributor
from attribench.reports.registry import load_reports
from attribench.transforms import registry as T

REPO = Path(__file__).resolve().parents[1]
THIS = "tests/test_registries.py"
PROFILES = ("smoke", "paper")


@lru_cache(maxsize=None)
def _cfg(profile: str) -> dict:
    from attribench.core import config

    return config.load(REPO / "params.yaml", {"profile": profile})


def cfg_of(profile: str) -> dict:
    """A private copy of the resolved profile (loaded once), so no test can leak edits into another."""
    return copy.deepcopy(_cfg(profile))


# ------------------------------------------------------------------------ generator backends ----


def _generators_using(backend: str) -> tuple[str, dict[str, dict]]:
    """(profile, {generator: spec}) of the first profile (smoke, then paper) with generators on `backend`."""
    for profile in PROFILES:
        cfg = cfg_of(profile)
        gens = {g: s for g, s in cfg["generators"].items() if s["backend"] == backend}
        if gens:
            return profile, gens
    return "", {}


@pytest.mark.parametrize("name", sorted(BACKENDS))
def test_backend_plans_chunks_from_params_alone(name):
    from attribench.data.render import content_spec

    backend = get_backend(name)
    assert isinstance(backend, Backend) and backend.name == name
    assert isinstance(backend.prompt_driven, bool)
    # A backend produces images: it must override both halves of the interface.
    for method in ("load", "render"):
        assert getattr(type(backend), method) is not getattr(Backend, method), (
            f"backend {name!r} does not implement {method}"
        )
    profile, gens = _generators_using(name)
    assert gens, (
        f"no generator in params.yaml (smoke or paper profile) uses backend {name!r}: add a `generators:` "
        "entry with that backend, so its chunk planning is tested"
    )
    cfg = cfg_of(profile)
    for gen, spec in gens.items():
        chunks = backend.chunks(gen, spec, cfg)
        assert isinstance(chunks, list) and chunks, f"{profile}: generators.{gen} plans no chunks"
        assert all(isinstance(c, str) and c for c in chunks), chunks
        assert len(set(chunks)) == len(chunks), f"{profile}: generators.{gen}: duplicate chunk names {chunks}"
        assert backend.chunks(gen, spec, cfg) == chunks, "chunk planning is not deterministic"
        json.dumps(content_spec(spec), sort_keys=True)  # the render fingerprint must be JSON


@pytest.mark.parametrize("profile", PROFILES)
def test_every_configured_generator_names_a_registered_backend(profile):
    unknown = {g: s["backend"] for g, s in cfg_of(profile)["generators"].items() if s["backend"] not in BACKENDS}
    assert not unknown, f"{profile}: generators with unregistered backends {unknown}; registered: {sorted(BACKENDS)}"


# -------------------------------------------------------------------------------- transforms ----

# Name -> the parameters an example spec needs (its required ones; {} when every parameter has a default).
TRANSFORM_EXAMPLES: dict[str, dict] = {
    "gaussian_blur": {"radius": 2},
    "gaussian_blur_sigma": {"sigma": 1.0},
    "bilateral": {"diameter": 5},
    "gaussian_noise": {"std": 15.0},
    "jpeg": {"quality": 50},
    "sdedit": {"strength": 0.05},
    "inpaint": {"band": "small"},
    "canny": {},
    "highpass": {},
    "fft_spectrum": {},
    "center_patch": {"k": 8},
    "depth": {},
    "normals": {},
    "albedo": {},
    "shading": {},
    "perspective_field": {},
}


def _images(n: int = 2, size: int = 32) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def test_transform_examples_name_registered_transforms():
    stale = sorted(set(TRANSFORM_EXAMPLES) - set(T.TRANSFORMS))
    assert not stale, f"TRANSFORM_EXAMPLES in {THIS} names unregistered transforms {stale}: remove them"


@pytest.mark.parametrize("name", sorted(T.TRANSFORMS))
def test_transform_spec_availability_and_apply(name, one_torch_thread):
    assert name in TRANSFORM_EXAMPLES, (
        f"add an example spec for transform {name!r} to TRANSFORM_EXAMPLES in {THIS} "
        "(its required parameters, or {} if it has none)"
    )
    tr = T.get(name)
    assert tr.kind in ("perturbation", "representation"), tr.kind
    assert tr.fmt in ("png", "jpeg"), tr.fmt
    assert tr.doc or tr.unavailable, f"transform {name!r} has no docstring (it is the entry's documentation)"
    if tr.model_param is not None:
        assert tr.model_param in tr.defaults, f"{name}: model_param {tr.model_param!r} is not one of its parameters"
    spec = T.make_spec({"name": name, **TRANSFORM_EXAMPLES[name]})
    assert spec["name"] == name and set(spec) == {"name", *tr.defaults}
    assert json.loads(T.spec_json(spec)) == json.loads(json.dumps(spec))  # the shard's `transform` column
    status = T.availability(spec)
    assert status in T.AVAILABILITY, status
    x = _images()
    if status == "not available":
        assert tr.unavailable
        with pytest.raises(T.NotAvailable):
            T.apply(spec, x)
    elif status == "needs weights":
        assert tr.model_param is not None
        with pytest.raises(T.NeedsWeights):
            T.apply(spec, x)
    elif tr.model_param is not None:
        pytest.skip(
            f"{name}: weights for {spec[tr.model_param]!r} are present, so apply would run a real model "
            "(seconds to minutes on CPU); its loader is tested on tiny models in test_transforms.py"
        )
    else:
        out = T.apply(spec, x)
        assert out.dtype == np.uint8 and out.ndim == 4 and out.shape[0] == 2 and out.shape[-1] == 3, out.shape
        assert np.array_equal(T.apply(spec, x.copy()), out), f"{name} is not deterministic for the same images"
        data, fmt = T.encode(spec, x)
        assert fmt == tr.fmt and len(data) == 2 and all(isinstance(b, bytes) and b for b in data)


# ------------------------------------------------------------------------------- attributors ----


def _save_run(run_dir: Path, kind: str, spec: dict, classes: list[str]) -> str:
    """A trained-run folder as training writes it (model.json + model.safetensors), with fresh weights."""
    from safetensors.torch import save_file

    model = build_attributor(kind, spec, len(classes))
    run_dir.mkdir(parents=True)
    (run_dir / "model.json").write_text(json.dumps({"attributor": kind, "attributor_spec": spec, "classes": classes}))
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, run_dir / "model.safetensors")
    return str(run_dir)


def _dfx_base_runs(spec: dict, tmp: Path) -> dict:
    """The smoke spec names experiments (dfx_base_*) that would be trained first: stand in fresh 2-class
    runs of the smoke `dfx_base` attributor (timm_scratch, [class, others]), as resolve_runs would point at."""
    base = _cfg("smoke")["attributors"]["dfx_base"]
    runs = {
        g: _save_run(tmp / exp, base["kind"], dict(base["spec"]), ["c", "others"])
        for g, exp in spec["base_runs"].items()
    }
    return {**spec, "base_runs": runs}


def _jiang_encoder_run(spec: dict, tmp: Path) -> dict:
    """The smoke probe names the experiment that trains its encoder; stand in a fresh jiang_siamese run
    (the resnet10t one: cheaper than the smoke probe's lite0 encoder, same builder path)."""
    enc = _cfg("smoke")["attributors"]["jiang_siamese_cnn"]
    return {**spec, "encoder_run": _save_run(tmp / spec["encoder_run"], enc["kind"], dict(enc["spec"]), list("abc"))}


@dataclass(frozen=True)
class AttributorExample:
    smoke: str | None  # the smoke `attributors` entry whose spec is the starting point (None: `spec` only)
    inputs: str  # "image" (B, 3, S, S), "image+text" ((B, 3, S, S), (B, text_dim)), "vector" (B, in_dim)
    size: int  # S for images, D for vectors
    spec: dict = field(default_factory=dict)  # added to / overriding the smoke spec (what runs.py derives)
    prepare: Callable[[dict, Path], dict] | None = None  # stand-ins for run directories the spec names
    contract: str = "logits"  # "logits": forward -> (B, classes); "siamese": + embed -> unit (B, embed_dim)


ATTRIBUTOR_EXAMPLES: dict[str, AttributorExample] = {
    "timm_scratch": AttributorExample("dfx_base", "image", 32),
    "timm_scratch_text": AttributorExample("efficientformer_text", "image+text", 64, {"text_dim": 8}),
    "linear_probe": AttributorExample("lite0_lp", "vector", 16, {"in_dim": 16}),
    "mlp": AttributorExample("lite0_mlp", "vector", 16, {"in_dim": 16}),
    "finetune": AttributorExample("lite0_finetune", "image", 32),
    "finetune_text": AttributorExample(None, "image+text", 32, {"backbone": "efficientnet_lite0", "text_dim": 8}),
    "ju_fusion": AttributorExample("ju_fusion", "image", 64),
    "deepfeaturex": AttributorExample("deepfeaturex", "image", 32, prepare=_dfx_base_runs),
    "jiang_siamese": AttributorExample("jiang_siamese_cnn", "image", 32, contract="siamese"),
    "jiang_probe": AttributorExample("jiang_probe_all", "image", 32, prepare=_jiang_encoder_run),
}


def test_attributor_examples_name_registered_attributors():
    stale = sorted(set(ATTRIBUTOR_EXAMPLES) - set(ATTRIBUTORS))
    assert not stale, f"ATTRIBUTOR_EXAMPLES in {THIS} names unregistered attributors {stale}: remove them"


@pytest.mark.parametrize("profile", PROFILES)
def test_every_configured_attributor_kind_is_registered(profile):
    unknown = {a: s["kind"] for a, s in cfg_of(profile)["attributors"].items() if s["kind"] not in ATTRIBUTORS}
    assert not unknown, f"{profile}: attributors of unregistered kinds {unknown}; registered: {sorted(ATTRIBUTORS)}"


@pytest.mark.parametrize("name", sorted(ATTRIBUTORS))
def test_attributor_builds_and_runs_a_forward_pass(name, tmp_path, one_torch_thread):
    import torch

    assert name in ATTRIBUTOR_EXAMPLES, f"add a construction example for attributor {name} to {THIS}"
    ex = ATTRIBUTOR_EXAMPLES[name]
    spec = {}
    if ex.smoke is not None:
        entry = cfg_of("smoke")["attributors"].get(ex.smoke)
        assert entry is not None, f"{THIS}: the {name} example names smoke attributor {ex.smoke!r}, which is gone"
        assert entry["kind"] == name, f"{THIS}: smoke attributor {ex.smoke!r} is a {entry['kind']}, not a {name}"
        spec = dict(entry.get("spec") or {})
    spec.update(ex.spec)
    if ex.prepare is not None:
        spec = ex.prepare(spec, tmp_path)
    kwargs = spec.get("model_kwargs") or {}
    assert not kwargs.get("pretrained"), "tests never download weights"

    torch.manual_seed(0)
    model = build_attributor(name, spec, 3)
    assert isinstance(model, torch.nn.Module)
    params = list(model.parameters())
    assert params and any(p.requires_grad for p in params), f"{name} has no trainable parameters"
    model.eval()
    b = 2
    if ex.inputs == "vector":
        args = (torch.randn(b, ex.size),)
    elif ex.inputs == "image":
        args = (torch.randn(b, 3, ex.size, ex.size),)
    elif ex.inputs == "image+text":
        args = (torch.randn(b, 3, ex.size, ex.size), torch.randn(b, int(spec["text_dim"])))
    else:
        raise AssertionError(f"{THIS}: unknown input kind {ex.inputs!r} in the {name} example")
    with torch.no_grad():
        out = model(*args)
        assert tuple(out.shape) == (b, 3), f"{name}: forward gave {tuple(out.shape)}, expected ({b}, 3) logits"
        assert torch.isfinite(out).all()
        if ex.contract == "siamese":
            emb = model.embed(*args)
            assert tuple(emb.shape) == (b, int(spec.get("embed_dim", 128)))
            assert torch.allclose(emb.norm(dim=1), torch.ones(b), atol=1e-4), "siamese embeddings must be unit length"
    # What load_model does for a finished run: the same spec rebuilds the same state (strict).
    again = build_attributor(name, spec, 3)
    again.load_state_dict(model.state_dict(), strict=True)


# ----------------------------------------------------------------------------------- reports ----

REPORTS = load_reports()


@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize("name", sorted(REPORTS))
def test_report_declarations(name, profile):
    report = REPORTS[name]
    cfg = cfg_of(profile)
    runs = report.runs(cfg)
    assert isinstance(runs, list) and all(isinstance(r, str) for r in runs), runs
    unknown = sorted(set(runs) - set(cfg["experiments"]))
    assert not unknown, f"{profile}: report {name} reads runs of experiments not in params: {unknown}"
    inputs = report.inputs(cfg)
    assert isinstance(inputs, dict)
    assert "runs" not in inputs, f"report {name}: input key 'runs' is reserved for its runs' metrics files"
    for key, files in inputs.items():
        assert isinstance(key, str)
        assert isinstance(files, list) and all(isinstance(f, str) for f in files), f"{name}.inputs[{key!r}]: {files!r}"
    json.dumps(report.settings(cfg), sort_keys=True)  # a params change must be able to re-run the report


@pytest.mark.parametrize("name", sorted(REPORTS))
def test_report_is_documented(name):
    report = REPORTS[name]
    out = report.output_paths()
    assert set(out) == set(report.outputs) and "csv" in out
    readme = (REPO / "README.md").read_text()
    assert out["csv"].name in readme, f"README.md's results table does not list {out['csv']} (report {name})"
    caption = REPO / "workflow" / "report" / f"{name}.rst"
    assert caption.is_file(), f"report {name} has no caption: add {caption.relative_to(REPO)}"


def test_no_two_reports_write_the_same_file():
    owners: dict[str, list[str]] = {}
    for name, report in REPORTS.items():
        for kind, path in report.output_paths().items():
            owners.setdefault(str(path), []).append(f"{name}.{kind}")
    clashes = {p: o for p, o in owners.items() if len(o) > 1}
    assert not clashes, f"reports writing the same output: {clashes}"
