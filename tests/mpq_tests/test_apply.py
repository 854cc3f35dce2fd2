"""mpq.apply: a fake-quantized copy; weights on the grid, activations on the calibrated grid.

Tests of structure (hooks, tied weights, embeddings, the hand-built network) run mpq's first
quantizer (``LEGACY_QUANTIZER``: symmetric grids, max ranges), whose grid is simplest to write by
hand; the calibrated quantizer's own rules are tested in test_quantizer.py.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mpq._apply import activation_ranges, apply
from mpq._formats import get_format
from mpq._quantizer import LEGACY_QUANTIZER, QuantizerSettings
from mpq.exceptions import InvalidParameterError, UnknownNameError


class TinyNet(nn.Module):
    """conv (1 -> 4 channels, 3x3) -> ReLU -> flatten -> linear (144 -> 5), on 8x8 images."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3)
        self.act = nn.ReLU()
        self.fc = nn.Linear(4 * 6 * 6, 5)

    def forward(self, x):
        return self.fc(self.act(self.conv(x)).flatten(1))


class TextNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(50, 16)
        self.fc = nn.Linear(16, 3)

    def forward(self, ids):
        return self.fc(self.emb(ids).mean(1))


# formats_conftest: fixtures of this file.
@pytest.fixture
def model() -> TinyNet:
    torch.manual_seed(0)
    return TinyNet().eval()


@pytest.fixture
def calibration() -> list[tuple[torch.Tensor, torch.Tensor]]:
    gen = torch.Generator().manual_seed(1)
    return [(torch.randn(8, 1, 8, 8, generator=gen) * (i + 1), torch.zeros(8)) for i in range(2)]


@pytest.fixture
def images() -> torch.Tensor:
    return torch.randn(6, 1, 8, 8, generator=torch.Generator().manual_seed(2))


def capture_input(module: nn.Module) -> list[torch.Tensor]:
    """Record what ``module`` receives (registered after apply's hook, so after quantization)."""
    seen: list[torch.Tensor] = []
    module.register_forward_pre_hook(lambda m, args: seen.append(args[0].detach().clone()))
    return seen


def test_activation_ranges_are_max_abs_inputs_over_batches(model, calibration):
    ranges = activation_ranges(model, calibration)
    assert set(ranges) == {"conv", "fc"}
    with torch.no_grad():
        fc_inputs = [model.act(model.conv(x)).flatten(1) for x, _ in calibration]
    assert ranges["conv"] == max(float(x.abs().max()) for x, _ in calibration)
    assert ranges["fc"] == max(float(h.abs().max()) for h in fc_inputs)
    assert activation_ranges(model, calibration, ["fc"]) == {"fc": ranges["fc"]}


def test_apply_returns_a_copy_and_leaves_the_model_untouched(model, calibration):
    before = {k: v.clone() for k, v in model.state_dict().items()}
    no_correction = QuantizerSettings(bias_correction=False)
    quantized = apply(model, {"conv": "w4a8", "fc": "w2a8"}, calibration=calibration, quantizer=no_correction)
    assert quantized is not model and quantized.fc is not model.fc
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert not model.conv._forward_pre_hooks and not model.fc._forward_pre_hooks
    assert not torch.equal(quantized.fc.weight, model.fc.weight)
    assert not quantized.training
    assert not any(p.requires_grad for p in quantized.parameters())
    assert torch.equal(quantized.fc.bias, model.fc.bias)  # biases stay float without bias correction


def test_quantized_weights_lie_on_the_legacy_grid(model, calibration):
    quantized = apply(model, {"conv": "w4a8", "fc": "wint4_g32a8"}, calibration=calibration, quantizer=LEGACY_QUANTIZER)
    w = model.conv.weight.detach().reshape(4, -1)
    q = quantized.conv.weight.reshape(4, -1)
    scale = w.abs().amax(1, keepdim=True) / 7  # int4 per output channel
    k = q / scale
    assert torch.allclose(k, k.round(), atol=1e-5) and k.abs().max() <= 7 + 1e-5
    assert torch.allclose(q.abs().amax(1), w.abs().amax(1))  # each row's max maps to level 7
    assert ((q - w).abs() <= scale / 2 + 1e-7).all()
    assert torch.equal(quantized.fc.weight, get_format("int4_g32").quantize(model.fc.weight.detach()))


def test_activations_lie_on_the_legacy_int8_grid_of_the_calibrated_range(model, calibration, images):
    fc_range = activation_ranges(model, calibration)["fc"]
    quantized = apply(model, {"fc": "w8a8"}, calibration=calibration, quantizer=LEGACY_QUANTIZER)
    seen = capture_input(quantized.fc)
    quantized(images * 3)  # larger than calibration: some inputs saturate
    scale = fc_range / 127
    k = seen[0] / scale
    assert torch.allclose(k, k.round(), atol=1e-4)
    assert k.abs().max().round() == 127
    assert len(torch.unique(k.round())) > 20


def test_the_copy_computes_the_hand_built_quantized_network(model, calibration, images):
    ranges = activation_ranges(model, calibration)
    quantized = apply(model, {"conv": "wfp8afp8", "fc": "w4a8"}, calibration=calibration, quantizer=LEGACY_QUANTIZER)
    fp8, int4_pc, int8 = get_format("fp8_e4m3"), get_format("int4_pc"), get_format("int8")
    with torch.no_grad():
        h = F.conv2d(fp8.quantize(images, ranges["conv"]), fp8.quantize(model.conv.weight), model.conv.bias)
        h = F.relu(h).flatten(1)
        expected = F.linear(int8.quantize(h, ranges["fc"]), int4_pc.quantize(model.fc.weight), model.fc.bias)
        assert torch.equal(quantized(images), expected)


def test_act_ranges_given_are_used_and_saturate(model, images):
    quantized = apply(model, {"fc": "w8a8"}, act_ranges={"fc": 0.25, "unused": 3.0})
    seen = capture_input(quantized.fc)
    quantized(images)
    assert seen[0].abs().max() == pytest.approx(0.25)
    assert torch.allclose(seen[0] / (0.25 / 127), (seen[0] / (0.25 / 127)).round(), atol=1e-4)


def test_w16a16_is_close_to_float_and_w2a8_is_not(model, calibration, images):
    with torch.no_grad():
        reference = model(images)
        half = apply(model, {"conv": "w16a16", "fc": "w16a16"})(images)  # needs no calibration
        low = apply(model, {"conv": "w2a8", "fc": "w2a8"}, calibration=calibration)(images)
    assert (half - reference).norm() / reference.norm() < 1e-3
    assert (half - reference).norm() > 0
    assert (low - reference).norm() / reference.norm() > 1e-2


def test_unassigned_layers_stay_float(model, images):
    quantized = apply(model, {"fc": "w4a16"})  # fp16 activations: no range needed
    assert torch.equal(quantized.conv.weight, model.conv.weight)
    assert not quantized.conv._forward_pre_hooks
    seen = capture_input(quantized.fc)
    quantized(images)
    assert torch.equal(seen[0], seen[0].half().float())


def test_dynamic_activation_formats_need_no_calibration(model, images):
    quantized = apply(model, {"fc": "wmxfp4amxfp8", "conv": "wint4_g32aint8_g32"})
    seen = capture_input(quantized.fc)
    out = quantized(images)
    assert torch.isfinite(out).all()
    assert torch.equal(seen[0], get_format("mxfp8").quantize(seen[0]))


def test_embedding_quantizes_only_its_weight():
    torch.manual_seed(0)
    model = TextNet().eval()
    ids = torch.randint(0, 50, (4, 7))
    quantized = apply(model, {"emb": "w4a8", "fc": "w8a16"}, quantizer=LEGACY_QUANTIZER)  # a8 ignored for the embedding
    assert not quantized.emb._forward_pre_hooks
    assert torch.equal(quantized.emb.weight, get_format("int4_pc").quantize(model.emb.weight.detach()))
    assert torch.isfinite(quantized(ids)).all()
    assert activation_ranges(model, [(ids, None)]).keys() == {"fc"}
    with pytest.raises(InvalidParameterError, match="emb is an Embedding"):
        activation_ranges(model, [(ids, None)], ["emb"])


def test_tied_weights_are_quantized_per_layer():
    model = TextNet()
    head = nn.Linear(16, 50, bias=False)
    head.weight = model.emb.weight
    model.head = head
    quantized = apply(model, {"head": "w2a16"}, quantizer=LEGACY_QUANTIZER)
    assert torch.equal(quantized.emb.weight, model.emb.weight)
    assert torch.equal(quantized.head.weight, get_format("int2_pc").quantize(model.emb.weight.detach()))


def test_missing_calibration_error(model):
    with pytest.raises(InvalidParameterError) as info:
        apply(model, {"conv": "w4a16", "fc": "w4a8"})
    message = str(info.value)
    assert message.startswith("apply: the activation formats of fc need a calibrated input range; ")
    assert "calibration=" in message and "\n" not in message


def test_layer_and_candidate_errors(model, calibration):
    unknown = r"^unknown layer 'fcc'; choose one of conv, fc \(did you mean 'fc'\?\)\.$"
    with pytest.raises(UnknownNameError, match=unknown):
        apply(model, {"fcc": "w4a8"}, calibration=calibration)
    with pytest.raises(InvalidParameterError, match=r"^layer 'act': a ReLU is not quantizable; "):
        apply(model, {"act": "w4a8"}, calibration=calibration)
    with pytest.raises(UnknownNameError, match="unknown weight format '5'"):
        apply(model, {"fc": "w5a8"}, calibration=calibration)
    with pytest.raises(InvalidParameterError, match="not of the form"):
        apply(model, {"fc": "4a8"}, calibration=calibration)
    with pytest.raises(InvalidParameterError, match="'assignment' parameter of apply"):
        apply(model, [("fc", "w4a8")])
    with pytest.raises(InvalidParameterError, match="'model' parameter of apply"):
        apply("model", {})
    with pytest.raises(InvalidParameterError, match=r"act_ranges\['fc'\]: must be a finite float >= 0"):
        apply(model, {"fc": "w4a8"}, act_ranges={"fc": -1.0})


def test_calibration_errors(model):
    with pytest.raises(InvalidParameterError, match="'calibration' parameter of activation_ranges must be a list"):
        activation_ranges(model, 5)
    with pytest.raises(InvalidParameterError, match="'calibration' parameter of apply must be a list"):
        apply(model, {"fc": "w8a8"}, calibration=torch.randn(2, 1, 8, 8))
    with pytest.raises(InvalidParameterError, match="'layer_names' parameter of activation_ranges"):
        activation_ranges(model, [(torch.randn(2, 1, 8, 8), None)], "fc")
    with pytest.raises(InvalidParameterError, match="calibration has no batches"):
        activation_ranges(model, [])
    with pytest.raises(InvalidParameterError, match=r"calibration batch 0: expected an \(inputs, targets\) pair"):
        activation_ranges(model, [torch.randn(2, 1, 8, 8)])
    with pytest.raises(UnknownNameError, match="did you mean 'conv'"):
        activation_ranges(model, [(torch.randn(2, 1, 8, 8), None)], ["convv"])


def test_layer_that_did_not_run_has_no_range(model, calibration):
    model.spare = nn.Linear(3, 3)
    assert "spare" not in activation_ranges(model, calibration)
    with pytest.raises(InvalidParameterError, match="spare did not run on the calibration batches"):
        apply(model, {"spare": "w8a8"}, calibration=calibration)
