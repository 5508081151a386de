"""``deepx run PLAN.json|MODEL``: execute a plan (or a whole model on one processor) on this machine.

Plan processors are mapped to this machine's processors through the profile's backend bindings (a
calibrated host profile binds ``cpu`` → numpy and ``opencl:0`` → the first working OpenCL device) or
``--map NAME=PROCESSOR``. Energy is read from NVML where the processor is an NVIDIA GPU, otherwise it is
modelled from the profile's power × the measured busy time, and labelled so.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from deepx_opt.cli._common import check_output_path, load_arrays, load_model_arg, print_json, print_table
from deepx_opt.errors import BackendUnavailableError, InputError, PlanError


def add_parser(sub) -> None:
    p = sub.add_parser("run", help="run a plan (or a model on one processor) and report measured vs predicted",
                       description="Execute PLAN.json (made by `deepx plan`) or MODEL (an .onnx file or zoo name, "
                                   "with --processor) on this machine's processors.")
    p.add_argument("target", metavar="PLAN.json|MODEL", help="a plan file, or a model with --processor")
    p.add_argument("--model", metavar="M", help="the model the plan was made for (default: the one the plan records)")
    p.add_argument("--processor", metavar="NAME", help="run MODEL dense on this one processor (see `deepx processors`)")
    p.add_argument("--map", action="append", default=[], metavar="PLAN_PROC=PROC",
                   help="run the plan's processor PLAN_PROC on this machine's PROC (repeatable)")
    p.add_argument("--input", metavar="X.npy|X.npz", help="input data (default: a seeded random input)")
    p.add_argument("--repeat", type=int, default=10, metavar="N", help="timed runs (default 10; median reported)")
    p.add_argument("--warmup", type=int, default=2, metavar="N", help="untimed runs first (default 2)")
    p.add_argument("--save-outputs", metavar="OUT.npz", help="write the model outputs here")
    p.add_argument("-o", "--out", metavar="RUN.json", help="write the run report here (for `deepx report --run`)")
    p.add_argument("--force", action="store_true", help="overwrite existing output files")
    # hidden: a model run reads them like every model command; a plan records its own
    p.add_argument("--input-shape", action="append", default=[], metavar="NAME=D0,D1,...", help=argparse.SUPPRESS)
    p.add_argument("--output", action="append", default=[], metavar="NAME", dest="cut_outputs", help=argparse.SUPPRESS)
    p.add_argument("--json", action="store_true", help="print the run report as JSON")
    p.set_defaults(func=run)


def read_inputs(path: str | None, model, seed: int = 0) -> dict[str, np.ndarray]:
    """Inputs from a .npy (one input) / .npz (by name), or seeded random ones; validated by the executor."""
    names = list(model.inputs)
    if path is None:
        rng = np.random.default_rng(seed)
        return {k: rng.standard_normal(v.shape).astype(v.dtype) for k, v in model.inputs.items()}
    data = load_arrays(path, "input")
    if isinstance(data, np.ndarray):
        if len(names) != 1:
            raise InputError(f"model has {len(names)} inputs {names}; give an .npz with one array per input name")
        return {names[0]: data}
    got = data
    if len(names) == 1 and len(got) == 1 and names[0] not in got:
        return {names[0]: next(iter(got.values()))}
    missing = [n for n in names if n not in got]
    if missing:
        raise InputError(f"input file '{path}' lacks array(s) {missing}; it has {sorted(got)}, the model needs {names}")
    return {n: got[n] for n in names}


def _parse_map(items) -> dict[str, str]:
    out = {}
    for it in items:
        a, sep, b = it.partition("=")
        if not sep or not a or not b:
            raise InputError(f"--map {it!r} is not PLAN_PROCESSOR=PROCESSOR (e.g. gpu=opencl:0)")
        out[a] = b
    return out


def processor_map_for(plan, profile, explicit: dict[str, str]) -> dict[str, str]:
    """Plan processor → this machine's processor, from --map, then the profile's backend bindings."""
    from deepx_opt.runtime import available_backends

    here = list(available_backends())
    used = sorted({a.processor for a in plan.assignments.values()})
    mapping = {}
    for p in used:
        if p in explicit:
            mapping[p] = explicit[p]
            continue
        binding = None
        if profile is not None and p in profile.processor_names:
            binding = profile.processor(p).backend
        if binding is None and p in here:
            binding = p
        if binding is None:
            raise BackendUnavailableError(
                f"plan processor {p!r} (profile {getattr(profile, 'name', '?')!r}) is not a processor of this machine "
                f"and has no backend binding; this machine has {here}; map it with --map {p}=PROCESSOR"
            )
        mapping[p] = binding
    return mapping


def modelled_energy_uj(report, profile, mapping: dict[str, str], model=None,
                       ranks: dict[str, int] | None = None) -> float | None:
    """Modelled energy (µJ) of one run from its measured block times: each block priced as the planner prices
    it (:func:`~deepx_opt.cost_models.energy.block_energy_uj`: the processor's power model from the block's
    works when it has one, else active power × busy time), each used processor's per-inference energy
    (:func:`~deepx_opt.cost_models.energy.run_energy_uj`) and the link energy of every copy. ``model`` (the
    dense ModelGraph that ran; ``ranks`` its RLC ranks, by default those of the plan the report ran,
    ``report.predicted["ranks"]``) gives the works; a processor with a power model and no ``model`` makes the
    result None. None also when a block ran on a processor the profile lacks."""
    from deepx_opt.cost_models.energy import block_energy_uj, power_model_of, run_energy_uj
    from deepx_opt.cost_models.latency import context_bytes_of, layer_works, model_shapes

    if profile is None:
        return None
    back = {v: k for k, v in mapping.items()}
    if ranks is None:
        ranks = {v: r for v, r in ((report.predicted or {}).get("ranks") or {}).items() if r is not None}
    graph = None
    if model is not None:
        graph = model
        if ranks:
            from deepx_opt.graphs.compression import apply_ranks

            graph = apply_ranks(model, ranks, shape_only=True)
        ctx = context_bytes_of(model_shapes(graph))
    total, used = 0.0, set()
    for layer, rec in report.blocks.items():
        plan_proc = back.get(rec.processor, rec.processor)
        if plan_proc not in profile.processor_names:
            return None
        works = None
        if power_model_of(profile, plan_proc) is not None:
            if graph is None:
                return None
            works = layer_works(graph, layer, context_bytes=ctx)
        total += block_energy_uj(profile, plan_proc, rec.latency_us, works)
        used.add(plan_proc)
    total += sum(run_energy_uj(profile, p) for p in used)
    for t in report.transfers:
        s, d = back.get(t.src_processor, t.src_processor), back.get(t.dst_processor, t.dst_processor)
        if s in profile.processor_names and d in profile.processor_names:
            total += profile.transfer_energy_uj(s, d, t.bytes)
    return total


def run(args) -> int:
    from deepx_opt.runtime import execute, execute_graph

    if args.repeat < 1 or args.warmup < 0:
        raise InputError(f"--repeat must be ≥ 1 and --warmup ≥ 0 (got {args.repeat}, {args.warmup})")
    out = check_output_path(args.out, args.force) if args.out else None
    save = check_output_path(args.save_outputs, args.force) if args.save_outputs else None
    target = Path(args.target)
    profile = None
    mapping: dict[str, str] = {}
    if target.suffix == ".json" or (target.is_file() and not target.suffix == ".onnx"):
        from deepx_opt.cli._planning import _resolve_profile
        from deepx_opt.solvers import Plan

        if args.processor:
            raise InputError("--processor is for running a MODEL; a plan already places every layer")
        plan = Plan.load(target)
        meta = plan.meta or {}
        model_spec = args.model or meta.get("model")
        if not model_spec:
            raise PlanError(f"plan '{target}' does not record its model; give it with --model M")
        model = load_model_arg(model_spec, meta.get("input_shape", []) or args.input_shape,
                               meta.get("cut_outputs", []) or args.cut_outputs)
        if meta.get("profile"):
            profile = _resolve_profile(meta["profile"], None)
        mapping = processor_map_for(plan, profile, _parse_map(args.map))
        inputs = read_inputs(args.input, model)
        method = meta.get("rlc_method") or "weight"
        factorizers = None
        if method == "data" and any(a.rank is not None for a in plan.assignments.values()):
            # data-aware factors need the calibration data the plan was made with
            from deepx_opt.cli._planning import setup_from_meta

            factorizers = setup_from_meta(meta).candidates.estimator.factorizers
        outputs, report = execute(plan, model, inputs, processor_map=mapping, repeat=args.repeat,
                                  warmup=args.warmup, rlc_method=method, factorizers=factorizers)
    else:
        if not args.processor:
            raise InputError(f"'{args.target}' is not a plan (.json); to run a model give --processor NAME "
                             "(see `deepx processors`)")
        model = load_model_arg(args.target, args.input_shape, args.cut_outputs)
        inputs = read_inputs(args.input, model)
        outputs, report = execute_graph(model, {v: args.processor for v in model.layers()}, inputs,
                                        repeat=args.repeat, warmup=args.warmup)
        mapping = {args.processor: args.processor}
    if report.energy_source in ("none", None, ""):
        e = modelled_energy_uj(report, profile, mapping, model)
        if e is not None:
            report.energy_uj = e
            report.energy_source = (f"modelled: profile {profile.name}, its power models (or active power) at the "
                                    f"measured block times + link energy")
    if save:
        np.savez(save, **outputs)
    if out:
        out.write_text(report.to_json() if hasattr(report, "to_json") else json.dumps(report.to_dict()))
    if args.json:
        print_json(report.to_dict())
        return 0
    print_run_summary(report)
    if out:
        print(f"run report written to {out}")
    if save:
        print(f"outputs written to {save}")
    return 0


def print_run_summary(report) -> None:
    pred = report.predicted or {}
    spread = f"min {report.latency_us_min / 1000:.3f}, max {report.latency_us_max / 1000:.3f}"
    print(f"ran {report.model} on {', '.join(report.processors)}: {report.repeat} runs after {report.warmup} warm-up")
    rows = [["latency ms (median)", _ms(pred.get("makespan_us")), f"{report.latency_us / 1000:.3f} ({spread})"]]
    e_meas = "-" if report.energy_uj is None else f"{report.energy_uj / 1000:.3f} ({report.energy_source})"
    rows.append(["energy mJ", _ms(pred.get("energy_uj")), e_meas])
    rows.append(["copied between processors MB", "-", f"{report.transfer_bytes / 1e6:.3f}"])
    rows.append(["peak host memory MB", "-", f"{report.peak_rss_bytes / 1e6:.1f} ({report.mem_source})"])
    print_table(["", "predicted", "measured"], rows, align="lll")
    blk = []
    for v, rec in report.blocks.items():
        p_us = (pred.get("block_latency_us") or {}).get(v)
        err = "-" if not p_us else f"{100 * (p_us - rec.latency_us) / rec.latency_us:+.0f}%"
        rank = (pred.get("ranks") or {}).get(v)
        blk.append([v, rec.processor, "dense" if rank is None else f"r{rank}", "-" if p_us is None else f"{p_us:.1f}",
                    f"{rec.latency_us:.1f}", err])
    if blk:
        print_table(["block", "processor", "rank", "predicted µs", "measured µs", "error"], blk, align="lllrrr")
    for n in report.notes:
        print(f"note: {n}")


def _ms(v):
    return "-" if v is None else f"{v / 1000:.3f}"
