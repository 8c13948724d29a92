"""Rewrites of an exported ONNX graph that make it cheaper for ONNX Runtime on the CPU.

The live models are small (tensors of a few thousand floats), so on the CPU their time goes
to per-node overhead and to ONNX Runtime's broadcasting element-wise kernels rather than to
arithmetic: adding a bias of shape ``(N,)`` to a ``(648, 64)`` tensor costs about 14 µs on
this machine, three times a same-shape ``Add`` of that tensor, while a ``Gemm`` folds the
same bias into its output for about 3 µs. ONNX Runtime fuses ``MatMul`` + ``Add`` into
``Gemm`` only for 2-D inputs, and the exporter writes every ``nn.Linear`` on a ``(B, …, K)``
tensor as an N-D ``MatMul`` followed by a broadcast ``Add``. Exact rewrites (each computes the
same function, up to float rounding order):

- :func:`fuse_linear_bias`: ``Add(Reshape*(MatMul(X, W)), b)`` with constant ``W (K, N)`` and
  a constant bias over the last axis → ``Reshape(Gemm(Reshape(X, (-1, K)), W, b), shape)``,
  also when the ``MatMul`` is one term of a sum; the reshapes are views (no copy);
- :func:`hoist_constants` moves constants to the outside of a sum, where they fuse or fold;
- :func:`fold_constant_adds`: ``Add(Add(x, c1), c2)`` → ``Add(x, c1 + c2)``;
- :func:`softmax2_to_sigmoid`: a 2-way ``Softmax`` of a ``Gemm`` → a ``Sigmoid`` of the logit
  differences;
- :func:`fuse_sum_squares`: ``ReduceSum(Mul(x, x))`` → ``ReduceSumSquare(x)``;
- :func:`tidy_reshapes` and :func:`eliminate_common_subexpressions` remove what is left over.

The shape-changing rewrites need every axis but the first to be static (the specs here make
only the batch dynamic); a pattern with another symbolic axis is left as it is.
:func:`optimize_for_runtime` runs them all and returns the counts; the export validation that
follows (ONNX Runtime against torch) checks the result like any other export.

Importing this module imports neither torch nor the training code.
"""

from __future__ import annotations

import dataclasses
import logging
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import onnx

log = logging.getLogger(__name__)

__all__ = ["GraphOptReport", "eliminate_common_subexpressions", "fold_constant_adds", "fuse_linear_bias",
           "fuse_sum_squares", "hoist_constants", "optimize_for_runtime", "softmax2_to_sigmoid", "tidy_reshapes"]


@dataclass(frozen=True)
class GraphOptReport:
    """How many patterns each rewrite replaced, and the node count before and after."""

    constants_hoisted: int
    linear_bias_fused: int
    constant_adds_folded: int
    softmax2_to_sigmoid: int
    sum_squares_fused: int
    reshapes_tidied: int
    common_removed: int
    nodes_before: int
    nodes_after: int

    def as_dict(self) -> dict[str, int]:
        return dataclasses.asdict(self)


class _Graph:
    """Index of one ``onnx.GraphProto``: producers, consumers, constants and static shapes."""

    def __init__(self, model: onnx.ModelProto) -> None:
        import onnx
        from onnx import numpy_helper

        self.model = model
        self.graph = model.graph
        self.constants: dict[str, np.ndarray] = {
            init.name: numpy_helper.to_array(init) for init in self.graph.initializer}
        for node in self.graph.node:  # Constant nodes count as constants too
            if node.op_type == "Constant" and len(node.output) == 1:
                for attr in node.attribute:
                    if attr.name == "value":
                        self.constants[node.output[0]] = numpy_helper.to_array(attr.t)
        inferred = onnx.shape_inference.infer_shapes(model)
        self.shapes: dict[str, tuple[int | str, ...]] = {}
        for vi in (*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output):
            tt = vi.type.tensor_type
            if tt.HasField("shape"):
                self.shapes[vi.name] = tuple(
                    d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in tt.shape.dim)
        for name, value in self.constants.items():
            self.shapes[name] = tuple(int(s) for s in value.shape)
        self.producer: dict[str, onnx.NodeProto] = {o: n for n in self.graph.node for o in n.output}
        self.consumers: dict[str, list[onnx.NodeProto]] = defaultdict(list)
        for node in self.graph.node:
            for name in node.input:
                self.consumers[name].append(node)
        self.outputs = {o.name for o in self.graph.output}
        self.names = {n for node in self.graph.node for n in (*node.input, *node.output)} | set(self.constants)
        self._fresh = 0

    def single_use(self, name: str) -> bool:
        """``name`` feeds exactly one node and is not a graph output."""
        return len(self.consumers[name]) == 1 and name not in self.outputs

    def static_tail(self, name: str) -> tuple[int, ...] | None:
        """The shape of ``name`` without its first axis, if every one of those axes is static."""
        shape = self.shapes.get(name)
        if shape is None or len(shape) < 1 or not all(isinstance(d, int) and d > 0 for d in shape[1:]):
            return None
        return tuple(int(d) for d in shape[1:])

    def fresh(self, stem: str) -> str:
        while True:
            self._fresh += 1
            name = f"istrings_opt_{stem}_{self._fresh}"
            if name not in self.names:
                self.names.add(name)
                return name

    def add_constant(self, stem: str, value: np.ndarray) -> str:
        from onnx import numpy_helper

        name = self.fresh(stem)
        self.graph.initializer.append(numpy_helper.from_array(value, name))
        self.constants[name] = value
        return name


def _until_done(step: Callable[[_Graph], bool], model: onnx.ModelProto) -> int:
    """Apply ``step`` (one rewrite on a fresh index of the graph, False when none is left) until
    it finds nothing more; returns how many rewrites it made."""
    count = 0
    while step(_Graph(model)):
        count += 1
    return count


def _bias_vector(value: np.ndarray, rank: int) -> np.ndarray | None:
    """``value`` as a 1-D bias over the last axis of a rank-``rank`` tensor, or None."""
    if value.ndim == 0 or value.ndim > rank or any(d != 1 for d in value.shape[:-1]):
        return None
    return value.reshape(-1)


def _replace_nodes(graph: onnx.GraphProto, remove: list[onnx.NodeProto],
                   at: onnx.NodeProto, new: list[onnx.NodeProto]) -> None:
    """Remove ``remove`` from ``graph`` and insert ``new`` where ``at`` was (topological order)."""
    nodes = list(graph.node)
    index = next(i for i, n in enumerate(nodes) if n is at)
    drop = {id(n) for n in remove}
    kept = [n for n in nodes[:index] if id(n) not in drop] + new + [n for n in nodes[index + 1:] if id(n) not in drop]
    del graph.node[:]
    graph.node.extend(kept)


def _behind_reshapes(g: _Graph, name: str, last_axis: int
                     ) -> tuple[onnx.NodeProto | None, str, list[onnx.NodeProto]]:
    """What produces ``name`` seen through single-use reshapes that keep the last axis ``last_axis``:
    ``(producer or None, the tensor it writes, the reshapes between, nearest first)``."""
    chain: list[onnx.NodeProto] = []
    producer = g.producer.get(name)
    while (producer is not None and producer.op_type == "Reshape" and g.single_use(name)
           and g.shapes.get(producer.input[0], (None,))[-1] == last_axis):
        chain.append(producer)
        name = producer.input[0]
        producer = g.producer.get(name)
    return producer, name, chain


def _matmul_branch(g: _Graph, name: str, n: int) -> tuple[onnx.NodeProto, list[onnx.NodeProto]] | None:
    """The ``MatMul(X, W)`` with constant ``W (K, n)`` behind ``name`` through single-use reshapes.

    Returns the MatMul and the reshapes between it and ``name`` (nearest first), or None.
    Every step must be used once only (the rewrite removes them) and keep the last axis ``n``.
    """
    producer, name, chain = _behind_reshapes(g, name, n)
    if producer is None or producer.op_type != "MatMul" or not g.single_use(name):
        return None
    weight = g.constants.get(producer.input[1])
    x_shape = g.shapes.get(producer.input[0])
    if weight is None or weight.ndim != 2 or weight.shape[1] != n or x_shape is None or len(x_shape) < 2:
        return None
    if len(x_shape) > 2 and g.static_tail(producer.input[0]) is None:
        return None
    return producer, chain


def _gemm_nodes(g: _Graph, matmul: onnx.NodeProto, bias: np.ndarray, out: str,
                out_tail: tuple[int, ...]) -> list[onnx.NodeProto]:
    """``Reshape(X, (-1, K))`` → ``Gemm(·, W, bias)`` → ``Reshape(·, (-1, *out_tail))`` into ``out``."""
    from onnx import helper

    x, w = matmul.input[0], matmul.input[1]
    k = int(g.constants[w].shape[0])
    nodes: list[onnx.NodeProto] = []
    a = x
    if len(g.shapes[x]) != 2:
        a = g.fresh("rows")
        nodes.append(helper.make_node("Reshape", [x, g.add_constant("shape", np.array([-1, k], dtype=np.int64))], [a]))
    bias_name = g.add_constant("bias", bias.astype(g.constants[w].dtype))
    gemm_out = out if len(out_tail) == 1 else g.fresh("gemm")
    nodes.append(helper.make_node("Gemm", [a, w, bias_name], [gemm_out]))
    if len(out_tail) != 1:
        target = np.array([-1, *out_tail], dtype=np.int64)
        nodes.append(helper.make_node("Reshape", [gemm_out, g.add_constant("shape", target)], [out]))
    return nodes


def _fuse_one_linear_bias(g: _Graph) -> bool:
    """One step of :func:`fuse_linear_bias`; False when no pattern is left."""
    from onnx import helper

    for add in g.graph.node:
        if add.op_type != "Add" or len(add.input) != 2:
            continue
        out_tail = g.static_tail(add.output[0])
        if not out_tail:  # unknown, or a rank-1 sum
            continue
        for side in (0, 1):
            bias = g.constants.get(add.input[1 - side])
            vector = None if bias is None else _bias_vector(bias, len(out_tail) + 1)
            if vector is None or add.input[side] in g.constants:
                continue
            name = add.input[side]
            found = _matmul_branch(g, name, vector.size)
            if found is not None:  # Add(Reshape*(MatMul(X, W)), b)
                matmul, chain = found
                new = _gemm_nodes(g, matmul, vector, add.output[0], out_tail)
                _replace_nodes(g.graph, [matmul, *chain, add], add, new)
                return True
            inner = g.producer.get(name)
            if inner is None or inner.op_type != "Add" or len(inner.input) != 2 or not g.single_use(name):
                continue
            for branch in (0, 1):  # Add(Add(A, Reshape*(MatMul(X, W))), b) → Add(A, Gemm(X, W, b))
                tail = g.static_tail(inner.input[branch])
                found = _matmul_branch(g, inner.input[branch], vector.size)
                if found is None or not tail or tail[-1] != vector.size:
                    continue
                matmul, chain = found
                term = g.fresh("linear")
                new = _gemm_nodes(g, matmul, vector, term, tail)
                new.append(helper.make_node("Add", [inner.input[1 - branch], term], [add.output[0]]))
                _replace_nodes(g.graph, [matmul, *chain, inner, add], add, new)
                return True
    return False


def fuse_linear_bias(model: onnx.ModelProto) -> int:
    """Turn every ``MatMul`` by a constant matrix followed by a bias ``Add`` into one ``Gemm``.

    The pattern is ``Add(Reshape*(MatMul(X, W)), b)`` or ``Add(Add(A, Reshape*(MatMul(X, W))), b)``:
    ``W`` a constant ``(K, N)``, any chain of single-use reshapes that keep the last axis ``N``,
    and ``b`` a constant of ``N`` values over the last axis (shape ``(N,)`` or ``(1, …, 1, N)``).
    ``X (…, K)`` is viewed as ``(-1, K)``, the ``Gemm`` adds ``b``, and the result is viewed back
    to ``(-1, d_1, …, N)``. Edits ``model`` in place; returns how many patterns were replaced.
    """
    return _until_done(_fuse_one_linear_bias, model)


def _hoist_one_constant(g: _Graph) -> bool:
    """``Add(Add(L, c), M)`` → ``Add(Add(L, M), c)``: constants move outward, where a bias can fuse."""
    from onnx import helper

    for outer in g.graph.node:
        if outer.op_type != "Add" or len(outer.input) != 2 or any(i in g.constants for i in outer.input):
            continue
        for side in (0, 1):
            inner = g.producer.get(outer.input[side])
            if inner is None or inner.op_type != "Add" or not g.single_use(outer.input[side]):
                continue
            for c_side in (0, 1):
                c, rest = inner.input[c_side], inner.input[1 - c_side]
                if c not in g.constants or rest in g.constants:
                    continue
                total = g.fresh("sum")
                new = [helper.make_node("Add", [rest, outer.input[1 - side]], [total]),
                       helper.make_node("Add", [total, c], [outer.output[0]])]
                _replace_nodes(g.graph, [inner, outer], outer, new)
                return True
    return False


def hoist_constants(model: onnx.ModelProto) -> int:
    """Rewrite ``Add(Add(L, c), M)`` with constant ``c`` as ``Add(Add(L, M), c)`` (in place).

    Exact up to rounding order; it lets :func:`fuse_linear_bias` and :func:`fold_constant_adds`
    see the constant at the outside of a sum. Returns how many sums were rewritten.
    """
    return _until_done(_hoist_one_constant, model)


def _fold_one_constant_add(g: _Graph) -> bool:
    from onnx import helper

    for outer in g.graph.node:
        if outer.op_type != "Add" or len(outer.input) != 2:
            continue
        for side in (0, 1):
            c2 = g.constants.get(outer.input[1 - side])
            inner = g.producer.get(outer.input[side])
            if c2 is None or inner is None or inner.op_type != "Add" or not g.single_use(outer.input[side]):
                continue
            for inner_side in (0, 1):
                c1 = g.constants.get(inner.input[1 - inner_side])
                x = inner.input[inner_side]
                out_shape = g.shapes.get(outer.output[0])
                if c1 is None or x in g.constants or c1.dtype != c2.dtype or out_shape is None:
                    continue
                total = c1 + c2
                if total.ndim > len(out_shape):
                    continue
                node = helper.make_node("Add", [x, g.add_constant("sum", total)], [outer.output[0]])
                _replace_nodes(g.graph, [inner, outer], outer, [node])
                return True
    return False


def fold_constant_adds(model: onnx.ModelProto) -> int:
    """Fold ``Add(Add(x, c1), c2)`` with constant ``c1``, ``c2`` into ``Add(x, c1 + c2)``.

    Only when the inner sum feeds nothing else and ``c1 + c2`` broadcasts to no more axes than
    the output has. Edits ``model`` in place; returns how many pairs were folded.
    """
    return _until_done(_fold_one_constant_add, model)


_UNARY = frozenset({"Relu", "Sigmoid", "Tanh", "Gelu", "Erf", "Neg", "Abs", "Exp", "Sqrt"})


def _tidy_one_reshape(g: _Graph) -> bool:
    """One step of :func:`tidy_reshapes`; False when nothing is left to tidy."""
    from onnx import helper

    for node in g.graph.node:
        if node.op_type in _UNARY and len(node.input) == 1:  # U(Reshape(y, s)) → Reshape(U(y), s)
            r = g.producer.get(node.input[0])
            if r is not None and r.op_type == "Reshape" and g.single_use(node.input[0]):
                moved = g.fresh(node.op_type.lower())
                u = helper.make_node(node.op_type, [r.input[0]], [moved])
                u.attribute.extend(node.attribute)
                new = [u, helper.make_node("Reshape", [moved, r.input[1]], [node.output[0]])]
                new[1].attribute.extend(r.attribute)
                _replace_nodes(g.graph, [r, node], node, new)
                return True
        if node.op_type != "Reshape":
            continue
        inner = g.producer.get(node.input[0])
        target = g.constants.get(node.input[1])
        if (inner is not None and inner.op_type == "Reshape" and target is not None
                and not np.any(target == 0)):  # the inner reshape stays while other nodes use it
            merged = helper.make_node("Reshape", [inner.input[0], node.input[1]], [node.output[0]])
            _replace_nodes(g.graph, [inner, node] if g.single_use(node.input[0]) else [node], node, [merged])
            return True
        src, dst = g.shapes.get(node.input[0]), g.shapes.get(node.output[0])
        tail_in, tail_out = g.static_tail(node.input[0]), g.static_tail(node.output[0])
        if (src is not None and dst is not None and len(src) == len(dst) and tail_in is not None
                and tail_in == tail_out and node.output[0] not in g.outputs):  # a reshape to its own shape
            for consumer in g.consumers[node.output[0]]:
                for i, name in enumerate(consumer.input):
                    if name == node.output[0]:
                        consumer.input[i] = node.input[0]
            _replace_nodes(g.graph, [node], node, [])
            return True
    return False


def tidy_reshapes(model: onnx.ModelProto) -> int:
    """Remove the reshapes the other rewrites leave back to back (in place; returns the count).

    ``Reshape(Reshape(y, s1), s2)`` → ``Reshape(y, s2)`` (no 0 in ``s2``); a reshape to the shape
    its input already has is dropped; an element-wise unary op moves before a reshape, so that
    ``Gemm → Reshape → Relu → Reshape → Gemm`` becomes ``Gemm → Relu → Gemm``.
    """
    return _until_done(_tidy_one_reshape, model)


def _sigmoid_one_softmax(g: _Graph) -> bool:
    for node in g.graph.node:
        if node.op_type != "Softmax":
            continue
        shape = g.shapes.get(node.input[0])
        axis = next((a.i for a in node.attribute if a.name == "axis"), -1)
        if shape is None or shape[-1] != 2 or axis not in (-1, len(shape) - 1):
            continue
        producer, name, _ = _behind_reshapes(g, node.input[0], 2)
        if producer is None or producer.op_type != "Gemm" or producer.attribute or not g.single_use(name):
            continue
        w = g.constants.get(producer.input[1])
        b = g.constants.get(producer.input[2]) if len(producer.input) > 2 else None
        if w is None or w.ndim != 2 or w.shape[1] != 2 or b is None or b.shape != (2,):
            continue
        swap = np.array([[1.0, -1.0], [-1.0, 1.0]], dtype=w.dtype)  # column k → logit_k − logit_other
        producer.input[1] = g.add_constant("diff_w", w @ swap)  # edited in place: the order stays
        producer.input[2] = g.add_constant("diff_b", b @ swap)
        node.op_type = "Sigmoid"
        del node.attribute[:]
        return True
    return False


def softmax2_to_sigmoid(model: onnx.ModelProto) -> int:
    """Replace a 2-way ``Softmax`` over a ``Gemm``'s output by a ``Sigmoid`` (in place; returns the count).

    For two classes ``softmax(l)_0 = 1 / (1 + e^(l_1 − l_0)) = sigmoid(l_0 − l_1)``: the ``Gemm``
    computes the differences instead (``W ← W·[[1, −1], [−1, 1]]``, the bias likewise), and an
    element-wise ``Sigmoid`` costs ONNX Runtime far less than a ``Softmax`` over rows of two.
    """
    return _until_done(_sigmoid_one_softmax, model)


def _sum_square_one(g: _Graph) -> bool:
    from onnx import helper

    for node in g.graph.node:
        if node.op_type != "ReduceSum":
            continue
        mul = g.producer.get(node.input[0])
        if (mul is None or mul.op_type != "Mul" or len(mul.input) != 2 or mul.input[0] != mul.input[1]
                or not g.single_use(node.input[0])):
            continue
        fused = helper.make_node("ReduceSumSquare", [mul.input[0], *node.input[1:]], list(node.output))
        fused.attribute.extend(node.attribute)
        _replace_nodes(g.graph, [mul, node], node, [fused])
        return True
    return False


def fuse_sum_squares(model: onnx.ModelProto) -> int:
    """``ReduceSum(Mul(x, x), axes)`` → ``ReduceSumSquare(x, axes)`` (in place; returns the count)."""
    return _until_done(_sum_square_one, model)


def _input_key(g: _Graph, name: str) -> object:
    value = g.constants.get(name)
    if value is None:
        return name
    return ("const", value.dtype.str, value.shape, value.tobytes())


def _cse_one(g: _Graph) -> bool:
    seen: dict[object, onnx.NodeProto] = {}
    for node in g.graph.node:
        if node.op_type == "Constant" or any(o in g.outputs for o in node.output):
            continue
        key = (node.op_type, node.domain, tuple(_input_key(g, i) for i in node.input),
               tuple(a.SerializeToString() for a in node.attribute), len(node.output))
        first = seen.get(key)
        if first is None:
            seen[key] = node
            continue
        renames = dict(zip(node.output, first.output, strict=True))
        for consumer in g.graph.node:
            for i, name in enumerate(consumer.input):
                if name in renames:
                    consumer.input[i] = renames[name]
        _replace_nodes(g.graph, [node], node, [])
        return True
    return False


def eliminate_common_subexpressions(model: onnx.ModelProto) -> int:
    """Keep one of every set of nodes with the same op, attributes and inputs (constants compared
    by value); the others' consumers read the one kept. In place; returns how many were removed."""
    return _until_done(_cse_one, model)


def _drop_unused_initializers(model: onnx.ModelProto) -> None:
    used = {name for node in model.graph.node for name in node.input} | {o.name for o in model.graph.output}
    keep = [init for init in model.graph.initializer if init.name in used]
    del model.graph.initializer[:]
    model.graph.initializer.extend(keep)


def optimize_for_runtime(model: onnx.ModelProto) -> GraphOptReport:
    """Run every rewrite of this module on ``model`` (in place), in an order where each helps the next.

    :func:`hoist_constants` → :func:`fuse_linear_bias` → :func:`fold_constant_adds` →
    :func:`softmax2_to_sigmoid` → :func:`fuse_sum_squares` → :func:`tidy_reshapes` →
    :func:`eliminate_common_subexpressions`. The
    intermediate ``value_info`` is cleared (the rewrites change shapes inside the graph; ONNX
    Runtime infers them again) and initializers no node uses any more are dropped.
    """
    before = len(model.graph.node)
    hoisted = hoist_constants(model)
    fused = fuse_linear_bias(model)
    folded = fold_constant_adds(model)
    sigmoids = softmax2_to_sigmoid(model)
    squares = fuse_sum_squares(model)
    tidied = tidy_reshapes(model)
    common = eliminate_common_subexpressions(model)
    del model.graph.value_info[:]
    _drop_unused_initializers(model)
    report = GraphOptReport(constants_hoisted=hoisted, linear_bias_fused=fused, constant_adds_folded=folded,
                            softmax2_to_sigmoid=sigmoids, sum_squares_fused=squares, reshapes_tidied=tidied,
                            common_removed=common, nodes_before=before,
                            nodes_after=len(model.graph.node))
    log.debug("graph rewrites: %s", report.as_dict())
    return report
