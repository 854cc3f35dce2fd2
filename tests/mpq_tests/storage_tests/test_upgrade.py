"""A store written by an older mpq is upgraded in place, keeping every run (Optuna's pattern)."""

import shutil
from pathlib import Path

import mpq
from mpq._storage import Store

ASSETS = Path(__file__).parents[2] / "assets"


def test_schema_0001_store_upgrades_and_keeps_its_runs(tmp_path):
    old = tmp_path / "old.db"
    shutil.copy(ASSETS / "schema_0001.db", old)
    store = Store(old)  # upgrades to the current schema
    record = store.run_record(1)
    assert record["status"] == "done" and record["model_spec"] is None and record["owner"] is None  # added by 0002, 0003
    run = mpq.open_run(old, 1)
    assert len(run.frontier) == 8 and run.frontier.measured_metric.notna().all()
    # The upgraded store takes new runs beside the old one.
    task = mpq.load_task("example:digits-cnn")
    settings = mpq.ProbeSettings(tolerance=0.3, min_samples=3, max_samples=4)
    new = mpq.search(task, settings=settings, db=old, max_points=4, target="stm32h743")
    assert new.id == 2 and new.record["model_spec"] == "example:digits-cnn"
    assert list(mpq.list_runs(old)["status"]) == ["done", "done"]


def test_db_upgrade_command(tmp_path, capsys):
    from mpq.cli import main

    old = tmp_path / "old.db"
    shutil.copy(ASSETS / "schema_0001.db", old)
    main(["db", "upgrade", "--db", str(old)])
    assert "at the current schema" in " ".join(capsys.readouterr().out.split())
    assert mpq.open_run(old, 1).status == "done"
