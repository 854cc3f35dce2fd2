"""The calibrated quantizer against mpq's first one: uniform candidates, peers' configurations, frontiers.

    python benchmarks/bench_quantizer.py [--tasks digits-cnn minilm-small] [--part uniform frontier clips]
        [--evals 30]

Part ``uniform``: the held-out metric of each uniform candidate (every layer at it) under mpq's
first quantizer (``legacy``: symmetric narrow grids, max |x| ranges, no bias correction) and under
the calibrated one with each range method (``max``, ``mse``, ``percentile``), bias correction on
(``+bc``) and off, beside the float model. On digits also the configurations two peers chose
(Sony MCT 2.6.1 and AIMET AMP 2.42, from issue 24: MCT 0.9779 and AIMET 0.9759 under their own
quantizers). The metric's resolution: digits has 497 held-out images (one image = 0.002).

Part ``frontier``: the same search (``mpq.search(task, target, objectives=[obj], max_drop=0.01,
max_evals=N)``) with the legacy quantizer and with the default one, in one process: the
cheapest measured configuration within a 1 % drop (its cost over all-highest's) and the
measured hypervolume in bench_frontier.py's box (cost between all-lowest and all-highest, metric
within 10 drops of float), from every configuration the search measured.

Part ``clips``: the mse weight clip search (``mpq._quantizer.weight_clip``: sorted rows and an
early stop) against its definition, rounding every weight of every layer at each of the 100
``MSE_RATIOS`` and keeping the least squared error: per weight format (those of ``CLIP_FORMATS``),
the clips that differ, ``sum ||Q(W) - W||^2`` under each, and the CPU seconds of each.

Times with one torch thread; prints the load average.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

import mpq
from mpq._quantizer import LEGACY_QUANTIZER, MSE_RATIOS, QuantizerSettings, weight_clip, weight_format

sys.path.insert(0, str(Path(__file__).parent))
from bench_frontier import DROP, SPAN, cheapest_within, hypervolume  # noqa: E402

UNIFORM = {
    "digits-cnn": ["w8a8", "w4a8", "w4a4", "w2a8", "w2a2", "wint4_g32a16"],
    "minilm-small": ["w8a8", "w4a8", "w4a4", "w2a8", "w2a2", "wint4_g128a16", "wnvfp4afp8"],
}
LAYER_TYPES = (nn.Linear, nn.Conv2d, nn.Embedding)
DIGITS_LAYERS = ("conv1", "conv2", "conv3", "conv4", "fc1", "fc2")
PEERS = {  # issue 24: the peer's own held-out accuracy at these bits
    "MCT 8,4,2,2,2,8 a8 (0.9779)": ((8, 4, 2, 2, 2, 8), (8,) * 6),
    "MCT 8,2,4,2,2,4 a8 (0.9738)": ((8, 2, 4, 2, 2, 4), (8,) * 6),
    "AIMET w4a4x3 w2a2 w4a2 w4a8 (0.9759)": ((4, 4, 4, 2, 4, 4), (4, 4, 4, 2, 2, 8)),
}
QUANTIZERS = {"legacy": LEGACY_QUANTIZER} | {
    f"{method}{'+bc' if bc else ''}": QuantizerSettings(ranges=method, bias_correction=bc)
    for method in ("max", "mse", "percentile")
    for bc in (False, True)
}
#: Weight formats whose clip the mse method searches: h100-sxm's (the minilm-small search) and more.
CLIP_FORMATS = ("int4_pc", "int8_pc", "fp8_e4m3", "fp4_e2m1", "int2_pc", "int4")
FRONTIER_TARGETS = {"digits-cnn": ("zcu104", "latency_s"), "minilm-small": ("h100-sxm", "weight_bytes")}


def note(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def uniform(name: str, task: mpq.Task) -> None:
    layer_names = list(mpq.layers(task.model, task.calibration[0][0])["layer"])
    configurations = {c: dict.fromkeys(layer_names, c) for c in UNIFORM[name]}
    if name == "digits-cnn":
        for label, (weights, acts) in PEERS.items():
            configurations[label] = {layer: f"w{w}a{a}" for layer, w, a in zip(DIGITS_LAYERS, weights, acts)}
    metrics: dict[str, dict[str, float]] = {}
    for label, settings in QUANTIZERS.items():
        start = time.perf_counter()
        calibrated = mpq.calibrate(task.model, task.calibration, quantizer=settings)
        metrics[label] = dict(mpq.validate(task, configurations, act_ranges=calibrated))
        note(f"[{name}] {label}: {time.perf_counter() - start:.1f} s")
    print(f"\n{name}: float {task.metric_name} {float(task.evaluate(task.model)):.4f}")
    print("| configuration | " + " | ".join(QUANTIZERS) + " |")
    print("|---|" + "---:|" * len(QUANTIZERS))
    for config in configurations:
        best = max(metrics[q][config] for q in QUANTIZERS)
        cells = [
            f"**{metrics[q][config]:.4f}**" if metrics[q][config] == best else f"{metrics[q][config]:.4f}"
            for q in QUANTIZERS
        ]
        print(f"| {config} | " + " | ".join(cells) + " |")


def frontier(name: str, task: mpq.Task, evals: int, folder: Path) -> None:
    target, objective = FRONTIER_TARGETS[name]
    float_metric = float(task.evaluate(task.model))
    print(f"\n{name} on {target}, objective {objective}, max_drop {DROP}, max_evals {evals}:")
    print("| quantizer | cheapest within 1 % (rel. to all-highest) | its metric | measured hypervolume | wall s |")
    print("|---|---:|---:|---:|---:|")
    for label, settings in (("legacy", LEGACY_QUANTIZER), ("default (mse+bc)", QuantizerSettings())):
        start = time.perf_counter()
        run = mpq.search(
            task,
            target=target,
            objectives=[objective],
            settings=mpq.ProbeSettings(quantizer=settings),
            max_drop=DROP,
            max_evals=evals,
            db=folder / f"{name}-{label.split()[0]}.db",
        )
        seconds = time.perf_counter() - start
        costs = run.tables["costs"].groupby("layer")[objective]
        low, high = float(costs.min().sum()), float(costs.max().sum())
        measured = run.frontier[run.frontier["measured_metric"].notna()]
        points = list(zip(measured[objective].astype(float), measured["measured_metric"].astype(float)))
        box = (low, high, float_metric - SPAN, float_metric)
        cheapest = cheapest_within(points, float_metric - DROP)
        metric = max((m for c, m in points if c == cheapest), default=float("nan"))
        rel = "none" if cheapest is None else f"{cheapest / high:.3f}"
        print(f"| {label} | {rel} | {metric:.4f} | {hypervolume(points, box):.3f} | {seconds:.0f} |")


def exhaustive_clip(fmt, weight: torch.Tensor) -> torch.Tensor:
    """The mse clip by its definition: every weight rounded at every ratio (ties: the widest)."""
    rows = weight.detach().float().reshape(weight.shape[0] if fmt.granularity == "channel" else 1, -1)
    amax = rows.abs().amax(1)
    best_err, best = torch.full_like(amax, math.inf), amax.clone()
    for ratio in MSE_RATIOS.tolist():
        err = (fmt.quantize(rows, amax * ratio) - rows).pow(2).sum(1)
        best = torch.where(err < best_err, amax * ratio, best)
        best_err = torch.minimum(err, best_err)
    return best.reshape(()) if fmt.granularity == "tensor" else best


def clips(name: str, task: mpq.Task) -> None:
    settings = QuantizerSettings()
    weights = {n: m.weight.detach() for n, m in task.model.named_modules() if isinstance(m, LAYER_TYPES)}
    print(f"\n{name}: mse weight clips, search against rounding every weight at every ratio ({len(weights)} layers)")
    print("| format | clips that differ | sum err, search | sum err, rounding | CPU s, search | CPU s, rounding |")
    print("|---|---:|---:|---:|---:|---:|")
    for format_name in CLIP_FORMATS:
        fmt = weight_format(mpq.get_format(format_name), settings)
        seconds, differ, total, errors = [0.0, 0.0], 0, 0, [0.0, 0.0]
        for weight in weights.values():
            found = []
            for i in range(2):
                start = time.process_time()
                found.append(weight_clip(fmt, weight, settings) if i == 0 else exhaustive_clip(fmt, weight))
                seconds[i] += time.process_time() - start
                errors[i] += float((fmt.quantize(weight, found[i]).double() - weight.double()).pow(2).sum())
            differ += int((found[0] != found[1]).sum())
            total += found[0].numel()
        print(
            f"| {format_name} | {differ} of {total} | {errors[0]:.10g} | {errors[1]:.10g} | "
            f"{seconds[0]:.2f} | {seconds[1]:.2f} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", choices=list(UNIFORM), default=list(UNIFORM))
    parser.add_argument("--part", nargs="+", choices=["uniform", "frontier", "clips"], default=["uniform", "frontier"])
    parser.add_argument("--evals", type=int, default=30, help="max_evals of each frontier search")
    args = parser.parse_args()
    torch.set_num_threads(1)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        for name in args.tasks:
            task = mpq.load_task(f"example:{name}")
            if "uniform" in args.part:
                uniform(name, task)
            if "frontier" in args.part:
                frontier(name, task, args.evals, Path(folder))
            if "clips" in args.part:
                clips(name, task)
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"\nload average {load}; torch threads {torch.get_num_threads()}; wall {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
