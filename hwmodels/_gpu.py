"""Roofline cost model for GPUs (also serves CPUs, see ``_cpu.py``).

Per layer, for a batch of ``B`` samples::

    compute_s = 2 * MACs * B / peak_ops_per_s[executed class]      (an FMA is 2 ops, as datasheets count)
              + dequant_elems / dequant_elems_per_s
    dram_bytes = weight_params * weight_bits / 8 + bias_params * 4
               + B * (in_elems + out_elems) * act_bits / 8
    memory_s   = dram_bytes / dram_bytes_per_s
    latency_s  = max(compute_s, memory_s) + launch_overhead_s
               + quantize_overhead_s  (a layer whose input is quantized: a CPU runtime's quantize node)
    bound      = "compute" if compute_s > memory_s else "memory"

Biases are 4 bytes (int32 in integer kernels, fp32 in float epilogues). The output is counted at
the layer's activation width, as the next layer's input. An embedding is a lookup: no compute,
``dram_bytes = B * out_elems * weight_bits / 8`` (the gathered rows).

**Executed class.** Tensor cores run both operands in one mode (class). The class that runs a
(weight, activation) pair is chosen among the classes the device lists in ``[peak_ops_per_s]``:
those that *hold* both operands (every operand value converts exactly, see
``mpqvocab.holds``), and among them the one with the highest peak, then the narrowest, then
integer before float. So a pair the device runs natively runs natively (int8 x int8 -> int8 on
H100); otherwise the lower-precision operand is upcast to the other's class (int4 weights with
fp16 activations -> fp16; int4 or fp4 weights with fp8 activations -> fp8 on H100, which has no
INT4 and no FP4 tensor cores) or, when neither class is run, to the cheapest class at least as
wide as both (int8 weights with fp8 activations -> fp16). An operand whose class differs from the
executed one is dequantised: ``weight_params`` elements for the weights (once per batch) and
``B * in_elems`` for the activations, at ``dequant_elems_per_s``; that is how weight-only low
bits save memory traffic but not compute. Each dequantised element also costs one MAC of energy
(the scale multiply).

**Convolution kernels.** A device's optional ``[conv_peak_ops_per_s]`` table gives, per executed
class, the peak of its convolution kernels where they run slower than its GEMM: a ``conv1d`` or
``conv2d`` layer executed in a listed class is charged at that peak (ONNX Runtime's ConvInteger
has no blocked-layout kernel: an im2col then an integer GEMM, several times slower than its float
NCHWc convolution, while its integer GEMM is the fastest kernel it has). Absent: every layer runs
at ``[peak_ops_per_s]``.

**Cache.** A device's optional ``cache_bytes`` (a CPU core's private cache) holds a small model's
weights between calls: when every layer's weights and biases, at its widest candidate costed
(embedding tables aside), fit in it together, no pair reads them from DRAM (``dram_bytes`` counts
the activations only), whatever the configuration. Otherwise, or without it, weights are DRAM
traffic. The digits CNN's 0.24 MB of fp32 weights stay in a 2 MiB L2; MiniLM's 42 MB do not.

**Stored weight width.** A device's optional ``[stored_weight_bits]`` table says, per executed
class, the width its runtime stores weights at: a weight format narrower than that which runs in
the class is stored widened (ONNX Runtime's integer GEMM and convolution take 8-bit weights only,
so mpq's export stores ``w4a8``'s 4-bit codes as int8: ``int8 = 8``). Such a weight costs as
stored: its ``weight_bits`` grow by the difference of widths (shared scales unchanged), in
``dram_bytes`` and ``weight_bytes`` alike, and it is not dequantised per call (it is already in the
executed class). A device without the table stores every weight at its own width.

Energy: ``MACs * B * mac_pj(executed class) + dequant_elems * mac_pj(executed class)
+ dram_bytes * dram_pj_per_byte`` (see ``_energy``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from hwmodels._device import Device
from hwmodels._energy import PJ
from hwmodels._errors import InvalidTableError
from hwmodels._fields import FieldReader
from hwmodels._inputs import candidate_classes
from hwmodels._registry import register_cost_model
from mpqvocab import arith_class, class_names, holds

__all__ = ["RooflineSpec", "executed_class", "roofline_costs"]

_BIAS_BYTES = 4
_OPS_PER_MAC = 2


@dataclass(frozen=True)
class RooflineSpec:
    """Numbers of a roofline device (GPU or CPU).

    Attributes:
        peak_ops_per_s: Dense peak per executed class (``fp16``, ``int8``, ``fp8``, ``tf32``,
            ``fp32``, ...), counting an FMA as 2 operations.
        dram_bytes_per_s: DRAM bandwidth.
        launch_overhead_s: Fixed time per layer (kernel launch, framework dispatch).
        dequant_elems_per_s: Rate at which the vector units convert operands to the executed
            class.
        quantize_overhead_s: Fixed time more per layer whose input is quantized (activations
            narrower than fp32, not an embedding): the quantize node and integer kernel's
            requantization that ONNX Runtime runs as nodes of their own; 0 when absent (GPU
            kernels fuse them).
        stored_weight_bits: Executed class -> the width its kernels take weights at (see
            "Stored weight width" in the module docstring); empty when absent.
        conv_peak_ops_per_s: Executed class -> the peak of its convolution kernels, where they
            are slower than ``peak_ops_per_s`` (see "Convolution kernels"); empty when absent.
        cache_bytes: The cache a small model's weights stay in between calls (see "Cache"); 0
            when absent (weights are always DRAM traffic).
    """

    peak_ops_per_s: Mapping[str, float]
    dram_bytes_per_s: float
    launch_overhead_s: float
    dequant_elems_per_s: float
    quantize_overhead_s: float = 0.0
    stored_weight_bits: Mapping[str, int] = field(default_factory=dict)
    conv_peak_ops_per_s: Mapping[str, float] = field(default_factory=dict)
    cache_bytes: float = 0.0

    @classmethod
    def read(cls, reader: FieldReader) -> RooflineSpec:
        """Read the spec from a device file's top-level table."""
        peaks = reader.table("peak_ops_per_s").rates(class_names(), "a positive number of ops per second")
        return cls(
            peak_ops_per_s=peaks,
            dram_bytes_per_s=reader.positive_float("dram_bytes_per_s"),
            launch_overhead_s=reader.non_negative_float("launch_overhead_s"),
            dequant_elems_per_s=reader.positive_float("dequant_elems_per_s"),
            quantize_overhead_s=reader.non_negative_float("quantize_overhead_s", required=False) or 0.0,
            stored_weight_bits=_stored_weight_bits(reader, peaks),
            conv_peak_ops_per_s=_conv_peaks(reader, peaks),
            cache_bytes=reader.non_negative_float("cache_bytes", required=False) or 0.0,
        )

    def limits(self) -> dict[str, float]:
        """No capacity columns: a roofline device bounds time, not resources."""
        return {}


def _stored_weight_bits(reader: FieldReader, peaks: Mapping[str, float]) -> Mapping[str, int]:
    """The optional ``[stored_weight_bits]`` table: keys are classes the device runs."""
    table = reader.table("stored_weight_bits", required=False)
    if table is None:
        return {}
    return table.positive_ints(peaks, "a positive int (bits per stored weight value)")


def _conv_peaks(reader: FieldReader, peaks: Mapping[str, float]) -> Mapping[str, float]:
    """The optional ``[conv_peak_ops_per_s]`` table: keys are classes the device runs."""
    table = reader.table("conv_peak_ops_per_s", required=False)
    if table is None:
        return {}
    return table.rates(peaks, "a positive number of ops per second")


def executed_peaks(kind: pd.Series, executed: pd.Series, spec: RooflineSpec) -> np.ndarray:
    """Each pair's peak: its executed class's, or the class's convolution peak for a convolution."""
    peak = executed.map(spec.peak_ops_per_s).to_numpy()
    if not spec.conv_peak_ops_per_s:
        return peak
    conv_peak = executed.map(spec.conv_peak_ops_per_s).to_numpy(dtype=float)  # NaN: as fast as the GEMM
    is_conv = kind.isin(["conv1d", "conv2d"]).to_numpy()
    return np.where(is_conv & ~np.isnan(conv_peak), conv_peak, peak)


def weights_stay_cached(pairs: pd.DataFrame, parameter_bytes: np.ndarray, spec: RooflineSpec) -> bool:
    """Whether the model's weights and biases fit in ``spec.cache_bytes`` at every layer's widest
    candidate (embedding tables aside: a lookup reads its rows only), "Cache" in the module docstring."""
    if not spec.cache_bytes:
        return False
    layer_bytes = pd.Series(parameter_bytes).where((pairs["kind"] != "embedding").to_numpy(), 0.0)
    return bool(layer_bytes.groupby(pairs["layer"].to_numpy(), sort=False).max().sum() <= spec.cache_bytes)


def stored_weights(pairs: pd.DataFrame, executed: pd.Series, spec: RooflineSpec) -> tuple[np.ndarray, np.ndarray]:
    """Each pair's weight bits and class as the device stores them ("Stored weight width" above).

    Returns:
        ``(weight_bits, weight_class)`` arrays; ``pairs``' own columns where the device widens nothing.
    """
    weight_bits = pairs["weight_bits"].to_numpy()
    weight_class = pairs["weight_class"].to_numpy()
    if not spec.stored_weight_bits:
        return weight_bits, weight_class
    stored = executed.map(spec.stored_weight_bits).to_numpy(dtype=float)  # NaN: the class keeps its width
    width = np.array([arith_class(c).bits for c in weight_class], dtype=float)
    widened = stored > width  # False against NaN
    return (
        np.where(widened, weight_bits + stored - width, weight_bits),
        np.where(widened, executed.to_numpy(), weight_class),
    )


def executed_class(weight_class: str, act_class: str, peak_ops_per_s: Mapping[str, float]) -> str | None:
    """Pick the class that runs a (weight, activation) pair (rule in the module docstring).

    Args:
        weight_class: Class of the stored weights (``int4``, ``fp4``, ``fp16``, ...).
        act_class: Class of the stored activations.
        peak_ops_per_s: The device's classes and their peaks.

    Returns:
        The executed class, or None when no class the device runs holds both operands.
    """
    holders = [c for c in peak_ops_per_s if holds(c, weight_class) and holds(c, act_class)]
    if not holders:
        return None
    return min(
        holders,
        key=lambda c: (-peak_ops_per_s[c], arith_class(c).bits, arith_class(c).family != "int"),
    )


def _executed_classes(pairs: pd.DataFrame, device: Device) -> pd.Series:
    peaks = device.spec.peak_ops_per_s
    chosen = {}
    for cand, w, a in candidate_classes(pairs):
        cls = executed_class(w, a, peaks)
        if cls is None:
            raise InvalidTableError(
                f"candidate {cand!r}: {device.name} runs no class that holds {w} weights and {a} activations "
                f"(it runs {', '.join(peaks)}); drop {cand!r} from {device.path.name}'s candidates or add a rate "
                "that holds both to its [peak_ops_per_s]."
            )
        chosen[cand] = cls
    return pairs["candidate"].map(chosen)


@register_cost_model("gpu", spec=RooflineSpec)
def roofline_costs(pairs: pd.DataFrame, device: Device, batch_size: int) -> pd.DataFrame:
    """Roofline latency and energy per (layer, candidate); formulas in the module docstring.

    Args:
        pairs: One row per (layer, candidate), see ``_registry``.
        device: A device whose spec is a :class:`RooflineSpec`.
        batch_size: Samples per forward pass.

    Returns:
        Columns ``latency_s`` (s), ``energy_j`` (J), ``bound`` (``"memory"``/``"compute"``),
        ``dram_bytes`` (bytes moved per batch), ``executed_class`` (str) and ``weight_bytes``
        (bytes of the weights as the device stores them).

    Raises:
        InvalidTableError: If the device runs no class that holds a candidate's operands.
    """
    spec: RooflineSpec = device.spec
    executed = _executed_classes(pairs, device)
    is_lookup = (pairs["kind"] == "embedding").to_numpy()
    weight_params = pairs["weight_params"].to_numpy(dtype=float)
    weight_bits, weight_class = stored_weights(pairs, executed, spec)
    macs = pairs["macs"].to_numpy(dtype=float) * batch_size
    in_elems = pairs["in_elems"].to_numpy(dtype=float) * batch_size
    out_elems = pairs["out_elems"].to_numpy(dtype=float) * batch_size

    parameter_bytes = weight_params * weight_bits / 8 + pairs["bias_params"].to_numpy() * _BIAS_BYTES
    if weights_stay_cached(pairs, parameter_bytes, spec):
        parameter_bytes = np.zeros_like(parameter_bytes)
    dram_bytes = np.where(
        is_lookup,
        out_elems * weight_bits / 8,
        parameter_bytes + (in_elems + out_elems) * pairs["act_bits"].to_numpy() / 8,
    )
    dequant_elems = np.where(
        is_lookup,
        0.0,
        (weight_class != executed.to_numpy()) * weight_params + (pairs["act_class"] != executed).to_numpy() * in_elems,
    )
    peak = executed_peaks(pairs["kind"], executed, spec)
    compute_s = _OPS_PER_MAC * macs / peak + dequant_elems / spec.dequant_elems_per_s
    memory_s = dram_bytes / spec.dram_bytes_per_s
    mac_pj = executed.map(device.energy.mac_pj).to_numpy()
    energy_j = ((macs + dequant_elems) * mac_pj + dram_bytes * device.energy.dram_pj_per_byte) * PJ
    quantizes_input = ~is_lookup & (pairs["act_bits"].to_numpy() < 32)
    return pd.DataFrame(
        {
            "latency_s": np.maximum(compute_s, memory_s)
            + spec.launch_overhead_s
            + quantizes_input * spec.quantize_overhead_s,
            "energy_j": energy_j,
            "bound": np.where(compute_s > memory_s, "compute", "memory"),
            "dram_bytes": dram_bytes,
            "executed_class": executed.to_numpy(),
            "weight_bytes": weight_params * weight_bits / 8,
        }
    )
