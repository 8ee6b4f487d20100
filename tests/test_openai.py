"""The OpenAI route end to end: the real `openai` client against a local stand-in server."""

import io
import json
import logging
import uuid
from pathlib import Path

import pandas as pd
import pytest
from openai_standin import CHAT, IMAGES, chat_reply, error, image_reply
from PIL import Image

from attribench import cli
from attribench.data.generators.openai_backend import BudgetExceeded, BackendNotConfigured, OpenAIBackend
from attribench.data.openai_prompts import SYSTEM, NotConfigured, OpenAIRequestFailed, generate_prompts, norm
from attribench.data.prompts import build_prompt_table, grammar_prompts, write_prompts
from attribench.data.render import render_shard
from attribench.data.shards import read_shard

SECRET = f"sk-standin-{uuid.uuid4().hex}"
FAST = dict(retry_delay=0.001)


@pytest.fixture(autouse=True)
def env(monkeypatch, tmp_path, caplog, capsys):
    """Key in the environment, cwd in tmp; afterwards the key must appear in no file and no log."""
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    for var in ("OPENAI_BASE_URL", "OPENAI_ORG_ID", "OPENAI_PROJECT_ID"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.chdir(tmp_path)
    caplog.set_level(logging.DEBUG)
    yield
    out = capsys.readouterr()
    logged = "\n".join(logging.Formatter().format(r) for when in ("setup", "call") for r in caplog.get_records(when))
    assert SECRET not in logged + out.out + out.err
    for f in tmp_path.rglob("*"):
        if f.is_file():
            assert SECRET.encode() not in f.read_bytes(), f"API key leaked into {f}"


def _cfg(url, count=3, chunk=None, **spec):
    gen = dict(
        backend="openai",
        family="dalle",
        model="dall-e-3",
        base_url=url,
        budget_usd=10.0,
        state_dir="state",
        batch_size=8,
        **FAST,
    )
    gen.update(spec)
    return {
        "profile": "test",
        "seed": 0,
        "device": "cpu",
        "prompts": {
            "chunk_size": chunk or count,
            "sources": {"creative": {"kind": "grammar", "style": "creative", "count": count}},
        },
        "generators": {"dalle3": gen},
    }


def _render(cfg, chunk="creative-0000", out=None):
    prompts = write_prompts("creative", cfg["prompts"]["sources"]["creative"], "prompts.parquet")
    return render_shard(cfg, "dalle3", chunk, out or f"shards/{chunk}.parquet", str(prompts))


def _spent(path="state/openai-spend.csv"):
    return round(pd.read_csv(path).usd.sum(), 6)


# --- creative prompts (chat) ---------------------------------------------------------------------


def test_chat_prompts_round_trip_parse_and_dedup(openai_standin):
    s = openai_standin
    exemplars = grammar_prompts("creative", 20)
    s.script(
        CHAT,
        chat_reply(
            "Here are 30 more prompts:\n"
            "1. A glass octopus playing chess, in the style of Escher\n"
            '2) "A GLASS octopus  playing chess, in the style of Escher."\n'  # same prompt: case/space/quotes/period
            "- **A paper dragon over Kyoto, ukiyo-e print**\n"
            f"* {exemplars[3].upper()}\n"  # an exemplar is not novel
            "#5: A 3D render of a tiny volcano in a teacup\n"
            "Enjoy!"
        ),
    )
    got = generate_prompts(12, "cache.parquet", base_url=s.url, n_exemplars=20, **FAST)
    assert got[:3] == [
        "A glass octopus playing chess, in the style of Escher",
        "A paper dragon over Kyoto, ukiyo-e print",
        "A 3D render of a tiny volcano in a teacup",
    ]
    assert len(got) == 12 and len({norm(p) for p in got}) == 12
    assert not {norm(p) for p in got} & {norm(e) for e in exemplars}
    req = s.calls(CHAT)
    assert len(req) == 2  # the first reply gave 3 new prompts, the second the rest
    assert req[0]["headers"]["authorization"] == f"Bearer {SECRET}"
    msgs = req[0]["body"]["messages"]
    assert req[0]["body"]["model"] == "gpt-4" and msgs[0] == {"role": "system", "content": SYSTEM}
    assert "generate 30 more prompts that are sufficiently diverse and novel" in msgs[1]["content"]
    assert all(e in msgs[1]["content"] for e in exemplars)


def test_prompt_source_kind_openai_and_cache_hit_makes_no_request(openai_standin, monkeypatch):
    s = openai_standin
    spec = {"kind": "openai", "count": 45, "base_url": s.url, "model": "gpt-4o", "cache": "c/prompts.parquet", **FAST}
    first = build_prompt_table("creative", spec)
    assert len(first) == 45 and first.prompt_id.is_unique
    n = len(s.requests)
    assert n == 2 and s.calls(CHAT)[0]["body"]["model"] == "gpt-4o"
    cached = pd.read_parquet("c/prompts.parquet")
    assert len(cached) == 2 and cached.raw.str.contains("stand-in scene").all()
    monkeypatch.delenv("OPENAI_API_KEY")  # a cache hit needs no key and no request
    again = build_prompt_table("creative", spec)
    smaller = build_prompt_table("creative", dict(spec, count=10))
    assert len(s.requests) == n
    assert list(again.prompt) == list(first.prompt) and list(smaller.prompt) == list(first.prompt[:10])


def test_chat_500_storm_gives_up_with_clear_error(openai_standin):
    s = openai_standin
    s.script(CHAT, *[error(500)] * 3)
    with pytest.raises(OpenAIRequestFailed, match=r"gave up after 3 attempts; last error HTTP 500"):
        generate_prompts(5, "cache.parquet", base_url=s.url, max_retries=2, n_exemplars=5, **FAST)
    assert len(s.calls(CHAT)) == 3


# --- DALL-E backend --------------------------------------------------------------------------------


def test_image_row_is_png_with_revised_prompt_and_spend_ledger(openai_standin):
    s = openai_standin
    cfg = _cfg(s.url, count=3, state_dir=None, quality="hd", style="natural")
    df = read_shard(_render(cfg))
    assert len(df) == 3 and (df.format == "png").all() and df.image_id.is_unique
    for row in df.itertuples():
        with Image.open(io.BytesIO(row.image)) as im:
            assert im.format == "PNG" and im.size == (16, 16) == (row.width, row.height)
        assert json.loads(row.transform) == {"revised_prompt": f"revised: {row.prompt}"}
    assert set(df.prompt) == set(grammar_prompts("creative", 3))
    body = s.calls(IMAGES)[0]["body"]
    assert body == {
        "model": "dall-e-3",
        "prompt": body["prompt"],
        "size": "1024x1024",
        "quality": "hd",
        "style": "natural",
        "n": 1,
        "response_format": "b64_json",
    }
    # No state_dir: the ledger sits beside the Snakemake shards of this generator.
    assert _spent("data/test/shards/raw/dalle3/openai-spend.csv") == 0.24


def test_429_then_success_is_retried(openai_standin, caplog):
    s = openai_standin
    s.script(IMAGES, error(429))
    df = read_shard(_render(_cfg(s.url, count=2)))
    assert len(df) == 2 and len(s.calls(IMAGES)) == 3
    assert "HTTP 429; retry 1/5" in caplog.text
    assert _spent() == 0.08  # the refused 429 costs nothing


def test_content_policy_refusal_is_skipped_and_the_rest_rendered(openai_standin):
    s = openai_standin
    s.script(
        IMAGES,
        image_reply(shade=251),
        error(400, "content_policy_violation", "Your request was rejected"),
        image_reply(shade=252),
    )
    df = read_shard(_render(_cfg(s.url, count=3, batch_size=1)))  # batch 1: one part holds no row at all
    prompts = grammar_prompts("creative", 3)
    assert list(df.prompt) == [prompts[0], prompts[2]]
    skipped = pd.read_csv("state/creative-0000.skipped.csv")
    assert list(skipped.prompt) == [prompts[1]] and skipped.reason.str.contains("content_policy_violation").all()
    assert len(s.calls(IMAGES)) == 3 and _spent() == 0.08


def test_other_400_fails_at_once(openai_standin):
    s = openai_standin
    s.script(IMAGES, error(400, "invalid_size", "bad size"))
    with pytest.raises(OpenAIRequestFailed, match="HTTP 400 .invalid_size."):
        _render(_cfg(s.url, count=2))
    assert len(s.calls(IMAGES)) == 1


def test_500_storm_exhausts_retries_with_clear_error(openai_standin):
    s = openai_standin
    s.script(IMAGES, *[error(500)] * 4)
    with pytest.raises(OpenAIRequestFailed, match=r"dalle3: image .*: gave up after 4 attempts; last error HTTP 500"):
        _render(_cfg(s.url, count=2, max_retries=3))
    assert len(s.calls(IMAGES)) == 4


def test_budget_cap_stops_before_any_request(openai_standin):
    s = openai_standin
    with pytest.raises(
        BudgetExceeded, match=r"estimate \$0\.20 \(5 images x \$0\.040\) exceeds the budget left \$0\.10"
    ):
        _render(_cfg(s.url, count=5, budget_usd=0.10))
    assert s.calls(IMAGES) == []


def test_budget_counts_the_ledger_on_resume_and_across_shards(openai_standin):
    s = openai_standin
    cfg = _cfg(s.url, count=8, chunk=4, batch_size=1, max_retries=1, budget_usd=0.28)  # room for 7 images
    s.script(IMAGES, image_reply(shade=251), image_reply(shade=252), error(500), error(500))
    with pytest.raises(OpenAIRequestFailed):
        _render(cfg)  # dies after 2 paid images
    assert _spent() == 0.08
    df = read_shard(_render(cfg))  # resume: 2 left, $0.08 + $0.08 <= $0.28
    assert len(df) == 4 and len(s.calls(IMAGES)) == 6 and _spent() == 0.16
    with pytest.raises(BudgetExceeded, match=r"creative-0001: estimate \$0\.16 .* already spent \$0\.16"):
        _render(cfg, "creative-0001")
    assert len(s.calls(IMAGES)) == 6


def test_missing_key_is_one_clear_line(openai_standin, monkeypatch, tmp_path, capsys):
    monkeypatch.delenv("OPENAI_API_KEY")
    cfg = _cfg(openai_standin.url, count=2)
    with pytest.raises(BackendNotConfigured, match="environment variable OPENAI_API_KEY is not set") as e:
        OpenAIBackend().load(cfg["generators"]["dalle3"], "cpu")
    assert "\n" not in str(e.value)
    with pytest.raises(NotConfigured, match="environment variable MY_KEY is not set"):
        generate_prompts(3, "cache.parquet", base_url=openai_standin.url, api_key_env="MY_KEY")
    (tmp_path / "cfg.json").write_text(json.dumps(cfg))
    write_prompts("creative", cfg["prompts"]["sources"]["creative"], "prompts.parquet")
    rc = cli.main(
        [
            "--config-json",
            "cfg.json",
            "render",
            "--generator",
            "dalle3",
            "--chunk",
            "creative-0000",
            "--prompts",
            "prompts.parquet",
            "--out",
            "shard.parquet",
        ]
    )
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "\n" not in err and "OPENAI_API_KEY" in err
    assert openai_standin.requests == []


def test_api_key_never_written(openai_standin):
    """The autouse fixture checks every test; here one run touches every file the route writes."""
    s = openai_standin
    s.script(IMAGES, error(429), error(400, "content_policy_violation"))
    generate_prompts(5, "cache.parquet", base_url=s.url, n_exemplars=5, **FAST)
    _render(_cfg(s.url, count=3))
    files = {p.name for p in Path(".").rglob("*") if p.is_file()}
    assert {"cache.parquet", "openai-spend.csv", "creative-0000.skipped.csv", "creative-0000.parquet"} <= files
    assert any(r["headers"].get("authorization") == f"Bearer {SECRET}" for r in s.requests)  # it was used
