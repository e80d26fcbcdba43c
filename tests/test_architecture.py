"""The package's structure, as docs/architecture.md states it: one owner of the group layout,
imports pointing down the layers, typed configuration in every public signature."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "bidsfusion"
SOURCES = sorted(PACKAGE.rglob("*.py"))


def _docstrings(tree: ast.AST) -> set[int]:
    """ids of the docstring constants of a module, its classes and functions, and of the
    string literal right after an assignment (an attribute's docstring)."""
    found = set()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if not isinstance(body, list):
            continue
        for i, statement in enumerate(body):
            first = i == 0 and not isinstance(node, ast.If | ast.For | ast.While | ast.With)
            after_assignment = i > 0 and isinstance(body[i - 1], ast.Assign | ast.AnnAssign)
            if (
                (first or after_assignment)
                and isinstance(statement, ast.Expr)
                and isinstance(statement.value, ast.Constant)
            ):
                found.add(id(statement.value))
    return found


def group_path_literals(source: str) -> list[str]:
    """String literals in code (not docstrings) that spell a group path part."""
    tree = ast.parse(source)
    docstrings = _docstrings(tree)
    return [
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and id(node) not in docstrings
        and ("fold-" in node.value or "objective-" in node.value.replace("--objective-", ""))
    ]


def test_only_the_layout_spells_a_group_path() -> None:
    found = {
        str(path.relative_to(PACKAGE)): literals
        for path in SOURCES
        if path.name != "layout.py" and (literals := group_path_literals(path.read_text()))
    }
    assert not found, found


def test_a_planted_group_path_is_found() -> None:
    planted = 'def f(root):\n    """fold-<k> is fine here."""\n    return root / f"fold-{1}"\n'
    assert group_path_literals(planted) == ["fold-"]
    assert group_path_literals('HELP = "--objective-option TERM.KEY=VALUE"\n') == []


def imported_modules(path: Path) -> set[str]:
    """Every bidsfusion module ``path`` imports, at the top or inside functions."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {m for m in found if m.startswith("bidsfusion.")}


@pytest.mark.parametrize(
    ("stage", "forbidden"),
    [
        ("analyses", ("bidsfusion.preprocess", "bidsfusion.train")),
        ("report", ("bidsfusion.preprocess", "bidsfusion.train")),
        ("models", ("bidsfusion.train", "bidsfusion.data", "bidsfusion.evaluate")),
        ("objectives", ("bidsfusion.train", "bidsfusion.data", "bidsfusion.evaluate")),
    ],
)
def test_imports_point_down(stage: str, forbidden: tuple[str, ...]) -> None:
    wrong = {
        path.name: sorted(m for m in imported_modules(path) if m.startswith(forbidden))
        for path in (PACKAGE / stage).glob("*.py")
    }
    assert not {k: v for k, v in wrong.items() if v}


CORE = ("config", "layout", "space", "errors", "checkpoint", "modality", "atomic", "tsv")


@pytest.mark.parametrize("module", CORE)
def test_the_core_imports_no_stage(module: str) -> None:
    stages = ("preprocess", "data", "train", "evaluate", "analyses", "report", "models")
    found = imported_modules(PACKAGE / f"{module}.py")
    assert not [m for m in found if m.split(".")[1] in stages]


def test_the_cli_and_the_demo_do_not_import_each_other_in_a_cycle() -> None:
    assert "bidsfusion.cli" not in imported_modules(PACKAGE / "demo.py")


def test_no_public_function_takes_an_untyped_config() -> None:
    untyped = []
    for path in SOURCES:
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            for arg in [*node.args.args, *node.args.kwonlyargs]:
                annotation = ast.unparse(arg.annotation) if arg.annotation else "Any"
                if "config" in arg.arg and annotation == "Any" and not node.name.startswith("_"):
                    untyped.append(f"{path.name}:{node.name}")
    assert not untyped, untyped
