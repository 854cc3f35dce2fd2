"""Alembic environment: migrations run on the connection mpq hands over."""

from alembic import context

from mpq._storage.models import Base

target_metadata = Base.metadata


def run_migrations() -> None:
    connection = context.config.attributes["connection"]
    if connection.dialect.name == "sqlite" and connection.exec_driver_sql("PRAGMA foreign_keys").scalar():
        # Batch mode drops and recreates tables: with foreign keys on, dropping ``runs`` would
        # cascade to every run's points and tables. The store turns them off before migrating.
        raise RuntimeError("SQLite migrations must run with PRAGMA foreign_keys=OFF, set before the transaction.")
    # Batch mode lets SQLite, which cannot ALTER most columns, take every later migration.
    context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


run_migrations()
