"""The results store: one class over SQLAlchemy; SQLite by default, any SQLAlchemy URL for teams."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from io import StringIO
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import pandas as pd
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, delete, event, inspect, select, update
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.exc import ArgumentError, IntegrityError, SQLAlchemyError
from sqlalchemy.orm import sessionmaker

from mpq._examples._cache import cache_dir
from mpq._storage.models import (
    AssignmentModel,
    Base,
    PointModel,
    ProbeCheckpointModel,
    ProbeResultModel,
    RunModel,
    RunTableModel,
    utcnow,
)
from mpq._storage.session import session_scope, store_error
from mpq._owners import ACTIVE
from mpq.exceptions import RunNotFoundError, SearchInterrupted, StoreError

_ALEMBIC_INI = Path(__file__).parent / "alembic.ini"
# How long a process waits for another one that is creating the same new store.
_SCHEMA_WAIT_TRIES, _SCHEMA_WAIT_S = 60, 0.5


class _SchemaBeingCreated(Exception):
    """The schema is half there: another process is creating or migrating it."""


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
    """A SQLite URI opened with ``mode=ro``: SQLite refuses every write to it."""
    return url.query.get("mode") == "ro"


def _record(run: RunModel) -> dict[str, Any]:
    """A run's own fields as a plain dict."""
    return {c.key: getattr(run, c.key) for c in inspect(RunModel).column_attrs}


def _finite(value: Any) -> Any:
    """NaN is not JSON (PostgreSQL rejects it): store it as null."""
    return None if isinstance(value, float) and math.isnan(value) else value


def table_to_json(table: pd.DataFrame) -> str:
    """A table and its ``attrs`` (the cost model's max_columns, cost_columns...) as one JSON text."""
    split = json.loads(table.to_json(orient="split", index=False, double_precision=15))
    return json.dumps({"attrs": table.attrs, "table": split}, default=str)


def table_from_json(text: str) -> pd.DataFrame:
    document = json.loads(text)
    table = pd.read_json(StringIO(json.dumps(document["table"])), orient="split", dtype=False)
    for column in table.columns:  # JSON has no tuples: shapes come back as lists
        if len(table) and isinstance(table[column].iloc[0], list):
            table[column] = table[column].map(tuple)
    table.attrs.update(document["attrs"])
    return table


class Store:
    """All reads and writes of mpq's results, behind one interface.

    Args:
        db: ``None`` (``~/.cache/mpq/mpq.db``), a SQLite file path, or any SQLAlchemy URL
            (``postgresql+psycopg://user@host/db``).
        create: Create the store (and its schema) when it does not exist yet. Read-only
            commands pass False, so a mistyped path is an error, not a new empty file.

    Raises:
        StoreError: the database cannot be opened, is not a database, or has a schema this mpq
            cannot read.
    """

    def __init__(self, db: str | Path | None = None, *, create: bool = True):
        self.url = db_url(db)
        try:
            url = make_url(self.url)
        except ArgumentError as exc:
            raise StoreError(f"--db {self.url!r} is not a database URL; give a file path or a SQLAlchemy URL such as postgresql+psycopg://user@host/db.") from exc
        # A SQLite URL has no password; shown as given, its URI filename stays readable.
        self.where = f"database {self.url if url.get_backend_name() == 'sqlite' else url.render_as_string(hide_password=True)}"
        path = _sqlite_file(url)
        if path is not None:
            if path.is_dir():
                raise StoreError(f"{self.where}: {str(path)!r} is a directory; give a file path such as {str(path / 'mpq.db')!r}.")
            if not path.exists() and (not create or _read_only(url)):
                raise StoreError(f"{self.where}: no store at {str(path)!r}; run 'mpq search --db {path}' first or fix the path.")
            path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.engine = self._make_engine(url)
        except ImportError as exc:  # the database driver is an optional extra
            raise StoreError(
                f"{self.where}: its driver {exc.name!r} is not installed; run 'pip install mpq[postgres]' "
                "(or the driver your URL names)."
            ) from exc
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._check_schema(create)

    @staticmethod
    def _make_engine(url) -> Engine:
        if url.get_backend_name() != "sqlite":
            return create_engine(url, pool_pre_ping=True)
        # timeout: a writer waits up to 30 s for another process's write lock instead of failing
        # with "database is locked"; WAL lets readers and one writer work at the same time.
        engine = create_engine(url, connect_args={"timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(connection, _record):
            cursor = connection.cursor()
            cursor.execute("PRAGMA foreign_keys=ON")
            if _sqlite_file(url) is not None and not _read_only(url):
                cursor.execute("PRAGMA journal_mode=WAL")
            cursor.close()

        return engine

    # -- schema -----------------------------------------------------------------------------
    def _alembic_config(self, connection) -> Config:
        config = Config(str(_ALEMBIC_INI))
        config.attributes["connection"] = connection
        return config

    def _check_schema(self, create: bool) -> None:
        """Open the schema, creating or upgrading it; wait while another process is creating it."""
        scripts = ScriptDirectory.from_config(Config(str(_ALEMBIC_INI)))
        head, known = scripts.get_current_head(), {rev.revision for rev in scripts.walk_revisions()}
        for _ in range(_SCHEMA_WAIT_TRIES):
            try:
                return self._check_schema_once(create, head, known)
            except _SchemaBeingCreated:
                time.sleep(_SCHEMA_WAIT_S)
        raise StoreError(
            f"{self.where} holds part of an mpq schema that no process finished creating; delete it or give another --db."
        )

    def _check_schema_once(self, create: bool, head: str, known: set[str]) -> None:
        ours = set(Base.metadata.tables) | {"alembic_version"}
        try:
            with self.engine.begin() as connection:
                current = MigrationContext.configure(connection).get_current_revision()
                tables = set(inspect(connection).get_table_names())
                if current == head:
                    return
                if current is not None and current not in known:
                    raise StoreError(
                        f"{self.where} has schema {current}, newer than this mpq's {head}; upgrade mpq "
                        "(pip install -U mpq) to read it. The database was left untouched."
                    )
                if current is None and tables and tables <= ours:
                    raise _SchemaBeingCreated  # another mpq process is creating this store right now
                if current is None and tables:
                    raise StoreError(
                        f"{self.where} holds tables that are not an mpq store ({', '.join(sorted(tables)[:3])}...); "
                        "give another --db."
                    )
                if current is None and not create:
                    raise StoreError(f"{self.where} is empty; run 'mpq search' to fill it.")
                # A new store, or one written by an older mpq: migrate it, keeping every run.
                command.upgrade(self._alembic_config(connection), "head")
        except SQLAlchemyError as exc:
            if self._current_revision() == head or "already exists" in str(exc):
                raise _SchemaBeingCreated from exc  # raced another process creating or migrating it
            raise store_error(exc, self.where, "check --db points at an mpq database you can reach", opening=True) from exc

    def _current_revision(self) -> str | None:
        try:
            with self.engine.connect() as connection:
                return MigrationContext.configure(connection).get_current_revision()
        except SQLAlchemyError:
            return None

    def _session(self):
        return session_scope(self._sessions, self.where)

    # -- probes -----------------------------------------------------------------------------
    def find_probe(self, key: str) -> pd.DataFrame | None:
        """The stored sensitivity table of a probe key, or None."""
        with self._session() as session:
            row = session.get(ProbeResultModel, key)
            return None if row is None else table_from_json(row.table_json)

    def save_probe(self, key: str, *, model_hash: str, data_hash: str, settings: dict, table: pd.DataFrame) -> None:
        self._merge(
            ProbeResultModel(key=key, model_hash=model_hash, data_hash=data_hash, settings=settings, table_json=table_to_json(table))
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

    # The probe checkpoint protocol (load(key) / save(key, state)); a finished probe's state stays,
    # so the same probe again (mpq probe) returns at once.
    def load(self, key: str) -> dict | None:
        with self._session() as session:
            row = session.get(ProbeCheckpointModel, key)
            return None if row is None else row.state

    def save(self, key: str, state: dict) -> None:
        self._merge(ProbeCheckpointModel(key=key, state=state, updated_at=utcnow()))

    # -- runs -------------------------------------------------------------------------------
    def create_run(self, tables: Mapping[str, pd.DataFrame] | None = None, **fields: Any) -> int:
        """Record a new run with status ``running`` and its first tables, in one transaction; returns its id."""
        with self._session() as session:
            run = RunModel(status="running", **fields)
            run.tables = [RunTableModel(name=name, table_json=table_to_json(t)) for name, t in (tables or {}).items()]
            session.add(run)
            session.flush()
            return run.id

    def save_table(self, run_id: int, name: str, table: pd.DataFrame) -> None:
        with self._session() as session:
            session.execute(delete(RunTableModel).where(RunTableModel.run_id == run_id, RunTableModel.name == name))
            session.add(RunTableModel(run_id=run_id, name=name, table_json=table_to_json(table)))

    def save_points(self, run_id: int, points: Sequence[Mapping[str, Any]]) -> None:
        """Replace the run's points; each has point, label, is_baseline, optimal,
        predicted_loss, costs (dict), measured_metric and assignment (layer -> candidate)."""
        with self._session() as session:
            session.execute(delete(PointModel).where(PointModel.run_id == run_id))
            for p in points:
                session.add(
                    PointModel(
                        run_id=run_id,
                        point=int(p["point"]),
                        label=p["label"],
                        is_baseline=bool(p["is_baseline"]),
                        optimal=bool(p["optimal"]),
                        predicted_loss=float(p["predicted_loss"]),
                        costs={k: _finite(float(v)) for k, v in p["costs"].items()},
                        measured_metric=_finite(p.get("measured_metric")),
                        assignments=[
                            AssignmentModel(position=i, layer=layer, candidate=candidate)
                            for i, (layer, candidate) in enumerate(p["assignment"].items())
                        ],
                    )
                )

    def set_measured(self, run_id: int, point: int, value: float) -> None:
        """Record the validated metric of one point (validation resumes point by point)."""
        with self._session() as session:
            row = session.scalars(select(PointModel).where(PointModel.run_id == run_id, PointModel.point == point)).one()
            row.measured_metric = _finite(float(value))

    def update_run(self, run_id: int, **fields: Any) -> None:
        """Change fields of a run (``status="running"`` when it resumes, ``float_metric``...)."""
        with self._session() as session:
            run = self._get_run(session, run_id)
            for name, value in fields.items():
                setattr(run, name, _finite(value))

    def claim_run(self, run_id: int, *, seen: Mapping[str, Any], owner: str) -> bool:
        """Mark an unfinished run ``running`` by ``owner``, only if its status and owner are still
        the ``seen`` ones: of two processes resuming one run, exactly one gets it."""
        with self._session() as session:
            claimed = session.execute(
                update(RunModel)
                .where(RunModel.id == int(run_id), RunModel.status == seen["status"],
                       RunModel.owner.is_(None) if seen["owner"] is None else RunModel.owner == seen["owner"])
                .values(status="running", error=None, owner=owner)
            )
            return claimed.rowcount == 1

    @contextmanager
    def running(self, run_id: int) -> Iterator[None]:
        """The lifecycle of a run this process runs (created or claimed for it already).

        Inside, the run counts as this process's (``mpq._owners.ACTIVE``), so the listing does
        not show it as stopped. Ctrl-C marks it failed as interrupted and raises
        :class:`SearchInterrupted` with the command that resumes it; any other error marks it
        failed with the error's first line, and is raised again. Where the store refuses even
        that write (a full disk, a read-only file), its StoreError says how to finish the run.
        """
        ACTIVE.add((self.url, run_id))
        try:
            yield
        except KeyboardInterrupt as exc:
            self._mark_failed(run_id, "interrupted (Ctrl-C)", exc)
            raise SearchInterrupted(
                f"search interrupted; run {run_id} keeps what was done: finish it with "
                f"'mpq search --resume {run_id}' (same --model and --db)."
            ) from exc
        except BaseException as exc:
            message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            self._mark_failed(run_id, f"{type(exc).__name__}: {message}", exc)
            raise
        finally:
            ACTIVE.discard((self.url, run_id))

    def _mark_failed(self, run_id: int, error: str, exc: BaseException) -> None:
        try:
            self.finish_run(run_id, "failed", error=error)
        except StoreError as store_exc:
            first = exc if isinstance(exc, StoreError) else store_exc
            raise StoreError(
                f"{first} Run {run_id} keeps what was stored before this error: once the store is writable, finish it "
                f"with 'mpq search --resume {run_id}' (same --model and --db)."
            ) from exc

    def finish_run(self, run_id: int, status: str, **fields: Any) -> None:
        """Set the final status (``done`` or ``failed``) and any summary fields."""
        with self._session() as session:
            run = self._get_run(session, run_id)
            run.status = status
            run.finished_at = utcnow()
            for name, value in fields.items():
                setattr(run, name, _finite(value))

    def _get_run(self, session, run_id: int) -> RunModel:
        run = session.get(RunModel, int(run_id))
        if run is None:
            newest = session.scalar(select(RunModel.id).order_by(RunModel.id.desc()).limit(1))
            hint = f"the newest is {newest}" if newest is not None else "the store has no runs yet"
            raise RunNotFoundError(f"run {run_id} is not in {self.where} ({hint}); list them with 'mpq runs'.")
        return run

    def run_record(self, run_id: int) -> dict[str, Any]:
        """The run's own fields as a dict."""
        with self._session() as session:
            return _record(self._get_run(session, run_id))

    def unfinished_runs(self, **fields: Any) -> list[dict[str, Any]]:
        """Records of the runs not ``done`` whose fields equal ``fields`` (JSON fields compared as
        documents), newest first: the runs a search with those fields may finish."""
        wanted = json.loads(json.dumps(fields, default=str))
        with self._session() as session:
            rows = session.scalars(
                select(RunModel).where(RunModel.status != "done", RunModel.model_hash == fields["model_hash"])
                .order_by(RunModel.id.desc())
            )
            records = [_record(run) for run in rows]
        return [r for r in records if json.loads(json.dumps({k: r[k] for k in wanted}, default=str)) == wanted]

    def run_tables(self, run_id: int) -> dict[str, pd.DataFrame]:
        with self._session() as session:
            run = self._get_run(session, run_id)
            return {t.name: table_from_json(t.table_json) for t in run.tables}

    def run_points(self, run_id: int) -> tuple[pd.DataFrame, pd.DataFrame]:
        """``(frontier, assignments)``: one row per point, one row per (point, layer)."""
        with self._session() as session:
            run = self._get_run(session, run_id)
            frontier = [
                {
                    "point": p.point, "label": p.label, "is_baseline": p.is_baseline, "optimal": p.optimal,
                    "predicted_loss": p.predicted_loss, **{k: (math.nan if v is None else v) for k, v in p.costs.items()},
                    "measured_metric": math.nan if p.measured_metric is None else p.measured_metric,
                }
                for p in run.points
            ]
            assignments = [
                {"point": p.point, "layer": a.layer, "candidate": a.candidate} for p in run.points for a in p.assignments
            ]
        return pd.DataFrame(frontier), pd.DataFrame(assignments, columns=["point", "layer", "candidate"])

    def list_runs(self) -> pd.DataFrame:
        columns = ["run", "status", "task", "target", "objectives", "points", "metric_name", "float_metric",
                   "spearman", "created_at", "finished_at", "owner"]
        with self._session() as session:
            rows = [
                {
                    "run": r.id, "status": r.status, "task": r.task_name, "target": r.target,
                    "objectives": ",".join(r.objectives), "points": len(r.points), "metric_name": r.metric_name,
                    "float_metric": r.float_metric, "spearman": r.spearman,
                    "created_at": r.created_at, "finished_at": r.finished_at, "owner": r.owner,
                }
                for r in session.scalars(select(RunModel).order_by(RunModel.id))
            ]
        return pd.DataFrame(rows, columns=columns)
