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
