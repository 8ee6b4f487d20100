"""Backend interface and registry, plus what every prompt-driven backend shares."""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import Any

from attribench import prompts as prompt_sets


@dataclass(frozen=True)
class RenderItem:
    """One image to produce: a prompt slot (or an imported file) plus its seed."""

    key: str  # unique within the shard; orders the output
    prompt: str | None
    prompt_id: str | None
    prompt_source: str | None
    image_index: int
    seed: int
    origin: str | None = None  # source file for imports


def image_seed(base_seed: int, generator: str, prompt_id: str, image_index: int) -> int:
    """Per-image seed: independent of batch layout and of which other generators exist."""
    digest = hashlib.sha256(f"{base_seed}:{generator}:{prompt_id}:{image_index}".encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


def prompts_per_job(spec: dict, cfg: dict) -> int:
    """Prompts per render job (chunk) for one generator.

    `prompts.chunk_size` unless the profile sets `prompts.job_gpu_minutes` and the generator its
    `throughput` ({s_per_image, at_steps}): then the chunk grows to the smallest multiple of chunk_size
    holding at least that much GPU work, so fast generators (SD 1.5, 5-step classes) do not spend their
    jobs queueing and loading the model. Cost scales with `steps` (a steps-study class costs its own).
    """
    base = int(cfg["prompts"]["chunk_size"])
    target_min, tp = cfg["prompts"].get("job_gpu_minutes"), spec.get("throughput")
    if not target_min or not tp:
        return base
    at_steps = tp.get("at_steps") or spec.get("steps") or 1
    s_per_image = tp["s_per_image"] * (spec.get("steps") or at_steps) / at_steps
    s_per_prompt = s_per_image * spec.get("images_per_prompt", 1)
    return base * max(1, math.ceil(round(target_min * 60 / (s_per_prompt * base), 9)))  # round: 16.000000004 is 16


class Backend:
    """A way of producing images. Subclasses override `load` and `render`."""

    name: str = ""
    prompt_driven: bool = True  # False: items come from somewhere else (e.g. a folder)

    def chunks(self, gen: str, spec: dict, cfg: dict) -> list[str]:
        srcs = spec.get("prompt_sources") or list(cfg["prompts"]["sources"])
        unknown = set(srcs) - set(cfg["prompts"]["sources"])
        if unknown:
            raise KeyError(f"generators.{gen}.prompt_sources names unknown prompt source(s) {sorted(unknown)}")
        size = prompts_per_job(spec, cfg)
        cap = spec.get("max_prompts")  # only the first `max_prompts` prompts of each source
        counts = {s: min(cfg["prompts"]["sources"][s]["count"], cap or float("inf")) for s in srcs}
        return [c for s in srcs for c in prompt_sets.chunk_names(s, int(counts[s]), size)]

    def items(self, gen: str, spec: dict, chunk: str, cfg: dict, prompts_path: str | None) -> list[RenderItem]:
        size = prompts_per_job(spec, cfg)
        rows = prompt_sets.read_chunk(prompts_path, chunk, size)
        if spec.get("max_prompts"):
            rows = rows.iloc[: max(0, spec["max_prompts"] - int(chunk.rsplit("-", 1)[1]) * size)]
        n = spec.get("images_per_prompt", 1)
        # `fixed_seed`: every image of this generator starts from the same seed (the seed is the class,
        # Xu et al. Table 3 "Seeds"); otherwise a per-image seed.
        fixed = spec.get("fixed_seed")
        return [
            RenderItem(
                key=f"{r.prompt_id}:{k}", prompt=r.prompt, prompt_id=r.prompt_id, prompt_source=r.prompt_source,
                image_index=k, seed=fixed if fixed is not None else image_seed(cfg["seed"], gen, r.prompt_id, k),
            )
            for r in rows.itertuples()
            for k in range(n)
        ]

    def load(self, spec: dict, device: str) -> Any:
        raise NotImplementedError

    def render(self, state: Any, gen: str, spec: dict, items: list[RenderItem]) -> list[dict]:
        """Rows for `attribench.shards.make_row` (keys: image bytes, format, provenance)."""
        raise NotImplementedError


BACKENDS: dict[str, Backend] = {}


def register_backend(cls: type[Backend]) -> type[Backend]:
    BACKENDS[cls.name] = cls()
    return cls


def get_backend(name: str) -> Backend:
    if name not in BACKENDS:
        raise KeyError(f"unknown generator backend '{name}'; registered: {sorted(BACKENDS)}")
    return BACKENDS[name]


def resolve_device(device: str) -> str:
    if device == "auto":
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def base_provenance(gen: str, spec: dict, item: RenderItem) -> dict:
    return dict(
        generator=gen, family=spec["family"], backend=spec["backend"], source=spec.get("source", "generated"),
        prompt=item.prompt, prompt_id=item.prompt_id, prompt_source=item.prompt_source,
        image_index=item.image_index, seed=item.seed,
    )

