"""GPU throughput of the paper's heavy parts, against the GPU's dense bf16 peak (issue 14, benchmark 3).

1. EfficientFormer-L3 training at 224 px: bf16 autocast, channels_last, TF32, AdamW, batch 128 (the
   paper's), images/s and MFU (model FLOPs utilisation: 3 x forward FLOPs per image, counted by
   torch.utils.flop_counter, times images/s, over the peak).
2. Feature extraction images/s (bf16 autocast, no grad, batch 256): CLIP ViT-B/16 and DINOv2 ViT-L/14
   at 224 px (timm, pretrained=False: random weights, same architecture and cost).
3. Rendering seconds per image at batch 1 / 4 / 8: SD 1.5 (512 px) and SDXL (1024 px) diffusers
   pipelines (fp16 weights; the SDXL VAE upcast to fp32 by its force_upcast config, as in the
   transforms) built from the real-size configs with random weights -- nothing is downloaded. Prompt
   embeddings come from the (random) text encoders on random token ids, so no tokenizer files are
   needed; classifier-free guidance on (2 UNet passes per step), VAE decode included.

Peak dense bf16 TFLOP/s per GPU name (`PEAKS`): H100 SXM / H200 989, H100 NVL 835, H100 PCIe 756,
A100 312 (NVIDIA datasheets, without sparsity). An unknown GPU gets MFU n/a.
Prints a table, writes results/gpu.csv and results/gpu.png. Exits with a message when there is no CUDA device.

Run from the repo root on a GPU machine:  python benchmarks/bench_gpu.py   (~5-8 min on an H100)
`--cpu-dry-run` runs every code path on the CPU with tiny configs (checks the script, measures nothing).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

OUT = Path(__file__).resolve().parent / "results"

PEAKS = [  # (substring of torch.cuda.get_device_name, dense bf16 TFLOP/s); first match wins
    ("H200", 989.0),
    ("H100 NVL", 835.0),
    ("H100 PCIe", 756.0),
    ("H100", 989.0),
    ("GH200", 989.0),
    ("A100", 312.0),
]


def peak_tflops(name: str) -> float | None:
    return next((p for key, p in PEAKS if key in name), None)


def sync(dev) -> None:
    import torch

    if dev.type == "cuda":
        torch.cuda.synchronize()


def forward_flops(model, x, **kw) -> float:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        model(x, **kw)
    return float(fc.get_total_flops())


def timed(fn, dev, repeats: int) -> float:
    """Median seconds of `fn()` over `repeats` runs after one warm-up."""
    fn()
    sync(dev)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync(dev)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def bench_train(dev, dtype, batch: int, repeats: int, tiny: bool) -> dict:
    import timm
    import torch
    import torch.nn.functional as F

    name, size = ("efficientformer_l1", 224) if tiny else ("efficientformer_l3", 224)
    model = timm.create_model(name, num_classes=13).to(dev).to(memory_format=torch.channels_last).train()
    flops = forward_flops(model, torch.randn(1, 3, size, size, device=dev))
    opt = torch.optim.AdamW(model.parameters(), lr=2e-4, weight_decay=0.05)
    x = torch.randn(batch, 3, size, size, device=dev).to(memory_format=torch.channels_last)
    y = torch.randint(0, 13, (batch,), device=dev)

    def step(n=5 if not tiny else 1):
        for _ in range(n):
            with torch.autocast(dev.type, dtype=dtype, enabled=dev.type == "cuda"):
                loss = F.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

    steps = 5 if not tiny else 1
    s = timed(step, dev, repeats)
    return {
        "task": f"train {name} {size}px bs{batch}",
        "images_per_s": batch * steps / s,
        "flops_per_image": 3 * flops,
        "s_per_image": s / (batch * steps),
    }


def bench_features(dev, dtype, name: str, label: str, batch: int, repeats: int, **kw) -> dict:
    import timm
    import torch

    model = timm.create_model(name, pretrained=False, num_classes=0, img_size=224, **kw).to(dev).eval()
    flops = forward_flops(model, torch.randn(1, 3, 224, 224, device=dev))
    x = torch.randn(batch, 3, 224, 224, device=dev)

    @torch.no_grad()
    def run():
        with torch.autocast(dev.type, dtype=dtype, enabled=dev.type == "cuda"):
            model(x)

    s = timed(run, dev, repeats)
    return {
        "task": f"features {label} 224px bs{batch}",
        "images_per_s": batch / s,
        "flops_per_image": flops,
        "s_per_image": s / batch,
    }


def _clip_text(hidden, layers, heads, inter, proj, act, with_projection):
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    cfg = CLIPTextConfig(
        vocab_size=49408,
        hidden_size=hidden,
        intermediate_size=inter,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        max_position_embeddings=77,
        hidden_act=act,
        projection_dim=proj,
    )
    return (CLIPTextModelWithProjection if with_projection else CLIPTextModel)(cfg)


def build_sd(family: str, tiny: bool):
    """Random-weight SD 1.5 / SDXL pipelines from their real configs (scaled down with `tiny`)."""
    from diffusers import (
        AutoencoderKL,
        EulerDiscreteScheduler,
        StableDiffusionPipeline,
        StableDiffusionXLPipeline,
        UNet2DConditionModel,
    )

    def vae_of(size: int, **kwargs) -> AutoencoderKL:
        """SD 1.5 and SDXL share the VAE architecture; only the latent scaling and fp16 upcast differ."""
        return AutoencoderKL(
            block_out_channels=(32, 64, 64, 64) if tiny else (128, 256, 512, 512),
            down_block_types=("DownEncoderBlock2D",) * 4,
            up_block_types=("UpDecoderBlock2D",) * 4,
            layers_per_block=2,
            latent_channels=4,
            sample_size=size,
            **kwargs,
        )

    sched = EulerDiscreteScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", timestep_spacing="leading", steps_offset=1
    )
    if family == "sd15":
        size = 64 if tiny else 512
        vae = vae_of(size, scaling_factor=0.18215, force_upcast=False)
        unet = UNet2DConditionModel(
            sample_size=size // 8,
            in_channels=4,
            out_channels=4,
            layers_per_block=2 if not tiny else 1,
            block_out_channels=(32, 64, 64, 64) if tiny else (320, 640, 1280, 1280),
            down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
            up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
            cross_attention_dim=32 if tiny else 768,
            attention_head_dim=8,
        )
        te = _clip_text(*((32, 2, 4, 37, 32) if tiny else (768, 12, 12, 3072, 768)), "quick_gelu", False)
        pipe = StableDiffusionPipeline(
            vae=vae,
            text_encoder=te,
            tokenizer=None,
            unet=unet,
            scheduler=sched,
            safety_checker=None,
            feature_extractor=None,
            requires_safety_checker=False,
        )
        return pipe, size
    size = 64 if tiny else 1024
    vae = vae_of(size, scaling_factor=0.13025, force_upcast=True)  # SDXL's VAE overflows in fp16
    te1 = _clip_text(*((32, 2, 4, 37, 32) if tiny else (768, 12, 12, 3072, 768)), "quick_gelu", False)
    te2 = _clip_text(*((32, 2, 4, 37, 32) if tiny else (1280, 32, 20, 5120, 1280)), "gelu", True)
    unet = UNet2DConditionModel(
        sample_size=size // 8,
        in_channels=4,
        out_channels=4,
        layers_per_block=2 if not tiny else 1,
        block_out_channels=(32, 64, 64) if tiny else (320, 640, 1280),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        transformer_layers_per_block=(1, 1, 1) if tiny else (1, 2, 10),
        attention_head_dim=(2, 4, 4) if tiny else (5, 10, 20),
        cross_attention_dim=64 if tiny else 2048,
        use_linear_projection=True,
        addition_embed_type="text_time",
        addition_time_embed_dim=8 if tiny else 256,
        projection_class_embeddings_input_dim=(6 * 8 + 32) if tiny else 2816,
    )
    pipe = StableDiffusionXLPipeline(
        vae=vae, text_encoder=te1, text_encoder_2=te2, tokenizer=None, tokenizer_2=None, unet=unet, scheduler=sched
    )
    return pipe, size


def _embeds(pipe, family: str, batch: int, dev):
    """Prompt embeddings as the pipeline's encode_prompt makes them, from random token ids (no tokenizer)."""
    import torch

    ids = torch.randint(0, 49408, (batch, 77), device=dev)
    if family == "sd15":
        return {"prompt_embeds": pipe.text_encoder(ids)[0], "negative_prompt_embeds": pipe.text_encoder(ids)[0]}
    h1 = pipe.text_encoder(ids, output_hidden_states=True).hidden_states[-2]
    out2 = pipe.text_encoder_2(ids, output_hidden_states=True)
    emb = torch.cat([h1, out2.hidden_states[-2]], dim=-1)
    return {
        "prompt_embeds": emb,
        "negative_prompt_embeds": torch.zeros_like(emb),
        "pooled_prompt_embeds": out2.text_embeds,
        "negative_pooled_prompt_embeds": torch.zeros_like(out2.text_embeds),
    }


def bench_render(dev, family: str, batches, steps: int, repeats: int, tiny: bool) -> list[dict]:
    import torch

    pipe, size = build_sd(family, tiny)
    wdtype = torch.float16 if dev.type == "cuda" else torch.float32
    pipe.to(dev, wdtype)  # SDXL: the pipeline runs its fp16 VAE in fp32 at each call (force_upcast), as the transforms
    pipe.set_progress_bar_config(disable=True)
    # FLOPs per image: `steps` UNet passes at batch 2 (classifier-free guidance) + one VAE decode.
    latents = torch.randn(2, 4, size // 8, size // 8, device=dev, dtype=wdtype)
    emb = _embeds(pipe, family, 2, dev)
    kw = {"encoder_hidden_states": emb["prompt_embeds"].to(wdtype)}
    if family == "sdxl":
        kw["added_cond_kwargs"] = {
            "text_embeds": emb["pooled_prompt_embeds"].to(wdtype),
            "time_ids": torch.tensor([[size, size, 0, 0, size, size]] * 2, device=dev, dtype=wdtype),
        }
    unet_flops = forward_flops(pipe.unet, latents, timestep=torch.tensor(500, device=dev), **kw)
    vae_flops = forward_flops(pipe.vae.decode, latents[:1].to(pipe.vae.dtype))
    per_image = steps * unet_flops + vae_flops
    rows = []
    for batch in batches:

        def run():
            with torch.no_grad():
                e = {k: v.to(wdtype) for k, v in _embeds(pipe, family, batch, dev).items()}
                pipe(**e, num_inference_steps=steps, guidance_scale=5.0, height=size, width=size, output_type="np")

        s = timed(run, dev, repeats)
        rows.append(
            {
                "task": f"render {family} {size}px {steps} steps bs{batch}",
                "images_per_s": batch / s,
                "flops_per_image": per_image,
                "s_per_image": s / batch,
            }
        )
        print(rows[-1], flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=30, help="denoising steps per rendered image")
    ap.add_argument("--repeats", type=int, default=2, help="timed repeats per row (median; after one warm-up)")
    ap.add_argument("--skip", nargs="*", default=[], choices=["train", "features", "sd15", "sdxl"])
    ap.add_argument("--cpu-dry-run", action="store_true", help="tiny configs on the CPU: checks the script only")
    args = ap.parse_args()
    import torch

    if not torch.cuda.is_available() and not args.cpu_dry_run:
        sys.exit(
            "bench_gpu.py: no CUDA device (torch.cuda.is_available() is False); this benchmark measures GPU "
            "throughput and was not run. Run it on a GPU machine (see benchmarks/README.md)."
        )
    tiny = args.cpu_dry_run
    dev = torch.device("cpu" if tiny else "cuda")
    name = "CPU dry run" if tiny else torch.cuda.get_device_name(0)
    peak = None if tiny else peak_tflops(name)
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    torch.backends.cudnn.benchmark = True
    dtype = torch.bfloat16
    rows = []
    if "train" not in args.skip:
        rows.append(bench_train(dev, dtype, 8 if tiny else 128, args.repeats, tiny))
        print(rows[-1], flush=True)
    if "features" not in args.skip:
        for model, label, kw in (
            ("vit_base_patch16_clip_224", "CLIP ViT-B/16", {}),
            ("vit_large_patch14_dinov2", "DINOv2 ViT-L/14", {}),
        ):
            if tiny:
                kw = {**kw, "depth": 2}
            rows.append(bench_features(dev, dtype, model, label, 4 if tiny else 256, args.repeats, **kw))
            print(rows[-1], flush=True)
    for family in ("sd15", "sdxl"):
        if family not in args.skip:
            rows += bench_render(
                dev, family, (1, 2) if tiny else (1, 4, 8), 2 if tiny else args.steps, args.repeats, tiny
            )

    import matplotlib

    matplotlib.use("Agg")  # headless
    import matplotlib.pyplot as plt
    import pandas as pd

    df = pd.DataFrame(rows)
    df["tflops"] = df["images_per_s"] * df["flops_per_image"] / 1e12
    df["mfu"] = df["tflops"] / peak if peak else float("nan")
    df.insert(0, "gpu", name)
    print(f"GPU: {name}; dense bf16 peak: {peak or 'unknown'} TFLOP/s")
    print(df.drop(columns="gpu").to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    if tiny:
        print("CPU dry run: every code path ran; no numbers to keep (nothing written).")
        return
    OUT.mkdir(exist_ok=True)
    df.to_csv(OUT / "gpu.csv", index=False)
    fig, ax = plt.subplots(figsize=(8, 4.5))
    ax.barh(df["task"], df["mfu"] * 100 if peak else df["tflops"], color="tab:green")
    ax.set_xlabel(f"MFU (% of {peak:.0f} TFLOP/s bf16)" if peak else "achieved TFLOP/s")
    ax.set_title(f"attribench GPU throughput: {name}")
    fig.tight_layout()
    fig.savefig(OUT / "gpu.png", dpi=120)


if __name__ == "__main__":
    main()
