# The methods table: every attributor named in params `methods_table` on the same splits, with its
# held-out-generator twin.
rule methods_table:
    input:
        index=f"{DATA}/dataset/index.parquet",
        runs=methods_table_runs,
    output:
        csv="results/methods.csv",
        png="results/methods.png",
    params:
        spec=as_json([P.get("methods_table"), P.get("heldout_generators"), P["delivery"]]),
    threads: workflow.cores
    conda:
        ENV
    log:
        f"{LOGS}/tables/methods.log",
    shell:
        "attribench --config-json {CFG} --threads {threads} methods --index {input.index} "
        "--csv {output.csv} --png {output.png} > {log} 2>&1"
