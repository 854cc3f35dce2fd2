"""Number formats, their fake-quantizers, and candidates (weight format, activation format).

Formats are registered by name with :func:`~mpq._formats.base.register_formats` in the family
modules imported below: ``integer`` (INT2..INT8 per tensor / channel / group), ``minifloat``
(FP8 E4M3/E5M2, FP6 E3M2/E2M3, FP4 E2M1), ``block`` (MXFP8/6/4, NVFP4) and ``reference``
(fp16, bf16).
"""

from mpq._formats import block, integer, minifloat, reference  # noqa: F401  (register the formats)
from mpq._formats.base import NumberFormat, get_format, list_formats
from mpq._formats.candidates import Candidate, candidate_table, get_candidate

__all__ = [
    "NumberFormat",
    "Candidate",
    "get_format",
    "list_formats",
    "get_candidate",
    "candidate_table",
]
