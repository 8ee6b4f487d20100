"""What Snakemake needs to build the DAG: every job's inputs, named from params alone.

Imported by `workflow/rules/common.smk`; it reaches only config, paths, generator planning, experiment
specs and report declarations, so building the DAG (even the ~5000-job paper one) never imports torch.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

from attribench.core import paths
from attribench.core.hp_studies import SEP, all_study_generators, split_config, studies  # noqa: F401  (used by rules)
from attribench.data.generators import get_backend
from attribench.data.generators.base import prompts_per_job
from attribench.data.splits import class_split_config
from attribench.data.render import content_spec  # noqa: F401  (used by rules)
from attribench.experiments.specs import experiment_index, experiment_spec, upstream_runs  # noqa: F401  (experiment_spec: rules)
from attribench.reports.registry import load_reports


class Plan:
    """Job inputs for one resolved config (`P` in the rules)."""

    def __init__(self, cfg: dict):
        self.cfg = cfg
        # Hyperparameter-study classes (`<study>__<label>`): rendered and delivered by the same rules as
        # every generator, but not part of the benchmark index; each study has its own index.
        self.study_generators = all_study_generators(cfg)
        self.reports = load_reports()

    def gen_spec(self, name: str) -> dict:
        if name in self.cfg["generators"]:
            return self.cfg["generators"][name]
        if name in self.study_generators:
            return self.study_generators[name]
        raise ValueError(f"generator '{name}' is neither in params.yaml generators nor a hyperparameter-study class")

    def chunks_of(self, gen: str) -> list[str]:
        return get_backend(self.gen_spec(gen)["backend"]).chunks(gen, self.gen_spec(gen), self.cfg)

    def prompts_per_job(self, gen: str) -> int:
        """A render job's prompt count (chunk layout; grows with `throughput` at paper scale)."""
        return prompts_per_job(self.gen_spec(gen), self.cfg)

    def api_generators(self) -> list[str]:
        """Generators rendered through a web API (DALL-E): network-only, so local rules on a cluster."""
        specs = {**self.cfg["generators"], **self.study_generators}
        return sorted(g for g, s in specs.items() if s["backend"] == "openai")

    def delivered_shards(self, generator: str | None = None) -> list[str]:
        gens = [generator] if generator else list(self.cfg["generators"])
        return [str(paths.delivered_shard(self.cfg, g, c)) for g in gens for c in self.chunks_of(g)]

    def class_indexes(self) -> list[str]:
        return [str(paths.class_index(self.cfg, g)) for g in sorted(self.cfg["generators"])]

    def class_split_config(self, generator: str) -> dict:
        """What decides one class index (the `split_class` rule's params; the job computes the same)."""
        return class_split_config(self.cfg["split"], generator)

    def study_delivered_shards(self, study: str) -> list[str]:
        classes = [g for g in self.study_generators if g.split(SEP, 1)[0] == study]
        return [str(paths.delivered_shard(self.cfg, g, c)) for g in classes for c in self.chunks_of(g)]

    def zoo_inputs(self, name: str) -> dict:
        """A trained zoo stage needs its training images and the stage it resumes."""
        spec = self.cfg["zoo"][name]
        inputs = {}
        if spec.get("training"):
            inputs["images"] = spec["training"]["images"]
        if spec.get("resume_from"):
            inputs["resume"] = str(paths.MODELS_ZOO / spec["resume_from"])
        return inputs

    def render_settings(self, generator: str) -> dict:
        """What decides a raw shard's bytes (a folder import also depends on the decode policy)."""
        spec = content_spec(self.gen_spec(generator))
        return {**spec, "decode": self.cfg.get("decode")} if spec["backend"] == "folder" else spec

    def render_inputs(self, generator: str, chunk: str) -> dict:
        spec = self.gen_spec(generator)
        inputs = {}
        if get_backend(spec["backend"]).prompt_driven:
            inputs["prompts"] = str(paths.prompts(self.cfg, chunk.rsplit("-", 1)[0]))
        if paths.zoo_model_dir(self.cfg, spec):
            inputs["model"] = paths.zoo_model_dir(self.cfg, spec)
        elif spec["backend"] == "diffusers" and spec.get("model") and Path(spec["model"]).is_dir():
            # A user's local model directory: every file is an input, so edited weights re-render.
            inputs["weights"] = sorted(str(f) for f in Path(spec["model"]).rglob("*") if f.is_file())
        if spec["backend"] == "folder" and (
            Path(spec["path"]).exists() or not spec["path"].startswith(f"{paths.EXTERNAL}/")
        ):
            # User data under data/external/ is checked when the job runs (clear error naming the folder),
            # so the paper DAG still dry-runs on a machine that does not hold it yet.
            inputs["folder"] = spec["path"]
        return inputs

    def train_inputs(self, experiment: str) -> dict:
        spec = experiment_spec(self.cfg, experiment)
        # the benchmark index, or a hyperparameter study's own index (experiment key `study`)
        inputs = {"index": experiment_index(self.cfg, experiment)}
        # runs this attributor builds on (spec keys *_run / *_runs, e.g. DeepFeatureX's base models)
        inputs["upstream"] = [str(paths.run_metrics(e)) for e in upstream_runs(spec["attributor"])]
        model = paths.zoo_model_dir(self.cfg, {"backend": "diffusers", **spec.get("transform", {})})  # e.g. SDEdit's
        if model:
            inputs["model"] = model
        return inputs

    def edit_inputs(self, tool: str) -> dict:
        spec = self.cfg["post_editing"]["tools"][tool]
        model = paths.zoo_model_dir(self.cfg, {"backend": "diffusers", **spec.get("transform", {})})
        return {"index": str(paths.dataset_index(self.cfg)), **({"model": model} if model else {})}

    def report_inputs(self, name: str) -> dict:
        """A report's inputs: the metrics of every run it declares, and its other files."""
        report = self.reports.lookup(name)
        return {"runs": [str(paths.run_metrics(e)) for e in report.runs(self.cfg)], **report.inputs(self.cfg)}

    def report_outputs(self, name: str) -> dict[str, str]:
        return {kind: str(path) for kind, path in self.reports.lookup(name).output_paths().items()}

    def all_report_outputs(self) -> list[str]:
        return [p for name in sorted(self.reports) for p in self.report_outputs(name).values()]

    def stale_outputs(self) -> dict[str, list[str]]:
        """{built output: its deleted inputs} for results whose inputs were deleted after they were built:
        a table over a deleted run directory, a run over a deleted class index, a class index over a
        deleted delivered shard. Snakemake alone calls such an output up to date ("Nothing to be done");
        the Snakefile moves it aside so that the next build makes the inputs and it again. Raw shards are
        not followed: deleting them once delivered frees disk and re-renders nothing."""
        stale: dict[str, list[str]] = {}
        run_profiles = self.run_profiles()

        def mark(outputs, inputs) -> None:
            outputs = [str(o) for o in outputs if Path(o).exists()]
            gone = [str(f) for f in inputs if not Path(f).exists()]
            if outputs and gone:
                stale.update({o: gone for o in outputs})

        for name in self.reports:
            if self._report_profile(name, run_profiles) == self.cfg["profile"]:  # results/ is shared by the profiles
                files = [f for v in self.report_inputs(name).values() for f in ([v] if isinstance(v, str) else v)]
                mark(self.report_outputs(name).values(), files)
        for run in self.cfg["experiments"]:
            out = paths.run_dir(run)
            if run_profiles[run] == self.cfg["profile"]:
                inputs = self.train_inputs(run)
                mark(sorted(out.iterdir()), [*inputs["index"], *inputs["upstream"]])
        for gen in self.cfg["generators"]:
            mark([paths.class_index(self.cfg, gen)], self.delivered_shards(gen))
        mark([paths.dataset_index(self.cfg)], self.class_indexes())
        for study in studies(self.cfg):
            mark([paths.study_index(self.cfg, study)], self.study_delivered_shards(study))
        return stale

    def run_profiles(self) -> dict[str, str | None]:
        """{experiment: the profile its built run came from (metrics.json), None when not built}."""
        if not hasattr(self, "_run_profiles"):  # one read of each metrics.json per start
            self._run_profiles = {run: _run_profile(run) for run in self.cfg["experiments"]}
        return self._run_profiles

    def foreign_runs(self) -> dict[str, str]:
        """{run directory: its profile} for runs this profile would write that results/ holds from another
        profile (results/runs/<name> is shared by the profiles: a smoke build would train over a paper run)."""
        return {
            str(paths.run_dir(run)): prof
            for run, prof in self.run_profiles().items()
            if prof is not None and prof != self.cfg["profile"]
        }

    def _report_profile(self, name: str, run_profiles: dict[str, str | None]) -> str | None:
        """The profile a built report came from: its CSV's `profile` column, else its runs'."""
        csv_out = self.report_outputs(name).get("csv")
        if csv_out and Path(csv_out).exists():
            with open(csv_out, newline="") as fh:
                row = next(csv.DictReader(fh), None) or {}
            if "profile" in row:
                return row["profile"]
        profiles = {run_profiles.get(e) for e in self.reports.lookup(name).runs(self.cfg)} - {None}
        return profiles.pop() if len(profiles) == 1 else None


STALE = Path(".snakemake/attribench/stale")


def _run_profile(run: str) -> str | None:
    try:
        return json.loads(paths.run_metrics(run).read_text()).get("profile")
    except (OSError, ValueError):
        return None


def check_results_owner(plan: Plan, dry_run: bool) -> str | None:
    """Refuse a build that would write over another profile's trained runs (hours of GPU time at paper
    scale); a dry run gets the same words as a note (returned)."""
    foreign = plan.foreign_runs()
    if not foreign:
        return None
    theirs = sorted(set(foreign.values()))
    msg = (
        f"results/ holds {len(foreign)} run(s) of profile {', '.join(theirs)} (e.g. {min(foreign)}) that this "
        f"{plan.cfg['profile']} build would train again over: results/ is shared by the profiles. Build each "
        f"profile in its own clone or working directory, or move the other profile's results away first "
        f"(mv results results.{theirs[0]} && mkdir results)"
    )
    if dry_run:
        return msg
    raise RuntimeError(msg)


def move_aside(stale: dict[str, list[str]], into: Path = STALE) -> list[str]:
    """Move stale outputs (see `Plan.stale_outputs`) under `into`, keeping their paths, and say so."""
    import shutil
    import sys

    for out, gone in sorted(stale.items()):
        dest = into / out
        if dest.exists():
            shutil.rmtree(dest) if dest.is_dir() else dest.unlink()
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(out, dest)
        more = f" (+{len(gone) - 1} more)" if len(gone) > 1 else ""
        print(
            f"attribench: {out} needs {gone[0]}{more}, which is missing: moved to {dest}, to be built again",
            file=sys.stderr,
        )
    return sorted(stale)
