"""DALL-E through the OpenAI images API: one request per image, with a spend cap.

Paid API, so: the shard's cost is estimated and checked against `budget_usd` before the first
request; every paid image is appended to a per-generator spend ledger (so resumed runs and other
shards count what was already spent); content-policy refusals are recorded in a per-shard sidecar
and the run goes on. Ledger and sidecar live in `state_dir`, by default beside the Snakemake shards.
"""

from __future__ import annotations

import base64
import csv
import fcntl
import io
import json
import logging
import time
from pathlib import Path
from typing import Any

import pandas as pd
from PIL import Image

from attribench.data.generators.base import Backend, RenderItem, base_provenance, register_backend
from attribench.core.io import atomic_path
from attribench.core.openai_client import NotConfigured, OpenAIRequestFailed, make_client, with_retries
from attribench.data.shards import encode_png

log = logging.getLogger(__name__)

BackendNotConfigured = NotConfigured  # the name earlier code imported

# USD per image (OpenAI list prices) by (model, size, quality); `price_usd` in the spec overrides.
PRICES = {
    ("dall-e-3", "1024x1024", "standard"): 0.040, ("dall-e-3", "1024x1792", "standard"): 0.080,
    ("dall-e-3", "1792x1024", "standard"): 0.080, ("dall-e-3", "1024x1024", "hd"): 0.080,
    ("dall-e-3", "1024x1792", "hd"): 0.120, ("dall-e-3", "1792x1024", "hd"): 0.120,
    ("dall-e-2", "1024x1024", "standard"): 0.020, ("dall-e-2", "512x512", "standard"): 0.018,
    ("dall-e-2", "256x256", "standard"): 0.016,
}
LEDGER_NAME = "openai-spend.csv"
LEDGER_FIELDS = ["time", "generator", "chunk", "item", "model", "size", "quality", "usd", "outcome"]


class BudgetExceeded(RuntimeError):
    pass


def unit_price(spec: dict) -> float:
    if spec.get("price_usd") is not None:
        return float(spec["price_usd"])
    key = (spec["model"], spec.get("size", "1024x1024"), spec.get("quality", "standard"))
    if key not in PRICES:
        raise NotConfigured(f"no price known for model/size/quality {key}; set price_usd (USD per image) in the generator")
    return PRICES[key]


class Ledger:
    """Append-only CSV of paid requests; a file lock keeps parallel shards of one generator consistent."""

    def __init__(self, path: Path):
        self.path = path

    def _locked(self, mode: str):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        f = open(self.path, mode, newline="")
        fcntl.flock(f, fcntl.LOCK_EX if "a" in mode else fcntl.LOCK_SH)
        return f

    def spent(self) -> float:
        if not self.path.exists():
            return 0.0
        with self._locked("r") as f:
            return sum(float(r["usd"]) for r in csv.DictReader(f))

    def add(self, **row) -> None:
        with self._locked("a") as f:
            w = csv.DictWriter(f, LEDGER_FIELDS)
            if f.tell() == 0:
                w.writeheader()
            w.writerow(dict(row, time=time.strftime("%Y-%m-%dT%H:%M:%S")))


def record_skipped(path: Path, rows: list[dict]) -> None:
    """Sidecar of refused items; a re-rendered batch replaces its earlier entries instead of doubling them."""
    new = pd.DataFrame(rows, columns=["prompt_id", "image_index", "prompt", "reason"])
    old = pd.read_csv(path, dtype={"prompt_id": str}) if path.exists() else new.iloc[:0]
    df = pd.concat([old, new]).drop_duplicates(["prompt_id", "image_index"], keep="last")
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False)


@register_backend
class OpenAIBackend(Backend):
    name = "openai"

    def __init__(self):
        self._shard: dict | None = None

    def items(self, gen: str, spec: dict, chunk: str, cfg: dict, prompts_path: str | None) -> list[RenderItem]:
        items = super().items(gen, spec, chunk, cfg, prompts_path)
        # render.py names the chunk, the profile and the whole item list only here; render() needs
        # them for the sidecar, the default state_dir and the estimate of what is left in the shard.
        self._shard = dict(gen=gen, chunk=chunk, profile=cfg.get("profile", "default"), keys=[i.key for i in items])
        return items

    def load(self, spec: dict, device: str) -> Any:
        if spec.get("budget_usd") is None:
            raise NotConfigured(f"generator backend 'openai' (model {spec.get('model')}) needs budget_usd, a spend cap "
                                "in USD for this generator")
        client = make_client(spec.get("api_key_env", "OPENAI_API_KEY"), spec.get("base_url"),
                             spec.get("timeout", 120.0), f"generator backend 'openai' (model {spec.get('model')})")
        return {"client": client, "price": unit_price(spec), "checked": False}

    def _check_budget(self, gen: str, chunk: str, spec: dict, ledger: Ledger, n: int, price: float) -> None:
        spent, cap = ledger.spent(), float(spec["budget_usd"])
        if spent + n * price > cap + 1e-9:
            raise BudgetExceeded(
                f"{gen}/{chunk}: estimate ${n * price:.2f} ({n} images x ${price:.3f}) exceeds the budget left "
                f"${max(cap - spent, 0):.2f} (budget_usd ${cap:.2f}, already spent ${spent:.2f} per {ledger.path}); "
                "nothing more was requested"
            )

    def render(self, state: Any, gen: str, spec: dict, items: list[RenderItem]) -> list[dict]:
        shard = self._shard if self._shard and self._shard["gen"] == gen and items[0].key in self._shard["keys"] else None
        chunk = shard["chunk"] if shard else "adhoc"
        state_dir = Path(spec.get("state_dir") or f"data/{shard['profile'] if shard else 'default'}/shards/raw/{gen}")
        ledger, price = Ledger(state_dir / LEDGER_NAME), state["price"]
        if not state["checked"]:
            # Batches run in order and finished ones are skipped, so everything from this batch on is still to pay.
            left = len(shard["keys"]) - shard["keys"].index(items[0].key) if shard else len(items)
            self._check_budget(gen, chunk, spec, ledger, left, price)
            log.info("%s/%s: %d images x $%.3f = $%.2f (spent so far $%.2f of $%.2f)", gen, chunk, left, price,
                     left * price, ledger.spent(), float(spec["budget_usd"]))
            state["checked"] = True
        args = dict(model=spec["model"], size=spec.get("size", "1024x1024"), n=1, response_format="b64_json")
        if spec.get("quality") or spec["model"] == "dall-e-3":  # dall-e-2 takes neither quality nor style
            args["quality"] = spec.get("quality", "standard")
        if spec.get("style"):
            args["style"] = spec["style"]
        entry = dict(generator=gen, chunk=chunk, model=spec["model"], size=args["size"], quality=args.get("quality", "standard"))
        rows, skipped = [], []
        for it in items:
            self._check_budget(gen, chunk, spec, ledger, 1, price)  # other shards may be spending too
            try:
                resp = with_retries(lambda: state["client"].images.generate(prompt=it.prompt, **args), f"{gen}: image {it.key}",
                                    spec.get("max_retries", 5), spec.get("retry_delay", 1.0))
            except OpenAIRequestFailed as e:
                if e.code != "content_policy_violation":
                    raise
                log.warning("%s: %s refused by the content policy; skipped", gen, it.key)
                skipped.append(dict(prompt_id=it.prompt_id, image_index=it.image_index, prompt=it.prompt,
                                    reason=str(e)))
                ledger.add(item=it.key, usd=0.0, outcome="refused", **entry)  # refusals are not billed
                continue
            ledger.add(item=it.key, usd=price, outcome="ok", **entry)
            data = resp.data[0]
            with Image.open(io.BytesIO(base64.b64decode(data.b64_json))) as im:
                png, (w, h) = encode_png(im), im.size
            rows.append(dict(image=png, format="png", checkpoint=spec["model"], origin=f"openai:{spec['model']}",
                             width=w, height=h, transform=json.dumps({"revised_prompt": data.revised_prompt}),
                             **base_provenance(gen, spec, it)))
        if skipped:
            record_skipped(state_dir / f"{chunk}.skipped.csv", skipped)
        return rows
