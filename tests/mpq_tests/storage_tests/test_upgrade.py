"""A store written by an older mpq (schema 0001, tests/assets/schema_0001.db): readers refuse it
untouched with the upgrade command; a writer or ``mpq db upgrade`` upgrades it in place, keeping
every run (Optuna's pattern). Each test reads the revision before and after."""

import contextlib
import logging
import shutil
import sqlite3
from pathlib import Path

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

import mpq
from mpq._storage import Store
from mpq._storage.schema import ALEMBIC_INI
from mpq.cli import main
from mpq.exceptions import StoreError

ASSETS = Path(__file__).parents[2] / "assets"
HEAD = "0004"


def revision(path: Path) -> str:
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as connection:
        return connection.execute("SELECT version_num FROM alembic_version").fetchone()[0]


@pytest.fixture
def old(tmp_path) -> Path:
    path = tmp_path / "old.db"
    shutil.copy(ASSETS / "schema_0001.db", path)
    assert revision(path) == "0001"
    return path


def test_readers_refuse_an_older_schema_and_leave_it_byte_identical(old, capsys):
    before = old.read_bytes()
    refusal = (
        rf"^database sqlite:///{old} has schema 0001, this mpq needs {HEAD}; run 'mpq db upgrade --db {old}' "
        r"\(reading never changes a store\)\.$"
    )
    for read in (
        lambda: mpq.list_runs(old),
        lambda: mpq.open_run(old, 1),
        lambda: Store(old, mode="read"),
        lambda: mpq.open_run(f"sqlite:///file:{old}?mode=ro&uri=true", 1),
    ):
        with pytest.raises(StoreError) as info:
            read()
        assert "\n" not in str(info.value) and "run 'mpq db upgrade --db " in str(info.value)
    with pytest.raises(StoreError, match=refusal):
        mpq.list_runs(old)
    for command_line in (
        ["runs"],
        ["show", "1"],
        ["frontier", "1"],
        ["export", "1", "--point", "0"],
        ["compare", "1", "1"],
        ["dashboard", "--headless"],
    ):
        with pytest.raises(SystemExit) as info:
            main([*command_line, "--db", str(old)])
        err = capsys.readouterr().err
        assert info.value.code == 1 and err.startswith("mpq: error: ") and f"mpq db upgrade --db {old}" in err
    assert old.read_bytes() == before and revision(old) == "0001"
    assert sorted(p.name for p in old.parent.iterdir()) == ["old.db"]  # no journal, no WAL left behind


def test_a_writer_upgrades_saying_so_in_one_line_and_keeps_every_run(old, caplog):
    with caplog.at_level(logging.WARNING, logger="mpq.storage"):
        store = Store(old, mode="write")
    assert store.upgraded_from == "0001" and revision(old) == HEAD
    (line,) = [r.getMessage() for r in caplog.records if r.name == "mpq.storage"]
    assert line == (
        f"database sqlite:///{old} had schema 0001; upgraded it to {HEAD} to write to it, keeping every "
        "run (an older mpq can no longer open it)."
    )
    record = store.run_record(1)
    # Every run kept: SQLite copies the runs table to add its CHECK (0004); with foreign keys on,
    # that copy would have cascaded to every point.
    assert record["status"] == "done" and record["model_spec"] is None and record["owner"] is None  # 0002, 0003
    run = mpq.open_run(old, 1)
    assert len(run.frontier) == 8 and run.frontier.measured_metric.notna().all()
    assert run.frontier["dominated"].isna().all() and len(run.assignments) == 48  # 0004: null until validated
    assert set(run.tables) == {"layers", "sensitivity", "omega", "costs"}
    with contextlib.closing(sqlite3.connect(old)) as connection:
        assert connection.execute("PRAGMA foreign_key_check").fetchall() == []
        assert connection.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    caplog.clear()
    Store(old, mode="write")  # at the current schema: nothing to say
    assert not [r for r in caplog.records if r.name == "mpq.storage"]


def test_a_search_into_an_older_store_upgrades_it_and_adds_a_run(old, capsys):
    task = Path(__file__).parents[2] / "assets" / "tasks" / "good_task.py"
    main(
        [
            "search",
            "--model",
            f"{task}:make_task",
            "--target",
            "h100-sxm",
            "--candidates",
            "w8a8,w4a16",
            "--no-validate",
            "--max-samples",
            "4",
            "--tolerance",
            "0.5",
            "--db",
            str(old),
        ]
    )
    err = capsys.readouterr().err
    assert f"mpq: warning: database sqlite:///{old} had schema 0001; upgraded it to {HEAD}" in err
    assert revision(old) == HEAD
    runs = mpq.list_runs(old)
    assert list(runs["run"]) == [1, 2] and list(runs["status"]) == ["done", "done"]
    assert mpq.open_run(old, 2).record["model_spec"] == f"{task}:make_task"


def test_db_upgrade_command(old, capsys):
    main(["db", "upgrade", "--db", str(old)])
    out = " ".join(capsys.readouterr().out.split())
    assert f"upgraded from schema 0001 to {HEAD}, keeping every run" in out
    assert revision(old) == HEAD and mpq.open_run(old, 1).status == "done"
    main(["db", "upgrade", "--db", str(old)])
    assert f"is at the current schema {HEAD}; nothing to upgrade" in " ".join(capsys.readouterr().out.split())
    missing = old.with_name("missing.db")
    with pytest.raises(SystemExit) as info:
        main(["db", "upgrade", "--db", str(missing)])
    assert info.value.code == 1 and "no store at" in capsys.readouterr().err and not missing.exists()


def test_postgresql_store_at_0001_is_refused_to_readers_and_upgraded_by_writers(postgres_url):
    engine = create_engine(postgres_url)
    with engine.begin() as connection:  # the schema an mpq of schema 0001 wrote
        config = Config(str(ALEMBIC_INI))
        config.attributes["connection"] = connection
        command.upgrade(config, "0001")

    def current() -> str:
        with engine.connect() as connection:
            return connection.execute(text("SELECT version_num FROM alembic_version")).scalar_one()

    with pytest.raises(StoreError, match=rf"has schema 0001, this mpq needs {HEAD}; run 'mpq db upgrade --db ") as info:
        mpq.list_runs(postgres_url)
    password = make_url(postgres_url).password
    assert password is None or f":{password}@" not in str(info.value)  # the command shows no password
    assert current() == "0001"
    assert Store(postgres_url, mode="write").upgraded_from == "0001" and current() == HEAD
    assert mpq.list_runs(postgres_url).empty
    engine.dispose()
