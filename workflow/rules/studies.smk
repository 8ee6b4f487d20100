# Hyperparameter studies (Xu et al. sec. 4.2): each study's classes are rendered and delivered by the
# ordinary rules; this splits them into the study's own index (Table 3 + Fig. 4 are a report).
rule study_split:
    input:
        lambda wc: PLAN.study_delivered_shards(wc.study),
    output:
        f"{DATA}/studies/{{study}}/index.parquet",
    log:
        f"{LOGS}/studies/{{study}}/split.log",
    wildcard_constraints:
        study="|".join(sorted(studies(P))) or "^$",
    conda:
        ENV
    params:
        split=lambda wc: as_json(split_config(P, wc.study)),
    shell:
        "attribench split --study {wildcards.study} --out {output} {input} > {log} 2>&1"
