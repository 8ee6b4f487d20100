"""`attribench <command>`: the entry point Snakemake rules and users call."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

from attribench.core import config as config_mod


def _cfg(args) -> dict:
    if args.config_json:  # written by the Snakefile: already merged and validated
        return json.loads(Path(args.config_json).read_text())
    overrides = {"profile": args.profile} if args.profile else {}
    if getattr(args, "rehearsal", False):
        overrides["rehearsal"] = True
    return config_mod.load(args.params, overrides or None)


def cmd_validate(args, cfg):
    # Names the DAG build cannot check without torch: attributor kinds and transforms (registries).
    import attribench.plugins  # noqa: F401  # reason: fills the registries (imports torch)
    from attribench.experiments.runs import experiment_spec  # reason: torch-heavy, only for validate
    from attribench.models.attributors.registry import ATTRIBUTORS  # reason: imports torch

    errors = [
        f"attributors.{n}.kind: '{a['kind']}' is not registered (known: {sorted(ATTRIBUTORS)})"
        for n, a in cfg["attributors"].items()
        if a["kind"] not in ATTRIBUTORS
    ]
    for name in cfg["experiments"]:
        try:
            experiment_spec(cfg, name)  # resolves its transform against the transform registry
        except (KeyError, TypeError, ValueError) as err:
            errors.append(str(err).strip("'\""))
    if errors:
        raise config_mod.ConfigError("params.yaml:\n  " + "\n  ".join(errors))
    print(f"params OK: profile {cfg['profile']}, {len(cfg['generators'])} generators: {', '.join(cfg['generators'])}")


def cmd_plan(args, cfg):
    import yaml

    from attribench.core import paths  # per command: a job imports only what it runs
    from attribench.data.plan import MIN_SPLIT_MARGIN_SD, write_plan  # per command: a job imports only what it runs

    tps = None
    if args.throughput_params:  # cost an older config with the throughput figures of another params file
        other = config_mod.load(args.throughput_params, {"profile": cfg["profile"]})
        tps = {g: s["throughput"] for g, s in other["generators"].items() if "throughput" in s}
    df = write_plan(cfg, args.out or str(paths.PLAN), tps)
    by_kind = (
        df[df["kind"] != "total"]
        .groupby("kind", sort=False)[["images_rendered", "images_read", "gpu_hours", "raw_gb", "delivered_gb"]]
        .sum(min_count=1)
    )
    print(f"render plan, profile {cfg['profile']} -> {args.out or paths.PLAN}")
    print(by_kind.round(1).to_string())
    print(
        yaml.safe_dump(
            {
                "total": {
                    k: round(float(v), 1)
                    for k, v in df.iloc[-1][["images_rendered", "images_read", "gpu_hours", "raw_gb", "delivered_gb"]]
                    .fillna(0)
                    .items()
                }
            },
            sort_keys=False,
        )
    )
    tight = df[df["split_margin_sd"] < MIN_SPLIT_MARGIN_SD]
    # one line per study (its classes share prompts and split) or benchmark margin, not per class
    for (kind, margin, prompts), rows in tight.groupby(["kind", "split_margin_sd", "prompts"], sort=False):
        names = list(rows["generator"])
        print(
            f"warning: {kind}: {', '.join(names[:4])}{f' (+{len(names) - 4} more)' if len(names) > 4 else ''}: "
            f"the split is expected to clear split.counts by only {margin:.1f} sd (binomial hash split of "
            f"{prompts:.0f} prompts): it may come up short after rendering. Render more prompts or shift "
            f"split.fractions toward the short split",
            file=sys.stderr,
        )


def cmd_fetch_models(args, cfg):
    from attribench.core import paths  # per command: a job imports only what it runs
    from attribench.core.hub import fetch_models  # per command: a job imports only what it runs

    fetched = fetch_models(cfg, args.cache or paths.HUB_CACHE, download=not args.verify_only)
    print(
        f"hub models: {len(cfg.get('hub_models') or {})} pinned, {len(fetched)} downloaded"
        + (f": {fetched}" if fetched else "")
    )


def cmd_build_replicas(args, cfg):
    from attribench.core import paths  # per command: a job imports only what it runs
    from attribench.data import replicas  # per command: a job imports only what it runs

    if args.edits:  # after the split: only the external-edit stand-ins (the other inputs keep their mtimes)
        for path in replicas.build_edit_stand_ins(cfg):
            print(path)
        return
    for snap in replicas.build_replicas(cfg, args.cache or paths.HUB_CACHE, args.only):
        print(snap)
    if args.all:  # rehearsal inputs: real-size timm weight files (random) and the external data folders
        for path in [*replicas.build_timm_weights(cfg), *replicas.build_rehearsal_inputs(cfg)]:
            print(path)


def cmd_prompts(args, cfg):
    from attribench.data.prompts import write_prompts  # per command: a job imports only what it runs

    spec = cfg["prompts"]["sources"].get(args.source)
    if spec is None:
        raise KeyError(f"prompt source '{args.source}' is not in params (known: {sorted(cfg['prompts']['sources'])})")
    write_prompts(args.source, spec, args.out)


def cmd_build_zoo(args, cfg):
    from attribench.data.zoo import save_zoo_model  # per command: a job imports only what it runs

    spec = cfg["zoo"].get(args.name)
    if spec is None:
        raise KeyError(f"zoo model '{args.name}' is not in params (known: {sorted(cfg['zoo'])})")
    resume = str(Path(args.out).parent / spec["resume_from"]) if spec.get("resume_from") else None
    save_zoo_model(
        spec["family"],
        args.out,
        seed=spec.get("seed", 0),
        resolution=spec.get("resolution", 64),
        train_steps=spec.get("train_steps", 0),
        training=spec.get("training"),
        resume_from=resume,
    )


def cmd_sample_photos(args, cfg):
    from attribench.data.real_photos import export_sample_photos  # per command: a job imports only what it runs

    export_sample_photos(args.out)


def cmd_render(args, cfg):
    from attribench.data.render import render_shard  # per command: a job imports only what it runs

    render_shard(cfg, args.generator, args.chunk, args.out, args.prompts)


def cmd_deliver(args, cfg):
    from attribench.data.delivery import deliver_shard  # per command: a job imports only what it runs

    from attribench.data.decode import policy_of  # reason: as the other commands, load only what this one needs

    deliver_shard(args.raw, args.out, cfg["delivery"], policy_of(cfg))


def cmd_split(args, cfg):
    from attribench.data.splits import class_split_config, write_index  # per command: a job imports only what it runs

    split_cfg = cfg["split"]
    if args.study:  # a hyperparameter study's own index: its classes only, its split settings
        from attribench.core.hp_studies import split_config  # per command: a job imports only what it runs

        split_cfg = split_config(cfg, args.study)
    elif args.generator:  # one class's part of the benchmark index
        split_cfg = class_split_config(split_cfg, args.generator)
    write_index(args.shards, split_cfg, args.out, generator=args.generator)


def cmd_index(args, cfg):
    from attribench.data.splits import merge_index  # per command: a job imports only what it runs
    from attribench.data.views import check_view_inputs  # reason: as above

    check_view_inputs(cfg, merge_index(args.classes, args.out))


def cmd_train(args, cfg):
    from attribench.experiments.runs import run_experiment  # per command: a job imports only what it runs

    run_experiment(cfg, args.experiment, args.index, args.out, threads=args.threads)


def cmd_edit(args, cfg):
    from attribench.transforms.postedit import (
        edit_with_transform,
        import_external_edits,
    )  # per command: a job imports only what it runs

    tool = cfg["post_editing"]["tools"].get(args.tool)
    if tool is None:
        raise KeyError(f"post_editing.tools has no '{args.tool}' (known: {sorted(cfg['post_editing']['tools'])})")
    if "folder" in tool:
        import_external_edits(cfg, args.tool, args.index, args.out)
    else:
        edit_with_transform(cfg, args.tool, args.band, args.index, args.out)


def cmd_edit_inputs(args, cfg):
    from attribench.transforms.postedit import export_edit_inputs  # per command: a job imports only what it runs

    written = export_edit_inputs(cfg, args.index, args.out)
    print(f"{len(written)} test images of view '{cfg['post_editing']['dataset']}' -> {args.out} (<image_id>.<ext>)")


def cmd_report(args, cfg):
    from attribench.reports.registry import build_report, load_reports  # per command: a job imports only what it runs

    if args.list or not args.name:
        for name, rep in sorted(load_reports().items()):
            print(f"{name:22s} {' '.join(str(p) for p in rep.output_paths().values())}")
        return
    build_report(args.name, cfg)


def cmd_predict(args, cfg):
    """Exit status: 0 when every file was predicted, 100 + n when n files were skipped (n capped at 155)."""
    from attribench.experiments.predict import predict_paths, write_predictions  # torch: only for predict

    records, skipped = predict_paths(
        args.run, args.paths, top_k=args.top_k, device=args.device, calibrated=not args.uncalibrated
    )
    if args.out:
        write_predictions(records, args.out)
    else:
        sys.stdout.write("".join(json.dumps(r) + "\n" for r in records))
    for s in skipped:
        print(f"skipped {s['path']}: {s['reason']}", file=sys.stderr)
    print(f"{len(records)} predicted, {len(skipped)} skipped", file=sys.stderr)
    return 100 + min(len(skipped), 155) if skipped else 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="attribench", description=__doc__)
    p.add_argument("--params", default=str(config_mod.DEFAULT_PARAMS), help="params.yaml to read")
    p.add_argument("--profile", help="override params' profile (smoke | paper)")
    p.add_argument(
        "--config-json",
        default=os.environ.get("ATTRIBENCH_CONFIG_JSON") or None,
        help="an already-resolved config (default: $ATTRIBENCH_CONFIG_JSON, which the Snakefile sets for every job)",
    )
    p.add_argument("--rehearsal", action="store_true", help="the profile's rehearsal (as --config rehearsal=true)")
    p.add_argument("--threads", type=int, help="torch intra-op threads (Snakemake passes the job's threads)")
    p.add_argument("-v", "--verbose", action="store_true")
    sub = p.add_subparsers(dest="command", required=True)

    def add(name, fn, help_, *required):
        """A subcommand; each name in `required` becomes a required --flag."""
        sp = sub.add_parser(name, help=help_)
        sp.set_defaults(fn=fn)
        for flag in required:
            sp.add_argument(f"--{flag}", required=True)
        return sp

    add("validate", cmd_validate, "validate params.yaml and print the resolved generators")
    sp = add("plan", cmd_plan, "render plan: per generator and study class, images rendered and read, GPU-hours, GB")
    sp.add_argument("--out", help="CSV (default results/plan.csv)")
    sp.add_argument("--throughput-params", help="take each generator's `throughput` from this params file")
    sp = add(
        "fetch-models", cmd_fetch_models, "download every hub_models id at its pinned revision (present: verify only)"
    )
    sp.add_argument("--cache", help="hub cache (default models/hub)")
    sp.add_argument("--verify-only", action="store_true", help="never download: a missing or incomplete id is an error")
    sp = add(
        "build-replicas",
        cmd_build_replicas,
        "tiny random-weight replicas of the profile's hub pipelines in the hub cache",
    )
    sp.add_argument("--cache", help="hub cache (default models/hub)")
    sp.add_argument("--only", nargs="*", help="these hub ids only")
    sp.add_argument(
        "--all",
        action="store_true",
        help="also timm weight files (random, ~2.2 GB for paper) and the "
        "COCO / Midjourney / GAN / edit folders under data/external (rehearsal inputs; never over real data)",
    )
    sp.add_argument(
        "--edits", action="store_true", help="only the external-edit stand-ins, from the split (run after it)"
    )
    add("prompts", cmd_prompts, "write one prompt set to Parquet", "source", "out")
    add("build-zoo", cmd_build_zoo, "build one tiny seeded diffusers pipeline and save_pretrained it", "name", "out")
    add("sample-photos", cmd_sample_photos, "export the real photos that ship inside installed wheels", "out")
    sp = add("render", cmd_render, "produce one raw image shard (resumable)", "generator", "chunk", "out")
    sp.add_argument("--prompts")
    add("deliver", cmd_deliver, "apply the delivery policy to one raw shard", "raw", "out")
    sp = add("split", cmd_split, "prompt-disjoint train/val/test index over delivered shards", "out")
    sp.add_argument("--study", help="a hyperparameter study: use its split settings")
    sp.add_argument("--generator", help="one class's part of the benchmark index (its shards only)")
    sp.add_argument("shards", nargs="+")
    sp = add("index", cmd_index, "the benchmark index: every class index file, checked against the views", "out")
    sp.add_argument("classes", nargs="+")
    sp = add("train", cmd_train, "run one named experiment (train + test) into a run folder", "experiment", "out")
    sp.add_argument("--index", nargs="+", required=True, help="its index files (class indexes, or a study's index)")
    sp = add("edit", cmd_edit, "post-edit the test images with one tool (and mask band)", "tool", "index", "out")
    sp.add_argument("--band", default="all")
    add("edit-inputs", cmd_edit_inputs, "export the test images an external edit tool must edit", "index", "out")
    sp = add("report", cmd_report, "build one table or figure of the report registry (its runs must exist)")
    sp.add_argument("name", nargs="?", help="the report (see --list)")
    sp.add_argument("--list", action="store_true", help="list every report and the files it writes")
    sp = add("predict", cmd_predict, "a trained run's classes + unknown-generator decision for any images", "run")
    sp.set_defaults(needs_cfg=False)
    sp.add_argument("paths", nargs="+", help="image files, folders (recursive) and globs")
    sp.add_argument("--top-k", type=int, default=3)
    sp.add_argument("--out", help="preds.jsonl (one JSON object per image) or preds.csv; default: JSON lines on stdout")
    sp.add_argument("--device", default="auto", help="auto (CUDA if available), cpu, cuda, ...")
    sp.add_argument(
        "--uncalibrated", action="store_true", help="raw softmax (temperature 1): the run's recorded probabilities"
    )
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s"
    )
    if not args.verbose:
        # The tiny zoo's byte-level CLIP tokenizer turns every prompt into >77 tokens, and transformers
        # then prints each truncated batch in full (megabytes per job log): keep its errors only.
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    if args.threads:
        # One thread per job: several jobs share the cores, and oversubscribed torch threads
        # slow tiny models down by orders of magnitude.
        import torch

        args.threads = min(args.threads, os.cpu_count() or 1)
        torch.set_num_threads(args.threads)
    try:
        cfg = _cfg(args) if getattr(args, "needs_cfg", True) else None  # predict reads only the run dir
        if cfg is not None:
            from attribench.transforms.weights import configure  # no torch: pins + cache for transforms' hub ids

            configure(cfg)
        rc = args.fn(args, cfg)
    except (config_mod.ConfigError, KeyError, FileNotFoundError, ValueError, NotImplementedError, RuntimeError) as err:
        if args.verbose:
            raise
        msg = err.args[0] if isinstance(err, KeyError) and err.args else err
        print(f"attribench {args.command}: error: {msg}", file=sys.stderr)
        return 2
    return rc if isinstance(rc, int) else 0


if __name__ == "__main__":
    sys.exit(main())
