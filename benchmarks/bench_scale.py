"""Benchmark of evaluations past one process: the same configurations validated serially and on
``--workers`` local processes, and, from measured per-evaluation times, the predicted wall time
of a MiniLM and of a 1B-parameter search at 1, 8 and 64 workers.

``python benchmarks/bench_scale.py [--points 16] [--workers 2] [--eval-1b-s S]``, and on a GPU
``python benchmarks/bench_scale.py --gpu`` (the digits search on the CPU and on the GPU; one
evaluation of a 1B-parameter model, whose seconds ``--eval-1b-s`` takes)

1. **Measured here.** ``--points`` configurations of example:digits-cnn (its uniform baselines,
   then seeded random mixes of the target's candidates) are validated through mpq's
   :class:`~mpq._executors.Runner`, as a search does: serially in this process, then all submitted at
   once to an :class:`mpq.ProcessPool`. The pool's start (each worker imports torch and
   rebuilds the task from its spec) is timed apart from the validation; the metrics must be
   identical. The ratio is serial seconds over pooled seconds.
2. **On paper.** The default search's evaluations: the ``measured`` probe's layer x candidate
   pairs and the uniform baselines are submitted together, spread over ``W`` workers; the
   bisection over the proxy frontier (8 steps over its 200 points) starts the ``W - 1``
   midpoints it may need next, so each round of ``t`` settles ``floor(log2(W + 1))`` steps;
   the covering of the usable region (``max_points`` = 20) starts the halves of the step it
   fills and the next widest steps, which it needs when its guesses hold (best case:
   ``ceil(20 / W)`` rounds) and not otherwise (worst case: 20). With ``t`` seconds per
   evaluation, ``p`` per probe pair and ``s`` to start the workers, the wall time is ``s``
   plus rounds of ``t`` plus ``ceil(pairs / W)`` rounds of ``p``.
   ``t`` and ``p`` are measured on MiniLM-L6 here (the [minilm] extra); the 1B model's ``t`` is
   ``--eval-1b-s`` (measured on a GPU), else MiniLM's scaled by the parameter count, printed
   with the arithmetic.
"""

from __future__ import annotations

import argparse
import math
import random
import time

import torch

import hwmodels
import mpq
from mpq._apply import activation_ranges
from mpq._executors import Runner, _where
from mpq._heldout import evaluate_configuration
from mpq._probes.graph import LayerGraph
from mpq._probes.measured import measure_pair

#: The default search's shape: ``max_points``, the bisection's steps over the proxy frontier's
#: 200 points, and the zcu104's candidates (one uniform baseline each).
MAX_POINTS = 20
BISECTION = math.ceil(math.log2(200))
MINILM_PARAMS = 22.7e6
MINILM_LAYERS = 39


def configurations(task: mpq.Task, count: int, seed: int = 0) -> dict[str, dict[str, str]]:
    names = list(mpq.layers(task.model, task.calibration[0][0])["layer"])
    candidates = list(hwmodels.load_device("zcu104").candidates)
    found = {f"all-{c}": dict.fromkeys(names, c) for c in candidates}
    rng = random.Random(seed)
    while len(found) < count:
        found[f"mix-{len(found)}"] = {name: rng.choice(candidates) for name in names}
    return dict(list(found.items())[:count])


def validate_all(runner: Runner, configs: dict, ranges: dict) -> tuple[dict[str, float], float]:
    start = time.perf_counter()
    handles = {key: runner.submit(evaluate_configuration, (config, ranges), key) for key, config in configs.items()}
    metrics = {key: handle.result() for key, handle in handles.items()}
    return metrics, time.perf_counter() - start


def measured_here(points: int, workers: int) -> float:
    """Validate the same configurations serially and on ``workers`` processes; the pool's start."""
    task = mpq.load_task("example:digits-cnn")
    configs = configurations(task, points)
    ranges = activation_ranges(task.model, task.calibration)
    serial, serial_s = validate_all(Runner(task), configs, ranges)
    with mpq.ProcessPool(workers) as pool:
        runner = Runner(task, pool)
        start = time.perf_counter()
        # Submitted together: one after another, each would find the first worker idle, and a
        # spawn pool starts another process only when none is idle.
        for handle in [runner.submit(_where, (), "starting a worker") for _ in range(workers)]:
            handle.result()  # every worker started, torch imported, the task rebuilt
        start_s = time.perf_counter() - start
        pooled, pooled_s = validate_all(runner, configs, ranges)
    assert pooled == serial, "the workers measured other metrics than this process"
    print(f"example:digits-cnn, {points} configurations, the same metrics serially and on {workers} processes")
    print("| run | validation s | per evaluation s |")
    print("|---|---|---|")
    print(f"| serial, this process | {serial_s:.2f} | {serial_s / points:.3f} |")
    print(f"| {workers} worker processes | {pooled_s:.2f} | {pooled_s / points:.3f} |")
    print(f"ratio serial / {workers} workers: {serial_s / pooled_s:.2f}x (workers' start, apart: {start_s:.1f} s)")
    return start_s


def minilm_times() -> tuple[float, float, str]:
    """One MiniLM-L6 evaluation (all-w8a8) and one measured-probe pair, timed here."""
    task = mpq.load_task("example:minilm")
    table = mpq.layers(task.model, task.calibration[0][0])
    names = list(table["layer"])
    ranges = activation_ranges(task.model, task.calibration)
    runner = Runner(task)
    runner.call(evaluate_configuration, (dict.fromkeys(names, "w8a8"), ranges), "warm-up")
    start = time.perf_counter()
    runner.call(evaluate_configuration, (dict.fromkeys(names, "w8a8"), ranges), "all-w8a8")
    eval_s = time.perf_counter() - start
    acts = tuple(LayerGraph(task, table).act_layers)
    runner.call(measure_pair, (None, acts, names[1], "w8a8"), "warm-up")  # the float losses, once
    start = time.perf_counter()
    runner.call(measure_pair, (None, acts, names[2], "w4a8"), "pair")
    return eval_s, time.perf_counter() - start, "measured here, one process"


def predict(name: str, eval_s: float, pair_s: float, layers: int, start_s: float, source: str) -> None:
    candidates = len(hwmodels.load_device("zcu104").candidates)
    pairs = layers * candidates
    print(
        f"\n{name}: t = {eval_s:.3g} s per evaluation, p = {pair_s:.3g} s per probe pair ({source}), s = {start_s:.3g} s"
    )
    print(
        f"rounds of t: bisection ceil({BISECTION} / floor(log2(W + 1))) (W evaluations at once settle that many steps); "
        f"covering ceil({MAX_POINTS} / W) when the evaluations it starts ahead are the ones it needs, {MAX_POINTS} "
        f"when none is; baselines ceil({candidates} / W); probe pairs ceil({layers} layers x {candidates} / W) "
        "rounds of p"
    )
    print("| workers | arithmetic (best; worst) | predicted wall |")
    print("|---|---|---|")
    for workers in (1, 8, 64):
        bisection = math.ceil(BISECTION / math.floor(math.log2(workers + 1)))
        batched = math.ceil(candidates / workers)
        walls, sums = [], []
        for covering in (math.ceil(MAX_POINTS / workers), MAX_POINTS):
            rounds = bisection + covering + batched
            walls.append(start_s + rounds * eval_s + math.ceil(pairs / workers) * pair_s)
            sums.append(f"{start_s:.3g} + {rounds} x {eval_s:.3g} + {math.ceil(pairs / workers)} x {pair_s:.3g}")
        if sums[0] == sums[1]:
            print(f"| {workers} | {sums[0]} | {walls[0] / 60:.1f} min |")
        else:
            print(f"| {workers} | {sums[0]}; {sums[1]} | {walls[0] / 60:.1f}-{walls[1] / 60:.1f} min |")


def on_gpu() -> None:
    """``--gpu``: the digits search on the CPU and on the GPU, and one evaluation of a 1B model."""
    import tempfile

    from torch import nn

    fast = mpq.ProbeSettings(tolerance=0.2, min_samples=4, max_samples=8)
    print("| example:digits-cnn search, --max-points 8 | device | wall s |")
    print("|---|---|---|")
    with tempfile.TemporaryDirectory() as folder:
        for probes in (("hessian_w", "hessian_a"), ("measured",)):
            for device in ("cpu", "cuda"):
                task = mpq.load_task("example:digits-cnn")
                settings = mpq.ProbeSettings(probes=probes) if probes == ("measured",) else fast
                start = time.perf_counter()
                run = mpq.search(task, settings=settings, max_points=8, device=device, db=f"{folder}/{device}.db")
                wall = time.perf_counter() - start
                print(f"| probe {'+'.join(probes)}, {run.record['evaluations']} evaluations | {device} | {wall:.1f} |")
    # 1B parameters: 8 blocks of Linear(4096, 16384) and Linear(16384, 4096), on 256 sequences of
    # 512 tokens (4096 features each) held out, in fp32 as mpq fake-quantizes.
    torch.manual_seed(0)
    blocks = [
        [nn.Linear(4096, 16384, device="cuda"), nn.ReLU(), nn.Linear(16384, 4096, device="cuda")] for _ in range(8)
    ]
    model = nn.Sequential(*[layer for block in blocks for layer in block]).eval()
    params = sum(p.numel() for p in model.parameters())
    calibration = [(torch.randn(8, 512, 4096, device="cuda"), None)]
    heldout = [torch.randn(16, 512, 4096, device="cuda") for _ in range(16)]

    def evaluate(quantized: nn.Module) -> float:
        with torch.no_grad():
            return float(sum(nn.functional.cosine_similarity(quantized(x), model(x), dim=-1).mean() for x in heldout))

    task = mpq.Task("1b", model, calibration, lambda out, _: out.square().mean(), evaluate)
    ranges = activation_ranges(task.model, task.calibration)
    names = [name for name, module in model.named_modules() if isinstance(module, nn.Linear)]
    for candidate in ("w8a8", "w4a8"):
        evaluate_configuration(task, {}, dict.fromkeys(names, candidate), ranges)  # warm-up
        torch.cuda.synchronize()
        start = time.perf_counter()
        evaluate_configuration(task, {}, dict.fromkeys(names, candidate), ranges)
        torch.cuda.synchronize()
        print(f"{params / 1e9:.2f} B parameters, all-{candidate}: one evaluation {time.perf_counter() - start:.2f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--eval-1b-s", type=float, default=None, help="a measured 1B evaluation, in seconds")
    parser.add_argument("--gpu", action="store_true", help="only the GPU timings (--device cuda; a 1B evaluation)")
    args = parser.parse_args()
    if args.gpu:
        on_gpu()
        return
    start_s = measured_here(args.points, args.workers)
    eval_s, pair_s, source = minilm_times()
    predict("MiniLM-L6 (22.7 M parameters, CPU)", eval_s, pair_s, MINILM_LAYERS, start_s, source)
    scale = 1e9 / MINILM_PARAMS
    if args.eval_1b_s is None:
        big_eval, big_pair, big_source = eval_s * scale, pair_s * scale, f"MiniLM's x {scale:.0f} parameters"
    else:
        big_eval, big_pair, big_source = (
            args.eval_1b_s,
            args.eval_1b_s * pair_s / eval_s,
            "t measured on a GPU; p/t MiniLM's",
        )
    predict("1B parameters (16 decoder blocks of 7 linear layers)", big_eval, big_pair, 16 * 7, start_s, big_source)


if __name__ == "__main__":
    main()
