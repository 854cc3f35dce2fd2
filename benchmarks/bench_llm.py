"""Time and peak memory of mpq's probe and of one evaluation on Llama-shaped decoders, as ratios
to one forward pass, extrapolated to 8 B and 70 B parameters.

For each size, a ``LlamaForCausalLM`` with random weights (float32, eager attention: the Hessian
probes differentiate twice) is wrapped to return its logits, with next-token cross-entropy as
the loss and one calibration batch of random token ids. Measured, each stage once, in this order:

* ``forward``: one forward pass of the calibration batch (under ``torch.no_grad``): the mean of
  ``FORWARD_PASSES`` passes after an untimed one (first-touch costs), the unit of every ratio;
* ``calibrate``: ``mpq.calibrate`` (once per search, shared by its evaluations);
* ``evaluation``: one evaluation as a search runs it: ``mpq.apply`` of every layer at
  ``wint4_g128a16`` with that calibration, then the held-out loss (one forward of a batch the
  size of the calibration batch);
* ``probe``: ``mpq.probe`` (``hessian_w`` and ``hessian_a``, Hutchinson estimator: the default
  one factors the output Hessian, too big for a vocabulary) with exactly ``--samples`` samples.

Time is wall-clock seconds; memory is the peak resident set size during the stage minus the RSS
at its start (``/proc/self/statm`` sampled every 5 ms by a thread: torch's allocations are not
Python's, so tracemalloc does not see them), in GiB, and as a ratio to the float32 weights; memory an earlier stage freed and the
allocator kept is reused uncounted, so a figure is the stage's growth past the earlier peaks (on
a GPU: torch's peak allocated bytes, exact). Ratios divide by the forward pass's. The
extrapolation assumes the ratio holds at any size (the measured sizes show whether it does) and
that a forward pass costs time and memory in proportion to the parameters at a fixed number of
tokens; the 8 B and 70 B forward-pass time is the largest measured size's, scaled by parameters,
and their peak memory the largest size's ratio to its weights, times their float32 weights.

    .venv/bin/python benchmarks/bench_llm.py                      # 10M and 100M
    .venv/bin/python benchmarks/bench_llm.py --sizes 10M 100M 1B --seq-len 16
    bash -c 'ulimit -v 16000000; python benchmarks/bench_llm.py --sizes 1B --seq-len 16 --stages probe'
    python benchmarks/bench_llm.py --device cuda --sizes 1B 8B      # on a GPU, where one is lent

Runs with one torch thread (``--threads``): the machine's cores are shared. ``--stages`` measures
some stages only (with the forward pass, their unit), each size's in a process of its own when
memory is short: a stage's memory figure is then exact, not growth past an earlier stage's peak.
"""

from __future__ import annotations

import argparse
import os
import resource
import threading
import time
import warnings
from collections.abc import Callable
from contextlib import contextmanager

import torch
from torch import nn

import mpq

#: LlamaConfig fields of each size (grouped-query attention, SwiGLU, untied embeddings).
SIZES = {
    "10M": dict(hidden_size=256, intermediate_size=688, num_hidden_layers=6, num_attention_heads=8, vocab_size=8192),
    "100M": dict(
        hidden_size=768, intermediate_size=2048, num_hidden_layers=12, num_attention_heads=12, vocab_size=16384
    ),
    "1B": dict(
        hidden_size=2048, intermediate_size=8192, num_hidden_layers=16, num_attention_heads=32, vocab_size=32000
    ),
    "8B": dict(
        hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32, vocab_size=128256
    ),
}
#: Parameters of the models the table extrapolates to (Llama 3.1 8B and 70B).
EXTRAPOLATED = {"8B": 8.03e9, "70B": 70.6e9}
STAGES = ("forward", "calibrate", "evaluation", "probe")  # the order they run: the largest last
PAGE_BYTES = os.sysconf("SC_PAGE_SIZE")
#: Timed forward passes, averaged: the unit of every ratio, so the least noisy figure it can be.
FORWARD_PASSES = 3


class Logits(nn.Module):
    """The language model's logits as a tensor, which mpq's probes score."""

    def __init__(self, lm: nn.Module):
        super().__init__()
        self.lm = lm

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.lm(ids).logits


def next_token_loss(logits: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    return nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1).float(), ids[:, 1:].flatten())


def llama_task(size: str, batch: int, seq_len: int, device: str) -> mpq.Task:
    """A random-weight Llama of ``size`` as an mpq Task: one calibration batch, held-out loss."""
    from transformers import LlamaConfig, LlamaForCausalLM

    fields = SIZES[size]
    config = LlamaConfig(
        num_key_value_heads=max(1, fields["num_attention_heads"] // 4),
        max_position_embeddings=max(seq_len, 64),
        tie_word_embeddings=False,
        attn_implementation="eager",
        **fields,
    )
    torch.manual_seed(0)
    model = Logits(LlamaForCausalLM(config)).eval().to(device)
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(0, fields["vocab_size"], (2 * batch, seq_len), generator=generator).to(device)
    calibration, heldout = ids[:batch], ids[batch:]

    def evaluate(quantized: nn.Module) -> float:
        with torch.no_grad():
            return -float(next_token_loss(quantized(heldout), heldout))

    return mpq.Task(f"llama-{size}", model, [(calibration, calibration)], next_token_loss, evaluate, "-loss")


def weight_gib(n_params: float) -> float:
    """GiB of ``n_params`` float32 weights."""
    return n_params * 4 / 2**30


def current_rss() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * PAGE_BYTES


@contextmanager
def peak_rss(result: dict[str, float]):
    """``result["peak_gib"]``: the largest RSS above the block's starting RSS, sampled every 5 ms."""
    start = current_rss()
    peak = [start]
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(0.005):
            peak[0] = max(peak[0], current_rss())

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        yield
    finally:
        stop.set()
        sampler.join()
        peak[0] = max(peak[0], current_rss())
        result["peak_gib"] = (peak[0] - start) / 2**30


def measure(stage: Callable[[], object], device: str) -> dict[str, float]:
    result: dict[str, float] = {}
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        start_bytes = torch.cuda.memory_allocated()
    with peak_rss(result):
        start = time.perf_counter()
        stage()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        result["seconds"] = time.perf_counter() - start
    if device.startswith("cuda"):  # GPU memory, not the host's
        result["peak_gib"] = (torch.cuda.max_memory_allocated() - start_bytes) / 2**30
    return result


def bench_size(
    size: str, batch: int, seq_len: int, samples: int, device: str, measured: tuple[str, ...] = STAGES
) -> dict[str, dict[str, float]]:
    task = llama_task(size, batch, seq_len, device)
    n_params = sum(p.numel() for p in task.model.parameters())
    layers = [name for name, m in task.model.named_modules() if isinstance(m, nn.Linear)]
    point = dict.fromkeys(layers, "wint4_g128a16")
    settings = mpq.ProbeSettings(min_samples=samples, max_samples=samples, tolerance=1e-6, estimator="hutchinson")
    ids = task.calibration[0][0]
    calibrated: list[mpq.Calibration] = []

    def forward(passes: int = FORWARD_PASSES) -> None:
        with torch.no_grad():
            for _ in range(passes):
                task.model(ids)

    forward(1)  # untimed: the allocator's and the kernels' first-call costs are no stage's

    stages = {
        "forward": forward,
        "calibrate": lambda: calibrated.append(mpq.calibrate(task.model, task.calibration)),
        "evaluation": lambda: mpq.validate(task, {"w4": point}, act_ranges=calibrated[0]),
        "probe": lambda: mpq.probe(task, settings=settings),
    }
    results = {"params": {"count": float(n_params)}}
    for name in measured:
        stage = stages[name]
        results[name] = measure(stage, device)
        if name == "forward":
            results[name]["seconds"] /= FORWARD_PASSES
        print(
            f"  {size} {name}: {results[name]['seconds']:.3g} s, {results[name]['peak_gib']:.3g} GiB",
            flush=True,
        )
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", nargs="+", default=["10M", "100M"], choices=list(SIZES))
    parser.add_argument("--batch", type=int, default=1, help="Sequences per calibration batch (default 1).")
    parser.add_argument("--seq-len", type=int, default=32, help="Tokens per sequence (default 32).")
    parser.add_argument("--samples", type=int, default=4, help="Probe samples (default 4).")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default cpu).")
    parser.add_argument("--threads", type=int, default=1, help="Torch threads (default 1).")
    parser.add_argument(
        "--stages",
        nargs="+",
        default=list(STAGES[1:]),
        choices=list(STAGES[1:]),
        help="Stages to measure besides the forward pass, the unit (default all; the evaluation needs calibrate).",
    )
    args = parser.parse_args(argv)
    if "evaluation" in args.stages and "calibrate" not in args.stages:
        parser.error("--stages evaluation needs calibrate (an evaluation uses its ranges); add calibrate")
    stages = tuple(s for s in STAGES if s == "forward" or s in args.stages)
    torch.set_num_threads(args.threads)
    # Random weights: negative and unconverged traces are expected, and the time is what is measured.
    warnings.filterwarnings("ignore", category=mpq.exceptions.SensitivityWarning)
    print(
        f"Llama-shaped random-weight models, batch {args.batch} x {args.seq_len} tokens, probe hessian_w+hessian_a (Hutchinson) "
        f"x {args.samples} samples, {args.threads} thread(s) on {args.device}, load {os.getloadavg()[0]:.1f}",
        flush=True,
    )
    table = {size: bench_size(size, args.batch, args.seq_len, args.samples, args.device, stages) for size in args.sizes}

    header = f"{'size':>5} {'params':>8} " + " ".join(f"{s + ' s':>12} {'x fwd':>7}" for s in stages)
    print("\n" + header)
    for size, results in table.items():
        forward = results["forward"]["seconds"]
        cells = " ".join(f"{results[s]['seconds']:12.3g} {results[s]['seconds'] / forward:7.1f}" for s in stages)
        print(f"{size:>5} {results['params']['count'] / 1e6:7.1f}M {cells}")
    print(f"\n{'size':>5} {'weights GiB':>12} " + " ".join(f"{s + ' GiB':>15} {'x wts':>6}" for s in stages))
    for size, results in table.items():
        weights = weight_gib(results["params"]["count"])
        cells = " ".join(f"{results[s]['peak_gib']:15.3g} {results[s]['peak_gib'] / weights:6.2f}" for s in stages)
        print(f"{size:>5} {weights:12.3g} {cells}")

    largest = table[args.sizes[-1]]
    seconds_per_param = largest["forward"]["seconds"] / largest["params"]["count"]
    print(
        f"\nExtrapolated from {args.sizes[-1]} (forward time x params; ratios to a forward pass held): "
        f"{'model':>5} {'forward s':>10} " + " ".join(f"{s + ' s':>13}" for s in stages[1:])
    )
    for name, params in EXTRAPOLATED.items():
        forward = seconds_per_param * params
        ratios = " ".join(
            f"{forward * largest[s]['seconds'] / largest['forward']['seconds']:13.3g}" for s in stages[1:]
        )
        print(f"{name:>5} {forward:10.3g} {ratios}")
    largest_weights = weight_gib(largest["params"]["count"])
    print(
        f"Peak memory, the {args.sizes[-1]} ratio to the float32 weights held: {'model':>5} {'weights GiB':>12} "
        + " ".join(f"{s + ' GiB':>15}" for s in stages[1:])
    )
    for name, params in EXTRAPOLATED.items():
        weights = weight_gib(params)
        cells = " ".join(f"{weights * largest[s]['peak_gib'] / largest_weights:15.3g}" for s in stages[1:])
        print(f"{name:>5} {weights:12.3g} {cells}")
    print(f"max RSS of the process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB")


if __name__ == "__main__":
    main()
