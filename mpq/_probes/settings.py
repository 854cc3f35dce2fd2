"""ProbeSettings, the probe names, their checks, and their versioned JSON form and hash.

Every probe belongs to a *family*: the probes of one family come out of the same passes
(``hessian_w`` and ``hessian_a`` out of one Hessian-vector product per sample), share their
samples and stop together.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from typing import Any

from mpq._param_checks import Interval, OneOf, check_param, unknown_name
from mpq._quantizer import LEGACY_QUANTIZER, RANGE_METHODS, QuantizerSettings, check_quantizer
from mpq._task import Task
from mpq.exceptions import InvalidParameterError

#: probe name -> (family, what the trace is over: "w" weights, "a" input activations, None).
PROBES: dict[str, tuple[str, str | None]] = {
    "hessian_w": ("hessian", "w"),
    "hessian_a": ("hessian", "a"),
    "fisher_w": ("fisher", "w"),
    "fisher_a": ("fisher", "a"),
    "efisher_w": ("efisher", "w"),
    "efisher_a": ("efisher", "a"),
    "measured": ("measured", None),
}

#: Families whose probes are Monte Carlo trace estimates (``measured`` is exhaustive).
TRACE_FAMILIES = ("hessian", "fisher", "efisher")

#: Estimators of the Hessian family (see :mod:`mpq._probes.hutchinson`).
ESTIMATORS = ("split", "hutchinson")

#: How the ``fisher`` family draws output-space noise (see :mod:`mpq._probes.fisher`).
FISHER_SAMPLERS = ("gauss_newton", "categorical")

QUANTIZER_FIELDS = {f.name for f in dataclasses.fields(QuantizerSettings)}

_JSON_TYPE = "ProbeSettings"
_JSON_VERSION = 1


@dataclass(frozen=True)
class ProbeSettings:
    """What :func:`mpq.probe` measures and when it stops.

    Attributes:
        probes: Probe names: ``hessian_w``, ``hessian_a`` (Hessian traces, Hutchinson),
            ``fisher_w``, ``fisher_a`` (true Fisher / Gauss-Newton traces, targets sampled from
            the model), ``efisher_w``, ``efisher_a`` (empirical Fisher traces, the task's own
            targets), ``measured`` (the loss increase of every layer at every candidate).
        tolerance: A trace family stops once every layer's standard error is below this
            fraction of its estimate (0.05: 5 %).
        min_samples: Samples every trace family takes before it may stop.
        max_samples: Samples after which a trace family stops, converged or not (a
            SensitivityWarning names the layers still above the tolerance).
        seed: Seed of every random draw; sample ``i`` of a family depends only on
            ``(seed, family, i)``, so an interrupted run resumes to the same numbers.
        batches_per_sample: Calibration (micro-)batches one sample draws, uniformly without
            replacement; None (default) uses all of them in every sample, which removes the
            batch-to-batch spread from the standard error (stratified sampling: never less
            efficient per pass, but a sample costs a pass over every batch).
        micro_batch_size: Split calibration batches into pieces of at most this many samples
            before drawing (cheaper samples, same expectation); None keeps the task's batches.
        estimator: How the Hessian probes sample: ``split`` (the Gauss-Newton part from
            output-space noise, which has no cross-layer terms, plus Hutchinson on the small
            remainder; needs a tensor output and a per-sample loss) or ``hutchinson`` (one
            joint Rademacher vector and Hessian-vector product per sample; any model).
        noise_draws: Output-noise backward passes per batch and sample (``split`` and the
            Fisher families); more draws share one forward pass and one residual HVP.
        fisher_sampler: ``gauss_newton`` (noise with the covariance of the loss's output
            Hessian: the true Fisher for cross-entropy and squared error, the Gauss-Newton
            matrix for any loss) or ``categorical`` (labels drawn from softmax(output), FIT's
            sampled Fisher; classification with a mean cross-entropy only).
        candidates: Candidate names the ``measured`` probe quantizes every layer to.
        quantizer: The quantizer the ``measured`` probe, omega's error terms and every
            evaluation use (:class:`mpq.QuantizerSettings`); part of the probe's cache key. A
            stored settings document without it is one of mpq's first quantizer
            (``LEGACY_QUANTIZER``), which is what such a run was measured with.
        exact_max_params: Trace targets (a layer's weight, or its input per sample) with at
            most this many elements (``n_params``) may have their trace computed exactly, one
            Hessian- or Jacobian-vector product per element and calibration batch: those still
            above the tolerance after ``min_samples`` samples, where the products cost less than
            the samples they save (:mod:`mpq._probes.sampling`); 0 samples every target. At 256
            the largest exact trace costs at most about what a whole sampled run does: on
            example:digits-cnn one batched product through the whole network (its first
            layer) took 19 ms and a ``split`` sample 185 ms per batch, so 256 products are
            about 27 samples, what its hessian probes take to converge.
    """

    probes: tuple[str, ...] = ("hessian_w", "hessian_a")
    tolerance: float = 0.05
    min_samples: int = 10
    max_samples: int = 200
    seed: int = 0
    batches_per_sample: int | None = None
    micro_batch_size: int | None = None
    estimator: str = "split"
    noise_draws: int = 2
    fisher_sampler: str = "gauss_newton"
    candidates: tuple[str, ...] = ()
    exact_max_params: int = 256
    quantizer: QuantizerSettings = QuantizerSettings()


def check_task(func: str, task: Any) -> Task:
    """Raise the template error unless ``task`` is an mpq.Task."""
    if not isinstance(task, Task):
        raise InvalidParameterError(
            f"The 'task' parameter of {func} must be an mpq.Task. Got {type(task).__name__} instead."
        )
    return task


def check_settings(func: str, settings: Any) -> ProbeSettings:
    """Check every field of ``settings``; raise the one-line error of the first bad one.

    Args:
        func: The public function doing the check, named in the message.
        settings: What the caller passed.

    Returns:
        The settings, with ``probes`` and ``candidates`` as tuples.

    Raises:
        InvalidParameterError: a field has the wrong type or value.
        UnknownNameError: an unknown probe name.
    """
    if not isinstance(settings, ProbeSettings):
        raise InvalidParameterError(
            f"The 'settings' parameter of {func} must be a ProbeSettings. Got {type(settings).__name__} instead."
        )
    probes = _names(func, "probes", settings.probes)
    if not probes:
        raise InvalidParameterError(
            f"The 'probes' parameter of {func} must name at least one probe. Got {settings.probes!r} instead."
        )
    for name in probes:
        if name not in PROBES:
            raise unknown_name("probe", name, PROBES)
    check_param(func, "tolerance", settings.tolerance, Interval(float, 0, 1, closed="neither"))
    check_param(func, "min_samples", settings.min_samples, Interval(int, 2, None, closed="left"))
    check_param(func, "max_samples", settings.max_samples, Interval(int, settings.min_samples, None, closed="left"))
    check_param(func, "seed", settings.seed, Interval(int, 0, 2**63 - 1))
    for field in ("batches_per_sample", "micro_batch_size"):
        if getattr(settings, field) is not None:
            check_param(func, field, getattr(settings, field), Interval(int, 1, None, closed="left"))
    check_param(func, "estimator", settings.estimator, OneOf(ESTIMATORS))
    check_param(func, "noise_draws", settings.noise_draws, Interval(int, 1, None, closed="left"))
    check_param(func, "fisher_sampler", settings.fisher_sampler, OneOf(FISHER_SAMPLERS))
    check_param(func, "exact_max_params", settings.exact_max_params, Interval(int, 0, None, closed="left"))
    check_quantizer(func, settings.quantizer)
    candidates = _names(func, "candidates", settings.candidates)
    if "measured" in probes and not candidates:
        raise InvalidParameterError(
            f"{func}: the 'measured' probe needs candidates to quantize to, got none; "
            "pass ProbeSettings(candidates=('w4a8', 'w8a8', ...))."
        )
    return dataclasses.replace(settings, probes=probes, candidates=candidates)


def with_quantizer(func: str, settings: ProbeSettings, ranges: Any, bias_correction: Any) -> ProbeSettings:
    """``settings`` with the quantizer's range method and bias correction replaced where given."""
    if not isinstance(settings, ProbeSettings):
        check_settings(func, settings)  # raises the template's one line
    quantizer = settings.quantizer
    if ranges is not None:
        check_param(func, "ranges", ranges, OneOf(RANGE_METHODS))
        quantizer = dataclasses.replace(quantizer, ranges=ranges)
    if bias_correction is not None:
        check_param(func, "bias_correction", bias_correction, OneOf((True, False)))
        quantizer = dataclasses.replace(quantizer, bias_correction=bias_correction)
    return dataclasses.replace(settings, quantizer=quantizer)


def for_device(settings: ProbeSettings, act_grid: str) -> ProbeSettings:
    """``settings`` whose quantizer's input grid is one the device's kernels take: the stricter
    of the settings' and the device's (symmetric runs on every kernel, unsigned on asymmetric ones)."""
    strictness = {"asymmetric": 0, "unsigned": 1, "symmetric": 2}
    grid = max(settings.quantizer.act_grid, act_grid, key=strictness.__getitem__)
    return dataclasses.replace(settings, quantizer=dataclasses.replace(settings.quantizer, act_grid=grid))


def _names(func: str, field: str, value: Any) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, (tuple, list)) or not all(isinstance(v, str) for v in value):
        raise InvalidParameterError(
            f"The {field!r} parameter of {func} must be a list of names. Got {value!r} instead."
        )
    if len(set(value)) != len(value):
        raise InvalidParameterError(
            f"The {field!r} parameter of {func} must name each entry once. Got {list(value)!r} instead."
        )
    return tuple(value)


def families(settings: ProbeSettings) -> dict[str, list[str]]:
    """``{family: [probe, ...]}`` of the requested probes, in the order first requested."""
    out: dict[str, list[str]] = {}
    for name in settings.probes:
        out.setdefault(PROBES[name][0], []).append(name)
    return out


def settings_to_json(settings: ProbeSettings) -> str:
    """The versioned JSON form: ``{"type": "ProbeSettings", "version": 1, "data": {...}}``.

    Args:
        settings: The settings.

    Returns:
        Canonical JSON (sorted keys, no whitespace): equal settings give equal strings.

    Raises:
        InvalidParameterError: ``settings`` is not a ProbeSettings.
    """
    if not isinstance(settings, ProbeSettings):
        raise InvalidParameterError(
            f"The 'settings' parameter of settings_to_json must be a ProbeSettings. "
            f"Got {type(settings).__name__} instead."
        )
    data = {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(settings).items()}
    if settings.quantizer == LEGACY_QUANTIZER:  # as written before the field existed: same hash
        del data["quantizer"]
    doc = {"type": _JSON_TYPE, "version": _JSON_VERSION, "data": data}
    return json.dumps(doc, sort_keys=True, separators=(",", ":"))


def settings_from_json(text: str) -> ProbeSettings:
    """Read settings written by :func:`settings_to_json` (only ProbeSettings is accepted).

    Args:
        text: The JSON string.

    Returns:
        The settings; fields missing from ``data`` take their defaults, except ``quantizer``,
        which is then ``LEGACY_QUANTIZER`` (the document predates it).

    Raises:
        InvalidParameterError: not JSON, another type or version, or unknown fields.
    """
    try:
        doc = json.loads(text)
    except (TypeError, json.JSONDecodeError) as exc:
        raise InvalidParameterError(
            f"probe settings: not valid JSON ({exc}); pass what settings_to_json wrote."
        ) from None
    if not isinstance(doc, dict) or doc.get("type") != _JSON_TYPE or doc.get("version") != _JSON_VERSION:
        got = {k: doc.get(k) for k in ("type", "version")} if isinstance(doc, dict) else type(doc).__name__
        raise InvalidParameterError(
            f"probe settings: expected type {_JSON_TYPE!r} version {_JSON_VERSION}, got {got}; "
            "pass what settings_to_json wrote."
        )
    data = doc.get("data")
    known = {f.name for f in dataclasses.fields(ProbeSettings)}
    unknown = sorted(set(data) - known) if isinstance(data, dict) else None
    if unknown is None or unknown:
        raise InvalidParameterError(f"probe settings: unknown fields {unknown}; use only {', '.join(sorted(known))}.")
    fields = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items() if k != "quantizer"}
    quantizer = data.get("quantizer")
    if quantizer is not None and (not isinstance(quantizer, dict) or set(quantizer) - QUANTIZER_FIELDS):
        raise InvalidParameterError(
            f"probe settings: quantizer {quantizer!r} is not a QuantizerSettings; use only {sorted(QUANTIZER_FIELDS)}."
        )
    fields["quantizer"] = LEGACY_QUANTIZER if quantizer is None else QuantizerSettings(**quantizer)
    return ProbeSettings(**fields)


def settings_hash(settings: ProbeSettings) -> str:
    """A stable hash of the settings: the SHA-256 hex digest of :func:`settings_to_json`.

    Args:
        settings: The settings.

    Returns:
        64 hex characters; equal settings give equal hashes across processes and machines.

    Raises:
        InvalidParameterError: ``settings`` is not a ProbeSettings.
    """
    return hashlib.sha256(settings_to_json(settings).encode()).hexdigest()
