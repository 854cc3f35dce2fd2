"""What identifies a search's task: the hashes of its weights and data, computed once a search."""

from __future__ import annotations

from dataclasses import dataclass

from mpq._fingerprint import callable_hash
from mpq._probes import ProbeSettings
from mpq._probes.checkpoint import data_hash, model_hash, probe_key_of
from mpq._task import Task


@dataclass(frozen=True)
class Identity:
    """The task's weight and calibration-data hashes, and the key its probe is stored under.

    Hashing reads every weight and every calibration batch: a search computes these once and
    passes them on (the run's record, the stored probe, the check of a resumed run).
    """

    model_hash: str
    data_hash: str
    probe_key: str

    @property
    def hashes(self) -> tuple[str, str]:
        """(model hash, data hash), as :class:`mpq._executors.Runner` takes them."""
        return self.model_hash, self.data_hash

    @classmethod
    def of(cls, task: Task, settings: ProbeSettings, decision: str | None = None) -> Identity:
        """``decision``: :func:`mpq._search.decision.decision_hash` of the search's plan."""
        weights, data = model_hash(task.model), data_hash(task.calibration)
        return cls(weights, data, probe_key_of(weights, data, settings, callable_hash(task.loss_fn), decision))
