"""A small ONNX graph builder that tracks static shapes, parameter count and FLOPs as layers are added.

The zoo's architectures are written once against :class:`NetBuilder`. With ``materialize=True`` it
creates the weights (synthetic, see :mod:`deepx_opt.zoo.weights`, or given arrays for trained models)
and :meth:`NetBuilder.finish` returns an ``onnx.ModelProto``; with ``materialize=False`` it only counts,
which is how :func:`deepx_opt.zoo.list_models` reports sizes without generating 61M weights.

Conventions (they are what :class:`deepx_opt.zoo.ZooEntry` reports):

* ``params`` counts trainable parameters: Conv/Gemm weights and biases and BatchNormalization's scale
  and bias. BatchNormalization's running mean/variance and Clip's bounds are stored as initializers but
  are not counted (the convention of the papers and of ``torch``'s ``numel`` over parameters).
* ``flops`` is 2 × multiply-accumulates of Conv and Gemm layers. Bias additions, activations, pooling,
  LRN and softmax are not counted (they are < 1 % of the total in every zoo model).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import onnx
from onnx import TensorProto, helper

from deepx_opt.errors import ModelLoadError
from deepx_opt.zoo.weights import SPECTRUM_ALPHA, layer_rng, spectral_conv_weight, spectral_matrix

OPSET = 13
IR_VERSION = 8
PRODUCER = "deepx_opt.zoo"


def _pads4(pad: int | Sequence[int]) -> tuple[int, int, int, int]:
    if isinstance(pad, (int, np.integer)):
        return (int(pad),) * 4
    pads = tuple(int(p) for p in pad)
    if len(pads) == 2:
        return (pads[0], pads[1], pads[0], pads[1])
    if len(pads) != 4:
        raise ValueError(f"pads {pad!r} must be an int, (h, w) or (top, left, bottom, right)")
    return pads  # type: ignore[return-value]


def _window_out(size: int, k: int, stride: int, pad_lo: int, pad_hi: int) -> int:
    out = (size + pad_lo + pad_hi - k) // stride + 1
    if out < 1:
        raise ValueError(f"window {k} with stride {stride} does not fit an input of {size} (+{pad_lo}+{pad_hi})")
    return out


class NetBuilder:
    """Build a float32, batch-1, static-shape ONNX graph layer by layer.

    Parameters
    ----------
    name
        Graph (model) name.
    input_shape
        Shape of the single graph input ``"input"``, batch first.
    seed
        Seed of the synthetic weights (each layer's weights depend on ``(seed, layer name)`` only).
    materialize
        Create weights and nodes (True) or only track shapes, params and FLOPs (False).
    alpha
        Spectrum exponent of the synthetic weights.

    Examples
    --------
    >>> b = NetBuilder("tiny", (1, 4), seed=0)
    >>> y = b.softmax(b.gemm("input", 3, name="fc"))
    >>> model = b.finish([y])
    >>> b.params, b.flops, b.shapes[y]
    (15, 24, (1, 3))
    """

    def __init__(
        self,
        name: str,
        input_shape: Sequence[int],
        *,
        seed: int = 0,
        materialize: bool = True,
        alpha: float = SPECTRUM_ALPHA,
        doc: str = "",
    ) -> None:
        self.name = name
        self.seed = int(seed)
        self.materialize = materialize
        self.alpha = alpha
        self.doc = doc
        self.input_name = "input"
        self.input_shape = tuple(int(d) for d in input_shape)
        self.shapes: dict[str, tuple[int, ...]] = {self.input_name: self.input_shape}
        self.params = 0
        self.flops = 0
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: dict[str, np.ndarray] = {}
        self._init_names: set[str] = set()
        self._counts: dict[str, int] = {}

    # ----------------------------------------------------------------- helpers
    def _unique(self, prefix: str) -> str:
        n = self._counts.get(prefix, 0)
        self._counts[prefix] = n + 1
        return f"{prefix}_{n}"

    def _node(self, op: str, inputs: list[str], out_shape: tuple[int, ...], name: str, **attrs) -> str:
        if name in self.shapes:
            raise ValueError(f"duplicate layer/tensor name {name!r} in zoo model {self.name!r}")
        self.shapes[name] = tuple(int(d) for d in out_shape)
        if self.materialize:
            self.nodes.append(helper.make_node(op, inputs, [name], name=name, **attrs))
        return name

    def _add_init(self, name: str, array: np.ndarray) -> str:
        if name in self._init_names:
            return name
        self._init_names.add(name)
        if self.materialize:
            arr = np.asarray(array, dtype=np.float32)
            # (not np.ascontiguousarray: it turns a 0-d scalar, like Clip's bounds, into shape (1,))
            self.initializers[name] = arr if arr.flags.c_contiguous else np.array(arr, order="C")
        return name

    def _given(self, what: str, given: np.ndarray | None, shape: tuple[int, ...]) -> np.ndarray | None:
        if given is None:
            return None
        arr = np.asarray(given, dtype=np.float32)
        if arr.shape != shape:
            raise ModelLoadError(
                f"zoo model {self.name!r}: stored {what} has shape {arr.shape}, the architecture needs {shape}"
            )
        return arr

    def _bias(self, name: str, n: int, given: np.ndarray | None) -> np.ndarray | None:
        arr = self._given(f"{name} bias", given, (n,))
        if arr is None and self.materialize:
            arr = (0.01 * layer_rng(self.seed, name + ".bias").standard_normal(n)).astype(np.float32)
        return arr

    # ------------------------------------------------------------------ layers
    def conv(
        self,
        x: str,
        cout: int,
        kernel: int | tuple[int, int],
        *,
        name: str,
        stride: int = 1,
        pad: int | Sequence[int] = 0,
        group: int = 1,
        bias: bool = True,
        weight: np.ndarray | None = None,
        bias_value: np.ndarray | None = None,
    ) -> str:
        """Conv with a ``(cout, cin/group, kh, kw)`` weight; returns the output tensor name."""
        n, cin, h, w = self.shapes[x]
        kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
        if cin % group or cout % group:
            raise ValueError(f"{name}: channels {cin}->{cout} are not divisible by group={group}")
        pads = _pads4(pad)
        ho = _window_out(h, kh, stride, pads[0], pads[2])
        wo = _window_out(w, kw, stride, pads[1], pads[3])
        wshape = (cout, cin // group, kh, kw)
        self.params += int(np.prod(wshape)) + (cout if bias else 0)
        self.flops += 2 * n * cout * ho * wo * (cin // group) * kh * kw
        inputs = [x, f"{name}.weight"]
        w_arr = self._given(f"{name} weight", weight, wshape)
        if self.materialize:
            if w_arr is None:
                w_arr = spectral_conv_weight(
                    cout, cin // group, kh, kw, group, layer_rng(self.seed, name), alpha=self.alpha
                )
            self._add_init(f"{name}.weight", w_arr)
        if bias:
            b_arr = self._bias(name, cout, bias_value)
            self._add_init(f"{name}.bias", b_arr)  # type: ignore[arg-type]
            inputs.append(f"{name}.bias")
        return self._node(
            "Conv", inputs, (n, cout, ho, wo), name,
            kernel_shape=[kh, kw], strides=[stride, stride], pads=list(pads), dilations=[1, 1], group=group,
        )

    def gemm(
        self,
        x: str,
        n_out: int,
        *,
        name: str,
        weight: np.ndarray | None = None,
        bias_value: np.ndarray | None = None,
    ) -> str:
        """Fully connected layer ``y = x·Wᵀ + b`` (Gemm, transB=1, ``W`` of shape ``(n_out, n_in)``)."""
        batch, n_in = self.shapes[x]
        self.params += n_out * n_in + n_out
        self.flops += 2 * batch * n_out * n_in
        w_arr = self._given(f"{name} weight", weight, (n_out, n_in))
        if self.materialize:
            if w_arr is None:
                w_arr = spectral_matrix(n_out, n_in, layer_rng(self.seed, name), alpha=self.alpha)
            self._add_init(f"{name}.weight", w_arr)
            self._add_init(f"{name}.bias", self._bias(name, n_out, bias_value))  # type: ignore[arg-type]
        return self._node(
            "Gemm", [x, f"{name}.weight", f"{name}.bias"], (batch, n_out), name,
            alpha=1.0, beta=1.0, transA=0, transB=1,
        )

    def batchnorm(self, x: str, *, name: str, gamma: float = 1.0, epsilon: float = 1e-5) -> str:
        """BatchNormalization (inference) with trained-looking, deterministic statistics.

        ``scale = gamma·exp(0.1·z)``, ``bias = 0.05·z``, ``mean = 0.05·z``, ``var = exp(0.2·z)`` with
        independent standard normal ``z``. A small ``gamma`` on the last BN of a residual branch keeps
        the untrained ResNet's activations from doubling at every block.
        """
        c = self.shapes[x][1]
        self.params += 2 * c
        if self.materialize:
            rng = layer_rng(self.seed, name)
            z = rng.standard_normal((4, c))
            arrays = {
                "scale": gamma * np.exp(0.1 * z[0]),
                "bias": 0.05 * z[1],
                "mean": 0.05 * z[2],
                "var": np.exp(0.2 * z[3]),
            }
            for key, arr in arrays.items():
                self._add_init(f"{name}.{key}", arr.astype(np.float32))
        ins = [x] + [f"{name}.{k}" for k in ("scale", "bias", "mean", "var")]
        return self._node("BatchNormalization", ins, self.shapes[x], name, epsilon=epsilon)

    def relu(self, x: str) -> str:
        return self._node("Relu", [x], self.shapes[x], self._unique(f"{x}.relu"))

    def relu6(self, x: str) -> str:
        """``Clip(x, 0, 6)`` with the bounds as shared scalar initializers (opset 13 form)."""
        self._add_init("relu6.min", np.array(0.0, dtype=np.float32))
        self._add_init("relu6.max", np.array(6.0, dtype=np.float32))
        return self._node("Clip", [x, "relu6.min", "relu6.max"], self.shapes[x], self._unique(f"{x}.relu6"))

    def lrn(
        self, x: str, *, name: str, size: int = 5, alpha: float = 1e-4, beta: float = 0.75, bias: float = 1.0
    ) -> str:
        return self._node("LRN", [x], self.shapes[x], name, size=size, alpha=alpha, beta=beta, bias=bias)

    def maxpool(self, x: str, kernel: int, stride: int, *, name: str, pad: int | Sequence[int] = 0) -> str:
        n, c, h, w = self.shapes[x]
        pads = _pads4(pad)
        ho = _window_out(h, kernel, stride, pads[0], pads[2])
        wo = _window_out(w, kernel, stride, pads[1], pads[3])
        return self._node(
            "MaxPool", [x], (n, c, ho, wo), name,
            kernel_shape=[kernel, kernel], strides=[stride, stride], pads=list(pads),
        )

    def global_avgpool(self, x: str, *, name: str) -> str:
        n, c = self.shapes[x][:2]
        return self._node("GlobalAveragePool", [x], (n, c, 1, 1), name)

    def flatten(self, x: str, *, name: str) -> str:
        shape = self.shapes[x]
        return self._node("Flatten", [x], (shape[0], int(np.prod(shape[1:]))), name, axis=1)

    def dropout(self, x: str, *, name: str) -> str:
        """Dropout (identity at inference; kept so importers see the real network's node)."""
        return self._node("Dropout", [x], self.shapes[x], name)

    def add(self, a: str, b: str, *, name: str) -> str:
        if self.shapes[a] != self.shapes[b]:
            raise ValueError(f"{name}: cannot add shapes {self.shapes[a]} and {self.shapes[b]}")
        return self._node("Add", [a, b], self.shapes[a], name)

    def softmax(self, x: str, *, name: str = "prob") -> str:
        return self._node("Softmax", [x], self.shapes[x], name, axis=1)

    # ------------------------------------------------------------------ finish
    def finish(self, outputs: list[str], *, output_names: list[str] | None = None) -> onnx.ModelProto:
        """Return the checked ``ModelProto``; graph outputs are renamed ``output_names`` (default ``"output"``)."""
        if not self.materialize:
            raise RuntimeError("finish() needs a NetBuilder with materialize=True")
        if output_names is None:
            output_names = ["output"] if len(outputs) == 1 else [f"output{i}" for i in range(len(outputs))]
        nodes = list(self.nodes)
        consumed = {i for node in nodes for i in node.input}
        for src, dst in zip(outputs, output_names):
            if src in consumed:
                raise ValueError(f"graph output {src!r} of {self.name!r} is also read by a node; add an Identity")
            # Rename the producing node's output so the graph output has a stable, documented name.
            for node in nodes:
                for i, o in enumerate(node.output):
                    if o == src:
                        node.output[i] = dst
            self.shapes[dst] = self.shapes[src]
        # Assemble the ModelProto in place: make_graph/make_model would copy every initializer twice,
        # which costs seconds for AlexNet's 244 MB.
        model = helper.make_model(
            helper.make_graph(
                nodes,
                self.name,
                inputs=[helper.make_tensor_value_info(self.input_name, TensorProto.FLOAT, list(self.input_shape))],
                outputs=[
                    helper.make_tensor_value_info(o, TensorProto.FLOAT, list(self.shapes[o])) for o in output_names
                ],
                doc_string=self.doc,
            ),
            opset_imports=[helper.make_opsetid("", OPSET)],
            producer_name=PRODUCER,
            producer_version="0.1.0",
            doc_string=self.doc,
        )
        for name, array in self.initializers.items():
            tensor = model.graph.initializer.add()
            tensor.name = name
            tensor.data_type = TensorProto.FLOAT
            tensor.dims.extend(array.shape)
            tensor.raw_data = array.astype("<f4", copy=False).tobytes()
        model.ir_version = IR_VERSION
        model.model_version = 1
        onnx.checker.check_model(model)
        return model
