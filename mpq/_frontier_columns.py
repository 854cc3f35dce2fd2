"""The columns of a run's frontier table: which say what a point is, which are its costs."""

from __future__ import annotations

import pandas as pd

FRONTIER_COLUMNS_DOC = """\
``point`` (int, 0.. within the run), ``label`` (``frontier`` or ``all-<candidate>`` for a uniform
baseline), ``is_baseline`` (bool), ``optimal`` (bool: proven optimal by the solver),
``predicted_loss`` (summed omega: predicted loss increase), one column per cost of the target
(``latency_s``, ``energy_j``, ``weight_bytes``, ``bops`` and the target's own: summed over layers,
or the maximum for ``sram_bytes``), ``measured_metric`` (the task's held-out metric of the
fake-quantized model; NaN until validated), ``dominated`` (pandas ``boolean``: True when another
point beats it on measurement; NA until validated)."""

#: Every frontier column that is not a cost.
POINT_COLUMNS = ("point", "label", "is_baseline", "optimal", "predicted_loss", "measured_metric", "dominated")


def cost_columns(frontier: pd.DataFrame) -> list[str]:
    """The cost columns of a frontier table (everything but the point's identity and scores)."""
    return [c for c in frontier.columns if c not in POINT_COLUMNS]


#: The run table ``mpq measure --runtime onnxruntime --all-points`` stores: ``point``,
#: ``ort_latency_s`` (median end to end), ``ort_latency_min_s``, ``batch_size``, ``threads``, ``runtime``.
ORT_TABLE = "onnxruntime_latency"


def stored_latency(run) -> pd.Series | None:
    """The run's stored ONNX Runtime end-to-end latency (median seconds) by point; None if never measured."""
    table = run.tables.get(ORT_TABLE)
    return None if table is None or table.empty else table.set_index("point")["ort_latency_s"]
