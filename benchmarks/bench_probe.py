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

``python benchmarks/bench_probe.py --pyhessian PATH [--example NAME] [--layers N]``
    mpq's ``hessian_w`` probe against the real PyHessian package (``pip install --no-deps
    pyhessian --target PATH``, a scratch folder: never one of mpq's dependencies), each to a 5 %
    relative standard error per layer. PyHessian estimates the trace of every parameter that
    requires a gradient at once, so it is run per layer as HAWQ-V2 ran it: every parameter but
    the layer's weight has ``requires_grad`` set to False while ``hessian(model, criterion,
    dataloader=calibration, cuda=False)`` is built and its ``trace(maxIter=1)`` called, one
    Hessian-vector product over every calibration batch per call, until the layer's relative
    standard error is within the tolerance (at least ``min_samples``, at most ``max_samples``
    calls: mpq's own rule). ``--layers N`` times PyHessian on N layers spread over the model and
    extrapolates its CPU seconds to all of them (MiniLM and TinyLlama would take hours in full).
    Prints CPU seconds of both and the ratio.

``python benchmarks/bench_probe.py --batched [--examples NAME ...]``
    Whether batching a sample's products in one vmapped pass (``torch.autograd.grad(...,
    is_grads_batched=True)``) is cheaper than taking them one after the other, per calibration
    batch as ``split`` draws them, one process, the two alternated: the output-noise backward
    passes (``noise_draws`` of them) and the residual's Hessian-vector products (one Rademacher
    vector for the weights, one for the inputs). Prints CPU seconds per sample (every batch) of each.

``python benchmarks/bench_probe.py --split-parts [--examples NAME ...] [--samples N]``
    Where ``split``'s noise is: on the first calibration batch, N draws of its two parts apart,
    per layer weight: the Gauss-Newton part (one output-noise backward pass) and the residual
    (one Hessian-vector product of ``(dL/dz) . z``, one Rademacher vector over every weight, as
    ``split`` draws it). Prints each part's mean and standard deviation per draw.

``python benchmarks/bench_probe.py --quality [--example NAME]``
    Spearman rank correlation, over all (layer, candidate) pairs, between each probe's omega and
    the ``measured`` loss increase (one layer quantized at a time), per example.

Timings on a shared machine are noisy: read the ratios, which come from one process.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
import warnings
from collections.abc import Mapping
from pathlib import Path

import pandas as pd
import torch
from scipy.stats import spearmanr

from mpq._examples import make_example
from mpq._layers import layers
from mpq._omega import omega
from mpq._probes import ProbeSettings, fit_estimator, probe
from mpq._probes.fisher import FisherFamily, noise_backward, output_tensor
from mpq._probes.graph import (
    LayerGraph,
    Pass,
    Target,
    add_to,
    calibration_batches,
    gradients,
    hvp,
    hvp_of_gradients,
    rademacher_like,
)
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


class Packed(torch.nn.Module):
    """The task's model on one tensor: PyHessian calls ``model(inputs)`` and ``inputs.size(0)``, so a
    dict of equally shaped tensors (MiniLM's ids and mask, a causal LM's ids) is stacked on dim 1."""

    def __init__(self, model: torch.nn.Module, keys: list[str] | None):
        super().__init__()
        self.model = model
        self.keys = keys

    def forward(self, inputs: torch.Tensor):
        if self.keys is None:
            return self.model(inputs)
        return self.model(**{key: inputs[:, i] for i, key in enumerate(self.keys)})


def packed_calibration(task) -> tuple[Packed, list[tuple[torch.Tensor, object]]]:
    inputs = task.calibration[0][0]
    keys = list(inputs) if isinstance(inputs, Mapping) else None
    if keys is None:
        return Packed(task.model, None), list(task.calibration)
    return Packed(task.model, keys), [(torch.stack([x[k] for k in keys], dim=1), y) for x, y in task.calibration]


def pyhessian_per_layer(task, hessian, settings: ProbeSettings, max_layers: int | None) -> dict:
    """PyHessian's ``trace`` on one layer's weight at a time, each to ``settings``' tolerance."""
    model, loader = packed_calibration(task)
    model.eval()
    table = layers(task.model, task.calibration[0][0])
    names = list(table["layer"])
    if max_layers is not None and max_layers < len(names):  # evenly spread, for a fair extrapolation
        names = [names[round(i * (len(names) - 1) / max(max_layers - 1, 1))] for i in range(max_layers)]
    modules = dict(task.model.named_modules())
    flags = {p: p.requires_grad for p in model.parameters()}
    torch.manual_seed(settings.seed)  # PyHessian draws its Rademacher vectors from torch's global generator
    hvps, converged, traces = 0, 0, {}
    start, cpu = time.perf_counter(), time.process_time()
    try:
        for name in names:
            weight = modules[name].weight
            for p in model.parameters():
                p.requires_grad_(p is weight)
            with warnings.catch_warnings():  # its backward(create_graph=True) warns of a reference cycle
                warnings.simplefilter("ignore", UserWarning)
                estimator = hessian(model, task.loss_fn, dataloader=loader, cuda=False)
                draws: list[float] = []
                while len(draws) < settings.max_samples:
                    draws += estimator.trace(maxIter=1)
                    if len(draws) >= settings.min_samples and _relative_stderr(draws) <= settings.tolerance:
                        converged += 1
                        break
            hvps += len(draws) * len(loader)
            traces[name] = (sum(draws) / len(draws), _relative_stderr(draws))
    finally:
        for p, flag in flags.items():
            p.requires_grad_(flag)
    return {
        "targets": len(names),
        "of": len(table),
        "hvps": hvps,
        "backwards": hvps,  # each HVP takes a first-order backward pass of its own (create_graph)
        "seconds": time.perf_counter() - start,
        "cpu_seconds": time.process_time() - cpu,
        "converged": converged,
        "traces": traces,  # layer -> (estimate, relative standard error)
    }


def _relative_stderr(draws: list[float]) -> float:
    mean = sum(draws) / len(draws)
    variance = sum((d - mean) ** 2 for d in draws) / (len(draws) - 1)
    return math.sqrt(variance / len(draws)) / abs(mean) if mean else math.inf


def against_pyhessian(path: str, examples: list[str], seed: int, max_layers: int | None) -> None:
    if not (Path(path) / "pyhessian" / "hessian.py").is_file():
        print(
            f"bench_probe: no pyhessian package under {path}; install it there with "
            f"'pip install --no-deps pyhessian --target {path}'.",
            file=sys.stderr,
        )
        sys.exit(2)
    sys.path.insert(0, path)
    from pyhessian import hessian

    settings = ProbeSettings(probes=("hessian_w",), seed=seed)
    for example in examples:
        task = make_example(example)
        ours = mpq_probe(task, ["hessian_w"], fit_estimator(task, settings))
        theirs = pyhessian_per_layer(task, hessian, settings, max_layers)
        extrapolated = theirs["cpu_seconds"] / theirs["targets"] * theirs["of"]
        label = "PyHessian per layer" + (f", {theirs['targets']} spread" if theirs["targets"] < theirs["of"] else "")
        _print_rows(
            f"{example}, hessian_w, {settings.tolerance:.0%} relative stderr per layer, seed {seed}, "
            f"{torch.get_num_threads()} thread(s)",
            {"mpq (default estimator)": ours, label: theirs},
        )
        print(
            f"{example}: PyHessian {extrapolated:.2f} CPU s"
            + (f" (extrapolated to {theirs['of']} layers)" if theirs["targets"] < theirs["of"] else "")
            + f", mpq {ours['cpu_seconds']:.2f} CPU s: PyHessian / mpq = {extrapolated / ours['cpu_seconds']:.1f}x",
            flush=True,
        )


def batched_products(examples: list[str], seed: int, draws: int = 2, rounds: int = 3) -> None:
    """CPU s per sample of a split draw's products, one after the other against one vmapped pass."""
    for example in examples:
        task = make_example(example)
        task.model.eval()
        graph = LayerGraph(task, layers(task.model, task.calibration[0][0]))
        batches = calibration_batches(task.calibration, None)
        family = FisherFamily(graph, ["w", "a"], "fisher", "gauss_newton")
        generator = torch.Generator().manual_seed(seed)
        first = graph.run(batches[0], ["w"])
        steps = {"noise backward": _noise_products}
        if bool(family.curvature(batches[0], first.output).grad.any()):
            steps["residual HVPs"] = _residual_products
        else:
            print(f"{example}: no residual HVPs (dL/dz = 0, as for self-distillation at the float weights)")
        for name, step in steps.items():
            seconds: dict[bool, list[float]] = {False: [], True: []}
            for batched in (False, True):  # warm
                step(graph, batches, family, generator, draws, batched)
            for _ in range(rounds):
                for batched in (False, True):
                    cpu = time.process_time()
                    step(graph, batches, family, generator, draws, batched)
                    seconds[batched].append(time.process_time() - cpu)
            one, many = (sorted(seconds[b])[rounds // 2] for b in (False, True))
            print(
                f"{example}: {name}, CPU s per sample (median of {rounds}): one after the other {one:.3f}, "
                f"batched {many:.3f}, batched / one after the other {many / one:.2f}",
                flush=True,
            )


def _noise_products(graph, batches, family, generator, draws: int, batched: bool) -> None:
    """``draws`` output-noise backward passes per batch."""
    for batch in batches:
        run = graph.run(batch, ["w", "a"])
        output = output_tensor(graph.task.name, run.output)
        factor = family.curvature(batch, output)
        vectors = [factor.noise(factor.positive, output.shape, output.dtype, generator) for _ in range(draws)]
        if batched:
            torch.autograd.grad(output, run.tensors, torch.stack(vectors), is_grads_batched=True)
            continue
        for i, vector in enumerate(vectors):
            torch.autograd.grad(output, run.tensors, vector, retain_graph=i + 1 < draws)


def _residual_products(graph, batches, family, generator, draws: int, batched: bool) -> None:
    """The residual's two Hessian-vector products per batch (weights' vector, inputs' vector)."""
    for batch in batches:
        run = graph.run(batch, ["w", "a"])
        output = output_tensor(graph.task.name, run.output)
        grads = gradients((family.curvature(batch, output).grad * output).sum(), run, create_graph=True)
        kinds = [owners[0][0] for owners in run.owners]
        vectors = [rademacher_like(t, generator) for t in run.tensors]
        if batched:  # row 0 the weights' vector, row 1 the inputs'
            stacked = [
                torch.stack([v, torch.zeros_like(v)] if kind == "w" else [torch.zeros_like(v), v])
                for v, kind in zip(vectors, kinds)
            ]
            torch.autograd.grad(grads, run.tensors, stacked, is_grads_batched=True, materialize_grads=True)
            continue
        for kind in ("w", "a"):
            keep = [i for i, k in enumerate(kinds) if k == kind]
            dot = sum((grads[i] * vectors[i]).sum() for i in keep)
            torch.autograd.grad(dot, [run.tensors[i] for i in keep], retain_graph=kind == "w", materialize_grads=True)


def split_parts(examples: list[str], seed: int, samples: int) -> None:
    """Mean and sd per draw of ``split``'s Gauss-Newton part and residual part, per layer weight, batch 0."""
    for example in examples:
        task = make_example(example)
        task.model.eval()
        graph = LayerGraph(task, layers(task.model, task.calibration[0][0]))
        batch = calibration_batches(task.calibration, None)[0]
        family = FisherFamily(graph, ["w"], "fisher", "gauss_newton")
        generator = torch.Generator().manual_seed(seed)
        draws: dict[str, list[dict[Target, float]]] = {"gauss_newton": [], "residual": []}
        for _ in range(samples):
            run = graph.run(batch, ["w"])
            output = output_tensor(task.name, run.output)
            curvature = family.curvature(batch, output)
            gauss_newton: dict[Target, float] = {}
            noise = curvature.noise(curvature.positive, output.shape, output.dtype, generator)
            noise_backward(run, noise, gauss_newton, retain_graph=True)
            grads = gradients((curvature.grad * output).sum(), run, create_graph=True)
            vectors = [rademacher_like(t, generator) for t in run.tensors]
            residual: dict[Target, float] = {}
            products = hvp_of_gradients(grads, run, vectors, retain_graph=False)
            add_to(residual, run, [(v * hv).sum() for v, hv in zip(vectors, products)], 1.0)
            draws["gauss_newton"].append(gauss_newton)
            draws["residual"].append(residual)
        rows = []
        for target in draws["gauss_newton"][0]:
            row = {"layer": target[1]}
            for part, values in draws.items():
                series = pd.Series([d[target] for d in values])
                row |= {f"{part} mean": series.mean(), f"{part} sd": series.std()}
            rows.append(row)
        print(f"\n{example}: split's parts on calibration batch 0 ({batch.size} samples), {samples} draws, seed {seed}")
        print(pd.DataFrame(rows).to_string(index=False, float_format=lambda v: f"{v:.4g}"))


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
    parser.add_argument(
        "--pyhessian", metavar="PATH", help="compare with the PyHessian package installed under PATH (pip --target)"
    )
    parser.add_argument("--examples", nargs="+", default=["digits-cnn"], help="--pyhessian and --batched: the examples")
    parser.add_argument("--layers", type=int, default=None, help="--pyhessian: time PyHessian on N spread layers")
    parser.add_argument("--batched", action="store_true", help="batched products against sequential ones")
    parser.add_argument("--split-parts", action="store_true", help="split's Gauss-Newton and residual parts apart")
    parser.add_argument("--samples", type=int, default=8, help="--split-parts: draws of each part")
    args = parser.parse_args()
    if args.split_parts:
        torch.set_num_threads(args.threads or 1)
        split_parts(args.examples, args.seed, args.samples)
        return
    if args.batched:
        torch.set_num_threads(args.threads or 1)
        batched_products(args.examples, args.seed)
        return
    if args.pyhessian:
        torch.set_num_threads(args.threads or 1)
        against_pyhessian(args.pyhessian, args.examples, args.seed, args.layers)
        return
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
