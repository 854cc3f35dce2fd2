"""The registry of built-in example tasks (each module registers itself by decorator)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import pandas as pd

from mpq._defaults import EXAMPLES
from mpq._param_checks import unknown_name

if TYPE_CHECKING:
    from mpq._task import Task

_EXAMPLES: dict[str, tuple[Callable[[], Task], str]] = {}


def register_example(name: str):
    """Register a zero-argument task factory under ``example:NAME``, a name of
    :data:`mpq._defaults.EXAMPLES` (which the CLI's help lists without importing torch)."""
    if name not in EXAMPLES:
        raise KeyError(f"example {name!r} is not in mpq._defaults.EXAMPLES; add it there with its description.")

    def decorator(factory: Callable[[], Task]) -> Callable[[], Task]:
        _EXAMPLES[name] = (factory, EXAMPLES[name])
        return factory

    return decorator


def make_example(name: str) -> Task:
    """Build the built-in example task ``name`` (see :func:`list_examples`)."""
    if name not in _EXAMPLES:
        raise unknown_name("example", name, _EXAMPLES)
    return _EXAMPLES[name][0]()


def list_examples() -> pd.DataFrame:
    """The built-in examples.

    Returns:
        One row per example: ``name`` (use as ``--model example:NAME``), ``description``.
    """
    return pd.DataFrame(
        [{"name": name, "description": description} for name, (_, description) in _EXAMPLES.items()],
        columns=["name", "description"],
    )
