"""Tiny offline generator zoo: save -> from_pretrained -> deterministic 64 px renders."""

import hashlib
import io
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # prove nothing reaches for the hub

import numpy as np
import pytest
import torch

diffusers = pytest.importorskip("diffusers")
from attribench.data.zoo import ZOO_FAMILIES, build_pipeline, save_zoo_model  # noqa: E402

# diffusers' schedulers hand torch tensors to numpy: numpy-2 DeprecationWarnings, harmless here.
pytestmark = pytest.mark.filterwarnings("ignore:__array:DeprecationWarning")

PROMPTS = ["a photo of a red cat", "a blue car on the street at night"]
UNCONDITIONAL = {"ddpm"}
SCHEDULERS = [
    "DDIMScheduler",
    "DDPMScheduler",
    "EulerDiscreteScheduler",
    "EulerAncestralDiscreteScheduler",
    "KDPM2DiscreteScheduler",
    "LMSDiscreteScheduler",
    "PNDMScheduler",
    "UniPCMultistepScheduler",
]


def render(pipe, family, prompts=PROMPTS, seeds=(0, 1)):
    pipe.set_progress_bar_config(disable=True)
    kw = dict(
        num_inference_steps=4,
        output_type="pil",
        generator=[torch.Generator().manual_seed(s) for s in seeds],
    )
    if family in UNCONDITIONAL:
        kw["batch_size"] = len(seeds)
    else:
        kw.update(prompt=list(prompts), guidance_scale=5.0, height=64, width=64)
    return pipe(**kw).images


def png(im) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


def tree_hashes(root):
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module", autouse=True)
def _one_thread(one_torch_thread):
    yield


@pytest.fixture(scope="module")
def zoo_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("zoo")
    for fam in ZOO_FAMILIES:
        save_zoo_model(fam, root / fam)
    return root


@pytest.fixture(scope="module")
def loaded(zoo_dir):
    """family -> pipeline loaded by its own class (cached across tests)."""
    cache = {}

    def get(fam):
        if fam not in cache:
            cls = type(build_pipeline(fam)).__name__
            cache[fam] = getattr(diffusers, cls).from_pretrained(zoo_dir / fam)
        return cache[fam]

    return get


def test_registry_has_the_six_families():
    assert {"sd", "sdxl", "sd3", "pixart", "ddpm", "lcm"} <= set(ZOO_FAMILIES)
    classes = {type(build_pipeline(f)).__name__ for f in ZOO_FAMILIES}
    assert len(classes) == len(ZOO_FAMILIES)  # genuinely different pipeline classes


@pytest.mark.parametrize("family", sorted(ZOO_FAMILIES))
def test_roundtrip_renders_deterministically(family, zoo_dir, loaded):
    a = loaded(family)
    b = diffusers.DiffusionPipeline.from_pretrained(zoo_dir / family)  # second, generic load
    assert type(a) is type(b) is type(build_pipeline(family))

    ims = render(a, family)
    assert len(ims) == 2
    for im in ims:
        assert im.size == (64, 64) and im.mode == "RGB"
        assert np.asarray(im, dtype=np.float32).std() > 5.0  # not a flat colour
    expected = [png(im) for im in ims]
    assert [png(im) for im in render(b, family)] == expected
    assert [png(im) for im in render(build_pipeline(family), family)] == expected  # == in-memory


@pytest.mark.parametrize("family", sorted(set(ZOO_FAMILIES) - UNCONDITIONAL))
def test_prompt_changes_image(family, loaded):
    pipe = loaded(family)
    cat, car = render(pipe, family, prompts=PROMPTS, seeds=(0, 0))  # same noise, different text
    assert png(cat) != png(car)


def test_save_is_deterministic_and_replaces_atomically(tmp_path):
    first = save_zoo_model("sd", tmp_path / "m", seed=3)
    before = tree_hashes(first)
    (first / "stale.txt").write_text("left over from an older build")
    assert save_zoo_model("sd", tmp_path / "m", seed=3) == tmp_path / "m"
    assert tree_hashes(tmp_path / "m") == before  # replaced, byte-identical, no stale file
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]  # no temp dirs left behind
    other = tree_hashes(save_zoo_model("sd", tmp_path / "s4", seed=4))
    assert other["unet/diffusion_pytorch_model.safetensors"] != before["unet/diffusion_pytorch_model.safetensors"]


def test_families_do_not_share_weights():
    sd, lcm = build_pipeline("sd"), build_pipeline("lcm")
    assert not torch.equal(sd.vae.decoder.conv_out.weight, lcm.vae.decoder.conv_out.weight)
    assert not torch.equal(sd.unet.conv_in.weight, lcm.unet.conv_in.weight)


def test_unknown_family_raises():
    with pytest.raises(ValueError, match="no-such-family") as err:
        build_pipeline("no-such-family")
    assert "sdxl" in str(err.value)
    with pytest.raises(ValueError, match="no-such-family"):
        save_zoo_model("no-such-family", "/nonexistent/never-written")


@pytest.mark.parametrize("name", SCHEDULERS)
def test_scheduler_swap_on_sd(name, loaded):
    pipe = loaded("sd")
    original = pipe.scheduler
    try:
        pipe.scheduler = getattr(diffusers, name).from_config(original.config)
        assert type(pipe.scheduler).__name__ == name
        (im,) = render(pipe, "sd", prompts=PROMPTS[:1], seeds=(0,))
        assert im.size == (64, 64)
        assert np.asarray(im, dtype=np.float32).std() > 5.0
    finally:
        pipe.scheduler = original  # the pipeline is shared across tests
