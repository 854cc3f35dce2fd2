"""A frontier point in the CLI's export formats, for the dashboard's download buttons.

The documents are ``mpq.Run.export(point, to)``'s, exactly what ``mpq export RUN --point K --to
json|hawq|hf`` writes; this module only names the downloaded files.
"""

from __future__ import annotations

import json

import mpq

#: Export format -> (file name suffix, MIME type).
EXPORT_FORMATS = {
    "json": ("point.json", "application/json"),
    "hawq": ("hawq-bit-config.json", "application/json"),
    "hf": ("hf-quantization-config.json", "application/json"),
}


def unavailable(run: mpq.Run, point: int, to: str) -> str | None:
    """Why the page offers no ``to`` download of the point, worded for the page (None: it does).

    ``run.export`` refuses the same points (hawq for non-INT weights), in words for the command
    line (``--to json``); the page names its own buttons instead.
    """
    if to != "hawq":
        return None
    floating = sorted(
        {name for name in run.assignment(point).values() if mpq.get_candidate(name).weight_format.family != "int"}
    )
    if not floating:
        return None
    others = " or ".join(fmt for fmt in EXPORT_FORMATS if fmt != to)
    return (
        f"HAWQ-V3's bit_config holds integer bit widths, and point {point} uses {', '.join(floating)}: "
        f"download {others} instead."
    )


def export_file(run: mpq.Run, point: int, to: str) -> tuple[str, str, str]:
    """``(file name, MIME type, text)`` of a download: ``run.export(point, to)`` as indented JSON.

    Raises:
        UnknownNameError: ``to`` is not an export format.
        InvalidParameterError: no such point, or ``hawq`` for a point with non-INT weights.
    """
    text = json.dumps(run.export(point, to), indent=2, allow_nan=False)
    suffix, mime = EXPORT_FORMATS[to]
    return f"mpq-run{run.id}-point{point}-{suffix}", mime, text
