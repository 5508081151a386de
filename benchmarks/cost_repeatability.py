"""How repeatable is a block's latency? The ceiling of any cost model's "share of blocks within ±10 %".

A cost model is judged against measurements; a measurement that does not repeat within ±10 % caps the
share of blocks any model can predict within ±10 %. This benchmark measures every zoo block — dense and with
every factorisable layer at 50 % and 25 % of full rank, as ``benchmarks/cost_validation.py`` does — in
``--passes`` passes over the models, each pass in a different (shuffled) order, exactly as calibration and
validation measure them (``calibrate._block_latencies``: the processor primed,
warm-up runs, the median (``--stat``) of ``--reps`` timed whole-model runs through the runtime executor — and, for a fast
model, as many more as fit in ``--budget-s`` (default: default-mode calibration's) — host-synchronised blocks
unless ``--block-timing auto``). It prints, per processor and kind of block:

* ``pairs within ±10 %``: the share of (block, pass a, pass b) pairs whose two measurements agree within
  ±10 % of each other — what a perfect model fitted on one pass would score on another;
* ``median spread %``: the median over blocks of (max − min) / min across passes;
* ``halves within ±10 %`` (with 2k passes): the statistic over the runs of the first k passes against the
  same over the last k — how well a calibration that times k passes (as ``deepx calibrate`` does, k = 3) agrees with a
  validation that times k more: the ceiling of the validation's "within ±10 %" on the blocks it has seen;
* per model, to show where the noise is.

Run it on the machine whose validation figures it qualifies, e.g. ``python benchmarks/cost_repeatability.py
--out DIR`` here, or on the GPU machine with ``--nvidia-icd --processors cpu,opencl:NVIDIA``. Writes
``cost_repeatability.json``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from cost_validation import _setup_nvidia_icd, _table  # noqa: E402  (same folder)

DEFAULT_MODELS = "digits_mlp,digits_cnn,svhn,speakerid,audioscene,alexnet"
FRACTIONS = (None, 0.5, 0.25)


def agreement(values_by_block: dict, tol_pct: float = 10.0) -> tuple[float, float, int]:
    """(share of pass pairs within ±tol % of each other, median (max − min)/min %, blocks) over blocks."""
    pairs_ok = pairs = 0
    spreads = []
    for vals in values_by_block.values():
        v = [x for x in vals if x > 0]
        if len(v) < 2:
            continue
        for a, b in itertools.combinations(v, 2):
            pairs += 1
            pairs_ok += abs(a - b) / b * 100 <= tol_pct
            pairs += 1
            pairs_ok += abs(b - a) / a * 100 <= tol_pct
        spreads.append((max(v) - min(v)) / min(v) * 100)
    share = pairs_ok / pairs * 100 if pairs else float("nan")
    return share, float(np.median(spreads)) if spreads else float("nan"), len(spreads)


def halves(runs_by_block: dict, stat: str, tol_pct: float = 10.0) -> tuple[float, int]:
    """(share of blocks whose ``stat`` over the runs of the first half of the passes is within ±tol % of the
    same over the second half, blocks) — for an even number of passes ≥ 2. ``runs_by_block``: block → one list
    of run latencies per pass."""
    from deepx_opt.cost_models.calibrate import _stat

    ok = n = 0
    for passes in runs_by_block.values():
        k = len(passes) // 2
        if k < 1:
            continue
        a = _stat([t for p in passes[:k] for t in p], stat)
        b = _stat([t for p in passes[k:2 * k] for t in p], stat)
        n += 1
        ok += abs(b - a) / a * 100 <= tol_pct
    return (ok / n * 100 if n else float("nan")), n


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--processors", default=None, help="comma-separated (default: every available processor)")
    ap.add_argument("--models", default=DEFAULT_MODELS)
    ap.add_argument("--passes", type=int, default=3)
    ap.add_argument("--reps", type=int, default=7, help="timed whole-model runs per measurement")
    ap.add_argument("--stat", default=None, choices=["min", "median"],
                    help="statistic of each measurement's runs (default: calibrate.TIMING_STAT)")
    ap.add_argument("--budget-s", type=float, default=None,
                    help="seconds of timed runs per measurement for a fast model (more runs, at most "
                         "calibrate.MAX_ZOO_REPS; default: default-mode calibration's zoo_budget_s; 0: --reps only; "
                         "block timing sync only)")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--block-timing", default="sync", choices=["sync", "auto"])
    ap.add_argument("--nvidia-icd", action="store_true", help="create the NVIDIA OpenCL ICD file if it is missing")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    if args.budget_s is None:
        from deepx_opt.cost_models.calibrate import MODES

        args.budget_s = MODES["default"]["zoo_budget_s"]
    if args.stat is None:
        from deepx_opt.cost_models.calibrate import TIMING_STAT

        args.stat = TIMING_STAT
    if args.nvidia_icd:
        _setup_nvidia_icd()

    from deepx_opt import zoo
    from deepx_opt.cost_models.calibrate import (_block_latencies, _stat, model_block_works, prime,
                                                 timing_variants)
    from deepx_opt.graphs import load_onnx
    from deepx_opt.runtime.backends import available_backends
    from deepx_opt.runtime.backends.base import canonical_processor_name
    from deepx_opt.runtime.executor import execute_graph

    procs = [canonical_processor_name(p.strip()) for p in args.processors.split(",")] if args.processors \
        else available_backends()
    graphs = [load_onnx(zoo.build(m.strip())) for m in args.models.split(",") if m.strip()]
    rng = np.random.default_rng(args.seed)
    variants = [(g.name, var, vg, layers) for g, var, vg, layers in timing_variants(graphs, FRACTIONS)]
    kinds = {}
    for name, var, vg, layers in variants:
        works = model_block_works(vg)
        for v in layers:
            kinds[(name, var, v)] = works[v][0].kind if works[v] else "?"
    meas: dict[tuple, list[float]] = {}  # block → its statistic per pass
    runs: dict[tuple, list[list[float]]] = {}  # block → its runs per pass
    t0 = time.perf_counter()
    for p in range(args.passes):
        order = rng.permutation(len(variants))
        for i in order:
            name, var, vg, _ = variants[i]
            for proc in procs:
                if args.block_timing == "sync":  # exactly as calibration and validation
                    lats = _block_latencies(proc, vg, args.warmup, args.reps, rng, args.budget_s)
                else:
                    prime(proc)
                    x = {n: rng.standard_normal(t.shape).astype(t.dtype) for n, t in vg.inputs.items()}
                    _, rep = execute_graph(vg, {v: proc for v in vg.layers()}, x, repeat=args.reps,
                                           warmup=args.warmup, block_timing=args.block_timing, measure_energy=False)
                    lats = {v: b.latencies_us for v, b in rep.blocks.items()}
                for v, ts in lats.items():
                    if (name, var, v) in kinds:
                        meas.setdefault((proc, name, var, v), []).append(_stat(ts, args.stat))
                        runs.setdefault((proc, name, var, v), []).append(list(ts))
        print(f"pass {p + 1}/{args.passes} done ({time.perf_counter() - t0:.0f} s)", file=sys.stderr)
    summary, per_model = [], []
    for proc in procs:
        mine = {k: v for k, v in meas.items() if k[0] == proc}
        for label, sel in [("all", mine),
                           ("dense", {k: v for k, v in mine.items() if k[2] == "dense"}),
                           ("low-rank", {k: v for k, v in mine.items() if k[2] != "dense"})] + \
                          [(f"kind {kd}", {k: v for k, v in mine.items() if kinds[k[1:]] == kd})
                           for kd in sorted(set(kinds.values()))]:
            share, spread, n = agreement(sel)
            half, _ = halves({k: runs[k] for k in sel}, args.stat) if args.passes >= 2 else (float("nan"), 0)
            if n:
                summary.append({"processor": proc, "blocks_of": label, "blocks": n, "pairs_within_pct": share,
                                "median_spread_pct": spread, "halves_within_pct": half})
        for g in graphs:
            share, spread, n = agreement({k: v for k, v in mine.items() if k[1] == g.name})
            per_model.append({"processor": proc, "model": g.name, "blocks": n, "pairs_within_pct": share,
                              "median_spread_pct": spread})
    print(f"\nrepeatability on {platform.node()} ({os.cpu_count()} cores), {args.passes} passes in shuffled order, "
          f"{args.stat} of {args.reps} runs each (more within {args.budget_s} s), block timing {args.block_timing}, "
          f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}")
    print(_table(["processor", "blocks of", "n", "pairs within ±10%", "median spread %", "halves within ±10%"],
                 [[s["processor"], s["blocks_of"], s["blocks"], f"{s['pairs_within_pct']:.0f}%",
                   f"{s['median_spread_pct']:.1f}", f"{s['halves_within_pct']:.0f}%"] for s in summary]))
    print()
    print(_table(["processor", "model", "n", "pairs within ±10%", "median spread %"],
                 [[s["processor"], s["model"], s["blocks"], f"{s['pairs_within_pct']:.0f}%",
                   f"{s['median_spread_pct']:.1f}"] for s in per_model]))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "cost_repeatability.json").write_text(json.dumps({
        "machine": {"node": platform.node(), "cores": os.cpu_count()}, "passes": args.passes, "reps": args.reps, "stat": args.stat,
        "budget_s": args.budget_s,
        "block_timing": args.block_timing, "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "summary": summary, "per_model": per_model,
        "measurements": [{"processor": k[0], "model": k[1], "variant": k[2], "layer": k[3], "kind": kinds[k[1:]],
                          "latency_us": v} for k, v in meas.items()]}, indent=1))
    print(f"\nwrote {out / 'cost_repeatability.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
