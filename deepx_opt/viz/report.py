"""One self-contained HTML page about a plan: summary, plan graph, timeline, solver-vs-heuristics table,
predicted-vs-measured table and the per-block assignments.

Self-contained means: inline SVG pictures, inline CSS, no script, nothing fetched from the network (not
even a favicon), so the page can be mailed or archived and opens the same anywhere. Every piece of text
that comes from a plan, problem or run is escaped (:func:`html.escape`).

Inputs
------
* a :class:`~deepx_opt.solvers.plan.Plan` (required);
* its :class:`~deepx_opt.solvers.problem.Problem` (optional: needed for the graph, energies, budgets and
  for re-checking the plan with :func:`~deepx_opt.solvers.plan.check_plan`);
* a run: a :class:`~deepx_opt.runtime.RunReport` or its JSON dict (optional; see :func:`run_rows`);
* plans to compare with (optional): Plans, or the JSON of ``deepx compare`` (see :func:`load_compare`).

Example
-------
>>> from deepx_opt.solvers.synthetic import chain_problem
>>> from deepx_opt.solvers import get_solver
>>> from deepx_opt.viz.report import render_report
>>> prob = chain_problem(4, seed=0)
>>> page = render_report(get_solver("heft").solve(prob), problem=prob)
>>> page.startswith("<!DOCTYPE html>") and "<script" not in page
True
"""

from __future__ import annotations

import html
import json
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Sequence

from deepx_opt.errors import DeepxError, InputError, PlanError
from deepx_opt.viz._common import fmt_bytes, fmt_energy_uj, fmt_rank, fmt_time_us, lighten, processor_colors, processor_order

if TYPE_CHECKING:  # pragma: no cover
    from deepx_opt.solvers.plan import Plan
    from deepx_opt.solvers.problem import Problem

__all__ = ["render_report", "write_report", "load_compare", "run_rows", "compare_rows"]

_CSS = """
:root { --fg: #1d2330; --muted: #5b6472; --line: #d9dde3; --bg: #ffffff; --band: #f5f7fa; --bad: #b3261e; --ok: #1e7b34; }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.45 -apple-system, "Segoe UI", "DejaVu Sans", Helvetica, Arial, sans-serif;
       color: var(--fg); background: var(--bg); }
header { padding: 18px 28px 12px; border-bottom: 1px solid var(--line); background: var(--band); }
header h1 { margin: 0 0 4px; font-size: 22px; }
header p { margin: 0; color: var(--muted); }
main { padding: 8px 28px 40px; max-width: 1280px; }
section { margin-top: 26px; }
h2 { font-size: 17px; margin: 0 0 10px; padding-bottom: 4px; border-bottom: 2px solid var(--line); }
p.note { color: var(--muted); margin: 6px 0; }
table { border-collapse: collapse; margin: 4px 0 8px; }
th, td { padding: 4px 10px; border-bottom: 1px solid var(--line); text-align: left; vertical-align: top; }
th { background: var(--band); font-weight: 600; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
tr.this td { background: #fff6d6; font-weight: 600; }
table.kv th { background: none; font-weight: 600; padding-right: 18px; }
.status { display: inline-block; padding: 0 7px; border-radius: 9px; font-size: 12px; font-weight: 600; color: #fff; }
.status.OPTIMAL { background: var(--ok); } .status.FEASIBLE { background: #2f6fb0; }
.status.INFEASIBLE, .status.UNKNOWN { background: var(--bad); }
.bad { color: var(--bad); } .ok { color: var(--ok); }
.swatch { display: inline-block; width: 11px; height: 11px; border-radius: 2px; margin-right: 5px; vertical-align: -1px; border: 1px solid; }
figure { margin: 6px 0; overflow-x: auto; }
svg.deepx-fig { display: block; }
ul.violations { margin: 4px 0; color: var(--bad); }
footer { margin-top: 36px; color: var(--muted); font-size: 12px; }
"""


def _e(x: Any) -> str:
    return html.escape(str(x), quote=True)


def _num(x: float | None, fmt: str = "{:.4g}") -> str:
    return "—" if x is None else fmt.format(x)


def _status(s: str) -> str:
    return f'<span class="status {_e(s)}">{_e(s)}</span>'


def _table(headers: Sequence[str], rows: Iterable[Sequence[str]], *, num_cols: Sequence[int] = (),
           row_classes: Sequence[str] | None = None, escaped: bool = False) -> str:
    """An HTML table; cells are escaped unless ``escaped`` (already-safe HTML)."""
    head = "".join(f'<th class="num">{_e(h)}</th>' if i in num_cols else f"<th>{_e(h)}</th>" for i, h in enumerate(headers))
    body = []
    for k, r in enumerate(rows):
        cls = f' class="{_e(row_classes[k])}"' if row_classes and row_classes[k] else ""
        cells = "".join(
            (f'<td class="num">' if i in num_cols else "<td>") + (c if escaped else _e(c)) + "</td>" for i, c in enumerate(r)
        )
        body.append(f"<tr{cls}>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


# ------------------------------------------------------------------------------------------ inputs
def load_compare(source: Any) -> list["Plan"]:
    """Plans to compare with, from Plans, plan dicts, or a JSON file (path) holding a plan, a list of
    plans, an object whose ``"plans"`` (or ``"results"``, each with a ``"plan"``) holds them, or the
    output of ``deepx compare -o COMPARE.json`` (``"rows"``; a solver that failed becomes an UNKNOWN
    plan carrying its message)."""
    from deepx_opt.solvers.plan import Plan, Status

    if isinstance(source, (str, Path)):
        p = Path(source)
        if not p.exists():
            raise InputError(f"compare file '{p}' does not exist")
        try:
            source = json.loads(p.read_text())
        except json.JSONDecodeError as exc:
            raise InputError(f"compare file '{p}' is not JSON: {exc}") from None
    if isinstance(source, Plan):
        return [source]
    if isinstance(source, Mapping):
        if source.get("format") == "deepx_opt.plan":
            return [Plan.from_dict(source)]
        if isinstance(source.get("rows"), list):  # `deepx compare -o COMPARE.json`
            out = []
            for row in source["rows"]:
                if isinstance(row, Mapping) and isinstance(row.get("plan"), Mapping):
                    out.append(Plan.from_dict(row["plan"]))
                elif isinstance(row, Mapping) and row.get("solver"):
                    # a solver that raised: keep it in the table, with its message
                    out.append(Plan(problem_name=str(source.get("model", "?")), solver=str(row["solver"]),
                                    status=Status.UNKNOWN, goal=str(source.get("goal", "min_energy")),
                                    message=f"{row.get('status', 'ERROR')}: {row.get('message', '')}",
                                    solve_time_s=float(row.get("solve_time_s") or 0.0)))
                else:
                    raise InputError(f"compare row {str(row)[:80]!r} has neither a plan nor a solver name")
            return out
        for key in ("plans", "results"):
            if key in source:
                return load_compare(source[key])
        raise InputError(
            f"compare JSON object has keys {sorted(source)[:8]}; expected a plan, a list of plans, "
            "{'plans': [...]}, {'results': [{'plan': ...}]} or the output of `deepx compare -o`"
        )
    if isinstance(source, (list, tuple)):
        out = []
        for item in source:
            if isinstance(item, Plan):
                out.append(item)
            elif isinstance(item, Mapping) and item.get("format") == "deepx_opt.plan":
                out.append(Plan.from_dict(item))
            elif isinstance(item, Mapping) and isinstance(item.get("plan"), Mapping):
                out.append(Plan.from_dict(item["plan"]))
            else:
                raise InputError(f"compare entry {str(item)[:80]!r} is not a deepx_opt plan")
        return out
    raise InputError(f"cannot read plans to compare from {type(source).__name__}")


def _get(obj: Any, key: str, default: Any = None) -> Any:
    if isinstance(obj, Mapping):
        return obj.get(key, default)
    return getattr(obj, key, default)


def _as_run_dict(run: Any) -> Mapping[str, Any]:
    if isinstance(run, Mapping):
        return run
    if hasattr(run, "to_dict"):
        return run.to_dict()
    raise InputError(f"cannot read a run report from {type(run).__name__}; expected a RunReport or its JSON dict")


def run_rows(run: Any, plan: "Plan") -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Per-block predicted vs measured rows and run totals from a
    :class:`~deepx_opt.runtime.executor.RunReport` (object or its JSON dict).

    Measured is each block's ``latency_us`` (median over the timed repeats); predicted is the run's
    ``predicted["block_latency_us"]`` or else the plan's finish − start.
    """
    d = _as_run_dict(run)
    blocks = d.get("blocks")
    if blocks is None:
        raise InputError(f"run report has keys {sorted(d)[:10]}; expected per-block measurements under 'blocks'")
    if isinstance(blocks, Mapping):
        blocks = list(blocks.values())
    predicted = (d.get("predicted") or {}).get("block_latency_us", {})
    rows = []
    for b in blocks:
        layer = _get(b, "layer")
        a = plan.assignments.get(layer)
        meas = _get(b, "latency_us")
        if meas is None and _get(b, "finish_us") is not None and _get(b, "start_us") is not None:
            meas = float(_get(b, "finish_us")) - float(_get(b, "start_us"))
        pred = predicted.get(layer)
        if pred is None and a is not None:
            pred = a.finish_us - a.start_us
        rows.append({
            "layer": layer,
            "plan_processor": a.processor if a else None,
            "processor": _get(b, "processor"),
            "predicted_us": None if pred is None else float(pred),
            "measured_us": None if meas is None else float(meas),
        })
    order = {n: i for i, n in enumerate(sorted(plan.assignments, key=lambda n: plan.assignments[n].start_us))}
    rows.sort(key=lambda r: order.get(r["layer"], len(order)))
    totals = {k: d.get(k) for k in ("latency_us", "latency_us_min", "latency_us_max", "repeat", "energy_uj",
                                      "energy_source", "peak_rss_bytes", "peak_live_bytes", "transfer_bytes",
                                      "transfer_us", "processors", "notes")}
    totals["predicted_makespan_us"] = (d.get("predicted") or {}).get("makespan_us")
    totals["predicted_energy_uj"] = (d.get("predicted") or {}).get("energy_uj")
    return rows, totals


def compare_rows(plan: "Plan", others: Sequence["Plan"], problem: "Problem | None" = None) -> list[dict[str, Any]]:
    """Rows of the solver-vs-heuristics table: this plan first, then the others by objective."""
    from deepx_opt.solvers.plan import check_plan

    seen = {(plan.solver, plan.problem_name, plan.goal)}
    plans = [plan] + sorted(
        [p for p in others if (p.solver, p.problem_name, p.goal) not in seen],
        key=lambda p: (not p.status.has_plan, p.objective if p.objective is not None else float("inf")),
    )
    rows = []
    for p in plans:
        check = None
        if problem is not None and p.problem_name == problem.name and p.goal == problem.goal:
            check = check_plan(problem, p)
        rel = None
        if p.objective is not None and plan.objective:
            rel = p.objective / plan.objective
        rows.append({"plan": p, "this": p is plan, "check": check, "relative": rel})
    return rows


# ------------------------------------------------------------------------------------------ sections
def _summary(plan: "Plan", problem: "Problem | None", violations: list[str] | None) -> str:
    unit = "µJ" if plan.goal == "min_energy" else "µs"
    kv = [
        ("problem", _e(plan.problem_name)),
        ("solver", f"{_e(plan.solver)} {_status(plan.status.value)}"),
        ("goal", _e("least energy" if plan.goal == "min_energy" else "least latency (makespan)")),
        ("makespan (predicted)", _e(fmt_time_us(plan.makespan_us))),
        ("energy (predicted)", _e(fmt_energy_uj(plan.energy_uj)) + (
            " (" + ", ".join(f"{_e(k)} {_e(fmt_energy_uj(v))}" for k, v in plan.energy_breakdown_uj.items()) + ")"
            if plan.energy_breakdown_uj else "")),
        ("accuracy loss (estimated)", _e(_num(plan.accuracy_loss)) + " points"),
        ("objective / bound / gap", f"{_e(_num(plan.objective))} / {_e(_num(plan.bound))} {unit} / "
                                    f"{_e('—' if plan.gap is None else f'{100 * plan.gap:.3g} %')}"),
        ("solve time", _e(f"{plan.solve_time_s:.3g} s")),
    ]
    if plan.memory_bytes:
        kv.append(("memory per processor", ", ".join(f"{_e(k)} {_e(fmt_bytes(v))}" for k, v in plan.memory_bytes.items())))
    if plan.message:
        kv.append(("solver message", _e(plan.message)))
    meta = getattr(plan, "meta", None) or {}
    made = [f"{k} {meta[k]}" for k in ("model", "profile_name", "rlc_method", "accuracy_estimator", "calib")
            if meta.get(k) not in (None, "", [])]
    if made:
        kv.append(("made from", _e(", ".join(made))))
    if problem is not None:
        budgets = []
        if problem.latency_budget_us is not None:
            budgets.append(f"latency ≤ {fmt_time_us(problem.latency_budget_us)}")
        if problem.energy_budget_uj is not None:
            budgets.append(f"energy ≤ {fmt_energy_uj(problem.energy_budget_uj)}")
        if problem.max_accuracy_loss is not None:
            budgets.append(f"accuracy loss ≤ {problem.max_accuracy_loss:g} points")
        kv.append(("budgets", _e(", ".join(budgets) or "none")))
        procs = []
        colors = processor_colors(processor_order(plan, problem))
        for pr in problem.processors:
            n = sum(1 for a in plan.assignments.values() if a.processor == pr.name)
            cap = "unlimited" if pr.memory_bytes is None else fmt_bytes(pr.memory_bytes)
            sw = f'<span class="swatch" style="background:{lighten(colors[pr.name], 0.6)};border-color:{colors[pr.name]}"></span>'
            procs.append(f"{sw}{_e(pr.name)} ({_e(pr.kind)}, memory {_e(cap)}): {n} blocks")
        kv.append(("processors", "<br>".join(procs)))
        kv.append(("layers / edges", _e(f"{len(problem.layers)} / {len(problem.edges)}")))
        if violations is not None:
            kv.append(("independent check", '<span class="ok">valid (check_plan found no violation)</span>' if not violations
                       else f'<span class="bad">{len(violations)} violation(s), listed below</span>'))
    rows = "".join(f"<tr><th>{_e(k)}</th><td>{v}</td></tr>" for k, v in kv)
    out = f'<table class="kv">{rows}</table>'
    if violations:
        out += '<ul class="violations">' + "".join(f"<li>{_e(v)}</li>" for v in violations[:50]) + "</ul>"
    return out


def _compare_table(rows: list[dict[str, Any]], goal: str) -> str:
    unit = "µJ" if goal == "min_energy" else "µs"
    headers = ["solver", "status", "makespan", "energy", "accuracy loss (pts)", f"objective ({unit})", "gap",
               "× this plan", "solve time", "check"]
    body, classes = [], []
    for r in rows:
        p = r["plan"]
        chk = "—" if r["check"] is None else ('<span class="ok">valid</span>' if not r["check"]
                                              else f'<span class="bad" title="{_e("; ".join(r["check"][:5]))}">{len(r["check"])} violation(s)</span>')
        body.append([
            _e(p.solver) + (" (this plan)" if r["this"] else ""),
            _status(p.status.value),
            _e(fmt_time_us(p.makespan_us)),
            _e(fmt_energy_uj(p.energy_uj)),
            _e(_num(p.accuracy_loss)),
            _e(_num(p.objective, "{:.6g}")),
            _e("—" if p.gap is None else f"{100 * p.gap:.3g} %"),
            _e("—" if r["relative"] is None else f"{r['relative']:.3f}×"),
            _e(f"{p.solve_time_s:.3g} s"),
            chk if p.status.has_plan else _e(p.message[:120] or "—"),
        ])
        classes.append("this" if r["this"] else "")
    return _table(headers, body, num_cols=(2, 3, 4, 5, 6, 7, 8), row_classes=classes, escaped=True)


def _measured_table(rows: list[dict[str, Any]], totals: Mapping[str, Any], plan: "Plan") -> str:
    body = []
    for r in rows:
        p, m = r["predicted_us"], r["measured_us"]
        err = "—" if p in (None, 0) or m is None else f"{100 * (m - p) / p:+.1f} %"
        proc = str(r["processor"])
        if r["plan_processor"] is not None and r["plan_processor"] != r["processor"]:
            proc += f" (plan: {r['plan_processor']})"
        body.append([str(r["layer"]), proc, _num(p, "{:.2f}"), _num(m, "{:.2f}"), err])
    table = _table(["block", "ran on", "predicted (µs)", "measured median (µs)", "error"], body, num_cols=(2, 3, 4))
    kv = []
    pred = totals.get("predicted_makespan_us") or plan.makespan_us
    e2e = totals.get("latency_us")
    if e2e is not None:
        err = f" ({100 * (e2e - pred) / pred:+.1f} %)" if pred else ""
        spread = ""
        if totals.get("latency_us_min") is not None and totals.get("latency_us_max") is not None:
            spread = f"; min {fmt_time_us(totals['latency_us_min'])}, max {fmt_time_us(totals['latency_us_max'])}"
        kv.append(("end to end", f"predicted {fmt_time_us(pred)}, measured median {fmt_time_us(e2e)}{err} "
                                  f"over {totals.get('repeat') or '?'} runs{spread}"))
    pe = totals.get("predicted_energy_uj") or plan.energy_uj
    if totals.get("energy_uj") is not None:
        source = str(totals.get("energy_source") or "")
        # only a hardware counter measures; anything else is the run's times priced by a model
        how = "measured" if source in ("nvml", "rapl") else "from the run"
        src = f" [{source}]" if source else ""
        kv.append(("energy", f"predicted {fmt_energy_uj(pe)}, {how} {fmt_energy_uj(totals['energy_uj'])}{src}"))
    else:
        kv.append(("energy", f"predicted {fmt_energy_uj(pe)}; not measured on this machine "
                             f"(source: {totals.get('energy_source') or 'none'})"))
    if totals.get("transfer_bytes") is not None:
        kv.append(("cross-processor copies", f"{fmt_bytes(totals['transfer_bytes'])} in "
                                             f"{fmt_time_us(totals.get('transfer_us') or 0.0)} per run"))
    if totals.get("peak_rss_bytes") is not None:
        kv.append(("peak RSS (process)", fmt_bytes(totals["peak_rss_bytes"])))
    if totals.get("peak_live_bytes"):
        kv.append(("peak live bytes", ", ".join(f"{k} {fmt_bytes(v)}" for k, v in totals["peak_live_bytes"].items())))
    for note in totals.get("notes") or []:
        kv.append(("note", str(note)))
    head = '<table class="kv">' + "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in kv) + "</table>"
    return head + table


def _blocks_table(plan: "Plan", problem: "Problem | None") -> str:
    body = []
    for a in sorted(plan.assignments.values(), key=lambda a: (a.start_us, a.layer)):
        energy = acc = weight = "—"
        if problem is not None:
            o = problem.layer(a.layer).option(a.option_id)
            energy, acc, weight = f"{o.energy_uj:.6g}", f"{o.accuracy_loss:.4g}", fmt_bytes(o.weight_bytes)
        body.append([a.layer, a.option_id, fmt_rank(a.rank), a.processor, f"{a.start_us:.2f}", f"{a.finish_us:.2f}",
                     f"{a.finish_us - a.start_us:.2f}", energy, acc, weight])
    return _table(["block", "option", "rank", "processor", "start (µs)", "finish (µs)", "duration (µs)",
                   "energy (µJ)", "accuracy loss (pts)", "weights"], body, num_cols=(4, 5, 6, 7, 8, 9))


def _figure(make, what: str) -> str:
    try:
        return f"<figure>{make()}</figure>"
    except DeepxError as exc:
        return f'<p class="note">No {_e(what)}: {_e(exc)}</p>'


def render_report(plan: "Plan", *, problem: "Problem | None" = None, run: Any = None,
                  compare: Sequence["Plan"] | Any = None, title: str | None = None) -> str:
    """The report page as a string (UTF-8 HTML5, self-contained)."""
    from deepx_opt import __version__
    from deepx_opt.solvers.plan import check_plan
    from deepx_opt.viz.graph import graph_svg
    from deepx_opt.viz.timeline import timeline_svg

    violations = None
    if problem is not None:
        if plan.problem_name != problem.name:
            raise PlanError(f"plan is for problem {plan.problem_name!r} but the problem given is {problem.name!r}")
        violations = check_plan(problem, plan)
    others = [] if compare is None else load_compare(compare)
    name = title or f"Plan report: {plan.problem_name}"
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        '<link rel="icon" href="data:,">',
        f"<title>{_e(name)}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<header><h1>{_e(name)}</h1><p>{_e(plan.solver)} · {_e(plan.status.value)} · "
        f"{_e(fmt_time_us(plan.makespan_us))} · {_e(fmt_energy_uj(plan.energy_uj))}</p></header><main>",
        f'<section id="summary"><h2>Summary</h2>{_summary(plan, problem, violations)}</section>',
    ]
    if plan.status.has_plan:
        if problem is not None:
            graph = _figure(lambda: graph_svg(plan, problem, inline=True), "plan graph")
        else:
            graph = ('<p class="note">No plan graph: the DAG and transfer sizes are in the Problem; pass it '
                     "(--problem PROBLEM.json, written by deepx plan --save-problem).</p>")
        parts.append(f'<section id="graph"><h2>Plan graph</h2><p class="note">Blocks coloured by processor, with '
                     "rank, predicted time and compute energy; red dashed edges cross processors (bytes moved · "
                     f"transfer time). Hover a block for details.</p>{graph}</section>")
        tl_note = "Predicted schedule per processor" + (", with transfers" if problem is not None else "") + (
            "; the measured run below it on the same time axis." if run is not None else ".")
        parts.append(f'<section id="timeline"><h2>Timeline</h2><p class="note">{_e(tl_note)}</p>'
                     f"{_figure(lambda: timeline_svg(plan, problem, run, inline=True), 'timeline')}</section>")
    else:
        parts.append(f'<section id="graph"><h2>Plan graph</h2><p class="note">This plan has status '
                     f"{_e(plan.status.value)} and no assignments: nothing to draw.</p></section>")
    parts.append('<section id="compare"><h2>Solver vs heuristics</h2>')
    if others:
        parts.append(_compare_table(compare_rows(plan, others, problem), plan.goal))
    else:
        parts.append('<p class="note">No other plans given (deepx report --compare COMPARE.json, or '
                     "--heuristics with --problem to run the registry's heuristics).</p>")
        parts.append(_compare_table(compare_rows(plan, [], problem), plan.goal))
    parts.append("</section>")
    parts.append('<section id="measured"><h2>Predicted vs measured</h2>')
    if run is not None and plan.status.has_plan:
        rows, totals = run_rows(run, plan)
        parts.append(_measured_table(rows, totals, plan))
    else:
        parts.append('<p class="note">No run given (deepx run PLAN.json -o RUN.json, then --run RUN.json).</p>')
    parts.append("</section>")
    if plan.status.has_plan:
        parts.append(f'<section id="blocks"><h2>Blocks</h2>{_blocks_table(plan, problem)}</section>')
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    parts.append(f"<footer>deepx_opt {_e(__version__)} · generated {_e(stamp)}</footer></main></body></html>")
    return "\n".join(parts) + "\n"


def write_report(path: str | Path, plan: "Plan", **kw: Any) -> Path:
    """Write :func:`render_report` to ``path`` (UTF-8)."""
    p = Path(path)
    p.write_text(render_report(plan, **kw), encoding="utf-8")
    return p
