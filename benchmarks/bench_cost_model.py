"""How far a roofline cost model (``cpu-x86`` by default, or a GPU's) is from latencies measured on this machine.

For each model and batch size, every layer is timed at every candidate of the target with
:func:`mpq._measure.measure_latency` (the real kernel of the candidate's path: int8
``torch._int_mm``, dequantize + fp32 on a CPU or fp16 on CUDA, native fp16, fp8
``torch._scaled_mm`` on CUDA), and ``hwmodels.cost_table`` gives the model's ``latency_s`` for
the same pairs. Printed per model and batch:

* per layer: the absolute percentage error ``|model - measured| / measured`` averaged over the
  candidates (MAPE), the median ratio model / measured, and the Spearman rank correlation of
  the candidates within the layer (the ranking the solver trades off);
* overall: MAPE, median ratio, Spearman over all (layer, candidate) pairs, and per candidate
  the whole-network latency (every layer at that candidate), model against measured.

Then the model's own numbers (``launch_overhead_s``, ``quantize_overhead_s``, the peak of every
executed class, the convolution peak of each class the file's ``[conv_peak_ops_per_s]`` lists,
``dequant_elems_per_s``, ``dram_bytes_per_s``) are fitted to all the measurements (least squares
on log(model / measured)), written to a calibrated copy of the device file and scored with
``hwmodels.cost_table`` itself: the change proposed for the device file.

    .venv/bin/python benchmarks/bench_cost_model.py                       # digits-cnn, minilm-small, minilm; batch 1 and 32
    .venv/bin/python benchmarks/bench_cost_model.py --examples digits-cnn --batch-sizes 1
    python benchmarks/bench_cost_model.py --target h100-sxm --device cuda \
        --examples digits-cnn benchmarks/minilm_arch.py:make_task          # on an H100

Runs with one torch thread by default (``--threads``): the machine's cores are shared, and one
thread makes repeats stable. The fitted numbers are then per thread.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import re
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from scipy.optimize import least_squares
from scipy.stats import spearmanr
from torch import nn

import hwmodels
import mpq
from hwmodels._gpu import RooflineSpec, executed_peaks, stored_weights
from mpq._formats import get_candidate
from mpq._measure import measure_latency
from mpq._measure.api import _recorded_inputs, _resize_batch
from mpq._onnx import ONNX_OPSET, model_proto
from mpq._onnx_latency import _options
from mpq._quantizer import QuantizerSettings
from mpqvocab import format_spec

FLOAT = "wfp32afp32"
# What a --csv file keeps of each pair's measurement (--pairs reads them back).
MEASURED_COLUMNS = ("layer", "candidate", "latency_s", "latency_min_s", "dequant_s", "kernel")


def device_with_float(target: str, folder: Path) -> Path:
    """The target's device file, or a copy whose candidates include the float model's (the
    layers a CPU export leaves in float)."""
    source = hwmodels.device_dir() / f"{target}.toml"
    if FLOAT in hwmodels.load_device(target).candidates:
        return source
    text = source.read_text()
    patched, count = re.subn(r"^candidates = \[(.*)\]$", rf'candidates = [\1, "{FLOAT}"]', text, flags=re.M)
    assert count == 1, f"{target}.toml's candidates line moved"
    path = folder / f"{target}-fp32.toml"
    path.write_text(patched)
    return path


# The cost model's numbers fitted here (TOML keys) and their units; plus the peak (ops/s, a key
# of [peak_ops_per_s]) of every class the measured pairs executed in.
FITTED = {
    "launch_overhead_s": "s",
    "dequant_elems_per_s": "elems/s",
    "dram_bytes_per_s": "B/s",
    "quantize_overhead_s": "s",
}


def format_class(fmt_name: str) -> str:
    """The arithmetic class hwmodels gives a format (the vocabulary's catalogue)."""
    return format_spec(fmt_name).arith_class


class _OneLayer(nn.Module):
    """One layer of a model as a model of its own, to export the layer's node unit alone."""

    def __init__(self, layer: nn.Module) -> None:
        super().__init__()
        self.layer = layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer(x)


def _shape_key(module: nn.Module, x: torch.Tensor) -> tuple:
    """What a layer's node unit's time depends on: its kind, weight and input shapes, bias and
    convolution geometry (MiniLM's six blocks repeat a few such keys)."""
    geometry = tuple(getattr(module, name, None) for name in ("stride", "padding", "dilation", "groups"))
    bias = getattr(module, "bias", None) is not None
    return (type(module).__name__, tuple(module.weight.shape), tuple(x.shape), bias, geometry)


def _timed_session(ort, proto: bytes, feed: dict[str, np.ndarray], warmup: int, repeats: int) -> np.ndarray:
    """Seconds of ``repeats`` runs of a model in ONNX Runtime (torch's thread count), after ``warmup``."""
    session = ort.InferenceSession(proto, _options(ort), providers=["CPUExecutionProvider"])
    for _ in range(warmup):
        session.run(None, feed)
    seconds = np.empty(repeats)
    for i in range(repeats):
        start = time.perf_counter_ns()
        session.run(None, feed)
        seconds[i] = (time.perf_counter_ns() - start) * 1e-9
    return seconds


def _optimized_ops(ort, proto: bytes, folder: Path) -> str:
    """The op types ONNX Runtime runs for a model (its saved optimized graph), in order."""
    import onnx

    options = _options(ort)
    options.optimized_model_filepath = str(folder / "optimized.onnx")
    options.log_severity_level = 3  # not its warning that a saved optimized graph is machine-specific
    ort.InferenceSession(proto, options, providers=["CPUExecutionProvider"])
    return "+".join(node.op_type for node in onnx.load(options.optimized_model_filepath).graph.node)


def measure_onnxruntime(
    task: mpq.Task, candidates: list[str], quantizer: QuantizerSettings, batch_size: int, warmup: int, repeats: int
) -> pd.DataFrame:
    """Every (layer, candidate) pair timed in ONNX Runtime: the layer alone, exported as mpq exports
    it (``mpq._onnx.model_proto`` of a one-layer model, calibrated on the layer's recorded inputs,
    so the same integer kernels and quantize nodes), end to end on torch's thread count. Layers of
    one shape key are timed once. ``latency_s`` and ``latency_min_s`` are net of an empty model's
    run (ONNX Runtime's per-call cost, paid once per network, not per layer); ``kernel`` lists
    the optimized graph's ops."""
    import onnx
    import onnxruntime as ort

    model, inputs = task.model, task.calibration[0][0]
    names = list(mpq.layers(model, inputs)["layer"])
    recorded = _recorded_inputs(model, names, inputs)
    first = {name: _resize_batch(calls[0][:1], 1, batch_size) for name, calls in recorded.items()}
    empty = onnx.helper.make_model(
        onnx.helper.make_graph(
            [onnx.helper.make_node("Identity", ["x"], ["y"])],
            "empty",
            [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1])],
            [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1])],
        ),
        opset_imports=[onnx.helper.make_opsetid("", ONNX_OPSET)],
    )
    call_s = _timed_session(ort, empty.SerializeToString(), {"x": np.zeros(1, np.float32)}, warmup, repeats).min()
    timed: dict[tuple, dict] = {}
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for name in names:
            module = model.get_submodule(name)
            key = _shape_key(module, first[name])
            for candidate in candidates:
                if (key, candidate) not in timed:
                    # The layer's inputs on the first calibration batch calibrate its quantizer.
                    calibration = [(recorded[name][0], None)]
                    one = mpq.Task(
                        f"{task.name}:{name}", _OneLayer(module).eval(), calibration, lambda out, _: out.sum()
                    )
                    exported = model_proto(one, {"layer": get_candidate(candidate)}, "onnx", quantizer)
                    proto = exported.SerializeToString()
                    feed = {exported.graph.input[0].name: first[name].numpy()}
                    seconds = _timed_session(ort, proto, feed, warmup, repeats)
                    timed[(key, candidate)] = {
                        "latency_s": max(float(np.median(seconds)) - call_s, 0.0),
                        "latency_min_s": max(float(seconds.min()) - call_s, 0.0),
                        "dequant_s": 0.0,
                        "kernel": _optimized_ops(ort, proto, Path(folder)),
                    }
                rows.append({"layer": name, "candidate": candidate, **timed[(key, candidate)]})
    return pd.DataFrame(rows)


def compare(
    task: mpq.Task,
    target: str,
    where: str,
    batch_size: int,
    warmup: int,
    repeats: int,
    runtime: str = "torch",
    measured: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Measured (on ``where``: cpu or cuda; by ``runtime``: torch's eager kernels, ``mpq measure``,
    or ONNX Runtime; or ``measured``, pairs measured before) and modelled latency of every (layer,
    candidate) pair of a task."""
    device = hwmodels.load_device(target)
    candidates = list(device.candidates)
    example = task.calibration[0][0]
    layer_table = mpq.layers(task.model, example)
    cand_table = mpq.candidate_table(candidates)
    if measured is None and runtime == "onnxruntime":
        quantizer = QuantizerSettings(act_grid=device.activation_grid)
        measured = measure_onnxruntime(task, candidates, quantizer, batch_size, warmup, repeats)
    elif measured is None:
        measured = measure_latency(
            task, candidates, batch_size=batch_size, warmup=warmup, repeats=repeats, device=where
        )
    modelled = hwmodels.cost_table(layer_table, device, cand_table, batch_size=batch_size)
    merged = measured.merge(
        modelled[["layer", "candidate", "latency_s", "bound", "executed_class", "dram_bytes"]],
        on=["layer", "candidate"],
        suffixes=("_measured", "_model"),
    )
    merged = merged.merge(layer_table[["layer", "kind", "macs", "weight_params", "in_elems"]], on="layer")
    merged = merged.merge(cand_table[["candidate", "weight_format", "act_format", "weight_bits"]], on="candidate")
    merged["batch_size"] = batch_size
    merged["ape"] = (merged["latency_s_model"] - merged["latency_s_measured"]).abs() / merged["latency_s_measured"]
    merged["ratio"] = merged["latency_s_model"] / merged["latency_s_measured"]
    return merged


def spearman(a: pd.Series, b: pd.Series) -> float:
    return float(spearmanr(a, b).statistic) if a.nunique() > 1 and b.nunique() > 1 else math.nan


def per_layer(merged: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for layer, group in merged.groupby("layer", sort=False):
        rows.append(
            {
                "layer": layer,
                "kind": group["kind"].iloc[0],
                "measured_us (min..max over candidates)": (
                    f"{group['latency_s_measured'].min() * 1e6:.1f}..{group['latency_s_measured'].max() * 1e6:.1f}"
                ),
                "MAPE_%": 100 * group["ape"].mean(),
                "model/measured (median)": group["ratio"].median(),
                "spearman_candidates": spearman(group["latency_s_model"], group["latency_s_measured"]),
            }
        )
    return pd.DataFrame(rows)


def per_candidate(merged: pd.DataFrame) -> pd.DataFrame:
    """Whole-network latency at each candidate (every layer at it), and the biggest layer's kernel."""
    totals = merged.groupby("candidate", sort=False).agg(
        measured_ms=("latency_s_measured", "sum"),
        model_ms=("latency_s_model", "sum"),
        dequant_s=("dequant_s", "sum"),
        MAPE_pct=("ape", "mean"),
    )
    totals["dequant_share"] = totals.pop("dequant_s") / totals["measured_ms"]
    totals[["measured_ms", "model_ms"]] *= 1e3
    totals["MAPE_pct"] *= 100
    biggest = merged.loc[merged.groupby("candidate", sort=False)["macs"].idxmax()]
    totals["kernel of the biggest layer"] = biggest.set_index("candidate")["kernel"]
    return totals


def summary(merged: pd.DataFrame) -> dict[str, float]:
    within = [
        spearman(g["latency_s_model"], g["latency_s_measured"]) for _, g in merged.groupby(["layer", "batch_size"])
    ]
    totals = merged.groupby(["candidate", "batch_size"])[["latency_s_model", "latency_s_measured"]].sum()
    return {
        "pairs": len(merged),
        "MAPE_%": 100 * merged["ape"].mean(),
        "median_APE_%": 100 * merged["ape"].median(),
        "model/measured (median)": merged["ratio"].median(),
        "spearman_all_pairs": spearman(merged["latency_s_model"], merged["latency_s_measured"]),
        "spearman_within_layer (mean)": float(np.nanmean(within)),
        "spearman_network_totals": spearman(totals["latency_s_model"], totals["latency_s_measured"]),
    }


# ---------------------------------------------------------------------------------------------
# Calibration: fit the model's own numbers to the measurements


# A convolution peak's key among the fitted numbers: "conv int8" is [conv_peak_ops_per_s]'s int8.
CONV = "conv "


def roofline(params: dict[str, float], merged: pd.DataFrame, base: RooflineSpec) -> np.ndarray:
    """hwmodels' roofline (hwmodels/_gpu.py), from the merged columns, with ``params`` in place of
    the ``base`` device spec's numbers; peaks by executed class (``conv <class>``: its convolution
    peak)."""
    spec = dataclasses.replace(
        base,
        peak_ops_per_s={k: v for k, v in params.items() if k not in FITTED and not k.startswith(CONV)},
        conv_peak_ops_per_s={k.removeprefix(CONV): v for k, v in params.items() if k.startswith(CONV)},
    )
    batch = merged["batch_size"].to_numpy(dtype=float)
    executed = merged["executed_class"]
    lookup = merged["kind"].to_numpy() == "embedding"
    stored = merged[["weight_bits"]].assign(weight_class=merged["weight_format"].map(format_class))
    _, weight_class = stored_weights(stored, executed, spec)
    weight_converts = weight_class != executed.to_numpy()
    act_converts = merged["act_format"].map(format_class).to_numpy() != executed.to_numpy()
    dequant = np.where(
        lookup,
        0.0,
        weight_converts * merged["weight_params"].to_numpy() + act_converts * batch * merged["in_elems"].to_numpy(),
    )
    peak = executed_peaks(merged["kind"], executed, spec)
    compute = 2 * merged["macs"].to_numpy() * batch / peak + dequant / params["dequant_elems_per_s"]
    memory = merged["dram_bytes"].to_numpy() / params["dram_bytes_per_s"]
    quantizes_input = ~lookup & (merged["act_format"].to_numpy() != "fp32")
    return np.maximum(compute, memory) + params["launch_overhead_s"] + quantizes_input * params["quantize_overhead_s"]


def nominal_params(target: str, merged: pd.DataFrame) -> dict[str, float]:
    """The device file's numbers the roofline of ``merged``'s pairs uses: the fixed costs, the
    peak of every executed class, and the convolution peak of those the file lists one for."""
    spec = hwmodels.load_device(target).spec
    executed = sorted(merged["executed_class"].unique())
    convolved = sorted(merged.loc[merged["kind"].str.startswith("conv"), "executed_class"].unique())
    return {
        "launch_overhead_s": spec.launch_overhead_s,
        "dequant_elems_per_s": spec.dequant_elems_per_s,
        "dram_bytes_per_s": spec.dram_bytes_per_s,
        "quantize_overhead_s": spec.quantize_overhead_s,
        **{cls: spec.peak_ops_per_s[cls] for cls in executed},
        **{CONV + cls: spec.conv_peak_ops_per_s[cls] for cls in convolved if cls in spec.conv_peak_ops_per_s},
    }


def units(params: dict[str, float]) -> dict[str, str]:
    return {name: FITTED.get(name, "ops/s") for name in params}


def fit(target: str, merged: pd.DataFrame) -> dict[str, float]:
    """Least squares on log(model / measured) over every pair, parameters in log10."""
    start = nominal_params(target, merged)
    names = list(start)
    measured = np.log(merged["latency_s_measured"].to_numpy())
    base = hwmodels.load_device(target).spec  # read once, not at every residual evaluation

    def residuals(log10_values: np.ndarray) -> np.ndarray:
        params = dict(zip(names, 10.0**log10_values))
        return np.log(roofline(params, merged, base)) - measured

    # Within three decades of the device file: a number no pair depends on (the bandwidth when no
    # pair is memory-bound) then stays finite instead of running off.
    # A fixed cost the device file leaves at 0 starts at 1 us (log10 has no 0).
    x0 = np.log10([start[n] or 1e-6 for n in names])
    solution = least_squares(residuals, x0, bounds=(x0 - 3, x0 + 3), method="trf")
    return dict(zip(names, 10.0**solution.x))


def calibrated_device(target: str, params: dict[str, float], folder: Path, note: str) -> Path:
    """A copy of the target's device file (a name or a path) with the fitted numbers (each with
    its source comment): top-level keys, ``[peak_ops_per_s]`` and ``[conv_peak_ops_per_s]``."""
    source = hwmodels.load_device(target).path
    target = source.stem
    # The file's top level and each table, split at their headers: a class key is in two tables.
    parts = re.split(r"^(\[[a-z_]+\])$", source.read_text(), flags=re.MULTILINE)
    sections = {"": parts[0], **dict(zip(parts[1::2], parts[2::2]))}
    for key, value in params.items():
        if key in FITTED:
            section = ""
        else:
            section = "[conv_peak_ops_per_s]" if key.startswith(CONV) else "[peak_ops_per_s]"
        key = key.removeprefix(CONV)
        text = sections[section]
        if not re.search(rf"^{key} = ", text, flags=re.MULTILINE):  # an optional number the file leaves out
            text = re.sub(
                r"^(launch_overhead_s = .*)$", rf"\1\n{key} = 0  # nominal", text, count=1, flags=re.MULTILINE
            )
        text, count = re.subn(
            rf"^{key} = [^#\n]*#.*$", f"{key} = {value:.4g}  # fitted: {note}", text, flags=re.MULTILINE
        )
        if count != 1:
            raise RuntimeError(
                f"{target}.toml: no single line for {key!r} in {section or 'the top level'}; update the benchmark."
            )
        sections[section] = text
    path = folder / f"{target}-calibrated.toml"
    path.write_text("".join(header + text if header else text for header, text in sections.items()))
    return path


def calibrated_scores(merged: pd.DataFrame, tasks: dict[str, mpq.Task], device_path: Path) -> pd.DataFrame:
    """The calibrated device file scored through hwmodels.cost_table itself."""
    parts = []
    for (example, batch), group in merged.groupby(["example", "batch_size"], sort=False):
        task = tasks[example]
        layer_table = mpq.layers(task.model, task.calibration[0][0])
        costs = hwmodels.cost_table(
            layer_table, device_path, mpq.candidate_table(list(group["candidate"].unique())), batch_size=batch
        )
        joined = group.drop(columns=["latency_s_model"]).merge(
            costs[["layer", "candidate", "latency_s"]].rename(columns={"latency_s": "latency_s_model"}),
            on=["layer", "candidate"],
        )
        joined["ape"] = (joined["latency_s_model"] - joined["latency_s_measured"]).abs() / joined["latency_s_measured"]
        joined["ratio"] = joined["latency_s_model"] / joined["latency_s_measured"]
        parts.append(joined)
    return pd.concat(parts, ignore_index=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--examples",
        nargs="+",
        default=["digits-cnn", "minilm-small", "minilm"],
        help="built-in example names or path/to/file.py:factory specs",
    )
    parser.add_argument("--target", default="cpu-x86", help="device file whose roofline model is compared")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="where the layers are timed")
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[1, 32])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument(
        "--runtime",
        default="torch",
        choices=["torch", "onnxruntime"],
        help="time each layer's eager torch kernels (mpq measure) or its exported node unit in ONNX Runtime",
    )
    parser.add_argument("--csv", type=Path, help="write every measured and modelled pair here")
    parser.add_argument("--calibrated", type=Path, help="write the calibrated device file here")
    parser.add_argument(
        "--pairs", type=Path, help="fit the pairs a --csv run measured (of --examples, --batch-sizes) instead of timing"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    pd.set_option("display.width", 200)
    pd.set_option("display.max_colwidth", 60)
    pd.set_option("display.float_format", lambda v: f"{v:.3g}")
    where = (
        torch.cuda.get_device_name()
        if args.device == "cuda"
        else f"CPU capability {torch.backends.cpu.get_cpu_capability()}, {torch.get_num_threads()} thread(s)"
    )
    print(f"torch {torch.__version__}, {where}; model: {args.target} (nominal numbers)\n")

    folder = tempfile.TemporaryDirectory()
    # ONNX Runtime keeps float layers float: their pairs are fitted too (cpu-x86 does not list them).
    device = str(device_with_float(args.target, Path(folder.name))) if args.runtime == "onnxruntime" else args.target
    tasks, parts = {}, []
    for example in args.examples:
        tasks[example] = mpq.load_task(example if ":" in example else f"example:{example}")
        for batch in args.batch_sizes:
            start = time.perf_counter()
            before = None
            if args.pairs:
                stored = pd.read_csv(args.pairs)
                stored = stored[(stored["example"] == example) & (stored["batch_size"] == batch)]
                before = stored.rename(columns={"latency_s_measured": "latency_s"})[list(MEASURED_COLUMNS)]
            merged = compare(
                tasks[example], device, args.device, batch, args.warmup, args.repeats, args.runtime, before
            )
            parts.append(merged.assign(example=example))
            print(f"=== {example}, batch {batch} ({time.perf_counter() - start:.0f} s to measure)")
            print(per_layer(merged).to_string(index=False))
            print(per_candidate(merged).to_string())
            print(pd.Series(summary(merged)).to_string(), "\n")

    everything = pd.concat(parts, ignore_index=True)
    if args.csv:
        everything.to_csv(args.csv, index=False)
    print(f"=== all examples and batches, nominal {args.target}")
    print(pd.Series(summary(everything)).to_string())
    nominal_values = nominal_params(device, everything)
    nominal = roofline(nominal_values, everything, hwmodels.load_device(device).spec)
    assert np.allclose(nominal, everything["latency_s_model"], rtol=1e-9), "roofline() drifted from hwmodels"

    fitted = fit(device, everything)
    timed_on = "CUDA" if args.device == "cuda" else f"{torch.get_num_threads()} thread(s)"
    if args.runtime == "onnxruntime":
        timed_on = f"--runtime onnxruntime, {timed_on}"
    note = (
        f"bench_cost_model.py, {timed_on}, "
        f"{', '.join(Path(e).name for e in args.examples)} at batch {', '.join(map(str, args.batch_sizes))}"
    )
    with folder:
        rescored = calibrated_scores(everything, tasks, calibrated_device(device, fitted, Path(folder.name), note))
        if args.calibrated:  # the target's own file (its own candidates), with the fitted numbers
            args.calibrated.write_text(calibrated_device(args.target, fitted, Path(folder.name), note).read_text())
    print(f"\n=== proposed {args.target}.toml numbers (fitted to all pairs above)")
    print(pd.DataFrame({"nominal": nominal_values, "fitted": fitted, "unit": units(fitted)}).to_string())
    print(f"\n=== calibrated {args.target} (scored by hwmodels.cost_table)")
    print(pd.Series(summary(rescored)).to_string())
    print("\n=== per example and batch: nominal -> calibrated")
    print(headline(everything, rescored).to_string(index=False))


def headline(nominal: pd.DataFrame, calibrated: pd.DataFrame) -> pd.DataFrame:
    """One row per (example, batch): MAPE and Spearman of the nominal and the calibrated model."""
    rows = []
    for (example, batch), group in nominal.groupby(["example", "batch_size"], sort=False):
        after = calibrated[(calibrated["example"] == example) & (calibrated["batch_size"] == batch)]
        before_stats, after_stats = summary(group), summary(after)
        rows.append(
            {
                "example": example,
                "batch": batch,
                "pairs": len(group),
                "measured_ms (all layers, w8a8)": 1e3
                * group.loc[group["candidate"] == "w8a8", "latency_s_measured"].sum(),
                "MAPE_% nominal": before_stats["MAPE_%"],
                "model/measured nominal": before_stats["model/measured (median)"],
                "spearman nominal": before_stats["spearman_all_pairs"],
                "spearman within layer nominal": before_stats["spearman_within_layer (mean)"],
                "MAPE_% calibrated": after_stats["MAPE_%"],
                "spearman calibrated": after_stats["spearman_all_pairs"],
                "spearman within layer calibrated": after_stats["spearman_within_layer (mean)"],
            }
        )
    return pd.DataFrame(rows)


if __name__ == "__main__":
    main()
