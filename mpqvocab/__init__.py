"""mpq's vocabulary, shared by mpq, hwmodels and solvers: no torch, no database.

- the number-format catalogue (:func:`format_spec`, :func:`list_format_specs`, the candidate
  shorthands) and the arithmetic classes hardware executes formats in (:func:`arith_class`,
  :func:`holds`);
- parameter checks with one message template (:class:`Interval`, :class:`OneOf`,
  :func:`check_param`), did-you-mean and the unknown-name message (:func:`unknown_name`);
- the two user-input errors each package subclasses (:class:`InvalidParameterError`,
  :class:`UnknownNameError`).
"""

from mpqvocab._arith import ArithClass, arith_class, class_names, holds
from mpqvocab._catalogue import (
    ACT_SHORTHANDS,
    FAMILIES,
    GROUP_SIZES,
    INT_BITS,
    WEIGHT_SHORTHANDS,
    FormatSpec,
    MinifloatSpec,
    format_spec,
    list_format_specs,
)
from mpqvocab._checks import (
    PATH,
    InstanceOf,
    Interval,
    OneOf,
    check_param,
    choices_hint,
    did_you_mean,
    format_number,
    parameter_message,
    shown,
    unknown_name,
)
from mpqvocab._errors import InvalidParameterError, UnknownNameError
from mpqvocab._tables import LAYER_COLUMNS

__all__ = [
    # formats
    "FormatSpec",
    "MinifloatSpec",
    "format_spec",
    "list_format_specs",
    "FAMILIES",
    "INT_BITS",
    "GROUP_SIZES",
    "WEIGHT_SHORTHANDS",
    "ACT_SHORTHANDS",
    "ArithClass",
    "arith_class",
    "class_names",
    "holds",
    # checks and messages
    "InstanceOf",
    "PATH",
    "Interval",
    "OneOf",
    "check_param",
    "parameter_message",
    "did_you_mean",
    "choices_hint",
    "shown",
    "unknown_name",
    "format_number",
    # tables
    "LAYER_COLUMNS",
    # errors
    "InvalidParameterError",
    "UnknownNameError",
]
