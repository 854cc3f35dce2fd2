"""Transactions: commit on success, roll back on any error, SQLAlchemy errors as StoreError."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from mpq.exceptions import StoreError


@contextmanager
def session_scope(factory: sessionmaker, where: str) -> Iterator[Session]:
    """A session whose work is committed whole or not at all; ``where`` names the store in errors."""
    session = factory()
    try:
        yield session
        session.commit()
    except SQLAlchemyError as exc:
        session.rollback()
        reason = str(exc.orig if getattr(exc, "orig", None) is not None else exc).splitlines()[0]
        raise StoreError(f"{where}: {reason}; check that the database is writable and reachable.") from exc
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()
