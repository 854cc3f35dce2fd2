"""Fixtures of the probe tests: one torch thread, and the tiny tasks of probe_cases.py."""

from __future__ import annotations

import pytest
import torch

import probe_cases


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def softmax_task():
    return probe_cases.softmax_regression_task()


@pytest.fixture
def mlp_task():
    return probe_cases.tanh_mlp_task()


@pytest.fixture
def cnn_task():
    return probe_cases.tiny_cnn_task()
