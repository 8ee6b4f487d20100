import io

import pandas as pd
import pytest
from PIL import Image

from attribench.data.delivery import deliver_shard
from attribench.data.shards import content_id, encode_png, make_row, read_shard, write_shard


def _img(color, size=(40, 30)):
    return Image.new("RGB", size, color)


def test_rows_carry_content_hash_and_reject_unknown_columns():
    data = encode_png(_img("red"))
    row = make_row(data, "png", generator="g", family="f")
    assert row["image_id"] == content_id(data)
    with pytest.raises(KeyError, match="genrator"):
        make_row(data, "png", genrator="g")


def test_write_is_atomic_and_dedupes(tmp_path):
    rows = [make_row(encode_png(_img(c)), "png", generator="g", family="f") for c in ("red", "blue", "red")]
    out = write_shard(rows, tmp_path / "s.parquet")
    df = read_shard(out)
    assert len(df) == 2 and df.image_id.is_unique
    assert [p.name for p in tmp_path.iterdir()] == ["s.parquet"]  # no temp file left


def test_failed_write_leaves_old_shard_untouched(tmp_path):
    out = write_shard([make_row(encode_png(_img("red")), "png", generator="g", family="f")], tmp_path / "s.parquet")
    before = out.read_bytes()
    with pytest.raises(Exception):
        write_shard(pd.DataFrame({"image_id": ["x"]}), out)  # missing columns: the write fails
    assert out.read_bytes() == before and len(list(tmp_path.iterdir())) == 1


def test_delivery_gives_one_size_and_format_for_every_class(tmp_path):
    png = encode_png(_img("green", (96, 64)))
    buf = io.BytesIO()
    _img("blue", (300, 500)).save(buf, "JPEG", quality=70)
    raw = write_shard(
        [
            make_row(png, "png", generator="a", family="f"),
            make_row(buf.getvalue(), "jpeg", generator="real", family="real"),
        ],
        tmp_path / "raw.parquet",
    )
    out = deliver_shard(raw, tmp_path / "delivered.parquet", {"size": 32, "format": "jpeg", "quality": 90})
    df = read_shard(out)
    assert set(df.format) == {"jpeg"} and set(df.width) == {32} and set(df.height) == {32}
    for data in df.image:
        with Image.open(io.BytesIO(data)) as im:
            assert im.format == "JPEG" and im.size == (32, 32)
    assert set(df.parent_id) == set(read_shard(raw).image_id)
    assert df.delivery.str.contains('"quality": 90').all()
