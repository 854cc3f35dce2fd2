"""mpq: mixed-precision bit allocation for neural networks.

Probe a model's per-layer sensitivity, cost every layer at every number format on a target
device, and solve for the Pareto frontier of accuracy loss against latency, energy and memory.
"""

from mpq import exceptions
from mpq._apply import activation_ranges, apply
from mpq._compare import compare
from mpq._examples import list_examples
from mpq._export import export
from mpq._formats import Candidate, NumberFormat, candidate_table, get_candidate, get_format, list_formats
from mpq._layers import layers
from mpq._measure import measure_latency, write_measured_csv
from mpq._omega import omega
from mpq._probes import ProbeCheckpoint, ProbeSettings, probe
from mpq._runs import Run, list_runs, open_run
from mpq._search import search
from mpq._task import Task
from mpq._task_spec import load_task
from mpq._validate import validate
from mpq.exceptions import MpqError
from mpq.version import __version__

__all__ = [
    # tasks
    "Task",
    "load_task",
    "list_examples",
    # model tables and formats
    "layers",
    "NumberFormat",
    "Candidate",
    "get_format",
    "list_formats",
    "get_candidate",
    "candidate_table",
    "activation_ranges",
    "apply",
    # probes
    "ProbeSettings",
    "ProbeCheckpoint",
    "probe",
    "omega",
    # the workflow
    "search",
    "validate",
    "Run",
    "open_run",
    "list_runs",
    "export",
    "compare",
    "measure_latency",
    "write_measured_csv",
    # errors and version
    "exceptions",
    "MpqError",
    "__version__",
]
