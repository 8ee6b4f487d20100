"""Feature caches: the Gram style vector on hand-computable maps, cache files (image, Gram, text)
and their compute-once behaviour, image+text fusion width, a feature run that `predict` can redo from
images, and the Fig. 9 density plot."""

import math

import numpy as np
import pytest
import torch
from PIL import Image

from attribench.models import features as feat
from attribench.models.features import (
    EMPTY_PROMPT,
    compute_vectors,
    feature_inputs,
    fuse,
    gram_features,
    gram_matrix,
    gram_size,
    gram_vector,
    image_features,
    read_vectors,
    text_features,
)
from attribench.data.shards import encode_png, load_images, make_row, read_metadata, write_shard
from attribench.models.style import gram_density_plot

torch.set_num_threads(1)
LITE0 = {"backbone": "efficientnet_lite0", "spec": {}, "input_size": 32}


@pytest.fixture(scope="module")
def toy_index(tmp_path_factory):
    """2 classes x (12 train, 4 val, 4 test) noisy colour fields in two shards; prompts per image,
    some missing (as for unconditional generators)."""
    rng = np.random.default_rng(0)
    base = tmp_path_factory.mktemp("shards")
    shards = []
    for g, colour in {"red": (190, 60, 60), "blue": (60, 80, 190)}.items():
        rows = []
        for split, n in (("train", 12), ("val", 4), ("test", 4)):
            for i in range(n):
                img = np.clip(np.array(colour) + rng.normal(0, 30, (36, 40, 3)), 0, 255).astype(np.uint8)
                prompt = None if i % 4 == 3 else f"a {g} {split} scene number {i}"
                rows.append(
                    make_row(
                        encode_png(Image.fromarray(img)),
                        "png",
                        generator=g,
                        source="generated",
                        prompt=prompt,
                        prompt_id=None if prompt is None else f"{g}-{split}-{i}",
                        prompt_source=split,
                    )
                )
        shards.append(write_shard(rows, base / f"{g}.parquet"))
    index = read_metadata(shards)
    index["split"] = index["prompt_source"]
    return index


def test_gram_matrix_hand_computed():
    a = torch.tensor([[1.0, 0.0], [0.0, 0.0]])
    b = torch.tensor([[0.0, 2.0], [0.0, 0.0]])
    orth = gram_matrix(torch.stack([a, b])[None])  # disjoint support -> cosine 0
    assert torch.equal(orth[0], torch.eye(2))
    par = gram_matrix(torch.stack([a, 3 * a])[None])  # parallel, any scale -> cosine 1
    assert torch.allclose(par[0], torch.ones(2, 2))
    anti = gram_matrix(torch.stack([a, -a])[None])
    assert torch.allclose(anti[0], torch.tensor([[1.0, -1.0], [-1.0, 1.0]]))
    c = torch.tensor([[1.0, 1.0], [0.0, 0.0]])  # cos(c, a) = 1/sqrt(2)
    g = gram_matrix(torch.stack([c, a])[None])[0]
    assert g[0, 1].item() == pytest.approx(1 / math.sqrt(2)) and torch.allclose(g, g.T)
    # Upper triangle incl. diagonal, row-major: [g00, g01, g11]; layers concatenated in order.
    v = gram_vector([torch.stack([c, a])[None], torch.stack([a, b, c])[None]])
    assert v.shape == (1, 3 + 6)
    assert torch.allclose(v[0, :3], torch.tensor([1.0, 1 / math.sqrt(2), 1.0]))
    assert torch.allclose(v[0, 3:], torch.tensor([1.0, 0.0, 1 / math.sqrt(2), 1.0, 1 / math.sqrt(2), 1.0]))
    zero = gram_matrix(torch.zeros(1, 2, 2, 2))  # a dead channel gives zeros, not NaN
    assert torch.equal(zero, torch.zeros(1, 2, 2))


def test_gram_channel_pooling_and_size():
    fmap = torch.randn(2, 6, 3, 3)
    pooled = gram_vector([fmap], max_channels=3)
    by_hand = gram_vector([fmap.view(2, 3, 2, 3, 3).mean(2)])  # neighbouring channel pairs averaged
    assert torch.allclose(pooled, by_hand, atol=1e-6)
    assert gram_size([16, 24, 40, 80]) == 4496
    assert gram_size([16, 24, 40, 80], max_channels=32) == 136 + 300 + 528 + 528
    assert gram_size([6], 3) == pooled.shape[1]


def test_image_and_gram_caches(toy_index, tmp_path):
    one = toy_index[toy_index["split"] == "val"]
    path = image_features(one, "efficientnet_lite0", {}, 32, tmp_path / "img.parquet", batch_size=4)
    ids, vecs, meta = read_vectors(path)
    assert ids == list(one["image_id"]) and vecs.shape == (len(one), 1280) and vecs.dtype == np.float32
    assert meta["image"]["backbone"] == "efficientnet_lite0" and meta["dim"] == 1280
    blobs = load_images(one)
    again = compute_vectors({"image": {**LITE0, "batch_size": 4}}, [blobs[i] for i in ids])
    assert np.allclose(again, vecs, atol=1e-5)

    path = gram_features(one, "efficientnet_lite0", {}, [0, 1, 2, 3], tmp_path / "gram.parquet", input_size=32)
    ids, grams, meta = read_vectors(path)
    assert grams.shape == (len(one), 4496) and meta["gram"]["layers"] == [0, 1, 2, 3]
    assert np.all(grams <= 1 + 1e-5) and np.all(grams >= -1 - 1e-5)
    path = gram_features(
        one,
        "efficientnet_lite0",
        {},
        [0, 1],
        tmp_path / "gram_relu.parquet",
        input_size=32,
        max_channels=16,
        rectify=True,
    )
    _, grams, _ = read_vectors(path)
    assert grams.shape == (len(one), 136 + 136) and grams.min() >= 0  # post-ReLU, as VGG's style layers
    assert not list(tmp_path.glob("*.tmp"))


def test_text_cache_and_fusion_width(toy_index, tmp_path):
    path = text_features(toy_index, "minilm", tmp_path / "text.parquet")
    ids, vecs, _ = read_vectors(path)
    n_prompts = toy_index["prompt_id"].dropna().nunique()
    assert len(ids) == n_prompts + 1 and ids[-1] == EMPTY_PROMPT and vecs.shape[1] == 384

    rows = toy_index.iloc[:3]
    blobs = load_images(rows)
    fused = compute_vectors(
        {"image": LITE0, "text": {"encoder": "minilm"}}, [blobs[i] for i in rows["image_id"]], list(rows["prompt"])
    )
    assert fused.shape == (3, 1280 + 384) == (3, 1664)
    assert fuse(np.zeros((3, 1280)), np.zeros((3, 384))).shape == (3, 1664)
    with pytest.raises(ValueError, match="2 text vectors"):
        fuse(np.zeros((3, 1280)), np.zeros((2, 384)))


def test_feature_inputs_compute_once(toy_index, tmp_path, monkeypatch):
    spec = {"image": LITE0, "text": {"encoder": "minilm"}}
    first = toy_index[toy_index["generator"] == "red"]
    inputs = feature_inputs(first, spec, tmp_path)
    assert set(inputs) == set(first["image_id"]) and next(iter(inputs.values())).shape == (1664,)
    # A second call with more images computes only the new ones.
    computed = []
    real = feat._image_cache
    monkeypatch.setattr(feat, "_image_cache", lambda idx, *a, **k: computed.append(len(idx)) or real(idx, *a, **k))
    both = feature_inputs(toy_index, spec, tmp_path)
    assert computed == [(toy_index["generator"] == "blue").sum()]
    assert all(torch.equal(both[i], inputs[i]) for i in inputs)
    computed.clear()
    feature_inputs(toy_index, spec, tmp_path)
    assert computed == []
    # Images without a prompt share the empty-prompt embedding.
    no_prompt = toy_index.loc[toy_index["prompt"].isna(), "image_id"].tolist()
    assert torch.equal(both[no_prompt[0]][1280:], both[no_prompt[1]][1280:])


def test_feature_run_predict_recomputes_from_images(toy_index, tmp_path):
    from attribench.training.loop import predict, train_run

    spec_f = {"image": LITE0}
    inputs = feature_inputs(toy_index, spec_f, tmp_path / "cache")
    spec = {
        "attributor": "linear_probe",
        "attributor_spec": {"in_dim": 1280},
        "classes": ["blue", "red"],
        "epochs": 5,
        "batch_size": 8,
        "lr": 5e-2,
        "warmup_epochs": 0,
        "num_threads": 1,
        "features": spec_f,
    }
    from split_eval import evaluate_split

    m, rec = evaluate_split(
        tmp_path / "run", toy_index, train_run(toy_index, spec, tmp_path / "run", inputs=inputs), inputs=inputs
    )
    assert m["test_accuracy"] >= 0.9
    blobs = load_images(toy_index[toy_index["image_id"].isin(rec["image_id"])])
    probs = predict(tmp_path / "run", [blobs[i] for i in rec["image_id"]])
    assert np.allclose(probs, rec[["p_blue", "p_red"]].to_numpy(), atol=1e-5)


def test_gram_density_plot(tmp_path):
    rng = np.random.default_rng(0)
    grams = {
        "sd": rng.uniform(0.1, 0.4, (20, 30)),
        "real": rng.uniform(0.3, 0.9, (20, 30)),
        "odd": np.concatenate([rng.uniform(-0.5, -0.1, (2, 30)), rng.uniform(0.2, 0.5, (5, 30))]),
    }
    for values in ("image_mean", "class_mean"):
        out = gram_density_plot(grams, tmp_path / f"fig9_{values}.png", values=values)
        assert out.read_bytes()[:4] == b"\x89PNG"
