"""mpq.validate: the held-out metric of the model at each configuration."""

import pytest
import torch

import mpq
from mpq.exceptions import InvalidParameterError, TaskSpecError


def _layer_names(task):
    return list(mpq.layers(task.model, task.calibration[0][0])["layer"])


def test_validate_measures_each_configuration_and_reports_each_result(tiny_task):
    names = _layer_names(tiny_task)
    configs = {"fp16": dict.fromkeys(names, "w16a16"), "w2a2": dict.fromkeys(names, "w2a2")}
    seen = []
    metrics = mpq.validate(tiny_task, configs, on_result=lambda key, value: seen.append((key, value)))
    assert list(metrics.index) == ["fp16", "w2a2"] and metrics.name == tiny_task.metric_name
    assert seen == list(metrics.items())
    assert metrics["fp16"] == pytest.approx(tiny_task.evaluate(tiny_task.model), abs=1e-3)
    # the same configuration applied by hand scores the same: validate is apply + evaluate
    by_hand = tiny_task.evaluate(mpq.apply(tiny_task.model, configs["w2a2"], calibration=tiny_task.calibration))
    assert metrics["w2a2"] == pytest.approx(by_hand)


def test_validate_refuses_a_task_without_evaluate_and_a_failing_evaluate(tiny_task):
    names = _layer_names(tiny_task)
    config = {0: dict.fromkeys(names, "w8a8")}
    with pytest.raises(InvalidParameterError, match="has no evaluate function"):
        mpq.validate(mpq.Task("t", tiny_task.model, tiny_task.calibration, tiny_task.loss_fn), config)
    with pytest.raises(InvalidParameterError, match="The 'assignments' parameter of validate"):
        mpq.validate(tiny_task, [config[0]])

    def broken(model: torch.nn.Module) -> float:
        raise RuntimeError("no data\nsecond line")

    task = mpq.Task("t", tiny_task.model, tiny_task.calibration, tiny_task.loss_fn, evaluate=broken)
    with pytest.raises(TaskSpecError, match=r"evaluate raised RuntimeError: no data; fix the task's evaluate"):
        mpq.validate(task, config)
