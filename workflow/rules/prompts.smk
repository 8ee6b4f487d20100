rule prompts:
    output:
        f"{DATA}/prompts/{{source}}.parquet",
    params:
        cfg=CFG,
        spec=lambda wc: as_json(P["prompts"]["sources"][wc.source]),
    conda:
        ENV
    log:
        f"{LOGS}/prompts/{{source}}.log",
    shell:
        "attribench --config-json {params.cfg} prompts --source {wildcards.source} --out {output} > {log} 2>&1"
