"""FINN-R streaming-dataflow cost model for FPGAs (Blott et al., TRETS 2018).

Every matrix layer becomes a matrix-vector unit (MVAU) with ``MW`` inputs, ``MH`` outputs,
``PE`` processing elements (PE divides MH) and ``SIMD`` lanes (SIMD divides MW)::

    MW = weight_params / out_channels   (in features x kernel area / groups)
    MH = out_channels
    vectors = macs / weight_params      (input vectors per sample: pixels or tokens)
    cycles  = (MH / PE) * (MW / SIMD) * vectors * batch_size
    latency_s = cycles / clock_hz

Resources, as FINN estimates them (finn/custom_op/fpgadataflow MVAU ``lut_estimation``,
``dsp_estimation``, ``bram_estimation``; W, A = weight and activation bits of the formats)::

    luts  = ceil(300 + 1.1 * PE * (mult + (W + A) * (2 * SIMD - 1) + W + A + ceil(log2 MW)))
    mult  = SIMD * (2 * ceil((W + A) / 6) - 1) * (W + A)  if W + A <= lut_mult_max_bits else 0
    dsps  = PE * SIMD * ceil((W + A) / 48)                if W + A >  lut_mult_max_bits else 0
    brams = RAMB18 count of a PE*SIMD*W-bit wide, MW*MH/(PE*SIMD) deep weight memory
            (FINN's piecewise formula for simple-dual-port RAMB18, UG573)

**Folding policy.** Each layer gets a share of the part: ``usable_fraction`` of the LUTs and
DSPs in proportion to its MACs (so equal shares give a balanced pipeline), and of the BRAMs in
proportion to its weights. Within its share a layer takes the folding with the fewest cycles
(ties: fewer LUTs, DSPs, BRAMs). Shares do not depend on the candidate, so any mix of
candidates the solver picks stays inside ``usable_fraction`` of the part. A layer that fits its
share at no folding gets PE = SIMD = 1 and its row exceeds the share; the cost table's
``attrs["limits"]`` carries the part's capacities for the solver to budget. A layer that does
not fit the whole part even at PE = SIMD = 1 at every candidate raises
:class:`LayerDoesNotFitError`.

An embedding is a lookup table in BRAM streaming one element per cycle (``cycles = out_elems
* batch_size``, 300 LUTs, PE = SIMD = 1). Only integer formats run (FINN's datapath); per-group
scale bits are not modelled (FINN folds per-channel scales into thresholds).

Energy: ``MACs * batch * mac_pj(int<max(W, A)>)`` plus BRAM traffic at ``bram_pj_per_byte``:
every MAC reads its weight (``macs * W / 8``; ``out_elems * W / 8`` for a lookup) and the
activations stream once (``(in_elems + out_elems) * A / 8``), per sample.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from hwmodels._device import Device
from hwmodels._energy import PJ, operand_traffic_bytes
from hwmodels._errors import InvalidTableError, LayerDoesNotFitError
from hwmodels._fields import FieldReader
from hwmodels._registry import register_cost_model
from mpqvocab import arith_class

__all__ = ["FpgaSpec", "finn_brams", "fpga_costs"]

_LUT_C0, _LUT_C1_TENTHS = 300, 11  # c0 = 300, c1 = 1.1: FINN-R (Blott et al. 2018), FINN's MVAU lut_estimation
_DSP_INPUT_BITS = 48  # FINN's MVAU dsp_estimation: ceil((W + A) / 48) DSPs per multiplier
_RESOURCES = ("luts", "dsps", "brams")


@dataclass(frozen=True)
class FpgaSpec:
    """Numbers of an FPGA part.

    Attributes:
        luts: CLB LUTs.
        dsps: DSP slices.
        brams: RAMB18 blocks (two per RAMB36).
        clock_hz: Clock of the dataflow design.
        usable_fraction: Share of each resource the layers may use (the rest is routing,
            FIFOs, DMA and the shell).
        lut_mult_max_bits: Multipliers with W + A up to this are built from LUTs, wider ones
            from DSPs.
    """

    luts: int
    dsps: int
    brams: int
    clock_hz: float
    usable_fraction: float
    lut_mult_max_bits: int

    @classmethod
    def read(cls, reader: FieldReader) -> FpgaSpec:
        """Read the spec from a device file's top-level table."""
        return cls(
            luts=reader.positive_int("luts"),
            dsps=reader.positive_int("dsps"),
            brams=reader.positive_int("brams"),
            clock_hz=reader.positive_float("clock_hz"),
            usable_fraction=reader.fraction("usable_fraction"),
            lut_mult_max_bits=reader.positive_int("lut_mult_max_bits"),
        )

    def limits(self) -> dict[str, float]:
        """The part's LUTs, DSPs and RAMB18s, the capacities the solver may budget."""
        return {"luts": self.luts, "dsps": self.dsps, "brams": self.brams}


def finn_brams(depth: np.ndarray, width: np.ndarray) -> np.ndarray:
    """RAMB18 blocks for a memory ``width`` bits wide and ``depth`` words deep.

    FINN's MVAU ``bram_estimation`` (simple dual port RAMB18 aspect ratios, Xilinx UG573
    Table 1-10): 16K x 1, 8K x 2, 4K x 4, 2K x 9, 1K x 18, 512 x 36.

    Args:
        depth: Words (``MW * MH / (PE * SIMD)``).
        width: Bits per word (``PE * SIMD * W``).

    Returns:
        RAMB18 counts (int64), elementwise.
    """
    depth = np.asarray(depth, dtype=float)
    width = np.asarray(width, dtype=float)
    blocks = np.select(
        [width == 1, width == 2, width <= 4, width <= 9, (width <= 18) | (depth > 512)],
        [
            np.ceil(depth / 16384),
            np.ceil(depth / 8192),
            np.ceil(depth / 4096) * np.ceil(width / 4),
            np.ceil(depth / 2048) * np.ceil(width / 9),
            np.ceil(depth / 1024) * np.ceil(width / 18),
        ],
        np.ceil(depth / 512) * np.ceil(width / 36),
    )
    return blocks.astype(np.int64)


def _divisors(n: int) -> np.ndarray:
    small = [d for d in range(1, math.isqrt(n) + 1) if n % d == 0]
    return np.array(sorted(set(small + [n // d for d in small])), dtype=np.int64)


def _foldings(spec: FpgaSpec, layer: pd.Series, w: int, a: int) -> dict:
    """Every folding of one layer at W, A bits: resources and cycles, PE = SIMD = 1 first.

    Returns:
        Arrays ``pe``, ``simd``, ``luts``, ``dsps``, ``brams`` and ``steps`` (cycles per input
        vector, ``(MH / PE) * (MW / SIMD)``; 1 for a lookup), one element per folding.
    """
    if layer["kind"] == "embedding":
        one = np.ones(1, dtype=np.int64)
        return {
            "pe": one,
            "simd": one,
            "luts": one * _LUT_C0,
            "dsps": one * 0,
            "brams": finn_brams(np.array([layer["weight_params"]]), np.array([w])),
            "steps": one,
        }
    mh = layer["weight_shape"][0]
    mw = layer["weight_params"] // mh
    pe, simd = (grid.ravel() for grid in np.meshgrid(_divisors(mh), _divisors(mw), indexing="ij"))
    bits = w + a
    lut_mult = bits <= spec.lut_mult_max_bits
    mult = simd * (2 * math.ceil(bits / 6) - 1) * bits if lut_mult else 0
    per_pe = mult + bits * (2 * simd - 1) + bits + math.ceil(math.log2(mw))
    return {
        "pe": pe,
        "simd": simd,
        "luts": _LUT_C0 - (-_LUT_C1_TENTHS * pe * per_pe // 10),  # c0 + ceil(c1 * ...), exact in integers
        "dsps": np.zeros_like(pe) if lut_mult else pe * simd * math.ceil(bits / _DSP_INPUT_BITS),
        "brams": finn_brams(mw * mh / (pe * simd), pe * simd * w),
        "steps": (mh // pe) * (mw // simd),
    }


def _cycles(layer: pd.Series, steps: int, batch_size: int) -> int:
    """Cycles per batch: steps per input vector times vectors (``macs / weight_params`` per
    sample), exact in integers; a lookup streams ``out_elems`` elements per sample."""
    if layer["kind"] == "embedding":
        return int(layer["out_elems"]) * batch_size
    return -(-steps * int(layer["macs"]) * batch_size // int(layer["weight_params"]))


def _operand_bits(pairs: pd.DataFrame, device: Device) -> tuple[np.ndarray, np.ndarray]:
    out = []
    for operand in ("weight", "act"):
        classes = pairs[f"{operand}_class"]
        bad = pairs.loc[~classes.str.startswith("int"), ["candidate", f"{operand}_format"]]
        if len(bad):
            cand, fmt = bad.iloc[0]
            raise InvalidTableError(
                f"candidate {cand!r}: {operand} format {fmt!r} is not an integer format and the fpga model "
                f"(FINN-R) runs integer formats only; drop {cand!r} from {device.path.name}'s candidates."
            )
        out.append(classes.map(lambda c: arith_class(c).bits).to_numpy(dtype=np.int64))
    return out[0], out[1]


def _raise_does_not_fit(layer: str, device: Device, rows: list[tuple[str, dict]]) -> None:
    limits = device.limits()

    def worst(resources: dict) -> tuple[float, str]:
        return max((resources[r] / limits[r], r) for r in _RESOURCES)

    cand, resources = min(rows, key=lambda row: worst(row[1]))
    _, resource = worst(resources)
    raise LayerDoesNotFitError(
        f"layer {layer!r} does not fit {device.name} at any candidate: even at PE = SIMD = 1 with {cand} it needs "
        f"{resources[resource]} {resource}, the part has {limits[resource]}; give the layer fewer weights, "
        "keep it off the FPGA, or choose a larger part."
    )


@register_cost_model("fpga", spec=FpgaSpec)
def fpga_costs(pairs: pd.DataFrame, device: Device, batch_size: int) -> pd.DataFrame:
    """FINN-R cycles, latency, energy and resources per (layer, candidate); see the module docstring.

    Args:
        pairs: One row per (layer, candidate), see ``_registry``.
        device: A device whose spec is a :class:`FpgaSpec`.
        batch_size: Samples streamed through the pipeline.

    Returns:
        Columns ``latency_s`` (s), ``energy_j`` (J), ``luts``, ``dsps``, ``brams`` (RAMB18),
        ``cycles`` (clock cycles per batch), ``pe`` and ``simd`` (the chosen folding), all
        int64 but the first two.

    Raises:
        InvalidTableError: If a candidate has a non-integer format.
        LayerDoesNotFitError: If a layer exceeds the part at PE = SIMD = 1 at every candidate.
    """
    spec: FpgaSpec = device.spec
    w_bits, a_bits = _operand_bits(pairs, device)
    layers = pairs.drop_duplicates("layer")
    totals = {"macs": max(int(layers["macs"].sum()), 1), "weight_params": int(layers["weight_params"].sum())}
    limits = device.limits()
    out = {name: np.zeros(len(pairs), dtype=np.int64) for name in ("cycles", "pe", "simd", *_RESOURCES)}

    for rows in np.arange(len(pairs)).reshape(len(layers), -1):
        layer = pairs.loc[rows[0]]
        share = {
            "luts": spec.usable_fraction * spec.luts * layer["macs"] / totals["macs"],
            "dsps": spec.usable_fraction * spec.dsps * layer["macs"] / totals["macs"],
            "brams": spec.usable_fraction * spec.brams * layer["weight_params"] / totals["weight_params"],
        }
        minimal = []
        for row in rows:
            folding = _foldings(spec, layer, int(w_bits[row]), int(a_bits[row]))
            fits = np.logical_and.reduce([folding[r] <= share[r] for r in _RESOURCES])
            keys = (folding["brams"], folding["dsps"], folding["luts"], folding["steps"], ~fits)
            best = np.lexsort(keys)[0] if fits.any() else 0  # index 0 is PE = SIMD = 1
            for name in (*_RESOURCES, "pe", "simd"):
                out[name][row] = folding[name][best]
            out["cycles"][row] = _cycles(layer, int(folding["steps"][best]), batch_size)
            minimal.append((pairs.at[row, "candidate"], {r: int(folding[r][0]) for r in _RESOURCES}))
        if all(any(res[r] > limits[r] for r in _RESOURCES) for _, res in minimal):
            _raise_does_not_fit(layer["layer"], device, minimal)

    exec_bits = np.maximum(w_bits, a_bits)
    mac_pj = np.array([device.energy.mac_pj(f"int{b}") for b in exec_bits])
    weight_reads, stream = operand_traffic_bytes(pairs, w_bits, a_bits)
    bram_bytes = (weight_reads + stream) * batch_size
    energy_j = (pairs["macs"].to_numpy() * batch_size * mac_pj + bram_bytes * device.energy.bram_pj_per_byte) * PJ
    return pd.DataFrame(
        {
            "latency_s": out["cycles"] / spec.clock_hz,
            "energy_j": energy_j,
            **{name: out[name] for name in (*_RESOURCES, "cycles", "pe", "simd")},
        }
    )
