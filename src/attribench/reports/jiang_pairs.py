"""Jiang et al. 2024 Table II as a report: pair verification per generator pair, on all test pairs and by
the Fig. 1 regenerate-and-compare flow (the evaluation itself: `methods.jiang_eval`)."""

from __future__ import annotations

import pandas as pd

from attribench.core import paths
from attribench.data.generators.base import suspects_of
from attribench.reports.common import index_input
from attribench.reports.registry import ReportContext, register_report


def _jiang_runs(cfg: dict) -> list[str]:
    return sorted({ev["encoder"] for ev in (cfg.get("jiang_pairs") or {}).get("evaluations", [])})


def _jiang_inputs(cfg: dict) -> dict[str, list[str]]:
    """The encoders' weights, and the zoo models of the suspect generators the regenerate flow renders with."""
    spec = cfg.get("jiang_pairs") or {}
    more = {"weights": [str(paths.run_model(e)) for e in _jiang_runs(cfg)]}
    if (spec.get("regenerate") or {}).get("queries_per_class", 0):
        more["zoo"] = sorted({z for g in suspects_of(cfg) if (z := paths.zoo_model_dir(cfg, cfg["generators"][g]))})
    return index_input(cfg, **more)


@register_report(
    "jiang_pairs",
    outputs=("csv", "png"),
    runs=_jiang_runs,
    inputs=_jiang_inputs,
    gpu=True,
    settings=lambda cfg: cfg.get("jiang_pairs"),
)
def jiang_pairs_report(ctx: ReportContext) -> pd.DataFrame:
    """Jiang et al. Table II: "same generator?" verification per generator pair (TP/FP/FN/TN, recall, precision,
    F1, accuracy, AUC) for each siamese encoder, on all test pairs and by the regenerate-and-compare flow."""
    from attribench.methods.jiang_eval import write_jiang_pairs  # torch: only when the report is built

    return write_jiang_pairs(ctx.cfg, ctx.index, ctx.out["csv"], ctx.out["png"])
