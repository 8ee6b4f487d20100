# A local rule: creative prompts may come from the OpenAI chat API, which compute nodes cannot reach.
rule prompts:
    localrule: True
    output:
        f"{DATA}/prompts/{{source}}.parquet",
    params:
        spec=lambda wc: as_json(P["prompts"]["sources"][wc.source]),
    conda:
        ENV
    log:
        f"{LOGS}/prompts/{{source}}.log",
    shell:
        "attribench --config-json {CFG} prompts --source {wildcards.source} --out {output} > {log} 2>&1"
