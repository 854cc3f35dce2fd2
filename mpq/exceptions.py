"""Errors and warnings raised by mpq.

User-input errors subclass both :class:`MpqError` and :class:`ValueError` (scikit-learn's
dual inheritance), so ``except ValueError`` keeps working; runtime failures are plain
:class:`MpqError`. Every message is one line: ``<subject>: <what is wrong>; <the fix>.``
"""

from __future__ import annotations

import mpqvocab

__all__ = [
    "MpqError",
    "InvalidParameterError",
    "UnknownNameError",
    "TaskSpecError",
    "NoQuantizableLayerError",
    "RunNotFoundError",
    "DropNotMetError",
    "StoreError",
    "ProbeError",
    "LossIndependentError",
    "WorkerError",
    "EvaluationTimeoutError",
    "SearchInterrupted",
    "SensitivityWarning",
    "DominatedPointWarning",
    "ExperimentalWarning",
]


class MpqError(Exception):
    """Base class of every error mpq raises on purpose."""


class InvalidParameterError(MpqError, mpqvocab.InvalidParameterError):
    """A parameter of a public function has the wrong type or value."""


class UnknownNameError(MpqError, mpqvocab.UnknownNameError):
    """A name (format, candidate, example, probe, device) is not registered."""


class TaskSpecError(MpqError, ValueError):
    """A ``--model`` spec or task factory is malformed, raises, or returns the wrong thing."""


class NoQuantizableLayerError(MpqError, ValueError):
    """The model has no Linear, Conv or Embedding layer that ran on the example input."""


class DropNotMetError(MpqError, ValueError):
    """No configuration the target runs measures within the allowed drop (``max_drop``)."""


class RunNotFoundError(MpqError, ValueError):
    """A run id that the store does not hold."""


class StoreError(MpqError):
    """The results store cannot be opened, read or written."""


class ProbeError(MpqError):
    """A sensitivity probe failed (NaN loss, no gradient, ...)."""


class LossIndependentError(ProbeError, ValueError):
    """The task's loss does not depend on the model's weights: the task is wrong (bad input), and
    nothing can be probed."""


class WorkerError(MpqError):
    """A worker of the search's executor died twice running the same evaluation."""


class EvaluationTimeoutError(MpqError):
    """An evaluation ran past the search's ``eval_timeout`` (``--eval-timeout``), and the search stops."""


class SearchInterrupted(MpqError, KeyboardInterrupt):
    """Ctrl-C during a search; the run is stored as failed and the message says how to resume it."""


class SensitivityWarning(UserWarning):
    """A sensitivity estimate is negative or noisy; how it is handled is stated in the message."""


class DominatedPointWarning(UserWarning):
    """An exported point is beaten on measurement by another point of its run."""


class ExperimentalWarning(UserWarning):
    """The feature is experimental; its interface may change."""
