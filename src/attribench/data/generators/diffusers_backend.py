"""Hugging Face diffusers: hub ids and local directories go through the same `from_pretrained`.

Calls are strict: every setting in params must reach the pipeline's `__call__` under a name it takes,
or the render stops naming the pipeline and what it does take (a silently dropped `guidance` once
made Stable Cascade run at defaults while provenance claimed otherwise). Two-stage pipelines take
the prior's steps and guidance explicitly. Provenance records exactly what was passed.
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import Any

from attribench.data.generators.base import (
    Backend,
    RenderItem,
    base_provenance,
    register_backend,
    resolve_device,
)
from attribench.data.shards import encode_png

# params key -> __call__ parameter. Two-stage pipelines: `steps`/`guidance` are the decoder's.
CALL_NAMES = {"steps": "num_inference_steps", "guidance": "guidance_scale", "width": "width", "height": "height"}
TWO_STAGE = {
    "StableCascadeCombinedPipeline": {**CALL_NAMES, "guidance": "decoder_guidance_scale",
                                      "prior_steps": "prior_num_inference_steps", "prior_guidance": "prior_guidance_scale"},
    "KandinskyCombinedPipeline": {**CALL_NAMES, "prior_steps": "prior_num_inference_steps",
                                  "prior_guidance": "prior_guidance_scale"},
    "KandinskyV22CombinedPipeline": {**CALL_NAMES, "prior_steps": "prior_num_inference_steps",
                                     "prior_guidance": "prior_guidance_scale"},
}
PRIOR_KEYS = ("prior_steps", "prior_guidance")
SIZE_KEYS = ("width", "height")  # pipelines without them render at the model's size: checked on the output


class UnsupportedSetting(ValueError):
    """A generator setting the pipeline's __call__ cannot take."""


def _looks_local(model: str) -> bool:
    return model.startswith((".", "/", "~", "models/", "data/")) or Path(model).exists()


def call_settings(pipeline: str, accepted: set[str], spec: dict, gen: str = "?") -> dict:
    """The __call__ arguments `spec` asks for (without prompt/generator); UnsupportedSetting otherwise."""
    names = TWO_STAGE.get(pipeline, CALL_NAMES)
    takes = ", ".join(sorted(accepted - {"self", "kwargs"}))
    if pipeline in TWO_STAGE:
        missing = [k for k in PRIOR_KEYS if k not in spec]
        if missing:
            raise UnsupportedSetting(f"generators.{gen}: {pipeline} is two-stage; give {missing} explicitly "
                                     "(otherwise the prior runs at its defaults and provenance cannot say so)")
    out = {}
    for key, arg in names.items():
        if key not in spec:
            continue
        if arg in accepted:
            out[arg] = spec[key]
        elif key not in SIZE_KEYS:
            raise UnsupportedSetting(f"generators.{gen}.{key}: {pipeline}.__call__ has no '{arg}'; it takes: {takes}")
    stray = [k for k in PRIOR_KEYS if k in spec and k not in names]
    if stray:
        raise UnsupportedSetting(f"generators.{gen}: {stray} are for two-stage pipelines; {pipeline}.__call__ takes: {takes}")
    for arg, value in (spec.get("call_kwargs") or {}).items():
        if arg not in accepted:
            raise UnsupportedSetting(f"generators.{gen}.call_kwargs.{arg}: {pipeline}.__call__ has no '{arg}'; it takes: {takes}")
        out[arg] = value
    return out


def load_kwargs(cls: type, spec: dict) -> dict:
    """from_pretrained arguments: the safety checker is off wherever the pipeline has one (flagged
    images come out black, a shortcut for any classifier); `revision` pins hub ids."""
    kwargs = dict(spec.get("pipeline_kwargs", {}))
    if "safety_checker" in inspect.signature(cls.__init__).parameters:
        kwargs.setdefault("safety_checker", None)
        kwargs.setdefault("requires_safety_checker", False)
    for key in ("variant", "revision", "cache_dir"):
        if spec.get(key):
            kwargs[key] = spec[key]
    return kwargs


def _load_by_index(model: str, index: dict, dtype: Any, spec: dict) -> Any:
    """Component by component, as model_index.json lists them. Stable Cascade's index names its vqgan
    under the module "wuerstchen", which today's diffusers neither resolves (PaellaVQModel moved to
    pipelines.deprecated) nor accepts when passed in: load that class from where it lives now."""
    import diffusers
    import transformers
    from diffusers.pipelines.deprecated.wuerstchen.modeling_paella_vq_model import PaellaVQModel

    where = {"revision": spec["revision"], "cache_dir": spec.get("cache_dir")}
    parts, settings = {}, {}
    for name, value in index.items():
        if name.startswith("_"):
            continue
        if not (isinstance(value, list) and len(value) == 2):
            settings[name] = value
            continue
        if value[1] is None:
            parts[name] = None
            continue
        lib, cls_name = value
        cls = PaellaVQModel if cls_name == "PaellaVQModel" else getattr(diffusers if lib == "diffusers" else transformers, cls_name)
        typed = {"torch_dtype" if lib == "diffusers" else "dtype": dtype} if hasattr(cls, "dtype") or "Model" in cls_name else {}
        parts[name] = cls.from_pretrained(model, subfolder=name, **where, **typed)
    return getattr(diffusers, index["_class_name"])(**parts, **settings)


def load_combined(cls: type, model: str, dtype: Any, spec: dict) -> Any:
    """A two-stage (combined) pipeline at pinned revisions. `cls.from_pretrained(id, revision=r)` loads
    the prior repo named by the model card at the *decoder's* revision r, a commit the prior repo does
    not have: so the decoder repo and each prior repo load separately, each at its own pin."""
    import diffusers
    from huggingface_hub import ModelCard, hf_hub_download

    common = {"torch_dtype": dtype, **{k: spec[k] for k in ("variant", "cache_dir") if spec.get(k)}}
    index = diffusers.DiffusionPipeline.load_config(model, revision=spec["revision"], cache_dir=spec.get("cache_dir"))
    if (index.get("vqgan") or [None, None])[1] == "PaellaVQModel":
        decoder = _load_by_index(model, index, dtype, spec)
    else:
        decoder = diffusers.DiffusionPipeline.from_pretrained(model, revision=spec["revision"], **common)
    card = ModelCard.load(hf_hub_download(model, "README.md", revision=spec["revision"],
                                          cache_dir=spec.get("cache_dir")))
    parts = dict(decoder.components)
    for prior in getattr(card.data, "prior", None) or []:
        rev = (spec.get("hub_revisions") or {}).get(prior)
        if not rev:
            raise KeyError(f"{model}: its model card loads the prior repo {prior}, which has no pinned revision in hub_models")
        prior_pipe = diffusers.DiffusionPipeline.from_pretrained(prior, revision=rev, **common)
        parts.update({f"prior_{k}": v for k, v in prior_pipe.components.items()})
    wanted = set(inspect.signature(cls.__init__).parameters) - {"self"}
    missing = sorted(wanted - set(parts) - set(getattr(cls, "_optional_components", [])))
    if missing:
        raise ValueError(f"{cls.__name__} from {model}@{spec['revision']}: components {missing} missing")
    pipe = cls(**{k: v for k, v in parts.items() if k in wanted})
    pipe.register_to_config(_name_or_path=model)
    return pipe


@register_backend
class DiffusersBackend(Backend):
    name = "diffusers"

    def load(self, spec: dict, device: str) -> Any:
        import diffusers
        import torch

        model = spec["model"]
        if _looks_local(model) and not Path(model).expanduser().is_dir():
            raise FileNotFoundError(f"diffusers model directory not found: {model}")
        cls_name = spec.get("pipeline", "DiffusionPipeline")
        cls = getattr(diffusers, cls_name, None)
        if cls is None:
            raise KeyError(f"diffusers has no pipeline class '{cls_name}'")
        dtype = getattr(torch, spec.get("dtype", "float32"))
        source = str(Path(model).expanduser()) if _looks_local(model) else model
        if getattr(cls, "_load_connected_pipes", False) and spec.get("revision"):
            pipe = load_combined(cls, source, dtype, spec)
        else:
            pipe = cls.from_pretrained(source, torch_dtype=dtype, **load_kwargs(cls, spec))
        if spec.get("scheduler"):
            sched_cls = getattr(diffusers, spec["scheduler"], None)
            if sched_cls is None:
                raise KeyError(f"diffusers has no scheduler class '{spec['scheduler']}'")
            pipe.scheduler = sched_cls.from_config(pipe.scheduler.config, **spec.get("scheduler_kwargs", {}))
        pipe.set_progress_bar_config(disable=True)
        return pipe.to(resolve_device(device))

    def render(self, pipe: Any, gen: str, spec: dict, items: list[RenderItem]) -> list[dict]:
        import torch

        params = set(inspect.signature(pipe.__call__).parameters)
        settings = call_settings(type(pipe).__name__, params, spec, gen)
        # CPU generators give the same noise on any device (diffusers' reproducibility advice).
        call = {"generator": [torch.Generator("cpu").manual_seed(it.seed) for it in items], "output_type": "pil", **settings}
        if "prompt" in params:
            call["prompt"] = [it.prompt for it in items]
        else:  # unconditional pipelines (e.g. pixel-space DDPM) take a batch size only
            call["batch_size"] = len(items)
        with torch.inference_mode():
            images = pipe(**call).images
        want = tuple(spec.get(k) for k in SIZE_KEYS)
        if all(want) and any(img.size != want for img in images):
            raise UnsupportedSetting(f"generators.{gen}: width x height {want} asked, {type(pipe).__name__} rendered "
                                     f"{images[0].size} (it takes no width/height: set them to the model's size)")
        sched = type(pipe.scheduler).__name__
        passed = json.dumps(settings, sort_keys=True)
        rows = []
        for it, img in zip(items, images):
            rows.append(
                dict(
                    image=encode_png(img), format="png", scheduler=sched, steps=spec.get("steps"),
                    guidance=spec.get("guidance"), origin=spec["model"],
                    checkpoint=f"{spec['model']}@{spec['revision']}" if spec.get("revision") else spec["model"],
                    width=img.width, height=img.height, call_settings=passed, **base_provenance(gen, spec, it),
                )
            )
        return rows
