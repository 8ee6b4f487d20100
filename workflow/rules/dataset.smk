rule split:
    input:
        delivered_shards(),
    output:
        f"{DATA}/dataset/index.parquet",
    params:
        split=as_json(P["split"]),
    conda:
        ENV
    log:
        f"{LOGS}/dataset/split.log",
    shell:
        "attribench --config-json {CFG} split --out {output} {input} > {log} 2>&1"


rule dataset_summary:
    input:
        f"{DATA}/dataset/index.parquet",
    output:
        csv="results/dataset_summary.csv",
        montage="results/dataset_montage.png",
    conda:
        ENV
    log:
        f"{LOGS}/dataset/summary.log",
    shell:
        "attribench --config-json {CFG} summary --index {input} --csv {output.csv} --montage {output.montage} > {log} 2>&1"
