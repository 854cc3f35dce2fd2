"""The executed path of a layer at a candidate: named stages, each fed the previous one's result.

A ``dequant`` stage loads stored operands into the executed dtype (unpack, dequantize or cast);
the ``compute`` stage runs the op (int8 GEMM, fp8 ``_scaled_mm``, the float op, an embedding
lookup). The paths are described in the docstring of ``mpq._measure``.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from mpq._formats import Candidate, NumberFormat
from mpq._measure.codes import Stored, round_up

_DTYPE_NAMES = {torch.float32: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16"}
_FP8_DTYPES = {"fp8_e4m3": torch.float8_e4m3fn, "fp8_e5m2": torch.float8_e5m2}
# cuBLASLt shape rules (torch/aten/src/ATen/native/cuda/Blas.cpp): _int_mm needs more than 16
# rows and inner/output dims that are multiples of 8; _scaled_mm needs multiples of 16.
_CUDA_INT_MM_MIN_ROWS, _CUDA_INT_MM_MULTIPLE, _CUDA_FP8_MULTIPLE = 17, 8, 16


@dataclass(frozen=True)
class Stage:
    """One timed step of a kernel: ``run`` takes the previous stage's result (None first)."""

    name: str  # "dequant" or "compute"
    run: Callable[[object], object]


@dataclass(frozen=True)
class Kernel:
    """What runs a layer at a candidate: its stages in order, and what ran (the ``kernel`` column)."""

    description: str
    stages: tuple[Stage, ...]

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


def _staged(op: str, operands: Sequence[_Operand], compute: Callable[[tuple], torch.Tensor]) -> Kernel:
    """A kernel that loads its operands (a dequant stage when one converts) and computes."""
    converted = [o.label for o in operands if o.converts]
    if not converted:
        ready = tuple(o.load() for o in operands)
        return Kernel(op, (Stage("compute", lambda _: compute(ready)),))
    verb = "unpack" if op.startswith("int8") else "dequant"
    return Kernel(
        f"{op} after {', '.join(converted)} {verb}",
        (Stage("dequant", lambda _: tuple(o.load() for o in operands)), Stage("compute", compute)),
    )


def _float_operand(fmt: NumberFormat, role: str, x: torch.Tensor, dtype: torch.dtype, gen: torch.Generator) -> _Operand:
    """``x`` stored in ``fmt`` and loaded in ``dtype``: a cast for fp16/bf16, a dequant for codes."""
    label = f"{fmt.name} {role}"
    if fmt.family == "reference":
        stored = x.to(fmt.dtype)
        if fmt.dtype == dtype:
            return _Operand(lambda: stored, False, label)
        return _Operand(lambda: stored.to(dtype), True, label)
    codes = Stored.random(fmt, x.shape, dtype, x.device, gen)
    return _Operand(lambda: codes.dequantize().reshape(x.shape), True, label)


def _int8_operand(fmt: NumberFormat, role: str, x: torch.Tensor, gen: torch.Generator) -> tuple[_Operand, Stored]:
    codes = Stored.random(fmt, x.shape, torch.float32, x.device, gen)
    return _Operand(lambda: codes.int8().reshape(x.shape), codes.bits < 8, f"{fmt.name} {role}"), codes


def _int_mm(a: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """int8 (M, K) @ int8 (N, K).T -> int32 (M, N); on CUDA, zero-padded to cuBLASLt's shape rules."""
    if a.device.type != "cuda":
        return torch._int_mm(a, w.t())
    (rows, inner), out = a.shape, w.shape[0]
    k = round_up(inner, _CUDA_INT_MM_MULTIPLE)
    a = F.pad(a, (0, k - inner, 0, max(0, _CUDA_INT_MM_MIN_ROWS - rows)))
    w = F.pad(w, (0, k - inner, 0, round_up(out, _CUDA_INT_MM_MULTIPLE) - out))
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
    module: nn.Module,
    kind: str,
    x: torch.Tensor,
    weight: torch.Tensor,
    cand: Candidate,
    bias: torch.Tensor | None,
    gen: torch.Generator,
) -> Kernel:
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
                [
                    _int_mm(cols[:, :, g].reshape(cols.shape[0], -1), w[g * per_group : (g + 1) * per_group])
                    for g in range(groups)
                ],
                dim=1,
            )
        out = epilogue(acc)
        return out.reshape(a.shape[0], *out_size, out_features).movedim(-1, 1)

    return _staged("int8 im2col + _int_mm", (act, w_op), compute_conv)


def _fp8_kernel(x: torch.Tensor, weight: torch.Tensor, cand: Candidate, bias: torch.Tensor | None) -> Kernel:
    """CUDA fp8 x fp8 linear: ``torch._scaled_mm`` with per-tensor scales, bf16 output."""
    out_features, in_features = weight.shape
    k, n = round_up(in_features, _CUDA_FP8_MULTIPLE), round_up(out_features, _CUDA_FP8_MULTIPLE)
    w = F.pad(weight.float(), (0, k - in_features, 0, n - out_features))
    w = w.to(_FP8_DTYPES[cand.weight_format.name])
    a = x.reshape(-1, in_features).float()
    rows = a.shape[0]
    a = F.pad(a, (0, k - in_features, 0, round_up(rows, _CUDA_FP8_MULTIPLE) - rows))
    a = a.to(_FP8_DTYPES[cand.act_format.name])
    one = torch.ones((), device=x.device)
    bias_bf16 = None if bias is None else bias.to(torch.bfloat16)

    def compute(_: object) -> torch.Tensor:
        out = torch._scaled_mm(a, w.t(), one, one, out_dtype=torch.bfloat16)[:rows, :out_features]
        out = out if bias_bf16 is None else out + bias_bf16
        return out.reshape(*x.shape[:-1], out_features)

    return Kernel("fp8 _scaled_mm", (Stage("compute", compute),))


def _float_kernel(
    module: nn.Module,
    kind: str,
    x: torch.Tensor,
    weight: torch.Tensor,
    cand: Candidate,
    dtype: torch.dtype,
    bias: torch.Tensor | None,
    gen: torch.Generator,
) -> Kernel:
    """Dequantize (or cast) the operands to ``dtype``, then the module's native op."""
    act = _float_operand(cand.act_format, "act", x, dtype, gen)
    weight = _float_operand(cand.weight_format, "weight", weight, dtype, gen)
    bias = None if bias is None else bias.to(dtype)
    name = _DTYPE_NAMES[dtype]
    if kind == "linear":
        return _staged(f"{name} linear", (act, weight), lambda ops: F.linear(ops[0], ops[1], bias))
    return _staged(f"{name} {kind}", (act, weight), lambda ops: module._conv_forward(ops[0], ops[1], bias))


def _embedding_kernel(ids: torch.Tensor, weight: torch.Tensor, fmt: NumberFormat, gen: torch.Generator) -> Kernel:
    """fp16/bf16 tables look up natively; low-bit ones gather rows of codes and dequantize only those."""
    if fmt.family == "reference":
        stored = weight.to(fmt.dtype)
        return Kernel(f"{fmt.name} embedding", (Stage("compute", lambda _: F.embedding(ids, stored)),))
    dtype = torch.float16 if ids.device.type == "cuda" else torch.float32
    codes = Stored.random(fmt, weight.shape, dtype, weight.device, gen)
    flat = ids.reshape(-1)
    return Kernel(
        f"{fmt.name} row gather + {_DTYPE_NAMES[dtype]} dequant",
        (
            Stage("compute", lambda _: codes.take_rows(flat)),
            Stage("dequant", lambda rows: rows.dequantize().reshape(*ids.shape, -1)),
        ),
    )


def _int_path(cand: Candidate, module: nn.Module, kind: str) -> bool:
    w, a = cand.weight_format, cand.act_format
    return (
        w.family == "int"
        and a.family == "int"
        and w.element_bits <= 8
        and a.element_bits <= 8
        and w.granularity in ("tensor", "channel")
        and a.granularity == "tensor"
        and (kind == "linear" or getattr(module, "padding_mode", "zeros") == "zeros")
    )


def _float_dtype(cand: Candidate, device: torch.device) -> torch.dtype:
    """fp16/bf16 when the candidate's 16-bit operands agree on one, else fp32 (CPU) or fp16 (CUDA)."""
    natives = {f.dtype for f in (cand.weight_format, cand.act_format) if f.family == "reference"}
    if len(natives) == 1:
        return natives.pop()
    return torch.float16 if device.type == "cuda" and not natives else torch.float32


def build_kernel(module: nn.Module, kind: str, x: torch.Tensor, cand: Candidate, gen: torch.Generator) -> Kernel:
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


def combined(kernels: list[Kernel]) -> Kernel:
    """The kernels of every call of a layer in one forward, run one after another."""
    if len(kernels) == 1:
        return kernels[0]
    stages = tuple(stage for kernel in kernels for stage in kernel.stages)
    return Kernel(f"{kernels[0].description} x {len(kernels)} calls", stages)
