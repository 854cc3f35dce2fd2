"""Number formats, their fake-quantizers, and candidates (weight format, activation format).

The formats are those of the catalogue (``mpqvocab.list_format_specs``); the family modules
imported below register, with :func:`~mpq._formats.base.register_family`, the quantizer each
family's records build: ``integer`` (INT2..INT8 per tensor / channel / group, INT16),
``minifloat`` (FP8 E4M3/E5M2, FP6 E3M2/E2M3, FP4 E2M1), ``block`` (MXFP8/6/4, NVFP4) and
``reference`` (fp16, bf16, fp32).
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
