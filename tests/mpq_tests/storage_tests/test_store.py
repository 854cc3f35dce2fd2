import sqlite3

import pandas as pd
import pytest

from mpq._storage import Store
from mpq.exceptions import RunNotFoundError, StoreError

RUN_FIELDS = dict(
    task_name="tiny", metric_name="accuracy", model_hash="m" * 64, data_hash="d" * 64, probe_key="k" * 64,
    target="stm32h743", objectives=["latency_s"], budgets={"weight_bytes": 2e5}, settings={"max_points": 20},
    versions={"mpq": "0.1.0"},
)


def _point(i, **extra):
    return dict(point=i, label="frontier", is_baseline=False, optimal=True, predicted_loss=0.5 - 0.1 * i,
                costs={"latency_s": 1e-3 * (i + 1), "sram_bytes": 1024.0}, measured_metric=0.9 + 0.01 * i,
                assignment={"conv1": "w8a8", "fc.0-1": "w4a8"}, **extra)


def test_run_round_trip(store_url):
    store = Store(store_url)
    run_id = store.create_run(**RUN_FIELDS)
    layers = pd.DataFrame({"layer": ["conv1", "fc.0-1"], "macs": [10, 20], "weight_shape": [(4, 1, 3, 3), (3, 8)]})
    store.save_table(run_id, "layers", layers)
    store.save_points(run_id, [_point(0), _point(1)])
    store.finish_run(run_id, "done", float_metric=0.98, spearman=0.9)

    reopened = Store(store_url, create=False)
    record = reopened.run_record(run_id)
    assert record["status"] == "done" and record["budgets"] == {"weight_bytes": 2e5}
    assert record["finished_at"] is not None and record["spearman"] == 0.9
    pd.testing.assert_frame_equal(reopened.run_tables(run_id)["layers"], layers)
    frontier, assignments = reopened.run_points(run_id)
    assert list(frontier["point"]) == [0, 1]
    assert frontier.loc[1, "latency_s"] == pytest.approx(2e-3)
    assert list(assignments[assignments.point == 0]["layer"]) == ["conv1", "fc.0-1"]  # layer order kept
    runs = reopened.list_runs()
    assert runs.loc[0, "points"] == 2 and runs.loc[0, "objectives"] == "latency_s"


def test_failed_run_stays_readable(store_url):
    store = Store(store_url)
    run_id = store.create_run(**RUN_FIELDS)
    store.finish_run(run_id, "failed", error="ProbeError: loss is NaN")
    assert store.run_record(run_id)["error"] == "ProbeError: loss is NaN"
    assert store.run_points(run_id)[0].empty


def test_probe_results_and_checkpoints_by_key(store_url):
    store = Store(store_url)
    table = pd.DataFrame({"layer": ["a", "b"], "probe": ["hessian_w"] * 2, "value": [1.5, -0.25]})
    assert store.find_probe("key1") is None
    store.save_probe("key1", model_hash="m", data_hash="d", settings={"x": 1}, table=table)
    pd.testing.assert_frame_equal(store.find_probe("key1"), table)
    store.save("key1", {"n": 3, "mean": [0.1, 0.2]})
    assert store.load("key1") == {"n": 3, "mean": [0.1, 0.2]}
    store.save("key1", {"n": 4, "mean": [0.1, 0.3]})
    assert store.load("key1") == {"n": 4, "mean": [0.1, 0.3]} and store.load("key2") is None


def test_missing_run_names_the_newest(store_url):
    store = Store(store_url)
    with pytest.raises(RunNotFoundError, match=r"run 7 is not in .*the store has no runs yet.*'mpq runs'"):
        store.run_record(7)
    store.create_run(**RUN_FIELDS)
    with pytest.raises(RunNotFoundError, match=r"the newest is 1"):
        store.run_record(7)


def test_not_a_database_is_refused_untouched(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("not a database\n" * 100)
    before = text.read_bytes()
    with pytest.raises(StoreError, match=r"cannot open it \(file is not a database\)") as info:
        Store(text)
    assert "\n" not in str(info.value)
    assert text.read_bytes() == before


def test_directory_and_missing_file(tmp_path):
    with pytest.raises(StoreError, match=r"is a directory; give a file path such as"):
        Store(tmp_path)
    with pytest.raises(StoreError, match=r"no store at .*run 'mpq search --db"):
        Store(tmp_path / "missing.db", create=False)
    assert not (tmp_path / "missing.db").exists()


def test_foreign_database_is_refused(tmp_path):
    path = tmp_path / "other.db"
    with sqlite3.connect(path) as connection:
        connection.execute("CREATE TABLE customers (id INTEGER)")
    with pytest.raises(StoreError, match=r"holds tables that are not an mpq store \(customers"):
        Store(path)


def test_newer_schema_is_refused_untouched(tmp_path):
    path = tmp_path / "mpq.db"
    Store(path)
    with sqlite3.connect(path) as connection:
        connection.execute("UPDATE alembic_version SET version_num = '0099'")
    before = path.read_bytes()
    with pytest.raises(StoreError, match=r"has schema 0099, newer than this mpq's 0003; upgrade mpq"):
        Store(path)
    assert path.read_bytes() == before


def test_newer_postgres_schema_is_refused(postgres_url):
    Store(postgres_url)
    from sqlalchemy import create_engine, text

    engine = create_engine(postgres_url)
    with engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = '0099'"))
    with pytest.raises(StoreError, match=r"has schema 0099, newer than this mpq's 0003"):
        Store(postgres_url)
    engine.dispose()


def test_wrong_password_and_unreachable_server_are_one_line(postgres_url):
    from sqlalchemy.engine import make_url

    url = make_url(postgres_url)
    wrong = url.set(password="not-the-password").render_as_string(hide_password=False)
    with pytest.raises(StoreError, match=r"cannot open it \(.*password authentication failed") as info:
        Store(wrong)
    assert "not-the-password" not in str(info.value) and "\n" not in str(info.value)
    closed = url.set(port=1).render_as_string(hide_password=False)
    with pytest.raises(StoreError, match=r"cannot open it \(.*(refused|connect)"):
        Store(closed)


def test_an_unfinished_run_is_claimed_once_and_found_by_its_fields(store_url):
    store = Store(store_url)
    first = store.create_run(owner="host-a:1", **RUN_FIELDS)
    store.finish_run(store.create_run(owner="host-a:2", **RUN_FIELDS), "done")
    other = store.create_run(owner="host-a:3", **{**RUN_FIELDS, "budgets": {"weight_bytes": 1e5}})
    store.finish_run(first, "failed", error="interrupted (Ctrl-C)")
    found = store.unfinished_runs(model_hash=RUN_FIELDS["model_hash"], budgets=RUN_FIELDS["budgets"],
                                  settings=RUN_FIELDS["settings"])
    assert [r["id"] for r in found] == [first]  # not the done one, not the one with other budgets
    seen = found[0]
    assert store.claim_run(first, seen=seen, owner="host-b:7")
    assert not store.claim_run(first, seen=seen, owner="host-c:8")  # a second resumer loses the race
    record = store.run_record(first)
    assert (record["status"], record["owner"], record["error"]) == ("running", "host-b:7", None)
    assert store.run_record(other)["owner"] == "host-a:3"
