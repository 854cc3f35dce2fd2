"""The contract every solver backend meets, run once per backend by subclassing.

Hand-computed answers on the `three_layers` and `message_example` fixtures (see conftest.py).
"""

from __future__ import annotations

import pytest
from solver_enumeration import enumerate_allocations, nondominated

import solvers
from solvers._backends import cbc_path

#: The CBC backend's tests run where a CBC executable exists.
needs_cbc = pytest.mark.skipif(
    cbc_path() is None,
    reason="no CBC executable: none on PATH and this PuLP bundles none; pip install pulp[cbc] or put a cbc on PATH",
)


class SolverContract:
    backend: str = "auto"

    def solve(self, omega, costs, budgets=None, **kwargs):
        return solvers.solve(omega, costs, budgets, backend=self.backend, **kwargs)

    def test_optimal_on_hand_instance(self, three_layers):
        solution = self.solve(*three_layers, {"weight_bytes": 90})
        assert solution.assignment == {"conv": "int8", "fc1": "int8", "fc2": "int4"}
        assert solution.predicted_loss == pytest.approx(3.5)
        assert (solution.optimal, solution.status, solution.gap) == (True, "optimal", 0.0)

    def test_costs_cover_every_column_sum_or_max(self, three_layers):
        solution = self.solve(*three_layers, {"weight_bytes": 90})
        assert solution.costs == pytest.approx({"weight_bytes": 90, "latency_s": 5.0, "sram_bytes": 200})

    def test_two_budgets_respected(self, three_layers):
        solution = self.solve(*three_layers, {"weight_bytes": 90, "latency_s": 4})
        assert solution.assignment == {"conv": "int8", "fc1": "int4", "fc2": "int4"}
        assert solution.predicted_loss == pytest.approx(6.0)
        assert solution.costs["weight_bytes"] <= 90 and solution.costs["latency_s"] <= 4

    def test_no_budget_gives_least_loss(self, three_layers):
        solution = self.solve(*three_layers)
        assert set(solution.assignment.values()) == {"fp16"}
        assert solution.predicted_loss == 0.0

    def test_ties_share_a_candidate(self, three_layers):
        untied = self.solve(*three_layers, {"weight_bytes": 100})
        tied = self.solve(*three_layers, {"weight_bytes": 100}, ties=[["conv", "fc2"]])
        assert untied.predicted_loss == pytest.approx(3.5)
        assert tied.assignment == {"conv": "int8", "fc1": "int4", "fc2": "int8"}
        assert tied.predicted_loss == pytest.approx(5.5)

    def test_fixed_pins_a_layer(self, three_layers):
        solution = self.solve(*three_layers, {"weight_bytes": 90}, fixed={"conv": "int4"})
        assert solution.assignment == {"conv": "int4", "fc1": "int8", "fc2": "int4"}
        assert solution.predicted_loss == pytest.approx(6.5)

    def test_max_budget_limits_every_layer(self, three_layers):
        solution = self.solve(*three_layers, {"weight_bytes": 90, "sram_bytes": 150})
        assert solution.assignment == {"conv": "int4", "fc1": "int8", "fc2": "int4"}
        assert solution.costs["sram_bytes"] == 100

    def test_negative_omega_shifts_the_loss_only(self, three_layers):
        omega, costs = three_layers
        shifted = omega.assign(omega=omega["omega"] - 10.0)
        solution = self.solve(shifted, costs, {"weight_bytes": 90})
        assert solution.assignment == {"conv": "int8", "fc1": "int8", "fc2": "int4"}
        assert solution.predicted_loss == pytest.approx(3.5 - 30.0)

    def test_infeasible_budget_message(self, message_example):
        with pytest.raises(solvers.InfeasibleBudgetError) as caught:
            self.solve(*message_example, {"weight_bytes": 150000, "latency_s": 0.001})
        error = caught.value
        assert str(error) == (
            "budget weight_bytes=150000 cannot be met with latency_s<=0.001: the smallest "
            "achievable is 231000; raise --budget weight_bytes to at least 231000."
        )
        assert (error.budget, error.requested, error.smallest_achievable) == ("weight_bytes", 150000, 231000)
        assert isinstance(error, ValueError) and isinstance(error, solvers.SolverError)

    def test_infeasible_names_the_conflicting_budget(self, three_layers):
        # sram_bytes<=150 alone is fine; weight_bytes<=55 is not (the cheapest weighs 60).
        with pytest.raises(solvers.InfeasibleBudgetError) as caught:
            self.solve(*three_layers, {"sram_bytes": 150, "weight_bytes": 55})
        assert caught.value.budget == "weight_bytes"
        assert caught.value.smallest_achievable == 60
        assert caught.value.others == {"sram_bytes": 150}

    def test_infeasible_max_budget_given_a_summed_one(self, three_layers):
        # Under weight_bytes<=70 the allocations are all-int4 (peak SRAM 100) or conv:int8 (200).
        with pytest.raises(solvers.InfeasibleBudgetError) as caught:
            self.solve(*three_layers, {"sram_bytes": 40, "weight_bytes": 70})
        assert (caught.value.budget, caught.value.smallest_achievable) == ("sram_bytes", 100)
        assert str(caught.value).startswith("budget sram_bytes=40 cannot be met with weight_bytes<=70:")

    def test_infeasible_pin_reports_the_pinned_value(self, three_layers):
        with pytest.raises(solvers.InfeasibleBudgetError) as caught:
            self.solve(*three_layers, {"weight_bytes": 70}, fixed={"fc2": "fp16"})
        assert caught.value.smallest_achievable == 10 + 20 + 120

    @pytest.mark.parametrize(
        ("budgets", "fragment"),
        [
            ({"weight_byte": 90}, "did you mean 'weight_bytes'?"),
            ({"weight_bytes": 0}, "must be a positive finite number, got 0"),
            ({"weight_bytes": float("nan")}, "must be a positive finite number, got nan"),
        ],
    )
    def test_bad_budgets(self, three_layers, budgets, fragment):
        with pytest.raises(solvers.SolverInputError, match="^budgets: ") as caught:
            self.solve(*three_layers, budgets)
        assert fragment in str(caught.value) and "\n" not in str(caught.value)

    def test_unknown_pinned_candidate(self, three_layers):
        with pytest.raises(ValueError, match=r"unknown candidate 'int5'.*did you mean 'int\d'\?"):
            self.solve(*three_layers, {"weight_bytes": 90}, fixed={"conv": "int5"})

    def test_frontier_equals_enumeration(self, three_layers):
        points = solvers.frontier(*three_layers, ["weight_bytes"], backend=self.backend)
        reference = nondominated(enumerate_allocations(*three_layers)[["loss", "weight_bytes"]].to_numpy())
        got = [(p.predicted_loss, p.costs["weight_bytes"]) for p in points]
        assert len(got) == len(set(got)) == len(reference)
        assert {(round(l, 9), c) for l, c in got} == {(round(l, 9), c) for l, c in reference}
        assert [c for _, c in got] == sorted(c for _, c in got)

    def test_frontier_under_another_budget(self, three_layers):
        budgets = {"latency_s": 5, "sram_bytes": 150}
        points = solvers.frontier(*three_layers, ["weight_bytes"], budgets, backend=self.backend)
        allocations = enumerate_allocations(*three_layers)
        allowed = allocations[(allocations["latency_s"] <= 5) & (allocations["sram_bytes"] <= 150)]
        reference = nondominated(allowed[["loss", "weight_bytes"]].to_numpy())
        got = {(round(p.predicted_loss, 9), p.costs["weight_bytes"]) for p in points}
        assert got == {(round(l, 9), c) for l, c in reference}
        assert all(p.costs["latency_s"] <= 5 and p.costs["sram_bytes"] <= 150 for p in points)
