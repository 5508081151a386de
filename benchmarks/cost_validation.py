"""Cost-model validation: calibrate this machine, then measure every zoo block and compare with the prediction.

For each processor (numpy ``cpu``, each working OpenCL device), the script calibrates a profile (or loads one
with ``--profile``), then runs the zoo models — dense, and with every factorisable layer at 50 % and 25 % of
its full rank — whole, through the runtime executor, and prints per processor: blocks, share of blocks within
±10 % of the measured latency, MAPE, median |error|; the same for leave-one-model-out refits (calibration fits
on the zoo's own dense layers and on factorisations at other ranks; each model is then predicted by models
fitted without its blocks); against the other statistic of the runs (calibration and validation take the
median, :data:`~deepx_opt.cost_models.calibrate.TIMING_STAT`; the minimum beside it); per kind and per model. On an NVIDIA GPU with
nvidia-ml-py it also compares whole-model energy measured by NVML with the prediction (active power fitted
from NVML during calibration × predicted busy time, before; the fitted power model of
:mod:`deepx_opt.cost_models.power`, after), dense and at rank 0.5 / 0.25.

``--models`` and ``--calibration-models`` also take ONNX files. A model validated but not calibrated on is
predicted as a user's new model is; calibrated on (``deepx calibrate --models zoo,my_net.onnx``), as the
zoo's are. Both at once, from one calibration (the leave-one-model-out columns are the first case)::

    python benchmarks/cost_validation.py --out /tmp/out --models zoo,tests/data/torch_resnet_tiny.onnx \
        --calibration-models zoo,tests/data/torch_resnet_tiny.onnx

Needs only numpy, onnx, pyopencl (for OpenCL), nvidia-ml-py (for NVML) and this package's own dependencies
(scipy, networkx). Writes ``cost_validation.json`` (and the calibrated profile) under ``--out``.

GPU machine (after carrying pyopencl as a wheel; the NVIDIA ICD file is missing there)::

    python benchmarks/cost_validation.py --nvidia-icd --out /tmp/out --mode default
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", str(os.cpu_count() or 1))

import numpy as np  # noqa: E402

DEFAULT_MODELS = "digits_mlp,digits_cnn,svhn,speakerid,audioscene,alexnet"


def _setup_nvidia_icd() -> None:
    """Create /etc/OpenCL/vendors/nvidia.icd when the NVIDIA OpenCL library exists but no ICD names it."""
    icd = Path("/etc/OpenCL/vendors/nvidia.icd")
    if icd.exists():
        return
    for lib in ("/usr/local/nvidia/lib64/libnvidia-opencl.so.1", "/usr/lib/x86_64-linux-gnu/libnvidia-opencl.so.1"):
        if Path(lib).exists():
            icd.parent.mkdir(parents=True, exist_ok=True)
            icd.write_text("libnvidia-opencl.so.1\n" if "/usr/lib" in lib else lib + "\n")
            print(f"wrote {icd} -> {lib}", file=sys.stderr)
            return
    print("no NVIDIA OpenCL library found; --nvidia-icd did nothing", file=sys.stderr)


def _table(headers, rows) -> str:
    rows = [[str(c) for c in r] for r in rows]
    w = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w[i]) for i, h in enumerate(headers)), "  ".join("-" * x for x in w)]
    lines += ["  ".join(c.rjust(w[i]) if i else c.ljust(w[i]) for i, c in enumerate(r)) for r in rows]
    return "\n".join(lines)


def _per_kind(rows, tol=10.0):
    out = {}
    for r in rows:
        out.setdefault((r.processor, r.kind), []).append(abs(r.error_pct))
    return [{"processor": p, "kind": k, "blocks": len(v), "within_pct": float(np.mean(np.array(v) <= tol) * 100),
             "mape_pct": float(np.mean(v))} for (p, k), v in sorted(out.items())]


ENERGY_FRACTIONS = (None, 0.5, 0.25)


def _sm_clock_mhz() -> float | None:
    """The first GPU's SM clock now (NVML), or None (a diagnostic: light work can leave a GPU at low
    clocks)."""
    try:
        import pynvml

        pynvml.nvmlInit()
        return float(pynvml.nvmlDeviceGetClockInfo(pynvml.nvmlDeviceGetHandleByIndex(0), pynvml.NVML_CLOCK_SM))
    except Exception:
        return None


def energy_variants(graph, fractions=ENERGY_FRACTIONS) -> list[tuple[str, object]]:
    """``(variant name, ModelGraph)`` of a zoo model: dense and every factorisable layer at each fraction."""
    from deepx_opt.cost_models.calibrate import timing_variant

    rng = np.random.default_rng(3)
    out = []
    for f in fractions:
        g = timing_variant(graph, f, rng)
        if g is not None:
            out.append(("dense" if f is None else f"rank={f:g}", g))
    return out


def _nvml_energy(profile, proc_name: str, model_name: str, variant: str, g, reps: int = 20,
                 window_s: float = 1.0, alt_profile=None) -> dict | None:
    """One whole-model energy measurement by NVML (the runtime executor's own reading: board energy per
    inference over >= ``window_s`` of back-to-back runs) of ``g`` on one processor, with the predictions:
    ``before`` = the processor's active power (a kernel loop's) × predicted latency; ``after`` = the
    profile's power model (:func:`deepx_opt.cost_models.energy.plan_energy_uj` of the predicted blocks: the
    planner's per-option energies plus the per-run energy); ``after_at_measured`` = the same model at the
    blocks' latencies measured as the latency model is calibrated (:func:`deepx_opt.cost_models.power.
    primed_block_us`; its error is the power model's own, without the latency model's); ``after_refit`` =
    ``alt_profile``'s power model (the calibrated one refitted on the latency model's predictions,
    :func:`deepx_opt.cost_models.power.refit_power_model`) at predicted latencies. None without NVML."""
    try:
        import pynvml  # noqa: F401
    except ImportError:
        return None
    from deepx_opt.cost_models.calibrate import model_block_works
    from deepx_opt.cost_models.energy import plan_energy_uj, power_model_of
    from deepx_opt.cost_models.latency import predict_works_us
    from deepx_opt.cost_models.power import PowerSample, primed_block_us, sample_to_list
    from deepx_opt.runtime.executor import execute_graph

    proc = profile.processor(proc_name)
    model = power_model_of(profile, proc_name)
    rng = np.random.default_rng(4)
    works = model_block_works(g)
    primed = primed_block_us(proc.backend, g)
    x = {n: rng.standard_normal(i.shape).astype(i.dtype) for n, i in g.inputs.items()}
    _, rep = execute_graph(g, {v: proc.backend for v in g.layers()}, x, repeat=reps, warmup=3,
                           energy_window_s=window_s)
    if rep.energy_uj is None:
        return None
    clock = _sm_clock_mhz()
    pred_block = {v: predict_works_us(profile, proc_name, ws)
                  for v, ws in works.items()}
    pred_us = sum(pred_block.values())
    wall_us = rep.energy_window_s / rep.energy_runs * 1e6 if rep.energy_runs else 0.0
    sample = PowerSample(f"{model_name}:{variant}", model_name, float(rep.energy_uj),
                         tuple((primed[v], tuple(works[v])) for v in g.layers()), 1.0, wall_us)
    row = {"processor": proc_name, "model": model_name, "variant": variant,
           "measured_mj": rep.energy_uj / 1e3, "measured_ms": rep.latency_us / 1e3,
           "energy_run_blocks_ms": sum(b.latency_us for b in rep.blocks.values()) / 1e3,
           "primed_blocks_ms": sum(primed.values()) / 1e3, "wall_ms_per_run": wall_us / 1e3,
           "mean_power_w": rep.energy_uj / wall_us if wall_us else None, "sm_clock_mhz": clock,
           "idle_power_w": rep.idle_power_w, "energy_runs": rep.energy_runs,
           "predicted_ms": pred_us / 1e3, "before_mj": proc.active_power_w * pred_us / 1e3,
           "power_source": proc.power_source, "sample": sample_to_list(sample)}
    if model is not None:
        row["after_mj"] = plan_energy_uj(profile, blocks=[(proc_name, pred_block[v], works[v])
                                                          for v in g.layers()]).total_uj / 1e3
        row["after_at_measured_mj"] = model.predict_run_uj([(primed[v], works[v]) for v in g.layers()]) / 1e3
    if alt_profile is not None and power_model_of(alt_profile, proc_name) is not None:
        row["after_refit_mj"] = plan_energy_uj(alt_profile, blocks=[(proc_name, pred_block[v], works[v])
                                                                    for v in g.layers()]).total_uj / 1e3
    for k in ("before", "after", "after_at_measured", "after_refit"):
        if f"{k}_mj" in row:
            row[f"{k}_err_pct"] = (row[f"{k}_mj"] - row["measured_mj"]) / row["measured_mj"] * 100
    return row


def _aggregate_energy(passes: list[dict]) -> list[dict]:
    """One row per (processor, model, variant): measured = the median of the passes (each pass measured in
    another order; with two passes their mean), with every pass's value and the spread ((max − min) / median);
    errors against the median. A launch-bound model's energy per inference is idle power × its wall time,
    which host jitter moves by up to 40 % between passes: one disturbed pass must not decide the row."""
    keyed: dict[tuple, list[dict]] = {}
    for r in passes:
        keyed.setdefault((r["processor"], r["model"], r["variant"]), []).append(r)
    out = []
    for key, rs in keyed.items():
        row = dict(rs[0])
        row.pop("sample", None)
        ms = [r["measured_mj"] for r in rs]
        row["measured_mj"] = float(np.median(ms))
        row["measured_passes_mj"] = ms
        row["spread_pct"] = (max(ms) - min(ms)) / row["measured_mj"] * 100
        for k in ("wall_ms_per_run", "energy_run_blocks_ms", "primed_blocks_ms", "mean_power_w",
                  "after_at_measured_mj"):
            if all(r.get(k) is not None for r in rs):
                row[k] = float(np.median([r[k] for r in rs]))
        row.pop("after_at_measured_err_pct", None)
        for k in ("before", "after", "after_at_measured", "after_refit"):
            if f"{k}_mj" in row:
                row[f"{k}_err_pct"] = (row[f"{k}_mj"] - row["measured_mj"]) / row["measured_mj"] * 100
        out.append(row)
    return out


def _energy_report(prof, energy: list[dict], alt_profile=None, passes: list[dict] | None = None) -> str:
    """The energy tables: the power model(s) and fit(s), per model and variant, and |error| before/after."""
    from deepx_opt.cost_models.energy import power_model_of

    profiles = [prof] + ([alt_profile] if alt_profile is not None else [])

    lines = []
    for p, m, q in [(p, power_model_of(pr, p), pr.processor(p)) for p in sorted({e["processor"] for e in energy})
                    for pr in profiles]:
        lines.append(f"{p}: idle {q.idle_power_w:.1f} W, active (kernel loop) {q.active_power_w:.1f} W, "
                     f"power model: {m!r}")
        if m is not None and m.fit_:
            f = m.fit_
            lines.append(f"  chosen {f.get('chosen')} from {f.get('samples')} samples (held out by "
                         f"{f.get('held_out')}; block times {f.get('time_basis', '?')}), NVML part of calibration "
                         f"{f.get('seconds', '?')} s; op loops: "
                         + ", ".join(f"{k} {v:.0f} W" for k, v in (f.get("loop_power_w") or {}).items()))
            lines.append(_table(["candidate", "features", "runs: fit MAPE %", "held-out MAPE %",
                                 "held-out max %", "loops: fit MAPE %", "eligible"],
                                [[c["name"], ",".join(c["features"]), f"{c['train_mape_pct']:.1f}",
                                  f"{c['loo_mape_pct']:.1f}", f"{c['loo_max_pct']:.1f}",
                                  f"{c.get('train_loops_mape_pct', float('nan')):.1f}",
                                  "yes" if c.get("eligible", True) else "no"]
                                 for c in f.get("candidates", [])]))
    rows = []
    for e in energy:
        def cell(k):
            return f"{e[k + '_mj']:.1f} ({e[k + '_err_pct']:+.0f}%)" if k + "_mj" in e else "-"
        rows.append([e["processor"], e["model"], e["variant"], f"{e['measured_mj']:.1f}",
                     "/".join(f"{v:.0f}" for v in e["measured_passes_mj"]), f"{e['spread_pct']:.0f}%",
                     f"{e['mean_power_w']:.0f}" if e.get("mean_power_w") else "-",
                     f"{e['sm_clock_mhz']:.0f}" if e.get("sm_clock_mhz") else "-",
                     f"{e['wall_ms_per_run']:.3f}", f"{e['energy_run_blocks_ms']:.3f}", f"{e['primed_blocks_ms']:.3f}",
                     f"{e['predicted_ms']:.3f}", cell("before"), cell("after"), cell("after_at_measured"),
                     cell("after_refit")])
    lines.append("")
    lines.append("whole-model energy per inference, NVML board energy (median of the passes) vs predicted (before: "
                 "active power × predicted latency; after: power model at predicted latencies; after@meas: at "
                 "primed measured ones). W: measured mean power; MHz: SM clock after a window; wall: per run in "
                 "the window; blocks: sum of block latencies in the window's runs / primed (min of 5); "
                 "after refit: the power model refitted on the latency model's predictions")
    lines.append(_table(["processor", "model", "variant", "measured mJ", "passes mJ", "spread", "W", "MHz",
                         "wall ms", "blocks ms", "primed ms", "pred ms", "before mJ", "after mJ", "after@meas mJ",
                         "after refit mJ"], rows))
    summ = []
    for k in ("before", "after", "after_at_measured", "after_refit"):
        for label, rs in (("", energy), (" (each pass)", passes or [])):
            errs = np.array([abs(e[k + "_err_pct"]) for e in rs if k + "_err_pct" in e])
            if len(errs):
                summ.append([k + label, len(errs), f"{errs.mean():.1f}", f"{np.median(errs):.1f}",
                             f"{errs.max():.1f}", f"{(errs <= 15).mean() * 100:.0f}%"])
    sp = np.array([e["spread_pct"] for e in energy])
    if len(sp) and len(energy[0]["measured_passes_mj"]) > 1:
        summ.append(["(passes' spread)", len(sp), f"{sp.mean():.1f}", f"{np.median(sp):.1f}", f"{sp.max():.1f}",
                     f"{(sp <= 15).mean() * 100:.0f}%"])
    lines.append("")
    lines.append(_table(["prediction", "runs", "MAPE %", "median |err| %", "max |err| %", "within 15%"], summ))
    return "\n".join(lines)


def _names(spec: str) -> list[str]:
    return [m.strip() for m in spec.split(",") if m.strip()]


def _summary_rows(summ):
    return [[s["processor"], s["variant"], s["blocks"], f"{s['within_pct']:.0f}%", f"{s['mape_pct']:.1f}",
             f"{s['median_abs_err_pct']:.1f}", f"{s['measured_total_ms']:.2f}", f"{s['predicted_total_ms']:.2f}"]
            for s in summ]


_SUMMARY_HEAD = ["processor", "blocks of", "n", "within ±10%", "MAPE %", "median |err| %", "measured ms",
                 "predicted ms"]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True, help="output folder (JSON results and the calibrated profile)")
    ap.add_argument("--processors", default=None, help="comma-separated (default: every available processor)")
    ap.add_argument("--mode", default="default", choices=["quick", "default", "thorough"])
    ap.add_argument("--profile", default=None, help="validate this profile instead of calibrating")
    ap.add_argument("--models", default=DEFAULT_MODELS,
                    help="models validated: zoo names and ONNX files, 'zoo' for the zoo's (default: %(default)s)")
    ap.add_argument("--calibration-models", default="zoo",
                    help="models the calibration runs whole: zoo names and ONNX files (default: %(default)s); a "
                         "model validated but not calibrated on is predicted as a new model of a user's would be")
    ap.add_argument("--reps", type=int, default=3, help="timed whole-model runs per variant and pass")
    ap.add_argument("--passes", type=int, default=None,
                    help="passes over all variants, each in a new order (default: the calibration mode's zoo_passes)")
    ap.add_argument("--budget-s", type=float, default=None,
                    help="seconds of timed runs per variant and pass for a fast model (more runs, at most "
                         "calibrate.MAX_ZOO_REPS; default: the calibration mode's zoo_budget_s)")
    ap.add_argument("--no-lomo", action="store_true", help="skip the leave-one-model-out refits")
    ap.add_argument("--nvidia-icd", action="store_true", help="create the NVIDIA OpenCL ICD file if it is missing")
    ap.add_argument("--no-progress", action="store_true")
    ap.add_argument("--energy-variants", default="all", choices=["all", "dense", "none"],
                    help="NVML energy validation: dense and rank 0.5/0.25 (all), dense only, or none")
    ap.add_argument("--energy-window-s", type=float, default=0.6, help="NVML window per energy measurement")
    ap.add_argument("--energy-passes", type=int, default=4,
                    help="NVML measurements per model variant, each pass in another order; the row is their "
                         "median (default 4)")
    args = ap.parse_args(argv)
    if args.nvidia_icd:
        _setup_nvidia_icd()

    from deepx_opt.cost_models import load_profile, save_profile
    from deepx_opt.cost_models.calibrate import (CEILING_HEADERS, MODES, TIMING_STAT, calibrate, calibration_models,
                                                 ceiling_table, leave_one_model_out, machine_key, summarize_validation,
                                                 validate, validation_ceiling)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    procs = [p.strip() for p in args.processors.split(",")] if args.processors else None
    t0 = time.perf_counter()
    if args.profile:
        prof = load_profile(args.profile)
    else:
        prof = calibrate(procs, mode=args.mode, progress=not args.no_progress,
                         models=calibration_models(_names(args.calibration_models), default=MODES[args.mode]["zoo"]))
        save_profile(prof, out / "cost_validation_profile.json")
    t_cal = time.perf_counter() - t0
    graphs = calibration_models(_names(args.models))
    models = [g.name for g in graphs]
    t1 = time.perf_counter()
    budget_s = MODES[args.mode]["zoo_budget_s"] if args.budget_s is None else args.budget_s
    passes = MODES[args.mode]["zoo_passes"] if args.passes is None else args.passes
    rows = validate(prof, graphs, processors=procs, reps=args.reps, passes=passes, budget_s=budget_s,
                    progress=not args.no_progress)
    t_val = time.perf_counter() - t1
    summ = summarize_validation(rows)
    ceiling = validation_ceiling(prof, rows)
    cal_procs = (prof.meta.get("calibration") or {}).get("processors") or {}
    repeat = [c for c in (cal_procs.get(p.name, {}).get("repeat_check") for p in prof.processors) if c]
    kinds = _per_kind(rows)
    # the same predictions against the other statistic of the same runs (minimum or median)
    other = "min" if TIMING_STAT == "median" else "median"
    other_rows = [replace(r, measured_us=getattr(r, f"measured_{other}_us")) for r in rows]
    summ_other = summarize_validation(other_rows)
    lomo_rows, summ_lomo, kinds_lomo = [], [], []
    if not args.no_lomo:
        try:
            t2 = time.perf_counter()
            lomo_rows = leave_one_model_out(prof, rows)
            summ_lomo = summarize_validation(lomo_rows)
            kinds_lomo = _per_kind(lomo_rows)
            print(f"leave-one-model-out refits: {time.perf_counter() - t2:.0f} s", file=sys.stderr)
        except Exception as exc:  # a profile without calibration samples (--profile of an old file)
            print(f"no leave-one-model-out figures: {exc}", file=sys.stderr)
    per_model = {}
    for r, lo in zip(rows, lomo_rows or [None] * len(rows)):
        per_model.setdefault((r.processor, r.model), []).append(
            (abs(r.error_pct), abs(lo.error_pct) if lo else float("nan")))
    models_tab = []
    for (p, m), v in sorted(per_model.items()):
        err, lo = np.array(v).T
        models_tab.append([p, m, len(v), f"{np.mean(err <= 10) * 100:.0f}%", f"{np.mean(err):.1f}",
                           f"{np.mean(lo <= 10) * 100:.0f}%" if lomo_rows else "-",
                           f"{np.mean(lo):.1f}" if lomo_rows else "-"])
    energy = []
    # --processors may name devices by substring ("opencl:NVIDIA"); the profile names them "opencl:<i>"
    from deepx_opt.runtime.backends import canonical_processor_name

    wanted = {canonical_processor_name(q) for q in procs} if procs else set()
    t3 = time.perf_counter()
    fractions = () if args.energy_variants == "none" else (
        (None,) if args.energy_variants == "dense" else ENERGY_FRACTIONS)
    energy_passes = []
    nvidia = [p for p in prof.processors if p.backend and p.backend.startswith("opencl")
              and (procs is None or p.name in wanted)]
    alt = None
    if nvidia and fractions:
        from deepx_opt.cost_models.power import refit_power_model

        try:  # what calibration fits when it hands its latency models to calibrate_power
            alt = prof.copy()
            for p in nvidia:
                alt.processor(p.name).power_model = refit_power_model(prof, p.name)
        except Exception as exc:
            print(f"no refitted power model: {exc}", file=sys.stderr)
            alt = None
        jobs = [(g.name, v, vg) for g in graphs for v, vg in energy_variants(g, fractions)]
        for k in range(args.energy_passes):
            for p in nvidia:
                for name, v, vg in (jobs if k % 2 == 0 else jobs[::-1]):
                    e = _nvml_energy(prof, p.name, name, v, vg, window_s=args.energy_window_s, alt_profile=alt)
                    if e:
                        e["pass"] = k
                        energy_passes.append(e)
    energy = _aggregate_energy(energy_passes)
    t_energy = time.perf_counter() - t3

    print(f"\ncost-model validation on {platform.node()} ({platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} cores), calibration {args.mode if not args.profile else 'from ' + args.profile} "
          f"{t_cal:.0f} s, validation {t_val:.0f} s; models: {', '.join(models)}")
    for p in prof.processors:
        info = prof.meta.get("calibration", {}).get("processors", {}).get(p.name, {})
        if info:
            print(f"  {p.name}: {info.get('device', '')}, {info.get('samples')} samples, power {p.power_source} "
                  f"({p.active_power_w:.1f} W active)")
    print()
    print("fit on the calibrated models' own layers (dense, and factorised at other ranks than these); measured = the "
          f"{'minimum' if TIMING_STAT == 'min' else 'median'} of the timed runs, as calibrated")
    print(_table(_SUMMARY_HEAD, _summary_rows(summ)))
    if ceiling:
        print("\nrepeatability ceiling: the dense blocks as calibration timed them vs as validation timed them again "
              "(drift: validation / calibration, median)")
        print(_table(CEILING_HEADERS, ceiling_table(ceiling)))
    if repeat:
        print("\ncalibration's own repeat check: the dense blocks timed once more right after its passes")
        print(_table(CEILING_HEADERS, ceiling_table(repeat)))
    if summ_lomo:
        print("\nleave-one-model-out: each model predicted by models refitted without its own blocks")
        print(_table(_SUMMARY_HEAD, _summary_rows(summ_lomo)))
    print(f"\nthe same predictions against the {'minimum' if other == 'min' else 'median'} of the runs "
          f"(calibrated and measured: the {TIMING_STAT})")
    print(_table(_SUMMARY_HEAD, _summary_rows(summ_other)))
    print()
    lk = {(k["processor"], k["kind"]): k for k in kinds_lomo}
    print(_table(["processor", "kind", "n", "within ±10%", "MAPE %", "LOMO within", "LOMO MAPE %"],
                 [[k["processor"], k["kind"], k["blocks"], f"{k['within_pct']:.0f}%", f"{k['mape_pct']:.1f}",
                   f"{lk[(k['processor'], k['kind'])]['within_pct']:.0f}%" if lk else "-",
                   f"{lk[(k['processor'], k['kind'])]['mape_pct']:.1f}" if lk else "-"]
                  for k in kinds]))
    print()
    print(_table(["processor", "model", "n", "within ±10%", "MAPE %", "LOMO within", "LOMO MAPE %"], models_tab))
    if energy:
        print(f"\nNVML energy validation: {t_energy:.0f} s")
        print(_energy_report(prof, energy, alt, energy_passes))
    res = {
        "machine": {"node": platform.node(), "processor": platform.processor(), "cores": os.cpu_count(),
                    "key": machine_key()},
        "mode": args.mode, "profile": args.profile, "models": models,
        "calibration_models": list(dict.fromkeys(m for c in cal_procs.values() for m in c.get("models", ()))),
        "calibration_s": t_cal,
        "validation_s": t_val, "summary": summ, "ceiling": ceiling, "repeat_check": repeat, "summary_lomo": summ_lomo,
        "timing_stat": TIMING_STAT, f"summary_vs_{other}": summ_other,
        "per_kind": kinds, "per_kind_lomo": kinds_lomo, "energy": energy, "energy_passes": energy_passes, "energy_s": t_energy,
        "power_model_refit": ({p.name: alt.processor(p.name).power_model for p in nvidia} if alt else None),
        "rows": [{"processor": r.processor, "model": r.model, "layer": r.layer, "variant": r.variant,
                  "kind": r.kind, "steps": [f"{w.kind}/{w.variant}" for w in r.works],
                  "measured_us": r.measured_us, "measured_median_us": r.measured_median_us,
                  "measured_min_us": r.measured_min_us,
                  "predicted_us": r.predicted_us, "error_pct": r.error_pct,
                  "lomo_predicted_us": lo.predicted_us if lo else None}
                 for r, lo in zip(rows, lomo_rows or [None] * len(rows))],
    }
    (out / "cost_validation.json").write_text(json.dumps(res, indent=1))
    print(f"\nwrote {out / 'cost_validation.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
