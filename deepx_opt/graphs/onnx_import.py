"""ONNX → :class:`ModelGraph`: constants, static shapes, canonical ops, unit blocks.

The steps (each a small function):

1. read and check the file (:func:`read_model`);
2. fix the graph inputs' shapes (a dynamic batch becomes 1; other unknown dims need ``input_shapes``);
3. walk the nodes in topological order: constant subgraphs are evaluated (``onnx.reference``), every
   other node is lowered through the op registry (:mod:`deepx_opt.graphs.ops`) to canonical ops whose
   output shapes are computed on the spot — exact static shapes, no reliance on ``onnx.shape_inference``
   (its results are cross-checked where it has them);
4. group canonical ops into unit blocks: an op joins the block that produced its only activation input
   when it is an epilogue (element-wise, BatchNormalization, a bias Add, shape-only ops) and that input has
   no other reader;
5. build the DAG with per-layer FLOPs, parameters and bytes, and per-edge tensors and bytes.
"""

from __future__ import annotations

import os
from collections import defaultdict
from pathlib import Path
from typing import Mapping, Sequence

import networkx as nx
import numpy as np
import onnx
from onnx import numpy_helper

from deepx_opt.errors import ModelLoadError, ShapeInferenceError, UnsupportedOpError
from deepx_opt.graphs.model_graph import ModelGraph, OpSpec, TensorInfo
from deepx_opt.graphs.ops import LowerContext, get_lowering, infer_op, op_flops, op_kind

__all__ = ["load_onnx", "load_model", "is_model_path", "read_model", "MIN_OPSET", "MAX_OPSET"]

MIN_OPSET, MAX_OPSET = 7, 21

# Canonical ops that may fold into the block producing their (single) activation input.
_EPILOGUE_OPS = {
    "Relu", "LeakyRelu", "Clip", "Sigmoid", "Tanh", "Identity", "Cast", "BatchNormalization",
    "Add", "Sub", "Mul", "Div", "Reshape", "Transpose",
}
# Shape-only ops that may also lead a block, but are folded into their producer whenever they can be.
_WEIGHTED_OPS = {"Conv", "Gemm", "MatMul"}


def is_model_path(spec: str) -> bool:
    """True when a model argument names a file (it exists, ends in ``.onnx`` or has a ``/``), not a zoo model."""
    return Path(spec).exists() or str(spec).endswith(".onnx") or "/" in str(spec)


def load_model(spec: str, *, input_shapes: Mapping[str, Sequence[int]] | None = None,
               outputs: Sequence[str] | None = None, name: str | None = None) -> ModelGraph:
    """Import a model given as an ONNX file path or a zoo name (``"svhn"``, ``"zoo:AlexNet"``).

    A path is read as :func:`load_onnx` reads it (``name`` default: the graph's name); a zoo model is built
    first (``name`` default: ``spec``). Raises :class:`ModelLoadError` for a string that is neither, naming
    the zoo models.
    """
    if is_model_path(spec):
        return load_onnx(Path(spec), input_shapes=input_shapes, outputs=outputs, name=name)
    from deepx_opt import zoo

    if zoo.is_zoo_name(spec):
        return load_onnx(zoo.build(spec), input_shapes=input_shapes, outputs=outputs, name=name or spec)
    names = ", ".join(e.name for e in zoo.list_models())
    raise ModelLoadError(f"model {spec!r} is neither an existing file nor a zoo model; zoo models: {names}")


def read_model(model: str | os.PathLike | onnx.ModelProto) -> onnx.ModelProto:
    """Load and check an ONNX model from a path (or pass a ModelProto through), raising ModelLoadError."""
    if isinstance(model, onnx.ModelProto):
        proto = model
        where = f"model {proto.graph.name or '(unnamed)'!r}"
    else:
        path = Path(model)
        where = f"model file '{path}'"
        if not path.exists():
            raise ModelLoadError(f"{where} does not exist; give a path to an .onnx file or a zoo model name")
        if path.is_dir():
            raise ModelLoadError(f"{where} is a directory, not an .onnx file")
        if path.stat().st_size == 0:
            raise ModelLoadError(f"{where} is empty (0 bytes); expected an ONNX model")
        try:
            proto = onnx.load(str(path))
        except Exception as exc:  # DecodeError, truncated file, missing external data
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ModelLoadError(f"{where} is not a readable ONNX model (truncated or not ONNX?): {first}") from None
    if not proto.graph.node:
        raise ModelLoadError(f"{where} has no nodes: not an ONNX model with a graph (truncated or not ONNX?)")
    try:
        onnx.checker.check_model(proto)
    except onnx.checker.ValidationError as exc:
        first = str(exc).strip().splitlines()[0]
        raise ModelLoadError(f"{where} fails ONNX's checker: {first}") from None
    return proto


def _default_opset(proto: onnx.ModelProto) -> int:
    for imp in proto.opset_import:
        if imp.domain in ("", "ai.onnx"):
            return int(imp.version)
    return 1


def _tensor_info_from_type(vi: onnx.ValueInfoProto) -> tuple[list, str]:
    tt = vi.type.tensor_type
    dtype = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(tt.elem_type)).name if tt.elem_type else "float32"
    dims: list = []
    if tt.HasField("shape"):
        for d in tt.shape.dim:
            dims.append(int(d.dim_value) if d.HasField("dim_value") and d.dim_value > 0 else (d.dim_param or None))
    else:
        dims = None  # rank unknown
    return dims, dtype


def _resolve_inputs(proto, weights, input_shapes, notes) -> dict[str, TensorInfo]:
    inputs: dict[str, TensorInfo] = {}
    given = dict(input_shapes or {})
    names = [vi.name for vi in proto.graph.input if vi.name not in weights]
    unknown = sorted(set(given) - set(names))
    if unknown:
        raise ShapeInferenceError(f"input_shapes names {unknown}, which are not graph inputs; graph inputs: {names}")
    for vi in proto.graph.input:
        if vi.name in weights:
            continue  # old exporters list initializers as inputs too
        dims, dtype = _tensor_info_from_type(vi)
        if vi.name in given:
            shape = tuple(int(d) for d in given[vi.name])
            if any(d <= 0 for d in shape):
                raise ShapeInferenceError(f"input_shapes[{vi.name!r}] = {list(shape)} has a non-positive dim")
            if dims is not None and len(dims) != len(shape):
                raise ShapeInferenceError(
                    f"input_shapes[{vi.name!r}] = {list(shape)} has rank {len(shape)}, the model's input has rank {len(dims)} ({dims})"
                )
            if dims is not None:
                for i, (d, g) in enumerate(zip(dims, shape)):
                    if isinstance(d, int) and d != g:
                        raise ShapeInferenceError(
                            f"input_shapes[{vi.name!r}] = {list(shape)} disagrees with the model's fixed dim {i} = {d}"
                        )
            inputs[vi.name] = TensorInfo(shape, dtype)
            continue
        if dims is None:
            raise ShapeInferenceError(f"input {vi.name!r} has no shape in the model; give it with --input-shape {vi.name}=D0,D1,...")
        shape = list(dims)
        if shape and not isinstance(shape[0], int):
            notes.append(f"input {vi.name!r}: dynamic batch dimension {shape[0]!r} set to 1")
            shape[0] = 1
        missing = [i for i, d in enumerate(shape) if not isinstance(d, int)]
        if missing:
            raise ShapeInferenceError(
                f"input {vi.name!r} has unknown dims {[dims[i] for i in missing]} at positions {missing} of {dims};"
                f" give its full shape with --input-shape {vi.name}=D0,D1,... (API: input_shapes={{{vi.name!r}: (...)}})"
            )
        inputs[vi.name] = TensorInfo(tuple(shape), dtype)
    if not inputs:
        raise ModelLoadError("the model has no non-constant graph inputs")
    return inputs


def _constant_value(node: onnx.NodeProto) -> np.ndarray:
    for a in node.attribute:
        if a.name == "value":
            return numpy_helper.to_array(a.t)
        if a.name == "value_float":
            return np.array(a.f, dtype=np.float32)
        if a.name == "value_floats":
            return np.array(list(a.floats), dtype=np.float32)
        if a.name == "value_int":
            return np.array(a.i, dtype=np.int64)
        if a.name == "value_ints":
            return np.array(list(a.ints), dtype=np.int64)
    raise UnsupportedOpError(f"Constant node {node.name!r}: only value / value_float(s) / value_int(s) attributes are supported")


def _fold_constant(node: onnx.NodeProto, weights: dict, tensors: dict, opsets) -> list[np.ndarray]:
    """Evaluate a node whose inputs are all constants (shape arithmetic exported by torch, etc.)."""
    if node.op_type == "Constant":
        return [_constant_value(node)]
    if node.op_type == "Shape":
        shape = np.array(tensors[node.input[0]].shape, dtype=np.int64)
        start = end = None
        for a in node.attribute:
            if a.name == "start":
                start = a.i
            elif a.name == "end":
                end = a.i
        return [shape[start:end]]
    if node.op_type == "Size":
        return [np.array(tensors[node.input[0]].numel, dtype=np.int64)]
    from onnx.reference import ReferenceEvaluator

    ins = [i for i in node.input if i]
    graph = onnx.helper.make_graph(
        [node],
        "fold",
        [],
        [onnx.helper.make_empty_tensor_value_info(o) for o in node.output if o],
        initializer=[numpy_helper.from_array(np.asarray(weights[i]), i) for i in ins],
    )
    model = onnx.helper.make_model(graph, opset_imports=opsets)
    try:
        return [np.asarray(v) for v in ReferenceEvaluator(model).run(None, {})]
    except Exception as exc:
        raise UnsupportedOpError(
            f"{node.op_type} node {node.name!r}: its inputs are constants but it could not be evaluated ({exc})"
        ) from None


def _needed_nodes(proto: onnx.ModelProto, outputs: Sequence[str]) -> list[onnx.NodeProto]:
    """Nodes needed to compute ``outputs`` (cuts the graph at a named output)."""
    producer = {}
    for n in proto.graph.node:
        for o in n.output:
            if o:
                producer[o] = n
    known = set(producer) | {vi.name for vi in proto.graph.input} | {t.name for t in proto.graph.initializer}
    bad = [o for o in outputs if o not in known]
    if bad:
        cands = [o for n in proto.graph.node for o in n.output if o][:40]
        raise ShapeInferenceError(f"output(s) {bad} are not tensors of the model; tensors include: {cands}")
    keep, stack = set(), list(outputs)
    while stack:
        t = stack.pop()
        n = producer.get(t)
        if n is None or id(n) in keep:
            continue
        keep.add(id(n))
        stack.extend(i for i in n.input if i)
    return [n for n in proto.graph.node if id(n) in keep]


def _topo_nodes(nodes: list[onnx.NodeProto], available: set[str]) -> list[onnx.NodeProto]:
    """Nodes in a topological order (ONNX requires it, but be forgiving)."""
    ready = set(available)
    pending, order = list(nodes), []
    while pending:
        progressed = False
        rest = []
        for n in pending:
            if all((not i) or i in ready for i in n.input):
                order.append(n)
                ready.update(o for o in n.output if o)
                progressed = True
            else:
                rest.append(n)
        if not progressed:
            missing = sorted({i for n in rest for i in n.input if i and i not in ready})
            raise ModelLoadError(f"graph has a cycle or undefined tensors: {missing[:10]}")
        pending = rest
    return order


def load_onnx(
    model: str | os.PathLike | onnx.ModelProto,
    *,
    input_shapes: Mapping[str, Sequence[int]] | None = None,
    outputs: Sequence[str] | None = None,
    name: str | None = None,
) -> ModelGraph:
    """Import an ONNX model as a DAG of unit blocks.

    Parameters
    ----------
    model : path or onnx.ModelProto
        The model.
    input_shapes : mapping, optional
        Static shapes for graph inputs, e.g. ``{"x": (1, 3, 224, 224)}``; needed when a dim other than the
        batch is unknown. A dynamic batch dimension becomes 1 (with a note).
    outputs : sequence of str, optional
        Cut the graph so that these tensors are its outputs (e.g. to drop the ``ai.onnx.ml`` post-processing
        ops that skl2onnx appends).
    name : str, optional
        Model name (default: the graph's name, else the file name).

    Returns
    -------
    ModelGraph

    Raises
    ------
    ModelLoadError, UnsupportedOpError, ShapeInferenceError

    Examples
    --------
    >>> import onnx, numpy as np
    >>> from onnx import helper, numpy_helper, TensorProto
    >>> w = numpy_helper.from_array(np.ones((4, 3), np.float32), "w")
    >>> g = helper.make_graph([helper.make_node("Gemm", ["x", "w"], ["y"]), helper.make_node("Relu", ["y"], ["z"])],
    ...     "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
    ...     [helper.make_tensor_value_info("z", TensorProto.FLOAT, ["N", 3])], [w])
    >>> m = load_onnx(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]))
    >>> [(v, m.dag.nodes[v]["op"], m.dag.nodes[v]["epilogue"], m.dag.nodes[v]["flops"]) for v in m.layers()]
    [('y', 'Gemm', ['Relu'], 27)]
    """
    proto = read_model(model)
    if name is None:
        name = proto.graph.name or (Path(model).stem if not isinstance(model, onnx.ModelProto) else "model")
    opset = _default_opset(proto)
    notes: list[str] = []
    if opset < MIN_OPSET:
        raise UnsupportedOpError(f"opset {opset} is older than supported ({MIN_OPSET}–{MAX_OPSET}); re-export the model with opset >= {MIN_OPSET}")
    if opset > MAX_OPSET:
        notes.append(f"opset {opset} is newer than tested ({MIN_OPSET}–{MAX_OPSET}); ops are read with their latest supported semantics")

    weights: dict[str, np.ndarray] = {t.name: numpy_helper.to_array(t) for t in proto.graph.initializer}
    graph_inputs = _resolve_inputs(proto, weights, input_shapes, notes)
    tensors: dict[str, TensorInfo] = dict(graph_inputs)
    out_names = list(outputs) if outputs else [o.name for o in proto.graph.output]
    nodes = _needed_nodes(proto, out_names) if outputs else list(proto.graph.node)
    nodes = _topo_nodes(nodes, set(weights) | set(graph_inputs))

    # Who reads each tensor (graph outputs count as readers), to know which extra outputs are used.
    used: set[str] = {i for n in nodes for i in n.input if i} | set(out_names)

    # ---- 3. fold constants, lower the rest to canonical ops --------------------------------------------
    canon: list[OpSpec] = []
    counter = [0]
    for node in nodes:
        if node.domain not in ("", "ai.onnx"):
            _lowering_or_hint(node, opset, nodes, tensors)  # raises with the right message
        ins = [i for i in node.input if i]
        all_const = all(i in weights for i in ins)
        shape_only = node.op_type in ("Shape", "Size") and ins and ins[0] in tensors
        if node.op_type in ("Constant",) or (node.op_type != "ConstantOfShape" and all_const and ins) or shape_only:
            for o, v in zip(node.output, _fold_constant(node, weights, tensors, proto.opset_import)):
                if o:
                    weights[o] = v
            continue
        if node.op_type == "ConstantOfShape":
            shape_arr = weights.get(node.input[0]) if node.input else None
            if shape_arr is None:
                raise UnsupportedOpError(f"ConstantOfShape node {node.name!r}: its shape input must be constant")
            val = np.zeros(1, np.float32)
            for a in node.attribute:
                if a.name == "value":
                    val = numpy_helper.to_array(a.t).reshape(-1)
            weights[node.output[0]] = np.full(tuple(int(d) for d in shape_arr), val[0], dtype=val.dtype)
            continue
        lower = _lowering_or_hint(node, opset, nodes, tensors)
        for i in ins:
            if i not in tensors and i not in weights:
                raise ShapeInferenceError(f"{node.op_type} node {node.name!r}: input {i!r} is not produced by any node")
        ctx = LowerContext(node=node, opset=opset, weights=weights, tensors=tensors, _counter=counter)
        for op in lower(ctx, used):
            op_ins = []
            for i in op.inputs:
                if not i:
                    continue
                op_ins.append(tensors[i] if i in tensors else TensorInfo(tuple(weights[i].shape), str(weights[i].dtype)))
            for o, info in zip(op.outputs, infer_op(op, op_ins)):
                tensors[o] = info
            canon.append(op)

    for o in out_names:
        if o not in tensors:
            if o in weights:
                raise UnsupportedOpError(f"graph output {o!r} is a constant; nothing to plan")
            raise ShapeInferenceError(f"graph output {o!r} is not produced by the graph")

    _cross_check_shapes(proto, tensors, notes)
    dag = _build_blocks(canon, tensors, weights, set(out_names))
    return ModelGraph(
        name=name,
        dag=dag,
        inputs=graph_inputs,
        outputs=out_names,
        tensors=tensors,
        weights=weights,
        opset=opset,
        notes=notes,
    )


def _lowering_or_hint(node: onnx.NodeProto, opset: int, nodes: list[onnx.NodeProto], tensors: dict[str, TensorInfo]):
    """The node's lowering; when there is none, say where the graph could be cut to do without it."""
    try:
        return get_lowering(node.op_type, node.domain, opset, node.name)
    except UnsupportedOpError as exc:
        if node.domain not in ("", "ai.onnx") or not any(n.domain == "ai.onnx.ml" for n in nodes):
            raise
        cut = next((i for i in node.input if i in tensors), None)
        raise UnsupportedOpError(
            f"{exc}. The model ends in ai.onnx.ml post-processing ops (as skl2onnx appends): cut the graph before"
            f" them with --output NAME{f' (e.g. --output {cut})' if cut else ''}; API: load_onnx(..., outputs=[NAME])"
        ) from None


def _cross_check_shapes(proto: onnx.ModelProto, tensors: dict[str, TensorInfo], notes: list[str]) -> None:
    """Compare our shapes with the fully known ones the model itself declares (value_info / outputs)."""
    for vi in list(proto.graph.value_info) + list(proto.graph.output):
        if vi.name not in tensors:
            continue
        dims, _ = _tensor_info_from_type(vi)
        if not dims or not all(isinstance(d, int) for d in dims):
            continue
        ours = tensors[vi.name].shape
        if tuple(dims) != ours and tuple(dims[1:]) != ours[1:]:
            raise ShapeInferenceError(f"tensor {vi.name!r}: the model declares shape {dims}, the ops give {list(ours)}")


def _build_blocks(canon: list[OpSpec], tensors: dict[str, TensorInfo], weights: dict[str, np.ndarray],
                  graph_outputs: set[str]) -> nx.DiGraph:
    readers: dict[str, int] = defaultdict(int)
    for op in canon:
        for i in op.inputs:
            if i and i not in weights:
                readers[i] += 1
    for o in graph_outputs:
        readers[o] += 1

    blocks: list[list[OpSpec]] = []
    block_of: dict[str, int] = {}  # activation tensor -> index of the block producing it
    tail_of: list[str] = []  # the last output of each block (what an epilogue may consume)
    for op in canon:
        acts = [i for i in op.inputs if i and i not in weights]
        b = None
        if op.op_type in _EPILOGUE_OPS and len(acts) == 1 and acts[0] in block_of:
            src = block_of[acts[0]]
            if tail_of[src] == acts[0] and readers[acts[0]] == 1 and acts[0] not in graph_outputs:
                b = src
        if b is None:
            blocks.append([])
            tail_of.append("")
            b = len(blocks) - 1
        blocks[b].append(op)
        for o in op.outputs:
            block_of[o] = b
        tail_of[b] = op.outputs[0]

    dag = nx.DiGraph()
    names_used: set[str] = set()
    for ops in blocks:
        lead = ops[0]
        name = lead.name or lead.outputs[0]
        if name in names_used:
            name = f"{name}:{lead.outputs[0]}"
        names_used.add(name)
        produced = {o for op in ops for o in op.outputs}
        ext_in: list[str] = []
        w_names: list[str] = []
        for op in ops:
            for i in op.inputs:
                if not i:
                    continue
                if i in weights:
                    if i not in w_names:
                        w_names.append(i)
                elif i not in produced and i not in ext_in:
                    ext_in.append(i)
        flops = 0
        for op in ops:
            ins = [tensors[i] if i in tensors else TensorInfo(tuple(weights[i].shape), str(weights[i].dtype)) for i in op.inputs if i]
            flops += op_flops(op, ins, [tensors[o] for o in op.outputs])
        lead_ins = [tensors[i] if i in tensors else TensorInfo(tuple(weights[i].shape), str(weights[i].dtype)) for i in lead.inputs if i]
        weighted = lead.op_type in _WEIGHTED_OPS and len(lead.inputs) > 1 and lead.inputs[1] in weights
        params = int(sum(weights[w].size for w in w_names))
        wbytes = int(sum(weights[w].nbytes for w in w_names))
        dag.add_node(
            name,
            op=lead.op_type,
            kind=op_kind(lead, lead_ins),
            ops=ops,
            inputs=ext_in,
            input_shapes=[tensors[i].shape for i in ext_in],
            weight_names=w_names,
            flops=int(flops),
            params=params,
            weight_bytes=wbytes,
            input_bytes=int(sum(tensors[i].nbytes for i in ext_in)),
            epilogue=[op.op_type for op in ops[1:]],
            onnx_nodes=list(dict.fromkeys(op.name for op in ops if op.name)),
            weighted=bool(weighted),
            _produced=produced,
        )
    # outputs: produced tensors that another block reads or that are graph outputs
    producer_block = {}
    for v, d in dag.nodes(data=True):
        for t in d["_produced"]:
            producer_block[t] = v
    read_outside: dict[str, set[str]] = defaultdict(set)
    for v, d in dag.nodes(data=True):
        for t in d["inputs"]:
            if t in producer_block:
                u = producer_block[t]
                read_outside[u].add(t)
                if dag.has_edge(u, v):
                    dag.edges[u, v]["tensors"].append(t)
                    dag.edges[u, v]["bytes"] += tensors[t].nbytes
                else:
                    dag.add_edge(u, v, tensors=[t], bytes=tensors[t].nbytes)
    for v, d in dag.nodes(data=True):
        produced_order = [o for op in d["ops"] for o in op.outputs]
        outs = [t for t in produced_order if t in read_outside[v] or t in graph_outputs]
        d["outputs"] = outs
        d["output_shapes"] = [tensors[t].shape for t in outs]
        d["output_bytes"] = int(sum(tensors[t].nbytes for t in outs))
        del d["_produced"]
    if not nx.is_directed_acyclic_graph(dag):  # cannot happen from a topological walk; guard the contract
        raise ModelLoadError("internal error: block graph is not acyclic")
    return dag
