"""The results store's interface: what every backend promises (Optuna's ``BaseStorage`` shape).

:class:`BaseStore` lists every read and write mpq makes of its results, each with its contract.
mpq ships two implementations: :class:`mpq._storage.Store` over SQLAlchemy (a SQLite file, the
same file opened read-only, PostgreSQL) and :class:`mpq._storage.memory.MemoryStore` (dicts in
this process, ``--db :memory:``); the probe-checkpoint pair is also what
:class:`mpq.ProbeCheckpoint` (a folder of JSON files) implements. The conformance suite in
``tests/mpq_tests/storage_tests/store_contract.py`` takes a factory of stores and runs the same
tests against each of them.

The store is opened in one of two modes: ``read`` (listing, showing, exporting, comparing, the
dashboard) never creates, migrates or otherwise writes the database, and refuses every write
method; ``write`` (searching, probing) may create the store and upgrade an older schema.
"""

from __future__ import annotations

import abc
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, Literal

import pandas as pd

from mpq._liveness import ACTIVE
from mpq.exceptions import MpqError, SearchInterrupted, StoreError

#: The values of ``runs.status``; the database refuses any other (a CHECK constraint, schema 0004).
RUN_STATUSES = ("running", "done", "failed")

Mode = Literal["read", "write"]
#: A run's own fields, as :meth:`BaseStore.run_record` returns them (``create_run`` and
#: The columns of ``list_runs``, in order.
RUN_LIST_COLUMNS = (
    "run",
    "status",
    "task",
    "target",
    "objectives",
    "points",
    "metric_name",
    "float_metric",
    "spearman",
    "created_at",
    "finished_at",
    "owner",
)

#: ``update_run`` take the others than ``id``, ``created_at`` and ``finished_at``).
RUN_FIELDS = (
    "id",
    "created_at",
    "finished_at",
    "status",
    "error",
    "task_name",
    "model_spec",
    "owner",
    "metric_name",
    "model_hash",
    "data_hash",
    "probe_key",
    "target",
    "objectives",
    "budgets",
    "settings",
    "versions",
    "float_metric",
    "spearman",
)


class BaseStore(abc.ABC):
    """Every read and write of mpq's results.

    Attributes:
        url: The store's address as given (a SQLAlchemy URL); the key a run is known by.
        where: ``database <url>`` with any password hidden: the subject of every error message.
        mode: ``read`` or ``write``. A store opened for reading leaves the database exactly as
            it was (for a SQLite file, byte-identical) and its write methods raise
            :class:`~mpq.exceptions.StoreError` before touching it.

    Every method raises :class:`~mpq.exceptions.StoreError` (one line: the store, the reason,
    the fix) when the database cannot be read or written; a write that fails changes nothing.
    A method taking a ``run_id`` raises :class:`~mpq.exceptions.RunNotFoundError` when the
    store holds no such run, naming the newest run it does hold.
    """

    url: str
    where: str
    mode: Mode

    # -- probe results ------------------------------------------------------------------------
    @abc.abstractmethod
    def find_probe(self, key: str) -> pd.DataFrame | None:
        """The sensitivity table saved under a probe key.

        Args:
            key: A :func:`mpq._probes.probe_key`.

        Returns:
            The table as saved (columns, dtypes, ``attrs`` and tuple cells round-trip), or None
            when nothing is saved under ``key``.
        """

    @abc.abstractmethod
    def save_probe(self, key: str, *, model_hash: str, data_hash: str, settings: dict, table: pd.DataFrame) -> None:
        """Save a finished sensitivity table under ``key``, replacing one already there.

        Two processes saving the same key at once both succeed; one table stays.

        Args:
            key: A probe key.
            model_hash: The model's weight hash (kept beside the table).
            data_hash: The calibration data's hash.
            settings: The probe settings as JSON.
            table: The sensitivity table.
        """

    # -- probe checkpoints --------------------------------------------------------------------
    @abc.abstractmethod
    def load_probe_checkpoint(self, key: str) -> dict | None:
        """The unfinished probe's state saved under ``key``, or None when there is none.

        Args:
            key: A probe key.

        Returns:
            The state exactly as saved (JSON floats round-trip bit for bit), or None.
        """

    @abc.abstractmethod
    def save_probe_checkpoint(self, key: str, state: dict) -> None:
        """Replace the probe state saved under ``key`` in one step: a reader sees the old
        state or the new one, never a mix.

        Args:
            key: A probe key.
            state: A JSON-serialisable dict.
        """

    # -- writing runs -------------------------------------------------------------------------
    @abc.abstractmethod
    def create_run(self, tables: Mapping[str, pd.DataFrame] | None = None, **fields: Any) -> int:
        """Record a new run with status ``running`` and its first tables, in one transaction.

        Args:
            tables: Pipeline tables by name (``layers``, ``costs``...).
            **fields: The run's own fields (``task_name``, ``model_hash``, ``target``,
                ``objectives``, ``budgets``, ``settings``, ``versions``, ``owner``...).

        Returns:
            The new run's id, larger than every id before it.
        """

    @abc.abstractmethod
    def save_table(self, run_id: int, name: str, table: pd.DataFrame) -> None:
        """Save (or replace) one pipeline table of a run.

        Args:
            run_id: The run.
            name: ``layers``, ``sensitivity``, ``omega``, ``costs``...
            table: The table; it reads back equal, ``attrs`` included.
        """

    @abc.abstractmethod
    def save_points(self, run_id: int, points: Sequence[Mapping[str, Any]]) -> None:
        """Replace the run's points, all or none.

        Args:
            run_id: The run.
            points: Each has ``point``, ``label``, ``is_baseline``, ``optimal``,
                ``predicted_loss``, ``costs`` (name -> value), ``measured_metric`` (None until
                validated), ``assignment`` (layer -> candidate, in layer order) and optionally
                ``dominated`` (None until validated). NaN is stored as null.
        """

    @abc.abstractmethod
    def add_points(
        self, run_id: int, points: Sequence[Mapping[str, Any]], measured: Mapping[int, float] | None = None
    ) -> None:
        """Add points to the run's, all or none; a point number the run has already is refused
        (``StoreError``) and nothing is added.

        Args:
            run_id: The run.
            points: As for :meth:`save_points`, numbered after the run's own.
            measured: As for :meth:`set_measured`, in the same transaction (one evaluation
                stored as a new point and on points of the same configuration).
        """

    @abc.abstractmethod
    def set_measured(self, run_id: int, measured: Mapping[int, float]) -> None:
        """Record the validated metric of points (validation resumes point by point), in one
        transaction.

        Args:
            run_id: The run.
            measured: Point -> its measured metric.

        Raises:
            InvalidParameterError: a point the run does not have; nothing is changed.
        """

    @abc.abstractmethod
    def set_dominated(self, run_id: int, dominated: Mapping[int, bool | None]) -> None:
        """Mark points beaten on measurement (another point has a better measured metric at no
        higher cost), in one transaction; points not in ``dominated`` keep their value.

        Args:
            run_id: The run.
            dominated: Point -> True (dominated), False (not), or None (not known).

        Raises:
            InvalidParameterError: a point the run does not have; nothing is changed.
        """

    @abc.abstractmethod
    def update_run(self, run_id: int, **fields: Any) -> None:
        """Change fields of a run (``float_metric``, ``status="running"`` when it resumes...).

        Args:
            run_id: The run.
            **fields: Field -> new value; NaN is stored as null.

        Raises:
            InvalidParameterError: a ``status`` outside :data:`RUN_STATUSES`; nothing is changed.
        """

    @abc.abstractmethod
    def claim_run(self, run_id: int, *, seen: Mapping[str, Any], owner: str) -> bool:
        """Mark an unfinished run ``running`` by ``owner`` if its status and owner are still the
        ``seen`` ones, atomically: of two processes claiming one run, exactly one gets True.

        Args:
            run_id: The run.
            seen: The run's record as the caller last read it (``status``, ``owner``).
            owner: ``host:pid`` of the claiming process.

        Returns:
            True when this call claimed the run (its error is cleared), False when another
            process changed it first (nothing is changed).
        """

    @abc.abstractmethod
    def finish_run(self, run_id: int, status: str, **fields: Any) -> None:
        """Set a run's final status and finish time, and any summary fields.

        Args:
            run_id: The run.
            status: ``done`` or ``failed`` (one of :data:`RUN_STATUSES`).
            **fields: ``error``, ``spearman``...

        Raises:
            InvalidParameterError: a ``status`` outside :data:`RUN_STATUSES`; nothing is changed.
        """

    # -- reading runs -------------------------------------------------------------------------
    @abc.abstractmethod
    def run_record(self, run_id: int) -> dict[str, Any]:
        """The run's own fields (``id``, ``status``, ``created_at``, hashes, settings...).

        Args:
            run_id: The run.
        """

    @abc.abstractmethod
    def unfinished_runs(self, **fields: Any) -> list[dict[str, Any]]:
        """Records of the runs not ``done`` whose fields equal ``fields`` (JSON fields compared
        as documents), newest first: the runs a search with those fields may finish.

        Args:
            **fields: Must include ``model_hash``.
        """

    @abc.abstractmethod
    def run_tables(self, run_id: int) -> dict[str, pd.DataFrame]:
        """The run's pipeline tables by name, as saved.

        Args:
            run_id: The run.
        """

    @abc.abstractmethod
    def run_points(self, run_id: int) -> tuple[pd.DataFrame, pd.DataFrame]:
        """The run's points.

        Args:
            run_id: The run.

        Returns:
            ``(frontier, assignments)``: ``frontier`` has one row per point, ordered by point:
            ``point``, ``label``, ``is_baseline``, ``optimal``, ``predicted_loss``, one column
            per cost (NaN where null), ``measured_metric`` (NaN until validated) and
            ``dominated`` (pandas ``boolean``: True, False, or NA until validated); empty with
            no columns for a run without points. ``assignments`` has one row per (point, layer)
            in layer order: ``point``, ``layer``, ``candidate``.
        """

    @abc.abstractmethod
    def list_runs(self) -> pd.DataFrame:
        """Every run, oldest first: ``run``, ``status`` (as stored), ``task``, ``target``,
        ``objectives`` (comma-separated), ``points`` (count), ``metric_name``, ``float_metric``,
        ``spearman``, ``created_at``, ``finished_at``, ``owner``; these columns even when empty."""

    # -- the lifecycle of a run (every store: written with the methods above) -----------------
    @contextmanager
    def running(self, run_id: int) -> Iterator[None]:
        """The lifecycle of a run this process runs (created or claimed for it already).

        Inside, the run counts as this process's (``mpq._liveness.ACTIVE``), so the listing does
        not show it as stopped. Ctrl-C (or a KeyboardInterrupt naming its signal, SIGTERM) marks it
        failed as interrupted and raises
        :class:`SearchInterrupted` with the command that resumes it; any other error marks it
        failed with the error's first line, and is raised again (an mpq error with the command
        that finishes the run appended: a full disk, a worker that died, an evaluate that raised). Where the store refuses even
        that write (a full disk, a read-only file), its StoreError says how to finish the run.
        """
        ACTIVE.add((self.url, run_id))
        try:
            yield
        except KeyboardInterrupt as exc:
            self._mark_failed(run_id, f"interrupted ({str(exc) or 'Ctrl-C'})", exc)
            raise SearchInterrupted(
                f"search interrupted; run {run_id} keeps what was done: {self.resume_hint(run_id)}"
            ) from exc
        except BaseException as exc:
            message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            self._mark_failed(run_id, f"{type(exc).__name__}: {message}", exc)
            if not isinstance(exc, MpqError):  # a bug, or another package's error: as it is
                raise
            raise type(exc)(
                f"{exc} Run {run_id} keeps what was stored before this error: once its cause is fixed, "
                f"{self.resume_hint(run_id)}"
            ) from exc
        finally:
            ACTIVE.discard((self.url, run_id))

    def resume_hint(self, run_id: int) -> str:
        """How a user finishes a run this store keeps: the end of an interrupted or failed run's message."""
        return f"finish it with 'mpq search --resume {run_id}' (same --model and --db)."

    def _mark_failed(self, run_id: int, error: str, exc: BaseException) -> None:
        try:
            self.finish_run(run_id, "failed", error=error)
        except StoreError as store_exc:
            first = exc if isinstance(exc, StoreError) else store_exc
            raise StoreError(
                f"{first} Run {run_id} keeps what was stored before this error: once the store is writable, finish it "
                f"with 'mpq search --resume {run_id}' (same --model and --db)."
            ) from exc
