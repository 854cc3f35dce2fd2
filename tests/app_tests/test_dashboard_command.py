"""``mpq dashboard``: one resolver for app/, the store checked first, errors in one line, and a
real server on the loopback interface, started as a new user first starts it (any folder, no
Streamlit prompt, a browser tab only when asked for)."""

from __future__ import annotations

import os
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from app_support import ENTRYPOINT, render_pages

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


def _options(argv: list[str]) -> dict[str, str]:
    start = argv.index(str(ENTRYPOINT)) + 1
    return dict(zip(argv[start : argv.index("--") : 2], argv[start + 1 : argv.index("--") : 2]))


def test_starts_streamlit_on_the_checkouts_app_with_the_store(store, no_exec):
    with pytest.raises(Execed):
        cli.main(["dashboard", "--db", store.db, "--headless", "--port", "8600"])
    ((path, argv),) = no_exec
    assert path == sys.executable
    # -P: the working directory stays off sys.path (a folder named mpq there would shadow mpq).
    assert argv[:6] == [sys.executable, "-P", "-m", "streamlit", "run", str(ENTRYPOINT)]
    options = _options(argv)
    assert options["--server.port"] == "8600" and options["--server.address"] == "127.0.0.1"
    assert options["--server.headless"] == "true" and options["--browser.gatherUsageStats"] == "false"
    assert argv[argv.index("--") + 1 :] == ["--db", store.db]


def test_choosing_a_store_and_building_from_a_task_file_are_the_operators_flags(store, no_exec, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(Execed):
        cli.main(["dashboard", "--db", store.db, "--choose-store", "--allow-model", "task.py:make_task"])
    ((_, argv),) = no_exec
    assert argv[argv.index("--") + 1 :] == [
        "--db",
        store.db,
        "--choose-store",
        "--allow-model",
        f"{tmp_path / 'task.py'}:make_task",  # resolved where the operator typed it
    ]


@pytest.mark.parametrize(("flags", "headless"), [([], "true"), (["--headless"], "true"), (["--open-browser"], "false")])
def test_a_browser_tab_only_when_asked_and_never_a_prompt(store, no_exec, monkeypatch, flags, headless):
    monkeypatch.setattr(mpq, "list_runs", lambda db: None)  # the default store may not exist here
    with pytest.raises(Execed):
        cli.main(["dashboard", *flags])
    ((_, argv),) = no_exec
    options = _options(argv)
    assert options["--server.headless"] == headless and argv[-1] == "--"
    assert options["--server.showEmailPrompt"] == "false"  # Streamlit's first-start email prompt


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


@pytest.mark.slow  # fast twin: the server-argument tests (-P, no email prompt)
def test_serves_the_dashboard_on_loopback(served, store):
    # The command became the server: the same process, running streamlit on the checkout's app,
    # in the folder it was started from (one holding a folder named mpq), with a fresh home.
    argv = Path(f"/proc/{served.process.pid}/cmdline").read_bytes().split(b"\0")[:-1]
    assert [a.decode() for a in argv[1:6]] == ["-P", "-m", "streamlit", "run", str(ENTRYPOINT)]
    assert Path(f"/proc/{served.process.pid}/cwd").resolve() == served.cwd.resolve()
    assert (served.cwd / "mpq" / "__init__.py").is_file()
    with urllib.request.urlopen(served.url, timeout=10) as page:
        assert page.status == 200 and b'<div id="root">' in page.read()
    # Each page runs as a browser tab runs it; mpq is the real one (not the folder named mpq).
    pytest.importorskip(
        "websockets", reason="needs websockets (installed with Streamlit since its server runs on uvicorn)"
    )
    shown = render_pages(served.url, f"run={store.ids['fpga']}")
    assert sorted(shown) == ["Compare runs", "Frontier", "Predicted vs measured", "Runs"]
    assert shown == dict.fromkeys(shown, [])
    # --open-browser: the browser was asked to open the dashboard, and no prompt held the start.
    deadline = time.monotonic() + 10
    while not served.opened.exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert served.opened.read_text().split() == [served.url]
    assert "Email" not in served.log.read_text()
    assert mpq.list_runs(store.db)["status"].tolist().count("running") == 1  # the store is untouched
