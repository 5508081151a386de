"""Every zoo model: ONNX-valid, runs in onnxruntime, sizes as documented, deterministic, decaying spectra."""

from __future__ import annotations

import math

import networkx as nx
import numpy as np
import onnx
import pytest
from onnx import shape_inference

from deepx_opt import zoo
from deepx_opt.errors import DeepxError, ModelLoadError
from deepx_opt.zoo._builder import NetBuilder
from deepx_opt.zoo.models import SPECS
from deepx_opt.zoo.weights import SPECTRUM_ALPHA

from ._helpers import built, initializers, ort_session

ALL = zoo.model_names()
SYNTHETIC = [n for n in ALL if not SPECS[n].trained]

# Documented parameter ranges (paper-setup.md and the brief); the exact values are computed below.
PARAM_RANGES = {
    "alexnet": (60.9e6, 61.1e6),
    "svhn": (313e3 * 0.98, 313e3 * 1.02),
    "speakerid": (1.8e6 * 0.99, 1.82e6),
    "audioscene": (1.7e6 * 0.99, 1.7e6 * 1.01),
    "resnet50like": (25.0e6, 26.0e6),
    "resnet101like": (44.0e6, 45.0e6),
    "mobilenetlike": (4.0e6, 4.5e6),
    "edgenet": (170e3, 180e3),
    "digits_mlp": (50e3, 52e3),
    "digits_cnn": (30e3, 50e3),
}


def _skeleton(model: onnx.ModelProto) -> onnx.ModelProto:
    """The model without weight data: initializers become typed graph inputs (shape inference needs no more)."""
    graph = onnx.helper.make_graph(
        list(model.graph.node),
        model.graph.name,
        list(model.graph.input)
        + [onnx.helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)) for t in model.graph.initializer],
        list(model.graph.output),
    )
    return onnx.helper.make_model(graph, opset_imports=list(model.opset_import), ir_version=model.ir_version)


_SHAPES: dict[int, dict[str, tuple[int, ...]]] = {}


def _shapes(model: onnx.ModelProto) -> dict[str, tuple[int, ...]]:
    """Every tensor's static shape according to ONNX's own shape inference (independent of our builder)."""
    if id(model) in _SHAPES:
        return _SHAPES[id(model)]
    inferred = shape_inference.infer_shapes(_skeleton(model), strict_mode=True)
    out = {}
    vis = list(inferred.graph.input) + list(inferred.graph.value_info) + list(inferred.graph.output)
    for vi in vis:
        out[vi.name] = tuple(d.dim_value for d in vi.type.tensor_type.shape.dim)
    _SHAPES[id(model)] = out
    return out


def _independent_flops(model: onnx.ModelProto) -> int:
    """2 × MACs of Conv and Gemm, from ONNX shape inference."""
    shapes = _shapes(model)
    total = 0
    for node in model.graph.node:
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        if node.op_type == "Conv":
            _, cin_g, kh, kw = shapes[node.input[1]]
            n, cout, ho, wo = shapes[node.output[0]]
            total += 2 * n * cout * ho * wo * cin_g * kh * kw
        elif node.op_type == "Gemm":
            m, k = shapes[node.input[0]]
            n_out = shapes[node.input[1]][0 if attrs.get("transB", 0) else 1]
            total += 2 * m * n_out * k
    return total


def _independent_params(model: onnx.ModelProto) -> int:
    """Initializer elements read as Conv/Gemm weights/biases or BN scale/bias (not running stats, not Clip bounds)."""
    sizes = {t.name: int(np.prod(t.dims)) for t in model.graph.initializer}
    counted: set[str] = set()
    for node in model.graph.node:
        if node.op_type in ("Conv", "Gemm"):
            counted.update(i for i in node.input[1:] if i in sizes)
        elif node.op_type == "BatchNormalization":
            counted.update(node.input[1:3])
    return sum(sizes[n] for n in counted)


def _random_input(entry: zoo.ZooEntry) -> np.ndarray:
    return np.random.default_rng(1).standard_normal(entry.input_shape).astype(np.float32)


# ------------------------------------------------------------------------------------ every model
@pytest.mark.parametrize("name", ALL)
def test_model_is_valid_onnx_and_runs_in_onnxruntime(name):
    model = built(name)
    entry = zoo.get_entry(name)
    onnx.checker.check_model(model)
    assert model.opset_import[0].version == 13
    assert [i.name for i in model.graph.input] == ["input"]
    assert [o.name for o in model.graph.output] == ["output"]
    y = ort_session(model).run(None, {"input": _random_input(entry)})[0]
    assert y.shape == entry.output_shape
    assert y.dtype == np.float32
    assert np.all(np.isfinite(y))
    if model.graph.node[-1].op_type == "Softmax":
        np.testing.assert_allclose(y.sum(axis=1), 1.0, rtol=1e-5)
    else:  # logits of an untrained model: not collapsed to a constant, not exploded
        assert 1e-3 < float(y.std()) < 1e3


@pytest.mark.parametrize("name", ALL)
def test_param_count_in_documented_range_and_matches_the_onnx_file(name):
    entry = zoo.get_entry(name)
    lo, hi = PARAM_RANGES[name]
    assert lo <= entry.params <= hi, f"{name}: {entry.params:,} params outside [{lo:,.0f}, {hi:,.0f}]"
    assert _independent_params(built(name)) == entry.params
    assert entry.weight_bytes == 4 * entry.params


@pytest.mark.parametrize("name", ALL)
def test_flops_agree_with_onnx_shape_inference(name):
    entry = zoo.get_entry(name)
    assert _independent_flops(built(name)) == entry.flops
    assert entry.gflop == pytest.approx(entry.flops / 1e9)


@pytest.mark.parametrize("name", ALL)
def test_builder_shapes_agree_with_onnx_shape_inference(name):
    spec = SPECS[name]
    dry = NetBuilder(name, spec.input_shape, materialize=False)
    out = spec.arch(dry)
    inferred = _shapes(built(name))
    for tensor, shape in dry.shapes.items():
        key = "output" if tensor == out else tensor
        assert inferred[key] == shape, f"{name}: tensor {tensor}"
    assert zoo.get_entry(name).output_shape == inferred["output"]


@pytest.mark.parametrize("name", [n for n in ALL if n != "resnet101like"])  # same code as resnet50like
def test_two_builds_are_byte_identical(name):
    assert zoo.build(name).SerializeToString() == built(name).SerializeToString()


@pytest.mark.parametrize("name", ["svhn", "speakerid", "mobilenetlike"])
def test_seed_changes_weights(name):
    a, b = initializers(built(name)), initializers(zoo.build(name, seed=1))
    assert a.keys() == b.keys()
    weight = next(k for k in a if k.endswith(".weight"))
    assert not np.array_equal(a[weight], b[weight])


@pytest.mark.parametrize("name", [n for n in ALL if SPECS[n].trained])
def test_trained_models_ignore_seed(name):
    assert zoo.build(name, seed=5).SerializeToString() == built(name).SerializeToString()


# ---------------------------------------------------------------------------------- paper models
def test_alexnet_params_and_flops_by_hand():
    # (Cout · Cin/group · kh · kw + Cout) per conv, (out · in + out) per FC: Caffe's bvlc_alexnet.
    conv = [(96, 3, 11), (256, 48, 5), (384, 256, 3), (384, 192, 3), (256, 192, 3)]
    fc = [(4096, 256 * 6 * 6), (4096, 4096), (1000, 4096)]
    params = sum(co * ci * k * k + co for co, ci, k in conv) + sum(o * i + o for o, i in fc)
    assert params == 60_965_224
    # MACs: output pixels × Cout × (Cin/group · kh · kw); spatial 55, 27, 13, 13, 13.
    spatial = [55, 27, 13, 13, 13]
    macs = sum(s * s * co * ci * k * k for s, (co, ci, k) in zip(spatial, conv)) + sum(o * i for o, i in fc)
    assert macs == 724_406_816
    entry = zoo.get_entry("alexnet")
    assert entry.params == params
    assert entry.flops == 2 * macs
    assert entry.gflop == pytest.approx(1.4488, abs=1e-4)


def test_alexnet_architecture():
    model = built("alexnet")
    shapes = _shapes(model)
    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    groups = [onnx.helper.get_attribute_value(next(a for a in n.attribute if a.name == "group")) for n in convs]
    assert groups == [1, 2, 1, 2, 2]
    assert shapes["conv1"] == (1, 96, 55, 55)
    assert shapes["pool5"] == (1, 256, 6, 6)
    lrn = [n for n in model.graph.node if n.op_type == "LRN"]
    assert len(lrn) == 2
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in lrn[0].attribute}
    assert attrs["size"] == 5 and attrs["beta"] == pytest.approx(0.75) and attrs["bias"] == pytest.approx(1.0)
    assert attrs["alpha"] == pytest.approx(1e-4)
    ops = [n.op_type for n in model.graph.node]
    assert ops.count("MaxPool") == 3 and ops.count("Gemm") == 3 and ops.count("Dropout") == 2
    assert ops[-1] == "Softmax"


def test_svhn_has_the_1600_unit_layer_and_128_hidden():
    shapes = _shapes(built("svhn"))
    assert shapes["flatten"] == (1, 1600)
    assert shapes["fc1"] == (1, 128)
    conv1, conv2 = 64 * 3 * 25 + 64, 64 * 64 * 25 + 64
    assert zoo.get_entry("svhn").params == conv1 + conv2 + (1600 * 128 + 128) + (128 * 10 + 10)


@pytest.mark.parametrize("name, n_in, n_out", [("speakerid", 700, 106), ("audioscene", 680, 19)])
def test_dnn_shapes(name, n_in, n_out):
    entry = zoo.get_entry(name)
    assert entry.input_shape == (1, n_in) and entry.output_shape == (1, n_out)
    assert entry.params == (n_in * 1000 + 1000) + (1000 * 1000 + 1000) + (1000 * n_out + n_out)


# ---------------------------------------------------------------------------------- DAG models
def _node_dag(model: onnx.ModelProto) -> nx.DiGraph:
    producer = {o: n.name for n in model.graph.node for o in n.output}
    g = nx.DiGraph()
    for n in model.graph.node:
        g.add_node(n.name, op=n.op_type)
        for i in n.input:
            if i in producer:
                g.add_edge(producer[i], n.name)
    return g


def test_resnet50like_is_a_dag_with_parallel_branches():
    model = built("resnet50like")
    ops = [n.op_type for n in model.graph.node]
    assert len(ops) >= 100
    assert ops.count("Conv") == 53 and ops.count("BatchNormalization") == 53 and ops.count("Add") == 16
    g = _node_dag(model)
    assert nx.is_directed_acyclic_graph(g) and nx.is_weakly_connected(g)
    forks = [n for n in g if g.out_degree(n) == 2]
    assert len(forks) == 16  # every residual block forks into the branch and the shortcut
    # The 4 projection shortcuts are convolutions that run in parallel with a 3-conv branch.
    assert sum(1 for n in model.graph.node if n.name.endswith("downsample")) == 4
    # torchvision's resnet50 has 25,557,032 parameters (conv weights, BN scale/bias, FC).
    assert zoo.get_entry("resnet50like").params == 25_557_032


def test_resnet101like_is_the_large_dag():
    model = built("resnet101like")
    ops = [n.op_type for n in model.graph.node]
    assert ops.count("Conv") == 104 and ops.count("Add") == 33
    g = _node_dag(model)
    assert nx.is_directed_acyclic_graph(g) and sum(1 for n in g if g.out_degree(n) == 2) == 33
    assert zoo.get_entry("resnet101like").params == 44_549_160  # torchvision's resnet101


def test_mobilenetlike_has_depthwise_convs():
    model = built("mobilenetlike")
    shapes = _shapes(model)
    depthwise = []
    for n in model.graph.node:
        if n.op_type == "Conv":
            group = next(onnx.helper.get_attribute_value(a) for a in n.attribute if a.name == "group")
            if group > 1:
                assert group == shapes[n.input[0]][1] == shapes[n.output[0]][1]
                depthwise.append(n.name)
    assert len(depthwise) == 13
    assert sum(1 for n in model.graph.node if n.op_type == "Clip") == 27
    bounds = {k: v for k, v in initializers(model).items() if k.startswith("relu6.")}
    assert {k: (v.shape, float(v)) for k, v in bounds.items()} == {"relu6.min": ((), 0.0), "relu6.max": ((), 6.0)}
    assert zoo.get_entry("mobilenetlike").params == 4_231_976  # MobileNet v1 1.0-224, trainable


def test_edgenet_has_one_block_of_each_kind():
    """A depthwise-separable block, a residual block and a strided one with a 1×1 projection shortcut, global
    pooling: the kinds calibration times inside a model through it (cost_models.calibrate.ZOO_MODELS)."""
    model = built("edgenet")
    shapes = _shapes(model)
    convs = {n.name: n for n in model.graph.node if n.op_type == "Conv"}

    def attr(n, name):
        return next(onnx.helper.get_attribute_value(a) for a in n.attribute if a.name == name)

    assert [k for k, n in convs.items() if attr(n, "group") > 1] == ["sep.dw"]
    assert attr(convs["res2.downsample"], "kernel_shape") == [1, 1] and attr(convs["res2.downsample"], "strides") == [2, 2]
    adds = [n for n in model.graph.node if n.op_type == "Add"]
    assert [shapes[n.output[0]] for n in adds] == [(1, 48, 16, 16), (1, 96, 8, 8)]
    assert sum(n.op_type == "GlobalAveragePool" for n in model.graph.node) == 1
    assert zoo.get_entry("edgenet").params == 174_442


# ------------------------------------------------------------------------------------- spectra
def _top_decile_energy(s: np.ndarray) -> float:
    e = np.sort(s)[::-1] ** 2
    return float(e[: math.ceil(0.1 * e.size)].sum() / e.sum())


def _weight_matrices(model: onnx.ModelProto, max_elems: int = 3_000_000):
    """(layer, per-group matrix) of every Conv/Gemm weight small enough for a quick SVD."""
    weights = initializers(model)
    for n in model.graph.node:
        if n.op_type not in ("Conv", "Gemm"):
            continue
        w = weights[n.input[1]]
        group = 1
        if n.op_type == "Conv":
            group = next(onnx.helper.get_attribute_value(a) for a in n.attribute if a.name == "group")
        mats = np.split(w.reshape(w.shape[0], -1), group, axis=0)
        if mats[0].size <= max_elems and min(mats[0].shape) >= 50:
            yield n.name, mats[0], w


@pytest.mark.parametrize("name", ["alexnet", "svhn", "speakerid", "resnet50like"])
def test_synthetic_spectra_decay_like_trained_weights(name):
    layers = list(_weight_matrices(built(name)))
    assert layers
    layers = layers[:: max(1, len(layers) // 12)]  # a spread of at most ~12 layers keeps the SVDs quick
    for layer, mat, _ in layers:
        s = np.linalg.svd(mat.astype(np.float64), compute_uv=False)
        assert _top_decile_energy(s) > 0.5, layer
        # log-log slope of the spectrum is -alpha (power law), not flat like white noise
        i = np.arange(1, s.size + 1)
        slope = np.polyfit(np.log(i), np.log(s), 1)[0]
        assert slope == pytest.approx(-SPECTRUM_ALPHA, abs=0.02), layer
    # ...whereas a white-noise matrix of the same shape would not pass the energy test.
    noise = np.random.default_rng(0).standard_normal(layers[0][1].shape)
    assert _top_decile_energy(np.linalg.svd(noise, compute_uv=False)) < 0.35


def test_alexnet_fc_weights_have_he_norm():
    tensors = {t.name: t for t in built("alexnet").graph.initializer}
    for layer, n_in in (("fc6", 9216), ("fc7", 4096)):
        m = onnx.numpy_helper.to_array(tensors[f"{layer}.weight"]).astype(np.float64)
        assert np.linalg.norm(m) == pytest.approx(np.sqrt(2.0 * m.shape[0]), rel=1e-4)
        assert m.shape[1] == n_in


# ------------------------------------------------------------------------------------ the API
def test_list_models_order_and_flags():
    entries = zoo.list_models()
    assert [e.name for e in entries] == ALL
    assert [e.name for e in entries if e.paper] == ["alexnet", "svhn", "speakerid", "audioscene"]
    assert {e.name for e in entries if e.trained} == {"digits_mlp", "digits_cnn"}
    for e in entries:
        assert (e.test_accuracy is not None) == e.trained
        assert e.description


def test_names_are_case_insensitive_and_accept_prefix():
    assert zoo.is_zoo_name("AlexNet") and zoo.is_zoo_name("zoo:svhn") and zoo.is_zoo_name(" speakerid ")
    assert not zoo.is_zoo_name("alexnet.onnx") and not zoo.is_zoo_name("") and not zoo.is_zoo_name(3)
    assert zoo.canonical_name("ZOO:ResNet50Like") == "resnet50like"


def test_unknown_name_raises_model_load_error_listing_known_names():
    with pytest.raises(ModelLoadError) as info:
        zoo.build("vgg16")
    msg = str(info.value)
    assert "vgg16" in msg and all(n in msg for n in ALL)
    assert isinstance(info.value, DeepxError)


def test_export_writes_a_loadable_file_and_refuses_to_overwrite(tmp_path):
    path = tmp_path / "svhn.onnx"
    assert zoo.export("svhn", path) == path
    loaded = onnx.load(str(path))
    assert loaded.SerializeToString() == built("svhn").SerializeToString()
    with pytest.raises(DeepxError, match="already exists"):
        zoo.export("svhn", path)
    before = path.read_bytes()
    zoo.export("svhn", path, overwrite=True, seed=1)
    assert path.read_bytes() != before
    assert [p.name for p in tmp_path.iterdir()] == ["svhn.onnx"]  # no temporary files left behind


def test_export_errors(tmp_path):
    with pytest.raises(DeepxError, match="does not exist"):
        zoo.export("svhn", tmp_path / "missing" / "svhn.onnx")
    with pytest.raises(DeepxError, match="directory"):
        zoo.export("svhn", tmp_path, overwrite=True)
    with pytest.raises(ModelLoadError, match="unknown zoo model"):
        zoo.export("nope", tmp_path / "x.onnx")
    assert not (tmp_path / "x.onnx").exists()


@pytest.mark.parametrize("name", ALL)
def test_every_model_imports_into_a_model_graph(name):
    from deepx_opt.graphs import load_onnx

    model = built(name)
    graph = load_onnx(model)
    weighted = [v for v, d in graph.dag.nodes(data=True) if d["weighted"]]
    assert len(weighted) == sum(1 for n in model.graph.node if n.op_type in ("Conv", "Gemm"))
    assert nx.is_directed_acyclic_graph(graph.dag)
