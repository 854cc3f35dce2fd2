"""``measure_latency`` and ``write_measured_csv``: the public entry points of ``mpq._measure``."""

from __future__ import annotations

import csv
import logging
import os
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from mpq._formats import Candidate
from mpq._formats.candidates import parse_candidates
from mpq._layers import check_example_input, layer_kind, layers
from mpq._measure.kernels import build_kernel, combined
from mpq._measure.timing import summarize, time_ns
from mpq._param_checks import PATH, Interval, OneOf, check_param
from mpq._task import Inputs, Task, hooked, run_model
from mpq._task import batch_size as inputs_batch_size
from mpq.exceptions import InvalidParameterError

__all__ = ["MEASURE_COLUMNS", "measure_latency", "write_measured_csv"]

logger = logging.getLogger("mpq.measure")

MEASURE_COLUMNS = [
    "layer",
    "candidate",
    "latency_s",
    "latency_std_s",
    "latency_min_s",
    "latency_max_s",
    "dequant_s",
    "repeats",
    "kernel",
    "device",
    "timing",
]
_FUNC = "measure_latency"


# ---------------------------------------------------------------------------------------------
# Inputs of every layer


def _recorded_inputs(model: nn.Module, names: list[str], example_input: Inputs) -> dict[str, list[torch.Tensor]]:
    """The first positional input of every call of each named layer on one forward."""
    calls: dict[str, list[torch.Tensor]] = {name: [] for name in names}

    def record(name: str):
        def hook(module: nn.Module, args: tuple) -> None:
            calls[name].append(args[0].detach())

        return hook

    handles = [model.get_submodule(name).register_forward_pre_hook(record(name)) for name in names]
    with hooked(handles):
        run_model(model, example_input)
    return calls


def _resize_batch(x: torch.Tensor, recorded: int, wanted: int) -> torch.Tensor:
    """Slice or repeat dim 0 from ``recorded`` to ``wanted`` samples; broadcast tensors stay."""
    if x.dim() == 0 or x.shape[0] != recorded or recorded == wanted:
        return x
    if wanted < recorded:
        return x[:wanted].contiguous()
    return x.repeat(-(-wanted // recorded), *([1] * (x.dim() - 1)))[:wanted].contiguous()


# ---------------------------------------------------------------------------------------------
# Public API


def _check_candidates(candidates: object) -> list[Candidate]:
    if isinstance(candidates, pd.DataFrame) and "candidate" in candidates.columns:
        candidates = list(candidates["candidate"])
    return parse_candidates(_FUNC, candidates)


def _check_model(task_or_model: object, example_input: Inputs | None) -> tuple[nn.Module, Inputs]:
    if isinstance(task_or_model, Task):
        inputs = task_or_model.calibration[0][0] if example_input is None else example_input
        return task_or_model.model, inputs
    if not isinstance(task_or_model, nn.Module):
        raise InvalidParameterError(
            f"The 'task_or_model' parameter of {_FUNC} must be an mpq.Task or a torch.nn.Module. "
            f"Got {type(task_or_model).__name__} instead."
        )
    check_example_input(_FUNC, example_input)
    return task_or_model, example_input


def measure_latency(
    task_or_model: Task | nn.Module,
    candidates: Iterable[str | Candidate] | pd.DataFrame,
    *,
    example_input: Inputs | None = None,
    batch_size: int = 1,
    device: str = "cpu",
    warmup: int = 3,
    repeats: int = 20,
    progress: Callable[[int, int, str], None] | None = None,
) -> pd.DataFrame:
    """Time every quantizable layer at every candidate with the kernel it runs on this machine.

    The paths (int8 GEMM, dequantize then fp32, native fp16/bf16, CUDA fp8) are described in
    the module docstring of ``mpq._measure``. Each (layer, candidate) runs ``warmup`` times,
    then ``repeats`` timed times, with torch's thread count as the caller has set it. On a CPU
    each stage is timed by the wall clock (``time.perf_counter_ns``); on CUDA each stage is
    captured in a CUDA graph and timed by CUDA events over back-to-back replays: the GPU time of
    its kernels, without Python and dispatch overhead, which dominates small layers (timed
    eagerly, as when a stage cannot be captured, an fp16 linear of MiniLM took 28-40 us on an
    H100 at batch 1 and 32 alike; 6-7 us as a graph).

    Args:
        task_or_model: A Task (its first calibration batch's inputs trace the layers) or a
            model in eval mode.
        candidates: Candidate names (``w4a8``, ``w8a8``, ``wfp8afp8``, ...), Candidates, or a
            candidates table with a ``candidate`` column.
        example_input: One batch of inputs; required with a model, overrides a Task's.
        batch_size: Samples per timed forward: the recorded inputs are sliced or repeated
            along dim 0. Use the ``batch_size`` you give ``hwmodels.cost_table``.
        device: ``"cpu"`` or ``"cuda"`` (needs ``torch.cuda.is_available()``).
        warmup: Untimed runs before the timed ones.
        repeats: Timed runs.
        progress: Called as ``progress(done, total, message)`` after each pair.

    Returns:
        One row per (layer, candidate), layers in the order they run, then candidates in the
        order given: ``layer`` and ``candidate`` (str); ``latency_s`` (float, seconds per batch,
        median over repeats); ``latency_std_s``, ``latency_min_s``, ``latency_max_s`` (float,
        seconds: sample standard deviation, min and max over repeats); ``dequant_s`` (float,
        seconds, median time of the unpack/dequantize stage, 0 when none); ``repeats`` (int);
        ``kernel`` (str, what ran, e.g. ``"int8 _int_mm after int4_pc weight unpack"``,
        ``"fp32 linear after fp8_e4m3 act, fp8_e4m3 weight dequant"``); ``device`` (str);
        ``timing`` (str: ``wall clock``, ``cuda graph``, or ``cuda events (eager)``).
        ``attrs`` holds ``batch_size``, ``num_threads`` and ``device``.

    Raises:
        InvalidParameterError: A parameter has the wrong type or value, a model is given
            without ``example_input``, ``device="cuda"`` without CUDA, or a candidate name is
            malformed or repeated.
        UnknownNameError: A candidate names an unknown format.
        NoQuantizableLayerError: No Linear, Conv or Embedding layer runs on the input.

    Example:
        >>> import torch, mpq
        >>> model = torch.nn.Sequential(torch.nn.Linear(8, 4)).eval()
        >>> table = measure_latency(model, ["w8a8"], example_input=torch.randn(2, 8), repeats=3)
        >>> table[["layer", "candidate", "kernel"]].values.tolist()
        [['0', 'w8a8', 'int8 _int_mm']]
    """
    model, inputs = _check_model(task_or_model, example_input)
    parsed = _check_candidates(candidates)
    check_param(_FUNC, "batch_size", batch_size, Interval(int, 1, None, closed="left"))
    check_param(_FUNC, "device", device, OneOf(("cpu", "cuda")))
    check_param(_FUNC, "warmup", warmup, Interval(int, 0, None, closed="left"))
    check_param(_FUNC, "repeats", repeats, Interval(int, 1, None, closed="left"))
    if progress is not None and not callable(progress):
        raise InvalidParameterError(
            f"The 'progress' parameter of {_FUNC} must be a callable progress(done, total, message) or None. "
            f"Got {progress!r} instead."
        )
    if device == "cuda" and not torch.cuda.is_available():
        raise InvalidParameterError(
            f"The 'device' parameter of {_FUNC} is 'cuda' but torch.cuda.is_available() is False; "
            "use device='cpu' or run on a machine with a CUDA GPU."
        )
    target = torch.device(device)
    table = layers(model, inputs)
    names = list(table["layer"])
    calls = _recorded_inputs(model, names, inputs)
    recorded = inputs_batch_size(inputs)
    gen = torch.Generator().manual_seed(0)
    total, rows = len(names) * len(parsed), []
    for name in names:
        module = model.get_submodule(name)
        kind = layer_kind(module)
        xs = [_resize_batch(x, recorded, batch_size).to(target) for x in calls[name]]
        for cand in parsed:
            kernel = combined([build_kernel(module, kind, x, cand, gen) for x in xs])
            times_ns, timing = time_ns(kernel, warmup, repeats, target)
            summary = summarize(kernel, times_ns)
            rows.append({"layer": name, "candidate": cand.name, **summary, "device": device, "timing": timing})
            message = f"{name} {cand.name}: {summary['latency_s'] * 1e6:.1f} us ({kernel.description})"
            logger.debug(message)
            if progress is not None:
                progress(len(rows), total, message)
    result = pd.DataFrame(rows, columns=MEASURE_COLUMNS)
    result.attrs.update(batch_size=batch_size, num_threads=torch.get_num_threads(), device=device)
    return result


def write_measured_csv(table: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Write a measured latency table as the CSV ``hwmodels.load_measured_latency`` reads.

    The columns ``layer``, ``candidate`` and ``latency_s`` come first; the other columns of
    :func:`measure_latency` follow (the loader ignores them).

    Args:
        table: A table with at least ``layer``, ``candidate`` and ``latency_s`` (seconds),
            such as :func:`measure_latency` returns.
        path: The CSV file to write (its folder must exist).

    Returns:
        The path written.

    Raises:
        InvalidParameterError: ``table`` is not a DataFrame, lacks a column, is empty, or has a
            latency that is not a positive finite number.
    """
    required = ["layer", "candidate", "latency_s"]
    if not isinstance(table, pd.DataFrame):
        raise InvalidParameterError(
            f"The 'table' parameter of write_measured_csv must be a DataFrame from measure_latency. "
            f"Got {type(table).__name__} instead."
        )
    missing = [c for c in required if c not in table.columns]
    if missing or table.empty:
        what = f"lacks column {missing[0]!r}" if missing else "has no rows"
        raise InvalidParameterError(f"write_measured_csv: the table {what}; pass the table measure_latency returns.")
    latency = pd.to_numeric(table["latency_s"], errors="coerce").to_numpy(dtype=float)
    bad = ~(np.isfinite(latency) & (latency > 0))
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        value = table["latency_s"].iloc[row]
        value = value.item() if isinstance(value, np.generic) else value
        raise InvalidParameterError(
            f"write_measured_csv: row {row} has latency_s={value!r}, not a positive number "
            "of seconds; measure again or drop the row."
        )
    check_param("write_measured_csv", "path", path, PATH)
    path = Path(path)
    columns = required + [c for c in table.columns if c not in required]
    table[columns].to_csv(path, index=False, quoting=csv.QUOTE_MINIMAL)
    return path
