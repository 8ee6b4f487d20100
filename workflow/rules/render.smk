rule render:
    input:
        unpack(lambda wc: PLAN.render_inputs(wc.generator, wc.chunk)),
    output:
        # update(): Snakemake keeps the previous shard while the job runs and restores it if the job fails
        # (e.g. `on_bad_file: stop`), so a failed import never destroys what was already built.
        update(f"{DATA}/shards/raw/{{generator}}/{{chunk}}.parquet"),
    log:
        f"{LOGS}/render/{{generator}}/{{chunk}}.log",
    conda:
        ENV
    threads: 1
    resources:
        gpu=lambda wc: int(PLAN.gen_spec(wc.generator)["backend"] in ("diffusers", "gan")) * on_gpu(),
    params:
        spec=lambda wc: as_json(PLAN.render_settings(wc.generator)),
        seed=lambda wc: P["seed"],
        prompts_per_job=lambda wc: PLAN.prompts_per_job(wc.generator),  # chunk layout (params `throughput`)
        prompts=lambda wc, input: f"--prompts {input.prompts}" if "prompts" in input.keys() else "",
    shell:
        "attribench --threads {threads} render --generator {wildcards.generator} --chunk {wildcards.chunk} {params.prompts} "
        "--out {output} > {log} 2>&1 && rc=0 || rc=$?; grep -h '^attribench: ' {log} >&2 || true; exit $rc"


# Renders through a web API (DALL-E) need the network, which compute nodes lack: the same job as a
# local rule, run on the submitting (login) node.
use rule render as render_api with:
    wildcard_constraints:
        generator="|".join(PLAN.api_generators()) or "^$",
    localrule: True
    resources:
        gpu=0,


ruleorder: render_api > render


# Skips and notes (odd images) are repeated on the console, not only in the job log.
rule deliver:
    input:
        f"{DATA}/shards/raw/{{generator}}/{{chunk}}.parquet",
    output:
        f"{DATA}/shards/delivered/{{generator}}/{{chunk}}.parquet",
    log:
        f"{LOGS}/deliver/{{generator}}/{{chunk}}.log",
    conda:
        ENV
    params:
        policy=as_json({**P["delivery"], "decode": P.get("decode")}),
    shell:
        "attribench deliver --raw {input} --out {output} > {log} 2>&1 && rc=0 || rc=$?; "
        "grep -h '^attribench: ' {log} >&2 || true; exit $rc"
