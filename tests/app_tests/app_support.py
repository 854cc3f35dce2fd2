"""Paths and helpers the dashboard tests share (a plain module: conftest names are ambiguous)."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from types import ModuleType

import mpq

ROOT = Path(__file__).resolve().parents[2]
APP_DIR = ROOT / "app"
ENTRYPOINT = APP_DIR / "streamlit_app.py"
PAGES = ("app_pages/runs.py", "app_pages/frontier.py", "app_pages/calibration.py", "app_pages/compare.py")
FAST = mpq.ProbeSettings(tolerance=0.2, min_samples=4, max_samples=8)


def app_module(name: str) -> ModuleType:
    """Import one of app/'s modules (charts, views, exports...) by the name the app uses."""
    sys.path.insert(0, str(APP_DIR))
    try:
        return importlib.import_module(name)
    finally:
        sys.path.remove(str(APP_DIR))


def render_pages(url: str, query: str = "") -> dict[str, list[str]]:
    """Every page of the dashboard served at ``url``, run by one session as a browser tab runs
    them (Streamlit's websocket protocol, no browser).

    Args:
        url: The server, ``http://host:port``.
        query: The pages' query string (``run=3``).

    Returns:
        Page name -> the exceptions the page showed (``"Type: message"``), for every page of the
        app's navigation.
    """
    from streamlit.proto.BackMsg_pb2 import BackMsg
    from streamlit.proto.ForwardMsg_pb2 import ForwardMsg
    from websockets.sync.client import connect

    def run(stream, page_hash: str) -> tuple[dict[str, str], list[str]]:
        rerun = BackMsg()
        rerun.rerun_script.query_string = query
        rerun.rerun_script.page_script_hash = page_hash
        stream.send(rerun.SerializeToString())
        pages, shown = {}, []
        while True:
            message = ForwardMsg.FromString(stream.recv(timeout=60))
            kind = message.WhichOneof("type")
            if kind == "navigation":
                pages = {page.page_name: page.page_script_hash for page in message.navigation.app_pages}
            elif kind == "delta" and message.delta.new_element.WhichOneof("type") == "exception":
                shown.append(
                    f"{message.delta.new_element.exception.type}: {message.delta.new_element.exception.message}"
                )
            elif kind == "script_finished" and message.script_finished != ForwardMsg.FINISHED_EARLY_FOR_RERUN:
                return pages, shown

    with connect(url.replace("http", "ws", 1) + "/_stcore/stream", subprotocols=["streamlit"]) as stream:
        pages, _ = run(stream, "")
        return {name: run(stream, page_hash)[1] for name, page_hash in pages.items()}
