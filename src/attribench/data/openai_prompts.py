"""Creative prompts from an OpenAI chat model (Xu et al. Fig. 11); the client, key and retry helpers
live in `core.openai_client` (the DALL-E backend shares them).

Every raw response and the prompts accepted from it go to a Parquet cache, keyed by the settings
that shape the requests, so a re-run (or a smaller `count`) replays the cache without an API call.
The API key is read from the environment only and is never logged or written anywhere.
"""

from __future__ import annotations

import hashlib
import logging
import random
import re
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.parquet as pq

from attribench.core.config import fingerprint
from attribench.core.io import atomic_path
from attribench.core.openai_client import NotConfigured, OpenAIRequestFailed, make_client, with_retries  # noqa: F401
from attribench.data.grammar import grammar_prompts

if TYPE_CHECKING:
    import openai

log = logging.getLogger(__name__)

SYSTEM = "You are an AI assistant to help generate image text prompts."
USER = (
    "I am trying to generate thousands of novel prompts for AI to generate images using tools, such as "
    "Midjourney, Stable Diffusion, and DALL-E. You can use your prior knowledge about popular prompts, and I am "
    "also providing you a few hundred exemplar prompts in below:\n\n{exemplars}\n\n"
    "Could you learn from these prompts and generate {n} more prompts that are sufficiently diverse and novel "
    "covering various content and styles. Write one prompt per line, without numbering or any other text."
)
DEFAULTS = dict(model="gpt-4", exemplars=None, n_exemplars=200, per_request=30, temperature=1.0, seed=0,
                base_url=None, api_key_env="OPENAI_API_KEY", max_retries=5, retry_delay=1.0, timeout=120.0)
STALE_LIMIT = 5  # consecutive responses with nothing new: the model is exhausted, stop spending
CACHE_SCHEMA = pa.schema([("settings", pa.string()), ("request", pa.int32()), ("model", pa.string()),
                          ("raw", pa.string()), ("accepted", pa.list_(pa.string()))])


_LEAD = re.compile(r"^(?:[-*•·]+|\(?\d{1,3}[.):\]]|#\d+[.:)]?|prompt\s*\d*\s*[:.)-])\s*", re.I)
_QUOTES = "\"'“”‘’`"


def parse_prompts(text: str) -> list[str]:
    """One prompt per line: drop numbering, bullets, surrounding quotes and preamble lines."""
    out = []
    for line in (text or "").splitlines():
        s = line.strip().replace("**", "")
        while (t := _LEAD.sub("", s, count=1).strip()) != s:
            s = t
        if len(s) > 1 and s[0] in _QUOTES and s[-1] in _QUOTES:
            s = s[1:-1].strip()
        if s and not s.endswith(":") and len(s.split()) >= 3:  # "Here are 30 more prompts:" etc.
            out.append(s)
    return out


def norm(text: str) -> str:
    """De-dup key: case/space-insensitive; at least as coarse as `prompts.prompt_id`."""
    return re.sub(r"\s+", " ", text.strip().lower()).rstrip(" .!;,")


def exemplar_pool(path: str | None, n: int, seed: int) -> list[str]:
    if path:
        lines = [ln.strip() for ln in Path(path).read_text().splitlines() if ln.strip()]
        if not lines:
            raise ValueError(f"exemplar file {path} has no prompts")
        return lines
    return grammar_prompts("creative", n, seed)


def messages(exemplars: list[str], n: int) -> list[dict]:
    return [{"role": "system", "content": SYSTEM},
            {"role": "user", "content": USER.format(exemplars="\n".join(exemplars), n=n)}]


def _read_cache(path: Path) -> list[dict]:
    return pq.read_table(path).to_pylist() if path.exists() else []


def _write_cache(path: Path, rows: list[dict]) -> None:
    with atomic_path(path) as tmp:
        pq.write_table(pa.Table.from_pylist(rows, schema=CACHE_SCHEMA), tmp)


def generate_prompts(count: int, cache: str | Path, client: openai.OpenAI | None = None, **opts) -> list[str]:
    """`count` novel prompts; replayed from `cache` where possible, requested otherwise."""
    unknown = set(opts) - set(DEFAULTS)
    if unknown:
        raise TypeError(f"unknown option(s) {sorted(unknown)}")
    o = {**DEFAULTS, **opts}
    pool = exemplar_pool(o["exemplars"], o["n_exemplars"], o["seed"])
    # What shapes the requests; not base_url or retry settings, and never the key.
    settings = fingerprint({k: o[k] for k in ("model", "n_exemplars", "per_request", "temperature", "seed")}
                           | {"pool": hashlib.sha256("\n".join(pool).encode()).hexdigest()})
    cache = Path(cache)
    rows = _read_cache(cache)
    mine = sorted((r for r in rows if r["settings"] == settings), key=lambda r: r["request"])
    seen, accepted = {norm(p) for p in pool}, []
    for r in mine:
        for p in r["accepted"]:
            if norm(p) not in seen:
                seen.add(norm(p))
                accepted.append(p)
    request, stale = len(mine), 0
    if len(accepted) >= count:
        log.info("openai prompts: %d from cache %s, no API call", count, cache)
    while len(accepted) < count:
        client = client or make_client(o["api_key_env"], o["base_url"], o["timeout"], "OpenAI prompt source")
        shown = random.Random(f"{o['seed']}:{request}").sample(pool, min(o["n_exemplars"], len(pool)))
        msgs = messages(shown, o["per_request"])
        resp = with_retries(
            lambda: client.chat.completions.create(model=o["model"], messages=msgs, temperature=o["temperature"]),
            f"chat request {request}", o["max_retries"], o["retry_delay"],
        )
        choice = resp.choices[0]
        raw = choice.message.content or ""
        lines = parse_prompts(raw)
        if choice.finish_reason == "length":
            lines = lines[:-1]  # the last line was cut off mid-prompt
        new = []
        for p in lines:
            if norm(p) not in seen:
                seen.add(norm(p))
                new.append(p)
        rows.append(dict(settings=settings, request=request, model=o["model"], raw=raw, accepted=new))
        _write_cache(cache, rows)  # after every response: a crash never pays for a response twice
        accepted += new
        log.info("openai prompts: request %d gave %d new (%d/%d)", request, len(new), min(len(accepted), count), count)
        request, stale = request + 1, 0 if new else stale + 1
        if stale >= STALE_LIMIT:
            raise OpenAIRequestFailed(f"openai prompts: {STALE_LIMIT} responses in a row brought no new prompt "
                                      f"({len(accepted)}/{count}); lower count or change the exemplars")
    return accepted[:count]


def prompts_from_spec(spec: dict, count: int) -> list[str]:
    """A params prompt source of kind `openai` (keys as in DEFAULTS, plus `cache`)."""
    opts = {k: spec[k] for k in DEFAULTS if k in spec}
    o = {**DEFAULTS, **opts}
    default_cache = f"data/cache/openai-prompts-{fingerprint({k: o[k] for k in ('model', 'seed', 'exemplars')})}.parquet"
    return generate_prompts(count, spec.get("cache") or default_cache, **opts)
