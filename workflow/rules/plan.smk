# The render plan of the chosen profile: params in, results/plan.csv out (no data needed).
localrules:
    plan,


rule plan:
    output:
        "results/plan.csv",
    log:
        f"{LOGS}/plan.log",
    conda:
        ENV
    params:
        settings=lambda wc: as_json(
            {k: P[k] for k in ("generators", "hyperparameter_studies", "prompts", "split", "datasets", "delivery")}
        ),
    shell:
        "attribench plan --out {output} > {log} 2>&1"
