# Shared state: the resolved config and the shard plan. Rules stay thin and call `attribench`.
import json
from pathlib import Path

from attribench import config as ab_config
from attribench.generators import get_backend
from attribench.render import content_spec

P = ab_config.resolve(config)  # profile overlay + schema check of the merged settings
CFG = str(ab_config.snapshot(P))  # every job reads the same resolved settings
ENV = str(Path(workflow.basedir, "workflow/envs/attribench.yaml"))  # --sdm conda; ./setup.sh is the default
DATA = f"data/{P['profile']}"  # per profile, so a paper run never overwrites the smoke data
LOGS = f"results/logs/{P['profile']}"
EXTERNAL = "data/external/"  # where users put data this workflow does not make


def as_json(obj):
    """Rule params as canonical JSON: a change re-runs exactly the jobs whose settings changed."""
    return json.dumps(obj, sort_keys=True)


def gen_spec(name):
    return P["generators"][name]


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


from attribench.experiments import experiment_spec, upstream_runs
from attribench.postedit import edit_targets


def table_experiments(table):
    if table not in P["tables"]:
        raise ValueError(f"table '{table}' is not in params.yaml tables (known: {sorted(P['tables'])})")
    return P["tables"][table]["experiments"]


def edit_inputs(wc):
    tool = P["post_editing"]["tools"][wc.tool]
    model = zoo_dir_for({"backend": "diffusers", **tool.get("transform", {})})
    return {"index": f"{DATA}/dataset/index.parquet", **({"model": model} if model else {})}


def report_runs(block):
    """The experiments a report block names (single names and lists), each a train-rule target."""
    b = P[block]
    names = [b[k] for k in ("detector", "attribution", "heldout", "experiment") if k in b] + list(b.get("bases", []))
    return [f"results/runs/{e}/metrics.json" for e in names]
