"""What is code and what is data: a task file is code, a store is data.

A run stores the ``--model`` spec that built its task, so that its model can be rebuilt (an ONNX
export, ``mpq measure --runtime onnxruntime``, ``mpq search --resume``). Rebuilding a
``path/to/file.py:factory`` spec imports that file: whoever can write a store, or hand one over,
would run code as whoever reads it. So a spec read from a store is rebuilt only when the caller
named the task (``model=``, ``--model``) or allowed the stored spec (``--trust-stored-model``;
the dashboard's ``--allow-model``). The built-in examples (``example:NAME``) are mpq's own code,
looked up by name in mpq's registry: rebuilding one runs nothing a store chose. Nor does an
``hf:PATH`` spec: it reads a folder's JSON and safetensors (never pickles, never the folder's own
code), data like the store itself.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from mpq.exceptions import TaskSpecError

#: The prefix of the specs that name one of mpq's built-in examples.
EXAMPLE_PREFIX = "example:"
#: The prefixes of the specs that build a task without importing a file.
DATA_PREFIXES = (EXAMPLE_PREFIX, "hf:")


def runs_code(spec: str) -> bool:
    """Whether building ``spec`` imports a file (anything but a built-in example or an ``hf:`` folder)."""
    return not spec.startswith(DATA_PREFIXES)


def canonical_spec(spec: str) -> str:
    """``spec`` with a file's path made absolute, so that two spellings of one file compare equal."""
    if not runs_code(spec):
        return spec
    path, _, factory = spec.rpartition(":")
    return f"{Path(path).expanduser().resolve()}:{factory}"


def stored_spec_to_build(
    run_id: int, stored: str | None, model: str | None, allowed: Iterable[str] = (), fix: str | None = None
) -> str | None:
    """The spec to rebuild a run's task from: ``model`` when the caller named it, else the stored
    spec when it runs no file or the caller allowed it (``allowed``); None when the run stores
    no spec.

    Args:
        run_id: The run, for the message.
        stored: The run's stored ``model_spec``.
        model: The spec the caller gave, or None.
        allowed: Specs the operator allowed to be rebuilt from a store (the dashboard's).
        fix: How to allow it, where the caller is not the command line or the API.

    Raises:
        TaskSpecError: the stored spec imports a file nobody allowed; the message names the
            file and how to allow it.
    """
    if model is not None:
        return model
    if stored is None or not runs_code(stored):
        return stored
    if canonical_spec(stored) in {canonical_spec(spec) for spec in allowed}:
        check_stored_file(run_id, stored)
        return stored
    fix = fix or (
        f"give it yourself once you have checked it (--model {stored}, or model= in Python), or "
        "--trust-stored-model for a store you trust"
    )
    raise TaskSpecError(
        f"run {run_id}: its model is rebuilt by {stored!r}, a file the store names, and importing it runs that "
        f"file's code; {fix}."
    )


def check_stored_file(run_id: int, stored: str) -> None:
    """Refuse, in one line that says where the file was looked for and how to give it again, a
    stored spec whose task file is not there (moved since, or stored as typed, relative, by an
    older mpq and read from another folder).

    Raises:
        TaskSpecError: the file does not exist.
    """
    path = Path(stored.rpartition(":")[0]).expanduser()
    if path.is_file():
        return
    where = (
        "where the search ran"
        if path.is_absolute()
        else f"relative to the folder the search ran in, which the store does not record; looked for in {str(Path.cwd())!r}"
    )
    raise TaskSpecError(
        f"run {run_id}: its task file {str(path)!r} ({where}) does not exist; give the task again with "
        "--model path/to/file.py:factory (model= in Python): it must build the run's model and data."
    )


def spec_to_rebuild(stored: str | None, allowed: Iterable[str]) -> str | None:
    """The spec a server (the dashboard's Build) rebuilds a run's model from, or None where the
    operator allowed nothing that stands for it: a built-in example's own; the stored spec where
    allowed (``allowed``, its ``--allow-model`` specs); else, its file gone, an allowed spec of the
    same file name and factory (the task's folder moved since the search; the rebuild checks that
    it builds the run's model and data)."""
    if stored is None or not runs_code(stored):
        return stored
    allowed = [canonical_spec(spec) for spec in allowed]
    path, _, factory = canonical_spec(stored).rpartition(":")
    if f"{path}:{factory}" in allowed and Path(path).is_file():
        return stored
    moved = [
        spec
        for spec in allowed
        if spec.rpartition(":")[2] == factory
        and Path(spec.rpartition(":")[0]).name == Path(path).name
        and Path(spec.rpartition(":")[0]).is_file()
    ]
    if moved:
        return moved[0]
    return stored if f"{path}:{factory}" in allowed else None  # allowed, its file gone: Build says so
