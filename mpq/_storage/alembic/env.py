"""Alembic environment: migrations run on the connection mpq hands over."""

from alembic import context

from mpq._storage.models import Base

target_metadata = Base.metadata


def run_migrations() -> None:
    connection = context.config.attributes["connection"]
    # Batch mode lets SQLite, which cannot ALTER most columns, take every later migration.
    context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


run_migrations()
