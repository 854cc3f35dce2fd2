from pathlib import Path

import pytest

import mpq
from mpq.exceptions import TaskSpecError, UnknownNameError

ASSETS = Path(__file__).parents[1] / "assets" / "tasks"


def test_user_factory_is_loaded_and_put_in_eval_mode():
    task = mpq.load_task(f"{ASSETS / 'good_task.py'}:make_task")
    assert task.name == "user-task" and not task.model.training


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("digits", r"expected 'example:NAME', 'path/to/file.py\[:factory\]' or 'hf:PATH'"),
        (
            "nowhere/model.py:make_task",
            r"file 'nowhere/model.py' does not exist \(looked for in '/.*'\); check the path\.$",
        ),
        (
            f"{ASSETS / 'good_task.py'}:make_tsk",
            r"has no function 'make_tsk' \(did you mean 'make_task'\?\); give path/to/file.py:factory\.$",
        ),
        (f"{ASSETS / 'good_task.py'}:xyz", r"has no function 'xyz'; functions it defines: make_broken, .*make_task, "),
        (
            f"{ASSETS / 'good_task.py'}:make_broken",
            r"make_broken\(\) raised RuntimeError: dataset path /data/x not found; fix the factory\.$",
        ),
        (f"{ASSETS / 'good_task.py'}:make_wrong_type", r"returned Linear, not an mpq.Task"),
        (f"{ASSETS / 'good_task.py'}:make_empty_calibration", r"Task.calibration is empty"),
        (f"{ASSETS / 'syntax_error.py'}:make_task", r"importing .* raised SyntaxError"),
        (f"{ASSETS / 'good_task.txt'}:make_task", r"is not a \.py file"),
    ],
)
def test_bad_specs_are_one_line_task_errors(spec, message):
    with pytest.raises(TaskSpecError, match=message) as info:
        mpq.load_task(spec)
    assert "\n" not in str(info.value)
    assert isinstance(info.value, ValueError)


def test_a_file_without_a_factory_name_calls_its_make_task_and_the_task_stores_the_absolute_path(monkeypatch):
    monkeypatch.chdir(ASSETS)
    task = mpq.load_task("good_task.py")
    assert task.name == "user-task" and task.spec == f"{ASSETS / 'good_task.py'}:make_task"


def test_unknown_example_suggests_the_closest():
    with pytest.raises(
        UnknownNameError, match=r"unknown example 'digit-cnn'; choose one of .* \(did you mean 'digits-cnn'\?\)"
    ):
        mpq.load_task("example:digit-cnn")


def test_list_examples_names_the_built_in_tasks():
    names = set(mpq.list_examples()["name"])
    assert {"digits-cnn", "minilm", "minilm-small"} <= names
