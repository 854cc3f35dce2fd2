"""Every public function refuses a bad value of each parameter with a ValueError in one template.

Like scikit-learn's ``test_public_functions.py``: walk ``__all__`` of mpq, solvers and hwmodels,
call each function with valid arguments but one parameter bad (a wrong type: ``object()``; an
out-of-range number; an unknown name) and check the error:

* a :class:`ValueError` (mpq's InvalidParameterError, solvers' SolverInputError, hwmodels'
  InvalidTableError... all subclass it), not a TypeError or AttributeError from deep inside;
* one line, in one of the two templates: mpq/_param_checks.py's ``The 'batch_size' parameter of
  cost_table must be an int in the range [1, inf). Got 0 instead.``, or mpq/exceptions.py's
  ``<subject>: <what is wrong>; <the fix>.``

``KNOWN`` lists the cases that fail today, each as a strict xfail: fixing one makes its xfail
pass, which fails the suite until it is taken off the list.
"""

from __future__ import annotations

import inspect
import re
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest

import hwmodels
import mpq
import mpqvocab
import solvers

PUBLIC = {
    f"{module.__name__}.{name}": getattr(module, name)
    for module in (mpq, solvers, hwmodels)
    for name in module.__all__
    if callable(getattr(module, name)) and not inspect.isclass(getattr(module, name))
}

NAN = float("nan")
WRONG_TYPE = object()

# For each public function, the bad values of each parameter. A parameter left out must be in
# UNCHECKABLE with the reason; test_every_parameter_has_a_bad_value keeps both lists complete.
BAD: dict[str, dict[str, list]] = {
    "mpq.load_task": {
        "spec": [WRONG_TYPE, "digits", "example:nope", "hf:/nowhere"],
        "data": [WRONG_TYPE],
        "seq_len": [WRONG_TYPE, 1],
        "calibration_tokens": [WRONG_TYPE, 0],
        "heldout_tokens": [WRONG_TYPE, 0],
    },
    "mpq.layers": {"model": [WRONG_TYPE], "example_input": [WRONG_TYPE]},
    "mpq.fused_sets": {"model": [WRONG_TYPE], "example_input": [WRONG_TYPE]},
    "mpq.get_format": {"name": [WRONG_TYPE, "int99"]},
    "mpq.get_candidate": {"name": [WRONG_TYPE, "w99a8"]},
    "mpq.candidate_table": {"candidates": [WRONG_TYPE, ["w99a8"]]},
    "mpq.activation_ranges": {
        "model": [WRONG_TYPE],
        "calibration": [WRONG_TYPE],
        "layer_names": [WRONG_TYPE, ["nope"]],
    },
    "mpq.calibrate": {
        "model": [WRONG_TYPE],
        "calibration": [WRONG_TYPE],
        "layer_names": [WRONG_TYPE, ["nope"]],
        "quantizer": [WRONG_TYPE, mpq.QuantizerSettings(ranges="nope"), mpq.QuantizerSettings(percentile=10.0)],
    },
    "mpq.apply": {
        "model": [WRONG_TYPE],
        "assignment": [WRONG_TYPE, {"nope": "w8a8"}, {"0": "w99a8"}],
        "calibration": [WRONG_TYPE],
        "act_ranges": [WRONG_TYPE],
        "quantizer": [WRONG_TYPE, mpq.QuantizerSettings(act_grid="nope")],
    },
    "mpq.probe": {
        "task": [WRONG_TYPE],
        "probes": [WRONG_TYPE, ["nope"]],
        "settings": [WRONG_TYPE],
        "progress": [WRONG_TYPE],
        "checkpoint": [WRONG_TYPE],
        "layer_table": [WRONG_TYPE],
        "executor": [WRONG_TYPE],
        "threads": [WRONG_TYPE, 0],
        "decision": [WRONG_TYPE],
        "device": [WRONG_TYPE, "tpu", "cuda:99"],
    },
    "mpq.omega": {
        "task": [WRONG_TYPE],
        "sensitivity": [WRONG_TYPE],
        "candidates": [WRONG_TYPE, ["w99a8"]],
        "probe": [WRONG_TYPE, "nope"],
        "layer_table": [WRONG_TYPE],
        "quantizer": [WRONG_TYPE],
    },
    "mpq.validate": {
        "task": [WRONG_TYPE],
        "assignments": [WRONG_TYPE, {0: {"nope": "w8a8"}}],
        "act_ranges": [WRONG_TYPE],
        "progress": [WRONG_TYPE],
        "on_result": [WRONG_TYPE],
        "device": [WRONG_TYPE, "tpu", "cuda:99"],
    },
    "mpq.search": {
        "task": [WRONG_TYPE],
        "target": [WRONG_TYPE, "nope"],
        "objectives": [WRONG_TYPE, ["nope"]],
        "budgets": [WRONG_TYPE, {"latency_s": -1.0}],
        "candidates": [WRONG_TYPE, ["w99a8"]],
        "settings": [WRONG_TYPE],
        "batch_size": [WRONG_TYPE, 0, 1.5],
        "measured": [WRONG_TYPE],
        "max_points": [WRONG_TYPE, 0],
        "validate": [WRONG_TYPE],
        "max_drop": [WRONG_TYPE, -0.1, "100%"],
        "max_evals": [WRONG_TYPE, 1],
        "device": [WRONG_TYPE, "nope", "meta", "cuda:99"],
        "executor": [WRONG_TYPE],
        "refine": [WRONG_TYPE, -1],
        "ranges": [WRONG_TYPE, "nope"],
        "bias_correction": [WRONG_TYPE, "yes"],
        "fuse": [WRONG_TYPE, "yes"],
        "strategy": [WRONG_TYPE, "nope", "drop"],
        "db": [WRONG_TYPE],
        "resume": [WRONG_TYPE, -1],
        "fresh": [WRONG_TYPE],
        "progress": [WRONG_TYPE],
        "eval_timeout": [WRONG_TYPE, 0, -1.0],
        "on_eval_timeout": [WRONG_TYPE, "retry"],
        "threads": [WRONG_TYPE, 0, 1.5],
    },
    "mpq.open_run": {"db": [WRONG_TYPE], "run_id": [WRONG_TYPE, -1, 999]},
    "mpq.list_runs": {"db": [WRONG_TYPE]},
    "mpq.export": {
        "run": [WRONG_TYPE],
        "point": [WRONG_TYPE, -1, 999],
        "to": [WRONG_TYPE, "yaml"],
        "out": [WRONG_TYPE],
        "model": [WRONG_TYPE],
        "checkpoint": [WRONG_TYPE, "new-folder"],
    },
    "mpq.compare": {"first": [WRONG_TYPE], "second": [WRONG_TYPE], "points": [WRONG_TYPE, (999, 0)]},
    "mpq.measure_latency": {
        "task_or_model": [WRONG_TYPE],
        "candidates": [WRONG_TYPE, ["w99a8"]],
        "example_input": [WRONG_TYPE],
        "batch_size": [WRONG_TYPE, 0],
        "device": [WRONG_TYPE, "tpu"],
        "warmup": [WRONG_TYPE, -1],
        "repeats": [WRONG_TYPE, 0],
        "progress": [WRONG_TYPE],
    },
    "mpq.write_measured_csv": {"table": [WRONG_TYPE], "path": [WRONG_TYPE]},
    "solvers.solve": {
        "omega": [WRONG_TYPE],
        "costs": [WRONG_TYPE],
        "budgets": [WRONG_TYPE, {"weight_bytes": NAN}],
        "ties": [WRONG_TYPE, [["a", "nope"]]],
        "fixed": [WRONG_TYPE, {"a": "int99"}],
        "backend": [WRONG_TYPE, "nope"],
        "time_limit_s": [WRONG_TYPE, -1.0],
    },
    "solvers.price": {
        "omega": [WRONG_TYPE],
        "costs": [WRONG_TYPE],
        "assignment": [WRONG_TYPE, {"a": "int99", "b": "int4"}, {"a": "int4"}],
    },
    "solvers.frontier": {
        "omega": [WRONG_TYPE],
        "costs": [WRONG_TYPE],
        "objectives": [WRONG_TYPE, ["nope"]],
        "budgets": [WRONG_TYPE, {"weight_bytes": NAN}],
        "ties": [WRONG_TYPE, [["a", "nope"]]],
        "fixed": [WRONG_TYPE, {"a": "int99"}],
        "max_points": [WRONG_TYPE, 0],
        "anchor_costs": [WRONG_TYPE, [-1.0]],
        "backend": [WRONG_TYPE, "nope"],
        "time_limit_s": [WRONG_TYPE, -1.0],
    },
    "solvers.refine": {
        "omega": [WRONG_TYPE],
        "costs": [WRONG_TYPE],
        "objective_fn": [WRONG_TYPE],
        "objectives": [WRONG_TYPE, ["nope"]],
        "seeds": [WRONG_TYPE, [{"a": "int99", "b": "int4"}]],
        "n_trials": [WRONG_TYPE, 0],
        "budgets": [WRONG_TYPE, {"weight_bytes": NAN}],
        "ties": [WRONG_TYPE, [["a", "nope"]]],
        "fixed": [WRONG_TYPE, {"a": "int99"}],
        "storage": [WRONG_TYPE],
        "study_name": [WRONG_TYPE],
        "seed": [WRONG_TYPE],
        "population_size": [WRONG_TYPE, 0],
    },
    "hwmodels.load_device": {"name_or_path": [WRONG_TYPE, "nope"]},
    "hwmodels.cost_table": {
        "layers": [WRONG_TYPE],
        "device": [WRONG_TYPE, "nope"],
        "candidates": [WRONG_TYPE],
        "batch_size": [WRONG_TYPE, 0],
        "measured": [WRONG_TYPE],
    },
    "hwmodels.load_measured_latency": {"csv_path": [WRONG_TYPE, "no/such/file.csv"]},
}

UNCHECKABLE = {
    "mpq.list_examples": {},
    "mpq.list_formats": {},
    "hwmodels.device_dir": {},
    "hwmodels.list_devices": {},
}

# Cases that fail today: (function, parameter, repr of the bad value) -> what is raised instead.
# They are in files others own (mpq/_search.py, mpq/_measure.py, solvers/, hwmodels/).
KNOWN: dict[tuple[str, str, str], str] = {}

# "must be" mostly; probe's checkpoint "must have load(key) and save(key, state) methods"; a
# budget names its key: The "budgets['latency_s']" parameter of search must be ...
SKLEARN = re.compile(
    r"The ([\'\"])(?P<param>\w+)(?:\[[^]]+\])?\1 parameter of (?P<func>\w+) must .+\. Got .+ instead\."
)
ONE_LINE = re.compile(r"[^\n]+; [^\n]+\.")


def valid_arguments(name: str, ctx: SimpleNamespace) -> dict:
    """Arguments that the function accepts (cheap ones: a tiny task and a tiny stored run)."""
    task = ctx.task
    images = task.calibration[0][0]
    solver_args = {"omega": ctx.omega, "costs": ctx.costs}
    return {
        "mpq.load_task": {"spec": "hf:/nowhere"},
        "mpq.layers": {"model": task.model, "example_input": images},
        "mpq.fused_sets": {"model": task.model, "example_input": images},
        "mpq.get_format": {},
        "mpq.get_candidate": {},
        "mpq.candidate_table": {},
        "mpq.activation_ranges": {"model": task.model, "calibration": task.calibration, "layer_names": None},
        "mpq.calibrate": {"model": task.model, "calibration": task.calibration},
        "mpq.apply": {"model": task.model, "assignment": {"0": "w8a8"}, "calibration": task.calibration},
        "mpq.probe": {"task": task, "settings": ctx.settings},
        "mpq.omega": {"task": task, "sensitivity": ctx.sensitivity, "candidates": ["w8a8", "w4a8"]},
        "mpq.validate": {"task": task, "assignments": {0: dict.fromkeys(ctx.layers["layer"], "w8a8")}},
        "mpq.search": {
            "task": task,
            "settings": ctx.settings,
            "max_points": 2,
            "validate": False,
            "db": ctx.tmp / f"search-{next(ctx.counter)}.db",
        },
        "mpq.open_run": {"db": ctx.db, "run_id": ctx.run.id},
        "mpq.list_runs": {},
        "mpq.export": {"run": ctx.run, "point": 0, "to": "json"},
        "mpq.compare": {"first": ctx.run, "second": ctx.run},
        "mpq.measure_latency": {
            "task_or_model": task.model,
            "candidates": ["w8a8"],
            "example_input": images,
            "warmup": 0,
            "repeats": 1,
        },
        "mpq.write_measured_csv": {"table": ctx.measured, "path": ctx.tmp / "measured.csv"},
        "solvers.solve": {**solver_args, "budgets": {"weight_bytes": 150}},
        "solvers.frontier": {**solver_args, "objectives": ["weight_bytes"]},
        "solvers.price": {**solver_args, "assignment": {"a": "int8", "b": "int4"}},
        "solvers.refine": {
            **solver_args,
            "objective_fn": lambda assignment: 0.0,
            "objectives": ["weight_bytes"],
            "n_trials": 2,
            "population_size": 2,
        },
        "hwmodels.load_device": {},
        "hwmodels.cost_table": {"layers": ctx.layers, "device": "zcu104", "candidates": ctx.candidates},
        "hwmodels.load_measured_latency": {},
    }[name]


@pytest.fixture(autouse=True)
def _no_stray_files(tmp_path, monkeypatch):
    # A db=object() that is taken for a path (str(object()) is "<object object at 0x...>") or
    # the default store must land in this test's folder, never in the checkout or the user's cache.
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MPQ_DB", str(tmp_path / "default.db"))


@pytest.fixture(scope="module")
def ctx(tmp_path_factory):
    import itertools

    tmp = tmp_path_factory.mktemp("public-functions")
    task = mpq.load_task(f"{Path(__file__).parent / 'assets' / 'tasks' / 'tiny_task.py'}:make_task")
    settings = mpq.ProbeSettings(tolerance=0.5, min_samples=2, max_samples=2)
    db = tmp / "mpq.db"
    run = mpq.search(task, settings=settings, db=db, max_points=2)
    omega = pd.DataFrame(
        {"layer": ["a", "a", "b", "b"], "candidate": ["int4", "int8"] * 2, "omega": [0.4, 0.1, 0.3, 0.2]}
    )
    return SimpleNamespace(
        task=task,
        settings=settings,
        db=db,
        run=run,
        tmp=tmp,
        counter=itertools.count(),
        sensitivity=run.tables["sensitivity"],
        measured=run.tables["costs"][["layer", "candidate", "latency_s"]].assign(kernel="x", batch_size=1),
        omega=omega,
        costs=omega[["layer", "candidate"]].assign(weight_bytes=[50, 100, 50, 100]),
        layers=run.tables["layers"],
        candidates=mpq.candidate_table(["w8a8", "w4a8"]),
    )


def _cases():
    for name, parameters in BAD.items():
        for parameter, values in parameters.items():
            for value in values:
                shown = "object()" if value is WRONG_TYPE else repr(value)
                marks = ()
                if (name, parameter, shown) in KNOWN:
                    marks = pytest.mark.xfail(strict=True, reason=KNOWN[(name, parameter, shown)])
                yield pytest.param(name, parameter, value, id=f"{name}-{parameter}={shown}", marks=marks)


def test_every_parameter_has_a_bad_value():
    for name, function in PUBLIC.items():
        parameters = set(inspect.signature(function).parameters)
        listed = set(BAD.get(name, {})) | set(UNCHECKABLE.get(name, {}))
        assert listed == parameters, (name, sorted(parameters - listed), sorted(listed - parameters))


@pytest.mark.filterwarnings("ignore::mpq.exceptions.SensitivityWarning")
@pytest.mark.parametrize(("name", "parameter", "value"), list(_cases()))
def test_a_bad_value_is_a_value_error_in_the_template(ctx, name, parameter, value):
    kwargs = {**valid_arguments(name, ctx), parameter: value}
    try:
        PUBLIC[name](**kwargs)
    except ValueError as raised:
        error, message = raised, str(raised)
    except Exception as error:  # noqa: BLE001 - the point: anything else is reported
        pytest.fail(f"{type(error).__name__}: {error}")
    else:
        pytest.fail("accepted")
    assert "\n" not in message, message
    match = SKLEARN.fullmatch(message)
    if match:
        assert (match["param"], match["func"]) == (parameter, name.rsplit(".", 1)[1]), message
        # the template is the vocabulary's, raised as the package's InvalidParameterError
        assert isinstance(error, mpqvocab.InvalidParameterError), type(error)
    else:
        assert ONE_LINE.fullmatch(message), message
