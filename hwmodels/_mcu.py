"""CMSIS-NN cost model for Arm Cortex-M microcontrollers.

Kernels decide the candidates: CMSIS-NN runs int4 weights x int8 activations (``s4``), int8 x
int8 (``s8``) and int8 weights x int16 activations (``s16``); a candidate with any other
(weight, activation) class pair has no kernel and is rejected. Per layer and sample::

    cycles      = ceil(MACs / macs_per_cycle[kernel]) + layer_overhead_cycles
    flash_bytes = ceil(weight_params * weight_bits / 8) + bias_params * bias_bytes
                  + out_channels * 8
    sram_bytes  = ceil(in_bytes + out_elems * act_bits / 8) + scratch_bytes

* biases are int32 for s4/s8 and int64 for s16 (CMSIS-NN ``arm_convolve_s16`` takes
  ``const int64_t *bias_data``); requantisation stores an int32 multiplier and an int32 shift
  per output channel (``cmsis_nn_per_channel_quant_params``): 8 bytes per channel;
* ``in_bytes`` is ``in_elems * act_bits / 8`` (an embedding's input is int32 token ids: 4 bytes
  each);
* ``scratch_bytes`` is CMSIS-NN's im2col buffer on a DSP-extension core (Cortex-M4/M7, no MVE):
  ``arm_convolve_s8_get_buffer_size`` (also s4, s16) returns ``2 * C_in * kh * kw * sizeof(int16)``
  with ``C_in`` the input channels per group; a depthwise conv
  (``arm_depthwise_conv_s8_opt_get_buffer_size``) ``C_in * kh * kw * sizeof(int16)``; fully
  connected layers need none.

``sram_bytes`` is the live memory while the layer runs, so the solver bounds its maximum over
layers, not its sum (MCUNet): the cost table says so in ``attrs["max_columns"]``. An embedding
copies its rows (``cycles = out_elems + layer_overhead_cycles``, no requantisation data). A batch
runs sample after sample: cycles and energy scale with ``batch_size``, memory does not.

A layer whose ``sram_bytes`` exceeds the device's SRAM at every candidate, or whose
``flash_bytes`` exceeds its flash at every candidate, raises :class:`LayerDoesNotFitError`;
candidates over a limit are otherwise returned and the solver decides.

Energy: ``MACs * mac_pj(int8 for s4/s8, int16 for s16)`` plus flash reads (every MAC fetches its
weight: ``macs * weight_bits / 8``) at ``flash_pj_per_byte`` and the activations read and written
once (``(in_elems + out_elems) * act_bits / 8``) at ``sram_pj_per_byte``, per sample.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from hwmodels._device import Device
from hwmodels._energy import PJ, operand_traffic_bytes
from hwmodels._errors import InvalidTableError, LayerDoesNotFitError
from hwmodels._fields import FieldReader
from hwmodels._inputs import candidate_classes
from hwmodels._registry import register_cost_model

__all__ = ["KERNELS", "McuSpec", "mcu_costs"]


@dataclass(frozen=True)
class _Kernel:
    name: str
    executed_class: str
    bias_bytes: int


# (weight class, activation class) -> CMSIS-NN kernel family (arm_nnfunctions.h: *_s4, *_s8, *_s16).
KERNELS = {
    ("int4", "int8"): _Kernel("s4", "int8", 4),
    ("int8", "int8"): _Kernel("s8", "int8", 4),
    ("int8", "int16"): _Kernel("s16", "int16", 8),
}
_REQUANT_BYTES_PER_CHANNEL = 8  # int32 multiplier + int32 shift (cmsis_nn_per_channel_quant_params)
_TOKEN_ID_BYTES = 4  # int32 ids into an embedding
_SCRATCH_ELEM_BYTES = 2  # im2col buffers hold int16 (sizeof(int16_t) in the buffer-size functions)


@dataclass(frozen=True)
class McuSpec:
    """Numbers of a microcontroller.

    Attributes:
        clock_hz: Core clock.
        flash_bytes: Flash for weights, biases and quantisation data.
        sram_bytes: SRAM available to one contiguous tensor arena.
        layer_overhead_cycles: Fixed cycles per layer (operator dispatch, requantisation setup).
        macs_per_cycle: Sustained MACs per cycle per CMSIS-NN kernel (``s4``, ``s8``, ``s16``).
    """

    clock_hz: float
    flash_bytes: int
    sram_bytes: int
    layer_overhead_cycles: int
    macs_per_cycle: Mapping[str, float]

    @classmethod
    def read(cls, reader: FieldReader) -> McuSpec:
        """Read the spec from a device file's top-level table."""
        return cls(
            clock_hz=reader.positive_float("clock_hz"),
            flash_bytes=reader.positive_int("flash_bytes"),
            sram_bytes=reader.positive_int("sram_bytes"),
            layer_overhead_cycles=reader.non_negative_int("layer_overhead_cycles"),
            macs_per_cycle=reader.table("macs_per_cycle").rates(
                [k.name for k in KERNELS.values()], "a positive number of MACs per cycle"
            ),
        )

    def limits(self) -> dict[str, float]:
        """Flash and SRAM sizes, the capacities the solver may budget."""
        return {"flash_bytes": self.flash_bytes, "sram_bytes": self.sram_bytes}


def _kernels(pairs: pd.DataFrame, device: Device) -> list[_Kernel]:
    spec: McuSpec = device.spec
    chosen = {}
    for cand, w, a in candidate_classes(pairs):
        kernel = KERNELS.get((w, a))
        if kernel is None or kernel.name not in spec.macs_per_cycle:
            runs = ", ".join(
                f"{k.name} ({kw} x {ka})" for (kw, ka), k in KERNELS.items() if k.name in spec.macs_per_cycle
            )
            raise InvalidTableError(
                f"candidate {cand!r}: {device.name} has no CMSIS-NN kernel for {w} weights x {a} activations "
                f"(it runs {runs}); define {cand!r} with formats of one of those kernels or drop it from "
                f"{device.path.name}'s candidates."
            )
        chosen[cand] = kernel
    return [chosen[c] for c in pairs["candidate"]]


def _scratch_bytes(pairs: pd.DataFrame) -> np.ndarray:
    out = np.zeros(len(pairs), dtype=np.int64)
    for i, (kind, shape, groups) in enumerate(zip(pairs["kind"], pairs["weight_shape"], pairs["groups"])):
        if kind not in ("conv1d", "conv2d"):
            continue
        area = int(np.prod(shape[2:]))
        depthwise = groups > 1 and shape[1] == 1
        out[i] = (groups if depthwise else 2 * shape[1]) * area * _SCRATCH_ELEM_BYTES
    return out


def _check_fits(pairs: pd.DataFrame, device: Device, flash: np.ndarray, sram: np.ndarray) -> None:
    limits = device.limits()
    n_cands = pairs["candidate"].nunique()
    for column, need in (("sram_bytes", sram), ("flash_bytes", flash)):
        per_layer = need.reshape(-1, n_cands)
        for i in np.flatnonzero((per_layer > limits[column]).all(axis=1)):
            best = int(np.argmin(per_layer[i]))
            row = i * n_cands + best
            raise LayerDoesNotFitError(
                f"layer {pairs.at[row, 'layer']!r} does not fit {device.name} at any candidate: it needs at least "
                f"{per_layer[i, best]} {column} (at {pairs.at[row, 'candidate']}), the device has {limits[column]}; "
                "shrink the layer or choose a device with more memory."
            )


@register_cost_model("mcu", spec=McuSpec, max_columns=("sram_bytes",))
def mcu_costs(pairs: pd.DataFrame, device: Device, batch_size: int) -> pd.DataFrame:
    """CMSIS-NN cycles, latency, energy, flash and SRAM per (layer, candidate); see the module docstring.

    Args:
        pairs: One row per (layer, candidate), see ``_registry``.
        device: A device whose spec is a :class:`McuSpec`.
        batch_size: Samples run one after the other.

    Returns:
        Columns ``latency_s`` (s), ``energy_j`` (J), ``flash_bytes`` (bytes, int64),
        ``sram_bytes`` (peak bytes while the layer runs, int64), ``cycles`` (per batch, int64)
        and ``kernel`` (``s4``/``s8``/``s16``).

    Raises:
        InvalidTableError: If a candidate has no CMSIS-NN kernel on the device.
        LayerDoesNotFitError: If a layer exceeds SRAM, or flash, at every candidate.
    """
    spec: McuSpec = device.spec
    kernels = _kernels(pairs, device)
    is_lookup = (pairs["kind"] == "embedding").to_numpy()
    weight_bits = pairs["weight_bits"].to_numpy()
    act_bits = pairs["act_bits"].to_numpy()
    out_channels = np.array([shape[0] for shape in pairs["weight_shape"]])

    flash = (
        np.ceil(pairs["weight_params"].to_numpy() * weight_bits / 8)
        + pairs["bias_params"].to_numpy() * np.array([k.bias_bytes for k in kernels])
        + np.where(is_lookup, 0, out_channels * _REQUANT_BYTES_PER_CHANNEL)
    ).astype(np.int64)
    in_bytes = np.where(is_lookup, pairs["in_elems"] * _TOKEN_ID_BYTES, pairs["in_elems"] * act_bits / 8)
    sram = (np.ceil(in_bytes + pairs["out_elems"].to_numpy() * act_bits / 8) + _scratch_bytes(pairs)).astype(np.int64)
    _check_fits(pairs, device, flash, sram)

    macs = pairs["macs"].to_numpy()
    rate = np.array([spec.macs_per_cycle[k.name] for k in kernels])
    work = np.where(is_lookup, pairs["out_elems"], np.ceil(macs / rate))
    cycles = ((work + spec.layer_overhead_cycles) * batch_size).astype(np.int64)

    mac_pj = np.array([device.energy.mac_pj(k.executed_class) for k in kernels])
    flash_reads, activations = operand_traffic_bytes(pairs, weight_bits, act_bits)
    energy_j = (
        (macs * mac_pj + flash_reads * device.energy.flash_pj_per_byte + activations * device.energy.sram_pj_per_byte)
        * batch_size
        * PJ
    )
    return pd.DataFrame(
        {
            "latency_s": cycles / spec.clock_hz,
            "energy_j": energy_j,
            "flash_bytes": flash,
            "sram_bytes": sram,
            "cycles": cycles,
            "kernel": [k.name for k in kernels],
        }
    )
