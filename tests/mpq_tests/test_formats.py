"""Number formats: bit-exact grids, round-to-nearest-even, scales, bits per value, candidates."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import mpqvocab
from mpq._formats import Candidate, candidate_table, get_candidate, get_format, list_formats
from mpq._formats.minifloat import FP16
from mpq.exceptions import InvalidParameterError, UnknownNameError

FP8 = {"fp8_e4m3": torch.float8_e4m3fn, "fp8_e5m2": torch.float8_e5m2}

# Hand-enumerated non-negative grids (OCP MX spec v1.0, section 5.3).
FP4_E2M1 = [0, 0.5, 1, 1.5, 2, 3, 4, 6]
FP6_E2M3 = [
    0,
    0.125,
    0.25,
    0.375,
    0.5,
    0.625,
    0.75,
    0.875,  # subnormals
    1,
    1.125,
    1.25,
    1.375,
    1.5,
    1.625,
    1.75,
    1.875,
    2,
    2.25,
    2.5,
    2.75,
    3,
    3.25,
    3.5,
    3.75,
    4,
    4.5,
    5,
    5.5,
    6,
    6.5,
    7,
    7.5,
]
FP6_E3M2 = [
    0,
    0.0625,
    0.125,
    0.1875,  # subnormals
    0.25,
    0.3125,
    0.375,
    0.4375,
    0.5,
    0.625,
    0.75,
    0.875,
    1,
    1.25,
    1.5,
    1.75,
    2,
    2.5,
    3,
    3.5,
    4,
    5,
    6,
    7,
    8,
    10,
    12,
    14,
    16,
    20,
    24,
    28,
]


# formats_conftest: fixtures of this file.
@pytest.fixture
def gaussian() -> torch.Tensor:
    return torch.randn(64, 256, generator=torch.Generator().manual_seed(0))


def fp8_values(dtype: torch.dtype) -> torch.Tensor:
    """Every finite value of a float8 dtype, from its 256 bit patterns, sorted, -0 dropped."""
    values = torch.arange(256, dtype=torch.uint8).view(dtype).float()
    return torch.unique(values[torch.isfinite(values)])


# ---------------------------------------------------------------- FP8: bit-exact against torch


@pytest.mark.parametrize("name", FP8)
def test_every_fp8_value_round_trips_and_equals_torch(name):
    fmt, dtype = get_format(name), FP8[name]
    patterns = torch.arange(256, dtype=torch.uint8).view(dtype).float()
    finite = patterns[torch.isfinite(patterns)]
    assert finite.numel() == (254 if name == "fp8_e4m3" else 248)  # e4m3fn: 2 NaN; e5m2: 6 NaN + 2 inf
    q = fmt.quantize(finite, amax=fmt.max_value)  # per-tensor scale = 1
    assert torch.equal(q, finite)
    assert torch.equal(q, finite.to(dtype).float())
    assert torch.equal(torch.signbit(q), torch.signbit(finite))  # -0.0 stays -0.0


@pytest.mark.parametrize("name", FP8)
def test_fp8_midpoints_round_to_even_like_torch(name):
    fmt, dtype = get_format(name), FP8[name]
    values = fp8_values(dtype)
    midpoints = (values[:-1] + values[1:]) / 2  # exact in float32
    q = fmt.quantize(midpoints, amax=fmt.max_value)
    assert torch.equal(q, midpoints.to(dtype).float())
    assert torch.isin(q, values).all()
    codes = q.to(dtype).view(torch.uint8)
    assert ((codes & 1) == 0).all(), "a tie went to the odd mantissa"
    # off-tie points go to the nearer neighbour
    below, above = values[:-1] + (values[1:] - values[:-1]) / 4, values[1:] - (values[1:] - values[:-1]) / 4
    assert torch.equal(fmt.quantize(below, amax=fmt.max_value), values[:-1])
    assert torch.equal(fmt.quantize(above, amax=fmt.max_value), values[1:])


@pytest.mark.parametrize("name", FP8)
@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_fp8_any_value_in_range_equals_torch_cast(name, data):
    fmt, dtype = get_format(name), FP8[name]
    x = torch.tensor(data.draw(st.lists(st.floats(-fmt.max_value, fmt.max_value, width=32), min_size=1, max_size=16)))
    assert torch.equal(fmt.quantize(x, amax=fmt.max_value), x.to(dtype).float())


def test_generic_minifloat_rounding_equals_torch_float16():
    x = torch.cat([torch.randn(4096) * 10.0 ** torch.randint(-7, 4, (4096,)), torch.tensor([6e-8, 3e-8, 65504.0])])
    assert torch.equal(FP16.round(x), x.half().float())
    assert torch.equal(FP16.round(x.double()), x.half().double())  # the float64 path too


# ---------------------------------------------------------------- FP6 / FP4: grids by hand


@pytest.mark.parametrize(("name", "grid"), [("fp4_e2m1", FP4_E2M1), ("fp6_e2m3", FP6_E2M3), ("fp6_e3m2", FP6_E3M2)])
def test_fp6_fp4_grids_enumerated_by_hand(name, grid):
    fmt = get_format(name)
    magnitudes = torch.tensor(grid)
    assert len(grid) == 2 ** (fmt.element_bits - 1)
    assert fmt.max_value == max(grid)
    signed = torch.cat([-magnitudes, magnitudes])
    assert torch.equal(fmt.quantize(signed, amax=fmt.max_value), signed)
    sweep = torch.linspace(-1.5 * fmt.max_value, 1.5 * fmt.max_value, 40001)
    reached = torch.unique(fmt.quantize(sweep, amax=1.5 * fmt.max_value) / 1.5)
    assert torch.equal(reached, torch.unique(signed))
    # ties between neighbours go to the even code (index in the magnitude list)
    mids = (magnitudes[:-1] + magnitudes[1:]) / 2
    even = torch.tensor([grid[i] if i % 2 == 0 else grid[i + 1] for i in range(len(grid) - 1)])
    assert torch.equal(fmt.quantize(mids, amax=fmt.max_value), even)


def test_fp4_per_tensor_scale_by_hand():
    # amax 12 -> scale 12/6 = 2; x/2 = [6, 2.5, -0.6, 0.2] -> [6, 2, -0.5, 0]
    q = get_format("fp4_e2m1").quantize(torch.tensor([12.0, 5.0, -1.2, 0.4]))
    assert torch.equal(q, torch.tensor([12.0, 4.0, -1.0, 0.0]))


# ---------------------------------------------------------------- INT


@pytest.mark.parametrize("bits", [2, 3, 4, 6, 8])
def test_int_levels(bits):
    fmt = get_format(f"int{bits}")
    levels = 2 ** (bits - 1) - 1
    assert fmt.max_value == levels
    x = torch.linspace(-1.2, 1.2, 5001)
    q = fmt.quantize(x, amax=1.0)
    k = q * levels  # scale = 1 / levels
    assert torch.allclose(k, k.round(), atol=1e-4)
    assert torch.equal(torch.unique(k.round()), torch.arange(-levels, levels + 1, dtype=torch.float32))


def test_int4_per_tensor_by_hand_rounds_half_to_even_and_saturates():
    q = get_format("int4").quantize(torch.tensor([0.4, 0.5, 1.5, -2.5, 3.49, 100.0]), amax=7.0)
    assert torch.equal(q, torch.tensor([0.0, 0.0, 2.0, -2.0, 3.0, 7.0]))


def test_int4_per_channel_scales_by_hand():
    w = torch.tensor([[1.0, -2.0, 0.5, 3.5], [0.25, -0.5, 1.75, 0.3]])
    # row 0: amax 3.5 -> scale 0.5; row 1: amax 1.75 -> scale 0.25, 0.3/0.25 = 1.2 -> 1
    expected = torch.tensor([[1.0, -2.0, 0.5, 3.5], [0.25, -0.5, 1.75, 0.25]])
    assert torch.equal(get_format("int4_pc").quantize(w), expected)
    # a calibrated per-channel amax: row 0 at 7 (scale 1), row 1 at 0.7 (saturates 1.75)
    q = get_format("int4_pc").quantize(w, amax=torch.tensor([7.0, 0.7]))
    assert torch.equal(q[0], torch.tensor([1.0, -2.0, 0.0, 4.0]))  # 0.5 -> 0, 3.5 -> 4 (ties to even)
    assert torch.allclose(q[1], torch.tensor([0.2, -0.5, 0.7, 0.3]), atol=1e-6)


def test_int4_per_group_scales_by_hand_with_fp16_scale_and_ragged_group():
    x = torch.zeros(2, 40)
    x[0, :3] = torch.tensor([3.5, 0.74, -1.26])  # group 0: scale 0.5
    x[0, 32:35] = torch.tensor([14.0, 5.0, -3.0])  # ragged group (8 values): scale 2
    x[1, 32:34] = torch.tensor([0.7, 0.1])  # scale 0.1, stored as fp16
    fp16_tenth = 0.0999755859375  # 0.1 rounded to fp16 (0x2E66)
    assert torch.tensor(0.1).half().item() == fp16_tenth
    expected = torch.zeros(2, 40)
    expected[0, :3] = torch.tensor([3.5, 0.5, -1.5])
    expected[0, 32:35] = torch.tensor([14.0, 4.0, -4.0])  # 2.5 -> 2, -1.5 -> -2 (ties to even)
    expected[1, 32:34] = torch.tensor([7 * fp16_tenth, fp16_tenth])
    assert torch.equal(get_format("int4_g32").quantize(x), expected)


def test_conv_weight_is_quantized_as_rows_of_in_times_kernel():
    w = torch.randn(4, 3, 3, 3, generator=torch.Generator().manual_seed(1))
    for name in ("int4_pc", "int4_g32", "mxfp4", "nvfp4"):
        fmt = get_format(name)
        assert torch.equal(fmt.quantize(w), fmt.quantize(w.reshape(4, 27)).reshape(w.shape))
    v = w.flatten()[:40]  # a 1-D tensor is one row
    for name in ("int4_pc", "int4_g32", "mxfp4", "nvfp4"):
        assert torch.equal(get_format(name).quantize(v), get_format(name).quantize(v[None])[0])
    assert torch.equal(get_format("int4_pc").quantize(v), get_format("int4").quantize(v))
    row_scale = w.reshape(4, -1).abs().amax(1) / 7
    k = get_format("int4_pc").quantize(w).reshape(4, -1) / row_scale[:, None]
    assert torch.allclose(k, k.round(), atol=1e-5)


@settings(max_examples=100, deadline=None)
@given(
    xs=st.lists(st.floats(-10, 10, width=32), min_size=1, max_size=32),
    amax=st.floats(0.015625, 10, width=32),
    name=st.sampled_from(["int2", "int4", "int8", "fp8_e4m3", "fp6_e2m3", "fp4_e2m1", "nvfp4"]),
)
def test_static_formats_are_idempotent_monotone_and_bounded(xs, amax, name):
    fmt = get_format(name)
    x = torch.tensor(sorted(xs))
    q = fmt.quantize(x, amax=amax)
    assert torch.equal(fmt.quantize(q, amax=amax), q)
    assert (q[1:] >= q[:-1]).all()
    assert q.abs().max() <= amax * (1 + 1e-6)
    if fmt.family == "int":
        assert ((q - x.clamp(-amax, amax)).abs() <= amax / fmt.max_value / 2 * (1 + 1e-5)).all()


# ---------------------------------------------------------------- block formats


def test_mxfp4_shared_scale_rule_by_hand():
    x = torch.zeros(1, 40)
    x[0, :4] = torch.tensor([100.0, 5.0, -20.0, 0.7])  # amax 100: floor(log2) 6, emax 2 -> X = 2**4
    x[0, 32:34] = torch.tensor([0.75, 0.3])  # ragged block, amax 0.75: floor(log2) -1 -> X = 2**-3
    expected = torch.zeros(1, 40)
    # 100/16 = 6.25 saturates to 6; 5/16 = 0.3125 -> 0.5; -20/16 = -1.25 tie -> -1; 0.7/16 -> 0
    expected[0, :4] = torch.tensor([96.0, 8.0, -16.0, 0.0])
    expected[0, 32:34] = torch.tensor([0.75, 0.25])  # 0.75*8 = 6; 0.3*8 = 2.4 -> 2
    assert torch.equal(get_format("mxfp4").quantize(x), expected)


def test_mxfp8_scale_rule_saturates_the_top_of_the_binade():
    # amax 1.9: floor(log2) 0, emax_elem 8 -> X = 2**-8; elements x * 256 on the E4M3 grid
    x = torch.tensor([1.9, 0.3, -0.01] + [0.0] * 29)
    # 486.4 > 448 saturates (OCP MX v1.0 section 6.3); 76.8 -> 80 (step 8); -2.56 -> -2.5 (step 0.25)
    expected = torch.tensor([448 / 256, 80 / 256, -2.5 / 256] + [0.0] * 29)
    assert torch.equal(get_format("mxfp8").quantize(x), expected)


def test_nvfp4_two_level_scale_by_hand():
    x = torch.zeros(32)
    x[:4] = torch.tensor([12.0, 5.0, -3.0, 1.0])
    x[16] = 1.0
    # tensor scale 12 / (448*6); block 0 scale (12/6)/tensor scale = 448 -> decoded 2
    # block 1 scale (1/6)/tensor scale = 37.33 -> E4M3 36 -> decoded 36*12/2688
    q = get_format("nvfp4").quantize(x)
    assert torch.equal(q[:4], torch.tensor([12.0, 4.0, -3.0, 1.0]))  # 2.5 tie -> 2
    assert q[16].item() == pytest.approx(6 * 36 * 12 / 2688, rel=1e-6)  # 1/scale = 6.22 -> 6
    # a calibrated amax feeds the tensor scale: 26.88/2688 = 0.01; block scale 200 -> E4M3 192 (tie)
    assert get_format("nvfp4").quantize(torch.tensor([12.0] + [0.0] * 15), amax=26.88)[0].item() == pytest.approx(
        6 * 192 * 0.01, rel=1e-6
    )


# ---------------------------------------------------------------- every format


BITS_PER_VALUE = {
    "int2": 2,
    "int4": 4,
    "int8_pc": 8,
    "int4_g128": 4.125,
    "int4_g32": 4.5,
    "int8_g64": 8.25,
    "int3_g32": 3.5,
    "fp8_e4m3": 8,
    "fp8_e5m2": 8,
    "fp6_e3m2": 6,
    "fp6_e2m3": 6,
    "fp4_e2m1": 4,
    "mxfp8": 8.25,
    "mxfp6": 6.25,
    "mxfp4": 4.25,
    "nvfp4": 4.5,
    "fp16": 16,
    "bf16": 16,
}


@pytest.mark.parametrize(("name", "bits"), BITS_PER_VALUE.items())
def test_bits_per_value(name, bits):
    assert get_format(name).bits_per_value == bits


def test_registry_fields_are_consistent():
    names = list_formats()
    assert len(names) == 5 * 5 + 5 + 4 + 3 + 1  # int x granularities, floats, blocks, references, int16
    for name in names:
        fmt, spec = get_format(name), mpqvocab.format_spec(name)
        assert fmt.name == name
        assert (fmt.family, fmt.element_bits, fmt.bits_per_value, fmt.granularity, fmt.group_size) == (
            spec.family,
            spec.element_bits,
            spec.bits_per_value,
            spec.granularity,
            spec.group_size,
        )
        assert fmt.family in ("int", "float", "block", "reference")
        assert (fmt.group_size is None) == (fmt.granularity in ("tensor", "channel"))
        amortised = 16 if fmt.granularity == "group" else 8 if fmt.granularity == "block" else 0
        scale_bits = amortised / fmt.group_size if fmt.group_size else 0
        assert fmt.bits_per_value == fmt.element_bits + scale_bits
    assert [get_format(n).max_value for n in ("int4", "fp8_e4m3", "fp8_e5m2", "fp6_e3m2", "fp6_e2m3")] == [
        7,
        448,
        57344,
        28,
        7.5,
    ]


@pytest.mark.parametrize("name", list_formats())
def test_zeros_give_zeros_and_amax_zero_gives_zeros(name):
    fmt = get_format(name)
    assert torch.equal(fmt.quantize(torch.zeros(3, 70)), torch.zeros(3, 70))
    assert torch.equal(fmt.quantize(torch.randn(3, 70), amax=0.0), torch.zeros(3, 70))


@pytest.mark.parametrize("name", list_formats())
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16, torch.float64])
def test_shape_and_dtype_kept(name, dtype):
    fmt = get_format(name)
    for shape in [(3, 5, 7), (70,), (), (0, 4)]:
        x = torch.randn(shape, generator=torch.Generator().manual_seed(2)).to(dtype)
        q = fmt.quantize(x)
        assert q.shape == x.shape and q.dtype == dtype
        assert not torch.isnan(q).any()
        if x.numel():
            assert (q - x).abs().max() <= 2 * x.abs().max()


@pytest.mark.parametrize("name", ["int8", "int4_pc", "int4_g32", "fp8_e4m3", "mxfp6", "nvfp4", "fp16"])
def test_values_beyond_amax_saturate(name):
    fmt = get_format(name)
    x = torch.randn(4, 64, generator=torch.Generator().manual_seed(3)) * 3
    assert torch.equal(fmt.quantize(x, amax=1.0), fmt.quantize(x.clamp(-1, 1), amax=1.0))
    assert torch.equal(
        get_format("int8").quantize(torch.tensor([2.0, -5.0, 0.5]), amax=1.0), torch.tensor([1.0, -1.0, 64 / 127])
    )  # 63.5 -> 64


def test_reference_formats_cast():
    x = torch.randn(100, generator=torch.Generator().manual_seed(4))
    assert torch.equal(get_format("fp16").quantize(x), x.half().float())
    assert torch.equal(get_format("bf16").quantize(x), x.bfloat16().float())


def test_error_falls_as_bits_rise(gaussian):
    def mse(name: str) -> float:
        return float((get_format(name).quantize(gaussian) - gaussian).pow(2).mean())

    for chain in (
        ["int2", "int3", "int4", "int6", "int8"],
        ["int2_pc", "int3_pc", "int4_pc", "int6_pc", "int8_pc"],
        ["int2_g32", "int3_g32", "int4_g32", "int6_g32", "int8_g32"],
        ["fp4_e2m1", "fp6_e3m2", "fp8_e4m3"],
        ["fp4_e2m1", "fp6_e2m3", "fp8_e4m3"],
        ["mxfp4", "mxfp6", "fp16"],
        ["mxfp4", "mxfp8", "fp16"],  # not mxfp6 > mxfp8: both have 3 mantissa bits, and the MX
    ):  # scale rule saturates E4M3 blocks whose max lands in (448, 512) at 448
        errors = [mse(n) for n in chain]
        assert errors == sorted(errors, reverse=True) and len(set(errors)) == len(errors), (chain, errors)


# ---------------------------------------------------------------- errors


def test_unknown_format_lists_names_and_suggests():
    with pytest.raises(UnknownNameError) as info:
        get_format("fp8_e4m4")
    message = str(info.value)
    assert message.startswith("unknown format 'fp8_e4m4'; choose one of ")
    assert "\n" not in message
    assert all(name in message for name in list_formats())
    assert message.endswith("(did you mean 'fp8_e4m3'?).")
    with pytest.raises(InvalidParameterError):
        get_format(4)


def test_quantize_rejects_bad_inputs():
    fmt = get_format("int8_pc")
    with pytest.raises(InvalidParameterError, match="floating-point tensor, got a torch.int64 tensor"):
        fmt.quantize(torch.arange(4))
    with pytest.raises(InvalidParameterError, match="finite and >= 0"):
        fmt.quantize(torch.randn(2, 3), amax=-1.0)
    with pytest.raises(InvalidParameterError, match="finite and >= 0"):
        fmt.quantize(torch.randn(2, 3), amax=math.nan)
    with pytest.raises(InvalidParameterError, match=r"shape \(\) or \(2,\)"):
        fmt.quantize(torch.randn(2, 3), amax=torch.ones(3))


# ---------------------------------------------------------------- candidates


@pytest.mark.parametrize(
    ("name", "weight", "act"),
    [
        ("w4a8", "int4_pc", "int8"),
        ("w8a8", "int8_pc", "int8"),
        ("w2a16", "int2_pc", "fp16"),
        ("w16a16", "fp16", "fp16"),
        ("wfp8afp8", "fp8_e4m3", "fp8_e4m3"),
        ("wfp6afp8", "fp6_e3m2", "fp8_e4m3"),
        ("wfp4a16", "fp4_e2m1", "fp16"),
        ("wint4_g128aint8", "int4_g128", "int8"),
        ("wmxfp4amxfp8", "mxfp4", "mxfp8"),
        ("wnvfp4afp8", "nvfp4", "fp8_e4m3"),
        ("wbf16abf16", "bf16", "bf16"),
        ("wint8_pcafp8_e5m2", "int8_pc", "fp8_e5m2"),
        ("w4aint4_g32", "int4_pc", "int4_g32"),
    ],
)
def test_candidate_parsing(name, weight, act):
    candidate = get_candidate(name)
    assert (candidate.name, candidate.weight_format.name, candidate.act_format.name) == (name, weight, act)
    assert get_candidate(candidate) is candidate


def test_no_format_name_contains_an_a():
    assert not [name for name in list_formats() if "a" in name]


@pytest.mark.parametrize("name", ["x4a8", "w4", "wa8", "w4a", "4a8", ""])
def test_malformed_candidate_states_the_grammar(name):
    with pytest.raises(InvalidParameterError) as info:
        get_candidate(name)
    message = str(info.value)
    assert message.startswith(f"candidate {name!r}: not of the form w<W>a<A>; ") and "\n" not in message
    assert "e.g. w4a8" in message


def test_unknown_candidate_format_suggests():
    with pytest.raises(
        UnknownNameError,
        match=r"^candidate 'wnvfp5a8': unknown weight format 'nvfp5'; choose one of .*"
        r"\(did you mean 'nvfp4'\?\)\.$",
    ):
        get_candidate("wnvfp5a8")
    with pytest.raises(UnknownNameError, match="unknown activation format '7'"):
        get_candidate("w4a7")


def test_per_channel_activation_rejected():
    with pytest.raises(InvalidParameterError, match="use 'int8' \\(per tensor\\)"):
        get_candidate("w8aint8_pc")
    with pytest.raises(InvalidParameterError):
        get_candidate(8)


def test_candidate_table():
    table = candidate_table(["w4a8", "wint4_g128aint8", get_candidate("wmxfp4amxfp8"), "wnvfp4afp8", "w16a16"])
    assert list(table.columns) == ["candidate", "weight_format", "act_format", "weight_bits", "act_bits"]
    assert table.to_dict("list") == {
        "candidate": ["w4a8", "wint4_g128aint8", "wmxfp4amxfp8", "wnvfp4afp8", "w16a16"],
        "weight_format": ["int4_pc", "int4_g128", "mxfp4", "nvfp4", "fp16"],
        "act_format": ["int8", "int8", "mxfp8", "fp8_e4m3", "fp16"],
        "weight_bits": [4.0, 4.125, 4.25, 4.5, 16.0],
        "act_bits": [8.0, 8.0, 8.25, 8.0, 16.0],
    }
    assert table["act_bits"].dtype == float
    with pytest.raises(InvalidParameterError, match="w4a8 given more than once"):
        candidate_table(["w4a8", "w8a8", "w4a8"])
    with pytest.raises(InvalidParameterError, match="must be a non-empty list"):
        candidate_table("w4a8")
    assert isinstance(get_candidate("w4a8"), Candidate)
