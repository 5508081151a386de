"""Run a ModelGraph with its layers placed on processors, and measure what happens.

:func:`execute_graph` runs one worker thread per processor (the calling thread serves the first one). A layer is queued on its processor's worker once
every layer it reads from has finished; on each processor, ready layers run in plan order (``priority``,
default: the model's topological order). A tensor that crosses processors is downloaded to the host by the
producer's worker (once per tensor) and uploaded by each consumer's worker; those copies are counted in
bytes and timed apart from the blocks. Weights are uploaded once per processor before anything is timed.

Per-block times depend on the backend. On a backend with timed queue markers (OpenCL, whose queue is
created with ``PROFILING_ENABLE``: ``mark()``/``mark_time_ns()``) a block's ops are enqueued without
waiting: a marker before them (or the previous block's end marker, when the block follows it on the same
in-order queue with no host wait in between) and one after them bound the block, and the block's time is
the device-clock span between the two markers' completions — the time the queue took to get through the
block, including any time the device waited for the host to enqueue it. The host waits on the queue only
where a tensor crosses to another processor or back to the host (a graph output), and once at the end of
the run, when the markers are read; device times are mapped onto the host clock through a marker taken
with the queue drained at the start of the run. On other backends (numpy ``cpu``) each block is
synchronised after its ops and timed with the host clock. ``block_timing="sync"`` times every backend that
way (the host waits for each block): per-block figures are then reproducible — with markers a small block
reads either its kernels' time (the host ran ahead) or the host's enqueue time (the device waited), e.g.
2 µs or 55 µs for the same PoCL block in two runs — which is what calibration and validation need. The
end-to-end latency of a repeat runs from
the moment the graph inputs are handed to the workers until every graph output is back on the host and
every queue has drained.

Memory: ``peak_rss_bytes`` is the process's peak resident set size during the timed repeats — the kernel's
high-water mark, reset before them (``mem_source="rss-hwm"``), or ``/proc/self/statm`` sampled every 5 ms
where that reset is not allowed (``"rss-sampled"``). It includes everything the process holds (Python,
libraries, zero-copy OpenCL buffers on CPU devices). ``peak_live_bytes`` is exact and per processor: the largest total
of resident weights plus live activations the executor held there (activations are dropped after their last
reader).

Energy: measured only through NVML's total-energy counter when ``pynvml`` imports and an NVIDIA OpenCL device
is used (``energy_source="nvml"``); otherwise ``energy_uj`` is ``None`` and ``energy_source="none"`` (model
it from a profile instead). The counter updates only every ~20–100 ms, so the timed runs continue for at
least ``energy_window_s`` between two observed counter updates; ``energy_uj`` is the total board energy
per run, ``energy_dynamic_uj`` the part above the idle power measured before the runs (see RunReport).

Example
-------
>>> import numpy as np
>>> from deepx_opt import zoo
>>> from deepx_opt.graphs import load_onnx
>>> m = load_onnx(zoo.build("speakerid"))                               # doctest: +SKIP
>>> x = {n: np.zeros(t.shape, t.dtype) for n, t in m.inputs.items()}   # doctest: +SKIP
>>> outs, report = execute_graph(m, {v: "cpu" for v in m.layers()}, x)  # doctest: +SKIP
>>> report.latency_us > 0                                               # doctest: +SKIP
True
"""

from __future__ import annotations

import heapq
import json
import os
import statistics
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np

from deepx_opt.errors import BackendUnavailableError, InputError, PlanError
from deepx_opt.runtime.backends.base import (
    FUSED_ACTIVATION_ATTR,
    Backend,
    relayout_weight,
    available_backends,
    canonical_processor_name,
    get_backend,
)

__all__ = ["RunReport", "BlockRecord", "TransferRecord", "execute_graph", "execute", "block_steps"]

_REPORT_FORMAT = "deepx_opt.run_report"
_REPORT_VERSION = 1
_FUSABLE = ("Conv", "Gemm", "MatMul", "Add", "Sub", "Mul", "Div", "Sum")


# ------------------------------------------------------------------------------------------- report
@dataclass
class BlockRecord:
    """One block's measurement: median over repeats, plus its place in the last repeat's timeline.

    On OpenCL the times come from queue markers (device clock; see the module notes), elsewhere from the
    host clock around the block's ops and a synchronisation.
    """

    layer: str
    processor: str
    latency_us: float
    start_us: float
    finish_us: float
    latencies_us: list[float] = field(default_factory=list)


@dataclass
class TransferRecord:
    """One cross-processor copy of the last repeat (device → host → device)."""

    tensor: str
    src_layer: str
    dst_layer: str
    src_processor: str
    dst_processor: str
    bytes: int
    latency_us: float


@dataclass
class RunReport:
    """What :func:`execute_graph` measured (JSON round-trip with :meth:`to_json` / :meth:`from_json`).

    Latencies in µs; ``latency_us`` is the median end-to-end latency over ``repeat`` timed runs,
    ``latency_us_min``/``latency_us_max``/``latency_us_iqr`` its spread and ``latencies_us`` every run.
    ``transfer_bytes`` and ``transfer_us`` are per run (cross-processor edges only); ``input_bytes`` /
    ``output_bytes`` are the host → processor and processor → host copies of graph inputs and outputs.
    ``predicted`` holds the plan's predictions when the run came from :func:`execute`.

    Energy (``energy_source="nvml"``): ``energy_uj`` is the *total* board energy of the NVIDIA GPU(s) per
    run, averaged over ``energy_runs`` back-to-back runs spanning ``energy_window_s`` seconds (at least
    the ``repeat`` runs). ``idle_power_w`` is the board's idle power measured just before (warm-up
    excluded), ``energy_idle_uj`` = idle power × wall time per run, and ``energy_dynamic_uj`` =
    ``energy_uj − energy_idle_uj``, the energy above idle that the run caused. All None/0 without NVML.
    """

    model: str
    placement: dict[str, str]
    processors: list[str]
    repeat: int
    warmup: int
    latency_us: float
    latency_us_min: float
    latency_us_max: float
    latency_us_iqr: float
    latencies_us: list[float]
    blocks: dict[str, BlockRecord]
    transfers: list[TransferRecord]
    transfer_bytes: int
    transfer_us: float
    input_bytes: int
    output_bytes: int
    weight_bytes: dict[str, int]
    weight_upload_us: dict[str, float]
    peak_live_bytes: dict[str, int]
    peak_rss_bytes: int
    mem_source: str
    energy_uj: float | None
    energy_source: str
    predicted: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    energy_idle_uj: float | None = None
    energy_dynamic_uj: float | None = None
    idle_power_w: float | None = None
    energy_runs: int = 0
    energy_window_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["format"] = _REPORT_FORMAT
        d["version"] = _REPORT_VERSION
        return d

    def to_json(self, *, indent: int | None = None) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "RunReport":
        if d.get("format") != _REPORT_FORMAT or d.get("version") != _REPORT_VERSION:
            raise InputError(
                f"not a deepx_opt run report: format={d.get('format')!r} version={d.get('version')!r}; "
                f"expected {_REPORT_FORMAT!r} version {_REPORT_VERSION}"
            )
        kw = {k: v for k, v in d.items() if k not in ("format", "version")}
        kw["blocks"] = {k: BlockRecord(**v) for k, v in kw["blocks"].items()}
        kw["transfers"] = [TransferRecord(**t) for t in kw["transfers"]]
        return cls(**kw)

    @classmethod
    def from_json(cls, text: str) -> "RunReport":
        return cls.from_dict(json.loads(text))

    def summary(self) -> str:
        """A few human-readable lines."""
        lines = [
            f"{self.model}: {self.latency_us / 1e3:.3f} ms median over {self.repeat} runs "
            f"(min {self.latency_us_min / 1e3:.3f}, max {self.latency_us_max / 1e3:.3f}) on {', '.join(self.processors)}",
            f"cross-processor copies: {self.transfer_bytes} B in {self.transfer_us:.0f} us per run; "
            f"peak RSS {self.peak_rss_bytes / 2**20:.1f} MiB; energy "
            + (f"{self.energy_uj:.0f} uJ per run ({self.energy_source}, total board"
               + (f"; {self.energy_dynamic_uj:.0f} uJ above the {self.idle_power_w:.1f} W idle"
                  if self.energy_dynamic_uj is not None else "") + ")"
               if self.energy_uj is not None else "not measured"),
        ]
        return "\n".join(lines)


# ------------------------------------------------------------------------------------- measurements
class _PeakRss:
    """Peak resident set size over a ``with`` block.

    On Linux the kernel's high-water mark is reset on entry (``5`` → ``/proc/self/clear_refs``) and read
    from ``VmHWM`` on exit: exact, no sampling (``source = "rss-hwm"``). Where that is not permitted,
    ``/proc/self/statm`` is sampled every 5 ms in a daemon thread (``source = "rss-sampled"``).
    """

    def __init__(self, period_s: float = 5e-3) -> None:
        self.period_s = period_s
        self.peak = 0
        self.source = "rss-hwm"
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @staticmethod
    def _rss() -> int:
        try:
            with open("/proc/self/statm") as fh:
                return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, ValueError):
            import resource

            return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024

    @staticmethod
    def _hwm() -> int | None:
        try:
            with open("/proc/self/status") as fh:
                for line in fh:
                    if line.startswith("VmHWM:"):
                        return int(line.split()[1]) * 1024
        except (OSError, ValueError):
            pass
        return None

    def _loop(self) -> None:
        while not self._stop.wait(self.period_s):
            self.peak = max(self.peak, self._rss())

    def __enter__(self) -> "_PeakRss":
        try:
            with open("/proc/self/clear_refs", "w") as fh:
                fh.write("5")
            if self._hwm() is None:
                raise OSError("no VmHWM")
        except OSError:
            self.source = "rss-sampled"
            self.peak = self._rss()
            self._thread = threading.Thread(target=self._loop, name="deepx-rss", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self.peak = max(self.peak, self._rss())
        else:
            self.peak = self._hwm() or self._rss()


class _NvmlEnergy:
    """Board energy of the NVIDIA GPUs behind the used OpenCL devices, from NVML's total-energy counter.

    The counter (mJ) advances only every ~20–100 ms, so reading it around a few millisecond-long runs
    quantises to zero or to a whole update's worth. :meth:`measure` therefore starts at an observed counter
    update, keeps running timed repeats until at least ``window_s`` has passed (and ``min_runs`` ran), then
    runs on until the counter updates again and divides the energy between the two updates by the runs in
    between (error about one run's share, e.g. < 0.5 % for a 3 ms run over 1 s). :meth:`idle_power_w`
    measures the idle board power the same way over a quiet window.

    ``read_mj``/``power_mw``/``clock``/``sleep`` replace NVML and the clock (tests drive a simulated counter).
    """

    def __init__(self, backends: Sequence[Backend] = (), *, read_mj=None, power_mw=None,
                 clock=time.perf_counter, sleep=time.sleep) -> None:
        self.handles: list = []
        self.reason = "no NVIDIA OpenCL device in the placement"
        self._clock, self._sleep = clock, sleep
        self._read_mj, self._power_mw = read_mj, power_mw
        if read_mj is not None:
            self.handles = ["injected"]
            return
        nvidia = [b for b in backends if b.kind == "gpu" and "nvidia" in getattr(getattr(b, "info", None), "label", "").lower()]
        if not nvidia:
            return
        try:
            import pynvml

            pynvml.nvmlInit()
            # OpenCL does not expose the PCI bus id portably; with one NVIDIA GPU per process (the usual
            # case) the order of NVIDIA devices in the OpenCL platform matches NVML's index order.
            count = pynvml.nvmlDeviceGetCount()
            handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(min(count, len(nvidia)))]
            self._read_mj = lambda: sum(float(pynvml.nvmlDeviceGetTotalEnergyConsumption(h)) for h in handles)
            self._power_mw = lambda: sum(float(pynvml.nvmlDeviceGetPowerUsage(h)) for h in handles)
            self._read_mj()
            self.handles = handles
        except Exception as exc:  # ImportError, NVMLError, missing counter support
            self.handles = []
            self.reason = f"NVML unavailable ({type(exc).__name__}: {exc})"

    def read(self) -> float:
        """Total-energy counter, µJ."""
        return self._read_mj() * 1e3

    def power_mw(self) -> float | None:
        """NVML's own power reading (mW; on recent GPUs an average over the last second), or None."""
        try:
            return self._power_mw() if self._power_mw is not None else None
        except Exception:  # NVMLError: not supported
            return None

    def wait_tick(self, timeout_s: float = 0.5, poll_s: float = 1e-3) -> tuple[float, float, bool]:
        """Poll until the counter changes: ``(value_uj, time_s, ticked)`` (``ticked`` False on timeout)."""
        e_prev = self.read()
        t_end = self._clock() + timeout_s
        while True:
            e, t = self.read(), self._clock()
            if e != e_prev:
                return e, t, True
            if t >= t_end:
                return e, t, False
            self._sleep(poll_s)

    def idle_power_w(self, window_s: float = 0.3) -> float:
        """Mean board power with nothing submitted, over ≥ ``window_s`` between two counter updates."""
        e0, t0, _ = self.wait_tick()
        while self._clock() - t0 < window_s:
            self._sleep(min(0.01, window_s))
        e1, t1, _ = self.wait_tick()
        return (e1 - e0) / 1e6 / max(t1 - t0, 1e-9)

    def measure(self, run, min_runs: int, window_s: float, max_extra_s: float = 0.5) -> dict[str, Any]:
        """Call ``run()`` back to back from one counter update until ≥ ``window_s`` and ≥ ``min_runs``
        runs, then until the next update. Returns runs, seconds, energy_uj (total over the runs) and
        whether both ends were counter updates (``aligned``)."""
        e0, t0, ok0 = self.wait_tick()
        n, e_w, t_w = 0, None, None
        while True:
            run()
            n += 1
            now = self._clock()
            if n < min_runs or now - t0 < window_s:
                continue
            e = self.read()
            if e_w is None:
                e_w, t_w = e, now
            elif e != e_w:
                return dict(runs=n, seconds=now - t0, energy_uj=e - e0, aligned=ok0)
            if now - t_w > max_extra_s:
                return dict(runs=n, seconds=now - t0, energy_uj=e - e0, aligned=False)


# ----------------------------------------------------------------------------------------- execution
@dataclass
class _Layer:
    name: str
    index: int
    processor: str
    ops: list
    inputs: list[str]
    outputs: list[str]
    successors: list[str]
    n_preds: int
    weights: list[str]


@dataclass
class _Step:
    op_type: str
    inputs: list[str]
    outputs: list[str]
    attrs: dict


def _prepare_steps(ops: Sequence, outputs: Sequence[str], weights: Mapping[str, np.ndarray],
                   extra_weights: dict[str, np.ndarray], layer: str,
                   weight_layout: str | None = None) -> list[tuple[str, list[str], list[str], dict]]:
    """The block's ops as the executor runs them, with three exact-in-real-arithmetic rewrites:

    1. ``Conv → BatchNormalization`` with constant conv weight/bias and BN parameters becomes one Conv whose
       weights are scaled per output channel (``W·s``, ``(B − mean)·s + bias`` with ``s = scale/√(var+ε)``,
       computed in float64 once; the new weights go to ``extra_weights``);
    2. ``Conv/Gemm/MatMul/Add/Sub/Mul/Div/Sum → Relu|Clip`` becomes the main op with ``fused_activation``.

    3. with ``weight_layout`` (the processor's :attr:`~deepx_opt.runtime.backends.base.Backend.gemm_weight_layout`),
       the constant 2-D weight of a ``Gemm``/``MatMul`` is stored the way that backend computes it fastest
       (:func:`~deepx_opt.runtime.backends.base.relayout_weight`; the copy, ``<weight>.<layout>``, goes to
       ``extra_weights`` and replaces the original on that processor).

    A pair merges only when the second op reads the first one's only output and nothing else (no later
    op, no block output) reads that intermediate tensor.
    """
    steps = [_Step(op.op_type, list(op.inputs), list(op.outputs), dict(op.attrs)) for op in ops]

    def sole_reader(i: int) -> bool:
        first, nxt = steps[i], steps[i + 1]
        if len(first.outputs) != 1:
            return False
        t = first.outputs[0]
        return (nxt.inputs[:1] == [t] and t not in nxt.inputs[1:] and t not in outputs
                and not any(t in later.inputs for later in steps[i + 2:]))

    i = 0
    while i + 1 < len(steps):
        conv, bn = steps[i], steps[i + 1]
        has_bias = len(conv.inputs) > 2 and conv.inputs[2]
        if (conv.op_type == "Conv" and bn.op_type == "BatchNormalization" and sole_reader(i)
                and conv.inputs[1] in weights and (not has_bias or conv.inputs[2] in weights)
                and all(t in weights for t in bn.inputs[1:5])):
            scale, bias, mean, var = (weights[t].astype(np.float64) for t in bn.inputs[1:5])
            s = scale / np.sqrt(var + float(bn.attrs["epsilon"]))
            w = weights[conv.inputs[1]].astype(np.float64)
            b0 = weights[conv.inputs[2]].astype(np.float64) if has_bias else 0.0
            wn, bn_name = f"{layer}/{bn.outputs[0]}.folded_w", f"{layer}/{bn.outputs[0]}.folded_b"
            extra_weights[wn] = (w * s.reshape(-1, 1, 1, 1)).astype(np.float32)
            extra_weights[bn_name] = ((b0 - mean) * s + bias).astype(np.float32)
            steps[i:i + 2] = [_Step("Conv", [conv.inputs[0], wn, bn_name], list(bn.outputs), conv.attrs)]
            continue
        i += 1
    i = 0
    while i + 1 < len(steps):
        main, act = steps[i], steps[i + 1]
        if (main.op_type in _FUSABLE and act.op_type in ("Relu", "Clip") and sole_reader(i)
                and FUSED_ACTIVATION_ATTR not in main.attrs):
            attrs = dict(main.attrs, **{FUSED_ACTIVATION_ATTR: act.op_type})
            if act.op_type == "Clip":
                attrs["fused_min"] = float(act.attrs.get("min", -np.inf))
                attrs["fused_max"] = float(act.attrs.get("max", np.inf))
            steps[i:i + 2] = [_Step(main.op_type, main.inputs, act.outputs, attrs)]
        i += 1
    for st in steps if weight_layout else ():
        w = st.inputs[1] if st.op_type in ("Gemm", "MatMul") and len(st.inputs) > 1 else None
        arr = extra_weights.get(w, weights.get(w)) if w else None
        if arr is None:
            continue
        moved = relayout_weight(st.op_type, st.attrs, arr, weight_layout)
        if moved is not None:
            name = f"{w}.{weight_layout}"
            st.attrs = moved[0]
            extra_weights.setdefault(name, moved[1])
            st.inputs = [st.inputs[0], name] + st.inputs[2:]
    return [(st.op_type, st.inputs, st.outputs, st.attrs) for st in steps]


def block_steps(model, layer: str, weight_layout: str | None = None
                ) -> tuple[list[tuple[str, list[str], list[str], dict]], dict[str, np.ndarray]]:
    """The ops the executor runs for one block, and the weights its rewrites create.

    Returns ``(steps, extra_weights)``: ``steps`` are ``(op_type, inputs, outputs, attrs)`` after
    Conv+BN folding, Relu/Clip fusion and, with ``weight_layout`` (the processor backend's
    ``gemm_weight_layout``), the GEMM weights re-laid out (see :func:`_prepare_steps`); input names are looked
    up in the activations, ``model.weights`` or ``extra_weights``. Cost-model calibration uses this to time
    exactly what execution runs.
    """
    d = model.layer(layer)
    extra: dict[str, np.ndarray] = {}
    return _prepare_steps(d["ops"], d["outputs"], model.weights, extra, layer, weight_layout), extra


def _validate_inputs(model, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    missing = [n for n in model.inputs if n not in inputs]
    if missing:
        raise InputError(f"missing graph input(s) {missing}; model {model.name!r} expects {list(model.inputs)}")
    extra = [n for n in inputs if n not in model.inputs]
    if extra:
        raise InputError(f"unknown input(s) {extra}; model {model.name!r} expects {list(model.inputs)}")
    out = {}
    for name, info in model.inputs.items():
        arr = inputs[name]
        if not isinstance(arr, np.ndarray):
            raise InputError(f"input {name!r} must be a numpy.ndarray, got {type(arr).__name__}")
        if tuple(arr.shape) != tuple(info.shape) or arr.dtype != np.dtype(info.dtype):
            raise InputError(
                f"input {name!r}: expected shape {tuple(info.shape)} dtype {info.dtype}, "
                f"got shape {tuple(arr.shape)} dtype {arr.dtype}"
            )
        out[name] = np.ascontiguousarray(arr)
    return out


def _resolve_placement(model, placement: Mapping[str, str]) -> dict[str, str]:
    layers = model.layers()
    missing = [v for v in layers if v not in placement]
    if missing:
        raise PlanError(f"placement has no processor for layer(s) {missing[:10]}"
                        f"{' ...' if len(missing) > 10 else ''} of model {model.name!r}")
    unknown = [v for v in placement if v not in model.dag]
    if unknown:
        raise PlanError(f"placement names layer(s) {unknown[:10]} that model {model.name!r} does not have")
    canon: dict[str, str] = {}
    cache: dict[str, str] = {}
    for v in layers:
        p = placement[v]
        if p not in cache:
            try:
                cache[p] = canonical_processor_name(p)
            except BackendUnavailableError as exc:
                raise BackendUnavailableError(
                    f"layer {v!r} is placed on processor {p!r}, which this machine lacks; "
                    f"available: {', '.join(available_backends())} ({exc})"
                ) from None
        canon[v] = cache[p]
    return canon


#: Seconds of back-to-back runs between the idle-power reading and an energy window (NVIDIA GPUs lower
#: their clocks within a fraction of a second of idling).
ENERGY_RAMP_S = 0.2


class _Executor:
    def __init__(self, model, placement: dict[str, str], backends: dict[str, Backend],
                 priority: Mapping[str, float] | None, block_timing: str = "auto") -> None:
        self.model = model
        self.block_timing = block_timing
        self.backends = backends
        self.placement = placement
        order = model.layers()
        prio = {v: (float(priority[v]) if priority and v in priority else float(i), i) for i, v in enumerate(order)}
        self.producer: dict[str, str] = {}
        for v in order:
            for t in model.layer(v)["outputs"]:
                self.producer[t] = v
            for op in model.layer(v)["ops"]:
                for t in op.outputs:
                    self.producer.setdefault(t, v)
        preds_of = {v: sorted({self.producer[t] for t in model.layer(v)["inputs"] if t in self.producer} - {v})
                    for v in order}
        succ_of: dict[str, list[str]] = {v: [] for v in order}
        for v, ps in preds_of.items():
            for u in ps:
                succ_of[u].append(v)
        self.layers: dict[str, _Layer] = {}
        self.extra_weights: dict[str, np.ndarray] = {}  # folded Conv+BN weights
        for v in order:
            d = model.layer(v)
            preds = preds_of[v]
            steps = _prepare_steps(d["ops"], d["outputs"], model.weights, self.extra_weights, v,
                                   getattr(backends.get(placement[v]), "gemm_weight_layout", None))
            used = sorted({t for _, ins, _, _ in steps for t in ins
                           if t and (t in model.weights or t in self.extra_weights)})
            self.layers[v] = _Layer(
                name=v, index=order.index(v), processor=placement[v],
                ops=steps, inputs=list(d["inputs"]), outputs=list(d["outputs"]),
                successors=succ_of[v], n_preds=len(preds), weights=used,
            )
        self.prio = prio
        # readers: per tensor, the layers that read it (graph outputs get an extra host reader)
        self.readers: dict[str, list[str]] = {}
        for v, lay in self.layers.items():
            for t in lay.inputs:
                self.readers.setdefault(t, []).append(v)
        self.graph_outputs = list(model.outputs)
        self.weights: dict[str, dict[str, Any]] = {p: {} for p in backends}
        self.weight_bytes = {p: 0 for p in backends}
        self.weight_upload_us = {p: 0.0 for p in backends}

    # -------------------------------------------------------------------------------- weights
    def upload_weights(self) -> None:
        for p, be in self.backends.items():
            names = sorted({w for lay in self.layers.values() if lay.processor == p for w in lay.weights})
            t0 = time.perf_counter()
            for w in names:
                arr = self.extra_weights[w] if w in self.extra_weights else self.model.weights[w]
                self.weights[p][w] = be.upload(arr)
                self.weight_bytes[p] += int(arr.nbytes)
            be.synchronize()
            self.weight_upload_us[p] = (time.perf_counter() - t0) * 1e6

    # ---------------------------------------------------------------------------------- one run
    def run_once(self, host_inputs: dict[str, np.ndarray]) -> dict[str, Any]:
        lock = threading.Lock()
        done = threading.Event()
        queues: dict[str, list] = {p: [] for p in self.backends}
        conds = {p: threading.Condition(lock) for p in self.backends}
        remaining_preds = {v: lay.n_preds for v, lay in self.layers.items()}
        env: dict[str, dict[str, Any]] = {p: {} for p in self.backends}  # processor -> tensor -> handle
        host: dict[str, np.ndarray] = dict(host_inputs)  # tensors on the host (graph inputs, crossings)
        pending_readers = {t: len(r) for t, r in self.readers.items()}
        live = {p: 0 for p in self.backends}
        peak_live = {p: 0 for p in self.backends}
        state = {"left": len(self.layers), "error": None}
        blocks: dict[str, tuple[float, float]] = {}
        transfers: list[TransferRecord] = []
        counters = {"input_bytes": 0, "output_bytes": 0}
        outputs: dict[str, np.ndarray] = {}
        download_us: dict[str, float] = {}  # producer-side half of each crossing
        # processors timed with queue markers; last_mark[p]: the end marker of the block last enqueued
        # on p, while no host wait came after it (read and written by p's worker only)
        marked = {p: be for p, be in self.backends.items()
                  if self.block_timing == "auto"
                  and getattr(be, "profiling", False) and callable(getattr(be, "mark", None))}
        last_mark: dict[str, Any] = {p: None for p in marked}
        clock_ref: dict[str, tuple[float, int]] = {}  # p -> (host s, device ns) of one instant

        def nbytes(be, h) -> int:
            return int(np.prod(be.shape_of(h), dtype=np.int64)) * be.dtype_of(h).itemsize

        def push(v: str) -> None:  # lock held
            lay = self.layers[v]
            heapq.heappush(queues[lay.processor], (self.prio[v], v))
            conds[lay.processor].notify()

        def fetch_input(p: str, be: Backend, lay: _Layer, t: str) -> Any:
            """Handle of tensor t on processor p, copying it across when it lives elsewhere."""
            h = env[p].get(t)
            if h is not None:
                return h
            if t in self.model.weights:  # a weight read as an activation input (rare)
                h = self.weights[p].get(t)
                return h if h is not None else be.upload(self.model.weights[t])
            src_layer = self.producer.get(t)
            src_proc = self.layers[src_layer].processor if src_layer else None
            t0 = time.perf_counter()
            with lock:
                arr = host.get(t)
            if arr is None:
                raise PlanError(f"tensor {t!r} read by layer {lay.name!r} was never produced")
            h = be.upload(arr)
            be.synchronize()
            dt = (time.perf_counter() - t0) * 1e6
            if p in marked:
                last_mark[p] = None
            size = int(arr.nbytes)
            with lock:
                env[p][t] = h
                live[p] += size
                peak_live[p] = max(peak_live[p], live[p])
                if src_layer is None:
                    counters["input_bytes"] += size
                else:
                    transfers.append(TransferRecord(t, src_layer, lay.name, src_proc, p, size, dt))
            return h

        # On processors timed by queue markers a block has only been *enqueued* when its worker moves on: a
        # handle dropped then may still be read by a pending kernel, and a zero-copy buffer's host memory
        # would be freed under it. Such handles (and host arrays, which may back them) are kept until the
        # queues are drained at the end of the run.
        graveyard: list = []

        def release(t: str) -> None:  # lock held: drop a tensor everywhere once its last reader finished
            for p, e in env.items():
                h = e.pop(t, None)
                if h is not None:
                    live[p] -= nbytes(self.backends[p], h)
                    if p in marked:
                        graveyard.append(h)
            arr = host.pop(t, None)
            if arr is not None and marked:
                graveyard.append(arr)

        def run_layer(p: str, be: Backend, lay: _Layer) -> None:
            handles = {t: fetch_input(p, be, lay, t) for t in lay.inputs}
            wts = self.weights[p]
            timed = p in marked
            if timed:
                m0 = last_mark[p] if last_mark[p] is not None else be.mark()
            else:
                t0 = time.perf_counter()
            local = dict(handles)
            for op_type, ins, outs, attrs in lay.ops:
                args = []
                for t in ins:
                    if not t:
                        args.append(None)
                    elif t in local:
                        args.append(local[t])
                    elif t in wts:
                        args.append(wts[t])
                    else:
                        raise PlanError(f"op {op_type} of layer {lay.name!r} reads {t!r}, which is neither an "
                                        f"input of the block, an earlier op's output nor a weight")
                res = be.run(op_type, args, attrs)
                local.update(zip(outs, res))
            if timed:
                m1 = last_mark[p] = be.mark()
                blocks[lay.name] = (p, m0, m1)  # resolved to host times after the run
            else:
                be.synchronize()
                t1 = time.perf_counter()
                blocks[lay.name] = (None, t0, t1)
            # publish outputs; copy to the host those read on other processors or that are graph outputs
            produced = {t: local[t] for t in lay.outputs}
            to_host = [t for t in lay.outputs
                       if t in self.graph_outputs
                       or any(self.layers[r].processor != p for r in self.readers.get(t, []))]
            if timed and to_host:  # wait for the block here so that the copies' times are copies only
                be.synchronize()
                last_mark[p] = None
            host_copies, dts = {}, {}
            for t in to_host:
                c0 = time.perf_counter()
                host_copies[t] = be.download(produced[t])
                dts[t] = (time.perf_counter() - c0) * 1e6
            with lock:
                for t, h in produced.items():
                    if t not in self.readers and t not in self.graph_outputs:
                        continue
                    env[p][t] = h
                    live[p] += nbytes(be, h)
                peak_live[p] = max(peak_live[p], live[p])
                for t in to_host:
                    host[t] = host_copies[t]
                    download_us[t] = dts[t]
                    if t in self.graph_outputs:
                        outputs[t] = host_copies[t]
                        counters["output_bytes"] += int(host_copies[t].nbytes)
                for t in lay.inputs:
                    if t in pending_readers:
                        pending_readers[t] -= 1
                        if pending_readers[t] == 0 and t not in self.graph_outputs:
                            release(t)
                for s in lay.successors:
                    remaining_preds[s] -= 1
                    if remaining_preds[s] == 0:
                        push(s)
                state["left"] -= 1
                if state["left"] == 0:
                    done.set()
                    for c in conds.values():
                        c.notify_all()

        def worker(p: str) -> None:
            be = self.backends[p]
            while True:
                with lock:
                    while not queues[p] and not done.is_set():
                        conds[p].wait()
                        if p in marked:  # the queue may have drained while waiting: next block, new marker
                            last_mark[p] = None
                    if state["error"] is not None or (done.is_set() and not queues[p]):
                        return
                    _, v = heapq.heappop(queues[p])
                try:
                    run_layer(p, be, self.layers[v])
                except BaseException as exc:  # report in the caller's thread
                    with lock:
                        if state["error"] is None:
                            state["error"] = exc
                        done.set()
                        for c in conds.values():
                            c.notify_all()
                    return

        # the calling thread is the worker of the first processor (no hand-off at start and end, which
        # costs a scheduler time slice on a busy machine); the others get threads, started (and idle)
        # before the clock starts
        procs = list(self.backends)
        threads = [threading.Thread(target=worker, args=(p,), name=f"deepx-{p}", daemon=True) for p in procs[1:]]
        for th in threads:
            th.start()
        for p, be in marked.items():  # host/device clock pair, taken with the queue drained
            h0 = time.perf_counter()
            m = be.mark()
            be.synchronize()
            h1 = time.perf_counter()
            clock_ref[p] = ((h0 + h1) / 2, be.mark_time_ns(m))
        t_start = time.perf_counter()
        with lock:
            for v, n in remaining_preds.items():
                if n == 0:
                    push(v)
        worker(procs[0])
        done.wait()
        for th in threads:
            th.join()
        for be in marked.values():
            be.synchronize()
        t_end = time.perf_counter()
        graveyard.clear()
        if state["error"] is not None:
            raise state["error"]

        def be_ns(p: str, mark) -> int:
            return self.backends[p].mark_time_ns(mark)

        def host_s(p: str, mark) -> float:
            h_ref, d_ref = clock_ref[p]
            return h_ref + (be_ns(p, mark) - d_ref) * 1e-9

        spans = {}
        for v, (p, a, b) in blocks.items():
            if p is None:
                spans[v] = ((a - t_start) * 1e6, (b - t_start) * 1e6)
            else:  # device span exact; its place on the host timeline within the clock pairing's error
                start_us = max(0.0, (host_s(p, a) - t_start) * 1e6)
                spans[v] = (start_us, start_us + (be_ns(p, b) - be_ns(p, a)) / 1e3)
        # a crossing's time = producer's download + consumer's upload
        for tr in transfers:
            tr.latency_us += download_us.get(tr.tensor, 0.0)
        return {
            "latency_us": (t_end - t_start) * 1e6,
            "blocks": spans,
            "transfers": transfers,
            "outputs": outputs,
            "peak_live": peak_live,
            **counters,
        }


def execute_graph(model, placement: Mapping[str, str], inputs: Mapping[str, np.ndarray], *, repeat: int = 1,
                  warmup: int = 1, backend_options: Mapping[str, Mapping[str, Any]] | None = None,
                  priority: Mapping[str, float] | None = None,
                  energy_window_s: float = 1.0, block_timing: str = "auto",
                  measure_energy: bool = True) -> tuple[dict[str, np.ndarray], RunReport]:
    """Run ``model`` with each layer on the processor ``placement`` names; return outputs and a report.

    Parameters
    ----------
    model : ModelGraph
        From :func:`deepx_opt.graphs.load_onnx` (optionally with RLC ranks applied).
    placement : mapping layer → processor name
        ``"cpu"``, ``"opencl:0"``, ``"opencl:<name substring>"``; every layer must be placed.
    inputs : mapping input name → numpy array
        Exactly the model's graph inputs, with their shapes and dtypes.
    repeat, warmup : int
        Timed runs (≥ 1) and untimed runs before them (≥ 0).
    backend_options : mapping processor → options, optional
        Options for a dedicated backend instance, e.g. ``{"cpu": {"threads": 1}}``.
    priority : mapping layer → number, optional
        Order among ready layers of one processor (lower first), e.g. a plan's start times.
    energy_window_s : float
        When NVML energy is measured: timed runs continue until at least this long (and ``repeat`` runs)
        so that the coarse energy counter resolves one run (latency statistics use the first ``repeat``).
    block_timing : {"auto", "sync"}
        ``"auto"``: queue markers where the backend has them (no host wait between blocks); ``"sync"``: the
        host synchronises and clocks every block (reproducible per-block times; see the module docstring).
    measure_energy : bool
        Read NVML energy when an NVIDIA device is used (default). False skips it: no idle-power reading (a
        0.3 s pause that lets the GPU clock down) and no energy window, for latency-only measurements.

    Returns
    -------
    (dict[str, numpy.ndarray], RunReport)
        Graph outputs of the last run, and the measurements.

    Raises
    ------
    InputError
        A missing/unknown input, or one of the wrong shape or dtype (the message names it).
    BackendUnavailableError
        A processor this machine lacks (the message lists those it has).
    PlanError
        A placement that misses layers or names unknown ones.
    """
    if int(repeat) < 1 or int(warmup) < 0:
        raise InputError(f"repeat must be >= 1 and warmup >= 0, got repeat={repeat}, warmup={warmup}")
    if block_timing not in ("auto", "sync"):
        raise InputError(f"block_timing {block_timing!r}; accepted: 'auto', 'sync'")
    host_inputs = _validate_inputs(model, inputs)
    canon = _resolve_placement(model, placement)
    options = {canonical_processor_name(k): dict(v) for k, v in (backend_options or {}).items()}
    procs = sorted(set(canon.values()), key=lambda p: (p != "cpu", p))
    backends = {p: (get_backend(p, **options[p]) if options.get(p) else get_backend(p)) for p in procs}
    ex = _Executor(model, canon, backends, priority, block_timing)
    ex.upload_weights()
    energy = _NvmlEnergy(list(backends.values()) if measure_energy else [])
    if not measure_energy:
        energy.reason = "energy not requested (measure_energy=False)"
    runs = []
    meas = None
    idle_w = idle_nvml_mw = None
    if energy.handles:
        idle_nvml_mw = energy.power_mw()
        idle_w = energy.idle_power_w(min(0.3, max(float(energy_window_s), 0.05)))
    t_warm = time.perf_counter()
    for _ in range(int(warmup)):
        ex.run_once(host_inputs)
    if energy.handles:  # the idle reading let the GPU clock down: run until it is back up before measuring
        while time.perf_counter() - t_warm < ENERGY_RAMP_S:
            ex.run_once(host_inputs)
    with _PeakRss() as rss:
        if energy.handles:
            def one() -> None:
                r = ex.run_once(host_inputs)
                if len(runs) < int(repeat):
                    runs.append(r)

            meas = energy.measure(one, int(repeat), float(energy_window_s))
        else:
            for _ in range(int(repeat)):
                runs.append(ex.run_once(host_inputs))
    lat = [r["latency_us"] for r in runs]
    last = runs[-1]
    per_block = {v: [r["blocks"][v][1] - r["blocks"][v][0] for r in runs] for v in model.layers()}
    blocks = {
        v: BlockRecord(layer=v, processor=canon[v], latency_us=float(statistics.median(ts)),
                       start_us=float(last["blocks"][v][0]), finish_us=float(last["blocks"][v][1]),
                       latencies_us=[float(t) for t in ts])
        for v, ts in per_block.items()
    }
    q = np.percentile(lat, [25, 75]) if len(lat) > 1 else (lat[0], lat[0])
    peak_live = {p: ex.weight_bytes[p] + max(r["peak_live"][p] for r in runs) for p in procs}
    notes = []
    energy_fields: dict[str, Any] = {}
    if meas is None:
        notes.append(f"energy not measured: {energy.reason}")
    else:
        per_run_s = meas["seconds"] / meas["runs"]
        e_run = meas["energy_uj"] / meas["runs"]
        e_idle = idle_w * per_run_s * 1e6
        energy_fields = dict(energy_uj=float(e_run), energy_idle_uj=float(e_idle),
                             energy_dynamic_uj=float(e_run - e_idle), idle_power_w=float(idle_w),
                             energy_runs=int(meas["runs"]), energy_window_s=float(meas["seconds"]))
        notes.append(f"energy: NVML board energy over {meas['runs']} runs in {meas['seconds']:.3f} s "
                     f"({meas['energy_uj'] / 1e6 / meas['seconds']:.1f} W mean), idle {idle_w:.1f} W "
                     f"(NVML power reading before the runs: "
                     + (f"{idle_nvml_mw / 1e3:.1f} W)" if idle_nvml_mw is not None else "n/a)")
                     + ("" if meas["aligned"] else "; the counter did not update at both ends of the window"))
    report = RunReport(
        model=model.name,
        placement=dict(canon),
        processors=procs,
        repeat=int(repeat),
        warmup=int(warmup),
        latency_us=float(statistics.median(lat)),
        latency_us_min=float(min(lat)),
        latency_us_max=float(max(lat)),
        latency_us_iqr=float(q[1] - q[0]),
        latencies_us=[float(x) for x in lat],
        blocks=blocks,
        transfers=list(last["transfers"]),
        transfer_bytes=int(sum(t.bytes for t in last["transfers"])),
        transfer_us=float(sum(t.latency_us for t in last["transfers"])),
        input_bytes=int(last["input_bytes"]),
        output_bytes=int(last["output_bytes"]),
        weight_bytes=dict(ex.weight_bytes),
        weight_upload_us=dict(ex.weight_upload_us),
        peak_live_bytes=peak_live,
        peak_rss_bytes=int(rss.peak),
        mem_source=rss.source,
        energy_uj=energy_fields.pop("energy_uj", None),
        energy_source="nvml" if meas is not None else "none",
        notes=notes,
        **energy_fields,
    )
    return dict(last["outputs"]), report


def execute(plan, model, inputs: Mapping[str, np.ndarray], *, processor_map: Mapping[str, str] | None = None,
            repeat: int = 1, warmup: int = 1, rlc_method: str = "weight",
            backend_options: Mapping[str, Mapping[str, Any]] | None = None,
            factorizers: Mapping[str, Any] | None = None,
            energy_window_s: float = 1.0, block_timing: str = "auto") -> tuple[dict[str, np.ndarray], RunReport]:
    """Run a solver's :class:`~deepx_opt.solvers.plan.Plan` on ``model`` (the dense ModelGraph it was made for).

    Each layer runs at ``plan.assignments[layer].rank`` (RLC factorisation applied with
    :func:`deepx_opt.graphs.compression.apply_ranks`; ``None`` = dense) on
    ``processor_map.get(p, p)`` for its plan processor ``p``, in the plan's start-time order per processor.
    The report's ``predicted`` carries the plan's makespan, energy and per-block durations beside the
    measurements. ``factorizers`` (e.g. ``candidates.estimator.factorizers``) re-use the SVDs the plan was
    made with — needed for data-aware factors, whose calibration data the plan alone does not carry.
    ``energy_window_s`` (NVML energy window) and ``block_timing`` are passed to :func:`execute_graph`.
    """
    if not getattr(plan, "status", None) or not plan.status.has_plan:
        raise PlanError(f"plan from solver {getattr(plan, 'solver', '?')!r} has status "
                        f"{getattr(plan, 'status', None)!s} and no assignments to execute")
    missing = [v for v in model.layers() if v not in plan.assignments]
    if missing:
        raise PlanError(f"plan {plan.problem_name!r} does not assign layer(s) {missing[:10]} of model {model.name!r}")
    pmap = dict(processor_map or {})
    ranks = {v: a.rank for v, a in plan.assignments.items() if a.rank is not None}
    run_model = model
    if ranks:
        from deepx_opt.graphs.compression import apply_ranks

        run_model = apply_ranks(model, ranks, method=rlc_method, factorizers_=factorizers)
    placement = {v: pmap.get(a.processor, a.processor) for v, a in plan.assignments.items()}
    priority = {v: a.start_us for v, a in plan.assignments.items()}
    outputs, report = execute_graph(run_model, placement, inputs, repeat=repeat, warmup=warmup,
                                    backend_options=backend_options, priority=priority,
                                    energy_window_s=energy_window_s, block_timing=block_timing)
    report.predicted = {
        "solver": plan.solver,
        "status": plan.status.value,
        "makespan_us": plan.makespan_us,
        "energy_uj": plan.energy_uj,
        "memory_bytes": dict(plan.memory_bytes),
        "block_latency_us": {v: a.finish_us - a.start_us for v, a in plan.assignments.items()},
        "ranks": {v: a.rank for v, a in plan.assignments.items()},
        "processors": {v: a.processor for v, a in plan.assignments.items()},
    }
    return outputs, report
