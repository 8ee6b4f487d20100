"""Transforms: perturbations, representations, derived shards, and the weight-needing loaders on tiny models."""

import io
import json

import numpy as np
import pytest
import torch
from PIL import Image

import attribench.transforms as T
from attribench.data.shards import content_id, encode_png, make_row, read_shard, write_shard
from attribench.transforms.perturb import sdedit_schedule


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)  # machines are shared; also keeps kornia timings honest


def _textured(n=2, size=64, seed=0):
    rng = np.random.default_rng(seed)
    x = (rng.random((n, size, size, 3)) * 255).astype(np.uint8)
    x[:, size // 4 : 3 * size // 4, size // 4 : 3 * size // 4] = 200
    return x


def _laplacian_energy(images):
    x = images.astype(np.float64).mean(-1)
    lap = 4 * x[:, 1:-1, 1:-1] - x[:, :-2, 1:-1] - x[:, 2:, 1:-1] - x[:, 1:-1, :-2] - x[:, 1:-1, 2:]
    return np.abs(lap).mean()


# ---------------------------------------------------------------- registry ----


def test_registry_specs_are_canonical_and_unknown_names_list_the_registry():
    with pytest.raises(KeyError, match="gaussian_blur"):
        T.get("gausian_blur")
    with pytest.raises(TypeError, match="radius"):
        T.make_spec({"name": "gaussian_blur"})  # required parameter missing
    with pytest.raises(TypeError, match="sigma"):
        T.make_spec({"name": "gaussian_blur", "radius": 5, "sigma": 2})
    spec = T.make_spec({"name": "gaussian_blur", "radius": 5})
    assert spec == {"name": "gaussian_blur", "radius": 5, "sigma_ratio": 0.5}  # defaults are pinned in the spec
    assert json.loads(T.spec_json(spec)) == spec
    with pytest.raises(ValueError, match="uint8"):
        T.apply(spec, np.zeros((1, 8, 8, 3), np.float32))


def test_availability_marks_rows_and_unavailable_entries_explain_why():
    assert T.availability({"name": "jpeg", "quality": 50}) == "ok"
    assert T.availability("perspective_field") == "not available"
    with pytest.raises(T.NotAvailable, match="PyPI"):
        T.apply("perspective_field", _textured(1))


@pytest.mark.parametrize(
    "name, extra", [("depth", {}), ("normals", {}), ("albedo", {}), ("shading", {}), ("sdedit", {"strength": 0.05})]
)
def test_hub_ids_without_local_weights_need_weights(name, extra):
    spec = {"name": name, "model": "attribench-test/not-a-cached-model", **extra}
    assert T.availability(spec) == "needs weights"
    with pytest.raises(T.NeedsWeights, match="attribench-test/not-a-cached-model"):
        T.apply(spec, _textured(1))


# ----------------------------------------------------------- perturbations ----


def test_jpeg_is_a_real_reencoding():
    x = _textured(2)
    q50, fmt = T.encode({"name": "jpeg", "quality": 50}, x)
    q90, _ = T.encode({"name": "jpeg", "quality": 90}, x)
    assert fmt == "jpeg" and all(b.startswith(b"\xff\xd8") for b in q50)
    assert all(len(a) < len(b) for a, b in zip(q50, q90))
    decoded = T.apply({"name": "jpeg", "quality": 50}, x)
    assert decoded.shape == x.shape and np.abs(decoded.astype(int) - x).mean() > 5
    with Image.open(io.BytesIO(q50[0])) as im:
        assert np.array_equal(np.asarray(im.convert("RGB")), decoded[0])


def test_blur_removes_more_high_frequency_at_larger_radius():
    x = _textured(2)
    e = [_laplacian_energy(x)] + [
        _laplacian_energy(T.apply({"name": "gaussian_blur", "radius": r}, x)) for r in (5, 10)
    ]
    assert e[0] > 2 * e[1] and e[1] > 1.2 * e[2]


def test_bilateral_smooths_noise_but_keeps_edges_sharper_than_blur():
    rng = np.random.default_rng(1)
    x = np.full((1, 64, 64, 3), 60.0)
    x[:, :, 32:] = 190.0
    x = np.clip(x + rng.normal(0, 4, x.shape), 0, 255).round().astype(np.uint8)
    for d in (5, 10):
        bil = T.apply({"name": "bilateral", "diameter": d}, x).astype(float)
        blur = T.apply({"name": "gaussian_blur", "radius": d // 2}, x).astype(float)  # same window
        assert bil[:, 8:-8, 4:24].std() < 0.6 * x[:, 8:-8, 4:24].std()  # noise in a flat area smoothed
        step = lambda im: np.abs(np.diff(im[:, 8:-8, 28:36].mean(-1), axis=2)).max(axis=2).mean()  # noqa: E731
        assert step(bil) > 1.5 * step(blur)


def test_noise_has_the_requested_std_and_is_fixed_by_the_image_id():
    grey = np.full((2, 128, 128, 3), 128, np.uint8)
    for std in (15, 25):
        out = T.apply({"name": "gaussian_noise", "std": std}, grey, ids=["a", "b"]).astype(float)
        assert abs((out - 128).std() / std - 1) < 0.1
        assert not np.array_equal(out[0], out[1])  # two ids, two noise fields
    a = T.apply({"name": "gaussian_noise", "std": 15}, grey, ids=["a", "b"])
    b = T.apply({"name": "gaussian_noise", "std": 15}, grey[:1], ids=["b"])
    assert np.array_equal(a[1], b[0])  # same id -> same noise, wherever it sits in a batch


# ---------------------------------------------------------- representations ----


def test_canny_finds_only_the_border_of_a_square():
    x = np.zeros((1, 64, 64, 3), np.uint8)
    x[:, 16:48, 16:48] = 255
    edges = T.apply("canny", x)[0]
    assert set(np.unique(edges)) == {0, 255} and (edges == edges[..., :1]).all()
    yy, xx = np.nonzero(edges[..., 0])
    dist = np.minimum(np.minimum(np.abs(yy - 16), np.abs(yy - 47)), np.minimum(np.abs(xx - 16), np.abs(xx - 47)))
    assert len(yy) > 4 * 28 and dist.max() <= 2  # a closed outline, nothing inside or outside
    assert not edges[24:40, 24:40].any()


def test_canny_hysteresis_matches_kornias_iterative_one():
    import kornia

    from attribench.transforms.common import to_float, to_uint8

    x = T.apply({"name": "gaussian_blur", "radius": 2}, _textured(3, 48))  # long, branching edges
    for low, high in ((0.1, 0.2), (0.4, 0.8)):
        ref = to_uint8(kornia.filters.canny(to_float(x), low, high)[1])
        assert np.array_equal(T.apply({"name": "canny", "low": low, "high": high}, x), ref)


def test_highpass_and_spectrum_have_fixed_scales():
    flat = np.full((1, 32, 32, 3), 90, np.uint8)
    assert (T.apply("highpass", flat) == 128).all()  # zero residual -> mid grey
    spec = T.apply("fft_spectrum", flat)[0, ..., 0]
    assert spec[16, 16] == spec.max() > 200 and spec.sum() == spec[16, 16]  # only the centred DC term
    noisy = T.apply("fft_spectrum", _textured(1, 32))[0]
    assert noisy.mean() > spec.mean()


# ------------------------------------------------------------ derived shards ----


def _shard(path):
    imgs = [_textured(1, 64, s)[0] for s in range(3)] + [_textured(1, 48, 9)[0]]  # mixed sizes batch separately
    rows = [
        make_row(
            encode_png(Image.fromarray(im)),
            "png",
            generator="g",
            family="sd",
            source="generated",
            prompt=p,
            width=im.shape[1],
            height=im.shape[0],
            seed=i,
        )
        for i, (im, p) in enumerate(zip(imgs, ["a cat", None, "a dog", "red car"]))
    ]
    return write_shard(rows, path)


def test_derived_shards_keep_parents_and_compose_specs(tmp_path):
    src = read_shard(_shard(tmp_path / "raw.parquet"))
    jp = read_shard(
        T.apply_to_shard(
            tmp_path / "raw.parquet", tmp_path / "jpeg.parquet", {"name": "jpeg", "quality": 50}, batch_size=3
        )
    )
    assert list(jp.parent_id) == list(src.image_id) and (jp.format == "jpeg").all()
    assert all(content_id(b) == i and b.startswith(b"\xff\xd8") for b, i in zip(jp.image, jp.image_id))
    assert json.loads(jp["transform"][0]) == {"name": "jpeg", "quality": 50, "subsampling": "4:2:0"}
    assert list(jp.prompt.fillna("-")) == list(src.prompt.fillna("-")) and list(jp.width) == [64, 64, 64, 48]

    ed = read_shard(T.apply_to_shard(tmp_path / "jpeg.parquet", tmp_path / "canny.parquet", "canny"))
    assert list(ed.parent_id) == list(jp.image_id) and (ed.format == "png").all()
    chain = T.transform_chain(ed["transform"][0])
    assert [s["name"] for s in chain] == ["jpeg", "canny"]  # oldest first
    assert sorted(p.name for p in tmp_path.iterdir()) == ["canny.parquet", "jpeg.parquet", "raw.parquet"]


# ------------------------------------------------- model-based, tiny models ----


@pytest.fixture(scope="module")
def zoo_sd(tmp_path_factory):
    from attribench.data import zoo

    return str(zoo.save_zoo_model("sd", tmp_path_factory.mktemp("zoo") / "sd"))


def test_sdedit_on_a_tiny_zoo_pipeline(zoo_sd):
    assert sdedit_schedule(0.01, 50) == 100 and sdedit_schedule(0.05, 50) == 50  # >= 1 denoising step always
    x, ids, prompts = _textured(2), ["a", "b"], ["a cat", None]
    run = lambda s: T.apply({"name": "sdedit", "strength": s, "model": zoo_sd}, x, ids, prompts).astype(float)  # noqa: E731
    ref, lo, hi = run(0.002), run(0.01), run(0.05)
    assert np.abs(lo - x).mean() > 5  # changed (mostly the random tiny VAE's round trip)
    # Same per-image noise at every strength, so the distance to a near-zero-strength run measures strength.
    assert np.abs(hi - ref).mean() > np.abs(lo - ref).mean() > 0
    assert np.array_equal(run(0.01), lo)


def _tiny_depth_anything(path):
    from transformers import DepthAnythingConfig, DepthAnythingForDepthEstimation, Dinov2Config, DPTImageProcessor

    backbone = Dinov2Config(
        hidden_size=32,
        num_hidden_layers=4,
        num_attention_heads=2,
        intermediate_size=64,
        patch_size=14,
        image_size=56,
        out_features=["stage1", "stage2", "stage3", "stage4"],
        reshape_hidden_states=False,
    )
    cfg = DepthAnythingConfig(
        backbone_config=backbone,
        reassemble_hidden_size=32,
        patch_size=14,
        neck_hidden_sizes=[8, 16, 16, 32],
        fusion_hidden_size=16,
        head_hidden_size=8,
    )
    torch.manual_seed(0)
    DepthAnythingForDepthEstimation(cfg).eval().save_pretrained(path)
    DPTImageProcessor(
        size={"height": 56, "width": 56},
        keep_aspect_ratio=True,
        ensure_multiple_of=14,
        image_mean=[0.485, 0.456, 0.406],
        image_std=[0.229, 0.224, 0.225],
    ).save_pretrained(path)
    return str(path)


def test_depth_loader_runs_a_tiny_random_depth_anything(tmp_path):
    spec = {"name": "depth", "model": _tiny_depth_anything(tmp_path / "depth")}
    assert T.availability(spec) == "ok"
    x = _textured(2)
    out = T.apply(spec, x)
    assert out.shape == x.shape and out.min() == 0 and out.max() == 255  # min-max per image
    assert (out == out[..., :1]).all() and np.array_equal(T.apply(spec, x), out)


def _tiny_marigold(cls, path, n_targets, **extra):
    from diffusers import DDIMScheduler, UNet2DConditionModel

    from attribench.data import zoo

    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        sample_size=8,
        in_channels=4 * (1 + n_targets),
        out_channels=4 * n_targets,
        block_out_channels=(32, 64),
        layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=32,
        attention_head_dim=2,
        norm_num_groups=16,
    )
    cls(
        unet=unet.eval(),
        vae=zoo._vae(0, "marigold", 64, scaling_factor=0.18215),
        text_encoder=zoo._clip_text(0, "marigold", "text_encoder"),
        tokenizer=zoo._clip_tokenizer(),
        scheduler=DDIMScheduler(
            beta_schedule="scaled_linear",
            beta_start=0.00085,
            beta_end=0.012,
            prediction_type="v_prediction",
            timestep_spacing="trailing",
        ),
        default_denoising_steps=1,
        default_processing_resolution=64,
        **extra,
    ).save_pretrained(path)
    return str(path)


def test_marigold_loaders_run_tiny_random_pipelines(tmp_path):
    from diffusers import MarigoldIntrinsicsPipeline, MarigoldNormalsPipeline

    normals = _tiny_marigold(MarigoldNormalsPipeline, tmp_path / "normals", 1, prediction_type="normals")
    # The lighting checkpoint's layout: three targets, shading and residual linear and up to scale.
    targets = {
        "target_names": ["albedo", "shading", "residual"],
        "albedo": {"prediction_space": "srgb"},
        "shading": {"prediction_space": "linear", "up_to_scale": True},
        "residual": {"prediction_space": "linear", "up_to_scale": True},
    }
    iid = _tiny_marigold(
        MarigoldIntrinsicsPipeline, tmp_path / "iid", 3, prediction_type="intrinsics", target_properties=targets
    )
    x, ids = _textured(2), ["a", "b"]
    outs = {}
    for name, model in [("normals", normals), ("albedo", iid), ("shading", iid)]:
        spec = {"name": name, "model": model}
        assert T.availability(spec) == "ok"
        outs[name] = T.apply(spec, x, ids)
        assert outs[name].shape == x.shape and outs[name].std() > 0
        assert np.array_equal(T.apply(spec, x, ids), outs[name])  # seeded per image id
        alone = T.apply(spec, x[1:], ids[1:])  # batching changes float summation order only
        assert np.abs(alone.astype(int) - outs[name][1:]).max() <= 1
    assert not np.array_equal(outs["albedo"], outs["shading"])
    with pytest.raises(ValueError, match="shading"):
        T.apply(
            {
                "name": "shading",
                "model": _tiny_marigold(
                    MarigoldIntrinsicsPipeline,
                    tmp_path / "app",
                    1,
                    prediction_type="intrinsics",
                    target_properties={"target_names": ["albedo"], "albedo": {}},
                ),
            },
            x,
        )
