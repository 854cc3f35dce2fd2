"""A skipped test says why and how to run it: ``make test``'s summary lists each skip's reason.

pytest prints the reasons only with ``-rs`` (in ``addopts``), and only the reasons the skips
give: ``pytest.importorskip`` without ``reason=`` says which module is missing, not which extra
installs it, and a bare ``@pytest.mark.skip`` says nothing.
"""

from __future__ import annotations

import ast
import shlex
import tomllib
from pathlib import Path

ROOT = Path(__file__).parents[1]

#: Skipping calls, and where each takes its reason: a keyword, or also the first positional argument.
SKIPS = {
    "pytest.skip": 0,
    "pytest.xfail": 0,
    "pytest.mark.skip": 0,
    "pytest.mark.xfail": None,
    "pytest.mark.skipif": None,
    "pytest.importorskip": None,
}


def _dotted(node: ast.AST) -> str:
    return f"{_dotted(node.value)}.{node.attr}" if isinstance(node, ast.Attribute) else getattr(node, "id", "")


def _has_reason(call: ast.Call, positional: int | None) -> bool:
    given = [k.value for k in call.keywords if k.arg == "reason"]
    if positional is not None and len(call.args) > positional:
        given.append(call.args[positional])
    # A string built at run time (an f-string, a name) counts; an empty constant does not.
    return any(not (isinstance(v, ast.Constant) and not str(v.value).strip()) for v in given)


def skips_without_reason(source: str, where: str) -> list[str]:
    """``file:line name`` of each skip in ``source`` that gives no reason."""
    tree = ast.parse(source)
    called = {id(node.func) for node in ast.walk(tree) if isinstance(node, ast.Call)}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and _dotted(node.func) in SKIPS:
            if not _has_reason(node, SKIPS[_dotted(node.func)]):
                found.append(f"{where}:{node.lineno} {_dotted(node.func)}")
        elif isinstance(node, ast.Attribute) and id(node) not in called and _dotted(node) in SKIPS:
            found.append(f"{where}:{node.lineno} {_dotted(node)} (not called, so without a reason)")
    return found


def test_the_summary_lists_skip_reasons():
    addopts = shlex.split(
        tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]["addopts"]
    )
    assert any(opt.startswith("-r") and "s" in opt[2:] for opt in addopts), addopts


def test_every_skip_in_the_tests_gives_a_reason():
    files = sorted(ROOT.glob("tests/**/*.py"))
    assert len(files) > 40  # the walk finds the suite
    sources = {path: path.read_text() for path in files if path.name != "syntax_error.py"}  # invalid on purpose
    missing = [
        line
        for path, source in sources.items()
        if "skip" in source or "xfail" in source  # parse only the files that may skip
        for line in skips_without_reason(source, str(path.relative_to(ROOT)))
    ]
    assert not missing, "give these skips a reason naming how to run the test:\n" + "\n".join(missing)


def test_the_check_finds_skips_without_a_reason():
    source = """
import pytest
pytest.importorskip("transformers")
pytest.importorskip("transformers", reason="needs the [minilm] extra")
pytest.skip("")
pytest.skip("no GPU: run on one")
@pytest.mark.skip
def test_a(): ...
@pytest.mark.skipif(True, reason=f"{1}")
def test_b(): ...
"""
    assert skips_without_reason(source, "t.py") == [
        "t.py:3 pytest.importorskip",
        "t.py:5 pytest.skip",
        "t.py:7 pytest.mark.skip (not called, so without a reason)",
    ]
