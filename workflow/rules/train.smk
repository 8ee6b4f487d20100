# One job per named experiment; a table aggregates the runs it names, so `results/table2.csv`
# trains only what table 2 needs.
rule train:
    input:
        unpack(train_inputs),
    output:
        metrics="results/runs/{experiment}/metrics.json",
        model="results/runs/{experiment}/model.safetensors",
        predict="results/runs/{experiment}/predict.json",  # temperature, thresholds: `attribench predict`
        reliability=report("results/runs/{experiment}/reliability.png", caption="../report/reliability.rst",
                           category="Calibration", subcategory="{experiment}"),
    params:
        cfg=CFG,
        spec=lambda wc: as_json(experiment_spec(P, wc.experiment)),
    # All the cores to one training at a time: torch threads oversubscribed across parallel
    # jobs slow small models down many times over.
    threads: workflow.cores
    resources:
        gpu=lambda wc: int(experiment_spec(P, wc.experiment)["training"].get("device", "cpu") != "cpu"),
    conda:
        ENV
    log:
        f"{LOGS}/train/{{experiment}}.log",
    shell:
        "attribench --config-json {params.cfg} --threads {threads} train --experiment {wildcards.experiment} "
        "--index {input.index} --out results/runs/{wildcards.experiment} > {log} 2>&1"


rule table:
    input:
        lambda wc: [f"results/runs/{e}/metrics.json" for e in table_experiments(wc.table)],
    output:
        csv="results/{table}.csv",
        md="results/{table}.md",
        metrics="results/metrics/{table}.json",
    params:
        cfg=CFG,
    wildcard_constraints:
        table="|".join(sorted(t for t in P["tables"] if t.startswith("table") and t not in TABLES_WITH_OWN_RULE)),
    conda:
        ENV
    log:
        f"{LOGS}/tables/{{table}}.log",
    shell:
        "attribench --config-json {params.cfg} table --name {wildcards.table} --csv {output.csv} --md {output.md} "
        "--dvc-metrics {output.metrics} {input} > {log} 2>&1"


rule figure:
    input:
        index=f"{DATA}/dataset/index.parquet",
        metrics=lambda wc: [f"results/runs/{e}/metrics.json" for e in table_experiments(wc.figure)],
    output:
        csv="results/{figure}.csv",
        png="results/{figure}.png",
    params:
        cfg=CFG,
    wildcard_constraints:
        figure="fig[0-9]+_[a-z0-9_]+",
    conda:
        ENV
    log:
        f"{LOGS}/figures/{{figure}}.log",
    shell:
        "attribench --config-json {params.cfg} figure --name {wildcards.figure} --csv {output.csv} "
        "--png {output.png} --index {input.index} {input.metrics} > {log} 2>&1"
