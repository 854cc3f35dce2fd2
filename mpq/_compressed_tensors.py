"""A point as a compressed-tensors quantization config: the ``quantization_config`` of a model's
config.json, which llm-compressor quantizes a model to and vLLM and transformers load.

The layout is compressed-tensors' own (``QuantizationConfig.model_dump()`` of version 0.20): one
config group per distinct scheme, each targeting its layers by exact module name (compressed-tensors
and vLLM match a target without ``re:`` by equality with the module's name), the layers left in 16
bits under ``ignore``. No import of compressed-tensors here: it is an optional extra, and
tests/mpq_tests/test_export_compressed_tensors.py checks every config against the package itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from mpq._formats import Candidate, NumberFormat
from mpq._quantizer import QuantizerSettings
from mpq.exceptions import InvalidParameterError
from mpqvocab import FormatSpec, format_spec, list_format_specs

#: Layer kinds compressed-tensors quantizes: its apply step wraps Linear and Embedding modules only.
KINDS = ("linear", "embedding")
#: Its floating-point grids by width: 8-bit floats are E4M3 (per tensor or in MX blocks); 6- and
#: 4-bit floats (E2M3, E2M1) exist only in MX and NVFP4 blocks, the only layouts it stores them in.
_FLOAT_GRIDS = {8: (4, 3), 6: (2, 3), 4: (2, 1)}
#: Torch dtype of a block's shared scale, by the catalogue's scale grid (MX's E8M0 exponents are
#: stored as bytes).
_SCALE_DTYPES = {"e8m0": "torch.uint8", "fp8_e4m3": "torch.float8_e4m3fn"}


def _expressible(spec: FormatSpec) -> bool:
    if spec.family in ("int", "reference"):
        return True
    grid = (spec.element.exp_bits, spec.element.man_bits)
    return _FLOAT_GRIDS.get(spec.element_bits) == grid and (spec.family == "block" or spec.element_bits == 8)


def _args(fmt: NumberFormat, activation: bool, quantizer: QuantizerSettings) -> dict[str, Any] | None:
    """compressed-tensors' QuantizationArgs of a format, as the package writes them and mpq's
    quantizer quantizes; None for the unquantized (16- and 32-bit) formats."""
    spec = format_spec(fmt.name)
    if spec.family == "reference":
        return None
    if spec.scale == "fp8_e4m3":  # NVFP4's block scales are scaled by one per-tensor value
        strategy = "tensor_group"
    else:
        strategy = "group" if fmt.granularity == "block" else fmt.granularity
    args: dict[str, Any] = {
        "num_bits": fmt.element_bits,
        "type": "int" if fmt.family == "int" else "float",
        # Weights are symmetric (full grid: compressed-tensors' own, scale = max / 7.5 for int4); INT
        # inputs take a zero point unless the quantizer's grid is symmetric (legacy runs, GPUs).
        "symmetric": not (activation and fmt.family == "int" and quantizer.act_grid != "symmetric"),
        "group_size": fmt.group_size,
        "strategy": strategy,
        "dynamic": False,
    }
    if spec.scale in _SCALE_DTYPES:
        args["scale_dtype"] = _SCALE_DTYPES[spec.scale]
    if not activation and quantizer.ranges == "mse" and fmt.granularity in ("tensor", "channel"):
        args["observer"] = "mse"  # the clip minimising the weight's squared error, as mpq chooses it
    if activation:
        if not fmt.uses_range:  # group and MX scales come from each input, as mpq computes them
            args["dynamic"] = True
        else:  # static ranges calibrated over the batches: min/max, or the error-minimising clip
            args["observer"] = "mse" if quantizer.ranges == "mse" else "static_minmax"
            if spec.scale == "fp8_e4m3":
                args["dynamic"] = "local"  # NVFP4: static tensor scale, block scales from each input
    return args


def _storage(weights: dict[str, Any] | None, acts: dict[str, Any] | None) -> str:
    """The compression format compressed-tensors stores such a scheme in (its own inference, in
    its priority order)."""
    if weights is None:
        return "dense"
    if weights["type"] == "float" and weights["group_size"] == 32:
        return {4: "mxfp4-pack-quantized", 6: "mxfp6-pack-quantized", 8: "mxfp8-quantized"}[weights["num_bits"]]
    if weights["type"] == "float" and weights["group_size"] == 16:
        return "nvfp4-pack-quantized"
    if acts is not None:
        return f"{weights['type']}-quantized"
    return "pack-quantized" if weights["type"] == "int" and weights["num_bits"] <= 8 else "naive-quantized"


def check_fused_sets(
    where: str, schemes: dict[str, Any], candidates: dict[str, Candidate], fused: Sequence[Sequence[str]]
) -> None:
    """Refuse a point that splits a fused set (:func:`mpq._layers.fused_sets`: q/k/v, gate/up of
    one block) between schemes: vLLM runs the set as one layer (QKVParallelLinear,
    MergedColumnParallelLinear) with one scheme. ``schemes``: layer -> its scheme (None: left in
    16 bits)."""
    for group in fused:
        present = [m for m in group if m in candidates]
        if len({repr(schemes.get(m)) for m in present}) > 1:
            parent = group[0].rpartition(".")[0]
            leaves = [m.removeprefix(f"{parent}.") if parent else m for m in group]
            formats = ", ".join(f"{leaf} {candidates[m].name}" for leaf, m in zip(leaves, group) if m in candidates)
            raise InvalidParameterError(
                f"{where}: vLLM runs {parent + '.' if parent else ''}{{{','.join(leaves)}}} as one fused layer "
                f"with one scheme, and this point gives them {formats}; export a point whose fused sets share "
                "a format (mpq search ties them unless --no-fuse), or export it as json instead."
            )


def _some(names: list[str]) -> str:
    return ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")


def quantization_config(
    where: str,
    candidates: dict[str, Candidate],
    kinds: dict[str, str | None],
    quantizer: QuantizerSettings,
    fused: Sequence[Sequence[str]] = (),
) -> dict[str, Any]:
    """The compressed-tensors config of one assignment.

    Args:
        where: ``run R point K``, the start of an error message.
        candidates: Layer (module name) -> candidate, in the model's order.
        kinds: Layer -> layer-table kind (linear, conv2d, embedding...).
        quantizer: The run's quantizer settings (zero points, range observers).
        fused: The model's fused sets (:attr:`mpq.Run.fused`), named as ``candidates`` names layers.

    Raises:
        InvalidParameterError: a quantized layer is not Linear or Embedding, a format has no
            compressed-tensors equivalent, or one of ``fused`` (q/k/v or gate/up projections of
            one block) mixes schemes, which vLLM cannot load.
    """
    quantized = {
        layer: c
        for layer, c in candidates.items()
        if format_spec(c.weight_format.name).family != "reference"
        or (kinds.get(layer) != "embedding" and format_spec(c.act_format.name).family != "reference")
    }
    other_kinds = [f"{layer} ({kinds.get(layer)})" for layer in quantized if kinds.get(layer) not in KINDS]
    if other_kinds:
        raise InvalidParameterError(
            f"{where}: compressed-tensors quantizes Linear and Embedding layers only, and this point quantizes "
            f"{_some(other_kinds)}; export it as json instead."
        )
    missing = sorted(
        {f.name for c in quantized.values() for f in (c.weight_format, c.act_format)}
        - {s.name for s in list_format_specs() if _expressible(s)}
    )
    if missing:
        floats = [s.name for s in list_format_specs() if s.family in ("float", "block") and _expressible(s)]
        raise InvalidParameterError(
            f"{where}: compressed-tensors has no {', '.join(missing)} (its floating-point formats are "
            f"{', '.join(floats)}); export it as json instead."
        )
    schemes = {}
    for layer, c in quantized.items():
        weights = _args(c.weight_format, False, quantizer)
        acts = None if kinds.get(layer) == "embedding" else _args(c.act_format, True, quantizer)  # token ids
        schemes[layer] = {"weights": weights, "input_activations": acts, "output_activations": None}
    check_fused_sets(where, schemes, candidates, fused)
    groups: dict[str, dict[str, Any]] = {}
    for layer, scheme in schemes.items():
        weights, acts = scheme["weights"], scheme["input_activations"]
        group = next((g for g in groups.values() if {k: g[k] for k in scheme} == scheme), None)
        if group is None:
            group = groups[f"group_{len(groups)}"] = {"targets": [], **scheme, "format": _storage(weights, acts)}
        group["targets"].append(layer)
    storages = {g["format"] for g in groups.values()}
    return {
        "config_groups": groups,
        "quant_method": "compressed-tensors",
        "kv_cache_scheme": None,
        "format": storages.pop() if len(storages) == 1 else "mixed-precision" if storages else "dense",
        "quantization_status": "initialized",  # a scheme to quantize to: no scales computed yet
        "global_compression_ratio": None,
        "ignore": [layer for layer in candidates if layer not in quantized],
    }
