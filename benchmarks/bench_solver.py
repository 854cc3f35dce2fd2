"""Solver benchmark: one optimal solve, the two-objective frontier, and the HAWQ-V3 baseline.

Run: .venv/bin/python benchmarks/bench_solver.py [--baseline-solves N] [--seed S]

Synthetic, seeded tables for (a) the 224 linear layers of a 7B LLaMA-style model and (b) a
1000-layer model of varied shapes, 8 candidates each. For each model and each cost objective
(weight_bytes, latency_s) it prints the time of one optimal `solvers.solve`, of
`solvers.frontier(max_points=100)`, and of the baseline: `solvers.solve(backend="cbc")`
re-solved at the same 100 evenly spaced budgets (what HAWQ-V3 does), with the speedup and the
largest loss gap between the baseline's optimum and the best frontier point within the same
budget (positive: the frontier is worse).
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout, uninstalled
import solvers  # noqa: E402

# name: (weight bits, effective bits for the error model, compute format on the GPU)
CANDIDATES = {
    "int2": (2, 2.0, "fp16"),  # weight-only low bits dequantise to FP16 (no INT4/INT2 tensor cores on H100)
    "int3": (3, 3.0, "fp16"),
    "int4": (4, 4.0, "fp16"),
    "int6": (6, 6.0, "fp16"),
    "int8": (8, 8.0, "int8"),
    "fp8": (8, 5.0, "int8"),  # E4M3: 3 mantissa bits plus exponent, ~5 effective bits on Gaussian weights
    "fp6": (6, 3.5, "fp16"),
    "fp16": (16, 11.0, "fp16"),
}
PEAK_OPS = {"fp16": 989.4e12, "int8": 1978.9e12}  # H100 SXM5 dense tensor-core peaks (NVIDIA datasheet)
DRAM_BYTES_PER_S = 3350e9  # H100 SXM5 HBM3 bandwidth (NVIDIA datasheet)
LAUNCH_S = 2e-6  # per-kernel overhead, an assumption of this benchmark
TOKENS = 64  # tokens per forward pass


def llama7b_shapes() -> list[tuple[int, int]]:
    """(in, out) of the 7 linear layers of each of LLaMA-7B's 32 blocks."""
    block = [(4096, 4096)] * 4 + [(4096, 11008)] * 2 + [(11008, 4096)]
    return block * 32


def varied_shapes(count: int, rng: np.random.Generator) -> list[tuple[int, int]]:
    dims = np.array([256, 512, 768, 1024, 2048, 3072, 4096])
    return list(zip(rng.choice(dims, count).tolist(), rng.choice(dims, count).tolist()))


def tables(shapes: list[tuple[int, int]], rng: np.random.Generator) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Omega (sensitivity * params * 2^(-2 bits) with noise) and roofline costs."""
    rows = []
    sensitivity = rng.lognormal(0.0, 1.5, len(shapes))
    for i, (fan_in, fan_out) in enumerate(shapes):
        params = fan_in * fan_out
        for name, (bits, effective_bits, compute) in CANDIDATES.items():
            weight_bytes = params * bits / 8
            act_bytes = TOKENS * (fan_in + fan_out) * 2
            latency = max(2 * params * TOKENS / PEAK_OPS[compute], (weight_bytes + act_bytes) / DRAM_BYTES_PER_S)
            omega = sensitivity[i] * params * 2.0 ** (-2 * effective_bits) * rng.lognormal(0.0, 0.3) * 1e-9
            rows.append((f"layer{i}", name, omega, weight_bytes, latency + LAUNCH_S))
    frame = pd.DataFrame(rows, columns=["layer", "candidate", "omega", "weight_bytes", "latency_s"])
    return frame[["layer", "candidate", "omega"]], frame[["layer", "candidate", "weight_bytes", "latency_s"]]


def timed(fn):
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


def bench(model: str, omega: pd.DataFrame, costs: pd.DataFrame, column: str, baseline_solves: int) -> dict:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", solvers.TruncatedFrontierWarning)
        points, frontier_s = timed(lambda: solvers.frontier(omega, costs, [column], max_points=100))
        default_points, default_s = timed(lambda: solvers.frontier(omega, costs, [column]))
    point_cost = np.array([p.costs[column] for p in points])
    point_loss = np.array([p.predicted_loss for p in points])
    budgets = np.linspace(point_cost[0], point_cost[-1], 100)
    _, solve_s = timed(lambda: solvers.solve(omega, costs, {column: budgets[50]}))
    _, highs_s = timed(lambda: solvers.solve(omega, costs, {column: budgets[50]}, backend="highs"))

    timed_budgets = budgets[np.linspace(0, 99, min(baseline_solves, 100)).round().astype(int)]
    baseline, baseline_s = timed(
        lambda: [solvers.solve(omega, costs, {column: b}, backend="cbc") for b in timed_budgets]
    )
    gaps = [
        (point_loss[point_cost <= budget * (1 + 1e-9)].min() - solution.predicted_loss) / abs(solution.predicted_loss)
        for budget, solution in zip(timed_budgets, baseline)
    ]
    baseline_s *= len(budgets) / len(timed_budgets)
    return {
        "model": model,
        "objective": column,
        "solve_s": solve_s,
        "solve_highs_s": highs_s,
        "frontier100_s": frontier_s,
        "frontier_default_s": default_s,
        "default_points": len(default_points),
        "baseline_cbc_s": baseline_s,
        "speedup": baseline_s / frontier_s,
        "gap_checked": len(timed_budgets),
        "max_rel_gap": max(gaps),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--baseline-solves",
        type=int,
        default=10,
        help="CBC solves timed per case, evenly picked among the 100 budgets (100: all; fewer extrapolate)",
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    models = {"llama-7b": tables(llama7b_shapes(), rng), "varied-1000": tables(varied_shapes(1000, rng), rng)}
    results = []
    for model, (omega, costs) in models.items():
        for column in ("weight_bytes", "latency_s"):
            results.append(bench(model, omega, costs, column, args.baseline_solves))
    pd.set_option("display.width", 250)
    print(pd.DataFrame(results).to_string(index=False, float_format=lambda v: f"{v:.3g}"))
    if args.baseline_solves < 100:
        print(
            f"baseline_cbc_s: {args.baseline_solves} of the 100 CBC solves timed, extrapolated to 100; "
            f"max_rel_gap checked at those {args.baseline_solves} budgets."
        )
    print(
        "baseline: solvers.solve(backend='cbc') at np.linspace(first, last frontier cost, 100) (HAWQ-V3);"
        " frontier100: solvers.frontier(max_points=100), the exact optima at those budgets;"
        " max_rel_gap: (best frontier loss within budget - baseline loss) / baseline loss, > 0 if the frontier is worse."
    )

    omega, costs = models["llama-7b"]
    for column in ("weight_bytes", "latency_s"):
        points, seconds = timed(lambda column=column: solvers.frontier(omega, costs, [column], max_points=100_000))
        print(f"llama-7b complete exact frontier, loss vs {column}: {len(points)} points in {seconds:.2f} s")
    omega, costs = models["varied-1000"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", solvers.ApproximateFrontierWarning)
        points, seconds = timed(lambda: solvers.frontier(omega, costs, ["weight_bytes", "latency_s"]))
    print(f"varied-1000 three-objective approximate frontier: {len(points)} points in {seconds:.2f} s")


if __name__ == "__main__":
    main()
