import pandas as pd

from attribench.data.prompts import (
    build_prompt_table,
    chunk_names,
    grammar_prompts,
    prompt_id,
    read_chunk,
    write_prompts,
)


def test_grammars_give_enough_distinct_deterministic_prompts():
    for style in ("natural", "creative"):
        a, b = grammar_prompts(style, 250), grammar_prompts(style, 250)
        assert a == b and len(set(a)) == 250


def test_two_styles_are_clearly_different():
    nat, cre = grammar_prompts("natural", 200), grammar_prompts("creative", 200)
    assert not set(nat) & set(cre)
    # Creative prompts name an art style; COCO-like captions never do.
    assert all((" style of " in p) or (" as a" in p) for p in cre)
    assert not any(" style of " in p for p in nat)
    assert sum(map(len, cre)) / 200 > 1.5 * sum(map(len, nat)) / 200


def test_prompt_ids_are_stable_and_normalised():
    assert prompt_id("A dog on a bench.") == prompt_id("  a dog on a  bench ")
    assert prompt_id("A dog on a bench.") != prompt_id("A cat on a bench.")


def test_chunks_cover_every_prompt_once(tmp_path):
    spec = {"kind": "grammar", "style": "natural", "count": 45}
    path = write_prompts("natural", spec, tmp_path / "natural.parquet")
    names = chunk_names("natural", 45, 20)
    assert names == ["natural-0000", "natural-0001", "natural-0002"]
    rows = pd.concat([read_chunk(path, n, 20) for n in names])
    assert list(rows.prompt_id) == list(build_prompt_table("natural", spec).prompt_id)
