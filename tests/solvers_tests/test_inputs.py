"""Input checks: every bad table, budget, tie, pin or parameter fails at the entry with one
line `<subject>: <what is wrong>; <the fix>.`, as a SolverInputError that is a ValueError."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

import solvers


def expect(pattern, call):
    with pytest.raises(solvers.SolverInputError, match=pattern) as caught:
        call()
    message = str(caught.value)
    assert isinstance(caught.value, ValueError)
    template = message.startswith("The '") and " instead." in message  # a bad parameter value
    assert "\n" not in message and ("; " in message or template) and message.endswith(".")
    return message


def test_tables_must_be_frames(three_layers):
    omega, costs = three_layers
    expect(r"^omega: expected a pandas DataFrame, got list", lambda: solvers.solve([], costs))


@pytest.mark.parametrize(
    ("table", "column", "pattern"),
    [
        ("omega", "omega", r"^omega: missing column\(s\) omega"),
        ("costs", "candidate", r"^costs: missing column\(s\) candidate"),
    ],
)
def test_missing_columns(three_layers, table, column, pattern):
    omega, costs = three_layers
    tables = {"omega": omega, "costs": costs}
    tables[table] = tables[table].drop(columns=column)
    expect(pattern, lambda: solvers.solve(tables["omega"], tables["costs"]))


def test_costs_need_a_numeric_column(three_layers):
    omega, costs = three_layers
    only_names = costs[["layer", "candidate"]].assign(note="x")
    expect(r"^costs: no numeric cost column", lambda: solvers.solve(omega, only_names))


@pytest.mark.parametrize(
    ("table", "column", "value", "pattern"),
    [
        ("omega", "omega", np.nan, r"^omega: column omega is nan for \(layer 'fc1', candidate 'int8'\)"),
        ("costs", "latency_s", np.inf, r"^costs: column latency_s is inf for \(layer 'fc1'"),
        ("costs", "weight_bytes", -1.0, r"^costs: column weight_bytes is -1 .*>= 0"),
    ],
)
def test_bad_values(three_layers, table, column, value, pattern):
    omega, costs = (t.copy() for t in three_layers)
    frame = omega if table == "omega" else costs
    frame[column] = frame[column].astype(float)
    frame.loc[4, column] = value
    expect(pattern, lambda: solvers.solve(omega, costs))


def test_duplicated_pair(three_layers):
    omega, costs = three_layers
    doubled = pd.concat([costs, costs.iloc[[2]]])
    expect(
        r"^costs: pair \(layer 'conv', candidate 'fp16'\) appears 2 times; keep one row",
        lambda: solvers.solve(omega, doubled),
    )


def test_non_string_names(three_layers):
    omega, costs = three_layers
    numbered = omega.assign(layer=[0, 0, 0, 1, 1, 1, 2, 2, 2])
    expect(r"^omega: column layer holds 0 of type int; use strings", lambda: solvers.solve(numbered, costs))


def test_layer_without_cost_rows(three_layers):
    omega, costs = three_layers
    expect(
        r"^costs: layer 'fc2' has no row for any of its candidates \(int4, int8, fp16\)",
        lambda: solvers.solve(omega, costs[costs["layer"] != "fc2"]),
    )


def test_max_columns_attribute(three_layers):
    omega, costs = three_layers
    summed = costs.copy()
    summed.attrs["max_columns"] = []
    assert solvers.solve(omega, summed, {"weight_bytes": 90}).costs["sram_bytes"] == 200 + 100 + 50
    summed.attrs["max_columns"] = ["sram_byte"]
    expect(r"did you mean 'sram_bytes'\?", lambda: solvers.solve(omega, summed))


def test_unknown_budget_lists_columns(three_layers):
    message = expect(r"^budgets: unknown cost column 'latency'", lambda: solvers.solve(*three_layers, {"latency": 1}))
    assert "choose one of weight_bytes, latency_s, sram_bytes (did you mean 'latency_s'?)" in message


@pytest.mark.parametrize("value", [-1, 0, float("nan"), float("inf"), True, "10"])
def test_budget_values(three_layers, value):
    expect(
        r"^budgets: weight_bytes must be a positive finite number",
        lambda: solvers.solve(*three_layers, {"weight_bytes": value}),
    )


def test_unknown_tie_layer(three_layers):
    expect(
        r"^ties: unknown layer 'fc3'.*did you mean 'fc\d'", lambda: solvers.solve(*three_layers, ties=[["fc1", "fc3"]])
    )


def test_tie_given_as_a_string(three_layers):
    expect(r"^ties: group 'fc1' is not a list", lambda: solvers.solve(*three_layers, ties=["fc1"]))


def test_tie_without_shared_candidate(three_layers):
    omega, costs = three_layers
    costs = costs[~((costs["layer"] == "fc1") & (costs["candidate"] != "fp16"))]
    costs = costs[~((costs["layer"] == "conv") & (costs["candidate"] == "fp16"))]
    message = expect(
        r"^ties: layers conv, fc1 share no candidate \(conv: int4, int8; fc1: fp16\)",
        lambda: solvers.solve(omega, costs, ties=[["conv", "fc1"]]),
    )
    assert message.endswith("tie only layers that run a common candidate.")


def test_overlapping_ties_merge(three_layers):
    solution = solvers.solve(*three_layers, {"weight_bytes": 100}, ties=[["conv", "fc1"], ["fc1", "fc2"]])
    assert len(set(solution.assignment.values())) == 1


def test_pins_disagreeing_within_a_tie(three_layers):
    expect(
        r"^fixed: tied layers conv, fc1 are pinned to both 'int4' and 'int8'",
        lambda: solvers.solve(*three_layers, ties=[["conv", "fc1"]], fixed={"conv": "int4", "fc1": "int8"}),
    )


def test_unknown_pinned_layer(three_layers):
    expect(r"^fixed: unknown layer 'fc'", lambda: solvers.solve(*three_layers, fixed={"fc": "int8"}))


@pytest.mark.parametrize(
    ("objectives", "pattern"),
    [
        (["sram_bytes"], r"^objectives: sram_bytes aggregates by maximum"),
        (["latency"], r"^objectives: unknown cost column 'latency'"),
        ([], r"^objectives: need 1 to 2 distinct cost columns"),
        (["latency_s", "latency_s"], r"^objectives: need 1 to 2 distinct"),
        ("latency_s", r"^objectives: expected a list of names"),
    ],
)
def test_bad_objectives(three_layers, objectives, pattern):
    expect(pattern, lambda: solvers.frontier(*three_layers, objectives))


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        (
            {"max_points": 1},
            r"^The 'max_points' parameter of frontier must be an int in the range \[2, inf\)\. Got 1 instead\.$",
        ),
        (
            {"backend": "gurobi"},
            r"^The 'backend' parameter of frontier must be one of 'auto', 'highs', 'cbc'\. Got 'gurobi'",
        ),
        (
            {"time_limit_s": 0},
            r"^The 'time_limit_s' parameter of frontier must be a positive finite number of seconds or None",
        ),
    ],
)
def test_bad_parameters(three_layers, kwargs, pattern):
    expect(pattern, lambda: solvers.frontier(*three_layers, ["weight_bytes"], **kwargs))


def test_extra_columns_and_cost_only_layers_are_ignored(three_layers):
    omega, costs = three_layers
    noisy_omega = omega.assign(weight_sq_err=1.0, act_sq_err=2.0)
    extra = pd.concat([costs, costs.iloc[[0]].assign(layer="unused")]).assign(device="gpu")
    assert solvers.solve(noisy_omega, extra, {"weight_bytes": 90}) == solvers.solve(omega, costs, {"weight_bytes": 90})


def test_import_leaves_heavy_modules_out():
    code = "import sys, solvers; print(sorted(m for m in ('torch', 'sqlalchemy', 'mpq', 'optuna') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
