"""Built-in example tasks: real models on real data, nothing fetched at run time."""

from mpq._examples import causal_lm, digits_cnn, minilm  # noqa: F401  (registration happens on import)
from mpq._examples._registry import list_examples, make_example, register_example

__all__ = ["list_examples", "make_example", "register_example"]
