"""Evaluations past one process: on any ``concurrent.futures.Executor`` (local processes, a Dask
or Ray cluster). The device a task runs on is :mod:`mpq._placement`'s.

A worker never receives a pickled model: it gets a :class:`TaskRef` (the task's ``--model`` spec,
the hashes of the driver's weights and calibration data, the device), rebuilds the task with
:func:`mpq.load_task`, checks both hashes and keeps it for the next call (one task per worker
process). The driver submits calls through a :class:`Runner`, which takes results in submission
order (so a parallel run stores what a serial run stores, point for point) and retries a call
whose worker died once.
"""

from __future__ import annotations

import multiprocessing
import os
import socket
import threading
from collections.abc import Callable, Hashable
from concurrent.futures import BrokenExecutor, Executor, Future, ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from mpq._param_checks import InstanceOf, Interval, check_param
from mpq._placement import check_device, on_device
from mpq._task import Task, model_device
from mpq._timeout import EvaluationLimit, current_limit, evaluation_limit
from mpq.exceptions import InvalidParameterError, MpqError, TaskSpecError, WorkerError

#: Seconds ``dask_executor`` waits for a scheduler to answer.
DASK_CONNECT_TIMEOUT_S = 10.0
#: Seconds past it before a connection that is still being made is given up.
DASK_HANDSHAKE_GRACE_S = 2.0

#: The ``executor`` parameter of search and probe.
EXECUTOR = InstanceOf(
    (Executor,), "a concurrent.futures.Executor (mpq.ProcessPool(N), distributed's Client(...).get_executor())", True
)

#: Exceptions, by class name, with which Dask reports a call whose worker died or was cut off
#: (distributed is not imported unless the user runs on it).
_DASK_LOST = ("KilledWorker", "CommClosedError", "FutureCancelledError")

#: A :class:`ProcessPool`'s (and ``--workers``') number of processes.
WORKERS = Interval(int, 1, None)


@dataclass(frozen=True)
class TaskRef:
    """What a worker rebuilds a task from: the spec, and the hashes the driver's task has.

    Attributes:
        spec: The ``--model`` spec, a file's path made absolute.
        model_hash: The driver's :func:`model_hash`.
        data_hash: The driver's :func:`data_hash` of the calibration batches.
        device: Where the worker runs the model (``cpu``, ``cuda:0``).
        eval_limit: The search's ``--eval-timeout``, which the worker holds its evaluations to.
    """

    spec: str
    model_hash: str
    data_hash: str
    device: str
    eval_limit: EvaluationLimit = EvaluationLimit()


def task_ref(task: Task, hashes: tuple[str, str] | None = None) -> TaskRef:
    """The reference workers rebuild ``task`` from; a task built without a spec cannot be.
    ``hashes``: its (model hash, data hash) when the caller has them (a search computes them once)."""
    from mpq._probes.checkpoint import data_hash, model_hash

    if task.spec is None:
        raise InvalidParameterError(
            f"task {task.name!r} has no --model spec, so the executor's workers cannot rebuild it; build it with "
            "mpq.load_task('example:NAME' or 'path/to/file.py:factory'), or search without an executor."
        )
    prefix, _, name = task.spec.rpartition(":")
    spec = task.spec if prefix == "example" else f"{Path(prefix).resolve()}:{name}"
    weights, data = hashes or (model_hash(task.model), data_hash(task.calibration))
    return TaskRef(spec, weights, data, str(model_device(task.model)), current_limit())


#: The task this worker process rebuilt last, and what its calls keep between them.
_WORKER: dict[TaskRef, tuple[Task, dict]] = {}
#: Held while a worker rebuilds its task or prepares a call's state: a worker with threads (a
#: ThreadPoolExecutor, a Dask worker) shares one task, and preparing hooks its model.
_PREPARING = threading.RLock()


def worker_task(ref: TaskRef) -> tuple[Task, dict]:
    """The task ``ref`` names, rebuilt on this worker the first time (hashes checked) and kept,
    with a dict the calls on it keep their prepared state in."""
    with _PREPARING:
        return _WORKER.get(ref) or _rebuild(ref)


def _rebuild(ref: TaskRef) -> tuple[Task, dict]:
    from mpq._probes.checkpoint import data_hash, model_hash
    from mpq._task_spec import load_task

    where = f"worker {socket.gethostname()}:{os.getpid()}"
    try:  # before the task is built: a worker without the search's GPU is refused at once
        device = check_device("search", ref.device)
    except InvalidParameterError as exc:
        raise InvalidParameterError(f"{where}: {exc}") from None
    try:
        task = load_task(ref.spec)
    except MpqError as exc:
        raise TaskSpecError(
            f"{where} cannot rebuild the task: {exc} Every worker needs mpq and the task's file at the same path."
        ) from None
    for what, expected, current in (
        ("model", ref.model_hash, model_hash(task.model)),
        ("calibration data", ref.data_hash, data_hash(task.calibration)),
    ):
        if current != expected:
            raise TaskSpecError(
                f"--model {ref.spec!r}: {where} rebuilt it with {what} {current[:12]}, but the searched task's "
                f"hashes {expected[:12]}; give every worker the same file, weights, data and mpq version."
            )
    _WORKER.clear()  # one task per worker process: a new search's task replaces the last one
    _WORKER[ref] = (on_device(task, device), {})
    return _WORKER[ref]


def prepared(memo: dict, key: Hashable, make: Callable[[], Any]) -> Any:
    """``memo[key]``, made by ``make()`` the first time: once per worker, however many threads
    call it at once (``make`` may hook the task's model; another thread's copy would inherit the hooks)."""
    with _PREPARING:
        if key not in memo:
            memo[key] = make()
        return memo[key]


def _call_on_worker(function: Callable, ref: TaskRef, args: tuple) -> Any:
    task, memo = worker_task(ref)
    if ref.eval_limit == current_limit():  # a thread of the driver's process: set there already
        return function(task, memo, *args)
    with evaluation_limit(ref.eval_limit):
        return function(task, memo, *args)


class Handle:
    """One submitted call: its result, the call retried once (alone) when its worker died."""

    def __init__(self, runner: Runner, function: Callable, args: tuple, label: str):
        self.runner, self.function, self.args, self.label = runner, function, args, label
        self.future = runner.start(function, args)

    def result(self) -> Any:
        """The call's result; raised here: the call's own error, or WorkerError after two deaths."""
        if self.runner.executor is None:
            return self.function(self.runner.task, self.runner.memo, *self.args)
        try:
            return self.runner.outcome(self.future)
        except _Lost as lost:
            first = lost.reason
        try:  # alone: a call lost with the others when one of them killed a process pool is innocent
            return self.runner.outcome(self.runner.start(self.function, self.args))
        except _Lost as lost:
            raise WorkerError(
                f"{self.label}: its worker died twice ({first}; then {lost.reason}); check the workers' memory and "
                "logs, then resume the run (mpq search --resume RUN), with fewer workers per machine if memory ran out."
            ) from None

    def cancel(self) -> None:
        if self.future is not None:
            self.future.cancel()


class _Lost(Exception):
    """A call whose worker died, or that the executor (broken) could not take."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class Runner:
    """Calls ``function(task, memo, *args)`` on one task: on the executor's workers (each
    rebuilds the task from its spec; ``memo`` is kept per worker), or here without one.

    Args:
        task: The task (on the device it runs on).
        executor: Any ``concurrent.futures.Executor``, or None to run here, when asked.
        hashes: The task's (model hash, data hash) when the caller has them; else hashed here
            for the workers' check (only with an executor).
    """

    def __init__(self, task: Task, executor: Executor | None = None, hashes: tuple[str, str] | None = None):
        _check_not_forking(executor)
        self.task, self.executor = task, executor
        self.memo: dict = {}
        self.ref = task_ref(task, hashes) if executor is not None else None

    def submit(self, function: Callable, args: tuple, label: str) -> Handle:
        """Start ``function(task, memo, *args)``; ``label`` names it in errors (``point 3``)."""
        return Handle(self, function, args, label)

    def call(self, function: Callable, args: tuple, label: str) -> Any:
        """``function(task, memo, *args)``, waited for."""
        return self.submit(function, args, label).result()

    def start(self, function: Callable, args: tuple) -> Future | None:
        if self.executor is None:
            return None
        try:
            return self.executor.submit(_call_on_worker, function, self.ref, args)
        except BrokenExecutor as exc:  # refused at submit: lost like a call whose worker died, when its result is asked
            future = Future()
            future.set_exception(exc)
            return future

    def outcome(self, future: Future) -> Any:
        try:
            return future.result()
        except BrokenExecutor as exc:
            raise _Lost(f"{type(exc).__name__}: {exc}") from None
        except ImportError as exc:
            # Raised while the worker unpickles the call: mpq (or a module it needs) is not there.
            raise InvalidParameterError(
                f"executor: a worker cannot import {exc.name or 'a module'} ({exc}); install mpq with its scale "
                "extra (pip install 'mpq[scale]'), the version this machine runs, on every worker."
            ) from None
        except Exception as exc:
            if type(exc).__name__ in _DASK_LOST:
                raise _Lost(f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}") from None
            raise

    @property
    def width(self) -> int:
        """Calls that can run at once: the executor's workers (1 without one, or when it does not say)."""
        executor = self.executor
        if isinstance(executor, ProcessPool):
            return executor.workers
        client = _dask_client(executor)
        if client is not None:  # the cluster's threads
            return max(1, sum(client.nthreads().values()))
        return getattr(executor, "_max_workers", 1)  # concurrent.futures' pools

    def check(self) -> None:
        """Rebuild the task on a worker before anything is stored: one that cannot (no mpq, no
        task file, other weights or data) is refused in one line."""
        if self.executor is not None:
            self.call(_where, (), "rebuilding the task on a worker")


def _check_not_forking(executor: Executor | None) -> None:
    """Refuse a process pool that forks its workers (Python's default on Linux): a process forked
    from one where torch has started its thread pools waits for ever on locks no thread will
    release (two idle workers, a search that never ends)."""
    context = getattr(executor, "_mp_context", None) if isinstance(executor, ProcessPoolExecutor) else None
    if context is not None and context.get_start_method() == "fork":
        raise InvalidParameterError(
            "executor: this ProcessPoolExecutor forks its workers (Python's default on Linux), and a process forked "
            "after torch started its threads hangs; pass mpq.ProcessPool(N), or ProcessPoolExecutor(N, "
            "mp_context=multiprocessing.get_context('spawn'))."
        )


def _where(task: Task, memo: dict) -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class ProcessPool(Executor):
    """``workers`` local processes (started with ``spawn``: torch and ``fork`` do not mix); a
    process that dies is replaced, so a call it took can run again.

    Args:
        workers: Processes to start, at least 1.

    Example:
        >>> import mpq
        >>> with mpq.ProcessPool(2) as pool:  # doctest: +SKIP
        ...     run = mpq.search(mpq.load_task("example:digits-cnn"), executor=pool)
    """

    def __init__(self, workers: int):
        check_param("ProcessPool", "workers", workers, WORKERS)
        self.workers = workers
        self._pool: ProcessPoolExecutor | None = None
        self._lock = threading.Lock()

    def _new_pool(self) -> ProcessPoolExecutor:
        threads = max(1, (os.cpu_count() or 1) // self.workers)  # the cores shared out, not each taking all
        return ProcessPoolExecutor(
            self.workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=torch.set_num_threads,
            initargs=(threads,),
        )

    def submit(self, fn: Callable, /, *args: Any, **kwargs: Any) -> Future:
        with self._lock:
            if self._pool is None:
                self._pool = self._new_pool()
            try:
                return self._pool.submit(fn, *args, **kwargs)
            except BrokenExecutor:  # a process died: its calls failed; a new pool takes the next ones
                self._pool.shutdown(wait=False, cancel_futures=True)
                self._pool = self._new_pool()
                return self._pool.submit(fn, *args, **kwargs)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        with self._lock:
            if self._pool is not None:
                self._pool.shutdown(wait=wait, cancel_futures=cancel_futures)
                self._pool = None

    def __repr__(self) -> str:
        return f"ProcessPool({self.workers})"


def _dask_client(executor: Executor | None) -> Any:
    """The Dask client of distributed's ``ClientExecutor`` (None for any other executor)."""
    return getattr(executor, "_client", None)


def describe_executor(executor: Executor | None) -> str | None:
    """How a run's settings record its executor: ``processes x4``, ``dask tcp://host:8786``."""
    if executor is None:
        return None
    if isinstance(executor, ProcessPool):
        return f"processes x{executor.workers}"
    client = _dask_client(executor)
    if client is not None:
        return f"dask {client.scheduler.address}"
    return type(executor).__name__


def dask_executor(address: str) -> Executor:
    """The executor of the Dask scheduler at ``address`` (``distributed.Client(address).get_executor()``).

    Raises:
        InvalidParameterError: distributed is not installed, or no scheduler answers there.
    """
    try:
        import distributed
    except ImportError:
        raise InvalidParameterError(
            "--dask needs the distributed package, which is not installed; pip install 'mpq[scale]'."
        ) from None
    found: dict[str, Any] = {}

    def connect() -> None:
        try:
            found["client"] = distributed.Client(address, timeout=DASK_CONNECT_TIMEOUT_S, set_as_default=False)
        except Exception as exc:  # reported below, from the caller's thread
            found["error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            found["tls"] = isinstance(exc, TypeError) and "TLS" in str(exc)

    # distributed's own timeout covers the TCP connection, not a listener that accepts and never
    # answers (it waited for ever): the connection gets its own thread and a deadline. A client
    # half made stays in that thread, so its clean-up (and its noise) never reaches the user.
    thread = threading.Thread(target=connect, name="mpq-dask-connect", daemon=True)
    thread.start()
    thread.join(DASK_CONNECT_TIMEOUT_S + DASK_HANDSHAKE_GRACE_S)
    if "client" in found:
        return found["client"].get_executor()
    if found.get("tls"):
        raise InvalidParameterError(
            f"--dask {address!r}: a tls:// scheduler needs this machine's TLS settings, and none are set; put them "
            "in Dask's configuration (distributed.comm.tls.ca-file, .client.cert and .client.key in "
            "~/.config/dask/distributed.yaml, or DASK_DISTRIBUTED__COMM__TLS__CA_FILE and the like), then run again."
        )
    reason = found.get("error", "it accepted the connection and never answered")
    raise InvalidParameterError(
        f"--dask {address!r}: no Dask scheduler answered within {DASK_CONNECT_TIMEOUT_S:g} s ({reason}); start "
        "one ('dask scheduler', then 'dask worker ADDRESS' on each machine) or give its address, e.g. "
        "tcp://host:8786."
    )


def close_executor(executor: Executor) -> None:
    """Stop the executor's calls that have not started, and the Dask client it came with."""
    client = _dask_client(executor)
    if client is None:
        executor.shutdown(wait=True, cancel_futures=True)
    else:
        executor.shutdown(wait=False)  # distributed's: cancels what has not run
        client.close()
