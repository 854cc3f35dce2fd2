"""A frontier point in the CLI's export formats, for the dashboard's download buttons.

The files are ``mpq.Run.export``'s, exactly what ``mpq export RUN --point K --to FORMAT``
writes; this module only names them. A format is offered by one entry of
:data:`EXPORT_FORMATS`: a JSON document is downloaded as indented JSON; a model file
(:data:`MODEL_FILES`: ``run.export`` rebuilds the model and writes the file, seconds to a minute)
is written to a temporary folder and downloaded as its bytes.
"""

from __future__ import annotations

import json
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path

import mpq

#: Export format -> (file name suffix, MIME type), in the order of the page's buttons.
EXPORT_FORMATS = {
    "json": ("point.json", "application/json"),
    "hawq": ("hawq-bit-config.json", "application/json"),
    "compressed-tensors": ("quantization_config.json", "application/json"),
    "onnx": ("qdq.onnx", "application/octet-stream"),
    "qonnx": ("qonnx.onnx", "application/octet-stream"),
}
#: The formats whose export rebuilds the model and writes a file: the page builds them on request.
MODEL_FILES = ("onnx", "qonnx")


def build_unavailable(run: mpq.Run) -> str:
    """Why the page does not rebuild a run's model (``run.model_spec_allowed`` is False), and how
    the operator allows it."""
    spec = run.record.get("model_spec")
    if spec is None:
        return f"run {run.id} stores no model spec (it predates them), so its model cannot be rebuilt."
    return (
        f"Build is off for run {run.id}: its model is rebuilt by {spec!r}, a file the store names, and importing it "
        f"would run that file's code on this server; once you have checked the file, start the dashboard with "
        f"--allow-model {spec} (or, the file moved since, its new path: a file of the same name and factory)."
    )


def export_file(run: mpq.Run, point: int, to: str, allowed: Sequence[str] = ()) -> tuple[str, str, str | bytes]:
    """``(file name, MIME type, content)`` of a download: a document as indented JSON text, a
    model file as its bytes, its model rebuilt from the spec the operator allowed for the run
    (``allowed``: the dashboard's ``--allow-model`` specs; ``run.model_spec_allowed(allowed)``).

    Raises:
        UnknownNameError: ``to`` is not an export format.
        InvalidParameterError: no such point, or a format that cannot express the point (``hawq``
            for non-INT weights, ``compressed-tensors`` for a quantized conv layer, ``qonnx`` for
            float formats...), a model that cannot be rebuilt, or the export extra missing.
        TaskSpecError: a model file's stored ``--model`` spec no longer loads (its script moved).
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", mpq.exceptions.DominatedPointWarning)  # the page marks beaten points itself
        if to in MODEL_FILES:
            with tempfile.TemporaryDirectory() as folder:
                # The page calls this only where run.model_spec_allowed: the operator allowed the spec.
                spec = run.rebuild_spec(allowed)
                content = run.export(point, to, out=Path(folder) / "model.onnx", model=spec).read_bytes()
        else:
            content = json.dumps(run.export(point, to), indent=2, allow_nan=False)
    suffix, mime = EXPORT_FORMATS[to]
    return f"mpq-run{run.id}-point{point}-{suffix}", mime, content


def model_file(run: mpq.Run, point: int, to: str, allowed: Sequence[str] = ()) -> tuple[str, str, bytes, list[str]]:
    """:func:`export_file` of a model file, and mpq's notes on what the file stores (weights
    ONNX has no type for, stored dequantized).

    Raises:
        The errors of :func:`export_file`.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)
        name, mime, content = export_file(run, point, to, allowed)
    return name, mime, content, [str(w.message) for w in caught if w.category is UserWarning]
