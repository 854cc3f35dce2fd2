"""Causal language models: ``--model hf:PATH`` on folders ``save_pretrained`` writes (a tiny
Llama and a GPT-2-shaped model, random weights), their bad input, and a search of perplexity
with fused sets (the trained ``example:tiny-llama`` end to end is the slow test at the bottom)."""

from __future__ import annotations

import json

import pytest
import torch

import mpq
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
    for name, model in (("llama", llama), ("gpt2", gpt2), ("bert", bert), ("no-tokenizer", llama)):
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


def run_cli(capsys, *argv):
    with pytest.raises(SystemExit) as info:
        main(list(argv))
    out, err = capsys.readouterr()
    return info.value.code, out, err


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


def test_a_gpt2_shaped_folder_loads(folders):
    task = mpq.load_task(f"hf:{folders / 'gpt2'}", seq_len=16, calibration_tokens=64, heldout_tokens=64)
    layers = mpq.layers(task.model, task.calibration[0][0])
    assert {"transformer.wte", "lm_head"} <= set(layers["layer"]) and task.fused == ()  # c_attn is fused already
    assert task.evaluate(task.model) > 1


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


def test_no_fuse_chooses_per_layer(searched):
    run = mpq.open_run(str(searched), 2)
    assert run.record["settings"]["ties"] == []


def test_tiny_llama_is_registered_without_training_it():
    examples = mpq.list_examples()
    assert {"tiny-llama", "tiny-llama-small"} <= set(examples["name"])


def test_the_training_record_holds_the_perplexity_the_task_measures(folders):
    """What tiny-llama's training logs and stores: its task's held-out perplexity and a unigram
    model's, without leaving the model changed (here on a random Llama)."""
    task = mpq.load_task(f"hf:{folders / 'llama'}", calibration_tokens=1024, heldout_tokens=4096)
    model = transformers.AutoModelForCausalLM.from_pretrained(folders / "llama", attn_implementation="eager").eval()
    tokenizer = transformers.AutoTokenizer.from_pretrained(folders / "llama")
    training, heldout = causal_lm.split_documents(causal_lm.stdlib_documents())
    tokens = causal_lm.token_stream(tokenizer, training[:20], 10**9)
    record = causal_lm.training_record(model, tokenizer, tokens, heldout, 1.5, 2.5)
    assert record["heldout_perplexity"] == pytest.approx(task.evaluate(task.model), rel=1e-5)
    unigram = causal_lm.unigram_perplexity(tokens, causal_lm.token_stream(tokenizer, heldout, 4096))
    assert record["unigram_perplexity"] == pytest.approx(unigram)
    assert record["parameters"] == sum(p.numel() for p in model.parameters())
    assert (record["wall_s"], record["cpu_s"]) == (1.5, 2.5)
    assert not isinstance(model(input_ids=tokens[None, :8]), torch.Tensor)  # its logits hook is gone


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
        causal_lm.token_stream(tokenizer, training, 10**9), causal_lm.token_stream(tokenizer, heldout, 4096)
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
    # fp16 inputs of a16 layers are mpq.apply's alone (the checkpoint computes in float32).
    # Measured: 0.0031 against 2.1 (docs/llm.md).
    assert float((checkpoint_logits - applied_logits).abs().max()) < 0.01 * float(
        (applied_logits - float_logits).abs().max()
    )


@pytest.mark.slow
@pytest.mark.xfail(
    strict=True,
    raises=AssertionError,
    reason="not met by tiny-llama v4 (docs/llm.md, The frontier): the probe estimates the embedding's Hessian "
    "trace negative (counted as 0), so every mixed point keeps it in INT3, which alone measures perplexity 103.17 "
    "against uniform wint4_g128afp16's 103.0",
)
def test_tiny_llamas_frontier_beats_the_uniform_baselines(tiny_llama_search):
    """Issue 29's proof: at least 6 validated points on the measured frontier, and points at or below
    the bytes of uniform grouped w4a16 and of w8a16 that measure a lower perplexity."""
    frontier = mpq.open_run(tiny_llama_search, 1).frontier
    measured = frontier[frontier["measured_metric"].notna() & ~frontier["dominated"].astype(bool)]
    mixed = frontier[~frontier["is_baseline"] & frontier["measured_metric"].notna()]
    beaten = []
    for label in ("all-wint4_g128afp16", "all-w8a16"):
        baseline = frontier[frontier["label"] == label].iloc[0]
        cheaper = mixed[mixed["weight_bytes"] <= baseline["weight_bytes"]]
        beaten.append((cheaper["measured_metric"] < baseline["measured_metric"]).any())
    assert len(measured[~measured["is_baseline"]]) >= 6 and all(beaten)


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
    "--strategy",
    "frontier",
    "--max-points",
    "8",
    "--max-samples",
    "8",
    "--tolerance",
    "0.3",
    "--no-bias-correction",  # Llama's projections have no bias to hold one: the checkpoint is the measured point
]


def test_a_stored_hf_run_resumes_from_its_spec_alone(searched, capsys):
    """The stored spec carries the text settings: --resume rebuilds the same task (checked by hash)."""
    try:
        main(["search", "--resume", "1", "--db", str(searched), "--json"])
    except SystemExit as exc:
        assert exc.code in (0, None), capsys.readouterr().err
    assert json.loads(capsys.readouterr().out)["run"] == 1
