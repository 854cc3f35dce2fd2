"""Benchmark of mpq's sensitivity probes: cost to 5 % per layer, time on MiniLM, and probe quality.

Three measurements, each in one process, same model, seed and stopping rule:

``python benchmarks/bench_probe.py`` (the headline, example:digits-cnn)
    HVPs, backward passes and seconds until every layer's trace has a relative standard error
    below 5 %: mpq's default estimator (``split``: all layers from one output-noise backward
    pass plus a residual HVP per sample), the plain joint Hutchinson estimator (one Rademacher
    vector over all layers, one HVP per sample), and PyHessian's loop (one layer at a time, an
    HVP per sample and layer, each layer stopped on its own) as the baseline. The ratio of
    seconds, baseline / mpq, is the headline.

``python benchmarks/bench_probe.py --example minilm``
    The full ``hessian_w`` probe of example:minilm (22.5 M weights, 128 calibration sentences of
    64 tokens): seconds and samples. The per-layer baseline is timed on its first layers and
    extrapolated (it would take tens of minutes in full).

``python benchmarks/bench_probe.py --quality [--example NAME]``
    Spearman rank correlation, over all (layer, candidate) pairs, between each probe's omega and
    the ``measured`` loss increase (one layer quantized at a time), per example.

Timings on a shared machine are noisy: read the ratios, which come from one process.
"""

from __future__ import annotations

import argparse
import time

import pandas as pd
import torch
from scipy.stats import spearmanr

from mpq._examples import make_example
from mpq._layers import layers
from mpq._omega import omega
from mpq._probes import ProbeSettings, probe
from mpq._probes.graph import LayerGraph, Pass, Target, calibration_batches, hvp, rademacher_like
from mpq._probes.sampling import RunningStats, run_family
from mpq.exceptions import ProbeError

#: Candidates of the quality benchmark: INT, FP and block formats, weight-only and W+A.
QUALITY_CANDIDATES = ("w3a8", "w4a8", "w8a8", "w8a4", "w4a16", "w8a16", "wfp4afp8", "wfp8afp8", "wmxfp4amxfp8")


class OneTarget:
    """PyHessian's per-layer loop as a sampling family: Hutchinson on one target's block only."""

    name = "baseline"

    def __init__(self, graph: LayerGraph, target: Target):
        self.graph = graph
        self.target = target
        self.hvps = 0
        self.backwards = 0

    def draw(self, batch, generator) -> dict[Target, float]:
        run = self.graph.run(batch, [self.target[0]])
        keep = [i for i, owners in enumerate(run.owners) if self.target in owners]
        block = Pass(run.output, run.loss, [run.tensors[i] for i in keep], [run.owners[i] for i in keep])
        vectors = [rademacher_like(t, generator) for t in block.tensors]
        products = hvp(run.loss, block, vectors, retain_graph=False)
        self.hvps += 1
        return {self.target: float(sum((v * hv).sum() for v, hv in zip(vectors, products)))}


def per_layer_baseline(task, kinds: list[str], settings: ProbeSettings, max_targets: int | None = None) -> dict:
    """Every target's trace estimated alone until it is within the tolerance (or the cap)."""
    graph = LayerGraph(task, layers(task.model, task.calibration[0][0]))
    batches = calibration_batches(task.calibration, settings.micro_batch_size)
    targets = graph.targets(kinds)
    if max_targets is not None and max_targets < len(targets):  # evenly spread, for a fair extrapolation
        targets = [targets[round(i * (len(targets) - 1) / max(max_targets - 1, 1))] for i in range(max_targets)]
    hvps, converged = 0, 0
    start, cpu = time.perf_counter(), time.process_time()
    for target in targets:
        family = OneTarget(graph, target)
        stats = RunningStats(keys=[target])
        run_family(family, stats, {target: target}, batches, settings, lambda stats: None)
        hvps += stats.hvps
        converged += not stats.unconverged(settings.tolerance)
    return {
        "targets": len(targets),
        "of": len(graph.targets(kinds)),
        "hvps": hvps,
        "backwards": 0,
        "seconds": time.perf_counter() - start,
        "cpu_seconds": time.process_time() - cpu,
        "converged": converged,
    }


def mpq_probe(task, probes: list[str], settings: ProbeSettings) -> dict:
    """mpq's joint probe, summarised like the baseline."""
    start, cpu = time.perf_counter(), time.process_time()
    table = probe(task, probes, settings=settings)
    return {
        "targets": len(table),
        "of": len(table),
        "samples": int(table["n_samples"].max()),
        "hvps": int(table["hvps"].max()),
        "backwards": int(table["backwards"].max()),
        "seconds": time.perf_counter() - start,
        "cpu_seconds": time.process_time() - cpu,
        "converged": int(table["converged"].sum()),
    }


def _print_rows(title: str, rows: dict[str, dict]) -> None:
    print(f"\n{title}")
    print(
        f"{'method':<34}{'targets':>9}{'converged':>11}{'samples':>9}{'HVPs':>7}{'backwards':>11}{'wall s':>9}"
        f"{'CPU s':>9}"
    )
    for name, r in rows.items():
        targets = f"{r['targets']}/{r['of']}"
        print(
            f"{name:<34}{targets:>9}{r['converged']:>11}{r.get('samples', '-'):>9}{r['hvps']:>7}{r['backwards']:>11}"
            f"{r['seconds']:>9.2f}{r['cpu_seconds']:>9.2f}"
        )


def headline(example: str, seed: int) -> None:
    task = make_example(example)
    settings = ProbeSettings(seed=seed, max_samples=3000)
    for kinds, probes in ((["w"], ["hessian_w"]), (["w", "a"], ["hessian_w", "hessian_a"])):
        rows = {
            "mpq split (default)": mpq_probe(task, probes, settings),
            "mpq joint hutchinson (cap 1000)": mpq_probe(
                task, probes, ProbeSettings(seed=seed, max_samples=1000, estimator="hutchinson")
            ),
            "baseline: per-layer loop": per_layer_baseline(task, kinds, settings),
        }
        _print_rows(
            f"{example}, {' + '.join(probes)}, 5 % relative stderr per layer, seed {seed}, "
            f"{torch.get_num_threads()} thread(s)",
            rows,
        )
        base, ours = rows["baseline: per-layer loop"], rows["mpq split (default)"]
        print(
            f"headline: per-layer baseline / mpq split = {base['cpu_seconds'] / ours['cpu_seconds']:.1f}x the CPU "
            f"seconds ({base['seconds'] / ours['seconds']:.1f}x the wall seconds)"
        )


def minilm_time(seed: int, baseline_layers: int) -> None:
    task = make_example("minilm")
    n_sentences = sum(len(b[1]) for b in task.calibration)
    rows = {"mpq split (default)": mpq_probe(task, ["hessian_w"], ProbeSettings(seed=seed))}
    rows["mpq split, micro-batches of 8"] = mpq_probe(task, ["hessian_w"], ProbeSettings(seed=seed, micro_batch_size=8))
    baseline = per_layer_baseline(task, ["w"], ProbeSettings(seed=seed), max_targets=baseline_layers)
    rows[f"baseline, {baseline_layers} layers spread"] = baseline
    _print_rows(
        f"minilm ({n_sentences} sentences), hessian_w, 5 % relative stderr per layer, "
        f"{torch.get_num_threads()} threads",
        rows,
    )
    extrapolated = baseline["seconds"] / baseline["targets"] * baseline["of"]
    print(
        f"baseline extrapolated to all {baseline['of']} layers: {extrapolated:.0f} wall s "
        f"({extrapolated / rows['mpq split (default)']['seconds']:.0f}x mpq split)"
    )


def quality(example: str, seed: int) -> None:
    task = make_example(example)
    settings = ProbeSettings(seed=seed, candidates=QUALITY_CANDIDATES)
    start = time.perf_counter()
    table = probe(task, ["hessian_w", "hessian_a", "fisher_w", "fisher_a", "measured"], settings=settings)
    families = ["hessian", "fisher"]
    try:
        table = pd.concat([table, probe(task, ["efisher_w", "efisher_a"], settings=settings)], ignore_index=True)
        families.append("efisher")
    except ProbeError as exc:  # MiniLM's self-distillation loss: the empirical Fisher is exactly 0
        print(f"efisher refused: {exc}")
    seconds = time.perf_counter() - start
    measured = omega(task, table, QUALITY_CANDIDATES, probe="measured")["omega"]
    print(
        f"\n{example}: Spearman(omega, measured) over {len(measured)} (layer, candidate) pairs, "
        f"candidates {', '.join(QUALITY_CANDIDATES)}; probing took {seconds:.0f} s"
    )
    rows = []
    for name in families:
        predicted = omega(task, table, QUALITY_CANDIDATES, probe=name)
        weights_only = predicted["omega_w"]
        rows.append(
            {
                "probe": name,
                "spearman": spearmanr(predicted["omega"], measured).statistic,
                "spearman_weight_term_only": spearmanr(weights_only, measured).statistic,
                "median_omega/measured": float((predicted["omega"] / measured)[measured > 0].median()),
            }
        )
    print(pd.DataFrame(rows).to_string(index=False, float_format=lambda v: f"{v:.3f}"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--example", default=None, help="digits-cnn (default for the headline) or minilm")
    parser.add_argument("--quality", action="store_true", help="Spearman of omega against measured")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch threads; default 1 for the headline and quality (CPU time is then robust to "
        "other load), 2 for the MiniLM time (its target is on 2 cores)",
    )
    parser.add_argument("--baseline-layers", type=int, default=3, help="minilm: layers the baseline is timed on")
    args = parser.parse_args()
    timing_minilm = args.example == "minilm" and not args.quality
    torch.set_num_threads(args.threads or (2 if timing_minilm else 1))
    if args.quality:
        for example in [args.example] if args.example else ["digits-cnn", "minilm"]:
            quality(example, args.seed)
    elif args.example == "minilm":
        minilm_time(args.seed, args.baseline_layers)
    else:
        headline(args.example or "digits-cnn", args.seed)


if __name__ == "__main__":
    main()
