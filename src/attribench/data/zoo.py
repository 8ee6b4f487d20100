"""Tiny, offline, seeded stand-ins for the real text-to-image generator families.

Each family builds a *real* diffusers pipeline class (StableDiffusionPipeline,
StableDiffusionXLPipeline, StableDiffusion3Pipeline, PixArtAlphaPipeline,
DDPMPipeline, LatentConsistencyModelPipeline) whose components are tiny and
randomly initialised from seeds derived from ``(family, component, seed)``.
``save_zoo_model`` writes it with ``save_pretrained`` so the smoke benchmark
loads it exactly like a hub id: ``<PipelineClass>.from_pretrained(local_dir)``.
Nothing touches the network: tokenizers are built in memory from a small
deterministic vocabulary (bytes/characters + common English words), so prompts
tokenize into varied ids and really change the image.

Family notes:

* ``ddpm`` is a PIXEL-SPACE, UNCONDITIONAL pipeline (DDPMPipeline): it takes
  ``batch_size=`` instead of ``prompt=`` and ignores text; its UNet works
  directly at ``resolution`` px.
* ``pixart`` has ``transformer.sample_size == 32`` because PixArtAlphaPipeline's
  default ``use_resolution_binning=True`` only accepts 32/64/128; a 64x64
  request is therefore rendered at the 256 px bin and resized down to 64x64
  (pass ``use_resolution_binning=False`` to render natively at 64 px).
* ``sd3`` has all three text encoders (2x CLIP with projection + a tiny T5).
* ``lcm`` is an SD-like latent UNet with its own weights plus
  ``time_cond_proj_dim`` (the guidance embedding LatentConsistencyModelPipeline
  needs) and an LCMScheduler.

The same ``(family, seed)`` always yields byte-identical weights and renders.

Checkpoints (training stages, Xu et al. Table 3 "Checkpoints"): ``train_denoiser`` continues the
denoiser of a latent family (``sd``, ``sdxl``, ``lcm``) with the standard noise-prediction loss on
VAE latents of a small fixed image folder (with captions, 10% caption dropout as in SD training).
Every step draws its batch, flips, noise and timesteps from a generator seeded by the *global* step
index, and the AdamW state is saved beside the weights (``training_state.safetensors``), so a stage
resumed from the previous one is bit-identical to training the same number of steps in one go --
SD 1.1 -> 1.2 -> ... in miniature.
"""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:  # keep `import zoo` cheap; diffusers is imported lazily by the builders
    from diffusers import DiffusionPipeline

__all__ = ["ZOO_FAMILIES", "TRAINABLE", "build_pipeline", "save_zoo_model", "train_denoiser"]

# Small English word list: prompts made of these map to whole-word tokens.
_WORDS = (
    "a an the of in on at with and or by for to from under over near behind front top "
    "photo picture painting drawing sketch render portrait landscape closeup view style art "
    "cat dog bird horse fish cow lion tiger bear fox wolf owl rabbit "
    "man woman child person people face hand eye hair "
    "house city street road bridge tower castle room kitchen garden forest tree flower "
    "mountain river lake sea ocean beach sky cloud sun moon star night day rain snow "
    "car bus train boat ship plane bike "
    "red green blue yellow orange purple pink black white gray brown golden "
    "big small old new bright dark happy sad beautiful detailed realistic cinematic "
    "wooden metal glass stone water fire light shadow"
).split()
_MAX_TOKENS = 77  # CLIP context length, as in the real models
_T5_MAX_TOKENS = 120  # PixArt-alpha's max_sequence_length
_VOCAB = 1000  # text-encoder embedding rows (>= every tokenizer's vocab)


# ---------------------------------------------------------------- seeding ----


def _derive(seed: int, family: str, part: str) -> int:
    """Stable per-component seed, so families/components never share weights."""
    digest = hashlib.sha256(f"{family}/{part}/{seed}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & 0x7FFF_FFFF_FFFF_FFFF


@contextmanager
def _seeded(seed: int, family: str, part: str):
    # fork_rng: building a zoo model must not perturb the caller's global RNG.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(_derive(seed, family, part))
        yield


# ------------------------------------------------------------- tokenizers ----


def _byte_chars() -> list[str]:
    """GPT-2/CLIP byte->unicode table (what the ByteLevel pre-tokenizer emits)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    bs += list(range(ord("®"), ord("ÿ") + 1))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return [chr(c) for _, c in sorted(zip(bs, cs))]


def _clip_tokenizer():
    """Byte-level BPE: all bytes (+ end-of-word forms) and merges for `_WORDS`."""
    from transformers import CLIPTokenizer

    chars = _byte_chars()
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for tok in chars + [c + "</w>" for c in chars]:
        vocab[tok] = len(vocab)
    ranks: dict[tuple[str, str], int] = {}  # merge -> priority (insertion order)
    for word in _WORDS:
        # "Train" like BPE does: append merges until the *current* merge table
        # turns this word into one token. Appended merges rank last, so words
        # already handled keep tokenizing the same way.
        pieces = _bpe(list(word[:-1]) + [word[-1] + "</w>"], ranks)
        while len(pieces) > 1:
            ranks[(pieces[0], pieces[1])] = len(ranks)
            vocab.setdefault(pieces[0] + pieces[1], len(vocab))
            pieces = _bpe(pieces, ranks)
    assert len(vocab) <= _VOCAB
    return CLIPTokenizer(vocab=vocab, merges=list(ranks), model_max_length=_MAX_TOKENS)


def _bpe(syms: list[str], ranks: dict[tuple[str, str], int]) -> list[str]:
    """Apply BPE merges (lowest rank first) until none applies."""
    while len(syms) > 1:
        rank, i = min((ranks.get(pair, len(ranks)), i) for i, pair in enumerate(zip(syms, syms[1:])))
        if rank == len(ranks):
            break
        syms = syms[:i] + [syms[i] + syms[i + 1]] + syms[i + 2 :]
    return syms


def _t5_tokenizer():
    """SentencePiece-style Unigram: whole words beat their character spellings."""
    from transformers import T5Tokenizer

    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", -2.0)]
    pieces += [("▁" + w, -5.0) for w in _WORDS]
    alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.,;:!?'\"-()/&"
    pieces += [(c, -8.0) for c in alphabet]
    assert len(pieces) <= _VOCAB
    return T5Tokenizer(vocab=pieces, extra_ids=0, model_max_length=_T5_MAX_TOKENS)


# ------------------------------------------------------------- components ----


def _clip_text(seed: int, family: str, part: str, with_projection: bool = False):
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    cfg = CLIPTextConfig(
        vocab_size=_VOCAB,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=_MAX_TOKENS,
        projection_dim=32,
        hidden_act="gelu",
        bos_token_id=0,
        eos_token_id=1,  # != 2, so pooling looks up the real EOS position
        pad_token_id=1,
    )
    cls = CLIPTextModelWithProjection if with_projection else CLIPTextModel
    with _seeded(seed, family, part):
        return cls(cfg).eval()


def _t5_text(seed: int, family: str, part: str = "text_encoder", d_model: int = 32):
    from transformers import T5Config, T5EncoderModel

    cfg = T5Config(
        vocab_size=_VOCAB,
        d_model=d_model,
        d_kv=8,
        d_ff=64,
        num_layers=2,
        num_heads=4,
        relative_attention_num_buckets=8,
        pad_token_id=0,
        eos_token_id=1,
        decoder_start_token_id=0,
    )
    with _seeded(seed, family, part):
        return T5EncoderModel(cfg).eval()


def _vae(seed: int, family: str, resolution: int, latent_channels: int = 4, **extra):
    """4-block (8x down) AutoencoderKL: a 64 px image becomes 8x8 latents."""
    from diffusers import AutoencoderKL

    with _seeded(seed, family, "vae"):
        return AutoencoderKL(
            in_channels=3,
            out_channels=3,
            down_block_types=("DownEncoderBlock2D",) * 4,
            up_block_types=("UpDecoderBlock2D",) * 4,
            block_out_channels=(8, 16, 16, 32),
            layers_per_block=1,
            latent_channels=latent_channels,
            norm_num_groups=8,
            sample_size=resolution,
            **extra,
        ).eval()


def _cond_unet(seed: int, family: str, resolution: int, **extra):
    from diffusers import UNet2DConditionModel

    kw = dict(
        sample_size=resolution // 8,
        in_channels=4,
        out_channels=4,
        block_out_channels=(32, 64),
        layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=32,
        attention_head_dim=2,
        norm_num_groups=16,
    )
    with _seeded(seed, family, "unet"):
        return UNet2DConditionModel(**(kw | extra)).eval()


_SD_BETAS = dict(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", num_train_timesteps=1000)


# --------------------------------------------------------------- families ----


def _build_sd(seed: int = 0, resolution: int = 64):
    from diffusers import PNDMScheduler, StableDiffusionPipeline

    return StableDiffusionPipeline(
        vae=_vae(seed, "sd", resolution, scaling_factor=0.18215),
        text_encoder=_clip_text(seed, "sd", "text_encoder"),
        tokenizer=_clip_tokenizer(),
        unet=_cond_unet(seed, "sd", resolution),
        scheduler=PNDMScheduler(
            **_SD_BETAS, skip_prk_steps=True, set_alpha_to_one=False, steps_offset=1
        ),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


def _build_sdxl(seed: int = 0, resolution: int = 64):
    from diffusers import EulerDiscreteScheduler, StableDiffusionXLPipeline

    te1 = _clip_text(seed, "sdxl", "text_encoder")
    te2 = _clip_text(seed, "sdxl", "text_encoder_2", with_projection=True)
    time_dim = 8
    unet = _cond_unet(
        seed,
        "sdxl",
        resolution,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),  # SDXL: no attention at full res
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4),
        transformer_layers_per_block=(1, 2),
        use_linear_projection=True,
        cross_attention_dim=te1.config.hidden_size + te2.config.hidden_size,  # both encoders concatenated
        addition_embed_type="text_time",
        addition_time_embed_dim=time_dim,
        # pooled text embeds + 6 micro-conditions (orig size, crop, target size), each time-embedded
        projection_class_embeddings_input_dim=te2.config.projection_dim + 6 * time_dim,
    )
    return StableDiffusionXLPipeline(
        vae=_vae(seed, "sdxl", resolution, scaling_factor=0.13025),
        text_encoder=te1,
        text_encoder_2=te2,
        tokenizer=_clip_tokenizer(),
        tokenizer_2=_clip_tokenizer(),
        unet=unet,
        scheduler=EulerDiscreteScheduler(**_SD_BETAS, timestep_spacing="leading", steps_offset=1),
        add_watermarker=False,
    )


def _build_sd3(seed: int = 0, resolution: int = 64):
    from diffusers import FlowMatchEulerDiscreteScheduler, SD3Transformer2DModel, StableDiffusion3Pipeline

    te1 = _clip_text(seed, "sd3", "text_encoder", with_projection=True)
    te2 = _clip_text(seed, "sd3", "text_encoder_2", with_projection=True)
    # CLIP embeds (32+32 wide) are zero-padded to the T5 width, so T5 must be >= 64 wide.
    te3 = _t5_text(seed, "sd3", "text_encoder_3", d_model=64)
    with _seeded(seed, "sd3", "transformer"):
        transformer = SD3Transformer2DModel(
            sample_size=resolution // 8,
            patch_size=2,
            in_channels=16,
            out_channels=16,
            num_layers=2,
            attention_head_dim=8,
            num_attention_heads=4,
            joint_attention_dim=te3.config.d_model,
            caption_projection_dim=32,  # == heads * head_dim
            pooled_projection_dim=te1.config.projection_dim + te2.config.projection_dim,
            pos_embed_max_size=max(32, resolution // 16),  # small table; covers `resolution`
        ).eval()
    return StableDiffusion3Pipeline(
        transformer=transformer,
        scheduler=FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=3.0),
        vae=_vae(seed, "sd3", resolution, latent_channels=16, scaling_factor=1.5305, shift_factor=0.0609),
        text_encoder=te1,
        tokenizer=_clip_tokenizer(),
        text_encoder_2=te2,
        tokenizer_2=_clip_tokenizer(),
        # A real (tiny) T5: with None, from_pretrained(dir) refuses to load without
        # an explicit text_encoder_3=None, which hub-style loading never passes.
        text_encoder_3=te3,
        tokenizer_3=_t5_tokenizer(),
    )


def _build_pixart(seed: int = 0, resolution: int = 64):
    from diffusers import DPMSolverMultistepScheduler, PixArtAlphaPipeline, PixArtTransformer2DModel

    text_encoder = _t5_text(seed, "pixart")
    with _seeded(seed, "pixart", "transformer"):
        transformer = PixArtTransformer2DModel(
            sample_size=32,  # the smallest size PixArt's resolution binning accepts (256 px bins)
            patch_size=2,
            in_channels=4,
            out_channels=8,  # learned sigma, like PixArt-alpha
            num_layers=2,
            attention_head_dim=8,
            num_attention_heads=4,
            cross_attention_dim=32,
            caption_channels=text_encoder.config.d_model,
            attention_bias=True,
            activation_fn="gelu-approximate",
            num_embeds_ada_norm=1000,
            norm_type="ada_norm_single",
            norm_elementwise_affine=False,
            norm_eps=1e-6,
        ).eval()
    return PixArtAlphaPipeline(
        tokenizer=_t5_tokenizer(),
        text_encoder=text_encoder,
        vae=_vae(seed, "pixart", resolution, scaling_factor=0.18215),
        transformer=transformer,
        scheduler=DPMSolverMultistepScheduler(
            beta_start=0.0001, beta_end=0.02, beta_schedule="linear", num_train_timesteps=1000
        ),
    )


def _build_ddpm(seed: int = 0, resolution: int = 64):
    from diffusers import DDPMPipeline, DDPMScheduler, UNet2DModel

    with _seeded(seed, "ddpm", "unet"):
        unet = UNet2DModel(
            sample_size=resolution,  # pixel space: no VAE
            in_channels=3,
            out_channels=3,
            # thin at full res (pixel convs dominate CPU time); attention only at 1/4 res
            block_out_channels=(8, 16, 32),
            layers_per_block=1,
            down_block_types=("DownBlock2D", "DownBlock2D", "AttnDownBlock2D"),
            up_block_types=("AttnUpBlock2D", "UpBlock2D", "UpBlock2D"),
            attention_head_dim=8,
            norm_num_groups=8,
        ).eval()
    return DDPMPipeline(unet=unet, scheduler=DDPMScheduler(num_train_timesteps=1000))


def _build_lcm(seed: int = 0, resolution: int = 64):
    from diffusers import LatentConsistencyModelPipeline, LCMScheduler

    return LatentConsistencyModelPipeline(
        vae=_vae(seed, "lcm", resolution, scaling_factor=0.18215),
        text_encoder=_clip_text(seed, "lcm", "text_encoder"),
        tokenizer=_clip_tokenizer(),
        unet=_cond_unet(seed, "lcm", resolution, time_cond_proj_dim=32),  # guidance-scale embedding
        scheduler=LCMScheduler(
            **_SD_BETAS, timestep_spacing="leading", steps_offset=1, set_alpha_to_one=True, clip_sample=False
        ),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


ZOO_FAMILIES: dict[str, Callable[..., DiffusionPipeline]] = {
    "sd": _build_sd,
    "sdxl": _build_sdxl,
    "sd3": _build_sd3,
    "pixart": _build_pixart,
    "ddpm": _build_ddpm,
    "lcm": _build_lcm,
}


# -------------------------------------------------------------------- API ----


def build_pipeline(family: str, seed: int = 0, resolution: int = 64):
    """Build the in-memory tiny pipeline for ``family`` (see ``ZOO_FAMILIES``)."""
    try:
        builder = ZOO_FAMILIES[family]
    except KeyError:
        raise ValueError(f"unknown zoo family {family!r}; known: {sorted(ZOO_FAMILIES)}") from None
    if resolution % 16:  # 8x VAE and patch size 2
        raise ValueError(f"resolution must be a multiple of 16, got {resolution}")
    return builder(seed=seed, resolution=resolution)


def save_zoo_model(family: str, out_dir: str | Path, seed: int = 0, resolution: int = 64, train_steps: int = 0,
                   training: dict | None = None, resume_from: str | Path | None = None) -> Path:
    """Build ``family`` and ``save_pretrained`` it into ``out_dir`` atomically.

    With ``train_steps``: the denoiser trained for that many steps in total (``training``: images
    folder, lr, batch_size, caption_dropout), continuing the stage saved in ``resume_from``.

    Readers never see a half-written model: we write into a temp dir beside
    ``out_dir`` and rename it into place. An existing ``out_dir`` is replaced
    (moved aside first, since rename cannot overwrite a non-empty dir).
    """
    out_dir = Path(out_dir)
    pipe = build_pipeline(family, seed=seed, resolution=resolution)
    state = None
    if train_steps:
        if not training or "images" not in training:
            raise ValueError("a trained zoo stage needs training.images (a folder of images)")
        pipe, state, record = _train_zoo_stage(pipe, family, seed, resolution, train_steps, training, resume_from)
    elif resume_from is not None:
        raise ValueError("resume_from without train_steps")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    trash: list[Path] = []
    try:
        pipe.save_pretrained(tmp)
        if state is not None:
            import json

            _save_optimizer_state(state, tmp / _STATE_FILE)
            (tmp / _LOG_FILE).write_text(json.dumps(record, indent=1) + "\n")
        os.chmod(tmp, 0o755)  # mkdtemp makes it 0700
        # Loop: a concurrent writer may put its own copy in place between our two renames.
        for _ in range(10):
            try:
                os.replace(tmp, out_dir)
                break
            except OSError as err:
                if err.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                    raise
            trash.append(tmp.with_name(f".{out_dir.name}.old-{uuid.uuid4().hex}"))
            try:
                os.replace(out_dir, trash[-1])
            except FileNotFoundError:
                pass
        else:
            raise OSError(errno.EEXIST, "could not replace (concurrent writers?)", str(out_dir))
    finally:
        for d in (tmp, *trash):
            shutil.rmtree(d, ignore_errors=True)  # tmp is gone already on success
    return out_dir


# ------------------------------------------------------- training stages ----

TRAINABLE = {"sd", "sdxl", "lcm"}  # latent UNet families with a text encoder the loop below feeds
_STATE_FILE = "training_state.safetensors"
_LOG_FILE = "training.json"


def _training_images(folder: str | Path, resolution: int) -> tuple[torch.Tensor, list[str]]:
    """Every image of the folder (sorted), short side resized + centre crop, in [-1, 1]; captions from
    captions.csv (file,caption) when present."""
    import csv

    import numpy as np
    from PIL import Image

    folder = Path(folder)
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in {".jpg", ".jpeg", ".png", ".webp"})
    if not files:
        raise FileNotFoundError(f"no training images in {folder}")
    captions: dict[str, str] = {}
    if (folder / "captions.csv").exists():
        with open(folder / "captions.csv", newline="") as fh:
            captions = {r["file"]: r["caption"] for r in csv.DictReader(fh)}
    arrays = []
    for p in files:
        im = Image.open(p).convert("RGB")
        scale = resolution / min(im.size)
        im = im.resize((max(resolution, round(im.width * scale)), max(resolution, round(im.height * scale))), Image.BICUBIC)
        left, top = (im.width - resolution) // 2, (im.height - resolution) // 2
        arrays.append(np.asarray(im.crop((left, top, left + resolution, top + resolution)), dtype=np.float32))
    x = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2) / 127.5 - 1.0
    return x, [captions.get(p.name, "") for p in files]


def _text_embeddings(pipe, captions: list[str]):
    """(per-token embeddings, extra UNet kwargs) the family's pipeline would feed its UNet."""
    if hasattr(pipe, "text_encoder_2"):  # SDXL: both encoders concatenated + pooled + micro-conditions
        emb, _, pooled, _ = pipe.encode_prompt(captions, device="cpu", num_images_per_prompt=1, do_classifier_free_guidance=False)
        size = pipe.unet.config.sample_size * pipe.vae_scale_factor
        time_ids = torch.tensor([[size, size, 0, 0, size, size]], dtype=emb.dtype).repeat(len(captions), 1)
        return emb, {"text_embeds": pooled, "time_ids": time_ids}
    emb, _ = pipe.encode_prompt(captions, device="cpu", num_images_per_prompt=1, do_classifier_free_guidance=False)
    return emb, {}


def _unet_kwargs(pipe, extra: dict, idx: torch.Tensor) -> dict:
    kw = {}
    if extra:
        kw["added_cond_kwargs"] = {k: v[idx] for k, v in extra.items()}
    if getattr(pipe.unet.config, "time_cond_proj_dim", None):  # LCM: guidance embedding (w = 1 during training)
        kw["timestep_cond"] = torch.zeros(len(idx), pipe.unet.config.time_cond_proj_dim)
    return kw


def train_denoiser(pipe, images: str | Path, start: int, stop: int, *, seed: int, family: str, lr: float = 1e-3,
                   batch_size: int = 16, caption_dropout: float = 0.1, optimizer_state: dict | None = None):
    """Train ``pipe.unet`` from global step ``start`` to ``stop``; returns (optimizer state, losses)."""
    from diffusers import DDPMScheduler

    if family not in TRAINABLE:
        raise ValueError(f"zoo family {family!r} has no training loop (trainable: {sorted(TRAINABLE)})")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # same reduction order on any machine: bit-identical stages
    try:
        resolution = pipe.unet.config.sample_size * pipe.vae_scale_factor
        x, captions = _training_images(images, resolution)
        x = torch.cat([x, x.flip(-1)])  # horizontal flips as fixed extra samples
        captions = captions + captions
        with torch.no_grad():
            dist = pipe.vae.encode(x).latent_dist
            mean, std = dist.mean, dist.std
            emb, extra = _text_embeddings(pipe, captions)
            empty, empty_extra = _text_embeddings(pipe, [""])
        noise_sched = DDPMScheduler.from_config(pipe.scheduler.config)  # the pipeline's training betas
        unet = pipe.unet.train()
        params = [p for p in unet.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=lr, weight_decay=1e-2, foreach=False)
        if optimizer_state is not None:  # per-parameter AdamW moments + step of the previous stage
            opt.load_state_dict({**opt.state_dict(), "state": optimizer_state})
        losses = []
        for step in range(start, stop):
            g = torch.Generator().manual_seed(_derive(seed, family, f"train/{step}"))
            idx = torch.randint(0, len(mean), (batch_size,), generator=g)
            latents = (mean[idx] + std[idx] * torch.randn(mean[idx].shape, generator=g)) * pipe.vae.config.scaling_factor
            noise = torch.randn(latents.shape, generator=g)
            t = torch.randint(0, noise_sched.config.num_train_timesteps, (batch_size,), generator=g)
            drop = torch.rand(batch_size, generator=g) < caption_dropout
            cond = torch.where(drop[:, None, None], empty.expand_as(emb[idx]), emb[idx])
            kw = _unet_kwargs(pipe, extra, idx)
            if extra:
                kw["added_cond_kwargs"] = {k: torch.where(drop[:, None], empty_extra[k].expand_as(v), v)
                                           for k, v in kw["added_cond_kwargs"].items()}
            pred = unet(noise_sched.add_noise(latents, noise, t), t, encoder_hidden_states=cond, **kw).sample
            loss = torch.nn.functional.mse_loss(pred, noise)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(loss.item())
        unet.eval()
        return opt.state_dict()["state"], losses
    finally:
        torch.set_num_threads(threads)


def _save_optimizer_state(state: dict, path: Path) -> None:
    from safetensors.torch import save_file

    flat = {f"{i}.{k}": v.detach().reshape(-1) if v.dim() == 0 else v.detach().contiguous()
            for i, s in state.items() for k, v in s.items()}
    save_file(flat, str(path))


def _load_optimizer_state(path: Path) -> dict:
    from safetensors.torch import load_file

    flat = load_file(str(path))
    state: dict[int, dict] = {}
    for key, v in flat.items():
        i, k = key.split(".", 1)
        state.setdefault(int(i), {})[k] = v.reshape(()) if k == "step" else v
    return state


def _training_record(family: str, seed: int, resolution: int, training: dict) -> dict:
    return {"family": family, "seed": seed, "resolution": resolution, **{k: v for k, v in training.items()}}


def _train_zoo_stage(pipe, family: str, seed: int, resolution: int, steps: int, training: dict, resume_from):
    """Load the previous stage (weights + optimizer state) when resuming, then train up to ``steps``."""
    import json

    record = _training_record(family, seed, resolution, training)
    start, state = 0, None
    if resume_from is not None:
        resume_from = Path(resume_from)
        log = json.loads((resume_from / _LOG_FILE).read_text())
        if log["config"] != record:
            raise ValueError(f"{resume_from} was trained with {log['config']}, not {record}: cannot continue it")
        start = log["steps"]
        if start > steps:
            raise ValueError(f"{resume_from} is at step {start}, past the {steps} asked for")
        pipe = type(pipe).from_pretrained(resume_from)
    opts = {k: training[k] for k in ("lr", "batch_size", "caption_dropout") if k in training}
    if resume_from is not None:
        state = _load_optimizer_state(resume_from / _STATE_FILE)
    state, losses = train_denoiser(pipe, training["images"], start, steps, seed=seed, family=family, optimizer_state=state, **opts)
    history = (json.loads((Path(resume_from) / _LOG_FILE).read_text())["losses"] if resume_from is not None else []) + losses
    return pipe, state, {"config": record, "steps": steps, "resumed_from_step": start, "losses": history}
