"""Training end to end on a tiny separable toy set: it learns, is repeatable, and its checkpoint
reproduces the recorded predictions. Plus the transforms, the registry and the LR schedule."""

import io
import json
import math
import pickle

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from attribench.models.attributors import build_attributor
from attribench.data.imagedata import ImageDataset, resize_crop
from attribench.data.shards import encode_png, load_images, make_row, read_metadata, write_shard
from attribench.training.loop import load_model, lr_at, predict, train_run
from split_eval import evaluate_split

CLASSES = ["red", "green", "blue"]
COLOURS = {"red": (190, 60, 60), "green": (60, 170, 70), "blue": (60, 80, 190), "yellow": (200, 200, 40)}
SPEC = {
    "attributor": "timm_scratch",
    "attributor_spec": {"model": "test_resnet"},  # timm's ~0.4M-parameter test net: trains in seconds
    "input_size": 32,
    "epochs": 4,
    "batch_size": 16,
    "lr": 2e-3,
    "weight_decay": 0.05,
    "warmup_epochs": 1,
    "min_lr": 1e-5,
    "seed": 0,
    "classes": CLASSES,
    "num_threads": 1,  # one thread: other jobs on a 2-core box make 2 OpenMP threads crawl
}


def toy_image(rng, colour, stripes: bool) -> Image.Image:
    """48x40 noisy colour field (non-square, so the short-side resize and crop are exercised)."""
    img = np.array(colour, dtype=float) + rng.normal(0, 35, (40, 48, 3))
    if stripes:
        img[:, ::4] -= 60
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))


def encode(img: Image.Image, fmt: str) -> bytes:
    if fmt == "png":
        return encode_png(img)
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=95)
    return buf.getvalue()


@pytest.fixture(scope="module")
def toy_index(tmp_path_factory):
    """3 classes x (16 train, 8 val, 8 test), PNG and JPEG mixed, plus a 'yellow' class that is not
    in SPEC['classes'] and must be dropped."""
    rng = np.random.default_rng(0)
    rows = []
    for g, colour in COLOURS.items():
        for split, n in (("train", 16), ("val", 8), ("test", 8)):
            for i in range(n if g != "yellow" else 2):
                fmt = "png" if i % 2 else "jpeg"
                rows.append(
                    make_row(
                        encode(toy_image(rng, colour, g == "blue"), fmt),
                        fmt,
                        generator=g,
                        source="generated",
                        prompt=f"{split} {i}",
                        prompt_source="toy",
                    )
                )
    shard = write_shard(rows, tmp_path_factory.mktemp("shards") / "toy.parquet")
    index = read_metadata([shard])
    index["split"] = index["prompt"].str.split().str[0]
    return index


@pytest.fixture(scope="module")
def runs(toy_index, tmp_path_factory):
    """The same spec trained twice into two directories, each tested on the test split:
    (run dir, summary + test metrics, test predictions)."""
    base = tmp_path_factory.mktemp("runs")
    out = []
    for name in ("a", "b"):
        summary = train_run(toy_index, SPEC, base / name)
        out.append((base / name, *evaluate_split(base / name, toy_index, summary)))
    return out


def test_learns_and_writes_outputs(runs):
    run_dir, metrics, preds = runs[0]
    assert metrics["test_accuracy"] >= 0.9
    assert (metrics["n_train"], metrics["n_val"], metrics["n_test"]) == (48, 24, 24)  # yellow dropped
    assert json.loads((run_dir / "training.json").read_text()) == {
        k: metrics[k] for k in json.loads((run_dir / "training.json").read_text())
    }
    assert metrics["resumed_from_epoch"] == 0
    # The trainer tests nothing and leaves metrics.json (the finished-run marker) to the experiment.
    assert not (run_dir / "metrics.json").exists() and not (run_dir / "checkpoint").exists()
    assert "best epoch" in (run_dir / "train.log").read_text()
    assert not list(run_dir.glob("*.tmp")) and not list(run_dir.glob(".*.tmp"))
    assert np.allclose(preds.filter(like="p_").sum(axis=1), 1, atol=1e-5)


def test_best_epoch_is_first_epoch_with_best_val(runs, toy_index):
    run_dir, metrics, _ = runs[0]
    hist = pd.read_csv(run_dir / "history.csv")
    assert list(hist.columns) == ["epoch", "lr", "train_loss", "train_acc", "val_acc"]
    assert list(hist["epoch"]) == [1, 2, 3, 4]
    best = hist["val_acc"].max()
    assert metrics["best_val_accuracy"] == best
    assert metrics["best_epoch"] == hist.loc[hist["val_acc"] == best, "epoch"].min()  # ties -> earlier
    # The saved model is that epoch's: reloaded, it scores the recorded best val accuracy.
    assert evaluate_split(run_dir, toy_index, split="val")[0]["test_accuracy"] == best


def test_same_seed_is_identical(runs):
    (dir_a, m_a, p_a), (dir_b, m_b, p_b) = runs
    assert m_a["test_accuracy"] == m_b["test_accuracy"]
    pd.testing.assert_frame_equal(p_a, p_b, check_exact=True)
    pd.testing.assert_frame_equal(
        pd.read_csv(dir_a / "history.csv"), pd.read_csv(dir_b / "history.csv"), check_exact=True
    )
    assert (dir_a / "model.safetensors").read_bytes() == (dir_b / "model.safetensors").read_bytes()


def test_checkpoint_reproduces_predictions(runs, toy_index, monkeypatch):
    run_dir, _, recorded = runs[0]

    def no_unpickling(*args, **kwargs):
        raise AssertionError("checkpoint loading must not unpickle")

    monkeypatch.setattr(torch, "load", no_unpickling)
    monkeypatch.setattr(pickle, "load", no_unpickling)
    monkeypatch.setattr(pickle, "loads", no_unpickling)
    model, meta = load_model(run_dir)
    assert meta["classes"] == CLASSES and meta["input_size"] == 32 and not model.training

    blobs = load_images(toy_index[toy_index["image_id"].isin(recorded["image_id"])])
    probs = predict(run_dir, [blobs[i] for i in recorded["image_id"]])
    assert np.array_equal(probs, recorded[[f"p_{c}" for c in CLASSES]].to_numpy())
    assert list(np.array(CLASSES)[probs.argmax(1)]) == list(recorded["pred_label"])


def test_lr_schedule_warmup_then_cosine(runs):
    total, warmup, lr, min_lr = 100, 10, 2e-4, 1e-5
    lrs = np.array([lr_at(s, total, warmup, lr, min_lr) for s in range(total)])
    assert np.allclose(np.diff(lrs[:warmup]), lr / warmup)  # linear warm-up ...
    assert lrs[warmup - 1] == pytest.approx(lr) and lrs[warmup] == pytest.approx(lr)  # ... to the peak
    assert np.all(np.diff(lrs[warmup:]) < 0) and lrs[-1] == pytest.approx(min_lr)  # cosine down to min_lr
    mid = warmup + (total - 1 - warmup) / 2
    assert lr_at(int(mid), total, warmup, lr, min_lr) == pytest.approx(
        min_lr + 0.5 * (lr - min_lr) * (1 + math.cos(math.pi * (int(mid) - warmup) / (total - 1 - warmup)))
    )
    # The run logged the LR of each epoch's last iteration: 3 iterations of 16 per epoch.
    hist = pd.read_csv(runs[0][0] / "history.csv")
    assert np.allclose(hist["lr"], [lr_at(3 * e - 1, 12, 3, SPEC["lr"], SPEC["min_lr"]) for e in (1, 2, 3, 4)])
    assert hist["lr"].iloc[-1] == pytest.approx(SPEC["min_lr"])


def test_transforms():
    rng = np.random.default_rng(0)
    img = toy_image(rng, (100, 150, 200), stripes=True)
    blob = encode_png(img)
    pixels = resize_crop(blob, 32)
    assert pixels.dtype == torch.uint8 and pixels.shape == (3, 32, 32)
    eval_ds = ImageDataset([blob], [0], 32, train=False)
    assert torch.equal(eval_ds[0][0], eval_ds[0][0])  # eval: no randomness
    flips = [ImageDataset([blob], [0], 32, train=True, seed=7) for _ in range(2)]
    draws = [[ds[0][0] for _ in range(20)] for ds in flips]
    assert all(torch.equal(a, b) for a, b in zip(*draws))  # same seed -> same flips
    plain, flipped = eval_ds[0][0], eval_ds[0][0].flip(-1)
    assert all(torch.equal(x, plain) or torch.equal(x, flipped) for x in draws[0])
    assert any(torch.equal(x, flipped) for x in draws[0]) and any(torch.equal(x, plain) for x in draws[0])


def test_registry():
    model = build_attributor("timm_scratch", {"model": "test_resnet"}, num_classes=5)
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 5)
    with pytest.raises(KeyError, match="timm_scratch"):
        build_attributor("no_such_attributor", {}, 3)


def test_input_size_mismatch_fails_early(toy_index, tmp_path):
    spec = {**SPEC, "attributor_spec": {"model": "efficientformerv2_s0", "model_kwargs": {"img_size": 64}}}
    with pytest.raises(ValueError, match="does not accept 32px"):
        train_run(toy_index, spec, tmp_path)
