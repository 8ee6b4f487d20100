"""`attribench predict` on a folder of mixed images: odd formats decode, bad files are skipped and
named, and a run's own delivered test images give back its recorded predictions."""

from __future__ import annotations

import io
import json
import struct
import zlib

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from attribench.cli import main
from attribench.data.delivery import deliver_image
from attribench.data.shards import (
    encode_png,
    load_images,
    make_row,
)
from attribench.experiments.predict import BadImage, decode_for_predict, predict_paths
from attribench.experiments.runs import run_experiment
from attribench.training.openset import probabilities
from toy_data import TOY_NET, TOY_TRAINING, noisy, quarter_split_index

COLOURS = {"red": (190, 60, 60), "blue": (60, 80, 190), "green": (60, 170, 80)}
POLICY = {"size": 24, "format": "jpeg", "quality": 95}


def _noisy(colour, rng, size=(32, 40)):
    return noisy(colour, rng, size, sigma=30)


@pytest.fixture(scope="module")
def run(tmp_path_factory, one_torch_thread):
    """A 3-colour run trained on JPEG-delivered images (the delivery policy recorded in the run)."""
    tmp = tmp_path_factory.mktemp("predict")
    rng = np.random.default_rng(0)
    rows = [
        make_row(
            deliver_image(encode_png(Image.fromarray(_noisy(colour, rng))), POLICY)[0],
            "jpeg",
            generator=g,
            family=g,
            source="generated",
            prompt=f"p{i}",
            prompt_id=f"p{i}",
            prompt_source="natural",
        )
        for g, colour in COLOURS.items()
        for i in range(24)
    ]
    index = pd.read_parquet(quarter_split_index(rows, tmp))
    cfg = {
        "profile": "test",
        "split": {"seed": 0},
        "delivery": POLICY,
        "training": dict(TOY_TRAINING),
        "attributors": dict(TOY_NET),
        "datasets": {"all": {"counts": {"train": 12, "val": 6, "test": 6}}},
        "experiments": {"toy": {"attributor": "toy", "train": "all"}},
    }
    out = tmp / "runs" / "toy"
    run_experiment(cfg, "toy", tmp / "index.parquet", out, threads=1)
    return tmp, out, index


def _bomb_png() -> bytes:
    """A valid PNG header declaring 30000 x 30000 pixels (CRC fixed): PIL refuses it at open."""
    data = bytearray(encode_png(Image.new("L", (4, 4))))
    ihdr = 8 + 8  # signature, then length + b"IHDR"
    data[ihdr : ihdr + 8] = struct.pack(">II", 30000, 30000)
    data[ihdr + 13 : ihdr + 17] = struct.pack(">I", zlib.crc32(bytes(data[ihdr - 4 : ihdr + 13])))
    return bytes(data)


def _save(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def _odd_images(rng) -> dict[str, bytes]:
    """Valid images in every awkward form the decoder must take."""
    rgb = Image.fromarray(_noisy(COLOURS["red"], rng, (48, 64)))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees on display
    frames = [Image.fromarray(_noisy(c, rng)) for c in COLOURS.values()]
    rgba = rgb.convert("RGBA")
    rgba.putalpha(128)
    return {
        "cmyk.jpg": _save(rgb.convert("CMYK"), "JPEG", quality=90),
        "sixteen_bit.png": _save(Image.fromarray(np.asarray(rgb.convert("L"), dtype=np.uint16) * 257), "PNG"),
        "palette.png": _save(rgb.convert("P", palette=Image.Palette.ADAPTIVE), "PNG"),
        "alpha.png": _save(rgba, "PNG"),
        "rotated.jpg": _save(rgb, "JPEG", exif=exif),
        "image.webp": _save(rgb, "WEBP", quality=90),
        "animated.gif": _save(frames[0], "GIF", save_all=True, append_images=frames[1:]),
        "grey.jpg": _save(rgb.convert("L"), "JPEG"),
        "big.png": _save(rgb.resize((640, 480)), "PNG"),
        "nested/deeper/tiff.tif": _save(rgb, "TIFF"),
    }


@pytest.fixture(scope="module")
def folder(run):
    """~50 files: the run's 18 test images as delivered bytes, 20 other renders as PNG, 10 odd
    formats, 4 bad files (with the reasons they must be skipped for)."""
    tmp, _, index = run
    rng = np.random.default_rng(1)
    root = tmp / "mixed"
    images = load_images(index)
    test = index[index["split"] == "test"]
    # In the order the run tested them, so `predict` forms the same batches: on CPU a convolution's
    # last float32 bit depends on the batch an image shares (checked: other orders differ by ~3e-8).
    tested = pd.read_parquet(tmp / "runs" / "toy" / "predictions_all.parquet")["image_id"]
    assert set(tested) == set(test["image_id"])
    for i, image_id in enumerate(tested):
        (root / "test").mkdir(parents=True, exist_ok=True)
        (root / "test" / f"{i:02d}_{image_id[:8]}.jpg").write_bytes(images[image_id])
    for i in range(20):
        (root / "renders").mkdir(exist_ok=True)
        colour = list(COLOURS.values())[i % 3]
        (root / "renders" / f"r{i}.png").write_bytes(encode_png(Image.fromarray(_noisy(colour, rng))))
    for name, data in _odd_images(rng).items():
        (root / "odd" / name).parent.mkdir(parents=True, exist_ok=True)
        (root / "odd" / name).write_bytes(data)
    good = (root / "renders" / "r0.png").read_bytes()
    jpeg = _save(Image.fromarray(_noisy(COLOURS["blue"], rng, (64, 64))), "JPEG")
    bad = {
        "bad/empty.jpg": (b"", "zero-byte"),
        "bad/notes.png": (b"not an image at all\n", "not an image"),
        "bad/cut.jpg": (jpeg[: len(jpeg) // 2], "truncated"),
        "bad/bomb.png": (_bomb_png(), "decompression bomb"),
    }
    for name, (data, _) in bad.items():
        (root / name).parent.mkdir(exist_ok=True)
        (root / name).write_bytes(data)
    (root / ".hidden").write_bytes(good)  # hidden files are not inputs
    assert good
    return root, test, {str(root / k): reason for k, (_, reason) in bad.items()}


def test_folder_of_mixed_images_skips_exactly_the_bad_files(run, folder):
    _, run_dir, _ = run
    root, test, bad = folder
    records, skipped = predict_paths(run_dir, [str(root)], top_k=2)
    assert {s["path"]: s["reason"] for s in skipped} == bad
    assert len(records) == len(test) + 20 + 10
    classes = json.loads((run_dir / "predict.json").read_text())["classes"]
    for r in records:
        assert len(r["sha256"]) == 64 and r["run"] == "toy" and len(r["top_k"]) == 2
        assert r["top_k"][0]["p"] >= r["top_k"][1]["p"] and {t["class"] for t in r["top_k"]} <= set(classes)
        assert isinstance(r["unknown"], bool) and np.isfinite(r["unknown_score"])
    # Plain renders of the trained colours are attributed to their colour (the toy task is easy).
    renders = [r for r in records if "/renders/" in r["path"]]
    truth = [list(COLOURS)[int(r["path"].rsplit("/r", 1)[1].split(".")[0]) % 3] for r in renders]
    assert np.mean([r["top_k"][0]["class"] == t for r, t in zip(renders, truth)]) >= 0.8


def test_own_test_images_give_back_the_recorded_predictions(run, folder):
    _, run_dir, _ = run
    root, test, _ = folder
    recorded = pd.read_parquet(run_dir / "predictions_all.parquet").set_index("image_id")  # test set "all"
    classes = json.loads((run_dir / "model.json").read_text())["classes"]
    raw, skipped = predict_paths(run_dir, [str(root / "test" / "*.jpg")], top_k=len(classes), calibrated=False)
    cal, _ = predict_paths(run_dir, [str(root / "test")], top_k=len(classes))
    assert not skipped and len(raw) == len(test)
    temperature = json.loads((run_dir / "predict.json").read_text())["temperature"]
    for r, c in zip(raw, cal):
        image_id = r["path"].rsplit("/", 1)[1].split("_")[1][:8]
        row = recorded[recorded.index.str.startswith(image_id)].iloc[0]
        assert r["sha256"].startswith(image_id)  # image ids are the SHA-256 of the delivered bytes
        got = {t["class"]: t["p"] for t in r["top_k"]}
        assert [got[k] for k in classes] == [row[f"p_{k}"] for k in classes]  # bit-identical
        assert r["top_k"][0]["class"] == c["top_k"][0]["class"] == row["pred_label"]
        expected = probabilities(np.log(row[[f"p_{k}" for k in classes]].to_numpy(np.float64))[None], temperature)[0]
        np.testing.assert_allclose([{t["class"]: t["p"] for t in c["top_k"]}[k] for k in classes], expected, atol=1e-4)


def test_decoder_handles_odd_formats():
    rng = np.random.default_rng(2)
    odd = _odd_images(rng)
    for name, data in odd.items():
        img, _ = decode_for_predict(data)
        assert img.mode == "RGB", name
    assert decode_for_predict(odd["rotated.jpg"])[0].size == (48, 64)  # EXIF orientation 6: upright is portrait
    sixteen = np.asarray(decode_for_predict(odd["sixteen_bit.png"])[0])
    assert 30 < sixteen.mean() < 225  # scaled to 8 bits, not clipped to white
    alpha = np.asarray(decode_for_predict(odd["alpha.png"])[0]).astype(int)
    assert alpha[..., 0].mean() > 190  # half-transparent red on white is light
    png = odd["big.png"]
    for data, reason in [
        (b"", "zero-byte"),
        (png[: len(png) // 2], "truncated"),
        (b"<html>", "not an image"),
        (_bomb_png(), "decompression bomb"),
    ]:
        with pytest.raises(BadImage) as err:
            decode_for_predict(data)
        assert err.value.reason == reason


def test_cli_writes_csv_and_exit_status_counts_skips(run, folder, tmp_path, capsys):
    _, run_dir, _ = run
    root, test, bad = folder
    out = tmp_path / "preds.csv"
    rc = main(["predict", "--run", str(run_dir), str(root), "--top-k", "3", "--out", str(out), "--device", "cpu"])
    assert rc == 100 + len(bad)
    df = pd.read_csv(out)
    assert len(df) == len(test) + 30 and {
        "path",
        "sha256",
        "class_1",
        "p_1",
        "class_3",
        "unknown",
        "unknown_score",
    } <= set(df)
    err = capsys.readouterr().err
    assert all(f"skipped {p}: {reason}" in err for p, reason in bad.items())
    assert main(["predict", "--run", str(run_dir), str(root / "renders"), "--out", str(tmp_path / "p.jsonl")]) == 0
    assert len((tmp_path / "p.jsonl").read_text().splitlines()) == 20
    assert main(["predict", "--run", str(tmp_path / "nope"), str(root)]) == 2
