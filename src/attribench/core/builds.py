"""One build per working directory: a second Snakemake started while one builds is told so, clearly.

Snakemake alone answers a second start with IncompleteFilesException (the first one's files in flight)
and advises `--rerun-incomplete`, which would start a second writer on those very files. The Snakefile
registers every real build here (`.snakemake/attribench/builds/<pid>.json`, removed when it exits) and
asks, before any DAG is built, whether another one is alive.
"""

from __future__ import annotations

import atexit
import json
import os
import sys
import time
from pathlib import Path

REGISTRY = Path(".snakemake/attribench/builds")
# Commands that only inspect the workflow: they neither build nor plan a build.
INFO_FLAGS = {
    "--lint",
    "--list-rules",
    "--list",
    "-l",
    "--list-target-rules",
    "--lt",
    "--dag",
    "--rulegraph",
    "--filegraph",
    "--d3dag",
    "--list-changes",
    "--lc",
}
DRY_FLAGS = {"-n", "--dry-run", "--dryrun", "--summary", "--detailed-summary", "-S", "-D", *INFO_FLAGS}


def is_info_only(argv: list[str]) -> bool:
    return any(arg in INFO_FLAGS for arg in argv[1:])


def is_dry_run(argv: list[str]) -> bool:
    """Whether Snakemake's command line only plans (-n, also combined as in -np, or --summary...)."""
    for arg in argv[1:]:
        if arg in DRY_FLAGS or (
            arg.startswith("-") and not arg.startswith("--") and "n" in arg[1:] and arg[1:].isalpha()
        ):
            return True
    return False


def _cmdline(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    except OSError:
        return None


def running_builds(registry: Path = REGISTRY) -> list[dict]:
    """Registered builds whose process still runs the command it registered with (no PID reuse)."""
    alive = []
    for entry in sorted(registry.glob("*.json")) if registry.exists() else []:
        try:
            info = json.loads(entry.read_text())
        except (OSError, ValueError):
            continue
        if info.get("pid") != os.getpid() and _cmdline(info.get("pid", -1)) == info.get("cmdline"):
            alive.append(info)
        elif info.get("pid") != os.getpid():
            entry.unlink(missing_ok=True)  # a build that died without cleaning up (kill -9)
    return alive


def register_build(registry: Path = REGISTRY) -> Path:
    registry.mkdir(parents=True, exist_ok=True)
    entry = registry / f"{os.getpid()}.json"
    info = {"pid": os.getpid(), "cmdline": _cmdline(os.getpid()), "started": time.strftime("%Y-%m-%d %H:%M:%S")}
    entry.write_text(json.dumps(info))
    atexit.register(entry.unlink, missing_ok=True)
    return entry


def describe(build: dict) -> str:
    return f"pid {build['pid']}, started {build['started']}: {build['cmdline']}"


def guard(argv: list[str] | None = None, registry: Path = REGISTRY) -> str | None:
    """Register this build, or refuse it while another one runs here. A dry run is allowed and gets a
    note (returned) on how to see its plan past the other build's files in flight."""
    argv = sys.argv if argv is None else argv
    others = running_builds(registry)
    if is_dry_run(argv):
        if others:
            return (
                f"another Snakemake is building in this directory ({describe(others[0])}). Files it is writing "
                "are incomplete until it finishes: add --ignore-incomplete to this dry run to see the plan, "
                "and never --rerun-incomplete while it runs"
            )
        return None
    if others:
        raise RuntimeError(
            f"another Snakemake is building in this directory ({describe(others[0])}). Wait for it to finish, "
            "or build in another working directory; --rerun-incomplete would start a second writer on the "
            "files it is writing. (A dry run, snakemake -n --ignore-incomplete, shows the plan meanwhile.)"
        )
    register_build(registry)
    return None
