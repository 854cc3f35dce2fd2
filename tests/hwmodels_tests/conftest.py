"""Hand-built layer and candidate tables for the cost-model tests (mpq builds them in real runs)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

import hwmodels

# name, weight_format, act_format, weight_bits, act_bits
_CANDIDATES = {
    "w2a2": ("int2_pc", "int2", 2.0, 2.0),
    "w4a4": ("int4_pc", "int4", 4.0, 4.0),
    "w4a8": ("int4_pc", "int8", 4.0, 8.0),
    "w8a8": ("int8_pc", "int8", 8.0, 8.0),
    "w4a16": ("int4_g128", "fp16", 4.125, 16.0),
    "w8a16": ("int8_pc", "fp16", 8.0, 16.0),  # the GPU meaning: weight-only int8
    "w16a16": ("fp16", "fp16", 16.0, 16.0),
    "wfp8afp8": ("fp8_e4m3", "fp8_e4m3", 8.0, 8.0),
    "wfp4afp8": ("fp4_e2m1", "fp8_e4m3", 4.0, 8.0),
    "wnvfp4afp8": ("nvfp4", "fp8_e4m3", 4.5, 8.0),
    "wmxfp4amxfp8": ("mxfp4", "mxfp8", 4.25, 8.25),
}
# CMSIS-NN's s16 kernels run int16 activations (the w8aint16 candidate).
_MCU_CANDIDATES = {
    "w4a8": _CANDIDATES["w4a8"],
    "w8a8": _CANDIDATES["w8a8"],
    "w8aint16": ("int8_pc", "int16", 8.0, 16.0),
}


class Tables:
    """Builders of layer rows and tables, with MACs counted by hand from the shapes."""

    @staticmethod
    def linear(name: str, n_in: int, n_out: int, tokens: int = 1, bias: bool = True) -> dict:
        return dict(
            layer=name,
            kind="linear",
            weight_params=n_in * n_out,
            bias_params=n_out if bias else 0,
            macs=tokens * n_in * n_out,
            in_elems=tokens * n_in,
            out_elems=tokens * n_out,
            weight_shape=(n_out, n_in),
            groups=1,
        )

    @staticmethod
    def conv2d(name: str, c_in: int, c_out: int, k: int, hw_in: int, hw_out: int, groups: int = 1) -> dict:
        params = c_out * (c_in // groups) * k * k
        return dict(
            layer=name,
            kind="conv2d",
            weight_params=params,
            bias_params=c_out,
            macs=params * hw_out * hw_out,
            in_elems=c_in * hw_in * hw_in,
            out_elems=c_out * hw_out * hw_out,
            weight_shape=(c_out, c_in // groups, k, k),
            groups=groups,
        )

    @staticmethod
    def embedding(name: str, num: int, dim: int, tokens: int) -> dict:
        return dict(
            layer=name,
            kind="embedding",
            weight_params=num * dim,
            bias_params=0,
            macs=0,
            in_elems=tokens,
            out_elems=tokens * dim,
            weight_shape=(num, dim),
            groups=1,
        )

    @staticmethod
    def layers(*rows: dict) -> pd.DataFrame:
        return pd.DataFrame(list(rows))

    @staticmethod
    def candidates(*names: str, mcu: bool = False) -> pd.DataFrame:
        source = _MCU_CANDIDATES if mcu else _CANDIDATES
        names = names or tuple(source)
        return pd.DataFrame(
            [(n, *source[n]) for n in names],
            columns=["candidate", "weight_format", "act_format", "weight_bits", "act_bits"],
        )

    @staticmethod
    def row(costs: pd.DataFrame, layer: str, candidate: str) -> pd.Series:
        match = costs[(costs["layer"] == layer) & (costs["candidate"] == candidate)]
        assert len(match) == 1, (layer, candidate)
        return match.iloc[0]


@pytest.fixture(scope="session")
def tables() -> Tables:
    return Tables()


@pytest.fixture
def device_file(tmp_path):
    """Write a device file into tmp_path: ``device_file(name, text)`` or copy a built-in one
    with edits: ``device_file(name, base="zcu104", replace={"luts = 230400": "luts = -1"})``."""

    def write(name: str, text: str | None = None, *, base: str | None = None, replace: dict | None = None) -> Path:
        if base is not None:
            text = (hwmodels.device_dir() / f"{base}.toml").read_text()
            for old, new in (replace or {}).items():
                assert old in text, old
                text = text.replace(old, new)
        path = tmp_path / f"{name}.toml"
        path.write_text(text)
        return path

    return write
