"""Hyperparameter studies (Xu et al. Table 3 + Fig. 4): one varied key per study, real tiny pipelines."""

import hashlib
import json

import numpy as np
import pandas as pd
import pytest
import torch

diffusers = pytest.importorskip("diffusers")
from attribench.core import config  # noqa: E402
from attribench.experiments.runs import experiment_index, experiment_spec  # noqa: E402
from attribench.data.generators import get_backend  # noqa: E402
from attribench.data.generators.base import RenderItem  # noqa: E402
from attribench.data.zoo import save_zoo_model  # noqa: E402
from attribench.data.prompts import write_prompts  # noqa: E402
from attribench.core.hp_studies import SEP, generator_spec, split_config, studies, study_classes  # noqa: E402
from attribench.reports.registry import build_report  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:__array:DeprecationWarning")


@pytest.fixture(scope="module", autouse=True)
def _one_thread(one_torch_thread):
    yield


@pytest.fixture(scope="module")
def cfgs(repo):
    return {p: config.load(repo / "params.yaml", {"profile": p}) for p in ("smoke", "paper")}


@pytest.fixture(scope="module")
def sd_dir(tmp_path_factory):
    return save_zoo_model("sd", tmp_path_factory.mktemp("zoo") / "sd", seed=1)


@pytest.fixture(scope="module")
def natural_prompts(tmp_path_factory, cfgs):
    path = tmp_path_factory.mktemp("prompts") / "natural.parquet"
    write_prompts("natural", cfgs["smoke"]["prompts"]["sources"]["natural"], path)
    return path


def _items(n=2, seed_fn=lambda i: i):
    return [
        RenderItem(key=f"p{i}:0", prompt=p, prompt_id=f"p{i}", prompt_source="natural", image_index=0, seed=seed_fn(i))
        for i, p in enumerate(["a photo of a red cat", "a blue car on the street at night"][:n])
    ]


# ------------------------------------------------------------------ expansion ----


@pytest.mark.parametrize("profile", ["smoke", "paper"])
def test_classes_differ_from_base_only_in_the_varied_key(cfgs, profile):
    cfg = cfgs[profile]
    assert {"checkpoints", "schedulers", "steps_sd", "steps_sdxl", "seeds_sd", "seeds_sdxl"} <= set(studies(cfg))
    for name, st in studies(cfg).items():
        classes = study_classes(cfg, name)
        assert len(classes) == len(st["values"]) and all(c.startswith(name + SEP) for c in classes)
        assert not set(classes) & set(cfg["generators"])  # never part of the benchmark index
        base = config.deep_merge(cfg["generators"][st["base"]], st.get("spec") or {})
        assert [c[st["vary"]] for c in classes.values()] == st["values"]
        for cls, spec in classes.items():
            assert {k: v for k, v in spec.items() if k != st["vary"]} == {
                k: v for k, v in base.items() if k != st["vary"]
            }
            assert generator_spec(cfg, cls) == spec
        assert split_config(cfg, name)["counts"] == (st.get("split") or {}).get("counts", cfg["split"]["counts"])


def test_study_experiments_read_their_own_index_and_hash_the_study(cfgs):
    cfg = cfgs["smoke"]
    hp = [e for e in cfg["tables"]["table3"]["experiments"]]
    specs = [experiment_spec(cfg, e) for e in hp]
    assert sorted(s["study"]["name"] for s in specs) == sorted(studies(cfg))
    assert len({tuple(experiment_index(cfg, e)) for e in hp}) == len(hp)
    assert all(
        experiment_index(cfg, e) == [f"data/smoke/studies/{s['study']['name']}/index.parquet"]
        for e, s in zip(hp, specs)
    )
    assert "study" not in experiment_spec(cfg, "ef_all")  # benchmark runs keep their params hash
    # a benchmark run reads the class index of each generator its views hold
    assert experiment_index(cfg, "ef_all") == [
        f"data/smoke/dataset/classes/{g}.parquet" for g in sorted(cfg["generators"])
    ]


def test_bad_study_or_stage_is_named(repo):
    with pytest.raises(config.ConfigError, match="hyperparameter_studies.seeds_sd.base"):
        config.load(
            repo / "params.yaml",
            {"profiles": {"smoke": {"hyperparameter_studies": {"seeds_sd": {"base": "no_such_gen"}}}}},
        )
    with pytest.raises(config.ConfigError, match="hyperparameter_studies.steps_sd.*steps"):
        config.load(
            repo / "params.yaml", {"profiles": {"smoke": {"hyperparameter_studies": {"steps_sd": {"values": [0, 5]}}}}}
        )
    with pytest.raises(config.ConfigError, match="zoo.sd_ckpt2.resume_from"):
        config.load(repo / "params.yaml", {"profiles": {"smoke": {"zoo": {"sd_ckpt2": {"train_steps": 50}}}}})


# ------------------------------------------------------------------ schedulers ----


def test_scheduler_list_really_changes_the_scheduler_class(cfgs, sd_dir):
    cfg = cfgs["smoke"]
    st = studies(cfg)["schedulers"]
    assert len(set(st["values"])) == 8
    backend = get_backend("diffusers")
    pngs = {}
    for cls, spec in study_classes(cfg, "schedulers").items():
        spec = {**spec, "model": str(sd_dir), "steps": 4}
        pipe = backend.load(spec, "cpu")
        assert type(pipe.scheduler).__name__ == spec["scheduler"]
        (row,) = backend.render(pipe, cls, spec, _items(1))
        assert row["scheduler"] == spec["scheduler"]  # the recorded column names the class really used
        pngs[cls] = row["image"]
    assert len(set(pngs.values())) == len(pngs)  # same noise and prompt, different sampler -> different image


# ------------------------------------------------------------------ seeds ----


def test_fixed_seed_is_the_class(cfgs, natural_prompts, sd_dir):
    cfg = cfgs["smoke"]
    backend = get_backend("diffusers")
    classes = study_classes(cfg, "seeds_sd")
    (chunk,) = backend.chunks("seeds_sd__1", classes["seeds_sd__1"], cfg)
    items = {c: backend.items(c, s, chunk, cfg, str(natural_prompts)) for c, s in classes.items()}
    for cls, its in items.items():
        assert len(its) == classes[cls]["max_prompts"] and {i.seed for i in its} == {classes[cls]["fixed_seed"]}
    base = backend.items("sd_tiny", cfg["generators"]["sd_tiny"], chunk, cfg, str(natural_prompts))
    assert len({i.seed for i in base}) == len(base)  # the benchmark keeps per-image seeds

    # The initial latents the pipeline really draws: identical across prompts within a class, not across.
    pipe = backend.load({**classes["seeds_sd__1"], "model": str(sd_dir)}, "cpu")
    drawn = []
    original = pipe.prepare_latents
    pipe.prepare_latents = lambda *a, **k: drawn.append(original(*a, **k).clone()) or drawn[-1]
    latents = {}
    for cls in ("seeds_sd__1", "seeds_sd__2"):
        drawn.clear()
        backend.render(pipe, cls, {**classes[cls], "model": str(sd_dir), "steps": 4}, items[cls][:2])
        (lat,) = drawn
        assert torch.equal(lat[0], lat[1])
        latents[cls] = lat[0]
    assert not torch.equal(latents["seeds_sd__1"], latents["seeds_sd__2"])


# ------------------------------------------------------------------ checkpoints ----


def _unet_hash(d):
    return hashlib.sha256((d / "unet" / "diffusion_pytorch_model.safetensors").read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    from PIL import Image
    from skimage import data

    d = tmp_path_factory.mktemp("photos")
    caps = {
        "astronaut": "an astronaut in front of a flag",
        "chelsea": "a cat looking to the side",
        "coffee": "a cup of coffee",
    }
    for name in caps:
        Image.fromarray(getattr(data, name)()).save(d / f"{name}.png")
    (d / "captions.csv").write_text("file,caption\n" + "".join(f"{n}.png,{c}\n" for n, c in caps.items()))
    return d


def test_checkpoint_stages_continue_each_other(tmp_path, photos, sd_dir):
    tr = {"images": str(photos), "lr": 1e-3, "batch_size": 4, "caption_dropout": 0.1}
    s1 = save_zoo_model("sd", tmp_path / "s1", seed=1, train_steps=3, training=tr)
    s2 = save_zoo_model("sd", tmp_path / "s2", seed=1, train_steps=6, training=tr, resume_from=s1)
    direct = save_zoo_model("sd", tmp_path / "direct", seed=1, train_steps=6, training=tr)
    hashes = [_unet_hash(d) for d in (sd_dir, s1, s2)]
    assert len(set(hashes)) == 3  # init (= sd_tiny's seed) != stage 1 != stage 2
    assert _unet_hash(direct) == hashes[2]  # stage 2 really continues stage 1 (weights + optimizer state)
    log = json.loads((s2 / "training.json").read_text())
    assert log["steps"] == 6 and log["resumed_from_step"] == 3 and len(log["losses"]) == 6
    assert log["losses"][:3] == json.loads((s1 / "training.json").read_text())["losses"]
    assert all(np.isfinite(log["losses"]))
    # Only the denoiser trains: VAE and text encoder stay the init's.
    for part in ("vae", "text_encoder"):
        f = next((sd_dir / part).glob("*.safetensors")).name
        assert (s2 / part / f).read_bytes() == (sd_dir / part / f).read_bytes()
    # A stage cannot continue one trained with other settings.
    with pytest.raises(ValueError, match="cannot continue"):
        save_zoo_model("sd", tmp_path / "bad", seed=1, train_steps=6, training={**tr, "lr": 5e-4}, resume_from=s1)
    # ... and renders through the ordinary backend differ by stage.
    backend = get_backend("diffusers")
    spec = {
        "backend": "diffusers",
        "family": "sd",
        "pipeline": "StableDiffusionPipeline",
        "steps": 4,
        "guidance": 5.0,
        "width": 64,
        "height": 64,
    }
    imgs = [
        backend.render(backend.load({**spec, "model": str(d)}, "cpu"), "x", {**spec, "model": str(d)}, _items(1))[0]
        for d in (sd_dir, s1, s2)
    ]
    assert len({r["image"] for r in imgs}) == 3 and [r["checkpoint"] for r in imgs] == [str(sd_dir), str(s1), str(s2)]


def test_smoke_checkpoint_values_are_a_chain_of_zoo_stages(cfgs):
    cfg = cfgs["smoke"]
    names = [v.rsplit("/", 1)[1] for v in studies(cfg)["checkpoints"]["values"]]
    stages = [cfg["zoo"][n] for n in names]
    assert [s["train_steps"] for s in stages] == sorted({s["train_steps"] for s in stages})
    assert [s.get("resume_from") for s in stages] == [None, *names[:-1]]
    assert len({json.dumps([s["family"], s["seed"], s["training"]]) for s in stages}) == 1
    base = cfg["generators"][studies(cfg)["checkpoints"]["base"]]
    assert (stages[0]["family"], stages[0]["seed"]) == (cfg["zoo"]["sd_tiny"]["family"], cfg["zoo"]["sd_tiny"]["seed"])
    assert base["model"] == "models/zoo/sd_tiny"


# ------------------------------------------------------------------ table 3 ----


def test_table3_reports_chance_per_study_and_draws_fig4(tmp_path, cfgs):
    cfg = cfgs["smoke"]
    paths = []
    rng = np.random.default_rng(0)
    for e in cfg["tables"]["table3"]["experiments"]:
        spec = experiment_spec(cfg, e)
        classes = spec["study"]["classes"]
        k = len(classes)
        cm = rng.integers(0, 5, (k, k)) + np.eye(k, dtype=int) * 10
        acc = float(np.trace(cm) / cm.sum())
        m = {
            "experiment": e,
            "profile": "smoke",
            "attributor_label": "EF",
            "model": "m",
            "input_size": 64,
            "classes": classes,
            "n_classes": k,
            "chance": 1 / k,
            "n_train": 60 * k,
            "epochs": 3,
            "study": spec["study"],
            "train_dataset": "all",
            "test": {
                "all": {
                    "accuracy": acc,
                    "accuracy_ci95": [acc - 0.05, acc + 0.05],
                    "macro_f1": acc,
                    "macro_precision": acc,
                    "macro_recall": acc,
                    "confusion_matrix": cm.tolist(),
                    "n": int(cm.sum()),
                }
            },
        }
        paths.append(tmp_path / f"{e}.json")
        paths[-1].write_text(json.dumps(m))
    out = {
        "csv": tmp_path / "t3.csv",
        "md": tmp_path / "t3.md",
        "metrics": tmp_path / "t3.json",
        "png": tmp_path / "t3.png",
    }
    df = build_report("table3", cfg, inputs={"runs": paths}, out=out)
    csv = pd.read_csv(tmp_path / "t3.csv")
    assert list(csv.study) == [experiment_spec(cfg, e)["study"]["name"] for e in cfg["tables"]["table3"]["experiments"]]
    assert np.allclose(csv.chance, 1 / csv.n_classes) and set(csv.varied) == {
        "model",
        "scheduler",
        "steps",
        "fixed_seed",
    }
    assert {
        "architecture",
        "accuracy_ci95_lo",
        "accuracy_ci95_hi",
        "macro_f1",
        "n_test",
        "attributor",
        "profile",
    } <= set(csv.columns)
    md = (tmp_path / "t3.md").read_text()
    assert "random chance" in md and f"{100 / 8:.2f}" in md  # 8 schedulers
    assert (tmp_path / "t3.png").read_bytes()[:4] == b"\x89PNG" and len(df) == len(paths)
