"""Cost model for x86 CPUs: the GPU roofline with the CPU's SIMD rates.

A CPU device lists the classes its SIMD units run in ``[peak_ops_per_s]``: ``int8`` (AVX-512
VNNI / AVX-VNNI ``VPDPBUSD``: u8 x s8 products accumulated in int32) and ``fp32`` (FMA). The
executed-class rule of ``_gpu.py`` then gives the CPU behaviour: int4 weights with int8
activations are unpacked to int8 and run on VNNI; formats with no CPU kernel (fp16, bf16, fp8,
fp4, ...) are dequantised and run in fp32 at the FMA rate. Memory traffic is DRAM traffic at the
socket's share of bandwidth; ``launch_overhead_s`` stands for the framework's per-layer dispatch.

A CPU file may also carry the roofline's optional keys that describe a runtime (see ``_gpu.py``):
``quantize_overhead_s`` (ONNX Runtime's quantize node per quantized input),
``[conv_peak_ops_per_s]`` (its ConvInteger, slower than its integer GEMM), ``[stored_weight_bits]``
(its integer kernels take 8-bit weights: int4 codes with int8 inputs are stored as int8) and
``cache_bytes`` (a small model's weights stay in the core's L2). The built-in ``cpu-x86`` numbers
are fitted to ONNX Runtime on one 2-vCPU cloud VM; calibrate them with
``benchmarks/bench_cost_model.py --runtime onnxruntime`` or a measured latency table
(``cost_table(..., measured=...)``).
"""

from __future__ import annotations

from hwmodels._gpu import RooflineSpec, roofline_costs
from hwmodels._registry import register_cost_model

__all__ = ["cpu_costs"]

cpu_costs = register_cost_model("cpu", spec=RooflineSpec)(roofline_costs)
