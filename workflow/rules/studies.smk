# Hyperparameter studies (Xu et al. sec. 4.2): each study's classes are rendered and delivered by the
# ordinary rules; this splits them into the study's own index and builds Table 3 + Fig. 4.
rule study_split:
    input:
        lambda wc: study_delivered_shards(wc.study),
    output:
        f"{DATA}/studies/{{study}}/index.parquet",
    params:
        split=lambda wc: as_json(split_config(P, wc.study)),
    wildcard_constraints:
        study="|".join(sorted(studies(P))) or "^$",
    conda:
        ENV
    log:
        f"{LOGS}/studies/{{study}}/split.log",
    shell:
        "attribench --config-json {CFG} split --study {wildcards.study} --out {output} {input} > {log} 2>&1"


rule table3:
    input:
        lambda wc: [f"results/runs/{e}/metrics.json" for e in table_experiments("table3")],
    output:
        csv="results/table3.csv",
        md="results/table3.md",
        metrics="results/metrics/table3.json",
        png="results/table3_confusion.png",
    conda:
        ENV
    log:
        f"{LOGS}/tables/table3.log",
    shell:
        "attribench --config-json {CFG} table --name table3 --csv {output.csv} --md {output.md} "
        "--dvc-metrics {output.metrics} --png {output.png} {input} > {log} 2>&1"
