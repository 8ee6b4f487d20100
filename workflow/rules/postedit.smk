# Table 4: post-edited test images (inpainting per mask band, or imported external edits) attributed
# by a trained run.
rule edit_test_images:
    input:
        unpack(edit_inputs),
    output:
        f"{DATA}/edits/{{tool}}/{{band}}.parquet",
    params:
        cfg=CFG,
        spec=lambda wc: as_json([P["post_editing"], P["delivery"]]),
    threads: 1
    resources:
        gpu=int(P["device"] != "cpu"),  # SDXL inpainting
    conda:
        ENV
    log:
        f"{LOGS}/edits/{{tool}}/{{band}}.log",
    shell:
        "attribench --config-json {params.cfg} --threads {threads} edit --tool {wildcards.tool} "
        "--band {wildcards.band} --index {input.index} --out {output} > {log} 2>&1"


rule table4:
    input:
        index=f"{DATA}/dataset/index.parquet",
        run=lambda wc: f"results/runs/{P['post_editing']['experiment']}/metrics.json",
        edits=lambda wc: sorted(edit_targets(P).values()),
    output:
        csv="results/table4.csv",
        md="results/table4.md",
        confusions=directory("results/table4_confusion"),
    params:
        cfg=CFG,
        run=lambda wc: f"results/runs/{P['post_editing']['experiment']}",
    conda:
        ENV
    log:
        f"{LOGS}/tables/table4.log",
    shell:
        "attribench --config-json {params.cfg} table4 --index {input.index} --run {params.run} --csv {output.csv} "
        "--md {output.md} --confusion-dir {output.confusions} > {log} 2>&1"


rule robustness:
    input:
        index=f"{DATA}/dataset/index.parquet",
        run=lambda wc: f"results/runs/{P['robustness']['experiment']}/metrics.json",
        models=robustness_models,
    output:
        csv="results/robustness.csv",
        png="results/robustness.png",
    params:
        cfg=CFG,
        spec=as_json([P.get("robustness"), P["delivery"]]),
        run=lambda wc: f"results/runs/{P['robustness']['experiment']}",
    resources:
        gpu=int(P["device"] != "cpu"),  # SDEdit img2img + the attributor
    conda:
        ENV
    log:
        f"{LOGS}/tables/robustness.log",
    shell:
        "attribench --config-json {params.cfg} robustness --index {input.index} --run {params.run} "
        "--csv {output.csv} --png {output.png} > {log} 2>&1"
