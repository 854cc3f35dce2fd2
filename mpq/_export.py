"""A point of a run, written for other tools: plain JSON, HAWQ-V3's bit_config, a compressed-tensors
quantization config (llm-compressor, vLLM, transformers), or a model file (ONNX, QONNX: mpq/_onnx.py)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from mpq._compressed_tensors import quantization_config
from mpq._formats import get_candidate
from mpq._frontier_columns import cost_columns
from mpq._measured_frontier import configuration_key, higher_is_better, metric_drop
from mpq._param_checks import InstanceOf, check_param, unknown_name
from mpq._quantizer import describe
from mpq._warnings import mpq_warn
from mpq.exceptions import DominatedPointWarning, InvalidParameterError
from mpq.version import __version__

if TYPE_CHECKING:  # a Run's method calls export: _runs imports this module
    from mpq._runs import Run

EXPORT_FORMATS = ("json", "hawq", "compressed-tensors", "onnx", "qonnx")
#: The formats written as a model file at ``out`` rather than returned as a document.
FILE_FORMATS = ("onnx", "qonnx")


def _plain(value: Any) -> Any:
    value = value.item() if hasattr(value, "item") else value
    return None if isinstance(value, float) and value != value else value


def _point_row(run: Run, point: int) -> pd.Series:
    rows = run.frontier[run.frontier["point"] == point]
    if rows.empty and (run.assignments["point"] == point).any():
        # A baseline a strategy measured again is listed once, as the frontier point of the same
        # configuration: its own number still exports, with that row's costs and metric.
        key = configuration_key(run.assignment(point))
        rows = run.frontier[[configuration_key(run.assignment(int(p))) == key for p in run.frontier["point"]]].copy()
        rows["point"] = point
    if rows.empty:
        raise InvalidParameterError(
            f"run {run.id} has no point {point!r}; choose one of {', '.join(map(str, sorted(run.frontier['point'])))}."
        )
    return rows.iloc[0]


def _warn_beaten(run: Run, row: pd.Series) -> None:
    """Name the point that beats an exported one on measurement: as cheap or cheaper on every
    objective, and measured at least as well."""
    objectives, frontier = list(run.record["objectives"]), run.frontier
    higher = higher_is_better(run.record)
    beats = frontier[
        (frontier[objectives] <= row[objectives]).all(axis=1)
        & (metric_drop(row["measured_metric"], frontier["measured_metric"], higher) <= 0)
        & (frontier["point"] != row["point"])
    ]
    if beats.empty:
        return
    other = beats.sort_values("measured_metric", ascending=not higher).iloc[0]
    metric = run.record["metric_name"]

    def measured(point: pd.Series) -> str:
        values = [f"{c} {point[c]:.4g}" for c in objectives] + [f"{metric} {point['measured_metric']:.4g}"]
        return f"point {int(point['point'])}: {', '.join(values)}"

    mpq_warn(
        f"run {run.id} point {int(row['point'])} is beaten on measurement by point {int(other['point'])} "
        f"({measured(other)}; {measured(row)}); export point {int(other['point'])} instead.",
        DominatedPointWarning,
    )


def check_run(func: str, name: str, run: Any) -> None:
    """A Run's fields, checked by name: Run's own module imports this one, so not by class."""
    if not all(hasattr(run, field) for field in ("id", "record", "frontier", "assignments", "assignment")):
        raise InvalidParameterError(
            f"The {name!r} parameter of {func} must be an mpq.Run (mpq.open_run). Got {type(run).__name__} instead."
        )


def export(
    run: Run,
    point: int,
    to: str = "json",
    out: str | Path | None = None,
    *,
    model: str | None = None,
    checkpoint: str | Path | None = None,
) -> dict[str, Any] | Path:
    """One point of a run as a document or a model file another tool reads.

    Args:
        run: The run (``mpq.open_run``).
        point: A value of ``run.frontier["point"]``.
        to: ``json`` (layer -> weight and activation formats, with the point's predicted loss,
            costs and measured metric), ``hawq`` (HAWQ-V3's ``bit_config`` dictionary: layer ->
            integer weight bits; INT formats only), ``compressed-tensors`` (the
            ``quantization_config`` that llm-compressor quantizes a model to and vLLM loads: a
            config group per scheme targeting its layers by module name, 16-bit layers under
            ``ignore``; Linear and Embedding layers only, in INT, fp8_e4m3, NVFP4 and MX formats),
            ``onnx`` (opset 21, for ONNX Runtime: each quantized layer as a unit it runs on
            integer kernels, MatMulIntegerToFloat, QAttention, QLinearConv, ConvInteger or weight-only
            MatMulNBits, else QuantizeLinear/DequantizeLinear pairs; docs/deploy.md) or ``qonnx`` (the model with QONNX ``Quant`` nodes, FINN's input; INT
            per-tensor and per-channel formats only). The model files rebuild the run's model.
        out: The file ``onnx`` and ``qonnx`` write (required for them; unused by the others).
        model: The ``--model`` spec that rebuilds the run's model for ``onnx``, ``qonnx`` and a
            ``checkpoint`` (checked by hash against the run). Default: the run's stored spec when
            it is a built-in example; a stored ``file.py:factory`` spec is code the store names,
            so it is rebuilt only when passed here (``model=run.record["model_spec"]`` once you
            trust it).
        checkpoint: With ``compressed-tensors`` (a transformers model only): a new or empty
            folder to write the quantized checkpoint itself to, which
            ``AutoModelForCausalLM.from_pretrained`` and vLLM load: config.json with the
            quantization_config (status ``compressed``), the weights packed and scaled by
            compressed-tensors' compressors, the tokenizer files of the folder the model was
            loaded from. The run's model is rebuilt (as for ``onnx``) and calibrated on its data
            with its quantizer, so the checkpoint computes what :func:`mpq.apply` does (fp16
            inputs of ``a16`` layers aside; a bias correction of a layer without a bias is left
            out, with a warning). INT and fp8_e4m3 weights, inputs with a static scale.

    Returns:
        The document, JSON-serialisable; for ``onnx``, ``qonnx`` and a checkpoint, the path written.

    Raises:
        UnknownNameError: ``to`` is not one of json, hawq, compressed-tensors, onnx, qonnx.
        InvalidParameterError: ``run`` is not a Run, ``to`` not a str, no such point, ``hawq`` for a
            point with non-INT weights, ``compressed-tensors`` for a point it cannot express (a
            quantized conv layer, a format it lacks such as fp8_e5m2, a fused q/k/v or gate/up set
            of mixed formats, which vLLM cannot load); for a model file or checkpoint: ``out`` or
            ``checkpoint`` missing, not writable or (a checkpoint) not empty, the model the spec
            builds now is not the run's, or a format the file cannot hold (an activation ONNX has
            no QuantizeLinear for; any non-INT format in QONNX; MX or NVFP4 weights and inputs
            scaled per group or block in a checkpoint: the line names the layer and what to
            choose instead); ``checkpoint`` with another format than compressed-tensors.
        TaskSpecError: a model file of a run whose stored spec imports a file, without ``model``.
    """
    check_run("export", "run", run)
    check_param("export", "model", model, InstanceOf((str,), "a --model spec such as 'path/to/file.py:factory'", True))
    check_param("export", "checkpoint", checkpoint, InstanceOf((str, os.PathLike), "a folder path", True))
    if not isinstance(to, str):
        raise InvalidParameterError(
            f"The 'to' parameter of export must be a str among {', '.join(EXPORT_FORMATS)}. "
            f"Got {type(to).__name__} instead."
        )
    if to not in EXPORT_FORMATS:
        raise unknown_name("export format", to, EXPORT_FORMATS)
    if checkpoint is not None and to != "compressed-tensors":
        raise InvalidParameterError(
            f"export: a checkpoint is written in the compressed-tensors format, not {to}; pass "
            "to='compressed-tensors' (--to compressed-tensors), or no checkpoint."
        )
    row = _point_row(run, point)
    if not pd.isna(row.get("dominated", pd.NA)) and bool(row["dominated"]):
        _warn_beaten(run, row)
    if to in FILE_FORMATS:
        from mpq._onnx import export_file  # torch.onnx and onnx load only for a model file

        return export_file(run, point, to, out, model)
    if out is not None:
        raise InvalidParameterError(
            f"export: out is the file of an onnx or qonnx model; {to} returns its document, so pass no out "
            "(json.dump writes the document)."
        )
    assignment = run.assignment(point)
    candidates = {layer: get_candidate(name) for layer, name in assignment.items()}
    if to == "hawq":
        not_int = sorted({c.name for c in candidates.values() if c.weight_format.family != "int"})
        if not_int:
            raise InvalidParameterError(
                f"run {run.id} point {point}: HAWQ-V3's bit_config holds integer bit widths, and this point uses "
                f"{', '.join(not_int)}; export it as json instead."
            )
        return {
            f"bit_config_{run.record['task_name']}_run{run.id}_point{point}": {
                layer: c.weight_format.element_bits for layer, c in candidates.items()
            }
        }
    if to == "compressed-tensors":
        layers = run.tables.get("layers", pd.DataFrame(columns=["layer", "kind"]))
        kinds = dict(zip(layers["layer"], layers["kind"]))
        doc = quantization_config(f"run {run.id} point {point}", candidates, kinds, run.quantizer, run.fused)
        return doc if checkpoint is None else _write_run_checkpoint(run, point, candidates, kinds, checkpoint, model)
    return {
        "mpq_version": __version__,
        "run": run.id,
        "point": point,
        "task": run.record["task_name"],
        "target": run.target,
        "label": row["label"],
        "predicted_loss": _plain(row["predicted_loss"]),
        "measured_metric": _plain(row["measured_metric"]),
        "metric_name": run.record["metric_name"],
        "quantizer": describe(run.quantizer),
        "costs": {c: _plain(row[c]) for c in cost_columns(run.frontier)},
        "layers": {
            layer: {
                "candidate": c.name,
                "weight_format": c.weight_format.name,
                "act_format": c.act_format.name,
                "weight_bits": c.weight_format.bits_per_value,
                "act_bits": c.act_format.bits_per_value,
            }
            for layer, c in candidates.items()
        },
    }


def _write_run_checkpoint(
    run: Run, point: int, candidates: dict, kinds: dict, folder: str | Path, model: str | None
) -> Path:
    """The checkpoint of a run's point: its model rebuilt (hash checked), calibrated on its data
    with its quantizer, as the search measured it. Refusals come before the rebuild."""
    from mpq._checkpoint import check_storable, new_folder, require_compressed_tensors, write_checkpoint
    from mpq._onnx import rebuilt_task

    where = f"run {run.id} point {point}"
    require_compressed_tensors(where)
    new_folder(folder)
    check_storable(where, candidates, kinds)
    task = rebuilt_task(run, model)
    return write_checkpoint(
        task.model,
        run.assignment(point),
        folder,
        calibration=task.calibration,
        quantizer=run.quantizer,
        fused=run.fused,
        where=where,
    )
