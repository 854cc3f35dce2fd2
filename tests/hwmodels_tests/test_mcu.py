"""MCU (CMSIS-NN): hand-computed flash, SRAM and cycles; limits; kernel coverage."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import hwmodels

# stm32f746: 216 MHz, 1 MiB flash, 320 KiB SRAM, 2000 cycles per layer,
# 1.5 / 2.0 / 1.6 MACs per cycle for the s4 / s8 / s16 kernels.

BUILT_IN = 'candidates = ["w4a8", "w8a8", "w8aint16"]'


@pytest.fixture
def with_s16():
    """The built-in MCU file, which lists w8aint16 (int8 x int16: CMSIS-NN's s16 kernels)."""
    return lambda base: hwmodels.device_dir() / f"{base}.toml"


def test_conv_hand_computed_for_each_kernel(tables, with_s16):
    # 3x3 conv 8 -> 16 channels on 8x8 -> 8x8: 1152 weights, 16 biases, 73728 MACs,
    # 512 input and 1024 output elements; im2col scratch 2 * 8 * 3 * 3 * 2 bytes = 288.
    layers = tables.layers(tables.conv2d("conv", 8, 16, 3, 8, 8))
    costs = hwmodels.cost_table(layers, with_s16("stm32f746"), tables.candidates(mcu=True))
    w4a8, w8a8, s16 = (tables.row(costs, "conv", c) for c in ("w4a8", "w8a8", "w8aint16"))
    # flash: weights + biases (int32, int64 for s16) + int32 multiplier and shift per output channel
    assert w4a8["flash_bytes"] == 1152 * 4 // 8 + 16 * 4 + 16 * 8  # 768
    assert w8a8["flash_bytes"] == 1152 + 16 * 4 + 16 * 8  # 1344
    assert s16["flash_bytes"] == 1152 + 16 * 8 + 16 * 8  # 1408
    # SRAM: input + output at the activation width + scratch
    assert w4a8["sram_bytes"] == w8a8["sram_bytes"] == 512 + 1024 + 288  # 1824
    assert s16["sram_bytes"] == (512 + 1024) * 2 + 288  # 3360
    # cycles: ceil(MACs / MACs per cycle) + 2000
    assert (w4a8["kernel"], w8a8["kernel"], s16["kernel"]) == ("s4", "s8", "s16")
    assert w4a8["cycles"] == 49152 + 2000
    assert w8a8["cycles"] == 36864 + 2000
    assert s16["cycles"] == 46080 + 2000
    assert w8a8["latency_s"] == pytest.approx(38864 / 216e6, rel=1e-12)
    # energy: MACs at int8 (0.2 + 0.03 pJ), every MAC reads its 1-byte weight from flash
    # (73728 B at 12.5 pJ), activations (1536 B) from SRAM at 12.5 pJ
    assert w8a8["energy_j"] == pytest.approx((73728 * 0.23 + 73728 * 12.5 + 1536 * 12.5) * 1e-12, rel=1e-12)


def test_depthwise_and_linear_scratch(tables):
    dw = tables.conv2d("dw", 32, 32, 3, 16, 16, groups=32)
    fc = tables.linear("fc", 512, 10)
    costs = hwmodels.cost_table(tables.layers(dw, fc), "stm32h743", tables.candidates("w8a8", mcu=True))
    # depthwise scratch C * 3 * 3 * 2 bytes = 576; fully connected needs none
    assert tables.row(costs, "dw", "w8a8")["sram_bytes"] == 32 * 256 * 2 + 576
    assert tables.row(costs, "fc", "w8a8")["sram_bytes"] == 512 + 10
    assert tables.row(costs, "dw", "w8a8")["flash_bytes"] == 288 + 32 * 4 + 32 * 8


def test_sram_is_a_max_column_and_limits_are_attached(tables):
    costs = hwmodels.cost_table(tables.layers(tables.linear("fc", 64, 10)), "stm32h743", tables.candidates(mcu=True))
    assert costs.attrs["max_columns"] == ["sram_bytes"]
    assert costs.attrs["limits"] == {"flash_bytes": 2097152, "sram_bytes": 524288}
    assert costs.attrs["device"] == "stm32h743"


def test_a_layer_over_sram_at_every_candidate_raises(tables, with_s16):
    # 64 -> 64 channels at 72x72: 331776 input + 331776 output elements, over the f746's
    # 327680 B at every activation width.
    big = tables.conv2d("features.0", 64, 64, 3, 72, 72)
    with pytest.raises(hwmodels.LayerDoesNotFitError) as err:
        hwmodels.cost_table(tables.layers(big), with_s16("stm32f746"), tables.candidates(mcu=True))
    message = str(err.value)
    assert "\n" not in message
    # smallest need: w4a8 / w8a8 at (331776 + 331776) * 1 + scratch 2 * 64 * 9 * 2 = 665856 bytes
    assert "layer 'features.0' does not fit stm32f746 at any candidate: it needs at least 665856 sram_bytes" in message
    assert "the device has 327680" in message


def test_candidates_over_a_limit_are_returned_when_one_fits(tables, with_s16):
    # 64 channels at 48x48: in + out = 2 * 147456 elements, scratch 2 * 64 * 9 * 2 = 2304 B;
    # int8: 294912 + 2304 = 297216 B fit the f746's 327680 B; int16: 589824 + 2304 = 592128 B do not.
    layer = tables.conv2d("features.0", 64, 64, 3, 48, 48)
    costs = hwmodels.cost_table(tables.layers(layer), with_s16("stm32f746"), tables.candidates(mcu=True))
    assert costs["sram_bytes"].tolist() == [297216, 297216, 592128]


def test_weights_over_flash_at_every_candidate_raise(tables):
    # 2048 x 1024 weights: 1048576 B even at 4 bits, + 1024 int32 biases + 1024 * 8 B of
    # requantisation data = 1060864 B > 1048576
    layers = tables.layers(tables.linear("classifier", 2048, 1024))
    with pytest.raises(hwmodels.LayerDoesNotFitError, match="needs at least 1060864 flash_bytes .at w4a8."):
        hwmodels.cost_table(layers, "stm32f746", tables.candidates(mcu=True))


def test_candidate_without_a_cmsis_nn_kernel_is_rejected(tables, device_file):
    # mpq's w8a16 (fp16 activations) has no CMSIS-NN kernel
    path = device_file("stm32h743", base="stm32h743", replace={BUILT_IN: 'candidates = ["w8a8", "w8a16"]'})
    with pytest.raises(hwmodels.InvalidTableError) as err:
        hwmodels.cost_table(tables.layers(tables.linear("fc", 8, 8)), path, tables.candidates("w8a8", "w8a16"))
    message = str(err.value)
    assert "candidate 'w8a16': stm32h743 has no CMSIS-NN kernel for int8 weights x fp16 activations" in message
    assert "s4 (int4 x int8), s8 (int8 x int8), s16 (int8 x int16)" in message


def test_embedding_copies_rows(tables):
    layers = tables.layers(tables.embedding("emb", 1000, 32, tokens=20))
    row = hwmodels.cost_table(layers, "stm32h743", tables.candidates("w8a8", mcu=True), batch_size=2).iloc[0]
    assert row["flash_bytes"] == 32000  # the table, no requantisation data
    assert row["sram_bytes"] == 20 * 4 + 20 * 32  # int32 ids + int8 rows
    assert row["cycles"] == 2 * (20 * 32 + 2000)  # two samples one after the other


_CH = st.sampled_from([1, 3, 8, 16, 32, 64])


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(c_in=_CH, c_out=_CH, k=st.sampled_from([1, 3, 5]), hw=st.integers(4, 32), batch=st.integers(1, 3))
def test_memory_grows_with_bits(tables, with_s16, c_in, c_out, k, hw, batch):
    layers = tables.layers(tables.conv2d("conv", c_in, c_out, k, hw, hw), tables.linear("fc", c_out, 10))
    costs = hwmodels.cost_table(layers, with_s16("stm32h743"), tables.candidates(mcu=True), batch_size=batch)
    for layer in ("conv", "fc"):
        w4a8, w8a8, s16 = (tables.row(costs, layer, c) for c in ("w4a8", "w8a8", "w8aint16"))
        params, biases = w8a8["weight_bytes"], layers.set_index("layer").at[layer, "bias_params"]
        # 8-bit weights take params - ceil(params / 2) more bytes than packed int4; s16 biases are int64
        assert w8a8["flash_bytes"] - w4a8["flash_bytes"] == params - -(-params // 2)
        assert s16["flash_bytes"] - w8a8["flash_bytes"] == 4 * biases
        assert w4a8["sram_bytes"] == w8a8["sram_bytes"] < s16["sram_bytes"]
        assert w4a8["energy_j"] < w8a8["energy_j"] < s16["energy_j"]
        for row in (w4a8, w8a8, s16):
            assert row["latency_s"] == pytest.approx(row["cycles"] / 480e6, rel=1e-12)
            assert row["cycles"] % batch == 0
