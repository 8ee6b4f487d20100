# Worked example of a custom generator rule: images from a closed tool (Midjourney, Photoshop
# Generative Fill, Magnific, ...) usually arrive as an exported zip archive. This rule unpacks
# `data/external/<name>.zip` into `data/imports/unzipped/<name>/`; the registry's `folder` backend
# then imports that folder like any other. To add such a generator:
#
#   1. drop the archive at data/external/my_tool.zip (optional captions.csv inside: file,caption)
#   2. add to params.yaml under profiles.<profile>.generators:
#        my_tool: {backend: folder, family: my_tool, source: imported, path: data/imports/unzipped/my_tool,
#                  captions: data/imports/unzipped/my_tool/captions.csv}
#
# Nothing else changes: render -> deliver -> split -> every table pick the new class up.


rule unpack_import_archive:
    input:
        "data/external/{name}.zip",
    output:
        directory("data/imports/unzipped/{name}"),
    log:
        f"{LOGS}/imports/{{name}}.log",
    conda:
        ENV
    shell:
        "python -m zipfile -e {input} {output} > {log} 2>&1"
