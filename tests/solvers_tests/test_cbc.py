"""The solver contract with the CBC ILP backend (skipped where no CBC executable exists)."""

from solver_contract import SolverContract, needs_cbc

pytestmark = needs_cbc


class TestCbc(SolverContract):
    backend = "cbc"
