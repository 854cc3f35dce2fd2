"""The probe's ``decision`` stop rule: sample until what the search decides is resolved.

The search does not need every layer's trace to 5 %; it needs the proxy's ranking of
(layer, candidate) moves to be one the estimator's error would not change in a way that
matters. That ranking is the convex hull of the proxy frontier on the first objective (the
Lagrangian relaxation: every layer takes ``argmin omega + lambda * cost``, and as ``lambda``
falls the layers move to dearer candidates in the order of loss saved per cost, the order every
exact solve of the search follows up to its budgets). After each probe sample past
``min_samples`` this module:

1. prices omega with the current trace estimates (the quantization errors are computed once:
   they do not depend on the traces) and builds that hull's configurations;
2. draws :data:`DRAWS` other trace vectors the estimator's error makes plausible (each trace
   plus its standard error times a standard normal; an exact trace has none) and builds the
   hull of each;
3. prices every configuration of those hulls under the current estimate: its *regret* is its
   predicted loss minus that of the estimate's hull configuration that costs no more, relative
   to its own predicted loss.

The probe stops when no regret exceeds ``ProbeSettings.tolerance``: any ranking the error makes
plausible picks, under the estimate, configurations within that fraction of the estimate's own.
Near-ties (two layers whose loss per cost are within the error) swap freely and cost nothing;
only a misranking that moves the predicted loss counts. The draws are seeded by ``(seed,
samples)``, so a resumed probe stops where an uninterrupted one does. A hull costs a sort, not a
solve: on example:digits-cnn the five solver frontiers of a check took 6.4 CPU s, more than the
probe's ten samples (docs/speed.md).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable

import pandas as pd
import torch

from mpq._formats import get_candidate
from mpq._omega import act_sq_errors, omega_from_errors, sensitivity_values, weight_sq_errors
from mpq._probes import PROBES, ProbeSettings
from mpq._probes.settings import TRACE_FAMILIES
from mpq._quantizer import Calibration
from mpq._search.plan import Plan
from mpq._task import Task

#: Plausible trace vectors drawn per check, each priced and ranked (a hull) besides the estimate.
DRAWS = 4
#: Costs within this relative margin count as equal (the solver's sums are floating point).
COST_SLACK = 1e-9


def stops_on_decision(settings: ProbeSettings) -> bool:
    """Whether a probe of ``settings`` stops by this rule: ``stop="decision"`` with a trace family."""
    return settings.stop == "decision" and any(PROBES[name][0] in TRACE_FAMILIES for name in settings.probes)


def decision_hash(plan: Plan) -> str | None:
    """A hash of what the stop decision depends on besides the model, the data and the probe
    settings (which the probe's key holds already): the first objective and its cost of every
    (layer, candidate) pair, so the target, its cost model and the candidates. A probe resolved
    for one target is no answer for another whose ranking it never checked; the key holds this.
    None where the probe does not stop on the decision."""
    if not stops_on_decision(plan.settings.probe):
        return None
    costs = plan.costs[["layer", "candidate", plan.objectives[0]]].dropna()
    pairs = sorted((layer, candidate, float(cost)) for layer, candidate, cost in costs.itertuples(index=False))
    text = json.dumps({"objective": plan.objectives[0], "costs": pairs}, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def frontier_decision(task: Task, plan: Plan, calibration: Calibration) -> Callable[[pd.DataFrame], bool]:
    """The test the probe calls with its sensitivity rows so far: True once the ranking is resolved."""
    table = plan.layer_table
    parsed = [get_candidate(c) for c in plan.settings.candidates]
    names = list(table["layer"])
    act_layers = [n for n, kind in zip(table["layer"], table["kind"]) if kind != "embedding"]
    weight_err = weight_sq_errors(task.model, names, parsed, calibration)
    act_err = act_sq_errors(task, act_layers, parsed, calibration)
    probe = PROBES[plan.settings.probe.probes[0]][0]
    # The pairs the target runs (a cost the device model leaves out is no option for the solver either).
    costs = plan.costs.set_index(["layer", "candidate"])[plan.objectives[0]].dropna().to_dict()
    settings = plan.settings.probe

    def priced(sensitivity: pd.DataFrame) -> dict[tuple[str, str], float]:
        om = omega_from_errors(table, sensitivity_values(sensitivity), parsed, probe, weight_err, act_err)
        return {key: value for key, value in zip(zip(om["layer"], om["candidate"]), om["omega"]) if key in costs}

    def resolved(sensitivity: pd.DataFrame) -> bool:
        estimate = priced(sensitivity)
        chosen = [(cost, loss) for cost, loss, _ in hull(estimate, costs)]
        generator = _generator(settings.seed, sensitivity.attrs["samples"])
        for _ in range(DRAWS):
            noise = torch.randn(len(sensitivity), generator=generator, dtype=torch.float64).numpy()
            drawn = sensitivity.assign(value=sensitivity["value"] + sensitivity["stderr"] * noise)
            for cost, _, assignment in hull(priced(drawn), costs):
                loss = sum(estimate[(layer, candidate)] for layer, candidate in assignment.items())
                fits = [best for c, best in chosen if c <= cost * (1 + COST_SLACK)]
                if fits and loss - min(fits) > settings.tolerance * loss:
                    return False
        return True

    return resolved


def hull(omega: dict[tuple[str, str], float], costs: dict[tuple[str, str], float]) -> list[tuple[float, float, dict]]:
    """The configurations of the lower convex hull of (cost, predicted loss), cheapest first:
    ``(cost, loss, {layer: candidate})``, each the optimum of ``loss + lambda * cost`` for some
    ``lambda >= 0``.

    Every layer starts at its cheapest candidate (the least omega among equally cheap ones) and
    climbs its own hull; the moves of all layers are taken in the order of loss saved per cost.
    """
    options: dict[str, list[tuple[float, float, str]]] = {}
    for (layer, candidate), value in omega.items():
        options.setdefault(layer, []).append((costs[(layer, candidate)], value, candidate))
    moves = []  # (loss saved per cost, layer, candidate moved to, cost added, loss added)
    current = {}
    for layer, points in options.items():
        points.sort()
        at = points[0]
        current[layer] = at[2]
        while True:
            dearer = [p for p in points if p[0] > at[0] and p[1] < at[1]]
            if not dearer:
                break
            step = max(dearer, key=lambda p: ((at[1] - p[1]) / (p[0] - at[0]), -p[0]))
            moves.append(((at[1] - step[1]) / (step[0] - at[0]), layer, step[2], step[0] - at[0], step[1] - at[1]))
            at = step
    cost = sum(costs[(layer, c)] for layer, c in current.items())
    loss = sum(omega[(layer, c)] for layer, c in current.items())
    out = [(cost, loss, dict(current))]
    for _, layer, candidate, d_cost, d_loss in sorted(moves, key=lambda m: -m[0]):
        current[layer] = candidate
        cost, loss = cost + d_cost, loss + d_loss
        out.append((cost, loss, dict(current)))
    return out


def _generator(seed: int, n: int) -> torch.Generator:
    digest = hashlib.sha256(f"{seed}/decision/{n}".encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") >> 1)
