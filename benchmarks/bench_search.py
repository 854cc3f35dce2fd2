"""Wall time of each stage of ``mpq.search`` on the built-in examples.

    python benchmarks/bench_search.py [--examples digits-cnn minilm] [--target zcu104]

Each example runs twice into a fresh store: the first run probes, the second (another target)
reuses the stored probe, which is the ratio printed last. Stage times come from the search's own
progress callback (time from a stage's first report to the next stage's first report).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import mpq

STAGES = ("layers", "costs", "probe", "omega", "solve", "validate", "store")


class StageClock:
    """A progress callback that records when each stage first reports."""

    def __init__(self) -> None:
        self.started: dict[str, float] = {}

    def __call__(self, stage: str, done: int, total: int, message: str) -> None:
        self.started.setdefault(stage, time.perf_counter())

    def durations(self, end: float) -> dict[str, float]:
        order = sorted(self.started.items(), key=lambda item: item[1])
        ends = [t for _, t in order[1:]] + [end]
        return {stage: stop - start for (stage, start), stop in zip(order, ends)}


def timed_search(task: mpq.Task, db: Path, target: str, objective: str) -> tuple[dict[str, float], float, mpq.Run]:
    clock = StageClock()
    start = time.perf_counter()
    run = mpq.search(task, target=target, objectives=[objective], db=db, progress=clock)
    end = time.perf_counter()
    return clock.durations(end), end - start, run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", nargs="+", default=["digits-cnn", "minilm"])
    args = parser.parse_args()
    plan = {  # example -> (first target and objective, second target and objective)
        "digits-cnn": (("zcu104", "latency_s"), ("stm32h743", "latency_s")),
        "minilm": (("h100-sxm", "weight_bytes"), ("cpu-x86", "latency_s")),
        "minilm-small": (("h100-sxm", "weight_bytes"), ("cpu-x86", "latency_s")),
    }
    print(f"{'example':<13} {'target':<10} " + " ".join(f"{s:>9}" for s in STAGES) + f" {'total_s':>9} {'points':>6}")
    for name in args.examples:
        load_start = time.perf_counter()
        task = mpq.load_task(f"example:{name}")
        load_s = time.perf_counter() - load_start
        with tempfile.TemporaryDirectory() as folder:
            totals = []
            for target, objective in plan[name]:
                stages, total, run = timed_search(task, Path(folder) / "mpq.db", target, objective)
                totals.append(total)
                print(
                    f"{name:<13} {target:<10} "
                    + " ".join(f"{stages.get(s, 0.0):9.2f}" for s in STAGES)
                    + f" {total:9.2f} {len(run.frontier):6d}"
                )
        print(f"{name}: load_task {load_s:.1f} s; second search (probe reused) / first = {totals[1] / totals[0]:.2f}")


if __name__ == "__main__":
    main()
