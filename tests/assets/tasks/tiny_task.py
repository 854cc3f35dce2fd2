"""A tiny seeded task for the fast twins of the subprocess tests (kill -9, concurrent searches).

Loads in milliseconds and hashes the same in every process (seeded weights and data), so a run
one process stored is "this same search" for another. With ``MPQ_TEST_SLOW_LOSS=SECONDS`` in
the environment every loss evaluation sleeps that long: a probe slow enough to be killed
mid-way, without changing what is searched (the loss's value, the model and the data).
"""

import os
import time

import torch
from torch import nn

import mpq


def make_task() -> mpq.Task:
    generator = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 8), nn.ReLU(), nn.Linear(8, 3)
    ).eval()
    images = torch.randn(32, 1, 6, 6, generator=generator)
    labels = torch.randint(0, 3, (32,), generator=generator)
    calibration = [(images[i : i + 16], labels[i : i + 16]) for i in (0, 16)]

    def loss_fn(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        # Read here, not closed over: the loss's fingerprint (what makes it this search) holds the
        # values it closes over, and the delay changes nothing it computes.
        delay = float(os.environ.get("MPQ_TEST_SLOW_LOSS", "0"))
        if delay:
            time.sleep(delay)
        return nn.functional.cross_entropy(outputs, targets)

    def evaluate(m: nn.Module) -> float:
        with torch.no_grad():
            return float((m(images).argmax(1) == labels).float().mean())

    return mpq.Task("tiny", model, calibration, loss_fn, evaluate, "accuracy")
