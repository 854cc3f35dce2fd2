"""Which process runs a run: each run stores its owner as ``host:pid``, and a run still marked
``running`` whose owner on this host has ended was stopped (``kill -9``, a crash) and can be
resumed."""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping

#: (store URL, run id) of the searches this process is running now.
ACTIVE: set[tuple[str, int]] = set()


def current_owner() -> str:
    """This process, as a run's owner."""
    return f"{socket.gethostname()}:{os.getpid()}"


def owner_alive(store_url: str, record: Mapping) -> bool | None:
    """Whether the process that owns a ``running`` run is still at it: False when known gone
    (and for a run not ``running``), None when unknown (another host, or a run stored before
    owners were)."""
    if record["status"] != "running":
        return False
    host, _, pid = (record["owner"] or "").rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return None
    if int(pid) == os.getpid():
        return (store_url, record["id"]) in ACTIVE
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def shown_status(store_url: str, record: Mapping) -> str:
    """The stored status, or ``stopped`` for a run marked running whose process is known gone."""
    if record["status"] == "running" and owner_alive(store_url, record) is False:
        return "stopped"
    return record["status"]
