"""The planning :class:`Problem`: one frozen description of what the solvers decide.

A Problem is plain data: the layers of a model in a topological order with their DAG edges (tensor bytes),
per layer its *options* (an SVD rank on a processor, with duration, energy, weight bytes and accuracy
loss), the processors (memory capacity, idle power, kind), the links between processors (latency,
bandwidth, energy per byte), the goal and the budgets. Solvers see only this; never ONNX nor a backend.

Units and the integer grid
--------------------------
Every quantity carries its unit in its name (``duration_us``, ``energy_uj``, ``weight_bytes``,
``accuracy_loss`` in percentage points). The exact solvers work on integers; :attr:`Problem.grid` holds the
problem rounded onto **one** grid:

* time in units of :data:`TIME_UNIT_US` (0.01 µs),
* energy in units of :data:`ENERGY_UNIT_UJ` (0.01 µJ),
* accuracy loss in units of :data:`ACCURACY_UNIT_POINTS` (1e-4 points),
* idle power in whole milliwatts, bytes exact.

Costs (durations, transfer times, energies, accuracy losses, idle power) are rounded **up** and budgets
and limits **down**, so a plan that is feasible on the grid is feasible in exact arithmetic too (the one
exception is idle energy, see :func:`deepx_opt.solvers.plan.rounding_bounds`). Every solver and heuristic
decides feasibility on the grid, which is why they all agree on what is feasible.

Example
-------
>>> from deepx_opt.solvers.problem import Problem, Layer, Option, Processor, Edge, uniform_links
>>> procs = [Processor("cpu", kind="cpu"), Processor("gpu", kind="gpu")]
>>> layers = [
...     Layer("fc1", [Option("fc1@cpu", "cpu", duration_us=100, energy_uj=50),
...                   Option("fc1@gpu", "gpu", duration_us=20, energy_uj=30)]),
...     Layer("fc2", [Option("fc2@cpu", "cpu", duration_us=80, energy_uj=40)]),
... ]
>>> p = Problem("toy", procs, layers, [Edge("fc1", "fc2", 4000)],
...             uniform_links(["cpu", "gpu"], latency_us=10, bytes_per_us=1000),
...             host="cpu", goal="min_latency")
>>> Problem.from_json(p.to_json()) == p
True
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from deepx_opt.errors import ProblemError

__all__ = [
    "TIME_UNIT_US",
    "ENERGY_UNIT_UJ",
    "ACCURACY_UNIT_POINTS",
    "GOALS",
    "Option",
    "Layer",
    "Edge",
    "Processor",
    "Link",
    "Problem",
    "Grid",
    "uniform_links",
]

#: One grid step of time (µs) used by every exact solver.
TIME_UNIT_US = 0.01
#: One grid step of energy (µJ).
ENERGY_UNIT_UJ = 0.01
#: One grid step of accuracy loss (percentage points).
ACCURACY_UNIT_POINTS = 1e-4
#: The two goals a Problem may have.
GOALS = ("min_energy", "min_latency")

_FORMAT = "deepx_opt.problem"
_VERSION = 1


def _ceil_units(value: float, unit: float) -> int:
    # A tiny relative slack keeps 0.3/0.01 (=30.000000000000004) from becoming 31.
    q = value / unit
    r = round(q)
    if abs(q - r) <= 1e-9 * max(1.0, abs(q)):
        return int(r)
    return int(math.ceil(q))


def _floor_units(value: float, unit: float) -> int:
    q = value / unit
    r = round(q)
    if abs(q - r) <= 1e-9 * max(1.0, abs(q)):
        return int(r)
    return int(math.floor(q))


def _finite_nonneg(where: str, name: str, value: Any) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ProblemError(f"{where}: {name}={value!r} is not a number; expected a finite value >= 0") from None
    if not math.isfinite(v) or v < 0:
        raise ProblemError(f"{where}: {name}={value!r} is invalid; expected a finite value >= 0")
    return v


@dataclass(frozen=True)
class Option:
    """One way to run a layer: a rank on a processor.

    Parameters
    ----------
    id : str
        Unique within its layer (e.g. ``"fc1@gpu:r64"``).
    processor : str
        Name of a :class:`Processor` of the Problem.
    duration_us, energy_uj : float
        Predicted compute time and energy of the layer with this option.
    weight_bytes : int
        Resident weight bytes on the processor.
    accuracy_loss : float
        Estimated accuracy loss in percentage points (0 for the dense layer).
    rank : int or None
        SVD rank; ``None`` for the dense (uncompressed) layer.
    full_rank : bool
        True for the uncompressed layer (always true when ``rank`` is None).
    workspace_bytes : int
        Peak activation/scratch bytes while it runs; a processor holds the largest of its layers'.
    """

    id: str
    processor: str
    duration_us: float
    energy_uj: float
    weight_bytes: int = 0
    accuracy_loss: float = 0.0
    rank: int | None = None
    full_rank: bool = False
    workspace_bytes: int = 0

    def __post_init__(self) -> None:
        if self.rank is None and not self.full_rank:
            object.__setattr__(self, "full_rank", True)

    @property
    def is_dense(self) -> bool:
        """True when this option runs the layer uncompressed."""
        return self.rank is None or self.full_rank


@dataclass(frozen=True)
class Layer:
    """A layer (unit block) with its options.

    ``input_bytes`` are bytes it reads from the model inputs (they start on the host processor);
    ``output_bytes`` are bytes of model outputs it produces (they must end on the host).
    """

    name: str
    options: tuple[Option, ...]
    input_bytes: int = 0
    output_bytes: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "options", tuple(self.options))

    def option(self, option_id: str) -> Option:
        for o in self.options:
            if o.id == option_id:
                return o
        raise ProblemError(
            f"layer {self.name!r} has no option {option_id!r}; it has {[o.id for o in self.options]}"
        )


@dataclass(frozen=True)
class Edge:
    """A DAG edge ``src -> dst`` carrying ``bytes`` of activations."""

    src: str
    dst: str
    bytes: int


@dataclass(frozen=True)
class Processor:
    """A processor: ``kind`` is free text (``"cpu"``, ``"gpu"``, ``"dsp"``, ``"lpu"``, ``"remote"``).

    ``memory_bytes=None`` means unlimited. ``idle_power_w`` is drawn while the processor is idle during
    the makespan (counted only when the Problem has ``include_idle_energy``).
    """

    name: str
    kind: str = "cpu"
    memory_bytes: int | None = None
    idle_power_w: float = 0.0


@dataclass(frozen=True)
class Link:
    """Transfer cost from processor ``src`` to ``dst``: ``latency_us + bytes / bytes_per_us`` and
    ``energy_uj_per_byte * bytes`` (``fixed_energy_uj`` more per transfer)."""

    src: str
    dst: str
    latency_us: float
    bytes_per_us: float
    energy_uj_per_byte: float = 0.0
    fixed_energy_uj: float = 0.0

    def time_us(self, nbytes: int) -> float:
        return self.latency_us + nbytes / self.bytes_per_us

    def energy_uj(self, nbytes: int) -> float:
        return self.fixed_energy_uj + self.energy_uj_per_byte * nbytes


def uniform_links(
    processors: Iterable[str],
    *,
    latency_us: float,
    bytes_per_us: float,
    energy_uj_per_byte: float = 0.0,
    fixed_energy_uj: float = 0.0,
) -> list[Link]:
    """The same :class:`Link` for every ordered pair of distinct processors."""
    names = list(processors)
    return [
        Link(a, b, latency_us, bytes_per_us, energy_uj_per_byte, fixed_energy_uj)
        for a in names
        for b in names
        if a != b
    ]


@dataclass
class Grid:
    """The Problem on the integer grid, as flat lists indexed by layer / option / processor / edge.

    Built once per Problem (``problem.grid``); read by every solver. Layers are indexed in the Problem's
    topological order, processors in the Problem's order.
    """

    n: int
    names: list[str]
    procs: list[str]
    opt_ids: list[list[str]]
    opt_proc: list[list[int]]
    dur: list[list[int]]
    energy: list[list[int]]
    acc: list[list[int]]
    weight: list[list[int]]
    workspace: list[list[int]]
    dense: list[list[bool]]
    edges: list[tuple[int, int]]
    ttime: list[list[list[int]]]  # [edge][p][q], 0 on the diagonal
    tenergy: list[list[list[int]]]
    preds: list[list[tuple[int, int]]]  # per layer: (pred layer, edge index)
    succs: list[list[tuple[int, int]]]
    in_time: list[list[int]]  # [layer][q]: model inputs from host to q
    in_energy: list[list[int]]
    out_time: list[list[int]]  # [layer][q]: model outputs from q to host
    out_energy: list[list[int]]
    cap: list[int | None]
    idle_mw: list[int]
    include_idle: bool
    goal: str
    latency_budget: int | None
    energy_budget: int | None
    acc_limit: int | None
    horizon: int

    def idle_units(self, makespan: int, busy: Sequence[int]) -> int:
        """Grid idle energy: ceil(Σ_p idle_mW_p · (makespan − busy_p) / 1000) energy units."""
        if not self.include_idle:
            return 0
        total = sum(self.idle_mw[p] * (makespan - busy[p]) for p in range(len(self.procs)))
        return -((-total) // 1000)


@dataclass(frozen=True)
class Problem:
    """A planning problem (frozen). See the module docstring for units and an example.

    Parameters
    ----------
    name : str
        Model / problem name, copied into plans.
    processors : sequence of Processor
    layers : sequence of Layer
        In a topological order of ``edges``.
    edges : sequence of Edge
    links : sequence of Link
        One per ordered pair of distinct processors.
    host : str
        Processor where model inputs start and outputs must end.
    goal : {"min_energy", "min_latency"}
    latency_budget_us, energy_budget_uj : float or None
        Budgets (either may be given with either goal).
    max_accuracy_loss : float or None
        Limit on the summed accuracy loss (points).
    include_idle_energy : bool
        Add Σ_p idle_power_w_p × (makespan − busy_p) to the energy.
    """

    name: str
    processors: tuple[Processor, ...]
    layers: tuple[Layer, ...]
    edges: tuple[Edge, ...] = ()
    links: tuple[Link, ...] = ()
    host: str = "cpu"
    goal: str = "min_energy"
    latency_budget_us: float | None = None
    energy_budget_uj: float | None = None
    max_accuracy_loss: float | None = None
    include_idle_energy: bool = False

    def __post_init__(self) -> None:
        for f in ("processors", "layers", "edges", "links"):
            object.__setattr__(self, f, tuple(getattr(self, f)))
        self._validate()

    # ------------------------------------------------------------------ validation
    def _validate(self) -> None:
        if not self.processors:
            raise ProblemError(f"problem {self.name!r} has no processors")
        pnames = [p.name for p in self.processors]
        dup = sorted({n for n in pnames if pnames.count(n) > 1})
        if dup:
            raise ProblemError(f"problem {self.name!r}: duplicate processor names {dup}")
        for p in self.processors:
            if p.memory_bytes is not None and (not isinstance(p.memory_bytes, int) or p.memory_bytes < 0):
                raise ProblemError(
                    f"processor {p.name!r}: memory_bytes={p.memory_bytes!r}; expected an int >= 0 or None"
                )
            _finite_nonneg(f"processor {p.name!r}", "idle_power_w", p.idle_power_w)
        if self.host not in pnames:
            raise ProblemError(f"host processor {self.host!r} is not one of the processors {pnames}")
        if self.goal not in GOALS:
            raise ProblemError(f"goal {self.goal!r} is unknown; expected one of {list(GOALS)}")
        for bname in ("latency_budget_us", "energy_budget_uj", "max_accuracy_loss"):
            b = getattr(self, bname)
            if b is not None:
                _finite_nonneg(f"problem {self.name!r}", bname, b)
        if not self.layers:
            raise ProblemError(f"problem {self.name!r} has no layers")
        lnames = [layer.name for layer in self.layers]
        dup = sorted({n for n in lnames if lnames.count(n) > 1})
        if dup:
            raise ProblemError(f"problem {self.name!r}: duplicate layer names {dup}")
        pset = set(pnames)
        for layer in self.layers:
            if not layer.options:
                raise ProblemError(f"layer {layer.name!r} has no options; every layer needs at least one")
            ids = [o.id for o in layer.options]
            dup = sorted({i for i in ids if ids.count(i) > 1})
            if dup:
                raise ProblemError(f"layer {layer.name!r}: duplicate option ids {dup}")
            for nb in ("input_bytes", "output_bytes"):
                v = getattr(layer, nb)
                if not isinstance(v, int) or v < 0:
                    raise ProblemError(f"layer {layer.name!r}: {nb}={v!r}; expected an int >= 0")
            for o in layer.options:
                where = f"layer {layer.name!r} option {o.id!r}"
                if o.processor not in pset:
                    raise ProblemError(f"{where}: processor {o.processor!r} is unknown; processors are {pnames}")
                for f in ("duration_us", "energy_uj", "accuracy_loss"):
                    _finite_nonneg(where, f, getattr(o, f))
                for f in ("weight_bytes", "workspace_bytes"):
                    v = getattr(o, f)
                    if not isinstance(v, int) or v < 0:
                        raise ProblemError(f"{where}: {f}={v!r}; expected an int >= 0")
                if o.rank is not None and (not isinstance(o.rank, int) or o.rank < 1):
                    raise ProblemError(f"{where}: rank={o.rank!r}; expected an int >= 1 or None (dense)")
        index = {n: i for i, n in enumerate(lnames)}
        seen: set[tuple[str, str]] = set()
        for e in self.edges:
            for end in (e.src, e.dst):
                if end not in index:
                    raise ProblemError(f"edge {e.src!r}->{e.dst!r}: layer {end!r} is unknown")
            if e.src == e.dst:
                raise ProblemError(f"edge {e.src!r}->{e.dst!r} is a self-loop (cycle)")
            if (e.src, e.dst) in seen:
                raise ProblemError(f"edge {e.src!r}->{e.dst!r} is given twice; merge the bytes into one edge")
            seen.add((e.src, e.dst))
            if not isinstance(e.bytes, int) or e.bytes < 0:
                raise ProblemError(f"edge {e.src!r}->{e.dst!r}: bytes={e.bytes!r}; expected an int >= 0")
        backwards = [e for e in self.edges if index[e.src] > index[e.dst]]
        if backwards:
            import networkx as nx

            g = nx.DiGraph([(e.src, e.dst) for e in self.edges])
            try:
                cycle = nx.find_cycle(g)
                path = " -> ".join([u for u, _ in cycle] + [cycle[0][0]])
                raise ProblemError(f"problem {self.name!r}: the edges contain a cycle {path}")
            except nx.NetworkXNoCycle:
                e = backwards[0]
                raise ProblemError(
                    f"edge {e.src!r}->{e.dst!r} goes against the layer order; list layers in a topological order"
                ) from None
        links: dict[tuple[str, str], Link] = {}
        for lk in self.links:
            where = f"link {lk.src!r}->{lk.dst!r}"
            if lk.src not in pset or lk.dst not in pset:
                raise ProblemError(f"{where}: unknown processor; processors are {pnames}")
            if lk.src == lk.dst:
                raise ProblemError(f"{where}: a link joins two different processors")
            if (lk.src, lk.dst) in links:
                raise ProblemError(f"{where} is given twice")
            _finite_nonneg(where, "latency_us", lk.latency_us)
            _finite_nonneg(where, "energy_uj_per_byte", lk.energy_uj_per_byte)
            _finite_nonneg(where, "fixed_energy_uj", lk.fixed_energy_uj)
            bw = _finite_nonneg(where, "bytes_per_us", lk.bytes_per_us)
            if bw <= 0:
                raise ProblemError(f"{where}: bytes_per_us={lk.bytes_per_us!r}; expected > 0")
            links[(lk.src, lk.dst)] = lk
        missing = [(a, b) for a in pnames for b in pnames if a != b and (a, b) not in links]
        if missing:
            raise ProblemError(
                f"problem {self.name!r}: no link for processor pairs {missing}; give a Link for every ordered "
                "pair of distinct processors (see uniform_links)"
            )

    # ------------------------------------------------------------------ accessors
    @cached_property
    def layer_index(self) -> dict[str, int]:
        return {layer.name: i for i, layer in enumerate(self.layers)}

    @cached_property
    def processor_index(self) -> dict[str, int]:
        return {p.name: i for i, p in enumerate(self.processors)}

    @cached_property
    def link_map(self) -> dict[tuple[str, str], Link]:
        return {(lk.src, lk.dst): lk for lk in self.links}

    def layer(self, name: str) -> Layer:
        try:
            return self.layers[self.layer_index[name]]
        except KeyError:
            raise ProblemError(f"problem {self.name!r} has no layer {name!r}") from None

    def processor(self, name: str) -> Processor:
        try:
            return self.processors[self.processor_index[name]]
        except KeyError:
            raise ProblemError(
                f"problem {self.name!r} has no processor {name!r}; it has {list(self.processor_index)}"
            ) from None

    def transfer_time_us(self, src: str, dst: str, nbytes: int) -> float:
        """Time to move ``nbytes`` from processor ``src`` to ``dst`` (0 on the same processor)."""
        if src == dst:
            return 0.0
        return self.link_map[(src, dst)].time_us(nbytes)

    def transfer_energy_uj(self, src: str, dst: str, nbytes: int) -> float:
        """Energy to move ``nbytes`` from ``src`` to ``dst`` (0 on the same processor)."""
        if src == dst:
            return 0.0
        return self.link_map[(src, dst)].energy_uj(nbytes)

    def predecessors(self, name: str) -> list[str]:
        return [e.src for e in self.edges if e.dst == name]

    def successors(self, name: str) -> list[str]:
        return [e.dst for e in self.edges if e.src == name]

    def is_chain(self) -> bool:
        """True when the layers, in order, form one path ``l0 -> l1 -> ... -> ln``."""
        if len(self.edges) != len(self.layers) - 1:
            return False
        pairs = {(e.src, e.dst) for e in self.edges}
        names = [layer.name for layer in self.layers]
        return all((names[i], names[i + 1]) in pairs for i in range(len(names) - 1))

    def replace(self, **changes: Any) -> "Problem":
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    # ------------------------------------------------------------------ grid
    @cached_property
    def grid(self) -> Grid:
        pidx = self.processor_index
        procs = [p.name for p in self.processors]
        np_ = len(procs)
        lidx = self.layer_index
        tu, eu, au = TIME_UNIT_US, ENERGY_UNIT_UJ, ACCURACY_UNIT_POINTS
        n = len(self.layers)
        g_edges = [(lidx[e.src], lidx[e.dst]) for e in self.edges]
        preds: list[list[tuple[int, int]]] = [[] for _ in range(n)]
        succs: list[list[tuple[int, int]]] = [[] for _ in range(n)]
        for k, (u, v) in enumerate(g_edges):
            preds[v].append((u, k))
            succs[u].append((v, k))

        def pair_table(nbytes: int, fn) -> list[list[int]]:
            return [
                [0 if a == b else fn(self.link_map[(procs[a], procs[b])], nbytes) for b in range(np_)]
                for a in range(np_)
            ]

        t_of = lambda lk, nb: _ceil_units(lk.time_us(nb), tu)  # noqa: E731
        e_of = lambda lk, nb: _ceil_units(lk.energy_uj(nb), eu)  # noqa: E731
        ttime = [pair_table(e.bytes, t_of) for e in self.edges]
        tenergy = [pair_table(e.bytes, e_of) for e in self.edges]
        h = pidx[self.host]
        in_time, in_energy, out_time, out_energy = [], [], [], []
        for layer in self.layers:
            if layer.input_bytes > 0:
                in_time.append(pair_table(layer.input_bytes, t_of)[h])
                in_energy.append(pair_table(layer.input_bytes, e_of)[h])
            else:
                in_time.append([0] * np_)
                in_energy.append([0] * np_)
            if layer.output_bytes > 0:
                out_time.append([row[h] for row in pair_table(layer.output_bytes, t_of)])
                out_energy.append([row[h] for row in pair_table(layer.output_bytes, e_of)])
            else:
                out_time.append([0] * np_)
                out_energy.append([0] * np_)
        dur = [[_ceil_units(o.duration_us, tu) for o in layer.options] for layer in self.layers]
        horizon = sum(max(d) for d in dur)
        horizon += sum(max(max(r) for r in t) for t in ttime)
        horizon += max((max(t) for t in in_time), default=0) + max((max(t) for t in out_time), default=0)
        return Grid(
            n=n,
            names=[layer.name for layer in self.layers],
            procs=procs,
            opt_ids=[[o.id for o in layer.options] for layer in self.layers],
            opt_proc=[[pidx[o.processor] for o in layer.options] for layer in self.layers],
            dur=dur,
            energy=[[_ceil_units(o.energy_uj, eu) for o in layer.options] for layer in self.layers],
            acc=[[_ceil_units(o.accuracy_loss, au) for o in layer.options] for layer in self.layers],
            weight=[[o.weight_bytes for o in layer.options] for layer in self.layers],
            workspace=[[o.workspace_bytes for o in layer.options] for layer in self.layers],
            dense=[[o.is_dense for o in layer.options] for layer in self.layers],
            edges=g_edges,
            ttime=ttime,
            tenergy=tenergy,
            preds=preds,
            succs=succs,
            in_time=in_time,
            in_energy=in_energy,
            out_time=out_time,
            out_energy=out_energy,
            cap=[p.memory_bytes for p in self.processors],
            idle_mw=[_ceil_units(p.idle_power_w, 1e-3) for p in self.processors],
            include_idle=bool(self.include_idle_energy),
            goal=self.goal,
            latency_budget=None if self.latency_budget_us is None else _floor_units(self.latency_budget_us, tu),
            energy_budget=None if self.energy_budget_uj is None else _floor_units(self.energy_budget_uj, eu),
            acc_limit=None if self.max_accuracy_loss is None else _floor_units(self.max_accuracy_loss, au),
            horizon=max(horizon, 1),
        )

    # ------------------------------------------------------------------ JSON
    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        return {"format": _FORMAT, "version": _VERSION, **d}

    def to_json(self, *, indent: int | None = None) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Problem":
        if d.get("format") != _FORMAT:
            raise ProblemError(f"not a deepx_opt problem: format={d.get('format')!r}; expected {_FORMAT!r}")
        if d.get("version") != _VERSION:
            raise ProblemError(f"problem version {d.get('version')!r} is unsupported; expected {_VERSION}")
        try:
            return cls(
                name=d["name"],
                processors=[Processor(**p) for p in d["processors"]],
                layers=[
                    Layer(
                        name=layer["name"],
                        options=[Option(**o) for o in layer["options"]],
                        input_bytes=layer.get("input_bytes", 0),
                        output_bytes=layer.get("output_bytes", 0),
                    )
                    for layer in d["layers"]
                ],
                edges=[Edge(**e) for e in d.get("edges", [])],
                links=[Link(**lk) for lk in d.get("links", [])],
                host=d["host"],
                goal=d["goal"],
                latency_budget_us=d.get("latency_budget_us"),
                energy_budget_uj=d.get("energy_budget_uj"),
                max_accuracy_loss=d.get("max_accuracy_loss"),
                include_idle_energy=d.get("include_idle_energy", False),
            )
        except (KeyError, TypeError) as exc:
            raise ProblemError(f"malformed problem JSON: {exc}") from exc

    @classmethod
    def from_json(cls, text: str) -> "Problem":
        try:
            d = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ProblemError(f"problem JSON does not parse: {exc}") from exc
        return cls.from_dict(d)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(self.to_json(indent=1))

    @classmethod
    def load(cls, path: str | Path) -> "Problem":
        p = Path(path)
        if not p.exists():
            raise ProblemError(f"problem file {str(p)!r} does not exist")
        return cls.from_json(p.read_text())
