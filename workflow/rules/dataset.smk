rule split:
    input:
        PLAN.delivered_shards(),
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
