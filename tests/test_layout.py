"""The code's layout rules: layers import one way (import-linter's contract in pyproject.toml), an import inside
a function says why it is lazy, and the tests mirror the packages without importing one another."""

import ast
from pathlib import Path

from importlinter.cli import lint_imports

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("benchmark", "methods", "evaluators", "sweeps")


def python_files(*folders: str) -> list[Path]:
    return sorted(p for folder in folders for p in (ROOT / folder).rglob("*.py"))


def test_layers_import_one_way():
    assert lint_imports(config_filename=str(ROOT / "pyproject.toml")) == 0


def function_imports(path: Path) -> list[tuple[int, str]]:
    """(line, text) of every import statement inside a function of ``path``."""
    source = path.read_text()
    lines = source.splitlines()
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for sub in ast.walk(node):
                if isinstance(sub, (ast.Import, ast.ImportFrom)):
                    found.append((sub.lineno, "\n".join(lines[sub.lineno - 1:sub.end_lineno])))
    return found


def test_imports_inside_functions_say_why_they_are_lazy():
    """Only a heavy or optional dependency is imported inside a function, with a comment saying so."""
    silent = [f"{path.relative_to(ROOT)}:{line}: {text.strip()}" for path in python_files(*PACKAGES)
              for line, text in function_imports(path) if "#" not in text]
    assert not silent, "imports inside functions without a reason:\n" + "\n".join(silent)


def test_tests_mirror_the_packages_and_import_no_other_test():
    misplaced, cross = [], []
    for path in python_files("tests"):
        rel = path.relative_to(ROOT / "tests")
        if path.name.startswith("test_") and len(rel.parts) > 1 and not (ROOT / Path(*rel.parts[:-1])).is_dir():
            misplaced.append(str(rel))  # tests/<package path>/test_*.py must follow a package of the project
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("tests."):
                if node.module.split(".")[-1].startswith("test_"):
                    cross.append(f"{rel}: from {node.module} import ...")
    assert not misplaced, misplaced
    assert not cross, cross
