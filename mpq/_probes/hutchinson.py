"""Hessian traces of the loss per layer, weights and input activations (Hutchinson's method).

Definitions (``L`` is the calibration loss, the sample-weighted mean of the batch losses):

- ``hessian_w`` of a layer: ``tr(d^2 L / dW^2)``, over its ``weight_params`` elements.
- ``hessian_a`` of a layer: the mean over calibration samples of ``tr(d^2 l_n / dA_n^2)``,
  where ``A_n`` is the layer's input for sample ``n`` (every position, channel and call:
  ``in_elems`` elements) and ``l_n`` that sample's loss. It is the trace of the Hessian of the
  batch-mean loss with respect to the whole batch's input tensor (block-diagonal over samples),
  so with the per-sample error ``E||Q(A_n) - A_n||^2``, ``trace / in_elems * E||Q(A)-A||^2``
  is the second-order loss increase the activation format causes (see :func:`mpq.omega`).

Two estimators, both unbiased for every layer from the same passes:

- ``hutchinson``: one Rademacher vector ``v`` over every target at once (all weights, all
  inputs) and one Hessian-vector product per batch; the estimate for target ``t`` is
  ``v_t . (Hv)_t = v_t^T H_tt v_t + sum_{s != t} v_t^T H_ts v_s``. The cross terms have mean
  zero but, measured on the built-in CNN, they dominate the variance (per-sample relative
  deviations of 1 for weights and up to 5 for late layers' inputs, against 0.2-0.7 for a
  layer probed alone), so one joint product is worth no more than PyHessian's one product per
  layer. Works for any model and loss.
- ``split`` (default): ``H = G + R`` with ``G = J^T (d^2 L/dz^2) J`` the Gauss-Newton part and
  ``R = sum_k (dL/dz_k) d^2 z_k`` the rest. ``G``'s block traces come from one backward pass of
  output-space noise (:mod:`mpq._probes.fisher`): ``||d(e.z)/dt||^2`` involves layer ``t``'s
  block only, so no cross-layer noise (a non-convex loss's negative output curvature takes a
  second backward pass, subtracted). ``R``'s come from Hutchinson on the scalar
  ``(dL/dz) . z`` (detached coefficients), with separate vectors for weights and for inputs;
  ``R`` is small near a minimum, its weight-input coupling is removed by the separation, and it
  vanishes (no product taken) where ``dL/dz = 0``, as for self-distillation at the float
  weights. Needs a tensor output and a loss that is a sum or mean of per-sample terms; beyond
  ``MAX_OUTPUT_ELEMS`` output elements per sample (a language model's positions x vocabulary), a
  softmax cross-entropy over the last dimension, whose output Hessian has a factor of
  O(vocabulary) per position (:mod:`mpq._probes.factors`).

Small targets that lag get exact traces instead (:mod:`mpq._probes.exact`: one HVP of the loss
per unit vector, the trace both estimators are unbiased for).

Measured (``benchmarks/bench_probe.py``, example:digits-cnn, seed 0, one thread, 5 % per layer):
``hessian_w`` takes 12 split samples (48 HVPs + 96 backward passes, 1.4 CPU s) against 1096
HVPs and 6.4 CPU s for PyHessian's per-layer loop (4.6x) and 1848 HVPs, 26.6 CPU s for the joint
``hutchinson`` estimator; ``hessian_w`` + ``hessian_a``: 1.4 CPU s against 13.3 (9.7x), while
joint ``hutchinson`` leaves 4 of 12 traces above 5 % after 1000 samples. Hutch++ was not
shipped: its deflation needs one fixed Hessian (no batch sub-sampling) and a sketch per layer
block, and the noise it removes (a few large eigenvalues) is not the noise that dominated here
(the cross-layer terms, which ``split`` removes).
"""

from __future__ import annotations

import torch

from mpq._probes.exact import hessian_traces
from mpq._probes.fisher import FisherFamily, noise_backward, output_tensor
from mpq._probes.graph import (
    Batch,
    LayerGraph,
    Pass,
    Target,
    add_to,
    gradients,
    hvp,
    hvp_of_gradients,
    rademacher_like,
)


class HessianFamily:
    """Draws of ``hessian_w`` / ``hessian_a``.

    Args:
        graph: The model's layer graph.
        kinds: ``"w"`` and/or ``"a"``.
        estimator: ``split`` or ``hutchinson``.
        draws: ``split``: output-noise draws per batch, averaged (they share the forward pass
            and the residual's Hessian-vector products).
    """

    name = "hessian"

    def __init__(self, graph: LayerGraph, kinds: list[str], estimator: str = "split", draws: int = 1):
        self.graph = graph
        self.kinds = kinds
        self.estimator = estimator
        self.draws = draws
        self.gauss_newton = FisherFamily(graph, kinds, "fisher", "gauss_newton")
        self.hvps = 0
        self.backwards = 0

    def draw(self, batch: Batch, generator: torch.Generator, only: set[Target] | None = None) -> dict[Target, float]:
        """One unbiased draw of every target's Hessian trace of ``batch``'s loss (``only``'s, when given)."""
        run = self.graph.run(batch, self.kinds).restrict(only)
        values: dict[Target, float] = {}
        if self.estimator == "hutchinson":
            self._hutchinson(run.loss, run, generator, values, retain_graph=False)
            return values
        output = output_tensor(self.graph.task.name, run.output)
        curvature = self.gauss_newton.curvature(batch, output)
        residual = bool(curvature.grad.any())
        parts = [(curvature.positive, 1.0)] + ([(curvature.negative, -1.0)] if curvature.negative is not None else [])
        passes = [part for part in parts for _ in range(self.draws)]
        for i, (factor, sign) in enumerate(passes):
            noise = curvature.noise(factor, output.shape, output.dtype, generator)
            noise_backward(run, noise, values, retain_graph=residual or i + 1 < len(passes), scale=sign / self.draws)
            self.backwards += 1
        if residual:
            coupling = (curvature.grad * output).sum()  # its Hessian is R
            # One first-order graph for every tensor, then one product per kind (separate vectors:
            # no weight-input coupling); a graph per kind took one more backward pass a draw.
            grads = dict(zip(map(id, run.tensors), gradients(coupling, run, create_graph=True)))
            parts = [part for part in (run.select(kind) for kind in self.kinds) if part.tensors]
            for i, part in enumerate(parts):
                vectors = [rademacher_like(t, generator) for t in part.tensors]
                products = hvp_of_gradients(
                    [grads[id(t)] for t in part.tensors], part, vectors, retain_graph=i + 1 < len(parts)
                )
                self.hvps += 1
                add_to(values, part, [(v * hv).sum() for v, hv in zip(vectors, products)], 1.0)
        return values

    def exact(self, batch: Batch, targets: set[Target]) -> dict[Target, float]:
        """``tr H_tt`` of ``batch``'s loss for the given (small) targets, one HVP per unit vector.

        The same for both estimators: each is unbiased for this trace (:mod:`mpq._probes.exact`).
        """
        values, products = hessian_traces(self.graph.run(batch, self.kinds), targets, batch.size)
        self.hvps += products
        return values

    def _hutchinson(
        self,
        value: torch.Tensor,
        run: Pass,
        generator: torch.Generator,
        values: dict[Target, float],
        *,
        retain_graph: bool,
    ) -> None:
        """Add ``v_t . (H v)_t`` of ``value``'s Hessian, one fresh Rademacher ``v``, to every target."""
        vectors = [rademacher_like(t, generator) for t in run.tensors]
        products = hvp(value, run, vectors, retain_graph=retain_graph)
        self.hvps += 1
        add_to(values, run, [(v * hv).sum() for v, hv in zip(vectors, products)], 1.0)
