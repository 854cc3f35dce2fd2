"""The README's AutoML loop runs: an Optuna study calling mpq.search per trial."""

import importlib.util
from pathlib import Path

import optuna

import mpq

EXAMPLE = Path(__file__).parents[2] / "examples" / "automl_widths.py"


def test_optuna_study_over_widths_calls_mpq_search(tmp_path):
    spec = importlib.util.spec_from_file_location("automl_widths", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    db = tmp_path / "automl.db"
    settings = mpq.ProbeSettings(tolerance=0.3, min_samples=3, max_samples=4)
    study = module.run_study(2, "stm32h743", 1.0, str(db), settings=settings, widths=(4, 8))
    assert len(study.trials) == 2 and all(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)
    runs = mpq.list_runs(db)
    assert list(runs.status) == ["done", "done"] and set(runs.task) <= {"digits-w4", "digits-w8"}
    for trial in study.trials:
        accuracy, latency = trial.values
        assert 0.5 < accuracy <= 1.0 and latency <= 1.0
        assert set(trial.user_attrs["assignment"]) == {"0", "3", "7"}
