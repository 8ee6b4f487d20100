import os


# One job per named experiment; a table aggregates the runs it names, so `results/table2.csv`
# trains only what table 2 needs.
rule train:
    input:
        unpack(lambda wc: PLAN.train_inputs(wc.experiment)),
    output:
        metrics="results/runs/{experiment}/metrics.json",
        model="results/runs/{experiment}/model.safetensors",
        predict="results/runs/{experiment}/predict.json",  # temperature, thresholds: `attribench predict`
        reliability=report(
            "results/runs/{experiment}/reliability.png",
            caption="../report/reliability.rst",
            category="Calibration",
            subcategory="{experiment}",
        ),
    log:
        f"{LOGS}/train/{{experiment}}.log",
    conda:
        ENV
    # All the cores to one training at a time: torch threads oversubscribed across parallel
    # jobs slow small models down many times over. Never more than this machine has (--cores 8 on 2
    # cores would reserve 8 and start 8 torch threads); the CLI gets exactly these.
    threads: min(workflow.cores, os.cpu_count() or 1)
    resources:
        gpu=lambda wc: int(experiment_spec(P, wc.experiment)["training"].get("device", "cpu") != "cpu"),
    params:
        spec=lambda wc: as_json(experiment_spec(P, wc.experiment)),
    shell:
        "attribench --threads {threads} train --experiment {wildcards.experiment} "
        "--index {input.index} --out results/runs/{wildcards.experiment} > {log} 2>&1"
