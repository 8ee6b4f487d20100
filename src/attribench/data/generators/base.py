"""Backend interface and registry, plus what every prompt-driven backend shares."""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import Any

from attribench.core.hub import revision
from attribench.core.paths import HUB_CACHE
from attribench.data import prompts as prompt_sets


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


# diffusers' __call__ defaults for a prior the spec leaves unset (what an old config really ran).
PRIOR_DEFAULT_STEPS = {"StableCascadeCombinedPipeline": 60, "KandinskyCombinedPipeline": 25,
                       "KandinskyV22CombinedPipeline": 25}


def total_steps(spec: dict) -> int | None:
    """Denoising steps of one image, all stages (a two-stage pipeline's prior included)."""
    if spec["backend"] != "diffusers" or "steps" not in spec:
        return None
    return spec["steps"] + spec.get("prior_steps", PRIOR_DEFAULT_STEPS.get(spec.get("pipeline"), 0))


def seconds_per_image(spec: dict, throughput: dict | None = None) -> float | None:
    """GPU seconds per image from the generator's `throughput` (or the one given), scaled linearly by
    total steps when the figure was taken at another step count (the steps studies, a prior)."""
    tp = throughput or spec.get("throughput")
    if not tp:
        return None
    steps = total_steps(spec)
    return tp["s_per_image"] * (steps / tp["steps"] if steps and tp.get("steps") else 1.0)


def prompts_per_job(spec: dict, cfg: dict) -> int:
    """Prompts per render job (chunk) for one generator.

    `prompts.chunk_size` unless the profile sets `prompts.job_gpu_minutes` and the generator its
    `throughput`: then the chunk grows to the smallest multiple of chunk_size holding at least that much
    GPU work, so fast generators (SD 1.5, 5-step classes) do not spend their jobs queueing and loading
    the model.
    """
    base = int(cfg["prompts"]["chunk_size"])
    target_min, s_img = cfg["prompts"].get("job_gpu_minutes"), seconds_per_image(spec)
    if not target_min or not s_img:
        return base
    s_per_prompt = s_img * spec.get("images_per_prompt", 1)
    return base * max(1, math.ceil(round(target_min * 60 / (s_per_prompt * base), 9)))  # round: 16.000000004 is 16


class Backend:
    """A way of producing images. Subclasses override `load` and `render`."""

    name: str = ""
    prompt_driven: bool = True  # False: items come from somewhere else (e.g. a folder)
    last_skipped: tuple | list = ()  # inputs the last `items` call left out: [{file, reason}]
    policy: dict | None = None  # the decode policy of the last `items` call (folder imports)

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
        """Rows for `attribench.data.shards.make_row` (keys: image bytes, format, provenance)."""
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


def pinned(cfg: dict, spec: dict) -> dict:
    """The spec with its hub revision (`hub_models`) and the project's hub cache, as loaders need
    them (fetch_models fills that cache); local models unchanged."""
    rev = revision(cfg, spec["model"]) if "model" in spec and spec.get("backend") == "diffusers" else None
    if not rev:
        return spec
    out = {**spec, "revision": rev, "cache_dir": str(HUB_CACHE)}
    if "Combined" in str(spec.get("pipeline")):  # the prior repo its model card names has its own pin
        out["hub_revisions"] = {m: p.get("revision") for m, p in cfg["hub_models"].items()}
    return out


def base_provenance(gen: str, spec: dict, item: RenderItem) -> dict:
    return dict(
        generator=gen, family=spec["family"], backend=spec["backend"], source=spec.get("source", "generated"),
        prompt=item.prompt, prompt_id=item.prompt_id, prompt_source=item.prompt_source,
        image_index=item.image_index, seed=item.seed,
    )


def suspects_of(cfg: dict) -> list[str]:
    """Suspect generators for Jiang et al.'s regenerate flow (`jiang_pairs.regenerate.suspects`), else every
    prompt-driven generator: the ones that can re-render a query's caption."""
    spec = (cfg.get("jiang_pairs") or {}).get("regenerate") or {}
    if "suspects" in spec:
        unknown = set(spec["suspects"]) - set(cfg["generators"])
        if unknown:
            raise KeyError(f"jiang_pairs.regenerate.suspects names unknown generators {sorted(unknown)}")
        return list(spec["suspects"])
    return [g for g, s in cfg["generators"].items() if get_backend(s["backend"]).prompt_driven]
