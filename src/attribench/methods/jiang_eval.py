"""Jiang et al. Table II on our bench: pairwise "same generator?" verification per generator pair,
for trained `jiang_siamese` encoder runs (params `jiang_pairs`), into results/jiang_pairs.csv + .png.

Two modes, one row layout (Table II: for a generator pair (A, B), positives are A-A and B-B pairs,
negatives A-B pairs; A == B rows hold positives only, so their AUC is NaN; `all` rows pool everything):
- `pairs`: every unordered pair of the evaluation dataset's test images, scored by the cosine of
  the two embeddings (any prompts).
- `regenerate` (Fig. 1): a seeded sample of test queries per class; for each suspect generator a
  reference is rendered from the query's caption (its prompt; a pluggable image-to-text captioner
  for queries without one), brought to the delivery policy like every bench image, and
  `verify_by_regeneration` decides. A record is (query's generator, suspect): positive when they match.
The decision threshold is the encoder's Youden threshold on its validation pairs (model.json,
chosen at training time), never tuned on test pairs; the same threshold serves both modes.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from attribench.data.views import select
from attribench.core.paths import RUNS
from attribench.data.generators.base import suspects_of
from attribench.core.io import atomic_path
from attribench.methods.jiang_siamese import backend_renderer, load_encoder, pair_metrics, verify_by_regeneration
from attribench.methods.jiang_train import embed_pixels, pair_scores, pixels_of
from attribench.core.registry import Registry
from attribench.data.shards import load_images
from attribench.data.shards import decode
from attribench.data.delivery import deliver_image

COLUMNS = [
    "encoder",
    "backbone",
    "dataset",
    "mode",
    "generator_a",
    "generator_b",
    "TP",
    "FP",
    "FN",
    "TN",
    "recall",
    "precision",
    "F1",
    "accuracy",
    "AUC",
    "n_pairs",
    "threshold",
    "profile",
]

# ---------------------------------------------------------------------- captioners ----
# Fig. 1's I2T step: caption(row, image bytes) -> text. `prompt` uses the recorded prompt (the
# known caption) and needs no model; others load an image-to-text model from a local directory.
CAPTIONERS = Registry("captioner")


@CAPTIONERS.register("prompt")
def _prompt_captioner(spec: dict) -> Callable[[dict, bytes], str | None]:
    return lambda row, image: row.get("prompt")


@CAPTIONERS.register("transformers")
def _transformers_captioner(spec: dict) -> Callable[[dict, bytes], str | None]:
    """spec: model (a local image-to-text model directory, e.g. BLIP), max_new_tokens (30)."""
    from transformers import pipeline

    pipe = pipeline("image-to-text", model=spec["model"])
    return lambda row, image: pipe(decode(image), max_new_tokens=int(spec.get("max_new_tokens", 30)))[0][
        "generated_text"
    ]


def captioner_for(spec: dict | None) -> Callable[[dict, bytes], str]:
    """The recorded prompt when there is one; else the configured captioner (an error if none)."""
    fallback = CAPTIONERS.lookup(spec["kind"])(spec) if spec else None

    def caption(row: dict, image: bytes) -> str:
        text = row.get("prompt")
        if isinstance(text, str) and text:
            return text
        if fallback is None:
            raise ValueError(f"image {row.get('image_id')} has no prompt: set jiang_pairs.regenerate.captioner")
        return fallback(row, image)

    return caption


# ------------------------------------------------------------------------ metrics ----


def pair_rows(gen_a, gen_b, scores, threshold: float, classes) -> list[dict]:
    """Table II rows from scored records (generator of side a, generator of side b, score): one per
    unordered generator pair of `classes` (A <= B) and one `all` row. Positive = same generator."""
    ga, gb, scores = np.asarray(gen_a, dtype=object), np.asarray(gen_b, dtype=object), np.asarray(scores, dtype=float)
    same = ga == gb
    rows = []
    for i, a in enumerate(classes):
        for b in classes[i:]:
            within = ((ga == a) & (gb == a)) | ((ga == b) & (gb == b))
            cross = ((ga == a) & (gb == b)) | ((ga == b) & (gb == a))
            mask = within | cross
            if mask.any():
                rows.append({"generator_a": a, "generator_b": b, **_row(scores[mask], same[mask], threshold)})
    if len(scores):
        rows.append({"generator_a": "all", "generator_b": "all", **_row(scores, same, threshold)})
    return rows


def _row(scores, same, threshold) -> dict:
    m = pair_metrics(scores, same, threshold)
    return {
        "TP": m["TP"],
        "FP": m["FP"],
        "FN": m["FN"],
        "TN": m["TN"],
        "recall": m["recall"],
        "precision": m["precision"],
        "F1": m["f1"],
        "accuracy": m["accuracy"],
        "AUC": m["auc"],
        "n_pairs": int(len(scores)),
        "threshold": threshold,
    }


# ---------------------------------------------------------------------- the table ----


def _sample_queries(test: pd.DataFrame, per_class: int, seed: int) -> pd.DataFrame:
    picks = []
    for k, (_, rows) in enumerate(test.sort_values("image_id").groupby("generator", sort=True)):
        rng = np.random.default_rng([seed, k])
        picks.append(rows.iloc[np.sort(rng.permutation(len(rows))[:per_class])])
    return pd.concat(picks).reset_index(drop=True) if picks else test.iloc[:0]


class _References:
    """Reference renders, one per (suspect, caption), delivered like the bench images and shared
    by every encoder evaluated in the same job (each suspect's model loads once)."""

    def __init__(self, cfg: dict):
        self.cfg, self.renderers, self.cache = cfg, {}, {}

    def __call__(self, suspect: str, caption: str) -> bytes:

        key = (suspect, caption)
        if key not in self.cache:
            if suspect not in self.renderers:
                self.renderers[suspect] = backend_renderer(self.cfg, suspect)
            raw = self.renderers[suspect](caption)
            self.cache[key] = deliver_image(raw, self.cfg["delivery"])[0]
        return self.cache[key]


def evaluate_encoder(
    cfg: dict,
    index: pd.DataFrame,
    encoder: str,
    dataset: str,
    references: _References | None,
    runs: Path = RUNS,
    device: str = "cpu",
) -> list[dict]:
    """Table II rows (both modes) for one encoder run on one dataset view's test split."""
    model, meta = load_encoder(runs / encoder)
    model = model.to(device)
    threshold, size, bs = float(meta["pair_threshold"]), int(meta["input_size"]), int(meta["eval_batch_size"])
    seed = int(cfg["split"]["seed"])
    ds = select(index, dataset, cfg["datasets"][dataset], seed)
    test = ds[ds["split"] == "test"].sort_values(["generator", "image_id"]).reset_index(drop=True)
    classes = sorted(test["generator"].unique())
    images = load_images(test)
    emb = embed_pixels(model, pixels_of(test, images, size), bs, device)
    i, j, scores, _ = pair_scores(emb, test["generator"])
    gens = test["generator"].to_numpy(dtype=object)
    out = [{"mode": "pairs", **r} for r in pair_rows(gens[i], gens[j], scores, threshold, classes)]

    regen = (cfg.get("jiang_pairs") or {}).get("regenerate") or {}
    per_class = int(regen.get("queries_per_class", 0))
    if references is not None and per_class > 0:
        caption = captioner_for(regen.get("captioner"))
        queries = _sample_queries(test, per_class, seed)
        suspects = suspects_of(cfg)
        records = []
        with tqdm(total=len(queries) * len(suspects), desc=f"regenerate {encoder}", unit="pair") as bar:
            for q in queries.to_dict("records"):
                text = caption(q, images[q["image_id"]])
                for s in suspects:
                    res = verify_by_regeneration(
                        images[q["image_id"]], text, lambda c, s=s: references(s, c), model, threshold, input_size=size
                    )
                    records.append((q["generator"], s, res["score"]))
                    bar.update()
        qa, qs, sc = (list(x) for x in zip(*records))
        out += [
            {"mode": "regenerate", **r} for r in pair_rows(qa, qs, sc, threshold, sorted(set(classes) | set(suspects)))
        ]
    backbone = meta["attributor_spec"].get("model") or meta["attributor_spec"].get("backbone")
    return [{"encoder": encoder, "backbone": backbone, "dataset": dataset, "profile": cfg["profile"], **r} for r in out]


def write_jiang_pairs(
    cfg: dict, index_path: str | Path, csv_out: str | Path, png_out: str | Path, runs: Path = RUNS
) -> pd.DataFrame:
    spec = cfg.get("jiang_pairs")
    if not spec:
        raise KeyError("params has no jiang_pairs block (evaluations: [{encoder, dataset}])")
    index = pd.read_parquet(index_path)
    references = _References(cfg)
    device = cfg.get("training", {}).get("device", "cpu")
    rows = []
    for ev in spec["evaluations"]:
        if ev["encoder"] not in cfg["experiments"] or ev["dataset"] not in cfg["datasets"]:
            raise KeyError(f"jiang_pairs evaluation {ev}: unknown experiment or dataset")
        rows += evaluate_encoder(cfg, index, ev["encoder"], ev["dataset"], references, runs, device)
    df = pd.DataFrame(rows, columns=COLUMNS)
    with atomic_path(csv_out) as tmp:
        df.to_csv(tmp, index=False)
    plot_auc(df, png_out)
    return df


def plot_auc(df: pd.DataFrame, path: str | Path) -> Path:
    """AUC heatmap per generator pair: one panel per (encoder, dataset, mode)."""
    from matplotlib.figure import Figure

    panels = list(df.groupby(["encoder", "dataset", "mode"], sort=False))
    cols = min(3, max(1, len(panels)))
    nrows = math.ceil(len(panels) / cols) or 1
    fig = Figure(figsize=(4.6 * cols, 4.2 * nrows))
    axes = np.atleast_1d(fig.subplots(nrows, cols)).ravel()
    for ax, ((enc, ds, mode), d) in zip(axes, panels):
        d = d[d["generator_a"] != "all"]
        gens = sorted(set(d["generator_a"]) | set(d["generator_b"]))
        mat = np.full((len(gens), len(gens)), np.nan)
        for r in d.itertuples():
            a, b = gens.index(r.generator_a), gens.index(r.generator_b)
            mat[a, b] = mat[b, a] = r.AUC
        ax.imshow(mat, cmap="viridis", vmin=0.5, vmax=1.0)
        ax.set_xticks(range(len(gens)), gens, rotation=45, ha="right", fontsize=7)
        ax.set_yticks(range(len(gens)), gens, fontsize=7)
        overall = df[(df.encoder == enc) & (df.dataset == ds) & (df["mode"] == mode) & (df.generator_a == "all")]["AUC"]
        ax.set_title(
            f"{enc} / {ds} / {mode}\nAUC all pairs {overall.iloc[0]:.3f}" if len(overall) else f"{enc} / {ds} / {mode}",
            fontsize=9,
        )
        for a in range(len(gens)):
            for b in range(len(gens)):
                if np.isfinite(mat[a, b]):
                    ax.text(
                        b,
                        a,
                        f"{mat[a, b]:.2f}",
                        ha="center",
                        va="center",
                        fontsize=6,
                        color="white" if mat[a, b] < 0.75 else "black",
                    )
    for ax in axes[len(panels) :]:
        ax.axis("off")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    return Path(path)
