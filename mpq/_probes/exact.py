"""Exact traces of small targets: one product per unit vector instead of random ones.

A target (a layer's weight, or its input activation) with at most
``ProbeSettings.exact_max_params`` elements has its trace computed exactly on every calibration
batch; :func:`mpq._probes.sampling.run_family` sums the batches with the weights the sampled
estimate uses (``n_b / N``), so the exact value is what the sampled estimate converges to:

- Hessian (``hessian_w``/``hessian_a``, either estimator): ``tr H_tt = sum_i e_i^T H e_i``, one
  Hessian-vector product of the batch loss per unit vector ``e_i`` of the target's block. Both
  estimators are unbiased for this trace (``split``'s Gauss-Newton part plus residual is the
  Hessian, up to the output-curvature eigenvalues it drops as round-off).
- Fisher families: ``tr(J_t^T C J_t) = sum_i (J e_i)^T C (J e_i)``, one Jacobian-vector product per
  unit vector (the gradient of ``J^T u`` with respect to ``u``), where ``C = E[e e^T]`` is the
  covariance of the family's output noise in closed form (:meth:`OutputForm.quadratic`): the
  output-Hessian factor for ``gauss_newton``, ``B g_n g_n^T`` for the empirical Fisher,
  the expectation over every class for ``categorical``.

Unit vectors go ``CHUNK`` at a time through one batched product (``is_grads_batched``). For an
input activation the unit vector sets element ``j`` of every sample of the batch at once
(``in_elems`` products, not ``batch * in_elems``): exact when the curvature is block-diagonal
over samples, as the definitions in :mod:`mpq._probes.hutchinson` take it to be (a model run in
eval mode treats its samples independently). One more product per batch, a random direction in
sample 0, checks that: where other samples respond, the family's activation targets are left
to the sampler (the caller sees them missing from the result).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import torch

from mpq._probes.factors import DenseFactor, SoftmaxFactor
from mpq._probes.graph import Pass, Target, add_to, gradients

#: Unit vectors per batched product (bounds the memory of one product to CHUNK tangents).
CHUNK = 64

#: A response of other samples above this fraction of sample 0's own means the samples are coupled.
COUPLING = 1e-6


@dataclass(frozen=True)
class OutputForm:
    """The covariance ``C = E[e e^T]`` of a Fisher family's output noise on one batch.

    Attributes:
        factor: ``F`` (:mod:`mpq._probes.factors`): ``E[e_n e_n^T] = F_n F_n^T``.
        mean: ``mu`` of shape (batch, m) with ``E[e_n e_k^T] = mu_n mu_k^T`` for ``n != k``, or
            None when the samples' noises are uncorrelated.
    """

    factor: DenseFactor | SoftmaxFactor
    mean: torch.Tensor | None = None

    def quadratic(self, u: torch.Tensor, per_sample: bool) -> torch.Tensor:
        """``u_c^T C u_c`` summed over the rows ``c`` of ``u`` (shape (k, batch, m), float64).

        ``per_sample``: only the diagonal blocks ``C_nn`` (an input activation's trace, whose
        Jacobian is block-diagonal over samples).
        """
        total = self.factor.quadratic(u)
        if self.mean is not None and not per_sample:
            s = torch.einsum("nm,knm->kn", self.mean, u)
            total = total + (s.sum(1).square() - s.square().sum(1)).sum()
        return total


def hessian_traces(run: Pass, targets: set[Target], batch_size: int) -> tuple[dict[Target, float], int]:
    """``tr H_tt`` of the batch loss for every target in ``targets``, from unit-vector HVPs.

    Returns:
        The traces (activation targets missing where the samples are coupled) and the number of
        Hessian-vector products taken.
    """
    sub = _restrict(run, targets, batch_size)
    if not sub.tensors:
        return {}, 0
    grads = gradients(run.loss, sub, create_graph=True)
    per_sample = [owners[0][0] == "a" for owners in sub.owners]
    products = 0
    if _has_samples(per_sample, batch_size):
        probes = _sample0_probes(sub, per_sample, batch_size)
        dot = sum((g * v).sum() for g, v in zip(grads, probes) if v is not None)
        products += 1
        if isinstance(dot, torch.Tensor) and dot.requires_grad:
            responses = torch.autograd.grad(
                dot, sub.tensors, retain_graph=True, allow_unused=True, materialize_grads=True
            )
            if _coupled([r for r, a in zip(responses, per_sample) if a], batch_size):
                keep = [not a for a in per_sample]
                sub, grads, per_sample = _keep(sub, keep), [g for g, k in zip(grads, keep) if k], [False] * sum(keep)
    traces = []
    for t, g, samplewise in zip(sub.tensors, grads, per_sample):
        total = torch.zeros((), dtype=torch.float64, device=t.device)
        for start, k, vectors in _unit_vectors(t, samplewise, batch_size):
            products += k
            if g.requires_grad:  # else the loss is linear in t: a zero block
                total += _diagonal(_batched_grad(g, t, vectors), start, k, samplewise, batch_size)
        traces.append(total)
    values: dict[Target, float] = {}
    add_to(values, sub, traces, 1.0)
    return values, products


def fisher_traces(
    run: Pass, output: torch.Tensor, form: OutputForm, targets: set[Target], batch_size: int
) -> tuple[dict[Target, float], int]:
    """``tr(J_t^T C J_t)`` for every target in ``targets``, from unit-vector Jacobian-vector products.

    Returns:
        The traces (activation targets missing where the samples are coupled) and the number of
        backward passes taken (one for ``J^T u``, one per Jacobian-vector product).
    """
    sub = _restrict(run, targets, batch_size)
    if not sub.tensors:
        return {}, 0
    u = torch.zeros_like(output, requires_grad=True)
    transposed = gradients((u * output).sum(), sub, create_graph=True)  # J_t^T u, linear in u
    per_sample = [owners[0][0] == "a" for owners in sub.owners]
    passes = 1
    n, m = output.shape[0], output[0].numel()
    if _has_samples(per_sample, batch_size):
        probes = _sample0_probes(sub, per_sample, batch_size)
        dot = sum((j * v).sum() for j, v in zip(transposed, probes) if v is not None)
        (response,) = torch.autograd.grad(dot, u, retain_graph=True, allow_unused=True, materialize_grads=True)
        passes += 1
        if _coupled([response], n):
            keep = [not a for a in per_sample]
            sub, transposed = _keep(sub, keep), [j for j, k in zip(transposed, keep) if k]
            per_sample = [False] * sum(keep)
    traces = []
    for t, jt, samplewise in zip(sub.tensors, transposed, per_sample):
        total = torch.zeros((), dtype=torch.float64, device=t.device)
        for _, k, vectors in _unit_vectors(t, samplewise, batch_size):
            passes += k
            jv = _batched_grad(jt, u, vectors)  # (k, *output.shape): J_t e_i
            total += form.quadratic(jv.reshape(k, n, m).double(), samplewise)
        traces.append(total)
    values: dict[Target, float] = {}
    add_to(values, sub, traces, 1.0)
    return values, passes


def _restrict(run: Pass, targets: set[Target], batch_size: int) -> Pass:
    """The pass's tensors whose targets are all exact (an input must split into equal samples)."""
    keep = [
        all(t in targets for t in owners) and (owners[0][0] == "w" or tensor.numel() % batch_size == 0)
        for tensor, owners in zip(run.tensors, run.owners)
    ]
    return _keep(run, keep)


def _keep(run: Pass, keep: list[bool]) -> Pass:
    return Pass(
        run.output, run.loss, [t for t, k in zip(run.tensors, keep) if k], [o for o, k in zip(run.owners, keep) if k]
    )


def _has_samples(per_sample: list[bool], batch_size: int) -> bool:
    return batch_size > 1 and any(per_sample)


def _sample0_probes(run: Pass, per_sample: list[bool], batch_size: int) -> list[torch.Tensor | None]:
    """A fixed random direction in sample 0 of every activation tensor (None for weights)."""
    generator = torch.Generator().manual_seed(0)
    probes: list[torch.Tensor | None] = []
    for t, samplewise in zip(run.tensors, per_sample):
        if not samplewise:
            probes.append(None)
            continue
        v = torch.zeros(batch_size, t.numel() // batch_size, dtype=t.dtype)
        v[0] = torch.randn(v.shape[1], generator=generator, dtype=t.dtype)  # the CPU generator's numbers
        probes.append(v.reshape(t.shape).to(t.device))
    return probes


def _coupled(responses: list[torch.Tensor], batch_size: int) -> bool:
    """Whether samples other than 0 respond to a direction in sample 0 beyond round-off."""
    own = sum(float(r.reshape(batch_size, -1)[0].double().square().sum()) for r in responses)
    other = sum(float(r.reshape(batch_size, -1)[1:].double().square().sum()) for r in responses)
    return math.sqrt(other) > COUPLING * math.sqrt(own)


def _unit_vectors(t: torch.Tensor, per_sample: bool, batch_size: int) -> Iterator[tuple[int, int, torch.Tensor]]:
    """``(start, k, V)``: unit vectors ``start .. start + k`` of ``t``'s block, ``V`` of shape (k, *t.shape).

    ``per_sample``: the block is one sample's elements, each set in every sample at once.
    """
    size = t.numel() // batch_size if per_sample else t.numel()
    for start in range(0, size, CHUNK):
        k = min(CHUNK, size - start)
        eye = torch.zeros(k, size, dtype=t.dtype, device=t.device)
        eye[torch.arange(k, device=t.device), start + torch.arange(k, device=t.device)] = 1
        if per_sample:
            eye = eye.unsqueeze(1).expand(k, batch_size, size).contiguous()
        yield start, k, eye.reshape(k, *t.shape)


def _diagonal(products: torch.Tensor, start: int, k: int, per_sample: bool, batch_size: int) -> torch.Tensor:
    """``sum_c products[c]`` at unit vector ``c``'s element(s), in float64."""
    index = torch.arange(k, device=products.device)
    if per_sample:
        return products.reshape(k, batch_size, -1)[index, :, start + index].double().sum()
    return products.reshape(k, -1)[index, start + index].double().sum()


def _batched_grad(value: torch.Tensor, wrt: torch.Tensor, vectors: torch.Tensor) -> torch.Tensor:
    """``vectors[c]^T d value / d wrt`` for every ``c``, as one batched backward pass where torch can.

    A tensor ``value`` does not depend on gives zeros.
    """
    try:
        (out,) = torch.autograd.grad(value, wrt, vectors, retain_graph=True, allow_unused=True, is_grads_batched=True)
    except RuntimeError:  # an operator without a batching rule: one product at a time
        outs = [torch.autograd.grad(value, wrt, v, retain_graph=True, allow_unused=True)[0] for v in vectors]
        out = None if outs[0] is None else torch.stack(outs)
    return torch.zeros(vectors.shape, dtype=wrt.dtype, device=wrt.device) if out is None else out
