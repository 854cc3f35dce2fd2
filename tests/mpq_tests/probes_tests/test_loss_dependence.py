"""A loss that does not depend on the weights is refused; a self-distillation loss (zero gradient) is not."""

from __future__ import annotations

import dataclasses

import probe_cases
import pytest
import torch

import mpq
from mpq._probes import ProbeCheckpoint, ProbeSettings, check_loss, probe
from mpq.exceptions import ProbeError

pytestmark = pytest.mark.filterwarnings("ignore:.*relative standard error:mpq.exceptions.SensitivityWarning")

FAST = ProbeSettings(max_samples=10, candidates=("w4a8", "w8a8"))

NO_GRADIENT = "the loss does not depend on the model's weights \\(loss_fn returned a tensor without a gradient"
LOSSES = {
    # No autograd graph at all: the error comes from the first pass.
    "constant": (lambda output, targets: torch.tensor(1.0), NO_GRADIENT),
    "detached": (lambda output, targets: (output.detach() - 1).pow(2).mean(), NO_GRADIENT),
    # A graph through the output, but the value ignores it: every trace is exactly 0.
    "targets only": (lambda output, targets: targets.float().mean() + 0 * output.sum(), "does not depend"),
}


def _with_loss(task: mpq.Task, loss_fn) -> mpq.Task:
    return dataclasses.replace(task, loss_fn=loss_fn)


def _layers(task: mpq.Task):
    return mpq.layers(task.model, task.calibration[0][0])


@pytest.mark.parametrize("name", list(LOSSES))
def test_check_loss_refuses_a_loss_without_the_weights(cnn_task, name):
    loss_fn, message = LOSSES[name]
    task = _with_loss(cnn_task, loss_fn)
    with pytest.raises(ProbeError, match=message):
        check_loss(task, _layers(task), FAST)


@pytest.mark.parametrize("probe_name", ["hessian_w", "hessian_a", "fisher_w", "efisher_a"])
def test_every_trace_probe_refuses_a_loss_that_ignores_the_output(cnn_task, probe_name, tmp_path):
    task = _with_loss(cnn_task, LOSSES["targets only"][0])
    checkpoint = ProbeCheckpoint(tmp_path / "probes")
    family = probe_name.split("_")[0]
    with pytest.raises(ProbeError, match=f"every {family} trace is exactly 0 after 1 sample"):
        probe(task, [probe_name], settings=FAST, checkpoint=checkpoint)
    # Refused before the checkpoint: a rerun with a fixed loss does not resume from zeros.
    assert not list((tmp_path / "probes").glob("*"))


def test_measured_probe_refuses_a_loss_that_ignores_the_weights(cnn_task):
    task = _with_loss(cnn_task, LOSSES["targets only"][0])
    with pytest.raises(ProbeError, match="leaves the calibration loss exactly as it was"):
        probe(task, ["measured"], settings=FAST)


def test_measured_probe_alone_needs_no_gradient(cnn_task):
    # Quantizing still changes a loss computed from a detached output; only the trace probes need a gradient.
    task = _with_loss(cnn_task, lambda output, targets: torch.nn.functional.cross_entropy(output.detach(), targets))
    settings = dataclasses.replace(FAST, probes=("measured",))
    check_loss(task, _layers(task), settings)
    table = probe(task, settings=settings)
    assert (table["value"] != 0).any()


def test_self_distillation_passes_the_check_and_keeps_its_hessian():
    # dL/dz = 0 at the float weights: the gradient is 0, the curvature is not.
    task = probe_cases.self_distillation_task()
    check_loss(task, _layers(task), ProbeSettings())
    table = probe(task, ["hessian_w", "fisher_w"], settings=ProbeSettings(max_samples=20))
    assert (table["value"] > 0).all()


def test_search_refuses_it_before_anything_is_stored(cnn_task, tmp_path):
    task = dataclasses.replace(_with_loss(cnn_task, LOSSES["targets only"][0]), evaluate=lambda model: 1.0)
    with pytest.raises(ProbeError, match="loss of calibration batch 0 does not depend on the model's weights"):
        mpq.search(task, target="h100-sxm", candidates=["w8a8", "w4a16"], settings=FAST, db=tmp_path / "mpq.db")
    assert not (tmp_path / "mpq.db").exists()
