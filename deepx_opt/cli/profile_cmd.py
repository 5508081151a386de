"""``deepx profile {list,show,check} ...``: device profiles.

``show NAME`` prints the processors table and links; ``check NAME`` predicts every single-processor cell of
the DeepX paper's energy table with the profile and prints published, predicted and residual %, and the
refusals of the "—" cells (exit 1 when a residual exceeds ``--max-residual`` or a "—" cell is not refused).
"""

from __future__ import annotations

import math

from deepx_opt.cli._common import print_json, print_table


def add_parser(sub) -> None:
    p = sub.add_parser("profile", help="list, show or check device profiles",
                       description="Device profiles: built-in (snapdragon800, tegrak1) or a JSON file written by "
                                   "`deepx calibrate`.")
    psub = p.add_subparsers(dest="profile_command", metavar="ACTION")
    psub.required = True
    lp = psub.add_parser("list", help="list the built-in profiles")
    lp.set_defaults(func=run_list)
    sp = psub.add_parser("show", help="processors, powers, memory and links of a profile")
    sp.add_argument("name", metavar="NAME", help="built-in profile name or a profile JSON path")
    sp.add_argument("--models", action="store_true", help="also print every latency model's coefficients")
    sp.add_argument("--json", action="store_true", help="print the profile JSON")
    sp.set_defaults(func=run_show)
    cp = psub.add_parser("check", help="compare a paper device profile with the DeepX published energies")
    cp.add_argument("name", metavar="NAME", help="snapdragon800, tegrak1, or a profile JSON fitted to one of them")
    cp.add_argument("--max-residual", type=float, default=25.0, metavar="PCT",
                    help="exit 1 when any cell's |residual| exceeds PCT (default 25)")
    cp.add_argument("--rebuild", action="store_true",
                    help="rebuild the four models from the zoo instead of reading their stored summaries (slow)")
    cp.add_argument("--json", action="store_true", help="print the cells as JSON")
    cp.set_defaults(func=run_check)


def run_list(args) -> int:
    from deepx_opt.cost_models import builtin_profiles, load_profile

    rows = []
    for n in builtin_profiles():
        p = load_profile(n)
        rows.append([n, ", ".join(p.processor_names), p.description[:70]])
    print_table(["name", "processors", "description"], rows, align="lll")
    return 0


def run_show(args) -> int:
    from deepx_opt.cost_models import load_profile

    p = load_profile(args.name)
    if args.json:
        print_json(p.to_dict())
        return 0
    print(f"profile {p.name} (version {p.version}), host {p.host}")
    if p.description:
        print(p.description)
    rows = []
    for q in p.processors:
        rows.append([q.name, q.kind, q.backend or "-", f"{q.memory_bytes / 2**20:,.0f}", f"{q.active_power_w:.3g}",
                     f"{q.idle_power_w:.3g}", q.power_source, ", ".join(q.unsupported_kinds) or "-",
                     str(len(q.latency_models))])
    print_table(["processor", "kind", "backend", "memory MiB", "active W", "idle W", "power", "unsupported",
                 "models"], rows, align="lllrrrllr")
    if p.links:
        print()
        def mbps(bw: float) -> str:
            return f"{bw / 1e6:,.0f}" if bw >= 1e9 else f"{bw / 1e6:,.4g}"

        lrows = [[f"{lk.src} {'<->' if lk.symmetric else '->'} {lk.dst}", mbps(lk.bandwidth_bytes_per_s),
                  f"{lk.latency_us:,.0f}", f"{lk.energy_per_byte_uj * 1000:.4g}", f"{lk.power_w:.3g}",
                  "wireless" if lk.wireless else "wired"] for lk in p.links]
        print_table(["link", "MB/s", "latency us", "nJ/byte", "wait W", "type"], lrows, align="lrrrrl")
    from deepx_opt.cli.calibrate_cmd import repeat_check_lines

    checks = repeat_check_lines(p)
    if checks:
        print()
        print("\n".join(checks))
    if args.models:
        from deepx_opt.cost_models import LatencyModel

        print()
        mrows = []
        for q in p.processors:
            for kind, md in sorted(q.latency_models.items()):
                m = LatencyModel.from_dict(md)
                c = m.coef_
                mrows.append([q.name, kind, m.family_, f"{c[0]:.4g}",
                              f"{1e-3 / c[1]:.4g}" if c[1] > 0 else "inf",
                              f"{1e-3 / c[2]:.4g}" if len(c) > 2 and c[2] > 0 else "inf",
                              f"{m.train_mape_:.1f}" if m.n_samples_ else "-", str(m.n_samples_)])
        print_table(["processor", "kind", "family", "c0 us", "GFLOP/s", "GB/s", "fit MAPE %", "samples"], mrows,
                    align="lllrrrrr")
        trows = []
        for q in p.processors:
            for e in (q.lowrank_table or {}).get("entries", []):
                kind, *dims = e["signature"]
                trows.append([q.name, f"{kind} {'×'.join(str(d) for d in dims)}",
                              ", ".join(f"{r}: ×{math.exp(v):.2f}" for r, v in zip(e["ranks"], e["log_ratio"]))])
        if trows:
            print("\nlow-rank table: a factor pair of these dense shapes costs its two factors' regression × the "
                  "in-model ratio, interpolated in ln(rank)")
            print_table(["processor", "dense shape", "rank: ratio"], trows, align="lll")
    return 0


def run_check(args) -> int:
    from deepx_opt.cost_models import load_profile
    from deepx_opt.cost_models.paper import compare_with_paper, paper_summaries
    from deepx_opt.profiles.fit_paper import format_table

    p = load_profile(args.name)
    cells = compare_with_paper(p, paper_summaries(rebuild=args.rebuild))
    bad = [c for c in cells if not c.ok or (c.residual_pct is not None and abs(c.residual_pct) > args.max_residual)]
    if args.json:
        print_json([{"processor": c.processor, "model": c.model, "published_mj": c.published_mj,
                     "predicted_mj": c.predicted_mj, "residual_pct": c.residual_pct, "latency_ms": c.latency_ms,
                     "refused": c.refused} for c in cells])
    else:
        print(f"profile {p.name} vs DeepX (IPSN 2016) single-processor energy of one inference, full rank")
        print(format_table(cells))
        res = [abs(c.residual_pct) for c in cells if c.residual_pct is not None]
        print(f"{len(res)} cells predicted, worst |residual| {max(res):.1f}%, mean {sum(res) / len(res):.1f}%; "
              f"{sum(c.published_mj is None for c in cells)} '—' cells, "
              f"{sum(c.published_mj is None and c.refused is not None for c in cells)} refused")
        for c in bad:
            why = "not refused" if c.published_mj is None else (
                "refused" if c.predicted_mj is None else f"residual {c.residual_pct:+.1f}%")
            print(f"FAIL {c.processor} {c.model}: {why}")
    return 1 if bad else 0
