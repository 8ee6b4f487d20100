# Hub models of the chosen profile (params `hub_models`), for the login node: downloads every id at its
# pinned revision into models/hub (the cache every load reads); with everything present it verifies and
# does nothing. `snakemake fetch_models --config profile=paper`
localrules:
    fetch_models,


rule fetch_models:
    log:
        f"{LOGS}/fetch_models.log",
    conda:
        ENV
    params:
        pins=lambda wc: as_json(P.get("hub_models") or {}),
    shell:
        "attribench fetch-models 2>&1 | tee {log}"
