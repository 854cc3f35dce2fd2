"""Every code block of README.md and of the manual (docs/*.md) runs as written, so neither can
drift from mpq.

The rule, by the language of a block's fence:

* ```` ```bash ````: commands, run in order by ``bash`` in one temporary folder (a later block may
  read the store an earlier one wrote), with this checkout's ``mpq`` first on ``PATH`` and
  ``$MPQ_DB`` pointing into the folder. A command :data:`SKIPPED` names is not run, for the reason
  it gives.
* ```` ```python ````: a script, run by this Python in the same folder, after the blocks above it.
* ```` ```python file=PATH ```` (any language with ``file=``): a file's contents, written to PATH in
  that folder (for the blocks below it to use); never run itself.
* ```` ```text ````: an output listing or a drawing; never run.

A block without one of these languages fails the quick test below, which also parses every
``mpq`` command as the command line would (subcommand, options, their values; nothing runs) and
compiles every Python block, checking the ``mpq`` names and keywords it uses. Running the blocks
takes minutes (a search, the Python example's two searches), so that is the slow twin. The
README's blocks run first, then each page of the manual in name order, all in one folder: a page
may use the store the README's first search wrote (``readme.db``).
"""

from __future__ import annotations

import ast
import functools
import inspect
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

import mpq
from mpq import cli

ROOT = Path(__file__).parents[1]
README = ROOT / "README.md"
DOCUMENTS = [README, *sorted((ROOT / "docs").glob("*.md"))]
LANGUAGES = {"bash", "python", "text"}

#: Commands a README block shows but no test can run (prefixes of the command), and why.
SKIPPED = {
    "make demo": "creates .venv and installs mpq (tests/test_packaging.py builds the package), then runs `mpq search`, "
    "which the README's own `mpq search` block runs here",
    "make test": "runs this very suite",
    "pip install": "installs from a package index, which tests do not reach",
    "mpq dashboard": "serves until stopped; tests/app_tests drive the app",
    "python benchmarks/": "each benchmark takes minutes to hours on its full inputs",
    "python examples/": "runs from a checkout (the blocks' folder has none); tests/mpq_tests/test_automl_example.py "
    "runs the study",
}

#: Operators between the commands of one line (with ``punctuation_chars``, shlex splits them off).
OPERATORS = re.compile(r"^[|&;]+$")


@dataclass(frozen=True)
class Block:
    line: int  # of the opening fence, 1-based
    language: str
    text: str
    document: str = "README.md"  # relative to the checkout
    file: str | None = None  # ``file=PATH`` on the fence: the block is that file's contents

    @property
    def where(self) -> str:
        return f"{self.document}:{self.line}"


def readme_blocks(text: str, document: str = "README.md") -> list[Block]:
    """The fenced blocks of a Markdown text, in order."""
    blocks, opened, body = [], None, []
    for number, line in enumerate(text.splitlines(), 1):
        if opened is None and line.startswith("```"):
            info = line[3:].split()
            file = next((word.removeprefix("file=") for word in info[1:] if word.startswith("file=")), None)
            opened, body = (number, info[0] if info else "", file), []
        elif opened is not None and line.rstrip() == "```":
            blocks.append(Block(opened[0], opened[1], "\n".join(body), document, opened[2]))
            opened = None
        elif opened is not None:
            body.append(line)
    assert opened is None, f"{document}:{opened[0]}: a code block is never closed"
    return blocks


def command_lines(block: Block) -> list[str]:
    """A shell block's command lines (continuations joined; blank and comment-only lines dropped)."""
    lines = re.sub(r"\\\n", " ", block.text).splitlines()
    return [line for line in lines if shlex.split(line, comments=True)]


def commands(line: str) -> list[list[str]]:
    """The commands of one line, each as its words without ``NAME=value`` prefixes or ``time``."""
    lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    found, words = [], []
    for token in [*lexer, ";"]:
        if OPERATORS.match(token):
            while words and (re.match(r"^[A-Za-z_]\w*=", words[0]) or words[0] == "time"):
                words.pop(0)
            found += [words] if words else []
            words = []
        else:
            words.append(token)
    return found


def skip_reason(line: str) -> str | None:
    """Why a command line is not run, or None."""
    first = " ".join(commands(line)[0])
    return next((why for prefix, why in SKIPPED.items() if first.startswith(prefix)), None)


BLOCKS = [block for path in DOCUMENTS for block in readme_blocks(path.read_text(), str(path.relative_to(ROOT)))]


def test_the_blocks_are_found():
    languages = [b.language for b in BLOCKS]
    assert languages.count("bash") >= 2 and "python" in languages and "text" in languages
    assert {b.document for b in BLOCKS} > {"README.md", "docs/cli.md"}
    assert any(b.file for b in BLOCKS), "README.md's own-model section writes its task file from a block"


def test_a_file_block_is_read_with_its_path():
    (block,) = readme_blocks("```python file=project/task.py\nx = 1\n```\n", "docs/x.md")
    assert (block.language, block.file, block.text, block.where) == (
        "python",
        "project/task.py",
        "x = 1",
        "docs/x.md:1",
    )


def test_the_rule_reads_commands_and_skips():
    assert commands("COLUMNS=80 time mpq runs --db x.db | head -3  # the newest") == [
        ["mpq", "runs", "--db", "x.db"],
        ["head", "-3"],
    ]
    assert skip_reason("make demo   # creates .venv") and skip_reason("mpq dashboard --db x.db")
    assert skip_reason("mpq search") is None
    block = Block(1, "bash", "# set up\nmpq frontier 1 \\\n  --all\n\nmpq devices")
    assert command_lines(block) == ["mpq frontier 1    --all", "mpq devices"]


@pytest.mark.parametrize("block", BLOCKS, ids=lambda b: b.where)
def test_every_block_says_its_language(block):
    assert block.language in LANGUAGES, (
        f"{block.where}: fence language {block.language!r}; mark it ```text (an output listing or a drawing, "
        "not run), ```bash (commands, run) or ```python (run); see tests/test_readme.py"
    )


@pytest.fixture
def parse_only(monkeypatch):
    """mpq's command line with every command's body replaced by a recorder: parsing, option types
    and Typer's errors are the real ones, and nothing runs."""
    called = []

    def recorder(command):
        @functools.wraps(command)  # the same signature, so the same options
        def record(*args, **kwargs):
            called.append(command.__name__)

        return record

    def infos(app):
        yield from app.registered_commands
        for group in app.registered_groups:
            yield from infos(group.typer_instance)

    for info in infos(cli.app):
        monkeypatch.setattr(info, "callback", recorder(info.callback))
    return called


MPQ_COMMANDS = [
    (block, words)
    for block in BLOCKS
    if block.language == "bash" and block.file is None
    for line in command_lines(block)
    for words in commands(line)
    if words[0] == "mpq"
]


@pytest.mark.parametrize(("block", "words"), MPQ_COMMANDS, ids=[f"{b.where} {shlex.join(w)}" for b, w in MPQ_COMMANDS])
def test_every_mpq_command_parses(block, words, parse_only, capsys):
    # Skipped commands too: `mpq dashboard` cannot run here, but its options can be checked.
    try:
        cli.main(words[1:])
    except SystemExit as exc:
        assert exc.code in (0, None), f"{block.where}: {shlex.join(words)!r} is refused:\n{capsys.readouterr().err}"
    assert parse_only or "--help" in words, f"{block.where}: {shlex.join(words)!r} ran no command"


def _is_mpq_name(node: ast.AST) -> bool:
    return isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "mpq"


@pytest.mark.parametrize("block", [b for b in BLOCKS if b.language == "python"], ids=lambda b: b.where)
def test_every_python_block_compiles_and_uses_mpq_names_that_exist(block):
    tree = ast.parse(block.text, filename=block.where)
    compile(tree, block.where, "exec")
    for node in ast.walk(tree):
        where = f"{block.where} (+{getattr(node, 'lineno', 0)})"
        if _is_mpq_name(node):
            assert node.attr in mpq.__all__, f"{where}: mpq.{node.attr} is not in mpq's public API"
        if isinstance(node, ast.Call) and _is_mpq_name(node.func) and node.func.attr in mpq.__all__:
            parameters = inspect.signature(getattr(mpq, node.func.attr)).parameters
            if not any(p.kind is p.VAR_KEYWORD for p in parameters.values()):
                for keyword in node.keywords:
                    assert keyword.arg in parameters, f"{where}: mpq.{node.func.attr} takes no {keyword.arg!r}"


@pytest.mark.slow
def test_every_block_runs_as_written(tmp_path):
    env = {
        **os.environ,  # MPQ_CACHE_DIR: the session's cache (conftest), so the examples' weights are trained once
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",  # this environment's mpq
        "PYTHONPATH": os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]),
        "MPQ_DB": str(tmp_path / "mpq.db"),  # a command without --db writes here, not to the user's store
    }
    ran = 0
    for block in BLOCKS:
        if block.file is not None:
            (tmp_path / block.file).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / block.file).write_text(block.text + "\n")
            continue
        if block.language == "bash":
            script = "\n".join(line for line in command_lines(block) if not skip_reason(line))
            argv = ["bash", "-e", "-o", "pipefail", "-c", script]
        elif block.language == "python":
            script = block.text
            argv = [sys.executable, "-c", script]
        else:
            continue
        if not script:
            continue
        done = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=1200)
        assert done.returncode == 0, f"{block.where} failed (exit {done.returncode}):\n{script}\n{done.stderr}"
        assert "Traceback" not in done.stderr, f"{block.where}:\n{done.stderr}"
        ran += 1
    assert ran >= 3
