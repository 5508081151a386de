"""RLC speed benchmark: do FLOPs saved by low-rank factorisation turn into latency saved?

For zoo models, every factorisable layer is set to the same fraction of its full rank (1/4, 1/8, 1/16; a
layer whose rank would not save anything stays dense), the factorised model is written to ONNX, and batch-1
latency is measured with onnxruntime (1 thread, median of ``--repeat`` runs after warm-up) and with the
project's numpy runtime (``deepx_opt.runtime.executor.execute_graph`` on ``cpu``), next to the FLOP and
weight-byte ratios. The cost models predict latency from FLOPs and bytes; this shows how far that holds on
the reference runtimes.

Run: ``python benchmarks/rlc_speed.py --out bench-out [--models speakerid,svhn,alexnet]`` (AlexNet needs about
two minutes for its SVDs on one core). Prints a table, writes ``rlc_speed.json``. Needs numpy, onnx,
onnxruntime.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from deepx_opt import zoo  # noqa: E402
from deepx_opt.graphs import load_onnx  # noqa: E402
from deepx_opt.graphs.compression import apply_ranks, factorizers  # noqa: E402
from deepx_opt.graphs.rlc_onnx import to_onnx  # noqa: E402

FRACTIONS = (None, 1 / 4, 1 / 8, 1 / 16)


def ort_latency_us(proto, feeds, repeat: int) -> float:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    sess = ort.InferenceSession(proto.SerializeToString(), so, providers=["CPUExecutionProvider"])
    for _ in range(3):
        sess.run(None, feeds)
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        sess.run(None, feeds)
        times.append(time.perf_counter() - t)
    return 1e6 * float(np.median(times))


def numpy_latency_us(model, feeds, repeat: int) -> float | None:
    try:
        from deepx_opt.runtime.executor import execute_graph
    except ImportError:  # pragma: no cover - the runtime is part of the package
        return None
    _, report = execute_graph(model, {v: "cpu" for v in model.layers()}, feeds, repeat=repeat, warmup=2,
                              backend_options={"cpu": {"threads": 1}})
    return float(report.latency_us)  # median end-to-end


def run(models: list[str], repeat: int) -> list[dict]:
    rows = []
    for name in models:
        model = load_onnx(zoo.build(name))
        fzs = factorizers(model)
        rng = np.random.default_rng(0)
        feeds = {k: rng.standard_normal(t.shape).astype(t.dtype) for k, t in model.inputs.items()}
        base = None
        for frac in FRACTIONS:
            ranks = {}
            if frac is not None:
                for v, fz in fzs.items():
                    r = max(1, int(round(frac * fz.max_rank)))
                    ranks[v] = r if fz.saves(r) else None
            small = apply_ranks(model, ranks, factorizers_=fzs)
            row = {
                "model": name, "fraction": frac, "ranks": ranks,
                "flops": small.total("flops"), "weight_bytes": small.total("weight_bytes"),
                "ort_us": ort_latency_us(to_onnx(small, dynamic_batch=False), feeds, repeat),
                "numpy_us": numpy_latency_us(small, feeds, repeat),
            }
            if base is None:
                base = row
            row["flops_ratio"] = row["flops"] / base["flops"]
            row["bytes_ratio"] = row["weight_bytes"] / base["weight_bytes"]
            row["ort_ratio"] = row["ort_us"] / base["ort_us"]
            row["numpy_ratio"] = (row["numpy_us"] / base["numpy_us"]) if row["numpy_us"] and base["numpy_us"] else None
            rows.append(row)
            label = "dense" if frac is None else f"1/{round(1 / frac)}"
            np_us = "-" if row["numpy_us"] is None else f"{row['numpy_us']:.1f}"
            np_ratio = "-" if row["numpy_ratio"] is None else f"{row['numpy_ratio']:.3f}"
            print(f"{name:<11} {label:>6} {row['flops_ratio']:>7.3f} {row['bytes_ratio']:>7.3f} {row['ort_us']:>10.1f} "
                  f"{row['ort_ratio']:>6.3f} {np_us:>10} {np_ratio:>6}", flush=True)
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=None, help="folder for rlc_speed.json")
    ap.add_argument("--models", default="speakerid,audioscene,svhn,digits_cnn",
                    help="comma-separated zoo models (default: speakerid,audioscene,svhn,digits_cnn)")
    ap.add_argument("--repeat", type=int, default=50, help="timed runs per configuration (default 50)")
    args = ap.parse_args(argv)
    print(f"{'model':<11} {'rank':>6} {'flops':>7} {'bytes':>7} {'ort_us':>10} {'ratio':>6} {'numpy_us':>10} {'ratio':>6}")
    print("-" * 70)
    rows = run([m.strip() for m in args.models.split(",") if m.strip()], args.repeat)
    print("(rank: fraction of each layer's full rank; flops/bytes/ratio: relative to dense; batch 1, one thread)")
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "rlc_speed.json").write_text(json.dumps({"rows": rows, "repeat": args.repeat}, indent=2, default=str))
        print(f"wrote {out / 'rlc_speed.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
