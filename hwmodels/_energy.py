"""Energy per operation and per byte moved, with defaults from Horowitz (ISSCC 2014).

Every target computes ``energy_j = MACs * (mult + add energy of the executed class)
+ sum over memories of bytes moved * energy per byte``. Which memory a model charges
is its own choice (DRAM for GPU/CPU, BRAM for FPGA, flash and SRAM for MCU).

Defaults, all from M. Horowitz, "Computing's energy problem (and what we can do about it)",
ISSCC 2014, 45 nm, as gathered in shared/reference/hardware.md:

* anchors: int8 mult 0.2 pJ, add 0.03 pJ; fp16 mult 1.1 pJ, add 0.4 pJ; fp32 mult 3.7 pJ,
  add 0.9 pJ;
* other classes scale from the anchor of their family nearest in width: a multiplier's
  energy with the square of the width (hardware.md: "grows roughly with the square of operand
  width"), an adder's linearly (Horowitz: int8 add 0.03 pJ, int32 add 0.1 pJ);
* DRAM: 64-bit read 1.3-2.6 nJ, midpoint 1.95 nJ / 8 bytes = 243.75 pJ per byte;
* SRAM: 64-bit read 100 pJ from a 1 MB array = 12.5 pJ per byte (MCU SRAM);
* BRAM: 64-bit read 10 pJ from an 8 kB array = 1.25 pJ per byte (an FPGA RAMB18 holds 2.25 kB);
* flash: no Horowitz figure; assumed equal to the 1 MB SRAM read (12.5 pJ per byte).

A device file overrides any of these in its ``[energy]`` table::

    [energy]
    dram_pj_per_byte = 160.0      # <source>
    [energy.mult_pj]
    int8 = 0.25                   # <source>; derived classes (int4, ...) scale from it

"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

import numpy as np
import pandas as pd

from hwmodels._fields import FieldReader
from mpqvocab import arith_class, class_names

__all__ = ["EnergyTable", "PJ", "operand_traffic_bytes", "read_energy"]

PJ = 1e-12  # joules per picojoule

# Horowitz ISSCC 2014, 45 nm (shared/reference/hardware.md).
_DEFAULT_MULT_PJ = {"int8": 0.2, "fp16": 1.1, "fp32": 3.7}
_DEFAULT_ADD_PJ = {"int8": 0.03, "fp16": 0.4, "fp32": 0.9}
_ANCHORS = {"int": ("int8",), "fp": ("fp16", "fp32")}
_DEFAULT_PER_BYTE_PJ = {
    "dram_pj_per_byte": 1950.0 / 8,  # Horowitz: DRAM 64-bit read 1.3-2.6 nJ, midpoint
    "sram_pj_per_byte": 100.0 / 8,  # Horowitz: 1 MB SRAM 64-bit read ~100 pJ
    "bram_pj_per_byte": 10.0 / 8,  # Horowitz: 8 kB SRAM 64-bit read ~10 pJ
    "flash_pj_per_byte": 100.0 / 8,  # assumption: as the 1 MB SRAM read (no Horowitz figure)
}


@dataclass(frozen=True)
class EnergyTable:
    """Per-operation and per-byte energies of one device, in picojoules.

    Attributes:
        mult_pj: Multiply energy per class given explicitly (defaults plus overrides).
        add_pj: Add energy per class given explicitly.
        dram_pj_per_byte: DRAM read energy per byte.
        sram_pj_per_byte: On-chip SRAM energy per byte.
        bram_pj_per_byte: FPGA block-RAM energy per byte.
        flash_pj_per_byte: Embedded flash read energy per byte.
    """

    mult_pj: Mapping[str, float]
    add_pj: Mapping[str, float]
    dram_pj_per_byte: float
    sram_pj_per_byte: float
    bram_pj_per_byte: float
    flash_pj_per_byte: float

    def mac_pj(self, cls: str) -> float:
        """Energy of one multiply-accumulate executed in class ``cls``, in pJ.

        Args:
            cls: An arithmetic class name (``int4``, ``fp8``, ``tf32``, ...).

        Returns:
            mult + add energy: the class's own values when given, else scaled from the anchor
            of its family nearest in width (square law for the multiply, linear for the add).
        """
        return _scaled(self.mult_pj, cls, power=2) + _scaled(self.add_pj, cls, power=1)


def _scaled(table: Mapping[str, float], cls: str, power: int) -> float:
    if cls in table:
        return table[cls]
    target = arith_class(cls)
    anchors = [a for a in _ANCHORS[target.family] if a in table]
    anchor = min(anchors, key=lambda a: (abs(arith_class(a).bits - target.bits), arith_class(a).bits))
    return table[anchor] * (target.bits / arith_class(anchor).bits) ** power


def read_energy(reader: FieldReader | None) -> EnergyTable:
    """Build a device's energy table: Horowitz defaults overridden by its ``[energy]`` table.

    Args:
        reader: The ``[energy]`` table of the device file, or None when it has none.

    Returns:
        The merged :class:`EnergyTable`.

    Raises:
        DeviceSpecError: On an unknown key or a non-positive value.
    """
    mult, add, per_byte = dict(_DEFAULT_MULT_PJ), dict(_DEFAULT_ADD_PJ), dict(_DEFAULT_PER_BYTE_PJ)
    if reader is not None:
        for key in per_byte:
            value = reader.positive_float(key, required=False)
            if value is not None:
                per_byte[key] = value
        for key, table in (("mult_pj", mult), ("add_pj", add)):
            sub = reader.table(key, required=False)
            if sub is not None:
                table.update(sub.rates(class_names(), "a positive number of picojoules"))
        reader.finish()
    return EnergyTable(mult_pj=MappingProxyType(mult), add_pj=MappingProxyType(add), **per_byte)


def operand_traffic_bytes(
    pairs: pd.DataFrame, weight_bits: np.ndarray, act_bits: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Bytes a streaming target (FPGA, MCU) moves per sample for each (layer, candidate).

    Every MAC fetches its weight from on-chip memory (no reuse in registers is modelled), a
    lookup fetches the rows it gathers, and the activations are read and written once.

    Args:
        pairs: One row per (layer, candidate).
        weight_bits: Bits per stored weight, per row.
        act_bits: Bits per activation, per row.

    Returns:
        ``(weight_read_bytes, activation_bytes)`` per sample: ``macs * weight_bits / 8``
        (``out_elems * weight_bits / 8`` for an embedding) and
        ``(in_elems + out_elems) * act_bits / 8``.
    """
    reads = np.where(pairs["kind"] == "embedding", pairs["out_elems"], pairs["macs"]) * weight_bits / 8
    activations = (pairs["in_elems"] + pairs["out_elems"]).to_numpy() * act_bits / 8
    return reads, activations
