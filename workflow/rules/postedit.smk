# Post-edited test images for Table 4 (inpainting per mask band, or imported external edits); the
# table itself is a report (workflow/rules/reports.smk).
rule edit_test_images:
    input:
        unpack(lambda wc: PLAN.edit_inputs(wc.tool)),
    output:
        f"{DATA}/edits/{{tool}}/{{band}}.parquet",
    log:
        f"{LOGS}/edits/{{tool}}/{{band}}.log",
    conda:
        ENV
    threads: 1
    resources:
        gpu=on_gpu(),  # inpainting runs a diffusion model (SDXL inpainting in the paper profile)
    params:
        spec=lambda wc: as_json([P["post_editing"], P["delivery"]]),
    shell:
        "attribench --threads {threads} edit --tool {wildcards.tool} "
        "--band {wildcards.band} --index {input.index} --out {output} > {log} 2>&1"
