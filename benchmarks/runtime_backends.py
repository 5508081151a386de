"""Benchmark the runtime backends: numpy (``cpu``) vs onnxruntime per op and per model, and OpenCL GEMM.

Three tables:

1. per op type on AlexNet-sized layers (plus MobileNet-style depthwise / 1×1 convolutions): the numpy
   backend vs onnxruntime running the same one-node ONNX model, at equal thread counts (1 and 2); and the
   measurement behind the backend's NCHW im2col layout (vs an NHWC im2col, which needs two transposes);
2. whole zoo models through :func:`deepx_opt.runtime.execute_graph` (dense on ``cpu``) vs onnxruntime on
   the whole ONNX model, equal threads; plus dense on each OpenCL device;
3. the executor's overhead per block (a chain of 50 tiny layers vs the same ops called directly), and the
   speed-up of low-rank plans over dense ones on ``cpu``;
4. OpenCL GEMM GFLOP/s (every working device, both GEMM kernels) on square matrices.

Timings are medians (and minima) of repeated runs after warm-up; the ratio columns divide the numpy time
by onnxruntime's (< 1: numpy is faster). The machine's load average is recorded, because other processes
sharing the cores inflate both sides unevenly.

Usage::

    python benchmarks/runtime_backends.py --out bench-out [--quick] [--threads 1 2]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from deepx_opt.runtime.backends.numpy_backend import NumpyBackend  # noqa: E402


def _time(fn, reps: int, warmup: int = 2) -> tuple[float, float]:
    for _ in range(warmup):
        fn()
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return float(np.median(ts)) * 1e6, float(np.min(ts)) * 1e6


def _ort_session(proto, threads: int):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    return ort.InferenceSession(proto.SerializeToString(), so, providers=["CPUExecutionProvider"])


def _one_node(op: str, inputs: dict, attrs: dict, consts: dict | None = None):
    import onnx
    from onnx import helper, numpy_helper

    consts = consts or {}
    names = list(inputs) + list(consts)
    vis = [helper.make_tensor_value_info(n, 1, list(a.shape)) for n, a in inputs.items()]
    node = helper.make_node(op, names, ["y"], **attrs)
    graph = helper.make_graph([node], op, vis, [onnx.ValueInfoProto(name="y")],
                              initializer=[numpy_helper.from_array(v, k) for k, v in consts.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def _conv_case(name, cin, cout, hw, k, s, p, g=1):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, cin, hw, hw)).astype(np.float32)
    w = (rng.standard_normal((cout, cin // g, k, k)) * 0.05).astype(np.float32)
    b = rng.standard_normal(cout).astype(np.float32)
    attrs = dict(kernel_shape=(k, k), strides=(s, s), pads=(p, p, p, p), dilations=(1, 1), group=g)
    flops = 2 * cout * ((hw + 2 * p - k) // s + 1) ** 2 * (cin // g) * k * k
    return dict(name=name, op="Conv", x=x, consts=[w, b], attrs=attrs, flops=flops,
                onnx_attrs={k2: list(v) if isinstance(v, tuple) else v for k2, v in attrs.items()})


def op_cases() -> list[dict]:
    rng = np.random.default_rng(1)
    cases = [
        _conv_case("conv1 3>96 k11s4 @224", 3, 96, 224, 11, 4, 2),
        _conv_case("conv2 96>256 k5 g2 @27", 96, 256, 27, 5, 1, 2, g=2),
        _conv_case("conv3 256>384 k3 @13", 256, 384, 13, 3, 1, 1),
        _conv_case("conv4 384>384 k3 g2 @13", 384, 384, 13, 3, 1, 1, g=2),
        _conv_case("dwconv 128 k3 @56", 128, 128, 56, 3, 1, 1, g=128),
        _conv_case("conv1x1 128>256 @28", 128, 256, 28, 1, 1, 0),
    ]
    for name, k_in, n_out in (("fc6 9216>4096", 9216, 4096), ("fc7 4096>4096", 4096, 4096), ("fc8 4096>1000", 4096, 1000)):
        x = rng.standard_normal((1, k_in)).astype(np.float32)
        w = (rng.standard_normal((n_out, k_in)) * 0.01).astype(np.float32)
        b = rng.standard_normal(n_out).astype(np.float32)
        attrs = dict(alpha=1.0, beta=1.0, transA=0, transB=1)
        cases.append(dict(name=name, op="Gemm", x=x, consts=[w, b], attrs=attrs, onnx_attrs=dict(transB=1),
                          flops=2 * k_in * n_out))
    act = rng.standard_normal((1, 96, 55, 55)).astype(np.float32)
    cases += [
        dict(name="lrn 96@55 size5", op="LRN", x=act, consts=[], attrs=dict(size=5, alpha=1e-4, beta=0.75, bias=1.0),
             onnx_attrs=dict(size=5, alpha=1e-4, beta=0.75, bias=1.0), flops=act.size * 5),
        dict(name="maxpool 96@55 k3s2", op="MaxPool", x=act, consts=[],
             attrs=dict(kernel_shape=(3, 3), strides=(2, 2), pads=(0, 0, 0, 0), dilations=(1, 1), ceil_mode=0),
             onnx_attrs=dict(kernel_shape=[3, 3], strides=[2, 2]), flops=27 * 27 * 96 * 9),
        dict(name="relu 96@55", op="Relu", x=act, consts=[], attrs={}, onnx_attrs={}, flops=act.size),
        dict(name="softmax 1000", op="Softmax", x=rng.standard_normal((1, 1000)).astype(np.float32), consts=[],
             attrs=dict(axis=1, legacy=False), onnx_attrs=dict(axis=1), flops=3000),
    ]
    return cases


def bench_ops(threads_list, reps) -> list[dict]:
    rows = []
    for case in op_cases():
        consts = {f"c{i}": c for i, c in enumerate(case["consts"])}
        proto = _one_node(case["op"], {"x": case["x"]}, case["onnx_attrs"], consts)
        for th in threads_list:
            be = NumpyBackend(threads=th)
            handles = [be.upload(case["x"])] + [be.upload(c) for c in case["consts"]]
            np_med, np_min = _time(lambda: be.run(case["op"], handles, case["attrs"]), reps)
            sess = _ort_session(proto, th)
            feeds = {"x": case["x"]}
            ort_med, ort_min = _time(lambda: sess.run(None, feeds), reps)
            ref = sess.run(None, feeds)[0]
            got = be.run(case["op"], handles, case["attrs"])[0]
            err = float(np.max(np.abs(got - ref)) / (np.max(np.abs(ref)) + 1e-30))
            rows.append(dict(op=case["name"], threads=th, numpy_us=np_med, ort_us=ort_med, numpy_min_us=np_min,
                             ort_min_us=ort_min, ratio=np_med / ort_med, ratio_min=np_min / ort_min,
                             numpy_gflops=case["flops"] / np_min / 1e3, rel_err=err))
    return rows


def _conv_nhwc(x, w2, b, k, s, p):
    """The alternative layout, for the measurement only: NHWC im2col (contiguous channel runs) + GEMM
    against the weight prepared once as (kh·kw·C, Cout), then back to NCHW. Group 1 only."""
    n, c, h, wd = x.shape
    cout = w2.shape[1]
    oh, ow = (h + 2 * p - k) // s + 1, (wd + 2 * p - k) // s + 1
    xh = np.zeros((h + 2 * p, wd + 2 * p, c), np.float32)
    xh[p:p + h, p:p + wd] = x[0].transpose(1, 2, 0)
    cols = np.empty((oh, ow, k, k, c), np.float32)
    for i in range(k):
        for j in range(k):
            cols[:, :, i, j] = xh[i:i + s * (oh - 1) + 1:s, j:j + s * (ow - 1) + 1:s]
    y = cols.reshape(oh * ow, k * k * c) @ w2
    y += b
    return np.ascontiguousarray(y.T).reshape(1, cout, oh, ow)


def bench_conv_layouts(threads_list, reps) -> list[dict]:
    """NCHW (what the numpy backend does) vs NHWC im2col on the group-1 conv cases, same process, interleaved."""
    rows = []
    for case in op_cases():
        if case["op"] != "Conv" or case["attrs"]["group"] != 1 or case["attrs"]["kernel_shape"][0] == 1:
            continue
        x, (w, b) = case["x"], case["consts"]
        k, s, p = case["attrs"]["kernel_shape"][0], case["attrs"]["strides"][0], case["attrs"]["pads"][0]
        w2 = np.ascontiguousarray(w.transpose(2, 3, 1, 0).reshape(-1, w.shape[0]))
        for th in threads_list:
            be = NumpyBackend(threads=th)
            ref = be.run("Conv", [x, w, b], case["attrs"])[0]
            np.testing.assert_allclose(_conv_nhwc(x, w2, b, k, s, p), ref, rtol=1e-4, atol=1e-4)
            nchw = _time(lambda: be.run("Conv", [x, w, b], case["attrs"]), reps)
            with be._controller.limit(limits=th, user_api="blas"):
                nhwc = _time(lambda: _conv_nhwc(x, w2, b, k, s, p), reps)
            rows.append(dict(op=case["name"], threads=th, nchw_us=nchw[0], nhwc_us=nhwc[0],
                             nhwc_over_nchw=nhwc[0] / nchw[0], nhwc_over_nchw_min=nhwc[1] / nchw[1]))
    return rows


def bench_models(names, threads_list, reps) -> list[dict]:
    from deepx_opt import zoo
    from deepx_opt.graphs import load_onnx
    from deepx_opt.runtime import available_backends, execute_graph

    rows = []
    for name in names:
        proto = zoo.build(name)
        model = load_onnx(proto)
        rng = np.random.default_rng(0)
        feeds = {n: rng.standard_normal(t.shape).astype(t.dtype) for n, t in model.inputs.items()}
        for th in threads_list:
            sess = _ort_session(proto, th)
            ort_med, ort_min = _time(lambda: sess.run(None, feeds), reps)
            ref = sess.run(None, feeds)
            _, rep = execute_graph(model, {v: "cpu" for v in model.layers()}, feeds, repeat=reps, warmup=2,
                                   backend_options={"cpu": {"threads": th}})
            rows.append(dict(model=name, processor="cpu", threads=th, latency_us=rep.latency_us,
                             latency_min_us=rep.latency_us_min, ort_us=ort_med, ort_min_us=ort_min,
                             ratio=rep.latency_us / ort_med, ratio_min=rep.latency_us_min / ort_min,
                             gflop=model.total("flops") / 1e9))
        for proc in available_backends():
            if not proc.startswith("opencl"):
                continue
            outs, rep = execute_graph(model, {v: proc for v in model.layers()}, feeds, repeat=max(3, reps // 2), warmup=1)
            err = max(float(np.max(np.abs(outs[o] - r))) for o, r in zip(model.outputs, ref))
            rows.append(dict(model=name, processor=proc, threads=None, latency_us=rep.latency_us,
                             latency_min_us=rep.latency_us_min, ort_us=ort_med, ort_min_us=ort_min,
                             ratio=rep.latency_us / ort_med, ratio_min=rep.latency_us_min / ort_min,
                             gflop=model.total("flops") / 1e9, max_abs_err=err))
            # a split placement: convolutions on the OpenCL device, everything else on cpu (1 BLAS thread)
            split = {v: proc if model.layer(v)["kind"] in ("conv", "dwconv") else "cpu" for v in model.layers()}
            outs, rep = execute_graph(model, split, feeds, repeat=max(3, reps // 2), warmup=1,
                                      backend_options={"cpu": {"threads": 1}})
            err = max(float(np.max(np.abs(outs[o] - r))) for o, r in zip(model.outputs, ref))
            rows.append(dict(model=name, processor=f"conv:{proc}+cpu", threads=1, latency_us=rep.latency_us,
                             latency_min_us=rep.latency_us_min, ort_us=ort_med, ort_min_us=ort_min,
                             ratio=rep.latency_us / ort_med, ratio_min=rep.latency_us_min / ort_min,
                             gflop=model.total("flops") / 1e9, max_abs_err=err,
                             transfer_bytes=rep.transfer_bytes, transfer_us=rep.transfer_us))
    return rows


def bench_opencl_gemm(sizes, reps) -> list[dict]:
    from deepx_opt.runtime.backends.opencl import OpenCLBackend
    from deepx_opt.runtime.opencl_probe import working_devices

    rows = []
    for i, dev in enumerate(working_devices()):
        for variant in ("blocked", "tiled"):
            be = OpenCLBackend(i, gemm_variant=variant)
            for n in sizes:
                if variant == "tiled" and dev.device_type != "gpu" and n > 512:
                    continue  # minutes on a CPU device; the 512 point shows the gap
                rng = np.random.default_rng(0)
                a = rng.standard_normal((n, n)).astype(np.float32)
                b = rng.standard_normal((n, n)).astype(np.float32)
                A, B = be.upload(a), be.upload(b)
                attrs = dict(alpha=1.0, beta=1.0, transA=0, transB=0)
                out = be.download(be.run("Gemm", [A, B], attrs)[0])
                err = float(np.max(np.abs(out - a @ b)) / np.max(np.abs(a @ b)))

                def go():
                    be.run("Gemm", [A, B], attrs)
                    be.synchronize()

                med, mn = _time(go, reps, warmup=1)
                rows.append(dict(device=f"opencl:{i}", label=dev.label, variant=variant, n=n,
                                 gflops=2 * n**3 / mn / 1e3, gflops_median=2 * n**3 / med / 1e3, rel_err=err))
    return rows


def _print_table(title, rows, cols):
    print(f"\n== {title}")
    widths = [max(len(c), *(len(_fmt(r.get(c))) for r in rows)) for c in cols]
    print("  ".join(c.ljust(w) for c, w in zip(cols, widths)))
    for r in rows:
        print("  ".join(_fmt(r.get(c)).ljust(w) for c, w in zip(cols, widths)))


def _fmt(v):
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.3g}" if abs(v) < 10 else f"{v:.1f}"
    return str(v)


def bench_executor_overhead(n_blocks: int, reps: int) -> list[dict]:
    """Executor overhead per block: a chain of ``n_blocks`` tiny Gemm layers (16×16) through execute_graph,
    against the same ops called directly on the backend in a loop (the floor), per processor."""
    from onnx import TensorProto, helper, numpy_helper

    from deepx_opt.graphs import load_onnx
    from deepx_opt.runtime import available_backends, execute_graph, get_backend

    rng = np.random.default_rng(0)
    nodes, inits = [], []
    prev = "x"
    for i in range(n_blocks):
        w = numpy_helper.from_array((rng.standard_normal((16, 16)) / 4).astype(np.float32), f"w{i}")
        inits.append(w)
        nodes.append(helper.make_node("Gemm", [prev, f"w{i}"], [f"h{i}"], name=f"fc{i}"))
        prev = f"h{i}"
    g = helper.make_graph(nodes, "tiny_chain", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 16])],
                          [helper.make_tensor_value_info(prev, TensorProto.FLOAT, [1, 16])], inits)
    model = load_onnx(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]))
    x = rng.standard_normal((1, 16)).astype(np.float32)
    rows = []
    for proc in available_backends():
        be = get_backend(proc)
        ws = [be.upload(model.weights[f"w{i}"]) for i in range(n_blocks)]
        attrs = dict(alpha=1.0, beta=1.0, transA=0, transB=0)

        def direct(_):
            h = be.upload(x)
            for w in ws:
                h = be.run("Gemm", [h, w], attrs)[0]
            be.download(h)

        direct_med, direct_min = _time(lambda: direct(0), reps)
        _, rep = execute_graph(model, {v: proc for v in model.layers()}, {"x": x}, repeat=reps, warmup=3)
        rows.append(dict(processor=proc, blocks=n_blocks, executor_us=rep.latency_us, direct_us=direct_med,
                         overhead_us_per_block=(rep.latency_us - direct_med) / n_blocks,
                         executor_us_per_block=rep.latency_us / n_blocks))
    return rows


def bench_low_rank(names, reps) -> list[dict]:
    """Dense vs low-rank execution on ``cpu`` (1 BLAS thread): every factorisable layer at 1/4 and 1/8 of its
    full rank (weight SVD), through execute_graph; speed-up = dense latency / low-rank latency."""
    from deepx_opt import zoo
    from deepx_opt.graphs import load_onnx
    from deepx_opt.graphs.compression import apply_ranks, factorizers
    from deepx_opt.runtime import execute_graph

    rows = []
    for name in names:
        model = load_onnx(zoo.build(name))
        fzs = factorizers(model)
        feeds = {k: np.random.default_rng(0).standard_normal(v.shape).astype(v.dtype) for k, v in model.inputs.items()}
        opts = {"cpu": {"threads": 1}}
        _, dense = execute_graph(model, {v: "cpu" for v in model.layers()}, feeds, repeat=reps, warmup=2,
                                 backend_options=opts)
        for frac in (0.25, 0.125):
            ranks = {v: max(1, int(fz.max_rank * frac)) for v, fz in fzs.items() if fz.saves(max(1, int(fz.max_rank * frac)))}
            lr = apply_ranks(model, ranks, factorizers_=fzs)
            _, rep = execute_graph(lr, {v: "cpu" for v in lr.layers()}, feeds, repeat=reps, warmup=2, backend_options=opts)
            rows.append(dict(model=name, rank_fraction=frac, layers_factorised=len(ranks),
                             dense_us=dense.latency_us, low_rank_us=rep.latency_us,
                             flops_ratio=lr.total("flops") / model.total("flops"),
                             speedup=dense.latency_us / rep.latency_us))
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="bench-out", help="directory for runtime_backends.json")
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--quick", action="store_true", help="fewer repeats and models (a smoke run)")
    ap.add_argument("--models", nargs="+", default=None)
    args = ap.parse_args(argv)
    reps = 5 if args.quick else 20
    models = args.models or (["svhn", "alexnet"] if args.quick else ["alexnet", "svhn", "mobilenetlike", "resnet50like"])
    info = dict(platform=platform.platform(), cpu_count=os.cpu_count(), load_avg_start=os.getloadavg(),
                numpy=np.__version__, openblas_coretype=os.environ.get("OPENBLAS_CORETYPE"))
    try:
        from threadpoolctl import threadpool_info

        info["blas"] = [{k: d.get(k) for k in ("internal_api", "version", "architecture", "num_threads")}
                        for d in threadpool_info()]
    except Exception:  # pragma: no cover - informational
        pass
    ops = bench_ops(args.threads, reps)
    _print_table("numpy backend vs onnxruntime, one op (us; ratio = numpy / ort)", ops,
                 ["op", "threads", "numpy_us", "ort_us", "ratio", "ratio_min", "numpy_gflops", "rel_err"])
    layouts = bench_conv_layouts(args.threads, reps)
    _print_table("conv im2col layout: NCHW (used) vs NHWC (us)", layouts,
                 ["op", "threads", "nchw_us", "nhwc_us", "nhwc_over_nchw", "nhwc_over_nchw_min"])
    mdl = bench_models(models, args.threads, max(3, reps // 2))
    _print_table("whole models, execute_graph vs onnxruntime (us)", mdl,
                 ["model", "processor", "threads", "latency_us", "ort_us", "ratio", "ratio_min", "gflop",
                  "transfer_bytes"])
    overhead = bench_executor_overhead(50, max(5, reps))
    _print_table("executor overhead: a chain of 50 tiny Gemm blocks (us)", overhead,
                 ["processor", "blocks", "executor_us", "direct_us", "overhead_us_per_block", "executor_us_per_block"])
    low_rank = bench_low_rank(["speakerid", "svhn"] if args.quick else ["speakerid", "audioscene", "svhn", "alexnet"],
                              max(3, reps // 2))
    _print_table("low-rank vs dense on cpu, 1 thread (us)", low_rank,
                 ["model", "rank_fraction", "layers_factorised", "dense_us", "low_rank_us", "flops_ratio", "speedup"])
    gemm = []
    try:
        import pyopencl  # noqa: F401

        gemm = bench_opencl_gemm([256, 512, 1024, 2048], max(3, reps // 4))
        _print_table("OpenCL GEMM (GFLOP/s, best of repeats)", gemm,
                     ["device", "variant", "n", "gflops", "gflops_median", "rel_err", "label"])
    except ImportError:
        print("\n(pyopencl not installed: no OpenCL GEMM table)")
    info["load_avg_end"] = os.getloadavg()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "runtime_backends.json").write_text(json.dumps(dict(info=info, ops=ops, conv_layouts=layouts, models=mdl, executor_overhead=overhead, low_rank=low_rank, opencl_gemm=gemm), indent=1))
    print(f"\nload average {info['load_avg_start']} -> {info['load_avg_end']}; wrote {out / 'runtime_backends.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
