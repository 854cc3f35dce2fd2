"""The SQL store's schema: created, checked and migrated (alembic) when a store is opened.

A writer creates a new store's schema and upgrades one an older mpq wrote; a reader only checks
it and refuses anything but this mpq's revision. While another process is creating the same new
store, the opener waits for it rather than racing it.
"""

from __future__ import annotations

import time
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from mpq._storage.base import Mode
from mpq._storage.models import Base
from mpq._storage.session import store_error
from mpq.exceptions import StoreError

ALEMBIC_INI = Path(__file__).parent / "alembic.ini"
# How long a process waits for another one that is creating the same new store.
_WAIT_TRIES, _WAIT_S = 60, 0.5
#: The PostgreSQL advisory lock writers hold while they check, create or migrate the schema
#: (any fixed 64-bit number: b"mpq" as an integer).
_LOCK_ID = int.from_bytes(b"mpq", "big")


class _BeingCreated(Exception):
    """The schema is half there: another process is creating or migrating it."""


def outside_transaction(connection, statement: str) -> None:
    """Run a SQLite PRAGMA on the driver's connection, outside any transaction (``journal_mode``
    and ``foreign_keys`` are refused or ignored inside one)."""
    connection.connection.driver_connection.execute(statement)


def _scripts() -> ScriptDirectory:
    return ScriptDirectory.from_config(Config(str(ALEMBIC_INI)))


def head() -> str:
    """This mpq's schema revision (``"0004"``)."""
    return _scripts().get_current_head()


def check_schema(engine: Engine, *, mode: Mode, create: bool, where: str, upgrade_command: str) -> str | None:
    """Check the schema of the store ``engine`` opens, creating or upgrading it for a writer;
    wait while another process is creating it.

    Args:
        engine: The store's engine.
        mode: ``read`` (check only) or ``write`` (create, upgrade).
        create: Create the schema of an empty database (with ``write``).
        where: The store as error messages name it.
        upgrade_command: The command that upgrades this store, as its user would type it.

    Returns:
        The older revision a writer upgraded, else None.

    Raises:
        StoreError: a newer, foreign, half-made or (for a reader) older schema, or an empty
            database without ``create``; the database is left untouched.
    """
    scripts = _scripts()
    current_head, known = scripts.get_current_head(), {rev.revision for rev in scripts.walk_revisions()}
    for _ in range(_WAIT_TRIES):
        try:
            return _check_once(engine, mode, create, where, upgrade_command, current_head, known)
        except _BeingCreated:
            time.sleep(_WAIT_S)
    raise StoreError(
        f"{where} holds part of an mpq schema that no process finished creating; delete it or give another --db."
    )


def _check_once(
    engine: Engine, mode: Mode, create: bool, where: str, upgrade_command: str, head: str, known: set[str]
) -> str | None:
    ours = set(Base.metadata.tables) | {"alembic_version"}
    sqlite = engine.dialect.name == "sqlite"
    try:
        with engine.connect() as connection:
            if sqlite and mode == "write":
                # Before any transaction (SQLite ignores it inside one): a migration that
                # copies a table (batch mode) must not cascade the old table's drop.
                outside_transaction(connection, "PRAGMA foreign_keys=OFF")
            elif mode == "write":
                # One writer at a time checks, creates or migrates the schema: the others wait here.
                connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_LOCK_ID})")
            try:
                current = MigrationContext.configure(connection).get_current_revision()
                tables = set(inspect(connection).get_table_names())
                if current == head:
                    return None
                if current is not None and current not in known:
                    raise StoreError(
                        f"{where} has schema {current}, newer than this mpq's {head}; upgrade mpq "
                        "(pip install -U mpq) to read it. The database was left untouched."
                    )
                if current is None and tables and tables <= ours:
                    raise _BeingCreated  # another mpq process is creating this store right now
                if current is None and tables:
                    raise StoreError(
                        f"{where} holds tables that are not an mpq store ({', '.join(sorted(tables)[:3])}...); "
                        "give another --db."
                    )
                if current is None and not create:
                    raise StoreError(f"{where} is empty; run 'mpq search' to fill it.")
                if mode == "read":
                    raise StoreError(
                        f"{where} has schema {current}, this mpq needs {head}; run '{upgrade_command}' "
                        "(reading never changes a store)."
                    )
                # A new store, or one written by an older mpq: migrate it, keeping every run.
                config = Config(str(ALEMBIC_INI))
                config.attributes["connection"] = connection
                command.upgrade(config, "head")
                connection.commit()
                return current
            finally:
                connection.rollback()
                if sqlite and mode == "write":
                    outside_transaction(connection, "PRAGMA foreign_keys=ON")
    except SQLAlchemyError as exc:
        if _current_revision(engine) == head or "already exists" in str(exc):
            raise _BeingCreated from exc  # raced another process creating or migrating it
        raise store_error(exc, where, "check --db points at an mpq database you can reach", opening=True) from exc


def _current_revision(engine: Engine) -> str | None:
    try:
        with engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()
    except SQLAlchemyError:
        return None
