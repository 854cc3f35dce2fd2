"""A frontier point in the CLI's export formats, for the dashboard's download buttons.

The files are ``mpq.Run.export(point, to)``'s documents, exactly what ``mpq export RUN --point K
--to FORMAT`` writes; this module only names them. A format is offered by one entry of
:data:`EXPORT_FORMATS`: ``run.export`` returns a JSON document, downloaded as indented JSON, or
the bytes of a binary file, downloaded as they are.
"""

from __future__ import annotations

import json
import warnings

import mpq

#: Export format -> (file name suffix, MIME type), in the order of the page's buttons.
EXPORT_FORMATS = {
    "json": ("point.json", "application/json"),
    "hawq": ("hawq-bit-config.json", "application/json"),
    "compressed-tensors": ("quantization_config.json", "application/json"),
}


def export_file(run: mpq.Run, point: int, to: str) -> tuple[str, str, str | bytes]:
    """``(file name, MIME type, content)`` of a download: ``run.export(point, to)``, a document as
    indented JSON text, bytes as they are.

    Raises:
        UnknownNameError: ``to`` is not an export format.
        InvalidParameterError: no such point, or a format that cannot express the point (``hawq``
            for non-INT weights, ``compressed-tensors`` for a quantized conv layer...).
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", mpq.exceptions.DominatedPointWarning)  # the page marks beaten points itself
        document = run.export(point, to)
    content = document if isinstance(document, bytes) else json.dumps(document, indent=2, allow_nan=False)
    suffix, mime = EXPORT_FORMATS[to]
    return f"mpq-run{run.id}-point{point}-{suffix}", mime, content
