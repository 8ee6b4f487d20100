# One class index per generator (its delivered shards only): a split is a function of each prompt
# group and each class alone, so adding a class writes one new file and re-trains only the runs whose
# views read it (their inputs are class files, PLAN.train_inputs).
rule split_class:
    input:
        lambda wc: PLAN.delivered_shards(wc.generator),
    output:
        f"{DATA}/dataset/classes/{{generator}}.parquet",
    log:
        f"{LOGS}/dataset/split_{{generator}}.log",
    wildcard_constraints:
        generator="[^/]+",
    conda:
        ENV
    params:
        split=lambda wc: as_json(PLAN.class_split_config(wc.generator)),
    shell:
        "attribench split --generator {wildcards.generator} --out {output} {input} > {log} 2>&1"


# The whole benchmark index (reports, edits, the dataset summary), checked against every view.
rule split:
    input:
        PLAN.class_indexes(),
    output:
        f"{DATA}/dataset/index.parquet",
    log:
        f"{LOGS}/dataset/split.log",
    conda:
        ENV
    shell:
        "attribench index --out {output} {input} > {log} 2>&1"
