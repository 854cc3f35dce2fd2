"""Timing a kernel stage by stage: the wall clock on a CPU, CUDA graphs timed by events on CUDA."""

from __future__ import annotations

import logging
import time

import numpy as np
import torch

from mpq._measure.kernels import Kernel

logger = logging.getLogger("mpq.measure")

_GRAPH_REPLAYS = 10  # per timed repeat on CUDA


def time_ns(kernel: Kernel, warmup: int, repeats: int, device: torch.device) -> tuple[np.ndarray, str]:
    """Nanoseconds of every stage of every repeat, shape (repeats, stages), and how they were timed."""
    with torch.inference_mode():
        for _ in range(warmup):
            kernel()
        if device.type != "cuda":
            return _time_wall_ns(kernel, repeats), "wall clock"
        torch.cuda.synchronize(device)
        try:
            graphs = _capture(kernel, device)
        except RuntimeError as exc:  # an op that cannot be captured: time the eager launches
            logger.warning(
                "%s: not capturable in a CUDA graph (%s); timed eagerly, launch overhead included",
                kernel.description,
                str(exc).splitlines()[0],
            )
            return _time_events_ns(kernel, repeats, device), "cuda events (eager)"
        return _time_graphs_ns(graphs, repeats, device), "cuda graph"


def _time_wall_ns(kernel: Kernel, repeats: int) -> np.ndarray:
    times = np.zeros((repeats, len(kernel.stages)))
    for r in range(repeats):
        value, marks = None, [time.perf_counter_ns()]
        for stage in kernel.stages:
            value = stage.run(value)
            marks.append(time.perf_counter_ns())
        times[r] = np.diff(marks)
    return times


def _time_events_ns(kernel: Kernel, repeats: int, device: torch.device) -> np.ndarray:
    n_stages = len(kernel.stages)
    times = np.zeros((repeats, n_stages))
    for r in range(repeats):
        value, events = None, [torch.cuda.Event(enable_timing=True) for _ in range(n_stages + 1)]
        events[0].record()
        for s, stage in enumerate(kernel.stages):
            value = stage.run(value)
            events[s + 1].record()
        torch.cuda.synchronize(device)
        times[r] = [events[s].elapsed_time(events[s + 1]) * 1e6 for s in range(n_stages)]  # ms -> ns
    return times


def _capture(kernel: Kernel, device: torch.device) -> list[torch.cuda.CUDAGraph]:
    """One CUDA graph per stage, each reading the previous one's output (static tensors)."""
    graphs, value, pool = [], None, torch.cuda.graph_pool_handle()
    for stage in kernel.stages:
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=pool):
            value = stage.run(value)
        graphs.append(graph)
    torch.cuda.synchronize(device)
    return graphs


def _time_graphs_ns(graphs: list[torch.cuda.CUDAGraph], repeats: int, device: torch.device) -> np.ndarray:
    """GPU time per stage: ``_GRAPH_REPLAYS`` back-to-back replays between two events, so the
    kernels, not Python and the driver's launch path, set the time (as in a deployment that
    replays CUDA graphs); a kernel shorter than one replay's launch is timed at the launch rate."""
    times = np.zeros((repeats, len(graphs)))
    for r in range(repeats):
        events = []
        for graph in graphs:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            for _ in range(_GRAPH_REPLAYS):
                graph.replay()
            end.record()
            events.append((start, end))
        torch.cuda.synchronize(device)
        times[r] = [start.elapsed_time(end) * 1e6 / _GRAPH_REPLAYS for start, end in events]  # ms -> ns
    return times


def summarize(kernel: Kernel, times_ns: np.ndarray) -> dict:
    """The timing columns of one (layer, candidate) row of the measured table, in seconds."""
    totals = times_ns.sum(axis=1) * 1e-9
    dequant = np.array([stage.name == "dequant" for stage in kernel.stages])
    return {
        "latency_s": float(np.median(totals)),
        "latency_std_s": float(np.std(totals, ddof=1)) if len(totals) > 1 else 0.0,
        "latency_min_s": float(totals.min()),
        "latency_max_s": float(totals.max()),
        "dequant_s": float(np.median(times_ns[:, dequant].sum(axis=1))) * 1e-9,
        "repeats": len(totals),
        "kernel": kernel.description,
    }
