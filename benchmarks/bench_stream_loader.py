"""Is streamed training input-bound? Loader images/s vs model training images/s (CPU, this machine).

Loader: one epoch of the training DataLoader over a streamed pixel file (pixelcache.py) with 0 and
2 workers, batch 32, plus the loop's batch flip + normalise (on the CPU here: the "device"), at
training input 224 px (from 256 px delivery) and 1024 px (from 1024 px delivery).
Model: forward + backward + AdamW step images/s, 2 threads: efficientformer_l3 at 224 px (the paper
model; EfficientFormer v1 only takes 224) and efficientformerv2_s0 (img_size 1024) at 1024 px.
The one-off pixel-file build (decode + resize, once per dataset and size) is reported separately.
Prints a table, writes results/stream_loader.csv and results/stream_loader.png.

Run from the repo root:  python benchmarks/bench_stream_loader.py   (a few minutes on 2 cores)
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless
import matplotlib.pyplot as plt
import pandas as pd
import timm
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from synthetic import synthetic_index  # noqa: E402

from attribench.data.imagedata import index_dataset, normalise, resize_crop  # noqa: E402
from attribench.data.pixelcache import pixel_cache  # noqa: E402
from attribench.training.loop import flip_batch, make_loader, torch_settings  # noqa: E402

OUT = Path(__file__).resolve().parent / "results"


def loader_rate(rows: pd.DataFrame, size: int, cache: Path, workers: int, batch: int) -> tuple[float, float]:
    t0 = time.perf_counter()
    px = pixel_cache(rows, size, cache, resize_crop)
    build = time.perf_counter() - t0
    ds = index_dataset(rows, None, sorted(rows["generator"].unique()), size, train=True, pixels=px)
    ds.flip = False
    loader = make_loader(ds, {"batch_size": batch, "num_workers": workers}, torch.Generator().manual_seed(0), "cpu")
    flip_rng = torch.Generator().manual_seed(0)
    times = []
    for _ in range(3):  # the first epoch also starts the workers: the median of 3 is steady state
        t0, n = time.perf_counter(), 0
        for x, _y in loader:
            normalise(flip_batch(x, flip_rng))
            n += len(x)
        times.append(n / (time.perf_counter() - t0))
    return statistics.median(times), build


def model_rate(name: str, size: int, batch: int, threads: int, steps: int, **kwargs) -> float:
    with torch_settings(threads):
        torch.manual_seed(0)
        model = timm.create_model(name, num_classes=13, **kwargs).train()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
        x, y = torch.randn(batch, 3, size, size), torch.randint(0, 13, (batch,))
        rates = []
        for k in range(steps + 1):
            t0 = time.perf_counter()
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            if k:  # the first step warms up
                rates.append(batch / (time.perf_counter() - t0))
        return statistics.median(rates)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=400, help="synthetic dataset size (70%% train)")
    ap.add_argument("--work", default=None, help="folder for the synthetic shards + pixel files (default: a temp dir)")
    ap.add_argument("--steps", type=int, default=3, help="timed model steps")
    args = ap.parse_args()
    work = Path(args.work or tempfile.mkdtemp(prefix="bench_stream_"))
    rows_out = []
    for size, delivery, model, mbatch, kwargs in (
        (224, 256, "efficientformer_l3", 8, {}),
        (1024, 1024, "efficientformerv2_s0", 2, {"img_size": 1024}),
    ):
        index = synthetic_index(work / "shards", args.images, delivery)
        train = index[index["split"] == "train"].reset_index(drop=True)
        step = model_rate(model, size, mbatch, threads=2, steps=args.steps, **kwargs)
        for workers in (0, 2):
            rate, build = loader_rate(train, size, work / "cache", workers, batch=32)
            rows_out.append(
                {
                    "input_px": size,
                    "workers": workers,
                    "loader_img_s": rate,
                    "model": model,
                    "model_batch": mbatch,
                    "model_img_s": step,
                    "loader_over_model": rate / step,
                    "n_train": len(train),
                    "cache_build_s": build,
                }
            )
            print(rows_out[-1], flush=True)
    df = pd.DataFrame(rows_out)
    OUT.mkdir(exist_ok=True)
    df.to_csv(OUT / "stream_loader.csv", index=False)
    print(df.to_string(index=False, float_format=lambda v: f"{v:.4g}"))

    fig, ax = plt.subplots(figsize=(7, 4))
    labels = [f"{r.input_px}px, {r.workers} workers" for r in df.itertuples()]
    ax.barh([l + " loader" for l in labels], df["loader_img_s"], color="tab:blue")
    ax.barh(
        [f"{r.input_px}px model {r.model}" for r in df.drop_duplicates("input_px").itertuples()],
        df.drop_duplicates("input_px")["model_img_s"],
        color="tab:orange",
    )
    ax.set_xscale("log")
    ax.set_xlabel("images / s (log)")
    ax.set_title("streamed loader vs training step, CPU (2 threads)")
    fig.tight_layout()
    fig.savefig(OUT / "stream_loader.png", dpi=120)
    if not args.work:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
