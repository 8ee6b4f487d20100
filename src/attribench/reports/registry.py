"""The report registry: every table and figure is one entry (a leaf module; report modules register).

An entry declares what it reads — the experiments whose runs it aggregates (`runs(cfg)`) and any other
files (`inputs(cfg)`: the dataset index, edited shards, zoo models) — and which outputs it writes. One
generic Snakemake rule per entry is made from these declarations, so the DAG needs no report code to run:
declarations must stay cheap (no torch); the builder may import what it likes when it runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from attribench.core import paths
from attribench.core.registry import Registry, import_submodules

# Output kinds and where they go (core.paths): csv/md/png beside each other in results/, DVC metrics JSON in
# results/metrics/, a folder of extra figures in results/<name>_<suffix>/.
OUTPUT_KINDS = ("csv", "md", "png", "metrics", "dir")


@dataclass
class ReportContext:
    """What a builder gets: the resolved config, the runs it declared, its other inputs, its output paths."""

    name: str
    cfg: dict
    runs: list[str]  # experiment names
    inputs: dict[str, list[str]]  # "runs": their metrics.json files, then what the entry declares
    out: dict[str, Path]

    @property
    def index(self) -> Path:
        return Path(self.inputs["index"][0]) if self.inputs.get("index") else paths.dataset_index(self.cfg)


@dataclass(frozen=True)
class Report:
    name: str
    build: Callable[[ReportContext], object]
    outputs: tuple[str, ...]
    runs: Callable[[dict], list[str]]
    inputs: Callable[[dict], dict[str, list[str]]]
    settings: Callable[[dict], object]
    doc: str = ""
    dir_suffix: str = ""
    gpu: bool = False  # runs a model (predictions, transforms): a GPU job when the profile's device is one
    files: dict[str, str] = field(default_factory=dict)  # output kind -> a file name other than <name>.<kind>

    def output_paths(self) -> dict[str, Path]:
        return {
            kind: paths.RESULTS / self.files[kind]
            if kind in self.files
            else paths.report_output(self.name, kind, self.dir_suffix)
            for kind in self.outputs
        }


REPORTS = Registry("report")


def _no_runs(cfg: dict) -> list[str]:
    return []


def _index_only(cfg: dict) -> dict[str, list[str]]:
    return {"index": [str(paths.dataset_index(cfg))]}


def _table_settings(name: str) -> Callable[[dict], object]:
    return lambda cfg: (cfg.get("tables") or {}).get(name)


def register_report(
    name: str,
    *,
    outputs: tuple[str, ...],
    runs: Callable[[dict], list[str]] = _no_runs,
    inputs: Callable[[dict], dict[str, list[str]]] = _index_only,
    settings: Callable[[dict], object] | None = None,
    dir_suffix: str = "",
    gpu: bool = False,
    files: dict[str, str] | None = None,
):
    """Decorator for `build(ctx: ReportContext)`; `outputs` are kinds from OUTPUT_KINDS. `settings(cfg)` is the
    part of params that shapes the report (a change re-runs it; default: its `tables.<name>` entry)."""
    unknown = set(outputs) - set(OUTPUT_KINDS)
    if unknown or "csv" not in outputs:
        raise ValueError(f"report {name!r}: outputs {outputs} must include 'csv' and be among {OUTPUT_KINDS}")
    if "dir" in outputs and not dir_suffix:
        raise ValueError(f"report {name!r}: a 'dir' output needs dir_suffix")

    def deco(fn: Callable[[ReportContext], object]) -> Callable[[ReportContext], object]:
        REPORTS.register(name)(
            Report(
                name,
                fn,
                tuple(outputs),
                runs,
                inputs,
                settings or _table_settings(name),
                (fn.__doc__ or "").strip(),
                dir_suffix,
                gpu,
                dict(files or {}),
            )
        )
        return fn

    return deco


def build_report(
    name: str, cfg: dict, inputs: dict[str, list] | None = None, out: dict[str, Path] | None = None
) -> object:
    """Build one report: by default from the finished runs it declares into its own output files."""
    report = load_reports().lookup(name)
    if inputs is None:
        runs = report.runs(cfg)
        inputs = {"runs": [str(paths.run_metrics(e)) for e in runs], **report.inputs(cfg)}
    else:  # given files (tests, ad-hoc use): the runs are named by their metrics.json folders
        runs = [Path(p).parent.name for p in inputs.get("runs", [])]
    return report.build(ReportContext(name, cfg, runs, inputs, out or report.output_paths()))


def load_reports() -> Registry:
    """Import every report module of this package (each registers its entries) and return the registry.

    Discovered, not listed: adding a table or figure is one new module. Report modules keep torch and
    scikit-learn out of their top-level imports, so this is cheap enough for Snakemake's DAG build."""
    import_submodules("attribench.reports")
    return REPORTS
