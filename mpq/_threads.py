"""torch's intra-op threads, which mpq sets itself for its probe, evaluations, workers and timing.

torch starts as many intra-op threads as the machine has cores. mpq's models are small (a digits
CNN's layers have a few thousand weights, MiniLM's a few hundred thousand), and on a shared or
loaded machine two threads spin against each other: the digits search took 168-235 s at load 8
on 2 cores with torch's default and 30 s on one thread (issue 27). So mpq runs on
:data:`DEFAULT_THREADS` unless told otherwise: ``threads=`` (``--threads N``), else
``$MPQ_THREADS``. docs/speed.md has the measurements.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

from mpq._param_checks import Interval, check_param
from mpq.exceptions import InvalidParameterError
from mpqvocab import parameter_message

#: The intra-op threads mpq uses when neither ``threads=`` nor ``$MPQ_THREADS`` says.
DEFAULT_THREADS = 1
#: The environment variable that sets the threads when ``threads=`` is not given.
THREADS_ENV = "MPQ_THREADS"
THREADS = Interval(int, 1, None)


def resolve_threads(func: str, threads: int | None) -> int:
    """The threads to run on: ``threads`` when given, else ``$MPQ_THREADS``, else :data:`DEFAULT_THREADS`.

    Raises:
        InvalidParameterError: ``threads`` or ``$MPQ_THREADS`` is not a whole number >= 1.
    """
    if threads is None:
        text = os.environ.get(THREADS_ENV, "").strip()
        if not text:
            return DEFAULT_THREADS
        try:
            threads = int(text)
        except ValueError:
            raise InvalidParameterError(
                parameter_message(func, THREADS_ENV, "a whole number of threads >= 1", text)
            ) from None
    check_param(func, "threads", threads, THREADS)
    return threads


@contextmanager
def torch_threads(threads: int) -> Iterator[int]:
    """Run the body on ``threads`` intra-op threads; the caller's count is restored after it."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield threads
    finally:
        torch.set_num_threads(before)
