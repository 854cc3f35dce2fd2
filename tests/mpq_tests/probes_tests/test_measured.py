"""The measured probe: one layer quantized at a time, the real loss increase, progress reported."""

from __future__ import annotations

import math

import pytest
import torch

from mpq._apply import apply
from mpq._probes import ProbeSettings, probe


def _loss(model, task) -> list[float]:
    with torch.no_grad():
        return [float(task.loss_fn(model(x), y)) for x, y in task.calibration]


def test_measured_is_the_loss_increase_of_apply(mlp_task):
    calls = []
    table = probe(
        mlp_task,
        ["measured"],
        settings=ProbeSettings(candidates=("w4a8", "w2a4")),
        progress=lambda done, total, message: calls.append((done, total)),
    )
    assert calls == [(i, 6) for i in range(1, 7)]
    assert list(zip(table["layer"], table["candidate"])) == [
        ("0", "w4a8"),
        ("0", "w2a4"),
        ("2", "w4a8"),
        ("2", "w2a4"),
        ("4", "w4a8"),
        ("4", "w2a4"),
    ]
    base = _loss(mlp_task.model, mlp_task)
    for row in table.itertuples():
        quantized = apply(mlp_task.model, {row.layer: row.candidate}, calibration=mlp_task.calibration)
        diffs = [q - b for q, b in zip(_loss(quantized, mlp_task), base)]
        assert row.value == pytest.approx(sum(diffs) / 2, rel=1e-6, abs=1e-9)  # two batches of 12
        assert row.stderr == pytest.approx(abs(diffs[0] - diffs[1]) / 2, rel=1e-6, abs=1e-9)
        assert row.n_samples == 24
    by = table.set_index(["layer", "candidate"])["value"]
    # The first layer's 4 input features carry everything: fewer bits cost more there. (This
    # untrained MLP is no minimum of its loss: bias-corrected 2-bit noise in its later layers
    # happens to lower the calibration loss, so only the first layer is compared.)
    assert by[("0", "w2a4")] > by[("0", "w4a8")] > 0


def test_measured_with_one_batch_has_no_stderr(mlp_task):
    mlp_task.calibration = mlp_task.calibration[:1]
    table = probe(mlp_task, ["measured"], settings=ProbeSettings(candidates=("w8a8",)))
    assert table["stderr"].map(math.isnan).all()


def test_probe_leaves_the_model_as_it_was(mlp_task):
    mlp_task.model.train()
    mlp_task.model[2].eval()
    before = {k: v.clone() for k, v in mlp_task.model.state_dict().items()}
    probe(
        mlp_task,
        ["hessian_w", "fisher_a", "measured"],
        settings=ProbeSettings(candidates=("w4a8",), max_samples=10, tolerance=0.5),
    )
    assert mlp_task.model.training and not mlp_task.model[2].training
    assert all(torch.equal(before[k], v) for k, v in mlp_task.model.state_dict().items())
    assert all(p.grad is None for p in mlp_task.model.parameters())
