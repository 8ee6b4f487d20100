"""Methods from the literature (src/attribench/methods): Jiang et al.'s SupCon siamese verification,
Ju et al.'s global+local fusion with patch selection, Pontorno et al.'s DeepFeatureX. Every check is
against numbers worked out by hand or by scikit-learn, on tiny from-scratch timm models."""

import io
import json
import math

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_score, recall_score, roc_auc_score

from attribench.models.attributors import build_attributor
from attribench.methods import deepfeaturex as dfx
from attribench.methods import jiang_siamese as js
from attribench.methods import ju_fusion as ju
from attribench.data.shards import encode_png

torch.set_num_threads(1)
TINY = "test_resnet"  # timm's test model: 96-d features, stride 32


# ---------------------------------------------------------------- Jiang et al. (siamese, SupCon)

E = [(1.0, 0.0), (0.6, 0.8), (0.0, 1.0), (-0.8, 0.6)]  # unit vectors


def _t(i, j, tau):
    return math.exp(math.dist(E[i], E[j]) / tau)


def test_supcon_matches_eq1_by_hand():
    emb, tau = torch.tensor(E, dtype=torch.float64), 0.5
    # Two sources, two images each. P(i) = the other image of i's source, A(i) = the other source.
    labels = torch.tensor([0, 0, 1, 1])
    by_hand = (
        math.log(_t(0, 1, tau) / (_t(0, 2, tau) + _t(0, 3, tau)))
        + math.log(_t(1, 0, tau) / (_t(1, 2, tau) + _t(1, 3, tau)))
        + math.log(_t(2, 3, tau) / (_t(2, 0, tau) + _t(2, 1, tau)))
        + math.log(_t(3, 2, tau) / (_t(3, 0, tau) + _t(3, 1, tau)))
    ) / 4
    assert js.supcon_loss(emb, labels, tau).item() == pytest.approx(by_hand, rel=1e-9)
    # Khosla's A(i) = every other image (the positive joins the denominator).
    all_others = (
        math.log(_t(0, 1, tau) / (_t(0, 1, tau) + _t(0, 2, tau) + _t(0, 3, tau)))
        + math.log(_t(1, 0, tau) / (_t(1, 0, tau) + _t(1, 2, tau) + _t(1, 3, tau)))
        + math.log(_t(2, 3, tau) / (_t(2, 3, tau) + _t(2, 0, tau) + _t(2, 1, tau)))
        + math.log(_t(3, 2, tau) / (_t(3, 2, tau) + _t(3, 0, tau) + _t(3, 1, tau)))
    ) / 4
    assert js.supcon_loss(emb, labels, tau, contrast="all_others").item() == pytest.approx(all_others, rel=1e-9)
    # Anchors 2 and 3 have no positive: they add nothing, but |I| stays 4.
    lonely = (
        math.log(_t(0, 1, tau) / (_t(0, 2, tau) + _t(0, 3, tau)))
        + math.log(_t(1, 0, tau) / (_t(1, 2, tau) + _t(1, 3, tau)))
    ) / 4
    assert js.supcon_loss(emb, torch.tensor([0, 0, 1, 2]), tau).item() == pytest.approx(lonely, rel=1e-9)
    # Two prompts: Eq. 1 per prompt set I, then the mean; pairs never cross prompts.
    two = js.supcon_loss(
        torch.cat([emb, emb.flip(0)]),
        torch.tensor([0, 0, 1, 1, 1, 1, 0, 0]),
        tau,
        groups=torch.tensor([0, 0, 0, 0, 1, 1, 1, 1]),
    )
    assert two.item() == pytest.approx(by_hand, rel=1e-9)


def test_supcon_gradient_is_finite_and_pulls_sources_together():
    emb = torch.tensor(E + [E[0]], requires_grad=True)  # a duplicate row: zero distance
    loss = js.supcon_loss(torch.nn.functional.normalize(emb, dim=1), torch.tensor([0, 0, 1, 1, 0]), 0.1)
    loss.backward()
    assert torch.isfinite(emb.grad).all()
    step = torch.nn.functional.normalize(emb - 0.05 * emb.grad, dim=1)  # one descent step lowers it
    assert js.supcon_loss(step, torch.tensor([0, 0, 1, 1, 0]), 0.1) < loss


def test_pair_metrics_match_sklearn():
    rng = np.random.default_rng(3)
    same = rng.random(200) < 0.4
    scores = np.where(same, rng.normal(0.6, 0.2, 200), rng.normal(0.3, 0.2, 200))
    m = js.pair_metrics(scores, same, threshold=0.45)
    pred = scores >= 0.45
    tn, fp, fn, tp = confusion_matrix(same, pred).ravel()
    assert (m["TP"], m["FP"], m["FN"], m["TN"]) == (tp, fp, fn, tn)
    assert m["recall"] == pytest.approx(recall_score(same, pred))
    assert m["precision"] == pytest.approx(precision_score(same, pred))
    assert m["f1"] == pytest.approx(f1_score(same, pred))
    assert m["accuracy"] == pytest.approx(accuracy_score(same, pred))
    assert m["auc"] == pytest.approx(roc_auc_score(same, scores))
    assert math.isnan(js.pair_metrics([0.1, 0.9], [True, True], 0.5)["auc"])


def test_prompt_groups_are_whole_prompts_and_deterministic():
    rows = [("p1", g, f"{g}-p1-{k}") for g in ("a", "b", "real") for k in range(2)]
    rows += [("p2", g, f"{g}-p2") for g in ("a", "b")] + [("p3", "a", "a-p3")] + [(None, "real", "r-x")]
    df = pd.DataFrame(rows, columns=["prompt_id", "generator", "image_id"])
    batches = js.make_prompt_groups(df, seed=0)
    assert sorted(b["prompt_id"].iloc[0] for b in batches) == ["p1", "p2"]  # p3: one source; None: no prompt
    assert all(b["prompt_id"].nunique() == 1 for b in batches)
    assert len(next(b for b in batches if b["prompt_id"].iloc[0] == "p1")) == 6
    again = js.make_prompt_groups(df.sample(frac=1, random_state=1), seed=0)
    assert [b["image_id"].tolist() for b in batches] == [b["image_id"].tolist() for b in again]
    (both,) = js.make_prompt_groups(df, groups_per_batch=2)
    assert len(both) == 8


def _png(seed, size=40):
    return encode_png(Image.fromarray(np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)))


def test_siamese_encoder_and_regeneration_verification(monkeypatch):
    enc = js.SiameseEncoder(TINY, embed_dim=16, input_size=32)
    e = enc(torch.randn(3, 3, 32, 32))
    assert e.shape == (3, 16) and torch.allclose(e.norm(dim=1), torch.ones(3), atol=1e-5)
    assert torch.allclose(js.same_generator_score(e, e), torch.ones(3), atol=1e-5)
    query, captions = _png(0), []
    render = lambda caption: captions.append(caption) or query  # noqa: E731  fake suspect generator
    out = js.verify_by_regeneration(query, "a cat", render, enc, threshold=0.99)
    assert captions == ["a cat"] and out["same_generator"] and out["score"] == pytest.approx(1.0, abs=1e-5)
    assert not js.verify_by_regeneration(query, "a cat", lambda c: _png(1), enc, threshold=1.01)["same_generator"]

    # Production renderer: the generator's attribench backend, loaded once, seeded per caption.
    from attribench.data.generators import BACKENDS, Backend

    class Fake(Backend):
        name, loads = "fake_verify", []

        def load(self, spec, device):
            self.loads.append(device)
            return "state"

        def render(self, state, gen, spec, items):
            return [{"image": f"{state}:{gen}:{i.prompt}:{i.seed}".encode(), "format": "png"} for i in items]

    monkeypatch.setitem(BACKENDS, "fake_verify", Fake())
    fn = js.backend_renderer({"seed": 0, "device": "cpu", "generators": {"g": {"backend": "fake_verify"}}}, "g")
    first, second = fn("a dog"), fn("a dog")
    assert first == second and first.startswith(b"state:g:a dog:") and Fake.loads == ["cpu"]


# ---------------------------------------------------------------- Ju et al. (global + local fusion)


def _hot_map():
    a = torch.zeros(7, 7)
    a[0:3, 0:3] = 10.0  # hot window H1 = (x0, y0, x1, y1) (0, 0, 3, 3), mean 10
    a[0:3, 3] = 9.0  # makes (1, 0, 4, 3) the runner-up (mean 9.67), but it overlaps H1 (IoU 0.5)
    a[4:7, 4:7] = 8.0  # H2 = (4, 4, 7, 7), mean 8: the best window clear of H1
    return a


def test_patch_selection_takes_hot_windows_and_respects_nms():
    a = _hot_map()
    means = torch.nn.functional.avg_pool2d(a[None, None], 3, stride=1)[0, 0]
    assert means[0, 0] == 10 and means[0, 1] == pytest.approx(87 / 9) and means[4, 4] == 8
    assert sorted(means.flatten().tolist())[-3:] == pytest.approx([8, 87 / 9, 10])
    # Channel sum first: split the map over two channels; batch of the map and its transpose.
    act = torch.stack([torch.stack([a * 0.25, a * 0.75]), torch.stack([a.T * 0.5, a.T * 0.5])])
    boxes = ju.select_patches(act, window_sizes=((3, 3), (2, 2)), per_size=3, nms_iou=0.25)
    assert boxes.shape == (2, 6, 4)
    three = boxes[0, :3].tolist()
    # Best: H1; the runner-up (1, 0, 4, 3) is suppressed; next: H2; then (2, 0, 5, 3), mean 57/9,
    # which overlaps H1 by 3 cells (IoU 3/15 = 0.2 <= 0.25) and beats (0, 1, 3, 4) (IoU 0.5).
    assert three == [[0, 0, 3, 3], [4, 4, 7, 7], [2, 0, 5, 3]]
    assert [1, 0, 4, 3] not in three
    # 2x2: four windows of mean 10 inside H1, raster order among ties; IoU 2/6 suppresses neighbours.
    assert boxes[0, 3:].tolist() == [[0, 0, 2, 2], [1, 1, 3, 3], [2, 0, 4, 2]]
    assert boxes[1].tolist() == [[y0, x0, y1, x1] for x0, y0, x1, y1 in boxes[0].tolist()]  # transposed map
    # Back to pixels: 7x7 map of a 224 px input, 32 px per cell.
    px = ju.boxes_to_image(boxes, (7, 7), (224, 224))
    assert px[0, 0].tolist() == [0, 0, 96, 96] and px[0, 1].tolist() == [128, 128, 224, 224]
    # With strict NMS (IoU 0) a 3x3 window can't fit thrice clear on a 4x4 map: the best suppressed fill up.
    few = ju.select_patches(torch.ones(1, 4, 4), ((3, 3),), per_size=3, nms_iou=0.0)
    assert few.shape == (1, 3, 4) and len({tuple(b) for b in few[0].tolist()}) == 3


def test_global_local_fusion_shapes_gradients_and_checkpoint(tmp_path):
    spec = {
        "backbone": TINY,
        "patch_size": 32,
        "embed_dim": 16,
        "heads": 4,
        "layers": 3,
        "window_sizes": [[3, 3], [2, 2]],
        "per_size": 3,
    }
    torch.manual_seed(0)
    model = build_attributor("ju_fusion", spec, num_classes=2)
    assert len(model.attn) == 3 and model.attn[0].num_heads == 4 and model.classifier.in_features == 7 * 16
    model.train()
    out = model(torch.randn(2, 3, 224, 224))  # 7x7 feature map, as ResNet-50 at 224 px
    assert out.shape == (2, 2)
    out.sum().backward()
    for name in ("global_net", "local_net", "attn", "classifier"):
        params = [p for n, p in model.named_parameters() if n.startswith(name)]
        assert params and all(p.grad is not None and torch.isfinite(p.grad).all() for p in params), name
    save_file(model.state_dict(), str(tmp_path / "m.safetensors"))  # train_run's checkpoint format
    shared = build_attributor("ju_fusion", {**spec, "share_backbone": True}, num_classes=3)
    assert shared.local_net is None and shared(torch.randn(1, 3, 160, 160)).shape == (1, 3)
    save_file(shared.state_dict(), str(tmp_path / "s.safetensors"))  # no tied tensors
    with pytest.raises(ValueError, match="pretrained"):
        build_attributor("ju_fusion", {**spec, "model_kwargs": {"pretrained": True}}, 2)


def test_ju_augment_deterministic_and_rates():
    img = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (3, 24, 24), dtype=np.uint8))
    seq = lambda seed: [ju.ju_augment(img, r) for r in [np.random.default_rng(seed)] for _ in range(40)]  # noqa: E731
    a, b = seq(7), seq(7)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert all(x.dtype == torch.uint8 and x.shape == img.shape for x in a)
    assert not all(torch.equal(x, y) for x, y in zip(a, seq(8)))
    rng = np.random.default_rng(1)
    draws = [ju.ju_augment_params(rng) for _ in range(4000)]
    sig = [d["sigma"] for d in draws if d["sigma"] is not None]
    q = [d["quality"] for d in draws if d["quality"] is not None]
    assert abs(len(sig) / 4000 - 0.1) < 0.02 and abs(len(q) / 4000 - 0.1) < 0.02
    assert 0 <= min(sig) and max(sig) <= 3 and min(q) >= 30 and max(q) <= 100 and len(set(q)) > 50
    # The ops are real: blur smooths, JPEG is a Pillow round trip at the drawn quality.
    always = ju.ju_augment(img, np.random.default_rng(2), p=1.0)
    params = ju.ju_augment_params(np.random.default_rng(2), p=1.0)
    from scipy.ndimage import gaussian_filter

    s = params["sigma"]
    blurred = np.clip(np.rint(gaussian_filter(img.permute(1, 2, 0).numpy().astype(np.float32), (s, s, 0))), 0, 255)
    buf = io.BytesIO()
    Image.fromarray(blurred.astype(np.uint8)).save(buf, format="JPEG", quality=params["quality"])
    assert torch.equal(always, torch.from_numpy(np.array(Image.open(buf))).permute(2, 0, 1))
    assert torch.equal(ju.ju_augment(img, np.random.default_rng(2), p=0.0), img)


# ---------------------------------------------------------------- DeepFeatureX (Pontorno et al.)


def _index():
    counts = {"sd": 50, "ldm": 37, "stylegan": 80, "photo": 23}
    rows = [(f"{g}-{s}-{k:03d}", g, s) for g, n in counts.items() for s in ("train", "val") for k in range(n)]
    return pd.DataFrame(rows, columns=["image_id", "generator", "split"])


GROUP_OF = {"sd": "dm", "ldm": "dm", "stylegan": "gan", "photo": "real"}


def test_base_model_subsets_are_exactly_90_10():
    df = _index()
    subsets = dfx.base_model_subsets(df, GROUP_OF, ratio=0.9, seed=0)
    assert set(subsets) == {"dm", "gan", "real"}
    for group, sub in subsets.items():
        for split, rows in sub.groupby("split"):
            focus, others = rows[rows["generator"] == group], rows[rows["generator"] == "others"]
            assert len(focus) == 9 * len(others) > 0, (group, split)  # the predominant class is the 90
            assert set(focus["orig_generator"].map(GROUP_OF)) == {group}
            assert group not in set(others["orig_generator"].map(GROUP_OF))
            n_focus = sum(n for g, n in rows["orig_generator"].value_counts().items() if GROUP_OF[g] == group)
            assert len(focus) == n_focus // 9 * 9  # as many focus images as an exact ratio allows
        assert sub["image_id"].is_unique
    again = dfx.base_model_subsets(df.sample(frac=1, random_state=0), GROUP_OF, seed=0)
    assert all(subsets[g].equals(again[g]) for g in subsets)
    other_seed = dfx.base_model_subsets(df, GROUP_OF, seed=1)
    assert not subsets["dm"]["image_id"].equals(other_seed["dm"]["image_id"])


def test_class_weights_are_inverse_counts():
    w = dfx.class_weights([0, 0, 0, 1, 2, 2], num_classes=4)
    assert torch.allclose(w, torch.tensor([1 / 3, 1.0, 1 / 2, 0.0]))
    logits, y = torch.randn(6, 4), torch.tensor([0, 0, 0, 1, 2, 2])
    p = logits.softmax(1)
    by_hand = -sum(w[c] * math.log(p[i, c]) for i, c in enumerate(y.tolist())) / 6  # Eq. 1: 1/N
    assert dfx.weighted_cross_entropy(logits, y, w).item() == pytest.approx(float(by_hand), rel=1e-5)


def test_deepfeaturex_shapes_frozen_bases_and_base_runs(tmp_path):
    torch.manual_seed(0)
    model = build_attributor("deepfeaturex", {"base_model": TINY}, num_classes=3)
    convs = [m for m in model.head if isinstance(m, torch.nn.Conv1d)]
    assert [c.kernel_size[0] for c in convs] == [7, 5, 3, 3, 3] and convs[0].in_channels == 3
    assert all(c.padding == (1,) and c.stride == (1,) for c in convs)
    assert model.features(torch.randn(2, 3, 64, 64)).shape == (2, 3, 96)  # 3-channel stack of 96-d features
    model.train()
    assert not any(m.training for m in model.bases.modules()) and model.head.training
    out = model(torch.randn(2, 3, 64, 64))
    assert out.shape == (2, 3)
    out.sum().backward()
    assert all(p.grad is None and not p.requires_grad for p in model.bases.parameters())
    assert all(p.grad is not None for p in model.head.parameters())
    save_file(model.state_dict(), str(tmp_path / "m.safetensors"))

    # Starting from trained base-model runs (2-class timm_scratch runs): weights carried over.
    runs = {}
    for g in ("dm", "gan", "real"):
        base = build_attributor("timm_scratch", {"model": TINY}, 2)
        (tmp_path / g).mkdir()
        save_file(base.state_dict(), str(tmp_path / g / "model.safetensors"))
        (tmp_path / g / "model.json").write_text(
            json.dumps({"attributor": "timm_scratch", "attributor_spec": {"model": TINY}, "classes": [g, "others"]})
        )
        runs[g] = (str(tmp_path / g), base)
    built = build_attributor("deepfeaturex", {"base_model": TINY, "base_runs": {g: r for g, (r, _) in runs.items()}}, 3)
    for m, g in zip(built.bases, ("dm", "gan", "real")):
        ref = runs[g][1].state_dict()
        own = m.state_dict()
        assert all(torch.equal(v, ref[k]) for k, v in own.items()) and m.num_features == 96


def test_ju_fusion_and_deepfeaturex_train_through_train_run(tmp_path):
    from attribench.data.shards import write_shard
    from attribench.training.loop import train_run
    from split_eval import evaluate_split
    from toy_data import prompt_split_index, prompt_split_rows

    per_class = prompt_split_rows(
        {"real": (190, 60, 60), "fake": (60, 80, 190)},
        np.random.default_rng(0),
        {"train": 6, "val": 2, "test": 2},
        (128, 128),
        sigma=30,
    )
    index = prompt_split_index([write_shard(sum(per_class.values(), []), tmp_path / "toy.parquet")])
    base = {
        "input_size": 128,
        "classes": ["fake", "real"],
        "epochs": 1,
        "batch_size": 6,
        "lr": 1e-3,
        "warmup_epochs": 0,
        "num_threads": 1,
    }
    specs = {
        "ju_fusion": {"backbone": TINY, "patch_size": 32, "embed_dim": 16},  # 4x4 map at 128 px
        "deepfeaturex": {"base_model": TINY, "channels": [4, 4, 4, 4, 4]},
    }
    for name, attributor_spec in specs.items():
        run = tmp_path / name
        m = train_run(index, {**base, "attributor": name, "attributor_spec": attributor_spec}, run)
        assert evaluate_split(run, index, m)[0]["n_test"] == 4
        # A strict reload of the checkpoint scores on val what the loop recorded for its epoch.
        assert evaluate_split(run, index, split="val")[0]["test_accuracy"] == m["best_val_accuracy"]
