"""The columns of the tables passed between stages (DESIGN.md's tables), named once."""

from __future__ import annotations

__all__ = ["LAYER_COLUMNS"]

#: The layer table mpq.layers builds and hwmodels.cost_table reads, in order.
LAYER_COLUMNS = (
    "layer",
    "kind",
    "weight_params",
    "bias_params",
    "macs",
    "in_elems",
    "out_elems",
    "weight_shape",
    "groups",
)
