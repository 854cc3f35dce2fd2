"""omega: the DESIGN formula with hand-computed quantization errors, and its documented edge cases."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

import mpq
from mpq._omega import OMEGA_COLUMNS, omega
from mpq._quantizer import LEGACY_QUANTIZER
from mpq.exceptions import InvalidParameterError, UnknownNameError

TRACES_W = {"0": 0.8, "2": 0.5, "4": 1.2}
TRACES_A = {"0": 0.3, "2": 0.4, "4": 0.6}


def _table(traces_w=TRACES_W, traces_a=TRACES_A, prefix="hessian") -> pd.DataFrame:
    rows = [{"layer": k, "probe": f"{prefix}_w", "candidate": None, "value": v} for k, v in traces_w.items()]
    rows += [{"layer": k, "probe": f"{prefix}_a", "candidate": None, "value": v} for k, v in (traces_a or {}).items()]
    return pd.DataFrame(rows)


def _int_round(x: np.ndarray, scale: np.ndarray, levels: int) -> np.ndarray:
    return np.clip(np.round(x / scale), -levels, levels) * scale  # np.round: ties to even


def _inputs(task) -> dict[str, list[np.ndarray]]:
    captured: dict[str, list[np.ndarray]] = {name: [] for name in TRACES_W}
    modules = dict(task.model.named_modules())
    handles = [
        modules[n].register_forward_pre_hook(lambda m, a, n=n: captured[n].append(a[0].double().numpy()))
        for n in TRACES_W
    ]
    with torch.no_grad():
        for x, _ in task.calibration:
            task.model(x)
    for h in handles:
        h.remove()
    return captured


def test_omega_is_half_trace_per_element_times_squared_error(mlp_task):
    # mpq's first quantizer (symmetric, max ranges) has errors simple enough to write out here;
    # test_quantizer.py checks that omega's errors are apply's for the calibrated quantizer.
    legacy = mpq.calibrate(mlp_task.model, mlp_task.calibration, quantizer=LEGACY_QUANTIZER)
    result = omega(mlp_task, _table(), ["w4a8", "w8a8", "w4a16"], quantizer=legacy)
    assert list(result.columns) == OMEGA_COLUMNS
    assert list(zip(result["layer"], result["candidate"]))[:3] == [("0", "w4a8"), ("0", "w8a8"), ("0", "w4a16")]
    inputs = _inputs(mlp_task)
    n_samples = sum(len(b[0]) for b in mlp_task.calibration)
    modules = dict(mlp_task.model.named_modules())
    for row in result.itertuples():
        w = modules[row.layer].weight.detach().double().numpy()
        bits_w = int(row.candidate[1])
        levels = 2 ** (bits_w - 1) - 1
        scale = np.abs(w).max(axis=1, keepdims=True) / levels  # int<b>_pc: per output channel
        weight_err = ((_int_round(w, scale, levels) - w) ** 2).sum()
        acts = inputs[row.layer]
        if row.candidate.endswith("a8"):  # int8 per tensor, range calibrated on the same batches
            amax = max(np.abs(a).max() for a in acts)
            act_err = sum(((_int_round(a, amax / 127, 127) - a) ** 2).sum() for a in acts) / n_samples
        else:  # fp16: a cast
            act_err = (
                sum(((a.astype(np.float32).astype(np.float16).astype(np.float64) - a) ** 2).sum() for a in acts)
                / n_samples
            )
        assert row.weight_sq_err == pytest.approx(weight_err, rel=1e-5)
        assert row.act_sq_err == pytest.approx(act_err, rel=1e-4, abs=1e-12)
        n_w, n_a = w.size, acts[0].shape[1]
        expected = 0.5 * (TRACES_W[row.layer] / n_w * weight_err + TRACES_A[row.layer] / n_a * act_err)
        assert row.omega == pytest.approx(expected, rel=1e-4)
        assert row.omega == pytest.approx(row.omega_w + row.omega_a)
        assert row.act_probe == "hessian_a"
    by = result.set_index(["layer", "candidate"])["omega"]
    assert all(by[(n, "w4a8")] > by[(n, "w8a8")] for n in TRACES_W)  # fewer bits, more loss


def test_without_activation_traces_the_activation_term_is_zero_and_stated(mlp_task):
    result = omega(mlp_task, _table(traces_a=None, prefix="fisher"), ["w4a8"], probe="fisher")
    assert (result["omega_a"] == 0).all() and result["act_probe"].isna().all()
    assert (result["act_sq_err"] > 0).all() and (result["omega"] == result["omega_w"]).all()


def test_measured_omega_is_the_measured_increase(mlp_task):
    rows = [
        {"layer": n, "probe": "measured", "candidate": c, "value": v}
        for n, v in TRACES_W.items()
        for c, v in (("w4a8", v), ("w8a8", v / 10))
    ]
    result = omega(mlp_task, pd.DataFrame(rows), ["w8a8", "w4a8"], probe="measured")
    assert list(result["omega"]) == [0.08, 0.8, 0.05, 0.5, 0.12, 1.2]
    assert result["omega_w"].isna().all()


def test_missing_rows_and_bad_arguments_are_one_line_errors(mlp_task):
    missing = r"sensitivity: no hessian_w value for 4; run mpq.probe\(task, \['hessian_w'"
    with pytest.raises(InvalidParameterError, match=missing):
        omega(mlp_task, _table(traces_w={"0": 1.0, "2": 1.0}), ["w4a8"])
    with pytest.raises(InvalidParameterError, match="no measured value for 0 at w4a8"):
        omega(mlp_task, _table(), ["w4a8"], probe="measured")
    with pytest.raises(InvalidParameterError, match="The 'probe' parameter of omega must be one of 'hessian', 'fis"):
        omega(mlp_task, _table(), ["w4a8"], probe="hessian_w")
    with pytest.raises(InvalidParameterError, match="The 'candidates' parameter of omega must be a list"):
        omega(mlp_task, _table(), "w4a8")
    with pytest.raises(InvalidParameterError, match="The 'sensitivity' parameter of omega must be the table"):
        omega(mlp_task, {"layer": []}, ["w4a8"])
    with pytest.raises(UnknownNameError):
        omega(mlp_task, _table(), ["w5a8"])


@pytest.mark.filterwarnings("ignore:.*relative standard error:mpq.exceptions.SensitivityWarning")
def test_embedding_layers_have_no_activation_term():
    from torch import nn

    import mpq

    class Bag(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Embedding(10, 4)
            self.head = nn.Linear(4, 3)

        def forward(self, ids):
            return self.head(self.embed(ids).mean(1))

    torch.manual_seed(0)
    ids = torch.randint(0, 10, (6, 5))
    task = mpq.Task("bag", Bag().eval(), [(ids, torch.randint(0, 3, (6,)))], nn.functional.cross_entropy)
    from mpq._probes import ProbeSettings, probe

    table = probe(task, settings=ProbeSettings(max_samples=400))
    assert set(table.loc[table["probe"] == "hessian_a", "layer"]) == {"head"}
    result = omega(task, table, ["w4a8"])
    embed = result[result["layer"] == "embed"].iloc[0]
    assert embed["act_sq_err"] == 0 and embed["omega_a"] == 0 and pd.isna(embed["act_probe"])
    assert embed["omega"] > 0
