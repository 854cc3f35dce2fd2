"""cost_table: the one entry point from (layers, device, candidates) to the cost table."""

from __future__ import annotations

import logging
import os

import numpy as np
import pandas as pd

from hwmodels._device import Device, load_device
from hwmodels._errors import InvalidTableError
from hwmodels._inputs import check_batch_size, check_candidates, check_layers, make_pairs
from hwmodels._measured import check_measured
from hwmodels._registry import get_cost_model
from mpqvocab import did_you_mean

__all__ = ["cost_table"]

logger = logging.getLogger("hwmodels.costs")

#: Columns that describe a layer's FPGA folding rather than a cost.
FOLDING_COLUMNS = ("pe", "simd")


def _apply_measured(costs: pd.DataFrame, measured: pd.DataFrame, layer_names: list[str]) -> None:
    unknown = measured.loc[~measured["layer"].isin(layer_names), "layer"]
    if len(unknown):
        name = unknown.iloc[0]
        raise InvalidTableError(
            f"measured latencies: layer {name!r} is not in the layers table{did_you_mean(name, layer_names)}; "
            "measure the same model."
        )
    lookup = measured.set_index(["layer", "candidate"])["latency_s"]
    keys = pd.MultiIndex.from_frame(costs[["layer", "candidate"]])
    values = lookup.reindex(keys).to_numpy()
    hit = ~np.isnan(values)
    costs["latency_measured"] = hit
    costs.loc[hit, "latency_s"] = values[hit]
    logger.debug("measured latency replaced %d of %d rows", int(hit.sum()), len(costs))


def cost_table(
    layers: pd.DataFrame,
    device: Device | str | os.PathLike,
    candidates: pd.DataFrame,
    *,
    batch_size: int = 1,
    measured: pd.DataFrame | str | os.PathLike | None = None,
) -> pd.DataFrame:
    """Cost of every (layer, candidate) pair the device runs.

    Args:
        layers: One row per layer, in model order, with columns ``layer`` (str, module path),
            ``kind`` (``linear``, ``conv1d``, ``conv2d`` or ``embedding``), ``weight_params``
            (int), ``bias_params`` (int, 0 if none), ``macs`` (int, multiply-accumulates per
            sample; 0 for an embedding), ``in_elems`` and ``out_elems`` (int, activation
            elements per sample), ``weight_shape`` (tuple: Linear (out, in), Conv
            (out, in/groups, k...), Embedding (num, dim)) and ``groups`` (int).
        device: A :class:`Device`, a device name (``"h100-sxm"``) or a path to a ``.toml`` file.
        candidates: One row per candidate with columns ``candidate`` (str), ``weight_format``
            and ``act_format`` (format names: ``int2``, ``int3``, ``int4``, ``int6``, ``int8``,
            ``int16``, each optionally with ``_pc`` or ``_g<N>``; ``fp8_e4m3``, ``fp8_e5m2``,
            ``fp6_e3m2``, ``fp6_e2m3``, ``fp4_e2m1``, ``mxfp8``, ``mxfp6``, ``mxfp4``, ``nvfp4``,
            ``fp16``, ``bf16``, ``fp32``),
            ``weight_bits`` and ``act_bits`` (float, bits per value including shared scales).
            Only candidates the device also lists are costed.
        batch_size: Samples per forward pass.
        measured: Optional measured latencies (DataFrame or CSV path with ``layer``,
            ``candidate``, ``latency_s``): they replace the model's ``latency_s`` for the pairs
            they cover. Measure at the same ``batch_size``.

    Returns:
        One row per (layer, candidate) the device runs, in layer order then candidate order,
        with columns:

        * ``layer``, ``candidate`` (str);
        * ``latency_s`` (float, seconds per batch; measured where given);
        * ``energy_j`` (float, joules per batch);
        * ``weight_bytes`` (float, bytes: ``weight_params * weight_bits / 8``, the bits as the
          device stores them: a GPU or CPU file's ``[stored_weight_bits]`` widens narrow weights
          that run in a wider class, e.g. ``cpu-x86``'s int4 weights with int8 inputs);
        * ``bops`` (float, bit operations per batch: ``macs * weight_bits * act_bits *
          batch_size``, HAWQ-V3's device-free proxy at batch 1);
        * ``latency_measured`` (bool, True where ``latency_s`` comes from ``measured``);
        * the target's own columns: GPU/CPU ``bound`` (``"memory"``/``"compute"``),
          ``dram_bytes`` (bytes per batch), ``executed_class``; FPGA ``luts``, ``dsps``,
          ``brams`` (RAMB18), ``cycles`` (per batch), ``pe``, ``simd``; MCU ``flash_bytes``,
          ``sram_bytes`` (bytes), ``cycles`` (per batch), ``kernel``.

        ``attrs`` holds ``cost_columns`` (the numeric columns that are costs: all but the FPGA
        folding ``pe``, ``simd``), ``device`` (name), ``kind``, ``batch_size``, ``max_columns`` (columns
        the solver bounds by their maximum over layers instead of their sum:
        ``["sram_bytes"]`` on an MCU, else empty) and ``limits`` (device capacities per cost
        column: FPGA ``luts``/``dsps``/``brams``, MCU ``flash_bytes``/``sram_bytes``).

    Raises:
        InvalidTableError: A table breaks its schema (missing column, negative count, unknown
            format with did-you-mean, duplicate name), ``batch_size`` is not a positive int, no
            candidate of the table runs on the device, a candidate has no kernel on the
            device, or a measured row is bad.
        UnknownDeviceError: ``device`` names no known device.
        DeviceSpecError: The device file is broken.
        LayerDoesNotFitError: A layer exceeds a device resource at every candidate (FPGA, MCU).

    Example:
        >>> import pandas as pd
        >>> layers = pd.DataFrame({"layer": ["fc"], "kind": ["linear"], "weight_params": [4096 * 4096],
        ...     "bias_params": [4096], "macs": [4096 * 4096], "in_elems": [4096], "out_elems": [4096],
        ...     "weight_shape": [(4096, 4096)], "groups": [1]})
        >>> candidates = pd.DataFrame({"candidate": ["w16a16"], "weight_format": ["fp16"],
        ...     "act_format": ["fp16"], "weight_bits": [16.0], "act_bits": [16.0]})
        >>> cost_table(layers, "h100-sxm", candidates)["bound"].tolist()
        ['memory']
    """
    dev = device if isinstance(device, Device) else load_device(device)
    layer_table = check_layers(layers)
    cand_table = check_candidates(candidates)
    batch = check_batch_size(batch_size)
    measured_table = None if measured is None else check_measured(measured)

    runs = cand_table["candidate"].isin(dev.candidates)
    if not runs.any():
        raise InvalidTableError(
            f"candidates table: none of {', '.join(cand_table['candidate'])} runs on {dev.name}; "
            f"include at least one of {', '.join(dev.candidates)}."
        )
    if not runs.all():
        logger.debug("%s does not run %s", dev.name, ", ".join(cand_table.loc[~runs, "candidate"]))
    pairs = make_pairs(layer_table, cand_table[runs])
    model = get_cost_model(dev.kind, source=str(dev.path))
    target = model.compute(pairs, dev, batch)

    costs = pd.DataFrame(
        {
            "layer": pairs["layer"],
            "candidate": pairs["candidate"],
            "latency_s": target["latency_s"].astype(float),
            "energy_j": target["energy_j"].astype(float),
            # A roofline device may store narrow weights widened ([stored_weight_bits]): its model says.
            "weight_bytes": target["weight_bytes"]
            if "weight_bytes" in target
            else pairs["weight_params"] * pairs["weight_bits"] / 8,
            "bops": pairs["macs"] * pairs["weight_bits"] * pairs["act_bits"] * batch,
            "latency_measured": np.zeros(len(pairs), dtype=bool),
        }
    )
    if measured_table is not None:
        _apply_measured(costs, measured_table, list(layer_table["layer"]))
    costs = pd.concat([costs, target.drop(columns=["latency_s", "energy_j", "weight_bytes"], errors="ignore")], axis=1)
    costs.attrs.update(
        # What a solver may sum or bound: the numeric columns, less the FPGA folding (pe, simd),
        # which describes how a layer is built, not what it costs.
        cost_columns=[
            c
            for c in costs.columns
            if c not in ("layer", "candidate", "latency_measured", *FOLDING_COLUMNS)
            and pd.api.types.is_numeric_dtype(costs[c])
        ],
        device=dev.name,
        kind=dev.kind,
        batch_size=batch,
        max_columns=list(model.max_columns),
        limits=dev.limits(),
    )
    return costs
