# Ju et al. 2022 (global + local fusion detection) and DeepFeatureX (Pontorno et al. 2024): their
# tables from the runs the `train` rule makes (params.yaml: ju_detection, deepfeaturex).


rule ju_detection:
    input:
        index=f"{DATA}/dataset/index.parquet",
        runs=lambda wc: report_runs("ju_detection"),
    output:
        csv="results/ju_detection.csv",
        png="results/ju_detection.png",
    params:
        spec=as_json([P.get("ju_detection"), P["delivery"]]),
    threads: workflow.cores
    conda:
        ENV
    log:
        f"{LOGS}/tables/ju_detection.log",
    shell:
        "attribench --config-json {CFG} --threads {threads} ju-detection --index {input.index} "
        "--csv {output.csv} --png {output.png} > {log} 2>&1"


rule deepfeaturex_table:
    input:
        index=f"{DATA}/dataset/index.parquet",
        runs=lambda wc: report_runs("deepfeaturex"),
    output:
        csv="results/deepfeaturex.csv",
        png="results/deepfeaturex.png",
    params:
        spec=as_json([P.get("deepfeaturex"), P["delivery"]]),
    threads: workflow.cores
    conda:
        ENV
    log:
        f"{LOGS}/tables/deepfeaturex.log",
    shell:
        "attribench --config-json {CFG} --threads {threads} deepfeaturex-table --index {input.index} "
        "--csv {output.csv} --png {output.png} > {log} 2>&1"
