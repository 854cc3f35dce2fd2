"""A second model for comparisons: a two-layer MLP on scikit-learn's digits, trained in a second.

Usable as ``mpq search --model tests/app_tests/digits_mlp.py:make_task``.
"""

import numpy as np
import torch
from sklearn.datasets import load_digits
from torch import nn

import mpq


def make_task() -> mpq.Task:
    """The MLP (64 -> 32 -> 10), trained full-batch with a fixed seed; metric: test accuracy."""
    digits = load_digits()
    images = torch.tensor(digits.data / 16.0, dtype=torch.float32)
    labels = torch.tensor(digits.target, dtype=torch.long)
    order = torch.from_numpy(np.random.default_rng(0).permutation(len(labels)))
    test, train = order[:497], order[497:]
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(150):
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(images[train]), labels[train]).backward()
        optimizer.step()
    model.eval()

    def accuracy(m: nn.Module) -> float:
        with torch.no_grad():
            return float((m(images[test]).argmax(1) == labels[test]).float().mean())

    calibration = [(images[train[i : i + 64]], labels[train[i : i + 64]]) for i in range(0, 256, 64)]
    return mpq.Task("digits-mlp", model, calibration, nn.functional.cross_entropy, accuracy, "accuracy")
