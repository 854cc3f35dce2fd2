"""``mpq.export(run, point, "compressed-tensors")``, checked by compressed-tensors itself.

Every candidate mpq can name is exported as a one-layer point: those compressed-tensors can
express validate as its ``QuantizationConfig`` and dump back unchanged, each group stored in the
format the package infers, equal to the package's presets where both mean the same scheme, and
``apply_quantization_config`` gives every layer the formats mpq chose; the others are refused in
one line naming the formats the package lacks.
"""

from __future__ import annotations

import functools
import itertools

import pandas as pd
import pytest
import torch
from torch import nn

import mpq
from mpq._probes import ProbeSettings, settings_to_json
from mpq._quantizer import LEGACY_QUANTIZER

pytest.importorskip("compressed_tensors", reason="needs the [export] extra: pip install -e '.[export]'")
from compressed_tensors.compressors.format import infer_module_format  # noqa: E402
from compressed_tensors.quantization import (  # noqa: E402
    QuantizationConfig,
    QuantizationScheme,
    apply_quantization_config,
    preset_name_to_scheme,
)

# The package's advice on mixed group sizes (int4_g128 weights, int8_g64 inputs): mpq's points mix them.
pytestmark = pytest.mark.filterwarnings("ignore:Using GROUP strategy for both:UserWarning")

#: The formats compressed-tensors 0.20 has no storage for: its 8-bit float is E4M3, and it keeps
#: 6- and 4-bit floats only in MX and NVFP4 blocks.
LACKING = {"fp8_e5m2", "fp6_e3m2", "fp6_e2m3", "fp4_e2m1"}
#: mpq candidates that mean exactly one of compressed-tensors' preset schemes.
PRESETS = {
    "wint4_g128a16": "W4A16",
    "wint8_g128a16": "W8A16",
    "wint2_g128a16": "W2A16",
    "wfp8afp8": "FP8",
    "wnvfp4a16": "NVFP4A16",
    "wnvfp4anvfp4": "NVFP4",
    "wmxfp4a16": "MXFP4A16",
    "wmxfp4amxfp4": "MXFP4",
    "wmxfp6a16": "MXFP6A16",
    "wmxfp6amxfp8": "MXFP6A8",
    "wmxfp8a16": "MXFP8A16",
    "wmxfp8amxfp8": "MXFP8",
}


def stored_run(
    assignment: dict[str, str], kinds: dict[str, str] | None = None, quantizer: mpq.QuantizerSettings | None = None
) -> mpq.Run:
    """A run whose point 0 is ``assignment`` (layer -> candidate), every layer linear unless ``kinds``
    says, measured with ``quantizer`` (default ``QuantizerSettings()``)."""
    kinds = {layer: "linear" for layer in assignment} | (kinds or {})
    probe = ProbeSettings(quantizer=quantizer or mpq.QuantizerSettings())
    return mpq.Run(
        id=7,
        db="sqlite://",
        status="done",
        record={"settings": {"probe": settings_to_json(probe)}},
        frontier=pd.DataFrame({"point": [0]}),
        assignments=pd.DataFrame({"point": 0, "layer": list(assignment), "candidate": list(assignment.values())}),
        tables={"layers": pd.DataFrame({"layer": list(kinds), "kind": list(kinds.values())})},
    )


def every_candidate() -> list[str]:
    formats = [mpq.get_format(name) for name in mpq.list_formats()]
    weights = [f.name for f in formats if f.name not in ("bf16", "fp32")]
    acts = [f.name for f in formats if f.granularity != "channel" and f.name not in ("bf16", "fp32")]
    return [f"w{w}a{a}" for w, a in itertools.product(weights, acts)]


@functools.cache
def split_by_export() -> tuple[list[str], dict[str, str]]:
    """The candidates compressed-tensors expresses, and the refusal of each other one."""
    expressed, refused = [], {}
    for candidate in every_candidate():
        try:
            mpq.export(stored_run({"fc": candidate}), 0, "compressed-tensors")
            expressed.append(candidate)
        except mpq.exceptions.InvalidParameterError as exc:
            refused[candidate] = str(exc)
    return expressed, refused


def _expected(fmt: mpq.NumberFormat) -> tuple | None:
    """(num_bits, type, strategy, group_size) that a layer in ``fmt`` must get; None for 16 bits."""
    if fmt.family == "reference":
        return None
    strategy = {"block": "tensor_group" if fmt.name == "nvfp4" else "group"}.get(fmt.granularity, fmt.granularity)
    return fmt.element_bits, "int" if fmt.family == "int" else "float", strategy, fmt.group_size


def _got(args) -> tuple | None:
    return None if args is None else (args.num_bits, args.type, args.strategy, args.group_size)


def test_the_formats_compressed_tensors_lacks_are_refused_by_name():
    expressed, refused = split_by_export()
    for candidate in every_candidate():
        c = mpq.get_candidate(candidate)
        lacking = sorted({c.weight_format.name, c.act_format.name} & LACKING)
        assert (candidate in refused) == bool(lacking), candidate
        if lacking:
            assert refused[candidate] == (
                f"run 7 point 0: compressed-tensors has no {', '.join(lacking)} (its floating-point formats are "
                "fp8_e4m3, mxfp8, mxfp6, mxfp4, nvfp4); export it as json instead."
            )
    assert len(expressed) > 500  # INT at every width and granularity, fp8_e4m3, NVFP4, MX, 16 bits


def test_every_expressible_point_is_a_quantization_config_of_the_package():
    point = {f"blocks.{i}": candidate for i, candidate in enumerate(split_by_export()[0])}
    doc = mpq.export(stored_run(point), 0, "compressed-tensors")
    config = QuantizationConfig.model_validate(doc)
    dumped = config.model_dump(mode="json")
    assert {key: value for key, value in dumped.items() if key in doc} == doc  # the package's own layout
    assert all(value is None for key, value in dumped.items() if key not in doc)
    assert doc["quant_method"] == "compressed-tensors" and doc["format"] == "mixed-precision"
    for group in config.config_groups.values():
        unstated = QuantizationScheme(**group.model_dump(exclude={"format"}))
        assert infer_module_format(nn.Linear, unstated).value == group.format, group
    targeted = [layer for group in doc["config_groups"].values() for layer in group["targets"]]
    assert sorted(targeted + doc["ignore"]) == sorted(point)  # each layer once: in one group, or ignored
    unquantized = [layer for layer, c in point.items() if _expected(mpq.get_candidate(c).weight_format) is None]
    assert doc["ignore"] == [
        layer for layer in unquantized if _expected(mpq.get_candidate(point[layer]).act_format) is None
    ]


@pytest.mark.parametrize(("candidate", "preset"), PRESETS.items())
def test_schemes_equal_the_packages_presets(candidate, preset):
    # The presets are symmetric min-max schemes: mpq's first quantizer's (a run stored before the
    # calibrated quantizer exports as it was measured).
    run = stored_run({"fc": candidate}, quantizer=LEGACY_QUANTIZER)
    (group,) = mpq.export(run, 0, "compressed-tensors")["config_groups"].values()
    ours = QuantizationScheme.model_validate(group).model_dump(exclude={"targets", "format"})
    assert ours == preset_name_to_scheme(preset, ["fc"]).model_dump(exclude={"targets", "format"})


def test_applied_to_a_model_every_layer_gets_the_formats_mpq_chose():
    expressed = split_by_export()[0]
    point = {f"blocks.{i}": candidate for i, candidate in enumerate(expressed)} | {"embed": "w4a8"}
    config = QuantizationConfig.model_validate(
        mpq.export(stored_run(point, {"embed": "embedding"}), 0, "compressed-tensors")
    )
    model = nn.Module()
    model.blocks = nn.ModuleList(nn.Linear(64, 16) for _ in expressed)
    model.embed = nn.Embedding(10, 64)
    torch.manual_seed(0)
    apply_quantization_config(model, config, show_progress=False)
    modules = dict(model.named_modules())
    for layer, candidate in point.items():
        c = mpq.get_candidate(candidate)
        scheme = getattr(modules[layer], "quantization_scheme", None)
        weights, acts = _expected(c.weight_format), _expected(c.act_format)
        if layer == "embed":
            acts = None  # an embedding's input is token ids
        if weights is None and acts is None:
            assert scheme is None, layer
        else:
            assert (_got(scheme.weights), _got(scheme.input_activations)) == (weights, acts), candidate


@pytest.mark.parametrize(("act_grid", "symmetric"), [("asymmetric", False), ("unsigned", False), ("symmetric", True)])
def test_the_calibrated_quantizer_exports_zero_points_and_mse_observers(act_grid, symmetric):
    quantizer = mpq.QuantizerSettings(act_grid=act_grid)
    doc = mpq.export(stored_run({"fc": "w4a8", "head": "wfp8afp8"}, quantizer=quantizer), 0, "compressed-tensors")
    config = QuantizationConfig.model_validate(doc)  # the package reads the asymmetric scheme
    by_target = {tuple(g.targets): g for g in config.config_groups.values()}
    ints, floats = by_target[("fc",)], by_target[("head",)]
    assert (ints.input_activations.symmetric, ints.input_activations.observer) == (symmetric, "mse")
    assert (ints.weights.symmetric, ints.weights.observer) == (True, "mse")  # weights: no zero point
    assert floats.input_activations.symmetric  # minifloats have no zero point


def test_an_embeddings_activation_format_is_left_out():
    doc = mpq.export(stored_run({"embed": "w8a8", "fc": "w8a8"}, {"embed": "embedding"}), 0, "compressed-tensors")
    by_target = {tuple(g["targets"]): g for g in doc["config_groups"].values()}
    assert by_target[("embed",)]["input_activations"] is None and by_target[("fc",)]["input_activations"] is not None
    assert by_target[("embed",)]["format"] == "pack-quantized" and by_target[("fc",)]["format"] == "int-quantized"


def test_conv_layers_are_refused_unless_left_in_16_bits():
    run = stored_run({"conv1": "w8a8", "conv2": "w4a8", "fc": "w8a8"}, {"conv1": "conv2d", "conv2": "conv1d"})
    with pytest.raises(mpq.exceptions.InvalidParameterError) as info:
        mpq.export(run, 0, "compressed-tensors")
    assert str(info.value) == (
        "run 7 point 0: compressed-tensors quantizes Linear and Embedding layers only, and this point quantizes "
        "conv1 (conv2d), conv2 (conv1d); export it as json instead."
    )
    doc = mpq.export(stored_run({"conv1": "w16a16", "fc": "w8a8"}, {"conv1": "conv2d"}), 0, "compressed-tensors")
    assert doc["ignore"] == ["conv1"] and [g["targets"] for g in doc["config_groups"].values()] == [["fc"]]
    QuantizationConfig.model_validate(doc)


def test_a_point_all_in_16_bits_quantizes_nothing():
    doc = mpq.export(stored_run({"fc1": "w16a16", "fc2": "wbf16abf16"}), 0, "compressed-tensors")
    assert (doc["config_groups"], doc["ignore"], doc["format"]) == ({}, ["fc1", "fc2"], "dense")
    QuantizationConfig.model_validate(doc)
