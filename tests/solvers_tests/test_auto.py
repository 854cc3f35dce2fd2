"""The solver contract with the default backend: the exact knapsack DP for at most one summed
budget, the HiGHS ILP beyond."""

from solver_contract import SolverContract


class TestAuto(SolverContract):
    backend = "auto"
