"""Ju et al. (global + local fusion) and DeepFeatureX on the bench: dataset label views, the training
hooks of the one loop (augmentation, loss, frozen parameters), the AP metric, and tiny end-to-end
runs on real smoke-shard images (skipped when data/smoke has not been built)."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file
from sklearn.metrics import average_precision_score

from attribench.training import hooks
from attribench.data.views import label_map, select
from attribench.experiments.runs import run_experiment
from attribench.data.imagedata import ImageDataset, decode_pixels, resize_crop_pixels
from attribench.reports.method_reports import average_precision, detection_aps
from attribench.methods import ju_fusion as ju
from attribench.data.shards import encode_png, load_images, make_row, read_metadata, write_shard

torch.set_num_threads(1)
REPO = Path(__file__).resolve().parents[1]
SMOKE_INDEX = REPO / "data/smoke/dataset/index.parquet"
LABELS3 = {"dm": "*", "gan": ["gan"], "real": ["real"]}
needs_smoke = pytest.mark.skipif(
    not SMOKE_INDEX.exists(), reason="data/smoke not built (snakemake results/dataset_summary.csv)"
)


def _toy_index(families: dict[str, str], per_split=(("train", 12), ("val", 10), ("test", 10))) -> pd.DataFrame:
    rows = [(f"{g}-{s}-{k:02d}", g, f, s, True) for g, f in families.items() for s, n in per_split for k in range(n)]
    return pd.DataFrame(rows, columns=["image_id", "generator", "family", "split", "in_benchmark"])


FAMILIES = {"sd_a": "sd", "sd_b": "sd", "xl": "sdxl", "dcgan": "gan", "photos": "real"}


# ---------------------------------------------------------------- dataset label views


def test_labels_map_generators_and_families_keep_the_generator():
    index = _toy_index(FAMILIES)
    assert label_map(index, "v", {"real": ["real"], "fake": "*"}) == {
        "photos": "real",
        "sd_a": "fake",
        "sd_b": "fake",
        "xl": "fake",
        "dcgan": "fake",
    }
    # by family (sd -> both sd generators) and by generator name (xl); "*" takes only the rest
    assert label_map(index, "v", {"a": ["sd"], "b": ["xl", "photos"], "c": "*"}) == {
        "sd_a": "a",
        "sd_b": "a",
        "xl": "b",
        "photos": "b",
        "dcgan": "c",
    }
    ds = select(index, "v", {"labels": {"real": ["real"], "fake": "*"}})
    assert set(ds["label"]) == {"real", "fake"} and set(ds["generator"]) == set(FAMILIES)  # provenance kept
    assert (ds.loc[ds.generator == "photos", "label"] == "real").all()
    # without `labels` a view is exactly what it was: no label column
    plain = select(index, "v", {"exclude": ["dcgan"]})
    assert "label" not in plain.columns and set(plain["generator"]) == set(FAMILIES) - {"dcgan"}
    # no "*": generators no class names are left out; classes/exclude filter first
    ds = select(index, "v", {"labels": {"sd": ["sd"], "real": ["real"]}, "exclude": ["sd_b"]})
    assert set(ds["generator"]) == {"sd_a", "photos"}
    with pytest.raises(KeyError, match="nope"):
        select(index, "v", {"labels": {"x": ["nope"], "y": "*"}})
    with pytest.raises(ValueError, match="both"):
        label_map(index, "v", {"x": ["sd"], "y": ["sd_a"]})
    with pytest.raises(ValueError, match="only one"):
        label_map(index, "v", {"x": "*", "y": "*"})


def test_one_vs_rest_view_is_the_90_10_base_model_subset():
    index = _toy_index(FAMILIES, per_split=(("train", 40), ("val", 20), ("test", 20)))
    for positive in ("dm", "gan", "real"):
        ds = select(index, "b", {"labels": LABELS3, "one_vs_rest": {"positive": positive, "ratio": 0.9}}, seed=0)
        assert set(ds["label"]) == {positive, "others"}
        for split, rows in ds.groupby("split"):
            n_pos, n_oth = (rows["label"] == positive).sum(), (rows["label"] == "others").sum()
            assert n_pos == 9 * n_oth > 0, (positive, split)
        mapping = label_map(index, "b", LABELS3)
        assert (ds.loc[ds.label == positive, "generator"].map(mapping) == positive).all()
        assert (ds.loc[ds.label == "others", "generator"].map(mapping) != positive).all()
    with pytest.raises(ValueError, match="needs `labels`"):
        select(index, "b", {"one_vs_rest": {"positive": "dm"}})


@needs_smoke
def test_smoke_views_binary_dfx_and_heldout(smoke_cfg):
    index = pd.read_parquet(SMOKE_INDEX)
    views = {
        v: select(index, v, smoke_cfg["datasets"][v], 0)
        for v in ("binary", "dfx3", "seen_binary", "heldout_binary", "dfx_base_gan")
    }
    tr = views["binary"][views["binary"].split == "train"]
    assert tr.groupby("label").size().to_dict() == {"fake": 7 * 120, "real": 120}
    assert views["dfx3"].groupby("label").generator.nunique().to_dict() == {"dm": 6, "gan": 1, "real": 1}
    assert set(views["heldout_binary"]["generator"]) == {"real", "sd3_tiny", "lcm_tiny"}
    assert not {"sd3_tiny", "lcm_tiny"} & set(views["seen_binary"]["generator"])
    gan = views["dfx_base_gan"]
    for _, rows in gan.groupby("split"):
        assert (rows.label == "gan").sum() == 9 * (rows.label == "others").sum()


# ---------------------------------------------------------------- training hooks


def _pngs(n, h=40, w=48, seed=0):
    rng = np.random.default_rng(seed)
    from PIL import Image

    return [encode_png(Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))) for _ in range(n)]


def test_ju_augmentation_hook_is_deterministic_before_resize_and_training_only():
    blobs, size, seed = _pngs(6), 16, 3
    aug = hooks.make_augmentation({"name": "ju", "p": 1.0})
    ds = ImageDataset(blobs, [0] * 6, size, train=True, seed=seed, augment=aug)
    for epoch in (1, 2):
        ds.set_epoch(epoch)
        for i in range(6):
            # ju_augment on the full 40x48 decoded image with the (seed, epoch, item) stream, then resize
            want = resize_crop_pixels(
                ju.ju_augment(decode_pixels(blobs[i]), np.random.default_rng([seed, epoch, i]), p=1.0), size
            )
            assert torch.equal(ds.train_pixels(i), want)
            assert not torch.equal(want, ds.pixels[i])  # p=1: it really changed the image
    ds.set_epoch(1)
    first = [ds.train_pixels(i) for i in range(6)]
    ds.set_epoch(2)
    assert not all(torch.equal(a, ds.train_pixels(i)) for i, a in enumerate(first))  # new draws each epoch
    # Evaluation datasets ignore the hook: their items are the cached resize of the original.
    ev = ImageDataset(blobs, [0] * 6, size, train=False, augment=aug)
    assert ev.augment is None and all(
        torch.equal(ev[i][0], ImageDataset(blobs, [0] * 6, size, False)[i][0]) for i in range(6)
    )
    # p=0: items (flips included) are exactly those of a dataset without the hook.
    off = ImageDataset(
        blobs, [0] * 6, size, train=True, seed=seed, augment=hooks.make_augmentation({"name": "ju", "p": 0.0})
    )
    plain = ImageDataset(blobs, [0] * 6, size, train=True, seed=seed)
    assert all(torch.equal(off[i][0], plain[i][0]) for i in range(6))
    with pytest.raises(KeyError, match="unknown augmentation"):
        hooks.make_augmentation({"name": "nope"})


def test_blur_sigma_transform_is_the_augmentation_blur():
    from attribench import transforms as T
    from attribench.transforms.perturb import blur_sigma

    x = np.random.default_rng(0).integers(0, 256, (2, 24, 24, 3), dtype=np.uint8)
    out = T.apply({"name": "gaussian_blur_sigma", "sigma": 2}, x)
    params = {"sigma": 2.0, "quality": None}
    assert np.array_equal(
        out[0], ju.apply_ju_params(torch.from_numpy(x[0]).permute(2, 0, 1), params).permute(1, 2, 0).numpy()
    )
    assert np.array_equal(out[1], blur_sigma(x[1], 2))
    assert np.array_equal(T.apply({"name": "gaussian_blur_sigma", "sigma": 0}, x), x)
    assert np.abs(np.diff(out.astype(float), axis=1)).mean() < np.abs(np.diff(x.astype(float), axis=1)).mean() / 2


def test_average_precision_matches_sklearn_with_ties():
    rng = np.random.default_rng(0)
    for _ in range(20):
        y = rng.random(60) < 0.6
        s = np.round(rng.random(60), 1)  # many ties
        s[y] = np.minimum(1, s[y] + 0.2)
        assert average_precision(y, s) == pytest.approx(average_precision_score(y, s), abs=1e-12)
    # per family: real (family "real") vs each fake family; mAP their mean; global over all
    fam = np.array(["real"] * 4 + ["a"] * 3 + ["b"] * 3, dtype=object)
    y = fam != "real"
    s = np.array([0.1, 0.2, 0.3, 0.9, 0.8, 0.95, 0.7, 0.05, 0.15, 0.99])
    rows = {r["family"]: r for r in detection_aps(y, s, fam, n_boot=50)}
    ra = average_precision_score(y[fam != "b"], s[fam != "b"])
    rb = average_precision_score(y[fam != "a"], s[fam != "a"])
    assert rows["a"]["value"] == pytest.approx(ra) and rows["b"]["value"] == pytest.approx(rb)
    assert rows["mAP"]["value"] == pytest.approx((ra + rb) / 2) and rows["mAP"]["metric"] == "map"
    assert rows["global"]["value"] == pytest.approx(average_precision_score(y, s))
    assert all(r["ci95_lo"] <= r["value"] + 1e-9 and r["value"] <= r["ci95_hi"] + 1e-9 for r in rows.values())


# ---------------------------------------------------------------- tiny runs on real shard images


@pytest.fixture(scope="module")
def real_index(tmp_path_factory):
    """9 train / 9 val / 9 test images of sd_tiny, dcgan_faces and real (the smoke shards' own bytes,
    copied into one shard), so the 90:10 subsets have one 'other' per split."""
    if not SMOKE_INDEX.exists():
        pytest.skip("data/smoke not built")
    index = pd.read_parquet(SMOKE_INDEX)
    index = index[index.in_benchmark & index.generator.isin(["sd_tiny", "dcgan_faces", "real"])]
    rows = index.sort_values("image_id").groupby(["generator", "split"]).head(9)
    rows = rows.assign(shard=[str(REPO / s) for s in rows["shard"]])
    images = load_images(rows)
    out = tmp_path_factory.mktemp("real")
    keep = ["generator", "family", "source", "prompt", "prompt_id", "prompt_source"]
    shard = write_shard(
        [make_row(images[r["image_id"]], r["format"], **{k: r[k] for k in keep}) for r in rows.to_dict("records")],
        out / "real.parquet",
    )
    new = read_metadata([shard]).merge(rows[["image_id", "split", "in_benchmark", "group"]], on="image_id")
    path = out / "index.parquet"
    new.to_parquet(path)
    return path


def _cfg():
    base = {"labels": LABELS3}
    return {
        "profile": "test",
        "split": {"seed": 0},
        "training": {
            "epochs": 2,
            "warmup_epochs": 0,
            "batch_size": 9,
            "lr": 1e-3,
            "min_lr": 1e-5,
            "weight_decay": 0.05,
            "input_size": 64,
            "seed": 0,
            "num_threads": 1,
        },
        "attributors": {
            "ju": {
                "kind": "ju_fusion",
                "label": "ju",
                "training": {"augment": {"name": "ju", "p": 0.5}},
                "spec": {
                    "backbone": "test_resnet",
                    "patch_size": 16,
                    "embed_dim": 16,
                    "model_kwargs": {"output_stride": 16},
                },
            },
            "base": {"kind": "timm_scratch", "label": "base", "spec": {"model": "test_resnet"}},
            "dfx": {
                "kind": "deepfeaturex",
                "label": "dfx",
                "training": {"loss": "weighted_ce"},
                "spec": {"base_runs": {"dm": "b_dm", "gan": "b_gan", "real": "b_real"}, "channels": [4, 4, 4, 4, 4]},
            },
        },
        "datasets": {
            "binary": {"labels": {"real": ["real"], "fake": "*"}},
            "dfx3": base,
            "no_gan": {"exclude": ["dcgan_faces"]},  # the paper's N-way view leaves the GAN classes out
            **{f"b_{g}": {**base, "one_vs_rest": {"positive": g}} for g in ("dm", "gan", "real")},
        },
        "experiments": {
            "ju_binary": {"attributor": "ju", "train": "binary"},
            **{f"b_{g}": {"attributor": "base", "train": f"b_{g}"} for g in ("dm", "gan", "real")},
            "dfx3": {"attributor": "dfx", "train": "dfx3"},
            "nway": {"attributor": "dfx", "train": "no_gan"},
        },
    }


def test_ju_binary_end_to_end_on_real_images(real_index, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    m = run_experiment(_cfg(), "ju_binary", real_index, tmp_path / "results/runs/ju_binary", threads=1)
    assert m["classes"] == ["fake", "real"] and m["n_train"] == 27 and m["test"]["binary"]["n"] == 27
    preds = pd.read_parquet(tmp_path / "results/runs/ju_binary/predictions_binary.parquet")
    assert set(preds["generator"]) == {"sd_tiny", "dcgan_faces", "real"}  # provenance next to the label
    assert ((preds.generator == "real") == (preds.true_label == "real")).all()
    log = (tmp_path / "results/runs/ju_binary/train.log").read_text()
    assert '"name": "ju"' in log
    # The detection table: AP per family, mAP, global AP; clean = the recorded predictions.
    from attribench.reports.method_reports import ju_detection

    cfg = {
        **_cfg(),
        "delivery": {"size": 64, "format": "jpeg", "quality": 95},
        "ju_detection": {
            "detector": "ju_binary",
            "positive": "fake",
            "perturbations": {"gaussian_blur_sigma": [{"sigma": 2}], "jpeg": [{"quality": 30}]},
        },
    }
    df = ju_detection(cfg, real_index, tmp_path / "ju.csv", tmp_path / "ju.png")
    clean = df[df.perturbation == "clean"].set_index(["family", "metric"]).value
    y = (preds.true_label == "fake").to_numpy()
    fam = preds.generator.map({"sd_tiny": "sd", "dcgan_faces": "gan", "real": "real"}).to_numpy()
    for f in ("sd", "gan"):
        keep = (~y) | (fam == f)
        assert clean[(f, "ap")] == pytest.approx(average_precision_score(y[keep], preds.p_fake[keep]))
    assert clean[("mAP", "map")] == pytest.approx((clean[("sd", "ap")] + clean[("gan", "ap")]) / 2)
    assert clean[("global", "global_ap")] == pytest.approx(average_precision_score(y, preds.p_fake))
    assert set(df.perturbation) == {"clean", "gaussian_blur_sigma", "jpeg"} and (tmp_path / "ju.png").stat().st_size
    assert (df[df.metric == "global_ap"].n_fake == 18).all()


def test_deepfeaturex_chain_weighted_ce_and_frozen_bases(real_index, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # base_runs resolve to results/runs/<experiment>
    cfg = _cfg()
    for g in ("dm", "gan", "real"):
        m = run_experiment(cfg, f"b_{g}", real_index, Path("results/runs") / f"b_{g}", threads=1)
        assert m["classes"] == sorted([g, "others"]) and m["n_train"] == 10  # 9 : 1
    seen = {}
    real_factory = hooks.LOSSES["weighted_ce"]

    def spy(labels, k):
        seen["labels"], seen["loss"] = labels.clone(), real_factory(labels, k)
        return seen["loss"]

    monkeypatch.setitem(hooks.LOSSES, "weighted_ce", spy)
    m = run_experiment(cfg, "dfx3", real_index, Path("results/runs/dfx3"), threads=1)
    assert m["classes"] == ["dm", "gan", "real"] and m["test"]["dfx3"]["n"] == 27
    counts = torch.bincount(seen["labels"], minlength=3).double()
    assert counts.tolist() == [9, 9, 9]
    assert torch.allclose(seen["loss"].weights.double(), 1.0 / counts)
    # Bases are frozen: the trained checkpoint's base weights are the base runs' own; the head moved.
    state = load_file("results/runs/dfx3/model.safetensors")
    for i, g in enumerate(("dm", "gan", "real")):
        base = load_file(f"results/runs/b_{g}/model.safetensors")
        own = {k.split(".", 2)[2]: v for k, v in state.items() if k.startswith(f"bases.{i}.")}
        assert own and all(torch.equal(v, base[k]) for k, v in own.items())
    from attribench.models.attributors import build_attributor

    torch.manual_seed(0)  # train_run's seed: the head the run started from
    init = build_attributor(
        "deepfeaturex", json.loads(Path("results/runs/dfx3/model.json").read_text())["attributor_spec"], 3
    )
    assert any(not torch.equal(v, state[f"head.{k}"]) for k, v in init.head.state_dict().items())
    # The table: base models, 3-class and binary (DM + GAN = fake) readings, clean and JPEG.
    from attribench.reports.method_reports import deepfeaturex_table

    cfg = {
        **cfg,
        "delivery": {"size": 64, "format": "jpeg", "quality": 95},
        "deepfeaturex": {
            "experiment": "dfx3",
            "attribution": "nway",
            "bases": ["b_dm", "b_gan", "b_real"],
            "real_label": "real",
            "perturbations": {"jpeg": [{"quality": 50}]},
        },
    }
    m = run_experiment(cfg, "nway", real_index, Path("results/runs/nway"), threads=1)
    assert m["classes"] == ["real", "sd_tiny"]
    df = deepfeaturex_table(cfg, real_index, tmp_path / "dfx.csv", tmp_path / "dfx.png")
    # The N-way head is read on the 3-class test images of the classes it knows (not dcgan_faces).
    nway = df[(df.task == "2way") & (df.perturbation == "clean") & (df.metric == "accuracy")]
    n_rec = pd.read_parquet("results/runs/nway/predictions_no_gan.parquet")
    assert nway.n.item() == 18 and nway.value.item() == pytest.approx((n_rec.true_label == n_rec.pred_label).mean())
    rec = pd.read_parquet("results/runs/dfx3/predictions_dfx3.parquet")
    acc = df[(df.task == "3class") & (df.perturbation == "clean") & (df.metric == "accuracy")].value.item()
    assert acc == pytest.approx((rec.true_label == rec.pred_label).mean())
    binary = df[
        (df.task == "binary_fake_vs_real") & (df.perturbation == "clean") & (df.metric == "accuracy")
    ].value.item()
    assert binary == pytest.approx(((rec.true_label == "real") == (rec.pred_label == "real")).mean())
    assert set(df.task) == {
        "base_dm_vs_others",
        "base_gan_vs_others",
        "base_real_vs_others",
        "3class",
        "binary_fake_vs_real",
        "2way",
    }
    assert set(df[df.task == "3class"].perturbation) == {"clean", "jpeg"}


def test_weighted_ce_weights_are_inverse_training_counts_unbalanced():
    labels = torch.tensor([0] * 7 + [1] * 2 + [2])
    loss = hooks.make_loss("weighted_ce", labels, 3)
    assert torch.allclose(loss.weights, torch.tensor([1 / 7, 1 / 2, 1.0]))
    assert hooks.make_loss(None, labels, 3) is torch.nn.functional.cross_entropy
