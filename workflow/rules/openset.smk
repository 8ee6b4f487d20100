# Temporary (issue 15) until the generic report rule lands: results/openset.{csv,png} from the `seen`
# twins of the methods-table entries; and `attribench predict` over a folder as a Snakemake target.


def openset_runs(wc):
    """The `seen` twins of the methods-table entries (reports.openset.seen_runs; no torch at DAG time)."""
    entries = P["methods_table"]["entries"].values()
    return [f"results/runs/{e['heldout_experiment']}/predict.json" for e in entries if e.get("heldout_experiment")]


rule openset:
    input:
        index=f"{DATA}/dataset/index.parquet",
        runs=openset_runs,
    output:
        csv=report("results/openset.csv", caption="../report/openset.rst", category="Open set"),
        png=report("results/openset.png", caption="../report/openset.rst", category="Open set"),
    params:
        cfg=CFG,
        spec=as_json([P.get("methods_table"), P.get("heldout_generators")]),
    threads: workflow.cores
    conda:
        ENV
    log:
        f"{LOGS}/tables/openset.log",
    shell:
        "attribench --config-json {params.cfg} --threads {threads} openset --index {input.index} "
        "--csv {output.csv} --png {output.png} > {log} 2>&1"


# `snakemake results/predict/<experiment>.jsonl --config predict_input=<folder>`: every image under the
# folder through the run; skipped files are listed in the log and do not fail the job (exit >= 100).
rule predict_folder:
    input:
        run="results/runs/{experiment}/predict.json",
        images=lambda wc: config.get("predict_input", "data/predict_input"),
    output:
        "results/predict/{experiment}.jsonl",
    threads: workflow.cores
    conda:
        ENV
    log:
        f"{LOGS}/predict/{{experiment}}.log",
    shell:
        "attribench --threads {threads} predict --run results/runs/{wildcards.experiment} --device cpu "
        "--out {output} {input.images} > {log} 2>&1 || [ $? -ge 100 ]"
