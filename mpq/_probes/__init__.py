"""Sensitivity probes: per-layer Hessian and Fisher traces, and measured loss increases.

``probe(task, probes, settings=..., progress=..., checkpoint=...)`` returns the sensitivity
table; :func:`mpq.omega` turns it into predicted loss increases per (layer, candidate).
Modules: ``settings`` (ProbeSettings, JSON, hash), ``graph`` (the model as a function of layer
weights and inputs), ``hutchinson`` (Hessian traces), ``fisher`` (true and empirical Fisher
traces), ``factors`` (the output-Hessian factors of the output noise), ``exact`` (exact traces of small targets), ``measured`` (one layer quantized at a time), ``sampling`` (samples, running
statistics, stopping rule), ``checkpoint`` (resumable state), ``api`` (``probe``).
"""

from mpq._probes.api import SENSITIVITY_COLUMNS, check_loss, fit_estimator, probe, task_probes
from mpq._probes.checkpoint import CheckpointStore, ProbeCheckpoint, probe_key
from mpq._probes.settings import PROBES, ProbeSettings, settings_from_json, settings_hash, settings_to_json

__all__ = [
    "probe",
    "check_loss",
    "fit_estimator",
    "task_probes",
    "ProbeSettings",
    "ProbeCheckpoint",
    "CheckpointStore",
    "probe_key",
    "settings_to_json",
    "settings_from_json",
    "settings_hash",
    "PROBES",
    "SENSITIVITY_COLUMNS",
]
