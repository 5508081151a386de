"""Model graphs: ONNX import, the layer DAG of unit blocks, SVD candidates (RLC), accuracy-loss estimation.

``graphs`` knows nothing of processors' speed (DESIGN.md).
"""

from deepx_opt.graphs.model_graph import ModelGraph, OpSpec, TensorInfo, layer_table, totals
from deepx_opt.graphs.onnx_import import load_onnx, read_model
from deepx_opt.graphs.ops import supported_ops

__all__ = ["ModelGraph", "OpSpec", "TensorInfo", "layer_table", "totals", "load_onnx", "read_model", "supported_ops"]
