# A local rule: creative prompts may come from the OpenAI chat API, which compute nodes cannot reach.
rule prompts:
    output:
        f"{DATA}/prompts/{{source}}.parquet",
    log:
        f"{LOGS}/prompts/{{source}}.log",
    localrule: True
    conda:
        ENV
    params:
        spec=lambda wc: as_json(P["prompts"]["sources"][wc.source]),
    shell:
        "attribench prompts --source {wildcards.source} --out {output} > {log} 2>&1"
