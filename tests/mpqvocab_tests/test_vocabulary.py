"""The vocabulary: one catalogue of formats, one message template, one did-you-mean."""

import pytest

import hwmodels
import mpq
import mpqvocab
import solvers
from mpqvocab import Interval, OneOf, check_param, format_spec, list_format_specs


def test_catalogue_records_agree_with_their_own_arithmetic():
    for spec in list_format_specs():
        assert spec.family in mpqvocab.FAMILIES
        cls = mpqvocab.arith_class(spec.arith_class)  # every record names a real class
        assert mpqvocab.holds(cls.name, spec.arith_class)
        if spec.element is not None:
            assert spec.element.bits == spec.element_bits
        if spec.family == "int":
            assert cls.bits == spec.element_bits


def test_shorthands_name_catalogue_formats():
    for table in (mpqvocab.WEIGHT_SHORTHANDS, mpqvocab.ACT_SHORTHANDS):
        for name in table.values():
            assert format_spec(name).name == name


@pytest.mark.parametrize("name", ["fp32", "bf16", "int16", "nvfp4", "int4_g128"])
def test_mpq_and_hwmodels_know_the_same_formats(name):
    # mpq quantizes it and hwmodels costs it: the drift fp32 once showed cannot come back.
    from hwmodels._inputs import check_candidates

    assert mpq.get_format(name).bits_per_value == format_spec(name).bits_per_value
    table = check_candidates(mpq.candidate_table(["w8aint16" if name == "int16" else f"w{name}a{name}"]))
    assert table["act_class"].iloc[0] == format_spec(name).arith_class


def test_unknown_format_is_one_line_with_a_suggestion_in_every_package():
    for call, error in (
        (lambda: mpq.get_format("fp8e4m3"), mpq.exceptions.UnknownNameError),
        (lambda: format_spec("fp8e4m3"), mpqvocab.UnknownNameError),
    ):
        with pytest.raises(error) as caught:
            call()
        message = str(caught.value)
        assert message.startswith("unknown format 'fp8e4m3'; choose one of ") and "int4_g128, " in message
        assert message.endswith("(did you mean 'fp8_e4m3'?).") and "\n" not in message


@pytest.mark.parametrize(
    ("value", "constraint", "message"),
    [
        (0, Interval(int, 1, None), "an int in the range [1, inf). Got 0 instead."),
        (1.0, Interval(int, 1, None), "an int in the range [1, inf). Got 1.0 instead."),
        (True, Interval(float, 0, None), "a float in the range [0, inf). Got True instead."),
        (float("nan"), Interval(float, 0, 1, closed="neither"), "a float in the range (0, 1). Got nan instead."),
        (1, OneOf((True, False)), "one of True, False. Got 1 instead."),
    ],
)
def test_check_param_template(value, constraint, message):
    with pytest.raises(mpqvocab.InvalidParameterError) as caught:
        check_param("f", "x", value, constraint)
    assert str(caught.value) == f"The 'x' parameter of f must be {message}"


def test_each_package_raises_its_own_subclass_of_the_vocabulary_errors():
    pairs = [
        (mpq.exceptions.InvalidParameterError, mpq.MpqError),
        (hwmodels.InvalidParameterError, hwmodels.HwModelError),
        (solvers.InvalidParameterError, solvers.SolverError),
    ]
    for error, base in pairs:
        assert issubclass(error, mpqvocab.InvalidParameterError) and issubclass(error, base)
    assert issubclass(mpq.exceptions.UnknownNameError, mpqvocab.UnknownNameError)
    assert issubclass(solvers.UnknownNameError, mpqvocab.UnknownNameError)


def test_did_you_mean_prefers_a_prefix():
    assert mpqvocab.did_you_mean("h100", ["a100", "h100-sxm"]) == " (did you mean 'h100-sxm'?)"
    assert mpqvocab.did_you_mean("zzz", ["a100"]) == ""
