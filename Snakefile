# attribench — Snakemake entry point.
#   snakemake --cores 8 results/dataset_summary.csv            (offline smoke profile)
#   snakemake --cores 8 results/table1.csv --config profile=paper
import sys

from snakemake.utils import min_version, validate

min_version("9.0")


configfile: "params.yaml"


# One build per working directory: a second one stops here, naming the running one (attribench.core.builds);
# a dry run meanwhile gets a note instead.
from attribench.core.builds import guard as build_guard, is_dry_run, is_info_only

_busy = build_guard() if workflow.is_main_process else None
if _busy:
    logger.warning(_busy)

# Stop before any job if params.yaml is malformed. Our check first: it names the dotted key path
# (profiles.smoke.generators.sd_tiny.guidnce); then snakemake's own validation of the same schema.
from attribench.core.config import typed_overrides, validate as check_params

typed_overrides(config, workflow.config_settings.config)  # nested --config values arrive as strings
check_params(config)
validate(config, "workflow/schemas/params.schema.yaml", set_default=False)


include: "workflow/rules/common.smk"
include: "workflow/rules/prompts.smk"
include: "workflow/rules/zoo.smk"
include: "workflow/rules/real.smk"
include: "workflow/rules/render.smk"
include: "workflow/rules/dataset.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/postedit.smk"
include: "workflow/rules/studies.smk"
include: "workflow/rules/reports.smk"
include: "workflow/rules/predict.smk"
include: "workflow/rules/plan.smk"
include: "workflow/rules/hub.smk"


# A run directory or shard deleted after what it fed was built: Snakemake alone would say "Nothing to be
# done". Such outputs are moved aside (.snakemake/attribench/stale/), so this build makes them again.
if workflow.is_main_process and not _busy and not is_info_only(sys.argv):
    move_aside(PLAN.stale_outputs())
    # Another profile's trained runs are never written over (results/ is shared by the profiles).
    _foreign = check_results_owner(PLAN, dry_run=is_dry_run(sys.argv))
    if _foreign:
        logger.warning(_foreign)


# Custom generator rules: one file per generator that the registry's backends cannot express.
for _rule_file in sorted(Path(workflow.basedir, "workflow/rules/generators").glob("*.smk")):

    include: _rule_file


# Every table and figure the report registry holds.
rule all:
    default_target: True
    input:
        PLAN.all_report_outputs(),
