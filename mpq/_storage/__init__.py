"""The results store: :class:`Store`, the SQLAlchemy implementation of :class:`BaseStore`;
SQLite by default, any SQLAlchemy URL (PostgreSQL) for teams; ``:memory:`` for a
:class:`MemoryStore`, which keeps nothing after the process.

Opened for reading, a store is never created, migrated or written: a SQLite file is opened with
SQLite's ``mode=ro`` and PostgreSQL sessions are read-only transactions, so not even a pragma
can change the file. Opened for writing, a store written by an older mpq is upgraded in place
(one logged line says so); ``mpq db upgrade`` does the same on request.
"""

from __future__ import annotations

import json
import logging
import os
import shlex
import sqlite3
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import pandas as pd
from sqlalchemy import create_engine, delete, event, inspect, select, update
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.exc import ArgumentError, IntegrityError
from sqlalchemy.orm import sessionmaker

from mpq._examples._cache import cache_dir
from mpq._storage.base import RUN_LIST_COLUMNS, RUN_STATUSES, BaseStore, Mode
from mpq._storage.documents import check_status, finite, point_frames, table_from_json, table_to_json
from mpq._storage.memory import MEMORY, MemoryStore
from mpq._storage.models import (
    AssignmentModel,
    PointModel,
    ProbeCheckpointModel,
    ProbeResultModel,
    RunModel,
    RunTableModel,
    utcnow,
)
from mpq._storage.schema import check_schema, head
from mpq._storage.session import LOCK_WAIT_S, session_scope, store_error
from mpq.exceptions import InvalidParameterError, RunNotFoundError, StoreError
from mpqvocab import InstanceOf, shown

__all__ = [
    "DB",
    "BaseStore",
    "MemoryStore",
    "Store",
    "RUN_STATUSES",
    "db_url",
    "default_db_url",
    "table_from_json",
    "table_to_json",
]

logger = logging.getLogger("mpq.storage")

_LOCK_WAIT_S = LOCK_WAIT_S  # here, so that a test can shorten the wait


#: What a ``db`` parameter takes: a SQLite path, a SQLAlchemy URL, ``":memory:"``, a Store, or None
#: (the default store).
DB = InstanceOf((str, os.PathLike, BaseStore), "a SQLite path, a SQLAlchemy URL or a Store", optional=True)


def default_db_url() -> str:
    """``sqlite:///`` + the user cache directory's ``mpq.db``."""
    return f"sqlite:///{cache_dir() / 'mpq.db'}"


def db_url(db: str | Path | None) -> str:
    """A SQLAlchemy URL from ``--db``: None (the default store), a file path, or a URL."""
    if db is None:
        return default_db_url()
    db = str(db)
    return db if "://" in db else f"sqlite:///{Path(db).expanduser()}"


def _sqlite_file(url: URL) -> Path | None:
    """The file of a SQLite URL, plain (``sqlite:///runs.db``) or a URI filename
    (``sqlite:///file:runs.db?mode=ro&uri=true``); None for a database in memory."""
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return None
    if url.query.get("uri") in ("true", "1") and url.database.startswith("file:"):
        path = unquote(urlsplit(url.database).path)
        return Path(path) if path not in ("", ":memory:") else None
    return Path(url.database)


def _read_only(url: URL) -> bool:
    """A SQLite URL that asks for a read-only store (``mode=ro`` or ``immutable=1``)."""
    return url.query.get("mode") == "ro" or url.query.get("immutable") in ("1", "true")


def _record(run: RunModel) -> dict[str, Any]:
    """A run's own fields as a plain dict."""
    return {c.key: getattr(run, c.key) for c in inspect(RunModel).column_attrs}


def _read_only_url(url: URL, path: Path) -> URL:
    """The same SQLite file as a URI opened with ``mode=ro``: SQLite then refuses every write,
    the pragmas that change the file included. SQLite reads ``mode`` and ``immutable`` only from a
    URI (``uri=true``): given without it, they would be ignored and the store written.

    A store in WAL mode needs its ``-shm`` file, which SQLite cannot create in a folder it cannot
    write: there, with no ``-wal`` file (no writer can be at work), it is opened ``immutable``,
    which reads the file as it is without the ``-shm``."""
    if url.query.get("uri") not in ("true", "1"):
        file = quote(str(path.expanduser().resolve()), safe="/")
        url = url.set(database=f"file:{file}").update_query_dict({"uri": "true"})
    url = url.update_query_dict({"mode": "ro"})
    wal = path.with_name(f"{path.name}-wal")
    if not os.access(path.expanduser().resolve().parent, os.W_OK) and not wal.exists():
        url = url.update_query_dict({"immutable": "1"})
    return url


def open_store(db: str | Path | BaseStore | None, mode: Mode, *, create: bool = False) -> BaseStore:
    """The store ``db`` names: ``db`` itself when it is a store already, a new
    :class:`MemoryStore` for ``":memory:"`` (as SQLite names a database in memory), else a
    :class:`Store` opened in ``mode`` (``create``: with ``write``, create it when there is none)."""
    if isinstance(db, BaseStore):
        return db
    if isinstance(db, str) and db == MEMORY:
        return MemoryStore(mode=mode, create=create)
    return Store(db, mode=mode, create=create)


class Store(BaseStore):
    """All reads and writes of mpq's results, over SQLAlchemy (see :class:`BaseStore`).

    Args:
        db: ``None`` (``~/.cache/mpq/mpq.db``), a SQLite file path, or any SQLAlchemy URL
            (``postgresql+psycopg://user@host/db``).
        mode: ``read``: the store must exist at this mpq's schema; nothing is created,
            migrated or written (a mistyped path is an error, not a new empty file; an older
            schema is refused with the ``mpq db upgrade`` command). ``write``: a store written
            by an older mpq is upgraded in place, saying so in one ``mpq.storage`` log line.
        create: With ``write``, create the store (file and schema) when there is none.

    Attributes:
        upgraded_from: The schema a writer found and upgraded (``"0001"``), else None.

    Raises:
        StoreError: the database cannot be opened, is not a database, is missing (for a reader
            or with ``create=False``), or has a schema this mode cannot use.
    """

    def __init__(self, db: str | Path | None = None, *, mode: Mode = "read", create: bool = False):
        if mode not in ("read", "write"):
            raise InvalidParameterError(
                f"The 'mode' parameter of Store must be one of read, write. Got {mode!r} instead."
            )
        if create and mode != "write":
            raise InvalidParameterError(
                "The 'create' parameter of Store must be False with mode='read'. Got True instead."
            )
        self._open(db, mode, create)
        if self.upgraded_from is not None:
            logger.warning(
                "%s had schema %s; upgraded it to %s to write to it, keeping every run (an older mpq can no longer "
                "open it).",
                self.where,
                self.upgraded_from,
                self.schema,
            )

    @classmethod
    def upgrade(cls, db: str | Path | None = None) -> Store:
        """Upgrade an existing store to this mpq's schema, keeping every run (``mpq db upgrade``).
        Nothing is logged: the caller reports it.

        Args:
            db: The store, as for :class:`Store`.

        Returns:
            The store, open for writing; ``upgraded_from`` is the schema it had, None when it
            was at :attr:`schema` already.

        Raises:
            StoreError: as for :class:`Store`; a missing store is not created.
        """
        store = cls.__new__(cls)
        store._open(db, "write", create=False)
        return store

    @property
    def schema(self) -> str:
        """This mpq's schema revision, which the open store is at (``"0004"``)."""
        return head()

    def _open(self, db: str | Path | None, mode: Mode, create: bool) -> None:
        self.mode: Mode = mode
        self.url = db_url(db)
        self.upgraded_from: str | None = None
        try:
            url = make_url(self.url)
        except ArgumentError:
            raise self._not_a_url() from None
        # The command that upgrades this store, as the user would type it (never with its password).
        typed = db if db is None or url.password is None else url.render_as_string(hide_password=True)
        self._upgrade_command = "mpq db upgrade" + ("" if typed is None else f" --db {shlex.quote(str(typed))}")
        # A SQLite URL has no password; shown as given, its URI filename stays readable.
        self.where = (
            f"database {self.url if url.get_backend_name() == 'sqlite' else url.render_as_string(hide_password=True)}"
        )
        path = _sqlite_file(url)
        try:
            self._check_file(db, url, path, mode, create)
        except OSError as exc:  # a name the system refuses: too long, a component not a folder
            raise InvalidParameterError(
                f"--db {shown(str(db))}: {exc.strerror}; give the path of a store file (or a SQLAlchemy URL)."
            ) from None
        try:
            self.engine = self._make_engine(url, path)
        except ImportError as exc:  # the database driver is an optional extra
            raise StoreError(
                f"{self.where}: its driver {exc.name!r} is not installed; run 'pip install mpq[postgres]' "
                "(or the driver your URL names)."
            ) from exc
        except ArgumentError:  # a scheme SQLAlchemy has no dialect for (foo://bar)
            raise self._not_a_url() from None
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self.upgraded_from = check_schema(
            self.engine, mode=mode, create=create, where=self.where, upgrade_command=self._upgrade_command
        )
        self._use_wal()

    def _not_a_url(self) -> InvalidParameterError:
        return InvalidParameterError(
            f"--db {shown(self.url)} is not a database URL mpq can open; give a file path or a SQLAlchemy URL such "
            "as sqlite:///runs.db or postgresql+psycopg://user@host/db."
        )

    def _check_file(self, db: str | Path | None, url: URL, path: Path | None, mode: Mode, create: bool) -> None:
        """A SQLite store's file: not a folder, there for a reader, in a folder that exists."""
        if path is None:
            return
        if path.is_dir():
            raise StoreError(
                f"{self.where}: {str(path)!r} is a directory; give a file path such as {str(path / 'mpq.db')!r}."
            )
        if not path.exists() and (not create or _read_only(url)):
            raise StoreError(
                f"{self.where}: no store at {str(path)!r}; run 'mpq search --db {path}' first or fix the path."
            )
        if mode == "write" and db is None:
            path.parent.mkdir(parents=True, exist_ok=True)  # the default store's folder, in the user's cache
        elif mode == "write" and not path.parent.is_dir():
            raise InvalidParameterError(
                f"--db {str(db)!r}: its folder {str(path.parent)!r} does not exist; create it first, or give a "
                "file in a folder that exists."
            )

    def _make_engine(self, url: URL, path: Path | None) -> Engine:
        if url.get_backend_name() != "sqlite":
            if self.mode == "read":  # every transaction read-only: the server refuses any write
                return create_engine(url, pool_pre_ping=True, execution_options={"postgresql_readonly": True})
            return create_engine(url, pool_pre_ping=True)
        if path is not None and (self.mode == "read" or _read_only(url)):
            url = _read_only_url(url, path)
        # timeout: a writer waits for another process's write lock instead of failing at once
        # with "database is locked".
        engine = create_engine(url, connect_args={"timeout": _LOCK_WAIT_S})
        writer = self.mode == "write"

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(connection, _record):
            if writer:
                connection.isolation_level = None  # the driver begins nothing: "begin" below does
            cursor = connection.cursor()
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        if writer:
            # A writer's transaction takes the write lock when it begins (and waits for it): a
            # deferred one that read first and then writes can deadlock with another such
            # writer, and SQLite then fails one of them at once ("database is locked") instead
            # of waiting (https://www.sqlite.org/lang_transaction.html, sqlite3_busy_handler).
            @event.listens_for(engine, "begin")
            def _begin_immediate(connection):
                connection.exec_driver_sql("BEGIN IMMEDIATE")

        return engine

    def _use_wal(self) -> None:
        """WAL lets readers and one writer work at the same time. It is a setting of the file
        (its header), so a writer sets it once the file is known to be an mpq store."""
        if self.mode != "write" or _sqlite_file(self.engine.url) is None or _read_only(self.engine.url):
            return
        deadline = time.monotonic() + _LOCK_WAIT_S
        with self.engine.connect() as connection:
            raw = connection.connection.driver_connection  # outside any transaction: see _outside_transaction
            while raw.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                try:
                    raw.execute("PRAGMA journal_mode=WAL")
                except sqlite3.Error as exc:
                    # Switching needs the file alone: while another process writes, SQLite fails
                    # at once rather than after its timeout, so wait here as long.
                    if "locked" not in str(exc) or time.monotonic() > deadline:
                        raise store_error(
                            exc, self.where, "check that the database is writable and reachable", opening=True
                        ) from exc
                    time.sleep(0.05)

    def _session(self):
        return session_scope(self._sessions, self.where)

    def _writing(self, method: str) -> None:
        """Refuse a write on a store opened for reading, before it reaches the database."""
        if self.mode != "write":
            raise StoreError(
                f"{self.where} was opened for reading, and {method} writes; open it with Store(db, mode='write')."
            )

    # -- probes (docstrings: BaseStore) -------------------------------------------------------
    def find_probe(self, key: str) -> pd.DataFrame | None:
        with self._session() as session:
            row = session.get(ProbeResultModel, key)
            return None if row is None else table_from_json(row.table_json)

    def save_probe(self, key: str, *, model_hash: str, data_hash: str, settings: dict, table: pd.DataFrame) -> None:
        self._writing("save_probe")
        self._merge(
            ProbeResultModel(
                key=key, model_hash=model_hash, data_hash=data_hash, settings=settings, table_json=table_to_json(table)
            )
        )

    def _merge(self, row) -> None:
        """Insert or replace a row by primary key. Two processes probing the same model may both
        insert it first; the loser retries, which then replaces the winner's equivalent row."""
        for attempt in range(2):
            try:
                with self._session() as session:
                    session.merge(row)
                return
            except StoreError as exc:
                if attempt or not isinstance(exc.__cause__, IntegrityError):
                    raise

    # A finished probe's state stays, so the same probe again (mpq probe) returns at once.
    def load_probe_checkpoint(self, key: str) -> dict | None:
        with self._session() as session:
            row = session.get(ProbeCheckpointModel, key)
            return None if row is None else row.state

    def save_probe_checkpoint(self, key: str, state: dict) -> None:
        self._writing("save_probe_checkpoint")
        self._merge(ProbeCheckpointModel(key=key, state=state, updated_at=utcnow()))

    # -- writing runs -----------------------------------------------------------------------
    def create_run(self, tables: Mapping[str, pd.DataFrame] | None = None, **fields: Any) -> int:
        self._writing("create_run")
        with self._session() as session:
            run = RunModel(status="running", **fields)
            run.tables = [RunTableModel(name=name, table_json=table_to_json(t)) for name, t in (tables or {}).items()]
            session.add(run)
            session.flush()
            return run.id

    def save_table(self, run_id: int, name: str, table: pd.DataFrame) -> None:
        self._writing("save_table")
        with self._session() as session:
            self._get_run(session, run_id)
            session.execute(delete(RunTableModel).where(RunTableModel.run_id == run_id, RunTableModel.name == name))
            session.add(RunTableModel(run_id=run_id, name=name, table_json=table_to_json(table)))

    def save_points(self, run_id: int, points: Sequence[Mapping[str, Any]]) -> None:
        self._writing("save_points")
        with self._session() as session:
            self._get_run(session, run_id)
            session.execute(delete(PointModel).where(PointModel.run_id == run_id))
            self._insert_points(session, run_id, points)

    def add_points(
        self, run_id: int, points: Sequence[Mapping[str, Any]], measured: Mapping[int, float] | None = None
    ) -> None:
        self._writing("add_points")
        with self._session() as session:
            self._get_run(session, run_id)
            if measured:
                self._set_measured(session, run_id, measured, "add_points")
            self._insert_points(session, run_id, points)

    @staticmethod
    def _insert_points(session, run_id: int, points: Sequence[Mapping[str, Any]]) -> None:
        for p in points:
            dominated = p.get("dominated")
            session.add(
                PointModel(
                    run_id=run_id,
                    point=int(p["point"]),
                    label=p["label"],
                    is_baseline=bool(p["is_baseline"]),
                    optimal=bool(p["optimal"]),
                    predicted_loss=float(p["predicted_loss"]),
                    costs={k: finite(float(v)) for k, v in p["costs"].items()},
                    measured_metric=finite(p.get("measured_metric")),
                    dominated=None if dominated is None or pd.isna(dominated) else bool(dominated),
                    assignments=[
                        AssignmentModel(position=i, layer=layer, candidate=candidate)
                        for i, (layer, candidate) in enumerate(p["assignment"].items())
                    ],
                )
            )

    def _points(self, session, run_id: int, points: Sequence[int], method: str) -> dict[int, PointModel]:
        """The rows of some points of a run, by point; an unknown point is refused."""
        self._get_run(session, run_id)
        rows = {
            row.point: row
            for row in session.scalars(
                select(PointModel).where(
                    PointModel.run_id == int(run_id), PointModel.point.in_([int(p) for p in points])
                )
            )
        }
        missing = [p for p in points if int(p) not in rows]
        if missing:
            raise InvalidParameterError(
                f"The 'point' parameter of Store.{method} must be a point of run {run_id}. Got {missing[0]!r} instead."
            )
        return rows

    def set_measured(self, run_id: int, measured: Mapping[int, float]) -> None:
        self._writing("set_measured")
        with self._session() as session:
            self._set_measured(session, run_id, measured, "set_measured")

    def _set_measured(self, session, run_id: int, measured: Mapping[int, float], method: str) -> None:
        rows = self._points(session, run_id, list(measured), method)
        for point, value in measured.items():
            rows[int(point)].measured_metric = finite(float(value))

    def set_dominated(self, run_id: int, dominated: Mapping[int, bool | None]) -> None:
        self._writing("set_dominated")
        with self._session() as session:
            rows = self._points(session, run_id, list(dominated), "set_dominated")
            for point, flag in dominated.items():
                rows[int(point)].dominated = None if flag is None or pd.isna(flag) else bool(flag)

    def update_run(self, run_id: int, **fields: Any) -> None:
        self._writing("update_run")
        if "status" in fields:
            check_status(fields["status"], "update_run")
        with self._session() as session:
            run = self._get_run(session, run_id)
            for name, value in fields.items():
                setattr(run, name, finite(value))

    def claim_run(self, run_id: int, *, seen: Mapping[str, Any], owner: str) -> bool:
        self._writing("claim_run")
        with self._session() as session:
            self._get_run(session, run_id)
            claimed = session.execute(
                update(RunModel)
                .where(
                    RunModel.id == int(run_id),
                    RunModel.status == seen["status"],
                    RunModel.owner.is_(None) if seen["owner"] is None else RunModel.owner == seen["owner"],
                )
                .values(status="running", error=None, owner=owner)
            )
            return claimed.rowcount == 1

    def finish_run(self, run_id: int, status: str, **fields: Any) -> None:
        self._writing("finish_run")
        check_status(status, "finish_run")
        with self._session() as session:
            run = self._get_run(session, run_id)
            run.status = status
            run.finished_at = utcnow()
            for name, value in fields.items():
                setattr(run, name, finite(value))

    # -- reading runs -----------------------------------------------------------------------
    def _get_run(self, session, run_id: int) -> RunModel:
        # An id past SQLite's and PostgreSQL's 64-bit integers is no run (the driver would overflow).
        run = session.get(RunModel, int(run_id)) if 0 < int(run_id) < 2**63 else None
        if run is None:
            newest = session.scalar(select(RunModel.id).order_by(RunModel.id.desc()).limit(1))
            hint = f"the newest is {newest}" if newest is not None else "the store has no runs yet"
            raise RunNotFoundError(f"run {run_id} is not in {self.where} ({hint}); list them with 'mpq runs'.")
        return run

    def run_record(self, run_id: int) -> dict[str, Any]:
        with self._session() as session:
            return _record(self._get_run(session, run_id))

    def unfinished_runs(self, **fields: Any) -> list[dict[str, Any]]:
        wanted = json.loads(json.dumps(fields, default=str))
        with self._session() as session:
            rows = session.scalars(
                select(RunModel)
                .where(RunModel.status != "done", RunModel.model_hash == fields["model_hash"])
                .order_by(RunModel.id.desc())
            )
            records = [_record(run) for run in rows]
        return [r for r in records if json.loads(json.dumps({k: r[k] for k in wanted}, default=str)) == wanted]

    def run_tables(self, run_id: int) -> dict[str, pd.DataFrame]:
        with self._session() as session:
            run = self._get_run(session, run_id)
            return {t.name: table_from_json(t.table_json) for t in run.tables}

    def run_points(self, run_id: int) -> tuple[pd.DataFrame, pd.DataFrame]:
        with self._session() as session:
            run = self._get_run(session, run_id)
            rows = [
                {
                    "point": p.point,
                    "label": p.label,
                    "is_baseline": p.is_baseline,
                    "optimal": p.optimal,
                    "predicted_loss": p.predicted_loss,
                    "costs": p.costs,
                    "measured_metric": p.measured_metric,
                    "dominated": p.dominated,
                    "assignment": [(a.layer, a.candidate) for a in p.assignments],
                }
                for p in run.points
            ]
        return point_frames(rows)

    def list_runs(self) -> pd.DataFrame:
        columns = list(RUN_LIST_COLUMNS)
        with self._session() as session:
            rows = [
                {
                    "run": r.id,
                    "status": r.status,
                    "task": r.task_name,
                    "target": r.target,
                    "objectives": ",".join(r.objectives),
                    "points": len(r.points),
                    "metric_name": r.metric_name,
                    "float_metric": r.float_metric,
                    "spearman": r.spearman,
                    "created_at": r.created_at,
                    "finished_at": r.finished_at,
                    "owner": r.owner,
                }
                for r in session.scalars(select(RunModel).order_by(RunModel.id))
            ]
        return pd.DataFrame(rows, columns=columns)
