# Offline real photos: the photographs that ship inside installed wheels, with captions we wrote.
rule sample_photos:
    output:
        directory("data/real/sample_photos"),
    log:
        f"{LOGS}/real/sample_photos.log",
    conda:
        ENV
    shell:
        "attribench sample-photos --out {output} > {log} 2>&1"
