"""Every caption in workflow/report/ renders in Snakemake's own report (Jinja + reStructuredText), and
the HTML opens in headless Chromium when Debian's `chromium` is installed."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CAPTIONS = sorted((REPO / "workflow" / "report").glob("*.rst"))
SNAKEFILE = """from pathlib import Path
NAMES = {names!r}
rule all:
    input: expand("results/{{name}}.csv", name=NAMES)
for _n in NAMES:
    rule:
        name: f"make_{{_n}}"
        output: report(f"results/{{_n}}.csv", caption=f"{captions}/{{_n}}.rst", category="Tables")
        shell: "printf 'a,n_classes,chance\\\\n1,8,0.125\\\\n' > {{output}}"
"""


def test_every_table_and_figure_has_a_caption():
    names = {p.stem for p in CAPTIONS}
    readme_outputs = {
        "table1",
        "table2",
        "table3",
        "table4",
        "table5",
        "table6",
        "table7",
        "robustness",
        "methods",
        "dataset_summary",
        "fig3_train_size",
        "fig6_perturbations",
        "fig7_representations",
        "fig9_gram_density",
        "fig15_resolution",
        "fig15_patches",
        "jiang_pairs",
        "ju_detection",
        "deepfeaturex",
        "openset",
        "reliability",
    }
    assert readme_outputs <= names
    for p in CAPTIONS:
        text = p.read_text()
        assert "chance" in text and "profile" in text.lower(), p.name


@pytest.mark.slow
def test_captions_build_a_snakemake_report(tmp_path):
    (tmp_path / "Snakefile").write_text(
        SNAKEFILE.format(names=[p.stem for p in CAPTIONS], captions=REPO / "workflow" / "report")
    )
    (tmp_path / "config.yaml").write_text("profile: smoke\n")
    snakemake = [sys.executable, "-m", "snakemake", "--configfile", "config.yaml"]
    subprocess.run([*snakemake, "--cores", "1", "-q"], cwd=tmp_path, check=True, capture_output=True)
    subprocess.run([*snakemake, "--report", "report.html"], cwd=tmp_path, check=True, capture_output=True)
    html = (tmp_path / "report.html").read_text()
    for p in CAPTIONS:
        assert f"{p.stem}.csv" in html
    assert 'Profile <tt class=\\"docutils literal\\">smoke' in html  # the Jinja in the captions rendered
    chromium = shutil.which("chromium")
    if chromium:
        shot = tmp_path / "report.png"
        subprocess.run(
            [
                chromium,
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--window-size=1200,900",
                "--virtual-time-budget=5000",
                f"--screenshot={shot}",
                (tmp_path / "report.html").as_uri(),
            ],
            check=True,
            capture_output=True,
            timeout=120,
        )
        assert shot.stat().st_size > 10_000
