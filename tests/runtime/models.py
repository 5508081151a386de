"""Small ONNX models built in memory for executor tests (branches, joins, every common layer kind)."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def branchy_cnn(seed: int = 0) -> onnx.ModelProto:
    """conv-bn-relu stem → two branches (1×1 conv+relu | depthwise conv) → Add → LRN → maxpool →
    Concat with an avg-pooled skip → global pool → flatten → gemm → softmax."""
    rng = np.random.default_rng(seed)

    def w(name, *shape, scale=0.3):
        return numpy_helper.from_array((rng.standard_normal(shape) * scale).astype(np.float32), name)

    inits = [
        w("stem.w", 8, 3, 3, 3), w("stem.b", 8),
        numpy_helper.from_array(rng.uniform(0.5, 1.5, 8).astype(np.float32), "bn.scale"), w("bn.bias", 8),
        w("bn.mean", 8, scale=0.1), numpy_helper.from_array(rng.uniform(0.5, 1.5, 8).astype(np.float32), "bn.var"),
        w("a.w", 8, 8, 1, 1), w("a.b", 8),
        w("dw.w", 8, 1, 3, 3), w("dw.b", 8),
        w("fc.w", 10, 16), w("fc.b", 10),
    ]
    nodes = [
        helper.make_node("Conv", ["x", "stem.w", "stem.b"], ["stem"], kernel_shape=[3, 3], pads=[1, 1, 1, 1], name="stem"),
        helper.make_node("BatchNormalization", ["stem", "bn.scale", "bn.bias", "bn.mean", "bn.var"], ["bn"], epsilon=1e-5, name="bn"),
        helper.make_node("Relu", ["bn"], ["stem_r"], name="stem_relu"),
        helper.make_node("Conv", ["stem_r", "a.w", "a.b"], ["a"], kernel_shape=[1, 1], name="branch_a"),
        helper.make_node("Relu", ["a"], ["a_r"], name="branch_a_relu"),
        helper.make_node("Conv", ["stem_r", "dw.w", "dw.b"], ["b"], kernel_shape=[3, 3], pads=[1, 1, 1, 1], group=8, name="branch_b"),
        helper.make_node("Add", ["a_r", "b"], ["join"], name="join"),
        helper.make_node("LRN", ["join"], ["lrn"], size=3, alpha=1e-3, beta=0.75, bias=1.0, name="lrn"),
        helper.make_node("MaxPool", ["lrn"], ["mp"], kernel_shape=[2, 2], strides=[2, 2], name="mp"),
        helper.make_node("AveragePool", ["stem_r"], ["ap"], kernel_shape=[2, 2], strides=[2, 2], name="ap"),
        helper.make_node("Concat", ["mp", "ap"], ["cat"], axis=1, name="cat"),
        helper.make_node("GlobalAveragePool", ["cat"], ["gap"], name="gap"),
        helper.make_node("Flatten", ["gap"], ["flat"], axis=1, name="flat"),
        helper.make_node("Gemm", ["flat", "fc.w", "fc.b"], ["fc"], transB=1, name="fc"),
        helper.make_node("Softmax", ["fc"], ["y"], axis=1, name="softmax"),
    ]
    graph = helper.make_graph(
        nodes, "branchy", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 12, 12])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 10])], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def mlp(seed: int = 0) -> onnx.ModelProto:
    """Two inputs: x → Gemm+Relu → MatMul (+ second input added) → Tanh; a two-output model."""
    rng = np.random.default_rng(seed)
    inits = [numpy_helper.from_array(rng.standard_normal(s).astype(np.float32) * 0.3, n)
             for n, s in (("w1", (20, 16)), ("b1", (16,)), ("w2", (16, 8)))]
    nodes = [
        helper.make_node("Gemm", ["x", "w1", "b1"], ["h"], name="fc1"),
        helper.make_node("Relu", ["h"], ["hr"], name="fc1_relu"),
        helper.make_node("MatMul", ["hr", "w2"], ["m"], name="mm"),
        helper.make_node("Add", ["m", "z"], ["s"], name="add"),
        helper.make_node("Tanh", ["s"], ["y"], name="tanh"),
        helper.make_node("Sigmoid", ["hr"], ["y2"], name="sig"),
    ]
    graph = helper.make_graph(
        nodes, "mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 20]),
         helper.make_tensor_value_info("z", TensorProto.FLOAT, [2, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 8]),
         helper.make_tensor_value_info("y2", TensorProto.FLOAT, [2, 16])], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model
