"""A point of a run as a model file: ONNX with QuantizeLinear/DequantizeLinear pairs, or QONNX
(FINN's input) with ``Quant`` nodes.

``torch.onnx`` (its dynamo exporter) writes the graph. mpq only marks where a tensor is
quantized: each quantized layer's weight passes through a custom op (a parametrization) and its
input through the same op (a forward pre-hook), and the exporter translates that op into
standard ``QuantizeLinear``/``DequantizeLinear`` (opset 21: int4, int16, float8 types and
``block_size``) or into QONNX's ``Quant``. Afterwards the weights' QuantizeLinear nodes are
folded, by ONNX's reference evaluator, into integer or float8 initializers, and
:mod:`mpq._onnx_kernels` rewrites each quantized layer as a unit ONNX Runtime runs on integer
kernels (MatMulIntegerToFloat, QAttention, QLinearConv or ConvInteger, MatMulNBits, gathered embedding codes).

The scales are mpq's own (the format's rule on the weight, the calibrated input range for the
activations), so ONNX Runtime and QONNX's executor compute what :func:`mpq.apply`'s model does.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import math
import os
import re
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

from mpq._apply import calibrate
from mpq._formats import Candidate, NumberFormat, get_candidate
from mpq._formats.base import block_amax
from mpq._layers import layer_kind
from mpq._onnx_kernels import integer_kernels
from mpq._probes.checkpoint import data_hash, model_hash
from mpq._quantizer import InputQuantizer, QuantizerSettings, weight_format
from mpq._task import Task, map_leaves
from mpq._task_spec import load_task
from mpq._trust import stored_spec_to_build
from mpq._warnings import mpq_warn
from mpq.exceptions import InvalidParameterError

if TYPE_CHECKING:
    from mpq._runs import Run

ONNX_OPSET = 21  # the first opset with int4 types and blockwise (per group) scales
QONNX_DOMAIN = "qonnx.custom_op.general"
MISSING_EXTRA = "pip install -e '.[export]'"
_WEIGHT_PATH = ".parametrizations.weight"  # where torch.nn.utils.parametrize keeps a layer's weight
_QUANTIZED_WEIGHT = _WEIGHT_PATH + ".0.quantized"  # the buffer of mpq's quantized weight there


def _onnx():
    """The ``onnx`` package, or one line naming the extra that installs it."""
    try:
        import onnx
        import onnxscript  # noqa: F401  torch.onnx's exporter needs it
    except ImportError as exc:
        raise InvalidParameterError(
            f"exporting a model file needs the onnx and onnxscript packages ({exc.name} is missing); "
            f"install them with {MISSING_EXTRA}."
        ) from None
    return onnx


# The marker the exporter translates: fake-quantize ``x`` with ``scale`` along ``axis`` (-1: one
# scale) in blocks of ``block_size`` (0: none), after clipping to ``[low, high]`` (infinite: no
# clip), into ONNX type ``onnx_type`` holding ``bits``-bit values with ``zero_point`` (-1: none,
# symmetric); ``narrow``: the symmetric grid without its lowest code (mpq's first quantizer).
@torch.library.custom_op("mpq_export::quantize", mutates_args=())
def _quantize(
    x: torch.Tensor,
    scale: torch.Tensor,
    low: float,
    high: float,
    zero_point: int,
    axis: int,
    block_size: int,
    onnx_type: int,
    bits: int,
    narrow: bool,
) -> torch.Tensor:
    return x.clone()  # the exporter traces the op's shape only; its ONNX translation does the work


@_quantize.register_fake
def _(x, scale, low, high, zero_point, axis, block_size, onnx_type, bits, narrow):
    return torch.empty_like(x)


def _qdq_translation(x, scale, low: float, high: float, zero_point: int, axis, block_size, onnx_type, bits, narrow):
    from onnx import helper
    from onnxscript import opset21 as op

    axis = max(axis, 0)
    if zero_point < 0:  # symmetric: saturate at mpq's range first; QuantizeLinear alone saturates at the type's
        if math.isfinite(high):
            x = op.Clip(x, op.Constant(value_float=low), op.Constant(value_float=high))
        q = op.QuantizeLinear(x, scale, axis=axis, block_size=block_size, output_dtype=onnx_type)
        return op.DequantizeLinear(q, scale, axis=axis, block_size=block_size)
    zero = op.Constant(value=helper.make_tensor("zero_point", onnx_type, [], [zero_point]))
    codes = op.QuantizeLinear(x, scale, zero)
    if bits not in (8, 16):  # fewer bits than the unsigned type holds: clamp the codes to 0..2**bits - 1
        # (on the codes, so that the DequantizeLinear still feeds the layer: a unit ONNX Runtime fuses)
        codes = op.Clip(codes, None, op.Constant(value=helper.make_tensor("qmax", onnx_type, [], [2**bits - 1])))
    return op.DequantizeLinear(codes, scale, zero)


def _quant_translation(x, scale, low: float, high: float, zero_point: int, axis, block_size, onnx_type, bits, narrow):
    from onnxscript import opset21 as op
    from onnxscript.values import Opset

    # Quant rounds x / scale + zeropt ("ROUND": numpy's, half to even like torch.round) and
    # saturates at the grid of ``bits``: unsigned 0 .. 2**bits - 1 with a zero point, or signed
    # (narrow: without the lowest code), the grids mpq rounds on.
    quant = Opset(QONNX_DOMAIN, 1).Quant
    zero = op.Constant(value_float=float(max(zero_point, 0)))
    width = op.Constant(value_float=float(bits))
    signed = int(zero_point < 0)
    return quant(x, scale, zero, width, signed=signed, narrow=int(narrow), rounding_mode="ROUND", _outputs=1)


def _register_quant_schema(onnx) -> None:
    """Tell ONNX (and so the exporter) QONNX's ``Quant`` signature: x, scale, zeropt, bitwidth."""
    from onnx.defs import OpSchema

    if onnx.defs.has("Quant", QONNX_DOMAIN):
        return
    param = OpSchema.FormalParameter
    onnx.defs.register_schema(
        OpSchema(
            "Quant",
            QONNX_DOMAIN,
            1,
            inputs=[param(name, "T") for name in ("x", "scale", "zeropt", "bitwidth")],
            outputs=[param("y", "T")],
            type_constraints=[("T", ["tensor(float)"], "float tensors")],
            attributes=[
                OpSchema.Attribute("signed", OpSchema.AttrType.INT, "signed integers"),
                OpSchema.Attribute("narrow", OpSchema.AttrType.INT, "symmetric range"),
                OpSchema.Attribute("rounding_mode", OpSchema.AttrType.STRING, "rounding"),
            ],
        )
    )


def _onnx_type(onnx, fmt: NumberFormat, unsigned: bool = False) -> int:
    """The ONNX element type that holds a format's values: int2/int3 in int4, int6 in int8;
    ``unsigned`` codes (a zero-pointed or unsigned input grid) in uint8 up to 8 bits (ONNX Runtime
    moves uint4 QuantizeLinear/DequantizeLinear pairs across MaxPool, which takes no uint4), else uint16."""
    if fmt.family == "float":
        return {"fp8_e4m3": onnx.TensorProto.FLOAT8E4M3FN, "fp8_e5m2": onnx.TensorProto.FLOAT8E5M2}[fmt.name]
    if unsigned:
        return onnx.TensorProto.UINT8 if fmt.element_bits <= 8 else onnx.TensorProto.UINT16
    if fmt.element_bits <= 4:
        return onnx.TensorProto.INT4
    return onnx.TensorProto.INT8 if fmt.element_bits <= 8 else onnx.TensorProto.INT16


def _in_onnx(fmt: NumberFormat) -> bool:
    """Whether ONNX has a type and a QuantizeLinear scale layout for the format."""
    return fmt.family == "int" or fmt.name in ("fp8_e4m3", "fp8_e5m2")


def _safe(scale: torch.Tensor) -> torch.Tensor:
    """A zero scale (an all-zero tensor or group) as 1: the values quantize to 0 either way."""
    return torch.where(scale > 0, scale, torch.ones_like(scale))


class _WeightQuantizer(nn.Module):
    """Parametrization: the weight through the quantize op, with the scales mpq's quantizer chose.

    It holds the weight mpq fake-quantized (every value a code times its scale), so the
    QuantizeLinear folded into integer initializers gives exactly mpq's codes, clipping included.
    """

    def __init__(
        self, fmt: NumberFormat, weight: torch.Tensor, quantized: torch.Tensor, clip, onnx_type: int, qonnx: bool
    ) -> None:
        super().__init__()
        self.fmt, self.onnx_type = fmt, onnx_type
        if fmt.granularity == "group":  # groups run along the flattened rows, as in mpq's quantizer
            rows = weight.detach().float().reshape(weight.shape[0], -1)
            blocks = F.pad(rows, (0, -rows.shape[1] % fmt.group_size)).reshape(rows.shape[0], -1, fmt.group_size)
            scale = fmt._scale(block_amax(blocks)).squeeze(-1)
        else:
            scale = fmt._scale(clip.float())
            if fmt.granularity == "channel" and qonnx:  # Quant broadcasts its scale numpy-style
                scale = scale.reshape(-1, *[1] * (quantized.dim() - 1))
        self.register_buffer("quantized", quantized.detach().clone())
        self.register_buffer("scale", _safe(scale))

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        group = self.fmt.granularity == "group"
        axis = {"group": 1, "channel": 0}.get(self.fmt.granularity, -1)
        x = self.quantized.reshape(self.quantized.shape[0], -1) if group else self.quantized
        narrow = getattr(self.fmt.grid, "narrow", False)
        block_size, bits = self.fmt.group_size or 0, self.fmt.element_bits
        out = _quantize(x, self.scale, -math.inf, math.inf, -1, axis, block_size, self.onnx_type, bits, narrow)
        return out.reshape(weight.shape)


class _InputQuantizer:
    """Forward pre-hook: the layer's input through the quantize op, as mpq's input quantizer does."""

    def __init__(self, quantizer: InputQuantizer, onnx) -> None:
        fmt = quantizer.fmt
        self.quantizer, self.fmt = quantizer, fmt
        if quantizer.scale is not None:  # an integer grid: codes qmin..qmax around a zero point
            self.onnx_type = _onnx_type(onnx, fmt, unsigned=quantizer.qmin == 0)
            self.scale = torch.tensor(quantizer.scale, dtype=torch.float32)
            zero = quantizer.zero_point
            self.low, self.high = (quantizer.qmin - zero) * quantizer.scale, (quantizer.qmax - zero) * quantizer.scale
            self.zero_point = zero if quantizer.qmin == 0 else -1
        elif fmt.family != "reference":  # symmetric at amax through the format's own grid
            self.onnx_type = _onnx_type(onnx, fmt)
            self.scale = _safe(fmt._scale(torch.tensor(quantizer.amax, dtype=torch.float32)))
            self.low, self.high, self.zero_point = -quantizer.amax, quantizer.amax, -1

    def __call__(self, module: nn.Module, args: tuple) -> tuple:
        x = args[0]
        if self.fmt.family == "reference":  # fp16/bf16: a cast and back, which ONNX writes as two Casts
            return (self.fmt.quantize(x), *args[1:])
        narrow = getattr(getattr(self.fmt, "grid", None), "narrow", False) and self.zero_point < 0
        bits = self.fmt.element_bits
        out = _quantize(x, self.scale, self.low, self.high, self.zero_point, -1, 0, self.onnx_type, bits, narrow)
        return (out, *args[1:])


def marked_model(task: Task, plan: dict[str, Candidate], to: str, onnx, quantizer: QuantizerSettings) -> nn.Module:
    """A copy of the task's model whose quantized layers call the quantize op (``to``: onnx or
    qonnx), quantized by mpq's quantizer with the run's settings (bias correction included);
    weights ONNX has no type for hold their exact dequantized values instead."""
    modules = dict(task.model.named_modules())
    quantizes_input = {layer: layer_kind(modules[layer]) != "embedding" for layer in plan}
    calibrated = calibrate(task.model, task.calibration, list(plan), quantizer=quantizer)
    model = copy.deepcopy(task.model).eval().requires_grad_(False)
    copies = dict(model.named_modules())
    for layer, candidate in plan.items():
        module, act_fmt = copies[layer], candidate.act_format
        weight_fmt = weight_format(candidate.weight_format, quantizer)
        with torch.no_grad():
            quantized = calibrated.quantize_weight(layer, candidate.weight_format, module.weight)
            shift = (
                calibrated.bias_shift(layer, module, candidate.weight_format, quantized)
                if quantizes_input[layer]
                else None
            )
            if shift is not None:
                bias = torch.zeros_like(shift) if module.bias is None else module.bias
                module.bias = nn.Parameter(bias - shift, requires_grad=False)
        if _in_onnx(weight_fmt):
            clip = calibrated.weight_clip(layer, candidate.weight_format, module.weight)
            onnx_type = _onnx_type(onnx, weight_fmt)
            quantizer_module = _WeightQuantizer(weight_fmt, module.weight, quantized, clip, onnx_type, to == "qonnx")
            parametrize.register_parametrization(module, "weight", quantizer_module, unsafe=True)
        else:
            module.weight = nn.Parameter(quantized, requires_grad=False)
        if quantizes_input[layer] and act_fmt.name != "fp32":
            module.register_forward_pre_hook(_InputQuantizer(calibrated.input_quantizer(layer, act_fmt), onnx))
    return model


def _example_inputs(task: Task) -> tuple[tuple, dict]:
    """The first calibration batch's inputs as the exporter's ``(args, kwargs)``."""
    inputs = task.calibration[0][0]
    if isinstance(inputs, dict):
        return (), dict(inputs)
    return (tuple(inputs) if isinstance(inputs, (tuple, list)) else (inputs,)), {}


def _dynamic(inputs: Any) -> Any:
    """Every dimension free where the model allows it (batch, sequence length...)."""
    auto = torch.export.Dim.AUTO
    return map_leaves(lambda v: dict.fromkeys(range(v.dim()), auto) if isinstance(v, torch.Tensor) else None, inputs)


def _first_sample(inputs: Any) -> Any:
    return map_leaves(lambda v: v[:1] if isinstance(v, torch.Tensor) else v, inputs)


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """The exporter's own log lines and warnings (a torchvision op it skips, deprecations) held
    back: mpq's output holds mpq's lines."""
    log = logging.getLogger("torch.onnx")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        log.setLevel(level)


def model_proto(task: Task, plan: dict[str, Candidate], to: str, quantizer: QuantizerSettings):
    """The ONNX (``to="onnx"``) or QONNX (``"qonnx"``) model of a task's model under an
    assignment, quantized with the run's quantizer settings."""
    onnx = _onnx()
    model = marked_model(task, plan, to, onnx, quantizer)
    if to == "qonnx":
        _register_quant_schema(onnx)
    translation = _quant_translation if to == "qonnx" else _qdq_translation
    args, kwargs = _example_inputs(task)
    if to == "qonnx":  # FINN streams one sample at a time through static shapes
        args, kwargs = _first_sample(args), _first_sample(kwargs)
    with _quiet():
        program = torch.onnx.export(
            model,
            args,
            kwargs=kwargs,
            dynamo=True,
            opset_version=ONNX_OPSET,
            custom_translation_table={torch.ops.mpq_export.quantize.default: translation},
            dynamic_shapes=None if to == "qonnx" else _dynamic(kwargs) if kwargs else _dynamic(args),
            verbose=False,
        )
    proto = _pin_constant_dims(program.model_proto, program.exported_program.range_constraints)
    return proto if to == "qonnx" else integer_kernels(_fold_weight_quantizers(onnx, proto))


def _pin_constant_dims(proto, range_constraints: dict):
    """Each dimension the exporter proved constant (a range of one value, such as an MLP's
    feature dimension that its first Linear fixes) written as that number: it leaves them
    symbolic, so a file would declare a free feature dimension that only fails inside the graph.
    The batch and any sequence dimension stay free."""
    pinned = {str(symbol): int(r.lower) for symbol, r in range_constraints.items() if r.lower == r.upper}
    graph = proto.graph
    for value in (*graph.input, *graph.output, *graph.value_info):
        for dim in value.type.tensor_type.shape.dim:
            if dim.dim_param in pinned:
                dim.dim_value = pinned[dim.dim_param]  # dim_value and dim_param are a oneof: this clears the name
    return proto


def _fold_weight_quantizers(onnx, proto):
    """Each QuantizeLinear of a constant (a weight, or its per-group 2-D view) replaced by its
    output: the weight stored as integers or float8, with only its DequantizeLinear left."""
    from onnx import helper, numpy_helper
    from onnx.reference import ReferenceEvaluator

    graph = proto.graph
    constants = {init.name: init for init in graph.initializer}
    layer_of = {}  # folded tensor -> the layer whose weight it is
    folded = []
    for node in graph.node:
        if node.op_type not in ("Reshape", "QuantizeLinear") or not all(name in constants for name in node.input):
            continue
        inputs = [helper.make_tensor_value_info(name, constants[name].data_type, None) for name in node.input]
        output = helper.make_tensor_value_info(node.output[0], onnx.TensorProto.UNDEFINED, None)
        single = helper.make_model(
            helper.make_graph([node], "fold", inputs, [output]), opset_imports=[helper.make_opsetid("", ONNX_OPSET)]
        )
        (value,) = ReferenceEvaluator(single).run(None, {n: numpy_helper.to_array(constants[n]) for n in node.input})
        constants[node.output[0]] = numpy_helper.from_array(value, node.output[0])
        graph.initializer.append(constants[node.output[0]])
        layer_of[node.output[0]] = layer_of.get(node.input[0], node.input[0].removesuffix(_QUANTIZED_WEIGHT))
        folded.append(node)
    for node in folded:
        graph.node.remove(node)
    # Named by layer (conv1.weight_quantized, conv1.weight_scale), not by torch's parametrization path.
    names = {i.name: i.name.replace(_WEIGHT_PATH + ".0.scale", ".weight_scale") for i in graph.initializer}
    names |= {n.output[0]: f"{layer_of[n.output[0]]}.weight_quantized" for n in folded if n.op_type == "QuantizeLinear"}
    names |= {  # an input's scale: a constant the hook holds, which the exporter names layer.lifted_tensor_N
        n.input[1]: re.sub(r"\.lifted_tensor_\d+$", ".input_scale", n.input[1])
        for n in graph.node
        if n.op_type == "QuantizeLinear"
    }
    for init in graph.initializer:
        init.name = names.get(init.name, init.name)
    for node in graph.node:
        node.input[:] = [names.get(name, name) for name in node.input]
    used = {name for node in graph.node for name in node.input} | {out.name for out in graph.output}
    unused = [init for init in graph.initializer if init.name not in used]
    for init in unused:  # the float weights the integers replace
        graph.initializer.remove(init)
    return proto


def check_formats(run: Run, point: int, plan: dict[str, Candidate], to: str) -> None:
    """Refuse a point whose formats the file cannot hold; warn where weights are stored dequantized."""
    names = ", ".join(sorted({c.name for c in plan.values()}))
    if to == "qonnx":
        not_int = sorted({f.name for c in plan.values() for f in (c.weight_format, c.act_format) if not _in_qonnx(f)})
        if not_int:
            raise InvalidParameterError(
                f"run {run.id} point {point} ({names}): QONNX's Quant node holds integers with one scale per "
                f"tensor or channel, and this point uses {', '.join(not_int)}; export it as onnx, or a point "
                "with INT per-tensor or per-channel formats only."
            )
        return
    acts = sorted({c.act_format.name for c in plan.values() if not _act_in_onnx(c.act_format)})
    if acts:
        raise InvalidParameterError(
            f"run {run.id} point {point} ({names}): ONNX has no QuantizeLinear for {', '.join(acts)} activations; "
            "export it as json, or a point with INT, FP8 or fp16 activations."
        )
    stored = sorted(
        {c.weight_format.name for c in plan.values() if c.weight_format.family != "reference"}
        - {c.weight_format.name for c in plan.values() if _in_onnx(c.weight_format)}
    )
    if stored:
        mpq_warn(
            f"run {run.id} point {point}: ONNX has no type for {', '.join(stored)} weights; they are stored as "
            "their exact dequantized float values.",
            UserWarning,
        )


def _act_in_onnx(fmt: NumberFormat) -> bool:
    """Static QuantizeLinear: one calibrated scale per tensor (group scales come from the data)."""
    return fmt.family == "reference" or (_in_onnx(fmt) and fmt.granularity == "tensor")


def _in_qonnx(fmt: NumberFormat) -> bool:
    return fmt.family == "int" and fmt.granularity in ("tensor", "channel")


def rebuilt_task(run: Run, model: str | None = None) -> Task:
    """The run's task, rebuilt from ``model`` (else its stored ``--model`` spec, where that runs no
    file: :mod:`mpq._trust`), with the same model and data."""
    spec = stored_spec_to_build(run.id, run.record.get("model_spec"), model)
    if spec is None:
        raise InvalidParameterError(
            f"run {run.id} stores no model spec (it predates them), so its model cannot be rebuilt; search the "
            "model again with this mpq and export a point of that run."
        )
    task = load_task(spec)
    for what, stored, now in (
        ("model weights", run.record["model_hash"], model_hash(task.model)),
        ("calibration data", run.record["data_hash"], data_hash(task.calibration)),
    ):
        if stored != now:
            raise InvalidParameterError(
                f"run {run.id}: {spec} now builds other {what} than the run searched (hash {now[:12]}, the run's "
                f"{stored[:12]}); search it again (mpq search --model {spec}) and export a point of the new run."
            )
    return task


def without_exporter_traces(proto):
    """The model without what torch's exporter records of its own run (``doc_string`` and
    ``metadata_props`` of every graph, node, value, tensor and function: the Python stack trace
    with local file paths, the FX node, the module path): about a quarter of a small model's file,
    a leak in a file users ship, and no part of what it computes. The model's own
    ``metadata_props`` stay."""
    from google.protobuf.descriptor import FieldDescriptor
    from google.protobuf.message import Message

    def strip(message) -> None:
        for field, value in message.ListFields():  # the fields set: a message is never created here
            if field.name in ("doc_string", "metadata_props"):
                message.ClearField(field.name)
            elif field.type == FieldDescriptor.TYPE_MESSAGE:
                for child in (value,) if isinstance(value, Message) else value:
                    strip(child)

    metadata = list(proto.metadata_props)
    strip(proto)
    proto.metadata_props.extend(metadata)
    return proto


def writable_path(out: object, to: str) -> Path:
    """``out`` as a Path a file can be written to, checked before any work."""
    if not isinstance(out, (str, os.PathLike)) or not str(out):
        got = "" if out is None else f" Got {out!r} instead."
        raise InvalidParameterError(
            f"export to {to} writes a model file: pass its path as out (--out on the command line), e.g. "
            f"model.{to}.{got}"
        )
    path = Path(out)
    if path.is_dir() or not path.parent.is_dir() or not os.access(path.parent, os.W_OK):
        raise InvalidParameterError(
            f"export path {str(path)!r} cannot be written: {_why_not(path)}; give a file path in a writable folder."
        )
    return path


def _why_not(path: Path) -> str:
    if path.is_dir():
        return "it is a folder"
    return "its folder does not exist" if not path.parent.is_dir() else "its folder is not writable"


def export_file(run: Run, point: int, to: str, out: object, model: str | None = None) -> Path:
    """Write one point of a run as an ONNX or QONNX model file (see :func:`mpq.export`)."""
    path = writable_path(out, to)
    plan = {layer: get_candidate(name) for layer, name in run.assignment(point).items()}
    check_formats(run, point, plan, to)
    proto = without_exporter_traces(model_proto(rebuilt_task(run, model), plan, to, run.quantizer))
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        _onnx().save(proto, tmp)
        os.replace(tmp, path)  # a failed write leaves no half file at ``out``
    except OSError as exc:
        raise InvalidParameterError(
            f"export path {str(path)!r} cannot be written: {exc.strerror}; give a file path in a writable folder."
        ) from None
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path
