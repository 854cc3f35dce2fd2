import torch
from torch import nn

import mpq


def make_task():
    model = nn.Sequential(nn.Linear(4, 3))
    x = torch.randn(8, 4)
    return mpq.Task("user-task", model, [(x, torch.zeros(8, dtype=torch.long))], nn.functional.cross_entropy)


def make_broken():
    raise RuntimeError("dataset path /data/x not found")


def make_wrong_type():
    return nn.Linear(2, 2)


def make_empty_calibration():
    return mpq.Task("empty", nn.Linear(2, 2), [], nn.functional.mse_loss)


def make_weightless_loss():
    """A loss computed from the targets alone: quantizing any layer cannot change it."""
    task = make_task()
    task.loss_fn = lambda output, targets: targets.float().mean() + 0 * output.sum()
    task.evaluate = lambda model: 1.0
    return task


def make_nan_outputs():
    """A model whose weights went NaN (a diverged training run)."""
    task = make_task()
    with torch.no_grad():
        task.model[0].weight.fill_(float("nan"))
    return task


def make_wrong_shape():
    """Calibration inputs of 5 features for a model that takes 4."""
    task = make_task()
    task.calibration = [(torch.randn(8, 5), torch.zeros(8, dtype=torch.long))]
    return task
