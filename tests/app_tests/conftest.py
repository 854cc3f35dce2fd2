"""A store filled by real searches of the built-in digits CNN (fast probe settings) on FPGA, MCU
and GPU targets, a second model on the FPGA, a failed run and a run caught in progress; helpers
to drive the dashboard with Streamlit's AppTest."""

from __future__ import annotations

import dataclasses
import os
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
import warnings
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from app_support import ENTRYPOINT, FAST, ROOT  # this folder is on sys.path (pytest's prepend import mode)
from digits_mlp import make_task as make_mlp_task
from streamlit.testing.v1 import AppTest

import mpq
from mpq._storage import Store


@pytest.fixture(scope="session")
def store(tmp_path_factory) -> SimpleNamespace:
    """``db`` (a SQLite path) holding, by id: ``fpga`` (digits-cnn, zcu104, latency_s), ``mcu``
    (stm32h743), ``gpu`` (h100-sxm, latency_s and weight_bytes), ``mlp`` (digits-mlp on zcu104),
    ``failed`` (its evaluation raised) and ``running`` (a snapshot of the store taken while a
    cpu-x86 search was validating); ``runs`` maps those names to ``mpq.Run``."""
    base = tmp_path_factory.getbasetemp()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MPQ_CACHE_DIR", str(base / "mpq-cache"))  # the cache tests/conftest.py shares
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            with warnings.catch_warnings():  # about the data (three objectives, equal metrics), not the dashboard
                warnings.simplefilter("ignore")
                return _fill_store(tmp_path_factory.mktemp("dashboard"))
        finally:
            torch.set_num_threads(threads)


def _fill_store(folder: Path) -> SimpleNamespace:
    building, db = folder / "building.db", folder / "mpq.db"
    digits, mlp = mpq.load_task("example:digits-cnn"), make_mlp_task()
    ids = {
        "fpga": mpq.search(digits, target="zcu104", settings=FAST, db=building, max_points=6).id,
        "mcu": mpq.search(digits, target="stm32h743", settings=FAST, db=building, max_points=4).id,
        "gpu": mpq.search(
            digits,
            target="h100-sxm",
            objectives=["latency_s", "weight_bytes"],
            settings=FAST,
            db=building,
            max_points=5,
        ).id,
    }
    ids["mlp"] = mpq.search(mlp, target="zcu104", settings=FAST, db=building, max_points=4).id

    def lost_data(model):
        raise RuntimeError("held-out data went missing")

    with pytest.raises(mpq.exceptions.TaskSpecError, match="evaluate raised RuntimeError: held-out data went missing"):
        mpq.search(dataclasses.replace(mlp, evaluate=lost_data), target="stm32h743", settings=FAST, db=building)
    listed = mpq.list_runs(building)
    ids["failed"] = int(listed.loc[listed["status"] == "failed", "run"].iloc[0])

    def snapshot(stage: str, done: int, total: int, message: str) -> None:
        if stage == "validate" and not db.exists():  # the run is stored as running, its points not yet
            with closing(sqlite3.connect(building)) as source, closing(sqlite3.connect(db)) as copy:
                source.backup(copy)  # SQLite's online backup: consistent, write-ahead log included

    ids["running"] = mpq.search(
        digits, target="cpu-x86", objectives="energy_j", settings=FAST, db=building, max_points=3, progress=snapshot
    ).id
    with closing(sqlite3.connect(db)) as copy, copy:  # as if another live process (pid 1) were running it
        copy.execute("UPDATE runs SET owner = ? WHERE id = ?", (f"{socket.gethostname()}:1", ids["running"]))
    runs = {name: mpq.open_run(db, run_id) for name, run_id in ids.items()}
    assert {name: run.status for name, run in runs.items()} == {
        "fpga": "done",
        "mcu": "done",
        "gpu": "done",
        "mlp": "done",
        "failed": "failed",
        "running": "running",
    }
    return SimpleNamespace(db=str(db), ids=ids, runs=runs)


@pytest.fixture(scope="session")
def empty_db(tmp_path_factory) -> str:
    """A store with mpq's schema and no runs."""
    path = tmp_path_factory.mktemp("empty") / "mpq.db"
    Store(path, mode="write", create=True)
    return str(path)


@pytest.fixture
def open_app(monkeypatch):
    """``open_app(db, page=None, run=None)``: the dashboard on ``db`` (given as ``$MPQ_DB``, as
    ``mpq dashboard`` does), after a first run, switched to ``page`` with ``run`` picked in the
    sidebar."""

    def _open(db: str, page: str | None = None, run: int | None = None) -> AppTest:
        monkeypatch.setenv("MPQ_DB", db)
        at = AppTest.from_file(str(ENTRYPOINT), default_timeout=60).run()
        assert not at.exception, [e.value for e in at.exception]
        if run is not None:
            at.sidebar.selectbox(key="run").set_value(run)
        if page is not None:
            at.switch_page(page)
        return at.run()

    return _open


def free_port() -> int:
    """A port nothing listens on now, on the loopback interface."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="session")
def served(store, tmp_path_factory) -> Iterator[SimpleNamespace]:
    """``mpq dashboard --db <store> --open-browser --port P`` serving on 127.0.0.1 as a new user
    first starts it: from a folder holding a folder named ``mpq`` (a checkout, say), with a fresh
    home (no ~/.streamlit) and stdin closed. ``url``, ``process``, ``port``, ``log`` (the server's
    output), ``cwd`` (that folder) and ``opened`` (a file the stand-in browser writes each URL it
    is asked to open to)."""
    base = tmp_path_factory.mktemp("server")
    cwd, home, bin_dir = base / "work", base / "home", base / "bin"
    (cwd / "mpq").mkdir(parents=True)
    (cwd / "mpq" / "__init__.py").write_text("")  # imported instead of mpq, it has no MpqError
    home.mkdir()
    bin_dir.mkdir()
    opened, log = base / "opened.txt", base / "dashboard.log"
    browser = bin_dir / "xdg-open"  # what Streamlit runs to open a browser on Linux
    browser.write_text(f'#!/bin/sh\necho "$1" >> {opened}\n')
    browser.chmod(0o755)
    port = free_port()
    env = {**os.environ, "HOME": str(home), "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    env.pop("XDG_CONFIG_HOME", None)
    command = ["dashboard", "--db", store.db, "--open-browser", "--port", str(port)]
    with log.open("w") as out:  # a file, not a pipe nobody reads
        process = subprocess.Popen(
            # -P: as the mpq console script starts, without the working directory on sys.path
            [sys.executable, "-P", "-m", "mpq.cli", *command],
            cwd=cwd,
            env={**env, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))},
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and process.poll() is None:
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as answer:
                    if answer.read() == b"ok":
                        break
            except OSError:
                time.sleep(0.3)
        else:
            process.kill()
            pytest.fail(f"mpq dashboard did not serve {url} in 90 s: {log.read_text()[-2000:]}")
        yield SimpleNamespace(url=url, process=process, port=port, log=log, cwd=cwd, opened=opened)
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
