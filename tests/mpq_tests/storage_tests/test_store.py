"""Opening a store: what is refused, in one line, and left untouched (the contract of a store once
open is store_contract.py)."""

import sqlite3

import pytest

from mpq._storage import Store
from mpq.exceptions import StoreError


def test_not_a_database_is_refused_untouched(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("not a database\n" * 100)
    before = text.read_bytes()
    for mode in ("read", "write"):
        with pytest.raises(StoreError, match=r"cannot open it \(file is not a database\)") as info:
            Store(text, mode=mode, create=mode == "write")
        assert "\n" not in str(info.value)
    assert text.read_bytes() == before


def test_directory_and_missing_file(tmp_path):
    with pytest.raises(StoreError, match=r"is a directory; give a file path such as"):
        Store(tmp_path, mode="write", create=True)
    for mode in ("read", "write"):
        with pytest.raises(StoreError, match=r"no store at .*run 'mpq search --db"):
            Store(tmp_path / "missing.db", mode=mode)
    assert not (tmp_path / "missing.db").exists()


def test_foreign_database_is_refused(tmp_path):
    path = tmp_path / "other.db"
    with sqlite3.connect(path) as connection:
        connection.execute("CREATE TABLE customers (id INTEGER)")
    before = path.read_bytes()
    for mode in ("read", "write"):
        with pytest.raises(StoreError, match=r"holds tables that are not an mpq store \(customers"):
            Store(path, mode=mode, create=mode == "write")
    assert path.read_bytes() == before


def test_newer_schema_is_refused_untouched(tmp_path):
    path = tmp_path / "mpq.db"
    Store(path, mode="write", create=True).engine.dispose()
    with sqlite3.connect(path) as connection:
        connection.execute("UPDATE alembic_version SET version_num = '0099'")
    before = path.read_bytes()
    for mode in ("read", "write"):
        with pytest.raises(StoreError, match=r"has schema 0099, newer than this mpq's 0004; upgrade mpq"):
            Store(path, mode=mode)
    assert path.read_bytes() == before


def test_newer_postgres_schema_is_refused(postgres_url):
    Store(postgres_url, mode="write", create=True).engine.dispose()
    from sqlalchemy import create_engine, text

    engine = create_engine(postgres_url)
    with engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = '0099'"))
    for mode in ("read", "write"):
        with pytest.raises(StoreError, match=r"has schema 0099, newer than this mpq's 0004"):
            Store(postgres_url, mode=mode)
    engine.dispose()


def test_wrong_password_and_unreachable_server_are_one_line(postgres_url):
    from sqlalchemy.engine import make_url

    url = make_url(postgres_url)
    wrong = url.set(password="not-the-password").render_as_string(hide_password=False)
    with pytest.raises(StoreError, match=r"cannot open it \(.*password authentication failed") as info:
        Store(wrong, mode="read")
    assert "not-the-password" not in str(info.value) and "\n" not in str(info.value)
    closed = url.set(port=1).render_as_string(hide_password=False)
    with pytest.raises(StoreError, match=r"cannot open it \(.*(refused|connect)"):
        Store(closed, mode="write")


def test_a_mode_is_read_or_write():
    with pytest.raises(ValueError, match=r"The 'mode' parameter of Store must be one of read, write\. Got 'append'"):
        Store("x.db", mode="append")
    with pytest.raises(ValueError, match=r"The 'create' parameter of Store must be False with mode='read'"):
        Store("x.db", mode="read", create=True)


def test_a_search_in_memory_returns_its_run_and_keeps_nothing(tiny_task):
    """``db=":memory:"``: the in-memory store (no file, no SQL); the run comes back whole, and the
    store is gone with the search, so reading it again says so in one line."""
    import mpq

    settings = mpq.ProbeSettings(tolerance=0.3, min_samples=3, max_samples=6)
    run = mpq.search(
        tiny_task,
        target="h100-sxm",
        objectives="weight_bytes",
        candidates=["w8a8", "w4a16"],
        settings=settings,
        max_points=3,
        db=":memory:",
    )
    assert run.db == ":memory:" and run.status == "done" and run.frontier["measured_metric"].notna().all()
    with pytest.raises(
        StoreError, match=r"^the in-memory store is empty: it holds runs only inside the process"
    ) as info:
        mpq.list_runs(":memory:")
    assert "\n" not in str(info.value)
