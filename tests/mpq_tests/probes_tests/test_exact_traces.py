"""Per-layer traces of small nonlinear models against torch.autograd.functional.hessian."""

from __future__ import annotations

import probe_cases
import pytest

from mpq._probes import ProbeSettings, probe

# The tests read the stderr column themselves: the tolerance warning is expected.
pytestmark = pytest.mark.filterwarnings("ignore:.*relative standard error:mpq.exceptions.SensitivityWarning")


def _check_against_exact(task, table, max_relative_stderr):
    exact = probe_cases.exact_traces(task)
    assert len(table) == len(exact)  # every layer's weight and input, nothing else
    for row in table.itertuples():
        truth = exact[(row.probe[-1], row.layer)]
        assert row.stderr <= max_relative_stderr * abs(row.value), (row.probe, row.layer, row.value, row.stderr)
        assert probe_cases.within(row.value, row.stderr, truth), (row.probe, row.layer, row.value, row.stderr, truth)


@pytest.mark.parametrize("estimator", ["split", "hutchinson"])
def test_tanh_mlp_weight_and_input_traces(mlp_task, estimator):
    settings = ProbeSettings(estimator=estimator, tolerance=0.1, max_samples=600, seed=2, exact_max_params=0)
    table = probe(mlp_task, settings=settings)
    _check_against_exact(mlp_task, table, max_relative_stderr=0.15)


@pytest.mark.slow
def test_tiny_cnn_weight_and_input_traces(cnn_task):
    table = probe(cnn_task, settings=ProbeSettings(tolerance=0.1, max_samples=800, seed=4, exact_max_params=0))
    _check_against_exact(cnn_task, table, max_relative_stderr=0.4)


def test_tiny_cnn_weight_and_input_traces_in_100_samples(cnn_task):
    """The fast twin: an eighth of the samples, so wider error bars (the weight traces' stderr is ~50 %)."""
    table = probe(cnn_task, settings=ProbeSettings(tolerance=0.1, max_samples=100, seed=4, exact_max_params=0))
    assert set(table.n_samples) == {100}
    _check_against_exact(cnn_task, table, max_relative_stderr=0.6)


def test_layers_reading_the_same_tensor_get_their_own_input_trace():
    """Two heads read one hidden tensor: each input trace is that layer's own, not the sum."""
    import torch
    from torch import nn

    import mpq

    class TwoHeads(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = nn.Linear(3, 4)
            self.left = nn.Linear(4, 2)
            self.right = nn.Linear(4, 2)

        def forward(self, x):
            h = torch.tanh(self.body(x))
            return self.left(h) + 3 * self.right(h)

    torch.manual_seed(0)
    x = torch.randn(12, 3)
    y = torch.randint(0, 2, (12,))
    task = mpq.Task("two-heads", TwoHeads().eval(), [(x, y)], nn.functional.cross_entropy)
    table = probe(task, ["hessian_a"], settings=ProbeSettings(max_samples=800, exact_max_params=0))
    _check_against_exact_inputs(task, table)


def _check_against_exact_inputs(task, table):
    exact = probe_cases.exact_traces(task)
    for row in table.itertuples():
        assert probe_cases.within(row.value, row.stderr, exact[("a", row.layer)]), row
    # The right head's input matters 9x as much (its output is scaled by 3).
    values = dict(zip(table["layer"], table["value"]))
    assert values["right"] > 4 * values["left"]


def test_tied_weights_share_one_trace():
    """An output layer tied to the embedding: both rows are the trace of the one shared weight."""
    import torch
    from torch import nn

    import mpq

    class TiedLM(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Embedding(7, 4)
            self.mix = nn.Linear(4, 4)
            self.head = nn.Linear(4, 7, bias=False)
            self.head.weight = self.embed.weight

        def forward(self, ids):
            return self.head(torch.tanh(self.mix(self.embed(ids).mean(1))))

    torch.manual_seed(0)
    ids = torch.randint(0, 7, (10, 3))
    task = mpq.Task("tied", TiedLM().eval(), [(ids, torch.randint(0, 7, (10,)))], nn.functional.cross_entropy)
    table = probe(task, ["hessian_w"], settings=ProbeSettings(max_samples=1000, exact_max_params=0))
    values = dict(zip(table["layer"], table["value"]))
    assert values["embed"] == values["head"]
    exact = probe_cases.exact_traces(task)
    assert exact[("w", "embed")] == pytest.approx(exact[("w", "head")])
    for row in table.itertuples():
        assert probe_cases.within(row.value, row.stderr, exact[("w", row.layer)]), row
