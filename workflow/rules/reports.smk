import os

# Every table and figure is one entry of the report registry (src/attribench/reports): one generic rule,
# instantiated per entry, whose inputs are the runs and files the entry declares and whose outputs are
# the files it writes. `snakemake results/table2.csv` trains only what table 2 reads.
CAPTIONS = Path(workflow.basedir, "workflow/report")


def report_output(name, kind, path):
    """A table or figure appears in `snakemake --report` with its caption (workflow/report/<name>.rst)."""
    if kind == "dir":
        return directory(path)
    if kind in ("csv", "png") and (CAPTIONS / f"{name}.rst").exists():
        category = "Figures" if name.startswith("fig") else "Tables"
        return report(path, caption=str(CAPTIONS / f"{name}.rst"), category=category)
    return path


for _name, _report in sorted(REPORTS.items()):

    rule:
        name:
            f"report_{_name}"
        input:
            unpack(lambda wc, name=_name: PLAN.report_inputs(name)),
        output:
            **{kind: report_output(_name, kind, path) for kind, path in PLAN.report_outputs(_name).items()},
        log:
            f"{LOGS}/reports/{_name}.log",
        conda:
            ENV
        threads: min(workflow.cores, os.cpu_count() or 1) if _report.gpu else 1
        resources:
            gpu=on_gpu() if _report.gpu else 0,
        params:
            # the name as a param, not in the shell string: Snakemake formats the shell command when the
            # job runs, after this loop has moved on
            name=_name,
            settings=lambda wc, name=_name: as_json(REPORTS[name].settings(P)),
        shell:
            "attribench --threads {threads} report {params.name} > {log} 2>&1"
