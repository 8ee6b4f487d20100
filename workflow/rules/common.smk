# Shared state: the resolved config and the job-input plan. Rules stay thin and call `attribench`.
import json
from pathlib import Path

from attribench.core import config as ab_config
from attribench.core import paths
from attribench.dag import (
    Plan,
    check_results_owner,
    content_spec,
    experiment_spec,
    move_aside,
    split_config,
    studies,
)

P = ab_config.resolve(config)  # profile overlay + schema check of the merged settings
# Content-addressed and never rewritten: a job reads the settings of the Snakemake start that scheduled
# it, whatever params.yaml says later. Passed to every job's shell (below), not as a param, so a new file name
# alone re-runs nothing; each rule's params carry the settings slice that decides re-runs.
CFG = str(ab_config.snapshot(P))
# Every job's shell gets it as ATTRIBENCH_CONFIG_JSON (read by `attribench`), set when the job's command is
# formatted by the Snakemake that schedules it, and not a rule param (a new snapshot name alone re-runs nothing).
shell.prefix(f"set -euo pipefail; export ATTRIBENCH_CONFIG_JSON={CFG}; ")
ENV = str(Path(workflow.basedir, "workflow/envs/attribench.yaml"))  # --sdm conda; ./setup.sh is the default
DATA = str(paths.data_root(P))  # per profile, so a paper run never overwrites the smoke data
LOGS = str(paths.logs(P))
PLAN = Plan(P)
REPORTS = PLAN.reports


def as_json(obj):
    """Rule params as canonical JSON: a change re-runs exactly the jobs whose settings changed."""
    return json.dumps(obj, sort_keys=True)


def on_gpu():
    return int(P.get("device", "cpu") != "cpu")
