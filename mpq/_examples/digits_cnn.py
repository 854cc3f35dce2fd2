"""``example:digits-cnn``: a small CNN trained on scikit-learn's bundled 8x8 digits images.

Training is seeded and takes a few seconds on 2 cores; the weights are cached as safetensors in
the user cache directory, keyed by the training recipe, so later runs load them.
"""

from __future__ import annotations

import logging
import tempfile
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from mpq._examples._cache import cache_dir
from mpq._examples._registry import register_example
from mpq._task import Task, model_device

logger = logging.getLogger("mpq.examples.digits_cnn")

# Bump when the architecture, split or training changes: the cache key follows it.
RECIPE = "digits-cnn-v1"
SEED = 0
N_TEST = 497
N_CALIBRATION = 256
BATCH_SIZE = 64
EPOCHS = 40
LEARNING_RATE = 3e-3


def build_model() -> nn.Sequential:
    """The untrained architecture: four 3x3 convolutions and two linear layers."""
    return nn.Sequential(
        OrderedDict(
            conv1=nn.Conv2d(1, 16, 3, padding=1),
            relu1=nn.ReLU(),
            conv2=nn.Conv2d(16, 32, 3, padding=1),
            relu2=nn.ReLU(),
            pool1=nn.MaxPool2d(2),
            conv3=nn.Conv2d(32, 32, 3, padding=1),
            relu3=nn.ReLU(),
            conv4=nn.Conv2d(32, 64, 3, padding=1),
            relu4=nn.ReLU(),
            pool2=nn.MaxPool2d(2),
            flatten=nn.Flatten(),
            fc1=nn.Linear(64 * 2 * 2, 128),
            relu5=nn.ReLU(),
            fc2=nn.Linear(128, 10),
        )
    )


def _splits() -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = torch.tensor(digits.images / 16.0, dtype=torch.float32).unsqueeze(1)
    labels = torch.tensor(digits.target, dtype=torch.long)
    order = torch.from_numpy(np.random.default_rng(SEED).permutation(len(labels)))
    test, train = order[:N_TEST], order[N_TEST:]
    calibration = train[:N_CALIBRATION]  # a subset of the training images, as in deployment
    return {
        "train": (images[train], labels[train]),
        "calibration": (images[calibration], labels[calibration]),
        "test": (images[test], labels[test]),
    }


def _train(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> None:
    # One thread: batches this small run fastest on one core (two threads spin against each
    # other under load), and the result does not depend on the machine's core count.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        _train_epochs(model, images, labels)
    finally:
        torch.set_num_threads(threads)


def _train_epochs(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> None:
    generator = torch.Generator().manual_seed(SEED)
    optimizer = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE)
    loss_fn = nn.CrossEntropyLoss()
    model.train()
    for epoch in range(EPOCHS):
        order = torch.randperm(len(labels), generator=generator)
        for start in range(0, len(labels), BATCH_SIZE):
            batch = order[start : start + BATCH_SIZE]
            optimizer.zero_grad()
            loss_fn(model(images[batch]), labels[batch]).backward()
            optimizer.step()
        logger.debug("digits-cnn epoch %d done", epoch + 1)
    model.eval()


def trained_model(splits: dict | None = None) -> nn.Sequential:
    """The trained CNN, from the cache or trained now (seeded) and cached."""
    path = cache_dir() / f"{RECIPE}.safetensors"
    model = build_model()
    if path.is_file():
        model.load_state_dict(load_file(path))
        return model.eval()
    logger.info("training %s (seeded, a few seconds); caching it at %s", RECIPE, path)
    torch.manual_seed(SEED)
    model = build_model()
    images, labels = (splits or _splits())["train"]
    _train(model, images, labels)
    # A file of this process's own, then an atomic rename: a concurrent run never reads half a file,
    # and two first runs training at once never write into, or rename away, each other's file.
    with tempfile.NamedTemporaryFile(dir=path.parent, prefix=f"{RECIPE}.", suffix=".tmp", delete=False) as tmp:
        pass
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, tmp.name)
    Path(tmp.name).replace(path)
    return model


def accuracy(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> float:
    """Top-1 accuracy of ``model`` on a labelled set, in [0, 1], on the model's device."""
    device = model_device(model)
    with torch.no_grad():
        return float((model(images.to(device)).argmax(dim=1) == labels.to(device)).float().mean())


@register_example("digits-cnn")
def make_task() -> Task:
    splits = _splits()
    model = trained_model(splits)
    cal_images, cal_labels = splits["calibration"]
    test_images, test_labels = splits["test"]
    calibration = [
        (cal_images[i : i + BATCH_SIZE], cal_labels[i : i + BATCH_SIZE]) for i in range(0, N_CALIBRATION, BATCH_SIZE)
    ]
    return Task(
        name="digits-cnn",
        model=model,
        calibration=calibration,
        loss_fn=nn.functional.cross_entropy,
        evaluate=lambda m: accuracy(m, test_images, test_labels),
        metric_name="accuracy",
    )
