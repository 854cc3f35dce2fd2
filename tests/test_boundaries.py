"""The pipeline's direction of imports: the vocabulary stands alone, solvers and hwmodels import
only it, and the dashboard uses mpq's public names only."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import mpq

ROOT = Path(__file__).resolve().parents[1]


def _imports(path: Path) -> list[tuple[str, tuple[str, ...]]]:
    """(module, names imported from it) of every absolute import in a file."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(alias.name, ()) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.module, tuple(alias.name for alias in node.names)))
    return found


def _files(folder: str) -> list[Path]:
    files = sorted((ROOT / folder).rglob("*.py"))
    assert files, f"{folder} has no modules"
    return files


@pytest.mark.parametrize(
    ("package", "forbidden"),
    [
        ("mpqvocab", {"mpq", "hwmodels", "solvers", "app", "torch", "sqlalchemy", "numpy", "pandas"}),
        ("solvers", {"mpq", "hwmodels", "app", "torch", "sqlalchemy"}),
        ("hwmodels", {"mpq", "solvers", "app", "torch", "sqlalchemy"}),
    ],
)
def test_lower_stages_import_only_what_comes_before(package, forbidden):
    for path in _files(package):
        roots = {module.split(".")[0] for module, _ in _imports(path)}
        assert not roots & forbidden, f"{path.relative_to(ROOT)} imports {roots & forbidden}"


def test_importing_lower_stages_leaves_torch_unloaded():
    code = "import sys, mpqvocab, solvers, hwmodels; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "False"


def test_dashboard_uses_public_mpq_names_only():
    public = set(mpq.__all__)
    for path in _files("app"):
        for module, names in _imports(path):
            root = module.split(".")[0]
            assert root not in {"hwmodels", "solvers", "mpqvocab"}, f"{path.relative_to(ROOT)} imports {module}"
            if root == "mpq":
                assert module in ("mpq", "mpq.exceptions"), f"{path.relative_to(ROOT)} imports private {module}"
                assert module != "mpq" or set(names) <= public, f"{path.relative_to(ROOT)}: {set(names) - public}"
        used = {
            node.attr
            for node in ast.walk(ast.parse(path.read_text()))
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "mpq"
        }
        assert used <= public, f"{path.relative_to(ROOT)} uses mpq.{sorted(used - public)}"
