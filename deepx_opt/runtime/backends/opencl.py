"""OpenCL backend (pyopencl): one instance per OpenCL device, processor names ``opencl:<i>``.

Programs are built once per context and cached (a build failure raises
:class:`~deepx_opt.errors.BackendError` carrying the first lines of the build log). The GEMM kernel is
chosen by device type: register-blocked ``float16`` for CPU-like devices (PoCL), local-memory tiled for
GPUs; ``gemm_variant=`` overrides. Convolution is im2col + GEMM with bias and ReLU fused into the GEMM
store, 1×1 stride-1 convolutions skip im2col, depthwise convolutions run a direct kernel.

On CPU devices, host arrays are wrapped with ``USE_HOST_PTR`` (zero copy): an uploaded array must not be
modified afterwards. An instance is driven by one host thread at a time (it owns an in-order queue and a
reused im2col scratch buffer).

The queue is created with ``PROFILING_ENABLE`` (unless ``profiling=False``): :meth:`OpenCLBackend.mark`
enqueues a marker whose completion time :meth:`OpenCLBackend.mark_time_ns` reads (device clock, ns) once the
queue has drained past it; the executor times blocks this way instead of a blocking ``finish()`` per block.
"""

from __future__ import annotations

import os

import threading
import warnings
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from deepx_opt.errors import BackendError, BackendUnavailableError, InputError, UnsupportedOpError
from deepx_opt.runtime.backends import opencl_kernels as K
from deepx_opt.runtime.backends.base import (
    CANONICAL_OPS,
    Backend,
    fused_bounds,
    conv_output_hw,
    pool_output_hw,
)

try:
    import pyopencl as cl
except ImportError as _exc:  # kept for the message
    cl = None
    _IMPORT_ERROR: ImportError | None = _exc
else:
    _IMPORT_ERROR = None

__all__ = ["CLTensor", "OpenCLBackend"]

_CTYPES = {
    "float32": "float", "float64": "double", "int64": "long", "int32": "int", "int16": "short",
    "int8": "char", "uint8": "uchar", "uint16": "ushort", "uint32": "uint", "uint64": "ulong", "bool": "uchar",
}
_MAXR = 6
#: output tile of one work-item of the blocked GEMM (RB x 16·NP in opencl_kernels.GEMM_BLOCKED)
_PANEL_M, _PANEL_N = 6, 32
#: below this many rows the blocked GEMM runs one GEMV per row (8-row panels would waste FMAs)
_GEMV_ROWS = 4
#: tile shapes of the register-blocked GPU GEMM (opencl_kernels.GEMM_TILED):
#: (TM, TN, WM, WN, BK) = block tile rows × columns, outputs per work-item rows × columns, k-depth per stage
#: Measured on an H200 (benchmarks/runtime_gpu.py): 128x128/BK 8 36 TFLOP/s at 4096³, 30 at 2048³;
#: 64x128 and 64x64 best where 128x128 tiles leave SMs idle.
TILE_CONFIGS: dict[str, tuple[int, int, int, int, int]] = {
    "128x128": (128, 128, 8, 8, 8),
    "64x128": (64, 128, 4, 8, 16),
    "64x64": (64, 64, 4, 4, 16),
}
#: softmax over the last axis with at least this many classes runs one work-group of _SOFTMAX_WG per row
_SOFTMAX_ROW_MIN, _SOFTMAX_WG = 128, 128
#: GEMMs of at most this many rows run the split-K GEMV kernel on the tiled (GPU) path
_GPU_GEMV_ROWS = 8
#: smallest K chunk of a split-K GEMM
_SPLIT_K_MIN = 128
_FLOAT_ONLY = {
    "Conv", "Gemm", "MatMul", "BatchNormalization", "Relu", "Sigmoid", "Tanh", "LeakyRelu", "Clip", "Softmax",
    "LogSoftmax", "MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool", "LRN",
}

_lock = threading.Lock()
_contexts: dict[int, Any] = {}
_programs: dict[tuple, Any] = {}


@dataclass(eq=False)
class CLTensor:
    """Handle of the OpenCL backend: a device buffer with a shape and dtype.

    ``host`` keeps a zero-copy host array alive; ``derived`` caches forms computed from this (immutable)
    tensor, such as the transposed weight of a ``Gemm(transB=1)``.
    """

    buf: Any
    shape: tuple[int, ...]
    dtype: np.dtype
    host: np.ndarray | None = None
    derived: dict = field(default_factory=dict)

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    @property
    def nbytes(self) -> int:
        return self.size * self.dtype.itemsize


def _ceil_to(n: int, m: int) -> int:
    return max(m, (n + m - 1) // m * m)


def _contiguous_strides(shape: Sequence[int]) -> list[int]:
    strides, acc = [], 1
    for d in reversed(shape):
        strides.append(acc)
        acc *= int(d)
    return strides[::-1]


class OpenCLBackend(Backend):
    """Backend for one working OpenCL device.

    Parameters
    ----------
    device_index : int
        Index into :func:`deepx_opt.runtime.opencl_probe.working_devices` (processor ``opencl:<index>``).
    gemm_variant : {"blocked", "tiled"}, optional
        GEMM kernel; default ``"tiled"`` on GPUs and ``"blocked"`` otherwise.
    gemm_tile : str or tuple of 5 ints, optional
        Tile of the ``"tiled"`` GEMM: a key of :data:`TILE_CONFIGS` or ``(TM, TN, WM, WN, BK)``
        (WM, WN multiples of 4 dividing TM, TN). Default: per GEMM, the largest configuration that still
        gives every compute unit a work-group (:meth:`tile_for`).
    zero_copy : bool, optional
        Wrap uploaded arrays with ``USE_HOST_PTR``; default True on CPU devices.
    mem_pool : bool, optional
        Take op outputs and uploads from a ``pyopencl.tools.MemoryPool`` (freed buffers are reused, not
        released to the driver); default True where uploads copy (GPUs). On NVIDIA, allocating and
        freeing a device buffer per op costs more than the small kernels of a batch-1 inference.
    mem_pool_min_bytes : int, optional
        Smaller buffers bypass the pool (plain ``cl.Buffer``).
    profiling : bool, optional
        Create the queue with ``PROFILING_ENABLE`` so that :meth:`mark` returns timed markers (default).
    sync : {"spin", "finish"}, optional
        How :meth:`synchronize` waits: ``"finish"`` calls ``clFinish`` (the driver may put the thread to
        sleep and wake it when the queue drains); ``"spin"`` enqueues a marker and polls its status, never
        sleeping. Default ``"finish"`` (or the environment variable ``DEEPX_OPENCL_SYNC``). On the H200,
        spinning made per-block times steadier (blocks whose 6 timed passes agree pairwise within ±10 %:
        89 % against 77 %) but every block slower (zoo models 15–22 % longer: each poll is a driver call
        from Python), so it is not the default; on a CPU device it would take a core from the device's own
        threads.

    Example
    -------
    >>> import numpy as np
    >>> be = OpenCLBackend(0)                                   # doctest: +SKIP
    >>> a, b = be.upload(np.eye(3, dtype=np.float32)), be.upload(np.ones((3, 2), np.float32))  # doctest: +SKIP
    >>> be.download(be.run("MatMul", [a, b], {})[0]).sum()     # doctest: +SKIP
    6.0
    """

    def __init__(self, device_index: int = 0, *, gemm_variant: str | None = None,
                 zero_copy: bool | None = None, gemm_tile: str | Sequence[int] | None = None,
                 mem_pool: bool | None = None, mem_pool_min_bytes: int = 0, profiling: bool = True,
                 sync: str | None = None) -> None:
        if cl is None:
            raise BackendUnavailableError(f"the OpenCL backend needs pyopencl, which failed to import: {_IMPORT_ERROR}")
        from deepx_opt.runtime.opencl_probe import working_devices

        devs = working_devices()
        if not 0 <= device_index < len(devs):
            listing = ", ".join(f"opencl:{i} ({d.label})" for i, d in enumerate(devs)) or "none"
            raise BackendUnavailableError(f"no OpenCL device opencl:{device_index}; working devices: {listing}")
        info = devs[device_index]
        self.info = info
        self.name = f"opencl:{device_index}"
        self.kind = info.device_type
        self.device = cl.get_platforms()[info.platform_index].get_devices()[info.device_index]
        with _lock:
            ctx = _contexts.get(device_index)
            if ctx is None:
                ctx = _contexts[device_index] = cl.Context([self.device])
        self.ctx = ctx
        #: the queue records event timestamps (markers from :meth:`mark`); False: plain queue, no markers
        self.profiling = bool(profiling)
        self.queue = cl.CommandQueue(
            ctx, properties=cl.command_queue_properties.PROFILING_ENABLE if self.profiling else 0)
        if sync is None:
            sync = os.environ.get("DEEPX_OPENCL_SYNC") or "finish"
        if sync not in ("spin", "finish"):
            raise BackendError(f"sync must be 'spin' or 'finish', got {sync!r}")
        self.sync = sync
        if gemm_variant is None:
            gemm_variant = "tiled" if self.kind == "gpu" else "blocked"
        if gemm_variant not in ("blocked", "tiled"):
            raise BackendError(f"gemm_variant must be 'blocked' or 'tiled', got {gemm_variant!r}")
        self.gemm_variant = gemm_variant
        self.gemm_tile = None if gemm_tile is None else _check_tile(gemm_tile)
        self.compute_units = int(self.device.max_compute_units)
        self.zero_copy = (self.kind == "cpu") if zero_copy is None else bool(zero_copy)
        self.mem_pool = (not self.zero_copy) if mem_pool is None else bool(mem_pool)
        self._mempool = None
        self.mem_pool_min_bytes = int(mem_pool_min_bytes)
        if self.mem_pool:
            from pyopencl.tools import ImmediateAllocator, MemoryPool

            self._mempool = MemoryPool(ImmediateAllocator(self.queue))
        self._kernels: dict[tuple, Any] = {}
        self._meta_cache: dict[tuple, Any] = {}
        self._wg_cache: dict[Any, int] = {}
        self._scratch = None
        self._ws = None
        #: split K across work-groups when the tile grid leaves compute units idle (tiled GEMM only)
        self.split_k = True
        #: split-K needs K >= this (256 measured no better than 512 on AlexNet's conv1, K = 363)
        self.split_k_min_k = 4 * _SPLIT_K_MIN
        self._ops = {
            "Conv": self._conv, "Gemm": self._gemm, "MatMul": self._matmul,
            "BatchNormalization": self._batchnorm, "Relu": self._unary, "Sigmoid": self._unary,
            "Tanh": self._unary, "LeakyRelu": self._unary, "Clip": self._unary, "Identity": lambda i, a: [i[0]],
            "Softmax": self._softmax, "LogSoftmax": self._softmax, "MaxPool": self._pool,
            "AveragePool": self._pool, "GlobalAveragePool": self._gpool, "GlobalMaxPool": self._gpool,
            "LRN": self._lrn, "Reshape": self._reshape, "Transpose": self._transpose, "Concat": self._concat,
            "Add": self._binary, "Sub": self._binary, "Mul": self._binary, "Div": self._binary,
            "Sum": self._sum, "Pad": self._pad, "Cast": self._cast,
        }

    # ------------------------------------------------------------------------------ programs, kernels
    def _program(self, key: str, src: str, options: tuple[str, ...] = ()):
        ck = (int(self.ctx.int_ptr), key, options)
        with _lock:
            prg = _programs.get(ck)
        if prg is not None:
            return prg
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                prg = cl.Program(self.ctx, src).build(options=list(options))
        except cl.Error as exc:
            log = str(exc).strip().splitlines()
            head = "\n".join(line for line in log[:25])
            raise BackendError(
                f"OpenCL program {key!r} failed to build on {self.name} ({self.info.label}), options "
                f"{list(options)}:\n{head}"
            ) from exc
        with _lock:
            _programs[ck] = prg
        return prg

    def _kernel(self, prog_key: str, name: str, argtypes: Sequence[Any], ctype: str | None = None,
                src_dst: tuple[str, str, bool] | None = None):
        kk = (prog_key, name, ctype, src_dst)
        knl = self._kernels.get(kk)
        if knl is not None:
            return knl
        if prog_key == "gemm":
            prg = self._program("gemm-blocked", K.GEMM_BLOCKED)
        elif prog_key == "gemm-tiled":
            tm, tn, wm, wn, bk = ctype
            prg = self._program("gemm-tiled", K.GEMM_TILED,
                                (f"-DTM={tm}", f"-DTN={tn}", f"-DWM={wm}", f"-DWN={wn}", f"-DBK={bk}",
                                 "-cl-mad-enable"))
        elif prog_key == "float":
            prg = self._program("float", K.FLOAT_OPS)
        elif prog_key == "generic":
            opts = [f"-DT={ctype}"]
            if ctype == "double":
                opts.insert(0, "-DUSE_FP64")
            prg = self._program("generic", _fp64_pragma(ctype) + K.GENERIC_OPS, tuple(opts))
        elif prog_key == "cast":
            s, d, to_bool = src_dst
            opts = (f"-DSRC={s}", f"-DDST={d}") + (("-DTO_BOOL",) if to_bool else ())
            prg = self._program("cast", _fp64_pragma(s, d) + K.CAST, opts)
        else:  # pragma: no cover - internal
            raise BackendError(f"unknown OpenCL program {prog_key!r}")
        knl = cl.Kernel(prg, name)
        knl.set_scalar_arg_dtypes(list(argtypes))
        self._kernels[kk] = knl
        return knl

    def _wg_size(self, knl) -> int:
        """Work-group size for 1-D launches: 256 (or the kernel's limit). PoCL's own choice for
        ``local_size=None`` measured up to 2× slower (LRN, GEMV on AlexNet shapes)."""
        wg = self._wg_cache.get(knl)
        if wg is None:
            limit = knl.get_work_group_info(cl.kernel_work_group_info.WORK_GROUP_SIZE, self.device)
            wg = self._wg_cache[knl] = max(1, min(256, int(limit)))
        return wg

    def _launch1d(self, knl, n: int, *args) -> None:
        wg = self._wg_size(knl)
        knl(self.queue, (_ceil_to(n, wg),), (wg,), *args)

    # --------------------------------------------------------------------------------- memory
    def _empty(self, shape: Sequence[int], dtype=np.float32) -> CLTensor:
        dtype = np.dtype(dtype)
        shape = tuple(int(d) for d in shape)
        nbytes = max(int(np.prod(shape, dtype=np.int64)) * dtype.itemsize, 4)
        if self._mempool is not None and nbytes >= self.mem_pool_min_bytes:
            buf = self._mempool.allocate(nbytes)
        else:
            buf = cl.Buffer(self.ctx, cl.mem_flags.READ_WRITE, nbytes)
        return CLTensor(buf, shape, dtype)

    def upload(self, array: np.ndarray) -> CLTensor:
        """Device copy of a host array (zero copy on CPU devices: do not modify the array afterwards).

        float64 arrays are stored as float32, the runtime's compute type; other dtypes are kept.
        """
        arr = np.asarray(array)
        if arr.dtype == np.float64:
            arr = arr.astype(np.float32)
        if arr.dtype.name not in _CTYPES:
            raise InputError(f"cannot upload dtype {arr.dtype} to {self.name}; supported: {sorted(_CTYPES)}")
        arr = np.require(arr, requirements=["C", "A"])
        mf = cl.mem_flags
        if arr.nbytes == 0:
            return self._empty(arr.shape, arr.dtype)
        if self.zero_copy:
            buf = cl.Buffer(self.ctx, mf.READ_ONLY | mf.USE_HOST_PTR, hostbuf=arr)
            return CLTensor(buf, tuple(arr.shape), arr.dtype, host=arr)
        if self._mempool is not None and arr.nbytes >= self.mem_pool_min_bytes:
            t = self._empty(arr.shape, arr.dtype)
            cl.enqueue_copy(self.queue, t.buf, arr)
            return t
        buf = cl.Buffer(self.ctx, mf.READ_ONLY | mf.COPY_HOST_PTR, hostbuf=arr)
        return CLTensor(buf, tuple(arr.shape), arr.dtype)

    def download(self, handle: CLTensor) -> np.ndarray:
        out = np.empty(handle.shape, dtype=handle.dtype)
        if out.nbytes:
            cl.enqueue_copy(self.queue, out, handle.buf)
        return out

    def synchronize(self) -> None:
        if self.sync == "finish":
            self.queue.finish()
            return
        ev = cl.enqueue_marker(self.queue)
        self.queue.flush()
        done = cl.command_execution_status.COMPLETE
        while True:
            status = ev.command_execution_status
            if status == done:
                return
            if status < 0:
                raise BackendError(f"OpenCL command failed on {self.name} (execution status {status})")

    def mark(self):
        """Enqueue a marker on the (in-order) queue and return its event, or None without profiling.

        The marker completes once every command enqueued before it has; its completion time, read with
        :meth:`mark_time_ns` after the queue has drained past it (after :meth:`synchronize` or a blocking
        :meth:`download`), is the device-clock time at which that earlier work was done.

        Example
        -------
        >>> be = OpenCLBackend(0)                                                  # doctest: +SKIP
        >>> m0 = be.mark(); y = be.run("Relu", [x], {}); m1 = be.mark()            # doctest: +SKIP
        >>> be.synchronize(); (be.mark_time_ns(m1) - be.mark_time_ns(m0)) / 1e3   # µs  # doctest: +SKIP
        """
        if not self.profiling:
            return None
        return cl.enqueue_marker(self.queue)

    @staticmethod
    def mark_time_ns(event) -> int:
        """Device-clock completion time (ns) of a marker from :meth:`mark`; waits for it if still pending."""
        event.wait()
        return int(event.profile.end)

    def shape_of(self, handle: CLTensor) -> tuple[int, ...]:
        return handle.shape

    def dtype_of(self, handle: CLTensor) -> np.dtype:
        return handle.dtype

    def _meta(self, values: Sequence[int]):
        """A small read-only int buffer of shape/stride metadata, cached by value (shapes repeat every run)."""
        key = tuple(int(v) for v in values)
        buf = self._meta_cache.get(key)
        if buf is None:
            arr = np.asarray(key, dtype=np.int32)
            buf = cl.Buffer(self.ctx, cl.mem_flags.READ_ONLY | cl.mem_flags.COPY_HOST_PTR, hostbuf=arr)
            if len(self._meta_cache) < 4096:
                self._meta_cache[key] = buf
        return buf

    # --------------------------------------------------------------------------------------- run
    def supports(self, op_type: str, attrs: dict | None = None) -> bool:
        return op_type in CANONICAL_OPS

    def run(self, op_type: str, inputs: Sequence[Any], attrs: dict) -> list[CLTensor]:
        fn = self._ops.get(op_type)
        if fn is None:
            raise self._unsupported(op_type)
        if op_type in _FLOAT_ONLY:
            for h in inputs:
                if h is not None and h.dtype != np.float32:
                    raise UnsupportedOpError(
                        f"{op_type} on {self.name} takes float32 tensors only, got {h.dtype} "
                        f"(shape {h.shape}); cast first"
                    )
        if op_type in ("Relu", "Sigmoid", "Tanh", "LeakyRelu", "Clip", "Softmax", "LogSoftmax", "MaxPool",
                       "AveragePool", "GlobalAveragePool", "GlobalMaxPool", "Add", "Sub", "Mul", "Div"):
            return fn(inputs, attrs, op_type)
        return fn(inputs, attrs)

    # ----------------------------------------------------------------------------------- GEMM core
    def _gemm_call(self, M: int, N: int, Kd: int, a: CLTensor, a_off: int, lda: int,
                   b: CLTensor, b_off: int, ldb: int, c: CLTensor, c_off: int, ldc: int,
                   bias: CLTensor | None = None, bias_off: int = 0, bias_sm: int = 0, bias_sn: int = 0,
                   alpha: float = 1.0, beta: float = 1.0, bounds: tuple[float, float] | None = None,
                   b_packed: bool = False, a_packed: bool = False) -> None:
        """``C = act(alpha·A@B + beta·bias)``; A, B row-major (lda, ldb) or already packed in panels."""
        i32, f32 = np.int32, np.float32
        gemm_types = [i32, i32, i32, None, i32, i32, None, i32, i32, None, i32, i32,
                      None, i32, i32, i32, i32, f32, f32, f32, f32]
        lo, hi = bounds if bounds is not None else (-np.inf, np.inf)
        if self.gemm_variant == "blocked":
            knl = self._kernel("gemm", "gemm", gemm_types)
            if not b_packed:
                b, b_off = self._pack(b, b_off, ldb, 1, Kd, N), 0
            if not a_packed and M < _GEMV_ROWS:
                gemv = self._kernel("gemm", "gemv", [i32, i32, None, i32, None, i32, None, i32, None,
                                                     i32, i32, i32, f32, f32, f32, f32])
                bias_buf = bias.buf if bias is not None else a.buf
                # one 16-column panel per work-group, as the GEMM below: with 16 panels per group a GEMV of a
                # few hundred columns made 2–3 groups, and the 2 cores here finished 3 groups in the time of 4
                # (K = 4096 on PoCL: 717 columns 396 → 343 µs, 358 columns 240 → 214 µs; 4096 columns unchanged)
                for m in range(M):
                    gemv(self.queue, ((N + 15) // 16,), (1,), N, Kd, a.buf, a_off + m * lda, b.buf, b_off,
                         c.buf, c_off + m * ldc, bias_buf, bias_off + m * bias_sm, bias_sn,
                         int(bias is not None), alpha, beta, lo, hi)
                return
            if not a_packed:
                a, a_off = self._pack_a(a, a_off, lda, 1, M, Kd), 0
            # one panel per work-group: with the local size left to the driver, PoCL groups the panel grid into
            # a few large work-groups whose count depends on how the panel counts factor, so a GEMM's time
            # jumped with its row count (3×3 conv, 256 channels → r filters over 13×13 on this 2-core VM: 1.4 ms
            # at r = 192, 2.4 ms at r = 256, 1.9 ms at r = 384); one-panel groups give every core work at every
            # size (1.3, 1.5, 1.9 ms) and a latency that grows smoothly with the work, as cost models assume
            gsize, lsize = ((N + _PANEL_N - 1) // _PANEL_N, (M + _PANEL_M - 1) // _PANEL_M), (1, 1)
        else:
            if b_packed or a_packed:  # pragma: no cover - internal misuse
                raise BackendError("packed operands are only produced for the blocked GEMM")
            self._gemm_tiled(M, N, Kd, a, a_off, lda, b, b_off, ldb, c, c_off, ldc, bias, bias_off, bias_sm,
                             bias_sn, alpha, beta, lo, hi)
            return
        bias_buf = bias.buf if bias is not None else a.buf
        knl(self.queue, gsize, lsize, M, N, Kd, a.buf, a_off, lda, b.buf, b_off, ldb, c.buf, c_off, ldc,
            bias_buf, bias_off, bias_sm, bias_sn, int(bias is not None), alpha, beta, lo, hi)

    def _gemm_tiled(self, M, N, Kd, a, a_off, lda, b, b_off, ldb, c, c_off, ldc, bias, bias_off, bias_sm,
                    bias_sn, alpha, beta, lo, hi) -> None:
        """The GPU GEMM: register-blocked tiles; split-K when the tile grid leaves compute units idle;
        a split-K GEMV for at most 8 rows. Split partials go through a workspace and ``splitk_reduce``."""
        i32, f32 = np.int32, np.float32
        bias_buf = bias.buf if bias is not None else a.buf
        has_bias = int(bias is not None)
        if M <= _GPU_GEMV_ROWS and self.split_k:
            # enough work-items (~2048 per compute unit) through K chunks of at least 64
            # (four columns per work-item with float4 loads measured no faster on an H200: 720 vs 754 GFLOP/s)
            s = max(1, min(-(-2048 * self.compute_units // max(N, 1)), -(-Kd // 64)))
            kchunk = -(-Kd // s) if Kd else 1
            s = max(1, -(-Kd // kchunk)) if Kd else 1
            ws = self._workspace(s * M * N * 4)
            knl = self._kernel("gemm-tiled", "gemv_part", [i32, i32, i32, None, i32, i32, None, i32, i32, None, i32],
                               ctype=self.tile_for(M, N))
            knl(self.queue, (_ceil_to(N, 64), s), (64, 1), M, N, Kd, a.buf, a_off, lda, b.buf, b_off, ldb, ws, kchunk)
            self._splitk_reduce(ws, s, M, N, c, c_off, ldc, bias_buf, bias_off, bias_sm, bias_sn, has_bias,
                                alpha, beta, lo, hi)
            return
        tile = self.tile_for(M, N)
        tm, tn, wm, wn, bk = tile
        knl = self._kernel("gemm-tiled", "gemm", [i32, i32, i32, None, i32, i32, None, i32, i32, None, i32, i32,
                                                  None, i32, i32, i32, i32, f32, f32, f32, f32, i32], ctype=tile)
        lsize = (tn // wn, tm // wm)
        wgs = max(1, -(-N // tn)) * max(1, -(-M // tm))
        s = 1
        if self.split_k and wgs < self.compute_units and Kd >= self.split_k_min_k:
            s = min(-(-2 * self.compute_units // wgs), Kd // _SPLIT_K_MIN)
        kchunk = -(-(-(-Kd // s)) // bk) * bk if Kd else bk
        s = max(1, -(-Kd // kchunk))
        gsize = (max(1, -(-N // tn)) * lsize[0], max(1, -(-M // tm)) * lsize[1], s)
        if s == 1:
            knl(self.queue, gsize, lsize + (1,), M, N, Kd, a.buf, a_off, lda, b.buf, b_off, ldb, c.buf, c_off, ldc,
                bias_buf, bias_off, bias_sm, bias_sn, has_bias, alpha, beta, lo, hi, kchunk)
            return
        ws = self._workspace(s * M * N * 4)
        knl(self.queue, gsize, lsize + (1,), M, N, Kd, a.buf, a_off, lda, b.buf, b_off, ldb, ws, 0, N,
            a.buf, 0, 0, 0, 0, 1.0, 0.0, -np.inf, np.inf, kchunk)
        self._splitk_reduce(ws, s, M, N, c, c_off, ldc, bias_buf, bias_off, bias_sm, bias_sn, has_bias,
                            alpha, beta, lo, hi)

    def _splitk_reduce(self, ws, s, M, N, c, c_off, ldc, bias_buf, bias_off, bias_sm, bias_sn, has_bias,
                       alpha, beta, lo, hi) -> None:
        i32, f32 = np.int32, np.float32
        knl = self._kernel("gemm-tiled", "splitk_reduce", [None, i32, i32, None, i32, i32, i32, None, i32, i32,
                                                           i32, i32, f32, f32, f32, f32], ctype=self.tile_for(M, N))
        self._launch1d(knl, M * N, c.buf, c_off, ldc, ws, s, M, N, bias_buf, bias_off, bias_sm, bias_sn,
                       has_bias, alpha, beta, lo, hi)

    def _workspace(self, nbytes: int):
        """Split-K partials (apart from the im2col scratch, which may hold the GEMM's B operand)."""
        if self._ws is None or self._ws.size < nbytes:
            self._ws = cl.Buffer(self.ctx, cl.mem_flags.READ_WRITE, max(nbytes, 4))
        return self._ws

    def tile_for(self, M: int, N: int) -> tuple[int, int, int, int, int]:
        """Tile ``(TM, TN, WM, WN, BK)`` of the tiled GEMM for an ``M × N`` output: ``gemm_tile`` when set,
        else the largest of :data:`TILE_CONFIGS` whose grid has at least one work-group per compute unit
        (the smallest when none has)."""
        if self.gemm_tile is not None:
            return self.gemm_tile
        configs = sorted(TILE_CONFIGS.values(), key=lambda c: -c[0] * c[1])
        for cfg in configs:
            if -(-M // cfg[0]) * -(-N // cfg[1]) >= self.compute_units:
                return cfg
        return configs[-1]

    def _pack_a(self, a: CLTensor, a_off: int, sm: int, sk: int, M: int, Kd: int,
                out: CLTensor | None = None, out_off: int = 0) -> CLTensor:
        """A (element (m, k) at a_off + m·sm + k·sk) in the blocked GEMM's 6-row panel layout."""
        total = (M + _PANEL_M - 1) // _PANEL_M * _PANEL_M * Kd
        if out is None:
            out = self._empty((total,))
        knl = self._kernel("gemm", "pack_a", [None, np.int32, None] + [np.int32] * 6)
        self._launch1d(knl, total, out.buf, out_off, a.buf, a_off, sm, sk, M, Kd, total)
        return out

    def _pack(self, b: CLTensor, b_off: int, sk: int, sn: int, Kd: int, N: int) -> CLTensor:
        """B (element (k, n) at b_off + k·sk + n·sn) in the blocked GEMM's 16-column panels (N padded to 32)."""
        total = (N + _PANEL_N - 1) // _PANEL_N * _PANEL_N * Kd
        out = self._empty((total,))
        knl = self._kernel("gemm", "pack_b", [None, None] + [np.int32] * 6)
        self._launch1d(knl, total, out.buf, b.buf, b_off, sk, sn, Kd, N, total)
        return out

    def _transposed2d(self, t: CLTensor) -> CLTensor:
        """Transpose of a 2-D tensor, cached on the tensor (weights are transposed once)."""
        cached = t.derived.get("T")
        if cached is None:
            cached = self._transpose([t], {"perm": (1, 0)})[0]
            t.derived["T"] = cached
        return cached

    def _gemm(self, inputs, attrs):
        a, b = inputs[0], inputs[1]
        c = inputs[2] if len(inputs) > 2 else None
        trans_b = bool(attrs.get("transB", 0))
        trans_a = bool(attrs.get("transA", 0))
        M, Kd = a.shape[::-1] if trans_a else a.shape
        Kb, N = b.shape[::-1] if trans_b else b.shape
        if Kb != Kd:
            raise InputError(f"Gemm inner dimensions differ: A {a.shape} vs B {b.shape} "
                             f"(transB={int(trans_b)}) on {self.name}")
        if self.gemm_variant == "blocked":
            # A packed straight from its (possibly transposed) layout (few rows: row-major for the GEMV
            # kernel); B packed once per B tensor
            if M >= _GEMV_ROWS:
                a, a_packed = self._pack_a(a, 0, 1 if trans_a else Kd, M if trans_a else 1, M, Kd), True
            else:
                a, a_packed = (self._transposed2d(a) if trans_a else a), False
            key = ("packed", trans_b)
            bb = b.derived.get(key)
            if bb is None:
                bb = b.derived[key] = self._pack(b, 0, 1 if trans_b else N, Kd if trans_b else 1, Kd, N)
            packed = True
        else:
            bb, packed = (self._transposed2d(b) if trans_b else b), False
            a, a_packed = (self._transposed2d(a) if trans_a else a), False
        out = self._empty((M, N))
        beta = float(attrs.get("beta", 1.0))
        sm = sn = 0
        if c is not None:
            cs = c.shape
            if len(cs) > 2 or not all(d in (1, t) for d, t in zip(cs[::-1], (N, M))):
                raise InputError(f"Gemm C of shape {cs} does not broadcast to {(M, N)}")
            if len(cs) >= 1 and cs[-1] > 1:
                sn = 1
            if len(cs) == 2 and cs[0] > 1:
                sm = cs[-1]
        self._gemm_call(M, N, Kd, a, 0, Kd, bb, 0, N, out, 0, N, c if (c is not None and beta != 0.0) else None,
                        0, sm, sn, float(attrs.get("alpha", 1.0)), beta,
                        fused_bounds(attrs), b_packed=packed, a_packed=a_packed)
        return [out]

    def _matmul(self, inputs, attrs):
        a, b = inputs[0], inputs[1]
        ash, bsh = list(a.shape), list(b.shape)
        a_vec, b_vec = len(ash) == 1, len(bsh) == 1
        if a_vec:
            ash = [1] + ash
        if b_vec:
            bsh = bsh + [1]
        M, Kd = ash[-2:]
        Kb, N = bsh[-2:]
        if Kb != Kd:
            raise InputError(f"MatMul inner dimensions differ: {a.shape} vs {b.shape} on {self.name}")
        batch = tuple(np.broadcast_shapes(tuple(ash[:-2]), tuple(bsh[:-2])))
        out = self._empty(batch + (M, N))
        bounds = fused_bounds(attrs)

        def bstrides(shape, mat):
            full = [1] * (len(batch) - len(shape)) + list(shape)
            st = _contiguous_strides(full + [1])[:-1]
            return [s * mat if d > 1 else 0 for d, s in zip(full, st)]

        sa, sb = bstrides(ash[:-2], M * Kd), bstrides(bsh[:-2], Kd * N)
        if self.gemm_variant == "blocked" and len(bsh) == 2:
            # a 2-D B (typically a weight, e.g. RLC's MatMul(A, U_r)) is packed once and kept on the handle
            bp = b.derived.get(("packed", False))
            if bp is None:
                bp = b.derived[("packed", False)] = self._pack(b, 0, N, 1, Kd, N)
            for idx in np.ndindex(*batch) if batch else [()]:
                ao = sum(i * s for i, s in zip(idx, sa))
                oo = int(np.ravel_multi_index(idx, batch)) * M * N if batch else 0
                self._gemm_call(M, N, Kd, a, ao, Kd, bp, 0, N, out, oo, N, bounds=bounds, b_packed=True)
            out.shape = batch + ((M,) if not a_vec else ()) + ((N,) if not b_vec else ())
            return [out]
        for idx in np.ndindex(*batch) if batch else [()]:
            ao = sum(i * s for i, s in zip(idx, sa))
            bo = sum(i * s for i, s in zip(idx, sb))
            oo = int(np.ravel_multi_index(idx, batch)) * M * N if batch else 0
            self._gemm_call(M, N, Kd, a, ao, Kd, b, bo, N, out, oo, N, bounds=bounds)
        shape = batch + ((M,) if not a_vec else ()) + ((N,) if not b_vec else ())
        out.shape = shape
        return [out]

    # ------------------------------------------------------------------------------------ conv
    def _scratch_buf(self, nbytes: int):
        if self._scratch is None or self._scratch.size < nbytes:
            self._scratch = cl.Buffer(self.ctx, cl.mem_flags.READ_WRITE, max(nbytes, 4))
        return self._scratch

    def _conv(self, inputs, attrs):
        x, w = inputs[0], inputs[1]
        b = inputs[2] if len(inputs) > 2 else None
        if len(x.shape) != 4:
            raise InputError(f"Conv on {self.name} needs a 4-D NCHW input, got shape {x.shape}")
        n, c, h, wd = x.shape
        cout, cg, kh, kw = w.shape
        g = int(attrs["group"])
        sh, sw = (int(s) for s in attrs["strides"])
        dh, dw = (int(d) for d in attrs["dilations"])
        pads = [int(p) for p in attrs["pads"]]
        oh, ow = conv_output_hw((h, wd), (kh, kw), (sh, sw), pads, (dh, dw))
        bounds = fused_bounds(attrs)
        lo, hi = bounds if bounds is not None else (-np.inf, np.inf)
        out = self._empty((n, cout, oh, ow))
        i32 = np.int32
        if g == c and cg == 1 and cout % c == 0:
            knl = self._kernel("float", "dwconv", [None, None, None, None] + [i32] * 15 + [np.float32, np.float32, i32])
            total = n * cout * oh * ow
            self._launch1d(knl, total, out.buf, x.buf, w.buf, (b if b is not None else w).buf, int(b is not None),
                           c, h, wd, oh, ow, kh, kw, sh, sw, pads[0], pads[1], dh, dw, cout // c, lo, hi, total)
            return [out]
        ohw = oh * ow
        cog = cout // g
        kdim = cg * kh * kw
        if self.gemm_variant == "blocked":
            # im2col straight into the GEMM's panel layout, every group at once
            pan = (ohw + _PANEL_N - 1) // _PANEL_N * _PANEL_N * kdim
            cols_t = CLTensor(self._scratch_buf(g * pan * 4), (g * pan,), np.dtype(np.float32))
            im2col = self._kernel("gemm", "im2col_packed", [None, None] + [i32] * 15)
            apan = (cog + _PANEL_M - 1) // _PANEL_M * _PANEL_M * kdim
            wp = w.derived.get(("packA", g))
            if wp is None:  # the weight, packed per group once per handle
                wp = self._empty((g * apan,))
                for gi in range(g):
                    self._pack_a(w, gi * cog * kdim, kdim, 1, cog, kdim, out=wp, out_off=gi * apan)
                w.derived[("packA", g)] = wp
            for i in range(n):
                rows = g * pan // 16
                self._launch1d(im2col, rows, cols_t.buf, x.buf, i * c * h * wd, cg, h, wd, oh, ow, kh, kw,
                               sh, sw, pads[0], pads[1], dh, dw, rows)
                for gi in range(g):
                    self._gemm_call(cog, ohw, kdim, wp, gi * apan, kdim, cols_t, gi * pan, ohw,
                                    out, (i * cout + gi * cog) * ohw, ohw, b, gi * cog, 1, 0, 1.0, 1.0, bounds,
                                    b_packed=True, a_packed=True)
            return [out]
        direct = g == 1 and kh == 1 and kw == 1 and sh == 1 and sw == 1 and not any(pads)
        if not direct:
            cols_t = CLTensor(self._scratch_buf(c * kh * kw * ohw * 4), (c * kh * kw, ohw), np.dtype(np.float32))
            im2col = self._kernel("float", "im2col", [None, None] + [i32] * 15)
        for i in range(n):
            if direct:
                src, src_off = x, i * c * h * wd
            else:
                total = c * kh * kw * ohw
                self._launch1d(im2col, total, cols_t.buf, x.buf, i * c * h * wd, c, h, wd, oh, ow, kh, kw,
                               sh, sw, pads[0], pads[1], dh, dw, total)
                src, src_off = cols_t, 0
            for gi in range(g):
                self._gemm_call(cog, ohw, kdim, w, gi * cog * kdim, kdim, src, src_off + gi * kdim * ohw, ohw,
                                out, (i * cout + gi * cog) * ohw, ohw, b, gi * cog, 1, 0, 1.0, 1.0, bounds)
        return [out]

    # ------------------------------------------------------------------------------ other float ops
    def _unary(self, inputs, attrs, op_type):
        x = inputs[0]
        code = {"Relu": 0, "Sigmoid": 1, "Tanh": 2, "LeakyRelu": 3, "Clip": 4}[op_type]
        p0 = p1 = 0.0
        if op_type == "LeakyRelu":
            p0 = float(attrs["alpha"])
        elif op_type == "Clip":
            p0, p1 = float(attrs.get("min", -np.inf)), float(attrs.get("max", np.inf))
        out = self._empty(x.shape)
        knl = self._kernel("float", "unary", [None, None, np.int32, np.float32, np.float32, np.int32])
        self._launch1d(knl, x.size, out.buf, x.buf, code, p0, p1, x.size)
        return [out]

    def _batchnorm(self, inputs, attrs):
        x, scale, bias, mean, var = inputs[:5]
        out = self._empty(x.shape)
        hw = int(np.prod(x.shape[2:], dtype=np.int64))
        knl = self._kernel("float", "batchnorm", [None] * 6 + [np.float32, np.int32, np.int32, np.int32])
        self._launch1d(knl, x.size, out.buf, x.buf, scale.buf, bias.buf, mean.buf, var.buf,
                       float(attrs["epsilon"]), x.shape[1], hw, x.size)
        return [out]

    def _softmax(self, inputs, attrs, op_type):
        x = inputs[0]
        axis = int(attrs["axis"])
        shape = x.shape
        outer = int(np.prod(shape[:axis], dtype=np.int64))
        if attrs.get("legacy", False):
            dim, inner = int(np.prod(shape[axis:], dtype=np.int64)), 1
        else:
            dim, inner = int(shape[axis]), int(np.prod(shape[axis + 1:], dtype=np.int64))
        out = self._empty(shape)
        if inner == 1 and dim >= _SOFTMAX_ROW_MIN:
            # one work-group per row: a long row (a classifier's 1000 classes) is not one work-item's loop
            knl = self._kernel("float", "softmax_rows", [None, None, np.int32, np.int32])
            knl(self.queue, (outer * _SOFTMAX_WG,), (_SOFTMAX_WG,), out.buf, x.buf, dim, int(op_type == "LogSoftmax"))
            return [out]
        knl = self._kernel("float", "softmax", [None, None, np.int32, np.int32, np.int32, np.int32])
        self._launch1d(knl, outer * inner, out.buf, x.buf, dim, inner, int(op_type == "LogSoftmax"), outer * inner)
        return [out]

    def _pool(self, inputs, attrs, op_type):
        x = inputs[0]
        if len(x.shape) != 4:
            raise InputError(f"{op_type} on {self.name} needs a 4-D NCHW input, got shape {x.shape}")
        n, c, h, w = x.shape
        kh, kw = (int(k) for k in attrs["kernel_shape"])
        sh, sw = (int(s) for s in attrs["strides"])
        pads = [int(p) for p in attrs["pads"]]
        is_max = op_type == "MaxPool"
        dh, dw = (int(d) for d in attrs.get("dilations", (1, 1))) if is_max else (1, 1)
        oh, ow = pool_output_hw((h, w), (kh, kw), (sh, sw), pads, (dh, dw), int(attrs.get("ceil_mode", 0)))
        mode = 0 if is_max else (2 if int(attrs.get("count_include_pad", 0)) else 1)
        out = self._empty((n, c, oh, ow))
        knl = self._kernel("float", "pool2d", [None, None] + [np.int32] * 16)
        total = n * c * oh * ow
        self._launch1d(knl, total, out.buf, x.buf, h, w, oh, ow, kh, kw, sh, sw, *pads, dh, dw, mode, total)
        return [out]

    def _gpool(self, inputs, attrs, op_type):
        x = inputs[0]
        nc = int(x.shape[0] * x.shape[1])
        hw = int(np.prod(x.shape[2:], dtype=np.int64))
        out = self._empty(tuple(x.shape[:2]) + (1,) * (len(x.shape) - 2))
        knl = self._kernel("float", "gpool", [None, None, np.int32, np.int32, np.int32])
        self._launch1d(knl, nc, out.buf, x.buf, hw, int(op_type == "GlobalMaxPool"), nc)
        return [out]

    def _lrn(self, inputs, attrs):
        x = inputs[0]
        hw = int(np.prod(x.shape[2:], dtype=np.int64))
        out = self._empty(x.shape)
        knl = self._kernel("float", "lrn", [None, None, np.int32, np.int32, np.int32, np.float32, np.float32,
                                            np.float32, np.int32])
        self._launch1d(knl, x.size, out.buf, x.buf, x.shape[1], hw, int(attrs["size"]), float(attrs["alpha"]),
                       float(attrs["beta"]), float(attrs["bias"]), x.size)
        return [out]

    # ------------------------------------------------------------------------ generic (any dtype)
    def _ctype(self, dtype: np.dtype) -> str:
        ct = _CTYPES.get(np.dtype(dtype).name)
        if ct is None:
            raise UnsupportedOpError(f"dtype {dtype} is not supported on {self.name}; supported: {sorted(_CTYPES)}")
        return ct

    def _binary(self, inputs, attrs, op_type):
        a, b = inputs[0], inputs[1]
        if a.dtype != b.dtype:
            raise InputError(f"{op_type} operands differ in dtype ({a.dtype} vs {b.dtype}) on {self.name}")
        code = {"Add": 0, "Sub": 1, "Mul": 2, "Div": 3}[op_type]
        bounds = fused_bounds(attrs)
        if bounds is not None and a.dtype == np.float32:  # the fused Relu/Clip in the same kernel
            return [self._binary_op(a, b, code, bounds)]
        return [self._binary_op(a, b, code)]

    def _activate(self, t: CLTensor, attrs: dict) -> CLTensor:
        """A fused Relu/Clip on an element-wise result: a separate clamp pass (float32 only)."""
        bounds = fused_bounds(attrs)
        if bounds is None or t.dtype != np.float32:
            return t
        return self._unary([t], {"min": bounds[0], "max": bounds[1]}, "Clip")[0]

    def _binary_op(self, a: CLTensor, b: CLTensor, code: int,
                   bounds: tuple[float, float] | None = None) -> CLTensor:
        """``a (op code) b`` with broadcasting; with ``bounds`` (float32 only) the result is clamped to them in
        the same kernel (a fused Relu/Clip: the ``*_act`` kernels, which take ``lo, hi`` after ``op``)."""
        ct = self._ctype(a.dtype)
        i32 = np.int32
        act, act_types = ("_act", [np.float32, np.float32]) if bounds is not None else ("", [])
        act_args = tuple(bounds or ())
        shape = tuple(np.broadcast_shapes(a.shape, b.shape))
        out = self._empty(shape, a.dtype)
        n = out.size
        if a.shape == b.shape:
            knl = self._kernel("generic", f"binary_same{act}", [None, None, None, i32, *act_types, i32], ctype=ct)
            self._launch1d(knl, n, out.buf, a.buf, b.buf, code, *act_args, n)
            return out
        rank = len(shape)
        if rank > _MAXR:
            raise UnsupportedOpError(f"broadcasting beyond rank {_MAXR} on {self.name}: {a.shape} vs {b.shape}")

        def bst(s):
            full = (1,) * (rank - len(s)) + tuple(s)
            st = _contiguous_strides(full)
            return [0 if d == 1 else x for d, x in zip(full, st)]

        pad = [0] * (_MAXR - rank)
        meta = list(shape) + pad + bst(a.shape) + pad + bst(b.shape) + pad
        knl = self._kernel("generic", f"binary{act}", [None, None, None, i32, *act_types, i32, None, i32], ctype=ct)
        self._launch1d(knl, n, out.buf, a.buf, b.buf, code, *act_args, rank, self._meta(meta), n)
        return out

    def _sum(self, inputs, attrs):
        acc = inputs[0]
        for t in inputs[1:]:
            acc = self._binary_op(acc, t, 0)
        return [self._activate(acc, attrs) if len(inputs) > 1 else acc]

    def _reshape(self, inputs, attrs):
        x = inputs[0]
        shape = tuple(int(d) for d in attrs["shape"])
        if int(np.prod(shape, dtype=np.int64)) != x.size:
            raise InputError(f"Reshape of {x.shape} to {shape}: element counts differ")
        return [CLTensor(x.buf, shape, x.dtype, host=x.host)]

    def _transpose(self, inputs, attrs):
        x = inputs[0]
        perm = [int(p) for p in attrs["perm"]]
        rank = len(x.shape)
        if rank > _MAXR:
            raise UnsupportedOpError(f"Transpose beyond rank {_MAXR} on {self.name}: shape {x.shape}")
        oshape = tuple(x.shape[p] for p in perm)
        st = _contiguous_strides(x.shape)
        pad = [0] * (_MAXR - rank)
        meta = list(oshape) + pad + [st[p] for p in perm] + pad
        out = self._empty(oshape, x.dtype)
        knl = self._kernel("generic", "permute", [None, None, np.int32, None, np.int32], ctype=self._ctype(x.dtype))
        self._launch1d(knl, out.size, out.buf, x.buf, rank, self._meta(meta), out.size)
        return [out]

    def _concat(self, inputs, attrs):
        axis = int(attrs["axis"])
        first = inputs[0]
        shape = list(first.shape)
        shape[axis] = sum(int(t.shape[axis]) for t in inputs)
        out = self._empty(shape, first.dtype)
        inner = int(np.prod(shape[axis + 1:], dtype=np.int64))
        total_cols = shape[axis] * inner
        knl = self._kernel("generic", "copy2d", [None, None, np.int32, np.int32, np.int32, np.int32],
                           ctype=self._ctype(first.dtype))
        off = 0
        for t in inputs:
            if t.dtype != first.dtype:
                raise InputError(f"Concat inputs differ in dtype ({first.dtype} vs {t.dtype}) on {self.name}")
            cols = int(t.shape[axis]) * inner
            if t.size:
                self._launch1d(knl, t.size, out.buf, t.buf, cols, total_cols, off, t.size)
            off += cols
        return [out]

    def _pad(self, inputs, attrs):
        x = inputs[0]
        pads = [int(p) for p in attrs["pads"]]
        rank = len(x.shape)
        if len(pads) != 2 * rank:
            raise InputError(f"Pad needs {2 * rank} pads for a rank-{rank} input, got {pads}")
        if rank > _MAXR:
            raise UnsupportedOpError(f"Pad beyond rank {_MAXR} on {self.name}: shape {x.shape}")
        mode = {"constant": 0, "reflect": 1, "edge": 2}.get(attrs.get("mode", "constant"))
        if mode is None:
            raise InputError(f"Pad mode {attrs.get('mode')!r} is not one of 'constant', 'reflect', 'edge'")
        oshape = tuple(d + pads[i] + pads[i + rank] for i, d in enumerate(x.shape))
        pad = [0] * (_MAXR - rank)
        meta = (list(oshape) + pad + list(x.shape) + pad + _contiguous_strides(x.shape) + pad
                + pads[:rank] + pad)
        out = self._empty(oshape, x.dtype)
        knl = self._kernel("generic", "pad", [None, None, np.int32, None, np.int32, np.float32, np.int32],
                           ctype=self._ctype(x.dtype))
        self._launch1d(knl, out.size, out.buf, x.buf, rank, self._meta(meta), mode,
                       float(attrs.get("value", 0.0)), out.size)
        return [out]

    def _cast(self, inputs, attrs):
        x = inputs[0]
        to = np.dtype(attrs["to"])
        if to == x.dtype:
            return [x]
        src, dst = self._ctype(x.dtype), self._ctype(to)
        out = self._empty(x.shape, to)
        knl = self._kernel("cast", "cast", [None, None, np.int32], src_dst=(src, dst, to == np.bool_))
        self._launch1d(knl, x.size, out.buf, x.buf, x.size)
        return [out]


def _check_tile(tile: str | Sequence[int]) -> tuple[int, int, int, int, int]:
    """A validated ``(TM, TN, WM, WN, BK)`` from a :data:`TILE_CONFIGS` key or a 5-tuple."""
    if isinstance(tile, str):
        if tile not in TILE_CONFIGS:
            raise BackendError(f"gemm_tile {tile!r} is not one of {sorted(TILE_CONFIGS)} nor a 5-tuple")
        return TILE_CONFIGS[tile]
    try:
        tm, tn, wm, wn, bk = (int(v) for v in tile)
    except (TypeError, ValueError):
        raise BackendError(f"gemm_tile must be a key of {sorted(TILE_CONFIGS)} or (TM, TN, WM, WN, BK), "
                           f"got {tile!r}") from None
    ok = (min(tm, tn, wm, wn, bk) > 0 and wm % 4 == 0 and wn % 4 == 0 and tm % wm == 0 and tn % wn == 0
          and (tm // wm) * (tn // wn) <= 1024)
    if not ok:
        raise BackendError(f"gemm_tile {tile!r}: need WM, WN multiples of 4 dividing TM, TN and at most "
                           f"1024 work-items (TM/WM · TN/WN)")
    return tm, tn, wm, wn, bk


def _fp64_pragma(*ctypes: str | None) -> str:
    return "#pragma OPENCL EXTENSION cl_khr_fp64 : enable\n" if "double" in ctypes else ""
