rule render:
    input:
        unpack(render_inputs),
    output:
        f"{DATA}/shards/raw/{{generator}}/{{chunk}}.parquet",
    params:
        spec=lambda wc: as_json(content_spec(gen_spec(wc.generator))),
        seed=lambda wc: P["seed"],
        prompts=lambda wc, input: f"--prompts {input.prompts}" if "prompts" in input.keys() else "",
    threads: 1
    resources:
        gpu=lambda wc: int(gen_spec(wc.generator)["backend"] in ("diffusers", "gan") and P["device"] != "cpu"),
    conda:
        ENV
    log:
        f"{LOGS}/render/{{generator}}/{{chunk}}.log",
    shell:
        "attribench --config-json {CFG} --threads {threads} render --generator {wildcards.generator} --chunk {wildcards.chunk} {params.prompts} "
        "--out {output} > {log} 2>&1"


rule deliver:
    input:
        f"{DATA}/shards/raw/{{generator}}/{{chunk}}.parquet",
    output:
        f"{DATA}/shards/delivered/{{generator}}/{{chunk}}.parquet",
    params:
        policy=as_json(P["delivery"]),
    conda:
        ENV
    log:
        f"{LOGS}/deliver/{{generator}}/{{chunk}}.log",
    shell:
        "attribench --config-json {CFG} deliver --raw {input} --out {output} > {log} 2>&1"
