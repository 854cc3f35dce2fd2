"""``measure_latency``: time every layer's real kernel at every candidate on this machine.

The table it returns (written as CSV by :func:`write_measured_csv`) is what
``hwmodels.cost_table(..., measured=...)`` takes to replace the cost model's ``latency_s``.

**What is timed.** Each layer runs once on the first calibration batch, with forward hooks that
record its inputs; they are sliced or repeated to ``batch_size`` samples along dim 0 (a tensor
broadcast over the batch, such as BERT's position ids of shape ``(1, T)``, is kept as it is).
Operands are then stored as a deployment stores them, and the executed path is timed stage by
stage. The paths mirror ``hwmodels``' ``cpu-x86`` model (``hwmodels/_cpu.py``):

* **int x int** (both formats integer of at most 8 bits, weights scaled per tensor or per output
  channel, activations per tensor): sub-byte codes are unpacked to int8 (the *dequant* stage;
  nothing to do for int8), convolutions (channels last) build their im2col matrix, and
  ``torch._int_mm`` runs the int8 GEMM with int32 accumulation (oneDNN; AMX or VNNI where the
  CPU has them); an fp32 epilogue applies the scales and the bias.
  Group-scaled integers need a scale inside the reduction, which one GEMM cannot apply: they take
  the float path (the model runs them on int8 units).
* **fp16 / bf16**: the dtype's native op (``F.linear``, the module's convolution); an operand in
  another format is dequantized to that dtype first. (The model runs fp16 in fp32 on a CPU.)
* **everything else** (fp8, fp6, fp4, MX, NVFP4, int16, group-scaled int): the stored codes are
  dequantized (a lookup of each code's value, times its per-tensor, per-channel or per-block
  scale) and the op runs in fp32 on CPU, in fp16 on CUDA.
* **embeddings**: the rows of the stored codes are gathered, then only those rows dequantized.

On CUDA, int x int runs ``torch._int_mm`` (operands padded to cuBLASLt's shape rules: more than
16 rows, inner and output dims multiples of 8), an fp8 x fp8 linear layer runs
``torch._scaled_mm`` (dims padded to multiples of 16), and each stage is captured in a CUDA
graph whose back-to-back replays CUDA events time (see :func:`measure_latency`).

Low-bit operands are random codes of the right shape, ``8 // bits`` codes packed per byte
(int3 takes 2 per byte, int6 and fp6 one): kernel times do not depend on the values.
fp16/bf16 operands are the real weights and recorded inputs. A layer called several times in
one forward is timed over all its calls, weights dequantized at each call.

Modules: ``codes`` (operands stored as packed low-bit codes, and their dequantization),
``kernels`` (the executed path of a layer at a candidate, as named stages), ``timing`` (wall
clock, CUDA graphs and events; the per-pair summary), ``api`` (``measure_latency``,
``write_measured_csv``).
"""

from mpq._measure.api import MEASURE_COLUMNS, measure_latency, write_measured_csv

__all__ = ["MEASURE_COLUMNS", "measure_latency", "write_measured_csv"]
