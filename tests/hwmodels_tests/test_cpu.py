"""CPU model: the roofline with VNNI int8 and fp32 FMA rates; measured latencies override it."""

from __future__ import annotations

import pandas as pd
import pytest

import hwmodels

# The hand-computed cases run on a fixed CPU (the shipped cpu-x86 file is refitted to measurements
# now and then): int8 1331.2e9 ops/s, fp32 332.8e9 ops/s, DRAM 20e9 B/s, dequantisation
# 41.6e9 elements/s, 5 us per layer.
NOMINAL_CPU = """
kind = "cpu"
description = "nominal test CPU"
candidates = ["w4a8", "w8a8", "w8a16", "w4a16", "w16a16", "wfp8afp8"]
dram_bytes_per_s = 20e9  # test value
launch_overhead_s = 5.0e-6  # test value
dequant_elems_per_s = 41.6e9  # test value

[peak_ops_per_s]
int8 = 1331.2e9  # test value
fp32 = 332.8e9  # test value
"""


@pytest.fixture
def nominal_cpu(device_file):
    return device_file("nominal-cpu", NOMINAL_CPU)


def test_int8_linear_hand_computed(tables, nominal_cpu):
    layers = tables.layers(tables.linear("fc", 512, 512))
    row = hwmodels.cost_table(layers, nominal_cpu, tables.candidates("w8a8")).iloc[0]
    compute_s = 2 * 512 * 512 / 1331.2e9  # 3.9e-7 s
    dram_bytes = 512 * 512 + 512 * 4 + (512 + 512)  # int8 weights, int32 bias, int8 in and out
    assert row["dram_bytes"] == dram_bytes
    assert row["executed_class"] == "int8"
    assert row["bound"] == "memory"
    assert row["latency_s"] == pytest.approx(dram_bytes / 20e9 + 5e-6, rel=1e-12)
    energy_pj = 512 * 512 * (0.2 + 0.03) + dram_bytes * 1950 / 8
    assert row["energy_j"] == pytest.approx(energy_pj * 1e-12, rel=1e-12)
    assert compute_s < dram_bytes / 20e9


def test_int4_weights_are_unpacked_to_int8_and_pay_off_only_when_memory_bound(tables, nominal_cpu):
    layers = tables.layers(tables.linear("fc", 512, 512))
    cands = tables.candidates("w4a8", "w8a8")
    one = hwmodels.cost_table(layers, nominal_cpu, cands, batch_size=1)
    assert tables.row(one, "fc", "w4a8")["executed_class"] == "int8"
    assert tables.row(one, "fc", "w4a8")["latency_s"] < tables.row(one, "fc", "w8a8")["latency_s"]
    many = hwmodels.cost_table(layers, nominal_cpu, cands, batch_size=64)
    w4, w8 = tables.row(many, "fc", "w4a8"), tables.row(many, "fc", "w8a8")
    # batch 64: 2 * 64 * 512^2 / 1331.2e9 = 2.52e-5 s of VNNI work, plus 512^2 / 41.6e9 = 6.3e-6 s
    # of unpacking for w4a8; memory is 1.0e-5 s at most.
    vnni_s = 2 * 64 * 512 * 512 / 1331.2e9
    assert (w4["bound"], w8["bound"]) == ("compute", "compute")
    assert w8["latency_s"] == pytest.approx(vnni_s + 5e-6, rel=1e-12)
    assert w4["latency_s"] == pytest.approx(vnni_s + 512 * 512 / 41.6e9 + 5e-6, rel=1e-12)


def test_fp16_has_no_kernel_and_runs_as_dequantise_plus_fp32(tables, nominal_cpu):
    layers = tables.layers(tables.linear("fc", 256, 128, tokens=4))
    row = hwmodels.cost_table(layers, nominal_cpu, tables.candidates("w16a16"), batch_size=8).iloc[0]
    assert row["executed_class"] == "fp32"
    # both operands converted: 256*128 weights once, 8 samples * 4 tokens * 256 inputs
    dequant = 256 * 128 + 8 * 4 * 256
    compute_s = 2 * 8 * 4 * 256 * 128 / 332.8e9 + dequant / 41.6e9
    memory_s = (256 * 128 * 2 + 128 * 4 + 8 * 4 * (256 + 128) * 2) / 20e9
    assert row["latency_s"] == pytest.approx(max(compute_s, memory_s) + 5e-6, rel=1e-12)
    # energy: MACs and conversions at fp32 (3.7 + 0.9 pJ), bytes at DRAM energy
    energy_pj = (8 * 4 * 256 * 128 + dequant) * (3.7 + 0.9) + row["dram_bytes"] * 1950 / 8
    assert row["energy_j"] == pytest.approx(energy_pj * 1e-12, rel=1e-12)


def test_measured_csv_overrides_the_model_for_the_pairs_it_covers(tables, tmp_path):
    layers = tables.layers(tables.linear("fc1", 64, 32), tables.linear("fc2", 32, 10))
    cands = tables.candidates("w4a8", "w8a8")
    model = hwmodels.cost_table(layers, "cpu-x86", cands)
    csv = tmp_path / "measured.csv"
    csv.write_text("layer,candidate,latency_s,stderr_s\nfc1,w8a8,1.5e-05,1e-07\nfc2,w4a8,7e-06,1e-07\n")
    costs = hwmodels.cost_table(layers, "cpu-x86", cands, measured=csv)
    assert costs["latency_measured"].tolist() == [False, True, True, False]
    assert costs["latency_s"].tolist() == [
        model["latency_s"][0],
        1.5e-05,
        7e-06,
        model["latency_s"][3],
    ]
    # only latency changes: energy and bytes stay the model's
    assert costs["energy_j"].tolist() == model["energy_j"].tolist()
    # the loaded table gives the same result as the path
    same = hwmodels.cost_table(layers, "cpu-x86", cands, measured=hwmodels.load_measured_latency(csv))
    assert same["latency_s"].tolist() == costs["latency_s"].tolist()


def test_measured_rows_for_candidates_the_device_does_not_run_are_ignored(tables):
    layers = tables.layers(tables.linear("fc1", 64, 32))
    measured = pd.DataFrame({"layer": ["fc1", "fc1"], "candidate": ["w8a8", "wfp4afp8"], "latency_s": [2e-6, 1e-6]})
    costs = hwmodels.cost_table(layers, "cpu-x86", tables.candidates("w8a8", "wfp4afp8"), measured=measured)
    assert costs["candidate"].tolist() == ["w8a8"]  # cpu-x86 does not list wfp4afp8
    assert costs["latency_s"].tolist() == [2e-6]


def test_a_quantized_input_costs_the_quantize_overhead_once_per_layer(tables, device_file):
    # ONNX Runtime runs a layer's input quantization as a node of its own: a fixed cost the
    # float layer (wfp32afp32) and the embedding lookup (its input is token ids) do not pay.
    with_float = NOMINAL_CPU.replace('"wfp8afp8"]', '"wfp8afp8", "wfp32afp32"]')
    plain_cpu = device_file("plain-cpu", with_float)
    ort_cpu = device_file(
        "ort-cpu",
        with_float.replace("launch_overhead_s = 5.0e-6", "quantize_overhead_s = 7e-6\nlaunch_overhead_s = 5.0e-6"),
    )
    layers = tables.layers(tables.linear("fc", 512, 512), tables.embedding("emb", 1000, 64, tokens=8))
    float_row = pd.DataFrame([("wfp32afp32", "fp32", "fp32", 32.0, 32.0)], columns=tables.candidates("w8a8").columns)
    cands = pd.concat([tables.candidates("w8a8"), float_row], ignore_index=True)
    plain = hwmodels.cost_table(layers, plain_cpu, cands).set_index(["layer", "candidate"])["latency_s"]
    extra = hwmodels.cost_table(layers, ort_cpu, cands).set_index(["layer", "candidate"])["latency_s"] - plain
    assert extra[("fc", "w8a8")] == pytest.approx(7e-6, rel=1e-9)
    assert extra[("fc", "wfp32afp32")] == 0 and extra[("emb", "w8a8")] == 0


STORES_INT8 = NOMINAL_CPU + "\n[stored_weight_bits]\nint8 = 8  # test value\n"


def test_a_device_that_stores_narrow_weights_widened_charges_w4a8_as_int8(tables, device_file):
    # ONNX Runtime's integer GEMM and convolution take 8-bit weights only: mpq's export stores
    # w4a8's 4-bit codes as int8, so they move and occupy as many bytes as w8a8's.
    plain, widened = device_file("plain-cpu", NOMINAL_CPU), device_file("int8-cpu", STORES_INT8)
    layers = tables.layers(tables.linear("fc", 512, 512), tables.embedding("emb", 1000, 64, tokens=8))
    cands = tables.candidates("w4a8", "w8a8", "w4a16")
    for batch in (1, 64):
        costs = hwmodels.cost_table(layers, widened, cands, batch_size=batch).set_index(["layer", "candidate"])
        for layer in ("fc", "emb"):
            w4, w8 = costs.loc[(layer, "w4a8")], costs.loc[(layer, "w8a8")]
            for column in ("latency_s", "energy_j", "dram_bytes", "weight_bytes", "bound"):
                assert w4[column] == w8[column], (layer, column, batch)
        # the weight-only int4 (MatMulNBits, executed in fp32) keeps its 4-bit storage
        old = hwmodels.cost_table(layers, plain, cands, batch_size=batch).set_index(["layer", "candidate"])
        assert costs.loc[("fc", "w4a16")].equals(old.loc[("fc", "w4a16")])
        assert costs.loc[("fc", "w4a16"), "weight_bytes"] == 512 * 512 * 4.125 / 8
    # bops stays the device-free proxy of the candidate's own bits
    assert costs.loc[("fc", "w4a8"), "bops"] == 512 * 512 * 4 * 8 * 64


def test_without_stored_weight_bits_costs_are_unchanged_bit_for_bit(tables, device_file):
    plain = device_file("plain-cpu", NOMINAL_CPU)
    layers = tables.layers(tables.linear("fc", 512, 512), tables.conv2d("conv", 16, 32, 3, 8, 8))
    for batch in (1, 32):
        costs = hwmodels.cost_table(layers, plain, tables.candidates(), batch_size=batch)
        # the old formulas: weight_bytes from the candidate's bits, int4 weights unpacked per call
        assert costs["weight_bytes"].tolist() == [
            p * b / 8
            for p, b in zip(
                costs["layer"].map({"fc": 512 * 512, "conv": 32 * 16 * 9}),
                costs["candidate"].map(dict(zip(tables.candidates()["candidate"], tables.candidates()["weight_bits"]))),
            )
        ]
        w4 = tables.row(costs, "fc", "w4a8")
        dram_bytes = 512 * 512 * 4 / 8 + 512 * 4 + batch * 1024
        assert w4["dram_bytes"] == dram_bytes
        compute_s = 2 * batch * 512 * 512 / 1331.2e9 + 512 * 512 / 41.6e9
        assert w4["latency_s"] == max(compute_s, dram_bytes / 20e9) + 5.0e-6


def test_stored_weight_bits_names_a_class_the_device_runs(tables, device_file):
    bad = device_file("bad-cpu", STORES_INT8.replace("int8 = 8  # test", "int4 = 8  # test"))
    with pytest.raises(hwmodels.DeviceSpecError, match=r"'stored_weight_bits.int4' is not a known key; use one of"):
        hwmodels.load_device(bad)
    bad = device_file("bad-cpu2", STORES_INT8.replace("int8 = 8  # test", "int8 = 7.5  # test"))
    with pytest.raises(hwmodels.DeviceSpecError, match=r"'stored_weight_bits.int8' must be a positive int"):
        hwmodels.load_device(bad)


def test_a_convolution_runs_at_the_conv_peak_of_its_class_where_the_device_gives_one(tables, device_file):
    # ONNX Runtime's ConvInteger (im2col + integer GEMM) is slower than its integer GEMM.
    slow_conv = device_file("conv-cpu", NOMINAL_CPU + "\n[conv_peak_ops_per_s]\nint8 = 10e9  # test value\n")
    plain = device_file("plain-cpu", NOMINAL_CPU)
    layers = tables.layers(tables.conv2d("conv", 32, 64, 3, 8, 8), tables.linear("fc", 512, 512))
    cands = tables.candidates("w8a8", "w16a16")
    costs = hwmodels.cost_table(layers, slow_conv, cands, batch_size=32).set_index(["layer", "candidate"])
    old = hwmodels.cost_table(layers, plain, cands, batch_size=32).set_index(["layer", "candidate"])
    conv = costs.loc[("conv", "w8a8")]
    compute_s = 2 * 32 * 64 * 32 * 9 * 64 / 10e9
    assert conv["bound"] == "compute" and conv["latency_s"] == pytest.approx(compute_s + 5e-6, rel=1e-12)
    assert conv["latency_s"] > old.loc[("conv", "w8a8"), "latency_s"]
    # the linear layer (int8 GEMM) and the fp32 convolution (no conv peak for fp32) are unchanged
    assert costs.loc[("fc", "w8a8")].equals(old.loc[("fc", "w8a8")])
    assert costs.loc[("conv", "w16a16")].equals(old.loc[("conv", "w16a16")])


def test_a_model_whose_weights_fit_in_cache_bytes_reads_none_from_dram(tables, device_file):
    # The digits CNN's 0.24 MB of fp32 weights stay in a 2 MiB L2 between calls; MiniLM's do not.
    cached = device_file(
        "cache-cpu", NOMINAL_CPU.replace("[peak_ops_per_s]", "cache_bytes = 2097152  # test\n\n[peak_ops_per_s]")
    )
    plain = device_file("plain-cpu", NOMINAL_CPU)
    cands = tables.candidates("w8a8", "w16a16")
    small = tables.layers(tables.linear("fc1", 256, 128), tables.linear("fc2", 128, 10))
    costs = hwmodels.cost_table(small, cached, cands).set_index(["layer", "candidate"])
    old = hwmodels.cost_table(small, plain, cands).set_index(["layer", "candidate"])
    # fc1 at w16a16: only its fp16 input and output move (the weights and bias stay cached)
    assert costs.loc[("fc1", "w16a16"), "dram_bytes"] == (256 + 128) * 2
    assert old.loc[("fc1", "w16a16"), "dram_bytes"] == 256 * 128 * 2 + 128 * 4 + (256 + 128) * 2
    assert (costs["latency_s"] <= old["latency_s"]).all() and (costs["energy_j"] < old["energy_j"]).all()
    # 1024 x 1024 fp16 weights (2 MiB) and their biases do not fit: costs as without the cache
    big = tables.layers(tables.linear("fc1", 1024, 1024), tables.linear("fc2", 1024, 10))
    assert hwmodels.cost_table(big, cached, cands).equals(hwmodels.cost_table(big, plain, cands))
