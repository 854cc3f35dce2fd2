"""The ``>>>`` examples in the docstrings of mpq, solvers and hwmodels run and print what they show.

Each module of the three packages is imported (``pkgutil.walk_packages``) and its examples run
with :mod:`doctest`, in the module's namespace, as ``python -m doctest`` would; the default
testpaths stay ``tests/``.
"""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

PACKAGES = ("mpq", "solvers", "hwmodels")
FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


def modules() -> list[str]:
    names = []
    for package in PACKAGES:
        root = importlib.import_module(package)
        names.append(package)
        names += [info.name for info in pkgutil.walk_packages(root.__path__, prefix=f"{package}.")]
    return sorted(names)


def examples(module_name: str) -> list[doctest.DocTest]:
    module = importlib.import_module(module_name)
    found = doctest.DocTestFinder(exclude_empty=True).find(module, module_name)
    # Objects a module imports from another are found there, not here.
    return [test for test in found if test.examples and _defined_in(test, module_name)]


def _defined_in(test: doctest.DocTest, module_name: str) -> bool:
    return test.name == module_name or test.name.startswith(f"{module_name}.")


MODULES_WITH_EXAMPLES = [name for name in modules() if examples(name)]


def test_the_examples_are_found():
    # The walk finds the examples at all: a broken walk would pass every parametrized test below.
    assert {"solvers._solve", "hwmodels._device"} <= set(MODULES_WITH_EXAMPLES)


@pytest.mark.parametrize("module_name", MODULES_WITH_EXAMPLES)
def test_docstring_examples(module_name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # an example that writes a file writes it here
    runner = doctest.DocTestRunner(optionflags=FLAGS)
    report = []
    for test in examples(module_name):
        runner.run(test, out=report.append)
    assert runner.failures == 0, "".join(report)
