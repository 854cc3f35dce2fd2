"""Defaults the command line shows in its help without importing the search (and torch)."""

#: The target and objective of a bare ``mpq search``: the digits CNN is the kind of network
#: FINN's streaming dataflow puts on a Zynq board, and the FPGA runs 2- to 8-bit candidates.
DEFAULT_TARGET = "zcu104"
DEFAULT_OBJECTIVES = ("latency_s",)

#: The built-in examples, ``example:NAME`` -> description: the one list ``mpq.list_examples()``
#: and the CLI's help read (each ``mpq._examples`` module registers its factory under one of these).
EXAMPLES = {
    "digits-cnn": "6-layer CNN trained on scikit-learn's 8x8 digits; metric: test accuracy",
    "minilm": "pretrained MiniLM-L6 sentence encoder, 128+256 stdlib sentences; metric: cosine to float32 ([minilm] extra)",
    "minilm-small": "MiniLM-L6 on 16+32 sentences of 32 tokens, for tests and quick looks ([minilm] extra)",
    "tiny-llama": "small Llama (10.2 M parameters) trained here on the stdlib's source, 1024+16384 tokens; metric: "
    "held-out perplexity ([llm] extra)",
    "tiny-llama-small": "tiny-llama on 256+1024 tokens of 64, for tests and quick looks ([llm] extra)",
}


def this_cpu_target(cpuinfo: str = "/proc/cpuinfo") -> str:
    """The cpu device that fits this machine: ``cpu-x86-avx2`` on an x86 core with AVX2 but
    neither VNNI nor AMX (what that device was fitted on), else ``cpu-x86``.

    Args:
        cpuinfo: Where the CPU's flags are read (Linux's ``/proc/cpuinfo``).
    """
    try:
        with open(cpuinfo) as info:
            flags = next((line.split(":", 1)[1].split() for line in info if line.startswith("flags")), [])
    except OSError:  # not Linux: nothing to read the flags from
        return "cpu-x86"
    fast_int8 = any(flag.endswith("vnni") or flag.startswith("amx") for flag in flags)
    return "cpu-x86-avx2" if "avx2" in flags and not fast_int8 else "cpu-x86"
