"""FPGA (FINN-R): hand-computed folding, FINN's resource formulas, the whole-network share policy."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import hwmodels
from hwmodels._fpga import finn_brams

TINY_PART = """\
kind = "fpga"
description = "a tiny test part"
candidates = ["w2a2", "w4a4", "w4a8", "w8a8"]
luts = {luts}  # test value
dsps = {dsps}  # test value
brams = 10  # test value
clock_hz = 100e6  # test value
usable_fraction = 0.8  # test value
lut_mult_max_bits = 8  # test value
"""


@pytest.fixture
def tiny_part(device_file):
    return lambda luts=425, dsps=10: device_file(f"tiny-{luts}-{dsps}", TINY_PART.format(luts=luts, dsps=dsps))


def test_folding_within_the_lut_share_hand_computed(tables, tiny_part):
    # One linear layer 4 -> 2 at w2a2: MW = 4, MH = 2, 1 input vector; LUT multipliers (2 + 2 <= 8).
    # It is the whole network, so its share is 0.8 * 425 = 340 LUTs. Per PE, FINN counts
    # mult SIMD*(2*ceil(4/6)-1)*4 + adder tree 4*(2*SIMD-1) + accumulator 4 + ceil(log2 4):
    #   (PE, SIMD) = (1, 1): 300 + 1.1 * 1 * (4 + 4 + 6)  = 315.4 -> 316 LUTs, 8 cycles
    #                (1, 2): 300 + 1.1 * 1 * (8 + 12 + 6) = 328.6 -> 329 LUTs, 4 cycles
    #                (2, 1): 300 + 1.1 * 2 * (4 + 4 + 6)  = 330.8 -> 331 LUTs, 4 cycles
    #                (1, 4), (2, 2), (2, 4): 355, 357.2, 410 LUTs: over the share
    # Fewest cycles within the share is 4; the tie goes to fewer LUTs: (1, 2).
    layers = tables.layers(tables.linear("fc", 4, 2))
    row = hwmodels.cost_table(layers, tiny_part(), tables.candidates("w2a2")).iloc[0]
    assert (row["pe"], row["simd"], row["luts"], row["dsps"], row["cycles"]) == (1, 2, 329, 0, 4)
    # weight memory: 8 / 2 = 4 words of 2 * 2 = 4 bits: one RAMB18 (4K x 4)
    assert row["brams"] == 1
    assert row["latency_s"] == pytest.approx(4 / 100e6, rel=1e-12)
    # energy: 8 MACs at int2 (0.2 * (2/8)^2 + 0.03 * 2/8 = 0.02 pJ) + BRAM bytes at 1.25 pJ:
    # weight reads 8 * 2 / 8 = 2 B, activations (4 + 2) * 2 / 8 = 1.5 B
    assert row["energy_j"] == pytest.approx((8 * 0.02 + 3.5 * 1.25) * 1e-12, rel=1e-12)
    # batch 3 streams three vectors
    batched = hwmodels.cost_table(layers, tiny_part(), tables.candidates("w2a2"), batch_size=3).iloc[0]
    assert batched["cycles"] == 12


def test_full_unroll_when_the_share_allows_it(tables, tiny_part):
    # share 0.8 * 10000 = 8000 LUTs: PE = MH = 2, SIMD = MW = 4, one cycle,
    # 300 + 1.1 * 2 * (16 + 28 + 6) = 410 LUTs
    layers = tables.layers(tables.linear("fc", 4, 2))
    row = hwmodels.cost_table(layers, tiny_part(luts=10000), tables.candidates("w2a2")).iloc[0]
    assert (row["pe"], row["simd"], row["luts"], row["cycles"]) == (2, 4, 410, 1)


def test_wide_operands_use_dsps_within_the_dsp_share(tables, tiny_part):
    # w8a8: W + A = 16 > 8, so DSP multipliers: PE * SIMD * ceil(16 / 48) = PE * SIMD DSPs.
    # DSP share 0.8 * 5 = 4, so PE * SIMD <= 4: 8 / 4 = 2 cycles at (1, 4) or (2, 2);
    # LUTs without multipliers: (1, 4) 300 + 1.1 * (16 * 7 + 16 + 2) = 443; (2, 2) 445.2 -> 446.
    layers = tables.layers(tables.linear("fc", 4, 2))
    row = hwmodels.cost_table(layers, tiny_part(luts=10000, dsps=5), tables.candidates("w8a8")).iloc[0]
    assert (row["pe"], row["simd"], row["dsps"], row["luts"], row["cycles"]) == (1, 4, 4, 443, 2)
    # 2 words of 4 * 8 = 32 bits: one RAMB18 (512 x 36)
    assert row["brams"] == 1


@pytest.mark.parametrize(
    "depth, width, expected",
    [
        (16384, 1, 1),  # 16K x 1
        (16385, 1, 2),
        (8192, 2, 1),  # 8K x 2
        (4096, 4, 1),  # 4K x 4
        (4096, 8, 2),  # 2K x 9: two deep
        (1024, 18, 1),  # 1K x 18
        (1, 256, 8),  # 512 x 36: ceil(256 / 36) wide
        (600, 36, 2),  # deeper than 512: 1K x 18, two wide
    ],
)
def test_finn_bram_estimate(depth, width, expected):
    assert finn_brams(np.array([depth]), np.array([width]))[0] == expected


def test_layer_that_exceeds_the_part_at_pe_simd_1_raises(tables, tiny_part):
    # 300 LUTs: PE = SIMD = 1 needs 316 at w2a2 (and more at wider candidates)
    layers = tables.layers(tables.linear("fc", 4, 2))
    with pytest.raises(hwmodels.LayerDoesNotFitError) as err:
        hwmodels.cost_table(layers, tiny_part(luts=300), tables.candidates("w2a2", "w4a4"))
    message = str(err.value)
    assert "\n" not in message
    assert "layer 'fc' does not fit tiny-300-10 at any candidate" in message
    assert "with w2a2 it needs 316 luts, the part has 300" in message


def test_weights_too_large_for_the_brams_name_the_resource(tables):
    # 8192 x 8192 at 2 bits, PE = SIMD = 1: 67,108,864 words of 2 bits = 8192 RAMB18 (8K x 2) > 280
    layers = tables.layers(tables.linear("big", 8192, 8192))
    with pytest.raises(hwmodels.LayerDoesNotFitError, match="it needs 8192 brams, the part has 280"):
        hwmodels.cost_table(layers, "pynq-z1", tables.candidates("w2a2", "w4a4"))


def test_a_candidate_over_the_part_is_returned_when_another_fits(tables):
    # 2048 x 1024 at PE = SIMD = 1: w2a2 needs ceil(2M / 8192) = 256 RAMB18 <= 280,
    # w8a8 needs ceil(2M / 2048) = 1024 > 280: both rows come back, the solver decides.
    layers = tables.layers(tables.linear("fc", 2048, 1024))
    costs = hwmodels.cost_table(layers, "pynq-z1", tables.candidates("w2a2", "w8a8"))
    assert costs["brams"].tolist() == [256, 1024]
    assert costs.attrs["limits"] == {"luts": 53200, "dsps": 220, "brams": 280}


def test_float_candidates_are_rejected(tables, device_file):
    path = device_file("fp-part", base="zcu104", replace={'"w8a8"]': '"w8a8", "wfp8afp8"]'})
    with pytest.raises(hwmodels.InvalidTableError, match="runs integer formats only"):
        hwmodels.cost_table(tables.layers(tables.linear("fc", 4, 2)), path, tables.candidates("w8a8", "wfp8afp8"))


def test_broken_field_names_the_file_and_key(device_file):
    path = device_file("zcu104", base="zcu104", replace={"luts = 230400": "luts = -1"})
    with pytest.raises(hwmodels.DeviceSpecError) as err:
        hwmodels.load_device(path)
    assert str(err.value).endswith(
        "zcu104.toml: 'luts' must be a positive int, got -1; fix the value and keep its source comment."
    )


def test_embedding_is_a_lookup_table(tables):
    layers = tables.layers(tables.embedding("emb", 1000, 64, tokens=16))
    row = hwmodels.cost_table(layers, "zcu104", tables.candidates("w4a4")).iloc[0]
    # 64000 weights of 4 bits at PE = SIMD = 1: ceil(64000 / 4096) = 16 RAMB18; 16 * 64 elements, 1 per cycle
    assert (row["pe"], row["simd"], row["luts"], row["dsps"], row["brams"], row["cycles"]) == (1, 1, 300, 0, 16, 1024)


_DIMS = st.sampled_from([4, 8, 12, 16, 24, 32, 48, 64])


@st.composite
def networks(draw):
    rows = []
    for i in range(draw(st.integers(1, 4))):
        if draw(st.booleans()):
            rows.append(("linear", f"fc{i}", draw(_DIMS), draw(_DIMS), draw(st.integers(1, 8))))
        else:
            rows.append(("conv2d", f"conv{i}", draw(_DIMS), draw(_DIMS), draw(st.sampled_from([1, 3])), draw(_DIMS)))
    return rows


def _build(tables, spec):
    out = []
    for kind, name, a, b, *rest in spec:
        if kind == "linear":
            out.append(tables.linear(name, a, b, tokens=rest[0]))
        else:
            k, hw = rest
            out.append(tables.conv2d(name, a, b, k, hw, hw // 2))
    return tables.layers(*out)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(spec=networks(), device=st.sampled_from(["zcu104", "pynq-z1"]), batch=st.integers(1, 4))
def test_folding_policy_properties(tables, spec, device, batch):
    layers = _build(tables, spec)
    part = hwmodels.load_device(device).spec
    cands = tables.candidates("w2a2", "w4a4", "w4a8", "w8a8")
    costs = hwmodels.cost_table(layers, device, cands, batch_size=batch).merge(layers, on="layer")
    share = {
        "luts": part.usable_fraction * part.luts * costs["macs"] / layers["macs"].sum(),
        "dsps": part.usable_fraction * part.dsps * costs["macs"] / layers["macs"].sum(),
        "brams": part.usable_fraction * part.brams * costs["weight_params"] / layers["weight_params"].sum(),
    }
    within = np.logical_and.reduce([costs[r] <= share[r] for r in share])
    for i, row in costs.iterrows():
        mh = row["weight_shape"][0]
        mw = row["weight_params"] // mh
        assert mh % row["pe"] == 0 and mw % row["simd"] == 0
        vectors = row["macs"] / row["weight_params"]
        assert row["cycles"] == math.ceil(mh / row["pe"] * mw / row["simd"] * vectors * batch)
        assert row["latency_s"] == pytest.approx(row["cycles"] / part.clock_hz, rel=1e-12)
        assert within[i] or (row["pe"], row["simd"]) == (1, 1)
    if within.all():
        # any mix of candidates fits the usable part: bound the worst candidate of every layer
        worst = costs.groupby("layer")[["luts", "dsps", "brams"]].max().sum()
        assert worst["luts"] <= part.usable_fraction * part.luts
        assert worst["dsps"] <= part.usable_fraction * part.dsps
        assert worst["brams"] <= part.usable_fraction * part.brams
    # more bits on one multiplier path never make a layer faster or cheaper in energy
    for low, high in (("w2a2", "w4a4"), ("w4a8", "w8a8")):
        lo = costs[costs["candidate"] == low].set_index("layer")
        hi = costs[costs["candidate"] == high].set_index("layer")
        assert (hi["cycles"] >= lo["cycles"]).all()
        assert (hi["energy_j"] > lo["energy_j"]).all()
