"""Gantt charts of a plan: one row per processor, a bar per block from its start to its finish.

The predicted schedule comes from the Plan; with a Problem, the cross-processor transfers are drawn too
(a hatched red bar on a ``transfers`` row from the producer's finish until the tensor arrives). Given a
run's measurements (a :class:`~deepx_opt.runtime.RunReport`, its JSON dict, or a list of
:class:`TimelineBar`), the measured schedule is drawn below the predicted one on the same time axis,
with the same colours.

Every bar is one SVG group ``<g id="bar-pred-<name>">`` / ``<g id="bar-meas-<name>">`` (``<name>`` as in
:func:`deepx_opt.viz.graph.block_id`) with a ``<title>`` tooltip.

Example
-------
>>> from deepx_opt.solvers.synthetic import chain_problem
>>> from deepx_opt.solvers.heuristics import Heft
>>> from deepx_opt.viz.timeline import timeline_svg
>>> prob = chain_problem(4, seed=0)
>>> svg = timeline_svg(Heft().solve(prob), prob)
>>> svg.count('<g id="bar-pred-')
4
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Sequence

from deepx_opt.errors import InputError
from deepx_opt.viz._common import (
    TRANSFER_COLOR,
    add_svg_titles,
    check_plan_matches,
    figure_to_png,
    figure_to_svg,
    fmt_bytes,
    fmt_energy_uj,
    fmt_rank,
    fmt_time_us,
    lighten,
    processor_colors,
    processor_order,
    save_figure,
    short,
)
from deepx_opt.viz.graph import block_id

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

    from deepx_opt.solvers.plan import Plan
    from deepx_opt.solvers.problem import Problem

__all__ = [
    "TimelineBar",
    "predicted_bars",
    "transfer_bars",
    "measured_bars",
    "timeline_figure",
    "timeline_svg",
    "timeline_png",
    "save_timeline",
]

TRANSFERS_ROW = "transfers"


@dataclass(frozen=True)
class TimelineBar:
    """One bar of a Gantt chart: ``label`` ran on ``row`` during ``[start_us, finish_us)``."""

    label: str
    row: str
    start_us: float
    finish_us: float
    detail: str = ""

    @property
    def duration_us(self) -> float:
        return self.finish_us - self.start_us


def predicted_bars(plan: "Plan", problem: "Problem | None" = None) -> list[TimelineBar]:
    """The plan's blocks as bars (rows are processors), in start order."""
    check_plan_matches(plan, problem)
    bars = []
    for a in plan.assignments.values():
        detail = f"option {a.option_id} ({fmt_rank(a.rank)})"
        if problem is not None:
            opt = problem.layer(a.layer).option(a.option_id)
            detail += f", compute energy {fmt_energy_uj(opt.energy_uj)}"
        bars.append(TimelineBar(a.layer, a.processor, a.start_us, a.finish_us, detail))
    return sorted(bars, key=lambda b: (b.start_us, b.label))


def transfer_bars(plan: "Plan", problem: "Problem") -> list[TimelineBar]:
    """Predicted transfers: each cross-processor edge from the producer's finish for the link's transfer
    time, model inputs from the host at time 0 and model outputs back to the host."""
    out = []
    for e in problem.edges:
        au, av = plan.assignments[e.src], plan.assignments[e.dst]
        if au.processor == av.processor:
            continue
        t = problem.transfer_time_us(au.processor, av.processor, e.bytes)
        out.append(TimelineBar(
            f"{e.src}→{e.dst}", TRANSFERS_ROW, au.finish_us, au.finish_us + t,
            f"{fmt_bytes(e.bytes)} {au.processor}→{av.processor}, "
            f"{fmt_energy_uj(problem.transfer_energy_uj(au.processor, av.processor, e.bytes))}",
        ))
    host = problem.host
    for layer in problem.layers:
        a = plan.assignments[layer.name]
        if a.processor == host:
            continue
        if layer.input_bytes:
            t = problem.transfer_time_us(host, a.processor, layer.input_bytes)
            out.append(TimelineBar(f"input→{layer.name}", TRANSFERS_ROW, 0.0, t,
                                   f"model input {fmt_bytes(layer.input_bytes)} {host}→{a.processor}"))
        if layer.output_bytes:
            t = problem.transfer_time_us(a.processor, host, layer.output_bytes)
            out.append(TimelineBar(f"{layer.name}→output", TRANSFERS_ROW, a.finish_us, a.finish_us + t,
                                   f"model output {fmt_bytes(layer.output_bytes)} {a.processor}→{host}"))
    return sorted(out, key=lambda b: (b.start_us, b.label))


def _get(obj: Any, key: str, default: Any = None) -> Any:
    if isinstance(obj, Mapping):
        return obj.get(key, default)
    return getattr(obj, key, default)


def measured_bars(run: Any) -> list[TimelineBar]:
    """Measured bars from a :class:`~deepx_opt.runtime.executor.RunReport` (object or its JSON dict) or
    an iterable of TimelineBar.

    A RunReport's ``blocks`` each give ``layer``, ``processor`` (the one it really ran on), ``start_us`` /
    ``finish_us`` in the last timed repeat (time 0 = inputs handed to the workers) and ``latency_us``, the
    median over repeats; ``predicted["block_latency_us"]`` (when the run came from a plan) goes into the
    tooltips.
    """
    if run is None:
        return []
    if isinstance(run, (list, tuple)) and all(isinstance(b, TimelineBar) for b in run):
        return sorted(run, key=lambda b: (b.start_us, b.label))
    blocks = _get(run, "blocks")
    if blocks is None:
        raise InputError(
            f"cannot read measured blocks from {type(run).__name__}: expected a RunReport, its JSON dict "
            "(with 'blocks') or a list of TimelineBar"
        )
    if isinstance(blocks, Mapping):
        blocks = list(blocks.values())
    predicted = (_get(run, "predicted") or {}).get("block_latency_us", {})
    out = []
    for b in blocks:
        try:
            layer = str(_get(b, "layer"))
            proc = str(_get(b, "processor"))
            start = float(_get(b, "start_us"))
            finish = float(_get(b, "finish_us"))
        except (TypeError, ValueError):
            raise InputError(
                f"measured block {b!r} lacks layer/processor/start_us/finish_us; cannot draw the measured timeline"
            ) from None
        detail = f"this run {fmt_time_us(finish - start)}"
        med = _get(b, "latency_us")
        if med is not None:
            detail += f", median {fmt_time_us(float(med))}"
        if layer in predicted:
            detail += f", predicted {fmt_time_us(float(predicted[layer]))}"
        out.append(TimelineBar(layer, proc, start, finish, detail))
    return sorted(out, key=lambda b: (b.start_us, b.label))


def _time_unit(t_max_us: float) -> tuple[str, float]:
    if t_max_us >= 2e6:
        return "s", 1e6
    if t_max_us >= 2e3:
        return "ms", 1e3
    return "µs", 1.0


def _lanes(bars: Sequence[TimelineBar]) -> list[int]:
    """Greedy lane per bar so that overlapping bars (transfers) do not hide each other."""
    ends: list[float] = []
    out = []
    for b in bars:
        for i, e in enumerate(ends):
            if b.start_us >= e:
                ends[i] = b.finish_us
                out.append(i)
                break
        else:
            ends.append(b.finish_us)
            out.append(len(ends) - 1)
    return out


def _panel(ax, bars: Sequence[TimelineBar], rows: Sequence[str], colors: Mapping[str, str], *, kind: str,
           scale: float, x_max: float, width_in: float, titles: dict[str, str], ids: dict[str, str]) -> None:
    from matplotlib.patches import Rectangle

    y_of = {r: i for i, r in enumerate(rows)}
    xfer = [b for b in bars if b.row == TRANSFERS_ROW]
    lanes = dict(zip(map(id, xfer), _lanes(xfer)))
    n_lanes = max(lanes.values(), default=0) + 1
    for b in bars:
        y = y_of[b.row]
        x0, w = b.start_us / scale, b.duration_us / scale
        if b.row == TRANSFERS_ROW:
            h = 0.7 / n_lanes
            yb = y - 0.35 + lanes[id(b)] * h
            rect = Rectangle((x0, yb + 0.05 * h), w, 0.9 * h, fc="white", ec=TRANSFER_COLOR, hatch="////", lw=0.8)
            gid = f"xfer-{kind}-{len(titles)}"
        else:
            col = colors.get(b.row, "#7F7F7F")
            rect = Rectangle((x0, y - 0.35), w, 0.7, fc=lighten(col, 0.6), ec=col, lw=0.9)
            gid = f"bar-{kind}-{ids[b.label][len('block-'):]}" if b.label in ids else f"bar-{kind}-{len(titles)}"
            if w / x_max * width_in > 0.045 * len(short(b.label, 18)) + 0.06:
                ax.text(x0 + w / 2, y, short(b.label, 18), ha="center", va="center", fontsize=6.5, clip_on=True)
        rect.set_gid(gid)
        ax.add_patch(rect)
        titles[gid] = f"{b.label} on {b.row}: {b.start_us:.2f}–{b.finish_us:.2f} µs ({fmt_time_us(b.duration_us)})" + (
            f"\n{b.detail}" if b.detail else "")
    ax.set_yticks(range(len(rows)), rows, fontsize=8)
    ax.set_ylim(len(rows) - 0.5, -0.5)
    ax.grid(axis="x", color="#DDDDDD", lw=0.6)
    ax.set_axisbelow(True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)


def timeline_figure(plan: "Plan", problem: "Problem | None" = None, run: Any = None, *,
                    title: str | None = None, width_in: float = 10.0) -> "Figure":
    """Gantt chart of the predicted schedule, and of the measured one below it when ``run`` is given.

    Parameters
    ----------
    plan : Plan
        An OPTIMAL or FEASIBLE plan.
    problem : Problem, optional
        Adds the cross-processor transfers row and energies in the tooltips.
    run : RunReport, dict or list of TimelineBar, optional
        Measured per-block start/finish times (see :func:`measured_bars`).
    """
    from matplotlib.figure import Figure

    pred = predicted_bars(plan, problem)
    meas = measured_bars(run)
    xfers = transfer_bars(plan, problem) if problem is not None else []
    procs = processor_order(plan, problem)
    colors = processor_colors(procs)
    # a measured row is the processor the block really ran on (the runtime may map "gpu" to an OpenCL
    # device): colour it like the plan processor of its blocks
    for b in meas:
        if b.row not in colors:
            a = plan.assignments.get(b.label)
            colors[b.row] = colors[a.processor] if a is not None else processor_colors(procs + [b.row])[b.row]
    used_pred = [p for p in procs if any(b.row == p for b in pred)]
    rows_pred = used_pred + ([TRANSFERS_ROW] if xfers else [])
    rows_meas = list(dict.fromkeys(p for p in procs if any(b.row == p for b in meas)))
    rows_meas += list(dict.fromkeys(b.row for b in meas if b.row not in rows_meas))
    meas_span = None
    if meas and not isinstance(run, (list, tuple)) and _get(run, "latencies_us"):
        meas_span = float(_get(run, "latencies_us")[-1])  # end to end of the repeat the bars come from
    t_max = max([plan.makespan_us or 0.0, meas_span or 0.0] + [b.finish_us for b in pred + xfers + meas])
    unit, scale = _time_unit(t_max)
    x_max = t_max / scale * 1.02 or 1.0

    panels = [("pred", pred + xfers, rows_pred)]
    if meas:
        panels.append(("meas", meas, rows_meas))
    heights = [0.42 * len(r) + 0.75 for _, _, r in panels]
    fig_h = sum(heights) + 0.9
    fig = Figure(figsize=(width_in, fig_h))
    axes = fig.subplots(len(panels), 1, sharex=True, squeeze=False, gridspec_kw={"height_ratios": heights})[:, 0]
    ids = {layer: block_id(layer) for layer in plan.assignments}
    titles: dict[str, str] = {}
    plot_w_in = width_in * 0.82
    for ax, (kind, bars, rows) in zip(axes, panels):
        _panel(ax, bars, rows, colors, kind=kind, scale=scale, x_max=x_max, width_in=plot_w_in, titles=titles, ids=ids)
        if kind == "pred":
            span = plan.makespan_us
            head = f"predicted — {plan.solver} ({plan.status.value}), makespan {fmt_time_us(span)}"
        else:
            span = max(b.finish_us for b in bars)
            head = "measured"
            if not isinstance(run, (list, tuple)):
                runs = _get(run, "latencies_us") or []
                if meas_span is not None:  # the bars are the last timed repeat
                    span = meas_span
                    head += f" (last of {len(runs)} runs)"
                head += f" — end to end {fmt_time_us(span)}"
                if _get(run, "latency_us") is not None and len(runs) > 1:
                    head += f", median {fmt_time_us(float(_get(run, 'latency_us')))}"
            else:
                head += f" — end to end {fmt_time_us(span)}"
        if span is not None:
            ax.axvline(span / scale, color="#333333", lw=1.0, ls=":")
        ax.set_title(head, fontsize=9, loc="left")
    axes[-1].set_xlim(0, x_max)
    axes[-1].set_xlabel(f"time ({unit})", fontsize=8)
    for ax in axes:
        ax.tick_params(axis="x", labelsize=7.5)
    fig.suptitle(title or f"{plan.problem_name}: schedule", fontsize=10, fontweight="bold")
    fig.subplots_adjust(left=0.12, right=0.98, top=1 - 0.55 / fig_h, bottom=0.55 / fig_h, hspace=0.5 / max(1, len(panels) - 1) if len(panels) > 1 else 0.2)
    fig._deepx_titles = titles
    return fig


def timeline_svg(plan: "Plan", problem: "Problem | None" = None, run: Any = None, *, inline: bool = False,
                 title: str | None = None) -> str:
    """The timeline as SVG text; ``inline=True`` for embedding in HTML."""
    fig = timeline_figure(plan, problem, run, title=title)
    svg = figure_to_svg(fig, inline=inline, id_prefix="tl-" if inline else "", keep_ids=("bar-", "xfer-"))
    return add_svg_titles(svg, fig._deepx_titles)


def timeline_png(plan: "Plan", problem: "Problem | None" = None, run: Any = None, *, dpi: int = 110) -> bytes:
    """The timeline as PNG bytes."""
    return figure_to_png(timeline_figure(plan, problem, run), dpi=dpi)


def save_timeline(plan: "Plan", path: str | Path, problem: "Problem | None" = None, run: Any = None, *,
                  dpi: int = 110) -> Path:
    """Write the timeline to ``path`` (``.svg`` or ``.png``)."""
    p = Path(path)
    if p.suffix.lower() == ".svg":
        p.write_text(timeline_svg(plan, problem, run), encoding="utf-8")
        return p
    return save_figure(timeline_figure(plan, problem, run), p, dpi=dpi)
