"""The render plan of a profile, from params alone: per generator and study class, what is rendered,
what the tables read, and what it costs (GPU-hours, GB). `attribench plan` / results/plan.csv.

GPU-hours come from each generator's `throughput` (GPU seconds per image at `steps` total denoising
steps, with its source); a class with other steps (the steps studies, a two-stage prior) is scaled
linearly by total steps. Bytes per pixel are estimates for our encodings (below), not measurements.
"""

from __future__ import annotations

import math

import pandas as pd

from attribench.core.hp_studies import split_config, studies, study_classes
from attribench.core.io import atomic_path
from attribench.data.generators.base import seconds_per_image, total_steps
from attribench.data.views import planned_classes

# Lossless PNG at compress_level=1 (shards.encode_png) of generated images: ~2 bytes/pixel (estimate).
RAW_BYTES_PER_PIXEL = 2.0
# Delivered JPEG at quality 95: ~0.45 bytes/pixel on photographic content (estimate).
DELIVERED_BYTES_PER_PIXEL = {"jpeg": 0.45, "webp": 0.35, "png": 2.0}
COLUMNS = ["generator", "kind", "backend", "prompts", "images_per_prompt", "images_rendered", "images_read",
           "split_margin_sd", "total_steps", "s_per_image", "gpu_hours", "raw_gb", "delivered_gb",
           "throughput_source"]
# A split whose expected size clears its count by fewer standard deviations than this can come up short
# after every render is done (ShortClassError): 3 sd is a ~0.1% chance per split.
MIN_SPLIT_MARGIN_SD = 3.0


def split_margin(groups: int | None, per_group: int, fractions: dict, counts: dict) -> float | None:
    """By how many standard deviations the hash split is expected to clear `counts`, in its tightest
    split. A prompt group's split is a hash, so a split's group count is Binomial(groups, fraction), and
    all `per_group` images of a group go to the same split. None when the group count is not known."""
    if not groups:
        return None
    total = sum(fractions.values())
    margins = []
    for split, want in counts.items():
        p = fractions[split] / total
        need = math.ceil(want / per_group)
        sd = math.sqrt(groups * p * (1 - p))
        margins.append((groups * p - need) / sd if sd else (math.inf if groups * p >= need else -math.inf))
    return min(margins)


def _sources(spec: dict, cfg: dict) -> list[str]:
    return spec.get("prompt_sources") or list(cfg["prompts"]["sources"])


def _prompts(spec: dict, cfg: dict) -> int | None:
    if spec["backend"] == "folder":
        return None  # imported: the folder decides
    return _prompts_of(spec, cfg, _sources(spec, cfg))


def _prompts_of(spec: dict, cfg: dict, sources) -> int:
    cap = spec.get("max_prompts") or float("inf")
    return int(sum(min(cfg["prompts"]["sources"][s]["count"], cap) for s in sources))


def _count_views(cfg: dict, gen: str) -> list[dict]:
    """The dataset views with their own `counts` that hold class `gen` (they draw beyond the split sample)."""
    return [v for name, v in cfg.get("datasets", {}).items() if "counts" in v and gen in planned_classes(cfg, name)]


def _benchmark_margin(cfg: dict, gen: str, spec: dict) -> float | None:
    """The tightest split margin of a benchmark class: the split sample over all its prompts, and each
    view with its own `counts` over the prompts of that view's sources."""
    if spec["backend"] == "folder":
        return None  # imported: the folder decides its groups
    ipp = spec.get("images_per_prompt", 1)
    fractions = cfg["split"]["fractions"]
    own = _sources(spec, cfg)
    margins = [split_margin(_prompts(spec, cfg), ipp, fractions, cfg["split"]["counts"])]
    for view in _count_views(cfg, gen):
        srcs = [s for s in view.get("prompt_sources") or own if s in own]
        margins.append(split_margin(_prompts_of(spec, cfg, srcs), ipp, fractions, view["counts"]))
    return min(m for m in margins if m is not None)


def _pixels(spec: dict) -> int | None:
    if spec.get("width") and spec.get("height"):
        return spec["width"] * spec["height"]
    if spec.get("size"):  # OpenAI "1024x1024"
        w, h = spec["size"].split("x")
        return int(w) * int(h)
    return None


def _benchmark_read(cfg: dict, gen: str, spec: dict) -> int:
    """Upper bound on the images of one class the benchmark views read: the split sample, plus each
    prompt source's largest own-count view (views with `counts` draw beyond the split sample)."""
    total = sum(cfg["split"]["counts"].values())
    per_source: dict[str, float] = {}
    for view in _count_views(cfg, gen):
        srcs = view.get("prompt_sources") or ["*"]
        for s in srcs:
            per_source[s] = max(per_source.get(s, 0), sum(view["counts"].values()) / len(srcs))
    return int(total + sum(per_source.values()))


def _row(cfg: dict, gen: str, spec: dict, kind: str, read: int, margin: float | None, throughput: dict | None) -> dict:
    prompts, ipp = _prompts(spec, cfg), spec.get("images_per_prompt", 1)
    rendered = prompts * ipp if prompts is not None else None
    steps, px = total_steps(spec), _pixels(spec)
    s_img = seconds_per_image(spec, throughput)
    hours = rendered * s_img / 3600 if s_img is not None and rendered is not None else None
    n = rendered if rendered is not None else read
    size = cfg["delivery"]["size"]
    return {
        "generator": gen, "kind": kind, "backend": spec["backend"], "prompts": prompts, "images_per_prompt": ipp,
        "images_rendered": rendered, "images_read": min(read, n) if n is not None else read,
        "split_margin_sd": margin, "total_steps": steps,
        "s_per_image": s_img, "gpu_hours": hours,
        "raw_gb": n * px * RAW_BYTES_PER_PIXEL / 1e9 if px and spec["backend"] != "folder" else None,
        "delivered_gb": n * size * size * DELIVERED_BYTES_PER_PIXEL[cfg["delivery"]["format"]] / 1e9,
        "throughput_source": (throughput or {}).get("source"),
    }


def plan(cfg: dict, throughputs: dict[str, dict] | None = None) -> pd.DataFrame:
    """One row per benchmark generator and study class, then a `total` row. `throughputs` (by
    generator name) override the specs' own, e.g. to cost an older config with today's figures."""
    def tp(name: str, spec: dict):
        return (throughputs or {}).get(name) or spec.get("throughput")

    rows = [
        _row(cfg, g, s, "benchmark", _benchmark_read(cfg, g, s), _benchmark_margin(cfg, g, s), tp(g, s))
        for g, s in cfg["generators"].items()
    ]
    for study, st in studies(cfg).items():
        split = split_config(cfg, study)
        base = cfg["generators"][st["base"]]
        for cls, spec in study_classes(cfg, study).items():
            margin = split_margin(_prompts(spec, cfg), spec.get("images_per_prompt", 1), split["fractions"], split["counts"])
            rows.append(_row(cfg, cls, spec, f"study:{study}", sum(split["counts"].values()), margin, tp(st["base"], base)))
    df = pd.DataFrame(rows, columns=COLUMNS)
    total = {c: df[c].sum(min_count=1) for c in ("prompts", "images_rendered", "images_read", "gpu_hours", "raw_gb", "delivered_gb")}
    return pd.concat([df, pd.DataFrame([{"generator": "total", "kind": "total", **total}])], ignore_index=True)


def write_plan(cfg: dict, out: str, throughputs: dict[str, dict] | None = None) -> pd.DataFrame:
    df = plan(cfg, throughputs)
    with atomic_path(out) as tmp:
        df.round(3).to_csv(tmp, index=False)
    return df
