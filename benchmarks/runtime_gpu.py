"""GPU-machine benchmark of the OpenCL backend: NVIDIA OpenCL GEMM GFLOP/s vs fp32 peak, NVML energy.

Meant for the NVIDIA (H100/H200) machine; needs only numpy, onnx, onnxruntime, pyopencl, nvidia-ml-py
(plus networkx for the whole-model part). Run from the repository root::

    python benchmarks/runtime_gpu.py --out bench-out

What it does:

1. makes NVIDIA's OpenCL visible when its ICD file is missing (writes ``nvidia.icd`` naming
   ``libnvidia-opencl.so.1`` into a temporary vendors folder and points ``OCL_ICD_VENDORS`` at it, beside
   the system's own ICD files) — before pyopencl is imported;
2. checks a few ops on every GPU device against the numpy reference backend;
3. GEMM GFLOP/s of both kernels (tiled: the GPU default; blocked) on square sizes, against the fp32 peak
   = SMs × fp32 lanes per SM (from the compute capability) × 2 × max clock;
4. a sweep of the tiled GEMM's tile shapes (and split-K on/off) on square and AlexNet-like shapes;
5. NVML energy: board energy and mean power over a ~2 s GEMM loop (GFLOP/J), and per inference of zoo
   AlexNet and SVHN run on the GPU (dense, and split GPU + CPU) through ``execute_graph``, whose report
   measures total and above-idle board energy per run over a >= 1 s window of back-to-back runs, with
   onnxruntime (CPU) as the correctness reference.

Prints tables and writes ``runtime_gpu.json`` to ``--out``.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

_NV_LIB_GLOBS = ("/usr/local/nvidia/lib64/libnvidia-opencl.so*", "/usr/lib/x86_64-linux-gnu/libnvidia-opencl.so*",
                 "/usr/lib64/libnvidia-opencl.so*", "/usr/local/cuda/lib64/libnvidia-opencl.so*")

# fp32 lanes per SM by compute capability (NVIDIA CUDA programming guide, arithmetic instructions table)
_FP32_LANES = {(6, 0): 64, (6, 1): 128, (7, 0): 64, (7, 5): 64, (8, 0): 64, (8, 6): 128, (8, 7): 128,
               (8, 9): 128, (9, 0): 128, (10, 0): 128, (12, 0): 128}


def ensure_nvidia_icd() -> str | None:
    """Point the ICD loader at NVIDIA's OpenCL library when no vendors file names it. Returns a note."""
    vendors = os.environ.get("OCL_ICD_VENDORS", "/etc/OpenCL/vendors")
    existing = glob.glob(os.path.join(vendors, "*.icd")) if os.path.isdir(vendors) else []
    for f in existing:
        try:
            if "nvidia" in Path(f).read_text().lower():
                return f"NVIDIA ICD present: {f}"
        except OSError:
            continue
    libs = [p for g in _NV_LIB_GLOBS for p in sorted(glob.glob(g))]
    if not libs:
        return "no libnvidia-opencl found; NVIDIA OpenCL unavailable"
    lib = next((p for p in libs if p.endswith(".so.1")), libs[0])
    tmp = tempfile.mkdtemp(prefix="deepx-icd-")
    for f in existing:
        try:
            Path(tmp, Path(f).name).write_text(Path(f).read_text())
        except OSError:
            pass
    Path(tmp, "nvidia.icd").write_text(lib + "\n")
    os.environ["OCL_ICD_VENDORS"] = tmp
    return f"wrote {tmp}/nvidia.icd -> {lib} (OCL_ICD_VENDORS)"


def fp32_peak_gflops(dev) -> tuple[float | None, str]:
    try:
        cc = (int(dev.compute_capability_major_nv), int(dev.compute_capability_minor_nv))
    except Exception:
        return None, "not an NVIDIA device (no compute capability)"
    lanes = _FP32_LANES.get(cc, 128)
    peak = dev.max_compute_units * lanes * 2 * dev.max_clock_frequency * 1e6 / 1e9
    return peak, f"cc {cc[0]}.{cc[1]}: {dev.max_compute_units} SMs x {lanes} lanes x 2 x {dev.max_clock_frequency} MHz"


def _time(fn, reps):
    fn()
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return float(np.min(ts)), float(np.median(ts))


def check_ops(be) -> list[dict]:
    """A few ops against the numpy reference backend (max abs error, relative to the output's scale)."""
    from deepx_opt.runtime.backends import get_backend

    ref = get_backend("cpu")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, 16, 23, 23)).astype(np.float32)
    cases = [
        ("Conv", [x, rng.standard_normal((32, 16, 3, 3)).astype(np.float32), rng.standard_normal(32).astype(np.float32)],
         dict(kernel_shape=(3, 3), strides=(2, 2), pads=(1, 0, 1, 2), dilations=(1, 1), group=1)),
        ("Conv", [x, rng.standard_normal((16, 1, 3, 3)).astype(np.float32), None],
         dict(kernel_shape=(3, 3), strides=(1, 1), pads=(1, 1, 1, 1), dilations=(1, 1), group=16)),
        ("Gemm", [rng.standard_normal((7, 300)).astype(np.float32), rng.standard_normal((100, 300)).astype(np.float32),
                  rng.standard_normal(100).astype(np.float32)], dict(alpha=1.0, beta=1.0, transA=0, transB=1)),
        ("MaxPool", [x], dict(kernel_shape=(3, 3), strides=(2, 2), pads=(0, 0, 0, 0), dilations=(1, 1), ceil_mode=1)),
        ("LRN", [x], dict(size=5, alpha=1e-4, beta=0.75, bias=1.0)),
        ("Softmax", [rng.standard_normal((4, 1000)).astype(np.float32)], dict(axis=1, legacy=False)),
    ]
    rows = []
    for op, ins, attrs in cases:
        want = ref.run(op, ins, attrs)[0]
        got = be.download(be.run(op, [None if a is None else be.upload(a) for a in ins], attrs)[0])
        err = float(np.max(np.abs(got - want)) / (np.max(np.abs(want)) + 1e-30))
        rows.append(dict(device=be.name, op=op, rel_err=err, ok=bool(err < 1e-4)))
    return rows


def warm_gpu(be, seconds=0.5) -> None:
    """GEMMs for ``seconds`` so the GPU's clocks have ramped before anything is timed."""
    x = be.upload(np.ones((2048, 2048), np.float32))
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        be.run("MatMul", [x, x], {})
        be.synchronize()


def gemm_table(be, dev, sizes, reps) -> list[dict]:
    peak, peak_note = fp32_peak_gflops(dev)
    warm_gpu(be)
    rows = []
    for variant in ("tiled", "blocked"):
        from deepx_opt.runtime.backends.opencl import OpenCLBackend

        b2 = OpenCLBackend(int(be.name.split(":")[1]), gemm_variant=variant)
        for n in sizes:
            rng = np.random.default_rng(0)
            a, b = rng.standard_normal((n, n)).astype(np.float32), rng.standard_normal((n, n)).astype(np.float32)
            A, B = b2.upload(a), b2.upload(b)
            attrs = dict(alpha=1.0, beta=1.0, transA=0, transB=0)
            if n <= 2048:
                c = b2.download(b2.run("Gemm", [A, B], attrs)[0])
                ab = a.astype(np.float64) @ b.astype(np.float64)
                err = float(np.max(np.abs(c - ab)) / np.max(np.abs(ab)))
            else:
                err = None

            def go():
                b2.run("Gemm", [A, B], attrs)
                b2.synchronize()

            tmin, tmed = _time(go, reps)
            g = 2 * n**3 / tmin / 1e9
            rows.append(dict(device=be.name, variant=variant, n=n, gflops=g, gflops_median=2 * n**3 / tmed / 1e9,
                             fp32_peak_gflops=peak, frac_of_peak=(g / peak) if peak else None, rel_err=err,
                             peak_note=peak_note))
    return rows


#: tiles tried by the sweep: (TM, TN, WM, WN, BK)
SWEEP_TILES = [(128, 128, 8, 8, 8), (128, 128, 8, 8, 16), (128, 128, 8, 8, 4), (64, 128, 4, 8, 16),
               (64, 128, 4, 8, 8), (128, 64, 8, 4, 8), (64, 64, 4, 4, 16), (64, 64, 4, 4, 8)]
#: GEMM shapes (M, N, K) of AlexNet at batch 1 (conv im2col GEMMs, fc layers) and odd sizes
MODEL_SHAPES = [(96, 3025, 363), (256, 729, 2400), (384, 169, 2304), (256, 169, 3456), (1, 4096, 9216),
                (1000, 1000, 1000), (1023, 2047, 1025)]


def gemm_sweep(be, dev, sizes, reps, tiles=SWEEP_TILES, shapes=MODEL_SHAPES) -> list[dict]:
    """GFLOP/s of the tiled GEMM per explicit tile on square sizes and on model-like shapes (checked
    against numpy in float64), plus the automatic tile choice."""
    from deepx_opt.runtime.backends.opencl import OpenCLBackend

    peak, _ = fp32_peak_gflops(dev)
    warm_gpu(be)
    idx = int(be.name.split(":")[1])
    rows = []
    problems = [(n, n, n) for n in sizes] + list(shapes)
    rng = np.random.default_rng(1)
    data = {}
    for M, N, K in problems:
        a = rng.standard_normal((M, K)).astype(np.float32)
        b = rng.standard_normal((K, N)).astype(np.float32)
        data[(M, N, K)] = (a, b, (a.astype(np.float64) @ b.astype(np.float64)) if M * N * K <= 2**33 else None)
    variants = [(None, True, {}), (None, False, {}), (None, True, {"split_k_min_k": 256})] + [
        (t, False, {}) for t in tiles]
    for tile, split, extra in variants:
        b2 = OpenCLBackend(idx, gemm_variant="tiled", gemm_tile=tile)
        b2.split_k = split
        for k, v in extra.items():
            setattr(b2, k, v)
        for M, N, K in problems:
            a, b, ab = data[(M, N, K)]
            A, B = b2.upload(a), b2.upload(b)
            attrs = dict(alpha=1.0, beta=1.0, transA=0, transB=0)
            c = b2.download(b2.run("Gemm", [A, B], attrs)[0])
            err = float(np.max(np.abs(c - ab)) / np.max(np.abs(ab))) if ab is not None else None

            def go():
                b2.run("Gemm", [A, B], attrs)
                b2.synchronize()

            tmin, tmed = _time(go, reps)
            g = 2 * M * N * K / tmin / 1e9
            name = ("auto:" + ("gemv" if M <= 8 and split else "x".join(map(str, b2.tile_for(M, N))))
                    + ("+splitK" if split else "") + "".join(f" {k}={v}" for k, v in extra.items())
                    if tile is None else "x".join(map(str, tile)))
            rows.append(dict(tile=name, M=M, N=N, K=K, gflops=g,
                             frac_of_peak=(g / peak) if peak else None, rel_err=err))
    return rows


def nvml_gemm_energy(be, n=4096, seconds=2.0) -> dict:
    try:
        import pynvml
    except ImportError as exc:
        return dict(error=f"pynvml not importable ({exc}); pip install nvidia-ml-py")
    pynvml.nvmlInit()
    h = pynvml.nvmlDeviceGetHandleByIndex(0)
    rng = np.random.default_rng(0)
    A = be.upload(rng.standard_normal((n, n)).astype(np.float32))
    B = be.upload(rng.standard_normal((n, n)).astype(np.float32))
    attrs = dict(alpha=1.0, beta=1.0, transA=0, transB=0)
    be.run("Gemm", [A, B], attrs)
    be.synchronize()
    idle_mw = pynvml.nvmlDeviceGetPowerUsage(h)
    e0 = pynvml.nvmlDeviceGetTotalEnergyConsumption(h)
    t0 = time.perf_counter()
    k = 0
    while time.perf_counter() - t0 < seconds:
        be.run("Gemm", [A, B], attrs)
        k += 1
        if k % 4 == 0:
            be.synchronize()
    be.synchronize()
    dt = time.perf_counter() - t0
    e_mj = pynvml.nvmlDeviceGetTotalEnergyConsumption(h) - e0
    flop = 2 * n**3 * k
    return dict(device=be.name, n=n, runs=k, seconds=dt, energy_j=e_mj / 1e3, mean_power_w=e_mj / 1e3 / dt,
                power_before_w=idle_mw / 1e3, gflops=flop / dt / 1e9, gflop_per_j=flop / 1e9 / (e_mj / 1e3))


def model_run(proc: str, name: str, reps: int, split_with: str | None = None,
              backend_options: dict | None = None) -> dict:
    """Run zoo model ``name`` on ``proc``; with ``split_with``, Conv/Gemm blocks on ``proc`` and the rest
    (pooling, LRN, softmax, joins) on ``split_with`` — a cross-processor plan with copies on every edge
    between the two."""
    import onnxruntime as ort

    from deepx_opt import zoo
    from deepx_opt.graphs import load_onnx
    from deepx_opt.runtime import execute_graph

    proto = zoo.build(name)
    model = load_onnx(proto)
    rng = np.random.default_rng(0)
    feeds = {n: rng.standard_normal(t.shape).astype(t.dtype) for n, t in model.inputs.items()}
    ref = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds)
    heavy = ("conv", "dwconv", "gemm")
    placement = {v: proc if split_with is None or model.layer(v)["kind"] in heavy else split_with
                 for v in model.layers()}
    outs, rep = execute_graph(model, placement, feeds, repeat=reps, warmup=2,
                              backend_options={proc: backend_options} if backend_options else None)
    err = max(float(np.max(np.abs(outs[o] - r))) for o, r in zip(model.outputs, ref))
    label = (proc if split_with is None else f"{proc}+{split_with}") + (
        "".join(f" {k}={v}" for k, v in backend_options.items()) if backend_options else "")
    return dict(model=name, processor=label, transfer_bytes=rep.transfer_bytes, latency_us=rep.latency_us, latency_us_min=rep.latency_us_min,
                energy_uj=rep.energy_uj, energy_dynamic_uj=rep.energy_dynamic_uj, idle_power_w=rep.idle_power_w,
                energy_runs=rep.energy_runs, energy_window_s=rep.energy_window_s,
                energy_source=rep.energy_source, max_abs_err=err,
                blocks_us={k: b.latency_us for k, b in rep.blocks.items()}, notes=rep.notes)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="bench-out")
    ap.add_argument("--sizes", type=int, nargs="+", default=[1024, 2048, 4096])
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--models", nargs="+", default=["alexnet", "svhn"])
    ap.add_argument("--sections", nargs="+", default=["ops", "gemm", "sweep", "energy", "models"],
                    help="parts to run (ops gemm sweep energy models pool)")
    ap.add_argument("--require-gpu", action="store_true", help="exit 1 when no OpenCL GPU works (default: skip, exit 0)")
    args = ap.parse_args(argv)
    result: dict = {"icd": ensure_nvidia_icd()}
    print(result["icd"])
    import pyopencl as cl  # noqa: F401  (after the ICD set-up)

    from deepx_opt.runtime.backends import get_backend
    from deepx_opt.runtime.opencl_probe import working_devices

    devs = working_devices()
    result["devices"] = [dict(name=f"opencl:{i}", label=d.label, type=d.device_type) for i, d in enumerate(devs)]
    for d in result["devices"]:
        print(f"{d['name']:10s} {d['type']:4s} {d['label']}")
    gpus = [i for i, d in enumerate(devs) if d.device_type == "gpu"]
    if not gpus:
        print("no working OpenCL GPU device: nothing to benchmark (run this on the NVIDIA machine)", file=sys.stderr)
        result["skipped"] = "no working OpenCL GPU device"
        Path(args.out).mkdir(parents=True, exist_ok=True)
        Path(args.out, "runtime_gpu.json").write_text(json.dumps(result, indent=1))
        return 1 if args.require_gpu else 0
    result["ops"], result["gemm"], result["sweep"], result["energy"], result["models"] = [], [], [], [], []
    sec = set(args.sections)
    for i in gpus:
        be = get_backend(f"opencl:{i}")
        if "ops" in sec:
            result["ops"] += check_ops(be)
        if "gemm" in sec:
            result["gemm"] += gemm_table(be, be.device, args.sizes, args.reps)
        if "sweep" in sec:
            result["sweep"] += gemm_sweep(be, be.device, args.sizes, args.reps)
        if "energy" in sec:
            result["energy"].append(nvml_gemm_energy(be))
        if "models" in sec:
            for m in args.models:
                result["models"].append(model_run(be.name, m, 20))
                result["models"].append(model_run(be.name, m, 20, backend_options={"mem_pool": False}))
                result["models"].append(model_run(be.name, m, 10, split_with="cpu"))
    if "models" in sec:
        for m in args.models:
            result["models"].append(model_run("cpu", m, 5))
    if "pool" in sec:  # buffer pool on/off/large-only, alternating, twice
        for i in gpus:
            for m in args.models:
                for _ in range(2):
                    for opts in ({"mem_pool": True}, {"mem_pool": False}, {"mem_pool_min_bytes": 65536}):
                        result["models"].append(model_run(f"opencl:{i}", m, 20, backend_options=opts))
    print("\n== op check vs numpy backend")
    for r in result["ops"]:
        print(f"{r['device']:10s} {r['op']:8s} rel_err {r['rel_err']:.2e} {'ok' if r['ok'] else 'MISMATCH'}")
    print("\n== OpenCL GEMM")
    for r in result["gemm"]:
        frac = f"{100 * r['frac_of_peak']:.1f}% of {r['fp32_peak_gflops']:.0f}" if r["frac_of_peak"] else "-"
        print(f"{r['device']:10s} {r['variant']:8s} n={r['n']:5d} {r['gflops']:9.1f} GFLOP/s ({frac})")
    print("\n== tiled GEMM per tile (TMxTNxWMxWNxBK), rel_err vs float64 numpy")
    for r in result["sweep"]:
        frac = f"{100 * r['frac_of_peak']:5.1f}%" if r["frac_of_peak"] else "-"
        err = f"{r['rel_err']:.1e}" if r["rel_err"] is not None else "-"
        print(f"{r['tile']:42s} {r['M']:5d}x{r['N']:5d}x{r['K']:5d} {r['gflops']:9.1f} GFLOP/s {frac}  err {err}")
    print("\n== NVML energy, GEMM loop")
    for r in result["energy"]:
        print(r)
    print("\n== models")
    for r in result["models"]:
        e = (f"{r['energy_uj'] / 1e3:8.2f} mJ/run total, {r['energy_dynamic_uj'] / 1e3:8.2f} above "
             f"{r['idle_power_w']:.0f} W idle ({r['energy_source']}, {r['energy_runs']} runs "
             f"in {r['energy_window_s']:.2f} s)" if r["energy_uj"] is not None else "energy -")
        print(f"{r['model']:10s} {r['processor']:24s} {r['latency_us'] / 1e3:8.2f} ms  {e}  max err {r['max_abs_err']:.1e}")
        top = sorted(r["blocks_us"].items(), key=lambda kv: -kv[1])[:6]
        print("    slowest blocks: " + ", ".join(f"{k} {v:.0f} us" for k, v in top))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "runtime_gpu.json").write_text(json.dumps(result, indent=1, default=str))
    print(f"\nwrote {out / 'runtime_gpu.json'}")
    ok = all(r["ok"] for r in result["ops"]) and all(r["rel_err"] is None or r["rel_err"] < 1e-5
                                                     for r in result["sweep"])
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
