"""Every public function of mpq, solvers and hwmodels documents exactly its parameters, in order."""

import inspect
import re

import pytest

import hwmodels
import mpq
import solvers

FUNCTIONS = [
    pytest.param(getattr(module, name), id=f"{module.__name__}.{name}")
    for module in (mpq, solvers, hwmodels)
    for name in module.__all__
    if callable(getattr(module, name)) and not inspect.isclass(getattr(module, name))
]


def documented_args(doc: str) -> list[str] | None:
    """The names under a Google-style ``Args:`` section, in order; None without one."""
    section = re.search(r"\n\s*Args:\n(.*?)(?:\n\s*\n\s*(?:Returns|Raises|Yields|Example|Attributes)|\Z)", doc, re.S)
    if section is None:
        return None
    return [name.lstrip("*") for name in re.findall(r"^\s{8}(\*{0,2}\w+)(?: \([^)]*\))?:", section.group(1), re.M)]


def test_there_are_public_functions_to_check():
    assert len(FUNCTIONS) >= 20


@pytest.mark.parametrize("function", FUNCTIONS)
def test_docstring_args_match_the_signature(function):
    parameters = list(inspect.signature(function).parameters)
    documented = documented_args(function.__doc__ or "")
    if not parameters:
        assert documented in (None, [])
    else:
        assert documented == parameters
