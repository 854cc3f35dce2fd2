"""Brute-force reference for the solvers' tests: enumerate every allocation of a small problem."""

from __future__ import annotations

import itertools
from collections.abc import Mapping

import numpy as np
import pandas as pd

SUMMED = ("weight_bytes", "latency_s")
MAXED = ("sram_bytes",)


def enumerate_allocations(
    omega: pd.DataFrame,
    costs: pd.DataFrame,
    ties: list[list[str]] = (),
    fixed: Mapping[str, str] | None = None,
) -> pd.DataFrame:
    """Every allocation over the pairs present in both tables that honours ties and pins.

    Returns:
        One row per allocation: one column per layer (its candidate), `loss`, and every cost
        column of `COLUMNS` (summed, or max for `MAXED`).
    """
    pairs = omega.merge(costs, on=["layer", "candidate"])
    layers = list(pd.unique(omega["layer"]))
    options = [pairs.loc[pairs["layer"] == layer, "candidate"].tolist() for layer in layers]
    lookup = pairs.set_index(["layer", "candidate"])
    columns = [c for c in (*SUMMED, *MAXED) if c in costs.columns]
    rows = []
    for combo in itertools.product(*options):
        assignment = dict(zip(layers, combo))
        if any(len({assignment[layer] for layer in group}) > 1 for group in ties):
            continue
        if any(assignment[layer] != cand for layer, cand in (fixed or {}).items()):
            continue
        picked = lookup.loc[list(assignment.items())]
        row = dict(assignment, loss=picked["omega"].sum())
        for column in columns:
            row[column] = picked[column].max() if column in MAXED else picked[column].sum()
        rows.append(row)
    return pd.DataFrame(rows, columns=[*layers, "loss", *columns])


def meets(allocations: pd.DataFrame, budgets: Mapping[str, float]) -> pd.Series:
    """Mask of the allocations within every budget."""
    mask = pd.Series(True, index=allocations.index)
    for name, limit in budgets.items():
        mask &= allocations[name] <= limit
    return mask


def nondominated(values: np.ndarray) -> set[tuple[float, ...]]:
    """The distinct non-dominated rows of `values` (minimisation), as tuples."""
    points = np.unique(values, axis=0)
    keep = [
        not np.any(np.all(points <= p, axis=1) & np.any(points < p, axis=1)) for p in points
    ]
    return {tuple(p) for p in points[keep]}


def random_tables(
    rng: np.random.Generator, n_layers: int, n_candidates: int, *, drop: float = 0.0
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Seeded random tables with float values (for instances too big to enumerate)."""
    candidates = ["int2", "int3", "int4", "int6", "int8", "fp8", "fp6", "fp16"][:n_candidates]
    bits = np.array([2, 3, 4, 6, 8, 8, 6, 16])[:n_candidates]
    rows = []
    for i in range(n_layers):
        params = int(rng.integers(1, 64)) * 4096
        sensitivity = rng.lognormal(0, 1.5)
        for name, b in zip(candidates, bits):
            rows.append((
                f"block.{i}-fc",
                name,
                sensitivity * params * 2.0 ** (-2 * b) * rng.lognormal(0, 0.3),
                params * b / 8,
                params * max(b, 4) / 8 / 2e12 + 1e-6 * rng.random(),
                float(params // 64 * (1 + b // 8)),
            ))
    frame = pd.DataFrame(rows, columns=["layer", "candidate", "omega", *SUMMED, *MAXED])
    if drop:
        keep = rng.random(len(frame)) >= drop
        keep[frame.groupby("layer").cumcount().to_numpy() == 0] = True
        frame = frame[keep]
    return frame[["layer", "candidate", "omega"]], frame[["layer", "candidate", *SUMMED, *MAXED]]
