"""Jiang et al. on the bench: the supcon trainer (through run_experiment and the trainer registry),
Table II pair counts against a brute-force count, the Fig. 1 regenerate flow with a real tiny zoo
pipeline, and the frozen-encoder probe. (Eq. 1's hand-computed value: tests/test_methods.py.)"""

import json

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from attribench.models.attributors import build_attributor
from attribench.experiments.runs import run_experiment
from attribench.methods import jiang_eval as je
from attribench.methods import jiang_siamese as js
from attribench.methods import jiang_train as jt
from attribench.data.shards import encode_png, load_images, make_row, read_metadata, write_shard
from attribench.training.trainers import trainer_name

torch.set_num_threads(1)
COLOURS = {"red": (200, 50, 50), "green": (50, 180, 60), "blue": (50, 70, 200)}
TINY = {"model": "test_resnet", "embed_dim": 16, "temperature": 0.2, "prompts_per_batch": 4}


def _toy_image(gen: str, rng) -> bytes:
    img = np.clip(np.array(COLOURS[gen]) + rng.normal(0, 25, (20, 20, 3)), 0, 255).astype(np.uint8)
    return encode_png(Image.fromarray(img))


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    """Three 'generators' (noisy colours) rendering the same 24 prompts; prompt-disjoint splits."""
    root = tmp_path_factory.mktemp("jiang")
    rng = np.random.default_rng(0)
    rows = [
        make_row(
            _toy_image(g, rng),
            "png",
            generator=g,
            family=g,
            prompt=f"prompt {p}",
            prompt_id=f"p{p:02d}",
            prompt_source="natural",
        )
        for g in COLOURS
        for p in range(24)
    ]
    index = read_metadata([write_shard(rows, root / "toy.parquet")])
    index["split"] = np.where(index["prompt_id"] < "p12", "train", np.where(index["prompt_id"] < "p18", "val", "test"))
    index["in_benchmark"] = True
    index.to_parquet(root / "index.parquet")
    cfg = {
        "profile": "test",
        "seed": 0,
        "split": {"seed": 0},
        "delivery": {"size": 20, "format": "png"},
        "training": {
            "epochs": 3,
            "warmup_epochs": 0,
            "batch_size": 16,
            "lr": 3e-3,
            "min_lr": 1e-5,
            "weight_decay": 0.0,
            "input_size": 16,
            "seed": 0,
            "lr_step_epochs": 2,
            "lr_gamma": 0.5,
        },
        "attributors": {
            "enc": {"kind": "jiang_siamese", "spec": TINY},
            "probe": {"kind": "jiang_probe", "spec": {"encoder_run": "enc_all"}},
        },
        "datasets": {"all": {}},
        "experiments": {
            "enc_all": {"attributor": "enc", "train": "all"},
            "probe_all": {"attributor": "probe", "train": "all"},
        },
    }
    return root, index, cfg


@pytest.fixture(scope="module")
def encoder_run(toy):
    root, _, cfg = toy
    metrics = run_experiment(cfg, "enc_all", root / "index.parquet", root / "results/runs/enc_all", threads=1)
    return root / "results/runs/enc_all", metrics


def _loss_over_batches(model, index, images, spec) -> float:
    """Mean Eq. 1 loss over the train split's prompt-group batches, eval mode (no flips, fixed BN)."""
    train = index[index["split"] == "train"]
    classes = sorted(COLOURS)
    total = []
    model.eval()
    with torch.no_grad():
        for batch in js.make_prompt_groups(train, groups_per_batch=spec["prompts_per_batch"], min_sources=1, seed=1):
            emb = model.embed(js.normalise(jt.pixels_of(batch, images, 16)))
            labels = torch.tensor([classes.index(g) for g in batch["generator"]])
            total.append(js.supcon_loss(emb, labels, spec["temperature"]).item())
    return float(np.mean(total))


def test_supcon_training_lowers_the_loss_and_records_a_usable_run(toy, encoder_run):
    root, index, cfg = toy
    run, metrics = encoder_run
    assert trainer_name("jiang_siamese") == "supcon" and trainer_name("timm_scratch") == "cross_entropy"
    torch.manual_seed(0)  # the trainer builds the model right after this seed: the same start
    start = build_attributor("jiang_siamese", TINY, 3)
    trained, meta = js.load_encoder(run)
    images = load_images(index)
    before, after = _loss_over_batches(start, index, images, TINY), _loss_over_batches(trained, index, images, TINY)
    assert after < before, (before, after)
    # The run is an ordinary bench run: N-way metrics from the prototypes, threshold from val pairs.
    assert metrics["trainer"] == "supcon" and metrics["selection"] == "val_pair_auc"
    assert torch.allclose(trained.prototypes.norm(dim=1), torch.ones(3), atol=1e-5)
    assert meta["pair_threshold"] == metrics["pair_threshold"] and -1 <= meta["pair_threshold"] <= 1
    hist = pd.read_csv(run / "history.csv")
    assert metrics["best_val_pair_auc"] == pytest.approx(hist["val_pair_auc"].max())
    preds = pd.read_parquet(run / "predictions_all.parquet")
    assert len(preds) == 18 and {"p_red", "p_green", "p_blue"} <= set(preds.columns)
    assert metrics["test"]["all"]["accuracy"] == pytest.approx((preds.true_label == preds.pred_label).mean())


def test_pair_rows_match_a_brute_force_count():
    rng = np.random.default_rng(5)
    gens = np.array(["a"] * 5 + ["b"] * 4 + ["c"] * 3, dtype=object)
    emb = rng.normal(size=(len(gens), 6)) + (gens == "a")[:, None] * 1.5
    i, j, scores, same = jt.pair_scores(emb, gens)
    thr = 0.1
    rows = {
        (r["generator_a"], r["generator_b"]): r for r in je.pair_rows(gens[i], gens[j], scores, thr, ["a", "b", "c"])
    }
    e = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    for (a, b), row in rows.items():
        counts = {"TP": 0, "FP": 0, "FN": 0, "TN": 0}
        for p in range(len(gens)):
            for q in range(p + 1, len(gens)):
                if a != "all" and {gens[p], gens[q]} - {a, b}:
                    continue  # a pair outside (A, B)
                pos, pred = gens[p] == gens[q], float(e[p] @ e[q]) >= thr
                counts["TP" if pos and pred else "FN" if pos else "FP" if pred else "TN"] += 1
        assert {k: row[k] for k in counts} == counts, (a, b)
        assert row["n_pairs"] == sum(counts.values())
    assert rows[("all", "all")]["n_pairs"] == len(gens) * (len(gens) - 1) // 2
    assert rows[("a", "b")]["n_pairs"] == 10 + 6 + 20  # C(5,2) + C(4,2) a-a/b-b positives, 5x4 negatives
    assert np.isnan(rows[("a", "a")]["AUC"]) and rows[("a", "a")]["FP"] + rows[("a", "a")]["TN"] == 0


def test_regenerate_flow_with_a_real_tiny_zoo_pipeline(tmp_path):
    from attribench.data.zoo import save_zoo_model

    zoo = save_zoo_model("sd", tmp_path / "sd_tiny", seed=1)
    gen = {
        "backend": "diffusers",
        "family": "sd",
        "model": str(zoo),
        "pipeline": "StableDiffusionPipeline",
        "steps": 2,
        "guidance": 5.0,
        "width": 32,
        "height": 32,
    }
    cfg = {"seed": 0, "device": "cpu", "generators": {"sd_tiny": gen, "sd_other": {**gen, "steps": 3}}}
    torch.manual_seed(0)
    encoder = build_attributor("jiang_siamese", TINY, 2)
    render = js.backend_renderer(cfg, "sd_tiny")
    query = render("a red bus on a bridge")  # the suspect made it, with the seed it uses for this caption
    out = js.verify_by_regeneration(query, "a red bus on a bridge", render, encoder, threshold=0.999, input_size=32)
    assert out["reference"] == query and out["score"] == pytest.approx(1.0, abs=1e-5) and out["same_generator"]
    other = js.verify_by_regeneration(
        query, "a red bus on a bridge", js.backend_renderer(cfg, "sd_other"), encoder, threshold=0.999, input_size=32
    )
    assert other["reference"] != query and other["score"] < out["score"]


def test_jiang_pairs_table_both_modes(toy, encoder_run, monkeypatch):
    from attribench.data.generators import BACKENDS, Backend

    root, index, cfg = toy
    run, _ = encoder_run

    class Colours(Backend):  # a suspect generator that renders its colour, whatever the caption
        name = "toy_colour"

        def load(self, spec, device):
            return np.random.default_rng(1)

        def render(self, rng, gen, spec, items):
            return [{"image": _toy_image(gen, rng), "format": "png"} for _ in items]

    monkeypatch.setitem(BACKENDS, "toy_colour", Colours())
    cfg = {
        **cfg,
        "generators": {g: {"backend": "toy_colour", "family": g} for g in COLOURS},
        "jiang_pairs": {
            "evaluations": [{"encoder": "enc_all", "dataset": "all"}],
            "regenerate": {"queries_per_class": 2},
        },
    }
    df = je.write_jiang_pairs(cfg, root / "index.parquet", root / "pairs.csv", root / "pairs.png", runs=run.parent)
    assert list(df.columns) == je.COLUMNS and (root / "pairs.png").stat().st_size > 0
    overall = df[df.generator_a == "all"].set_index("mode")
    assert overall.loc["pairs", "n_pairs"] == 18 * 17 // 2  # every test pair
    assert overall.loc["regenerate", "n_pairs"] == 3 * 2 * 3  # classes x queries x suspects
    assert overall.loc["regenerate", "TP"] + overall.loc["regenerate", "FN"] == 3 * 2  # own generator only
    threshold = json.loads((run / "model.json").read_text())["pair_threshold"]
    assert (df["threshold"] == threshold).all()


def test_probe_freezes_the_trained_encoder(toy, encoder_run, monkeypatch):
    root, _, cfg = toy
    run, _ = encoder_run
    monkeypatch.chdir(root)  # `encoder_run: enc_all` resolves to results/runs/enc_all
    probe = build_attributor("jiang_probe", {"encoder_run": str(run)}, 3)
    assert not any(p.requires_grad for p in probe.encoder.parameters())
    assert all(p.requires_grad for p in probe.head.parameters())
    probe.train()
    assert not probe.encoder.training  # BatchNorm statistics stay as trained
    metrics = run_experiment(cfg, "probe_all", root / "index.parquet", root / "results/runs/probe_all", threads=1)
    assert metrics["test"]["all"]["n"] == 18 and "trainer" not in metrics  # plain cross-entropy run
    enc, probe_state = (
        load_file(run / "model.safetensors"),
        load_file(root / "results/runs/probe_all/model.safetensors"),
    )
    for k, v in enc.items():  # every encoder tensor (weights and BN running stats) is unchanged
        assert torch.equal(probe_state[f"encoder.{k}"], v), k
