"""The pipeline's direction of imports: solvers and hwmodels stand alone."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _imported_roots(path: Path) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    return roots


@pytest.mark.parametrize("package", ["solvers", "hwmodels"])
def test_lower_stages_import_no_mpq_torch_or_sqlalchemy(package):
    files = sorted((ROOT / package).rglob("*.py"))
    assert files, f"{package} has no modules"
    for path in files:
        forbidden = _imported_roots(path) & {"mpq", "torch", "sqlalchemy", "app"}
        assert not forbidden, f"{path.relative_to(ROOT)} imports {forbidden}"


def test_importing_lower_stages_leaves_torch_unloaded():
    code = "import sys, solvers, hwmodels; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "False"

