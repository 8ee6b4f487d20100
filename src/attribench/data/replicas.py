"""Hub-shaped replicas: for a hub id the paper profile loads, a tiny random-weight pipeline of the same
class and components, saved the way the hub serves it, into a Hugging Face hub cache at the pinned
revision (`models--org--name/snapshots/<revision>/`, and no `refs/main`: fetching a pinned commit writes
none, so a load that does not pass the pin fails here as it would for real). `from_pretrained(id, revision=...,
cache_dir=...)` then resolves it offline exactly as it would resolve the fetched repo, so a rehearsal
exercises the paper's own ids, classes, schedulers and call settings.

Built from the smoke zoo's tiny components (attribench.data.zoo). Repos that ship a safety checker
(SD 1.x, LCM Dreamshaper) get a tiny one too, so "safety checker off" is exercised, not assumed.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

from attribench.core.hp_studies import all_study_generators
from attribench.core.hub import is_hub_id, referenced, revision
from attribench.data import zoo as _zoo
from attribench.data.zoo import build_pipeline
from attribench.data.real_photos import sample_photo_paths

# pipeline class -> zoo family; the replica is that family's tiny pipeline (same class and components).
FAMILY_OF = {
    "StableDiffusionPipeline": "sd",
    "StableDiffusionXLPipeline": "sdxl",
    "LatentConsistencyModelPipeline": "lcm",
}
# Repos that ship a safety checker (model_index.json lists one); others have none.
WITH_SAFETY_CHECKER = ("CompVis/stable-diffusion-v1-", "stable-diffusion-v1-5/", "SimianLuo/LCM_Dreamshaper")


def snapshot_dir(cache: str | Path, model_id: str, revision: str) -> Path:
    return Path(cache) / f"models--{model_id.replace('/', '--')}" / "snapshots" / revision


def _tiny_safety_checker():
    from diffusers.pipelines.stable_diffusion.safety_checker import StableDiffusionSafetyChecker as Checker
    from transformers import CLIPConfig, CLIPImageProcessor

    cfg = CLIPConfig(
        text_config={"hidden_size": 16, "intermediate_size": 32, "num_attention_heads": 2, "num_hidden_layers": 1,
                     "vocab_size": 64},
        vision_config={"hidden_size": 16, "intermediate_size": 32, "num_attention_heads": 2, "num_hidden_layers": 1,
                       "image_size": 32, "patch_size": 8},
        projection_dim=16,
    )
    return Checker(cfg), CLIPImageProcessor(crop_size=32, size={"shortest_edge": 32})


# ------------------------------------------------- builders beyond the zoo families ----
# Tiny configs after diffusers' own fast tests (get_dummy_components), tokenizers built locally.


def _seed(seed: int, part: str):
    return _zoo._seeded(seed, "replica", part)


def _clip_vision(seed: int, image_size: int = 32, projection_dim: int = 32):
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    cfg = CLIPVisionConfig(hidden_size=32, image_size=image_size, projection_dim=projection_dim, intermediate_size=37,
                           num_attention_heads=4, num_channels=3, num_hidden_layers=2, patch_size=8)
    with _seed(seed, "image_encoder"):
        return CLIPVisionModelWithProjection(cfg).eval()


def _clip_processor(size: int = 32):
    from transformers import CLIPImageProcessor

    return CLIPImageProcessor(crop_size=size, size={"shortest_edge": size})


def _cascade_prior(seed: int):
    from diffusers import DDPMWuerstchenScheduler, StableCascadePriorPipeline, StableCascadeUNet

    with _seed(seed, "prior"):
        prior = StableCascadeUNet(
            in_channels=16, out_channels=16, conditioning_dim=32, block_out_channels=(32, 32),
            num_attention_heads=(2, 2), down_num_layers_per_block=(1, 1), up_num_layers_per_block=(1, 1),
            clip_text_in_channels=32, clip_text_pooled_in_channels=32, clip_image_in_channels=32,
            switch_level=(False,), dropout=(0.0, 0.0),
        ).eval()
    return StableCascadePriorPipeline(
        tokenizer=_zoo._clip_tokenizer(), text_encoder=_zoo._clip_text(seed, "cascade_prior", "text_encoder", True),
        prior=prior, scheduler=DDPMWuerstchenScheduler(), image_encoder=_clip_vision(seed),
        feature_extractor=_clip_processor(),
    )


def _cascade_decoder(seed: int):
    from diffusers import DDPMWuerstchenScheduler, StableCascadeDecoderPipeline, StableCascadeUNet
    from diffusers.pipelines.deprecated.wuerstchen.modeling_paella_vq_model import PaellaVQModel

    block = ("SDCascadeResBlock", "SDCascadeTimestepBlock")
    with _seed(seed, "decoder"):
        decoder = StableCascadeUNet(
            in_channels=4, out_channels=4, conditioning_dim=32, block_out_channels=(16, 32),
            num_attention_heads=(0, 2), down_num_layers_per_block=(1, 1), up_num_layers_per_block=(1, 1),
            down_blocks_repeat_mappers=(1, 1), up_blocks_repeat_mappers=(2, 2),
            block_types_per_layer=(block, (*block, "SDCascadeAttnBlock")), clip_text_pooled_in_channels=32,
            effnet_in_channels=16, pixel_mapper_in_channels=3, dropout=(0.0, 0.0), timestep_conditioning_type=("sca",),
            self_attn=True, switch_level=None,
        ).eval()
    with _seed(seed, "vqgan"):
        vqgan = PaellaVQModel(bottleneck_blocks=1, num_vq_embeddings=2, embed_dim=8, latent_channels=4).eval()
    return StableCascadeDecoderPipeline(
        decoder=decoder, tokenizer=_zoo._clip_tokenizer(),
        text_encoder=_zoo._clip_text(seed, "cascade_decoder", "text_encoder", True),
        scheduler=DDPMWuerstchenScheduler(), vqgan=vqgan,
    )


def _xlm_tokenizer():
    from transformers import XLMRobertaTokenizer

    pieces = [("<s>", 0.0), ("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", -2.0)]
    pieces += [("▁" + w, -5.0) for w in _zoo._WORDS]
    pieces += [(c, -8.0) for c in "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.,;:!?'\"-()/&"]
    return XLMRobertaTokenizer(vocab=pieces + [("<mask>", 0.0)], model_max_length=77)


def _kandinsky_prior(seed: int):
    from diffusers import KandinskyPriorPipeline, PriorTransformer, UnCLIPScheduler

    with _seed(seed, "prior"):
        prior = PriorTransformer(num_attention_heads=2, attention_head_dim=12, embedding_dim=32, num_layers=1).eval()
    return KandinskyPriorPipeline(
        prior=prior, image_encoder=_clip_vision(seed, image_size=224 // 7, projection_dim=32),
        text_encoder=_zoo._clip_text(seed, "kandinsky_prior", "text_encoder", True), tokenizer=_zoo._clip_tokenizer(),
        scheduler=UnCLIPScheduler(variance_type="fixed_small_log", prediction_type="sample", num_train_timesteps=1000,
                                  clip_sample=True, clip_sample_range=10.0),
        image_processor=_clip_processor(),
    )


def _kandinsky_decoder(seed: int):
    from diffusers import DDIMScheduler, KandinskyPipeline, UNet2DConditionModel, VQModel
    from diffusers.pipelines.kandinsky.text_encoder import MCLIPConfig, MultilingualCLIP

    tok = _xlm_tokenizer()
    with _seed(seed, "text_encoder"):
        text_encoder = MultilingualCLIP(MCLIPConfig(
            numDims=32, transformerDimensions=32, hidden_size=32, intermediate_size=37, num_attention_heads=4,
            num_hidden_layers=2, vocab_size=len(tok), max_position_embeddings=80, pad_token_id=tok.pad_token_id,
        )).eval()
    with _seed(seed, "unet"):
        unet = UNet2DConditionModel(
            in_channels=4, out_channels=8, addition_embed_type="text_image",
            down_block_types=("ResnetDownsampleBlock2D", "SimpleCrossAttnDownBlock2D"),
            up_block_types=("SimpleCrossAttnUpBlock2D", "ResnetUpsampleBlock2D"),
            mid_block_type="UNetMidBlock2DSimpleCrossAttn", block_out_channels=(32, 64), layers_per_block=1,
            encoder_hid_dim=32, encoder_hid_dim_type="text_image_proj", cross_attention_dim=32, attention_head_dim=4,
            resnet_time_scale_shift="scale_shift", class_embed_type=None,
        ).eval()
    with _seed(seed, "movq"):
        movq = VQModel(  # 8x down like the real MoVQ (4 blocks), so latents are 1/8 of the image side
            block_out_channels=[32, 32, 32, 64], down_block_types=["DownEncoderBlock2D"] * 3 + ["AttnDownEncoderBlock2D"],
            in_channels=3, latent_channels=4, layers_per_block=1, norm_num_groups=8, norm_type="spatial",
            num_vq_embeddings=12, out_channels=3, up_block_types=["AttnUpDecoderBlock2D"] + ["UpDecoderBlock2D"] * 3,
            vq_embed_dim=4,
        ).eval()
    sched = DDIMScheduler(num_train_timesteps=1000, beta_schedule="linear", beta_start=0.00085, beta_end=0.012,
                          clip_sample=False, set_alpha_to_one=False, steps_offset=1, prediction_type="epsilon",
                          thresholding=False)
    return KandinskyPipeline(text_encoder=text_encoder, tokenizer=tok, unet=unet, scheduler=sched, movq=movq)


def _sdxl_inpaint(seed: int):
    from diffusers import StableDiffusionXLInpaintPipeline

    base = build_pipeline("sdxl", seed=seed, resolution=64)
    cfg = dict(base.unet.config)
    cfg["in_channels"] = 9  # the inpainting UNet: latents + mask + masked-image latents
    with _seed(seed, "inpaint_unet"):
        unet = type(base.unet).from_config(cfg).eval()
    parts = {k: v for k, v in base.components.items() if k != "unet"}
    return StableDiffusionXLInpaintPipeline(**{**parts, "unet": unet, "image_encoder": None, "feature_extractor": None,
                                               "add_watermarker": False})


def _marigold(seed: int, kind: str):
    import diffusers
    from diffusers import DDIMScheduler

    base = build_pipeline("sd", seed=seed, resolution=64)
    targets = 3 if kind == "MarigoldIntrinsicsPipeline" else 1  # lighting model: albedo, shading, residual
    cfg = dict(base.unet.config)
    cfg.update(in_channels=4 + 4 * targets, out_channels=4 * targets)
    with _seed(seed, "marigold_unet"):
        unet = type(base.unet).from_config(cfg).eval()
    sched = DDIMScheduler(num_train_timesteps=1000, beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
                          clip_sample=False, set_alpha_to_one=False, steps_offset=1, prediction_type="v_prediction",
                          timestep_spacing="trailing")
    kwargs = dict(unet=unet, vae=base.vae, scheduler=sched, text_encoder=base.text_encoder, tokenizer=base.tokenizer,
                  default_denoising_steps=1, default_processing_resolution=64)
    if kind == "MarigoldIntrinsicsPipeline":
        kwargs.update(prediction_type="intrinsics", target_properties={
            "target_names": ["albedo", "shading", "residual"],
            "albedo": {"prediction_space": "srgb", "up_to_scale": False},
            "shading": {"prediction_space": "linear", "up_to_scale": True},
            "residual": {"prediction_space": "linear", "up_to_scale": True},
        })
    else:
        kwargs.update(prediction_type="normals", use_full_z_range=True)
    return getattr(diffusers, kind)(**kwargs)


def _depth_anything(seed: int):
    from transformers import DepthAnythingConfig, DepthAnythingForDepthEstimation, DPTImageProcessor
    from transformers import Dinov2Config

    backbone = Dinov2Config(hidden_size=32, num_hidden_layers=4, num_attention_heads=4, intermediate_size=37,
                            image_size=56, patch_size=14, out_features=["stage1", "stage2", "stage3", "stage4"],
                            reshape_hidden_states=False)
    cfg = DepthAnythingConfig(backbone_config=backbone, reassemble_hidden_size=32, patch_size=14,
                              neck_hidden_sizes=[16, 32, 32, 32], fusion_hidden_size=16, head_hidden_size=16)
    with _seed(seed, "depth"):
        model = DepthAnythingForDepthEstimation(cfg).eval()
    proc = DPTImageProcessor(do_resize=True, size={"height": 56, "width": 56}, keep_aspect_ratio=True,
                             ensure_multiple_of=14, resample=3, do_pad=False,
                             image_mean=[0.485, 0.456, 0.406], image_std=[0.229, 0.224, 0.225])
    return model, proc


def _clip_text_encoder(seed: int):
    return _zoo._clip_text(seed, "clip_text", "text_encoder", True), _zoo._clip_tokenizer()


# Two-stage pipelines: the decoder repo's model card names its prior repo (`prior: [<id>]`), which
# `<Combined>.from_pretrained` follows. Both real repos are `<decoder id>-prior`.
DECODER_OF = {"StableCascadeCombinedPipeline": _cascade_decoder, "KandinskyCombinedPipeline": _kandinsky_decoder}
PRIOR_OF = {"StableCascadeCombinedPipeline": _cascade_prior, "KandinskyCombinedPipeline": _kandinsky_prior}
# Hub ids loaded by transforms and text features (not generators): id -> what the real repo holds.
OTHER_KINDS = {
    "diffusers/stable-diffusion-xl-1.0-inpainting-0.1": "StableDiffusionXLInpaintPipeline",
    "prs-eth/marigold-normals-v1-1": "MarigoldNormalsPipeline",
    "prs-eth/marigold-iid-lighting-v1-1": "MarigoldIntrinsicsPipeline",
    "LiheYoung/depth-anything-small-hf": "DepthAnythingForDepthEstimation",
    "openai/clip-vit-base-patch16": "CLIPModel",
}


REPLICA_MARK = ".replica"  # in every folder a replica writes outside the hub cache (dotfiles are not imported)


def _fresh(cache, model_id, revision) -> Path:
    snap = snapshot_dir(cache, model_id, revision)
    if snap.exists():
        if not (snap / REPLICA_MARK).is_file():
            raise FileExistsError(f"{snap} is a fetched snapshot of {model_id} (no {REPLICA_MARK}); not overwriting")
        shutil.rmtree(snap)
    snap.mkdir(parents=True)
    (snap / REPLICA_MARK).write_text(f"random-weight replica of {model_id}, for rehearsals only\n")
    return snap


def _save(obj, snap: Path, variant: str | None) -> None:
    if hasattr(obj, "components"):  # a diffusers pipeline
        obj.save_pretrained(snap, variant=variant)
    else:
        for part in obj if isinstance(obj, tuple) else (obj,):
            part.save_pretrained(snap)


def _tiny(kind: str, seed: int, resolution: int):
    if kind in FAMILY_OF:
        return build_pipeline(FAMILY_OF[kind], seed=seed, resolution=resolution)
    if kind == "StableDiffusionXLInpaintPipeline":
        return _sdxl_inpaint(seed)
    if kind.startswith("Marigold"):
        return _marigold(seed, kind)
    if kind == "DepthAnythingForDepthEstimation":
        return _depth_anything(seed)
    if kind == "CLIPModel":
        return _clip_model(seed)
    raise NotImplementedError(f"no replica builder for {kind}; replicas exist for "
                              f"{sorted([*FAMILY_OF, *DECODER_OF, *set(OTHER_KINDS.values())])}")


def _clip_model(seed: int):
    """openai/clip-vit-base-patch16 holds a whole CLIPModel + tokenizer; the text features load its text half."""
    from transformers import CLIPConfig, CLIPModel

    cfg = CLIPConfig(
        text_config={"hidden_size": 32, "intermediate_size": 64, "num_attention_heads": 4, "num_hidden_layers": 2,
                     "vocab_size": _zoo._VOCAB, "max_position_embeddings": 77, "bos_token_id": 0, "eos_token_id": 1,
                     "pad_token_id": 1, "projection_dim": 32},
        vision_config={"hidden_size": 32, "intermediate_size": 64, "num_attention_heads": 4, "num_hidden_layers": 2,
                       "image_size": 32, "patch_size": 16, "projection_dim": 32},
        projection_dim=32,
    )
    with _seed(seed, "clip"):
        model = CLIPModel(cfg).eval()
    return model, _zoo._clip_tokenizer(), _clip_processor()


def build_replica(model_id: str, revision: str, pipeline: str, cache: str | Path, seed: int = 0,
                  variant: str | None = None, resolution: int = 64, prior: tuple[str, str] | None = None) -> Path:
    """Write the replica of `model_id` at `revision` into the hub cache; returns the snapshot dir.
    Combined pipelines: `prior` = (prior id, its revision); the decoder repo's model card names it."""
    snap = _fresh(cache, model_id, revision)
    if pipeline in DECODER_OF:
        if prior is None:
            raise ValueError(f"{model_id}: {pipeline} needs its prior repo (id, revision)")
        prior_snap = _fresh(cache, prior[0], prior[1])
        _save(PRIOR_OF[pipeline](seed), prior_snap, variant)
        _save(DECODER_OF[pipeline](seed), snap, variant)
        _as_hub_index(snap)
        (snap / "README.md").write_text(f"---\nprior:\n- {prior[0]}\nlicense: other\n---\n# replica of {model_id}\n")
    else:
        pipe = _tiny(pipeline, seed, resolution)
        if model_id.startswith(WITH_SAFETY_CHECKER):
            checker, extractor = _tiny_safety_checker()
            pipe.register_modules(safety_checker=checker, feature_extractor=extractor)
            pipe.register_to_config(requires_safety_checker=True)
        _save(pipe, snap, variant)
    return snap


def _as_hub_index(snap: Path) -> None:
    """model_index.json as the hub repo has it: Stable Cascade's vqgan is ["wuerstchen", "PaellaVQModel"]
    (today's diffusers keeps the class under a deprecated module and would write "diffusers")."""
    index = snap / "model_index.json"
    spec = json.loads(index.read_text())
    if spec.get("vqgan") == ["diffusers", "PaellaVQModel"]:
        spec["vqgan"] = ["wuerstchen", "PaellaVQModel"]
        index.write_text(json.dumps(spec, indent=2, sort_keys=True) + "\n")


def prior_id(model_id: str) -> str:
    return f"{model_id}-prior"


def targets(cfg: dict) -> dict[str, str]:
    """{hub id: pipeline / model class} for every hub id the profile loads (priors come with their decoder)."""
    out: dict[str, str] = {}
    for spec in {**cfg["generators"], **all_study_generators(cfg)}.values():
        if spec.get("backend") == "diffusers" and is_hub_id(spec["model"]):
            out.setdefault(spec["model"], spec.get("pipeline", "DiffusionPipeline"))
    for model in referenced(cfg):
        if model in OTHER_KINDS:
            out.setdefault(model, OTHER_KINDS[model])
    return out


def build_replicas(cfg: dict, cache: str | Path, only: list[str] | None = None) -> list[Path]:
    made = []
    pins = cfg.get("hub_models") or {}
    todo = targets(cfg)
    priors = {prior_id(m) for m, p in todo.items() if p in DECODER_OF}
    missing = sorted(set(pins) - set(todo) - priors)
    if missing and not only:
        raise NotImplementedError(f"hub_models ids without a replica builder: {missing}")
    for i, (model, pipeline) in enumerate(sorted(todo.items())):
        if only and model not in only:
            continue
        pin = pins.get(model, {})
        prior = (prior_id(model), revision(cfg, prior_id(model))) if pipeline in DECODER_OF else None
        snap = build_replica(model, revision(cfg, model), pipeline, cache, seed=i, variant=pin.get("variant"), prior=prior)
        made.append(snap)
        if pin.get("local_dir"):  # fetch_models also materialises these ids as a plain folder
            local = Path(pin["local_dir"])
            if local.exists():
                if not (local / REPLICA_MARK).is_file():
                    raise FileExistsError(f"{local} holds real files of {model} (no {REPLICA_MARK}); not overwriting")
                shutil.rmtree(local)
            shutil.copytree(snap, local)
            (local / REPLICA_MARK).write_text(f"random-weight replica of {model}, for rehearsals only\n")
            made.append(local)
    return made


# ------------------------------------------------------------------- timm weight files ----


def timm_weight_files(cfg: dict) -> dict[str, str]:
    """{weights_file: timm model name} for every `timm:<name>` backbone the profile names with a local
    weights_file (attributor features and method specs, wherever they nest)."""
    out: dict[str, str] = {}

    def walk(node):
        if isinstance(node, dict):
            backbone = node.get("backbone")
            if isinstance(backbone, str) and backbone.startswith("timm:"):
                for key in ("spec", "backbone_spec"):
                    file = (node.get(key) or {}).get("weights_file")
                    if file:
                        out.setdefault(str(file), backbone.split(":", 1)[1])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(cfg.get("attributors", {}))
    return out


def write_timm_weights(name: str, path: str | Path, seed: int = 0) -> Path:
    """Random weights of the real architecture, with exactly the state-dict keys (and shapes) of
    `timm.create_model(name)`, i.e. what its pretrained file holds. Never overwrites a real file."""
    import timm
    import torch
    from safetensors import safe_open
    from safetensors.torch import save_file

    path = Path(path)
    if path.exists():
        with safe_open(str(path), "pt") as f:
            if (f.metadata() or {}).get("replica") is None:
                raise FileExistsError(f"{path} is a real weight file (no replica metadata); not overwriting")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = timm.create_model(name, pretrained=False)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    save_file(state, str(tmp), metadata={"replica": f"random-weight {name}, for rehearsals only"})
    tmp.replace(path)
    return path


def build_timm_weights(cfg: dict, root: str | Path = ".", only: list[str] | None = None) -> list[Path]:
    return [write_timm_weights(name, Path(root) / file, seed=i)
            for i, (file, name) in enumerate(sorted(timm_weight_files(cfg).items())) if not only or name in only]


# ---------------------------------------------------------- rehearsal input folders ----
# Stand-ins for the paper's external data, in the layouts its params read, from the photos we ship.
# Rehearsal inputs only: each folder gets a REPLICA marker, and a folder without one is never touched.


def _replica_dir(folder: Path) -> Path:
    if folder.exists():
        if not (folder / REPLICA_MARK).is_file():
            raise FileExistsError(f"{folder} holds real data (no {REPLICA_MARK} file); not overwriting")
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    (folder / REPLICA_MARK).write_text("rehearsal stand-in built by `attribench build-replicas --all`; not paper data\n")
    return folder


def _variant(img, k: int, size: int = 256):
    """A distinct square image per (photo, k): crop offset, flip and quarter turn vary, so no two files
    share bytes (a square photo has one crop: flips and turns tell its variants apart)."""
    from PIL import ImageOps

    w, h = img.size
    side = min(w, h)
    off = (k * 37) % max(1, max(w, h) - side + 1)
    box = (off, 0, off + side, side) if w >= h else (0, off, side, off + side)
    out = img.convert("RGB").crop(box).resize((size, size)).rotate(90 * (k // 2 % 4))
    return ImageOps.mirror(out) if k % 2 else out


def _own_bytes(img, key: str):
    """The image with faint noise seeded by `key`: two folders made from the same photos share no file
    (Midjourney 5.2 and 6 did, and the index check refuses an image in two classes)."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "little"))
    arr = np.asarray(img.convert("RGB"), dtype=np.int16) + rng.integers(-2, 3, (img.height, img.width, 3))
    return Image.fromarray(arr.clip(0, 255).astype(np.uint8))


# Stand-in images per COCO / Midjourney / GAN folder. 120 caption groups at the paper's 0.7/0.15/0.15
# give 79/24/17 (each prompt source >= 37/10/8): the rehearsal's 9/9/9 per class, which DeepFeatureX's
# 90:10 base-model views need, and its 8/2/2 per-source views (40 gave 1 creative test image and 45
# photos 7 val: both found by the all-targets rehearsal).
STAND_INS = 120


def _stand_in_captions(photos: list) -> list:
    """STAND_INS (photo, caption) pairs: the shipped photos, then again as "take 2", "take 3"..."""
    out = []
    for k in range(STAND_INS):
        img, cap = photos[k % len(photos)]
        out.append((img, cap if k < len(photos) else f"{cap}, take {k // len(photos) + 1}"))
    return out


def build_rehearsal_inputs(cfg: dict, root: str | Path = ".") -> list[Path]:
    """COCO val2017 + captions JSON, Midjourney folders (captions.csv with prompt_source), the GAN
    folder and the external-edit folders, at the paths the profile's params name."""
    import csv

    from PIL import Image, ImageOps


    root = Path(root)
    photos = [(Image.open(p), cap) for _, p, cap in sample_photo_paths()]
    gens = cfg["generators"]
    made = []
    # COCO: val2017/<12-digit id>.jpg and annotations/captions_val2017.json (images + annotations).
    coco_img = root / gens["real"]["path"]
    coco_ann = root / gens["real"]["captions"]
    _replica_dir(coco_img)
    _replica_dir(coco_ann.parent)
    images, anns = [], []
    for i, (img, cap) in enumerate(_stand_in_captions(photos)):
        image_id = 139 + 1000 * i
        name = f"{image_id:012d}.jpg"
        _variant(img, i // len(photos), 320).save(coco_img / name, "JPEG", quality=90)
        images.append({"id": image_id, "file_name": name, "width": 320, "height": 320})
        anns += [{"id": 10 * i + j, "image_id": image_id, "caption": c} for j, c in enumerate([cap, f"A photo: {cap.lower()}"])]
    coco_ann.write_text(json.dumps({"info": {"description": "rehearsal stand-in"}, "images": images, "annotations": anns}))
    made += [coco_img, coco_ann]
    # Midjourney: renders of the benchmark's prompts, captions.csv file,caption,prompt_source.
    for gen, spec in gens.items():
        if spec.get("backend") != "folder" or spec.get("family") not in ("midjourney", "gan"):
            continue
        folder = _replica_dir(root / spec["path"])
        rows = []
        for k, (img, cap) in enumerate(_stand_in_captions(photos)):
            im = ImageOps.posterize(_variant(img, k + 1 + sum(gen.encode()) % 7, 256), 3 if spec["family"] == "midjourney" else 5)
            im = _own_bytes(im, f"{gen}/{k}")
            name = f"{gen}_{k:03d}.png"
            im.save(folder / name)
            rows.append((name, cap, "natural" if k % 2 == 0 else "creative"))
        if spec.get("captions"):
            with open(root / spec["captions"], "w", newline="") as f:
                w = csv.writer(f, lineterminator="\n")
                w.writerow(["file", "caption", "prompt_source"])
                w.writerows(rows)
        made.append(folder)
    return made + build_edit_stand_ins(cfg, root)


def build_edit_stand_ins(cfg: dict, root: str | Path = ".") -> list[Path]:
    """External edits (Photoshop Generative Fill, Magnific) as a user makes them after the split exists
    (`attribench edit-inputs`, edit, save as <image_id>.png): the post-editing view's test images, each
    auto-contrasted. Before the split: the empty folders (the rehearsal builds them again after it)."""
    import io

    from PIL import Image, ImageOps

    from attribench.data.shards import load_images  # the data stage's own modules: only with a split to read
    from attribench.data.views import test_rows  # (as above)

    root = Path(root)
    index = root / "data" / cfg["profile"] / "dataset" / "index.parquet"
    made = []
    for t in ((cfg.get("post_editing") or {}).get("tools") or {}).values():
        if "folder" in t:
            folder = _replica_dir(root / t["folder"])
            if index.is_file():
                for image_id, data in load_images(test_rows(cfg, index, cfg["post_editing"]["dataset"])).items():
                    ImageOps.autocontrast(Image.open(io.BytesIO(data)).convert("RGB")).save(folder / f"{image_id}.png")
            made.append(folder)
    return made
