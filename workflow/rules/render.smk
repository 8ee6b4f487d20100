rule render:
    input:
        unpack(render_inputs),
    output:
        f"{DATA}/shards/raw/{{generator}}/{{chunk}}.parquet",
    params:
        cfg=CFG,
        spec=lambda wc: as_json(content_spec(gen_spec(wc.generator))),
        seed=lambda wc: P["seed"],
        prompts_per_job=lambda wc: prompts_per_job(gen_spec(wc.generator), P),  # chunk layout (params `throughput`)
        prompts=lambda wc, input: f"--prompts {input.prompts}" if "prompts" in input.keys() else "",
    threads: 1
    resources:
        gpu=lambda wc: int(gen_spec(wc.generator)["backend"] in ("diffusers", "gan") and P["device"] != "cpu"),
    conda:
        ENV
    log:
        f"{LOGS}/render/{{generator}}/{{chunk}}.log",
    shell:
        "attribench --config-json {params.cfg} --threads {threads} render --generator {wildcards.generator} --chunk {wildcards.chunk} {params.prompts} "
        "--out {output} > {log} 2>&1"


# Renders through a web API (DALL-E) need the network, which compute nodes lack: the same job as a
# local rule, run on the submitting (login) node.
API_GENERATORS = sorted(g for g, s in {**P["generators"], **STUDY_GENERATORS}.items() if s["backend"] == "openai")


use rule render as render_api with:
    wildcard_constraints:
        generator="|".join(API_GENERATORS) or "^$",
    resources:
        gpu=0,
    localrule: True


ruleorder: render_api > render


rule deliver:
    input:
        f"{DATA}/shards/raw/{{generator}}/{{chunk}}.parquet",
    output:
        f"{DATA}/shards/delivered/{{generator}}/{{chunk}}.parquet",
    params:
        cfg=CFG,
        policy=as_json(P["delivery"]),
    conda:
        ENV
    log:
        f"{LOGS}/deliver/{{generator}}/{{chunk}}.log",
    shell:
        "attribench --config-json {params.cfg} deliver --raw {input} --out {output} > {log} 2>&1"
