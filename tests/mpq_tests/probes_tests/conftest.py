"""Fixtures of the probe tests: the tiny tasks of probe_cases.py (one torch thread: tests/conftest.py)."""

from __future__ import annotations

import probe_cases
import pytest


@pytest.fixture
def softmax_task():
    return probe_cases.softmax_regression_task()


@pytest.fixture
def mlp_task():
    return probe_cases.tanh_mlp_task()


@pytest.fixture
def cnn_task():
    return probe_cases.tiny_cnn_task()
