"""CPU seconds per training step of ``example:tiny-llama``, in float32 and under the bfloat16
autocast it trains in on a CPU with AMX, as a ratio measured in one process.

Each dtype runs ``causal_lm._train`` itself (the recipe's optimizer, schedule, attention and
autocast) for ``--steps`` steps on a randomly initialised tiny-llama (seeded) and random token
ids (the cost of a step does not depend on which tokens), one untimed warm-up round, then
``--rounds`` rounds alternating the dtypes so that a change of the machine's load falls on both.
Time is CPU seconds of this process (``time.process_time``), which a busy machine inflates
less than wall-clock time; run it with one thread (the default), as training runs.

    .venv/bin/python benchmarks/bench_tiny_llama_training.py
    ONEDNN_MAX_CPU_ISA=AVX2 .venv/bin/python benchmarks/bench_tiny_llama_training.py --steps 2

``ONEDNN_MAX_CPU_ISA`` (oneDNN's switch) measures this machine as a CPU without AMX
(``AVX512_CORE_BF16``), without bfloat16 instructions (``AVX512_CORE``) or with AVX2 alone.
"""

from __future__ import annotations

import argparse
import os
import time

import torch

from mpq._examples import causal_lm

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


def step_cpu_s(dtype: torch.dtype, tokens: torch.Tensor, steps: int) -> float:
    """CPU seconds per step of ``steps`` steps of tiny-llama's training in ``dtype``."""
    import transformers

    torch.manual_seed(causal_lm.SEED)
    model = transformers.LlamaForCausalLM(causal_lm.tiny_llama_config())
    started = time.process_time()
    causal_lm._train(model, tokens, dtype, steps)
    return (time.process_time() - started) / steps


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=8, help="training steps per dtype and round (default 8)")
    parser.add_argument("--rounds", type=int, default=2, help="timed rounds of every dtype (default 2)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1, as training runs)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    tokens = torch.randint(0, causal_lm.VOCAB_SIZE, (1 << 16,), generator=torch.Generator().manual_seed(0))
    recipe_steps = causal_lm.TRAIN_STEPS
    for dtype in DTYPES.values():  # warm-up: first-touch allocations, oneDNN's kernel choice
        step_cpu_s(dtype, tokens, 1)
    cpu_s = {name: 0.0 for name in DTYPES}
    for _ in range(args.rounds):
        for name, dtype in DTYPES.items():
            cpu_s[name] += step_cpu_s(dtype, tokens, args.steps) / args.rounds
    chosen = {v: k for k, v in DTYPES.items()}[causal_lm.training_dtype()]
    isa = os.environ.get("ONEDNN_MAX_CPU_ISA", "all")
    print(
        f"tiny-llama training step, {causal_lm.TRAIN_BATCH} x {causal_lm.TRAIN_SEQ_LEN} tokens, {args.threads} thread(s)"
    )
    print(f"(ONEDNN_MAX_CPU_ISA={isa}; this CPU trains in {chosen}; load {os.getloadavg()[0]:.1f})")
    for name, value in cpu_s.items():
        ratio = value / cpu_s["float32"]
        print(
            f"  {name:9s} {value:6.3f} CPU s/step  {ratio:5.2f}x float32  {value * recipe_steps:6.0f} CPU s for {recipe_steps} steps"
        )


if __name__ == "__main__":
    main()
