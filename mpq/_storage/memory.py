"""The results store in this process's memory: :class:`MemoryStore`, a :class:`BaseStore` of
plain dicts, gone when the process ends (``--db :memory:``).

It keeps what the SQL store keeps, as documents (tables and probe states as JSON text, so they
read back exactly as the SQL store's do), and keeps its promises without a database: every
write checks everything before it changes anything, so a failed write changes nothing; one lock
makes each write atomic, so of two threads claiming one run exactly one wins. It passes the
store contract (``tests/mpq_tests/storage_tests/store_contract.py``), which is what makes that
contract the interface's, not SQLAlchemy's.
"""

from __future__ import annotations

import copy
import json
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pandas as pd

from mpq._storage.base import RUN_FIELDS, RUN_LIST_COLUMNS, BaseStore, Mode
from mpq._storage.documents import check_status, finite, point_frames, table_from_json, table_to_json
from mpq.exceptions import InvalidParameterError, RunNotFoundError, StoreError

#: The address of every in-memory store (``--db :memory:``).
MEMORY = ":memory:"
#: Run fields stored as JSON documents (read back as JSON reads them: tuples as lists).
_DOCUMENT_FIELDS = ("objectives", "budgets", "settings", "versions")
_FLOAT_FIELDS = ("float_metric", "spearman")


@dataclass
class Contents:
    """What one in-memory store holds; its :class:`MemoryStore` handles share it."""

    created: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    probes: dict[str, dict[str, Any]] = field(default_factory=dict)
    checkpoints: dict[str, str] = field(default_factory=dict)  # key -> the state as JSON text
    runs: dict[int, dict[str, Any]] = field(default_factory=dict)  # id -> record
    tables: dict[int, dict[str, str]] = field(default_factory=dict)  # id -> name -> table JSON
    points: dict[int, dict[int, dict[str, Any]]] = field(default_factory=dict)  # id -> point -> row

    def snapshot(self) -> str:
        """Everything held, as one text: equal texts, equal contents."""
        with self.lock:
            held = {
                "probes": self.probes,
                "checkpoints": self.checkpoints,
                "runs": self.runs,
                "tables": self.tables,
                "points": self.points,
            }
            return json.dumps(held, sort_keys=True, default=str)


class MemoryStore(BaseStore):
    """A store in this process's memory (see :class:`BaseStore` for every method's contract).

    Args:
        contents: The store to open (another handle's :attr:`contents`); None for a new one.
        mode: ``read`` or ``write``, as for :class:`mpq._storage.Store`.
        create: With ``write``, make a new (empty) store of ``contents`` usable; without it, a
            store nothing created yet is refused, as an empty database is.
    """

    def __init__(self, contents: Contents | None = None, *, mode: Mode = "write", create: bool = True) -> None:
        if mode not in ("read", "write"):
            raise InvalidParameterError(
                f"The 'mode' parameter of MemoryStore must be one of read, write. Got {mode!r} instead."
            )
        self.url, self.where, self.mode = MEMORY, "the in-memory store", mode
        self.contents = Contents() if contents is None else contents
        if not self.contents.created and not (create and mode == "write"):
            raise StoreError(
                f"{self.where} is empty: it holds runs only inside the process that searched (mpq.search(db="
                "':memory:') returns its run); give --db a file to keep them."
            )
        self.contents.created = True

    def resume_hint(self, run_id: int) -> str:
        # 'mpq search --resume' opens a new, empty store: only this process's store object can finish it.
        return (
            f"the in-memory store keeps it only in this process: mpq.search(..., db=store, resume={run_id}) "
            "with the same store object finishes it; give --db a file to keep a run past the process."
        )

    def _writing(self, method: str) -> None:
        if self.mode != "write":
            raise StoreError(
                f"{self.where} was opened for reading, and {method} writes; open it with Store(db, mode='write')."
            )

    def _run(self, run_id: int) -> dict[str, Any]:
        """The run's record (the caller holds the lock)."""
        runs = self.contents.runs
        if int(run_id) not in runs:
            hint = f"the newest is {max(runs)}" if runs else "the store has no runs yet"
            raise RunNotFoundError(f"run {run_id} is not in {self.where} ({hint}); list them with 'mpq runs'.")
        return runs[int(run_id)]

    def _points(self, run_id: int, points: Sequence[int], method: str) -> dict[int, dict[str, Any]]:
        """The run's rows of ``points``; an unknown point is refused (the caller holds the lock)."""
        self._run(run_id)
        rows = self.contents.points[int(run_id)]
        missing = [p for p in points if int(p) not in rows]
        if missing:
            raise InvalidParameterError(
                f"The 'point' parameter of Store.{method} must be a point of run {run_id}. Got {missing[0]!r} instead."
            )
        return rows

    # -- probes -------------------------------------------------------------------------------
    def find_probe(self, key: str) -> pd.DataFrame | None:
        with self.contents.lock:
            found = self.contents.probes.get(key)
        return None if found is None else table_from_json(found["table_json"])

    def save_probe(self, key: str, *, model_hash: str, data_hash: str, settings: dict, table: pd.DataFrame) -> None:
        self._writing("save_probe")
        row = {"model_hash": model_hash, "data_hash": data_hash, "settings": _document(settings)}
        row["table_json"] = table_to_json(table)
        with self.contents.lock:
            self.contents.probes[key] = row

    def load_probe_checkpoint(self, key: str) -> dict | None:
        with self.contents.lock:
            found = self.contents.checkpoints.get(key)
        return None if found is None else json.loads(found)

    def save_probe_checkpoint(self, key: str, state: dict) -> None:
        self._writing("save_probe_checkpoint")
        text = json.dumps(state)
        with self.contents.lock:
            self.contents.checkpoints[key] = text

    # -- writing runs -------------------------------------------------------------------------
    def create_run(self, tables: Mapping[str, pd.DataFrame] | None = None, **fields: Any) -> int:
        self._writing("create_run")
        record = dict.fromkeys(RUN_FIELDS) | {"status": "running", "created_at": datetime.now(UTC)}
        record |= _fields(fields, "create_run")
        documents = {name: table_to_json(t) for name, t in (tables or {}).items()}
        with self.contents.lock:
            run_id = max(self.contents.runs, default=0) + 1
            self.contents.runs[run_id] = record | {"id": run_id}
            self.contents.tables[run_id] = documents
            self.contents.points[run_id] = {}
        return run_id

    def save_table(self, run_id: int, name: str, table: pd.DataFrame) -> None:
        self._writing("save_table")
        document = table_to_json(table)
        with self.contents.lock:
            self._run(run_id)
            self.contents.tables[int(run_id)][name] = document

    def save_points(self, run_id: int, points: Sequence[Mapping[str, Any]]) -> None:
        self._writing("save_points")
        rows = _rows(points)
        with self.contents.lock:
            self._run(run_id)
            self.contents.points[int(run_id)] = rows

    def add_points(
        self, run_id: int, points: Sequence[Mapping[str, Any]], measured: Mapping[int, float] | None = None
    ) -> None:
        self._writing("add_points")
        new, values = _rows(points), _metrics(measured or {})
        with self.contents.lock:
            rows = self._points(run_id, list(measured or {}), "add_points")
            numbers = [int(p["point"]) for p in points]
            taken = sorted({n for n in numbers if n in rows or numbers.count(n) > 1})
            if taken:
                raise StoreError(
                    f"{self.where}: point {taken[0]} of run {run_id} is stored already; nothing was added (number "
                    "new points after the run's own)."
                )
            for point, value in values.items():
                rows[point]["measured_metric"] = value
            rows.update(new)

    def set_measured(self, run_id: int, measured: Mapping[int, float]) -> None:
        self._writing("set_measured")
        values = _metrics(measured)
        with self.contents.lock:
            rows = self._points(run_id, list(measured), "set_measured")
            for point, value in values.items():
                rows[point]["measured_metric"] = value

    def set_dominated(self, run_id: int, dominated: Mapping[int, bool | None]) -> None:
        self._writing("set_dominated")
        flags = {int(point): None if flag is None or pd.isna(flag) else bool(flag) for point, flag in dominated.items()}
        with self.contents.lock:
            rows = self._points(run_id, list(dominated), "set_dominated")
            for point, flag in flags.items():
                rows[point]["dominated"] = flag

    def update_run(self, run_id: int, **fields: Any) -> None:
        self._writing("update_run")
        if "status" in fields:
            check_status(fields["status"], "update_run")
        changed = _fields(fields, "update_run")
        with self.contents.lock:
            self._run(run_id).update(changed)

    def claim_run(self, run_id: int, *, seen: Mapping[str, Any], owner: str) -> bool:
        self._writing("claim_run")
        with self.contents.lock:
            record = self._run(run_id)
            if (record["status"], record["owner"]) != (seen["status"], seen["owner"]):
                return False
            record.update(status="running", error=None, owner=owner)
            return True

    def finish_run(self, run_id: int, status: str, **fields: Any) -> None:
        self._writing("finish_run")
        check_status(status, "finish_run")
        changed = _fields(fields, "finish_run") | {"status": status, "finished_at": datetime.now(UTC)}
        with self.contents.lock:
            self._run(run_id).update(changed)

    # -- reading runs -------------------------------------------------------------------------
    def run_record(self, run_id: int) -> dict[str, Any]:
        with self.contents.lock:
            return copy.deepcopy(self._run(run_id))

    def unfinished_runs(self, **fields: Any) -> list[dict[str, Any]]:
        wanted = json.loads(json.dumps(fields, default=str))
        with self.contents.lock:
            records = [
                copy.deepcopy(r)
                for _, r in sorted(self.contents.runs.items(), reverse=True)
                if r["status"] != "done" and r["model_hash"] == fields["model_hash"]
            ]
        return [r for r in records if json.loads(json.dumps({k: r[k] for k in wanted}, default=str)) == wanted]

    def run_tables(self, run_id: int) -> dict[str, pd.DataFrame]:
        with self.contents.lock:
            self._run(run_id)
            documents = dict(self.contents.tables[int(run_id)])
        return {name: table_from_json(text) for name, text in documents.items()}

    def run_points(self, run_id: int) -> tuple[pd.DataFrame, pd.DataFrame]:
        with self.contents.lock:
            self._run(run_id)
            rows = copy.deepcopy([row for _, row in sorted(self.contents.points[int(run_id)].items())])
        return point_frames(rows)

    def list_runs(self) -> pd.DataFrame:
        columns = list(RUN_LIST_COLUMNS)
        with self.contents.lock:
            rows = [
                {
                    "run": run_id,
                    "status": r["status"],
                    "task": r["task_name"],
                    "target": r["target"],
                    "objectives": ",".join(r["objectives"]),
                    "points": len(self.contents.points[run_id]),
                    "metric_name": r["metric_name"],
                    "float_metric": r["float_metric"],
                    "spearman": r["spearman"],
                    "created_at": r["created_at"],
                    "finished_at": r["finished_at"],
                    "owner": r["owner"],
                }
                for run_id, r in sorted(self.contents.runs.items())
            ]
        return pd.DataFrame(rows, columns=columns)


def _document(value: Any) -> Any:
    """``value`` as a JSON column reads it back."""
    return json.loads(json.dumps(value))


def _fields(fields: Mapping[str, Any], method: str) -> dict[str, Any]:
    """A run's fields as stored: JSON documents as JSON reads them back, NaN as null; a field
    runs do not have is refused, as the SQL store's table refuses it."""
    unknown = [name for name in fields if name not in RUN_FIELDS or name in ("id", "created_at")]
    if unknown:
        raise InvalidParameterError(
            f"Store.{method}: runs have no field {unknown[0]!r}; the fields are {', '.join(RUN_FIELDS[3:])}."
        )
    stored = {}
    for name, value in fields.items():
        if name in _DOCUMENT_FIELDS:
            stored[name] = _document(value)
        else:
            stored[name] = _float(value) if name in _FLOAT_FIELDS else value
    return stored


def _float(value: Any) -> float | None:
    """A number as a float column stores it: NaN as null."""
    return None if value is None else finite(float(value))


def _metrics(measured: Mapping[int, float]) -> dict[int, float | None]:
    """Point -> measured metric as stored (checked before anything is changed)."""
    return {int(point): finite(float(value)) for point, value in measured.items()}


def _rows(points: Sequence[Mapping[str, Any]]) -> dict[int, dict[str, Any]]:
    """Points as stored (every field checked before anything is): point -> row."""
    rows = {}
    for p in points:
        dominated = p.get("dominated")
        rows[int(p["point"])] = {
            "point": int(p["point"]),
            "label": p["label"],
            "is_baseline": bool(p["is_baseline"]),
            "optimal": bool(p["optimal"]),
            "predicted_loss": float(p["predicted_loss"]),
            "costs": {k: finite(float(v)) for k, v in p["costs"].items()},
            "measured_metric": _float(p.get("measured_metric")),
            "dominated": None if dominated is None or pd.isna(dominated) else bool(dominated),
            "assignment": list(p["assignment"].items()),
        }
    return rows
