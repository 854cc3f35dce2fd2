"""``--eval-timeout``: an evaluation that hangs is ended, recorded, and the search stops or goes on.

A search sets the limit for its duration (:func:`evaluation_limit`); every call of the task's
``evaluate`` then runs in a thread of its own, waited for at most that long
(:func:`evaluate_within_limit`). The limit is process-wide, so the threads of a thread pool see
it, and it travels to an executor's worker processes with the task's reference
(``mpq._executors.TaskRef``). Python cannot end a thread: a hung evaluation is abandoned, and keeps
its thread (and the copy of the model it holds) until it returns or the process exits.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from mpq._param_checks import Interval, OneOf, check_param
from mpq.exceptions import EvaluationTimeoutError

logger = logging.getLogger("mpq.search")

#: What a search does when an evaluation runs past the limit: ``stop`` (the run fails, resumable)
#: or ``skip`` (the configuration is recorded as not measured and the search goes on).
ON_TIMEOUT = ("stop", "skip")


@dataclass(frozen=True)
class EvaluationLimit:
    """The limit of one search: ``seconds`` per call of ``evaluate`` (None: none) and ``on_timeout``."""

    seconds: float | None = None
    on_timeout: str = "stop"


#: The limit in force in this process (set by :func:`evaluation_limit`).
_LIMIT = {"now": EvaluationLimit()}


def check_limit(func: str, seconds: float | None, on_timeout: str) -> EvaluationLimit:
    """The checked limit of ``eval_timeout`` and ``on_eval_timeout``."""
    if seconds is not None:
        check_param(func, "eval_timeout", seconds, Interval(float, 0, None, closed="neither"))
    check_param(func, "on_eval_timeout", on_timeout, OneOf(ON_TIMEOUT))
    return EvaluationLimit(None if seconds is None else float(seconds), on_timeout)


def current_limit() -> EvaluationLimit:
    """The limit in force (what a worker's task reference carries)."""
    return _LIMIT["now"]


@contextmanager
def evaluation_limit(limit: EvaluationLimit) -> Iterator[None]:
    """Every evaluation in this process is held to ``limit`` inside the block."""
    before, _LIMIT["now"] = _LIMIT["now"], limit
    try:
        yield
    finally:
        _LIMIT["now"] = before


def evaluate_within_limit(evaluate: Callable[[Any], float], model: Any, what: str, *, may_skip: bool) -> Any:
    """``evaluate(model)``, ended at the limit in force.

    Args:
        evaluate: The task's evaluate function.
        model: The model to evaluate.
        what: The task, for the messages (``task 'tiny'``).
        may_skip: Whether a timed-out call may be skipped (a configuration's; the float model's
            evaluation always stops the search: every drop is measured from it).

    Returns:
        What ``evaluate`` returned; None when the call ran past the limit and the search goes on
        (``skip``).

    Raises:
        EvaluationTimeoutError: the call ran past the limit, and the search stops.
        Exception: what ``evaluate`` raised.
    """
    limit = _LIMIT["now"]
    if limit.seconds is None:
        return evaluate(model)
    outcome: dict[str, Any] = {}

    def call() -> None:
        try:
            outcome["value"] = evaluate(model)
        except BaseException as exc:  # handed to the caller's thread
            outcome["error"] = exc

    thread = threading.Thread(target=call, name="mpq-evaluate", daemon=True)
    thread.start()
    thread.join(limit.seconds)
    if "error" in outcome:
        raise outcome["error"]
    if "value" in outcome:
        return outcome["value"]
    if may_skip and limit.on_timeout == "skip":
        logger.warning(
            "%s: an evaluation ran past --eval-timeout %g s and was abandoned; its configuration is recorded as not "
            "measured and the search goes on (--on-eval-timeout skip).",
            what,
            limit.seconds,
        )
        return None
    raise EvaluationTimeoutError(
        f"{what}: an evaluation ran past --eval-timeout {limit.seconds:g} s and was abandoned; make evaluate faster "
        "or raise --eval-timeout (--on-eval-timeout skip records such a configuration as not measured and goes on)."
    )
