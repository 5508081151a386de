"""Find the OpenCL devices that can really build and run a kernel.

Some platforms enumerate but cannot compile (the PoCL bundled with the pyopencl wheel fails on AVX-512
CPUs with "unknown target CPU 'generic'"), so a device counts only once a probe kernel has built and run.
``python -m deepx_opt.runtime.opencl_probe`` lists the working devices and exits 1 when there is none.
"""

from __future__ import annotations

import functools
import os
import sys
import warnings
from dataclasses import dataclass

__all__ = ["OpenCLDeviceInfo", "POCL_ENV_DEFAULTS", "working_devices"]

#: Environment defaults for PoCL, set (unless the user set them) before the first OpenCL platform query, since
#: PoCL reads them once when it starts. ``POCL_AFFINITY=1`` pins PoCL's worker threads to cores: on this 2-core
#: machine it leaves block latencies as fast (AlexNet dense 27.7 vs 28.4 ms, sum of block minima) but much
#: steadier between passes (median pass-to-pass spread 14 % instead of 30–54 %; benchmarks/cost_repeatability.py,
#: docs/cost_models.md), which is what a cost model calibrated once and used later needs.
POCL_ENV_DEFAULTS = {"POCL_AFFINITY": "1"}

_PROBE_SRC = "__kernel void probe(__global float *x) { int i = get_global_id(0); x[i] = 2.0f * x[i] + 1.0f; }"


@dataclass(frozen=True)
class OpenCLDeviceInfo:
    platform_index: int
    device_index: int
    platform: str
    device: str
    device_type: str  # "cpu", "gpu", "accelerator" or "other"
    global_mem_bytes: int
    compute_units: int

    @property
    def label(self) -> str:
        return f"{self.platform} / {self.device}"


def _device_type(dev) -> str:
    import pyopencl as cl

    t = dev.type
    if t & cl.device_type.GPU:
        return "gpu"
    if t & cl.device_type.CPU:
        return "cpu"
    if t & cl.device_type.ACCELERATOR:
        return "accelerator"
    return "other"


def _probe(dev) -> None:
    import numpy as np
    import pyopencl as cl

    ctx = cl.Context([dev])
    queue = cl.CommandQueue(ctx)
    prg = cl.Program(ctx, _PROBE_SRC).build()
    host = np.arange(16, dtype=np.float32)
    buf = cl.Buffer(ctx, cl.mem_flags.READ_WRITE | cl.mem_flags.COPY_HOST_PTR, hostbuf=host)
    cl.Kernel(prg, "probe")(queue, (16,), None, buf)
    out = np.empty_like(host)
    cl.enqueue_copy(queue, out, buf)
    queue.finish()
    if not np.allclose(out, 2 * host + 1):
        raise RuntimeError("probe kernel returned wrong values")


@functools.lru_cache(maxsize=1)
def working_devices() -> tuple[OpenCLDeviceInfo, ...]:
    """Return every OpenCL device that builds and runs a probe kernel (cached per process).

    Platforms or devices that fail are skipped with a one-line warning. Returns an empty tuple when
    pyopencl is not installed or no platform works.
    """
    try:
        import pyopencl as cl
    except ImportError:
        return ()
    for key, value in POCL_ENV_DEFAULTS.items():
        os.environ.setdefault(key, value)
    try:
        platforms = cl.get_platforms()
    except Exception:  # no ICD loader / no platform: pyopencl raises LogicError
        return ()
    found = []
    for pi, plat in enumerate(platforms):
        try:
            devices = plat.get_devices()
        except Exception as exc:
            warnings.warn(f"OpenCL platform {plat.name!r} skipped: cannot list devices ({exc})", stacklevel=2)
            continue
        for di, dev in enumerate(devices):
            try:
                _probe(dev)
            except Exception as exc:
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                warnings.warn(
                    f"OpenCL device {plat.name.strip()!r} / {dev.name.strip()!r} skipped: probe kernel failed ({first})",
                    stacklevel=2,
                )
                continue
            found.append(
                OpenCLDeviceInfo(
                    platform_index=pi,
                    device_index=di,
                    platform=plat.name.strip(),
                    device=dev.name.strip(),
                    device_type=_device_type(dev),
                    global_mem_bytes=int(dev.global_mem_size),
                    compute_units=int(dev.max_compute_units),
                )
            )
    return tuple(found)


def main() -> int:
    devs = working_devices()
    for i, d in enumerate(devs):
        print(f"opencl:{i}  {d.device_type:4s}  {d.label}  ({d.compute_units} CUs, {d.global_mem_bytes / 2**30:.1f} GiB)")
    if not devs:
        print("no working OpenCL device", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
