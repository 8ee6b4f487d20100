# `snakemake results/predict/<experiment>.jsonl --config predict_input=<folder>`: every image under the
# folder through the run; skipped files are listed in the log and do not fail the job (exit >= 100).
rule predict_folder:
    input:
        run="results/runs/{experiment}/predict.json",
        images=lambda wc: config.get("predict_input", "data/predict_input"),
    output:
        "results/predict/{experiment}.jsonl",
    log:
        f"{LOGS}/predict/{{experiment}}.log",
    conda:
        ENV
    threads: workflow.cores
    shell:
        "attribench --threads {threads} predict --run results/runs/{wildcards.experiment} --device cpu "
        "--out {output} {input.images} > {log} 2>&1 || [ $? -ge 100 ]"
