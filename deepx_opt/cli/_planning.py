"""What `deepx plan`, `compare` and `pareto` share: model → candidates → profile → Problem, from arguments.

A plan records how it was made (``Plan.meta``: model spec, input shapes, cut outputs, profile, RLC method
and calibration files), so `deepx run PLAN.json` can rebuild the very model it was planned for.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from deepx_opt.cli._common import add_model_args, load_arrays, load_model_arg
from deepx_opt.errors import InputError

__all__ = ["add_planning_args", "PlanningSetup", "setup_from_args", "setup_from_meta", "load_array"]

#: Samples of a trained zoo model's training split used to calibrate the accuracy-loss estimator.
ZOO_CALIB_SAMPLES = 600


def add_planning_args(p, *, budgets: bool = True) -> None:
    add_model_args(p)
    p.add_argument("--profile", required=True, metavar="P",
                   help="device profile: a built-in name (snapdragon800, tegrak1), a JSON path, or 'host' "
                        "(this machine, calibrated quickly and cached)")
    if budgets:
        g = p.add_mutually_exclusive_group()
        g.add_argument("--latency-budget", type=float, metavar="MS", help="latency budget (ms): least energy under it")
        g.add_argument("--energy-budget", type=float, metavar="MJ", help="energy budget (mJ): least latency under it")
    p.add_argument("--max-accuracy-loss", type=float, metavar="PTS", help="limit on the estimated top-1 loss (points)")
    p.add_argument("--processors", metavar="A,B", help="use only these processors of the profile")
    p.add_argument("--ranks", metavar="R,R,...",
                   help="candidate ranks: integers, fractions in (0,1) of the full rank, or eFRACTION for kept "
                        "spectral energy (default: 1/2..1/32 and e0.99,e0.95,e0.9)")
    p.add_argument("--no-compression", action="store_true", help="dense layers only (no RLC options)")
    p.add_argument("--calib", metavar="X.npy", help="calibration inputs (batch first) for the accuracy estimator; "
                   "zoo models with a dataset use their held-out split by default")
    p.add_argument("--labels", metavar="Y.npy", help="labels of --calib (fits the estimator to measured accuracy)")
    p.add_argument("--rlc-method", choices=["weight", "data"], help="plain or activation-weighted SVD (default: "
                   "data-aware when calibration data exists)")
    p.add_argument("--idle-energy", action="store_true", help="count idle power of every processor over the makespan")


def load_array(path: str, what: str) -> np.ndarray:
    """One array from a .npy file (or an .npz holding exactly one)."""
    data = load_arrays(path, what)
    if isinstance(data, dict):
        if len(data) != 1:
            raise InputError(f"{what} file '{path}' holds {len(data)} arrays {sorted(data)}; give a .npy or an .npz with one array")
        data = next(iter(data.values()))
    return data


def parse_ranks(spec: str | None):
    if not spec:
        return None
    out: list[Any] = []
    for tok in spec.split(","):
        tok = tok.strip()
        try:
            if tok.startswith("e"):
                float(tok[1:])
                out.append(tok)
            elif "/" in tok:
                a, b = tok.split("/")
                out.append(float(a) / float(b))
            elif "." in tok:
                out.append(float(tok))
            else:
                out.append(int(tok))
        except ValueError:
            raise InputError(f"--ranks item {tok!r} is not an integer rank, a fraction (0.25 or 1/4) or eFRACTION (e0.95)") from None
    return out


@dataclass
class PlanningSetup:
    model: Any
    candidates: Any
    problem: Any
    profile: Any
    meta: dict
    skipped: dict
    notes: list = field(default_factory=list)


def uncalibrated_notes(model, profile, spec: str, processors: list[str] | None) -> list[str]:
    """One line per group of calibrated processors whose calibration never timed some of ``model``'s blocks
    inside a model (``cost_models.calibrate.uncalibrated_blocks``), saying how to time them."""
    from deepx_opt.cost_models.calibrate import uncalibrated_blocks

    by_count: dict[int, list[str]] = {}
    for proc, blocks in uncalibrated_blocks(profile, model).items():
        if blocks and (processors is None or proc in processors):
            by_count.setdefault(len(blocks), []).append(proc)
    n = len(model.layers())
    return [f"note: {k} of {n} blocks of {model.name} were never timed inside a model when {', '.join(ps)} "
            f"{'was' if len(ps) == 1 else 'were'} calibrated; they are priced from the grid and other models' blocks, "
            f"which for a held-out model is often off by 20-40 % (docs/cost_models.md); `deepx calibrate --models "
            f"zoo,{spec} -o PROFILE.json` times them in context" for k, ps in sorted(by_count.items(), reverse=True)]


def _resolve_profile(spec: str, processors: list[str] | None):
    from deepx_opt.cost_models import load_profile

    if spec == "host":
        from deepx_opt.cost_models.calibrate import host_profile

        return host_profile()
    return load_profile(spec)


def _zoo_calibration(spec: str):
    """Held-out data of a zoo model trained on a real dataset, or None."""
    from deepx_opt import zoo

    if Path(spec).exists() or not zoo.is_zoo_name(spec):
        return None
    entry = next(e for e in zoo.list_models() if e.name == spec)
    if not entry.trained:
        return None
    # calibrate on part of the training split: the test split stays held out for measuring the loss
    ds = zoo.digits_dataset().for_model(spec)
    return np.ascontiguousarray(ds.x_train[:ZOO_CALIB_SAMPLES]), np.ascontiguousarray(ds.y_train[:ZOO_CALIB_SAMPLES])


def setup_from_meta(meta: dict, *, latency_budget_ms=None, energy_budget_mj=None, max_accuracy_loss=None,
                    time_limit_s=None) -> PlanningSetup:
    """Rebuild the model (and candidates) a plan was made for from its ``meta``."""
    import argparse

    ns = argparse.Namespace(
        model=meta["model"], input_shape=meta.get("input_shape", []), cut_outputs=meta.get("cut_outputs", []),
        profile=meta.get("profile", "host"), latency_budget=latency_budget_ms, energy_budget=energy_budget_mj,
        max_accuracy_loss=max_accuracy_loss, processors=",".join(meta.get("processors") or []) or None,
        ranks=meta.get("ranks"), no_compression=meta.get("no_compression", False), calib=meta.get("calib"),
        labels=meta.get("labels"), rlc_method=meta.get("rlc_method"), idle_energy=meta.get("idle_energy", False),
    )
    return setup_from_args(ns)


def setup_from_args(args, *, progress=None) -> PlanningSetup:
    from deepx_opt.graphs.candidates import candidates as make_candidates
    from deepx_opt.planner import build_problem

    say = progress or (lambda msg: None)
    model = load_model_arg(args.model, args.input_shape, args.cut_outputs)
    procs = [p.strip() for p in args.processors.split(",")] if getattr(args, "processors", None) else None
    say(f"profile {args.profile}")
    profile = _resolve_profile(args.profile, procs)
    calib = labels = None
    calib_source = None
    if args.labels and not args.calib:
        raise InputError("--labels given without --calib: labels need the calibration inputs they label")
    if args.calib:
        calib = load_array(args.calib, "--calib")
        labels = load_array(args.labels, "--labels") if args.labels else None
        calib_source = args.calib
    elif not args.no_compression:
        zc = _zoo_calibration(args.model)
        if zc is not None:
            calib, labels = zc
            calib_source = f"zoo:{args.model} training split ({len(calib)} samples)"
    method = args.rlc_method
    if method == "data" and calib is None:
        raise InputError("--rlc-method data needs calibration inputs (--calib X.npy)")
    if args.no_compression:
        cands = model
    else:
        say(f"RLC candidates for {len(model.weighted_layers())} weighted layers"
            + (f" (calibration: {calib_source})" if calib_source else " (no calibration data: proxy estimator)"))
        cands = make_candidates(model, ranks=parse_ranks(args.ranks), calib=calib, labels=labels, method=method)
    skipped: dict = {}
    problem = build_problem(
        cands, profile,
        latency_budget_ms=getattr(args, "latency_budget", None), energy_budget_mj=getattr(args, "energy_budget", None),
        max_accuracy_loss=args.max_accuracy_loss, processors=procs, include_idle_energy=args.idle_energy,
        skipped=skipped,
    )
    meta = {
        "model": args.model, "input_shape": list(args.input_shape), "cut_outputs": list(args.cut_outputs),
        "profile": args.profile if args.profile != "host" else "host", "profile_name": profile.name,
        "processors": procs, "ranks": args.ranks, "no_compression": bool(args.no_compression),
        "calib": args.calib, "labels": args.labels,
        "rlc_method": None if args.no_compression else cands.method,
        "idle_energy": bool(args.idle_energy),
        "latency_budget_ms": getattr(args, "latency_budget", None), "energy_budget_mj": getattr(args, "energy_budget", None),
        "max_accuracy_loss": args.max_accuracy_loss,
        "accuracy_estimator": None if args.no_compression else cands.estimator.summary().get("method"),
    }
    return PlanningSetup(model=model, candidates=cands, problem=problem, profile=profile, meta=meta, skipped=skipped,
                         notes=uncalibrated_notes(model, profile, args.model, procs))
