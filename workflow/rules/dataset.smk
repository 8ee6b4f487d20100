rule split:
    input:
        PLAN.delivered_shards(),
    output:
        f"{DATA}/dataset/index.parquet",
    log:
        f"{LOGS}/dataset/split.log",
    conda:
        ENV
    params:
        split=as_json(P["split"]),
    shell:
        "attribench split --out {output} {input} > {log} 2>&1"
