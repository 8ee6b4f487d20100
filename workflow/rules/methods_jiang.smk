# Jiang et al. 2024, Table II + Fig. 1: pair verification of the trained siamese encoders (the
# `train` rule fits them: kind jiang_siamese -> trainer supcon) per generator pair, plus the
# regenerate-and-compare flow that re-renders test queries' captions with each suspect generator.


rule jiang_pairs:
    input:
        unpack(jiang_pairs_inputs),
    output:
        csv="results/jiang_pairs.csv",
        png="results/jiang_pairs.png",
    params:
        spec=lambda wc: as_json(P.get("jiang_pairs")),
    threads: workflow.cores
    resources:
        gpu=int(P.get("device", "cpu") != "cpu"),
    conda:
        ENV
    log:
        f"{LOGS}/jiang_pairs.log",
    shell:
        "attribench --config-json {CFG} --threads {threads} jiang-pairs --index {input.index} "
        "--csv {output.csv} --png {output.png} > {log} 2>&1"
