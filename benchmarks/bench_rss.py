"""Does host memory grow with the dataset? Peak RSS of a training run at 1024 px delivery vs dataset size.

An `all`-style view (every class of the dataset in one classifier, train + val splits) of N and 2N
synthetic 1024 px images (synthetic.py), trained at 1024 px input -- the size at which the in-memory
path decodes 3 MiB per image -- for 1 epoch of a tiny timm model (`test_resnet`), batch 8, 0 workers,
2 threads, in a child process per run, twice: streamed (`pixel_cache`: a uint8 pixel file read with
os.pread) and in memory (the whole split decoded into RAM, the path without `pixel_cache`).

Peak RSS is the child's own `ru_maxrss` (os.wait4 gives the rusage of that one child; it includes the
pixel-file build, which streams row groups) plus, sampled every 50 ms from /proc/<pid>/status, the
peak anonymous (heap) and file-backed resident memory. Acceptance (issue 14): the streamed peak at
2N within 20% of the one at N.
Prints a table, writes results/rss.csv and results/rss.png.

Run from the repo root:  python benchmarks/bench_rss.py [--images 100]   (a few minutes on 2 cores)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT = HERE / "results"


def child(index_path: str, spec_json: str, out_dir: str) -> None:
    import pandas as pd

    import attribench.plugins  # noqa: F401  the attributor registry, as in a run
    from attribench.training.loop import train_run

    train_run(pd.read_parquet(index_path), json.loads(spec_json), out_dir)


def _status_kib(pid: int) -> dict[str, int]:
    out = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                key, _, rest = line.partition(":")
                if key in ("RssAnon", "RssFile", "VmHWM"):
                    out[key] = int(rest.split()[0])
    except (FileNotFoundError, ProcessLookupError):
        pass
    return out


def measure(index_path: Path, spec: dict, out_dir: Path) -> dict:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, __file__, "--child", str(index_path), json.dumps(spec), str(out_dir)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    peaks = {"RssAnon": 0, "RssFile": 0}
    done = threading.Event()

    def sample():
        while not done.is_set():
            for k, v in _status_kib(proc.pid).items():
                if k in peaks:
                    peaks[k] = max(peaks[k], v)
            time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    err = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)  # this child's own rusage (RUSAGE_CHILDREN would be the max of all)
    proc.returncode = os.waitstatus_to_exitcode(status)
    done.set()
    sampler.join()
    if proc.returncode:
        raise RuntimeError(f"training child failed ({proc.returncode}):\n{err.decode()[-3000:]}")
    return {
        "peak_rss_mib": usage.ru_maxrss / 1024,
        "peak_anon_mib": peaks["RssAnon"] / 1024,
        "peak_file_mib": peaks["RssFile"] / 1024,
        "wall_s": time.perf_counter() - t0,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=100, help="N: the runs use N and 2N images (70%% train, 15%% val)")
    ap.add_argument("--size", type=int, default=1024, help="delivery size (px)")
    ap.add_argument("--input", type=int, default=1024, help="training input size (px)")
    ap.add_argument("--work", default=None, help="folder for the synthetic shards + pixel files (default: a temp dir)")
    args = ap.parse_args()

    import matplotlib

    matplotlib.use("Agg")  # headless
    import matplotlib.pyplot as plt
    import pandas as pd

    sys.path.insert(0, str(HERE))
    from synthetic import CLASSES, synthetic_index

    work = Path(args.work or tempfile.mkdtemp(prefix="bench_rss_"))
    load_before = os.getloadavg()
    rows = []
    for n in (args.images, 2 * args.images):
        index = synthetic_index(work / "shards", n, args.size)
        index_path = work / f"index_{n}.parquet"
        index.to_parquet(index_path)
        for mode in ("streamed", "in-memory"):
            spec = {
                "attributor": "timm_scratch",
                "attributor_spec": {"model": "test_resnet"},
                "input_size": args.input,
                "epochs": 1,
                "batch_size": 8,
                "warmup_epochs": 0,
                "lr": 1e-3,
                "classes": CLASSES,
                "num_threads": 2,
                "num_workers": 0,
                "pixel_cache": str(work / f"cache_{n}") if mode == "streamed" else None,
            }
            r = measure(index_path, spec, work / f"run_{mode}_{n}")
            rows.append(
                {
                    "mode": mode,
                    "images": n,
                    "train_val": int(index["split"].isin(["train", "val"]).sum()),
                    **r,
                    "load_1min": os.getloadavg()[0],
                }
            )
            print(rows[-1], flush=True)
    df = pd.DataFrame(rows)
    ratio = {
        m: g.sort_values("images")["peak_rss_mib"].iloc[1] / g.sort_values("images")["peak_rss_mib"].iloc[0]
        for m, g in df.groupby("mode")
    }
    df["rss_2n_over_n"] = df["mode"].map(ratio)
    OUT.mkdir(exist_ok=True)
    df.to_csv(OUT / "rss.csv", index=False)
    print(f"load average before: {load_before[0]:.2f} {load_before[1]:.2f} {load_before[2]:.2f}")
    print(df.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    for mode, r in ratio.items():
        verdict = "PASS" if r <= 1.2 else "FAIL"
        print(f"{mode}: peak RSS at 2N / at N = {r:.3f} ({verdict}: acceptance <= 1.20)")

    fig, ax = plt.subplots(figsize=(6, 4))
    for mode, g in df.groupby("mode"):
        g = g.sort_values("images")
        ax.plot(g["images"], g["peak_rss_mib"], marker="o", label=f"{mode} (x{ratio[mode]:.2f} at 2N)")
    ax.set_xlabel(f"dataset images ({args.size} px delivery, {args.input} px input)")
    ax.set_ylabel("peak RSS of the training process (MiB)")
    ax.set_ylim(bottom=0)
    ax.set_title("training host memory vs dataset size")
    ax.legend()
    fig.tight_layout()
    fig.savefig(OUT / "rss.png", dpi=120)
    if not args.work:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(*sys.argv[2:5])
    else:
        main()
