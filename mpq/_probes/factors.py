"""Factors of a loss's Hessian with respect to the model's output, per sample, for output-space noise.

A factor ``F`` of one batch gives random noise ``e`` with ``E[e e^T] = C``, a block-diagonal
(over samples) curvature in output space, and the quadratic form ``u^T C u`` in closed form
(for exact traces). Two kinds:

- :class:`DenseFactor`: ``C_nn = F_n F_n^T`` with ``F_n`` an m x r matrix per sample; for any
  loss, from m Hessian-vector products and an eigendecomposition (:func:`mpq._probes.fisher.output_curvature`),
  so only for outputs of at most ``MAX_OUTPUT_ELEMS`` elements per sample.
- :class:`SoftmaxFactor`: a (weighted) softmax cross-entropy over the output's last dimension,
  whose Hessian for one position (token) is ``w (diag(p) - p p^T)``, ``p`` the softmax and ``w``
  the position's weight in the loss (0 for an ignored position). ``e = sqrt(w) (sqrt(p) * r -
  p (sqrt(p) . r))`` with ``r`` Rademacher has exactly that covariance (``sum p = 1``), at
  O(vocabulary) per position: no m x m matrix, so it serves a language model's logits. Used only
  where :func:`softmax_weights` verified the loss's Hessian has that form.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

#: Relative residual of the Hessian-vector products above which a loss is not a softmax cross-entropy
#: (float64 round-off of the products is ~1e-14 of their norm; any other curvature is O(1)).
SOFTMAX_FIT = 1e-8


@dataclass(frozen=True)
class DenseFactor:
    """``C_nn = F_n F_n^T``; ``matrix`` is ``F`` of shape (batch, m, r), float64."""

    matrix: torch.Tensor

    def noise(self, generator: torch.Generator) -> torch.Tensor:
        """``e_n = F_n r_n``, ``r`` Rademacher, of shape (batch, m), float64."""
        r = torch.empty(self.matrix.shape[0], self.matrix.shape[2], dtype=torch.float64)
        r = r.bernoulli_(0.5, generator=generator).to(self.matrix.device)  # CPU draws: the same on every device
        return torch.einsum("nik,nk->ni", self.matrix, r * 2 - 1)

    def quadratic(self, u: torch.Tensor) -> torch.Tensor:
        """``sum_c sum_n u_cn^T C_nn u_cn`` for ``u`` of shape (k, batch, m), float64."""
        return torch.einsum("nmr,knm->knr", self.matrix, u).square().sum()


@dataclass(frozen=True)
class SoftmaxFactor:
    """``C`` of a weighted softmax cross-entropy over the last dimension.

    Attributes:
        probabilities: ``p``, the output's softmax over its last dimension (the output's shape).
        weights: ``w``, each position's weight in the loss (the output's shape without its last
            dimension), at least 0.
    """

    probabilities: torch.Tensor
    weights: torch.Tensor

    def noise(self, generator: torch.Generator) -> torch.Tensor:
        """``sqrt(w) (sqrt(p) * r - p (sqrt(p) . r))``, ``r`` Rademacher, of shape (batch, m), float64."""
        p = self.probabilities.double()
        r = torch.empty(p.shape, dtype=torch.float64).bernoulli_(0.5, generator=generator).to(p.device) * 2 - 1
        s = p.sqrt() * r
        e = (s - p * s.sum(-1, keepdim=True)) * self.weights.double().sqrt().unsqueeze(-1)
        return e.reshape(p.shape[0], -1)

    def quadratic(self, u: torch.Tensor) -> torch.Tensor:
        """``sum w (sum_v p u^2 - (sum_v p u)^2)`` over positions, for ``u`` of shape (k, batch, m), float64."""
        p = self.probabilities.double()
        u = u.reshape(u.shape[0], *p.shape)
        return (self.weights.double() * ((p * u * u).sum(-1) - (p * u).sum(-1).square())).sum()


def softmax_weights(z: torch.Tensor, grad: torch.Tensor) -> torch.Tensor | None:
    """Each position's weight ``w`` where the loss's Hessian at ``z`` is ``w (diag(p) - p p^T)`` per
    position of the last dimension, blocks of different positions zero; None where it is not.

    Verified numerically: ``w`` is fitted per position to one Hessian-vector product in a random
    direction and checked on that product and on a second, independent one (any other curvature,
    a coupling between positions or samples, or a negative weight fails).

    Args:
        z: The output, float64, a leaf the loss was differentiated at.
        grad: ``dL/dz``, computed with ``create_graph=True``.
    """
    if z.dim() < 2 or z.shape[-1] < 2 or not grad.requires_grad:
        return None
    generator = torch.Generator().manual_seed(0)
    p = torch.softmax(z.detach(), dim=-1)
    directions = [torch.randn(z.shape, generator=generator, dtype=z.dtype).to(z.device) for _ in range(2)]
    weights = None
    for v in directions:
        (hv,) = torch.autograd.grad(grad, z, v, retain_graph=True, allow_unused=True, materialize_grads=True)
        form = p * v - p * (p * v).sum(-1, keepdim=True)  # (diag(p) - p p^T) v per position
        if weights is None:
            norms = (form * form).sum(-1)
            # A saturated position (p one-hot to round-off) has no curvature to fit: weight 0.
            weights = torch.where(norms > 1e-24 * norms.max(), (hv * form).sum(-1) / norms.clamp(min=1e-300), 0)
        residual = hv - weights.unsqueeze(-1) * form
        if float(residual.norm()) > SOFTMAX_FIT * float(hv.norm()) + 1e-30:
            return None
    if float(weights.min()) < -SOFTMAX_FIT * float(weights.abs().max()):
        return None
    return weights.clamp(min=0)
