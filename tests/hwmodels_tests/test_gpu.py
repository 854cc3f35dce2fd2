"""GPU roofline: hand-computed costs, the executed-class rule, batch-size regimes."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import hwmodels
from hwmodels._gpu import executed_class
from mpqvocab import class_names, holds

N = 4096
H100_PEAKS = hwmodels.load_device("h100-sxm").spec.peak_ops_per_s


def test_h100_linear_4096_batch_1_hand_computed(tables):
    layers = tables.layers(tables.linear("fc", N, N))
    costs = hwmodels.cost_table(layers, "h100-sxm", tables.candidates("w16a16"))
    row = costs.iloc[0]
    # compute: 2 ops per MAC * 4096 * 4096 MACs at the FP16 dense peak of 989.4 TFLOP/s
    compute_s = 2 * 4096 * 4096 / 989.4e12  # 3.39e-8 s
    # memory: weights 4096*4096*2 B + bias 4096*4 B + (in 4096 + out 4096) * 2 B
    dram_bytes = 33_554_432 + 16_384 + 16_384
    memory_s = dram_bytes / 3.35e12  # 1.0026e-5 s
    assert memory_s > compute_s
    assert row["dram_bytes"] == dram_bytes
    assert row["bound"] == "memory"
    assert row["executed_class"] == "fp16"
    assert row["latency_s"] == pytest.approx(memory_s + 3.0e-6, rel=1e-12)
    # energy: MACs * (fp16 mult 1.1 + add 0.4 pJ) + bytes * 1950/8 pJ (Horowitz)
    energy_pj = 4096 * 4096 * (1.1 + 0.4) + dram_bytes * 1950 / 8
    assert row["energy_j"] == pytest.approx(energy_pj * 1e-12, rel=1e-12)
    assert row["weight_bytes"] == 4096 * 4096 * 2
    assert row["bops"] == 4096 * 4096 * 16 * 16
    assert not row["latency_measured"]


def test_h100_fp16_crosses_the_ridge_between_batch_256_and_512(tables):
    # ridge: 989.4e12 / 3.35e12 = 295 ops per byte.
    # batch 256: 2*256*4096^2 / (2*4096^2 + 16384 + 256*8192*2) = 8.59e9 / 37.8e6 = 227 < 295
    # batch 512: 2*512*4096^2 / (2*4096^2 + 16384 + 512*8192*2) = 17.2e9 / 42.0e6 = 409 > 295
    layers = tables.layers(tables.linear("fc", N, N))
    bounds = [
        hwmodels.cost_table(layers, "h100-sxm", tables.candidates("w16a16"), batch_size=b)["bound"].item()
        for b in (256, 512)
    ]
    assert bounds == ["memory", "compute"]


@pytest.mark.parametrize(
    "device, candidate",
    [
        ("a100", "w16a16"),  # ridge 312e12 / 2.039e12 = 153 ops/B; intensity at 256 = 227
        ("jetson-agx-orin", "w16a16"),  # ridge 42.5e12 / 204.8e9 = 208 ops/B; intensity at 256 = 227
        ("h100-sxm", "w4a16"),  # fp16 compute + int4 dequantisation vs 4.125-bit weights
        ("cpu-x86", "w8a8"),  # ridge 1331.2e9 / 20e9 = 67 ops/B; intensity at 256 = 455
    ],
)
def test_4096_linear_is_memory_bound_at_batch_1_and_compute_bound_at_256(tables, device, candidate):
    layers = tables.layers(tables.linear("fc", N, N))
    cands = tables.candidates(candidate)
    one = hwmodels.cost_table(layers, device, cands, batch_size=1).iloc[0]
    many = hwmodels.cost_table(layers, device, cands, batch_size=256).iloc[0]
    assert (one["bound"], many["bound"]) == ("memory", "compute")
    # 256 samples cost far less than 256 single-sample runs once compute-bound.
    assert one["latency_s"] < many["latency_s"] < 256 * one["latency_s"]


def test_weight_only_int4_on_h100_dequantises_and_saves_only_memory(tables):
    layers = tables.layers(tables.linear("fc", N, N))
    cands = tables.candidates("w4a16", "w16a16")
    small = hwmodels.cost_table(layers, "h100-sxm", cands, batch_size=1)
    w4, w16 = tables.row(small, "fc", "w4a16"), tables.row(small, "fc", "w16a16")
    assert w4["executed_class"] == w16["executed_class"] == "fp16"
    # weights 4096^2 * 4.125 / 8 B instead of 4096^2 * 2 B; same bias and activations
    assert w4["dram_bytes"] == 4096 * 4096 * 4.125 / 8 + 16_384 + 16_384
    assert w4["latency_s"] < w16["latency_s"]
    # compute-bound: the same fp16 MACs plus 4096^2 dequantised weights at 8.375e12 elements/s
    big = hwmodels.cost_table(layers, "h100-sxm", cands, batch_size=4096)
    w4, w16 = tables.row(big, "fc", "w4a16"), tables.row(big, "fc", "w16a16")
    compute_w16 = 2 * 4096 * 4096 * 4096 / 989.4e12
    assert (w4["bound"], w16["bound"]) == ("compute", "compute")
    assert w16["latency_s"] == pytest.approx(compute_w16 + 3e-6, rel=1e-12)
    assert w4["latency_s"] == pytest.approx(compute_w16 + 4096 * 4096 / 8.375e12 + 3e-6, rel=1e-12)


def test_native_fp8_runs_at_twice_the_fp16_rate_on_h100(tables):
    layers = tables.layers(tables.linear("fc", N, N))
    costs = hwmodels.cost_table(layers, "h100-sxm", tables.candidates("wfp8afp8", "w16a16"), batch_size=8192)
    fp8, fp16 = tables.row(costs, "fc", "wfp8afp8"), tables.row(costs, "fc", "w16a16")
    assert fp8["executed_class"] == "fp8"
    macs = 8192 * 4096 * 4096
    assert fp8["latency_s"] == pytest.approx(2 * macs / 1978.9e12 + 3e-6, rel=1e-12)
    assert fp16["latency_s"] == pytest.approx(2 * macs / 989.4e12 + 3e-6, rel=1e-12)


@pytest.mark.parametrize(
    "device, weight, act, expected",
    [
        ("h100-sxm", "int8", "int8", "int8"),  # native
        ("h100-sxm", "fp8", "fp8", "fp8"),  # native
        ("h100-sxm", "fp16", "fp16", "fp16"),  # native
        ("h100-sxm", "int4", "int8", "int8"),  # no INT4 tensor cores: int4 upcast to the activation's int8
        ("h100-sxm", "int4", "int4", "int8"),  # int8 and fp8 tie at 1978.9e12: integer first
        ("h100-sxm", "int4", "fp16", "fp16"),  # weight-only int4: fp16 compute
        ("h100-sxm", "int4", "fp8", "fp8"),  # int4 (-7..7) is exact in fp8: fp8 compute
        ("h100-sxm", "fp4", "fp8", "fp8"),  # no FP4 before Blackwell: fp4 upcast to fp8
        ("h100-sxm", "fp6", "fp8", "fp8"),
        ("h100-sxm", "fp4", "fp4", "fp8"),
        ("h100-sxm", "int8", "fp8", "fp16"),  # neither holds the other: cheapest class holding both
        ("h100-sxm", "int8", "fp16", "fp16"),
        ("h100-sxm", "int16", "int8", "fp32"),  # only fp32 holds int16
        ("a100", "int4", "int4", "int4"),  # A100 has INT4 tensor cores
        ("a100", "int4", "int8", "int8"),
        ("a100", "fp8", "fp8", "fp16"),  # no FP8 on Ampere
        ("a100", "fp4", "fp8", "fp16"),
        ("rtx4090", "int4", "int4", "int4"),
        ("rtx4090", "fp4", "fp8", "fp8"),
        ("cpu-x86", "int4", "int8", "int8"),  # unpacked to int8, VNNI
        ("cpu-x86", "fp16", "fp16", "fp32"),  # no fp16 kernel: dequantise, fp32 FMA
        ("cpu-x86", "fp8", "fp8", "fp32"),
        ("cpu-x86", "int8", "fp16", "fp32"),
    ],
)
def test_executed_class_rule(device, weight, act, expected):
    peaks = hwmodels.load_device(device).spec.peak_ops_per_s
    assert executed_class(weight, act, peaks) == expected


def test_no_class_holds_the_pair_is_a_one_line_error(tables, device_file):
    path = device_file(
        "int8-only",
        base="h100-sxm",
        replace={
            "fp8 = 1978.9e12": "#",
            "fp16 = 989.4e12": "#",
            "tf32 = 494.7e12": "#",
            "fp32 = 67e12": "#",
        },
    )
    assert executed_class("fp16", "fp16", hwmodels.load_device(path).spec.peak_ops_per_s) is None
    with pytest.raises(hwmodels.InvalidTableError) as err:
        hwmodels.cost_table(tables.layers(tables.linear("fc", 8, 8)), path, tables.candidates("w16a16"))
    message = str(err.value)
    assert "\n" not in message
    assert "runs no class that holds fp16 weights and fp16 activations (it runs int8)" in message


GPU_CLASSES = [c for c in class_names() if c not in ("tf32", "fp32")]


@settings(max_examples=200, deadline=None)
@given(weight=st.sampled_from(GPU_CLASSES), act=st.sampled_from(GPU_CLASSES))
def test_executed_class_holds_both_operands_and_is_the_fastest_that_does(weight, act):
    chosen = executed_class(weight, act, H100_PEAKS)
    assert chosen is not None  # H100 lists fp32, which holds every class
    assert holds(chosen, weight) and holds(chosen, act)
    faster = [c for c, rate in H100_PEAKS.items() if rate > H100_PEAKS[chosen]]
    assert not any(holds(c, weight) and holds(c, act) for c in faster)
    if weight == act and weight in H100_PEAKS:
        assert chosen == weight  # a natively run pair runs natively


def test_embedding_costs_the_gathered_rows_only(tables):
    # 128 tokens gather 128 rows of 384 int8 weights: 128 * 384 bytes, no MACs
    layers = tables.layers(tables.embedding("embeddings.word_embeddings", 30522, 384, tokens=128))
    row = hwmodels.cost_table(layers, "a100", tables.candidates("w8a8"), batch_size=2).iloc[0]
    gathered = 2 * 128 * 384 * 8 / 8
    assert row["dram_bytes"] == gathered
    assert row["latency_s"] == pytest.approx(gathered / 2.039e12 + 3e-6, rel=1e-12)
    assert row["energy_j"] == pytest.approx(gathered * 1950 / 8 * 1e-12, rel=1e-12)
    assert row["weight_bytes"] == 30522 * 384  # storage of the whole table
    assert row["bops"] == 0


def test_conv_costs_count_activations_per_sample_times_batch(tables):
    # 3x3 conv 16 -> 32 channels on 16x16 -> 16x16, w8a8 on an RTX 4090, batch 4
    conv = tables.conv2d("features.3", 16, 32, 3, 16, 16)
    row = hwmodels.cost_table(tables.layers(conv), "rtx4090", tables.candidates("w8a8"), batch_size=4).iloc[0]
    weights = 32 * 16 * 9  # bytes at 8 bits
    activations = 4 * (16 * 16 * 16 + 32 * 16 * 16)  # bytes at 8 bits
    assert row["dram_bytes"] == weights + 32 * 4 + activations
    compute_s = 2 * 4 * weights * 256 / 660.6e12
    memory_s = row["dram_bytes"] / 1.008e12
    assert row["latency_s"] == pytest.approx(max(compute_s, memory_s) + 3e-6, rel=1e-12)
