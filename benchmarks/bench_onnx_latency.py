"""Does the cpu-x86 frontier's latency order hold in a real runtime? Predicted vs per-layer vs ONNX Runtime.

For each example, a search on ``--target`` (``cpu-x86``, the VNNI machine's model fitted to ONNX
Runtime, or ``cpu-x86-avx2``; latency_s; the device file's candidates and ``wfp32afp32``, the
float model a CPU user starts from, added to a copy of the file as mpq's own refusal says)
stores the frontier and the uniform baselines. For all-fp32, all-int8 and up to ``--mixed``
frontier points (spread over the predicted latency) it prints:

* ``predicted_s``: the cost model's latency (the run's ``latency_s``);
* ``per_layer_s``: ``mpq measure``'s per-layer times (``mpq.measure_latency``) summed over
  the point's configuration;
* ``ort_s``: the point exported to ONNX (integer kernels, opset 21) and timed end to end in ONNX Runtime
  (``mpq measure --runtime onnxruntime``), and ``ort_qdq_share``: the share of ONNX Runtime's
  profiled node time spent in QuantizeLinear, DequantizeLinear and Cast nodes (what a fused
  integer kernel would not spend);

then the ratios and the Spearman rank correlations between the three over the chosen points, and
whether the predicted order of the frontier points holds in ONNX Runtime. Each example is
searched twice: with the cost model's ``latency_s``, then with ``mpq measure``'s per-layer table
in its place (``mpq search --measured``), the same table ``per_layer_s`` sums. After the first
search, the deployed exports (all-fp32, all-int8, all-w4a16 and onnxruntime's ``quantize_dynamic``)
are timed interleaved, on the sample and, for token inputs, on its first token alone.

    .venv/bin/python benchmarks/bench_onnx_latency.py                      # digits-cnn, minilm-small
    .venv/bin/python benchmarks/bench_onnx_latency.py --target cpu-x86-avx2 --latency "cost model"

One torch thread and one ONNX Runtime thread by default (``--threads``). Times are the minimum
over ``--repeats`` (the deployed exports) or ``--point-repeats`` (the points and layers) by default (``--statistic``): on a shared machine the minimum is the run that
other jobs did not preempt; ``median`` for a quiet one.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from bench_cost_model import FLOAT, device_with_float, spearman  # this folder is on sys.path when run as a script

import hwmodels
import mpq
from mpq._cli_render import formats_summary
from mpq._measure.api import _resize_batch
from mpq._onnx import _first_sample, rebuilt_task
from mpq._onnx_latency import _options, _session_inputs, onnxruntime_latency
from mpq._task import map_leaves


def baseline_points(frontier: pd.DataFrame) -> dict[str, int]:
    """Each uniform baseline's label (``all-w8a8``) and the frontier row that lists it: its own,
    or the frontier point of the same configuration (labelled ``frontier, also all-w8a8``)."""
    return {
        label: int(point)
        for point, labels in zip(frontier["point"], frontier["label"])
        for label in labels.split(", also ")
        if label.startswith("all-")
    }


def chosen_points(run: mpq.Run, mixed: int) -> pd.DataFrame:
    """all-fp32, all-int8 and up to ``mixed`` distinct frontier configurations spread over latency."""
    frontier = run.frontier
    keys = run.assignments.groupby("point")["candidate"].apply(tuple)
    wanted = baseline_points(frontier)
    baselines = frontier[frontier["point"].isin([wanted[f"all-{FLOAT}"], wanted["all-w8a8"]])]
    points = frontier[~frontier["is_baseline"]].assign(key=lambda f: f["point"].map(keys))
    points = points.drop_duplicates("key").sort_values("latency_s")
    points = points[~points["key"].isin(set(baselines["point"].map(keys)))]
    picks = sorted({round(i) for i in np.linspace(0, len(points) - 1, min(mixed, len(points)))})
    mixed_points = points.iloc[picks].drop(columns="key").assign(uniform=False)
    return pd.concat([baselines.assign(uniform=True), mixed_points], ignore_index=True)


QDQ_OPS = {"QuantizeLinear", "DequantizeLinear", "Cast"}


def bench(example: str, device: Path, args: argparse.Namespace, db: str) -> Iterator[tuple[str, pd.DataFrame]]:
    """The table of each search of ``example`` (on the cost model, then on ``mpq measure``'s table) as it is done."""
    task = mpq.load_task(f"example:{example}")
    candidates = list(hwmodels.load_device(device).candidates)
    measured = mpq.measure_latency(task, candidates, batch_size=args.batch_size, repeats=args.point_repeats)
    column = "latency_s" if args.statistic == "median" else "latency_min_s"
    per_layer = measured.set_index(["layer", "candidate"])[column]
    for latency in args.latency:
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", mpq.exceptions.SensitivityWarning)
            run = mpq.search(
                task,
                target=str(device),
                db=db,
                batch_size=args.batch_size,
                max_points=12,
                measured=measured if latency == "measured" else None,
            )
        searched_s = time.perf_counter() - start
        rows = []
        chosen = chosen_points(run, args.mixed)
        ort_s = interleaved_points(run, list(chosen["point"]), args)
        for point in chosen.itertuples():
            assignment = run.assignment(point.point)
            # Profiled for the Q/DQ share only: the time is ort_s's, taken interleaved.
            _, nodes = onnxruntime_latency(run, point.point, batch_size=args.batch_size, repeats=5)
            rows.append(
                {
                    "point": point.point,
                    "label": point.label,
                    "uniform": point.uniform,
                    "configuration": formats_summary(assignment),
                    "predicted_s": point.latency_s,
                    "per_layer_s": sum(per_layer[(layer, c)] for layer, c in assignment.items()),
                    "ort_s": ort_s[point.point],
                    "ort_qdq_share": nodes.loc[nodes["op_type"].isin(QDQ_OPS), "share"].sum(),
                    "metric": point.measured_metric,
                }
            )
        title = f"{example}, batch {args.batch_size}, latency_s from the {latency} (search {searched_s:.0f} s, run {run.id})"
        yield title, pd.DataFrame(rows)
        if latency == args.latency[0]:
            title = f"{example}, batch {args.batch_size}: deployed exports against onnxruntime's quantize_dynamic"
            yield title, deployment(run, args)


def interleaved_points(run: mpq.Run, points: list[int], args: argparse.Namespace) -> dict[int, float]:
    """Each point's export timed end to end in ONNX Runtime, interleaved with the others'
    (``--statistic`` over ``--point-repeats``): one point's time is not another spell of load's."""
    import onnxruntime as ort

    with tempfile.TemporaryDirectory() as folder, warnings.catch_warnings():
        warnings.simplefilter("ignore", mpq.exceptions.DominatedPointWarning)
        sessions = {
            point: ort.InferenceSession(
                str(mpq.export(run, point, "onnx", Path(folder) / f"{point}.onnx")),
                _options(ort),
                providers=["CPUExecutionProvider"],
            )
            for point in points
        }
    sample = _first_sample(rebuilt_task(run).calibration[0][0])
    sample = map_leaves(lambda v: _resize_batch(v, 1, args.batch_size) if isinstance(v, torch.Tensor) else v, sample)
    statistic = np.min if args.statistic == "min" else np.median
    return {
        point: float(statistic(seconds)) for point, seconds in interleaved(sessions, sample, args.point_repeats).items()
    }


def deployment(run: mpq.Run, args: argparse.Namespace) -> pd.DataFrame:
    """The run's all-fp32, all-int8 and all-w4a16 exports beside onnxruntime's own quantize_dynamic
    (int8 per-channel weights, dynamic uint8 inputs) of the all-fp32 export, timed interleaved in
    one process (``--statistic`` over ``--repeats``), with each output's mean cosine to all-fp32's
    on the last calibration batch; token inputs are also timed at their first token."""
    import onnxruntime as ort
    from onnxruntime.quantization import QuantType, quantize_dynamic

    task = rebuilt_task(run)
    points = baseline_points(run.frontier)
    with tempfile.TemporaryDirectory() as folder, warnings.catch_warnings():
        warnings.simplefilter("ignore", mpq.exceptions.DominatedPointWarning)
        files = {
            name: mpq.export(run, points[label], "onnx", Path(folder) / f"{name}.onnx")
            for name, label in (("all-fp32", f"all-{FLOAT}"), ("all-int8", "all-w8a8"), ("all-w4a16", "all-w4a16"))
            if label in points
        }
        files["quantize_dynamic"] = Path(folder) / "dynamic.onnx"
        quantize_dynamic(files["all-fp32"], files["quantize_dynamic"], per_channel=True, weight_type=QuantType.QInt8)
        sessions = {
            name: ort.InferenceSession(str(path), _options(ort), providers=["CPUExecutionProvider"])
            for name, path in files.items()
        }
    sample = _first_sample(task.calibration[0][0])
    statistic = np.min if args.statistic == "min" else np.median
    timed = {name: statistic(seconds) for name, seconds in interleaved(sessions, sample, args.repeats).items()}
    batch = task.calibration[-1][0]
    reference = sessions["all-fp32"].run(None, _session_inputs(sessions["all-fp32"], batch))[0]
    rows = []
    for name, session in sessions.items():
        out = session.run(None, _session_inputs(session, batch))[0]
        cosine = (out * reference).sum(-1) / np.linalg.norm(out, axis=-1) / np.linalg.norm(reference, axis=-1)
        rows.append({"export": name, "ort_s": float(timed[name]), "cosine_to_fp32": float(cosine.mean())})
    table = pd.DataFrame(rows)
    fp32, dynamic = table.set_index("export")["ort_s"][["all-fp32", "quantize_dynamic"]]
    table = table.assign(speedup_over_fp32=fp32 / table["ort_s"], over_quantize_dynamic=table["ort_s"] / dynamic)
    if isinstance(sample, dict):  # token inputs: also one token, a decode step's shape, where weights dominate
        token = {key: value[:, :1] for key, value in sample.items()}
        timed = {name: statistic(seconds) for name, seconds in interleaved(sessions, token, args.repeats).items()}
        table["ort_1_token_s"] = table["export"].map(timed)
        table["speedup_over_fp32_1_token"] = timed["all-fp32"] / table["ort_1_token_s"]
    return table


def interleaved(sessions: dict, sample, repeats: int) -> dict[str, list[float]]:
    """Seconds of each session's ``repeats`` runs on ``sample``, interleaved: a busy spell of the
    machine slows every file alike."""
    feeds = {name: _session_inputs(session, sample) for name, session in sessions.items()}
    for name, session in sessions.items():
        session.run(None, feeds[name])
    seconds: dict[str, list[float]] = {name: [] for name in sessions}
    for _ in range(repeats):
        for name, session in sessions.items():
            start = time.perf_counter_ns()
            session.run(None, feeds[name])
            seconds[name].append((time.perf_counter_ns() - start) * 1e-9)
    return seconds


def summary(table: pd.DataFrame) -> dict[str, float]:
    mixed = table[~table["uniform"]]
    return {
        "spearman predicted~ort (all points)": spearman(table["predicted_s"], table["ort_s"]),
        "spearman predicted~per_layer": spearman(table["predicted_s"], table["per_layer_s"]),
        "spearman per_layer~ort": spearman(table["per_layer_s"], table["ort_s"]),
        "spearman predicted~ort (frontier points)": spearman(mixed["predicted_s"], mixed["ort_s"]),
        "median ort / predicted": float((table["ort_s"] / table["predicted_s"]).median()),
        "median per_layer / predicted": float((table["per_layer_s"] / table["predicted_s"]).median()),
        "median ort / per_layer": float((table["ort_s"] / table["per_layer_s"]).median()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", nargs="+", default=["digits-cnn", "minilm-small"])
    parser.add_argument("--target", default="cpu-x86", help="a CPU device file: cpu-x86 (VNNI), cpu-x86-avx2")
    parser.add_argument(
        "--latency",
        nargs="+",
        choices=["cost model", "measured"],
        default=["cost model", "measured"],
        help="search on the target's cost model, on mpq measure's table, or both",
    )
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--mixed", type=int, default=4, help="frontier points besides all-fp32 and all-int8")
    parser.add_argument("--repeats", type=int, default=60, help="interleaved runs of the deployed exports")
    parser.add_argument(
        "--point-repeats",
        type=int,
        default=20,
        help="runs of each frontier point's export and each layer (mpq measure)",
    )
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--statistic", choices=["min", "median"], default="min")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    pd.set_option("display.width", 220)
    pd.set_option("display.max_colwidth", 48)
    pd.set_option("display.float_format", lambda v: f"{v:.3g}")
    import onnxruntime

    print(
        f"torch {torch.__version__}, onnxruntime {onnxruntime.__version__}, "
        f"CPU capability {torch.backends.cpu.get_cpu_capability()}, {args.threads} thread(s), {args.statistic} "
        f"over {args.repeats} repeats (deployed exports) and {args.point_repeats} (points, layers), "
        f"load {os.getloadavg()[0]:.1f}\n"
    )
    with tempfile.TemporaryDirectory() as folder:
        device = device_with_float(args.target, Path(folder))
        db = f"sqlite:///{Path(folder) / 'bench.db'}"
        for example in args.examples:
            for title, table in bench(example, device, args, db):
                print(f"=== {title}")
                if "predicted_s" not in table:  # the deployment table
                    print(table.to_string(index=False), "\n", flush=True)
                    continue
                table = table.assign(
                    ort_over_predicted=table["ort_s"] / table["predicted_s"],
                    per_layer_over_predicted=table["per_layer_s"] / table["predicted_s"],
                )
                print(table.to_string(index=False))
                print(pd.Series(summary(table)).to_string(), "\n", flush=True)
    print(f"load at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
