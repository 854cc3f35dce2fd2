"""mpq: mixed-precision bit allocation for neural networks.

Probe a model's per-layer sensitivity, cost every layer at every number format on a target
device, and solve for the Pareto frontier of accuracy loss against latency, energy and memory.
"""

import importlib as _importlib

from mpq import exceptions
from mpq.exceptions import MpqError
from mpq.version import __version__

# The public names and the private module each lives in, imported on first use (PEP 562): torch,
# scipy, pandas and SQLAlchemy load with the function that needs them, so `import mpq.cli` (and
# `mpq --help`) stays light.
_LAZY = {
    # tasks
    "Task": "mpq._task",
    "load_task": "mpq._task_spec",
    "list_examples": "mpq._examples",
    # model tables and formats
    "layers": "mpq._layers",
    "fused_sets": "mpq._layers",
    "NumberFormat": "mpq._formats",
    "Candidate": "mpq._formats",
    "get_format": "mpq._formats",
    "list_formats": "mpq._formats",
    "get_candidate": "mpq._formats",
    "candidate_table": "mpq._formats",
    "activation_ranges": "mpq._apply",
    "calibrate": "mpq._apply",
    "apply": "mpq._apply",
    "QuantizerSettings": "mpq._quantizer",
    "Calibration": "mpq._quantizer",
    # probes
    "ProbeSettings": "mpq._probes",
    "ProbeCheckpoint": "mpq._probes",
    "probe": "mpq._probes",
    "omega": "mpq._omega",
    # the workflow
    "search": "mpq._search",
    "ProcessPool": "mpq._executors",
    "validate": "mpq._heldout",
    "Run": "mpq._runs",
    "open_run": "mpq._runs",
    "list_runs": "mpq._runs",
    "export": "mpq._export",
    "compare": "mpq._compare",
    "measure_latency": "mpq._measure",
    "write_measured_csv": "mpq._measure",
}

__all__ = [*_LAZY, "exceptions", "MpqError", "__version__"]


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module 'mpq' has no attribute {name!r}")
    value = getattr(_importlib.import_module(_LAZY[name]), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
