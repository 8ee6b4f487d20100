# Shared state: the resolved config and the shard plan. Rules stay thin and call `attribench`.
import json
from pathlib import Path

from attribench import config as ab_config
from attribench.generators import get_backend
from attribench.generators.base import prompts_per_job
from attribench.render import content_spec
from attribench.studies import SEP, all_study_generators, split_config, studies

P = ab_config.resolve(config)  # profile overlay + schema check of the merged settings
CFG = str(ab_config.snapshot(P))  # every job reads the same resolved settings
ENV = str(Path(workflow.basedir, "workflow/envs/attribench.yaml"))  # --sdm conda; ./setup.sh is the default
DATA = f"data/{P['profile']}"  # per profile, so a paper run never overwrites the smoke data
LOGS = f"results/logs/{P['profile']}"
EXTERNAL = "data/external/"  # where users put data this workflow does not make


def as_json(obj):
    """Rule params as canonical JSON: a change re-runs exactly the jobs whose settings changed."""
    return json.dumps(obj, sort_keys=True)


# Hyperparameter-study classes (`<study>__<label>`): rendered and delivered by the same rules as every
# generator, but not part of the benchmark index (delivered_shards); each study has its own index.
STUDY_GENERATORS = all_study_generators(P)


def gen_spec(name):
    if name in P["generators"]:
        return P["generators"][name]
    if name in STUDY_GENERATORS:
        return STUDY_GENERATORS[name]
    raise ValueError(f"generator '{name}' is neither in params.yaml generators nor a hyperparameter-study class")


def study_delivered_shards(study):
    classes = [g for g in STUDY_GENERATORS if g.split(SEP, 1)[0] == study]
    return [f"{DATA}/shards/delivered/{g}/{c}.parquet" for g in classes for c in chunks_of(g)]


def zoo_inputs(wc):
    """A trained zoo stage needs its training images and the stage it resumes."""
    spec = P["zoo"][wc.name]
    inputs = {}
    if spec.get("training"):
        inputs["images"] = spec["training"]["images"]
    if spec.get("resume_from"):
        inputs["resume"] = f"models/zoo/{spec['resume_from']}"
    return inputs


def chunks_of(gen):
    return get_backend(gen_spec(gen)["backend"]).chunks(gen, gen_spec(gen), P)


def delivered_shards():
    return [f"{DATA}/shards/delivered/{g}/{c}.parquet" for g in P["generators"] for c in chunks_of(g)]


def zoo_dir_for(spec):
    """The zoo model a diffusers generator loads, if the project builds it (smoke)."""
    model = Path(spec.get("model", ""))
    if spec["backend"] == "diffusers" and model.parent == Path("models/zoo") and model.name in P["zoo"]:
        return str(model)
    return None


def render_inputs(wc):
    spec = gen_spec(wc.generator)
    inputs = {}
    if get_backend(spec["backend"]).prompt_driven:
        inputs["prompts"] = f"{DATA}/prompts/{wc.chunk.rsplit('-', 1)[0]}.parquet"
    if zoo_dir_for(spec):
        inputs["model"] = zoo_dir_for(spec)
    if spec["backend"] == "folder" and (Path(spec["path"]).exists() or not spec["path"].startswith(EXTERNAL)):
        # User data under data/external/ is checked when the job runs (clear error naming the folder),
        # so the paper DAG still dry-runs on a machine that does not hold it yet.
        inputs["folder"] = spec["path"]
    return inputs


from attribench.experiments import experiment_index, experiment_spec, transform_status, upstream_runs
from attribench.postedit import edit_targets
from attribench.methods.jiang_eval import suspects_of


def table_experiments(table):
    if table not in P["tables"]:
        raise ValueError(f"table '{table}' is not in params.yaml tables (known: {sorted(P['tables'])})")
    # Runs whose transform needs weights this machine lacks (or has no implementation) are left out;
    # the table marks them instead of failing the whole target.
    return [e for e in P["tables"][table]["experiments"] if transform_status(P, e) == "ok"]


def train_inputs(wc):
    spec = experiment_spec(P, wc.experiment)
    # the benchmark index, or a hyperparameter study's own index (experiment key `study`)
    inputs = {"index": experiment_index(P, wc.experiment)}
    # runs this attributor builds on (spec keys *_run / *_runs, e.g. DeepFeatureX's base models)
    inputs["upstream"] = [f"results/runs/{e}/metrics.json" for e in upstream_runs(spec["attributor"])]
    model = zoo_dir_for({"backend": "diffusers", **spec.get("transform", {})})  # e.g. SDEdit's zoo pipeline
    if model:
        inputs["model"] = model
    return inputs


def edit_inputs(wc):
    tool = P["post_editing"]["tools"][wc.tool]
    model = zoo_dir_for({"backend": "diffusers", **tool.get("transform", {})})
    return {"index": f"{DATA}/dataset/index.parquet", **({"model": model} if model else {})}


def robustness_models(wc):
    """Zoo pipelines a robustness perturbation runs (e.g. SDEdit's img2img in smoke)."""
    specs = [s for specs in P.get("robustness", {}).get("perturbations", {}).values() for s in specs]
    return sorted({m for m in (zoo_dir_for({"backend": "diffusers", **s}) for s in specs) if m})


def methods_table_runs(wc):
    entries = P["methods_table"]["entries"].values()
    names = [e["experiment"] for e in entries] + [e["heldout_experiment"] for e in entries if "heldout_experiment" in e]
    return [f"results/runs/{n}/metrics.json" for n in names]
# Jiang et al. Table II (methods_jiang.smk): the encoder runs it pairs, and the zoo models of the
# suspect generators the regenerate flow renders with.
def jiang_pairs_inputs(wc):
    spec = P.get("jiang_pairs") or {}
    encoders = sorted({ev["encoder"] for ev in spec.get("evaluations", [])})
    inputs = {
        "index": f"{DATA}/dataset/index.parquet",
        "runs": [f"results/runs/{e}/{f}" for e in encoders for f in ("metrics.json", "model.safetensors")],
    }
    if (spec.get("regenerate") or {}).get("queries_per_class", 0):
        inputs["zoo"] = sorted({z for g in suspects_of(P) if (z := zoo_dir_for(gen_spec(g)))})
    return inputs
def report_runs(block):
    """The experiments a report block names (single names and lists), each a train-rule target."""
    b = P[block]
    names = [b[k] for k in ("detector", "attribution", "heldout", "experiment") if k in b] + list(b.get("bases", []))
    return [f"results/runs/{e}/metrics.json" for e in names]
TABLES_WITH_OWN_RULE = {"table3"}  # table + figure in one job (workflow/rules/studies.smk)
