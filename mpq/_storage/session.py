"""Transactions: commit on success, roll back on any error, SQLAlchemy errors as StoreError."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from mpq.exceptions import StoreError

# The faults a user fixes outside mpq, by the driver's code: SQLite's result codes
# (https://www.sqlite.org/rescode.html) and PostgreSQL's SQLSTATEs (Appendix A of its manual).
_DISK_FULL = {"SQLITE_FULL", "53100"}  # 53100: disk_full
_READ_ONLY = {"SQLITE_READONLY", "25006"}  # 25006: read_only_sql_transaction
_LOCKED = {"SQLITE_BUSY", "55P03"}  # 55P03: lock_not_available
#: How long a SQLite writer waits for another process's write lock.
LOCK_WAIT_S = 30


def store_error(exc: Exception, where: str, hint: str, *, opening: bool = False) -> StoreError:
    """One line naming the store, the driver's reason and the fix (``hint`` when no known fault).
    ``exc``: SQLAlchemy's error, or the driver's own."""
    driver = getattr(exc, "orig", None) or exc
    reason = str(driver).splitlines()[0]
    code = getattr(driver, "sqlite_errorname", None) or getattr(driver, "sqlstate", None)
    if code in _DISK_FULL:
        hint = (
            "the disk is full: free space or give another --db (the failed write was rolled back; what was "
            "stored before it is intact)"
        )
    elif code in _LOCKED:
        hint = (
            f"another process held the store's write lock for longer than mpq waits ({LOCK_WAIT_S} s): wait for it to finish "
            "(mpq runs --db lists the runs being written and the process of each) and run again"
        )
    elif code in _READ_ONLY:
        hint = (
            "the store is read-only: make the file and its folder writable or give another --db (a read-only "
            "store can be listed, shown, compared and exported, not written)"
        )
    return StoreError(f"{where}: {'cannot open it (' + reason + ')' if opening else reason}; {hint}.")


@contextmanager
def session_scope(factory: sessionmaker, where: str) -> Iterator[Session]:
    """A session whose work is committed whole or not at all; ``where`` names the store in errors."""
    session = factory()
    try:
        yield session
        session.commit()
    except SQLAlchemyError as exc:
        session.rollback()
        raise store_error(exc, where, "check that the database is writable and reachable") from exc
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()
