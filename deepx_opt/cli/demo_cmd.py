"""``deepx demo``: the main job, end to end, on this machine's own processors, with no files to provide.

1. find this machine's processors and calibrate them quickly (cached for the next run);
2. take a zoo model trained on real data (its held-out split measures accuracy for real);
3. build its RLC candidates and the planning Problem; pick a latency budget between the fastest plan and the
   dense single-processor one, so the budget binds;
4. solve it with CP-SAT (least energy under the budget and an accuracy limit), compare with every solver
   and heuristic;
5. run the plan for real, measure the accuracy of the plan's compressed model on the held-out split;
6. write ``OUT/report.html`` (plan graph, timeline, comparison, predicted vs measured) and print a summary.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from pathlib import Path

from deepx_opt.cli._common import print_table
from deepx_opt.errors import InputError


def add_parser(sub) -> None:
    p = sub.add_parser("demo", help="the whole job on this machine: calibrate, plan, compare, run, report",
                       description="Calibrate this machine's processors (quick, cached), plan a zoo model under a "
                                   "latency budget and an accuracy limit, compare with the heuristics, run the plan "
                                   "for real and write an HTML report.")
    p.add_argument("-o", "--out", default="demo-out", metavar="DIR", help="output folder (default demo-out)")
    p.add_argument("--model", default="digits_cnn", help="zoo model (default digits_cnn, trained on real data)")
    p.add_argument("--max-accuracy-loss", type=float, default=1.0, metavar="PTS", help="accuracy limit (default 1)")
    p.add_argument("--time-limit", type=float, default=10.0, metavar="S", help="time limit per solver (default 10 s)")
    p.add_argument("--repeat", type=int, default=30, metavar="N", help="timed runs of the plan (default 30)")
    p.add_argument("--recalibrate", action="store_true", help="calibrate again instead of using the cached profile")
    p.set_defaults(func=run)


def _say(msg: str) -> None:
    print(f"[deepx demo] {msg}", file=sys.stderr, flush=True)


def run(args) -> int:
    import numpy as np

    from deepx_opt import zoo
    from deepx_opt.solvers.compare import compare_problem
    from deepx_opt.cli._planning import _zoo_calibration
    from deepx_opt.cli.run_cmd import modelled_energy_uj
    from deepx_opt.cost_models.calibrate import host_profile
    from deepx_opt.graphs import load_onnx
    from deepx_opt.graphs.accuracy import evaluate_model
    from deepx_opt.graphs.candidates import candidates
    from deepx_opt.planner import build_problem
    from deepx_opt.runtime import available_backends, execute
    from deepx_opt.solvers import check_plan, get_solver, solve
    from deepx_opt.viz import save_graph, save_timeline, write_report

    t_start = time.perf_counter()
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise InputError(f"--out '{out}' exists and is not a folder")
    out.mkdir(parents=True, exist_ok=True)
    if not zoo.is_zoo_name(args.model):
        raise InputError(f"--model {args.model!r} is not a zoo model; see `deepx zoo list`")
    entry = next(e for e in zoo.list_models() if e.name == zoo.canonical_name(args.model))

    procs = available_backends()
    _say(f"processors of this machine: {', '.join(procs)}")
    _say("calibrating them (quick mode; cached after the first run)")
    profile = host_profile(procs, mode="quick", refresh=args.recalibrate)
    profile_path = out / "host-profile.json"
    from deepx_opt.cost_models import save_profile

    save_profile(profile, profile_path)

    _say(f"model {entry.name}: {entry.description}")
    model = load_onnx(zoo.build(entry.name), name=entry.name)
    calib, labels = _zoo_calibration(entry.name) or (None, None)  # training split; the test split stays held out
    x_test = y_test = None
    if entry.trained:
        ds = zoo.digits_dataset().for_model(entry.name)
        x_test, y_test = np.ascontiguousarray(ds.x_test), np.ascontiguousarray(ds.y_test)
    _say("RLC candidates (SVD ranks per layer) and the accuracy-loss estimator")
    cands = candidates(model, calib=calib, labels=labels)

    # A budget that binds: between the fastest feasible plan and the dense plan on the best single processor.
    loose = build_problem(cands, profile, max_accuracy_loss=args.max_accuracy_loss, goal="min_latency")
    fastest = solve(loose, time_limit_s=args.time_limit)
    singles = [get_solver(f"{p}_only").solve(dataclasses.replace(loose, max_accuracy_loss=None), time_limit_s=args.time_limit)
               for p in profile.processor_names]
    dense_best = min(s.makespan_us for s in singles if s.status.has_plan)
    budget_ms = round((fastest.makespan_us + 0.5 * max(dense_best - fastest.makespan_us, 0.0)) / 1000 * 1.02, 4)
    problem = build_problem(cands, profile, latency_budget_ms=budget_ms, max_accuracy_loss=args.max_accuracy_loss,
                            name=entry.name)
    problem.save(out / "problem.json")
    _say(f"planning: least energy with latency ≤ {budget_ms:.3f} ms and accuracy loss ≤ {args.max_accuracy_loss:g} pts")
    plan = solve(problem, time_limit_s=args.time_limit)
    meta = {"model": entry.name, "input_shape": [], "cut_outputs": [], "profile": str(profile_path),
            "profile_name": profile.name, "processors": None, "ranks": None, "no_compression": False,
            "calib": None, "labels": None, "rlc_method": cands.method, "idle_energy": False,
            "latency_budget_ms": budget_ms, "energy_budget_mj": None, "max_accuracy_loss": args.max_accuracy_loss,
            "accuracy_estimator": cands.estimator.summary().get("method")}
    plan = dataclasses.replace(plan, meta=meta)
    plan.save(out / "plan.json")
    violations = check_plan(problem, plan)

    _say("comparing with every solver and heuristic")
    rows = compare_problem(problem, time_limit_s=args.time_limit, progress=_say)
    compare_doc = {"model": entry.name, "profile": profile.name, "goal": problem.goal,
                   "latency_budget_us": problem.latency_budget_us, "energy_budget_uj": None,
                   "max_accuracy_loss": problem.max_accuracy_loss, "meta": meta, "rows": rows}
    (out / "compare.json").write_text(json.dumps(compare_doc, indent=1))

    _say(f"running the plan for real ({args.repeat} timed runs)")
    x0 = {name: (x_test[:1] if x_test is not None else
                 np.random.default_rng(0).standard_normal(info.shape).astype(info.dtype))
          for name, info in model.inputs.items()}
    outputs, report = execute(plan, model, x0, repeat=args.repeat, warmup=3, rlc_method=cands.method,
                              factorizers=cands.estimator.factorizers)
    mapping = {p: profile.processor(p).backend or p for p in profile.processor_names}
    if report.energy_source in ("none", None, ""):
        e = modelled_energy_uj(report, profile, mapping, model)
        if e is not None:
            report.energy_uj = e
            report.energy_source = (f"modelled: profile {profile.name}, its power models (or active power) at the "
                                    f"measured block times + link energy")

    acc = None
    if x_test is not None:
        ranks = {v: a.rank for v, a in plan.assignments.items() if a.rank is not None}
        dense_eval = evaluate_model(model, x_test, y_test)
        plan_eval = evaluate_model(cands.apply(ranks), x_test, y_test)
        acc = {"dense_top1_pct": dense_eval["top1_pct"], "plan_top1_pct": plan_eval["top1_pct"],
               "measured_loss_pts": dense_eval["top1_pct"] - plan_eval["top1_pct"],
               "predicted_loss_pts": plan.accuracy_loss,  # Σ a: the conservative bound the plan holds
               "predicted_loss_point_pts": float(cands.predicted_loss_point_pts(ranks)),
               "test_samples": int(len(y_test))}
        report.notes.append(f"accuracy on the {len(y_test)} held-out digits: dense {acc['dense_top1_pct']:.2f}%, "
                            f"plan {acc['plan_top1_pct']:.2f}% (measured loss {acc['measured_loss_pts']:.2f} pts, "
                            f"bound {acc['predicted_loss_pts']:.2f}, estimate {acc['predicted_loss_point_pts']:.2f})")
    (out / "run.json").write_text(report.to_json())

    _say("drawing the plan and writing the report")
    save_graph(plan, problem, out / "plan-graph.svg")
    save_timeline(plan, out / "timeline.svg", problem, run=report)
    write_report(out / "report.html", plan, problem=problem, run=report, compare=compare_doc,
                 title=f"deepx demo: {entry.name} on this machine")
    elapsed = time.perf_counter() - t_start

    print(f"deepx demo: {entry.name} on {', '.join(procs)} (profile {profile.name})")
    print(f"plan: {plan.status.value} by {plan.solver} in {plan.solve_time_s:.2f} s; "
          f"least energy with latency ≤ {budget_ms:.3f} ms, accuracy loss ≤ {args.max_accuracy_loss:g} pts; "
          f"checker: {'valid' if not violations else '; '.join(violations)}")
    placed = {}
    for a in plan.assignments.values():
        placed.setdefault(a.processor, []).append(a.layer if a.rank is None else f"{a.layer}@r{a.rank}")
    for p, ls in placed.items():
        print(f"  {p}: {', '.join(ls)}")
    # the plan's makespan is its blocks' (and copies') time; a run adds the executor's fixed cost per inference
    in_blocks_us = sum(b.latency_us for b in report.blocks.values()) + report.transfer_us
    rows_out = [["latency ms", f"{plan.makespan_us / 1000:.3f}",
                 f"{report.latency_us / 1000:.3f} end to end, {in_blocks_us / 1000:.3f} in blocks and copies "
                 f"(medians of {report.repeat})"],
                ["energy mJ", f"{plan.energy_uj / 1000:.4f}",
                 "-" if report.energy_uj is None else f"{report.energy_uj / 1000:.4f} ({report.energy_source.split(':')[0]})"]]
    if acc:
        rows_out.append(["accuracy loss pts",
                         f"{acc['predicted_loss_point_pts']:.2f} (≤ {acc['predicted_loss_pts']:.2f})",
                         f"{acc['measured_loss_pts']:.2f} (top-1 {acc['dense_top1_pct']:.2f}% → {acc['plan_top1_pct']:.2f}%)"])
    print_table(["", "predicted", "measured"], rows_out, align="lrl")
    ok = [r for r in rows if r["status"] in ("OPTIMAL", "FEASIBLE")]
    best_h = min((r for r in ok if r["solver"] not in ("cpsat", "pulp_cbc", "pulp_highs", "dp", "brute")),
                 key=lambda r: r["energy_uj"], default=None)
    if best_h:
        print(f"best heuristic: {best_h['solver']} at {best_h['energy_uj'] / 1000:.4f} mJ "
              f"({best_h['energy_uj'] / plan.energy_uj:.2f}× the plan's energy)")
    print(f"report: {out / 'report.html'} (also plan.json, problem.json, compare.json, run.json, pictures) "
          f"— done in {elapsed:.0f} s")
    return 0
