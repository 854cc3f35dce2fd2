"""``mpq dashboard``: one resolver for app/, the store checked first, errors in one line, and a
real server on the loopback interface."""

from __future__ import annotations

import os
import sys
import urllib.request
from pathlib import Path

import pytest
from app_support import ENTRYPOINT

import mpq
from mpq import cli


class Execed(Exception):
    """Raised by the stand-in for os.execv: the command would have become the server here."""


@pytest.fixture
def no_exec(monkeypatch) -> list:
    calls = []

    def fake_execv(path, argv):
        calls.append((path, argv))
        raise Execed

    monkeypatch.setattr(os, "execv", fake_execv)  # never replace the test process
    return calls


def _exit_code(capsys, *argv) -> tuple[int, str]:
    with pytest.raises(SystemExit) as info:
        cli.main(list(argv))
    return info.value.code, capsys.readouterr().err


def test_starts_streamlit_on_the_checkouts_app_with_the_store(store, no_exec):
    with pytest.raises(Execed):
        cli.main(["dashboard", "--db", store.db, "--headless", "--port", "8600"])
    ((path, argv),) = no_exec
    assert path == sys.executable
    assert argv[:5] == [sys.executable, "-m", "streamlit", "run", str(ENTRYPOINT)]
    options = dict(zip(argv[5 : argv.index("--") : 2], argv[6 : argv.index("--") : 2]))
    assert options["--server.port"] == "8600" and options["--server.address"] == "127.0.0.1"
    assert options["--server.headless"] == "true" and options["--browser.gatherUsageStats"] == "false"
    assert argv[argv.index("--") + 1 :] == ["--db", store.db]


def test_default_store_and_browser_tab(store, no_exec, monkeypatch):
    monkeypatch.setattr(mpq, "list_runs", lambda db: None)  # the default store may not exist here
    with pytest.raises(Execed):
        cli.main(["dashboard"])
    ((_, argv),) = no_exec
    assert argv[argv.index("--server.headless") + 1] == "false" and argv[-1] == "--"


def test_unreadable_store_fails_in_one_line_before_any_server(tmp_path, no_exec, capsys):
    code, err = _exit_code(capsys, "dashboard", "--db", str(tmp_path / "missing.db"))
    assert code == 1 and not no_exec
    assert err.startswith("mpq: error: ") and "no store at" in err and err.count("\n") == 1


def test_missing_app_fails_in_one_line(store, tmp_path, monkeypatch, no_exec, capsys):
    monkeypatch.setattr(mpq, "__file__", str(tmp_path / "site-packages" / "mpq" / "__init__.py"))
    code, err = _exit_code(capsys, "dashboard", "--db", store.db)
    assert code == 1 and not no_exec
    site = tmp_path / "site-packages"
    assert err == (
        f"mpq: error: the dashboard app is missing: neither {site / 'app' / 'streamlit_app.py'} nor "
        f"{site / 'mpq' / '_dashboard' / 'streamlit_app.py'} exists; reinstall mpq.\n"
    )


def test_missing_streamlit_names_the_extra(store, monkeypatch, no_exec, capsys):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "streamlit" else real(name, *a))
    code, err = _exit_code(capsys, "dashboard", "--db", store.db)
    assert (code, err) == (
        1,
        "mpq: error: mpq dashboard needs the [dashboard] extra; run 'pip install mpq[dashboard]'.\n",
    )


def test_serves_the_dashboard_on_loopback(served, store):
    # The command became the server: the same process, running streamlit on the checkout's app.
    argv = Path(f"/proc/{served.process.pid}/cmdline").read_bytes().split(b"\0")[:-1]
    assert [a.decode() for a in argv[1:5]] == ["-m", "streamlit", "run", str(ENTRYPOINT)]
    with urllib.request.urlopen(served.url, timeout=10) as page:
        assert page.status == 200 and b'<div id="root">' in page.read()
    assert mpq.list_runs(store.db)["status"].tolist().count("running") == 1  # the store is untouched
