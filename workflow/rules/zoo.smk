# Tiny seeded diffusers pipelines of the real classes, saved with save_pretrained; the render rule
# loads them back through the same from_pretrained path the paper profile uses with hub ids.
# Training stages (zoo keys train_steps / resume_from / training) continue the previous stage.
rule build_zoo_model:
    input:
        unpack(lambda wc: PLAN.zoo_inputs(wc.name)),
    output:
        directory("models/zoo/{name}"),
    log:
        f"{LOGS}/zoo/{{name}}.log",
    conda:
        ENV
    params:
        spec=lambda wc: as_json(P["zoo"][wc.name]),
    shell:
        "attribench build-zoo --name {wildcards.name} --out {output} > {log} 2>&1"
