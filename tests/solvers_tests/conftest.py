"""Fixtures of the solvers tests: small hand-made tables with hand-computed answers."""

from __future__ import annotations

import pandas as pd
import pytest


def make_tables(rows: list[tuple]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Tables from rows (layer, candidate, omega, weight_bytes, latency_s, sram_bytes)."""
    frame = pd.DataFrame(rows, columns=["layer", "candidate", "omega", "weight_bytes", "latency_s", "sram_bytes"])
    return frame[["layer", "candidate", "omega"]], frame.drop(columns="omega")


@pytest.fixture
def three_layers() -> tuple[pd.DataFrame, pd.DataFrame]:
    """Three layers, int4 / int8 / fp16.

    Enumeration by hand: the cheapest allocation is all int4 (weight 60, loss 9); with
    weight_bytes <= 90 the best is conv:int8, fc1:int8, fc2:int4 (weight 90, loss 3.5).
    """
    return make_tables(
        [
            ("conv", "int4", 4.0, 10, 1.0, 100),
            ("conv", "int8", 1.0, 20, 2.0, 200),
            ("conv", "fp16", 0.0, 40, 4.0, 400),
            ("fc1", "int4", 3.0, 20, 1.0, 50),
            ("fc1", "int8", 0.5, 40, 2.0, 100),
            ("fc1", "fp16", 0.0, 80, 4.0, 200),
            ("fc2", "int4", 2.0, 30, 1.0, 50),
            ("fc2", "int8", 1.5, 60, 2.0, 100),
            ("fc2", "fp16", 0.0, 120, 4.0, 200),
        ]
    )


@pytest.fixture
def message_example() -> tuple[pd.DataFrame, pd.DataFrame]:
    """Two layers whose weight_bytes cannot go below 231000 (DESIGN's error example)."""
    return make_tables(
        [
            ("a", "int4", 0.5, 100000, 0.0005, 10),
            ("a", "int8", 0.1, 200000, 0.0004, 20),
            ("b", "int4", 0.4, 131000, 0.0004, 10),
            ("b", "int8", 0.1, 262000, 0.0003, 20),
        ]
    )
