"""measure_latency: every pair timed with the kernel of its executed path, a CSV hwmodels reads."""

from __future__ import annotations

import math

import hypothesis.strategies as st
import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from torch import nn

import hwmodels
import mpq
from mpq._formats.minifloat import E2M1, E3M2, E4M3, E5M2
from mpq._measure import MEASURE_COLUMNS, measure_latency, timing, write_measured_csv
from mpq._measure.api import _resize_batch
from mpq._measure.codes import Stored
from mpq._measure.kernels import _im2col, build_kernel
from mpq.exceptions import InvalidParameterError, UnknownNameError
from mpqvocab._catalogue import NVFP4_BLOCK

CPU_CANDIDATES = hwmodels.load_device("cpu-x86").candidates  # w4a8 w8a8 w8a16 w4a16 w16a16 wfp8afp8
FAST = {"warmup": 1, "repeats": 3}
needs_cuda = pytest.mark.skipif(
    not torch.cuda.is_available(),
    reason="no CUDA device (torch.cuda.is_available() is False): run on a machine with an NVIDIA GPU and CUDA torch",
)


@pytest.fixture
def measured(tiny_task) -> pd.DataFrame:
    return measure_latency(tiny_task, CPU_CANDIDATES, **FAST)


def _gen() -> torch.Generator:
    return torch.Generator().manual_seed(0)


# ---------------------------------------------------------------------------------------------
# The table


def test_every_layer_and_candidate_is_timed_with_ordered_spread(tiny_task, measured):
    layer_names = list(mpq.layers(tiny_task.model, tiny_task.calibration[0][0])["layer"])
    assert list(measured.columns) == MEASURE_COLUMNS
    # layer order, then candidate order, every pair once: the cost table's order
    assert list(zip(measured["layer"], measured["candidate"])) == [
        (layer, cand) for layer in layer_names for cand in CPU_CANDIDATES
    ]
    assert (measured["latency_s"] > 0).all() and (measured["latency_std_s"] >= 0).all()
    assert (measured["latency_min_s"] <= measured["latency_s"]).all()
    assert (measured["latency_s"] <= measured["latency_max_s"]).all()
    assert (measured["dequant_s"] < measured["latency_max_s"]).all()
    assert (measured["repeats"] == FAST["repeats"]).all() and (measured["device"] == "cpu").all()
    assert (measured["timing"] == "wall clock").all()
    assert measured.attrs == {"batch_size": 1, "num_threads": 1, "device": "cpu"}


def test_kernels_follow_the_executed_path_and_dequant_time_is_where_a_dequant_runs(measured):
    by_pair = measured.set_index(["layer", "candidate"])
    # "0" is the conv, "3" the first linear layer of the tiny task
    assert by_pair.loc[("0", "w8a8"), "kernel"] == "int8 im2col + _int_mm"
    assert by_pair.loc[("0", "w4a8"), "kernel"] == "int8 im2col + _int_mm after int4_pc weight unpack"
    assert by_pair.loc[("3", "w8a8"), "kernel"] == "int8 _int_mm"
    assert by_pair.loc[("3", "w4a8"), "kernel"] == "int8 _int_mm after int4_pc weight unpack"
    assert by_pair.loc[("3", "w16a16"), "kernel"] == "fp16 linear"
    assert by_pair.loc[("3", "w4a16"), "kernel"] == "fp16 linear after int4_pc weight dequant"
    assert by_pair.loc[("3", "w8a16"), "kernel"] == "fp16 linear after int8_pc weight dequant"
    assert by_pair.loc[("3", "wfp8afp8"), "kernel"] == "fp32 linear after fp8_e4m3 act, fp8_e4m3 weight dequant"
    converts = measured["kernel"].str.contains("unpack|dequant")
    assert (measured.loc[converts, "dequant_s"] > 0).all()
    assert (measured.loc[~converts, "dequant_s"] == 0).all()


def test_csv_round_trips_and_overrides_the_cost_model(tiny_task, measured, tmp_path):
    path = write_measured_csv(measured, tmp_path / "measured.csv")
    loaded = hwmodels.load_measured_latency(path)
    pd.testing.assert_frame_equal(loaded, measured[["layer", "candidate", "latency_s"]])
    layer_table = mpq.layers(tiny_task.model, tiny_task.calibration[0][0])
    candidates = mpq.candidate_table(CPU_CANDIDATES)
    modelled = hwmodels.cost_table(layer_table, "cpu-x86", candidates)
    overridden = hwmodels.cost_table(layer_table, "cpu-x86", candidates, measured=path)
    assert overridden["latency_measured"].all()
    np.testing.assert_array_equal(overridden["latency_s"], measured["latency_s"])
    assert not np.array_equal(modelled["latency_s"], overridden["latency_s"])


def test_progress_reports_every_pair(tiny_task):
    calls = []
    table = measure_latency(tiny_task, ["w8a8", "w16a16"], progress=lambda *a: calls.append(a), **FAST)
    assert [(done, total) for done, total, _ in calls] == [(i, len(table)) for i in range(1, len(table) + 1)]
    assert calls[0][2].startswith("0 w8a8: ") and calls[0][2].endswith("(int8 im2col + _int_mm)")


# ---------------------------------------------------------------------------------------------
# Kernels: the int8 path is an int8 GEMM with exact int32 results; the float paths are the op


@pytest.fixture
def int_mm_spy(monkeypatch):
    calls = []
    real = torch._int_mm

    def spy(a, b):
        out = real(a, b)
        calls.append((a, b, out))
        return out

    monkeypatch.setattr(torch, "_int_mm", spy)
    return calls


@pytest.mark.parametrize("candidate", ["w8a8", "w4a8", "w4a4", "w2a8"])
@pytest.mark.parametrize(
    "module, x",
    [
        (nn.Linear(24, 10), torch.randn(3, 5, 24)),
        (nn.Conv2d(4, 6, 3, stride=2, padding=1, groups=2), torch.randn(2, 4, 7, 7)),
        (nn.Conv1d(3, 8, 3, padding="same", dilation=2), torch.randn(2, 3, 9)),
    ],
    ids=["linear3d", "conv2d-grouped", "conv1d-same"],
)
def test_int_path_runs_int8_gemm_equal_to_int32_reference(module, x, candidate, int_mm_spy):
    cand = mpq.get_candidate(candidate)
    kernel = build_kernel(module, mpq._layers.layer_kind(module), x, cand, _gen())
    assert "_int_mm" in kernel.description
    with torch.inference_mode():
        out = kernel()
    assert out.shape == module(x).shape and out.dtype == torch.float32 and torch.isfinite(out).all()
    assert int_mm_spy, "the int8 GEMM did not run"
    for a, b, acc in int_mm_spy:
        assert a.dtype == b.dtype == torch.int8 and acc.dtype == torch.int32
        torch.testing.assert_close(acc, (a.long() @ b.long()).int(), rtol=0, atol=0)
    if cand.weight_format.element_bits < 8:
        a, b, _ = int_mm_spy[0]
        limit = 2 ** (cand.weight_format.element_bits - 1)
        assert -limit <= int(b.min()) and int(b.max()) < limit  # unpacked codes stay in range


@pytest.mark.parametrize(
    "conv, x_shape",
    [
        (nn.Conv2d(4, 6, 3, stride=2, padding=1), (2, 4, 7, 7)),
        (nn.Conv2d(4, 6, (3, 2), stride=(1, 2), padding=(2, 0), dilation=(2, 1), groups=2), (1, 4, 8, 9)),
        (nn.Conv1d(3, 8, 5, padding="same", dilation=2), (2, 3, 11)),
        (nn.Conv1d(3, 8, 5, padding="valid", stride=3), (2, 3, 11)),
    ],
)
def test_channels_last_im2col_gemm_equals_the_convolution(conv, x_shape):
    x = torch.randint(-8, 8, x_shape).double()
    w = torch.randint(-8, 8, conv.weight.shape).double()
    cols, out_size = _im2col(x.movedim(1, -1), conv)  # (B, *spatial, C) in, columns (kernel offset, channel)
    g, out_channels = conv.groups, w.shape[0]
    cols = cols.view(cols.shape[0], math.prod(conv.kernel_size), g, -1)
    w_rows = w.movedim(1, -1).reshape(out_channels, -1)  # stored (out, *kernel, in / groups)
    per_group = out_channels // g
    out = torch.cat(
        [cols[:, :, i].reshape(cols.shape[0], -1) @ w_rows[i * per_group : (i + 1) * per_group].t() for i in range(g)],
        dim=1,
    )
    out = out.reshape(x_shape[0], *out_size, -1).movedim(-1, 1)
    conv_fn = F.conv2d if isinstance(conv, nn.Conv2d) else F.conv1d
    expected = conv_fn(x, w, None, conv.stride, conv.padding, conv.dilation, g)
    torch.testing.assert_close(out, expected, rtol=0, atol=0)


def test_fp16_and_bf16_paths_are_the_native_op():
    torch.manual_seed(0)
    layer, x = nn.Linear(16, 8), torch.randn(4, 16)
    for name, dtype in (("w16a16", torch.float16), ("wbf16abf16", torch.bfloat16)):
        kernel = build_kernel(layer, "linear", x, mpq.get_candidate(name), _gen())
        expected = F.linear(x.to(dtype), layer.weight.detach().to(dtype), layer.bias.detach().to(dtype))
        with torch.inference_mode():
            torch.testing.assert_close(kernel(), expected, rtol=0, atol=0)


def test_low_bit_embedding_gathers_rows_then_dequantizes():
    table = nn.Embedding(50, 12)
    ids = torch.randint(0, 50, (3, 7))
    kernel = build_kernel(table, "embedding", ids, mpq.get_candidate("w4a8"), _gen())
    assert kernel.description == "int4_pc row gather + fp32 dequant"
    assert [s.name for s in kernel.stages] == ["compute", "dequant"]
    stored = Stored.random(mpq.get_format("int4_g32"), (50, 12), torch.float32, torch.device("cpu"), _gen())
    flat = ids.reshape(-1)
    torch.testing.assert_close(stored.take_rows(flat).dequantize(), stored.dequantize()[flat], rtol=0, atol=0)
    with torch.inference_mode():
        assert kernel().shape == (3, 7, 12)


# ---------------------------------------------------------------------------------------------
# Stored low-bit operands


def _reference_int(codes: torch.Tensor, bits: int) -> torch.Tensor:
    """Planar unpacking with Python ints: byte j of a row holds values j, j + P, ... low bits first."""
    per_byte, mask = 8 // bits, (1 << bits) - 1
    rows = []
    for row in codes.tolist():
        values = [((byte >> (bits * i)) & mask) for i in range(per_byte) for byte in row]
        rows.append([v - (1 << bits) if v >= 1 << (bits - 1) else v for v in values])
    return torch.tensor(rows, dtype=torch.int8)


@settings(max_examples=40, deadline=None)
@given(
    fmt_name=st.sampled_from(["int2_pc", "int3", "int4_pc", "int6_g32", "int8_pc", "int4_g64", "int2_g128"]),
    rows=st.integers(1, 5),
    cols=st.integers(1, 70),
)
def test_integer_codes_unpack_to_their_twos_complement_values(fmt_name, rows, cols):
    fmt = mpq.get_format(fmt_name)
    stored = Stored.random(fmt, (rows, cols), torch.float32, torch.device("cpu"), _gen())
    expected = _reference_int(stored.codes, fmt.element_bits)
    torch.testing.assert_close(stored.int8(), expected[:, :cols], rtol=0, atol=0)
    scales = stored.scales
    if fmt.group_size:
        scales = scales.repeat_interleave(fmt.group_size, dim=1)[:, : expected.shape[1]]
    torch.testing.assert_close(stored.dequantize(), (expected.float() * scales)[:, :cols])


@pytest.mark.parametrize("grid, dtype", [(E4M3, torch.float8_e4m3fn), (E5M2, torch.float8_e5m2)])
def test_fp8_code_values_match_torch_float8_bit_for_bit(grid, dtype):
    values = grid.code_values()
    decoded = torch.arange(256, dtype=torch.uint8).view(dtype).float()
    finite = torch.isfinite(decoded)
    torch.testing.assert_close(values[finite], decoded[finite], rtol=0, atol=0)
    assert (values[~finite].abs() == grid.max_value).all()  # NaN/inf codes saturate


@pytest.mark.parametrize("grid", [E2M1, E3M2, E4M3])
def test_code_values_are_exactly_the_grid(grid):
    values = grid.code_values()
    torch.testing.assert_close(grid.round(values), values, rtol=0, atol=0)  # every value is on the grid
    assert values.max() == grid.max_value and values.min() == -grid.max_value
    if grid is E2M1:
        assert sorted(set(values.abs().tolist())) == [0, 0.5, 1, 1.5, 2, 3, 4, 6]


def test_block_formats_scale_each_block():
    fmt = mpq.get_format("nvfp4")
    stored = Stored.random(fmt, (3, 40), torch.float32, torch.device("cpu"), _gen())
    assert stored.scales.shape == (3, math.ceil(40 / NVFP4_BLOCK)) and stored.codes.shape == (3, 24)
    codes = torch.take(E2M1.code_values(), stored.fields().long())
    expected = codes * stored.scales.repeat_interleave(NVFP4_BLOCK, dim=1)
    torch.testing.assert_close(stored.dequantize(), expected[:, :40], rtol=0, atol=0)


def test_batch_is_sliced_or_repeated_and_broadcast_inputs_stay():
    x = torch.arange(12.0).reshape(4, 3)
    assert torch.equal(_resize_batch(x, 4, 2), x[:2])
    assert torch.equal(_resize_batch(x, 4, 10), torch.cat([x, x, x])[:10])
    positions = torch.arange(7).reshape(1, 7)  # broadcast over the batch
    assert _resize_batch(positions, 4, 10) is positions


def test_batch_size_sets_the_timed_shape(int_mm_spy):
    model = nn.Sequential(nn.Linear(6, 5)).eval()
    measure_latency(model, ["w8a8"], example_input=torch.randn(4, 6), batch_size=9, warmup=0, repeats=1)
    assert {a.shape for a, _, _ in int_mm_spy} == {(9, 6)}


def test_a_layer_called_twice_is_timed_over_both_calls(int_mm_spy):
    shared = nn.Linear(4, 4)
    model = nn.Sequential(shared, nn.ReLU(), shared).eval()
    table = measure_latency(model, ["w8a8"], example_input=torch.randn(2, 4), warmup=0, repeats=1)
    assert table["kernel"].tolist() == ["int8 _int_mm x 2 calls"] and len(int_mm_spy) == 2


# ---------------------------------------------------------------------------------------------
# Parameter checks


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (
            {"batch_size": 0},
            "The 'batch_size' parameter of measure_latency must be an int in the range [1, inf). Got 0 instead.",
        ),
        ({"batch_size": 1.5}, "The 'batch_size' parameter of measure_latency must be an int"),
        ({"warmup": -1}, "The 'warmup' parameter of measure_latency must be an int in the range [0, inf). Got -1"),
        ({"repeats": 0}, "The 'repeats' parameter of measure_latency must be an int in the range [1, inf). Got 0"),
        ({"repeats": True}, "The 'repeats' parameter of measure_latency must be an int"),
        (
            {"device": "tpu"},
            "The 'device' parameter of measure_latency must be one of 'cpu', 'cuda'. Got 'tpu' instead.",
        ),
        ({"progress": 3}, "The 'progress' parameter of measure_latency must be a callable"),
        ({"candidates": "w8a8"}, "The 'candidates' parameter of measure_latency must be a non-empty list"),
        ({"candidates": []}, "The 'candidates' parameter of measure_latency must be a non-empty list"),
        ({"candidates": ["w8a8", "w8a8"]}, "measure_latency: candidates w8a8 given more than once"),
    ],
)
def test_bad_parameters_raise_one_line_errors(tiny_task, kwargs, message):
    kwargs = {"candidates": ["w8a8"], **kwargs}
    with pytest.raises(InvalidParameterError) as info:
        measure_latency(tiny_task, **kwargs)
    assert str(info.value).startswith(message) and "\n" not in str(info.value)


def test_unknown_candidate_names_the_known_formats(tiny_task):
    with pytest.raises(
        UnknownNameError, match=r"unknown activation format 'int7'; choose one of .*\(did you mean 'int"
    ):
        measure_latency(tiny_task, ["w8aint7"])


def test_a_model_needs_an_example_input_and_a_module():
    with pytest.raises(InvalidParameterError, match="'example_input' parameter of measure_latency"):
        measure_latency(nn.Linear(2, 2), ["w8a8"])
    with pytest.raises(InvalidParameterError, match="'task_or_model' parameter of measure_latency.*Got str"):
        measure_latency("model.pt", ["w8a8"])


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")
def test_cuda_without_a_gpu_says_so(tiny_task):
    with pytest.raises(InvalidParameterError, match=r"is 'cuda' but torch.cuda.is_available\(\) is False"):
        measure_latency(tiny_task, ["w8a8"], device="cuda")


def test_write_measured_csv_checks_the_table(measured, tmp_path):
    with pytest.raises(InvalidParameterError, match="'table' parameter of write_measured_csv"):
        write_measured_csv(measured.to_dict(), tmp_path / "x.csv")
    with pytest.raises(InvalidParameterError, match="lacks column 'latency_s'"):
        write_measured_csv(measured.drop(columns="latency_s"), tmp_path / "x.csv")
    bad = measured.assign(latency_s=measured["latency_s"].where(measured.index != 2, -1.0))
    with pytest.raises(InvalidParameterError, match="row 2 has latency_s=-1.0"):
        write_measured_csv(bad, tmp_path / "x.csv")


@pytest.mark.gpu
@needs_cuda
def test_cuda_kernels(tiny_task):
    fp8 = torch.cuda.get_device_capability() >= (8, 9)
    candidates = ["w8a8", "w4a8", "w16a16", "w4a16"] + (["wfp8afp8"] if fp8 else [])
    table = measure_latency(tiny_task, candidates, device="cuda", **FAST)
    assert (table["latency_s"] > 0).all() and (table["device"] == "cuda").all()
    assert (table["timing"] == "cuda graph").all()  # every path captures: no eager fallback
    linear = table.set_index(["layer", "candidate"]).loc["3"]
    assert linear.loc["w8a8", "kernel"] == "int8 _int_mm" and linear.loc["w16a16", "kernel"] == "fp16 linear"
    if fp8:
        assert linear.loc["wfp8afp8", "kernel"] == "fp8 _scaled_mm"


@pytest.mark.gpu
@needs_cuda
def test_cuda_stage_that_cannot_be_captured_is_timed_eagerly(tiny_task, monkeypatch, caplog):
    graphed = measure_latency(tiny_task, ["w16a16"], device="cuda", **FAST)

    def refuse(kernel, device):
        raise RuntimeError("operation not permitted when stream is capturing")

    monkeypatch.setattr(timing, "_capture", refuse)
    eager = measure_latency(tiny_task, ["w16a16"], device="cuda", **FAST)
    assert (eager["timing"] == "cuda events (eager)").all() and "not capturable in a CUDA graph" in caplog.text
    # Replayed graphs run the kernels without Python's launches in between: less time.
    assert graphed["latency_s"].sum() < eager["latency_s"].sum()
