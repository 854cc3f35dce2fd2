"""Fisher families: empirical against sampled, self-distillation, and the estimators' requirements."""

from __future__ import annotations

import probe_cases
import pytest
import torch
from torch import nn

import mpq
from mpq._probes import ProbeSettings, probe
from mpq._probes.fisher import output_curvature
from mpq.exceptions import ProbeError

# Short runs here check plumbing, not precision: the tolerance warning is expected.
pytestmark = pytest.mark.filterwarnings("ignore:.*relative standard error:mpq.exceptions.SensitivityWarning")


def test_self_distillation_zero_empirical_fisher_and_hessian_equals_gauss_newton():
    task = probe_cases.self_distillation_task()
    exact = probe_cases.exact_traces(task)
    table = probe(task, ["hessian_w", "hessian_a"], settings=ProbeSettings(max_samples=1000))
    hessian = table[table["probe"].str.startswith("hessian")]
    for row in hessian.itertuples():
        assert row.converged
        assert probe_cases.within(row.value, row.stderr, exact[(row.probe[-1], row.layer)]), row
    # dL/dz is exactly 0 at the float weights: no residual, so no Hessian-vector product at all.
    assert (hessian["hvps"] == 0).all() and (hessian["backwards"] == hessian["n_samples"] * 2 * 2).all()
    # The empirical Fisher is the squared gradient: exactly 0 everywhere, so it cannot rank layers.
    with pytest.raises(ProbeError, match="every efisher trace is exactly 0 after 1 sample.*self-distillation"):
        probe(task, ["efisher_w"])


def test_empirical_and_sampled_fisher_are_named_apart_and_differ(softmax_task):
    probes = ["fisher_w", "efisher_w", "fisher_a", "efisher_a"]
    table = probe(softmax_task, probes, settings=ProbeSettings(max_samples=800))
    value = dict(zip(table["probe"], table["value"]))
    stderr = dict(zip(table["probe"], table["stderr"]))
    exact = probe_cases.softmax_regression_traces(softmax_task)
    # A fitted model: the empirical Fisher (true labels) is far below the sampled one.
    assert value["efisher_w"] + 5 * stderr["efisher_w"] < value["fisher_w"] - 5 * stderr["fisher_w"]
    assert probe_cases.within(value["fisher_w"], stderr["fisher_w"], exact["hessian"])
    assert value["efisher_a"] < value["fisher_a"]


def _mlp(outputs: int = 3) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, outputs)).eval()


def _data():
    generator = torch.Generator().manual_seed(1)
    return torch.randn(8, 4, generator=generator), torch.randint(0, 3, (8,), generator=generator)


def test_a_loss_that_couples_samples_is_refused_by_output_noise_but_not_by_hutchinson():
    x, _ = _data()

    def centered(output, target):  # subtracting the batch mean couples the samples
        return ((output - output.mean(0)) ** 2).mean()

    task = mpq.Task("coupled", _mlp(), [(x, x)], centered)
    with pytest.raises(ProbeError, match="couples the samples"):
        probe(task, ["fisher_w"])
    with pytest.raises(ProbeError, match="estimator='hutchinson'"):
        probe(task, ["hessian_w"])
    table = probe(task, ["hessian_w"], settings=ProbeSettings(estimator="hutchinson", max_samples=50))
    assert len(table) == 2 and table["value"].notna().all()


def test_a_sum_reduced_loss_is_refused_where_per_sample_scale_matters():
    x, y = _data()
    task = mpq.Task("sum", _mlp(), [(x, y)], lambda out, t: nn.functional.cross_entropy(out, t, reduction="sum"))
    with pytest.raises(ProbeError, match="not a mean over the batch"):
        probe(task, ["efisher_w"])
    with pytest.raises(ProbeError, match="not a mean over the batch"):
        probe(task, ["fisher_w"], settings=ProbeSettings(fisher_sampler="categorical"))
    # The Gauss-Newton sampler needs no reduction convention.
    assert len(probe(task, ["fisher_w"], settings=ProbeSettings(max_samples=20))) == 2


def test_a_model_returning_a_dict_needs_hutchinson():
    class DictModel(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = _mlp()

        def forward(self, x):
            return {"logits": self.net(x)}

    x, y = _data()
    task = mpq.Task("dict", DictModel().eval(), [(x, y)], lambda out, t: nn.functional.cross_entropy(out["logits"], t))
    with pytest.raises(ProbeError, match="returns dict, not a floating-point tensor"):
        probe(task, ["fisher_a"])
    table = probe(task, settings=ProbeSettings(estimator="hutchinson", max_samples=30))
    assert set(table["layer"]) == {"net.0", "net.2"}


def test_a_layer_that_runs_without_reaching_the_loss_is_named():
    class Detour(nn.Module):
        def __init__(self):
            super().__init__()
            self.used = nn.Linear(4, 3)
            self.unused = nn.Linear(4, 2)

        def forward(self, x):
            self.unused(x)
            return self.used(x)

    x, y = _data()
    task = mpq.Task("detour", Detour().eval(), [(x, y)], nn.functional.cross_entropy)
    with pytest.raises(ProbeError, match="layers unused: ran but the loss does not depend on them"):
        probe(task, ["fisher_w"])


def test_categorical_sampler_needs_class_logits():
    x, _ = _data()
    model = nn.Sequential(nn.Linear(4, 4), nn.Unflatten(1, (2, 2)))  # a (batch, 2, 2) output
    task = mpq.Task("grid", model, [(x, torch.zeros(8, 2, 2))], lambda out, t: ((out - t) ** 2).mean())
    with pytest.raises(ProbeError, match="needs \\(batch, classes\\) logits"):
        probe(task, ["fisher_w"], settings=ProbeSettings(fisher_sampler="categorical"))


@pytest.mark.parametrize("margin", [12.0, 16.0, 20.0])
def test_a_confident_classifier_is_not_taken_for_a_coupled_loss(margin):
    # Cross-entropy's curvature p(1 - p) is near float32's round-off for confident outputs; the
    # coupling check once compared two round-off errors there and refused a user's trained MLP.
    labels = torch.arange(32) % 3
    logits = margin * nn.functional.one_hot(labels, 3).float() + 0.01 * torch.randn(
        32, 3, generator=torch.Generator().manual_seed(0)
    )
    curvature = output_curvature("confident", nn.functional.cross_entropy, logits, labels)
    assert curvature.grad.dtype == torch.float32 and curvature.positive.matrix.shape == (32, 3, 3)
