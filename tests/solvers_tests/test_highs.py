"""The solver contract with the HiGHS ILP backend."""

from solver_contract import SolverContract


class TestHighs(SolverContract):
    backend = "highs"
