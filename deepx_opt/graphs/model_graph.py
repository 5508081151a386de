"""The layer DAG every stage reads: :class:`ModelGraph`, :class:`OpSpec`, :class:`TensorInfo`.

The contract is documented in ``docs/ir.md``. A ModelGraph holds a :class:`networkx.DiGraph` (one node per
unit block) rather than being one, so that algorithms stay plain functions over ``model.dag``.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, Iterator

import networkx as nx
import numpy as np

__all__ = ["TensorInfo", "OpSpec", "ModelGraph", "layer_table", "totals"]


@dataclass(frozen=True)
class TensorInfo:
    """Static shape and numpy dtype name of a tensor."""

    shape: tuple[int, ...]
    dtype: str = "float32"

    @property
    def numel(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) if self.shape else 1

    @property
    def nbytes(self) -> int:
        return self.numel * np.dtype(self.dtype).itemsize

    def to_dict(self) -> dict:
        return {"shape": list(self.shape), "dtype": self.dtype}


@dataclass
class OpSpec:
    """One canonical op (see docs/ir.md): ONNX semantics, attributes normalised across opsets."""

    op_type: str
    inputs: list[str]
    outputs: list[str]
    attrs: dict[str, Any] = field(default_factory=dict)
    name: str = ""

    def to_dict(self) -> dict:
        def plain(v):
            if isinstance(v, (np.integer,)):
                return int(v)
            if isinstance(v, (np.floating,)):
                return float(v)
            if isinstance(v, tuple):
                return [plain(x) for x in v]
            if isinstance(v, list):
                return [plain(x) for x in v]
            return v

        return {
            "op_type": self.op_type,
            "inputs": list(self.inputs),
            "outputs": list(self.outputs),
            "attrs": {k: plain(v) for k, v in self.attrs.items()},
            "name": self.name,
        }


@dataclass
class ModelGraph:
    """A model as a DAG of unit blocks (layers with their epilogues).

    Attributes
    ----------
    name : str
        Model name.
    dag : networkx.DiGraph
        One node per layer; node and edge attributes as in docs/ir.md.
    inputs : dict[str, TensorInfo]
        Graph inputs (activations the user feeds).
    outputs : list[str]
        Graph output tensor names.
    tensors : dict[str, TensorInfo]
        Shape and dtype of every activation tensor.
    weights : dict[str, numpy.ndarray]
        Every constant tensor.
    opset : int
        Default-domain opset of the source model.
    notes : list[str]
        Things the user should know about the import.

    Examples
    --------
    >>> from deepx_opt.graphs import load_onnx
    >>> from deepx_opt import zoo                                      # doctest: +SKIP
    >>> m = load_onnx(zoo.build("speakerid"))                          # doctest: +SKIP
    >>> [m.dag.nodes[v]["op"] for v in m.layers()]                     # doctest: +SKIP
    ['Gemm', 'Gemm', 'Gemm']
    """

    name: str
    dag: nx.DiGraph
    inputs: dict[str, TensorInfo]
    outputs: list[str]
    tensors: dict[str, TensorInfo]
    weights: dict[str, np.ndarray]
    opset: int
    notes: list[str] = field(default_factory=list)

    def layers(self) -> list[str]:
        """Layer names in a topological order (the order they were built in)."""
        return list(self.dag.nodes)

    def layer(self, name: str) -> dict:
        """The attribute dict of one layer (a live view: do not mutate it)."""
        return self.dag.nodes[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self.dag.nodes)

    def __len__(self) -> int:
        return self.dag.number_of_nodes()

    def weighted_layers(self) -> list[str]:
        """The layers RLC can factorise (Conv / Gemm / MatMul with a constant weight)."""
        return [v for v in self.dag.nodes if self.dag.nodes[v].get("weighted")]

    def copy(self) -> "ModelGraph":
        """A copy whose DAG and attribute dicts can be changed freely; weight arrays are shared."""
        return ModelGraph(
            name=self.name,
            dag=copy.deepcopy(self.dag),
            inputs=dict(self.inputs),
            outputs=list(self.outputs),
            tensors=dict(self.tensors),
            weights=dict(self.weights),
            opset=self.opset,
            notes=list(self.notes),
        )

    def total(self, attr: str) -> int:
        """Sum of an integer node attribute over all layers (``flops``, ``params``, ``weight_bytes``)."""
        return int(sum(int(d.get(attr, 0)) for _, d in self.dag.nodes(data=True)))


def layer_table(model: ModelGraph) -> list[dict]:
    """One JSON-ready row per layer: name, op, kind, output shape, flops, params, bytes, epilogue."""
    rows = []
    for v in model.layers():
        d = model.dag.nodes[v]
        rows.append(
            {
                "name": v,
                "op": d["op"],
                "kind": d["kind"],
                "output_shapes": [list(s) for s in d["output_shapes"]],
                "flops": int(d["flops"]),
                "params": int(d["params"]),
                "weight_bytes": int(d["weight_bytes"]),
                "output_bytes": int(d["output_bytes"]),
                "epilogue": list(d["epilogue"]),
                "inputs_from": sorted(model.dag.predecessors(v)),
            }
        )
    return rows


def totals(model: ModelGraph) -> dict:
    """Whole-model totals: layers, flops, params, weight bytes, largest activation."""
    return {
        "layers": len(model),
        "flops": model.total("flops"),
        "params": model.total("params"),
        "weight_bytes": model.total("weight_bytes"),
        "max_output_bytes": max((int(d["output_bytes"]) for _, d in model.dag.nodes(data=True)), default=0),
    }
