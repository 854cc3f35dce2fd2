"""Running statistics, seeded sample generators and the stopping rule."""

from __future__ import annotations

import json
import math

import numpy as np
import torch
from hypothesis import given
from hypothesis import strategies as st

from mpq._probes import ProbeSettings
from mpq._probes.sampling import RunningStats, sample_generator

finite = st.floats(-1e6, 1e6, allow_nan=False)


@given(st.lists(st.tuples(finite, finite), min_size=2, max_size=60))
def test_running_stats_equal_numpy_and_survive_json(samples):
    stats = RunningStats(keys=[("p", "a"), ("p", "b")])
    for sample in samples:
        stats.update(list(sample))
    data = np.array(samples)
    for i in range(2):
        assert math.isclose(stats.mean[i], data[:, i].mean(), rel_tol=1e-9, abs_tol=1e-6)
        expected = data[:, i].std(ddof=1) / math.sqrt(len(samples))
        assert math.isclose(stats.stderr(i), expected, rel_tol=1e-6, abs_tol=1e-6)
    restored = RunningStats.from_state(json.loads(json.dumps(stats.to_state())))
    assert restored == stats


def test_stopping_rule():
    settings = ProbeSettings(tolerance=0.1, min_samples=3, max_samples=5)
    stats = RunningStats(keys=[("p", "a")])
    for x in (1.0, 1.0):
        stats.update([x])
    assert stats.relative_stderr(0) == 0.0 and not stats.done(settings)  # below min_samples
    stats.update([1.0])
    assert stats.done(settings)  # identical samples: converged
    noisy = RunningStats(keys=[("p", "a")])
    for x in (1.0, -1.0, 1.0, -1.0):
        noisy.update([x])
    assert noisy.relative_stderr(0) == math.inf and noisy.unconverged(0.1) == [("p", "a")]
    assert not noisy.done(settings)
    noisy.update([1.0])
    assert noisy.done(settings)  # the cap


def test_sample_generators_depend_only_on_seed_family_and_index():
    def draw(*args):
        return torch.rand(4, generator=sample_generator(*args))

    assert torch.equal(draw(0, "hessian", 7), draw(0, "hessian", 7))
    distinct = [draw(0, "hessian", 7), draw(1, "hessian", 7), draw(0, "fisher", 7), draw(0, "hessian", 8)]
    assert len({tuple(d.tolist()) for d in distinct}) == 4
