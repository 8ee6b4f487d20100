"""Is training input-bound? Data-loading vs train-step throughput on the smoke benchmark sample (CPU).

Stages, all in images/s (median of 3 timed repeats after a warm-up, time.perf_counter):
  decode-only bound  read shard bytes once (pyarrow) + decode + resize + centre-crop with
                     `resize_crop` at 64/128/224 px, 1 thread: what ImageDataset does once per image;
  loader per epoch   one pass of the training DataLoader over `index_dataset(train=True)`
                     (flip + normalise per item, batch 64), i.e. the per-epoch input cost after decode;
  train step         forward + backward + AdamW of the smoke model (1 and 2 threads) and the paper model.

Run from the repo root:  python benchmarks/bench_data_loading.py   (~30 s on 2 quiet cores, up to ~2 min when busy)
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless
import matplotlib.pyplot as plt
import pandas as pd
import timm
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from attribench.data.imagedata import index_dataset, resize_crop
from attribench.data.shards import load_images
from attribench.training.loop import torch_settings

ROOT = Path(__file__).resolve().parents[1]
INDEX = ROOT / "data/smoke/dataset/index.parquet"
OUT = Path(__file__).resolve().parent / "results"
SEED, REPEATS, BATCH = 0, 3, 64


CPU_RATIO: list[float] = []  # CPU-s per wall-s of the last timed(): below the thread count = we were preempted


def timed(fn, repeats: int = REPEATS, warmup: int = 1) -> float:
    """Median seconds of `fn()` over `repeats` runs, after `warmup` untimed runs (caches, allocator)."""
    for _ in range(warmup):
        fn()
    times, c0 = [], time.process_time()
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    CPU_RATIO.append((time.process_time() - c0) / sum(times))
    return statistics.median(times)


def decode_all(index: pd.DataFrame, size: int) -> torch.Tensor:
    # Same work as ImageDataset.__init__ after load_images: decode, resize, crop, stack.
    return torch.stack([resize_crop(b, size) for b in load_images(index).values()])


def train_step_rate(
    model_name: str, size: int, batch: int, threads: int, x_u8: torch.Tensor, y: torch.Tensor, steps: int = 1
) -> float:
    """images/s of fwd+bwd+AdamW on one fixed real batch (data cost excluded), as in train._train."""
    with torch_settings(threads):
        torch.manual_seed(SEED)
        kwargs = {"img_size": size} if "v2" in model_name else {}  # V1 takes 224 px only
        model = timm.create_model(model_name, pretrained=False, num_classes=8, **kwargs).train()
        opt = torch.optim.AdamW(model.parameters(), lr=2e-4, weight_decay=0.05)
        x = (x_u8[:batch].float() / 255.0 - 0.45) / 0.225  # normalised-like input; values don't affect speed
        y = y[:batch]

        def run():
            for _ in range(steps):
                loss = F.cross_entropy(model(x), y)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()

        return steps * len(y) / timed(run)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--index", type=Path, default=INDEX)
    ap.add_argument(
        "--paper-batch",
        type=int,
        default=8,
        help="batch of the efficientformer_l3 step; 64 takes ~1 min per step on 2 cores",
    )
    ap.add_argument("--smoke-steps", type=int, default=2, help="steps per timed repeat, smoke model")
    args = ap.parse_args()

    load1 = os.getloadavg()[0]
    print(
        f"{time.strftime('%Y-%m-%d %H:%M')}  {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cpus, torch {torch.__version__}, timm {timm.__version__}, load(1min) {load1:.2f}"
    )
    if load1 > 1.5:
        print("WARNING: machine is busy (1-min load > 1.5); numbers will be pessimistic")

    index = pd.read_parquet(args.index)
    bench = index[index["in_benchmark"]].reset_index(drop=True)
    classes = sorted(bench["generator"].unique())
    train = bench[bench["split"] == "train"].reset_index(drop=True)
    rows = []

    def add(stage, label, px, threads, batch, n, seconds):
        rows.append(
            dict(
                stage=stage,
                label=label,
                input_px=px,
                threads=threads,
                batch=batch,
                images=n,
                median_s=seconds,
                images_per_s=n / seconds,
                cpu_per_wall=CPU_RATIO[-1],
            )
        )
        busy = "  CONTENDED: got less CPU than threads" if CPU_RATIO[-1] < 0.85 * threads else ""
        print(f"  {label:<42s} {n / seconds:10.1f} images/s  (cpu/wall {CPU_RATIO[-1]:.2f}){busy}", flush=True)

    # 1. Decode-only bound, single thread (the Dataset builds its pixels in one process).
    print(f"decode-only bound: {len(bench)} benchmark images, {bench['shard'].nunique()} shards, 1 thread")
    with torch_settings(1):
        for px in (64, 128, 224):
            add("decode", f"decode-only bound {px}px", px, 1, None, len(bench), timed(lambda: decode_all(bench, px)))

    # 2. Training loader: same DataLoader settings as train._train (shuffle, seeded, no workers).
    images = load_images(train)
    ds = index_dataset(train, images, classes, 64, train=True, seed=SEED)

    def epoch():
        loader = DataLoader(
            ds, batch_size=BATCH, shuffle=True, num_workers=0, generator=torch.Generator().manual_seed(SEED)
        )
        for _x, _y in loader:
            pass

    print(f"training loader: {len(ds)} train images, batch {BATCH}")
    with torch_settings(1):
        add("loader", "loader per epoch 64px (flip+normalise)", 64, 1, BATCH, len(ds), timed(epoch))

    # 3. Train steps on a real batch; data already in memory so only model cost is timed.
    print("train step (fwd+bwd+AdamW)")
    x64, y = ds.pixels[:BATCH], ds.labels[:BATCH]
    for threads in (1, 2):
        n = args.smoke_steps * BATCH
        rate = train_step_rate("efficientformerv2_s0", 64, BATCH, threads, x64, y, steps=args.smoke_steps)
        add("train", f"train step V2-S0 64px bs{BATCH} {threads}thr", 64, threads, BATCH, n, n / rate)
    # Paper model: EfficientFormer-L3 only takes 224 px (smoke images upsampled; fine for speed).
    pb = args.paper_batch
    x224 = torch.stack([resize_crop(images[i], 224) for i in train["image_id"][:pb]])
    rate = train_step_rate("efficientformer_l3", 224, pb, 2, x224, y)
    add("train", f"train step L3 224px bs{pb} 2thr", 224, 2, pb, pb, pb / rate)

    df = pd.DataFrame(rows)
    OUT.mkdir(parents=True, exist_ok=True)
    df.to_csv(OUT / "data_loading.csv", index=False, float_format="%.6g")

    print(
        "\n"
        + df[["label", "images", "median_s", "images_per_s", "cpu_per_wall"]].to_string(
            index=False, float_format="%.3f"
        )
    )

    # Input-bound? Loader and step run back to back in one process: an epoch costs 1/L + 1/S per image.
    loader_rate = df.loc[df.stage == "loader", "images_per_s"].iloc[0]
    # Fastest smoke step (1 or 2 threads): if even that is far slower than the loader, input is not the limit.
    step_row = df[df.label.str.contains("V2-S0")].sort_values("images_per_s").iloc[-1]
    step_rate = step_row["images_per_s"]
    share = (1 / loader_rate) / (1 / loader_rate + 1 / step_rate)
    verdict = "INPUT-BOUND" if loader_rate < step_rate else "NOT input-bound (compute-bound)"
    print(
        f"\nConclusion: loader {loader_rate:.0f} img/s vs smoke train step {step_rate:.1f} img/s (fastest, {step_row['threads']} thr): "
        f"{verdict}; the loader is {share:.1%} of epoch time "
        f"(loader/step ratio {loader_rate / step_rate:.0f}x)."
    )
    print(f"load(1min) at end {os.getloadavg()[0]:.2f}")

    # Bar chart, log scale: the gap between stages spans orders of magnitude.
    colours = {"decode": "tab:blue", "loader": "tab:green", "train": "tab:red"}
    fig, ax = plt.subplots(figsize=(9, 4.5))
    bars = ax.barh(df["label"], df["images_per_s"], color=[colours[s] for s in df["stage"]])
    ax.set_xscale("log")
    ax.invert_yaxis()
    ax.bar_label(
        bars, labels=[f"{v:,.0f}" if v >= 100 else f"{v:.3g}" for v in df["images_per_s"]], padding=3, fontsize=8
    )
    ax.set_xlim(right=df["images_per_s"].max() * 8)  # room for the labels
    ax.set_xlabel("images/s (log scale, median of 3)")
    ax.set_title(
        f"attribench CPU throughput ({os.cpu_count()} cores, {time.strftime('%Y-%m-%d')}): {verdict}", fontsize=10
    )
    fig.tight_layout()
    fig.savefig(OUT / "data_loading.png", dpi=120)
    print(f"wrote {OUT / 'data_loading.csv'} and {OUT / 'data_loading.png'}")


if __name__ == "__main__":
    main()
