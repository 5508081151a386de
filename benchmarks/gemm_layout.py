"""Batch-1 GEMM (``x @ W``) on the numpy backend with the weight stored inputs × outputs (``K × N``) against
outputs × inputs (``N × K``, computed as ``x @ Wᵀ``), per OpenBLAS thread count.

Why the numpy backend's ``gemm_weight_layout`` is ``"nk"`` (the executor re-lays every constant GEMM weight out
to it at load): OpenBLAS takes another code path for the transposed weight, which parallelises better. Each
cell is the median of ``--reps`` calls after 20 warm-up calls, both layouts timed in the same run, one weight
copy (in cache where it fits: the question is the kernel, not the memory system). The physical limit is the
weight's bytes over the memory bandwidth for weights beyond the last-level cache.

``python benchmarks/gemm_layout.py --threads 1,2 --out DIR`` prints a table and writes ``gemm_layout.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).resolve().parent))
from runtime_backends import _time  # noqa: E402  (same folder)


def _median_us(fn, reps: int) -> float:
    return _time(fn, reps, warmup=20)[0]

SHAPES = [(64, 256), (256, 128), (512, 512), (700, 245), (700, 350), (350, 1000), (686, 1024), (1024, 686),
          (2048, 256), (256, 2048), (1024, 1024), (2048, 2048), (4096, 4096), (9216, 4096)]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", default="1,2", help="comma-separated OpenBLAS thread counts (default 1,2)")
    ap.add_argument("--reps", type=int, default=200)
    ap.add_argument("--out", type=Path, default=None, help="folder for gemm_layout.json")
    args = ap.parse_args(argv)
    threads = [int(t) for t in args.threads.split(",")]
    rng = np.random.default_rng(0)
    rows = []
    print(f"{'threads':>7} {'K':>5} {'N':>5} {'K×N µs':>9} {'N×K µs':>9} {'ratio':>6} {'K×N vec':>8} {'N×K vec':>8}")
    for th in threads:
        with threadpool_limits(th, "blas"):
            for k, n in SHAPES:
                x = rng.standard_normal((1, k)).astype(np.float32)
                w = rng.standard_normal((k, n)).astype(np.float32)
                wt = np.ascontiguousarray(w.T)
                reps = max(10, min(args.reps, int(2e9 / (k * n * 8))))
                kn = _median_us(lambda: x @ w, reps)
                nk = _median_us(lambda: x @ wt.T, reps)
                v = x.reshape(-1)  # a 1-D input: numpy calls GEMV rather than GEMM
                kn_vec = _median_us(lambda: v @ w, reps)
                nk_vec = _median_us(lambda: v @ wt.T, reps)
                rows.append({"threads": th, "k": k, "n": n, "kn_us": kn, "nk_us": nk, "ratio": kn / nk,
                             "kn_vec_us": kn_vec, "nk_vec_us": nk_vec})
                print(f"{th:>7} {k:>5} {n:>5} {kn:>9.1f} {nk:>9.1f} {kn / nk:>6.2f} {kn_vec:>8.1f} {nk_vec:>8.1f}",
                      flush=True)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        meta = {"machine": platform.node(), "cpus": os.cpu_count(), "numpy": np.__version__}
        (args.out / "gemm_layout.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
