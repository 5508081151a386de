"""Power of the calibrated processors, measured where the hardware has an energy counter.

Most machines have none that deepx_opt can read (no RAPL in these VMs): their powers are modelled
(:data:`deepx_opt.cost_models.calibrate.DEFAULT_POWER_W` or ``deepx calibrate --power``). On an NVIDIA GPU
with ``pynvml`` (nvidia-ml-py), :func:`calibrate_power` measures active and idle power with NVML's
total-energy counter.
"""

from __future__ import annotations

import time
from typing import Any, Sequence

import numpy as np

__all__ = ["calibrate_power", "measure_nvml_power_w"]


def _nvml_handle(device_name: str):
    try:
        import pynvml  # nvidia-ml-py
    except ImportError:
        return None
    try:
        pynvml.nvmlInit()
        n = pynvml.nvmlDeviceGetCount()
        for i in range(n):
            h = pynvml.nvmlDeviceGetHandleByIndex(i)
            name = pynvml.nvmlDeviceGetName(h)
            name = name.decode() if isinstance(name, bytes) else name
            if name.lower() in device_name.lower() or device_name.lower() in name.lower() or n == 1:
                return h
    except Exception:
        return None
    return None


def _device_label(backend: Any) -> str:
    info = getattr(backend, "info", None)
    return getattr(info, "device", "") or getattr(backend, "name", "")


def measure_nvml_power_w(backend: Any, cases: Sequence[Any], duration_s: float = 2.0) -> tuple[float, float] | None:
    """(active, idle) GPU power in W from NVML's total-energy counter (mJ): the energy over a stretch of the
    ``cases`` run back to back (kept busy: the queue is synchronised every few runs only) divided by its
    time, and the idle power over an equal quiet stretch before it. None when NVML or the GPU is not found."""
    import pynvml

    h = _nvml_handle(_device_label(backend))
    if h is None:
        return None
    rng = np.random.default_rng(0)
    prepared = [(c, [None if s is None else backend.upload(rng.standard_normal(s).astype(np.float32))
                     for s in c.inputs]) for c in cases]
    for c, hs in prepared:
        backend.run(c.op_type, hs, c.attrs)
    backend.synchronize()
    time.sleep(0.3)
    e0, t0 = pynvml.nvmlDeviceGetTotalEnergyConsumption(h), time.perf_counter()
    time.sleep(duration_s / 2)
    e1, t1 = pynvml.nvmlDeviceGetTotalEnergyConsumption(h), time.perf_counter()
    idle_w = (e1 - e0) / 1000.0 / (t1 - t0)
    e0, t0 = pynvml.nvmlDeviceGetTotalEnergyConsumption(h), time.perf_counter()
    while time.perf_counter() - t0 < duration_s:
        for _ in range(5):
            for c, hs in prepared:
                backend.run(c.op_type, hs, c.attrs)
        backend.synchronize()
    e1, t1 = pynvml.nvmlDeviceGetTotalEnergyConsumption(h), time.perf_counter()
    active_w = (e1 - e0) / 1000.0 / (t1 - t0)
    return active_w, idle_w


def calibrate_power(processor: str, backend: Any, description: str, cases: Sequence[Any],
                    zoo_graphs: Sequence[Any] = ()) -> dict | None:
    """Measured power fields of a :class:`~deepx_opt.cost_models.profile.Processor`, or None.

    ``cases`` is calibration's op grid, ``zoo_graphs`` the zoo models it runs whole. Only an OpenCL device
    whose description names NVIDIA, with NVML readable, is measured: the largest conv (compute-bound) and
    the largest GEMM (memory-bound) of the grid run back to back.
    """
    if not processor.startswith("opencl") or "nvidia" not in description.lower():
        return None
    from deepx_opt.cost_models.calibrate import _case_work

    heavy = [max((c for c in cases if c.op_type == t), key=lambda c: _case_work(c).flops) for t in ("Conv", "Gemm")]
    try:
        got = measure_nvml_power_w(backend, heavy)
    except Exception:  # NVML present but unusable: keep modelled powers
        got = None
    if not got:
        return None
    active, idle = got
    return {"active_power_w": float(active), "idle_power_w": float(idle), "power_source": "measured"}
