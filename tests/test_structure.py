"""Guards on the package's structure: strict pytest markers, a config package that stays light,
every module importable in a fresh process, no import cycles, and stages that never import each
other (shared machinery lives in neutral packages: scoring/, vllm_engine/, models/)."""

from __future__ import annotations

import ast
import subprocess
import sys
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "tip_ray"
STAGES = ("rollout", "teacher", "select", "learner")
# Optional extras: no module may import them at module level (import them inside the function
# that needs them), so that every module imports with the default install.
OPTIONAL_EXTRAS = ("vllm", "peft", "gguf", "wandb", "mlflow", "tensorboard", "trl")
# Modules the import test leaves out, each with its reason.
NOT_IMPORTED = {
    "tip_ray.gpucheck.__main__": "importing it runs the GPU check (python -m tip_ray.gpucheck)",
}


def _module_files() -> dict[str, Path]:
    """Every module of the package by dotted name (a package by its __init__), from the files."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(REPO).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


MODULES = _module_files()


def _statements(tree: ast.Module, top_level_only: bool):
    """Import statements: those run when the module is imported (module level, also inside
    top-level if/try/with blocks, but not under `if TYPE_CHECKING`), or every one."""
    if not top_level_only:
        yield from (n for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom)))
        return
    pending = list(tree.body)
    while pending:
        node = pending.pop(0)
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        elif isinstance(node, ast.If):
            if "TYPE_CHECKING" not in ast.unparse(node.test):
                pending.extend(node.body + node.orelse)
        elif isinstance(node, ast.Try):
            pending.extend(node.body + node.orelse + node.finalbody + [s for h in node.handlers for s in h.body])
        elif isinstance(node, ast.With):
            pending.extend(node.body)


def imported_names(source: str, module: str, is_package: bool, *, top_level_only: bool) -> set[str]:
    """Dotted names a module's source imports, relative imports resolved, `from a import b`
    read as a.b (which names_module then maps to a.b or a, whichever is a module)."""
    names = set()
    for node in _statements(ast.parse(source), top_level_only):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
            continue
        base = node.module or ""
        if node.level:
            anchor = module.split(".") if is_package else module.split(".")[:-1]
            anchor = anchor[: len(anchor) - (node.level - 1)]
            base = ".".join(anchor + ([base] if base else []))
        names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def names_module(name: str, modules) -> str | None:
    """The module of the package that importing `name` executes (its longest known prefix)."""
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        candidate = ".".join(parts[:end])
        if candidate in modules:
            return candidate
    return None


def import_graph(top_level_only: bool) -> dict[str, set[str]]:
    graph = {}
    for module, path in MODULES.items():
        names = imported_names(path.read_text(), module, path.name == "__init__.py", top_level_only=top_level_only)
        graph[module] = {m for m in (names_module(n, MODULES) for n in names) if m and m != module}
    return graph


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return cycles


def test_the_graph_reader_sees_relative_function_level_and_guarded_imports():
    source = (
        "from typing import TYPE_CHECKING\n"
        "from . import sibling\n"
        "from ..records import SelectedBatch\n"
        "try:\n    import tip_ray.weights\nexcept ImportError:\n    pass\n"
        "if TYPE_CHECKING:\n    from tip_ray.teacher.scorer import ScorerSettings\n"
        "def f():\n    from tip_ray.rollout.hf import HFGenerateBackend\n"
    )
    top = imported_names(source, "tip_ray.learner.x", False, top_level_only=True)
    assert {"tip_ray.learner.sibling", "tip_ray.records.SelectedBatch", "tip_ray.weights"} <= top
    assert not any(n.startswith(("tip_ray.teacher", "tip_ray.rollout")) for n in top)
    every = imported_names(source, "tip_ray.learner.x", False, top_level_only=False)
    assert {"tip_ray.teacher.scorer.ScorerSettings", "tip_ray.rollout.hf.HFGenerateBackend"} <= every
    assert names_module("tip_ray.records.SelectedBatch", MODULES) == "tip_ray.records"
    assert names_module("tip_ray.tip.signal.TopKLogProbs", MODULES) == "tip_ray.tip.signal"


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert find_cycles({"a": {"b"}, "b": set()}) == []


def test_pytest_markers_are_strict(tmp_path):
    options = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]
    assert "--strict-markers" in options["addopts"].split()
    probe = tmp_path / "test_probe.py"
    probe.write_text("import pytest\n\n@pytest.mark.no_such_marker\ndef test_x():\n    pass\n")
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-c", str(REPO / "pyproject.toml"),
         "--rootdir", str(tmp_path), str(probe)],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
    )
    assert run.returncode != 0, run.stdout
    assert "no_such_marker" in run.stdout + run.stderr


def test_config_imports_neither_torch_nor_ray():
    code = (
        "import sys\n"
        "import tip_ray.config, tip_ray.config.loader\n"
        "print(' '.join(sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'ray'})))\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "", f"importing tip_ray.config loaded: {run.stdout.strip()}"


def test_no_module_imports_an_optional_extra_at_module_level():
    offenders = [
        f"{module} imports {name}"
        for module, path in MODULES.items()
        for name in imported_names(path.read_text(), module, path.name == "__init__.py", top_level_only=True)
        if name.split(".")[0] in OPTIONAL_EXTRAS
    ]
    assert not offenders, f"import these inside the function that needs them: {offenders}"


def test_every_module_imports_in_a_fresh_process():
    names = [m for m in sorted(MODULES) if m not in NOT_IMPORTED]
    assert set(NOT_IMPORTED) <= set(MODULES), "NOT_IMPORTED names a module that no longer exists"
    code = (
        "import importlib, sys, traceback\n"
        "failed = []\n"
        f"for name in {names!r}:\n"
        "    try:\n"
        "        importlib.import_module(name)\n"
        "    except BaseException:\n"
        "        failed.append(name + ': ' + traceback.format_exc().strip().splitlines()[-1])\n"
        "print('\\n'.join(failed))\n"
        "sys.exit(1 if failed else 0)\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=REPO)
    assert run.returncode == 0, f"modules that do not import:\n{run.stdout}{run.stderr[-2000:]}"


def test_no_import_cycles_among_the_package_modules():
    cycles = find_cycles(import_graph(top_level_only=True))
    assert not cycles, f"module-level import cycles: {cycles}"


def test_stages_never_import_each_other():
    sideways = []
    for module, targets in import_graph(top_level_only=False).items():
        parts = module.split(".")
        if len(parts) < 2 or parts[1] not in STAGES:
            continue
        for target in sorted(targets):
            stage = target.split(".")[1] if target.count(".") else None
            if stage in STAGES and stage != parts[1]:
                sideways.append(f"{module} -> {target}")
    assert not sideways, (
        f"stage packages import each other: {sideways}; move what they share to a neutral "
        f"package (scoring/, vllm_engine/, models/) instead"
    )


# Who may import the demo bootstrap (tip_ray.demo): the commands that run the demo, and the demo
# model source of the pipeline. The core it builds on (models/, eval/, tasks/, data/) never does.
DEMO_IMPORTERS = {"tip_ray.commands.demo", "tip_ray.commands.sweep", "tip_ray.pipeline.demo_source"}


def test_only_the_demo_runners_and_its_model_source_import_the_demo():
    importers = {module for module, targets in import_graph(top_level_only=False).items()
                 if not module.startswith("tip_ray.demo") and any(t.startswith("tip_ray.demo") for t in targets)}
    assert importers <= DEMO_IMPORTERS, (
        f"{sorted(importers - DEMO_IMPORTERS)} import tip_ray.demo; the core must not depend on the demo: "
        f"reach the demo models through tip_ray.pipeline.demo_source"
    )
    assert set(DEMO_IMPORTERS) <= set(MODULES), "DEMO_IMPORTERS names a module that no longer exists"
