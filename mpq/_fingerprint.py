"""Fingerprints of a task's code: its loss and its evaluate function.

A stored probe is reused, and an unfinished run resumed, only for the same task: the same
weights and calibration data (hashed by :mod:`mpq._probes.checkpoint`), and the same loss and
metric. A function is fingerprinted by what decides its result, stable from one process to the
next: its code (bytecode, constants, names), its defaults, the values it closes over and the
globals it reads (tensors by their bytes, numbers and strings by value, functions recursively,
an ``nn.Module`` by its class, settings and state dict, other objects by their class and
attributes, a few levels deep); never by ``id`` or ``repr``, which hold memory addresses.
Numbers and strings held in a list, dict or set count by where they are, not by value: that is
state a function keeps (a call counter), while held-out data (tensors) counts wherever it is.
"""

from __future__ import annotations

import functools
import hashlib
import types
from collections.abc import Mapping
from typing import Any

import torch

from mpq.exceptions import InvalidParameterError

#: The prefix of the module name a task file is imported under (:func:`mpq.load_task`); the rest
#: names the file's place, which is not what a function computes: a moved task file is the same task.
USER_MODULE_PREFIX = "_mpq_user_task_"

#: Levels of objects followed into their attributes (a closure over a DataLoader: its dataset's
#: tensors); deeper, an object counts by its class alone.
_OBJECT_DEPTH = 3


def callable_hash(fn: Any) -> str:
    """SHA-256 of what decides ``fn``'s results (see the module's docstring); None hashes too."""
    digest = hashlib.sha256()
    _feed(digest, fn, _OBJECT_DEPTH, set())
    return digest.hexdigest()


def task_code(task: Any) -> dict[str, str]:
    """The fingerprints a run records of its task's code: ``loss_fn`` and ``evaluate``."""
    return {"loss_fn": callable_hash(task.loss_fn), "evaluate": callable_hash(task.evaluate)}


def check_same_code(task: Any, record: Mapping[str, Any], run_id: int) -> None:
    """Refuse to resume a run with a task whose loss or metric changed since (runs stored before
    mpq recorded them are not checked).

    Raises:
        InvalidParameterError: the loss or evaluate function fingerprints otherwise.
    """
    stored = (record.get("settings") or {}).get("task_code") or {}
    for name, current in task_code(task).items():
        if name in stored and stored[name] != current:
            raise InvalidParameterError(
                f"run {run_id} searched task {record['task_name']!r} with another {name} than this task's (its code, "
                "or a value it reads, changed); its frontier would mix two metrics: resume with the task as it was, "
                "or start a new search without --resume."
            )


def _text(digest, text: str) -> None:
    data = text.encode()
    digest.update(len(data).to_bytes(8, "little") + data)


def _feed(digest, obj: Any, depth: int, seen: set[int], state: bool = False) -> None:
    if obj is None or isinstance(obj, (bool, int, float, complex, str, bytes)):
        if not state:
            _text(digest, f"{type(obj).__name__}:{obj!r}")
        return
    if isinstance(obj, torch.Tensor):
        tensor = obj.detach().cpu().contiguous()
        _text(digest, f"tensor {tensor.dtype} {tuple(tensor.shape)}")
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
        return
    if isinstance(obj, tuple):
        _text(digest, f"tuple {len(obj)}")
        for item in obj:
            _feed(digest, item, depth, seen, state)
    elif isinstance(obj, (list, set, frozenset)):  # its length is state too (a list of calls)
        _text(digest, type(obj).__name__)
        for item in sorted(obj, key=str) if isinstance(obj, (set, frozenset)) else obj:
            _feed(digest, item, depth, seen, True)
    elif isinstance(obj, Mapping):
        _text(digest, "mapping")
        for key in sorted(obj, key=str):
            _text(digest, str(key))
            _feed(digest, obj[key], depth, seen, True)
    elif id(obj) in seen:  # a cycle: a recursive function, an object referring back to itself
        _text(digest, "seen")
    elif isinstance(obj, types.FunctionType):
        seen.add(id(obj))
        _function(digest, obj, depth, seen)
    elif isinstance(obj, types.MethodType):
        _text(digest, "method")
        _feed(digest, obj.__func__, depth, seen)
        _feed(digest, obj.__self__, depth, seen)
    elif isinstance(obj, functools.partial):
        _text(digest, "partial")
        for part in (obj.func, obj.args, obj.keywords):
            _feed(digest, part, depth, seen)
    elif isinstance(obj, types.CodeType):
        _code(digest, obj, depth, seen)
    elif isinstance(obj, (types.ModuleType, types.BuiltinFunctionType, type)):
        _text(
            digest,
            f"{type(obj).__name__} {_module(getattr(obj, '__module__', ''))}.{getattr(obj, '__qualname__', obj)}",
        )
    elif isinstance(obj, torch.nn.Module):
        seen.add(id(obj))
        _text(digest, f"module {_module(type(obj).__module__)}.{type(obj).__qualname__}")
        # Its settings (reduction, ignore_index...) and weights; not its hooks or train/eval flag.
        _fields(digest, {k: v for k, v in vars(obj).items() if not k.startswith("_") and k != "training"}, depth, seen)
        _feed(digest, dict(obj.state_dict()), depth, seen)
    else:
        seen.add(id(obj))
        _text(digest, f"object {_module(type(obj).__module__)}.{type(obj).__qualname__}")
        if depth > 0 and hasattr(obj, "__dict__"):
            _fields(digest, vars(obj), depth - 1, seen)


def _module(name: str | None) -> str | None:
    """A module's name as a fingerprint holds it: a task file's without its place."""
    return USER_MODULE_PREFIX if name and name.startswith(USER_MODULE_PREFIX) else name


def _fields(digest, fields: Mapping[str, Any], depth: int, seen: set[int]) -> None:
    """Named values a function reads (its globals, an object's attributes): each by value."""
    for name in sorted(fields):
        _text(digest, name)
        _feed(digest, fields[name], depth, seen)


def _function(digest, fn: types.FunctionType, depth: int, seen: set[int]) -> None:
    _text(digest, f"function {_module(fn.__module__)}.{fn.__qualname__}")
    _code(digest, fn.__code__, depth, seen)
    _feed(digest, (fn.__defaults__, fn.__kwdefaults__), depth, seen)
    cells = [cell.cell_contents for cell in fn.__closure__ or () if _filled(cell)]
    _feed(digest, cells, depth, seen)
    # The globals it reads by name: a module constant, a helper function of the same file.
    _fields(digest, {name: fn.__globals__[name] for name in _names(fn.__code__) if name in fn.__globals__}, depth, seen)


def _filled(cell: types.CellType) -> bool:
    try:
        cell.cell_contents  # noqa: B018 (an empty cell raises: a closure variable not assigned yet)
    except ValueError:
        return False
    return True


def _names(code: types.CodeType) -> set[str]:
    """The global names a code object and the code nested in it read."""
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _names(const)
    return names


def _code(digest, code: types.CodeType, depth: int, seen: set[int]) -> None:
    digest.update(code.co_code)
    _text(digest, " ".join(code.co_names))
    for const in code.co_consts:
        _feed(digest, const, depth, seen)
