"""The habits of STYLE.md that a program can check, over every module of the package.

* computation and presentation live apart: ``ingest/``, ``dashboard/analysis/`` and the shared
  ``lossboard/`` core never import streamlit or plotly; ``dashboard/pages/`` and
  ``dashboard/charts.py`` never import duckdb, nor hold SQL in their string literals;
* no error is swallowed: no ``except: pass`` / ``except Exception: pass``;
* every module starts with ``from __future__ import annotations``.

The checks read the sources with :mod:`ast` (nothing is imported), so a module that would fail
to import is still checked, and a word in a comment is never mistaken for an import.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE_DIRS = ("lossboard", "ingest", "dashboard")


def sources(*parts: str) -> list[Path]:
    """Python files under ``ROOT / parts`` (a folder, searched recursively, or one file)."""
    path = ROOT.joinpath(*parts)
    if path.is_file():
        return [path]
    return sorted(p for p in path.rglob("*.py") if "__pycache__" not in p.parts)


ALL_MODULES = [p for d in PACKAGE_DIRS for p in sources(d)]
COMPUTE_MODULES = sources("ingest") + sources("dashboard", "analysis") + sources("lossboard")
PRESENTATION_MODULES = sources("dashboard", "pages") + sources("dashboard", "charts.py")


def rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


def parse(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def imported_modules(tree: ast.Module) -> set[str]:
    """Top-level names of every module the file imports, at any depth (lazy imports too)."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
        elif (isinstance(node, ast.Call) and isinstance(node.func, (ast.Name, ast.Attribute))
              and getattr(node.func, "attr", getattr(node.func, "id", "")) == "import_module"
              and node.args and isinstance(node.args[0], ast.Constant)
              and isinstance(node.args[0].value, str)):
            names.add(node.args[0].value)
    return names


def imports_any(tree: ast.Module, forbidden: tuple[str, ...]) -> list[str]:
    return sorted(m for m in imported_modules(tree)
                  if any(m == f or m.startswith(f + ".") for f in forbidden))


def test_the_walk_finds_the_package() -> None:
    # Guards the other tests against passing vacuously after a move.
    names = {rel(p) for p in ALL_MODULES}
    assert {"lossboard/db.py", "ingest/load.py", "dashboard/cli.py"} <= names
    assert any(n.startswith("dashboard/pages/") for n in names)
    assert any(n.startswith("dashboard/analysis/") for n in names)


@pytest.mark.parametrize("path", COMPUTE_MODULES, ids=rel)
def test_computation_never_imports_presentation(path: Path) -> None:
    bad = imports_any(parse(path), ("streamlit", "plotly"))
    assert not bad, f"{rel(path)} imports {bad}: computation must not depend on presentation"


@pytest.mark.parametrize("path", PRESENTATION_MODULES, ids=rel)
def test_presentation_never_imports_duckdb(path: Path) -> None:
    bad = imports_any(parse(path), ("duckdb", "lossboard.sql"))
    assert not bad, (f"{rel(path)} imports {bad}: pages and charts get data from "
                     "lossboard.dashboard.analysis, never from the database")


# Upper-case SQL, as the code base writes it. English prose in captions ("Select a model")
# is mixed-case and does not match.
SQL_PATTERN = re.compile(
    r"\b(SELECT|FROM|WHERE|GROUP BY|ORDER BY|INSERT INTO|UPDATE|DELETE FROM|JOIN|CREATE TABLE)\s")


def string_constants(tree: ast.Module) -> list[tuple[int, str]]:
    """Every string literal with its line, f-string pieces included; docstrings excluded."""
    docstrings = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                docstrings.add(id(body[0].value))
    return [(node.lineno, node.value) for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str)
            and id(node) not in docstrings]


@pytest.mark.parametrize("path", PRESENTATION_MODULES, ids=rel)
def test_presentation_builds_no_sql(path: Path) -> None:
    hits = [(line, text) for line, text in string_constants(parse(path)) if SQL_PATTERN.search(text)]
    assert not hits, f"{rel(path)} holds SQL in string literals (lines {[h[0] for h in hits]}): {hits[:3]}"


def test_sql_detector_sees_sql() -> None:
    tree = ast.parse('x = f"SELECT count(*) FROM {t} WHERE a = 1"\ny = "Select a model from the list"')
    assert {line for line, text in string_constants(tree) if SQL_PATTERN.search(text)} == {1}


def _is_broad(handler: ast.ExceptHandler) -> bool:
    if handler.type is None:
        return True
    names = handler.type.elts if isinstance(handler.type, ast.Tuple) else [handler.type]
    return any(isinstance(n, ast.Name) and n.id in ("Exception", "BaseException") for n in names)


def _does_nothing(handler: ast.ExceptHandler) -> bool:
    return all(isinstance(s, ast.Pass) or (isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant))
               for s in handler.body)


def swallowed_errors(tree: ast.Module) -> list[int]:
    return [node.lineno for node in ast.walk(tree)
            if isinstance(node, ast.ExceptHandler) and _is_broad(node) and _does_nothing(node)]


@pytest.mark.parametrize("path", ALL_MODULES, ids=rel)
def test_no_swallowed_exceptions(path: Path) -> None:
    lines = swallowed_errors(parse(path))
    assert not lines, (f"{rel(path)} silences every error at lines {lines}; catch the specific "
                       "error and say what happened (STYLE.md: no `except: pass`)")


def test_swallow_detector() -> None:
    tree = ast.parse("try:\n    f()\nexcept:\n    pass\n"
                     "try:\n    f()\nexcept (ValueError, Exception):\n    ...\n"
                     "try:\n    f()\nexcept KeyError:\n    pass\n"
                     "try:\n    f()\nexcept Exception:\n    log()\n")
    assert swallowed_errors(tree) == [3, 7]


def has_future_annotations(tree: ast.Module) -> bool:
    return any(isinstance(n, ast.ImportFrom) and n.module == "__future__"
               and any(a.name == "annotations" for a in n.names) for n in tree.body)


def is_docstring_only(tree: ast.Module) -> bool:
    return all(isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant) for n in tree.body)


@pytest.mark.parametrize("path", ALL_MODULES, ids=rel)
def test_future_annotations(path: Path) -> None:
    tree = parse(path)
    # A package marker holding only its docstring has no annotations to postpone.
    if is_docstring_only(tree):
        return
    assert has_future_annotations(tree), f"{rel(path)} lacks `from __future__ import annotations`"
