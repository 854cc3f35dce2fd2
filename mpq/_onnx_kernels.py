"""The exported graph's quantized layers rewritten as units ONNX Runtime runs with integer kernels.

torch's exporter writes each quantized layer as mpq marks it (:mod:`mpq._onnx`): the weight's
codes through DequantizeLinear (then a Transpose for a MatMul, or a Gemm with ``transB``) and, where
the input is quantized, QuantizeLinear -> DequantizeLinear on the input. ONNX Runtime's graph
optimizer fuses some of that into integer kernels; this pass rewrites the rest, computing the
same values (no rounding is added or moved, so :func:`mpq.apply` still computes the graph):

- A Linear layer with an 8-bit integer input: its weight stored transposed, ``[K, N]`` (per-channel
  scales on axis 1), and a Gemm written as MatMul + Add, so that ``DequantizeLinear(input),
  DequantizeLinear(weight) -> MatMul`` is the unit ONNX Runtime fuses into MatMulIntegerToFloat
  (QLinearMatMul where a QuantizeLinear follows); it leaves a Gemm with a float bias in float.
- 2- to 4-bit weights of a Linear or Conv layer with an 8-bit integer input stored as int8: ONNX
  Runtime's CPU integer GEMM and convolution take 8-bit weights only, and the codes are the same.
- A Linear layer's int4 weight with a float input (weight-only, ``w4a16``, ``wint4_g128afp32``), or
  with group scales: com.microsoft MatMulNBits, the codes packed two per byte along K, one scale
  per block of K.
- Self-attention whose query, key and value layers read the same uint8 input codes (each a
  MatMulIntegerToFloat by now), with a scaled, masked softmax: com.microsoft QAttention, one
  integer GEMM for the three layers and ONNX Runtime's attention kernel for the rest, on the
  model's own scale, mask and mask value. mpq quantizes none of attention's own products, and
  neither does QAttention.
- An Embedding's codes gathered first, and only the rows used dequantized (ONNX's Gather takes
  no int4 and no float8: 4-bit tables are stored as int8, float8 tables as their bytes in uint8,
  whose gathered bytes index a 256-entry table of the float8 values).
"""

from __future__ import annotations

import math

import numpy as np

MS_DOMAIN = "com.microsoft"
# MatMulNBits' block of K: a power of two of at least 16 (its spec); per-channel scales repeat over blocks.
NBITS_BLOCK = 128
NBITS_MIN_BLOCK = 16


class _Graph:
    """A model proto's graph with lookups by tensor name (rebuilt after each rewrite)."""

    def __init__(self, proto) -> None:
        self.proto, self.graph = proto, proto.graph
        self.refresh()

    def refresh(self) -> None:
        self.inits = {init.name: init for init in self.graph.initializer}
        self.producer = {out: node for node in self.graph.node for out in node.output}
        self.consumers: dict[str, list] = {}
        for node in self.graph.node:
            for name in node.input:
                self.consumers.setdefault(name, []).append(node)
        self.constants = {
            node.output[0]: node.attribute[0].t
            for node in self.graph.node
            if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value"
        }

    def array(self, name: str) -> np.ndarray:
        from onnx import numpy_helper

        return numpy_helper.to_array(self.inits[name] if name in self.inits else self.constants[name])

    def set_initializer(self, name: str, value: np.ndarray) -> None:
        from onnx import numpy_helper

        tensor = numpy_helper.from_array(value, name)
        if name in self.inits:
            self.inits[name].CopyFrom(tensor)
        else:
            self.graph.initializer.append(tensor)
            self.inits[name] = self.graph.initializer[-1]

    def replace(self, old: list, new: list) -> None:
        """Put ``new`` nodes where the last of ``old`` stood (its inputs are all computed by then)."""
        nodes = list(self.graph.node)
        at = max(nodes.index(node) for node in old)
        kept = [node for i, node in enumerate(nodes) if node not in old or i == at]
        position = kept.index(nodes[at])
        kept[position : position + 1] = new
        del self.graph.node[:]
        self.graph.node.extend(kept)
        self.refresh()

    def tidied(self) -> None:
        """Nodes whose outputs nothing reads (an input's DequantizeLinear that a fused kernel bypasses),
        initializers no node reads, and the exporter's shapes of tensors no node computes now, removed."""
        outputs = {out.name for out in self.graph.output}
        while dead := [n for n in self.graph.node if not any(o in self.consumers or o in outputs for o in n.output)]:
            for node in dead:
                self.graph.node.remove(node)
            self.refresh()
        used = {name for node in self.graph.node for name in node.input} | outputs
        for init in [init for init in self.graph.initializer if init.name not in used]:
            self.graph.initializer.remove(init)
        for info in [info for info in self.graph.value_info if info.name not in self.producer]:
            self.graph.value_info.remove(info)
        self.refresh()


def _attr(node, name: str, default=None):
    from onnx import helper

    for attribute in node.attribute:
        if attribute.name == name:
            return helper.get_attribute_value(attribute)
    return default


def _dq_input_type(g: _Graph, dq) -> int | None:
    """The element type a DequantizeLinear reads: its zero point's, else its QuantizeLinear's output_dtype."""
    import onnx

    if len(dq.input) > 2 and dq.input[2]:
        zero = g.inits.get(dq.input[2]) or g.constants.get(dq.input[2])
        return None if zero is None else zero.data_type
    if dq.input[0] in g.inits:
        return g.inits[dq.input[0]].data_type
    q = g.producer.get(dq.input[0])
    if q is None or q.op_type != "QuantizeLinear":
        return None
    return _attr(q, "output_dtype", 0) or onnx.TensorProto.UINT8


def _integer_input(g: _Graph, name: str) -> bool:
    """Whether tensor ``name`` is a DequantizeLinear of 8-bit integer codes (a quantized activation)."""
    import onnx

    dq = g.producer.get(name)
    if dq is None or dq.op_type != "DequantizeLinear" or dq.input[0] in g.inits:
        return False
    return _dq_input_type(g, dq) in (onnx.TensorProto.INT8, onnx.TensorProto.UINT8)


def _float8_types() -> tuple[int, ...]:
    import onnx

    return (onnx.TensorProto.FLOAT8E4M3FN, onnx.TensorProto.FLOAT8E5M2)


def _weight_dequantizers(g: _Graph) -> list:
    """Every DequantizeLinear of a quantized weight (int8, int4 or float8 codes stored in the file)."""
    import onnx

    code_types = (onnx.TensorProto.INT8, onnx.TensorProto.INT4, *_float8_types())
    return [
        n
        for n in g.graph.node
        if n.op_type == "DequantizeLinear" and n.input[0] in g.inits and g.inits[n.input[0]].data_type in code_types
    ]


def integer_kernels(proto):
    """Rewrite ``proto`` (folded by :func:`mpq._onnx._fold_weight_quantizers`) in place; return it."""
    g = _Graph(proto)
    for dq in _weight_dequantizers(g):
        float8 = g.inits[dq.input[0]].data_type in _float8_types()
        for node in list(g.consumers.get(dq.output[0], [])):
            if node.op_type == "Gather" and node.input[0] == dq.output[0] and _attr(node, "axis", 0) == 0:
                _gather_rows_first(g, dq, node)
            elif float8:  # no integer kernel takes float8 weights: only an embedding's gather is rewritten
                continue
            elif node.op_type == "Conv" and _integer_input(g, node.input[0]) and not _attr(dq, "block_size", 0):
                _codes_as_int8(g, dq)
                if not _requantized(g, node.output[0]):
                    _conv_integer(g, dq, node)
            elif node.op_type in ("Transpose", "Gemm"):
                _linear(g, dq, node)
    _fuse_attention(g)
    g.tidied()
    return proto


def _matmul_of(g: _Graph, dq, node):
    """``(input, bias, nodes)`` when ``node`` makes ``dq``'s weight a Linear layer's: a Transpose into
    a MatMul's B, or a Gemm's B with ``transB`` (alpha and beta 1); else None."""
    if node.op_type == "Transpose":
        users = g.consumers.get(node.output[0], [])
        if _attr(node, "perm") != [1, 0] or len(users) != 1 or users[0].op_type != "MatMul":
            return None
        if users[0].input[1] != node.output[0]:
            return None
        return users[0].input[0], None, [node, users[0]]
    plain = _attr(node, "transA", 0) == 0 and _attr(node, "transB", 0) == 1
    if (
        not plain
        or _attr(node, "alpha", 1.0) != 1.0
        or _attr(node, "beta", 1.0) != 1.0
        or node.input[1] != dq.output[0]
    ):
        return None
    return node.input[0], (node.input[2] if len(node.input) > 2 and node.input[2] else None), [node]


def _linear(g: _Graph, dq, node) -> None:
    """A Linear layer's weight as MatMulIntegerToFloat's operand (8-bit integer input) or MatMulNBits (int4, float input)."""
    import onnx

    found = _matmul_of(g, dq, node)
    if found is None or len(g.consumers[dq.output[0]]) != 1:
        return
    x, bias, old = found
    out = old[-1].output[0]
    weight = g.inits[dq.input[0]]
    int4 = weight.data_type == onnx.TensorProto.INT4
    if _integer_input(g, x) and not _attr(dq, "block_size", 0):
        _matmul_integer_to_float(g, dq, x, bias, old, out)
    elif int4:  # weight-only, or group scales no integer GEMM takes: MatMulNBits on the (dequantized) input
        _matmul_nbits(g, dq, x, bias, old, out)


def _matmul_integer_to_float(g: _Graph, dq, x: str, bias: str | None, old: list, out: str) -> None:
    """com.microsoft MatMulIntegerToFloat: the input's codes times the weight's ``[K, N]`` int8 codes,
    summed in int32, scaled by both scales, plus the bias (a following Add of a constant ``[N]`` joins)."""
    from onnx import helper

    if bias is None:  # the exporter's MatMul then Add of the bias
        users = g.consumers.get(out, [])
        if len(users) == 1 and users[0].op_type == "Add" and out in users[0].input:
            other = [name for name in users[0].input if name != out][0]
            if other in g.inits and list(g.inits[other].dims) == [g.inits[dq.input[0]].dims[0]]:
                bias, old, out = other, [*old, users[0]], users[0].output[0]
    codes = g.array(dq.input[0]).astype(np.int8)
    g.set_initializer(dq.input[0], np.ascontiguousarray(codes.T))
    act = g.producer[x]  # the input's DequantizeLinear: its codes, scale and zero point
    zero = act.input[2] if len(act.input) > 2 else ""
    inputs = [act.input[0], dq.input[0], act.input[1], dq.input[1], zero, ""] + ([bias] if bias else [])
    node = helper.make_node("MatMulIntegerToFloat", inputs, [out], name=old[-1].name, domain=MS_DOMAIN)
    g.replace([dq, *old], [node])
    _use_domain(g, MS_DOMAIN)


def _matmul_nbits(g: _Graph, dq, x: str, bias: str | None, old: list, out: str) -> None:
    """com.microsoft MatMulNBits of an int4 weight ``[N, K]``: codes + 8 packed low nibble first
    along K, in blocks of ``block_size`` (the group, else a power of two; the scale repeated)."""
    from onnx import helper

    codes = g.array(dq.input[0]).astype(np.int8)
    n, k = codes.shape
    scale = g.array(dq.input[1]).astype(np.float32)
    block = _attr(dq, "block_size", 0)
    if block:
        if block < NBITS_MIN_BLOCK or block & (block - 1):
            return
        scales = scale.reshape(n, -1)
    else:
        block = max(NBITS_MIN_BLOCK, min(NBITS_BLOCK, 1 << (k - 1).bit_length()))
        blocks = -(-k // block)
        scales = np.broadcast_to(scale.reshape(-1, 1) if scale.ndim else scale, (n, blocks))
    blocks = scales.shape[1]
    unsigned = np.full((n, blocks * block), 8, dtype=np.uint8)  # padding: code 0
    unsigned[:, :k] = (codes + 8).astype(np.uint8)
    packed = (unsigned[:, 0::2] | (unsigned[:, 1::2] << 4)).reshape(n, blocks, block // 2)
    name, scale_name = (_writable(g, tensor, old[-1].name) for tensor in dq.input[:2])
    g.set_initializer(name, packed)
    g.set_initializer(scale_name, np.ascontiguousarray(scales, dtype=np.float32))
    inputs = [x, name, scale_name] + (["", "", bias] if bias else [])
    node = helper.make_node(
        "MatMulNBits", inputs, [out], name=old[-1].name, domain=MS_DOMAIN, K=k, N=n, bits=4, block_size=block
    )
    g.replace([dq, *old], [node])
    _use_domain(g, MS_DOMAIN)


def _writable(g: _Graph, name: str, user: str) -> str:
    """``name``, or a new name for ``user``'s rewritten copy where another node reads ``name`` too
    (the exporter stores equal constants once: the scales of a tied embedding and output head)."""
    return name if len(g.consumers.get(name, [])) <= 1 else f"{name}_{user}"


def _requantized(g: _Graph, name: str) -> bool:
    """Whether tensor ``name`` flows, through Relu and MaxPool alone, into a QuantizeLinear: ONNX
    Runtime then fuses the convolution with it into QLinearConv (its requantization is the next
    layer's input quantizer, which ``mpq.apply`` applies too)."""
    users = g.consumers.get(name, [])
    if len(users) != 1:
        return False
    if users[0].op_type == "QuantizeLinear":
        return True
    return users[0].op_type in ("Relu", "MaxPool") and _requantized(g, users[0].output[0])


def _conv_integer(g: _Graph, dq, conv) -> None:
    """ConvInteger of the input's uint8 codes and the weight's int8 codes (int32 sums), then the float
    scale per output channel and the bias: a convolution whose output no QuantizeLinear takes."""
    import onnx
    from onnx import helper

    act = g.producer[conv.input[0]]
    constant_bias = len(conv.input) < 3 or not conv.input[2] or conv.input[2] in g.inits
    if _dq_input_type(g, act) != onnx.TensorProto.UINT8 or len(g.consumers[dq.output[0]]) != 1 or not constant_bias:
        return  # ONNX Runtime's ConvInteger takes uint8 inputs
    rank = len(g.inits[dq.input[0]].dims)
    scale = g.array(act.input[1]).astype(np.float32) * g.array(dq.input[1]).astype(np.float32)
    base, out = conv.name or conv.output[0], conv.output[0]
    g.set_initializer(f"{base}_output_scale", scale.reshape(1, -1, *[1] * (rank - 2)))
    zero = act.input[2] if len(act.input) > 2 else ""
    new = [
        helper.make_node("ConvInteger", [act.input[0], dq.input[0], zero], [f"{base}_sums"], name=f"{base}_integer"),
        helper.make_node("Cast", [f"{base}_sums"], [f"{base}_float"], name=f"{base}_cast", to=onnx.TensorProto.FLOAT),
    ]
    new[0].attribute.extend(a for a in conv.attribute)
    has_bias = len(conv.input) > 2 and conv.input[2]
    scaled = f"{base}_scaled" if has_bias else out
    new.append(helper.make_node("Mul", [f"{base}_float", f"{base}_output_scale"], [scaled], name=f"{base}_scale"))
    if has_bias:
        bias = g.array(conv.input[2]).astype(np.float32)
        g.set_initializer(f"{base}_bias", bias.reshape(1, -1, *[1] * (rank - 2)))
        new.append(helper.make_node("Add", [scaled, f"{base}_bias"], [out], name=base))
    g.replace([dq, conv], new)


def _codes_as_int8(g: _Graph, dq) -> None:
    """A 2..4-bit weight (held in int4) stored as int8, the type integer kernels take."""
    import onnx

    if g.inits[dq.input[0]].data_type == onnx.TensorProto.INT4:
        g.set_initializer(dq.input[0], g.array(dq.input[0]).astype(np.int8))


def _gather_rows_first(g: _Graph, dq, gather) -> None:
    """``Gather(DequantizeLinear(codes), ids)`` as the rows' codes gathered, then dequantized:
    ``Cast(Gather(codes, ids)) * Gather(scale, ids)`` per row, the scale alone per tensor, and per
    block of a row ``[..., blocks, block] * [..., blocks, 1]``. Float8 codes are gathered as their
    bytes and decoded through a table of the 256 float8 values (the scale folded in where it is one)."""
    from onnx import helper

    codes_name, scale_name = dq.input[0], dq.input[1]
    ids, out, base = gather.input[1], gather.output[0], gather.name or gather.output[0]
    scale = g.array(scale_name)
    block = _attr(dq, "block_size", 0)
    values = None  # the float8 decoding table
    if g.inits[codes_name].data_type in _float8_types():
        values = _float8_values(g.inits[codes_name].data_type)
        if scale.ndim == 0:  # float32 products, as DequantizeLinear computes them
            values = values * scale.astype(np.float32)
        codes_name = _float8_bytes(g, codes_name)
    else:
        _codes_as_int8(g, dq)
    rows = f"{base}_codes"
    new = [helper.make_node("Gather", [codes_name, ids], [rows], name=f"{base}_codes", axis=0)]
    if scale.ndim == 0 and values is None:  # one scale: DequantizeLinear of the gathered codes
        new.append(helper.make_node("DequantizeLinear", [rows, scale_name], [out], name=base))
    elif scale.ndim == 0:
        new += _decoded(g, base, rows, values, out)
    elif not block:  # a scale per row
        row_scale, unsqueezed = f"{base}_scale", f"{base}_scale_column"
        axes = f"{base}_last_axis"
        g.set_initializer(axes, np.array([-1], dtype=np.int64))
        new += [
            helper.make_node("Gather", [scale_name, ids], [row_scale], name=f"{base}_scale", axis=0),
            helper.make_node("Unsqueeze", [row_scale, axes], [unsqueezed], name=f"{base}_unsqueeze"),
            *_decoded(g, base, rows, values, f"{base}_float"),
            helper.make_node("Mul", [f"{base}_float", unsqueezed], [out], name=base),
        ]
    else:  # a scale per block of each row
        width = g.inits[codes_name].dims[1]
        if width % block:
            return
        shapes = {
            "blocked": [-1, width // block, block],
            "scales": [-1, width // block],
            "width": [width],
            "axis": [-1],
        }
        for key, shape in shapes.items():
            g.set_initializer(f"{base}_{key}", np.array(shape, dtype=np.int64))
        new += _decoded(g, base, rows, values, f"{base}_float")
        steps = [  # (op, inputs, output) each named after its output
            ("Reshape", [f"{base}_float", f"{base}_blocked"], "blocks"),
            ("Gather", [scale_name, ids], "row_scales"),
            ("Reshape", [f"{base}_row_scales", f"{base}_scales"], "flat_scales"),
            ("Unsqueeze", [f"{base}_flat_scales", f"{base}_axis"], "block_scales"),
            ("Mul", [f"{base}_blocks", f"{base}_block_scales"], "values"),
            ("Shape", [ids], "ids_shape"),
            ("Concat", [f"{base}_ids_shape", f"{base}_width"], "out_shape"),
        ]
        attributes = {"Gather": {"axis": 0}, "Concat": {"axis": 0}}
        new += [
            helper.make_node(op, inputs, [f"{base}_{o}"], name=f"{base}_{o}", **attributes.get(op, {}))
            for op, inputs, o in steps
        ]
        new.append(helper.make_node("Reshape", [f"{base}_values", f"{base}_out_shape"], [out], name=base))
    old = [gather] if len(g.consumers[dq.output[0]]) > 1 else [dq, gather]
    g.replace(old, new)


def _decoded(g: _Graph, base: str, rows: str, values: np.ndarray | None, out: str) -> list:
    """Nodes that write the gathered ``rows`` as float into ``out``: a Cast of integer codes, or the
    float8 ``values`` table indexed by the rows' bytes (ONNX's Gather takes int32 or int64 indices)."""
    import onnx
    from onnx import helper

    if values is None:
        return [helper.make_node("Cast", [rows], [out], name=f"{base}_cast", to=onnx.TensorProto.FLOAT)]
    g.set_initializer(f"{base}_float8_values", values.astype(np.float32))
    return [
        helper.make_node("Cast", [rows], [f"{base}_bytes"], name=f"{base}_bytes", to=onnx.TensorProto.INT32),
        helper.make_node("Gather", [f"{base}_float8_values", f"{base}_bytes"], [out], name=f"{base}_decode", axis=0),
    ]


def _float8_values(data_type: int) -> np.ndarray:
    """The float32 value of each of the 256 bytes of float8 type ``data_type`` (NaN where it is one)."""
    from onnx import helper, numpy_helper

    every_byte = helper.make_tensor("bytes", data_type, [256], bytes(range(256)), raw=True)
    return numpy_helper.to_array(every_byte).astype(np.float32)


def _float8_bytes(g: _Graph, name: str) -> str:
    """A float8 table's bytes as a uint8 initializer (``name`` + ``_bytes``, written once): ONNX's
    Gather takes no float8. ``name`` itself stays for a DequantizeLinear another node still reads."""
    bytes_name = f"{name}_bytes"
    if bytes_name not in g.inits:
        g.set_initializer(bytes_name, g.array(name).view(np.uint8))
    return bytes_name


def _fuse_attention(g: _Graph) -> None:
    """Every self-attention block :func:`_attention_of` recognises, rewritten as QAttention."""
    gemms: dict[tuple, list[str]] = {}
    for node in g.graph.node:
        if node.op_type == "MatMulIntegerToFloat":  # grouped by input codes, scale and zero point
            gemms.setdefault((node.input[0], node.input[2], node.input[4]), []).append(node.output[0])
    for outputs in gemms.values():
        if len(outputs) == 3:
            found = _attention_of(g, [g.producer[out] for out in outputs])
            if found is not None:
                _qattention(g, *found)


def _user(g: _Graph, name: str, op_type: str):
    """The one node that reads tensor ``name``, if it is an ``op_type``; else None."""
    users = g.consumers.get(name, [])
    return users[0] if len(users) == 1 and users[0].op_type == op_type else None


def _shape(g: _Graph, name: str) -> list | None:
    """The exporter's shape of tensor ``name``: ints and symbolic names, or None."""
    for info in (*g.graph.value_info, *g.graph.input, *g.graph.output):
        if info.name == name and info.type.tensor_type.HasField("shape"):
            return [d.dim_param or d.dim_value for d in info.type.tensor_type.shape.dim]
    return None


def _scalar(g: _Graph, name: str) -> float | None:
    if name not in g.inits and name not in g.constants:
        return None
    value = g.array(name)
    return float(value) if value.size == 1 else None


def _attention_of(g: _Graph, gemms: list):
    """``(gemms, old, out, attributes, mask)`` where the three MatMulIntegerToFloat ``gemms`` (of one
    ``[batch, sequence, hidden]`` uint8 input) are an attention block's query, key and value, as
    torch's exporter writes one: each Reshape to ``[batch, sequence, heads, head]`` and Transpose
    to heads first (the key's to ``[batch, heads, head, sequence]``), ``softmax(q @ k * scale +
    Where(mask, 0, filter)) @ v`` over the last axis, transposed back and reshaped to ``out``;
    ``old``: the nodes it replaces, ``mask``: the boolean ``[batch, 1, sequence, sequence]`` mask.
    None for anything else (the layers then stay MatMulIntegerToFloat)."""
    import onnx

    zero = g.inits.get(gemms[0].input[4]) or g.constants.get(gemms[0].input[4])
    if zero is None or zero.data_type != onnx.TensorProto.UINT8:
        return None  # QAttention takes uint8 input codes (mpq's are zero-pointed)
    heads: dict[tuple, list] = {}  # by the Transpose's perm: (gemm, reshape, transpose)
    for gemm in gemms:
        reshape = _user(g, gemm.output[0], "Reshape")
        transpose = reshape and _user(g, reshape.output[0], "Transpose")
        if transpose is None or len(gemm.input) > 5 and gemm.input[5]:  # no weight zero point either
            return None
        heads.setdefault(tuple(_attr(transpose, "perm", [])), []).append((gemm, reshape, transpose))
    keys, others = heads.get((0, 2, 3, 1), []), heads.get((0, 2, 1, 3), [])
    if len(keys) != 1 or len(others) != 2:
        return None
    scores = _user(g, keys[0][2].output[0], "MatMul")
    if scores is None or scores.input[1] != keys[0][2].output[0]:
        return None
    queries = [o for o in others if o[2].output[0] == scores.input[0]]
    values = [o for o in others if o[2].output[0] != scores.input[0]]
    mul = _user(g, scores.output[0], "Mul")
    add = mul and _user(g, mul.output[0], "Add")
    softmax = add and _user(g, add.output[0], "Softmax")
    context = softmax and _user(g, softmax.output[0], "MatMul")
    if len(queries) != 1 or context is None or list(context.input) != [softmax.output[0], values[0][2].output[0]]:
        return None
    back = _user(g, context.output[0], "Transpose")
    merged = back and _user(g, back.output[0], "Reshape")
    scale = _scalar(g, [n for n in mul.input if n != scores.output[0]][0])
    mask = g.producer.get([n for n in add.input if n != mul.output[0]][0])
    if merged is None or _attr(back, "perm") != [0, 2, 1, 3] or _attr(softmax, "axis", -1) not in (-1, 3):
        return None
    if scale is None or mask is None or mask.op_type != "Where" or _scalar(g, mask.input[1]) != 0.0:
        return None
    # A finite mask value: QAttention adds (1 - mask) * value, and 0 * inf is NaN.
    mask_filter = _scalar(g, mask.input[2])
    rows, split = _shape(g, gemms[0].input[0]), _shape(g, queries[0][1].output[0])
    if mask_filter is None or not math.isfinite(mask_filter) or not rows or not split or len(split) != 4:
        return None
    batch, sequence = rows[:2]
    if split[:2] != [batch, sequence] or _shape(g, merged.output[0]) != [batch, sequence, split[2] * split[3]]:
        return None
    if _shape(g, mask.input[0]) != [batch, 1, sequence, sequence]:
        return None
    ordered = [queries[0], keys[0], values[0]]
    old = [n for chain in ordered for n in chain] + [scores, mul, add, softmax, context, back, merged]
    attributes = {"num_heads": split[2], "scale": scale, "mask_filter_value": mask_filter}
    return [chain[0] for chain in ordered], old, merged.output[0], attributes, mask.input[0]


def _qattention(g: _Graph, gemms: list, old: list, out: str, attributes: dict, mask: str) -> None:
    """com.microsoft QAttention of the query, key and value ``gemms``' input codes and their
    weights side by side, ``[K, 3 * hidden]``, with per-column scales and biases; the boolean mask
    as its 0/1 ``[batch, sequence, sequence]`` int32 mask_index (a masked score gets the mask
    value added, as the model's Where gives it)."""
    import onnx
    from onnx import helper

    columns = [g.inits[gemm.input[1]].dims[1] for gemm in gemms]
    weight = np.concatenate([g.array(gemm.input[1]) for gemm in gemms], axis=1)
    scales = [np.broadcast_to(g.array(gemm.input[3]).astype(np.float32), (n,)) for gemm, n in zip(gemms, columns)]
    biases = [
        g.array(gemm.input[6]).astype(np.float32) if len(gemm.input) > 6 and gemm.input[6] else np.zeros(n, np.float32)
        for gemm, n in zip(gemms, columns)
    ]
    base = old[-1].name or out
    for key, value in (("weight", weight), ("weight_scale", np.concatenate(scales)), ("bias", np.concatenate(biases))):
        g.set_initializer(f"{base}_qkv_{key}", np.ascontiguousarray(value))
    new = []
    mask_index = f"{mask}_mask_index"
    if mask_index not in g.producer:  # one per mask, for every layer that reads it
        g.set_initializer(f"{mask}_head_axis", np.array([1], dtype=np.int64))
        new += [
            helper.make_node("Cast", [mask], [f"{mask}_int32"], name=f"{mask}_int32", to=onnx.TensorProto.INT32),
            helper.make_node("Squeeze", [f"{mask}_int32", f"{mask}_head_axis"], [mask_index], name=mask_index),
        ]
    codes, input_scale, zero = gemms[0].input[0], gemms[0].input[2], gemms[0].input[4]
    inputs = [
        codes,
        f"{base}_qkv_weight",
        f"{base}_qkv_bias",
        input_scale,
        f"{base}_qkv_weight_scale",
        mask_index,
        zero,
    ]
    new.append(helper.make_node("QAttention", inputs, [out], name=base, domain=MS_DOMAIN, **attributes))
    g.replace(old, new)


def _use_domain(g: _Graph, domain: str) -> None:
    from onnx import helper

    if not any(opset.domain == domain for opset in g.proto.opset_import):
        g.proto.opset_import.append(helper.make_opsetid(domain, 1))
