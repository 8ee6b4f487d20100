"""The package layout: one sub-package per pipeline stage, no import cycles, no stage reaching up.

Built from the source with `ast` (nothing is imported), so it holds for every module, including
the ones a test run never loads. Imports under `if TYPE_CHECKING:` are not edges.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PKG = SRC / "attribench"
# The pipeline order (shared/DESIGN.md section 2): a stage may import itself and earlier stages only.
STAGES = ["core", "data", "transforms", "models", "training", "methods", "experiments", "reports"]
TOP_LEVEL = {
    "__init__",
    "cli",
    "plugins",
    "dag",
}  # entry points, the plugin loader and the DAG plan sit above the stages


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imports_of(path: Path) -> list[tuple[str, int, bool, str]]:
    """(imported attribench module, line, inside a function, source line) for each import."""
    tree = ast.parse(path.read_text())
    mod = module_name(path)
    out = []

    def visit(node, in_func):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                continue
            func = in_func or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.Import):
                targets = [a.name for a in child.names]
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    base = mod.split(".")[: len(mod.split(".")) - child.level + (path.name == "__init__.py")]
                    stem = ".".join(base + ([child.module] if child.module else []))
                else:
                    stem = child.module or ""
                # `from pkg import name` may name a submodule: count it as one when that file exists.
                targets = []
                for a in child.names:
                    sub = f"{stem}.{a.name}"
                    known = (SRC / sub.replace(".", "/")).with_suffix(".py").exists() or (
                        SRC / sub.replace(".", "/")
                    ).is_dir()
                    targets.append(sub if known else stem)
            else:
                visit(child, func)
                continue
            line = path.read_text().splitlines()[child.lineno - 1]
            for t in targets:
                if t.startswith("attribench"):
                    out.append((t, child.lineno, in_func, line))

    visit(tree, False)
    return out


def graph() -> dict[str, set[str]]:
    g: dict[str, set[str]] = {}
    for path in sorted(PKG.rglob("*.py")):
        mod = module_name(path)
        g.setdefault(mod, set())
        for target, *_ in imports_of(path):
            # `import attribench.a.b` also runs attribench.a's __init__, but an edge to a package
            # __init__ that only re-exports would be noise; we keep the named module.
            if target != mod:
                g[mod].add(target)
    return g


def stage_of(mod: str) -> str | None:
    parts = mod.split(".")
    if len(parts) == 1:
        return None
    return parts[1] if parts[1] in STAGES else None


def find_cycle(g: dict[str, set[str]]) -> list[str] | None:
    colour: dict[str, int] = {}
    stack: list[str] = []

    def dfs(u):
        colour[u] = 1
        stack.append(u)
        for v in sorted(g.get(u, ())):
            if v not in g:
                continue
            if colour.get(v) == 1:
                return stack[stack.index(v) :] + [v]
            if not colour.get(v):
                found = dfs(v)
                if found:
                    return found
        stack.pop()
        colour[u] = 2
        return None

    for u in sorted(g):
        if not colour.get(u):
            found = dfs(u)
            if found:
                return found
    return None


def test_no_import_cycle():
    cycle = find_cycle(graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_every_module_belongs_to_a_stage():
    loose = [m for m in graph() if stage_of(m) is None and m.split(".")[-1] not in TOP_LEVEL and m != "attribench"]
    assert not loose, f"modules outside the stage packages {STAGES}: {loose}"


def test_no_stage_imports_a_later_stage():
    bad = []
    for mod, targets in graph().items():
        s = stage_of(mod)
        if s is None:
            continue
        for t in targets:
            ts = stage_of(t)
            if ts is not None and STAGES.index(ts) > STAGES.index(s):
                bad.append(f"{mod} -> {t}")
    assert not bad, "a stage imports a later stage:\n  " + "\n  ".join(sorted(bad))


def test_function_level_imports_say_why():
    """Package-internal imports inside functions only defer a heavy dependency, and say so."""
    bad = []
    for path in sorted(PKG.rglob("*.py")):
        for target, lineno, in_func, line in imports_of(path):
            if in_func and "#" not in line:
                bad.append(f"{path.relative_to(SRC)}:{lineno}: {line.strip()}")
    assert not bad, "function-level package imports without a one-line reason:\n  " + "\n  ".join(bad)


def test_dag_build_imports_no_torch():
    """Building the Snakemake DAG imports only config, paths and data planning: no torch, timm, sklearn."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from attribench.core import config, paths\n"
        "from attribench.dag import Plan\n"
        "for profile in ('smoke', 'paper'):\n"
        "    plan = Plan(config.load('params.yaml', {'profile': profile}))\n"
        "    plan.all_report_outputs(); plan.report_inputs('table2'); plan.report_inputs('methods')\n"
        "    plan.delivered_shards(); plan.train_inputs('xd_train_natural')\n"
        "heavy = sorted(m for m in ('torch', 'timm', 'sklearn', 'diffusers', 'transformers', 'kornia') if m in sys.modules)\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=SRC.parent)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "", f"DAG planning imported heavy modules: {out.stdout.strip()}"


@pytest.mark.parametrize(
    "smk", sorted((SRC.parent / "workflow").rglob("*.smk")) + [SRC.parent / "Snakefile"], ids=lambda p: p.name
)
def test_workflow_imports_only_planning_modules(smk):
    allowed = ("attribench.core", "attribench.dag")
    bad = []
    for lineno, line in enumerate(smk.read_text().splitlines(), 1):
        s = line.strip()
        if s.startswith(("from attribench", "import attribench")):
            mod = s.split()[1]
            if not mod.startswith(allowed):
                bad.append(f"{smk.name}:{lineno}: {s}")
    assert not bad, "workflow files may import only config, paths and data planning:\n  " + "\n  ".join(bad)
