"""Two processes searching into one SQLite file at the same time both complete."""

import os
import subprocess
import sys

import mpq


def test_two_concurrent_searches_share_one_sqlite_store(tmp_path):
    db = tmp_path / "shared.db"
    env = {**os.environ, "MPQ_DB": str(db)}
    fast = ["--tolerance", "0.3", "--max-samples", "4", "--max-points", "5"]
    processes = [
        subprocess.Popen([sys.executable, "-m", "mpq.cli", "search", "--target", target, *fast],
                         env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for target in ("zcu104", "stm32h743")
    ]
    results = [p.communicate(timeout=600) for p in processes]
    for process, (_, err) in zip(processes, results):
        assert process.returncode == 0, err
    runs = mpq.list_runs(db)
    assert sorted(runs.target) == ["stm32h743", "zcu104"] and set(runs.status) == {"done"}
    for run_id in runs.run:
        assert not mpq.open_run(db, run_id).frontier.measured_metric.isna().any()
