"""Hugging Face diffusers: hub ids and local directories go through the same `from_pretrained`."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

from attribench.data.generators.base import Backend, RenderItem, base_provenance, register_backend, resolve_device
from attribench.data.shards import encode_png


def _looks_local(model: str) -> bool:
    return model.startswith((".", "/", "~")) or model.startswith(("models/", "data/")) or Path(model).exists()


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
        kwargs = dict(spec.get("pipeline_kwargs", {}))
        if "variant" in spec:
            kwargs["variant"] = spec["variant"]
        pipe = cls.from_pretrained(str(Path(model).expanduser()) if _looks_local(model) else model, torch_dtype=dtype, **kwargs)
        if spec.get("scheduler"):
            sched_cls = getattr(diffusers, spec["scheduler"], None)
            if sched_cls is None:
                raise KeyError(f"diffusers has no scheduler class '{spec['scheduler']}'")
            pipe.scheduler = sched_cls.from_config(pipe.scheduler.config, **spec.get("scheduler_kwargs", {}))
        pipe.set_progress_bar_config(disable=True)
        return pipe.to(resolve_device(device))

    def render(self, pipe: Any, gen: str, spec: dict, items: list[RenderItem]) -> list[dict]:
        import torch

        # CPU generators give the same noise on any device (diffusers' reproducibility advice).
        gens = [torch.Generator("cpu").manual_seed(it.seed) for it in items]
        call = {"generator": gens, "output_type": "pil"}
        params = inspect.signature(pipe.__call__).parameters
        if "num_inference_steps" in params and "steps" in spec:
            call["num_inference_steps"] = spec["steps"]
        if "prompt" in params:
            call["prompt"] = [it.prompt for it in items]
            call.update({k: spec[s] for k, s in (("guidance_scale", "guidance"), ("height", "height"), ("width", "width")) if s in spec and k in params})
        else:  # unconditional pipelines (e.g. pixel-space DDPM) take a batch size only
            call["batch_size"] = len(items)
        call.update(spec.get("call_kwargs", {}))
        with torch.inference_mode():
            images = pipe(**call).images
        sched = type(pipe.scheduler).__name__
        rows = []
        for it, img in zip(items, images):
            rows.append(
                dict(
                    image=encode_png(img), format="png", scheduler=sched, steps=spec.get("steps"),
                    guidance=spec.get("guidance"), checkpoint=spec["model"], origin=spec["model"],
                    width=img.width, height=img.height, **base_provenance(gen, spec, it),
                )
            )
        return rows
