"""CPU and wall seconds of the default probe on 1 and on 2 torch threads, alternated in one process.

    python benchmarks/bench_threads.py [--examples digits-cnn minilm-small] [--threads 1 2] [--repeats 2]

mpq runs on one thread unless told otherwise (``mpq._threads``); this is the measurement behind
that default (docs/speed.md). CPU seconds are the process's (``resource.getrusage``: every thread).
"""

from __future__ import annotations

import argparse
import os
import resource
import time
import warnings

import mpq


def cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", nargs="+", default=["digits-cnn", "minilm-small"])
    parser.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    warnings.simplefilter("ignore")  # a SensitivityWarning says nothing about speed
    print(f"{'example':<13} {'threads':>7} {'wall_s':>8} {'cpu_s':>8}")
    for name in args.examples:
        task = mpq.load_task(f"example:{name}")
        for _ in range(args.repeats):
            for threads in args.threads:
                wall, cpu = time.perf_counter(), cpu_s()
                mpq.probe(task, settings=mpq.ProbeSettings(), threads=threads)
                print(f"{name:<13} {threads:7d} {time.perf_counter() - wall:8.1f} {cpu_s() - cpu:8.1f}", flush=True)
    print(f"load average {' '.join(f'{x:.1f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
