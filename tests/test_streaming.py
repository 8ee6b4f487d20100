"""Streamed training data: pixel files read by item equal the in-memory path, batch flips on the
device equal the per-item dataset flips, and a run streamed (with or without loader workers) trains
the very same model as one holding its images in memory."""

import numpy as np
import pandas as pd
import pytest
import torch

from attribench.data.imagedata import ImageDataset, normalise, resize_crop
from attribench.data.pixelcache import encoded_cache, iter_encoded, pixel_cache
from attribench.data.shards import load_images, write_shard
from attribench.training.loop import flip_batch, train_run
from toy_data import prompt_split_index, prompt_split_rows

CLASSES = ["red", "blue"]
SPEC = {
    "attributor": "timm_scratch",
    "attributor_spec": {"model": "test_resnet"},
    "input_size": 24,
    "epochs": 2,
    "batch_size": 8,
    "lr": 2e-3,
    "warmup_epochs": 1,
    "seed": 0,
    "classes": CLASSES,
    "num_threads": 1,
}


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    root = tmp_path_factory.mktemp("stream")
    per_class = prompt_split_rows(
        dict(zip(CLASSES, [(190, 60, 60), (60, 80, 190)])),
        np.random.default_rng(0),
        {"train": 10, "val": 4},
        (30, 40),
        sigma=50,
    )
    index = prompt_split_index([write_shard(rows, root / f"{g}.parquet") for g, rows in per_class.items()])
    return root, index


def test_pixel_file_equals_decoding_in_memory(toy, tmp_path):
    _, index = toy
    rows = index.sample(frac=1.0, random_state=0).reset_index(drop=True)  # rows not in shard order
    px = pixel_cache(rows, 24, tmp_path, resize_crop)
    blobs = load_images(rows)
    want = torch.stack([resize_crop(blobs[i], 24) for i in rows["image_id"]])
    assert len(px) == len(rows) and torch.equal(px[0 : len(px)], want)
    assert all(torch.equal(px[k], want[k]) for k in (0, 5, len(rows) - 1, -1))
    # Content-keyed: the same rows and size reuse the file; another size is another file.
    assert pixel_cache(rows, 24, tmp_path, resize_crop).path == px.path
    assert pixel_cache(rows, 16, tmp_path, resize_crop).path != px.path
    assert not list(tmp_path.glob(".*.tmp"))
    with pytest.raises(KeyError, match="not found in their shards"):
        list(iter_encoded(rows.assign(image_id=rows["image_id"].where(rows.index > 0, "nope"))))


def test_encoded_file_gives_each_rows_bytes(toy, tmp_path):
    _, index = toy
    rows = index.sample(frac=1.0, random_state=1).reset_index(drop=True)
    rows = pd.concat([rows, rows.iloc[:3]], ignore_index=True)  # a row may repeat (one-vs-rest views)
    enc = encoded_cache(rows, tmp_path)
    blobs = load_images(rows)
    assert len(enc) == len(rows) and all(enc[k] == blobs[i] for k, i in enumerate(rows["image_id"]))
    assert enc.path.stat().st_size == sum(len(blobs[i]) for i in set(rows["image_id"]))  # each image once
    assert encoded_cache(rows, tmp_path).path == enc.path and not list(tmp_path.glob(".*.tmp"))


def test_batch_flips_on_the_device_equal_item_flips(toy):
    _, index = toy
    blobs = list(load_images(index).values())[:8]
    per_item = ImageDataset(blobs, [0] * 8, 24, train=True, seed=5)
    item_batch = torch.stack([normalise(per_item[i][0]) for i in range(8)])
    batch_ds = ImageDataset(blobs, [0] * 8, 24, train=True, seed=5)
    batch_ds.flip = False
    raw = torch.stack([batch_ds[i][0] for i in range(8)])
    assert raw.dtype == torch.uint8
    assert torch.equal(normalise(flip_batch(raw, torch.Generator().manual_seed(5))), item_batch)


def test_streamed_run_trains_the_same_model(toy, tmp_path):
    _, index = toy
    train_run(index, SPEC, tmp_path / "memory")
    train_run(index, {**SPEC, "pixel_cache": str(tmp_path / "cache")}, tmp_path / "stream")
    train_run(index, {**SPEC, "pixel_cache": str(tmp_path / "cache"), "num_workers": 2}, tmp_path / "workers")
    want = (tmp_path / "memory" / "model.safetensors").read_bytes()
    assert (tmp_path / "stream" / "model.safetensors").read_bytes() == want
    assert (tmp_path / "workers" / "model.safetensors").read_bytes() == want
    assert "streaming pixels from" in (tmp_path / "stream" / "train.log").read_text()
    assert len(list((tmp_path / "cache").glob("*.u8"))) == 2  # train and val, built once, shared by both runs


def test_streamed_run_with_an_augmentation_hook_trains_the_same_model(toy, tmp_path):
    """Ju et al.'s blur + JPEG decodes the original bytes: streamed from an encoded file, not held."""
    import attribench.methods.ju_fusion  # noqa: F401  registers the `ju` hook

    _, index = toy
    spec = {**SPEC, "augment": {"name": "ju", "p": 0.5}}
    train_run(index, spec, tmp_path / "memory")
    train_run(index, {**spec, "pixel_cache": str(tmp_path / "cache"), "num_workers": 2}, tmp_path / "stream")
    want = (tmp_path / "memory" / "model.safetensors").read_bytes()
    assert (tmp_path / "stream" / "model.safetensors").read_bytes() == want
    assert len(list((tmp_path / "cache").glob("*.enc"))) == 1
    plain = train_run(index, SPEC, tmp_path / "plain")  # the hook did change what was trained on
    assert (tmp_path / "plain" / "model.safetensors").read_bytes() != want and plain["n_train"] > 0


def test_gradient_accumulation_matches_the_full_batch(tmp_path):
    """micro_batch_size splits each batch; the weighted micro-losses give the full batch's gradient
    (a model without BatchNorm: equal up to float rounding)."""
    rng = np.random.default_rng(0)
    ids = [f"i{k}" for k in range(60)]
    labels = rng.integers(0, 3, 60)
    inputs = {i: torch.tensor(rng.normal(0, 1, 6) + 2 * y, dtype=torch.float32) for i, y in zip(ids, labels)}
    index = pd.DataFrame(
        {"image_id": ids, "generator": np.array(["a", "b", "c"])[labels], "split": ["train"] * 40 + ["val"] * 20}
    )
    spec = {
        "attributor": "linear_probe",
        "attributor_spec": {"in_dim": 6},
        "classes": ["a", "b", "c"],
        "epochs": 3,
        "batch_size": 16,
        "lr": 1e-2,
        "warmup_epochs": 0,
        "num_threads": 1,
    }
    full = train_run(index, spec, tmp_path / "full", inputs=inputs)
    acc = train_run(index, {**spec, "micro_batch_size": 5}, tmp_path / "acc", inputs=inputs)
    from safetensors.torch import load_file

    a, b = load_file(tmp_path / "full" / "model.safetensors"), load_file(tmp_path / "acc" / "model.safetensors")
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    h_full, h_acc = (pd.read_csv(tmp_path / r / "history.csv") for r in ("full", "acc"))
    assert np.allclose(h_full["train_loss"], h_acc["train_loss"], atol=1e-6) and full["best_epoch"] == acc["best_epoch"]
