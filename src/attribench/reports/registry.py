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
from attribench.core.registry import Registry

# Output kinds and where they go (core.paths): csv/md/png beside each other in results/, DVC metrics JSON in
# results/metrics/, a folder of extra figures in results/<name>_<suffix>/.
OUTPUT_KINDS = ("csv", "md", "png", "metrics", "dir")


@dataclass
class ReportContext:
    """What a builder gets: the resolved config, the runs it declared, its other inputs, its output paths."""

    name: str
    cfg: dict
    runs: list[str]
    inputs: dict[str, list[str]]
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
    doc: str = ""
    dir_suffix: str = field(default="")

    def output_paths(self, cfg: dict | None = None) -> dict[str, Path]:
        return {kind: paths.report_output(self.name, kind, self.dir_suffix) for kind in self.outputs}


REPORTS = Registry("report")


def _no_runs(cfg: dict) -> list[str]:
    return []


def _index_only(cfg: dict) -> dict[str, list[str]]:
    return {"index": [str(paths.dataset_index(cfg))]}


def register_report(name: str, *, outputs: tuple[str, ...], runs: Callable[[dict], list[str]] = _no_runs,
                    inputs: Callable[[dict], dict[str, list[str]]] = _index_only, dir_suffix: str = ""):
    """Decorator for `build(ctx: ReportContext)`; `outputs` are kinds from OUTPUT_KINDS."""
    unknown = set(outputs) - set(OUTPUT_KINDS)
    if unknown or "csv" not in outputs:
        raise ValueError(f"report {name!r}: outputs {outputs} must include 'csv' and be among {OUTPUT_KINDS}")
    if "dir" in outputs and not dir_suffix:
        raise ValueError(f"report {name!r}: a 'dir' output needs dir_suffix")

    def deco(fn: Callable[[ReportContext], object]) -> Callable[[ReportContext], object]:
        REPORTS.register(name)(Report(name, fn, tuple(outputs), runs, inputs, (fn.__doc__ or "").strip(), dir_suffix))
        return fn

    return deco
