"""Writers wait for each other's locks, on a new file too, and a lock held too long is named.

The stress twin (several processes creating, searching into and reading one new store at the same
instant, round after round) is ``test_stress.py``, marked slow.
"""

from __future__ import annotations

import multiprocessing
import sqlite3
import threading
import time

import pytest

import mpq
import mpq._storage as storage
from mpq._storage import Store
from mpq.exceptions import StoreError

RUN_FIELDS = dict(
    task_name="t",
    model_spec="m",
    metric_name="accuracy",
    model_hash="h",
    data_hash="d",
    probe_key="k",
    target="zcu104",
    objectives=["latency_s"],
    budgets={},
    versions={},
    settings={},
)


def _hold_write_lock(path, seconds: float, journal_mode: str | None = None) -> threading.Timer:
    """Another connection takes the file's write lock now and lets it go after ``seconds``."""
    raw = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    if journal_mode is not None:
        raw.execute(f"PRAGMA journal_mode={journal_mode}")
    raw.execute("BEGIN IMMEDIATE")
    raw.execute("CREATE TABLE scratch (x)")
    release = threading.Timer(seconds, lambda: (raw.execute("ROLLBACK"), raw.close()))
    release.start()
    return release


def test_opening_waits_for_a_write_lock_while_it_switches_the_file_to_wal(tmp_path):
    # A new store's first writers switch it to WAL; switching needs the file alone, and SQLite
    # refuses at once (no timeout) while another process writes: "cannot open it (database is
    # locked)" in 1 of 3 pairs of searches started together on a new file.
    path = tmp_path / "c.db"
    Store(path, mode="write", create=True)
    release = _hold_write_lock(path, 1.0, journal_mode="DELETE")
    start = time.monotonic()
    store = Store(path, mode="write")
    assert time.monotonic() - start >= 0.9  # it waited for the lock
    assert store.list_runs().empty
    assert sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    release.join()


def test_a_write_waits_for_another_writers_lock(tmp_path):
    path = tmp_path / "c.db"
    store = Store(path, mode="write", create=True)
    release = _hold_write_lock(path, 1.0)
    start = time.monotonic()
    run_id = store.create_run(**RUN_FIELDS)
    assert time.monotonic() - start >= 0.9 and store.run_record(run_id)["status"] == "running"
    release.join()


def test_a_lock_held_longer_than_the_wait_is_named(tmp_path, monkeypatch):
    path = tmp_path / "c.db"
    Store(path, mode="write", create=True)
    monkeypatch.setattr(storage, "_LOCK_WAIT_S", 0.3)
    store = Store(path, mode="write")
    release = _hold_write_lock(path, 2.0)
    with pytest.raises(StoreError) as info:
        store.create_run(**RUN_FIELDS)
    message = str(info.value)
    assert "\n" not in message and "database is locked" in message
    assert "another process held the store's write lock for longer than mpq waits" in message
    release.join()
    assert Store(path, mode="read").list_runs().empty  # the refused write left nothing


def _open_and_write(path, start, results) -> None:
    start.wait()
    try:
        store = Store(path, mode="write", create=True)
        for _ in range(3):
            store.run_record(store.create_run(**RUN_FIELDS))
            store.list_runs()
        results.put("ok")
    except Exception as exc:  # noqa: BLE001 - reported to the test, which fails on it
        results.put(f"{type(exc).__name__}: {exc}")


def test_processes_creating_one_new_store_at_the_same_instant_all_write(tmp_path):
    context = multiprocessing.get_context("fork")
    for round_ in range(3):
        path = tmp_path / f"new{round_}.db"
        start, results = context.Event(), context.Queue()
        workers = [context.Process(target=_open_and_write, args=(path, start, results)) for _ in range(4)]
        for worker in workers:
            worker.start()
        start.set()
        for worker in workers:
            worker.join(timeout=120)
        assert [results.get(timeout=5) for _ in workers] == ["ok"] * 4
        assert len(Store(path, mode="read").list_runs()) == 12
        assert sqlite3.connect(path).execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_readers_never_wait_for_a_writer_and_never_block_one(tmp_path, monkeypatch):
    """``mpq runs``, ``mpq.open_run`` and the dashboard read while searches write: a reader gets
    the last committed state at once while a writer holds the lock, and a reader holding a
    snapshot open (a long page render) does not hold up a writer's commits."""
    path = tmp_path / "c.db"
    store = Store(path, mode="write", create=True)
    first = store.create_run(**RUN_FIELDS)
    monkeypatch.setattr(storage, "_LOCK_WAIT_S", 0.3)  # a reader that waited would fail, not be slow
    release = _hold_write_lock(path, 5.0)  # a writer mid-transaction
    assert list(mpq.list_runs(path)["run"]) == [first]
    assert mpq.open_run(path, first).record["status"] == "running"
    release.cancel()
    release.function()  # the writer ends before the second half

    snapshot = sqlite3.connect(path, isolation_level=None)
    snapshot.execute("BEGIN")
    (seen,) = snapshot.execute("SELECT count(*) FROM runs").fetchone()  # its read transaction stays open
    writer = Store(path, mode="write")
    second = writer.create_run(**RUN_FIELDS)  # refused after 0.3 s if the reader held it up
    writer.finish_run(second, "done")
    assert snapshot.execute("SELECT count(*) FROM runs").fetchone() == (seen,)  # its snapshot, unchanged
    snapshot.execute("COMMIT")
    assert snapshot.execute("SELECT count(*) FROM runs").fetchone() == (seen + 1,)
    assert mpq.open_run(path, second).status == "done"
