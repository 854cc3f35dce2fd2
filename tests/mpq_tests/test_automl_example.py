"""The README's AutoML loop runs: an Optuna study calling mpq.search per trial."""

import importlib.util
from pathlib import Path

import optuna
import pytest

import mpq

EXAMPLE = Path(__file__).parents[2] / "examples" / "automl_widths.py"


def run_study(tmp_path, trials: int, widths: tuple[int, ...]):
    spec = importlib.util.spec_from_file_location("automl_widths", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    db = tmp_path / "automl.db"
    settings = mpq.ProbeSettings(tolerance=0.3, min_samples=3, max_samples=4)
    study = module.run_study(trials, "stm32h743", 1.0, str(db), settings=settings, widths=widths)
    assert len(study.trials) == trials and all(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)
    runs = mpq.list_runs(db)
    assert list(runs.status) == ["done"] * trials and set(runs.task) <= {f"digits-w{w}" for w in widths}
    for trial in study.trials:
        accuracy, latency = trial.values
        assert 0.5 < accuracy <= 1.0 and latency <= 1.0
        assert set(trial.user_attrs["assignment"]) == {"0", "3", "7"}


@pytest.mark.slow
def test_optuna_study_over_widths_calls_mpq_search(tmp_path):
    run_study(tmp_path, 2, (4, 8))


def test_optuna_study_of_one_trial_calls_mpq_search(tmp_path):
    """The fast twin: one trial (one model trained, one search)."""
    run_study(tmp_path, 1, (4,))
