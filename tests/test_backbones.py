"""Frozen backbones and text encoders load offline from local files and are the real thing: the
wheel's EfficientNet-Lite0 recognises a cat, MiniLM ranks a paraphrase above an unrelated sentence,
and timm CLIP/DINOv2-class models and a CLIP text tower load from files with identical outputs."""

import numpy as np
import pytest
import timm
import torch
from safetensors.torch import save_file
from skimage.data import chelsea

from attribench.models.backbones import BACKBONES, load_backbone
from attribench.models.features import _batches
from attribench.data.shards import encode_png
from attribench.models.text_encoders import load_text_encoder

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def lite0():
    return load_backbone("efficientnet_lite0", {"keep_classifier": True})


def test_efficientnet_lite0_is_the_real_imagenet_model(lite0):
    from PIL import Image

    blob = encode_png(Image.fromarray(chelsea()))
    (x,) = list(_batches([blob], lite0, 224, 1, "test"))
    with torch.no_grad():
        probs = lite0.module.classify(x).softmax(1)[0]
    top = int(probs.argmax())
    assert 281 <= top <= 285, f"chelsea classified as ImageNet class {top}"  # tabby .. Egyptian cat
    assert probs[281:286].sum() > 0.5
    # Frozen, and the embedding is the classifier's input: 1280-d pooled features.
    assert not any(p.requires_grad for p in lite0.module.parameters()) and not lite0.module.training
    with torch.no_grad():
        emb = lite0.module(x)
    assert emb.shape == (1, 1280) and lite0.dim == 1280
    assert torch.allclose(lite0.module.net._fc(emb), lite0.module.classify(x), atol=1e-4)


def test_efficientnet_lite0_feature_maps_any_size(lite0):
    with torch.no_grad():
        maps = lite0.module.feature_maps(torch.randn(2, 3, 64, 64))
        emb = lite0.module(torch.randn(2, 3, 64, 64))
    assert [m.shape[1] for m in maps] == [16, 24, 40, 80, 112, 192, 320]
    assert [m.shape[-1] for m in maps] == [32, 16, 8, 4, 4, 2, 2]
    assert emb.shape == (2, 1280)
    default = load_backbone("efficientnet_lite0")  # classifier dropped: fine-tuned runs stay lean
    n = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert n(lite0.module) - n(default.module) == 1280 * 1000 + 1000
    assert isinstance(default.module.net._fc, torch.nn.Identity)


TINY = {
    # Same classes/configs as the paper's backbones, shrunk: CLIP ViT-B/16 (QuickGELU-free timm
    # variant with a pre-norm) and DINOv2 ViT-L/14 (layer scale, 14-px patches).
    "vit_base_patch16_clip_224": dict(depth=1, embed_dim=32, num_heads=2, img_size=32),
    "vit_large_patch14_dinov2": dict(depth=1, embed_dim=32, num_heads=2, img_size=28),
}


@pytest.mark.parametrize("name", sorted(TINY))
def test_timm_backbone_loads_local_weights(name, tmp_path):
    kwargs = TINY[name]
    torch.manual_seed(0)
    saved = timm.create_model(name, pretrained=False, **kwargs).eval()
    path = tmp_path / f"{name}.safetensors"
    save_file(saved.state_dict(), str(path))

    bb = load_backbone(f"timm:{name}", {"weights_file": str(path), "model_kwargs": kwargs})
    x = torch.randn(3, 3, kwargs["img_size"], kwargs["img_size"])
    with torch.no_grad():
        expected = saved.forward_head(saved.forward_features(x), pre_logits=True)
        got = bb.module(x)
        maps = bb.module.feature_maps(x)
    assert bb.dim == 32 and bb.input_size == kwargs["img_size"]
    assert torch.equal(got, expected)
    assert maps[0].shape == (3, 32, 2, 2)
    if "clip" in name:
        assert bb.mean == pytest.approx((0.48145466, 0.4578275, 0.40821073))


def test_a_fixed_size_vit_is_built_for_the_input_size_asked(tmp_path):
    # The rehearsal's toy resolution: the 224 px weight file of a ViT, loaded for 64 px input (timm
    # resamples the position embedding); img_size and input_size that disagree are an error.
    kw = {"depth": 1, "embed_dim": 32, "num_heads": 2}
    path = tmp_path / "clip.safetensors"
    save_file(timm.create_model("vit_base_patch16_clip_224", **kw).state_dict(), str(path))
    bb = load_backbone(
        "timm:vit_base_patch16_clip_224", {"weights_file": str(path), "model_kwargs": kw, "input_size": 64}
    )
    assert bb.input_size == 64 and bb.module(torch.randn(2, 3, 64, 64)).shape == (2, 32)
    with pytest.raises(ValueError, match="input_size 64 but model_kwargs.img_size 224"):
        load_backbone(
            "timm:vit_base_patch16_clip_224",
            {"weights_file": str(path), "input_size": 64, "model_kwargs": {**kw, "img_size": 224}},
        )


def test_timm_backbone_refuses_random_weights():
    with pytest.raises(ValueError, match="no weights offline for vit_base_patch16_clip_224.openai: set weights_file"):
        load_backbone("timm:vit_base_patch16_clip_224.openai")
    bb = load_backbone(
        "timm:vit_base_patch16_clip_224", {"allow_random": True, "model_kwargs": TINY["vit_base_patch16_clip_224"]}
    )
    assert bb.dim == 32
    with pytest.raises(KeyError, match="efficientnet_lite0"):
        load_backbone("no_such_backbone")
    assert {"efficientnet_lite0", "timm"} <= set(BACKBONES)


def test_minilm_paraphrases_are_close():
    enc = load_text_encoder("minilm")
    e = enc.encode(
        ["a cat sitting on a mat", "a kitten resting on a rug", "quarterly earnings fell sharply at the bank", None, ""]
    )
    assert e.shape == (5, 384) and e.dtype == np.float32 and enc.dim == 384
    assert np.allclose(np.linalg.norm(e, axis=1), 1, atol=1e-5)
    sim = e @ e.T
    assert sim[0, 1] > 0.5 and sim[0, 2] < 0.3 and sim[0, 1] > sim[0, 2] + 0.3
    assert np.array_equal(e[3], e[4])  # a missing prompt is the fixed empty-string embedding


def test_clip_text_encoder_from_local_dir(tmp_path):
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection

    from attribench.data.zoo import _clip_tokenizer

    torch.manual_seed(0)
    cfg = CLIPTextConfig(
        vocab_size=1000,
        hidden_size=32,
        intermediate_size=37,
        num_hidden_layers=1,
        num_attention_heads=2,
        projection_dim=16,
        max_position_embeddings=77,
        bos_token_id=0,
        eos_token_id=1,
        pad_token_id=1,
    )  # the in-memory tokenizer's ids
    model, tok = CLIPTextModelWithProjection(cfg).eval(), _clip_tokenizer()
    model.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)

    enc = load_text_encoder(f"clip:{tmp_path}")
    texts = ["a photo of a dog", "a red car in the rain", None]
    e = enc.encode(texts)
    assert e.shape == (3, 16) and enc.dim == 16
    with torch.no_grad():
        t = tok(["a photo of a dog", "a red car in the rain", ""], padding=True, return_tensors="pt")
        ref = torch.nn.functional.normalize(model(**t).text_embeds, dim=-1).numpy()
    assert np.allclose(e, ref, atol=1e-6)
    assert not np.allclose(e[0], e[1])  # prompts really change the embedding
