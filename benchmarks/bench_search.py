"""Wall time of each stage of ``mpq.search`` on the built-in examples, or CPU seconds against a git ref.

    python benchmarks/bench_search.py [--examples digits-cnn minilm] [--target zcu104]
    python benchmarks/bench_search.py --compare main [--examples digits-cnn minilm-small] [--repeats 2]

Each example runs twice into a fresh store, on two targets; the ratio printed last is the second
search's time over the first's (the second probes again: the decision stop rule's probe key holds
the target's costs). Stage times come from the search's own
progress callback (time from a stage's first report to the next stage's first report).

``--compare REF`` checks REF out (``git worktree add --detach``) into a temporary folder and runs
the default search of each example on its first target (``mpq.search(task, target=...,
objectives=[...])``: every other setting each tree's own default; for digits-cnn this is a bare
``mpq search``) once in a fresh process per tree and repeat, REF's with
that folder first on ``PYTHONPATH``, alternating the two trees so that a change of the machine's
load falls on both. Each process reports the CPU seconds (``time.process_time``: every thread of
the process) of its start (imports and ``load_task``) and of each stage; the table prints the
medians and this tree's ratio to REF's, and the probe's share of this tree's search.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

STAGES = ("layers", "costs", "probe", "omega", "solve", "validate", "store")
#: Example -> (first target and objective, second target and objective). digits-cnn's first is
#: ``mpq search``'s default; MiniLM's embeddings fit no FPGA part, so its first is a GPU's.
PLAN = {
    "digits-cnn": (("zcu104", "latency_s"), ("stm32h743", "latency_s")),
    "minilm": (("h100-sxm", "weight_bytes"), ("cpu-x86", "latency_s")),
    "minilm-small": (("h100-sxm", "weight_bytes"), ("cpu-x86", "latency_s")),
}


class StageClock:
    """A progress callback that records when each stage first reports."""

    def __init__(self, clock=time.perf_counter) -> None:
        self.clock = clock
        self.started: dict[str, float] = {}

    def __call__(self, stage: str, done: int, total: int, message: str) -> None:
        self.started.setdefault(stage, self.clock())

    def durations(self, end: float) -> dict[str, float]:
        order = sorted(self.started.items(), key=lambda item: item[1])
        ends = [t for _, t in order[1:]] + [end]
        return {stage: stop - start for (stage, start), stop in zip(order, ends)}


def timed_search(task, db: Path, target: str, objective: str) -> tuple[dict[str, float], float, object]:
    import mpq

    clock = StageClock()
    start = time.perf_counter()
    run = mpq.search(task, target=target, objectives=[objective], db=db, progress=clock)
    end = time.perf_counter()
    return clock.durations(end), end - start, run


def cpu_stages(example: str) -> dict[str, float]:
    """One default search of ``example`` in this process: CPU seconds of the start and each stage."""
    start = time.process_time()  # this process's CPU so far: the interpreter's own start is left out
    import mpq

    task = mpq.load_task(f"example:{example}")
    target, objective = PLAN[example][0]
    clock = StageClock(time.process_time)
    with tempfile.TemporaryDirectory() as folder:
        search_start = time.process_time()
        mpq.search(task, target=target, objectives=[objective], db=Path(folder) / "mpq.db", progress=clock)
        end = time.process_time()
    return {"start": search_start - start, **clock.durations(end), "search": end - search_start, "mpq": mpq.__file__}


def compare(ref: str, examples: list[str], repeats: int) -> None:
    """Print each stage's median CPU seconds in REF and in this tree, and their ratio."""
    # SIGTERM (a `timeout`) as an exception: the checkout below is removed, not left registered.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(143))
    with tempfile.TemporaryDirectory() as folder:
        checkout = Path(folder) / "ref"
        subprocess.run(
            ["git", "-C", str(ROOT), "worktree", "add", "--detach", "--quiet", str(checkout), ref], check=True
        )
        try:
            trees = {ref: checkout, "this": ROOT}
            for example in examples:
                runs: dict[str, list[dict[str, float]]] = {name: [] for name in trees}
                for _ in range(repeats):
                    for name, tree in trees.items():
                        env = {
                            **os.environ,
                            "PYTHONPATH": os.pathsep.join([str(tree), os.environ.get("PYTHONPATH", "")]),
                        }
                        done = subprocess.run(
                            [sys.executable, "-W", "ignore", __file__, "--cpu-stages", example],
                            env=env,
                            cwd=tree,
                            capture_output=True,
                            text=True,
                        )
                        if done.returncode != 0:
                            raise SystemExit(f"{example} in {name} failed:\n{done.stderr[-3000:]}")
                        measured = json.loads(done.stdout.strip().splitlines()[-1])
                        if not Path(measured.pop("mpq")).resolve().is_relative_to(tree.resolve()):
                            raise SystemExit(
                                f"the {name} process imported mpq from outside {tree}; is mpq installed there?"
                            )
                        runs[name].append(measured)
                _print_comparison(example, ref, runs)
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(checkout)], check=True)
    print(f"load average {' '.join(f'{x:.1f}' for x in os.getloadavg())}")


def _print_comparison(example: str, ref: str, runs: dict[str, list[dict[str, float]]]) -> None:
    median = {
        name: {stage: statistics.median(r.get(stage, 0.0) for r in rs) for stage in ("start", *STAGES, "search")}
        for name, rs in runs.items()
    }
    print(f"{example}: CPU s, median of {len(runs[ref])} ({ref} | this tree | this / {ref})")
    for stage in ("start", *STAGES, "search"):
        before, after = median[ref][stage], median["this"][stage]
        ratio = f"{after / before:8.3f}" if before > 0 else "       -"
        print(f"  {stage:<9} {before:9.2f} {after:9.2f} {ratio}")
    share = median["this"]["probe"] / median["this"]["search"]
    print(f"  probe / search in this tree: {share:.3f}; in {ref}: {median[ref]['probe'] / median[ref]['search']:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", nargs="+", default=None)
    parser.add_argument("--compare", metavar="REF", help="A git ref to compare this tree with, stage by stage (CPU s).")
    parser.add_argument("--repeats", type=int, default=1, help="With --compare: processes per tree and example.")
    parser.add_argument("--cpu-stages", metavar="EXAMPLE", help=argparse.SUPPRESS)  # one process of --compare
    args = parser.parse_args()
    if args.cpu_stages:
        print(json.dumps(cpu_stages(args.cpu_stages)))
        return
    if args.compare:
        compare(args.compare, args.examples or ["digits-cnn", "minilm-small"], args.repeats)
        return
    args.examples = args.examples or ["digits-cnn", "minilm"]
    import mpq

    print(f"{'example':<13} {'target':<10} " + " ".join(f"{s:>9}" for s in STAGES) + f" {'total_s':>9} {'points':>6}")
    for name in args.examples:
        load_start = time.perf_counter()
        task = mpq.load_task(f"example:{name}")
        load_s = time.perf_counter() - load_start
        with tempfile.TemporaryDirectory() as folder:
            totals = []
            for target, objective in PLAN[name]:
                stages, total, run = timed_search(task, Path(folder) / "mpq.db", target, objective)
                totals.append(total)
                print(
                    f"{name:<13} {target:<10} "
                    + " ".join(f"{stages.get(s, 0.0):9.2f}" for s in STAGES)
                    + f" {total:9.2f} {len(run.frontier):6d}"
                )
        print(f"{name}: load_task {load_s:.1f} s; second search (another target) / first = {totals[1] / totals[0]:.2f}")


if __name__ == "__main__":
    main()
