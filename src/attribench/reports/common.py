"""What reports share: the runs a params table names, loading finished runs, the test split of a view."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

from attribench.core import paths
from attribench.experiments.specs import transform_status


def experiment_runs(name: str) -> Callable[[dict], list[str]]:
    """`runs(cfg)` for a report whose experiments `params.yaml: tables.<name>` lists.

    Runs whose transform needs weights this machine lacks (or has no implementation) are left out; the
    report marks them instead of failing the whole target."""

    def runs(cfg: dict) -> list[str]:
        if name not in cfg["tables"]:
            raise KeyError(
                f"report '{name}' has no experiments: params.yaml tables.{name} is missing "
                f"(tables: {sorted(cfg['tables'])})"
            )
        return [e for e in cfg["tables"][name]["experiments"] if transform_status(cfg, e) == "ok"]

    return runs


def load_runs(metrics_files: list) -> list[dict]:
    """The finished runs a report reads, from their metrics.json files (its `runs` inputs)."""
    return [json.loads(Path(p).read_text()) for p in metrics_files]


def named_runs(block: str, keys: tuple[str, ...] = ("detector", "attribution", "heldout", "experiment")):
    """`runs(cfg)` for a report configured by a params block that names its runs by key (and `bases`)."""

    def runs(cfg: dict) -> list[str]:
        b = cfg.get(block)
        if not b:
            raise KeyError(f"params.yaml has no '{block}' block (profile {cfg['profile']})")
        return [b[k] for k in keys if k in b] + list(b.get("bases", []))

    return runs


def index_input(cfg: dict, **more: list[str]) -> dict[str, list[str]]:
    return {"index": [str(paths.dataset_index(cfg))], **more}
