"""The calibrated quantizer: ranges, grids, bias correction, and one quantizer for apply and omega."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn

import mpq
from mpq._omega import act_sq_errors, weight_sq_errors
from mpq._probes.settings import for_device
from mpq._quantizer import LEGACY_QUANTIZER, Calibration, QuantizerSettings
from mpq.exceptions import InvalidParameterError

DIGITS_LAYERS = ("conv1", "conv2", "conv3", "conv4", "fc1", "fc2")


@pytest.fixture(scope="module")
def digits() -> mpq.Task:
    return mpq.load_task("example:digits-cnn")


def _configuration(weight_bits, act_bits) -> dict[str, str]:
    return {layer: f"w{w}a{a}" for layer, w, a in zip(DIGITS_LAYERS, weight_bits, act_bits)}


@pytest.mark.parametrize(
    ("weight_bits", "act_bits"),
    [
        # Sony MCT 2.6.1's choice at 0.3 of the 8-bit weight size: 0.9779 under MCT, 0.8068 under
        # mpq's first quantizer (issue 24).
        ((8, 4, 2, 2, 2, 8), (8,) * 6),
        # AIMET AMP 2.42's choice on digits: 0.9759 under AIMET, 0.233 under mpq's first quantizer.
        ((4, 4, 4, 2, 4, 4), (4, 4, 4, 2, 2, 8)),
    ],
    ids=["mct", "aimet"],
)
def test_the_peers_configurations_keep_their_accuracy(digits, weight_bits, act_bits):
    assignment = _configuration(weight_bits, act_bits)
    calibrated = mpq.apply(digits.model, assignment, calibration=digits.calibration)
    legacy = mpq.apply(digits.model, assignment, calibration=digits.calibration, quantizer=LEGACY_QUANTIZER)
    assert digits.evaluate(calibrated) >= 0.97
    assert digits.evaluate(legacy) < 0.9  # what the first quantizer measured: the gap this closes


def test_an_input_never_negative_uses_the_unsigned_grid_and_others_a_zero_point():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3)).eval()
    calibration = [(torch.randn(32, 4) + 0.5, torch.zeros(32))]
    calibrated = mpq.calibrate(model, calibration, quantizer=QuantizerSettings(ranges="max"))
    int4 = mpq.get_format("int4")
    after_relu = calibrated.input_quantizer("2", int4)
    assert (after_relu.qmin, after_relu.qmax, after_relu.zero_point) == (0, 15, 0)
    assert after_relu.scale == pytest.approx(calibrated.inputs["2"].hi / 15)
    signed = calibrated.input_quantizer("0", int4)
    lo, hi = calibrated.inputs["0"].lo, calibrated.inputs["0"].hi
    assert lo < 0 < hi and (signed.qmin, signed.qmax) == (0, 15) and 0 < signed.zero_point < 15
    codes = torch.round(torch.linspace(lo, hi, 1000) / signed.scale) + signed.zero_point
    assert codes.min() >= -0.5 and codes.max() <= 15.5  # the whole range fits all 16 codes
    assert len(torch.unique(signed.quantize(torch.linspace(lo, hi, 1000)))) == 16
    for grid, expected in (("unsigned", (-8, 7)), ("symmetric", (-8, 7))):
        strict = mpq.calibrate(model, calibration, quantizer=QuantizerSettings(ranges="max", act_grid=grid))
        q = strict.input_quantizer("0", int4)
        assert (q.qmin, q.qmax, q.zero_point) == (*expected, 0)
    symmetric = mpq.calibrate(model, calibration, quantizer=QuantizerSettings(act_grid="symmetric"))
    assert symmetric.input_quantizer("2", int4).qmin == -8  # no unsigned grid on a symmetric target


@pytest.mark.parametrize("fmt", ["int2_pc", "int4_pc", "int8_pc", "int4", "fp8_e4m3"])
def test_mse_and_percentile_clips_never_err_more_than_max_on_the_weights(digits, fmt):
    fmt = mpq.get_format(fmt)
    for layer in DIGITS_LAYERS:
        weight = dict(digits.model.named_modules())[layer].weight.detach()
        errors = {}
        for method in ("max", "mse", "percentile"):
            calibrated = Calibration(QuantizerSettings(ranges=method), {})
            errors[method] = float((calibrated.quantize_weight(layer, fmt, weight) - weight).pow(2).sum())
        assert errors["mse"] <= errors["max"] * (1 + 1e-6), layer
    assert errors["mse"] < errors["max"] or fmt.element_bits == 8


@pytest.mark.parametrize("fmt", ["int3_pc", "int8_pc"])
def test_the_mse_search_in_blocks_of_rows_gives_the_clips_of_the_whole_tensor(monkeypatch, fmt):
    """The search rounds a block of rows at a time (to stay in cache): the clips must be the
    whole tensor's, bit for bit, blocks of one row and uneven last blocks included."""
    from mpq import _quantizer

    torch.manual_seed(0)
    weight = torch.randn(50, 24) * torch.rand(50, 1) * 3
    settings, fmt = QuantizerSettings(), mpq.get_format(fmt)
    monkeypatch.setattr(_quantizer, "MSE_BLOCK_ELEMS", 2**40)
    whole = _quantizer.weight_clip(fmt, weight, settings)
    for block_elems in (1, 24 * 7, 24 * 49):
        monkeypatch.setattr(_quantizer, "MSE_BLOCK_ELEMS", block_elems)
        assert torch.equal(_quantizer.weight_clip(fmt, weight, settings), whole), block_elems


@pytest.mark.parametrize("fmt", ["int2_pc", "int4_pc", "int8_pc", "int4", "int8", "fp8_e4m3", "fp4_e2m1", "fp6_e3m2"])
@pytest.mark.parametrize("weight_grid", ["full", "narrow"])
def test_the_mse_search_picks_the_clips_of_rounding_every_weight_at_every_ratio(fmt, weight_grid):
    """The sorted-row errors and the saturation floor's early stop are shortcuts: the clips must
    be those of quantizing the whole weight at each of the 100 ratios (heavy tails, so that the
    scan does stop early, and both INT grids, whose lowest code float32 may leave out of reach)."""
    from mpq import _quantizer

    torch.manual_seed(0)
    weight = torch.distributions.StudentT(3.0).sample((40, 600)) * torch.rand(40, 1)
    settings = QuantizerSettings(weight_grid=weight_grid)
    fmt = _quantizer.weight_format(mpq.get_format(fmt), settings)
    rows = weight if fmt.granularity == "channel" else weight.reshape(1, -1)
    amax = rows.abs().amax(1)
    errors = torch.stack([(fmt.quantize(rows, amax * r) - rows).pow(2).sum(1) for r in _quantizer.MSE_RATIOS.tolist()])
    expected = amax * _quantizer.MSE_RATIOS.float()[errors.argmin(0)]  # argmin: the first, widest
    clip = _quantizer.weight_clip(fmt, weight, settings)
    assert torch.equal(clip.reshape(-1), expected)


def test_int2_weights_use_all_four_codes():
    weight = torch.linspace(-1, 1, 64).repeat(2, 1)
    calibrated = Calibration(QuantizerSettings(ranges="max"), {})
    quantized = calibrated.quantize_weight("w", mpq.get_format("int2_pc"), weight)
    assert all(len(torch.unique(row)) == 4 for row in quantized)
    legacy = Calibration(LEGACY_QUANTIZER, {}).quantize_weight("w", mpq.get_format("int2_pc"), weight)
    assert all(len(torch.unique(row)) == 3 for row in legacy)


@pytest.mark.parametrize("layer", ["conv2", "fc1"])
def test_bias_correction_removes_the_mean_output_shift_of_weight_quantization(digits, layer):
    module = dict(digits.model.named_modules())[layer]
    inputs = []
    handle = module.register_forward_pre_hook(lambda m, args: inputs.append(args[0].detach()))
    with torch.no_grad():
        for x, _ in digits.calibration:
            digits.model(x)
    handle.remove()
    x = torch.cat(inputs)

    def mean_shift(settings: QuantizerSettings) -> torch.Tensor:
        quantized = mpq.apply(digits.model, {layer: "w2a16"}, calibration=digits.calibration, quantizer=settings)
        copy = dict(quantized.named_modules())[layer]
        with torch.no_grad():  # the layer alone, on its float inputs: only the weight's error
            shift = (
                copy._conv_forward(x, copy.weight, copy.bias) - module(x) if layer == "conv2" else copy(x) - module(x)
            )
        return shift.mean(dim=tuple(d for d in range(shift.dim()) if d != 1))

    corrected, uncorrected = mean_shift(QuantizerSettings()), mean_shift(QuantizerSettings(bias_correction=False))
    assert uncorrected.abs().max() > 1e-3
    assert corrected.abs().max() < 1e-4 * max(1.0, float(uncorrected.abs().max()))


def test_omega_measures_the_errors_of_the_quantizer_apply_uses(digits):
    calibrated = mpq.calibrate(digits.model, digits.calibration)
    candidates = [mpq.get_candidate(c) for c in ("w2a4", "w4a8")]
    weight_err = weight_sq_errors(digits.model, list(DIGITS_LAYERS), candidates, calibrated)
    act_err = act_sq_errors(digits, list(DIGITS_LAYERS), candidates, calibrated)
    modules = dict(digits.model.named_modules())
    n_samples = sum(len(x) for x, _ in digits.calibration)
    for layer in ("conv1", "fc1"):
        applied = mpq.apply(digits.model, {layer: "w2a4"}, act_ranges=calibrated)
        copy = dict(applied.named_modules())[layer]
        assert weight_err[(layer, "w2a4")] == pytest.approx(
            float((copy.weight - modules[layer].weight.detach()).pow(2).sum())
        )
        pairs: list[torch.Tensor] = []
        record = pairs.append
        copy.register_forward_pre_hook(lambda m, args, record=record: record(args[0].detach()), prepend=True)
        copy.register_forward_pre_hook(lambda m, args, record=record: record(args[0].detach()))
        with torch.no_grad():
            for x, _ in digits.calibration:
                applied(x)
        seen = sum(float((q - a).double().pow(2).sum()) for a, q in zip(pairs[::2], pairs[1::2]))
        assert act_err[(layer, "w2a4")] == pytest.approx(seen / n_samples, rel=1e-6)


def test_a_target_that_needs_symmetric_inputs_gets_them():
    settings = mpq.ProbeSettings()
    assert for_device(settings, "symmetric").quantizer.act_grid == "symmetric"
    assert for_device(settings, "unsigned").quantizer.act_grid == "unsigned"
    assert for_device(settings, "asymmetric").quantizer.act_grid == "asymmetric"
    stricter = dataclasses.replace(settings, quantizer=QuantizerSettings(act_grid="symmetric"))
    assert for_device(stricter, "asymmetric").quantizer.act_grid == "symmetric"


def test_bad_settings_are_one_line_errors(digits):
    with pytest.raises(
        InvalidParameterError, match=r"^The \"quantizer\['ranges'\]\" parameter of calibrate must be one of"
    ):
        mpq.calibrate(digits.model, digits.calibration, quantizer=QuantizerSettings(ranges="minmax"))
    with pytest.raises(InvalidParameterError, match=r"'quantizer' parameter of calibrate must be an mpq.Quantizer"):
        mpq.calibrate(digits.model, digits.calibration, quantizer="mse")
    with pytest.raises(InvalidParameterError, match=r"^The 'ranges' parameter of search must be one of"):
        mpq.search(digits, ranges="minmax", db="sqlite://")
    calibrated = mpq.calibrate(digits.model, digits.calibration)
    with pytest.raises(InvalidParameterError, match="carries its quantizer settings"):
        mpq.apply(digits.model, {"fc1": "w8a8"}, act_ranges=calibrated, quantizer=QuantizerSettings())
