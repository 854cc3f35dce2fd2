"""Explicit PuLP solver objects for the ILP backends.

PuLP 3.3 deprecates `PULP_CBC_CMD` and PuLP 4 drops the bundled CBC binary, so CBC runs through
`pulp.COIN_CMD` with an explicit path: a `cbc` on PATH (what `pip install pulp[cbc]` provides)
or, while PuLP still ships one, its bundled binary.
"""

from __future__ import annotations

import os
import shutil
from unittest import mock

import pulp

try:
    import highspy
except ImportError:  # make_solver("highs") says how to install it
    highspy = None

from solvers._errors import BackendUnavailableError, unknown_name

__all__ = ["BACKENDS", "REL_GAP", "cbc_path", "make_solver"]

BACKENDS = ("highs", "cbc")

# Exactness settings shared by both backends. Objectives and budget rows are scaled to O(1)
# by the model (solvers._ilp), so these absolute tolerances are meaningful: with HiGHS's
# defaults (mip_abs_gap 1e-6, feasibility 1e-6) it stops at allocations measurably worse than
# the optimum on 1000-layer instances.
REL_GAP = 1e-9
_ABS_GAP = 0.0
_FEASIBILITY_TOL = 1e-9


class _QuietHiGHS(pulp.HiGHS):
    """PuLP's HiGHS with `msg=False` silent from the start.

    highspy's `Highs()` constructor calls into HiGHS before PuLP can set `output_flag`, and HiGHS
    prints its banner ("Running HiGHS ...") at the first call with output on (HiGHS issues
    #1702, #1932), on stdout, where mpq's own output goes. The model is built with a `Highs`
    whose output is off from its constructor on.
    """

    def createAndConfigureSolver(self, lp: pulp.LpProblem) -> None:
        if self.msg:
            return super().createAndConfigureSolver(lp)
        with mock.patch.object(highspy, "Highs", _SilentHighs):  # the module PuLP's HiGHS calls
            return super().createAndConfigureSolver(lp)


if highspy is not None:

    class _SilentHighs(highspy.Highs):
        """`Highs` with `output_flag` off before its constructor's first call into HiGHS."""

        def enableCallbacks(self):  # the constructor's first call into HiGHS
            self.setOptionValue("output_flag", False)
            return super().enableCallbacks()


def cbc_path() -> str | None:
    """Path of a runnable CBC executable, or None."""
    on_path = shutil.which("cbc")
    if on_path:
        return on_path
    bundled = getattr(pulp.apis.coin_api, "pulp_cbc_path", None)
    if bundled and os.path.isfile(bundled) and os.access(bundled, os.X_OK):
        return bundled
    return None


def make_solver(name: str, time_limit_s: float | None = None) -> pulp.LpSolver:
    """A configured PuLP solver.

    Args:
        name: `"highs"` (HiGHS through highspy) or `"cbc"` (COIN-OR CBC executable).
        time_limit_s: Wall-clock limit of one solve in seconds; None for no limit.

    Returns:
        A silent solver with a 1e-9 relative gap, no absolute gap and 1e-9 feasibility
        tolerances.

    Raises:
        BackendUnavailableError: The backend is not installed.
        SolverInputError: `name` is not a backend.
    """
    if name == "highs":
        solver = _QuietHiGHS(
            msg=False,
            timeLimit=time_limit_s,
            gapRel=REL_GAP,
            gapAbs=_ABS_GAP,
            primal_feasibility_tolerance=_FEASIBILITY_TOL,
            mip_feasibility_tolerance=_FEASIBILITY_TOL,
        )
        if not solver.available():
            raise BackendUnavailableError(
                "backend 'highs': highspy is not installed; run 'pip install highspy' or pass backend='cbc'."
            )
        return solver
    if name == "cbc":
        path = cbc_path()
        if path is None:
            raise BackendUnavailableError(
                "backend 'cbc': no CBC executable on PATH and none bundled with this PuLP "
                f"({pulp.__version__}); run 'pip install pulp[cbc]' or pass backend='highs'."
            )
        return pulp.COIN_CMD(
            path=path,
            msg=False,
            timeLimit=time_limit_s,
            gapRel=REL_GAP,
            gapAbs=_ABS_GAP,
            options=[f"primalTolerance {_FEASIBILITY_TOL}", f"integerTolerance {_FEASIBILITY_TOL}"],
        )
    raise unknown_name("make_solver", "backend", name, BACKENDS)
