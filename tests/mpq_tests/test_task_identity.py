"""A stored probe or an unfinished run is taken up only for the same task: its loss and its
metric included (issue 26), not only its weights and calibration data."""

import dataclasses
import functools

import pytest
from torch.nn import functional as F

import mpq
from mpq.exceptions import InvalidParameterError, SearchInterrupted

FAST = mpq.ProbeSettings(tolerance=0.2, min_samples=4, max_samples=8)


def logged(log: list):
    def progress(stage, done, total, message):
        log.append(message)

    return progress


def test_a_stored_probe_is_reused_for_the_same_loss_only(tiny_task, tmp_path):
    db = tmp_path / "mpq.db"
    first = mpq.search(tiny_task, settings=FAST, db=db, validate=False)
    log = []
    smoothed = dataclasses.replace(tiny_task, loss_fn=functools.partial(F.cross_entropy, label_smoothing=0.5))
    second = mpq.search(smoothed, settings=FAST, db=db, validate=False, progress=logged(log))
    assert second.record["probe_key"] != first.record["probe_key"]
    assert not any("reused the stored probe" in message for message in log)
    log.clear()
    mpq.search(tiny_task, settings=FAST, db=db, validate=False, fresh=True, progress=logged(log))
    assert any("reused the stored probe" in message for message in log)


def test_a_changed_metric_is_another_search_and_never_resumes_a_run(tiny_task, tmp_path):
    db = tmp_path / "mpq.db"

    def stop(stage, done, total, message):
        if stage == "validate" and done >= 2:
            raise KeyboardInterrupt

    with pytest.raises(SearchInterrupted):
        mpq.search(tiny_task, settings=FAST, db=db, progress=stop)
    changed = dataclasses.replace(tiny_task, evaluate=lambda model: 0.5)
    run = mpq.search(changed, settings=FAST, db=db)
    assert run.id == 2 and mpq.open_run(db, 1).status == "failed"  # not taken up by the other metric
    with pytest.raises(InvalidParameterError, match=r"^run 1 searched task 'tiny' with another evaluate than"):
        mpq.search(changed, db=db, resume=1)
    assert mpq.search(tiny_task, db=db, resume=1).status == "done"  # the task as it was resumes it
