# Shared state: the resolved config and the shard plan. Rules stay thin and call `attribench`.
import json
from pathlib import Path

from attribench import config as ab_config
from attribench.generators import get_backend
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


from attribench.experiments import experiment_index, experiment_spec
from attribench.postedit import edit_targets


def table_experiments(table):
    if table not in P["tables"]:
        raise ValueError(f"table '{table}' is not in params.yaml tables (known: {sorted(P['tables'])})")
    return P["tables"][table]["experiments"]


def edit_inputs(wc):
    tool = P["post_editing"]["tools"][wc.tool]
    model = zoo_dir_for({"backend": "diffusers", **tool.get("transform", {})})
    return {"index": f"{DATA}/dataset/index.parquet", **({"model": model} if model else {})}


TABLES_WITH_OWN_RULE = {"table3"}  # table + figure in one job (workflow/rules/studies.smk)
