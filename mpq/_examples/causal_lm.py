"""Causal language models as tasks: ``--model hf:PATH`` and ``example:tiny-llama``.

``hf:PATH`` loads a decoder from a folder as ``save_pretrained`` writes it (config.json, weights,
tokenizer files) with ``transformers``, offline (``local_files_only``, ``HF_HUB_OFFLINE``): nothing
is ever downloaded. Its text is ``--data FILE`` (plain text, or JSON lines with a ``"text"``
field) or the built-in corpus: the source of the installed Python standard library's top-level
modules, split by module (seeded) into training and held-out modules. The loss is next-token
cross-entropy on the calibration sequences; the metric is the held-out perplexity, lower is
better. Layers that read the same input tensor in one block (q/k/v, gate/up) are fused sets: they
share one format in every point unless the search is told otherwise (``--no-fuse``).

``example:tiny-llama`` is a small Llama (RMSNorm, rotary positions, SwiGLU, grouped-query
attention, untied embeddings) trained here, seeded, on the training modules of that corpus with
a byte-level BPE tokenizer trained on them too; the folder it is saved in is cached like the
digits CNN's weights and then loaded as ``hf:`` loads any folder.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import shutil
import sysconfig
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl, urlencode

import numpy as np
import torch
from torch import nn

from mpq._examples._cache import cache_dir
from mpq._examples._registry import register_example
from mpq._layers import fused_sets
from mpq._param_checks import Interval, check_param
from mpq._task import Task, model_device
from mpq.exceptions import TaskSpecError
from mpqvocab import shown

logger = logging.getLogger("mpq.examples.causal_lm")

SEED = 0
#: Every this-many-th module of the seeded order is held out (never trained on, never calibrated on).
HELDOUT_EVERY = 10
#: Sequences per batch, for calibration and for the held-out perplexity.
BATCH_SEQUENCES = 4


@dataclass(frozen=True)
class TextSettings:
    """Where a causal LM task's text comes from and how much of it is used.

    Attributes:
        data: A text file (plain text, or JSON lines with a ``"text"`` field), or None for the
            built-in standard-library corpus.
        seq_len: Tokens per sequence.
        calibration_tokens: Tokens of calibration text (whole sequences, at least one).
        heldout_tokens: Tokens of held-out text the perplexity is measured on.
    """

    data: str | None = None
    seq_len: int = 128
    calibration_tokens: int = 2048
    heldout_tokens: int = 8192

    def check(self) -> TextSettings:
        for name in ("seq_len", "calibration_tokens", "heldout_tokens"):
            check_param("load_task", name, getattr(self, name), Interval(int, 2, None))
        return self

    def spec_suffix(self) -> str:
        """The settings that differ from the defaults, as a ``?key=value&...`` suffix of the spec,
        so that a worker or a resumed run rebuilds the same task from the spec alone."""
        default = TextSettings()
        changed = {k: v for k, v in vars(self).items() if v != getattr(default, k)}
        return "?" + urlencode(changed) if changed else ""

    @classmethod
    def from_spec(cls, query: str) -> TextSettings:
        values = dict(parse_qsl(query))
        unknown = sorted(set(values) - set(vars(cls())))
        if unknown:
            raise TaskSpecError(
                f"--model hf:...?{query}: unknown setting {unknown[0]!r}; the settings are "
                "data, seq_len, calibration_tokens and heldout_tokens."
            )
        try:
            typed = {k: (v if k == "data" else int(v)) for k, v in values.items()}
        except ValueError:
            raise TaskSpecError(
                f"--model hf:...?{query}: seq_len, calibration_tokens and heldout_tokens are whole numbers of "
                "tokens; fix the spec."
            ) from None
        return cls(**typed)


def stdlib_documents() -> list[str]:
    """The built-in corpus: the source of each top-level module of the installed standard library,
    in a seeded order (one document per module)."""
    files = sorted(Path(sysconfig.get_paths()["stdlib"]).glob("*.py"))
    order = np.random.default_rng(SEED).permutation(len(files))
    return [files[i].read_text(encoding="utf-8", errors="replace") for i in order]


def split_documents(documents: Sequence[str]) -> tuple[list[str], list[str]]:
    """(training, held-out) documents: every ``HELDOUT_EVERY``-th one is held out."""
    heldout = [d for i, d in enumerate(documents) if i % HELDOUT_EVERY == 0]
    training = [d for i, d in enumerate(documents) if i % HELDOUT_EVERY != 0]
    return training, heldout


def read_data(path: str) -> list[str]:
    """The documents of a ``--data`` file: one per JSON line's ``"text"``, else the whole file."""
    file = Path(path)
    if not file.is_file():
        raise TaskSpecError(f"--data {shown(path)}: no such file; give a text file or a JSON-lines file.")
    text = file.read_text(encoding="utf-8", errors="replace")
    lines = [line for line in text.splitlines() if line.strip()]
    if lines and all(line.lstrip().startswith("{") for line in lines):
        documents = []
        for number, line in enumerate(lines, 1):
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise TaskSpecError(
                    f"--data {shown(path)}: line {number} is not JSON ({exc.msg}); give JSON lines or plain text."
                ) from None
            if not isinstance(record, dict) or not isinstance(record.get("text"), str):
                raise TaskSpecError(
                    f"--data {shown(path)}: line {number} has no string field 'text'; give each JSON line a \"text\"."
                )
            documents.append(record["text"])
        return documents
    return [text] if text.strip() else []


def token_stream(tokenizer: object, documents: Sequence[str], limit: int) -> torch.Tensor:
    """The documents' tokens, end to end (separated by the end-of-text token when the tokenizer
    has one), up to ``limit`` tokens."""
    eos = getattr(tokenizer, "eos_token_id", None)
    ids: list[int] = []
    for document in documents:
        ids += tokenizer(document, add_special_tokens=False)["input_ids"]
        if eos is not None:
            ids.append(eos)
        if len(ids) >= limit:
            break
    return torch.tensor(ids[:limit], dtype=torch.long)


def sequences(tokens: torch.Tensor, seq_len: int) -> torch.Tensor:
    """Whole sequences of ``seq_len`` tokens, one per row (a shorter tail is left out)."""
    count = len(tokens) // seq_len
    return tokens[: count * seq_len].reshape(count, seq_len)


def next_token_loss(logits: torch.Tensor, input_ids: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of each position's logits against the next token."""
    return nn.functional.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), input_ids[:, 1:].reshape(-1))


def perplexity(model: nn.Module, heldout: torch.Tensor) -> float:
    """exp(mean next-token cross-entropy) over every held-out sequence, on the model's device."""
    device = model_device(model)
    total, count = 0.0, 0
    with torch.no_grad():
        for start in range(0, len(heldout), BATCH_SEQUENCES):
            batch = heldout[start : start + BATCH_SEQUENCES].to(device)
            logits = model(input_ids=batch)
            total += float(next_token_loss(logits, batch)) * batch[:, 1:].numel()
            count += batch[:, 1:].numel()
    return math.exp(total / count)


def _logits_only(module: nn.Module, args: tuple, kwargs: dict, output: object) -> torch.Tensor:
    """Forward hook: the model returns its logits tensor, the output mpq's probes and losses take."""
    return output.logits


def linear_conv1d(model: nn.Module) -> None:
    """Replace every transformers ``Conv1D`` (GPT-2's attention and MLP: ``x @ W + b`` with ``W``
    stored ``[in, out]``) by the ``nn.Linear`` that computes the same (``W`` transposed), so that
    the probes, ``apply``, the cost models and the ONNX export, which quantize ``nn.Linear``, take
    them. Each is marked ``mpq_from_conv1d``: a checkpoint cannot hold them
    (:func:`mpq._checkpoint.write_checkpoint` refuses), since ``from_pretrained`` reads ``[in, out]``."""
    from transformers.pytorch_utils import Conv1D

    for name, module in list(model.named_modules()):
        if not isinstance(module, Conv1D):
            continue
        linear = nn.Linear(module.nx, module.nf, device=module.weight.device, dtype=module.weight.dtype)
        with torch.no_grad():
            linear.weight.copy_(module.weight.t())
            linear.bias.copy_(module.bias)
        linear.mpq_from_conv1d = True  # the checkpoint writer's mark (deepcopy and apply keep it)
        model.set_submodule(name, linear)


def _quiet_transformers():
    from transformers.utils import logging as transformers_logging

    verbosity = transformers_logging.get_verbosity()
    transformers_logging.set_verbosity_error()
    transformers_logging.disable_progress_bar()
    return lambda: (transformers_logging.set_verbosity(verbosity), transformers_logging.enable_progress_bar())


def _import_transformers(subject: str):
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        import transformers
    except ImportError as exc:
        raise TaskSpecError(
            f"{subject} needs the [llm] extra ({exc.name} is missing); run 'pip install mpq[llm]'."
        ) from exc
    return transformers


def load_pretrained(path: str, subject: str) -> tuple[nn.Module, object]:
    """The causal LM and tokenizer in the folder ``path``, offline, float32, eager attention
    (Hessian-vector products through SDPA have no CPU backward: DESIGN.md); weights from
    safetensors only, and never the folder's own code, so a folder a store names is data."""
    folder = Path(path)
    if not folder.is_dir():
        raise TaskSpecError(
            f"{subject}: folder {shown(path)} does not exist; give the folder save_pretrained wrote "
            "(config.json, weights, tokenizer files)."
        )
    if not (folder / "config.json").is_file():
        raise TaskSpecError(
            f"{subject}: {shown(path)} has no config.json; give the folder save_pretrained wrote, not a parent or "
            "a file."
        )
    transformers = _import_transformers(subject)
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    config = transformers.AutoConfig.from_pretrained(folder, local_files_only=True)
    architectures = getattr(config, "architectures", None) or []
    causal = not getattr(config, "is_encoder_decoder", False) and (
        any(a.endswith(("ForCausalLM", "LMHeadModel")) for a in architectures)
        or (not architectures and config.model_type in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES)
    )
    if not causal:
        what = ", ".join(architectures) or config.model_type
        raise TaskSpecError(
            f"{subject}: {what} is not a causal language model (a decoder with a language-model head); mpq's "
            "hf: loader takes decoders such as LlamaForCausalLM or GPT2LMHeadModel: use path/to/file.py:factory "
            "for other models."
        )
    restore = _quiet_transformers()
    try:
        try:
            tokenizer = transformers.AutoTokenizer.from_pretrained(folder, local_files_only=True)
        except (OSError, ValueError, TypeError, KeyError) as exc:
            raise TaskSpecError(
                f"{subject}: no tokenizer loads from {shown(path)} ({type(exc).__name__}); save the tokenizer "
                "there too: tokenizer.save_pretrained(PATH)."
            ) from exc
        if tokenizer is None or isinstance(tokenizer, bool):
            raise TaskSpecError(
                f"{subject}: no tokenizer files in {shown(path)}; save the tokenizer there too: "
                "tokenizer.save_pretrained(PATH)."
            )
        try:
            model = transformers.AutoModelForCausalLM.from_pretrained(
                folder, local_files_only=True, use_safetensors=True, attn_implementation="eager", dtype=torch.float32
            )
        except (OSError, ValueError) as exc:
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise TaskSpecError(f"{subject}: the model does not load ({first}); check the folder's weights.") from exc
    finally:
        restore()
    model.config.use_cache = False
    linear_conv1d(model)
    model.register_forward_hook(_logits_only, with_kwargs=True)
    return model.eval(), tokenizer


def text_splits(tokenizer: object, text: TextSettings, subject: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(calibration, held-out) sequences, each a (count, seq_len) tensor of token ids."""
    seq_len = text.seq_len
    if text.data is None:
        training, heldout = split_documents(stdlib_documents())
        calibration = sequences(token_stream(tokenizer, training, text.calibration_tokens), seq_len)
        held = sequences(token_stream(tokenizer, heldout, text.heldout_tokens), seq_len)
        return calibration, held
    documents = read_data(text.data)
    tokens = token_stream(tokenizer, documents, text.calibration_tokens + text.heldout_tokens)
    if len(tokens) < 2 * seq_len:
        raise TaskSpecError(
            f"--data {shown(text.data)}: {len(tokens)} tokens, fewer than two sequences of --seq-len {seq_len} (one to "
            "calibrate on, one held out); give more text or a smaller --seq-len."
        )
    rows = sequences(tokens, seq_len)
    # Held out from the end, at most half; calibration from the start.
    n_heldout = max(1, min(text.heldout_tokens // seq_len, len(rows) // 2))
    n_calibration = max(1, min(text.calibration_tokens // seq_len, len(rows) - n_heldout))
    return rows[:n_calibration], rows[len(rows) - n_heldout :]


def make_causal_lm_task(name: str, model: nn.Module, tokenizer: object, text: TextSettings, subject: str) -> Task:
    """A task of a causal LM: next-token cross-entropy on the calibration sequences, held-out perplexity."""
    calibration_ids, heldout_ids = text_splits(tokenizer, text, subject)
    if len(calibration_ids) == 0 or len(heldout_ids) == 0:
        raise TaskSpecError(
            f"{subject}: the text gives no whole sequence of {text.seq_len} tokens to calibrate on or hold out; "
            "lower --seq-len or raise --calibration-tokens and --heldout-tokens."
        )
    calibration = [
        ({"input_ids": batch}, batch) for batch in calibration_ids.split(BATCH_SEQUENCES)
    ]  # targets are the inputs: the loss shifts them by one position

    def heldout_perplexity(quantized: nn.Module) -> float:
        return perplexity(quantized, heldout_ids)

    return Task(
        name=name,
        model=model,
        calibration=calibration,
        loss_fn=next_token_loss,
        evaluate=heldout_perplexity,
        metric_name="perplexity",
        higher_is_better=False,
        fused=fused_sets(model, {"input_ids": calibration_ids[:1]}),
        default_probes=("efisher_w", "efisher_a"),  # its Hessian traces do not resolve (docs/llm.md)
    )


def load_hf_task(location: str, text: TextSettings | None = None) -> Task:
    """The task ``hf:PATH`` names: the causal LM in the folder PATH, on ``text``'s data.

    ``location`` is PATH, optionally followed by ``?seq_len=...&data=...`` (what
    :meth:`TextSettings.spec_suffix` writes); ``text`` given, it replaces that suffix.
    """
    path, _, query = location.partition("?")
    text = (text or TextSettings.from_spec(query)).check()
    subject = f"--model hf:{path}"
    model, tokenizer = load_pretrained(path, subject)
    task = make_causal_lm_task(Path(path).name or path, model, tokenizer, text, subject)
    task.spec = f"hf:{Path(path).resolve()}" + text.spec_suffix()
    return task


# ``example:tiny-llama``: trained here.
#: Bump when the corpus split, tokenizer, architecture or training changes: the cache key follows it.
RECIPE = "tiny-llama-v5"
VOCAB_SIZE = 1024
TRAIN_SEQ_LEN = 128
TRAIN_BATCH = 8
TRAIN_STEPS = 400
WARMUP_STEPS = 30
LEARNING_RATE = 3e-3
#: The example task's text: calibration and held-out tokens of the built-in corpus. 16384 held-out
#: tokens (128 sequences): on 4096, the frontier's points above half of W8A16's bytes differ by less
#: than the held-out text's noise (docs/llm.md, The frontier).
TINY_LLAMA_TEXT = TextSettings(calibration_tokens=1024, heldout_tokens=16384)
#: The file of the cached folder that says what training gave and cost (:func:`training_record`).
TRAINING_RECORD = "training.json"


def tiny_llama_config() -> object:
    """The architecture: 6 Llama blocks of width 384, 6 query heads sharing 2 key/value heads, SwiGLU
    MLPs of width 1024 (10.2 M parameters, 0.8 M of them in the untied embeddings). Every linear
    layer's input width is a multiple of 128, so grouped INT4 (``int4_g128``) fits every layer
    and its checkpoint stores it."""
    transformers = _import_transformers("example:tiny-llama")
    return transformers.LlamaConfig(
        vocab_size=VOCAB_SIZE,
        hidden_size=384,
        intermediate_size=1024,
        num_hidden_layers=6,
        num_attention_heads=6,
        num_key_value_heads=2,
        max_position_embeddings=512,
        tie_word_embeddings=False,
        rms_norm_eps=1e-5,
        bos_token_id=None,
        eos_token_id=0,
        pad_token_id=0,
    )


def train_tokenizer(documents: Sequence[str], vocab_size: int = VOCAB_SIZE) -> object:
    """A byte-level BPE tokenizer of ``vocab_size`` tokens trained on ``documents``; token 0 ends a text."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(documents, trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, eos_token="<|endoftext|>", pad_token="<|endoftext|>")


def training_dtype() -> torch.dtype:
    """The dtype tiny-llama's matmuls train in on this CPU: bfloat16 where it has AMX (Intel Sapphire
    Rapids and later), whose bfloat16 tiles make a step 1.7-2 times cheaper than float32 on one thread;
    float32 elsewhere, where bfloat16 costs more than float32 (1.3 times with AVX512-BF16, 3 times with
    AVX512, 16 times with AVX2 alone: docs/llm.md). The weights, the optimizer's state and the
    attention stay float32 either way."""
    return torch.bfloat16 if torch.cpu.get_capabilities().get("amx_bf16", False) else torch.float32


def _float32_sdpa(module: nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, *args, **kwargs):
    """transformers' SDPA attention in float32 under a bfloat16 autocast: on the CPU the bfloat16
    flash-attention backward costs 3 times the float32 one, and float32 is the more exact."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    with torch.autocast("cpu", enabled=False):
        return sdpa_attention_forward(module, query.float(), key.float(), value.float(), *args, **kwargs)


#: The cache key's name of each training dtype: a bfloat16-trained model is another model.
_DTYPE_NAMES = {torch.bfloat16: "bf16", torch.float32: "fp32"}
#: The attention tiny-llama trains with (registered with transformers' ``AttentionInterface``).
TRAINING_ATTENTION = "mpq_float32_sdpa"


def _train(model: nn.Module, tokens: torch.Tensor, dtype: torch.dtype, steps: int | None = None) -> None:
    """AdamW with linear warmup then a cosine decay, over ``steps`` (default: the recipe's
    ``TRAIN_STEPS``) batches of random windows of the training tokens, seeded: a fixed number of
    steps, so that any machine trains the same model whatever its speed. The forward and backward
    run under an autocast to ``dtype`` (:func:`training_dtype`), the loss and the float32 master
    weights outside it."""
    from transformers import AttentionInterface

    steps = TRAIN_STEPS if steps is None else steps
    AttentionInterface.register(TRAINING_ATTENTION, _float32_sdpa)
    model.set_attn_implementation(TRAINING_ATTENTION)
    generator = torch.Generator().manual_seed(SEED)
    # The fused AdamW: one kernel over each parameter instead of a dozen, 9 % of a float32 step.
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=LEARNING_RATE, weight_decay=0.01, betas=(0.9, 0.95), fused=True
    )
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: min(1.0, (step + 1) / WARMUP_STEPS) * 0.5 * (1 + math.cos(math.pi * step / steps))
    )
    model.train()
    started = time.perf_counter()
    for step in range(steps):
        starts = torch.randint(0, len(tokens) - TRAIN_SEQ_LEN, (TRAIN_BATCH,), generator=generator)
        batch = torch.stack([tokens[s : s + TRAIN_SEQ_LEN] for s in starts.tolist()])
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == torch.bfloat16):
            logits = model(input_ids=batch).logits
        loss = next_token_loss(logits.float(), batch)
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        if step % 20 == 0:
            logger.debug(
                "tiny-llama step %d loss %.3f (%.0f s)", step, float(loss.detach()), time.perf_counter() - started
            )
    model.set_attn_implementation("sdpa")
    model.eval()


def _corpus_key(documents: Sequence[str]) -> str:
    digest = hashlib.sha256()
    for document in documents:
        digest.update(hashlib.sha256(document.encode()).digest())
    return digest.hexdigest()[:12]


def cache_name(training: Sequence[str], dtype: torch.dtype) -> str:
    """The cached folder's name: the recipe, the training dtype and the training corpus's hash."""
    return f"{RECIPE}-{_DTYPE_NAMES[dtype]}-{_corpus_key(training)}"


def tiny_llama_folder() -> Path:
    """The trained tiny-llama as a ``save_pretrained`` folder: from the cache, or trained now
    (seeded, a few minutes) and cached. The key holds the recipe, the training dtype
    (:func:`training_dtype`) and the corpus's hash, so another Python's standard library, or a CPU
    without AMX, trains its own."""
    transformers = _import_transformers("example:tiny-llama")
    training, heldout = split_documents(stdlib_documents())
    dtype = training_dtype()
    folder = cache_dir() / cache_name(training, dtype)
    if (folder / "config.json").is_file():
        return folder
    logger.info("training %s (seeded, a few minutes); caching it at %s", RECIPE, folder)
    # Small batches run fastest on one thread, and the result does not depend on the core count.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    restore = _quiet_transformers()
    try:
        tokenizer = train_tokenizer(training)
        tokens = token_stream(tokenizer, training, limit=10**9)
        torch.manual_seed(SEED)
        model = transformers.LlamaForCausalLM(tiny_llama_config())
        wall_s, cpu_s = time.perf_counter(), time.process_time()
        _train(model, tokens, dtype)
        wall_s, cpu_s = time.perf_counter() - wall_s, time.process_time() - cpu_s
        record = training_record(model, tokenizer, tokens, heldout, wall_s, cpu_s) | {"dtype": _DTYPE_NAMES[dtype]}
        logger.info(
            "%s: held-out perplexity %.1f, a unigram model's %.1f (%d steps in %s, %.0f s wall, %.0f CPU s)",
            RECIPE,
            record["heldout_perplexity"],
            record["unigram_perplexity"],
            TRAIN_STEPS,
            record["dtype"],
            wall_s,
            cpu_s,
        )
        # A folder of this process's own, then an atomic rename: a concurrent run never reads half
        # of it, and two first runs training at once never write into each other's.
        staging = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f"{RECIPE}.", suffix=".tmp"))
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        (staging / TRAINING_RECORD).write_text(json.dumps(record, indent=1) + "\n")
        try:
            staging.replace(folder)
        except OSError:  # another process cached it first: keep theirs
            shutil.rmtree(staging, ignore_errors=True)
    finally:
        restore()
        torch.set_num_threads(threads)
    return folder


def unigram_perplexity(train_ids: torch.Tensor, heldout_ids: torch.Tensor) -> float:
    """The held-out perplexity of token frequencies counted on ``train_ids`` (add-one smoothed):
    what a model that ignores context scores."""
    counts = torch.bincount(train_ids, minlength=VOCAB_SIZE).double() + 1
    log_p = torch.log(counts / counts.sum())
    return math.exp(-float(log_p[heldout_ids.reshape(-1)].mean()))


def training_record(
    model: nn.Module, tokenizer: object, tokens: torch.Tensor, heldout: Sequence[str], wall_s: float, cpu_s: float
) -> dict:
    """What training tiny-llama gave and cost: its perplexity on the example task's held-out
    tokens beside a unigram model's (counted on the training tokens), and the training's time."""
    rows = sequences(token_stream(tokenizer, heldout, TINY_LLAMA_TEXT.heldout_tokens), TINY_LLAMA_TEXT.seq_len)
    logits_only = model.register_forward_hook(_logits_only, with_kwargs=True)
    try:
        heldout_perplexity = perplexity(model, rows)
    finally:
        logits_only.remove()
    return {
        "recipe": RECIPE,
        "parameters": sum(p.numel() for p in model.parameters()),
        "steps": TRAIN_STEPS,
        "training_tokens": TRAIN_STEPS * TRAIN_BATCH * TRAIN_SEQ_LEN,
        "heldout_perplexity": heldout_perplexity,
        "unigram_perplexity": unigram_perplexity(tokens, rows),
        "wall_s": wall_s,
        "cpu_s": cpu_s,
    }


@register_example("tiny-llama")
def make_tiny_llama_task() -> Task:
    task = load_hf_task(str(tiny_llama_folder()), TINY_LLAMA_TEXT)
    task.name = "tiny-llama"
    return task


@register_example("tiny-llama-small")
def make_tiny_llama_small_task() -> Task:
    text = TextSettings(seq_len=64, calibration_tokens=256, heldout_tokens=1024)
    task = load_hf_task(str(tiny_llama_folder()), text)
    task.name = "tiny-llama-small"
    return task
