"""Shared helpers for runtime tests: one-node ONNX references and the backend parameter list."""

from __future__ import annotations

import os

import numpy as np
import pytest

REQUIRE_OPENCL = os.environ.get("DEEPX_REQUIRE_OPENCL", "") == "1"


def opencl_backend_params() -> list:
    """pytest params for every working OpenCL device and GEMM variant, or one that fails/skips when none."""
    from deepx_opt.runtime.opencl_probe import working_devices

    devs = working_devices()
    if not devs:
        reason = "no working OpenCL device (set up pocl-opencl-icd; see docs/opencl.md)"
        marks = [] if REQUIRE_OPENCL else [pytest.mark.skip(reason=reason)]
        return [pytest.param(("opencl-missing", {}), id="opencl-missing", marks=marks)]
    params = []
    for i, _ in enumerate(devs):
        params.append(pytest.param((f"opencl:{i}", {}), id=f"opencl:{i}"))
        # the other GEMM kernel of this device, so both kernels are checked wherever a device exists
        params.append(pytest.param((f"opencl:{i}", {"gemm_variant": "other"}), id=f"opencl:{i}-othergemm"))
        # the configuration a GPU gets: copying uploads, pooled buffers, tiled GEMM
        params.append(pytest.param((f"opencl:{i}", {"gemm_variant": "tiled", "zero_copy": False}),
                                   id=f"opencl:{i}-gpu-path"))
    return params


def make_backend(spec):
    from deepx_opt.runtime.backends import get_backend

    name, options = spec
    if name == "opencl-missing":
        pytest.fail("DEEPX_REQUIRE_OPENCL=1 but no working OpenCL device was found")
    if options.get("gemm_variant") == "other":
        default = get_backend(name).gemm_variant
        options = {"gemm_variant": "tiled" if default == "blocked" else "blocked"}
    return get_backend(name, **options) if options else get_backend(name)


def ort_one_node(op_type: str, inputs: list[np.ndarray | None], onnx_attrs: dict, *,
                 consts: dict[int, np.ndarray] | None = None, opset: int = 17, n_outputs: int = 1):
    """Run a one-node ONNX model in onnxruntime (1 thread). ``consts`` maps input positions to initializers."""
    import onnx
    import onnxruntime as ort
    from onnx import helper

    consts = consts or {}
    names, graph_inputs, feeds, inits = [], [], {}, []
    n_total = max(len(inputs), max(consts) + 1 if consts else 0)
    for i in range(n_total):
        if i in consts:
            nm = f"c{i}"
            inits.append(onnx.numpy_helper.from_array(np.asarray(consts[i]), nm))
            names.append(nm)
        elif i < len(inputs) and inputs[i] is not None:
            nm = f"x{i}"
            arr = inputs[i]
            graph_inputs.append(helper.make_tensor_value_info(
                nm, helper.np_dtype_to_tensor_dtype(arr.dtype), list(arr.shape)))
            feeds[nm] = arr
            names.append(nm)
        else:
            names.append("")
    outs = [f"y{i}" for i in range(n_outputs)]
    node = helper.make_node(op_type, names, outs, **onnx_attrs)
    graph = helper.make_graph([node], "one", graph_inputs,
                              [onnx.ValueInfoProto(name=o) for o in outs], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = min(model.ir_version, 9)
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    return sess.run(None, feeds)
