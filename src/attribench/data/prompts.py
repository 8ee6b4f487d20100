"""Prompt sets with stable ids.

Smoke: two deterministic grammars written for this project — plain COCO-style scene captions and
creative/surreal prompts in the style of popular T2I prompts (Xu et al. Fig. 11). Paper: COCO
captions from the user's local annotation file; creative prompts from the OpenAI client (later).
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Callable

import pandas as pd

from attribench.core.io import atomic_path
from attribench.data.grammar import grammar_prompts
from attribench.data.openai_prompts import prompts_from_spec


def prompt_id(text: str) -> str:
    """Stable id from normalised text: the same caption links real photos and renders."""
    norm = re.sub(r"\s+", " ", text.strip().lower()).rstrip(".")
    return hashlib.sha256(norm.encode()).hexdigest()[:16]


def coco_captions(path: str | Path, count: int) -> list[str]:
    """First caption of the first `count` images (by image id) of a COCO captions JSON."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"COCO captions file not found: {path} (set prompts.sources.<name>.path in params.yaml)")
    ann = json.loads(path.read_text())["annotations"]
    first: dict[int, str] = {}
    for a in sorted(ann, key=lambda a: (a["image_id"], a["id"])):
        first.setdefault(a["image_id"], a["caption"].strip())
    caps = list(first.values())[:count]
    if len(caps) < count:
        raise ValueError(f"{path} has captions for {len(caps)} images; params ask for {count}")
    return caps


def text_file_prompts(path: str | Path, count: int) -> list[str]:
    lines = [ln.strip() for ln in Path(path).read_text().splitlines() if ln.strip()]
    if len(lines) < count:
        raise ValueError(f"{path} has {len(lines)} prompts; params ask for {count}")
    return lines[:count]


PROMPT_KINDS: dict[str, Callable[[dict], list[str]]] = {
    "grammar": lambda s: grammar_prompts(s.get("style", "natural"), s["count"], s.get("seed", 0)),
    "coco": lambda s: coco_captions(s["path"], s["count"]),
    "file": lambda s: text_file_prompts(s["path"], s["count"]),
    "openai": lambda s: prompts_from_spec(s, s["count"]),  # the openai package loads only when a request is made
}


def build_prompt_table(source: str, spec: dict) -> pd.DataFrame:
    texts = PROMPT_KINDS[spec["kind"]](spec)
    df = pd.DataFrame({"prompt_id": [prompt_id(t) for t in texts], "prompt": texts, "prompt_source": source})
    df["position"] = range(len(df))
    dup = df[df.prompt_id.duplicated()]
    if len(dup):
        raise ValueError(f"prompt source '{source}' has duplicate prompts, e.g. {dup.prompt.iloc[0]!r}")
    return df


def write_prompts(source: str, spec: dict, out: str | Path) -> Path:
    df = build_prompt_table(source, spec)
    with atomic_path(out) as tmp:
        df.to_parquet(tmp, index=False)
    return Path(out)


def chunk_names(source: str, count: int, chunk_size: int) -> list[str]:
    n = -(-count // chunk_size)
    return [f"{source}-{i:04d}" for i in range(n)]


def read_chunk(prompts_path: str | Path, chunk: str, chunk_size: int) -> pd.DataFrame:
    index = int(chunk.rsplit("-", 1)[1])
    df = pd.read_parquet(prompts_path)
    return df.iloc[index * chunk_size : (index + 1) * chunk_size].reset_index(drop=True)
