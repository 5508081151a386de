"""Shared helpers: each zoo model is built once per test session (AlexNet takes a second or two)."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort

from deepx_opt import zoo

_CACHE: dict[tuple[str, int], onnx.ModelProto] = {}


def built(name: str, seed: int = 0) -> onnx.ModelProto:
    """The model built with ``seed``, cached for the session (callers must not mutate it)."""
    key = (name, seed)
    if key not in _CACHE:
        _CACHE[key] = zoo.build(name, seed=seed)
    return _CACHE[key]


def ort_session(model: onnx.ModelProto):
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    return ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])


def initializers(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    return {t.name: onnx.numpy_helper.to_array(t) for t in model.graph.initializer}
