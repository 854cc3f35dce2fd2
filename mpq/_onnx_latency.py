"""``mpq measure --runtime onnxruntime``: a point's ONNX export timed end to end in ONNX Runtime,
and per node from ONNX Runtime's own profiler."""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch

from mpq._formats import get_candidate
from mpq._measure.api import _resize_batch
from mpq._onnx import MISSING_EXTRA, _first_sample, check_formats, model_proto, rebuilt_task
from mpq._param_checks import Interval, check_param
from mpq._task import map_leaves
from mpq.exceptions import InvalidParameterError

if TYPE_CHECKING:
    from mpq._runs import Run


def _session_inputs(session, inputs: Any) -> dict[str, np.ndarray]:
    """The batch as ONNX Runtime's feed: a dict by its keys, positional inputs in graph order."""
    if isinstance(inputs, dict):
        return {name: inputs[name].numpy() for name in (i.name for i in session.get_inputs())}
    leaves = list(inputs) if isinstance(inputs, (tuple, list)) else [inputs]
    return {i.name: leaf.numpy() for i, leaf in zip(session.get_inputs(), leaves)}


def onnxruntime_latency(
    run: Run, point: int, *, batch_size: int = 1, warmup: int = 3, repeats: int = 20, model: str | None = None
) -> tuple[dict[str, Any], pd.DataFrame]:
    """Time a point's ONNX export in ONNX Runtime on this machine's CPU, on torch's thread count.

    Args:
        run: The run (``mpq.open_run``); its model is rebuilt as :func:`mpq.export` rebuilds it.
        point: A value of ``run.frontier["point"]``.
        batch_size: Samples per inference (the first calibration batch, sliced or repeated).
        warmup: Untimed inferences first.
        repeats: Timed inferences, and profiled ones.
        model: The ``--model`` spec that rebuilds the run's model (see :func:`mpq.export`).

    Returns:
        ``(end_to_end, nodes)``: the end-to-end seconds (``latency_s`` median, ``latency_std_s``,
        ``latency_min_s``, ``latency_max_s``, ``repeats``, ``threads``, ``runtime``) and one row
        per graph node (``node``, ``op_type``, ``latency_s``: median over the profiled runs,
        ``share``: of the nodes' total), slowest first.

    Raises:
        InvalidParameterError: onnxruntime is missing, a bad count, or what :func:`mpq.export`
            refuses for ``to="onnx"``.
    """
    check_param("measure", "batch_size", batch_size, Interval(int, 1, None, closed="left"))
    check_param("measure", "warmup", warmup, Interval(int, 0, None, closed="left"))
    check_param("measure", "repeats", repeats, Interval(int, 1, None, closed="left"))
    try:
        import onnxruntime as ort
    except ImportError:
        raise InvalidParameterError(
            f"measure --runtime onnxruntime needs the onnxruntime package; install it with {MISSING_EXTRA}."
        ) from None
    plan = {layer: get_candidate(name) for layer, name in run.assignment(point).items()}
    check_formats(run, point, plan, "onnx")
    task = rebuilt_task(run, model)
    proto = model_proto(task, plan, "onnx", run.quantizer).SerializeToString()
    # One calibration sample repeated to the batch size (the export leaves the batch dimension free).
    first = _first_sample(task.calibration[0][0])
    sample = map_leaves(lambda v: _resize_batch(v, 1, batch_size) if isinstance(v, torch.Tensor) else v, first)

    session = ort.InferenceSession(proto, _options(ort), providers=["CPUExecutionProvider"])
    feed = _session_inputs(session, sample)
    for _ in range(warmup):
        session.run(None, feed)
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter_ns()
        session.run(None, feed)
        seconds.append((time.perf_counter_ns() - start) * 1e-9)
    totals = np.array(seconds)
    end_to_end = {
        "latency_s": float(np.median(totals)),
        "latency_std_s": float(np.std(totals, ddof=1)) if repeats > 1 else 0.0,
        "latency_min_s": float(totals.min()),
        "latency_max_s": float(totals.max()),
        "repeats": repeats,
        "threads": session.get_session_options().intra_op_num_threads,
        "runtime": f"onnxruntime {ort.__version__}",
    }
    return end_to_end, _profiled_nodes(ort, proto, feed, warmup, repeats)


def _options(ort):
    """ONNX Runtime on as many threads as torch (``torch.set_num_threads``): both runtimes are
    then timed alike, and the cpu-x86 cost model is per thread."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    options.inter_op_num_threads = 1
    return options


def _profiled_nodes(ort, model: bytes, feed: dict[str, np.ndarray], warmup: int, repeats: int) -> pd.DataFrame:
    """Median kernel time of every node over ``repeats`` profiled runs (ONNX Runtime's profiler)."""
    with tempfile.TemporaryDirectory() as folder:
        options = _options(ort)
        options.enable_profiling = True
        options.profile_file_prefix = str(Path(folder) / "mpq")
        session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
        for _ in range(warmup + repeats):
            session.run(None, feed)
        events = json.loads(Path(session.end_profiling()).read_text())
    kernels = [e for e in events if e.get("cat") == "Node" and e["name"].endswith("_kernel_time")]
    rows = pd.DataFrame(
        {
            "node": [e["name"].removesuffix("_kernel_time") for e in kernels],
            "op_type": [e.get("args", {}).get("op_name", "") for e in kernels],
            "latency_s": [e["dur"] * 1e-6 for e in kernels],  # the profiler's microseconds
        }
    )
    # Every node ran warmup + repeats times; the first warmup runs hold one-off allocations.
    rows = rows.groupby(["node", "op_type"], sort=False)["latency_s"].apply(lambda s: s.iloc[warmup:].median())
    nodes = rows.reset_index().sort_values("latency_s", ascending=False, ignore_index=True)
    return nodes.assign(share=nodes["latency_s"] / nodes["latency_s"].sum())
