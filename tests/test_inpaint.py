"""Free-form masks in the paper's area bands, and the `inpaint` transform on tiny offline pipelines."""

import numpy as np
import pytest
import torch
from PIL import Image

import attribench.transforms as T
from attribench.data.shards import decode, encode_png, make_row, read_shard, write_shard
from attribench.transforms.inpaint import SDXL_INPAINT, edit_mask
from attribench.transforms.masks import BANDS, free_form_mask, mask_area, mask_seed


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)  # machines are shared


def _textured(n=2, h=64, w=64, seed=0):
    rng = np.random.default_rng(seed)
    x = (rng.random((n, h, w, 3)) * 255).astype(np.uint8)
    x[:, h // 4 : 3 * h // 4, w // 4 : 3 * w // 4] = 200
    return x


# ------------------------------------------------------------------- masks ----


@pytest.mark.parametrize("band", sorted(BANDS))
def test_masks_land_in_their_band_are_seeded_and_free_form(band):
    lo, hi = BANDS[band]
    fills = []
    for seed in range(100):
        m = free_form_mask(96, 128, band, seed)
        assert m.dtype == bool and m.shape == (96, 128)
        assert lo < mask_area(m) <= hi, (seed, mask_area(m))
        assert np.array_equal(m, free_form_mask(96, 128, band, seed))  # a pure function of the seed
        ys, xs = np.nonzero(m)
        fills.append(m.sum() / ((np.ptp(ys) + 1) * (np.ptp(xs) + 1)))
    # Brush strokes, not boxes: a stroke mask fills little of its bounding box (measured max 0.60).
    assert np.mean(np.array(fills) < 0.9) >= 0.95
    assert not np.array_equal(free_form_mask(96, 128, band, 0), free_form_mask(96, 128, band, 1))


def test_mask_seed_depends_on_image_and_band_only():
    assert mask_seed("a", "small") == mask_seed("a", "small")
    assert len({mask_seed("a", "small"), mask_seed("b", "small"), mask_seed("a", "large")}) == 3
    with pytest.raises(ValueError, match="band"):
        free_form_mask(64, 64, "huge", 0)


# ------------------------------------------------------------------ inpaint ----


def test_spec_defaults_and_missing_weights():
    spec = T.make_spec({"name": "inpaint", "band": "small"})
    assert spec["model"] == SDXL_INPAINT and spec["paste_back"] is True and spec["strength"] == 0.99
    bad = {"name": "inpaint", "band": "small", "model": "attribench-test/not-a-cached-model"}
    assert T.availability(bad) == "needs weights"
    with pytest.raises(T.NeedsWeights, match="attribench-test/not-a-cached-model"):
        T.apply(bad, _textured(1))
    with pytest.raises(ValueError, match="band"):
        T.apply({**bad, "band": "huge"}, _textured(1))


@pytest.fixture(scope="module")
def tiny_inpainters(tmp_path_factory):
    """Tiny SD/SDXL inpaint pipelines from zoo components, saved and reloaded like a hub checkpoint."""
    from diffusers import StableDiffusionInpaintPipeline, StableDiffusionXLInpaintPipeline

    from attribench.data import zoo

    root, out = tmp_path_factory.mktemp("inpaint"), {}
    # 4-channel UNet: diffusers' "legacy" inpainting (re-noised original blended in outside the mask each step).
    out["sd-4ch"] = StableDiffusionInpaintPipeline(**zoo.build_pipeline("sd", 0).components)
    # 9-channel UNet (latents + mask + masked-image latents): the layout of the real SD/SDXL inpainting models.
    parts = zoo.build_pipeline("sd", 0).components | {"unet": zoo._cond_unet(0, "sd-inpaint", 64, in_channels=9)}
    out["sd-9ch"] = StableDiffusionInpaintPipeline(**parts)
    out["sdxl-4ch"] = StableDiffusionXLInpaintPipeline(**zoo.build_pipeline("sdxl", 0).components)
    for name, pipe in out.items():
        pipe.save_pretrained(root / name)
    return {name: str(root / name) for name in out}


@pytest.mark.parametrize("kind", ["sd-4ch", "sd-9ch", "sdxl-4ch"])
def test_inpaint_changes_only_the_mask(tiny_inpainters, kind):
    x, ids, prompts = _textured(2), ["a", "b"], ["a cat", None]
    spec = {"name": "inpaint", "band": "medium", "model": tiny_inpainters[kind], "steps": 4}
    y = T.apply(spec, x, ids, prompts)
    raw = T.apply({**spec, "paste_back": False}, x, ids, prompts)
    m = np.stack([edit_mask(i, 64, 64, "medium") for i in ids])[..., None].repeat(3, -1)
    d, d_raw = np.abs(y.astype(int) - x), np.abs(raw.astype(int) - x)
    # Paste-back copies the input outside the mask bit for bit: tolerance 0 (measured 0).
    assert d[~m].max() == 0
    assert np.array_equal(y[m], raw[m]) and d[m].mean() > 5  # inside: the pipeline's pixels (measured ~66-76)
    # Without it every pixel carries the VAE round trip (tiny random VAE: measured mean ~68, max ~254).
    assert d_raw[~m].mean() > 5
    assert np.array_equal(T.apply(spec, x, ids, prompts), y)  # seeded per image id
    assert not np.array_equal(T.apply({**spec, "seed": 1}, x, ids, prompts), y)


def test_derived_shard_keeps_the_mask_recoverable(tiny_inpainters, tmp_path):
    # Two sizes, one not divisible by 8 (inpainted at 56x72, resized back): derive batches by shape.
    ims = [_textured(1, 64, 64, seed=1)[0], _textured(1, 60, 76, seed=2)[0]]
    rows = [
        make_row(
            encode_png(Image.fromarray(im)), "png", generator="g", prompt="a dog", height=im.shape[0], width=im.shape[1]
        )
        for im in ims
    ]
    write_shard(rows, tmp_path / "raw.parquet")
    spec = {"name": "inpaint", "band": "large", "model": tiny_inpainters["sd-9ch"], "steps": 2}
    T.apply_to_shard(tmp_path / "raw.parquet", tmp_path / "inpaint.parquet", spec)
    parents = {r["image_id"]: r for r in rows}
    for r in read_shard(tmp_path / "inpaint.parquet").to_dict("records"):
        before, after = (np.asarray(decode(b)).astype(int) for b in (parents[r["parent_id"]]["image"], r["image"]))
        m = edit_mask(r["parent_id"], r["height"], r["width"], "large")  # area = mask_area(m), from the row alone
        assert 0.30 < mask_area(m) <= 0.60
        assert np.abs(after - before)[~m].max() == 0 and np.abs(after - before)[m].mean() > 5
