"""``mpq.export(run, point, "compressed-tensors")``, checked by compressed-tensors itself.

Every candidate mpq can name is exported as a one-layer point: those compressed-tensors can
express validate as its ``QuantizationConfig`` and dump back unchanged, each group stored in the
format the package infers, equal to the package's presets where both mean the same scheme, and
``apply_quantization_config`` gives every layer the formats mpq chose; the others are refused in
one line naming the formats the package lacks.

With ``checkpoint=DIR``, a Llama that a task file loads with ``from_pretrained`` (random weights,
written here with ``save_pretrained``) is written as a quantized checkpoint, which transformers
loads and whose logits are ``mpq.apply``'s.
"""

from __future__ import annotations

import functools
import itertools
import json
import sys
import warnings

import pandas as pd
import pytest
import torch
from cli_runner import run_cli
from torch import nn

import mpq
from mpq._probes import ProbeSettings, settings_to_json
from mpq._probes.checkpoint import data_hash, model_hash
from mpq._quantizer import LEGACY_QUANTIZER

pytest.importorskip("compressed_tensors", reason="needs the [export] extra: pip install -e '.[export]'")
from compressed_tensors.compressors.format import infer_module_format  # noqa: E402
from compressed_tensors.quantization import (  # noqa: E402
    QuantizationConfig,
    QuantizationScheme,
    apply_quantization_config,
    preset_name_to_scheme,
)

# The package's advice on mixed group sizes (int4_g128 weights, int8_g64 inputs): mpq's points mix them.
pytestmark = pytest.mark.filterwarnings("ignore:Using GROUP strategy for both:UserWarning")

#: The formats compressed-tensors 0.20 has no storage for: its 8-bit float is E4M3, and it keeps
#: 6- and 4-bit floats only in MX and NVFP4 blocks.
LACKING = {"fp8_e5m2", "fp6_e3m2", "fp6_e2m3", "fp4_e2m1"}
#: mpq candidates that mean exactly one of compressed-tensors' preset schemes.
PRESETS = {
    "wint4_g128a16": "W4A16",
    "wint8_g128a16": "W8A16",
    "wint2_g128a16": "W2A16",
    "wfp8afp8": "FP8",
    "wnvfp4a16": "NVFP4A16",
    "wnvfp4anvfp4": "NVFP4",
    "wmxfp4a16": "MXFP4A16",
    "wmxfp4amxfp4": "MXFP4",
    "wmxfp6a16": "MXFP6A16",
    "wmxfp6amxfp8": "MXFP6A8",
    "wmxfp8a16": "MXFP8A16",
    "wmxfp8amxfp8": "MXFP8",
}


def stored_run(
    assignment: dict[str, str],
    kinds: dict[str, str] | None = None,
    quantizer: mpq.QuantizerSettings | None = None,
    spec: str | None = None,
    fused: list[list[str]] | None = None,
) -> mpq.Run:
    """A run whose point 0 is ``assignment`` (layer -> candidate), every layer linear unless ``kinds``
    says, measured with ``quantizer`` (default ``QuantizerSettings()``), of a task with the fused
    sets ``fused`` (as a search records them); with ``spec``, of the task that spec builds (its
    model and data hashes stored, so an export can rebuild it)."""
    kinds = {layer: "linear" for layer in assignment} | (kinds or {})
    probe = ProbeSettings(quantizer=quantizer or mpq.QuantizerSettings())
    record = {"settings": {"probe": settings_to_json(probe), "fused": fused or []}}
    if spec is not None:
        task = mpq.load_task(spec)
        record |= {"model_spec": spec, "model_hash": model_hash(task.model), "data_hash": data_hash(task.calibration)}
    return mpq.Run(
        id=7,
        db="sqlite://",
        status="done",
        record=record,
        frontier=pd.DataFrame({"point": [0]}),
        assignments=pd.DataFrame({"point": 0, "layer": list(assignment), "candidate": list(assignment.values())}),
        tables={"layers": pd.DataFrame({"layer": list(kinds), "kind": list(kinds.values())})},
    )


def every_candidate() -> list[str]:
    formats = [mpq.get_format(name) for name in mpq.list_formats()]
    weights = [f.name for f in formats if f.name not in ("bf16", "fp32")]
    acts = [f.name for f in formats if f.granularity != "channel" and f.name not in ("bf16", "fp32")]
    return [f"w{w}a{a}" for w, a in itertools.product(weights, acts)]


@functools.cache
def split_by_export() -> tuple[list[str], dict[str, str]]:
    """The candidates compressed-tensors expresses, and the refusal of each other one."""
    expressed, refused = [], {}
    for candidate in every_candidate():
        try:
            mpq.export(stored_run({"fc": candidate}), 0, "compressed-tensors")
            expressed.append(candidate)
        except mpq.exceptions.InvalidParameterError as exc:
            refused[candidate] = str(exc)
    return expressed, refused


def _expected(fmt: mpq.NumberFormat) -> tuple | None:
    """(num_bits, type, strategy, group_size) that a layer in ``fmt`` must get; None for 16 bits."""
    if fmt.family == "reference":
        return None
    strategy = {"block": "tensor_group" if fmt.name == "nvfp4" else "group"}.get(fmt.granularity, fmt.granularity)
    return fmt.element_bits, "int" if fmt.family == "int" else "float", strategy, fmt.group_size


def _got(args) -> tuple | None:
    return None if args is None else (args.num_bits, args.type, args.strategy, args.group_size)


def test_the_formats_compressed_tensors_lacks_are_refused_by_name():
    expressed, refused = split_by_export()
    for candidate in every_candidate():
        c = mpq.get_candidate(candidate)
        lacking = sorted({c.weight_format.name, c.act_format.name} & LACKING)
        assert (candidate in refused) == bool(lacking), candidate
        if lacking:
            assert refused[candidate] == (
                f"run 7 point 0: compressed-tensors has no {', '.join(lacking)} (its floating-point formats are "
                "fp8_e4m3, mxfp8, mxfp6, mxfp4, nvfp4); export it as json instead."
            )
    assert len(expressed) > 500  # INT at every width and granularity, fp8_e4m3, NVFP4, MX, 16 bits


def test_every_expressible_point_is_a_quantization_config_of_the_package():
    point = {f"blocks.{i}": candidate for i, candidate in enumerate(split_by_export()[0])}
    doc = mpq.export(stored_run(point), 0, "compressed-tensors")
    config = QuantizationConfig.model_validate(doc)
    dumped = config.model_dump(mode="json")
    assert {key: value for key, value in dumped.items() if key in doc} == doc  # the package's own layout
    assert all(value is None for key, value in dumped.items() if key not in doc)
    assert doc["quant_method"] == "compressed-tensors" and doc["format"] == "mixed-precision"
    for group in config.config_groups.values():
        unstated = QuantizationScheme(**group.model_dump(exclude={"format"}))
        assert infer_module_format(nn.Linear, unstated).value == group.format, group
    targeted = [layer for group in doc["config_groups"].values() for layer in group["targets"]]
    assert sorted(targeted + doc["ignore"]) == sorted(point)  # each layer once: in one group, or ignored
    unquantized = [layer for layer, c in point.items() if _expected(mpq.get_candidate(c).weight_format) is None]
    assert doc["ignore"] == [
        layer for layer in unquantized if _expected(mpq.get_candidate(point[layer]).act_format) is None
    ]


@pytest.mark.parametrize(("candidate", "preset"), PRESETS.items())
def test_schemes_equal_the_packages_presets(candidate, preset):
    # The presets are symmetric min-max schemes: mpq's first quantizer's (a run stored before the
    # calibrated quantizer exports as it was measured).
    run = stored_run({"fc": candidate}, quantizer=LEGACY_QUANTIZER)
    (group,) = mpq.export(run, 0, "compressed-tensors")["config_groups"].values()
    ours = QuantizationScheme.model_validate(group).model_dump(exclude={"targets", "format"})
    assert ours == preset_name_to_scheme(preset, ["fc"]).model_dump(exclude={"targets", "format"})


def test_applied_to_a_model_every_layer_gets_the_formats_mpq_chose():
    expressed = split_by_export()[0]
    point = {f"blocks.{i}": candidate for i, candidate in enumerate(expressed)} | {"embed": "w4a8"}
    config = QuantizationConfig.model_validate(
        mpq.export(stored_run(point, {"embed": "embedding"}), 0, "compressed-tensors")
    )
    model = nn.Module()
    model.blocks = nn.ModuleList(nn.Linear(64, 16) for _ in expressed)
    model.embed = nn.Embedding(10, 64)
    torch.manual_seed(0)
    apply_quantization_config(model, config, show_progress=False)
    modules = dict(model.named_modules())
    for layer, candidate in point.items():
        c = mpq.get_candidate(candidate)
        scheme = getattr(modules[layer], "quantization_scheme", None)
        weights, acts = _expected(c.weight_format), _expected(c.act_format)
        if layer == "embed":
            acts = None  # an embedding's input is token ids
        if weights is None and acts is None:
            assert scheme is None, layer
        else:
            assert (_got(scheme.weights), _got(scheme.input_activations)) == (weights, acts), candidate


@pytest.mark.parametrize(("act_grid", "symmetric"), [("asymmetric", False), ("unsigned", False), ("symmetric", True)])
def test_the_calibrated_quantizer_exports_zero_points_and_mse_observers(act_grid, symmetric):
    quantizer = mpq.QuantizerSettings(act_grid=act_grid)
    doc = mpq.export(stored_run({"fc": "w4a8", "head": "wfp8afp8"}, quantizer=quantizer), 0, "compressed-tensors")
    config = QuantizationConfig.model_validate(doc)  # the package reads the asymmetric scheme
    by_target = {tuple(g.targets): g for g in config.config_groups.values()}
    ints, floats = by_target[("fc",)], by_target[("head",)]
    assert (ints.input_activations.symmetric, ints.input_activations.observer) == (symmetric, "mse")
    assert (ints.weights.symmetric, ints.weights.observer) == (True, "mse")  # weights: no zero point
    assert floats.input_activations.symmetric  # minifloats have no zero point


def test_an_embeddings_activation_format_is_left_out():
    doc = mpq.export(stored_run({"embed": "w8a8", "fc": "w8a8"}, {"embed": "embedding"}), 0, "compressed-tensors")
    by_target = {tuple(g["targets"]): g for g in doc["config_groups"].values()}
    assert by_target[("embed",)]["input_activations"] is None and by_target[("fc",)]["input_activations"] is not None
    assert by_target[("embed",)]["format"] == "pack-quantized" and by_target[("fc",)]["format"] == "int-quantized"


def test_conv_layers_are_refused_unless_left_in_16_bits():
    run = stored_run({"conv1": "w8a8", "conv2": "w4a8", "fc": "w8a8"}, {"conv1": "conv2d", "conv2": "conv1d"})
    with pytest.raises(mpq.exceptions.InvalidParameterError) as info:
        mpq.export(run, 0, "compressed-tensors")
    assert str(info.value) == (
        "run 7 point 0: compressed-tensors quantizes Linear and Embedding layers only, and this point quantizes "
        "conv1 (conv2d), conv2 (conv1d); export it as json instead."
    )
    doc = mpq.export(stored_run({"conv1": "w16a16", "fc": "w8a8"}, {"conv1": "conv2d"}), 0, "compressed-tensors")
    assert doc["ignore"] == ["conv1"] and [g["targets"] for g in doc["config_groups"].values()] == [["fc"]]
    QuantizationConfig.model_validate(doc)


def test_a_point_all_in_16_bits_quantizes_nothing():
    doc = mpq.export(stored_run({"fc1": "w16a16", "fc2": "wbf16abf16"}), 0, "compressed-tensors")
    assert (doc["config_groups"], doc["ignore"], doc["format"]) == ({}, ["fc1", "fc2"], "dense")
    QuantizationConfig.model_validate(doc)


LLAMA_TASK = """
import torch
from transformers import AutoModelForCausalLM

import mpq


class Logits(torch.nn.Module):
    # The language model's logits as a tensor, which mpq's probes score.

    def __init__(self, lm):
        super().__init__()
        self.lm = lm

    def forward(self, ids):
        return self.lm(ids).logits


def make_task():
    # Eager attention: the Hessian probes differentiate twice, which SDPA's CPU kernel cannot.
    model = Logits(AutoModelForCausalLM.from_pretrained({folder!r}, attn_implementation="eager")).eval()
    ids = torch.randint(0, 256, (4, 16), generator=torch.Generator().manual_seed(0))

    def loss_fn(logits, ids):
        return torch.nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1), ids[:, 1:].flatten())

    return mpq.Task("llama", model, [(ids[:2], ids[:2]), (ids[2:], ids[2:])], loss_fn)
"""


def write_llama(folder, **config) -> str:
    """A random-weight Llama (hidden 64, 2 layers, grouped-query attention) and a word-level
    tokenizer, saved in ``folder`` with ``save_pretrained``, and the task file that loads them;
    returns its ``--model`` spec."""
    transformers = pytest.importorskip("transformers", reason="needs transformers (the [minilm] extra)")
    from tokenizers import Tokenizer, models

    torch.manual_seed(0)
    shape = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4)
    llama = transformers.LlamaConfig(vocab_size=256, num_key_value_heads=2, **shape, **config)
    transformers.LlamaForCausalLM(llama).save_pretrained(folder / "llama")
    vocab = {f"t{i}": i for i in range(256)}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="t0"))
    transformers.PreTrainedTokenizerFast(tokenizer_object=tokenizer, unk_token="t0").save_pretrained(folder / "llama")
    (folder / "llama_task.py").write_text(LLAMA_TASK.format(folder=str(folder / "llama")))
    return f"{folder / 'llama_task.py'}:make_task"


def llama_point(model: nn.Module, formats: dict[str, str]) -> dict[str, str]:
    """Every Linear and Embedding layer of a Llama -> the candidate ``formats`` gives its name's last
    part (``q_proj``, ``lm_head``...) in block 0, or ``name@1`` in block 1."""
    point = {}
    for layer, module in model.named_modules():
        if isinstance(module, (nn.Linear, nn.Embedding)):
            leaf = layer.rpartition(".")[2]
            point[layer] = formats.get(f"{leaf}@1" if ".layers.1." in layer else leaf, formats.get(leaf))
    return point


def logits_of(model: nn.Module, ids: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        output = model(ids)
    return output if isinstance(output, torch.Tensor) else output.logits


def max_logit_diffs(folder, task: mpq.Task, point: dict[str, str], quantizer) -> tuple[float, float]:
    """The largest |logit| difference of the checkpoint in ``folder`` from ``mpq.apply``'s model,
    and of mpq.apply's model from the float one, on held-out token ids."""
    from transformers import AutoModelForCausalLM

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the package's notes on loading a compressed model
        loaded = AutoModelForCausalLM.from_pretrained(folder).eval()
    ids = torch.randint(0, 256, (3, 24), generator=torch.Generator().manual_seed(1))
    applied = logits_of(mpq.apply(task.model, point, calibration=task.calibration, quantizer=quantizer), ids)
    return float((logits_of(loaded, ids) - applied).abs().max()), float(
        (applied - logits_of(task.model, ids)).abs().max()
    )


#: A point with every storage the checkpoint writes: INT8 and INT4 per channel (int-quantized
#: with calibrated zero-pointed inputs, pack-quantized), INT4 in groups of 32 packed, fp8_e4m3
#: weights and inputs (float-quantized), an INT8 embedding (stored as its values: transformers
#: loads no packed one); fp32 inputs keep it exact.
EXACT_FORMATS = {
    "embed_tokens": "wint8_pcafp32",
    "q_proj": "w8a8",
    "k_proj": "w8a8",
    "v_proj": "w8a8",
    "o_proj": "wfp8afp8",
    "gate_proj": "wint4_g32afp32",
    "up_proj": "wint4_g32afp32",
    "down_proj": "wint4_pcafp32",
    "q_proj@1": "wint4_g32aint8",
    "k_proj@1": "wint4_g32aint8",
    "v_proj@1": "wint4_g32aint8",
    "lm_head": "wint8_g32afp32",
}


def test_a_llama_checkpoint_loads_in_transformers_and_computes_what_apply_does(tmp_path):
    spec = write_llama(tmp_path, tie_word_embeddings=True)  # apply unties the quantized head
    task = mpq.load_task(spec)
    point = llama_point(task.model, EXACT_FORMATS)
    quantizer = mpq.QuantizerSettings(bias_correction=False)  # Llama's projections have no bias to hold it
    run = stored_run(point, {"lm.model.embed_tokens": "embedding"}, quantizer, spec)
    with pytest.warns(UserWarning) as caught:
        folder = mpq.export(run, 0, "compressed-tensors", model=spec, checkpoint=tmp_path / "w4")
    assert [str(w.message) for w in caught] == [
        "run 7 point 0: transformers loads no quantized embedding from a compressed-tensors checkpoint, so "
        "model.embed_tokens (int8_pc) is stored as its quantized values in the model's dtype, uncompressed."
    ]

    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"} <= {
        p.name for p in folder.iterdir()
    }
    config = json.loads((folder / "config.json").read_text())
    quantization = config["quantization_config"]
    assert quantization["quantization_status"] == "compressed" and quantization["format"] == "mixed-precision"
    expected = mpq.export(run, 0, "compressed-tensors")["config_groups"]  # one group per distinct scheme
    assert [g["targets"] for g in quantization["config_groups"].values()] == [
        [t.removeprefix("lm.") for t in g["targets"]]  # named in the checkpoint
        for g in expected.values()
        if g["targets"] != ["lm.model.embed_tokens"]
    ]
    assert quantization["ignore"] == ["model.embed_tokens"]
    assert config["tie_word_embeddings"] is False
    from safetensors import safe_open

    with safe_open(folder / "model.safetensors", "pt") as tensors:
        dtypes = {key: tensors.get_tensor(key).dtype for key in tensors.keys()}  # noqa: SIM118 - not a dict
    block = "model.layers.0"
    assert dtypes[f"{block}.mlp.gate_proj.weight_packed"] == torch.int32  # eight INT4 per int32
    assert dtypes[f"{block}.self_attn.q_proj.weight"] == torch.int8
    assert dtypes[f"{block}.self_attn.q_proj.input_zero_point"] == torch.int8  # asymmetric inputs
    assert dtypes[f"{block}.self_attn.o_proj.weight"] == torch.float8_e4m3fn
    assert f"{block}.self_attn.q_proj.bias" not in dtypes

    diff, quantization_effect = max_logit_diffs(folder, task, point, quantizer)
    assert diff <= 1e-5 < 0.01 < quantization_effect  # measured: 3.6e-07 against 0.045


def test_fp16_inputs_and_a_bias_correction_the_model_can_hold(tmp_path):
    # Biases on every projection (attention_bias, mlp_bias): the corrections are stored in them.
    spec = write_llama(tmp_path, attention_bias=True, mlp_bias=True, tie_word_embeddings=False)
    task = mpq.load_task(spec)
    formats = {"q_proj": "w8a16", "k_proj": "w8a16", "v_proj": "w8a16", "o_proj": "w4a8", "lm_head": "wint4_g32a16"}
    point = {layer: c for layer, c in llama_point(task.model, formats).items() if c is not None}
    run = stored_run(point, spec=spec)
    folder = mpq.export(run, 0, "compressed-tensors", model=spec, checkpoint=tmp_path / "w8")
    diff, quantization_effect = max_logit_diffs(folder, task, point, mpq.QuantizerSettings())
    # mpq.apply rounds the inputs of a16 layers to fp16; the checkpoint keeps them in float32.
    assert diff < quantization_effect / 10, (diff, quantization_effect)  # measured: 0.0033 against 0.078


def test_a_bias_correction_a_bias_free_layer_cannot_hold_is_left_out_with_a_warning(tmp_path):
    spec = write_llama(tmp_path)
    task = mpq.load_task(spec)
    point = {"lm.model.layers.0.self_attn.o_proj": "w8a8", "lm.model.layers.0.mlp.down_proj": "wint4_g32a16"}
    with pytest.warns(UserWarning) as caught:
        mpq.export(stored_run(point, spec=spec), 0, "compressed-tensors", model=spec, checkpoint=tmp_path / "ck")
    assert [str(w.message) for w in caught] == [
        "run 7 point 0: lm.model.layers.0.self_attn.o_proj have no bias in the model, so the checkpoint leaves out "
        "their bias correction and differs there from the measured point; search with bias correction off for an "
        "exact checkpoint."
    ]
    assert task.model.lm.model.layers[0].self_attn.o_proj.bias is None


QKV = [f"model.layers.0.self_attn.{name}" for name in ("q_proj", "k_proj", "v_proj")]


GATE_UP = ["mlp.gate_proj", "mlp.up_proj"]


def test_a_fused_set_of_mixed_formats_is_refused_naming_it():
    run = stored_run(dict(zip(QKV, ("w8a8", "wint4_g128a16", "w8a8"))), fused=[QKV])
    with pytest.raises(mpq.exceptions.InvalidParameterError) as info:
        mpq.export(run, 0, "compressed-tensors")
    assert str(info.value) == (
        "run 7 point 0: vLLM runs model.layers.0.self_attn.{q_proj,k_proj,v_proj} as one fused layer with one "
        "scheme, and this point gives them q_proj w8a8, k_proj wint4_g128a16, v_proj w8a8; export a point whose "
        "fused sets share a format (mpq search ties them unless --no-fuse), or export it as json instead."
    )
    gate_up = dict(zip(GATE_UP, ("w4a16", "w16a16")))  # one quantized, one left in 16 bits
    with pytest.raises(mpq.exceptions.InvalidParameterError, match=r"mlp\.\{gate_proj,up_proj\}"):
        mpq.export(stored_run(gate_up, fused=[GATE_UP]), 0, "compressed-tensors")
    tied = mpq.export(stored_run(dict.fromkeys(QKV, "w8a8"), fused=[QKV]), 0, "compressed-tensors")
    assert [g["targets"] for g in tied["config_groups"].values()] == [QKV]


def test_the_fused_sets_are_the_runs_discovered_ones_not_names():
    """The sets the task found (recorded with the run), whatever the layers are called: a model
    whose attention reads one input through wq, wk and wv is guarded, and q_proj and k_proj that
    read different inputs (no recorded set) are not."""
    own = ["blocks.0.attn.wq", "blocks.0.attn.wk", "blocks.0.attn.wv"]
    with pytest.raises(mpq.exceptions.InvalidParameterError, match=r"blocks\.0\.attn\.\{wq,wk,wv\}"):
        mpq.export(stored_run(dict(zip(own, ("w8a8", "w4a16", "w8a8"))), fused=[own]), 0, "compressed-tensors")
    apart = mpq.export(stored_run(dict(zip(QKV, ("w8a8", "w4a16", "w8a8")))), 0, "compressed-tensors")
    assert len(apart["config_groups"]) == 2


@pytest.mark.parametrize(
    ("candidate", "message"),
    [
        (
            "wmxfp4a16",
            "the checkpoint stores INT and fp8_e4m3 weights, and model.layers.0.self_attn.q_proj has mxfp4; choose "
            "int4_g32 weights there, or export the config alone (without --checkpoint).",
        ),
        (
            "wint4_g32aint8_g32",
            "the checkpoint stores inputs with one calibrated scale per tensor, and model.layers.0.self_attn.q_proj "
            "has int8_g32 inputs; choose int8, fp8_e4m3 or 16-bit inputs there, or export the config alone (without "
            "--checkpoint).",
        ),
    ],
)
def test_a_format_the_checkpoint_does_not_store_is_refused_before_any_work(tmp_path, candidate, message):
    run = stored_run(dict.fromkeys(QKV, candidate))
    with pytest.raises(mpq.exceptions.InvalidParameterError) as info:
        mpq.export(run, 0, "compressed-tensors", checkpoint=tmp_path / "ck")  # no model spec: before a rebuild
    assert str(info.value) == f"run 7 point 0: {message}" and not (tmp_path / "ck").exists()
    assert mpq.export(run, 0, "compressed-tensors")["config_groups"]  # the config alone expresses it


def test_a_checkpoint_needs_a_new_folder_compressed_tensors_and_a_transformers_model(tmp_path):
    run = stored_run({"fc": "w8a8"})
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("mine")
    cases = [
        ({"to": "compressed-tensors", "checkpoint": tmp_path / "full"}, "is not empty; give a new folder"),
        ({"to": "json", "checkpoint": tmp_path / "new"}, "written in the compressed-tensors format, not json"),
    ]
    for kwargs, message in cases:
        with pytest.raises(mpq.exceptions.InvalidParameterError, match=message):
            mpq.export(run, 0, **kwargs)
    assert (tmp_path / "full" / "keep.txt").read_text() == "mine" and not (tmp_path / "new").exists()

    spec = "tests/assets/tasks/tiny_task.py:make_task"  # an nn.Sequential
    task = mpq.load_task(spec)
    layers = {name: "w8a8" for name, m in task.model.named_modules() if isinstance(m, nn.Linear)}
    with pytest.raises(mpq.exceptions.InvalidParameterError) as info:
        mpq.export(stored_run(layers, spec=spec), 0, "compressed-tensors", model=spec, checkpoint=tmp_path / "new")
    assert str(info.value) == (
        "run 7 point 0: a checkpoint is a transformers model folder, and the model is a Sequential holding no "
        "transformers PreTrainedModel; export it as json or onnx instead."
    )
    assert not (tmp_path / "new").exists()


def test_a_checkpoint_without_compressed_tensors_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "compressed_tensors", None)  # as if the [export] extra were not installed
    with pytest.raises(mpq.exceptions.InvalidParameterError) as info:
        mpq.export(stored_run({"fc": "w8a8"}), 0, "compressed-tensors", checkpoint=tmp_path / "ck")
    assert str(info.value) == (
        "run 7 point 0: writing a checkpoint needs the compressed-tensors package, which is not installed; "
        "pip install 'mpq[export]'."
    )
    assert mpq.export(stored_run({"fc": "w8a8"}), 0, "compressed-tensors")["config_groups"]  # the config needs none


@pytest.mark.slow  # fast twins: the checkpoint tests above
def test_cli_writes_the_checkpoint_of_a_searched_llama(tmp_path, capsys):
    spec, db = write_llama(tmp_path), str(tmp_path / "mpq.db")
    # One candidate: every point's fused sets agree without the search-side tie (mpq search's own).
    search = ["search", "--model", spec, "--db", db, "--target", "cpu-x86", "--candidates", "w8a8"]
    code, _, err = run_cli(capsys, *search, "--probe", "measured", "--no-validate", "--no-bias-correction")
    assert code == 0, err
    point = str(mpq.open_run(db, 1).frontier["point"].iloc[-1])
    export = ["export", "1", "--point", point, "--to", "compressed-tensors", "--model", spec, "--db", db]
    code, out, err = run_cli(capsys, *export, "--checkpoint", str(tmp_path / "ck"))
    assert (code, out) == (0, f"wrote {tmp_path / 'ck'}\n"), err
    assert f"mpq: warning: run 1 point {point}: transformers loads no quantized embedding" in err  # w8a8 there too
    assert json.loads((tmp_path / "ck" / "config.json").read_text())["quantization_config"]["config_groups"]
    code, out, err = run_cli(capsys, *export, "--checkpoint", str(tmp_path / "ck"))  # not empty now
    assert code == 2 and out == "" and err.count("\n") == 1 and "is not empty; give a new folder" in err


def test_a_group_size_that_does_not_divide_a_row_is_refused_in_one_line(tmp_path):
    # o_proj's rows hold 64 weights: mpq pads the last group of 128, compressed-tensors cannot store it.
    spec = write_llama(tmp_path)
    point = {"lm.model.layers.0.self_attn.o_proj": "wint4_g128a16"}
    with pytest.raises(mpq.exceptions.InvalidParameterError) as info:
        mpq.export(stored_run(point, spec=spec), 0, "compressed-tensors", model=spec, checkpoint=tmp_path / "ck")
    assert str(info.value) == (
        "run 7 point 0: lm.model.layers.0.self_attn.o_proj's rows have 64 weights, not a multiple of int4_g128's "
        "groups of 128; choose a group size that divides 64 there (or per-channel weights), or export the config "
        "alone (without --checkpoint)."
    )
    assert not (tmp_path / "ck").exists()
