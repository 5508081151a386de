"""Cost models: device profiles, fitted latency models, energy and memory, calibration.

``cost_models`` knows nothing of solvers (DESIGN.md): it answers "how long, how much energy, how many bytes"
for a block on a processor, a tensor over a link, a placement of a model.

Main entry points
-----------------
:func:`load_profile`, :func:`save_profile`, :class:`DeviceProfile`
    versioned, validated device profiles (built-in: ``snapdragon800``, ``tegrak1``).
:class:`LatencyModel`, :func:`predict_block_us`, :func:`op_work`, :func:`layer_works`
    per (processor, work kind) regressions on FLOPs and bytes; a block sums its ops.
:func:`plan_energy_uj`, :func:`busy_energy_uj`, :func:`transfer_energy_uj`
    energy from busy time × power plus link energy.
:func:`memory_by_processor`
    resident weights plus the activation peak per processor for a placement.
:func:`summarize_model`, :func:`check_single_processor`, :func:`single_processor_cost`
    whole-model single-processor costs (the DeepX tables).
``deepx_opt.cost_models.calibrate``
    micro-benchmarks on the real backends → a profile of this machine.
"""

from deepx_opt.cost_models.energy import EnergyBreakdown, busy_energy_uj, plan_energy_uj, transfer_energy_uj
from deepx_opt.cost_models.latency import (
    FEATURES,
    LatencyModel,
    OpWork,
    block_works,
    layer_works,
    op_work,
    predict_block_us,
    predict_work_us,
)
from deepx_opt.cost_models.memory import MemoryUse, activation_peak_bytes, memory_by_processor
from deepx_opt.cost_models.profile import (
    PROCESSOR_KINDS,
    PROFILE_VERSION,
    WORK_KINDS,
    DeviceProfile,
    Link,
    Processor,
    builtin_profiles,
    load_profile,
    profile_from_dict,
    save_profile,
)
from deepx_opt.cost_models.single import (
    ModelSummary,
    SingleProcessorCost,
    check_single_processor,
    single_processor_cost,
    summarize_model,
)

__all__ = [
    "FEATURES", "LatencyModel", "OpWork", "block_works", "layer_works", "op_work", "predict_block_us",
    "predict_work_us",
    "EnergyBreakdown", "busy_energy_uj", "plan_energy_uj", "transfer_energy_uj",
    "MemoryUse", "activation_peak_bytes", "memory_by_processor",
    "PROCESSOR_KINDS", "PROFILE_VERSION", "WORK_KINDS", "DeviceProfile", "Link", "Processor", "builtin_profiles",
    "load_profile", "profile_from_dict", "save_profile",
    "ModelSummary", "SingleProcessorCost", "check_single_processor", "single_processor_cost", "summarize_model",
]
