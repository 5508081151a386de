"""The backend protocol, the canonical-op table and the backend registry.

A backend is small (CONVENTIONS §7, after tinygrad's ``ops_cl.py``): it uploads host arrays to its memory,
runs one canonical op of ``docs/ir.md`` at a time on handles, downloads results and synchronises. Handles
are opaque: ``numpy.ndarray`` for the ``cpu`` backend, :class:`~deepx_opt.runtime.backends.opencl.CLTensor`
for OpenCL. Handles are treated as immutable, so a backend may return an input handle unchanged
(``Identity``) or a view of it (``Reshape``).

Processor names
---------------
``cpu``
    the numpy reference backend.
``opencl:0``, ``opencl:1``, ...
    an index into :func:`deepx_opt.runtime.opencl_probe.working_devices`.
``opencl:<substring>``
    the first working OpenCL device whose platform or device name contains the substring
    (case-insensitive), e.g. ``opencl:pthread`` or ``opencl:nvidia``.

Example
-------
>>> import numpy as np
>>> from deepx_opt.runtime.backends import get_backend
>>> be = get_backend("cpu")
>>> (y,) = be.run("Relu", [be.upload(np.array([-1.0, 2.0], dtype=np.float32))], {})
>>> be.download(y).tolist()
[0.0, 2.0]
"""

from __future__ import annotations

import abc
import math
import threading
from typing import Any, Sequence

import numpy as np

from deepx_opt.errors import BackendError, BackendUnavailableError, UnsupportedOpError

__all__ = [
    "CANONICAL_OPS",
    "FUSED_ACTIVATION_ATTR",
    "WEIGHT_NK_ATTR",
    "fused_bounds",
    "relayout_weight",
    "Backend",
    "get_backend",
    "available_backends",
    "conv_output_hw",
    "pool_output_hw",
    "broadcast_shape",
]

#: Every op type of docs/ir.md's canonical table. Each backend implements all of them.
CANONICAL_OPS: tuple[str, ...] = (
    "Conv", "Gemm", "MatMul", "BatchNormalization",
    "Relu", "Sigmoid", "Tanh", "Identity", "LeakyRelu", "Clip",
    "Softmax", "LogSoftmax",
    "MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool", "LRN",
    "Reshape", "Transpose", "Concat",
    "Add", "Sub", "Mul", "Div", "Sum",
    "Pad", "Cast",
)

#: Optional backend-level extension attribute accepted by ``Conv``, ``Gemm``, ``MatMul`` and the float
#: ``Add``/``Sub``/``Mul``/``Div``/``Sum``: ``"Relu"`` or ``"Clip"`` (bounds in ``fused_min`` /
#: ``fused_max``) applies that activation to the op's output (in the same kernel where the backend can). The executor sets it when a block's main op is followed by a Relu/Clip that is the only
#: reader of its output. Not part of the IR.
FUSED_ACTIVATION_ATTR = "fused_activation"

#: Backend-level extension attribute of ``MatMul``: ``1`` means its second input, a 2-D weight, is stored
#: transposed (outputs × inputs, ``N × K``), so the op computes ``A @ Bᵀ``. Set by the executor only on backends
#: whose :attr:`Backend.gemm_weight_layout` is ``"nk"``. Not part of the IR.
WEIGHT_NK_ATTR = "weight_nk"


def relayout_weight(op_type: str, attrs: dict, weight: np.ndarray,
                    layout: str | None) -> tuple[dict, np.ndarray] | None:
    """The same op with its constant 2-D weight (input 1 of ``Gemm``/``MatMul``) stored in ``layout``, or
    ``None`` when it already is (or the op is not such a GEMM).

    ``layout`` is ``"nk"`` (outputs × inputs: ``Gemm`` with ``transB=1``, ``MatMul`` with
    :data:`WEIGHT_NK_ATTR`), ``"kn"`` (inputs × outputs) or ``None`` (leave it). Exact: only the storage moves.

    >>> import numpy as np
    >>> attrs, w = relayout_weight("Gemm", {"transB": 0}, np.ones((3, 2), np.float32), "nk")
    >>> attrs["transB"], w.shape, w.flags.c_contiguous
    (1, (2, 3), True)
    """
    if layout is None or weight.ndim != 2:
        return None
    if layout not in ("nk", "kn"):
        raise BackendError(f"gemm weight layout {layout!r}; accepted: 'nk', 'kn', None")
    if op_type == "Gemm":
        if int(attrs.get("transA", 0)):
            return None
        nk = bool(int(attrs.get("transB", 0)))
        if nk == (layout == "nk"):
            return None
        return dict(attrs, transB=0 if nk else 1), np.ascontiguousarray(weight.T)
    if op_type == "MatMul":
        nk = bool(int(attrs.get(WEIGHT_NK_ATTR, 0)))
        if nk == (layout == "nk"):
            return None
        new = dict(attrs)
        if layout == "nk":
            new[WEIGHT_NK_ATTR] = 1
        else:
            new.pop(WEIGHT_NK_ATTR, None)
        return new, np.ascontiguousarray(weight.T)
    return None


def fused_bounds(attrs: dict) -> tuple[float, float] | None:
    """``(lo, hi)`` clamp of a fused activation (Relu = ``(0, inf)``), or ``None`` when there is none."""
    act = attrs.get(FUSED_ACTIVATION_ATTR)
    if act is None:
        return None
    if act == "Relu":
        return 0.0, math.inf
    if act == "Clip":
        return float(attrs.get("fused_min", -math.inf)), float(attrs.get("fused_max", math.inf))
    raise UnsupportedOpError(f"fused activation {act!r} is not supported; supported: 'Relu', 'Clip'")


class Backend(abc.ABC):
    """One processor able to run every canonical op.

    Attributes
    ----------
    name : str
        Processor name, e.g. ``"cpu"`` or ``"opencl:0"``.
    kind : str
        ``"cpu"``, ``"gpu"``, ``"accelerator"`` or ``"other"``.
    """

    name: str = "abstract"
    kind: str = "other"
    #: How this backend wants the constant 2-D weight of a ``Gemm``/``MatMul`` stored: ``"nk"`` (outputs ×
    #: inputs), ``"kn"`` (inputs × outputs) or ``None`` (as the model stores it). The executor re-lays weights
    #: out once at load (:func:`relayout_weight`), and calibration times the ops the same way.
    gemm_weight_layout: str | None = None

    @abc.abstractmethod
    def upload(self, array: np.ndarray) -> Any:
        """Copy a host array into this backend's memory and return a handle."""

    @abc.abstractmethod
    def download(self, handle: Any) -> np.ndarray:
        """Return a host copy (``numpy.ndarray``) of a handle's data."""

    @abc.abstractmethod
    def run(self, op_type: str, inputs: Sequence[Any], attrs: dict) -> list[Any]:
        """Run one canonical op (ONNX semantics) on handles; return the output handles.

        ``inputs`` follows the op's input order of docs/ir.md; an absent optional input is ``None``.
        Raises :class:`~deepx_opt.errors.UnsupportedOpError` for an op type outside :data:`CANONICAL_OPS`.
        """

    def synchronize(self) -> None:
        """Block until every op queued so far has finished (no-op for synchronous backends)."""

    @abc.abstractmethod
    def shape_of(self, handle: Any) -> tuple[int, ...]:
        """Shape of the tensor behind a handle (no copy)."""

    @abc.abstractmethod
    def dtype_of(self, handle: Any) -> np.dtype:
        """dtype of the tensor behind a handle (no copy)."""

    def supports(self, op_type: str, attrs: dict | None = None) -> bool:
        """Whether :meth:`run` accepts this op type (and these attributes)."""
        return op_type in CANONICAL_OPS

    def close(self) -> None:
        """Release device resources (optional)."""

    def _unsupported(self, op_type: str) -> UnsupportedOpError:
        return UnsupportedOpError(
            f"backend {self.name!r} has no op {op_type!r}; supported ops: {', '.join(CANONICAL_OPS)}"
        )

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} ({self.kind})>"


# ---------------------------------------------------------------------------------------------- shapes

def conv_output_hw(hw: Sequence[int], kernel: Sequence[int], strides: Sequence[int],
                   pads: Sequence[int], dilations: Sequence[int]) -> tuple[int, int]:
    """Output (height, width) of a convolution; ``pads`` is ONNX-ordered (top, left, bottom, right)."""
    out = []
    for i in range(2):
        eff = dilations[i] * (kernel[i] - 1) + 1
        out.append((hw[i] + pads[i] + pads[i + 2] - eff) // strides[i] + 1)
    return out[0], out[1]


def pool_output_hw(hw: Sequence[int], kernel: Sequence[int], strides: Sequence[int], pads: Sequence[int],
                   dilations: Sequence[int], ceil_mode: int) -> tuple[int, int]:
    """Output (height, width) of a pooling op, with onnxruntime's ``ceil_mode`` rule.

    In ceil mode the last window is dropped when it would start inside the end padding (as onnxruntime and
    PyTorch do), so every window overlaps the input or its start padding.
    """
    out = []
    for i in range(2):
        eff = dilations[i] * (kernel[i] - 1) + 1
        span = hw[i] + pads[i] + pads[i + 2] - eff
        if ceil_mode:
            o = int(math.ceil(span / strides[i])) + 1
            if (o - 1) * strides[i] >= hw[i] + pads[i]:
                o -= 1
        else:
            o = span // strides[i] + 1
        out.append(o)
    return out[0], out[1]


def broadcast_shape(*shapes: Sequence[int]) -> tuple[int, ...]:
    """numpy broadcasting of shapes; raises ``ValueError`` naming the shapes when they do not broadcast."""
    return tuple(np.broadcast_shapes(*[tuple(s) for s in shapes]))


# -------------------------------------------------------------------------------------------- registry

_lock = threading.Lock()
_instances: dict[str, Backend] = {}


def _opencl_devices():
    from deepx_opt.runtime.opencl_probe import working_devices

    return working_devices()


def available_backends() -> list[str]:
    """Processor names usable on this machine: ``"cpu"`` then ``"opencl:<i>"`` per working device.

    Example
    -------
    >>> "cpu" in available_backends()
    True
    """
    names = ["cpu"]
    try:
        import pyopencl  # noqa: F401  (lazily: OpenCL is optional)
    except ImportError:
        return names
    names += [f"opencl:{i}" for i in range(len(_opencl_devices()))]
    return names


def _resolve_opencl(spec: str) -> int:
    devs = _opencl_devices()
    if spec.isdigit():
        idx = int(spec)
        if idx < len(devs):
            return idx
    else:
        for i, d in enumerate(devs):
            if spec.lower() in d.label.lower():
                return i
    listing = "; ".join(f"opencl:{i} = {d.label}" for i, d in enumerate(devs)) or "no working OpenCL device"
    raise BackendUnavailableError(
        f"no OpenCL device matches {spec!r}; this machine has: cpu; {listing}"
    )


def canonical_processor_name(name: str) -> str:
    """Map a processor name (``cpu``, ``numpy``, ``opencl:0``, ``opencl:<substring>``) to its canonical form."""
    key = name.strip()
    if key in ("cpu", "numpy"):
        return "cpu"
    if key.startswith("opencl"):
        try:
            import pyopencl  # noqa: F401
        except ImportError as exc:
            raise BackendUnavailableError(
                f"processor {name!r} needs pyopencl, which cannot be imported ({exc}); available: cpu"
            ) from exc
        spec = key[len("opencl"):].lstrip(":") or "0"
        return f"opencl:{_resolve_opencl(spec)}"
    raise BackendUnavailableError(
        f"unknown processor {name!r}; available on this machine: {', '.join(available_backends())}"
    )


def get_backend(name: str, **options: Any) -> Backend:
    """Return the backend for a processor name.

    Without ``options`` the instance is shared (one per processor and process), so programs, caches and
    uploaded weights are reused. With options (``threads=2``, ``gemm_variant="tiled"``, ...) a new
    instance is built.

    Raises
    ------
    BackendUnavailableError
        for a processor this machine does not have; the message lists those it has.
    """
    canon = canonical_processor_name(name)
    if not options:
        with _lock:
            inst = _instances.get(canon)
            if inst is None:
                inst = _instances[canon] = _build(canon)
            return inst
    return _build(canon, **options)


def _build(canon: str, **options: Any) -> Backend:
    if canon == "cpu":
        from deepx_opt.runtime.backends.numpy_backend import NumpyBackend

        return NumpyBackend(**options)
    from deepx_opt.runtime.backends.opencl import OpenCLBackend

    return OpenCLBackend(int(canon.split(":", 1)[1]), **options)
