"""Image attributors with text prompts (Xu et al. 2024, app. B), trained end to end on images: the head
sees image embedding ++ text vector; on a toy set whose images are pure noise but whose prompts name
the class, the text-fused model learns and the image-only one cannot; the checkpoint reproduces its
recorded predictions from the same text vectors."""

import json

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from attribench.models.attributors import build_attributor
from attribench.models.features import feature_inputs
from attribench.data.imagedata import ImageDataset
from attribench.data.shards import encode_png, load_images, make_row, read_metadata, write_shard
from attribench.training.loop import predict, train_run
from split_eval import evaluate_split

torch.set_num_threads(1)
# One prompt theme per class: the text identifies the class, the image (uniform noise) does not.
THEMES = {
    "red": "a cat sleeping on a sofa",
    "green": "a mountain lake at sunrise",
    "blue": "a busy city street at night",
}
CLASSES = list(THEMES)
TEXT_SPEC = {"encoder": "minilm"}
SPEC = {
    "attributor": "timm_scratch",
    "attributor_spec": {"model": "test_resnet"},
    "input_size": 32,
    "epochs": 6,
    "batch_size": 16,
    "lr": 5e-3,
    "warmup_epochs": 1,
    "min_lr": 1e-5,
    "seed": 0,
    "classes": CLASSES,
    "num_threads": 1,
}
TEXT_SPEC_RUN = {
    **SPEC,
    "attributor": "timm_scratch_text",
    "attributor_spec": {"model": "test_resnet", "text_dim": 384},
    "text_spec": TEXT_SPEC,
}


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    """3 classes x (16 train, 8 val, 8 test) images of uniform noise (the same for every class), each
    with a prompt of its class's theme; and the prompts' MiniLM embeddings per image."""
    rng = np.random.default_rng(0)
    rows = []
    for g, theme in THEMES.items():
        for split, n in (("train", 16), ("val", 8), ("test", 8)):
            for i in range(n):
                img = rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)
                rows.append(
                    make_row(
                        encode_png(Image.fromarray(img)),
                        "png",
                        generator=g,
                        source="generated",
                        prompt=f"{theme}, picture {i}",
                        prompt_id=f"{g}-{split}-{i}",
                        prompt_source=split,
                    )
                )
    base = tmp_path_factory.mktemp("text_fusion")
    index = read_metadata([write_shard(rows, base / "toy.parquet")])
    index["split"] = index["prompt_source"]
    text = feature_inputs(index, {"text": TEXT_SPEC}, base / "cache")
    return index, text, base


@pytest.fixture(scope="module")
def runs(toy):
    """name -> (run dir, summary + test metrics, test predictions)."""
    index, text, base = toy
    out = {}
    for name, spec, kw in (
        ("image", SPEC, {}),
        ("text", TEXT_SPEC_RUN, {"text_inputs": text}),
        ("text_again", TEXT_SPEC_RUN, {"text_inputs": text}),
    ):
        summary = train_run(index, spec, base / name, **kw)
        out[name] = (base / name, *evaluate_split(base / name, index, summary, text=kw.get("text_inputs")))
    return out


def test_head_sees_image_embedding_and_text():
    model = build_attributor("timm_scratch_text", {"model": "test_resnet", "text_dim": 8}, num_classes=3)
    x, t = torch.zeros(2, 3, 32, 32), torch.zeros(2, 8)
    model.eval()
    image_dim = model.image_model(x).shape[1]
    assert image_dim == model.image_model.num_features == 96
    assert model.head.in_features == image_dim + 8 and model.head.out_features == 3
    assert model(x, t).shape == (2, 3)
    # A pre-logits layer (MobileNetV3) makes the pooled embedding wider than num_features.
    mnv3 = build_attributor("timm_scratch_text", {"model": "mobilenetv3_small_050", "text_dim": 5}, 4).eval()
    assert mnv3.head.in_features == mnv3.image_model(x).shape[1] + 5
    with pytest.raises(KeyError, match="text_dim"):
        build_attributor("timm_scratch_text", {"model": "test_resnet"}, 3)
    with pytest.raises(ValueError, match="pretrained"):
        build_attributor(
            "timm_scratch_text", {"model": "test_resnet", "text_dim": 8, "model_kwargs": {"pretrained": True}}, 3
        )
    # The fine-tuned variant: the pretrained backbone, unfrozen, under the same fusion head.
    ft = build_attributor("finetune_text", {"backbone": "efficientnet_lite0", "text_dim": 8}, 3)
    assert ft.head.in_features == 1280 + 8 and all(p.requires_grad for p in ft.parameters())
    assert ft.eval()(x, t).shape == (2, 3)


def test_dataset_carries_text_and_flips_as_before():
    rng = np.random.default_rng(1)
    blobs = [encode_png(Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8))) for _ in range(3)]
    text = torch.arange(6, dtype=torch.float64).view(3, 2)
    with_text = ImageDataset(blobs, [0, 1, 2], 32, train=True, seed=3, text=text)
    plain = ImageDataset(blobs, [0, 1, 2], 32, train=True, seed=3)
    for _ in range(10):
        for i in range(3):
            (x_t, t, y_t), (x, y) = with_text[i], plain[i]
            assert torch.equal(x_t, x) and y_t == y == i  # same pixels, same flip draws
            assert t.dtype == torch.float32 and torch.equal(t, text[i].float())


def test_text_path_is_what_learns(runs, toy):
    index, text, _ = toy
    img_dir, img_m, _ = runs["image"]
    txt_dir, txt_m, rec = runs["text"]
    assert txt_m["test_accuracy"] > 0.9
    assert img_m["test_accuracy"] <= 0.5  # noise images: chance is 1/3
    assert (txt_m["n_train"], txt_m["n_val"], txt_m["n_test"]) == (48, 24, 24)

    meta = json.loads((txt_dir / "model.json").read_text())
    assert meta["text"] is True and meta["text_dim"] == 384 and meta["text_spec"] == TEXT_SPEC
    assert meta["attributor_spec"] == {"model": "test_resnet", "text_dim": 384}
    assert "text" not in json.loads((img_dir / "model.json").read_text())  # image runs: model.json as before
    assert "+ 384-d text" in (txt_dir / "train.log").read_text()

    # Give each test image the prompt of an image of the next class: the prediction follows the text.
    blobs = load_images(index[index["image_id"].isin(rec["image_id"])])
    test = index.set_index("image_id").loc[rec["image_id"]]
    donor = {g: test.index[test["generator"] == g].tolist() for g in CLASSES}
    swapped, expected = [], []
    for k, g in enumerate(test["generator"]):
        other = CLASSES[(CLASSES.index(g) + 1) % 3]
        swapped.append(text[donor[other][k % len(donor[other])]])
        expected.append(other)
    probs = predict(txt_dir, [blobs[i] for i in rec["image_id"]], text_vectors=swapped)
    assert (np.array(CLASSES)[probs.argmax(1)] == np.array(expected)).mean() > 0.9


def test_checkpoint_reproduces_predictions_from_text_vectors(runs, toy):
    index, text, _ = toy
    run_dir, metrics, rec = runs["text"]
    recorded = rec[[f"p_{c}" for c in CLASSES]].to_numpy()
    blobs = load_images(index[index["image_id"].isin(rec["image_id"])])
    images = [blobs[i] for i in rec["image_id"]]
    vectors = [text[i] for i in rec["image_id"]]
    assert np.array_equal(predict(run_dir, images, text_vectors=vectors), recorded)
    assert np.array_equal(predict(run_dir, images, text_vectors=torch.stack(vectors)), recorded)
    assert np.array_equal(predict(run_dir, images, text_vectors=torch.stack(vectors).numpy()), recorded)
    assert (np.array(CLASSES)[recorded.argmax(1)] == rec["pred_label"]).all()
    # Or from the prompts, embedded with the recorded text_spec (re-encoding may differ in the last bits).
    prompts = index.set_index("image_id").loc[rec["image_id"], "prompt"].tolist()
    assert np.allclose(predict(run_dir, images, prompts=prompts), recorded, atol=1e-5)

    with pytest.raises(ValueError, match="text_vectors="):
        predict(run_dir, images)
    with pytest.raises(ValueError, match="text vectors"):
        predict(run_dir, images, text_vectors=vectors[:-1])
    with pytest.raises(ValueError, match="without text"):
        predict(runs["image"][0], images, text_vectors=vectors)


def test_text_run_is_repeatable(runs):
    (dir_a, m_a, p_a), (dir_b, m_b, p_b) = runs["text"], runs["text_again"]
    assert m_a["test_accuracy"] == m_b["test_accuracy"]
    pd.testing.assert_frame_equal(p_a, p_b, check_exact=True)
    assert (dir_a / "model.safetensors").read_bytes() == (dir_b / "model.safetensors").read_bytes()


def test_bad_text_inputs_fail_early(toy, tmp_path):
    index, text, _ = toy
    with pytest.raises(ValueError, match="does not accept 32px \\+ 384-d text"):  # an image-only model
        train_run(index, SPEC, tmp_path / "a", text_inputs=text)
    wrong_dim = {**TEXT_SPEC_RUN, "attributor_spec": {"model": "test_resnet", "text_dim": 16}}
    with pytest.raises(ValueError, match="does not accept"):
        train_run(index, wrong_dim, tmp_path / "b", text_inputs=text)
    some = dict(list(text.items())[5:])
    with pytest.raises(KeyError, match="no text vector"):
        train_run(index, TEXT_SPEC_RUN, tmp_path / "c", text_inputs=some)
    with pytest.raises(ValueError, match="text_inputs"):
        train_run(index, TEXT_SPEC_RUN, tmp_path / "d", inputs=text, text_inputs=text)
