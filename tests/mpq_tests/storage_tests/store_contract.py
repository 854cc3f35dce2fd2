"""The store's contract as tests (Optuna's ``StorageTestCase`` shape): what every backend of
:class:`mpq._storage.BaseStore` promises, run once per backend by subclassing
(``test_store_contract.py``).

- :class:`CheckpointContract`: probe checkpoints by key (the results store, and the
  ``ProbeCheckpoint`` folder, which implements only these two methods).
- :class:`ReadContract`: reads of a store a writer filled, by the backend's reader, which leaves
  the store exactly as it was and refuses every write.
- :class:`WriteContract`: writes: round trips, run not found, atomic claims, the allowed statuses.
- :class:`StoreContract`: all three, for a backend that reads and writes.

A backend subclass provides the ``backend`` fixture: a :class:`Backend`, the factory of its
stores (handles onto one new store, each like another process's). Nothing here reaches past the
interface (no engine, no SQL): what only the SQL store promises (its connections, its CHECK
constraints) is tested in ``test_store_contract.py``'s SQL-only classes.
"""

from __future__ import annotations

import contextlib
import gc
import math
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import pandas as pd
import pytest
from sqlalchemy import create_engine, inspect, text

from mpq._storage import RUN_STATUSES, BaseStore, Store
from mpq.exceptions import InvalidParameterError, RunNotFoundError, StoreError

RUN_FIELDS = dict(
    task_name="tiny",
    metric_name="accuracy",
    model_hash="m" * 64,
    data_hash="d" * 64,
    probe_key="k" * 64,
    target="stm32h743",
    objectives=["latency_s"],
    budgets={"weight_bytes": 2e5},
    settings={"max_points": 20},
    versions={"mpq": "0.1.0"},
)
STATE = {"n": 3, "mean": [0.1, 1 / 3, 1e-300], "m2": {"conv1": 2.5e-17}, "done": [[0, "w8a8"]]}
# Floats 15 significant digits do not hold: a resumed run must read back the very numbers it stored.
SENSITIVITY = pd.DataFrame({"layer": ["a", "b", "c"], "probe": ["hessian_w"] * 3, "value": [1 / 3, 0.1 + 0.2, -1e-300]})
LAYERS = pd.DataFrame({"layer": ["conv1", "fc.0-1"], "macs": [10, 20], "weight_shape": [(4, 1, 3, 3), (3, 8)]})
LAYERS.attrs["max_columns"] = ["sram_bytes"]


def point(i: int, **extra: Any) -> dict[str, Any]:
    return {
        "point": i,
        "label": "frontier",
        "is_baseline": False,
        "optimal": True,
        "predicted_loss": 0.5 - 0.1 * i,
        "costs": {"latency_s": 1e-3 * (i + 1), "sram_bytes": 1024.0},
        "measured_metric": 0.9 + 0.01 * i,
        "assignment": {"conv1": "w8a8", "fc.0-1": "w4a8"},
        **extra,
    }


def sqlite_snapshot(path: Path) -> bytes | None:
    """The file's bytes once every connection is closed and the WAL is folded into it; None
    when there is no file (the checkpoint is made on a copy, so the file itself is not written)."""
    gc.collect()
    if not path.exists():
        return None
    wal = path.with_name(path.name + "-wal")
    if not wal.exists() or not wal.stat().st_size:
        return path.read_bytes()
    with (
        contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as source,
        contextlib.closing(sqlite3.connect(":memory:")) as copy,
    ):
        source.backup(copy)
        return copy.serialize()


def database_snapshot(url: str) -> dict[str, list]:
    """Every table's rows, in order, of any SQLAlchemy database."""
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            return {
                table: [tuple(map(str, row)) for row in connection.execute(text(f'SELECT * FROM "{table}" ORDER BY 1'))]
                for table in sorted(inspect(connection).get_table_names())
            }
    finally:
        engine.dispose()


class Backend(Protocol):
    """Opens stores onto one new store, as processes do."""

    def open(self, mode: str) -> BaseStore:
        """A new handle onto the store: ``write`` creates it when there is none; ``read`` never does."""

    def release(self, store: BaseStore) -> None:
        """Let go of a handle (close its connections), as a process ending does."""

    def snapshot(self) -> Any:
        """Everything a reader must leave as it was."""


@dataclass
class SQLBackend:
    """The SQL store at ``url``; ``reader_url``: where a reader opens it (default ``url``)."""

    url: str
    reader_url: str | None = None

    def open(self, mode: str) -> Store:
        url = self.reader_url if mode == "read" and self.reader_url else self.url
        return Store(url, mode=mode, create=mode == "write")

    def release(self, store: Store) -> None:
        store.engine.dispose()

    def snapshot(self) -> Any:
        """A SQLite file's bytes, or every table's rows of another database."""
        return database_snapshot(self.url) if "://" in self.url else sqlite_snapshot(Path(self.url))


class CheckpointContract:
    """A probe's state by key: absent is None, a save replaces the whole state, floats exact."""

    @pytest.fixture
    def checkpoints(self, backend):
        """An empty, writable holder of probe checkpoints."""
        return backend.open("write")

    def test_a_missing_key_is_none(self, checkpoints):
        assert checkpoints.load_probe_checkpoint("nothing-here") is None

    def test_a_state_round_trips_exactly(self, checkpoints):
        checkpoints.save_probe_checkpoint("k1", STATE)
        assert checkpoints.load_probe_checkpoint("k1") == STATE  # 1/3 and 1e-300 bit for bit

    def test_a_save_replaces_the_whole_state_of_its_key_only(self, checkpoints):
        checkpoints.save_probe_checkpoint("k1", STATE)
        checkpoints.save_probe_checkpoint("k2", {"n": 1})
        checkpoints.save_probe_checkpoint("k1", {"n": 4})
        assert checkpoints.load_probe_checkpoint("k1") == {"n": 4}
        assert checkpoints.load_probe_checkpoint("k2") == {"n": 1}


class ReadContract:
    """Reads of a store that a writer filled, through the backend's reader."""

    @pytest.fixture
    def backend(self) -> Backend:
        raise NotImplementedError("a backend provides the factory of its stores")

    @pytest.fixture
    def filled(self, backend) -> dict[str, int]:
        """A done run with a table and three points (one validated as dominated, one not yet
        measured), a failed run, a probe result and a checkpoint."""
        writer = backend.open("write")
        done = writer.create_run(tables={"layers": LAYERS}, owner="host-a:1", **RUN_FIELDS)
        writer.save_points(done, [point(0), point(1, dominated=True), point(2, measured_metric=None)])
        writer.set_dominated(done, {0: False})
        writer.finish_run(done, "done", float_metric=0.98, spearman=0.9)
        failed = writer.create_run(owner="host-a:2", **{**RUN_FIELDS, "target": "zcu104"})
        writer.finish_run(failed, "failed", error="ProbeError: loss is NaN")
        writer.save_probe("p1", model_hash="m", data_hash="d", settings={"x": 1}, table=SENSITIVITY)
        writer.save_probe_checkpoint("c1", STATE)
        backend.release(writer)
        return {"done": done, "failed": failed}

    def test_a_run_record_reads_back(self, backend, filled):
        record = backend.open("read").run_record(filled["done"])
        assert (record["id"], record["status"], record["owner"]) == (filled["done"], "done", "host-a:1")
        assert record["budgets"] == {"weight_bytes": 2e5} and record["objectives"] == ["latency_s"]
        assert record["spearman"] == 0.9 and record["finished_at"] is not None and record["error"] is None
        assert backend.open("read").run_record(filled["failed"])["error"] == "ProbeError: loss is NaN"

    def test_points_read_back_in_order_with_nullable_dominated(self, backend, filled):
        frontier, assignments = backend.open("read").run_points(filled["done"])
        assert list(frontier.columns) == [
            "point",
            "label",
            "is_baseline",
            "optimal",
            "predicted_loss",
            "latency_s",
            "sram_bytes",
            "measured_metric",
            "dominated",
        ]
        assert list(frontier["point"]) == [0, 1, 2] and frontier.loc[1, "latency_s"] == pytest.approx(2e-3)
        assert math.isnan(frontier.loc[2, "measured_metric"]) and frontier.loc[0, "measured_metric"] == 0.9
        assert str(frontier["dominated"].dtype) == "boolean"
        assert frontier["dominated"].tolist() == [False, True, pd.NA]
        assert list(assignments.columns) == ["point", "layer", "candidate"] and len(assignments) == 6
        assert list(assignments[assignments.point == 1]["layer"]) == ["conv1", "fc.0-1"]  # layer order kept

    def test_a_run_without_points_reads_as_empty(self, backend, filled):
        frontier, assignments = backend.open("read").run_points(filled["failed"])
        assert frontier.empty and assignments.empty and list(assignments.columns) == ["point", "layer", "candidate"]

    def test_tables_read_back_equal_with_attrs_and_tuples(self, backend, filled):
        tables = backend.open("read").run_tables(filled["done"])
        assert set(tables) == {"layers"}
        pd.testing.assert_frame_equal(tables["layers"], LAYERS)
        assert tables["layers"].attrs == LAYERS.attrs
        assert backend.open("read").run_tables(filled["failed"]) == {}

    def test_list_runs_is_oldest_first_with_every_column(self, backend, filled):
        runs = backend.open("read").list_runs()
        assert list(runs.columns) == [
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
        ]
        assert list(runs["run"]) == [filled["done"], filled["failed"]]
        assert list(runs["status"]) == ["done", "failed"] and list(runs["points"]) == [3, 0]
        assert list(runs["target"]) == ["stm32h743", "zcu104"] and runs.loc[0, "objectives"] == "latency_s"

    def test_unfinished_runs_match_by_fields(self, backend, filled):
        reader = backend.open("read")
        found = reader.unfinished_runs(model_hash=RUN_FIELDS["model_hash"], budgets=RUN_FIELDS["budgets"])
        assert [r["id"] for r in found] == [filled["failed"]]  # not the done one
        assert reader.unfinished_runs(model_hash=RUN_FIELDS["model_hash"], budgets={"weight_bytes": 1.0}) == []

    def test_probe_results_and_checkpoints_read_back(self, backend, filled):
        reader = backend.open("read")
        pd.testing.assert_frame_equal(reader.find_probe("p1"), SENSITIVITY)
        assert reader.find_probe("p2") is None
        assert reader.load_probe_checkpoint("c1") == STATE and reader.load_probe_checkpoint("c2") is None

    def test_a_missing_run_names_the_newest(self, backend, filled):
        reader = backend.open("read")
        for read in (reader.run_record, reader.run_points, reader.run_tables):
            with pytest.raises(
                RunNotFoundError,
                match=rf"run 7 is not in .*\(the newest is {filled['failed']}\); "
                r"list them with 'mpq runs'\.$",
            ):
                read(7)

    def test_a_reader_refuses_every_write_and_leaves_the_store_as_it_was(self, backend, filled):
        before = backend.snapshot()
        reader = backend.open("read")
        assert reader.mode == "read"
        reader.list_runs(), reader.run_points(filled["done"]), reader.run_tables(filled["done"])
        writes = [
            lambda: reader.create_run(**RUN_FIELDS),
            lambda: reader.save_table(filled["done"], "omega", SENSITIVITY),
            lambda: reader.save_points(filled["done"], []),
            lambda: reader.add_points(filled["done"], []),
            lambda: reader.set_measured(filled["done"], {2: 0.5}),
            lambda: reader.set_dominated(filled["done"], {2: True}),
            lambda: reader.update_run(filled["failed"], status="running"),
            lambda: reader.claim_run(filled["failed"], seen={"status": "failed", "owner": "host-a:2"}, owner="x:1"),
            lambda: reader.finish_run(filled["failed"], "done"),
            lambda: reader.save_probe("p1", model_hash="m", data_hash="d", settings={}, table=SENSITIVITY),
            lambda: reader.save_probe_checkpoint("c1", {"n": 0}),
        ]
        for write in writes:
            with pytest.raises(
                StoreError,
                match=r"was opened for reading, and \w+ writes; open it with Store\(db, "
                r"mode='write'\)\.$",
            ):
                write()
        backend.release(reader)  # its connections closed before the file is read back
        assert backend.snapshot() == before

    def test_a_reader_never_creates_a_store(self, backend):
        before = backend.snapshot()
        with pytest.raises(StoreError, match=r"no store at .*run 'mpq search --db|is empty; run 'mpq search'") as info:
            backend.open("read")
        assert "\n" not in str(info.value)
        assert backend.snapshot() == before


class WriteContract:
    """Writes: what is written reads back; a failed write changes nothing."""

    @pytest.fixture
    def store(self, backend) -> BaseStore:
        return backend.open("write")

    def test_new_runs_are_running_with_increasing_ids(self, store):
        first, second = store.create_run(**RUN_FIELDS), store.create_run(tables={"layers": LAYERS}, **RUN_FIELDS)
        assert second > first
        record = store.run_record(second)
        assert record["status"] == "running" and record["created_at"] is not None and record["finished_at"] is None
        pd.testing.assert_frame_equal(store.run_tables(second)["layers"], LAYERS)

    def test_save_table_replaces_a_table_of_that_name(self, store):
        run = store.create_run(tables={"layers": LAYERS}, **RUN_FIELDS)
        store.save_table(run, "sensitivity", SENSITIVITY)
        store.save_table(run, "layers", LAYERS.head(1))
        tables = store.run_tables(run)
        assert set(tables) == {"layers", "sensitivity"} and len(tables["layers"]) == 1
        assert tables["sensitivity"]["value"].tolist() == SENSITIVITY["value"].tolist()  # to the last bit

    def test_save_points_replaces_all_or_nothing(self, store):
        run = store.create_run(**RUN_FIELDS)
        store.save_points(run, [point(0), point(1, costs={"latency_s": float("nan"), "sram_bytes": 1.0})])
        frontier, _ = store.run_points(run)
        assert list(frontier.point) == [0, 1] and math.isnan(frontier.loc[1, "latency_s"])  # NaN stored as null
        broken = [point(5), {"point": 6}]  # the second point lacks its fields
        with pytest.raises(KeyError):
            store.save_points(run, broken)
        assert list(store.run_points(run)[0].point) == [0, 1]  # the failed write was rolled back whole
        store.save_points(run, [point(3)])
        assert list(store.run_points(run)[0].point) == [3]

    def test_add_points_appends_all_or_nothing(self, store):
        run = store.create_run(**RUN_FIELDS)
        store.save_points(run, [point(0, measured_metric=None)])
        store.add_points(run, [point(1, measured_metric=0.5)])
        assert list(store.run_points(run)[0].point) == [0, 1]
        with pytest.raises(StoreError):  # point 1 is the run's already
            store.add_points(run, [point(2), point(1)])
        frontier, assignments = store.run_points(run)
        assert list(frontier.point) == [0, 1] and set(assignments.point) == {0, 1}
        # One evaluation stored as a new point and on an existing one: both or neither.
        with pytest.raises(InvalidParameterError, match=r"Got 9 instead"):
            store.add_points(run, [point(2, measured_metric=0.25)], measured={0: 0.25, 9: 0.25})
        frontier = store.run_points(run)[0]
        assert list(frontier.point) == [0, 1] and frontier["measured_metric"].isna().tolist() == [True, False]
        store.add_points(run, [point(2, measured_metric=0.25)], measured={0: 0.25})
        assert store.run_points(run)[0]["measured_metric"].tolist() == [0.25, 0.5, 0.25]

    def test_measured_and_dominated_are_set_per_point(self, store):
        run = store.create_run(**RUN_FIELDS)
        store.save_points(run, [point(0, measured_metric=None), point(1, measured_metric=None)])
        assert store.run_points(run)[0]["dominated"].isna().all()
        store.set_measured(run, {1: 0.75})
        store.set_dominated(run, {0: True, 1: False})
        store.set_dominated(run, {0: None})
        frontier = store.run_points(run)[0]
        assert frontier["measured_metric"].tolist()[1] == 0.75 and math.isnan(frontier["measured_metric"][0])
        assert frontier["dominated"].tolist() == [pd.NA, False]
        with pytest.raises(InvalidParameterError, match=r"must be a point of run \d+\. Got 9 instead\.$"):
            store.set_dominated(run, {1: True, 9: True})
        with pytest.raises(InvalidParameterError, match=r"Got 9 instead"):
            store.set_measured(run, {0: 0.5, 9: 0.5})
        frontier = store.run_points(run)[0]  # nothing changed
        assert frontier["dominated"].tolist() == [pd.NA, False] and math.isnan(frontier["measured_metric"][0])

    def test_writes_to_a_missing_run_are_refused(self, store):
        store.create_run(**RUN_FIELDS)
        for write in (
            lambda: store.save_table(7, "layers", LAYERS),
            lambda: store.save_points(7, [point(0)]),
            lambda: store.set_measured(7, {0: 0.5}),
            lambda: store.set_dominated(7, {0: True}),
            lambda: store.update_run(7, spearman=0.5),
            lambda: store.finish_run(7, "done"),
            lambda: store.claim_run(7, seen={"status": "failed", "owner": None}, owner="x:1"),
        ):
            with pytest.raises(RunNotFoundError, match=r"run 7 is not in .*\(the newest is 1\)"):
                write()

    def test_finish_and_update_set_fields(self, store):
        run = store.create_run(**RUN_FIELDS)
        store.update_run(run, float_metric=float("nan"), spearman=0.5)
        store.finish_run(run, "failed", error="interrupted (Ctrl-C)")
        record = store.run_record(run)
        assert record["float_metric"] is None and record["spearman"] == 0.5  # NaN stored as null
        assert (record["status"], record["error"]) == ("failed", "interrupted (Ctrl-C)") and record["finished_at"]

    @pytest.mark.parametrize("status", ["stopped", "DONE", "", None])
    def test_a_status_outside_the_allowed_set_is_refused(self, store, status):
        run = store.create_run(**RUN_FIELDS)
        with pytest.raises(InvalidParameterError, match=r"must be one of running, done, failed\. Got .* instead\.$"):
            store.finish_run(run, status)
        with pytest.raises(InvalidParameterError, match=r"must be one of running, done, failed"):
            store.update_run(run, status=status, spearman=0.1)
        assert store.run_record(run)["status"] == "running" and store.run_record(run)["spearman"] is None
        assert set(store.list_runs()["status"]) <= set(RUN_STATUSES)

    def test_a_run_is_claimed_only_while_it_is_as_seen(self, store):
        run = store.create_run(owner="host-a:1", **RUN_FIELDS)
        store.finish_run(run, "failed", error="interrupted (Ctrl-C)")
        seen = store.run_record(run)
        assert store.claim_run(run, seen=seen, owner="host-b:7")
        assert not store.claim_run(run, seen=seen, owner="host-c:8")  # a second resumer loses the race
        record = store.run_record(run)
        assert (record["status"], record["owner"], record["error"]) == ("running", "host-b:7", None)

    def test_of_many_concurrent_claims_exactly_one_wins(self, store, backend):
        run = store.create_run(owner=None, **RUN_FIELDS)
        store.finish_run(run, "failed")
        seen = store.run_record(run)
        stores = [backend.open("write") for _ in range(6)]  # one handle each, like processes
        barrier, won = threading.Barrier(len(stores)), []

        def claim(i: int) -> None:
            barrier.wait()
            if stores[i].claim_run(run, seen=seen, owner=f"host:{i}"):
                won.append(i)

        threads = [threading.Thread(target=claim, args=(i,)) for i in range(len(stores))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(won) == 1 and store.run_record(run)["owner"] == f"host:{won[0]}"
        for other in stores:
            backend.release(other)

    def test_a_probe_result_is_replaced_by_key(self, store):
        assert store.find_probe("p1") is None
        store.save_probe("p1", model_hash="m", data_hash="d", settings={"x": 1}, table=SENSITIVITY)
        store.save_probe("p1", model_hash="m", data_hash="d", settings={"x": 1}, table=SENSITIVITY.head(1))
        pd.testing.assert_frame_equal(store.find_probe("p1"), SENSITIVITY.head(1))


class StoreContract(CheckpointContract, WriteContract, ReadContract):
    """The whole contract, for a backend that reads and writes."""
