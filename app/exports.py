"""A frontier point in the CLI's export formats, for the dashboard's download buttons.

The documents are ``mpq.Run.export(point, to)``'s, exactly what ``mpq export RUN --point K --to
json|hawq|hf`` writes; this module only names the downloaded files.
"""

from __future__ import annotations

import json
import warnings

import mpq

#: Export format -> (file name suffix, MIME type).
EXPORT_FORMATS = {
    "json": ("point.json", "application/json"),
    "hawq": ("hawq-bit-config.json", "application/json"),
    "hf": ("hf-quantization-config.json", "application/json"),
}


def export_file(run: mpq.Run, point: int, to: str) -> tuple[str, str, str]:
    """``(file name, MIME type, text)`` of a download: ``run.export(point, to)`` as indented JSON.

    Raises:
        UnknownNameError: ``to`` is not an export format.
        InvalidParameterError: no such point, or ``hawq`` for a point with non-INT weights.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", mpq.exceptions.DominatedPointWarning)  # the page marks beaten points itself
        document = run.export(point, to)
    text = json.dumps(document, indent=2, allow_nan=False)
    suffix, mime = EXPORT_FORMATS[to]
    return f"mpq-run{run.id}-point{point}-{suffix}", mime, text
