"""Model graphs: ONNX import, the layer DAG of unit blocks, SVD candidates (RLC), accuracy-loss estimation.

``graphs`` knows nothing of processors' speed (DESIGN.md).
"""

from deepx_opt.graphs.model_graph import ModelGraph, OpSpec, TensorInfo, layer_table, totals
from deepx_opt.graphs.onnx_import import is_model_path, load_model, load_onnx, read_model
from deepx_opt.graphs.ops import supported_ops

__all__ = [
    "ModelGraph", "OpSpec", "TensorInfo", "layer_table", "totals", "load_onnx", "load_model", "is_model_path", "read_model", "supported_ops",
    "candidates", "CandidateGraph", "LayerOption", "select_ranks", "apply_ranks",
]

_LAZY = {  # RLC pulls in scipy and onnxruntime: import it when first used
    "candidates": "deepx_opt.graphs.candidates",
    "CandidateGraph": "deepx_opt.graphs.candidates",
    "LayerOption": "deepx_opt.graphs.candidates",
    "select_ranks": "deepx_opt.graphs.candidates",
    "apply_ranks": "deepx_opt.graphs.compression",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'deepx_opt.graphs' has no attribute {name!r}")
