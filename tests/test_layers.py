"""The layer contract (docs/architecture.md): planner/cli -> backend -> pricing -> planner core.

import-linter checks the package-level contract in pyproject.toml; the AST checks here add what it
cannot express: module-level imports of the core and pricing are the standard library only, and
nothing below planner/cli imports it. A subprocess shows ``import planner.errors`` stays cheap.
"""
from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
OWN = ("planner", "pricing", "backend", "__future__")


def _py_files(pkg: str):
    return sorted(p for p in (ROOT / pkg).rglob("*.py") if "__pycache__" not in p.parts)


def _is_cli(path: Path) -> bool:
    rel = path.relative_to(ROOT).parts
    return rel[:2] == ("planner", "cli") or rel == ("planner", "__main__.py")


def _module_level_imports(path: Path):
    """(line, module) of every import that runs when the module is imported (not inside a function)."""
    todo = list(ast.parse(path.read_text()).body)
    while todo:
        node = todo.pop()
        if isinstance(node, ast.Import):
            yield from ((node.lineno, a.name) for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            yield node.lineno, ("." * node.level) + (node.module or "")
        elif isinstance(node, (ast.If, ast.Try, ast.With)):
            todo.extend(ast.iter_child_nodes(node))
        elif isinstance(node, ast.ExceptHandler):
            todo.extend(node.body)


def test_import_linter_contracts_hold():
    from importlinter.cli import lint_imports

    cwd = os.getcwd()
    os.chdir(ROOT)
    try:
        assert lint_imports(no_cache=True, no_logo=True) == 0, "lint-imports: a layer contract is broken (run it)"
    finally:
        os.chdir(cwd)


@pytest.mark.parametrize("pkg", ["planner", "pricing"])
def test_core_and_pricing_import_only_the_standard_library_at_module_level(pkg):
    bad = []
    for path in _py_files(pkg):
        if _is_cli(path):
            continue
        for line, name in _module_level_imports(path):
            top = name.split(".")[0]
            if name.startswith(".") or top in sys.stdlib_module_names or top in OWN:
                continue
            bad.append(f"{path.relative_to(ROOT)}:{line} imports {name}")
    assert not bad, "import these inside the function that needs them:\n" + "\n".join(bad)


def test_pricing_imports_only_the_planner_core():
    bad = [f"{p.relative_to(ROOT)}:{line} imports {name}" for p in _py_files("pricing")
           for line, name in _module_level_imports(p) if name.split(".")[0] == "backend"
           or name.startswith("planner.cli")]
    assert not bad, "\n".join(bad)


def test_nothing_below_the_cli_imports_it():
    bad = []
    for pkg in ("planner", "pricing", "backend"):
        for path in _py_files(pkg):
            if _is_cli(path):
                continue
            for node in ast.walk(ast.parse(path.read_text())):
                names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                         [node.module or ""] if isinstance(node, ast.ImportFrom) and node.level == 0 else [])
                bad += [f"{path.relative_to(ROOT)}:{node.lineno} imports {n}" for n in names
                        if n == "planner.cli" or n.startswith("planner.cli.")]
                if isinstance(node, ast.ImportFrom) and node.level and (node.module or "").startswith("cli"):
                    bad.append(f"{path.relative_to(ROOT)}:{node.lineno} imports .{node.module}")
    assert not bad, "\n".join(bad)


def test_importing_planner_errors_loads_nothing_else():
    code = ("import sys, planner.errors, planner; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('planner', 'pricing', 'backend', 'torch', "
            "'transformers', 'typer', 'rich')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT,
                         env={**os.environ, "PYTHONPATH": str(ROOT)}).stdout
    assert out.strip() == "['planner', 'planner.errors']"


def test_from_planner_import_estimate_is_the_function_even_after_the_submodule_loads():
    import planner.estimate  # noqa: F401  binds the submodule on the package
    from planner import estimate

    assert callable(estimate) and estimate.__name__ == "estimate"
