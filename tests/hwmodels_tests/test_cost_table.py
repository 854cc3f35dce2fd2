"""The cost_table contract on every target: columns, order, filtering, input checks, units."""

from __future__ import annotations

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import hwmodels

COMMON = ["layer", "candidate", "latency_s", "energy_j", "weight_bytes", "bops", "latency_measured"]
TARGET_COLUMNS = {
    "h100-sxm": ["bound", "dram_bytes", "executed_class"],
    "cpu-x86": ["bound", "dram_bytes", "executed_class"],
    "zcu104": ["luts", "dsps", "brams", "cycles", "pe", "simd"],
    "stm32h743": ["flash_bytes", "sram_bytes", "cycles", "kernel"],
}


def _candidates_for(tables, device):
    return tables.candidates(mcu=hwmodels.load_device(device).kind == "mcu")


@pytest.mark.parametrize("device", list(TARGET_COLUMNS))
def test_columns_rows_and_order(tables, device):
    layers = tables.layers(tables.conv2d("features.0", 3, 8, 3, 8, 8), tables.linear("classifier", 512, 10))
    cands = _candidates_for(tables, device)
    costs = hwmodels.cost_table(layers, device, cands)
    assert list(costs.columns) == COMMON + TARGET_COLUMNS[device]
    runs = [c for c in cands["candidate"] if c in hwmodels.load_device(device).candidates]
    assert list(zip(costs["layer"], costs["candidate"])) == [(l, c) for l in ("features.0", "classifier") for c in runs]
    assert costs.index.tolist() == list(range(len(costs)))
    assert not costs["latency_measured"].any()
    assert costs.attrs["device"] == device and costs.attrs["batch_size"] == 1


def test_device_may_be_a_record_a_name_or_a_path(tables):
    layers = tables.layers(tables.linear("fc", 64, 64))
    cands = tables.candidates("w8a8")
    device = hwmodels.load_device("a100")
    by_record = hwmodels.cost_table(layers, device, cands)
    pd.testing.assert_frame_equal(by_record, hwmodels.cost_table(layers, "a100", cands))
    pd.testing.assert_frame_equal(by_record, hwmodels.cost_table(layers, device.path, cands))


def test_candidates_the_device_does_not_run_are_dropped(tables):
    costs = hwmodels.cost_table(tables.layers(tables.linear("fc", 8, 8)), "a100", tables.candidates("wfp8afp8", "w8a8"))
    assert costs["candidate"].tolist() == ["w8a8"]


def test_no_candidate_in_common_names_the_device_candidates(tables):
    with pytest.raises(hwmodels.InvalidTableError) as err:
        hwmodels.cost_table(tables.layers(tables.linear("fc", 8, 8)), "a100", tables.candidates("wfp8afp8"))
    assert str(err.value) == (
        "candidates table: none of wfp8afp8 runs on a100; "
        "include at least one of w4a4, w4a8, w4a16, w8a8, w8a16, w16a16."
    )


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda t: t.drop(columns=["groups"]), "layers table: missing column 'groups'"),
        (lambda t: t.assign(macs=[-5]), "column 'macs' of layer 'fc' must be a non-negative int, got -5"),
        (lambda t: t.assign(weight_params=[0]), "column 'weight_params' of layer 'fc' must be a positive int, got 0"),
        (lambda t: t.assign(in_elems=[2.5]), "column 'in_elems' of layer 'fc' must be a positive int, got 2.5"),
        (
            lambda t: t.assign(kind=["lineer"]),
            "layer 'fc' has kind 'lineer'; use one of linear, conv1d, conv2d, embedding (did you mean 'linear'?)",
        ),
        (
            lambda t: t.assign(weight_shape=[(8, 4)]),
            "'weight_shape' (8, 4) of layer 'fc' holds 32 weights but 'weight_params' is 64",
        ),
        (
            lambda t: t.assign(weight_shape=[(8, 8, 1)]),
            "'weight_shape' of linear layer 'fc' must be a tuple of 2 positive ints",
        ),
        (lambda t: pd.concat([t, t]), "layers table: layer 'fc' appears in rows 0 and 1"),
        (lambda t: t.iloc[:0], "layers table: has no rows"),
        (lambda t: t.to_dict(), "layers table: expected a pandas DataFrame, got dict"),
    ],
)
def test_bad_layers_table(tables, edit, message):
    layers = edit(tables.layers(tables.linear("fc", 8, 8)))
    with pytest.raises(hwmodels.InvalidTableError) as err:
        hwmodels.cost_table(layers, "a100", tables.candidates("w8a8"))
    assert message in str(err.value)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda t: t.drop(columns=["act_bits"]), "candidates table: missing column 'act_bits'"),
        (
            lambda t: t.assign(weight_format=["int5"]),
            "unknown format 'int5'; choose one of int2, int2_pc, int2_g32, int2_g64, int2_g128, int3,",
        ),
        (lambda t: t.assign(act_format=["fp8e4m3"]), "(did you mean 'fp8_e4m3'?)"),
        (
            lambda t: t.assign(weight_bits=[4.0]),
            "'weight_bits' of candidate 'w8a8' is 4.0, not a number of at least the 8 bits",
        ),
        (lambda t: pd.concat([t, t]), "candidates table: candidate 'w8a8' appears in rows 0 and 1"),
    ],
)
def test_bad_candidates_table(tables, edit, message):
    cands = edit(tables.candidates("w8a8"))
    with pytest.raises(hwmodels.InvalidTableError) as err:
        hwmodels.cost_table(tables.layers(tables.linear("fc", 8, 8)), "a100", cands)
    assert message in str(err.value)


@pytest.mark.parametrize("batch_size", [0, -1, 1.5, True, "2"])
def test_bad_batch_size(tables, batch_size):
    with pytest.raises(hwmodels.InvalidParameterError, match="The 'batch_size' parameter of cost_table must be an int"):
        layers = tables.layers(tables.linear("fc", 8, 8))
        hwmodels.cost_table(layers, "a100", tables.candidates("w8a8"), batch_size=batch_size)


def test_input_errors_are_value_errors_and_hwmodel_errors():
    errors = (hwmodels.InvalidTableError, hwmodels.UnknownDeviceError, hwmodels.DeviceSpecError)
    for cls in (*errors, hwmodels.LayerDoesNotFitError):
        assert issubclass(cls, hwmodels.HwModelError) and issubclass(cls, ValueError)


@pytest.mark.parametrize(
    "text, message",
    [
        ("layer,candidate\nfc,w8a8\n", "measured.csv: missing column 'latency_s' (it has layer, candidate)"),
        (
            "layer,candidate,latency_s\nfc,w8a8,1e-6\nfc,w4a8,fast\n",
            "measured.csv, row 3, column 'latency_s': 'fast' is not a positive number of seconds",
        ),
        (
            "layer,candidate,latency_s\nfc,w8a8,-1e-6\n",
            "measured.csv, row 2, column 'latency_s': '-1e-6' is not a positive number",
        ),
        ("layer,candidate,latency_s\nfc,w8a8,nan\n", "measured.csv, row 2, column 'latency_s': 'nan'"),
        ("layer,candidate,latency_s\n,w8a8,1e-6\n", "measured.csv, row 2, column 'layer': '' is not a name"),
        ("layer,candidate,latency_s\nfc,w8a8\n", "measured.csv, row 2, column 'latency_s': None"),
        (
            "layer,candidate,latency_s\nfc,w8a8,1e-6\nfc,w8a8,2e-6\n",
            "measured.csv, row 3: layer 'fc' with candidate 'w8a8' repeats row 2",
        ),
        ("layer,candidate,latency_s\n", "measured.csv: has no rows"),
    ],
)
def test_bad_measured_csv_names_file_row_and_column(tmp_path, text, message):
    path = tmp_path / "measured.csv"
    path.write_text(text)
    with pytest.raises(hwmodels.InvalidTableError) as err:
        hwmodels.load_measured_latency(path)
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_missing_measured_file(tmp_path):
    with pytest.raises(hwmodels.InvalidTableError, match="measured latency file not found"):
        hwmodels.load_measured_latency(tmp_path / "nope.csv")


def test_measured_layer_not_in_the_model_is_an_error(tables):
    measured = pd.DataFrame({"layer": ["fc2"], "candidate": ["w8a8"], "latency_s": [1e-6]})
    layers = tables.layers(tables.linear("fc1", 8, 8))
    expected = r"layer 'fc2' is not in the layers table \(did you mean 'fc1'\?\); measure the same model"
    with pytest.raises(hwmodels.InvalidTableError, match=expected):
        hwmodels.cost_table(layers, "a100", tables.candidates("w8a8"), measured=measured)


_LAYER_KIND = st.sampled_from(["linear", "conv2d", "embedding"])


@st.composite
def layer_rows(draw, tables):
    rows = []
    for i in range(draw(st.integers(1, 3))):
        kind = draw(_LAYER_KIND)
        n = draw(st.integers(1, 96))
        m = draw(st.integers(1, 96))
        if kind == "linear":
            rows.append(tables.linear(f"l{i}", n, m, tokens=draw(st.integers(1, 16))))
        elif kind == "conv2d":
            hw = draw(st.integers(1, 16))
            rows.append(tables.conv2d(f"l{i}", n, m, draw(st.sampled_from([1, 3])), hw + 2, hw))
        else:
            rows.append(tables.embedding(f"l{i}", n * 10, m, tokens=draw(st.integers(1, 32))))
    return rows


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    data=st.data(),
    device=st.sampled_from(["h100-sxm", "a100", "cpu-x86", "zcu104", "stm32h743"]),
    batch=st.integers(1, 64),
)
def test_units_are_consistent_on_every_target(tables, data, device, batch):
    layers = tables.layers(*data.draw(layer_rows(tables)))
    cands = _candidates_for(tables, device)
    costs = hwmodels.cost_table(layers, device, cands, batch_size=batch)
    merged = costs.merge(layers, on="layer").merge(cands, on="candidate")
    assert (costs["latency_s"] > 0).all()
    assert (costs["energy_j"] > 0).all()
    # cpu-x86 stores int4 weights run by its int8 kernels as int8 ([stored_weight_bits]): 4 bits more
    widened = (merged["weight_format"] == "int4_pc") & (merged.get("executed_class") == "int8")
    stored_bits = merged["weight_bits"] + 4 * widened if device == "cpu-x86" else merged["weight_bits"]
    assert (merged["weight_bytes"] == merged["weight_params"] * stored_bits / 8).all()
    assert (merged["bops"] == merged["macs"] * merged["weight_bits"] * merged["act_bits"] * batch).all()
    if "dram_bytes" in costs:
        assert (costs["dram_bytes"] > 0).all()
        # cpu-x86 keeps a model's weights in its L2 (cache_bytes) when they fit: activations only then
        parameter_bytes = (merged["weight_bytes"] + 4 * merged["bias_params"]).where(merged["kind"] != "embedding", 0)
        cached = device == "cpu-x86" and parameter_bytes.groupby(merged["layer"]).max().sum() <= 2**21
        if not cached:
            assert (costs["dram_bytes"] >= merged["weight_bytes"].where(merged["kind"] != "embedding", 0)).all()
    if "flash_bytes" in costs:
        assert (costs["flash_bytes"] >= merged["weight_bytes"]).all()


# (device, fewer bits, more bits): native int4 -> native int8 on Ampere/Ada; weight-only int4 ->
# int8 with fp16 activations (the same fp16 kernel) on every GPU; fp8 -> fp16 on H100.
KERNEL_PATHS = [
    ("a100", "w4a4", "w8a8"),
    ("rtx4090", "w4a4", "w8a8"),
    ("h100-sxm", "w4a16", "w8a16"),
    ("a100", "w4a16", "w8a16"),
    ("jetson-agx-orin", "w4a16", "w8a16"),
    ("h100-sxm", "wfp8afp8", "w16a16"),
]
DEVICES = {name: hwmodels.load_device(name) for name, _, _ in KERNEL_PATHS}


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data(), batch=st.integers(1, 2048))
def test_costs_never_fall_when_bits_rise_on_a_fixed_kernel_path(tables, data, batch):
    check_costs_never_fall(tables, data, batch)


@pytest.mark.slow
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data(), batch=st.integers(1, 2048))
def test_costs_never_fall_when_bits_rise_on_a_fixed_kernel_path_40_examples(tables, data, batch):
    check_costs_never_fall(tables, data, batch)


def check_costs_never_fall(tables, data, batch):
    layers = tables.layers(*data.draw(layer_rows(tables)))
    for device, low, high in KERNEL_PATHS:
        costs = hwmodels.cost_table(layers, DEVICES[device], tables.candidates(low, high), batch_size=batch)
        lo = costs[costs["candidate"] == low].set_index("layer")
        hi = costs[costs["candidate"] == high].set_index("layer")
        for column in ("latency_s", "energy_j", "weight_bytes", "dram_bytes", "bops"):
            assert (hi[column] >= lo[column]).all(), (device, low, high, column)
