"""Fisher traces per layer, and the output-space noise that estimates them with one backward pass.

All three estimators here take one forward pass and one backward pass per batch, of the scalar
``s = e . z`` where ``z`` is the model's output and ``e`` (detached) is random noise in output
space; the estimate for a target ``t`` (a layer's weight or input) is ``||ds/dt||^2``. With
``E[e e^T] = C``, ``E||ds/dt||^2 = tr(J_t^T C J_t)``: the layer's own block of ``J^T C J``, with
no cross-layer terms, so every layer's estimate from the same pass is as good as if it had been
probed alone.

- ``fisher_w`` / ``fisher_a``: the **true Fisher** (model-sampled targets), in Gauss-Newton
  form ``J^T (d^2 L / dz^2) J`` with the noise drawn by ``fisher_sampler``:

  * ``gauss_newton`` (default): ``e_n = F_n r_n`` with ``F_n F_n^T`` the Hessian of the batch
    loss with respect to sample ``n``'s output (computed once per batch; its negative part, from
    a non-convex loss, left out: a Fisher is positive semi-definite) and ``r_n`` Rademacher.
    For cross-entropy on logits this is exactly the Fisher with labels sampled from
    softmax(logits); for a squared error it is the Fisher of the Gaussian with that mean
    (``y = f(x) + noise``); for any loss it is the Gauss-Newton matrix, which equals the
    Hessian where the loss's gradient with respect to the output vanishes (self-distillation
    at the float weights). Needs a tensor output and a loss
    that is a sum or mean of per-sample terms (checked; ``ProbeError`` otherwise).
  * ``categorical``: FIT's sampled Fisher: labels ``y_n ~ softmax(z_n)`` scored by the task's
    own ``loss_fn``, ``e = sqrt(B) dL(z, y)/dz``. Needs ``(batch, classes)`` logits and a
    ``loss_fn`` that is a mean over the batch (cross-entropy).

- ``efisher_w`` / ``efisher_a``: the **empirical Fisher**, the mean over calibration samples of
  the squared norm of the per-sample loss gradient with the task's own targets:
  ``e_n = sqrt(B) s_n dL/dz_n`` with Rademacher signs ``s_n`` (the cross-sample products cancel
  in expectation, so no per-sample backward passes are needed). It is biased as a curvature
  estimate (it differs from the Hessian even at a minimum, and it is zero where the loss's
  gradient is, as with self-distillation at the float weights). Needs a ``loss_fn`` that is a
  mean over the batch.

Small targets that lag get exact traces instead (:mod:`mpq._probes.exact`: one Jacobian-vector
product per unit vector, with the noise's covariance in closed form, :meth:`FisherFamily.output_form`).

Traces are on the scale of the Hessian of the calibration loss (``hessian_w``), so the three
families are comparable and interchangeable in :func:`mpq.omega`.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import torch

from mpq._probes.exact import OutputForm, fisher_traces
from mpq._probes.factors import DenseFactor, SoftmaxFactor, softmax_weights
from mpq._probes.graph import Batch, LayerGraph, Pass, Target, add_to, gradients, slice_batch
from mpq.exceptions import ProbeError

logger = logging.getLogger("mpq.probes")

#: Largest per-sample output the dense output-Hessian factor is computed for (an m x m block each).
MAX_OUTPUT_ELEMS = 4096

#: Relative size below which a negative output-Hessian eigenvalue is round-off.
ROUND_OFF = 1e-4


@dataclass(frozen=True)
class OutputCurvature:
    """The loss's gradient and Hessian factors with respect to one batch's output.

    Attributes:
        grad: ``dL/dz``, shape of the output.
        positive: ``P`` (:mod:`mpq._probes.factors`): ``P_n P_n^T`` is the positive part of
            ``d^2 L / dz_n^2``.
        negative: ``N`` with ``N_n N_n^T`` the negative part's magnitude, so that
            ``d^2 L / dz_n^2 = P_n P_n^T - N_n N_n^T``; None when the loss is convex there (no
            eigenvalue below -:data:`ROUND_OFF` times the batch's largest, which is round-off).
    """

    grad: torch.Tensor
    positive: DenseFactor | SoftmaxFactor
    negative: DenseFactor | None

    def noise(
        self, factor: DenseFactor | SoftmaxFactor, shape: torch.Size, dtype: torch.dtype, generator: torch.Generator
    ) -> torch.Tensor:
        """Noise of the output's shape whose covariance is ``factor``'s, per sample."""
        return factor.noise(generator).reshape(shape).to(dtype)


def output_tensor(task_name: str, output: object) -> torch.Tensor:
    """The model's output, which these estimators need to be a floating-point tensor."""
    if not isinstance(output, torch.Tensor) or not output.is_floating_point() or output.dim() < 1:
        raise ProbeError(
            f"task {task_name}: the model returns {type(output).__name__}, not a floating-point tensor with a "
            "batch dimension; wrap the model so it returns the tensor loss_fn scores, or use "
            "probes hessian_w/hessian_a with estimator='hutchinson'."
        )
    return output


def output_curvature(task_name: str, loss_fn, output: torch.Tensor, targets) -> OutputCurvature:
    """``dL/dz`` and a factor of the per-sample blocks of ``d^2 L / dz^2`` for one batch.

    Up to :data:`MAX_OUTPUT_ELEMS` elements per sample, the blocks come from ``m`` Hessian-vector
    products of the loss alone (not the model), each with one output coordinate set in every
    sample, and one random product checks that the Hessian is block-diagonal over samples. A larger
    output (a language model's positions x vocabulary) needs a loss that is a weighted softmax
    cross-entropy over its last dimension, which two random products verify
    (:func:`mpq._probes.factors.softmax_weights`); its factor needs no m x m matrix.

    Raises:
        ProbeError: the output has more than :data:`MAX_OUTPUT_ELEMS` elements per sample and its
            loss is not a softmax cross-entropy, or the loss couples the samples of a batch.
    """
    # In float64: a confident classifier's curvature p(1 - p) is near float32's round-off, where the
    # coupling check below would compare two round-off errors (a false "couples the samples").
    z = output.detach().double().requires_grad_(True)
    n = z.shape[0]
    m = z[0].numel()
    with torch.enable_grad():
        (grad,) = torch.autograd.grad(loss_fn(z, targets), z, create_graph=True)
    if not grad.requires_grad:  # the loss is linear in the output
        zero = DenseFactor(torch.zeros(n, m, 1, dtype=torch.float64, device=z.device))
        return OutputCurvature(grad.detach().to(output.dtype), zero, None)
    if m > MAX_OUTPUT_ELEMS:
        weights = softmax_weights(z, grad)
        if weights is None:
            raise ProbeError(
                f"task {task_name}: the output has {m} elements per sample, more than the {MAX_OUTPUT_ELEMS} the "
                "output-Hessian factor handles for a loss other than a softmax cross-entropy over the last "
                "dimension; use estimator='hutchinson' for Hessian probes."
            )
        probabilities = torch.softmax(z.detach(), dim=-1).to(output.dtype)  # the output's size, as grad
        return OutputCurvature(grad.detach().to(output.dtype), SoftmaxFactor(probabilities, weights), None)
    columns = []
    for k in range(m):
        basis = torch.zeros(n, m, dtype=z.dtype, device=z.device)
        basis[:, k] = 1
        (col,) = torch.autograd.grad(
            grad, z, basis.reshape(z.shape), retain_graph=True, allow_unused=True, materialize_grads=True
        )
        columns.append(col.reshape(n, m))
    blocks = torch.stack(columns, dim=2)  # [n, i, k] = d^2 L / dz_ni dz_nk
    probe = torch.randn(z.shape, generator=torch.Generator().manual_seed(0), dtype=z.dtype).to(z.device)
    (full,) = torch.autograd.grad(grad, z, probe, allow_unused=True, materialize_grads=True)
    by_blocks = torch.einsum("nik,nk->ni", blocks, probe.reshape(n, m))
    error = float((full.reshape(n, m) - by_blocks).norm())
    if error > 1e-2 * float(by_blocks.norm()) + 1e-12:  # float64 round-off is ~1e-12; coupling is O(1)
        raise ProbeError(
            f"task {task_name}: loss_fn couples the samples of a batch (its Hessian is not block-diagonal over "
            "samples); Fisher and split-Hessian probes need a sum or mean of per-sample losses; use "
            "estimator='hutchinson' with hessian probes."
        )
    eigenvalues, vectors = torch.linalg.eigh((blocks + blocks.transpose(1, 2)) / 2)
    # Below 1e-4 of the batch's largest curvature, a negative eigenvalue is float32 round-off
    # (cross-entropy's exact zero along (1, ..., 1), or 1 - p for a confident sample); dropping
    # it changes a trace by less than 1e-4 of the batch's largest term.
    negative = eigenvalues < -ROUND_OFF * float(eigenvalues.abs().amax())
    positive_factor = vectors * eigenvalues.clamp(min=0).sqrt().unsqueeze(1)
    if not bool(negative.any()):
        return OutputCurvature(grad.detach().to(output.dtype), DenseFactor(positive_factor), None)
    logger.debug("task %s: the loss has negative curvature in the output (non-convex)", task_name)
    negative_factor = vectors * torch.where(negative, -eigenvalues, 0).sqrt().unsqueeze(1)
    return OutputCurvature(grad.detach().to(output.dtype), DenseFactor(positive_factor), DenseFactor(negative_factor))


def is_softmax_cross_entropy(loss_fn, output: torch.Tensor, targets) -> bool:
    """Whether ``loss_fn`` at ``output`` is a weighted softmax cross-entropy over the last dimension
    (:func:`mpq._probes.factors.softmax_weights`), the loss a large output's ``split`` estimator needs."""
    z = output.detach().double().requires_grad_(True)
    with torch.enable_grad():
        (grad,) = torch.autograd.grad(loss_fn(z, targets), z, create_graph=True)
    return softmax_weights(z, grad) is not None


def check_mean_loss(task_name: str, loss_fn, output: torch.Tensor, targets) -> None:
    """Check that ``loss_fn`` is the mean of per-sample losses (compare with its two halves).

    Raises:
        ProbeError: the batch loss is not the sample-weighted mean of its halves' losses.
    """
    n = output.shape[0]
    if n < 2:
        return
    half = n // 2
    with torch.no_grad():
        whole = float(loss_fn(output, targets))
        first = float(loss_fn(output[:half], slice_batch(targets, 0, half)))
        second = float(loss_fn(output[half:], slice_batch(targets, half, n)))
    mean = (half * first + (n - half) * second) / n
    if not math.isclose(whole, mean, rel_tol=1e-4, abs_tol=1e-7):
        raise ProbeError(
            f"task {task_name}: loss_fn is not a mean over the batch's samples (loss {whole:.6g}, mean of its "
            f"halves {mean:.6g}); return the mean of per-sample losses (reduction='mean'); the hessian probes and "
            "fisher_sampler='gauss_newton' do without."
        )


class FisherFamily:
    """Draws of one Fisher family: ``fisher`` (model-sampled noise) or ``efisher`` (empirical).

    Args:
        graph: The model's layer graph.
        kinds: ``"w"`` and/or ``"a"``.
        name: ``fisher`` or ``efisher``.
        sampler: For ``fisher``: ``gauss_newton`` or ``categorical``.
        draws: Noise draws (backward passes) per batch, averaged.
    """

    def __init__(self, graph: LayerGraph, kinds: list[str], name: str, sampler: str = "gauss_newton", draws: int = 1):
        self.graph = graph
        self.kinds = kinds
        self.name = name
        self.draws = draws
        self.sampler = sampler if name == "fisher" else "empirical"
        self._curvature: dict[int, OutputCurvature] = {}
        self._checked_mean = False
        self.hvps = 0
        self.backwards = 0

    def curvature(self, batch: Batch, output: torch.Tensor) -> OutputCurvature:
        """The batch's output curvature, computed on first use (it does not change)."""
        if id(batch) not in self._curvature:
            self._curvature[id(batch)] = output_curvature(
                self.graph.task.name, self.graph.task.loss_fn, output, batch.targets
            )
        return self._curvature[id(batch)]

    def noise(self, batch: Batch, output: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Output-space noise ``e`` whose covariance is the curvature the family estimates."""
        task = self.graph.task
        n = output.shape[0]
        if self.sampler == "gauss_newton":
            curvature = self.curvature(batch, output)
            return curvature.noise(curvature.positive, output.shape, output.dtype, generator)
        z = self._loss_input(batch, output)
        if self.sampler == "categorical":
            probabilities = torch.softmax(z.detach().double(), dim=1).cpu()  # the CPU generator draws
            labels = torch.multinomial(probabilities, 1, generator=generator)[:, 0].to(z.device)
            targets, signs = labels.to(_label_dtype(batch.targets)), torch.ones(n)
        else:
            targets = batch.targets
            signs = torch.empty(n).bernoulli_(0.5, generator=generator) * 2 - 1
        with torch.enable_grad():
            (grad,) = torch.autograd.grad(task.loss_fn(z, targets), z)
        return grad * (math.sqrt(n) * signs.to(grad.device, grad.dtype)).reshape(-1, *[1] * (grad.dim() - 1))

    def _loss_input(self, batch: Batch, output: torch.Tensor) -> torch.Tensor:
        """The detached output to differentiate ``loss_fn`` at, after the checks of the non-GN samplers."""
        task = self.graph.task
        if not self._checked_mean:
            check_mean_loss(task.name, task.loss_fn, output.detach(), batch.targets)
            self._checked_mean = True
        if self.sampler == "categorical" and output.dim() != 2:
            raise ProbeError(
                f"task {task.name}: fisher_sampler='categorical' needs (batch, classes) logits, got output "
                f"shape {tuple(output.shape)}; use fisher_sampler='gauss_newton'."
            )
        return output.detach().requires_grad_(True)

    def output_form(self, batch: Batch, output: torch.Tensor) -> OutputForm:
        """``E[e e^T]`` of :meth:`noise` in closed form (for exact traces).

        ``gauss_newton``: the output-Hessian factor. Empirical: ``e_n = sqrt(B) s_n g_n`` with
        independent signs, so ``C_nn = B g_n g_n^T`` and no cross-sample terms. ``categorical``:
        ``C_nn = B sum_c p_nc g_n(c) g_n(c)^T`` over every class ``c`` and, across samples (whose
        labels are drawn independently), ``C_nk = B mu_n mu_k^T`` with ``mu_n = sum_c p_nc g_n(c)``
        (0 for a cross-entropy).
        """
        if self.sampler == "gauss_newton":
            return OutputForm(self.curvature(batch, output).positive)
        task = self.graph.task
        n = output.shape[0]
        z = self._loss_input(batch, output)
        if self.sampler == "empirical":
            with torch.enable_grad():
                (grad,) = torch.autograd.grad(task.loss_fn(z, batch.targets), z)
            return OutputForm(DenseFactor(math.sqrt(n) * grad.reshape(n, -1, 1).double()))
        p = torch.softmax(z.detach().double(), dim=1)
        columns = []
        for c in range(z.shape[1]):
            labels = torch.full((n,), c, dtype=_label_dtype(batch.targets), device=z.device)
            with torch.enable_grad():
                (grad,) = torch.autograd.grad(task.loss_fn(z, labels), z)
            columns.append(grad.double())
        grads = torch.stack(columns, dim=2)  # [n, m, c] = d loss(z, c) / dz_nm
        mean = torch.einsum("nmc,nc->nm", grads, p)
        return OutputForm(DenseFactor(math.sqrt(n) * grads * p.sqrt().unsqueeze(1)), math.sqrt(n) * mean)

    def exact(self, batch: Batch, targets: set[Target]) -> dict[Target, float]:
        """``tr(J_t^T C J_t)`` of ``batch`` for the given (small) targets, one JVP per unit vector.

        ``C`` is :meth:`output_form`, what every draw's ``e e^T`` averages to; a Jacobian-vector
        product counts as one backward pass.
        """
        run = self.graph.run(batch, self.kinds)
        output = output_tensor(self.graph.task.name, run.output)
        values, passes = fisher_traces(run, output, self.output_form(batch, output), targets, batch.size)
        self.backwards += passes
        return values

    def draw(self, batch: Batch, generator: torch.Generator, only: set[Target] | None = None) -> dict[Target, float]:
        """``||d(e . z)/dt||^2`` for every target (``only``'s, when given), averaged over ``draws`` noise
        draws, on one batch."""
        run = self.graph.run(batch, self.kinds).restrict(only)
        output = output_tensor(self.graph.task.name, run.output)
        values: dict[Target, float] = {}
        for i in range(self.draws):
            noise = self.noise(batch, output, generator)
            noise_backward(run, noise, values, retain_graph=i + 1 < self.draws, scale=1.0 / self.draws)
            self.backwards += 1
        return values


def noise_backward(
    run: Pass, noise: torch.Tensor, values: dict[Target, float], *, retain_graph: bool, scale: float = 1.0
) -> None:
    """Add ``scale * ||d(noise . output)/dt||^2`` of every tensor of the pass to its targets' values."""
    grads = gradients((noise * run.output).sum(), run, create_graph=False, retain_graph=retain_graph)
    add_to(values, run, [(g * g).sum() for g in grads], scale)


def _label_dtype(targets) -> torch.dtype:
    return targets.dtype if isinstance(targets, torch.Tensor) else torch.long
