"""The softmax cross-entropy factor of the output Hessian: a language model's ``split`` estimator."""

from __future__ import annotations

import probe_cases
import pytest
import torch
from torch import nn

import mpq
from mpq._examples.causal_lm import next_token_loss
from mpq._probes import ProbeSettings, fisher, fit_estimator, probe
from mpq._probes import api as probes_api
from mpq._probes.factors import SoftmaxFactor, softmax_weights
from mpq._task import check_task
from mpq.exceptions import ProbeError, SensitivityWarning, TaskSpecError

VOCAB, SEQ = 7, 5


def _logits_and_labels(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    logits = 2 * torch.randn(3, SEQ, VOCAB, generator=generator, dtype=torch.float64)
    labels = torch.randint(0, VOCAB, (3, SEQ), generator=generator)
    labels[1, 2:] = -100  # ignored positions (padding): weight 0
    return logits, labels


def _padded_cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return nn.functional.cross_entropy(logits.reshape(-1, VOCAB), labels.reshape(-1), ignore_index=-100)


def _factor(loss_fn, logits, labels) -> SoftmaxFactor | None:
    z = logits.detach().requires_grad_(True)
    (grad,) = torch.autograd.grad(loss_fn(z, labels), z, create_graph=True)
    weights = softmax_weights(z, grad)
    return None if weights is None else SoftmaxFactor(torch.softmax(z.detach(), -1), weights)


def test_the_softmax_factor_is_the_cross_entropy_hessian():
    logits, labels = _logits_and_labels()
    hessian = torch.autograd.functional.hessian(lambda z: _padded_cross_entropy(z, labels), logits)
    hessian = hessian.reshape(logits.numel(), logits.numel())
    factor = _factor(_padded_cross_entropy, logits, labels)
    assert factor is not None
    n_tokens = int((labels != -100).sum())
    expected = (labels != -100).double() / n_tokens
    torch.testing.assert_close(factor.weights, expected, rtol=1e-10, atol=1e-15)
    # The closed form u^T C u, polarised on every pair of unit vectors, is the Hessian.
    eye = torch.eye(logits.numel(), dtype=torch.float64)
    quadratic = torch.stack([factor.quadratic(u.reshape(1, 3, -1)) for u in eye])
    pairs = torch.stack(
        [torch.stack([factor.quadratic((a + b).reshape(1, 3, -1)) for b in eye]) for a in eye]
    )  # q(e_i + e_j) = C_ii + C_jj + 2 C_ij
    covariance = (pairs - quadratic[:, None] - quadratic[None, :]) / 2
    torch.testing.assert_close(covariance, hessian, rtol=1e-9, atol=1e-12)
    # The noise's covariance, from draws: the Hessian within Monte Carlo error (5 sigma of a Gaussian
    # estimate of each entry, whose variance is at most (C_ii C_jj + C_ij^2) / draws, plus kurtosis).
    generator = torch.Generator().manual_seed(1)
    draws = 20000
    noise = torch.stack([factor.noise(generator).reshape(-1) for _ in range(draws)])
    sampled = noise.T @ noise / draws
    bound = 5 * ((hessian.diagonal()[:, None] * hessian.diagonal()[None, :] + 3 * hessian**2) / draws).sqrt()
    assert ((sampled - hessian).abs() <= bound + 1e-15).all()


@pytest.mark.parametrize(
    "loss_fn",
    [
        lambda z, y: ((z - 1) ** 2).mean(),  # a squared error
        lambda z, y: -_padded_cross_entropy(z, y),  # negative curvature
        lambda z, y: nn.functional.cross_entropy(z, torch.zeros(3, VOCAB, dtype=torch.long)),  # over positions
        lambda z, y: nn.functional.cross_entropy(z.mean(1), y[:, 0].clamp(min=0)),  # couples the positions
        lambda z, y: _padded_cross_entropy(z, y) + 1e-3 * (z**2).mean(),  # cross-entropy plus a penalty
    ],
    ids=["squared-error", "negated", "other-dimension", "pooled", "penalised"],
)
def test_a_loss_other_than_softmax_cross_entropy_is_not_taken_for_one(loss_fn):
    logits, labels = _logits_and_labels()
    assert _factor(loss_fn, logits, labels) is None


class TinyLM(nn.Module):
    """Embedding, a causal running mean over positions, a tanh layer and a head to the vocabulary."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(21)
        self.embed = nn.Embedding(VOCAB, 4)
        self.mix = nn.Linear(4, 6)
        self.head = nn.Linear(6, VOCAB)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        h = self.embed(ids).cumsum(1) / torch.arange(1, ids.shape[1] + 1).reshape(1, -1, 1)
        return self.head(torch.tanh(2 * self.mix(h)))


def _lm_task(loss_fn=next_token_loss) -> mpq.Task:
    generator = torch.Generator().manual_seed(22)
    ids = torch.randint(0, VOCAB, (16, SEQ), generator=generator)
    return mpq.Task("tiny-lm", TinyLM().eval(), [(ids[:8], ids[:8]), (ids[8:], ids[8:])], loss_fn)


@pytest.fixture
def small_max(monkeypatch):
    """The tiny LM's 35 logits per sample made 'too many' for the dense factor, as a real LM's are."""
    monkeypatch.setattr(fisher, "MAX_OUTPUT_ELEMS", 16)
    monkeypatch.setattr(probes_api, "MAX_OUTPUT_ELEMS", 16)


def test_a_language_models_split_hessian_agrees_with_exact_traces(small_max):
    task = _lm_task()
    assert fit_estimator(task, ProbeSettings()).estimator == "split"
    exact = probe_cases.exact_traces(task)
    settings = ProbeSettings(max_samples=200, exact_max_params=0)  # sampled, not exact, traces
    with pytest.warns(SensitivityWarning, match="hessian_w embed"):  # a small trace, the residual's noise
        table = probe(task, ["hessian_w", "hessian_a"], settings=settings)
    assert len(table) == len(exact) == 5  # the embedding has no input trace
    for row in table.itertuples():
        assert probe_cases.within(row.value, row.stderr, exact[(row.probe[-1], row.layer)]), row


def test_a_large_output_with_another_loss_samples_with_hutchinson(small_max):
    def squared(output, ids):
        return ((output - 1) ** 2).sum(-1).mean()

    task = _lm_task(squared)
    assert fit_estimator(task, ProbeSettings()).estimator == "hutchinson"
    # mpq.probe fits the estimator as mpq search does: one joint product per batch, no output noise.
    with pytest.warns(SensitivityWarning):  # 12 samples: plumbing, not precision
        table = probe(task, ["hessian_w"], settings=ProbeSettings(max_samples=12, tolerance=0.5))
    assert (table["hvps"] == table["n_samples"] * 2).all() and (table["backwards"] == 0).all()
    with pytest.raises(ProbeError, match="loss other than a softmax cross-entropy.*estimator='hutchinson'"):
        probe(task, ["fisher_w"])  # the Gauss-Newton output noise has no such fallback


@pytest.mark.filterwarnings("ignore::mpq.exceptions.SensitivityWarning")  # short runs: plumbing, not precision
def test_a_tasks_default_probes_are_what_probe_takes_without_settings():
    task = _lm_task()
    task.default_probes = ("efisher_w",)
    assert set(probe(task)["probe"]) == {"efisher_w"}
    assert set(probe(task, settings=ProbeSettings(max_samples=10, tolerance=0.9))["probe"]) == {
        "hessian_w",
        "hessian_a",
    }
    task.default_probes = "efisher_w"
    with pytest.raises(TaskSpecError, match=r"make_task: Task.default_probes is 'efisher_w'; pass probe names"):
        check_task(task, "make_task")
