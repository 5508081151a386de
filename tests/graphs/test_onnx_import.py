"""ONNX import: per-op shapes (checked against onnxruntime), FLOPs, params, folding, DAG, errors."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from deepx_opt.errors import DeepxError, ModelLoadError, ShapeInferenceError, UnsupportedOpError
from deepx_opt.graphs import load_onnx, supported_ops, totals
from tests.onnx_utils import make_model, ort_all_tensors, rand

N = helper.make_node


def _check_shapes_against_ort(proto, model):
    feeds = {k: rand(*v.shape) for k, v in model.inputs.items()}
    ref = ort_all_tensors(proto, feeds)
    compared = 0
    for name, arr in ref.items():
        if name in model.tensors:
            assert model.tensors[name].shape == arr.shape, name
            assert np.dtype(model.tensors[name].dtype) == arr.dtype, name
            compared += 1
    assert compared >= 1
    return ref


# (id, nodes, inputs, inits, opset, expected flops of the whole model or None)
CASES = [
    ("conv_pads_strides", [N("Conv", ["x", "w", "b"], ["y"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 0, 2, 1])],
     {"x": [1, 4, 11, 9]}, {"w": rand(6, 4, 3, 3), "b": rand(6)}, 13, 2 * 6 * 6 * 4 * 4 * 9),
    ("conv_dilated_grouped", [N("Conv", ["x", "w"], ["y"], kernel_shape=[3, 3], dilations=[2, 2], group=2)],
     {"x": [1, 4, 12, 12]}, {"w": rand(6, 2, 3, 3)}, 11, 2 * 6 * 8 * 8 * 2 * 9),
    ("conv_depthwise_same", [N("Conv", ["x", "w"], ["y"], kernel_shape=[3, 3], auto_pad="SAME_UPPER", strides=[2, 2], group=4)],
     {"x": [1, 4, 7, 7]}, {"w": rand(4, 1, 3, 3)}, 13, 2 * 4 * 4 * 4 * 9),
    ("conv_same_lower", [N("Conv", ["x", "w"], ["y"], kernel_shape=[2, 2], auto_pad="SAME_LOWER")],
     {"x": [1, 2, 5, 5]}, {"w": rand(3, 2, 2, 2)}, 13, None),
    ("conv_valid", [N("Conv", ["x", "w"], ["y"], auto_pad="VALID")], {"x": [1, 2, 5, 5]}, {"w": rand(3, 2, 3, 3)}, 7, None),
    ("gemm_transB_alpha", [N("Gemm", ["x", "w", "c"], ["y"], transB=1, alpha=0.5, beta=2.0)],
     {"x": [3, 5]}, {"w": rand(7, 5), "c": rand(7)}, 13, 2 * 3 * 7 * 5),
    ("gemm_transA", [N("Gemm", ["x", "w"], ["y"], transA=1)], {"x": [5, 3]}, {"w": rand(5, 4)}, 11, 2 * 3 * 4 * 5),
    ("matmul_bias", [N("MatMul", ["x", "w"], ["m"]), N("Add", ["m", "b"], ["y"])], {"x": [2, 6]}, {"w": rand(6, 4), "b": rand(4)}, 13,
     2 * 2 * 4 * 6 + 8),
    ("matmul_batched", [N("MatMul", ["x", "w"], ["y"])], {"x": [2, 3, 6]}, {"w": rand(6, 4)}, 13, 2 * 2 * 3 * 4 * 6),
    ("bn_relu", [N("Conv", ["x", "w"], ["c"], kernel_shape=[1, 1]), N("BatchNormalization", ["c", "s", "b", "m", "v"], ["n"]), N("Relu", ["n"], ["y"])],
     {"x": [1, 3, 4, 4]}, {"w": rand(2, 3, 1, 1), "s": rand(2), "b": rand(2), "m": rand(2), "v": np.ones(2, np.float32)}, 9, None),
    ("leaky_sigmoid_tanh", [N("LeakyRelu", ["x"], ["a"], alpha=0.2), N("Sigmoid", ["a"], ["b"]), N("Tanh", ["b"], ["y"])], {"x": [2, 3]}, {}, 13, None),
    ("clip_attr", [N("Clip", ["x"], ["y"], min=-1.0, max=1.0)], {"x": [2, 3]}, {}, 7, None),
    ("clip_inputs", [N("Clip", ["x", "lo", "hi"], ["y"])], {"x": [2, 3]}, {"lo": np.array(-1, np.float32), "hi": np.array(1, np.float32)}, 13, None),
    ("softmax_legacy", [N("Softmax", ["x"], ["y"], axis=1)], {"x": [2, 3, 4]}, {}, 11, None),
    ("logsoftmax13", [N("LogSoftmax", ["x"], ["y"])], {"x": [2, 3, 4]}, {}, 13, None),
    ("maxpool_ceil", [N("MaxPool", ["x"], ["y"], kernel_shape=[3, 3], strides=[2, 2], ceil_mode=1)], {"x": [1, 2, 8, 8]}, {}, 13, 1 * 2 * 4 * 4 * 9),
    ("maxpool_pads_dil", [N("MaxPool", ["x"], ["y"], kernel_shape=[2, 2], pads=[1, 1, 1, 1], dilations=[2, 2])], {"x": [1, 2, 7, 7]}, {}, 12, None),
    ("avgpool_same", [N("AveragePool", ["x"], ["y"], kernel_shape=[3, 3], auto_pad="SAME_UPPER", strides=[2, 2])], {"x": [1, 2, 7, 7]}, {}, 11, None),
    ("avgpool_incl_pad", [N("AveragePool", ["x"], ["y"], kernel_shape=[3, 3], pads=[1, 1, 1, 1], count_include_pad=1)], {"x": [1, 2, 5, 5]}, {}, 13, None),
    ("global_pools", [N("GlobalAveragePool", ["x"], ["a"]), N("GlobalMaxPool", ["x"], ["b"]), N("Add", ["a", "b"], ["y"])], {"x": [1, 3, 5, 5]}, {}, 13, None),
    ("lrn", [N("LRN", ["x"], ["y"], size=5, alpha=1e-4, beta=0.75, bias=1.0)], {"x": [1, 8, 4, 4]}, {}, 13, 8 * 16 * 13),
    ("dropout7", [N("Dropout", ["x"], ["y"], ratio=0.5)], {"x": [2, 3]}, {}, 7, None),
    ("dropout13", [N("Relu", ["x"], ["r"]), N("Dropout", ["r", "ratio"], ["y"])], {"x": [2, 3]}, {"ratio": np.array(0.3, np.float32)}, 13, None),
    ("flatten", [N("Flatten", ["x"], ["y"], axis=2)], {"x": [2, 3, 4, 5]}, {}, 13, None),
    ("reshape_zero_neg", [N("Reshape", ["x", "s"], ["y"])], {"x": [2, 3, 4]}, {"s": np.array([0, -1], np.int64)}, 13, None),
    ("reshape_old_attr", [N("Relu", ["x"], ["r"]), N("Reshape", ["r", "s"], ["y"])], {"x": [2, 6]}, {"s": np.array([3, 4], np.int64)}, 7, None),
    ("transpose", [N("Transpose", ["x"], ["y"], perm=[0, 2, 3, 1])], {"x": [1, 2, 3, 4]}, {}, 13, None),
    ("squeeze_unsqueeze11", [N("Squeeze", ["x"], ["a"], axes=[1]), N("Unsqueeze", ["a"], ["y"], axes=[0, 3])], {"x": [2, 1, 3]}, {}, 11, None),
    ("squeeze_unsqueeze13", [N("Squeeze", ["x", "ax"], ["a"]), N("Unsqueeze", ["a", "ax2"], ["y"])], {"x": [2, 1, 3]},
     {"ax": np.array([1], np.int64), "ax2": np.array([-1], np.int64)}, 13, None),
    ("concat_neg_axis", [N("Relu", ["x"], ["a"]), N("Sigmoid", ["x"], ["b"]), N("Concat", ["a", "b"], ["y"], axis=-1)], {"x": [2, 3]}, {}, 13, None),
    ("binary_broadcast", [N("Mul", ["x", "z"], ["a"]), N("Sub", ["a", "c"], ["b"]), N("Div", ["b", "c"], ["y"])],
     {"x": [2, 3, 4], "z": [3, 1]}, {"c": np.full((4,), 2.0, np.float32)}, 13, None),
    ("sum3", [N("Sum", ["x", "z", "w"], ["y"])], {"x": [2, 3], "z": [2, 3], "w": [1, 3]}, {}, 13, 2 * 6),
    ("pad11", [N("Pad", ["x", "p", "v"], ["y"], mode="constant")], {"x": [1, 2, 3, 3]},
     {"p": np.array([0, 0, 1, 2, 0, 0, 2, 1], np.int64), "v": np.array(0.5, np.float32)}, 13, None),
    ("pad_reflect_attr", [N("Pad", ["x"], ["y"], mode="reflect", pads=[0, 0, 1, 1, 0, 0, 1, 1])], {"x": [1, 2, 3, 3]}, {}, 7, None),
    ("pad18_axes", [N("Pad", ["x", "p", "", "ax"], ["y"], mode="edge")], {"x": [1, 2, 3, 3]},
     {"p": np.array([1, 2, 2, 1], np.int64), "ax": np.array([2, 3], np.int64)}, 18, None),
    ("cast_identity", [N("Cast", ["x"], ["a"], to=TensorProto.DOUBLE), N("Cast", ["a"], ["b"], to=TensorProto.FLOAT), N("Identity", ["b"], ["y"])],
     {"x": [2, 3]}, {}, 13, None),
    ("constants", [N("Constant", [], ["k"], value=numpy_helper.from_array(np.ones((3,), np.float32))), N("Add", ["x", "k"], ["a"]),
                   N("ConstantOfShape", ["shp"], ["z"], value=numpy_helper.from_array(np.array([2.0], np.float32))), N("Mul", ["a", "z"], ["y"])],
     {"x": [2, 3]}, {"shp": np.array([2, 3], np.int64)}, 13, None),
    ("reducemean_spatial", [N("ReduceMean", ["x"], ["y"], axes=[2, 3], keepdims=0)], {"x": [1, 3, 4, 4]}, {}, 13, None),
    ("reducemean18", [N("ReduceMean", ["x", "ax"], ["y"], keepdims=1)], {"x": [1, 3, 4, 4]}, {"ax": np.array([-2, -1], np.int64)}, 18, None),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_op_shapes_match_onnxruntime(case):
    _, nodes, inputs, inits, opset, flops = case
    proto = make_model(nodes, inputs, {"y": None}, inits, opset=opset)
    model = load_onnx(proto)
    _check_shapes_against_ort(proto, model)
    if flops is not None:
        assert totals(model)["flops"] == flops


def test_every_listed_op_is_supported():
    listed = ("Conv Gemm MatMul BatchNormalization Relu LeakyRelu Clip Sigmoid Tanh Softmax LogSoftmax MaxPool AveragePool "
              "GlobalAveragePool GlobalMaxPool LRN Dropout Flatten Reshape Transpose Squeeze Unsqueeze Concat Add Sum Mul Sub "
              "Div Identity Pad Cast").split()
    assert set(listed) <= set(supported_ops())


def test_epilogues_fold_into_weighted_layer():
    nodes = [N("Conv", ["x", "w", "b"], ["c"], kernel_shape=[3, 3], name="conv"),
             N("BatchNormalization", ["c", "s", "bb", "m", "v"], ["n"], name="bn"),
             N("Relu", ["n"], ["r"], name="relu"), N("Dropout", ["r"], ["d"], name="drop"),
             N("Flatten", ["d"], ["f"], name="flat"), N("MatMul", ["f", "w2"], ["mm"], name="fc"),
             N("Add", ["mm", "b2"], ["a"], name="bias"), N("Clip", ["a", "lo", "hi"], ["y"], name="clip")]
    inits = {"w": rand(4, 3, 3, 3), "b": rand(4), "s": rand(4), "bb": rand(4), "m": rand(4), "v": np.ones(4, np.float32),
             "w2": rand(4 * 4 * 4, 5), "b2": rand(5), "lo": np.array(0, np.float32), "hi": np.array(6, np.float32)}
    model = load_onnx(make_model(nodes, {"x": [1, 3, 6, 6]}, {"y": [1, 5]}, inits))
    assert model.layers() == ["conv", "fc"]
    conv, fc = model.layer("conv"), model.layer("fc")
    assert conv["epilogue"] == ["BatchNormalization", "Relu", "Identity", "Reshape"]
    assert fc["epilogue"] == ["Add", "Clip"]
    assert conv["weighted"] and fc["weighted"]
    assert conv["params"] == 4 * 27 + 4 * 5 and conv["weight_bytes"] == 4 * conv["params"]
    assert fc["params"] == 64 * 5 + 5
    assert model.dag.edges["conv", "fc"] == {"tensors": ["f"], "bytes": 64 * 4}
    assert conv["kind"] == "conv" and fc["kind"] == "gemm"


def test_branches_and_joins_stay_a_dag():
    nodes = [N("Conv", ["x", "w1"], ["a"], kernel_shape=[1, 1], name="stem"),
             N("Relu", ["a"], ["ar"], name="stem_relu"),  # folds: one reader
             N("Conv", ["ar", "w2"], ["b"], kernel_shape=[3, 3], pads=[1, 1, 1, 1], name="left"),
             N("Conv", ["ar", "w3"], ["c"], kernel_shape=[1, 1], name="right"),
             N("Concat", ["b", "c"], ["cat"], axis=1, name="cat"),
             N("Add", ["cat", "cat"], ["y"], name="twice")]
    inits = {"w1": rand(4, 2, 1, 1), "w2": rand(3, 4, 3, 3), "w3": rand(5, 4, 1, 1)}
    model = load_onnx(make_model(nodes, {"x": [1, 2, 5, 5]}, {"y": [1, 8, 5, 5]}, inits))
    assert model.layers() == ["stem", "left", "right", "cat", "twice"]
    assert set(model.dag.edges) == {("stem", "left"), ("stem", "right"), ("left", "cat"), ("right", "cat"), ("cat", "twice")}
    assert model.layer("stem")["epilogue"] == ["Relu"]
    assert model.layer("stem")["outputs"] == ["ar"]
    assert model.layer("cat")["kind"] == "concat" and model.layer("twice")["inputs"] == ["cat"]
    assert model.outputs == ["y"] and model.layer("twice")["outputs"] == ["y"]


def test_relu_with_two_readers_does_not_fold_past_its_output():
    # "a" is read by two nodes, so Relu cannot join conv's block (its input would disappear inside it)
    nodes = [N("Conv", ["x", "w"], ["a"], kernel_shape=[1, 1], name="conv"), N("Relu", ["a"], ["r"], name="relu"),
             N("Add", ["r", "a"], ["y"], name="add")]
    model = load_onnx(make_model(nodes, {"x": [1, 2, 3, 3]}, {"y": [1, 2, 3, 3]}, {"w": rand(2, 2, 1, 1)}))
    assert model.layers() == ["conv", "relu", "add"]


def test_torch_shape_arithmetic_is_folded():
    # torch's TorchScript exporter writes x.view(x.size(0), -1) as Shape → Gather → Unsqueeze → Concat → Reshape
    nodes = [N("Relu", ["x"], ["r"]), N("Shape", ["r"], ["s"]), N("Gather", ["s", "i0"], ["b"], axis=0),
             N("Unsqueeze", ["b", "ax"], ["bu"]), N("Concat", ["bu", "m1"], ["shape"], axis=0), N("Reshape", ["r", "shape"], ["y"])]
    inits = {"i0": np.array(0, np.int64), "ax": np.array([0], np.int64), "m1": np.array([-1], np.int64)}
    proto = make_model(nodes, {"x": ["N", 2, 3, 4]}, {"y": ["N", 24]}, inits)
    model = load_onnx(proto)
    assert model.tensors["y"].shape == (1, 24)
    assert len(model) == 1 and model.layer(model.layers()[0])["epilogue"] == ["Reshape"]
    assert any("dynamic batch" in n for n in model.notes)


def test_alexnet_params_and_flops_hand_computed():
    from deepx_opt import zoo

    model = load_onnx(zoo.build("alexnet"))
    t = totals(model)
    assert 60_900_000 <= t["params"] <= 61_100_000
    by_op = {v: model.layer(v) for v in model.layers()}
    convs = [d for d in by_op.values() if d["op"] == "Conv"]
    fcs = [d for d in by_op.values() if d["op"] in ("Gemm", "MatMul")]
    assert len(convs) == 5 and len(fcs) == 3
    # conv/fc MACs of Caffe's AlexNet: conv1 105.4M, conv2 223.9M, conv3 149.5M, conv4 112.1M, conv5 74.8M, fc 58.6M
    mac = [55 * 55 * 96 * 3 * 121, 27 * 27 * 256 * 48 * 25, 13 * 13 * 384 * 256 * 9, 13 * 13 * 384 * 192 * 9,
           13 * 13 * 256 * 192 * 9, 9216 * 4096, 4096 * 4096, 4096 * 1000]
    from deepx_opt.graphs.ops import op_flops

    got = []
    for d in convs + fcs:
        op = d["ops"][0]
        ins = [model.tensors.get(i) or _winfo(model, i) for i in op.inputs if i]
        got.append(op_flops(op, ins, [model.tensors[o] for o in op.outputs]))
    assert got == [2 * m for m in mac]
    assert abs(t["flops"] / 1e9 - 2 * sum(mac) / 1e9) < 0.03  # element-wise epilogues, pools and LRN add < 30 MFLOP
    assert [d["kind"] for d in by_op.values() if d["op"] == "LRN"] == ["lrn", "lrn"]
    assert sorted(d["ops"][0].attrs["group"] for d in convs) == [1, 1, 2, 2, 2]


def _winfo(model, name):
    from deepx_opt.graphs import TensorInfo

    w = model.weights[name]
    return TensorInfo(tuple(w.shape), str(w.dtype))


@pytest.mark.parametrize("fname", ["torch_resnet_tiny.onnx", "torch_resnet_tiny_dynamo.onnx"])
def test_torch_exported_resnet_imports_with_skip_connections(data_dir, fname):
    proto = onnx.load(str(data_dir / fname))
    model = load_onnx(data_dir / fname)
    _check_shapes_against_ort(proto, model)
    adds = [v for v in model.layers() if model.layer(v)["op"] == "Add"]
    assert len(adds) == 2
    for a in adds:
        assert model.dag.in_degree(a) == 2  # residual join: main path and shortcut
        assert model.layer(a)["epilogue"] == ["Relu"]
    dw = [v for v in model.layers() if model.layer(v)["kind"] == "dwconv"]
    assert len(dw) == 2
    assert totals(model)["params"] == 8762
    assert any("dynamic batch" in n for n in model.notes)


def test_skl2onnx_model_imports_when_cut_before_ml_ops():
    skl2onnx = pytest.importorskip("skl2onnx")
    from skl2onnx.common.data_types import FloatTensorType
    from sklearn.datasets import load_digits
    from sklearn.neural_network import MLPClassifier

    x, y = load_digits(return_X_y=True)
    clf = MLPClassifier(hidden_layer_sizes=(32,), max_iter=30, random_state=0).fit(x[:500] / 16, y[:500])
    proto = skl2onnx.convert_sklearn(clf, initial_types=[("input", FloatTensorType([None, 64]))], target_opset=13)
    with pytest.raises(UnsupportedOpError) as err:
        load_onnx(proto)
    msg = str(err.value)
    assert "ai.onnx.ml" in msg and "--output" in msg
    prob = next(o.name for o in proto.graph.output if "prob" in o.name)
    producer = {o: n for n in proto.graph.node for o in n.output}
    # cut at the tensor feeding the ZipMap (skl2onnx names it 'probability_tensor' or similar)
    zip_in = next(n.input[0] for n in proto.graph.node if n.op_type == "ZipMap")
    model = load_onnx(proto, outputs=[zip_in])
    assert prob  # the original output exists; we planned the cut one
    gemms = [v for v in model.layers() if model.layer(v)["kind"] == "gemm"]
    assert len(gemms) == 2 and model.outputs == [zip_in]
    assert model.tensors[zip_in].shape == (1, 10)
    assert producer[zip_in] is not None


# ------------------------------------------------------------------------------------------------ errors


def test_missing_file(tmp_path):
    with pytest.raises(ModelLoadError, match="does not exist"):
        load_onnx(tmp_path / "nope.onnx")


def test_not_onnx_file(tmp_path):
    p = tmp_path / "bad.onnx"
    p.write_text("this is not a protobuf, just text\n" * 20)
    with pytest.raises(ModelLoadError, match="not a readable ONNX model|no nodes"):
        load_onnx(p)


def test_empty_file(tmp_path):
    p = tmp_path / "empty.onnx"
    p.write_bytes(b"")
    with pytest.raises(ModelLoadError, match="empty"):
        load_onnx(p)


def test_truncated_file(tmp_path, data_dir):
    data = (data_dir / "torch_resnet_tiny.onnx").read_bytes()
    p = tmp_path / "cut.onnx"
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelLoadError):
        load_onnx(p)


def test_unsupported_op_names_op_node_domain_and_list():
    proto = make_model([N("Erf", ["x"], ["y"], name="the_erf")], {"x": [1, 3]}, {"y": [1, 3]})
    with pytest.raises(UnsupportedOpError) as err:
        load_onnx(proto)
    msg = str(err.value)
    assert "'Erf'" in msg and "the_erf" in msg and "ai.onnx" in msg and "Conv" in msg and "Gemm" in msg


def test_unsupported_attribute_values():
    proto = make_model([N("Pad", ["x", "p"], ["y"], mode="wrap")], {"x": [1, 3]}, {"y": [1, 5]},
                       {"p": np.array([0, 1, 0, 1], np.int64)}, opset=19)
    with pytest.raises(UnsupportedOpError, match="mode 'wrap'"):
        load_onnx(proto)


def test_data_dependent_reshape_is_refused():
    proto = make_model([N("Reshape", ["x", "s"], ["y"])], {"x": [2, 3], "s": [2]}, {"y": [3, 2]})
    with pytest.raises(UnsupportedOpError, match="must be a constant"):
        load_onnx(proto)


def test_unknown_non_batch_dim_needs_input_shape():
    proto = make_model([N("Relu", ["x"], ["y"])], {"x": ["N", "F"]}, {"y": ["N", "F"]})
    with pytest.raises(ShapeInferenceError, match="--input-shape"):
        load_onnx(proto)
    model = load_onnx(proto, input_shapes={"x": (2, 7)})
    assert model.inputs["x"].shape == (2, 7) and model.tensors["y"].shape == (2, 7)
    with pytest.raises(ShapeInferenceError, match="not graph inputs"):
        load_onnx(proto, input_shapes={"z": (1, 2)})
    with pytest.raises(ShapeInferenceError, match="rank"):
        load_onnx(proto, input_shapes={"x": (1, 2, 3)})


def test_old_opset_is_refused_with_the_range():
    proto = make_model([N("Relu", ["x"], ["y"])], {"x": [1, 3]}, {"y": [1, 3]}, opset=6)
    with pytest.raises(UnsupportedOpError, match="opset 6.*7"):
        load_onnx(proto)


def test_errors_are_deepx_errors():
    assert issubclass(ModelLoadError, DeepxError) and issubclass(UnsupportedOpError, DeepxError)
