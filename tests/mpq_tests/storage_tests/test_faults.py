"""A full disk and a read-only store: one-line errors, every stored run intact, nothing half-written.

A full disk is simulated with SQLite's ``max_page_count`` (set on every connection the store
checks out, the file may not grow: SQLite then fails with SQLITE_FULL, "database or disk is
full", exactly as on a full disk); a read-only store is the same file opened with SQLite's
``mode=ro`` (SQLITE_READONLY, as for a file without write permission, which root, who runs CI,
ignores) and a PostgreSQL database set to read-only transactions.
"""

import contextlib
import gc
import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import event
from sqlalchemy.pool import Pool

import mpq
from mpq._search import pipeline as _search
from mpq._storage import Store
from mpq.cli import main
from mpq.exceptions import StoreError

# The tiny untrained model's short probes are noisy; these tests are about the store.
pytestmark = pytest.mark.filterwarnings("ignore::mpq.exceptions.SensitivityWarning")

FAST = mpq.ProbeSettings(tolerance=0.3, min_samples=3, max_samples=6)
SEARCH = dict(
    target="h100-sxm", objectives="weight_bytes", candidates=["w8a8", "w4a16", "wfp8afp8"], settings=FAST, max_points=3
)


def settled_bytes(path: Path) -> bytes:
    """The file's bytes once every connection is closed and the WAL is folded into it."""
    gc.collect()
    with contextlib.closing(sqlite3.connect(path)) as connection:
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return path.read_bytes()


def integrity(path: Path) -> str:
    with contextlib.closing(sqlite3.connect(path)) as connection:
        return connection.execute("PRAGMA integrity_check").fetchone()[0]


@contextlib.contextmanager
def disk_full_when(path: Path, full: dict):
    """While ``full["now"]`` is true, no connection to ``path`` may grow the file by one page."""

    def checkout(dbapi_connection, _record, _proxy):
        if not full["now"]:
            return
        files = [row[2] for row in dbapi_connection.execute("PRAGMA database_list")]
        if str(path) in files:
            pages = dbapi_connection.execute("PRAGMA page_count").fetchone()[0]
            dbapi_connection.execute(f"PRAGMA max_page_count = {pages}")

    event.listen(Pool, "checkout", checkout)
    try:
        yield
    finally:
        event.remove(Pool, "checkout", checkout)


def read_only(path: Path) -> str:
    return f"sqlite:///file:{path}?mode=ro&uri=true"


@pytest.fixture
def stored(tiny_task, tmp_path):
    """A store holding one finished run, settled on disk; small pages and no free ones, so that
    a new run's first write must grow the file (SQLite fills the slack of its pages first)."""
    path = tmp_path / "mpq.db"
    with contextlib.closing(sqlite3.connect(path)) as connection:
        connection.executescript("PRAGMA page_size = 512; PRAGMA auto_vacuum = FULL; CREATE TABLE t (x); DROP TABLE t;")
    run = mpq.search(tiny_task, db=path, **SEARCH)
    return path, run.frontier, settled_bytes(path)


def test_search_into_a_full_disk_is_refused_and_the_file_is_untouched(tiny_task, stored):
    path, frontier, before = stored
    with disk_full_when(path, {"now": True}), pytest.raises(StoreError) as info:
        mpq.search(tiny_task, db=path, **{**SEARCH, "max_points": 4})
    message = str(info.value)
    assert "database or disk is full; the disk is full: free space or give another --db" in message
    assert "\n" not in message
    assert settled_bytes(path) == before
    assert list(mpq.list_runs(path)["run"]) == [1] and mpq.open_run(path, 1).frontier.equals(frontier)


def test_disk_full_mid_run_keeps_what_was_stored_and_the_run_resumes(tiny_task, tmp_path, monkeypatch):
    # Small pages and no free ones between transactions: writing the points must grow the file.
    path = tmp_path / "small-pages.db"
    with contextlib.closing(sqlite3.connect(path)) as connection:
        connection.executescript("PRAGMA page_size = 512; PRAGMA auto_vacuum = FULL; CREATE TABLE t (x); DROP TABLE t;")
    frontier = mpq.search(tiny_task, db=path, **SEARCH).frontier
    full = {"now": False}
    save_points = Store.save_points

    def fill_then_save(self, run_id, points):
        full["now"] = True  # the disk fills just as the solved points are written
        return save_points(self, run_id, points)

    monkeypatch.setattr(Store, "save_points", fill_then_save)
    with disk_full_when(path, full), pytest.raises(StoreError) as info:
        mpq.search(
            tiny_task,
            db=path,
            **{**SEARCH, "settings": mpq.ProbeSettings(tolerance=0.3, min_samples=3, max_samples=6, seed=1)},
        )
    assert "the disk is full" in str(info.value)
    assert "Run 2 keeps what was stored before this error" in str(info.value) and "--resume 2" in str(info.value)
    monkeypatch.undo()
    assert integrity(path) == "ok"
    assert mpq.open_run(path, 1).frontier.equals(frontier)
    # The write that failed was rolled back whole; the run's earlier tables are there.
    half = mpq.open_run(path, 2)
    assert (half.record["status"], half.status) == ("running", "stopped")  # could not be marked; its search ended
    assert half.frontier.empty and {"layers", "costs", "sensitivity"} <= set(half.tables)

    # Space freed: the run finishes without probing again.
    monkeypatch.setattr(_search, "run_probe", lambda *a, **k: pytest.fail("the stored sensitivity was probed again"))
    done = mpq.search(tiny_task, db=path, resume=2)
    assert done.status == "done" and len(done.frontier) >= 3


def test_read_only_store_can_be_browsed_not_written(tiny_task, stored):
    path, frontier, before = stored
    url = read_only(path)
    assert mpq.open_run(url, 1).frontier.equals(frontier)
    run = mpq.open_run(url, 1)
    fine = int(run.frontier.loc[run.frontier["dominated"] == False, "point"].iloc[0])  # noqa: E712  not beaten: no warning
    assert mpq.export(run, point=fine, to="json")
    with pytest.raises(
        StoreError, match=r"attempt to write a readonly database; the store is read-only: make the file"
    ):
        mpq.search(tiny_task, db=url, **SEARCH)
    with pytest.raises(StoreError, match="no store at"):
        mpq.list_runs(read_only(path.with_name("missing.db")))
    assert settled_bytes(path) == before and not path.with_name("missing.db").exists()


def test_cli_full_and_read_only_stores_are_one_line_errors(stored, capsys):
    path, _, before = stored
    task = Path(__file__).parents[2] / "assets" / "tasks" / "good_task.py"
    search = [
        "search",
        "--model",
        f"{task}:make_task",
        "--target",
        "h100-sxm",
        "--candidates",
        "w8a8",
        "--no-validate",
        "--max-samples",
        "10",
    ]
    for db, context, message in [
        (str(path), disk_full_when(path, {"now": True}), "the disk is full"),
        (read_only(path), contextlib.nullcontext(), "the store is read-only"),
    ]:
        with context, pytest.raises(SystemExit) as info:
            main([*search, "--db", db])
        err = capsys.readouterr().err
        assert info.value.code == 1 and "Traceback" not in err
        assert err.strip().splitlines()[-1].startswith("mpq: error: ") and message in err
    main(["runs", "--db", read_only(path)])
    assert "done" in capsys.readouterr().out
    assert settled_bytes(path) == before


def test_read_only_postgresql_database(tiny_task, postgres_url):
    import psycopg
    from sqlalchemy.engine import make_url

    run = mpq.search(tiny_task, db=postgres_url, **SEARCH)
    url = make_url(postgres_url)
    admin = url.set(drivername="postgresql", database="postgres").render_as_string(hide_password=False)
    with psycopg.connect(admin, autocommit=True) as connection:
        connection.execute(f'ALTER DATABASE "{url.database}" SET default_transaction_read_only = on')
    with pytest.raises(StoreError, match="read-only transaction; the store is read-only"):
        mpq.search(tiny_task, db=postgres_url, **SEARCH)
    assert list(mpq.list_runs(postgres_url)["run"]) == [run.id]
    assert mpq.open_run(postgres_url, run.id).frontier.equals(run.frontier)
