"""The store contract (store_contract.py) run over every backend: a SQLite file, the same file
opened read-only (reads only), PostgreSQL (where MPQ_TEST_POSTGRES_URL names a server), the
in-memory store, and the ProbeCheckpoint folder (the checkpoint methods, all it implements).
Then what only the SQL store promises: its connections and its database's own checks."""

from __future__ import annotations

import pytest
from sqlalchemy import inspect, text
from sqlalchemy.exc import DBAPIError, IntegrityError
from store_contract import (  # this folder is on sys.path (pytest's prepend import mode)
    RUN_FIELDS,
    CheckpointContract,
    ReadContract,
    SQLBackend,
    StoreContract,
)

from mpq import ProbeCheckpoint
from mpq._storage import RUN_STATUSES, Store
from mpq._storage.base import RUN_FIELDS as RECORD_FIELDS
from mpq._storage.memory import Contents, MemoryStore
from mpq._storage.models import RunModel
from mpq.exceptions import StoreError


class MemoryBackend:
    """Handles onto one in-memory store."""

    def __init__(self) -> None:
        self.contents = Contents()

    def open(self, mode: str) -> MemoryStore:
        return MemoryStore(self.contents, mode=mode, create=mode == "write")

    def release(self, store: MemoryStore) -> None:
        pass  # nothing to close: the contents stay while a handle or the backend holds them

    def snapshot(self) -> str:
        return self.contents.snapshot()


class TestMemory(StoreContract):
    @pytest.fixture
    def backend(self):
        return MemoryBackend()


class SQLOnly:
    """What the SQL store promises beyond the interface: a reader's connections cannot write,
    and the database itself refuses a status outside the allowed set, whoever writes."""

    def test_a_readers_connections_cannot_write(self, backend, filled):
        reader = backend.open("read")
        with reader.engine.connect() as connection, pytest.raises(DBAPIError):
            connection.execute(text("UPDATE runs SET status = 'failed'"))
            connection.commit()
        assert backend.open("read").run_record(filled["done"])["status"] == "done"

    @pytest.mark.parametrize("status", ["stopped", "DONE", "", None])
    def test_the_database_refuses_a_status_outside_the_allowed_set(self, backend, status):
        store = backend.open("write")
        run = store.create_run(**RUN_FIELDS)
        with store.engine.connect() as connection, pytest.raises(IntegrityError):  # schema 0004's CHECK
            connection.execute(text("UPDATE runs SET status = :status WHERE id = :id"), {"status": status, "id": run})
            connection.commit()
        assert set(store.list_runs()["status"]) <= set(RUN_STATUSES)

    def test_a_records_fields_are_the_runs_tables_columns(self, backend):
        assert tuple(c.key for c in inspect(RunModel).column_attrs) == RECORD_FIELDS


class TestSQLiteFile(StoreContract, SQLOnly):
    @pytest.fixture
    def backend(self, tmp_path):
        return SQLBackend(str(tmp_path / "mpq.db"))


class TestReadOnlySQLite(ReadContract):
    """The file opened with SQLite's ``mode=ro`` (as for a file without write permission)."""

    @pytest.fixture
    def backend(self, tmp_path):
        path = tmp_path / "mpq.db"
        return SQLBackend(str(path), reader_url=f"sqlite:///file:{path}?mode=ro&uri=true")

    test_a_readers_connections_cannot_write = SQLOnly.test_a_readers_connections_cannot_write

    def test_even_a_writer_cannot_write_to_it(self, backend, filled):
        before = backend.snapshot()
        writer = Store(backend.reader_url, mode="write")
        with pytest.raises(
            StoreError,
            match=r"attempt to write a readonly database; the store is read-only: make the "
            r"file and its folder writable or give another --db",
        ) as info:
            writer.create_run(**RUN_FIELDS)
        assert "\n" not in str(info.value)
        del writer
        assert backend.snapshot() == before


class TestPostgreSQL(StoreContract, SQLOnly):
    @pytest.fixture
    def backend(self, postgres_url):
        return SQLBackend(postgres_url)


class TestProbeCheckpointFolder(CheckpointContract):
    @pytest.fixture
    def checkpoints(self, tmp_path):
        return ProbeCheckpoint(tmp_path / "probes")

    def test_a_reader_of_a_missing_folder_creates_nothing(self, tmp_path):
        assert ProbeCheckpoint(tmp_path / "none").load_probe_checkpoint("k") is None
        assert not (tmp_path / "none").exists()
