"""The store contract (store_contract.py) run over every backend: a SQLite file, the same file
opened read-only (reads only), PostgreSQL (where MPQ_TEST_POSTGRES_URL names a server), and the
ProbeCheckpoint folder (the checkpoint methods, all it implements)."""

from __future__ import annotations

import pytest
from store_contract import (  # this folder is on sys.path (pytest's prepend import mode)
    RUN_FIELDS,
    CheckpointContract,
    ReadContract,
    StoreContract,
    database_snapshot,
)

from mpq import ProbeCheckpoint
from mpq._storage import Store
from mpq.exceptions import StoreError


class TestSQLiteFile(StoreContract):
    @pytest.fixture
    def url(self, tmp_path):
        return str(tmp_path / "mpq.db")


class TestReadOnlySQLite(ReadContract):
    """The file opened with SQLite's ``mode=ro`` (as for a file without write permission)."""

    @pytest.fixture
    def url(self, tmp_path):
        return str(tmp_path / "mpq.db")

    def reader(self, url):
        return Store(f"sqlite:///file:{url}?mode=ro&uri=true", mode="read")

    def test_even_a_writer_cannot_write_to_it(self, url, filled):
        before = self.snapshot(url)
        writer = Store(f"sqlite:///file:{url}?mode=ro&uri=true", mode="write")
        with pytest.raises(
            StoreError,
            match=r"attempt to write a readonly database; the store is read-only: make the "
            r"file and its folder writable or give another --db",
        ) as info:
            writer.create_run(**RUN_FIELDS)
        assert "\n" not in str(info.value)
        del writer
        assert self.snapshot(url) == before


class TestPostgreSQL(StoreContract):
    @pytest.fixture
    def url(self, postgres_url):
        return postgres_url

    def snapshot(self, url):
        return database_snapshot(url)


class TestProbeCheckpointFolder(CheckpointContract):
    @pytest.fixture
    def checkpoints(self, tmp_path):
        return ProbeCheckpoint(tmp_path / "probes")

    def test_a_reader_of_a_missing_folder_creates_nothing(self, tmp_path):
        assert ProbeCheckpoint(tmp_path / "none").load_probe_checkpoint("k") is None
        assert not (tmp_path / "none").exists()
