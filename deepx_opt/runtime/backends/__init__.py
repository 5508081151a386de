"""Runtime backends: the protocol, the numpy reference backend and the OpenCL backend.

``get_backend("cpu")``, ``get_backend("opencl:0")`` (or ``"opencl:<name substring>"``) return a backend;
``available_backends()`` lists the processor names this machine has. pyopencl is imported only when an
OpenCL backend is asked for.
"""

from deepx_opt.runtime.backends.base import (
    CANONICAL_OPS,
    FUSED_ACTIVATION_ATTR,
    Backend,
    available_backends,
    canonical_processor_name,
    get_backend,
)
from deepx_opt.runtime.backends.numpy_backend import NumpyBackend, recommended_openblas_coretype

__all__ = [
    "CANONICAL_OPS",
    "FUSED_ACTIVATION_ATTR",
    "Backend",
    "NumpyBackend",
    "available_backends",
    "canonical_processor_name",
    "get_backend",
    "recommended_openblas_coretype",
]
