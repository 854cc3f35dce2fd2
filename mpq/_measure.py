"""``measure_latency``: time every layer's real kernel at every candidate on this machine.

The table it returns (written as CSV by :func:`write_measured_csv`) is what
``hwmodels.cost_table(..., measured=...)`` takes to replace the cost model's ``latency_s``.

**What is timed.** Each layer runs once on the first calibration batch, with forward hooks that
record its inputs; they are sliced or repeated to ``batch_size`` samples along dim 0 (a tensor
broadcast over the batch, such as BERT's position ids of shape ``(1, T)``, is kept as it is).
Operands are then stored as a deployment stores them, and the executed path is timed stage by
stage. The paths mirror ``hwmodels``' ``cpu-x86`` model (``hwmodels/_cpu.py``):

* **int x int** (both formats integer of at most 8 bits, weights scaled per tensor or per output
  channel, activations per tensor): sub-byte codes are unpacked to int8 (the *dequant* stage;
  nothing to do for int8), convolutions (channels last) build their im2col matrix, and
  ``torch._int_mm`` runs the int8 GEMM with int32 accumulation (oneDNN; AMX or VNNI where the
  CPU has them); an fp32 epilogue applies the scales and the bias.
  Group-scaled integers need a scale inside the reduction, which one GEMM cannot apply: they take
  the float path (the model runs them on int8 units).
* **fp16 / bf16**: the dtype's native op (``F.linear``, the module's convolution); an operand in
  another format is dequantized to that dtype first. (The model runs fp16 in fp32 on a CPU.)
* **everything else** (fp8, fp6, fp4, MX, NVFP4, int16, group-scaled int): the stored codes are
  dequantized (a lookup of each code's value, times its per-tensor, per-channel or per-block
  scale) and the op runs in fp32 on CPU, in fp16 on CUDA.
* **embeddings**: the rows of the stored codes are gathered, then only those rows dequantized.

On CUDA, int x int runs ``torch._int_mm`` (operands padded to cuBLASLt's shape rules: more than
16 rows, inner and output dims multiples of 8), an fp8 x fp8 linear layer runs
``torch._scaled_mm`` (dims padded to multiples of 16), and each stage is captured in a CUDA
graph whose back-to-back replays CUDA events time (see :func:`measure_latency`).

Low-bit operands are random codes of the right shape, ``8 // bits`` codes packed per byte
(int3 takes 2 per byte, int6 and fp6 one): kernel times do not depend on the values.
fp16/bf16 operands are the real weights and recorded inputs. A layer called several times in
one forward is timed over all its calls, weights dequantized at each call.
"""

from __future__ import annotations

import csv
import itertools
import logging
import math
import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from mpq._formats import Candidate, NumberFormat
from mpq._formats.candidates import parse_candidates
from mpq._formats.minifloat import MinifloatGrid
from mpq._layers import layer_kind, layers
from mpq._task import Inputs, Task, batch_size as inputs_batch_size, hooked, run_model
from mpq._validation import Interval, OneOf, check_param
from mpq.exceptions import InvalidParameterError

__all__ = ["MEASURE_COLUMNS", "measure_latency", "write_measured_csv"]

logger = logging.getLogger("mpq.measure")

MEASURE_COLUMNS = [
    "layer", "candidate", "latency_s", "latency_std_s", "latency_min_s", "latency_max_s",
    "dequant_s", "repeats", "kernel", "device", "timing",
]
_FUNC = "measure_latency"
_DTYPE_NAMES = {torch.float32: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16"}
_FP8_DTYPES = {"fp8_e4m3": torch.float8_e4m3fn, "fp8_e5m2": torch.float8_e5m2}
_SCALE_RANGE = (2.0**-8, 2.0**-6)  # random positive scales: any finite value times the same
# cuBLASLt shape rules (torch/aten/src/ATen/native/cuda/Blas.cpp): _int_mm needs more than 16
# rows and inner/output dims that are multiples of 8; _scaled_mm needs multiples of 16.
_CUDA_INT_MM_MIN_ROWS, _CUDA_INT_MM_MULTIPLE, _CUDA_FP8_MULTIPLE = 17, 8, 16
_GRAPH_REPLAYS = 10  # per timed repeat on CUDA


# ---------------------------------------------------------------------------------------------
# Stored low-bit operands


def _round_up(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple


def _minifloat_code_values(grid: MinifloatGrid) -> torch.Tensor:
    """The value of every code of a sign-exponent-mantissa grid, in code order.

    Codes beyond the grid's largest value (the NaN/inf codes of E4M3 and E5M2) saturate to it.

    Args:
        grid: The element grid (E4M3, E2M1, ...).

    Returns:
        A float32 tensor of ``2 ** grid.bits`` values; code ``c`` decodes to entry ``c``.
    """
    values = []
    for code in range(2**grid.bits):
        exponent = (code >> grid.man_bits) & ((1 << grid.exp_bits) - 1)
        mantissa = code & ((1 << grid.man_bits) - 1)
        if exponent == 0:  # subnormal
            magnitude = mantissa * 2.0 ** (1 - grid.bias - grid.man_bits)
        else:
            magnitude = (1 + mantissa * 2.0**-grid.man_bits) * 2.0 ** (exponent - grid.bias)
        sign = -1.0 if code >> (grid.bits - 1) else 1.0
        values.append(sign * min(magnitude, grid.max_value))
    return torch.tensor(values, dtype=torch.float32)


@dataclass(frozen=True)
class _Stored:
    """A tensor stored in a low-bit format: packed codes and their scales.

    The tensor is viewed as rows (dim 0, mpq's convention); each row holds ``cols`` values,
    padded to whole bytes and whole scale groups, packed in planes: with ``p = 8 // bits``
    codes per byte, byte ``j`` of a row holds values ``j, j + P, ..., j + (p - 1) P`` (``P``
    bytes per row) in its low to high bit fields, so unpacking is ``p`` whole-row shifts.

    Attributes:
        codes: uint8, shape (rows, P).
        bits: Bits of one code.
        cols: Real values per row.
        values: Value of each code (minifloats), or None for two's-complement integers.
        scales: Shape (1, 1), (rows, 1) or (rows, padded_cols // group).
        group: Values per scale along a row, or None.
        dtype: The dtype :meth:`dequantize` returns; ``values`` and ``scales`` are in the dtype
            the arithmetic runs in (float32 on a CPU, which converts fp16 slowly; else ``dtype``).
    """

    codes: torch.Tensor
    bits: int
    cols: int
    values: torch.Tensor | None
    scales: torch.Tensor
    group: int | None
    dtype: torch.dtype

    @classmethod
    def random(
        cls, fmt: NumberFormat, shape: Sequence[int], dtype: torch.dtype, device: torch.device, gen: torch.Generator
    ) -> _Stored:
        """Random codes and scales of a tensor of ``shape`` stored in ``fmt``."""
        rows = shape[0] if len(shape) > 1 else 1
        cols = math.prod(shape) // rows
        bits = fmt.element_bits
        per_byte = 8 // bits
        unit = fmt.group_size or per_byte  # group sizes are multiples of per_byte
        padded = _round_up(cols, unit)
        codes = torch.randint(0, 256, (rows, padded // per_byte), dtype=torch.uint8, generator=gen)
        scale_shape = {"tensor": (1, 1), "channel": (rows, 1)}.get(fmt.granularity, (rows, padded // unit))
        low, high = _SCALE_RANGE
        scales = low + (high - low) * torch.rand(scale_shape, generator=gen)
        grid = getattr(fmt, "element", None) or fmt.grid
        values = _minifloat_code_values(grid) if isinstance(grid, MinifloatGrid) else None
        arith = dtype if device.type == "cuda" else torch.float32
        return cls(
            codes=codes.to(device),
            bits=bits,
            cols=cols,
            values=None if values is None else values.to(device=device, dtype=arith),
            scales=scales.to(device=device, dtype=arith),
            group=fmt.group_size,
            dtype=dtype,
        )

    def take_rows(self, index: torch.Tensor) -> _Stored:
        """The stored rows at ``index`` (an embedding's lookup), with their scales."""
        scales = self.scales.index_select(0, index) if self.scales.shape[0] > 1 else self.scales
        return _Stored(self.codes.index_select(0, index), self.bits, self.cols, self.values, scales, self.group, self.dtype)

    def fields(self) -> torch.Tensor:
        """The unsigned codes, one per value, shape (rows, padded_cols)."""
        mask = (1 << self.bits) - 1
        if 8 // self.bits == 1:
            return self.codes if self.bits == 8 else self.codes & mask
        return torch.cat([(self.codes >> (self.bits * i)) & mask for i in range(8 // self.bits)], dim=1)

    def _signed(self) -> torch.Tensor:
        """Two's-complement codes as int8 values, shape (rows, padded_cols); a view for int8.

        Field ``i`` is shifted to the top of the byte, then arithmetic-shifted back down.
        """
        signed = self.codes.view(torch.int8)
        if self.bits == 8:
            return signed
        down = 8 - self.bits
        planes = []
        for i in range(8 // self.bits):
            up = 8 - self.bits * (i + 1)
            planes.append((signed << up if up else signed) >> down)
        return torch.cat(planes, dim=1)

    def _unpad(self, t: torch.Tensor) -> torch.Tensor:
        return t[:, : self.cols] if t.shape[1] != self.cols else t

    def int8(self) -> torch.Tensor:
        """Integer codes as int8 values, shape (rows, cols): the int8 GEMM's operand."""
        return self._unpad(self._signed())

    def dequantize(self) -> torch.Tensor:
        """Each code's value times its scale, in ``dtype``, shape (rows, cols)."""
        if self.values is None:
            values = self._signed().to(self.scales.dtype)
        else:
            values = torch.take(self.values, self.fields().long())
        if self.group:
            rows = values.shape[0]
            values = (values.view(rows, -1, self.group) * self.scales.unsqueeze(-1)).view(rows, -1)
        else:
            values = values * self.scales
        return self._unpad(values).to(self.dtype)


# ---------------------------------------------------------------------------------------------
# Kernels: named stages, each fed the previous stage's result


@dataclass(frozen=True)
class _Stage:
    name: str  # "dequant" or "compute"
    run: Callable[[object], object]


@dataclass(frozen=True)
class _Kernel:
    description: str
    stages: tuple[_Stage, ...]

    def __call__(self) -> object:
        value = None
        for stage in self.stages:
            value = stage.run(value)
        return value


@dataclass(frozen=True)
class _Operand:
    """One operand of a kernel: how to load it into the executed dtype, and whether that costs."""

    load: Callable[[], torch.Tensor]
    converts: bool
    label: str  # "<format> <role>", named in the kernel description when it converts


def _staged(op: str, operands: Sequence[_Operand], compute: Callable[[tuple], torch.Tensor]) -> _Kernel:
    """A kernel that loads its operands (a dequant stage when one converts) and computes."""
    converted = [o.label for o in operands if o.converts]
    if not converted:
        ready = tuple(o.load() for o in operands)
        return _Kernel(op, (_Stage("compute", lambda _: compute(ready)),))
    verb = "unpack" if op.startswith("int8") else "dequant"
    return _Kernel(
        f"{op} after {', '.join(converted)} {verb}",
        (_Stage("dequant", lambda _: tuple(o.load() for o in operands)), _Stage("compute", compute)),
    )


def _float_operand(
    fmt: NumberFormat, role: str, x: torch.Tensor, dtype: torch.dtype, gen: torch.Generator
) -> _Operand:
    """``x`` stored in ``fmt`` and loaded in ``dtype``: a cast for fp16/bf16, a dequant for codes."""
    label = f"{fmt.name} {role}"
    if fmt.family == "reference":
        stored = x.to(fmt.dtype)
        if fmt.dtype == dtype:
            return _Operand(lambda: stored, False, label)
        return _Operand(lambda: stored.to(dtype), True, label)
    codes = _Stored.random(fmt, x.shape, dtype, x.device, gen)
    return _Operand(lambda: codes.dequantize().reshape(x.shape), True, label)


def _int8_operand(fmt: NumberFormat, role: str, x: torch.Tensor, gen: torch.Generator) -> tuple[_Operand, _Stored]:
    codes = _Stored.random(fmt, x.shape, torch.float32, x.device, gen)
    return _Operand(lambda: codes.int8().reshape(x.shape), codes.bits < 8, f"{fmt.name} {role}"), codes


def _int_mm(a: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """int8 (M, K) @ int8 (N, K).T -> int32 (M, N); on CUDA, zero-padded to cuBLASLt's shape rules."""
    if a.device.type != "cuda":
        return torch._int_mm(a, w.t())
    (rows, inner), out = a.shape, w.shape[0]
    k = _round_up(inner, _CUDA_INT_MM_MULTIPLE)
    a = F.pad(a, (0, k - inner, 0, max(0, _CUDA_INT_MM_MIN_ROWS - rows)))
    w = F.pad(w, (0, k - inner, 0, _round_up(out, _CUDA_INT_MM_MULTIPLE) - out))
    return torch._int_mm(a, w.t())[:rows, :out]


def _conv_padding(module: nn.Module) -> list[tuple[int, int]]:
    """(left, right) zero padding per spatial dim, for int / tuple / 'valid' / 'same' padding."""
    dims = len(module.kernel_size)
    if module.padding == "valid":
        return [(0, 0)] * dims
    if module.padding == "same":
        totals = [d * (k - 1) for d, k in zip(module.dilation, module.kernel_size)]
        return [(t // 2, t - t // 2) for t in totals]
    return [(p, p) for p in module.padding]


def _im2col(x: torch.Tensor, module: nn.Module) -> tuple[torch.Tensor, tuple[int, ...]]:
    """Patches of a channels-last (B, *spatial, C) tensor as rows (B * L, prod(kernel) * C).

    Columns run over the kernel offsets (row-major), then channels: the layout of a
    channels-last int8 convolution, whose weight is stored (out, *kernel, in / groups).

    Returns:
        The patch rows and the output's spatial size.
    """
    pads = _conv_padding(module)
    x = F.pad(x, [0, 0] + [p for pair in reversed(pads) for p in pair])
    out_size = tuple(
        (size - dilation * (k - 1) - 1) // stride + 1
        for size, k, stride, dilation in zip(x.shape[1:-1], module.kernel_size, module.stride, module.dilation)
    )
    windows = []
    for offsets in itertools.product(*(range(k) for k in module.kernel_size)):
        window = tuple(
            slice(o * dilation, o * dilation + stride * (n - 1) + 1, stride)
            for o, n, stride, dilation in zip(offsets, out_size, module.stride, module.dilation)
        )
        windows.append(x[(slice(None), *window)])
    return torch.stack(windows, dim=-2).reshape(x.shape[0] * math.prod(out_size), -1), out_size


def _int_kernel(
    module: nn.Module, kind: str, x: torch.Tensor, weight: torch.Tensor, cand: Candidate,
    bias: torch.Tensor | None, gen: torch.Generator,
) -> _Kernel:
    """Unpack, (im2col,) int8 GEMM with int32 accumulation, fp32 rescale and bias.

    Convolutions run channels last: activations stored (B, *spatial, C), weights
    (out, *kernel, in / groups), as int8 CPU convolutions store them.
    """
    if kind != "linear":
        x = x.movedim(1, -1)
        weight = weight.movedim(1, -1)
    act, act_codes = _int8_operand(cand.act_format, "act", x, gen)
    w_op, w_codes = _int8_operand(cand.weight_format, "weight", weight, gen)
    out_features = weight.shape[0]
    scale = (act_codes.scales * w_codes.scales.reshape(1, -1)).reshape(1, -1)

    def epilogue(acc: torch.Tensor) -> torch.Tensor:
        acc = acc.float()
        return acc * scale if bias is None else torch.addcmul(bias, acc, scale)

    if kind == "linear":
        def compute(ops: tuple) -> torch.Tensor:
            a, w = ops
            return epilogue(_int_mm(a.reshape(-1, a.shape[-1]), w)).reshape(*a.shape[:-1], out_features)

        return _staged("int8 _int_mm", (act, w_op), compute)

    groups = module.groups
    per_group = out_features // groups
    kernel_elems = math.prod(module.kernel_size)

    def compute_conv(ops: tuple) -> torch.Tensor:
        a, w = ops
        cols, out_size = _im2col(a, module)
        w = w.reshape(w.shape[0], -1)
        if groups == 1:
            acc = _int_mm(cols, w)
        else:
            cols = cols.view(cols.shape[0], kernel_elems, groups, -1)
            acc = torch.cat(
                [_int_mm(cols[:, :, g].reshape(cols.shape[0], -1), w[g * per_group : (g + 1) * per_group])
                 for g in range(groups)],
                dim=1,
            )
        out = epilogue(acc)
        return out.reshape(a.shape[0], *out_size, out_features).movedim(-1, 1)

    return _staged("int8 im2col + _int_mm", (act, w_op), compute_conv)


def _fp8_kernel(x: torch.Tensor, weight: torch.Tensor, cand: Candidate, bias: torch.Tensor | None) -> _Kernel:
    """CUDA fp8 x fp8 linear: ``torch._scaled_mm`` with per-tensor scales, bf16 output."""
    out_features, in_features = weight.shape
    k, n = _round_up(in_features, _CUDA_FP8_MULTIPLE), _round_up(out_features, _CUDA_FP8_MULTIPLE)
    w = F.pad(weight.float(), (0, k - in_features, 0, n - out_features))
    w = w.to(_FP8_DTYPES[cand.weight_format.name])
    a = x.reshape(-1, in_features).float()
    rows = a.shape[0]
    a = F.pad(a, (0, k - in_features, 0, _round_up(rows, _CUDA_FP8_MULTIPLE) - rows))
    a = a.to(_FP8_DTYPES[cand.act_format.name])
    one = torch.ones((), device=x.device)
    bias_bf16 = None if bias is None else bias.to(torch.bfloat16)

    def compute(_: object) -> torch.Tensor:
        out = torch._scaled_mm(a, w.t(), one, one, out_dtype=torch.bfloat16)[:rows, :out_features]
        out = out if bias_bf16 is None else out + bias_bf16
        return out.reshape(*x.shape[:-1], out_features)

    return _Kernel("fp8 _scaled_mm", (_Stage("compute", compute),))


def _float_kernel(
    module: nn.Module, kind: str, x: torch.Tensor, weight: torch.Tensor, cand: Candidate, dtype: torch.dtype,
    bias: torch.Tensor | None, gen: torch.Generator,
) -> _Kernel:
    """Dequantize (or cast) the operands to ``dtype``, then the module's native op."""
    act = _float_operand(cand.act_format, "act", x, dtype, gen)
    weight = _float_operand(cand.weight_format, "weight", weight, dtype, gen)
    bias = None if bias is None else bias.to(dtype)
    name = _DTYPE_NAMES[dtype]
    if kind == "linear":
        return _staged(f"{name} linear", (act, weight), lambda ops: F.linear(ops[0], ops[1], bias))
    return _staged(f"{name} {kind}", (act, weight), lambda ops: module._conv_forward(ops[0], ops[1], bias))


def _embedding_kernel(ids: torch.Tensor, weight: torch.Tensor, fmt: NumberFormat, gen: torch.Generator) -> _Kernel:
    """fp16/bf16 tables look up natively; low-bit ones gather rows of codes and dequantize only those."""
    if fmt.family == "reference":
        stored = weight.to(fmt.dtype)
        return _Kernel(f"{fmt.name} embedding", (_Stage("compute", lambda _: F.embedding(ids, stored)),))
    dtype = torch.float16 if ids.device.type == "cuda" else torch.float32
    codes = _Stored.random(fmt, weight.shape, dtype, weight.device, gen)
    flat = ids.reshape(-1)
    return _Kernel(
        f"{fmt.name} row gather + {_DTYPE_NAMES[dtype]} dequant",
        (
            _Stage("compute", lambda _: codes.take_rows(flat)),
            _Stage("dequant", lambda rows: rows.dequantize().reshape(*ids.shape, -1)),
        ),
    )


def _int_path(cand: Candidate, module: nn.Module, kind: str) -> bool:
    w, a = cand.weight_format, cand.act_format
    return (
        w.family == "int" and a.family == "int"
        and w.element_bits <= 8 and a.element_bits <= 8
        and w.granularity in ("tensor", "channel") and a.granularity == "tensor"
        and (kind == "linear" or getattr(module, "padding_mode", "zeros") == "zeros")
    )


def _float_dtype(cand: Candidate, device: torch.device) -> torch.dtype:
    """fp16/bf16 when the candidate's 16-bit operands agree on one, else fp32 (CPU) or fp16 (CUDA)."""
    natives = {f.dtype for f in (cand.weight_format, cand.act_format) if f.family == "reference"}
    if len(natives) == 1:
        return natives.pop()
    return torch.float16 if device.type == "cuda" and not natives else torch.float32


def _build_kernel(
    module: nn.Module, kind: str, x: torch.Tensor, cand: Candidate, gen: torch.Generator
) -> _Kernel:
    """The kernel that runs ``module`` on input ``x`` (already on the target device) at ``cand``."""
    device = x.device
    weight = module.weight.detach().float().to(device)
    if kind == "embedding":
        return _embedding_kernel(x, weight, cand.weight_format, gen)
    bias = None if module.bias is None else module.bias.detach().float().to(device)
    if _int_path(cand, module, kind):
        return _int_kernel(module, kind, x, weight, cand, bias, gen)
    fp8 = {cand.weight_format.name, cand.act_format.name}
    if device.type == "cuda" and kind == "linear" and fp8 <= set(_FP8_DTYPES) and fp8 != {"fp8_e5m2"}:
        return _fp8_kernel(x, weight, cand, bias)
    return _float_kernel(module, kind, x, weight, cand, _float_dtype(cand, device), bias, gen)


def _combined(kernels: list[_Kernel]) -> _Kernel:
    """The kernels of every call of a layer in one forward, run one after another."""
    if len(kernels) == 1:
        return kernels[0]
    stages = tuple(stage for kernel in kernels for stage in kernel.stages)
    return _Kernel(f"{kernels[0].description} x {len(kernels)} calls", stages)


# ---------------------------------------------------------------------------------------------
# Timing


def _time_ns(kernel: _Kernel, warmup: int, repeats: int, device: torch.device) -> tuple[np.ndarray, str]:
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
            logger.warning("%s: not capturable in a CUDA graph (%s); timed eagerly, launch overhead included",
                           kernel.description, str(exc).splitlines()[0])
            return _time_events_ns(kernel, repeats, device), "cuda events (eager)"
        return _time_graphs_ns(graphs, repeats, device), "cuda graph"


def _time_wall_ns(kernel: _Kernel, repeats: int) -> np.ndarray:
    times = np.zeros((repeats, len(kernel.stages)))
    for r in range(repeats):
        value, marks = None, [time.perf_counter_ns()]
        for stage in kernel.stages:
            value = stage.run(value)
            marks.append(time.perf_counter_ns())
        times[r] = np.diff(marks)
    return times


def _time_events_ns(kernel: _Kernel, repeats: int, device: torch.device) -> np.ndarray:
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


def _capture(kernel: _Kernel, device: torch.device) -> list[torch.cuda.CUDAGraph]:
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


def _summary(kernel: _Kernel, times_ns: np.ndarray) -> dict:
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
    if example_input is None:
        raise InvalidParameterError(
            f"The 'example_input' parameter of {_FUNC} must be one batch of inputs when a model is given. "
            "Got None instead."
        )
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
            kernel = _combined([_build_kernel(module, kind, x, cand, gen) for x in xs])
            times_ns, timing = _time_ns(kernel, warmup, repeats, target)
            summary = _summary(kernel, times_ns)
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
    path = Path(path)
    columns = required + [c for c in table.columns if c not in required]
    table[columns].to_csv(path, index=False, quoting=csv.QUOTE_MINIMAL)
    return path
