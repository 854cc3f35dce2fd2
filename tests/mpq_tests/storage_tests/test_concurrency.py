"""Two processes searching into one SQLite file at the same time both complete."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

import mpq

TINY = f"{Path(__file__).parents[2] / 'assets' / 'tasks' / 'tiny_task.py'}:make_task"


def two_concurrent_searches(db: Path, *options: str) -> None:
    env = {**os.environ, "MPQ_DB": str(db)}
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "mpq.cli", "search", "--target", target, *options],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for target in ("zcu104", "stm32h743")
    ]
    results = [p.communicate(timeout=600) for p in processes]
    for process, (_, err) in zip(processes, results):
        assert process.returncode == 0, err
    runs = mpq.list_runs(db)
    assert sorted(runs.target) == ["stm32h743", "zcu104"] and set(runs.status) == {"done"}
    for run_id in runs.run:
        assert not mpq.open_run(db, run_id).frontier.measured_metric.isna().any()


@pytest.mark.slow
def test_two_concurrent_searches_share_one_sqlite_store(tmp_path):
    two_concurrent_searches(tmp_path / "shared.db", "--tolerance", "0.3", "--max-samples", "4", "--max-points", "5")


@pytest.mark.slow  # fast twin: test_locks.py's processes creating one new store
def test_two_concurrent_tiny_searches_share_one_sqlite_store(tmp_path):
    """The fast twin: the tiny task, so that both processes write to the store at about the same time."""
    two_concurrent_searches(
        tmp_path / "shared.db", "--model", TINY, "--tolerance", "0.3", "--max-samples", "4", "--max-points", "4"
    )
