"""Shared pieces of the pictures: processor colours, unit formatting, plan/problem consistency,
and turning a matplotlib Figure into SVG (standalone or inline), PNG or a file.

Figures are built on :class:`matplotlib.figure.Figure` directly (never pyplot), so no global state or
GUI backend is involved and the module works headless.
"""

from __future__ import annotations

import html
import io
import re
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Mapping, Sequence

from deepx_opt.errors import InputError, PlanError

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

    from deepx_opt.solvers.plan import Plan
    from deepx_opt.solvers.problem import Problem

__all__ = [
    "PALETTE",
    "processor_order",
    "processor_colors",
    "lighten",
    "fmt_time_us",
    "fmt_energy_uj",
    "fmt_bytes",
    "fmt_rank",
    "short",
    "check_plan_matches",
    "figure_to_svg",
    "figure_to_png",
    "save_figure",
    "svg_ids",
    "add_svg_titles",
    "FIGURE_FORMATS",
]

#: Okabe–Ito colours (colour-blind safe), one per processor in the Problem's order. Red is kept out of
#: it: red dashes mark cross-processor transfers.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#F0E442", "#7F7F7F", "#8C564B")
#: Colour of cross-processor edges and transfer bars.
TRANSFER_COLOR = "#C0392B"
#: Output formats :func:`save_figure` writes, by file suffix.
FIGURE_FORMATS = (".svg", ".png")


def processor_order(plan: "Plan | None" = None, problem: "Problem | None" = None) -> list[str]:
    """Processor names in a stable order: the Problem's, else first use in the plan (by start time)."""
    if problem is not None:
        names = [p.name for p in problem.processors]
    else:
        names = []
    if plan is not None:
        for a in sorted(plan.assignments.values(), key=lambda a: (a.start_us, a.layer)):
            if a.processor not in names:
                names.append(a.processor)
    return names


def processor_colors(processors: Sequence[str]) -> dict[str, str]:
    """Map processor name → colour (hex), cycling :data:`PALETTE`.

    >>> processor_colors(["cpu", "gpu"])
    {'cpu': '#0072B2', 'gpu': '#E69F00'}
    """
    return {p: PALETTE[i % len(PALETTE)] for i, p in enumerate(processors)}


def lighten(color: str, amount: float = 0.55) -> str:
    """Mix ``color`` (hex) with white: ``amount`` 0 keeps it, 1 gives white."""
    c = color.lstrip("#")
    rgb = [int(c[i:i + 2], 16) for i in (0, 2, 4)]
    mixed = [round(v + (255 - v) * amount) for v in rgb]
    return "#" + "".join(f"{v:02X}" for v in mixed)


def fmt_time_us(t_us: float | None) -> str:
    """``850 µs``, ``12.3 ms``, ``1.5 s``; ``—`` for None (three significant digits).

    >>> fmt_time_us(850.0), fmt_time_us(12345.0), fmt_time_us(1.5e6)
    ('850 µs', '12.3 ms', '1.5 s')
    """
    if t_us is None:
        return "—"
    a = abs(t_us)
    if a < 1000:
        return f"{t_us:.3g} µs" if a < 100 else f"{t_us:.0f} µs"
    if a < 1e6:
        return f"{t_us / 1e3:.3g} ms" if a < 1e5 else f"{t_us / 1e3:.0f} ms"
    return f"{t_us / 1e6:.3g} s" if a < 1e8 else f"{t_us / 1e6:.0f} s"


def fmt_energy_uj(e_uj: float | None) -> str:
    """``85 µJ``, ``12.3 mJ``, ``1.5 J``; ``—`` for None."""
    if e_uj is None:
        return "—"
    return fmt_time_us(e_uj).replace("µs", "µJ").replace("ms", "mJ").replace(" s", " J")


def fmt_bytes(n: int | float | None) -> str:
    """Decimal units: ``512 B``, ``4.1 kB``, ``1.2 MB``, ``3.4 GB``."""
    if n is None:
        return "—"
    n = float(n)
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            v = n / scale
            return f"{v:.3g} {unit}" if v < 100 else f"{v:.0f} {unit}"
    return f"{int(n)} B"


def fmt_rank(rank: int | None) -> str:
    """``dense`` for the uncompressed layer, else ``r=64``."""
    return "dense" if rank is None else f"r={rank}"


def short(text: str, max_chars: int = 24) -> str:
    """Shorten a long layer name keeping its end (ONNX names differ at the end): ``…/conv3/Conv``."""
    if len(text) <= max_chars:
        return text
    return "…" + text[-(max_chars - 1):]


def check_plan_matches(plan: "Plan", problem: "Problem | None") -> None:
    """Raise PlanError unless ``plan`` has assignments and, with a Problem, one per layer of it with
    existing options."""
    if not plan.status.has_plan or not plan.assignments:
        raise PlanError(
            f"plan of {plan.problem_name!r} by {plan.solver!r} has status {plan.status.value} and no "
            "assignments; only OPTIMAL or FEASIBLE plans can be drawn"
        )
    if problem is None:
        return
    names = [layer.name for layer in problem.layers]
    missing = [n for n in names if n not in plan.assignments]
    extra = sorted(set(plan.assignments) - set(names))
    if missing or extra:
        raise PlanError(
            f"plan of {plan.problem_name!r} does not fit problem {problem.name!r}: layers without an "
            f"assignment {missing[:5]}{'…' if len(missing) > 5 else ''}, assignments for unknown layers "
            f"{extra[:5]}{'…' if len(extra) > 5 else ''}"
        )
    for layer in problem.layers:
        a = plan.assignments[layer.name]
        if a.option_id not in {o.id for o in layer.options}:
            raise PlanError(
                f"plan assigns option {a.option_id!r} to layer {layer.name!r} of problem {problem.name!r}, "
                f"which has options {[o.id for o in layer.options][:8]}"
            )


# ------------------------------------------------------------------------------------------ SVG / PNG
_SVG_RC = {"svg.fonttype": "none", "svg.hashsalt": "deepx_opt"}
_ID_RE = re.compile(r'\bid="([^"]+)"')


def figure_to_svg(fig: "Figure", *, inline: bool = False, id_prefix: str = "", keep_ids: Iterable[str] = ()) -> str:
    """Render ``fig`` as SVG text, with text kept as ``<text>`` (searchable, small, no glyph paths).

    Parameters
    ----------
    inline : bool
        Drop the XML prolog and DOCTYPE and let the picture scale to its container, for embedding in
        HTML. A standalone file (``inline=False``) keeps them.
    id_prefix : str
        Prefix for matplotlib's own element ids (``figure_1``, clip paths …) and the references to them,
        so that several figures can share one HTML page without clashing ids. Ids starting with one
        of ``keep_ids`` (our own ``block-…`` groups) are left as they are.
    """
    import matplotlib

    buf = io.StringIO()
    with matplotlib.rc_context(_SVG_RC):
        fig.savefig(buf, format="svg", metadata={"Date": None})
    svg = buf.getvalue()
    if id_prefix:
        keep = tuple(keep_ids)
        ids = {i for i in _ID_RE.findall(svg) if not i.startswith(keep)}
        if ids:
            alt = "|".join(re.escape(i) for i in sorted(ids, key=len, reverse=True))
            svg = re.sub(rf'(\bid="|url\(#|href="#)({alt})(?=[")])', lambda m: m.group(1) + id_prefix + m.group(2), svg)
    if inline:
        start = svg.find("<svg")
        svg = svg[start:]
        svg = re.sub(r"\s*<metadata>.*?</metadata>", "", svg, count=1, flags=re.S)  # RDF boilerplate
        # shrink with the page but never grow past the natural size: keep the viewBox, size by CSS
        svg = re.sub(r'^<svg([^>]*?) width="([^"]*)" height="[^"]*"',
                     r'<svg\1 class="deepx-fig" style="width: 100%; max-width: \2; height: auto"', svg, count=1)
    return svg


def add_svg_titles(svg: str, titles: Mapping[str, str]) -> str:
    """Insert a ``<title>`` (a hover tooltip) as the first child of each ``<g id="…">`` named in
    ``titles`` (id → plain text, escaped here)."""

    def sub(m: re.Match) -> str:
        gid = html.unescape(m.group(1))
        t = titles.get(gid)
        return m.group(0) if t is None else m.group(0) + f"<title>{html.escape(t, quote=False)}</title>"

    return re.sub(r'<g id="([^"]+)">', sub, svg)


def svg_ids(svg: str, prefix: str) -> list[str]:
    """Ids of the ``<g>`` groups of ``svg`` that start with ``prefix`` (unescaped), in document order."""
    return [html.unescape(i) for i in re.findall(r'<g id="([^"]+)"', svg) if html.unescape(i).startswith(prefix)]


def figure_to_png(fig: "Figure", *, dpi: int = 110) -> bytes:
    """Render ``fig`` as PNG bytes."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, metadata={"Software": None})
    return buf.getvalue()


def output_format(path: str | Path, allowed: Sequence[str]) -> str:
    """The file suffix of ``path`` (lower case) if it is one of ``allowed``, else InputError."""
    suffix = Path(path).suffix.lower()
    if suffix not in allowed:
        raise InputError(f"output file '{path}' has suffix {suffix or '(none)'!r}; expected one of {list(allowed)}")
    return suffix


def save_figure(fig: "Figure", path: str | Path, *, dpi: int = 110) -> Path:
    """Write ``fig`` to ``path`` as SVG or PNG, chosen by the suffix."""
    p = Path(path)
    fmt = output_format(p, FIGURE_FORMATS)
    if fmt == ".svg":
        p.write_text(figure_to_svg(fig), encoding="utf-8")
    else:
        p.write_bytes(figure_to_png(fig, dpi=dpi))
    return p
