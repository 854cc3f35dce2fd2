"""Solver benchmark: one optimal solve, the two-objective frontier, and the one-ILP-per-budget baselines.

Run: .venv/bin/python benchmarks/bench_solver.py [--baseline-solves N] [--scale-solves N] [--moe-solves N]
     [--cbc-limit-s S] [--part P] [--seed S]

Synthetic, seeded tables, 8 candidates per layer, omega = trace x params x 2^(-2 effective
bits) with log-normal traces, costs from the real shapes:

* `--part small` (LLaMA-7B's 224 linear layers; 1000 layers of varied shapes): for each cost
  objective (weight_bytes, latency_s), one optimal `solvers.solve`,
  `solvers.frontier(max_points=100)`, and `solvers.solve(backend="cbc")` re-solved at the
  same 100 evenly spaced budgets (what HAWQ-V3 does), with the speedup and the largest loss
  gap between the baseline's optimum and the best frontier point within the same budget.
* `--part scale` (LLaMA-70B's 560 linear layers; an MoE of 48 blocks x 128 experts x 3 =
  18,432 expert layers): the default 200-point frontier, one solve, and one ILP per budget
  with HiGHS and with CBC (the ModelOpt / HAWQ-V3 way) at `--scale-solves` of the 200
  budgets, extrapolated to 200; the largest loss gap to the HiGHS optimum at those budgets
  and the largest gap the solver itself proves; then ties (128 experts per tie group), a
  max budget and two summed budgets on the MoE table.

The machine's load is printed: ratios against baselines run in the same process are what
carry over between machines.
"""

from __future__ import annotations

import argparse
import os
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


def llama70b_shapes() -> list[tuple[int, int]]:
    """(in, out) of the 7 linear layers of each of LLaMA-2-70B's 80 blocks (8 KV heads of 128)."""
    block = [(8192, 8192), (8192, 1024), (8192, 1024), (8192, 8192)] + [(8192, 28672)] * 2 + [(28672, 8192)]
    return block * 80


MOE_BLOCKS, MOE_EXPERTS = 48, 128


def moe_shapes() -> list[tuple[int, int]]:
    """(in, out) of gate, up and down of every expert of a 48-block, 128-expert MoE (hidden
    2048, expert FFN 768, Qwen3-30B-A3B's shapes), block by block and expert by expert."""
    return [(2048, 768), (2048, 768), (768, 2048)] * (MOE_BLOCKS * MOE_EXPERTS)


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
    budgets = np.linspace(points[0].costs[column], points[-1].costs[column], 100)
    _, solve_s = timed(lambda: solvers.solve(omega, costs, {column: budgets[50]}))
    _, highs_s = timed(lambda: solvers.solve(omega, costs, {column: budgets[50]}, backend="highs"))

    timed_budgets = budgets[np.linspace(0, 99, min(baseline_solves, 100)).round().astype(int)]
    baseline, baseline_s, _ = per_budget_ilp(omega, costs, column, timed_budgets, "cbc", None)
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
        "max_rel_gap": grid_gaps(points, column, *zip(*baseline)),
    }


def grid_gaps(points: list, column: str, budgets, exact) -> float:
    """Largest (best frontier loss within budget - exact optimum) over `budgets`, relative to
    the optimum (> 0: the frontier is worse; the ILP's own 1e-9 tolerance shows as noise)."""
    cost = np.array([p.costs[column] for p in points])
    loss = np.array([p.predicted_loss for p in points])
    return max(
        (loss[cost <= budget * (1 + 1e-9)].min() - solution.predicted_loss) / abs(solution.predicted_loss)
        for budget, solution in zip(budgets, exact)
    )


def per_budget_ilp(omega, costs, column: str, budgets: np.ndarray, backend: str, limit_s: float | None):
    """One `solvers.solve(backend=...)` per budget: ((budget, solution) of each proven optimum,
    seconds, solves stopped at `limit_s`, whose time is a lower bound)."""
    found, stopped = [], 0
    start = time.perf_counter()
    for budget in budgets:
        try:
            solution = solvers.solve(omega, costs, {column: budget}, backend=backend, time_limit_s=limit_s)
        except solvers.SolverError:  # no allocation within the limit
            stopped += 1
            continue
        stopped += not solution.optimal
        if solution.optimal:
            found.append((budget, solution))
    return found, time.perf_counter() - start, stopped


def bench_scale(model, omega, costs, column: str, solves: dict[str, int], limit_s: float) -> dict:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", solvers.TruncatedFrontierWarning)
        points, frontier_s = timed(lambda: solvers.frontier(omega, costs, [column]))
    count = len(points)
    budgets = np.linspace(points[0].costs[column], points[-1].costs[column], count)
    _, solve_s = timed(lambda: solvers.solve(omega, costs, {column: budgets[count // 2]}))
    row = {
        "model": model,
        "objective": column,
        "frontier_s": frontier_s,
        "points": count,
        "proven": sum(p.optimal for p in points),
        "max_proven_gap": max(p.gap for p in points),
        "solve_s": solve_s,
    }
    exact = []
    for backend, n in solves.items():
        if not n:
            row[f"{backend}_per_budget_s"] = row[f"speedup_{backend}"] = "-"
            continue
        picked = budgets[np.linspace(0, count - 1, n + 2)[1:-1].round().astype(int)]  # interior budgets
        found, seconds, stopped = per_budget_ilp(omega, costs, column, picked, backend, limit_s)
        at_least = ">=" if stopped else ""
        row[f"{backend}_per_budget_s"] = f"{at_least}{seconds * count / n:.3g} ({n} timed)"
        row[f"speedup_{backend}"] = f"{at_least}{seconds * count / n / frontier_s:.3g}x"
        exact += found
    row["max_rel_gap_ilp"] = grid_gaps(points, column, *zip(*exact)) if exact else "-"
    return row


def print_table(rows: list[dict]) -> None:
    print(pd.DataFrame(rows).to_string(index=False, float_format=lambda v: f"{v:.3g}"))


def moe_constraints(omega: pd.DataFrame, costs: pd.DataFrame) -> list[dict]:
    """Ties (the 128 experts of each block's gate, up and down share a format), a max budget
    and two summed budgets on the MoE table: seconds and proven gap of each call."""
    layers = omega["layer"].unique()
    per_block = 3 * MOE_EXPERTS
    ties = [
        list(layers[block * per_block + proj : (block + 1) * per_block : 3])
        for block in range(MOE_BLOCKS)
        for proj in range(3)
    ]
    # A per-layer limit (e.g. a kernel's buffer): the largest layer's bytes, at most int6.
    capped = costs.assign(layer_bytes=costs["weight_bytes"])
    capped.attrs["max_columns"] = ["layer_bytes"]

    def budget(column: str, fraction: float) -> float:
        per_layer = costs.groupby("layer")[column]
        low, high = per_layer.min().sum(), per_layer.max().sum()
        return float(low + fraction * (high - low))

    weight, latency = budget("weight_bytes", 0.3), budget("latency_s", 0.35)
    layer_cap = {"layer_bytes": 2048 * 768 * 6 / 8}
    calls = {
        f"solve, ties ({len(ties)} groups of {MOE_EXPERTS} experts)": lambda: [
            solvers.solve(omega, costs, {"weight_bytes": weight}, ties)
        ],
        "frontier, ties": lambda: solvers.frontier(omega, costs, ["weight_bytes"], ties=ties),
        "solve, max budget": lambda: [solvers.solve(omega, capped, {"weight_bytes": weight, **layer_cap})],
        "frontier, max budget": lambda: solvers.frontier(omega, capped, ["weight_bytes"], layer_cap),
        "solve, two summed budgets (ILP, HiGHS)": lambda: [
            solvers.solve(omega, costs, {"weight_bytes": weight, "latency_s": latency})
        ],
    }
    rows = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", solvers.TruncatedFrontierWarning)
        for case, call in calls.items():
            points, seconds = timed(call)
            rows.append(
                {"case": case, "seconds": seconds, "points": len(points), "max_proven_gap": max(p.gap for p in points)}
            )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--baseline-solves",
        type=int,
        default=10,
        help="CBC solves timed per case, evenly picked among the 100 budgets (100: all; fewer extrapolate)",
    )
    parser.add_argument(
        "--scale-solves",
        type=int,
        default=5,
        help="ILP solves timed per backend and scale case, evenly picked among the 200 budgets, extrapolated to 200",
    )
    parser.add_argument("--moe-solves", type=int, default=2, help="HiGHS solves timed per MoE case (CBC: 1)")
    parser.add_argument("--cbc-limit-s", type=float, default=300.0, help="time limit of each scale ILP solve")
    parser.add_argument("--part", choices=["all", "small", "scale"], default="all")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    pd.set_option("display.width", 250)
    print(f"load: {os.getloadavg()[0]:.2f} (1-minute average) on {os.cpu_count()} cores")
    if args.part in ("all", "scale"):
        scale(args.scale_solves, args.moe_solves, args.cbc_limit_s, args.seed)
    if args.part in ("all", "small"):
        small(args.baseline_solves, args.seed)
    print(f"load at the end: {os.getloadavg()[0]:.2f}")


def scale(solves: int, moe_solves: int, limit_s: float, seed: int) -> None:
    rng = np.random.default_rng(seed)
    models = {"llama-70b": tables(llama70b_shapes(), rng), "moe-18432": tables(moe_shapes(), rng)}
    # One ILP of the MoE table takes HiGHS about half a minute and CBC minutes: fewer are timed.
    plans = {
        ("llama-70b", "weight_bytes"): {"highs": solves, "cbc": solves},
        ("llama-70b", "latency_s"): {"highs": solves, "cbc": solves},
        ("moe-18432", "weight_bytes"): {"highs": moe_solves, "cbc": 1},
        ("moe-18432", "latency_s"): {"highs": moe_solves, "cbc": 0},
    }
    results = [bench_scale(model, *models[model], column, plan, limit_s) for (model, column), plan in plans.items()]
    print_table(results)
    print(
        "frontier_s: solvers.frontier at its default 200 budgets; {highs,cbc}_per_budget_s: "
        "solvers.solve(backend=...) at the (n timed) budgets evenly picked among those 200, extrapolated to 200 "
        f"(one ILP per budget, as ModelOpt and HAWQ-V3; '>=': a solve hit the {limit_s:g} s limit); "
        "max_rel_gap_ilp: (best frontier loss within budget - ILP optimum) / optimum at the timed budgets "
        "(noise of the ILP's 1e-9 tolerance); max_proven_gap: the largest Solution.gap of the frontier "
        "(0: every point proven optimal)."
    )
    print_table(moe_constraints(*models["moe-18432"]))
    omega, costs = models["llama-70b"]
    points, seconds = timed(lambda: solvers.frontier(omega, costs, ["weight_bytes"], max_points=1_000_000))
    print(f"llama-70b complete exact frontier, loss vs weight_bytes: {len(points)} points in {seconds:.1f} s")


def small(baseline_solves: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    models = {"llama-7b": tables(llama7b_shapes(), rng), "varied-1000": tables(varied_shapes(1000, rng), rng)}
    results = []
    for model, (omega, costs) in models.items():
        for column in ("weight_bytes", "latency_s"):
            results.append(bench(model, omega, costs, column, baseline_solves))
    print_table(results)
    if baseline_solves < 100:
        print(
            f"baseline_cbc_s: {baseline_solves} of the 100 CBC solves timed, extrapolated to 100; "
            f"max_rel_gap checked at those {baseline_solves} budgets."
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
