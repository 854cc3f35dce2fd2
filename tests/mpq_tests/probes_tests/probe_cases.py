"""Tiny tasks with exactly known traces, and brute-force exact traces for any small task.

Imported by the tests as ``probe_cases`` (fixtures live in conftest.py).
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.func import functional_call

import mpq
from mpq._layers import layers
from mpq._task import batch_size, run_model


def _classification_batches(n: int, dims: int, classes: int, batch: int, seed: int, shape=None):
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(n, dims, generator=generator)
    if shape is not None:
        x = x.reshape(n, *shape)
    y = torch.randint(0, classes, (n,), generator=generator)
    return [(x[i : i + batch], y[i : i + batch]) for i in range(0, n, batch)], x, y


def softmax_regression_task() -> mpq.Task:
    """Logits z = W x (no bias), mean cross-entropy: the closed form of shared/reference.

    The labels are the model's own predictions (a fitted model), so the empirical Fisher is
    visibly smaller than the Hessian.
    """
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(5, 3, bias=False)).eval()
    with torch.no_grad():
        model[0].weight.mul_(3.0)
    _, x, _ = _classification_batches(32, 5, 3, 16, seed=2)
    with torch.no_grad():
        y = model(x).argmax(dim=1)
    calibration = [(x[i : i + 16], y[i : i + 16]) for i in (0, 16)]
    return mpq.Task("softmax-regression", model, calibration, nn.functional.cross_entropy)


def softmax_regression_traces(task: mpq.Task) -> dict[str, float]:
    """Closed forms (shared/reference/hardware.md) over the task's calibration samples.

    Returns:
        ``hessian``: (1/N) sum_n ||x_n||^2 sum_k p_nk (1 - p_nk), which the sampled Fisher equals
        in expectation; ``efisher``: (1/N) sum_n ||x_n||^2 ||p_n - onehot(y_n)||^2.
    """
    x = torch.cat([b[0] for b in task.calibration]).double()
    y = torch.cat([b[1] for b in task.calibration])
    p = torch.softmax(x @ task.model[0].weight.detach().double().T, dim=1)
    sq = (x * x).sum(1)
    onehot = nn.functional.one_hot(y, p.shape[1]).double()
    return {
        "hessian": float((sq * (p * (1 - p)).sum(1)).mean()),
        "efisher": float((sq * ((p - onehot) ** 2).sum(1)).mean()),
    }


def tanh_mlp_task() -> mpq.Task:
    """A 3-layer tanh MLP: curved in every layer, so the Hessian is not the Gauss-Newton matrix."""
    torch.manual_seed(3)
    model = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 5), nn.Tanh(), nn.Linear(5, 3)).eval()
    with torch.no_grad():
        for module in model:
            if isinstance(module, nn.Linear):
                module.weight.mul_(2.0)  # larger weights: a larger residual R = sum (dL/dz) d^2 z
    calibration, _, _ = _classification_batches(24, 4, 3, 12, seed=4)
    return mpq.Task("tanh-mlp", model, calibration, nn.functional.cross_entropy)


def tiny_cnn_task() -> mpq.Task:
    """Two tanh convolutions and a linear head on 1x6x6 inputs."""
    torch.manual_seed(5)
    model = nn.Sequential(
        nn.Conv2d(1, 2, 3), nn.Tanh(), nn.Conv2d(2, 2, 3), nn.Tanh(), nn.Flatten(), nn.Linear(8, 3)
    ).eval()
    calibration, _, _ = _classification_batches(16, 36, 3, 8, seed=6, shape=(1, 6, 6))
    return mpq.Task("tiny-cnn", model, calibration, nn.functional.cross_entropy)


def untrained_cnn_task() -> mpq.Task:
    """A 3-layer ReLU CNN at initialisation with 72, 768 and 36 weights, 4 batches of 16 8x8 images.

    Before exact traces, hessian_w stopped here at the 200-sample cap with 27-43 % relative
    standard error on the 72- and 36-weight layers (the split residual's cross-layer terms).
    """
    torch.manual_seed(13)
    model = nn.Sequential(
        nn.Conv2d(1, 8, 3, bias=False),
        nn.ReLU(),
        nn.Conv2d(8, 6, 4, bias=False),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(6, 6, bias=False),
    ).eval()
    generator = torch.Generator().manual_seed(14)
    x = torch.randn(64, 1, 8, 8, generator=generator)
    y = torch.randint(0, 6, (64,), generator=generator)
    calibration = [(x[i : i + 16], y[i : i + 16]) for i in range(0, 64, 16)]
    return mpq.Task("untrained-cnn", model, calibration, nn.functional.cross_entropy)


def linear_regression_task() -> mpq.Task:
    """z = W x + b scored by the mean over samples of ||z - y||^2: Hessian = (2/N) K sum ||x||^2."""
    torch.manual_seed(7)
    model = nn.Sequential(nn.Linear(4, 2)).eval()
    generator = torch.Generator().manual_seed(8)
    x = torch.randn(20, 4, generator=generator)
    y = torch.randn(20, 2, generator=generator)

    def squared_distance(output, target):
        return ((output - target) ** 2).sum(dim=1).mean()

    return mpq.Task("linear-regression", model, [(x[:10], y[:10]), (x[10:], y[10:])], squared_distance)


def saddle_task() -> mpq.Task:
    """Loss mean(cos(W x)) near W = 0: a maximum along W, so the weight trace is negative."""
    torch.manual_seed(9)
    model = nn.Sequential(nn.Linear(3, 2, bias=False)).eval()
    with torch.no_grad():
        model[0].weight.mul_(0.05)
    generator = torch.Generator().manual_seed(10)
    x = torch.randn(16, 3, generator=generator)
    y = torch.zeros(16)

    def cosine_loss(output, target):
        return torch.cos(output).sum(dim=1).mean() + 0 * target.sum()

    return mpq.Task("saddle", model, [(x[:8], y[:8]), (x[8:], y[8:])], cosine_loss)


def exact_traces(task: mpq.Task, kinds: tuple[str, ...] = ("w", "a"), only=None) -> dict[tuple[str, str], float]:
    """Brute-force traces: ``torch.autograd.functional.hessian`` per layer weight and per layer input.

    Args:
        task: The task.
        kinds: Which traces, ``"w"`` and/or ``"a"``.
        only: Layer names to compute (default: all).

    Returns:
        ``{("w", layer): tr(d^2 L / dW^2), ("a", layer): mean over samples of tr(d^2 l_n / dA_n^2)}``
        with ``L = sum_b n_b / N * L_b``, the definitions of mpq._probes.hutchinson.
    """
    table = layers(task.model, task.calibration[0][0])
    modules = dict(task.model.named_modules())
    n_total = sum(batch_size(b[0]) for b in task.calibration)
    out: dict[tuple[str, str], float] = {}
    for name, kind in zip(table["layer"], table["kind"]):
        if only is not None and name not in only:
            continue
        weight = modules[name].weight.detach()

        def loss_of_weight(w, name=name):
            total = 0.0
            for inputs, targets in task.calibration:
                output = functional_call(task.model, {f"{name}.weight": w}, (inputs,))
                total = total + batch_size(inputs) / n_total * task.loss_fn(output, targets)
            return total

        if "w" in kinds:
            hessian = torch.autograd.functional.hessian(loss_of_weight, weight.clone())
            out[("w", name)] = float(hessian.reshape(weight.numel(), weight.numel()).diagonal().sum())
        if kind == "embedding" or "a" not in kinds:
            continue
        trace = 0.0
        for inputs, targets in task.calibration:
            captured = {}
            handle = modules[name].register_forward_pre_hook(
                lambda m, args, captured=captured: captured.update(a=args[0].detach())
            )
            with torch.no_grad():
                run_model(task.model, inputs)
            handle.remove()

            def loss_of_input(a, name=name, inputs=inputs, targets=targets):
                hook = modules[name].register_forward_pre_hook(lambda m, args: (a, *args[1:]))
                try:
                    return task.loss_fn(run_model(task.model, inputs), targets)
                finally:
                    hook.remove()

            a0 = captured["a"]
            h = torch.autograd.functional.hessian(loss_of_input, a0)
            trace += batch_size(inputs) / n_total * float(h.reshape(a0.numel(), a0.numel()).diagonal().sum())
        out[("a", name)] = trace
    return out


def within(estimate: float, stderr: float, exact: float, sigmas: float = 3.0) -> bool:
    """Whether an estimate is within ``sigmas`` standard errors of the exact value (and round-off)."""
    return math.isfinite(stderr) and abs(estimate - exact) <= sigmas * stderr + 1e-6 * abs(exact) + 1e-12


def self_distillation_task() -> mpq.Task:
    """A tanh regressor scored against its own float outputs: dL/dz = 0, as for MiniLM."""
    torch.manual_seed(11)
    model = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 3)).eval()
    generator = torch.Generator().manual_seed(12)
    x = torch.randn(16, 4, generator=generator)
    with torch.no_grad():  # per batch, as the probe runs them: bit-identical outputs
        calibration = [(x[:8], model(x[:8])), (x[8:], model(x[8:]))]

    def distance(output, target):
        return ((output - target) ** 2).sum(dim=1).mean()

    return mpq.Task("self-distillation", model, calibration, distance)
