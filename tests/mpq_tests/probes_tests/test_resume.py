"""Checkpoints: an interrupted probe resumes to exactly the numbers of an uninterrupted one."""

from __future__ import annotations

import pandas as pd
import probe_cases
import pytest
import torch

from mpq._probes import ProbeCheckpoint, ProbeSettings, probe, probe_key

# Never converging (tolerance 1e-9) makes every family take exactly max_samples samples.
SETTINGS = ProbeSettings(
    probes=("hessian_w", "hessian_a", "fisher_w", "measured"),
    tolerance=1e-9,
    min_samples=2,
    max_samples=12,
    batches_per_sample=1,
    candidates=("w4a8", "w8a8"),
)
# Twelve samples are far from the tolerance, and may even be negative: both warnings are expected.
pytestmark = pytest.mark.filterwarnings("ignore::mpq.exceptions.SensitivityWarning")


class Interrupted(Exception):
    pass


def _without_timing(table: pd.DataFrame) -> pd.DataFrame:
    return table.drop(columns=["seconds"])


@pytest.mark.parametrize("stop_after", [1, 7, 12, 13, 28])  # in hessian, at its end, in fisher, in measured
def test_interrupted_then_resumed_equals_uninterrupted(mlp_task, tmp_path, stop_after):
    reference = probe(mlp_task, settings=SETTINGS)
    checkpoint = ProbeCheckpoint(tmp_path / "probes")
    calls = []

    def stop(done, total, message):
        calls.append(message)
        if len(calls) == stop_after:
            raise Interrupted

    with pytest.raises(Interrupted):
        probe(mlp_task, settings=SETTINGS, progress=stop, checkpoint=checkpoint)
    resumed_calls = []
    resumed = probe(
        mlp_task,
        settings=SETTINGS,
        checkpoint=checkpoint,
        progress=lambda done, total, message: resumed_calls.append(message),
    )
    pd.testing.assert_frame_equal(_without_timing(resumed), _without_timing(reference))
    # No sample was taken twice: the two runs' progress calls add up to one run's (12 + 12 + 3 x 2 pairs).
    assert len(calls) + len(resumed_calls) == 12 + 12 + 6
    assert resumed_calls[0] != calls[0]


def test_a_finished_checkpoint_is_reused_without_new_samples(mlp_task, tmp_path):
    checkpoint = ProbeCheckpoint(tmp_path)
    first = probe(mlp_task, settings=SETTINGS, checkpoint=checkpoint)
    calls = []
    again = probe(mlp_task, settings=SETTINGS, checkpoint=checkpoint, progress=lambda *a: calls.append(a))
    assert calls == []
    pd.testing.assert_frame_equal(first, again)


def test_the_key_follows_weights_data_and_settings(mlp_task):
    key = probe_key(mlp_task, SETTINGS)
    assert len(key) == 64 and key == probe_key(probe_cases.tanh_mlp_task(), SETTINGS)
    assert key != probe_key(mlp_task, ProbeSettings(seed=1))
    other_data = probe_cases.tanh_mlp_task()
    other_data.calibration[0][0][0, 0] += 1.0
    assert key != probe_key(other_data, SETTINGS)
    with torch.no_grad():
        mlp_task.model[0].weight[0, 0] += 1e-6
    assert key != probe_key(mlp_task, SETTINGS)


def test_file_checkpoint_round_trips_and_misses_cleanly(tmp_path):
    store = ProbeCheckpoint(tmp_path / "a" / "b")
    assert store.load_probe_checkpoint("k") is None
    state = {"hessian": {"n": 3, "mean": [0.1, -2.5e-300, 1 / 3]}}
    store.save_probe_checkpoint("k", state)
    assert store.load_probe_checkpoint("k") == state  # floats round-trip exactly through JSON
    store.save_probe_checkpoint("k", {"n": 4})
    assert store.load_probe_checkpoint("k") == {"n": 4}
    assert [p.name for p in (tmp_path / "a" / "b").iterdir()] == ["k.json"]  # no temporary file left
