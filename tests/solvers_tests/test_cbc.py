"""The solver contract with the CBC ILP backend (skipped where no CBC executable exists)."""

import pytest
from solver_contract import SolverContract

from solvers._backends import cbc_path

pytestmark = pytest.mark.skipif(
    cbc_path() is None,
    reason="no CBC executable: none on PATH and this PuLP bundles none (pip install pulp[cbc])",
)


class TestCbc(SolverContract):
    backend = "cbc"
