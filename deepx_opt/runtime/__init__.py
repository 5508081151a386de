"""The lightweight runtime: backends (numpy ``cpu``, OpenCL ``opencl:<i>``) and the executor.

``execute_graph(model, placement, inputs)`` runs a ModelGraph with each layer on a processor and returns the
outputs and a :class:`RunReport`; ``execute(plan, model, inputs)`` does the same for a solver's Plan (ranks
applied with RLC). ``get_backend(name)`` / ``available_backends()`` give the processors of this machine.
"""

from deepx_opt.runtime.backends import (
    CANONICAL_OPS,
    Backend,
    available_backends,
    canonical_processor_name,
    get_backend,
    recommended_openblas_coretype,
)
from deepx_opt.runtime.executor import BlockRecord, RunReport, TransferRecord, block_steps, execute, execute_graph

__all__ = [
    "CANONICAL_OPS",
    "Backend",
    "BlockRecord",
    "RunReport",
    "TransferRecord",
    "available_backends",
    "block_steps",
    "canonical_processor_name",
    "execute",
    "execute_graph",
    "get_backend",
    "recommended_openblas_coretype",
]
