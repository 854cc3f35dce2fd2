"""The calibrated quantizer: how a layer's weight and input become values of a number format.

One quantizer serves every stage: :func:`mpq.apply` (so every measured point), omega's error
terms, the ONNX/QONNX/compressed-tensors exports and the cost models' zero-point charge. Its
rules, set by :class:`QuantizerSettings`:

- **Weights**: symmetric (zero point 0) at the format's granularity; INT formats on the full
  two's-complement grid (INT2: -2, -1, 0, 1); each tensor or output channel clipped at the range
  the method picks: ``max`` (the largest |w|), ``mse`` (the clip minimising ``||Q(w) - w||^2``
  over 100 candidates from 1.0 down to 0.01 of the largest |w|), ``percentile`` (that percentile
  of |w|). Group and block formats take their scales from every group's data.
- **Inputs** (per tensor, calibrated): an input never negative on the calibration data uses the
  unsigned grid ``0 .. 2**b - 1``; others an asymmetric grid with an integer zero point, or a
  symmetric one where the target's kernels need it (``act_grid``). The range is the method's:
  ``max`` (min and max seen), ``mse`` (the shrink of that range minimising the squared error over
  a 2048-bin histogram of the inputs), ``percentile`` (the percentiles of the histogram).
- **Bias correction** (Nagel et al., "Data-Free Quantization", ICCV 2019, section 4.2, estimated
  on the calibration data as AIMET and MCT do): quantizing a weight per tensor or channel shifts
  the layer's mean output by ``(Q(W) - W) E[x]``; that shift is subtracted from the bias.

``LEGACY_QUANTIZER`` is mpq's first quantizer (symmetric narrow grids scaled by max |x|, no
bias correction): runs stored before the settings existed reproduce with it.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from mpq._formats import NumberFormat
from mpq._formats.base import ScaledFormat
from mpq._formats.integer import IntGrid, full_range
from mpq._formats.minifloat import MinifloatGrid
from mpq._param_checks import Interval, OneOf, check_param
from mpq._task import hooked, run_model
from mpq.exceptions import InvalidParameterError

logger = logging.getLogger("mpq.quantizer")

#: How a range is chosen (see the module docstring).
RANGE_METHODS = ("max", "mse", "percentile")
#: What an input's integer grid may be: zero-pointed, unsigned only when never negative, or symmetric.
ACT_GRIDS = ("asymmetric", "unsigned", "symmetric")
#: The weights' INT grid: every two's-complement code, or symmetric without the lowest.
WEIGHT_GRIDS = ("full", "narrow")

#: Histogram bins of a layer's inputs (mse and percentile ranges are chosen on it).
HISTOGRAM_BINS = 2048
#: Clip candidates of the mse method: 1.00, 0.99, ... 0.01 of the max.
MSE_RATIOS = torch.linspace(1.0, 0.01, 100, dtype=torch.float64)
#: Weight elements the mse search rounds at a time, whole rows: a block stays in the core's cache
#: across the 100 clip candidates (2.5x fewer CPU s on MiniLM's 30522 x 384 embedding than the
#: whole tensor per candidate, with the same clips, bit for bit: each row's sum is the same sum).
MSE_BLOCK_ELEMS = 2**14
#: The sorted-row mse search (:func:`_sorted_errors`) is taken where a row is longer than this
#: many times its grid's values: a binary search per value against a rounding per weight.
SORTED_COST_PER_LEVEL = 8
#: Weight elements the sorted search takes at a time (its rows' scans stop together).
MSE_SORTED_BLOCK_ELEMS = 2**18
#: Relative margin of the saturation floor against float32 rounding: a clip whose floor is within
#: it of the best error is still tried.
FLOOR_SLACK = 1e-6


@dataclass(frozen=True)
class QuantizerSettings:
    """How weights and inputs are quantized (the module docstring gives the rules).

    Attributes:
        ranges: How a clipping range is chosen: ``mse`` (default: the best measured, see the
            docs/quantizer.md's table), ``max`` or ``percentile``.
        bias_correction: Remove the mean output shift that weight quantization causes through
            the layer's bias (estimated on the calibration data).
        act_grid: The integer grid of a quantized input: ``asymmetric`` (unsigned when never
            negative, else a zero point), ``unsigned`` (unsigned when never negative, else
            symmetric: FINN's streams), ``symmetric`` (zero point 0: GPU tensor cores).
            A device file's ``activation_grid`` says which its kernels take.
        weight_grid: ``full`` (every code of the bits) or ``narrow`` (symmetric, mpq's first
            quantizer).
        percentile: The percentile the ``percentile`` method clips at (of |w| per channel for
            weights; at both ends of the inputs).
    """

    ranges: str = "mse"
    bias_correction: bool = True
    act_grid: str = "asymmetric"
    weight_grid: str = "full"
    percentile: float = 99.99

    def summary(self) -> str:
        """One phrase for listings, e.g. ``quantizer: mse ranges, asymmetric inputs, bias corrected``."""
        if self.weight_grid == "narrow" and self.act_grid == "symmetric" and self.ranges == "max":
            return "quantizer: mpq's first (symmetric, max |x| ranges)"
        corrected = ", bias corrected" if self.bias_correction else ""
        return f"quantizer: {self.ranges} ranges, {self.act_grid} inputs{corrected}"


#: mpq's first quantizer: what runs stored without settings were measured with.
LEGACY_QUANTIZER = QuantizerSettings(ranges="max", bias_correction=False, act_grid="symmetric", weight_grid="narrow")


def check_quantizer(func: str, settings: object) -> QuantizerSettings:
    """Check every field of ``settings``; raise the one-line error of the first bad one."""
    if not isinstance(settings, QuantizerSettings):
        raise InvalidParameterError(
            f"The 'quantizer' parameter of {func} must be an mpq.QuantizerSettings. "
            f"Got {type(settings).__name__} instead."
        )
    check_param(func, "quantizer['ranges']", settings.ranges, OneOf(RANGE_METHODS))
    check_param(func, "quantizer['bias_correction']", settings.bias_correction, OneOf((True, False)))
    check_param(func, "quantizer['act_grid']", settings.act_grid, OneOf(ACT_GRIDS))
    check_param(func, "quantizer['weight_grid']", settings.weight_grid, OneOf(WEIGHT_GRIDS))
    check_param(func, "quantizer['percentile']", settings.percentile, Interval(float, 50, 100, closed="right"))
    return settings


@dataclass
class InputStats:
    """What the calibration batches showed of one layer's input.

    Attributes:
        lo, hi: The smallest and largest value.
        histogram: Counts of ``HISTOGRAM_BINS`` equal bins over ``[lo, hi]`` (float64); None
            when the range method does not need it (``max``).
        mean: ``E[x]`` per sample position: ``(in_features,)`` for a linear layer, ``(C, *spatial)``
            for a convolution (``(C,)`` when batches differ in spatial size); None for an
            Embedding (indices).
    """

    lo: float
    hi: float
    histogram: torch.Tensor | None = None
    mean: torch.Tensor | None = None


@dataclass(frozen=True)
class InputQuantizer:
    """Forward pre-hook that fake-quantizes a layer's first input.

    Either symmetric at ``amax`` through the format (``scale`` None; ``amax`` None: from the
    data), or affine on an integer grid: ``q = clamp(round(x / scale) + zero_point, qmin, qmax)``,
    ``x' = (q - zero_point) * scale``, which is ONNX QuantizeLinear/DequantizeLinear's arithmetic.
    """

    fmt: NumberFormat
    amax: float | None = None
    scale: float | None = None
    zero_point: int = 0
    qmin: int = 0
    qmax: int = 0

    def quantize(self, x: torch.Tensor) -> torch.Tensor:
        if self.scale is None:
            return self.fmt.quantize(x, self.amax)
        q = torch.clamp(torch.round(x / self.scale) + self.zero_point, self.qmin, self.qmax)
        return ((q - self.zero_point) * self.scale).to(x.dtype)

    @property
    def unsigned(self) -> bool:
        return self.scale is not None and self.qmin == 0

    def __call__(self, module: nn.Module, args: tuple) -> tuple:
        return (self.quantize(args[0]), *args[1:])


@dataclass(eq=False)
class Calibration:
    """A calibrated quantizer: the settings and every layer's input statistics.

    Get one with :func:`mpq.calibrate`; pass it to :func:`mpq.apply` (``act_ranges=``),
    :func:`mpq.validate` and :func:`mpq.omega` so they quantize alike. Picklable (sent to workers).

    Attributes:
        settings: The quantizer settings.
        inputs: ``{layer: InputStats}`` of every layer that ran (Embeddings: mean only).
    """

    settings: QuantizerSettings
    inputs: dict[str, InputStats]
    # Chosen once per (layer, format), then reused by every apply of a search: the mse method
    # tries 100 clips, on the weight and on the input histogram.
    _weight_clips: dict = field(default_factory=dict, repr=False)
    _input_quantizers: dict = field(default_factory=dict, repr=False)

    def input_quantizer(self, layer: str, fmt: NumberFormat) -> InputQuantizer:
        """The quantizer of ``layer``'s input at ``fmt``; formats without a static scale (group,
        block, fp16) scale from the data. Raises if ``fmt`` needs a range the layer lacks."""
        if not fmt.uses_range:
            return InputQuantizer(fmt)
        stats = self.inputs.get(layer)
        if stats is None:
            raise InvalidParameterError(
                f"apply: {layer} did not run on the calibration batches, so its input range is unknown; assign "
                "it a candidate with a group, block or fp16 activation format, or leave it out."
            )
        key = (layer, fmt.name)
        if key not in self._input_quantizers:
            self._input_quantizers[key] = _input_quantizer(fmt, stats, self.settings)
        return self._input_quantizers[key]

    def quantize_weight(self, layer: str, fmt: NumberFormat, weight: torch.Tensor) -> torch.Tensor:
        """``layer``'s weight fake-quantized at ``fmt`` (its clip chosen once, then cached)."""
        return weight_format(fmt, self.settings).quantize(weight, self.weight_clip(layer, fmt, weight))

    def weight_clip(self, layer: str, fmt: NumberFormat, weight: torch.Tensor) -> torch.Tensor | None:
        """The clip :meth:`quantize_weight` uses (per row, or one), None where scales come from the data."""
        key = (layer, fmt.name)
        if key not in self._weight_clips:
            self._weight_clips[key] = weight_clip(weight_format(fmt, self.settings), weight, self.settings)
        return self._weight_clips[key]

    def bias_shift(
        self, layer: str, module: nn.Module, fmt: NumberFormat, quantized_weight: torch.Tensor
    ) -> torch.Tensor | None:
        """The mean output shift ``(Q(W) - W) E[x]`` of a Linear or Conv layer whose weight is
        quantized at ``fmt``; None without a mean input, with bias correction off, or for a group or
        block format: those scale every group by its own max and clip nothing, so their rounding
        error has no systematic mean, and a correction estimated on the calibration batches would
        only add that estimate's noise (measured: docs/quantizer.md)."""
        stats = self.inputs.get(layer)
        if not self.settings.bias_correction or stats is None or stats.mean is None:
            return None
        if fmt.granularity not in ("tensor", "channel"):
            return None
        delta = (quantized_weight - module.weight).detach().to(torch.float64)
        mean = stats.mean.to(torch.float64)
        if isinstance(module, nn.Linear):
            return (delta @ mean).to(module.weight.dtype)
        if mean.dim() > 1:  # E[x] per position: the shift is the convolution of the mean input
            out = module._conv_forward(mean.unsqueeze(0), delta, None)
            return out.mean(dim=tuple(range(2, out.dim()))).squeeze(0).to(module.weight.dtype)
        if module.groups != 1:
            return None
        # Batches of different spatial sizes keep a per-channel mean (padded edges not modelled).
        return (delta.sum(dim=tuple(range(2, delta.dim()))) @ mean).to(module.weight.dtype)


def weight_format(fmt: NumberFormat, settings: QuantizerSettings) -> NumberFormat:
    """The format a weight rounds on: INT formats on their full grid unless ``narrow``."""
    if settings.weight_grid == "full" and isinstance(fmt, ScaledFormat) and isinstance(fmt.grid, IntGrid):
        return full_range(fmt)
    return fmt


def weight_clip(fmt: NumberFormat, weight: torch.Tensor, settings: QuantizerSettings) -> torch.Tensor | None:
    """The clipping range of a weight at ``fmt``: one per output channel (``channel``) or one
    (``tensor``) by the settings' method; None for group and block formats (from the data)."""
    if fmt.granularity not in ("tensor", "channel") or fmt.family == "reference":
        return None
    with torch.no_grad():
        rows = weight.detach().float().reshape(weight.shape[0] if weight.dim() > 1 else 1, -1)
        if fmt.granularity == "tensor":
            rows = rows.reshape(1, -1)
        amax = rows.abs().amax(1)
        if settings.ranges == "percentile":
            clip = torch.quantile(rows.abs(), settings.percentile / 100, dim=1) if rows.shape[1] < 2**24 else amax
        elif settings.ranges == "mse":
            clip = _mse_clip(fmt, rows, amax)
        else:
            clip = amax
    return clip.reshape(()) if fmt.granularity == "tensor" else clip


def _mse_clip(fmt: NumberFormat, rows: torch.Tensor, amax: torch.Tensor) -> torch.Tensor:
    """Per row, the clip among ``MSE_RATIOS * amax`` with the least squared error (ties: the widest).

    Where the grid's values are few against a row's length (per-tensor formats, low-bit channels),
    the errors come from the sorted row (:func:`_sorted_errors`), else from rounding every weight.
    Per channel, the scan from the widest clip down stops once every row's saturation error alone
    (:func:`_saturation_floor`) exceeds its best: no narrower clip can do better."""
    levels = _grid_levels(fmt)
    by_sorting = levels is not None and len(levels) * SORTED_COST_PER_LEVEL < rows.shape[1]
    block = max(1, (MSE_SORTED_BLOCK_ELEMS if by_sorting else MSE_BLOCK_ELEMS) // max(rows.shape[1], 1))
    if len(rows) > block:
        return torch.cat([_mse_clip(fmt, rows[i : i + block], amax[i : i + block]) for i in range(0, len(rows), block)])
    if by_sorting:
        errors = _sorted_errors(rows, fmt.grid, levels, fmt.max_value)
    else:
        errors = lambda clip: (fmt.quantize(rows, clip) - rows).pow(2).sum(1)  # noqa: E731
    floor = None
    if fmt.granularity == "channel" and levels is not None:
        floor = _saturation_floor(rows, float(levels.abs().max()) / fmt.max_value)
    return _pick_clip(errors, amax, floor)


def _pick_clip(errors, amax: torch.Tensor, floor=None) -> torch.Tensor:
    """The clip ``amax * ratio`` of least ``errors(clip)`` per row over ``MSE_RATIOS`` (ties: the
    first, widest), the scan stopping once ``floor(clip)``, a lower bound of ``errors(clip)`` that
    grows as the clip shrinks, reaches every row's best (less :data:`FLOOR_SLACK`)."""
    best_err = torch.full_like(amax, math.inf, dtype=torch.float64)
    best = amax.clone()
    for ratio in MSE_RATIOS.tolist():
        clip = amax * ratio
        if floor is not None and bool((floor(clip) >= best_err * (1 + FLOOR_SLACK)).all()):
            break
        err = errors(clip)
        better = err < best_err
        best = torch.where(better, clip, best)
        best_err = torch.where(better, err, best_err)
    return best


def _saturation_floor(rows: torch.Tensor, reach: float):
    """``floor(clip)``: each row's ``sum (|w| - m)^2`` over its weights beyond ``m = reach * clip``,
    the largest magnitude the quantizer outputs at ``clip`` (``reach``: the grid's largest |value|
    over its ``max_value``). No rounding comes closer to such a weight, so this bounds the error
    from below, and it only grows as the clip shrinks."""
    ordered, first, second = _sorted_prefix_sums(rows.abs())

    def floor(clip: torch.Tensor) -> torch.Tensor:
        # A hair beyond m: the quantizer's outputs are float32 products.
        m = (clip.to(torch.float64) * reach * (1 + FLOOR_SLACK)).reshape(-1, 1)
        start = torch.searchsorted(ordered, m)
        beyond = (rows.shape[1] - start).to(torch.float64)
        sums = first[:, -1:] - first.gather(1, start)
        squares = second[:, -1:] - second.gather(1, start)
        return (squares - 2 * m * sums + beyond * m.pow(2)).reshape(-1).clamp(min=0)

    return floor


def _sorted_prefix_sums(rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Each row sorted ascending (float64) and its running sums of values and of squares, each
    with a leading 0: the sum over sorted positions ``[a, b)`` is ``sums[:, b] - sums[:, a]``."""
    ordered = rows.to(torch.float64).sort(dim=1).values
    zero = torch.zeros(len(rows), 1, dtype=torch.float64)
    return ordered, torch.cat([zero, ordered.cumsum(1)], 1), torch.cat([zero, ordered.pow(2).cumsum(1)], 1)


def _grid_levels(fmt: NumberFormat) -> torch.Tensor | None:
    """Every value of ``fmt``'s element grid at scale 1, ascending (float32); None for other grids."""
    grid = getattr(fmt, "grid", None)
    if isinstance(grid, IntGrid):
        return torch.arange(grid.low, 2 ** (grid.bits - 1), dtype=torch.float32)
    if isinstance(grid, MinifloatGrid):
        return torch.unique(grid.code_values())  # sorted; -0 and the saturated codes merge
    return None


def _sorted_errors(rows: torch.Tensor, grid, levels: torch.Tensor, max_value: float):
    """``errors(clip)``: each row's ``||Q(row) - row||^2`` at ``clip`` without rounding the row.

    A clip maps every weight between two consecutive midpoints of the scaled grid to the same
    value ``v`` (weights beyond the clip saturate to the outermost), so a row's error is, over the
    grid's values, ``sum w^2 - 2 v sum w + n v^2`` of the weights between those midpoints: a binary
    search of the sorted row and prefix sums (float64), ``O(levels * log(row))`` per clip instead of
    ``O(row)``. It differs from rounding every weight only where a weight lies within float32
    rounding of a midpoint, where both neighbours' errors are equal to that rounding
    (docs/quantizer.md measures the clips it picks against rounding).
    """
    ordered, first, second = _sorted_prefix_sums(rows)
    zero = first[:, :1]
    ends = torch.full((len(rows), 1), rows.shape[1], dtype=torch.int64)

    def errors(clip: torch.Tensor) -> torch.Tensor:
        scale = (clip / max_value).reshape(-1, 1)  # ScaledFormat._scale's float32 arithmetic
        # A saturated weight rounds at +-clip / scale, which float32 can put a hair inside the
        # outermost midpoint: INT's lowest code is then out of reach, as it is for the quantizer.
        reach = grid.round(torch.cat([-clip, clip]).reshape(2, -1, 1) / torch.where(scale > 0, scale, 1.0))
        values = (torch.minimum(torch.maximum(levels, reach[0]), reach[1]) * scale).to(torch.float64)
        midpoints = (values[:, 1:] + values[:, :-1]) / 2
        edges = torch.cat([torch.searchsorted(ordered, midpoints), ends], 1)
        counts = torch.diff(edges, dim=1, prepend=torch.zeros_like(ends)).to(torch.float64)
        sums = torch.diff(first.gather(1, edges), dim=1, prepend=zero)
        squares = torch.diff(second.gather(1, edges), dim=1, prepend=zero)
        return (squares - 2 * values * sums + counts * values.pow(2)).sum(1)

    return errors


def _input_quantizer(fmt: NumberFormat, stats: InputStats, settings: QuantizerSettings) -> InputQuantizer:
    """The input quantizer of one layer at one format: the grid by ``act_grid``, the range by the method."""
    if fmt.granularity != "tensor" or fmt.family not in ("int", "float"):
        return InputQuantizer(fmt, amax=max(-stats.lo, stats.hi))  # NVFP4: its per-tensor scale is max-based
    candidates = _ranges(stats, settings)
    quantizers = [_grid_quantizer(fmt, lo, hi, stats, settings) for lo, hi in candidates]
    if len(quantizers) == 1:
        return quantizers[0]
    centres, counts = _bins(stats)
    errors = [float((counts * (q.quantize(centres) - centres).pow(2)).sum()) for q in quantizers]
    return quantizers[min(range(len(errors)), key=errors.__getitem__)]  # first minimum: the widest


def _ranges(stats: InputStats, settings: QuantizerSettings) -> list[tuple[float, float]]:
    """Candidate (lo, hi) ranges of an input: one for max and percentile, a shrinking series for mse."""
    lo, hi = min(stats.lo, 0.0), max(stats.hi, 0.0)
    if settings.ranges == "max" or stats.histogram is None:
        return [(lo, hi)]
    if settings.ranges == "percentile":
        centres, counts = _bins(stats)
        cumulative = torch.cumsum(counts, 0) / counts.sum()
        tail = 1 - settings.percentile / 100
        low = float(centres[int(torch.searchsorted(cumulative, tail))]) if lo < 0 else 0.0
        high = float(centres[min(int(torch.searchsorted(cumulative, 1 - tail)), len(centres) - 1)])
        return [(min(low, 0.0), max(high, 0.0))]
    return [(lo * r, hi * r) for r in MSE_RATIOS.tolist()]


def _bins(stats: InputStats) -> tuple[torch.Tensor, torch.Tensor]:
    edges = torch.linspace(stats.lo, stats.hi, HISTOGRAM_BINS + 1, dtype=torch.float64)
    return ((edges[1:] + edges[:-1]) / 2).float(), stats.histogram


def _grid_quantizer(
    fmt: NumberFormat, lo: float, hi: float, stats: InputStats, settings: QuantizerSettings
) -> InputQuantizer:
    """The quantizer of ``fmt`` over ``[lo, hi]`` (lo <= 0 <= hi) on the grid ``act_grid`` allows."""
    if fmt.family != "int":  # minifloats are symmetric
        return InputQuantizer(fmt, amax=max(-lo, hi))
    bits = fmt.element_bits
    levels = 2**bits - 1
    never_negative = stats.lo >= 0
    if never_negative and settings.act_grid in ("asymmetric", "unsigned"):
        return InputQuantizer(fmt, scale=_positive(hi / levels), zero_point=0, qmin=0, qmax=levels)
    if settings.act_grid == "asymmetric":
        scale = _positive((hi - lo) / levels)
        zero_point = int(min(max(round(-lo / scale), 0), levels))
        return InputQuantizer(fmt, scale=scale, zero_point=zero_point, qmin=0, qmax=levels)
    if settings.weight_grid == "narrow":  # mpq's first quantizer: the format's symmetric narrow grid
        return InputQuantizer(fmt, amax=max(-lo, hi))
    half = 2 ** (bits - 1)
    return InputQuantizer(fmt, scale=_positive(max(-lo, hi) / (half - 0.5)), zero_point=0, qmin=-half, qmax=half - 1)


def _positive(scale: float) -> float:
    """A zero scale (an input that is always 0) as 1: it quantizes to 0 either way."""
    return scale if scale > 0 else 1.0


def collect_inputs(
    model: nn.Module, calibration: Iterable, names: list[str], settings: QuantizerSettings, kinds: Mapping[str, str]
) -> dict[str, InputStats]:
    """Run the calibration batches (twice when a histogram is needed) and gather every named
    layer's :class:`InputStats`; ``kinds`` gives each layer's kind (``embedding``: mean not taken)."""
    modules = dict(model.named_modules())
    lows: dict[str, torch.Tensor] = {}
    highs: dict[str, torch.Tensor] = {}
    sums: dict[str, torch.Tensor | None] = {}
    channel_sums: dict[str, torch.Tensor] = {}
    counts: dict[str, int] = {}

    def first_pass(name: str):
        def hook(module: nn.Module, args: tuple) -> None:
            x = args[0].detach()
            if kinds[name] == "embedding":
                return
            lows[name] = torch.minimum(lows[name], x.min()) if name in lows else x.min()
            highs[name] = torch.maximum(highs[name], x.max()) if name in highs else x.max()
            x64 = x.to(torch.float64)
            if kinds[name] == "linear":
                sample = x64.reshape(-1, x.shape[-1])
                sums[name] = sample.sum(0) + (sums[name] if name in sums else 0)
                counts[name] = counts.get(name, 0) + sample.shape[0]
                return
            total = x64.sum(0)
            previous = sums.get(name, 0)
            same_shape = name not in sums or (previous is not None and previous.shape == total.shape)
            sums[name] = total + previous if same_shape else None
            channel = x64.transpose(0, 1).reshape(x.shape[1], -1)
            channel_sums[name] = channel.mean(1) * x.shape[0] + channel_sums.get(name, 0)
            counts[name] = counts.get(name, 0) + x.shape[0]

        return hook

    run_calibration(model, calibration, {n: modules[n].register_forward_pre_hook(first_pass(n)) for n in names})
    stats = {}
    for name in lows:
        mean = sums[name] / counts[name] if sums[name] is not None else channel_sums[name] / counts[name]
        stats[name] = InputStats(float(lows[name]), float(highs[name]), None, mean.float())
    if settings.ranges != "max" and stats:
        histograms = {name: torch.zeros(HISTOGRAM_BINS, dtype=torch.float64) for name in stats}

        def second_pass(name: str):
            def hook(module: nn.Module, args: tuple) -> None:
                s = stats[name]
                x = args[0].detach().float()
                histograms[name] += torch.histc(x, HISTOGRAM_BINS, s.lo, s.hi).to(torch.float64)

            return hook

        run_calibration(model, calibration, {n: modules[n].register_forward_pre_hook(second_pass(n)) for n in stats})
        for name, histogram in histograms.items():
            stats[name].histogram = histogram
    logger.debug("calibrated the inputs of %d layers", len(stats))
    return stats


def run_calibration(model: nn.Module, calibration: Iterable, handles: Mapping[str, Any]) -> int:
    """Run every calibration batch once under ``torch.no_grad`` with the hooks, then remove them.

    Returns:
        The number of batches.

    Raises:
        InvalidParameterError: a batch is not an ``(inputs, targets)`` pair, or there is none.
    """
    n_batches = 0
    with hooked(handles.values()):
        for batch in calibration:
            if not isinstance(batch, (tuple, list)) or len(batch) != 2:
                raise InvalidParameterError(
                    f"calibration batch {n_batches}: expected an (inputs, targets) pair, got "
                    f"{type(batch).__name__}; pass batches as Task.calibration holds them."
                )
            run_model(model, batch[0])
            n_batches += 1
    if n_batches == 0:
        raise InvalidParameterError("calibration has no batches; pass at least one (inputs, targets) batch.")
    return n_batches


def describe(settings: QuantizerSettings) -> dict[str, Any]:
    """The settings as a plain dict, for ``run.record`` and ``--json``."""
    return dataclasses.asdict(settings)
