"""``deepx calibrate``: micro-benchmark this machine's processors and write a device profile.

Examples::

    deepx calibrate -o host.json                        # every processor, default mode (< 3 min)
    deepx calibrate --processors cpu,opencl:0 --quick -o host.json
    deepx calibrate --validate -o host.json --force     # then compare zoo blocks measured vs predicted
    deepx calibrate --models zoo,my_net.onnx -o host.json   # also time my_net's own layers in context
    deepx calibrate --cache                             # use / refresh ~/.cache/deepx_opt/host-<machine>.json
"""

from __future__ import annotations

import sys


def add_parser(sub) -> None:
    p = sub.add_parser("calibrate", help="benchmark this machine's processors and write a device profile",
                       description="Run micro-benchmarks of every kind of work on the real backends (numpy "
                                   "'cpu', OpenCL 'opencl:N'), fit latency models and links, and write a "
                                   "profile JSON. Powers are modelled unless NVML can measure them.")
    p.add_argument("-o", "--output", metavar="PROFILE.json", help="profile file to write")
    p.add_argument("--processors", metavar="LIST", default=None,
                   help="comma-separated processors (default: every available one, e.g. cpu,opencl:0)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--quick", dest="mode", action="store_const", const="quick", help="small grid, well under a minute")
    g.add_argument("--thorough", dest="mode", action="store_const", const="thorough", help="larger grid, more repetitions")
    p.set_defaults(mode="default")
    p.add_argument("--force", action="store_true", help="overwrite an existing output file")
    p.add_argument("--power", action="append", default=[], metavar="PROC=ACTIVE,IDLE",
                   help="modelled active and idle power in W of a processor (repeatable)")
    p.add_argument("--name", default=None, help="profile name (default: host-<machine key>)")
    p.add_argument("--models", default="zoo", metavar="LIST",
                   help="models run whole during calibration, whose layers the fit then predicts in their own "
                        "context: comma-separated zoo names and ONNX files, 'zoo' for the zoo models (default: "
                        "%(default)s; e.g. zoo,my_net.onnx to predict my_net's layers as well as the zoo's)")
    p.add_argument("--validate", action="store_true",
                   help="afterwards run every layer of zoo models (dense and at two ranks) and print measured vs "
                        "predicted latency: share within ±10%%, MAPE")
    p.add_argument("--validate-models", default="svhn,speakerid,audioscene,digits_mlp,digits_cnn", metavar="LIST",
                   help="models for --validate: zoo names and ONNX files (default: %(default)s)")
    p.add_argument("--cache", action="store_true",
                   help="read the cached profile of this machine if there is one (else calibrate and cache it); "
                        "with -o also copy it there")
    p.add_argument("--refresh", action="store_true", help="with --cache: recalibrate even when cached")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    p.set_defaults(func=run)


def _model_list(spec: str, option: str) -> list[str]:
    from deepx_opt.errors import InputError

    items = [m.strip() for m in spec.split(",") if m.strip()]
    if not items:
        raise InputError(f"{option} is empty; give comma-separated zoo names and ONNX files, e.g. zoo,my_net.onnx")
    return items


def _parse_powers(specs) -> dict[str, tuple[float, float]]:
    from deepx_opt.errors import InputError

    out = {}
    for s in specs:
        name, sep, vals = s.partition("=")
        try:
            a, i = (float(x) for x in vals.split(","))
            if not sep or a < 0 or i < 0:
                raise ValueError
        except ValueError:
            raise InputError(f"--power {s!r} is not PROC=ACTIVE,IDLE with non-negative watts (e.g. cpu=15,3)") from None
        out[name.strip()] = (a, i)
    return out


def repeat_check_lines(prof) -> list[str]:
    """One line per calibrated processor with its repeat check (``meta.calibration.processors.<p>.repeat_check``),
    and a warning for one whose dense blocks did not repeat."""
    from deepx_opt.cost_models.calibrate import REPEAT_WARN_PCT

    lines = []
    for name, info in prof.meta.get("calibration", {}).get("processors", {}).items():
        c = info.get("repeat_check")
        if not c:
            continue
        n_in = round(c["within_pct"] * c["blocks"] / 100)
        lines.append(f"repeat check {name}: {n_in} of {c['blocks']} dense blocks ({c['within_pct']:.1f}%) within ±10% "
                     f"of their calibrated time when timed again (drift {c['drift']:.2f})")
        if c["within_pct"] < REPEAT_WARN_PCT:
            lines.append(f"warning: the calibration of {name} did not repeat (under {REPEAT_WARN_PCT:.0f}%): the "
                         "machine was busy or changing state, and predictions for it will be no better than that; "
                         "calibrate again when it is quiet")
    return lines


def run(args) -> int:
    from deepx_opt.cli._common import check_output_path, print_table
    from deepx_opt.cost_models import save_profile
    from deepx_opt.cost_models.calibrate import (CEILING_HEADERS, MODES, calibrate, calibration_models,
                                                 ceiling_table, host_profile, summarize_validation, validate,
                                                 validation_ceiling)
    from deepx_opt.errors import InputError

    if not args.output and not args.cache:
        raise InputError("give -o PROFILE.json (or --cache to use the per-machine cache)")
    out = check_output_path(args.output, args.force) if args.output else None
    procs = [p.strip() for p in args.processors.split(",") if p.strip()] if args.processors else None
    powers = _parse_powers(args.power)
    specs = _model_list(args.models, "--models")
    if args.cache and specs != ["zoo"]:
        raise InputError("--models does not apply to --cache (the per-machine cache is calibrated on the zoo "
                         "models); write the profile with -o instead")
    # read every model first: a bad file fails now, not after minutes of benchmarks
    graphs = None if args.cache else calibration_models(specs, default=MODES[args.mode]["zoo"])
    vgraphs = calibration_models(_model_list(args.validate_models, "--validate-models")) if args.validate else []
    if args.cache:
        prof = host_profile(procs, mode=args.mode, refresh=args.refresh, progress=not args.no_progress)
    else:
        prof = calibrate(procs, mode=args.mode, progress=not args.no_progress, powers=powers or None, name=args.name,
                         models=graphs)
    if out is not None:
        save_profile(prof, out)
        print(f"wrote {out}")
    cal = prof.meta.get("calibration", {})
    rows = []
    for q in prof.processors:
        info = cal.get("processors", {}).get(q.name, {})
        mapes = [m.get("train_mape_", float("nan")) for m in q.latency_models.values()]
        rows.append([q.name, q.kind, info.get("device", "-")[:40], str(info.get("samples", "-")),
                     str(len(q.latency_models)), f"{sum(mapes) / len(mapes):.1f}" if mapes else "-",
                     q.power_source, f"{info.get('seconds', 0):.0f}"])
    print_table(["processor", "kind", "device", "samples", "kinds", "fit MAPE %", "power", "s"], rows,
                align="lllrrrlr")
    for lk in prof.links:
        print(f"link {lk.src} <-> {lk.dst}: {lk.bandwidth_bytes_per_s / 1e9:.2f} GB/s, {lk.latency_us:.1f} us")
    for line in repeat_check_lines(prof):
        print(line)
    if args.validate:
        models = [g.name for g in vgraphs]
        cfg = MODES[args.mode]
        vrows = validate(prof, vgraphs, processors=procs, passes=cfg["zoo_passes"], budget_s=cfg["zoo_budget_s"],
                         progress=not args.no_progress)
        table = [[s["processor"], s["variant"], str(s["blocks"]), f"{s['within_pct']:.0f}%", f"{s['mape_pct']:.1f}",
                  f"{s['median_abs_err_pct']:.1f}", f"{s['measured_total_ms']:.2f}", f"{s['predicted_total_ms']:.2f}"]
                 for s in summarize_validation(vrows)]
        print()
        print(f"validation on {', '.join(models)}: every block measured (median of its timed runs, as calibrated) "
              "vs predicted", file=sys.stdout)
        print_table(["processor", "blocks of", "n", "within ±10%", "MAPE %", "median |err| %", "measured ms",
                     "predicted ms"], table, align="llrrrrrr")
        ceiling = validation_ceiling(prof, vrows)
        if ceiling:
            print()
            print("repeatability: the dense blocks as calibration timed them vs as validation timed them again "
                  "(no model can score above this share; drift: validation / calibration, median)")
            print_table(list(CEILING_HEADERS), ceiling_table(ceiling), align="lrrrr")
    return 0
