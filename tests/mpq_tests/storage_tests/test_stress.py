"""Stress: four processes start on one new store at the same instant, round after round.

Each round: two identical searches (the same task and target: neither may take the other's live
run), a search on another target, and a reader listing the store until the three are done. All
exit 0, the file passes SQLite's integrity check, and every run is done with every point
measured. The fast twins are in ``test_locks.py``.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

import mpq

TINY = f"{Path(__file__).parents[2] / 'assets' / 'tasks' / 'tiny_task.py'}:make_task"
SEARCH = ["search", "--model", TINY, "--tolerance", "0.3", "--max-samples", "4", "--max-points", "4", "--json"]
ROUNDS = 5

# Each process imports mpq first, then waits for the go file: they reach the store together.
WAIT_THEN = """
import os, sys, time
go = sys.argv[1]
while not os.path.exists(go):
    time.sleep(0.005)
"""
RUN_CLI = WAIT_THEN + "from mpq.cli import main\nsys.exit(main(sys.argv[3:]))\n"
READER = (
    WAIT_THEN
    + """
import mpq
from mpq.exceptions import StoreError
db, done, deadline = sys.argv[2], 0, time.monotonic() + 600
while time.monotonic() < deadline:
    try:
        runs = mpq.list_runs(db)
    except StoreError as exc:  # only before the first writer has created the store
        if "no store at" not in str(exc) and "is empty" not in str(exc):
            raise
        continue
    if (runs["status"] == "done").sum() >= int(sys.argv[3]):
        sys.exit(0)
    time.sleep(0.05)
sys.exit("the searches did not finish in 600 s")
"""
)


def _round(db: str, go: Path, done_before: int) -> None:
    env = {**os.environ, "MPQ_DB": db}
    script = [sys.executable, "-c"]
    commands = [
        [*script, RUN_CLI, str(go), db, *SEARCH, "--target", "zcu104"],
        [*script, RUN_CLI, str(go), db, *SEARCH, "--target", "zcu104"],
        [*script, RUN_CLI, str(go), db, *SEARCH, "--target", "stm32h743"],
        [*script, READER, str(go), db, str(done_before + 3)],
    ]
    processes = [
        subprocess.Popen(c, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for c in commands
    ]
    time.sleep(3)  # let every process import mpq and reach the wait
    go.touch()
    for process in processes:
        _, err = process.communicate(timeout=900)
        assert process.returncode == 0, err


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_four_processes_on_one_new_store_round_after_round(request, tmp_path, backend):
    # SQLite: a new file each round; PostgreSQL: one new database, its runs adding up.
    postgres = request.getfixturevalue("postgres_url") if backend == "postgresql" else None
    for round_ in range(ROUNDS):
        db = postgres or str(tmp_path / f"round{round_}.db")
        done = 3 * round_ if postgres else 0
        _round(db, tmp_path / f"go{round_}", done)
        runs = mpq.list_runs(db)
        assert len(runs) == done + 3 and set(runs["status"]) == {"done"}, runs
        for run_id in runs["run"]:
            frontier = mpq.open_run(db, int(run_id)).frontier
            assert len(frontier) and not frontier["measured_metric"].isna().any()
        if not postgres:
            assert sqlite3.connect(db).execute("PRAGMA integrity_check").fetchone()[0] == "ok"
