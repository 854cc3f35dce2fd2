"""The ``--model`` spec: ``load_task(spec)`` builds the Task a spec names, a built-in example or a
factory function in a user's file."""

from __future__ import annotations

import hashlib
import importlib.util
import sys
from pathlib import Path

from mpq._examples import make_example
from mpq._fingerprint import USER_MODULE_PREFIX
from mpq._task import Task, check_task
from mpq._trust import EXAMPLE_PREFIX, canonical_spec
from mpq.exceptions import TaskSpecError
from mpqvocab import did_you_mean, shown

#: The factory a ``path/to/file.py`` spec without ``:factory`` names.
DEFAULT_FACTORY = "make_task"


def load_task(spec: str) -> Task:
    """Build the task a ``--model`` spec names.

    Args:
        spec: ``example:NAME`` for a built-in example (see ``mpq.list_examples()``), or
            ``path/to/file.py:factory`` for a function in a user file that returns a Task
            (``path/to/file.py`` alone calls its ``make_task``).

    Returns:
        The task, its model in eval mode; ``task.spec`` is the spec with the file's path made
        absolute (what a run stores, so that a command run from another folder rebuilds it).

    Raises:
        TaskSpecError: the spec is malformed, the file or factory is missing, the factory
            raises or returns something that is not a Task.
        UnknownNameError: no built-in example of that name.
    """
    if isinstance(spec, str) and spec.endswith(".py") and not spec.startswith(EXAMPLE_PREFIX):
        spec = f"{spec}:{DEFAULT_FACTORY}"
    if not isinstance(spec, str) or ":" not in spec:
        raise TaskSpecError(
            f"--model {spec!r}: expected 'example:NAME' or 'path/to/file.py[:factory]'; "
            "run 'mpq search --help' for examples."
        )
    prefix, _, name = spec.rpartition(":")
    if prefix == "example":
        task = make_example(name)
    else:
        task = _call_factory(Path(prefix), name, spec)
    task = check_task(task, spec)
    task.model.eval()
    task.spec = canonical_spec(spec)
    return task


def _call_factory(path: Path, factory_name: str, spec: str) -> Task:
    if path.suffix != ".py":
        raise TaskSpecError(f"--model {spec!r}: {str(path)!r} is not a .py file; give path/to/file.py:factory.")
    try:
        found = path.is_file()
    except OSError:  # a name the system refuses (too long)
        found = False
    if not found:
        where = "" if path.is_absolute() else f" (looked for in {shown(str(Path.cwd()))})"
        raise TaskSpecError(f"--model {shown(spec)}: file {shown(str(path))} does not exist{where}; check the path.")
    if not factory_name.isidentifier():
        raise TaskSpecError(f"--model {spec!r}: {factory_name!r} is not a function name; give path/to/file.py:factory.")
    # One module per file, the same name in every process (hash() of a str is salted per process);
    # a fingerprint holds only its prefix (mpq._fingerprint), so a moved file is the same task.
    module_name = f"{USER_MODULE_PREFIX}{hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:16]}"
    module_spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[module_name] = module
    try:
        module_spec.loader.exec_module(module)
    except SystemExit as exc:  # sys.exit() in the user's file would end mpq without a word
        raise TaskSpecError(
            f"--model {spec!r}: importing {str(path)!r} exited (SystemExit {exc.code}); a task file must not exit."
        ) from None
    except Exception as exc:  # the user's file: report its failure as one line
        raise TaskSpecError(
            f"--model {spec!r}: importing {str(path)!r} raised {type(exc).__name__}: {exc}; fix the file."
        ) from exc
    factory = getattr(module, factory_name, None)
    if not callable(factory):
        # The file's own functions, not every name it imports (torch, nn...).
        defined = [n for n, v in vars(module).items() if callable(v) and getattr(v, "__module__", None) == module_name]
        hint = did_you_mean(factory_name, defined) or (
            f"; functions it defines: {', '.join(sorted(defined))}" if defined else "; it defines no function"
        )
        raise TaskSpecError(
            f"--model {spec!r}: {str(path)!r} has no function {factory_name!r}{hint}; give path/to/file.py:factory."
        )
    try:
        return factory()
    except SystemExit as exc:
        raise TaskSpecError(
            f"--model {spec!r}: {factory_name}() exited (SystemExit {exc.code}); return an mpq.Task instead."
        ) from None
    except Exception as exc:
        raise TaskSpecError(
            f"--model {spec!r}: {factory_name}() raised {type(exc).__name__}: {exc}; fix the factory."
        ) from exc
