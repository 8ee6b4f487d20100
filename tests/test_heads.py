"""Heads on cached vectors (paper app. B shapes), training them through the unchanged train_run, and
the fine-tuned backbone attributor (Table 5) training end to end on images."""

import json

import numpy as np
import pandas as pd
import pytest
import torch

from attribench.models.attributors import build_attributor
from attribench.models.backbones import load_backbone
from attribench.data.imagedata import IMAGENET_MEAN, IMAGENET_STD
from attribench.data.shards import write_shard
from attribench.training.loop import load_model, predict, predict_features, train_run
from split_eval import evaluate_split
from toy_data import prompt_split_index, prompt_split_rows

torch.set_num_threads(1)


def test_mlp_matches_paper_shape():
    mlp = build_attributor("mlp", {"in_dim": 768}, num_classes=13)
    linears = [m for m in mlp if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(768, 256), (256, 256), (256, 13)]
    assert [type(m).__name__ for m in mlp] == ["Linear", "Sigmoid", "Linear", "Sigmoid", "Linear"]
    by_hand = (768 * 256 + 256) + (256 * 256 + 256) + (256 * 13 + 13)
    assert sum(p.numel() for p in mlp.parameters()) == by_hand == 265_997
    lp = build_attributor("linear_probe", {"in_dim": 1024}, num_classes=13)
    assert sum(p.numel() for p in lp.parameters()) == 1024 * 13 + 13
    assert mlp(torch.zeros(4, 768)).shape == (4, 13)


def _toy_vectors(n_per_split=(40, 10, 10), dim=16, classes=("a", "b", "c"), seed=0):
    """Well separated Gaussian blobs: one random centre per class, unit noise."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 3, (len(classes), dim))
    rows, inputs = [], {}
    for k, cls in enumerate(classes):
        for split, n in zip(("train", "val", "test"), n_per_split):
            for i in range(n):
                image_id = f"{cls}-{split}-{i}"
                inputs[image_id] = torch.tensor(centres[k] + rng.normal(0, 1, dim), dtype=torch.float32)
                rows.append({"image_id": image_id, "generator": cls, "split": split})
    return pd.DataFrame(rows), inputs


SPEC = {
    "attributor": "linear_probe",
    "attributor_spec": {"in_dim": 16},
    "classes": ["a", "b", "c"],
    "epochs": 20,
    "batch_size": 32,
    "lr": 1e-2,
    "warmup_epochs": 2,
    "num_threads": 1,
}


def test_linear_probe_on_cached_vectors(tmp_path):
    index, inputs = _toy_vectors()
    m, rec = evaluate_split(tmp_path, index, train_run(index, SPEC, tmp_path, inputs=inputs), inputs=inputs)
    assert m["test_accuracy"] > 0.9 and (m["n_train"], m["n_val"], m["n_test"]) == (120, 30, 30)
    meta = json.loads((tmp_path / "model.json").read_text())
    assert meta["input_kind"] == "features" and meta["input_dim"] == 16 and meta["features"] is None
    assert meta["input_size"] is None

    vectors = torch.stack([inputs[i] for i in rec["image_id"]]).numpy()
    probs = predict_features(tmp_path, vectors)
    assert np.array_equal(probs, rec[["p_a", "p_b", "p_c"]].to_numpy())  # numpy input: the same numbers
    with pytest.raises(ValueError, match="does not accept 16-d vector"):
        train_run(index, {**SPEC, "attributor_spec": {"in_dim": 8}}, tmp_path / "bad", inputs=inputs)
    with pytest.raises(ValueError, match="predict_features"):
        predict(tmp_path, [b"not used"])  # no feature spec recorded: images cannot be turned into inputs
    with pytest.raises(KeyError):
        train_run(index, SPEC, tmp_path / "missing", inputs={k: v for k, v in list(inputs.items())[1:]})


def test_mlp_on_cached_vectors_repeatable(tmp_path):
    index, inputs = _toy_vectors(seed=1)
    spec = {**SPEC, "attributor": "mlp", "lr": 5e-3}
    a = evaluate_split(tmp_path / "a", index, train_run(index, spec, tmp_path / "a", inputs=inputs), inputs=inputs)[0]
    b = evaluate_split(tmp_path / "b", index, train_run(index, spec, tmp_path / "b", inputs=inputs), inputs=inputs)[0]
    assert a["test_accuracy"] > 0.9 and b["test_accuracy"] == a["test_accuracy"]
    assert (tmp_path / "a" / "model.safetensors").read_bytes() == (tmp_path / "b" / "model.safetensors").read_bytes()


def test_finetune_renormalises_to_backbone_stats():
    kwargs = dict(depth=1, embed_dim=32, num_heads=2, img_size=32)
    torch.manual_seed(0)
    model = build_attributor(
        "finetune",
        {"backbone": "timm:vit_base_patch16_clip_224", "backbone_spec": {"allow_random": True, "model_kwargs": kwargs}},
        5,
    ).eval()
    assert all(p.requires_grad for p in model.parameters())  # unfrozen
    assert set(model.state_dict()) == {k for k, _ in model.named_parameters()} | {
        k for k, _ in model.named_buffers() if k not in ("scale", "shift")
    }
    raw = torch.rand(2, 3, 32, 32)
    imagenet = (raw - IMAGENET_MEAN) / IMAGENET_STD  # what train_run feeds
    bb = load_backbone("timm:vit_base_patch16_clip_224", {"allow_random": True, "model_kwargs": kwargs})
    clip = (raw - torch.tensor(bb.mean).view(3, 1, 1)) / torch.tensor(bb.std).view(3, 1, 1)
    with torch.no_grad():
        assert torch.allclose(model(imagenet), model.head(model.backbone(clip)), atol=1e-5)


def test_finetune_lite0_trains_through_train_run(tmp_path):
    per_class = prompt_split_rows(
        {"red": (190, 60, 60), "blue": (60, 80, 190)},
        np.random.default_rng(0),
        {"train": 8, "val": 4, "test": 4},
        (32, 32),
        sigma=30,
    )
    index = prompt_split_index([write_shard(sum(per_class.values(), []), tmp_path / "toy.parquet")])
    spec = {
        "attributor": "finetune",
        "attributor_spec": {"backbone": "efficientnet_lite0"},
        "input_size": 32,
        "classes": ["blue", "red"],
        "epochs": 2,
        "batch_size": 8,
        "lr": 1e-3,
        "warmup_epochs": 1,
        "num_threads": 1,
    }
    m = train_run(index, spec, tmp_path / "run", inputs=None)
    assert m["n_parameters"] == 4_652_008 - (1280 * 1000 + 1000) + (1280 * 2 + 2)  # ImageNet fc -> 2-way head
    model, meta = load_model(tmp_path / "run")
    assert "input_kind" not in meta  # an image run's model.json is as before
    # The strictly reloaded checkpoint scores on val exactly what the loop recorded for its epoch.
    assert evaluate_split(tmp_path / "run", index, split="val")[0]["test_accuracy"] == m["best_val_accuracy"]
