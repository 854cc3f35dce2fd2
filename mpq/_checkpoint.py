"""A point as a quantized transformers checkpoint in compressed-tensors' format: the folder
``AutoModelForCausalLM.from_pretrained`` (with compressed-tensors installed) and vLLM load.

The weights are mpq's own fake-quantized values (:func:`mpq.apply`), stored as integers or
float8 with the scales that reproduce them exactly: compressed-tensors' compressors pack them
(``pack-quantized``, ``int-quantized``, ``float-quantized``...), its ``ModelCompressor`` writes the
``quantization_config`` (:mod:`mpq._compressed_tensors`, status ``compressed``), and static input
scales and zero points are mpq's calibrated ones, mapped onto compressed-tensors' signed grids.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from mpq._apply import _calibration, _check_model, _quantizable_layer, apply
from mpq._compressed_tensors import quantization_config
from mpq._formats import Candidate, NumberFormat, get_candidate
from mpq._formats.base import block_amax
from mpq._layers import layer_kind
from mpq._quantizer import Calibration, QuantizerSettings, weight_format
from mpq._warnings import mpq_warn
from mpq.exceptions import InvalidParameterError

#: The files of a tokenizer as ``save_pretrained`` writes them (sentencepiece, BPE, WordPiece).
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "tokenizer.model",
    "vocab.json",
    "merges.txt",
    "vocab.txt",
    "chat_template.jinja",
)


def write_checkpoint(
    model: nn.Module,
    assignment: Mapping[str, str | Candidate],
    folder: str | os.PathLike,
    *,
    calibration: Iterable | None = None,
    quantizer: QuantizerSettings | None = None,
    tokenizer: str | os.PathLike | None = None,
    fused: Sequence[Sequence[str]] = (),
    where: str = "write_checkpoint",
) -> Path:
    """Write ``apply(model, assignment, ...)`` as a compressed-tensors checkpoint folder.

    The folder holds config.json with the ``quantization_config`` (one config group per scheme,
    status ``compressed``), model.safetensors with the weights packed by compressed-tensors'
    compressors, and the tokenizer files. Loaded with ``AutoModelForCausalLM.from_pretrained``,
    its logits are :func:`mpq.apply`'s, up to the fp16 rounding mpq applies to the inputs of
    ``a16`` layers (the checkpoint keeps the model's dtype).

    Args:
        model: A transformers model (``PreTrainedModel``), float, or a module holding one (a
            task's wrapper that returns its logits): the checkpoint holds that model, and every
            assigned layer must be in it.
        assignment: ``{layer: candidate}`` as for :func:`mpq.apply`.
        folder: The checkpoint folder: new, or an empty one.
        calibration: Batches ``(inputs, targets)`` to calibrate the quantizer on, as for
            :func:`mpq.apply`.
        quantizer: The quantizer settings (default ``QuantizerSettings()``).
        tokenizer: The folder to copy tokenizer files from; default the folder the model was
            loaded from (``model.name_or_path``), when it is one.
        fused: The model's fused sets (``Task.fused``, :attr:`mpq.Run.fused`), named in ``model``:
            each must be at one scheme.
        where: The start of error messages (``run R point K``).

    Returns:
        The folder written.

    Raises:
        InvalidParameterError: the model is not a transformers model; the folder exists and is
            not empty, or cannot be written; ``tokenizer`` holds no tokenizer files; a layer
            compressed-tensors cannot express (see :func:`mpq.export`) or that this writer
            does not store (MX and NVFP4 weights, group- or block-scaled inputs: the line names
            the layer and what to choose instead); a fused set of mixed schemes.
    """
    _check_model(where, model)
    require_compressed_tensors(where)
    prefix, transformers_model = _transformers_model(where, model)
    _refuse_converted_conv1d(where, transformers_model)
    path = new_folder(folder)
    sources = _tokenizer_files(where, transformers_model, tokenizer)
    modules = dict(model.named_modules())
    plan = {_quantizable_layer(modules, layer): get_candidate(c) for layer, c in assignment.items()}
    outside = [layer for layer in plan if not layer.startswith(prefix)]
    if outside:
        raise InvalidParameterError(
            f"{where}: the checkpoint holds the transformers model {prefix[:-1]}, and {outside[0]} is outside it; "
            "leave that layer out of the point, or export it as json instead."
        )
    local = {layer[len(prefix) :]: c for layer, c in plan.items()}  # names in the checkpoint
    local_fused = [[layer[len(prefix) :] for layer in group if layer.startswith(prefix)] for group in fused]
    kinds = {layer: layer_kind(modules[prefix + layer]) for layer in local}
    full_kinds = {layer: layer_kind(modules[layer]) for layer in plan}
    check_storable(where, plan, full_kinds)
    _check_group_widths(where, plan, modules)
    settings = quantizer or QuantizerSettings()
    quantization_config(where, local, kinds, settings, local_fused)  # its refusals, before the warning
    local = _dense_embeddings(where, local, kinds)
    doc = quantization_config(where, local, kinds, settings, local_fused)
    needs_range = [layer for layer, c in plan.items() if full_kinds[layer] != "embedding" and c.act_format.uses_range]
    calibrated = _calibration(model, plan, needs_range, calibration, None, quantizer)
    quantized = apply(model, plan, act_ranges=calibrated)
    _drop_added_biases(where, modules, dict(quantized.named_modules()), plan)
    quantized = quantized.get_submodule(prefix[:-1]) if prefix else quantized
    _untie_quantized_embeddings(quantized)

    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with _quiet():
            compressor = _compress(quantized, doc, local, calibrated, modules, prefix)
            quantized.save_pretrained(tmp)
            compressor.update_config(tmp)  # config.json's quantization_config, status compressed
            for source in sources:
                shutil.copy2(source, tmp / source.name)
        if path.exists():
            path.rmdir()  # empty (checked): the rename replaces it
        os.replace(tmp, path)
    except OSError as exc:
        raise InvalidParameterError(
            f"checkpoint folder {str(path)!r} cannot be written: {exc.strerror}; give a folder on a writable disk "
            "with room for the model."
        ) from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return path


def _compress(
    quantized: nn.Module,
    doc: dict,
    plan: Mapping[str, Candidate],
    calibrated: Calibration,
    originals: Mapping[str, nn.Module],
    prefix: str,
):
    """Give the quantized transformers model compressed-tensors' parameters (mpq's scales and zero
    points; ``plan``'s layers are named within it, ``prefix + layer`` in the calibration and
    ``originals``) and pack its weights with the package's compressors; returns the
    ModelCompressor that did."""
    from compressed_tensors.compressors import ModelCompressor
    from compressed_tensors.quantization import QuantizationConfig, apply_quantization_config

    config = QuantizationConfig.model_validate(doc)
    apply_quantization_config(quantized, config, show_progress=False)
    copies = dict(quantized.named_modules())
    with torch.no_grad():
        for layer, candidate in plan.items():
            module = copies[layer]
            if not hasattr(module, "weight_scale"):
                continue  # left in 16 bits (under ignore)
            scale = _weight_scale(calibrated, prefix + layer, candidate.weight_format, originals[prefix + layer].weight)
            module.weight_scale.copy_(scale.reshape(module.weight_scale.shape))
            if hasattr(module, "weight_zero_point"):
                module.weight_zero_point.zero_()  # weights are symmetric
            if hasattr(module, "input_scale"):
                scale, zero_point = _input_qparams(calibrated.input_quantizer(prefix + layer, candidate.act_format))
                module.input_scale.fill_(scale)
                if hasattr(module, "input_zero_point"):
                    module.input_zero_point.fill_(zero_point)
    compressor = ModelCompressor(quantization_config=config)
    compressor.compress_model(quantized)
    compressor.remove_decompression_hook(quantized)
    return compressor


def _weight_scale(calibrated: Calibration, layer: str, fmt: NumberFormat, weight: torch.Tensor) -> torch.Tensor:
    """The scales mpq rounded ``layer``'s weight with: per tensor or row from the calibrated clip,
    per group from the group's max (fp16-rounded); a zero scale (an all-zero row) as 1."""
    rounding = weight_format(fmt, calibrated.settings)
    if rounding.granularity == "group":
        rows = weight.detach().float().reshape(weight.shape[0], -1)
        blocks = F.pad(rows, (0, -rows.shape[1] % rounding.group_size)).reshape(rows.shape[0], -1, rounding.group_size)
        scale = rounding._scale(block_amax(blocks)).squeeze(-1)
    else:
        scale = rounding._scale(calibrated.weight_clip(layer, fmt, weight))
    return torch.where(scale > 0, scale, torch.ones_like(scale)).float()


def _input_qparams(quantizer) -> tuple[float, int]:
    """An :class:`mpq._quantizer.InputQuantizer` as compressed-tensors' (scale, zero point): its
    INT grid is signed, so mpq's unsigned ``0 .. 2**b - 1`` codes shift down by ``2**(b-1)``."""
    if quantizer.scale is None:  # symmetric at amax through the format (minifloats, narrow INT)
        scale = quantizer.amax / quantizer.fmt.max_value
        return (scale if scale > 0 else 1.0), 0
    shift = 2 ** (quantizer.fmt.element_bits - 1) if quantizer.qmin == 0 else 0
    return quantizer.scale, quantizer.zero_point - shift


def _check_group_widths(where: str, plan: Mapping[str, Candidate], modules: Mapping[str, nn.Module]) -> None:
    """Refuse the first group-scaled weight whose rows do not split into whole groups: mpq pads the
    last group, and compressed-tensors' group compressor has no partial group to store it in."""
    for layer, candidate in plan.items():
        size = candidate.weight_format.group_size
        width = modules[layer].weight[0].numel()
        if candidate.weight_format.family != "block" and size and width % size:
            raise InvalidParameterError(
                f"{where}: {layer}'s rows have {width} weights, not a multiple of {candidate.weight_format.name}'s "
                f"groups of {size}; choose a group size that divides {width} there (or per-channel weights), or "
                "export the config alone (without --checkpoint)."
            )


def check_storable(where: str, plan: Mapping[str, Candidate], kinds: Mapping[str, str | None]) -> None:
    """Refuse the first layer whose formats this writer cannot store exactly: MX and NVFP4 weights (their
    shared-exponent scales are not mpq's), inputs scaled per group or block from the data
    (compressed-tensors' dynamic scales round on another grid)."""
    for layer, candidate in plan.items():
        weights, acts = candidate.weight_format, candidate.act_format
        if weights.family == "block":
            raise InvalidParameterError(
                f"{where}: the checkpoint stores INT and fp8_e4m3 weights, and {layer} has {weights.name}; choose "
                f"int{weights.element_bits}_g32 weights there, or export the config alone (without --checkpoint)."
            )
        if kinds[layer] != "embedding" and acts.family != "reference" and not acts.uses_range:
            raise InvalidParameterError(
                f"{where}: the checkpoint stores inputs with one calibrated scale per tensor, and {layer} has "
                f"{acts.name} inputs; choose int8, fp8_e4m3 or 16-bit inputs there, or export the config alone "
                "(without --checkpoint)."
            )


def _dense_embeddings(where: str, plan: dict[str, Candidate], kinds: Mapping[str, str | None]) -> dict[str, Candidate]:
    """``plan`` with quantized embeddings left to the model's dtype (under ``ignore``), holding
    mpq's quantized values: transformers 5.24 loads no packed embedding (its init looks for the
    weight). Warn, naming them."""
    dense = [
        layer for layer, c in plan.items() if kinds[layer] == "embedding" and c.weight_format.family != "reference"
    ]
    if dense:
        mpq_warn(
            f"{where}: transformers loads no quantized embedding from a compressed-tensors checkpoint, so "
            f"{', '.join(f'{layer} ({plan[layer].weight_format.name})' for layer in dense)} is stored as its quantized "
            "values in the model's dtype, uncompressed.",
            UserWarning,
        )
    unquantized = get_candidate("w16a16")
    return {layer: unquantized if layer in dense else c for layer, c in plan.items()}


def _drop_added_biases(
    where: str, originals: Mapping[str, nn.Module], copies: Mapping[str, nn.Module], plan: Mapping[str, Candidate]
) -> None:
    """Remove the biases apply's bias correction added to layers that have none: the model's config
    has no place for them (Llama's projections are bias-free). Warn, naming the layers."""
    dropped = []
    for layer in plan:
        if getattr(originals[layer], "bias", None) is None and getattr(copies[layer], "bias", None) is not None:
            if bool(copies[layer].bias.any()):
                dropped.append(layer)
            copies[layer].register_parameter("bias", None)
    if dropped:
        shown = ", ".join(dropped[:3]) + (f" and {len(dropped) - 3} more" if len(dropped) > 3 else "")
        mpq_warn(
            f"{where}: {shown} have no bias in the model, so the checkpoint leaves out their bias correction and "
            "differs there from the measured point; search with bias correction off for an exact checkpoint.",
            UserWarning,
        )


def _untie_quantized_embeddings(quantized: nn.Module) -> None:
    """A tied input embedding and output head that apply untied (one of them quantized) are saved
    apart: a tied config would load one weight into both."""
    inputs, outputs = quantized.get_input_embeddings(), quantized.get_output_embeddings()
    if inputs is None or outputs is None or inputs.weight is outputs.weight:
        return
    for config in {id(c): c for c in (quantized.config, quantized.config.get_text_config())}.values():
        config.tie_word_embeddings = False


def _refuse_converted_conv1d(where: str, model: nn.Module) -> None:
    """Refuse a model whose transformers ``Conv1D`` layers (GPT-2's) mpq's loader turned into
    ``nn.Linear``: their weights are ``[out, in]`` now, the checkpoint's config reads them
    ``[in, out]``, and compressed-tensors quantizes no ``Conv1D``."""
    converted = [name for name, module in model.named_modules() if getattr(module, "mpq_from_conv1d", False)]
    if converted:
        more = f" and {len(converted) - 1} more" if len(converted) > 1 else ""
        raise InvalidParameterError(
            f"{where}: {type(model).__name__}'s {converted[0]}{more} are transformers Conv1D layers, which mpq "
            "quantizes as nn.Linear and a compressed-tensors checkpoint cannot hold; export the point as onnx, or "
            "its config alone (without --checkpoint)."
        )


def require_compressed_tensors(where: str) -> None:
    """Refuse, in one line, where the [export] extra's compressed-tensors is not installed."""
    try:
        import compressed_tensors  # noqa: F401
    except ImportError:
        raise InvalidParameterError(
            f"{where}: writing a checkpoint needs the compressed-tensors package, which is not installed; "
            "pip install 'mpq[export]'."
        ) from None


def _transformers_model(where: str, model: nn.Module) -> tuple[str, nn.Module]:
    """The transformers model a checkpoint holds: ``model`` itself, or the outermost one inside it
    (a task's wrapper that returns the logits), with its name and a dot (``""`` for itself)."""
    for name, module in model.named_modules():
        if hasattr(module, "save_pretrained") and hasattr(module, "config"):
            return (f"{name}." if name else ""), module
    raise InvalidParameterError(
        f"{where}: a checkpoint is a transformers model folder, and the model is a {type(model).__name__} holding "
        "no transformers PreTrainedModel; export it as json or onnx instead."
    )


def new_folder(folder: object) -> Path:
    if not isinstance(folder, (str, os.PathLike)) or not str(folder):
        raise InvalidParameterError(
            "a checkpoint is a folder: pass its path (--checkpoint DIR on the command line), e.g. model-w4/. "
            f"Got {folder!r} instead."
        )
    path = Path(folder)
    if path.exists() and not (path.is_dir() and not any(path.iterdir())):
        raise InvalidParameterError(
            f"checkpoint folder {str(path)!r} exists and is not empty; give a new folder (nothing was written)."
        )
    if not path.parent.is_dir() or not os.access(path.parent, os.W_OK):
        raise InvalidParameterError(
            f"checkpoint folder {str(path)!r} cannot be written: its parent folder does not exist or is not "
            "writable; give a folder in a writable one."
        )
    return path


def _tokenizer_files(where: str, model: nn.Module, tokenizer: object) -> list[Path]:
    """The tokenizer files to copy: from ``tokenizer`` (which must hold some), else from the folder
    the model was loaded from (none there: a warning, the checkpoint is written without)."""
    source = tokenizer if tokenizer is not None else getattr(model, "name_or_path", "")
    if not isinstance(source, (str, os.PathLike)):
        raise InvalidParameterError(
            f"The 'tokenizer' parameter of {where} must be a folder path. Got {type(source).__name__} instead."
        )
    folder = Path(source) if str(source) else None
    files = [folder / name for name in TOKENIZER_FILES if folder is not None and (folder / name).is_file()]
    if not files and tokenizer is not None:
        raise InvalidParameterError(
            f"{where}: tokenizer folder {str(tokenizer)!r} holds no tokenizer files ({', '.join(TOKENIZER_FILES[:3])}"
            "...); give the folder tokenizer.save_pretrained wrote."
        )
    if not files:
        mpq_warn(
            f"{where}: the model was not loaded from a folder with tokenizer files, so the checkpoint has none; "
            "copy them in (tokenizer.save_pretrained(folder)) before serving it.",
            UserWarning,
        )
    return files


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """compressed-tensors' and transformers' progress bars and log lines held back: mpq's output
    holds mpq's lines (their errors still raise)."""
    from loguru import logger

    logger.disable("compressed_tensors")
    try:
        with contextlib.redirect_stderr(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.enable("compressed_tensors")
