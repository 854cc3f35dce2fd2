"""`solvers.price`: one configuration's predicted loss and costs, against brute-force enumeration."""

from __future__ import annotations

import time

import numpy as np
import pytest
from solver_enumeration import enumerate_allocations, random_tables

import solvers


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_every_configuration_is_priced_as_enumeration_sums_it(seed):
    omega, costs = random_tables(np.random.default_rng(seed), n_layers=4, n_candidates=3, drop=0.2)
    layers = list(dict.fromkeys(omega["layer"]))
    for _, row in enumerate_allocations(omega, costs).iterrows():
        assignment = {layer: row[layer] for layer in reversed(layers)}  # any order in, omega's order out
        priced = solvers.price(omega, costs, assignment)
        assert list(priced.assignment) == layers and priced.assignment == assignment
        assert priced.predicted_loss == pytest.approx(row["loss"], rel=1e-12)
        for column in ("weight_bytes", "latency_s", "sram_bytes"):  # sram_bytes: the maximum, not the sum
            assert priced.costs[column] == pytest.approx(row[column], rel=1e-12)
        assert (priced.optimal, priced.status, priced.gap) == (False, "priced", None)


def test_price_agrees_with_a_solve_pinning_every_layer_and_costs_a_lookup(three_layers):
    omega, costs = three_layers
    assignment = {"conv": "int8", "fc1": "fp16", "fc2": "int4"}
    started = time.perf_counter()
    priced = solvers.price(omega, costs, assignment)
    elapsed_s = time.perf_counter() - started
    pinned = solvers.solve(omega, costs, fixed=assignment)
    assert (priced.assignment, priced.costs) == (pinned.assignment, pinned.costs)
    assert priced.predicted_loss == pytest.approx(pinned.predicted_loss)
    assert elapsed_s < 1.0  # a lookup; a loose bound that only a solve-sized regression breaks


@pytest.mark.parametrize(
    ("assignment", "pattern"),
    [
        ({"conv": "int8", "fc1": "int8"}, r"^assignment: no candidate for layer\(s\) 'fc2'; give every layer"),
        ({"conv": "int8", "fc1": "int8", "fc2": "int9"}, r"^assignment\['fc2'\]: unknown candidate 'int9'"),
        ({"conv": "int8", "fc1": "int8", "fc2": "int4", "fc3": "int4"}, r"^assignment: unknown layer 'fc3'"),
    ],
)
def test_a_bad_assignment_is_one_line_naming_it(three_layers, assignment, pattern):
    omega, costs = three_layers
    with pytest.raises(solvers.SolverInputError, match=pattern):
        solvers.price(omega, costs, assignment)
