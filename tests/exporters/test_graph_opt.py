"""``exporters.graph_opt``: each rewrite on a small hand-built graph, run on ONNX Runtime before and
after. A rewrite must keep the outputs (to float rounding), change the ops as it says, and leave a
pattern it cannot prove alone."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from exporters.graph_opt import (
    eliminate_common_subexpressions,
    fold_constant_adds,
    fuse_linear_bias,
    fuse_sum_squares,
    hoist_constants,
    optimize_for_runtime,
    softmax2_to_sigmoid,
    tidy_reshapes,
)

RNG = np.random.default_rng(0)


def const(name: str, *shape: int, dtype: type = np.float32) -> onnx.TensorProto:
    value = RNG.standard_normal(shape).astype(dtype) if dtype == np.float32 else np.array(shape, dtype=dtype)
    return numpy_helper.from_array(value, name)


def shape_const(name: str, values: Sequence[int]) -> onnx.TensorProto:
    return numpy_helper.from_array(np.array(values, dtype=np.int64), name)


def model(nodes: list[onnx.NodeProto], x_shape: Sequence[int | str], out_shape: Sequence[int | str] | None,
          inits: list[onnx.TensorProto], extra_inputs: Sequence[tuple[str, Sequence[int | str]]] = ()
          ) -> onnx.ModelProto:
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x_shape))]
    inputs += [helper.make_tensor_value_info(n, TensorProto.FLOAT, list(s)) for n, s in extra_inputs]
    graph = helper.make_graph(nodes, "g", inputs, [helper.make_tensor_value_info(
        "y", TensorProto.FLOAT, None if out_shape is None else list(out_shape))], inits)
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)])
    m.ir_version = 10
    onnx.checker.check_model(m, full_check=True)
    return m


def run(m: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> np.ndarray:
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # the graph as written
    session = ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"])
    return np.asarray(session.run(["y"], feeds)[0])


def ops(m: onnx.ModelProto) -> Counter[str]:
    return Counter(n.op_type for n in m.graph.node)


def same_outputs(before: onnx.ModelProto, after: onnx.ModelProto, feeds_at: Sequence[dict[str, np.ndarray]]) -> None:
    onnx.checker.check_model(after, full_check=True)
    for feeds in feeds_at:
        np.testing.assert_allclose(run(after, feeds), run(before, feeds), rtol=1e-5, atol=1e-5)


def x_at(*shape: int) -> dict[str, np.ndarray]:
    return {"x": RNG.standard_normal(shape).astype(np.float32)}


def test_an_nd_linear_layer_becomes_one_gemm_between_views() -> None:
    m = model([helper.make_node("MatMul", ["x", "w"], ["h"]), helper.make_node("Add", ["h", "b"], ["y"])],
              ["B", 4, 5, 8], ["B", 4, 5, 6], [const("w", 8, 6), const("b", 6)])
    after = onnx.ModelProto()
    after.CopyFrom(m)
    assert fuse_linear_bias(after) == 1
    assert ops(after) == Counter({"Reshape": 2, "Gemm": 1})
    same_outputs(m, after, [x_at(1, 4, 5, 8), x_at(3, 4, 5, 8)])


def test_a_bias_inside_a_sum_and_a_constant_in_the_middle_reach_the_gemm() -> None:
    """``(a + c) + x W`` → ``a + Gemm(x, W, c)``: hoisted outward, then fused."""
    m = model([helper.make_node("MatMul", ["x", "w"], ["h"]),
               helper.make_node("Add", ["a", "c"], ["ac"]),
               helper.make_node("Add", ["ac", "h"], ["y"])],
              ["B", 3, 8], ["B", 3, 6], [const("w", 8, 6), const("c", 6)], extra_inputs=[("a", ["B", 3, 6])])
    after = onnx.ModelProto()
    after.CopyFrom(m)
    assert hoist_constants(after) == 1 and fuse_linear_bias(after) == 1
    assert ops(after)["Gemm"] == 1 and ops(after)["Add"] == 1 and ops(after)["MatMul"] == 0
    feeds = [{**x_at(b, 3, 8), "a": RNG.standard_normal((b, 3, 6)).astype(np.float32)} for b in (1, 4)]
    same_outputs(m, after, feeds)


def test_another_symbolic_axis_is_left_alone() -> None:
    """With a dynamic window ``T`` the view back could not be written with one ``-1``: no rewrite."""
    m = model([helper.make_node("MatMul", ["x", "w"], ["h"]), helper.make_node("Add", ["h", "b"], ["y"])],
              ["B", "T", 8], ["B", "T", 6], [const("w", 8, 6), const("b", 6)])
    after = onnx.ModelProto()
    after.CopyFrom(m)
    assert fuse_linear_bias(after) == 0 and ops(after) == ops(m)


def test_constant_additions_fold_into_one() -> None:
    m = model([helper.make_node("Add", ["x", "c1"], ["h"]), helper.make_node("Add", ["h", "c2"], ["y"])],
              ["B", 4, 5], ["B", 4, 5], [const("c1", 5), const("c2", 4, 1)])
    after = onnx.ModelProto()
    after.CopyFrom(m)
    assert fold_constant_adds(after) == 1 and ops(after) == Counter({"Add": 1})
    same_outputs(m, after, [x_at(2, 4, 5)])


def test_a_two_way_softmax_becomes_a_sigmoid() -> None:
    m = model([helper.make_node("Gemm", ["x", "w", "b"], ["h"]), helper.make_node("Softmax", ["h"], ["y"], axis=-1)],
              ["B", 16], ["B", 2], [const("w", 16, 2), const("b", 2)])
    after = onnx.ModelProto()
    after.CopyFrom(m)
    assert softmax2_to_sigmoid(after) == 1 and ops(after) == Counter({"Gemm": 1, "Sigmoid": 1})
    same_outputs(m, after, [x_at(1, 16), x_at(5, 16)])
    three = model([helper.make_node("Gemm", ["x", "w", "b"], ["h"]), helper.make_node("Softmax", ["h"], ["y"])],
                  ["B", 16], ["B", 3], [const("w", 16, 3), const("b", 3)])
    assert softmax2_to_sigmoid(three) == 0  # only two classes have a sigmoid form


def test_sum_of_squares_and_common_subexpressions() -> None:
    m = model([helper.make_node("Mul", ["x", "x"], ["sq"]),
               helper.make_node("ReduceSum", ["sq", "axes"], ["s"], keepdims=1),
               helper.make_node("Relu", ["x"], ["r1"]),
               helper.make_node("Relu", ["x"], ["r2"]),
               helper.make_node("Add", ["r1", "r2"], ["rr"]),
               helper.make_node("Add", ["rr", "s"], ["y"])],
              ["B", 4, 5], ["B", 4, 5], [shape_const("axes", [-1])])
    after = onnx.ModelProto()
    after.CopyFrom(m)
    assert fuse_sum_squares(after) == 1 and eliminate_common_subexpressions(after) == 1
    assert ops(after) == Counter({"ReduceSumSquare": 1, "Relu": 1, "Add": 2})
    same_outputs(m, after, [x_at(3, 4, 5)])


def test_reshapes_around_a_unary_op_collapse() -> None:
    """``Reshape → Relu → Reshape`` back to the input's own shape is just a ``Relu`` (a reshape that
    writes a graph output stays: the output's name is the model's interface)."""
    m = model([helper.make_node("Reshape", ["x", "s1"], ["a"]),
               helper.make_node("Relu", ["a"], ["r"]),
               helper.make_node("Reshape", ["r", "s2"], ["b"]),
               helper.make_node("Neg", ["b"], ["y"])],
              ["B", 8], ["B", 8], [shape_const("s1", [-1, 2, 4]), shape_const("s2", [-1, 8])])
    after = onnx.ModelProto()
    after.CopyFrom(m)
    assert tidy_reshapes(after) == 3 and ops(after) == Counter({"Relu": 1, "Neg": 1})
    same_outputs(m, after, [x_at(3, 8)])


@pytest.mark.parametrize("batch", [1, 6])
def test_a_two_layer_mlp_keeps_its_outputs_and_loses_its_broadcast_adds(batch: int) -> None:
    m = model([helper.make_node("MatMul", ["x", "w1"], ["h1"]), helper.make_node("Add", ["h1", "b1"], ["a1"]),
               helper.make_node("Relu", ["a1"], ["r1"]),
               helper.make_node("MatMul", ["r1", "w2"], ["h2"]), helper.make_node("Add", ["h2", "b2"], ["a2"]),
               helper.make_node("Add", ["a2", "x"], ["y"])],
              ["B", 36, 12, 16], ["B", 36, 12, 16],
              [const("w1", 16, 32), const("b1", 32), const("w2", 32, 16), const("b2", 16)])
    after = onnx.ModelProto()
    after.CopyFrom(m)
    report = optimize_for_runtime(after)
    assert report.linear_bias_fused == 2 and report.reshapes_tidied >= 1
    assert ops(after)["Gemm"] == 2 and ops(after)["MatMul"] == 0 and ops(after)["Add"] == 1  # the residual
    same_outputs(m, after, [x_at(batch, 36, 12, 16)])
