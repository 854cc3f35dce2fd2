"""AutoML over model widths with mpq in the loop: an Optuna study trades accuracy against latency.

Each trial trains a digits CNN of one width (seeded, a few seconds), asks mpq for its frontier
on a target, and reports the best validated point within a latency budget. Optuna's NSGA-II
keeps the widths whose quantized models are both accurate and fast.

    python examples/automl_widths.py --trials 6 --target stm32h743 --latency-budget 2e-3
"""

from __future__ import annotations

import argparse

import numpy as np
import optuna
import torch
from sklearn.datasets import load_digits
from torch import nn

import mpq


def make_task(width: int, epochs: int = 15) -> mpq.Task:
    """A digits CNN with ``width`` channels in its first layer, trained on the spot."""
    digits = load_digits()
    images = torch.tensor(digits.images / 16.0, dtype=torch.float32).unsqueeze(1)
    labels = torch.tensor(digits.target)
    order = torch.from_numpy(np.random.default_rng(0).permutation(len(labels)))
    test, train = order[:500], order[500:]
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, width, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(width, 2 * width, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(2 * width * 4, 10),
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(epochs):
        for batch in torch.randperm(len(train)).split(64):
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(images[train[batch]]), labels[train[batch]]).backward()
            optimizer.step()
    model.eval()
    calibration = [(images[train[i : i + 64]], labels[train[i : i + 64]]) for i in range(0, 256, 64)]

    def accuracy(m: nn.Module) -> float:
        with torch.no_grad():
            return float((m(images[test]).argmax(1) == labels[test]).float().mean())

    return mpq.Task(f"digits-w{width}", model, calibration, nn.functional.cross_entropy, accuracy, "accuracy")


def run_study(
    trials: int,
    target: str,
    latency_budget_s: float,
    db: str | None,
    settings: mpq.ProbeSettings | None = None,
    widths=(4, 8, 16, 32),
) -> optuna.Study:
    """The study: maximise accuracy, minimise latency of the best mpq point per width."""

    def objective(trial: optuna.Trial) -> tuple[float, float]:
        width = trial.suggest_categorical("width", list(widths))
        run = mpq.search(make_task(width), target=target, objectives=["latency_s"], settings=settings, db=db)
        best = run.best(latency_s=latency_budget_s)
        trial.set_user_attr("mpq_run", run.id)
        trial.set_user_attr("assignment", run.assignment(int(best.point)))
        return float(best.measured_metric), float(best.latency_s)

    study = optuna.create_study(directions=["maximize", "minimize"], sampler=optuna.samplers.NSGAIISampler(seed=0))
    study.optimize(objective, n_trials=trials)
    return study


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=6)
    parser.add_argument("--target", default="stm32h743")
    parser.add_argument("--latency-budget", type=float, default=2e-3, help="seconds")
    parser.add_argument("--db", default=None, help="mpq store (default ~/.cache/mpq/mpq.db)")
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = run_study(args.trials, args.target, args.latency_budget, args.db)
    print("width  accuracy  latency_s  mpq run")
    for trial in sorted(study.best_trials, key=lambda t: t.values[1]):
        print(
            f"{trial.params['width']:>5}  {trial.values[0]:.4f}    {trial.values[1]:.3e}  {trial.user_attrs['mpq_run']}"
        )


if __name__ == "__main__":
    main()
