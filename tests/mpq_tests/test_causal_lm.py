"""Causal language models: ``--model hf:PATH`` on folders ``save_pretrained`` writes (a tiny
Llama and a GPT-2-shaped model, random weights), their bad input, and a search of perplexity
with fused sets (the trained ``example:tiny-llama`` end to end is the slow test at the bottom)."""

from __future__ import annotations

import json
import typing

import pandas as pd
import pytest
import torch
from cli_runner import run_cli

import mpq
from mpq import cli
from mpq._examples import causal_lm
from mpq._fingerprint import callable_hash
from mpq._trust import runs_code
from mpq.cli import main

transformers = pytest.importorskip("transformers", reason="needs the [llm] extra: pip install -e '.[llm]'")

SMALL = ["--seq-len", "16", "--calibration-tokens", "64", "--heldout-tokens", "64"]


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """Folders as save_pretrained writes them: llama, gpt2, bert (not causal), llama without a
    tokenizer; and --data files."""
    root = tmp_path_factory.mktemp("hf")
    torch.manual_seed(0)
    tokenizer = causal_lm.train_tokenizer(causal_lm.stdlib_documents()[:8], vocab_size=300)
    vocab = len(tokenizer)
    llama = transformers.LlamaForCausalLM(
        transformers.LlamaConfig(
            vocab_size=vocab,
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            tie_word_embeddings=False,
            bos_token_id=None,
            eos_token_id=0,
            pad_token_id=0,
        )
    )
    gpt2 = transformers.GPT2LMHeadModel(
        transformers.GPT2Config(
            vocab_size=vocab, n_embd=32, n_layer=2, n_head=2, n_positions=64, bos_token_id=0, eos_token_id=0
        )
    )
    bert = transformers.BertModel(
        transformers.BertConfig(
            vocab_size=vocab, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64
        )
    )
    tied = transformers.LlamaForCausalLM(
        transformers.LlamaConfig(**{**llama.config.to_dict(), "tie_word_embeddings": True, "architectures": None})
    )
    named = (("llama", llama), ("gpt2", gpt2), ("bert", bert), ("no-tokenizer", llama), ("llama-tied", tied))
    for name, model in named:
        model.save_pretrained(root / name)
        if name != "no-tokenizer":
            tokenizer.save_pretrained(root / name)
    (root / "empty.txt").write_text("")
    (root / "short.txt").write_text("def f(): pass\n")
    text = "\n".join(causal_lm.stdlib_documents()[8:10])
    (root / "plain.txt").write_text(text)
    (root / "lines.jsonl").write_text(
        "\n".join(json.dumps({"text": chunk}) for chunk in text.split("\n\n") if chunk.strip())
    )
    return root


def test_a_llama_folder_is_a_perplexity_task_with_its_fused_sets(folders):
    task = mpq.load_task(f"hf:{folders / 'llama'}", seq_len=16, calibration_tokens=64, heldout_tokens=64)
    assert task.metric_name == "perplexity" and task.higher_is_better is False
    assert isinstance(task.model, transformers.LlamaForCausalLM)  # the model itself: its names are HF's
    blocks = [f"model.layers.{i}" for i in range(2)]
    assert list(task.fused) == [
        group
        for block in blocks
        for group in (
            (f"{block}.self_attn.q_proj", f"{block}.self_attn.k_proj", f"{block}.self_attn.v_proj"),
            (f"{block}.mlp.gate_proj", f"{block}.mlp.up_proj"),
        )
    ]
    assert mpq.fused_sets(task.model, task.calibration[0][0]) == task.fused  # the one function, public
    inputs, targets = task.calibration[0]
    assert inputs["input_ids"].shape == (4, 16) and torch.equal(inputs["input_ids"], targets)
    vocab = task.model.config.vocab_size
    assert 0.5 * vocab < task.evaluate(task.model) < 2 * vocab  # random weights: about uniform over the vocabulary
    with torch.no_grad():
        logits = task.model(input_ids=inputs["input_ids"])
    expected = torch.nn.functional.cross_entropy(
        logits[:, :-1].reshape(-1, logits.shape[-1]), targets[:, 1:].reshape(-1)
    )
    assert float(task.loss_fn(logits, targets)) == pytest.approx(float(expected))


def test_the_spec_rebuilds_the_same_task_and_another_seq_len_is_another_task(folders):
    task = mpq.load_task(f"hf:{folders / 'llama'}", seq_len=16, calibration_tokens=64, heldout_tokens=64)
    assert task.spec == f"hf:{(folders / 'llama').resolve()}?seq_len=16&calibration_tokens=64&heldout_tokens=64"
    again = mpq.load_task(task.spec)  # what a worker or a resumed run does
    assert callable_hash(again.evaluate) == callable_hash(task.evaluate)
    assert all(torch.equal(a[1], b[1]) for a, b in zip(again.calibration, task.calibration))
    assert not runs_code(task.spec)  # a reader of the store rebuilds it without --trust-stored-model
    other = mpq.load_task(f"hf:{folders / 'llama'}", seq_len=32, calibration_tokens=64, heldout_tokens=64)
    assert callable_hash(other.evaluate) != callable_hash(task.evaluate)


@pytest.mark.parametrize("data", ["plain.txt", "lines.jsonl"])
def test_data_as_plain_text_or_json_lines(folders, data):
    task = mpq.load_task(f"hf:{folders / 'llama'}", data=folders / data, seq_len=16, calibration_tokens=64)
    assert f"data={folders / data}".replace("/", "%2F") in task.spec
    assert task.evaluate(task.model) > 1


GPT2_CONV1D = [
    f"transformer.h.{block}.{layer}"
    for block in (0, 1)
    for layer in ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj")
]


def test_a_gpt2_folders_conv1d_layers_load_as_the_linear_layers_they_compute(folders):
    task = mpq.load_task(f"hf:{folders / 'gpt2'}", seq_len=16, calibration_tokens=64, heldout_tokens=64)
    table = mpq.layers(task.model, task.calibration[0][0]).set_index("layer")
    assert list(table.index) == ["transformer.wte", "transformer.wpe", *GPT2_CONV1D, "lm_head"]
    assert set(table.loc[GPT2_CONV1D, "kind"]) == {"linear"}
    assert table.loc["transformer.h.0.attn.c_attn", "weight_shape"] == (96, 32)  # [out, in], as nn.Linear holds it
    assert task.fused == ()  # c_attn is q, k and v fused already
    original = transformers.AutoModelForCausalLM.from_pretrained(folders / "gpt2", attn_implementation="eager").eval()
    assert isinstance(original.transformer.h[0].attn.c_attn, transformers.pytorch_utils.Conv1D)
    ids = task.calibration[0][0]["input_ids"]
    with torch.no_grad():
        torch.testing.assert_close(task.model(input_ids=ids), original(input_ids=ids).logits, rtol=0, atol=1e-5)
    applied = mpq.apply(task.model, {"transformer.h.0.attn.c_attn": "w4a16"}, calibration=task.calibration)
    codes = applied.transformer.h[0].attn.c_attn.weight.detach()
    assert all(len(row.unique()) <= 16 for row in codes)  # 4-bit weights, per output channel
    assert task.evaluate(task.model) > 1


@pytest.fixture(scope="module")
def gpt2_run(folders, tmp_path_factory):
    """One small search of the GPT-2 folder."""
    db = tmp_path_factory.mktemp("gpt2") / "mpq.db"
    argv = ["search", "--model", f"hf:{folders / 'gpt2'}", *SMALL, "--target", "h100-sxm-weight-only"]
    argv += ["-o", "weight_bytes", "--max-samples", "2", "--tolerance", "0.9", "--max-points", "4", "--db", str(db)]
    try:
        main([*argv, "--json"])
    except SystemExit as exc:
        assert exc.code in (0, None)
    return db


def test_a_gpt2_search_probes_and_chooses_formats_for_its_conv1d_layers(gpt2_run):
    run = mpq.open_run(str(gpt2_run), 1)
    sensitivity = run.tables["sensitivity"]
    assert set(sensitivity["probe"]) == {"efisher_w", "efisher_a"}  # a language model's default probe, recorded
    traced = sensitivity[(sensitivity["probe"] == "efisher_w") & sensitivity["layer"].isin(GPT2_CONV1D)]
    assert len(traced) == len(GPT2_CONV1D)
    omega = run.tables["omega"]
    assert set(GPT2_CONV1D) <= set(omega["layer"]) and (omega[omega["layer"].isin(GPT2_CONV1D)]["omega"] > 0).any()
    quantized = [p for p in run.frontier["point"] if any(run.assignment(p)[c] != "w16a16" for c in GPT2_CONV1D)]
    assert quantized


def test_a_gpt2_point_exports_to_onnx_and_its_checkpoint_is_refused_in_one_line(gpt2_run, tmp_path, capsys):
    ort = pytest.importorskip("onnxruntime", reason="needs the [export] extra")
    run = mpq.open_run(str(gpt2_run), 1)
    task = mpq.load_task(run.record["model_spec"])
    point = dict.fromkeys(GPT2_CONV1D, "w8a16") | {"transformer.h.1.mlp.c_fc": "wint4_g32a16"}
    point |= dict.fromkeys(["transformer.wte", "lm_head"], "w4a16")  # tied: one weight, two quantized layers
    frontier = run.frontier.iloc[:1].assign(point=0, dominated=False)
    assignments = pd.DataFrame({"point": 0, "layer": list(point), "candidate": list(point.values())})
    one_point = mpq.Run(1, run.db, "done", run.record, frontier, assignments, run.tables)
    path = mpq.export(one_point, 0, "onnx", tmp_path / "gpt2.onnx")
    ids = task.calibration[0][0]["input_ids"]
    options = ort.SessionOptions()  # the graph as written: ONNX Runtime's fused integer kernels round otherwise
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    got = torch.from_numpy(ort.InferenceSession(str(path), options).run(None, {"input_ids": ids.numpy()})[0])
    with torch.no_grad():
        expected = mpq.apply(task.model, point, calibration=task.calibration, quantizer=run.quantizer)(input_ids=ids)
        effect = float((expected - task.model(input_ids=ids)).abs().max())
    assert float((got - expected).abs().max()) < 1e-5 < 0.001 < effect  # measured: 1.2e-07 against 0.0122

    best = str(run.frontier["point"].iloc[0])
    code, out, err = run_cli(
        capsys,
        "export",
        "1",
        "--point",
        best,
        "--to",
        "compressed-tensors",
        "--checkpoint",
        str(tmp_path / "ck"),
        "--db",
        str(gpt2_run),
    )
    assert code == 2 and out == "" and err.count("\n") == 1 and "Traceback" not in err
    assert "GPT2LMHeadModel's transformer.h.0.attn.c_attn and 7 more are transformers Conv1D layers" in err
    assert "export the point as onnx, or its config alone (without --checkpoint)" in err
    assert not (tmp_path / "ck").exists()


def test_tied_embeddings_are_two_layers_and_apply_and_the_checkpoint_untie_them(folders, tmp_path):
    pytest.importorskip("compressed_tensors", reason="needs the [export] extra")
    from mpq._checkpoint import write_checkpoint

    task = mpq.load_task(f"hf:{folders / 'llama-tied'}", seq_len=16, calibration_tokens=64, heldout_tokens=64)
    model = task.model
    assert model.lm_head.weight is model.model.embed_tokens.weight
    table = mpq.layers(model, task.calibration[0][0])
    assert {"model.embed_tokens", "lm_head"} <= set(table["layer"])  # searched as two layers, one weight
    float_weight = model.lm_head.weight.detach().clone()
    point = {"lm_head": "wint8_g32afp32", "model.layers.0.mlp.down_proj": "wint4_g32afp32"}
    quantizer = mpq.QuantizerSettings(bias_correction=False)  # Llama's projections have no bias to hold it
    applied = mpq.apply(model, point, calibration=task.calibration, quantizer=quantizer)
    assert torch.equal(applied.model.embed_tokens.weight, float_weight)  # the embedding stays float
    assert not torch.equal(applied.lm_head.weight, float_weight)
    assert model.lm_head.weight is model.model.embed_tokens.weight and torch.equal(model.lm_head.weight, float_weight)

    folder = write_checkpoint(model, point, tmp_path / "ck", calibration=task.calibration, quantizer=quantizer)
    assert json.loads((folder / "config.json").read_text())["tie_word_embeddings"] is False
    loaded = transformers.AutoModelForCausalLM.from_pretrained(folder).eval()
    ids = task.calibration[0][0]["input_ids"]
    with torch.no_grad():
        diff = float((loaded(input_ids=ids).logits - applied(input_ids=ids)).abs().max())
        effect = float((applied(input_ids=ids) - model(input_ids=ids)).abs().max())
    assert diff <= 1e-5 < effect, (diff, effect)


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--model", "hf:{root}/missing"], "folder '{root}/missing' does not exist"),
        (["--model", "hf:{root}/bert"], "BertModel is not a causal language model"),
        (["--model", "hf:{root}/no-tokenizer"], "no tokenizer"),
        (["--model", "hf:{root}/llama", "--data", "{root}/empty.txt"], "0 tokens, fewer than two sequences"),
        (["--model", "hf:{root}/llama", "--data", "{root}/short.txt"], "fewer than two sequences of --seq-len 128"),
        (["--model", "hf:{root}/llama", "--data", "{root}/absent.txt"], "no such file"),
        (["--model", "example:digits-cnn", "--seq-len", "64"], "--seq-len: applies to --model hf:PATH only"),
        (["--model", "hf:{root}/llama?seq_len=many"], "are whole numbers of tokens"),
        (["--model", "hf:{root}/llama?width=3"], "unknown setting 'width'"),
    ],
    ids=[
        "missing",
        "not-causal",
        "no-tokenizer",
        "empty-data",
        "short-data",
        "absent-data",
        "seq-len-elsewhere",
        "bad-number",
        "unknown-setting",
    ],
)
def test_bad_input_is_one_line(folders, capsys, tmp_path, argv, expected):
    db = tmp_path / "mpq.db"
    argv = [a.format(root=folders) for a in argv]
    code, out, err = run_cli(capsys, "search", *argv, "--db", str(db))
    assert code != 0 and out == ""
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert expected.format(root=folders) in err, err
    assert not db.exists()  # nothing stored


@pytest.fixture(scope="module")
def searched(folders, tmp_path_factory):
    """One small search of the llama folder's perplexity, fused (the default), and one --no-fuse."""
    db = tmp_path_factory.mktemp("llm") / "mpq.db"
    target = "h100-sxm-weight-only"
    common = ["search", "--model", f"hf:{folders / 'llama'}", *SMALL, "--target", target, "-o", "weight_bytes"]
    common += ["--max-samples", "2", "--tolerance", "0.9", "--max-points", "4", "--db", str(db), "--json"]
    for extra in ([], ["--no-fuse"]):
        try:
            main([*common, *extra])
        except SystemExit as exc:
            assert exc.code in (0, None)
    return db


def test_a_search_keeps_fused_sets_together_and_follows_the_lower_perplexity(searched):
    run = mpq.open_run(str(searched), 1)
    assert run.higher_is_better is False and run.record["metric_name"] == "perplexity"
    ties = run.record["settings"]["ties"]
    assert len(ties) == 4
    measured = run.frontier[run.frontier["measured_metric"].notna()]
    assert len(measured) >= 3
    for point in run.frontier["point"]:
        assignment = run.assignment(point)
        for group in ties:
            assert len({assignment[layer] for layer in group}) == 1, (point, group)
    # the best point is the lowest perplexity; a point beaten on measurement has a cheaper or
    # equal point measuring a perplexity no higher
    assert run.best()["measured_metric"] == measured.loc[~measured["is_baseline"], "measured_metric"].min()
    for _, row in measured[measured["dominated"].astype(bool)].iterrows():
        beats = measured[(measured["weight_bytes"] <= row["weight_bytes"]) & (measured["point"] != row["point"])]
        assert (beats["measured_metric"] <= row["measured_metric"]).any()
    floor = run.record["float_metric"]
    within = run.best(max_drop="50%")
    assert within["measured_metric"] <= 1.5 * floor


def test_no_fuse_chooses_per_layer_and_its_export_still_keeps_the_fused_sets(searched):
    run = mpq.open_run(str(searched), 2)
    assert run.record["settings"]["ties"] == []
    assert run.fused == mpq.open_run(str(searched), 1).fused == run.record["settings"]["fused"]
    assert len(run.fused) == 4  # recorded as the task found them, tied or not
    q, k, v = run.fused[0]
    split = run.assignment(1) | {q: "w8a16", k: "w4a16"}
    frontier = run.frontier.iloc[:1].assign(point=0)
    assignments = pd.DataFrame({"point": 0, "layer": list(split), "candidate": list(split.values())})
    one_point = mpq.Run(2, run.db, "done", run.record, frontier, assignments, run.tables)
    with pytest.raises(mpq.exceptions.InvalidParameterError, match=r"self_attn\.\{q_proj,k_proj,v_proj\} as one fused"):
        mpq.export(one_point, 0, "compressed-tensors")


def test_mpq_probe_in_python_samples_a_language_models_hessian_with_split(folders):
    task = mpq.load_task(f"hf:{folders / 'gpt2'}", seq_len=16, calibration_tokens=64, heldout_tokens=64)
    assert set(mpq.probe(task, settings=None)["probe"]) == {"efisher_w", "efisher_a"}  # the task's default probes
    with pytest.warns(mpq.exceptions.SensitivityWarning):  # 10 samples of random weights: plumbing, not precision
        table = mpq.probe(task, settings=mpq.ProbeSettings(max_samples=10, tolerance=0.9))
    assert table["value"].notna().all() and set(table["probe"]) == {"hessian_w", "hessian_a"}
    # split: output noise for every layer at once, and a residual product for weights and inputs per sample
    assert (table["hvps"] == 2 * table["n_samples"]).all() and (table["backwards"] == 2 * table["n_samples"]).all()


def test_mpq_probe_takes_the_text_flags_search_takes(folders, tmp_path, capsys):
    probe = ["probe", "--model", f"hf:{folders / 'gpt2'}", "--seq-len", "16", "--heldout-tokens", "64"]
    probe += ["--max-samples", "10", "--tolerance", "0.9", "--db", str(tmp_path / "mpq.db"), "--json"]
    hvps = {}
    for tokens in ("64", "128"):  # one calibration batch of 4 sequences of 16 tokens, then two
        code, out, err = run_cli(capsys, *probe, "--calibration-tokens", tokens, "--probes", "hessian_w,hessian_a")
        assert code == 0, err
        rows = {(row["layer"], row["probe"]): row for row in json.loads(out)}
        assert ("transformer.h.0.attn.c_attn", "hessian_w") in rows
        hvps[tokens] = rows["lm_head", "hessian_w"]["hvps"]
    assert hvps == {"64": 20, "128": 40}  # split: a residual product for the weights, one for the inputs, per batch
    code, out, err = run_cli(capsys, *probe, "--calibration-tokens", "64")
    assert code == 0, err
    assert {row["probe"] for row in json.loads(out)} == {"efisher_w", "efisher_a"}  # a language model's default
    code, out, err = run_cli(capsys, "probe", "--seq-len", "64", "--db", str(tmp_path / "other.db"))
    assert code == 2 and out == "" and err.count("\n") == 1
    assert "--seq-len: applies to --model hf:PATH only" in err and not (tmp_path / "other.db").exists()
    # One definition of each flag, shared: the two commands cannot drift apart.
    shared = (cli.DataOption, cli.SeqLenOption, cli.CalibrationTokensOption, cli.HeldoutTokensOption)
    for command in (cli.search, cli.probe_command):
        hints = typing.get_type_hints(command, include_extras=True)  # typer's OptionInfo compares by identity
        assert tuple(hints[name] for name in ("data", "seq_len", "calibration_tokens", "heldout_tokens")) == shared


def test_tiny_llama_is_registered_without_training_it():
    examples = mpq.list_examples()
    assert {"tiny-llama", "tiny-llama-small"} <= set(examples["name"])


def test_the_training_record_holds_the_perplexity_the_task_measures(folders):
    """What tiny-llama's training logs and stores: its task's held-out perplexity and a unigram
    model's, without leaving the model changed (here on a random Llama)."""
    text = causal_lm.TINY_LLAMA_TEXT
    task = mpq.load_task(
        f"hf:{folders / 'llama'}", calibration_tokens=text.calibration_tokens, heldout_tokens=text.heldout_tokens
    )
    model = transformers.AutoModelForCausalLM.from_pretrained(folders / "llama", attn_implementation="eager").eval()
    tokenizer = transformers.AutoTokenizer.from_pretrained(folders / "llama")
    training, heldout = causal_lm.split_documents(causal_lm.stdlib_documents())
    tokens = causal_lm.token_stream(tokenizer, training[:20], 10**9)
    record = causal_lm.training_record(model, tokenizer, tokens, heldout, 1.5, 2.5)
    assert record["heldout_perplexity"] == pytest.approx(task.evaluate(task.model), rel=1e-5)
    unigram = causal_lm.unigram_perplexity(tokens, causal_lm.token_stream(tokenizer, heldout, text.heldout_tokens))
    assert record["unigram_perplexity"] == pytest.approx(unigram)
    assert record["parameters"] == sum(p.numel() for p in model.parameters())
    assert (record["wall_s"], record["cpu_s"]) == (1.5, 2.5)
    assert not isinstance(model(input_ids=tokens[None, :8]), torch.Tensor)  # its logits hook is gone


@pytest.mark.parametrize("amx", [True, False])
def test_tiny_llama_trains_in_bfloat16_only_on_a_cpu_with_amx_and_caches_each_dtype_apart(monkeypatch, amx):
    """bfloat16 costs more than float32 without AMX (docs/llm.md), and a bfloat16-trained model is
    another model: its cached folder is another folder."""
    capabilities = {**torch.cpu.get_capabilities(), "amx_bf16": amx}
    monkeypatch.setattr(torch.cpu, "get_capabilities", lambda: capabilities)
    assert causal_lm.training_dtype() == (torch.bfloat16 if amx else torch.float32)
    training = ["def f():\n    return 1\n"]
    names = {dtype: causal_lm.cache_name(training, dtype) for dtype in (torch.bfloat16, torch.float32)}
    assert names[torch.bfloat16] != names[torch.float32]
    assert all(name.startswith(causal_lm.RECIPE + "-") for name in names.values())
    assert causal_lm.cache_name(["other text"], torch.float32) != names[torch.float32]


def test_training_is_seeded_in_either_dtype_and_bfloat16_tracks_float32(folders, monkeypatch):
    """_train (a few steps, on the small random Llama): the same weights twice in each dtype,
    float32 master weights under the bfloat16 autocast, close to float32's, and the model left
    with the attention it is saved with."""
    monkeypatch.setattr(causal_lm, "TRAIN_STEPS", 4)
    tokenizer = transformers.AutoTokenizer.from_pretrained(folders / "llama")
    tokens = causal_lm.token_stream(tokenizer, causal_lm.stdlib_documents()[:4], 10**9)

    def trained(dtype):
        model = transformers.AutoModelForCausalLM.from_pretrained(folders / "llama")
        before = {k: v.clone() for k, v in model.state_dict().items()}
        causal_lm._train(model, tokens, dtype)
        assert model.config._attn_implementation == "sdpa" and not model.training
        weights = model.state_dict()
        assert all(v.dtype == torch.float32 for v in weights.values())
        assert not all(torch.equal(before[k], weights[k]) for k in weights)  # it trained
        return weights

    float32, bfloat16 = trained(torch.float32), trained(torch.bfloat16)
    for dtype, weights in ((torch.float32, float32), (torch.bfloat16, bfloat16)):
        again = trained(dtype)
        assert all(torch.equal(weights[k], again[k]) for k in weights)
    assert not all(torch.equal(float32[k], bfloat16[k]) for k in float32)  # the autocast took effect
    for name in float32:
        step = (float32[name] - bfloat16[name]).abs().max()
        assert step <= 0.1 * float32[name].abs().max(), name


@pytest.fixture(scope="module")
def tiny_llama_search(tmp_path_factory):
    """tiny-llama trained here (minutes, seeded) and the store of docs/llm.md's frontier search of it."""
    db = str(tmp_path_factory.mktemp("tiny-llama") / "mpq.db")
    try:
        main([*PROOF, "--db", db])
    except SystemExit as exc:
        assert exc.code in (0, None)
    return db


@pytest.mark.slow
def test_tiny_llama_learns_and_its_int4_checkpoint_loads_in_transformers(tiny_llama_search, tmp_path, capsys):
    """The proof of docs/llm.md: tiny-llama (10-30 M parameters, every layer's rows a whole number
    of groups of 128) trained here measures far below a unigram model; every point of its search
    keeps each fused set at one format; a point with int4_g128 layers exports as a checkpoint
    transformers loads, whose logits are mpq.apply's."""
    task = mpq.load_task("example:tiny-llama")
    folder = causal_lm.tiny_llama_folder()
    parameters = sum(p.numel() for p in task.model.parameters())
    assert 10e6 <= parameters <= 30e6
    assert all(m.in_features % 128 == 0 for m in task.model.modules() if isinstance(m, torch.nn.Linear))
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
    training, heldout = causal_lm.split_documents(causal_lm.stdlib_documents())
    unigram = causal_lm.unigram_perplexity(
        causal_lm.token_stream(tokenizer, training, 10**9),
        causal_lm.token_stream(tokenizer, heldout, causal_lm.TINY_LLAMA_TEXT.heldout_tokens),
    )
    perplexity = task.evaluate(task.model)
    assert perplexity < unigram / 2
    record = json.loads((folder / causal_lm.TRAINING_RECORD).read_text())  # what training logged
    assert record["parameters"] == parameters and record["unigram_perplexity"] == pytest.approx(unigram)
    assert record["heldout_perplexity"] == pytest.approx(perplexity, rel=1e-3)  # SDPA there, eager here

    run = mpq.open_run(tiny_llama_search, 1)
    frontier = run.frontier
    for point in frontier["point"]:
        assignment = run.assignment(point)
        assert all(len({assignment[layer] for layer in group}) == 1 for group in task.fused)

    # The checkpoint of the mixed point with the most grouped INT4 layers.
    mixed = frontier[~frontier["is_baseline"]]
    int4 = {p: list(run.assignment(p).values()).count("wint4_g128afp16") for p in mixed["point"]}
    point = max(int4, key=int4.get)
    assert int4[point] > 0
    checkpoint = tmp_path / "checkpoint"
    export = ["export", "1", "--point", str(point), "--to", "compressed-tensors", "--checkpoint", str(checkpoint)]
    try:
        main([*export, "--db", tiny_llama_search])
    except SystemExit as exc:
        assert exc.code in (0, None), capsys.readouterr().err
    assert capsys.readouterr().out == f"wrote {checkpoint}\n"
    groups = json.loads((checkpoint / "config.json").read_text())["quantization_config"]["config_groups"]
    assert {"num_bits": 4, "group_size": 128} in [
        {k: g["weights"][k] for k in ("num_bits", "group_size")} for g in groups.values()
    ]
    loaded = transformers.AutoModelForCausalLM.from_pretrained(checkpoint).eval()
    applied = mpq.apply(task.model, run.assignment(point), calibration=task.calibration, quantizer=run.quantizer)
    ids = task.calibration[0][0]["input_ids"]
    with torch.no_grad():
        float_logits, applied_logits = task.model(input_ids=ids), applied(input_ids=ids)
        checkpoint_logits = loaded(input_ids=ids).logits
    # fp16 inputs of a16 layers are mpq.apply's alone (the checkpoint computes in float32), so
    # the two differ by that rounding, a fixed share of the quantization's own deviation from
    # float. Measured on tiny-llama v5: 0.0027 against 0.27 (1.0 %; v4: 0.0024 against 0.34).
    assert float((checkpoint_logits - applied_logits).abs().max()) < 0.02 * float(
        (applied_logits - float_logits).abs().max()
    )


def _beats(frontier, label: str) -> bool:
    """A validated mixed point at or below the bytes of uniform ``label`` measures a lower perplexity."""
    mixed = frontier[~frontier["is_baseline"] & frontier["measured_metric"].notna()]
    baseline = frontier[frontier["label"] == label].iloc[0]
    cheaper = mixed[mixed["weight_bytes"] <= baseline["weight_bytes"]]
    return bool((cheaper["measured_metric"] < baseline["measured_metric"]).any())


@pytest.mark.slow
def test_tiny_llamas_frontier_beats_uniform_grouped_w4a16(tiny_llama_search):
    """Issue 29's proof: at least 6 validated mixed points on the measured frontier, and one at or
    below the bytes of uniform grouped w4a16 that measures a lower perplexity."""
    frontier = mpq.open_run(tiny_llama_search, 1).frontier
    measured = frontier[frontier["measured_metric"].notna() & ~frontier["dominated"].astype(bool)]
    assert len(measured[~measured["is_baseline"]]) >= 6
    assert _beats(frontier, "all-wint4_g128afp16")


def _paired_rise(run, task, point: int, label: str) -> tuple[float, float]:
    """Perplexity of ``point`` minus uniform ``label``'s on tiny-llama's held-out sequences, and
    its paired standard error: over the sequences, of the difference of their mean next-token
    losses, times the perplexity (a difference of perplexities, to first order)."""
    baseline = int(run.frontier.set_index("label").loc[label, "point"])
    tokenizer = transformers.AutoTokenizer.from_pretrained(causal_lm.tiny_llama_folder())
    heldout = causal_lm.text_splits(tokenizer, causal_lm.TINY_LLAMA_TEXT, "tiny-llama")[1]
    calibrated = mpq.calibrate(task.model, task.calibration, quantizer=run.quantizer)
    losses = []
    for p in (point, baseline):
        model = mpq.apply(task.model, run.assignment(p), act_ranges=calibrated)
        with torch.no_grad():
            logits = model(input_ids=heldout)
        nll = torch.nn.functional.cross_entropy(logits[:, :-1].transpose(1, 2), heldout[:, 1:], reduction="none")
        losses.append(nll.double().mean(1))
    difference = losses[0] - losses[1]
    perplexity = float(losses[1].mean().exp())
    rise = float(losses[0].mean().exp()) - perplexity
    return rise, float(difference.std() / len(difference) ** 0.5) * perplexity


@pytest.mark.slow
@pytest.mark.xfail(
    strict=True,
    raises=AssertionError,
    reason="not met by tiny-llama v5 (docs/llm.md, The frontier): uniform w8a16 is the float model's equal within "
    "the noise (84.588 against 84.595 on 16384 held-out tokens, paired standard error 0.004), and no mixed point at or "
    "below its bytes measures lower (the best, 84.599); a mixed point must lower a layer below 8 bits, which costs a "
    "rise 128 sequences resolve",
)
def test_tiny_llamas_frontier_beats_uniform_w8a16(tiny_llama_search):
    """A mixed point at or below uniform w8a16's bytes measures a lower perplexity, by more than
    twice the paired standard error of the difference over the 128 held-out sequences: a lower
    third decimal alone is the held-out text's noise (docs/llm.md)."""
    run = mpq.open_run(tiny_llama_search, 1)
    frontier = run.frontier
    assert _beats(frontier, "all-w8a16")
    w8a16_bytes = frontier.set_index("label").loc["all-w8a16", "weight_bytes"]
    mixed = frontier[~frontier["is_baseline"] & frontier["measured_metric"].notna()]
    best = int(mixed[mixed["weight_bytes"] <= w8a16_bytes].sort_values("measured_metric")["point"].iloc[0])
    rise, standard_error = _paired_rise(run, mpq.load_task("example:tiny-llama"), best, "all-w8a16")
    assert rise < -2 * standard_error


#: The command of docs/llm.md's frontier table.
PROOF = [
    "search",
    "--model",
    "example:tiny-llama",
    "--target",
    "h100-sxm-weight-only",
    "--candidates",
    "wint3_g128afp16,wint4_g128afp16,w8a16,w16a16",
    "-o",
    "weight_bytes",
    "--no-bias-correction",  # Llama's projections have no bias to hold one: the checkpoint is the measured point
]


def test_a_stored_hf_run_resumes_from_its_spec_alone(searched, capsys):
    """The stored spec carries the text settings: --resume rebuilds the same task (checked by hash)."""
    try:
        main(["search", "--resume", "1", "--db", str(searched), "--json"])
    except SystemExit as exc:
        assert exc.code in (0, None), capsys.readouterr().err
    assert json.loads(capsys.readouterr().out)["run"] == 1
