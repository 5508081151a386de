"""Synthetic planning Problems for tests, benchmarks and examples (no model, no profile needed).

Costs follow a simple device story: each processor has a speed (flop/µs), a fixed per-layer overhead
(µs), an active power (W) and an idle power (W); an option at rank fraction f of a layer with F flops
lasts ``overhead + a·f·F/speed`` µs (a: a random log-normal affinity of the layer for the processor) and costs ``power × duration`` µJ; its weights shrink by f and its
accuracy loss grows as ``sensitivity × 4 × (1 − f)²`` points. A "remote" processor is fast but behind a
slow, costly link, which is the DeepX / Neurosurgeon trade-off.

Example
-------
>>> from deepx_opt.solvers.synthetic import chain_problem
>>> p = chain_problem(5, seed=1, goal="min_latency")
>>> len(p.layers), [q.name for q in p.processors]
(5, ['cpu', 'gpu', 'remote'])
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Sequence

from deepx_opt.solvers.problem import Edge, Layer, Link, Option, Problem, Processor

__all__ = ["ProcessorSpec", "DEFAULT_PROCESSORS", "chain_problem", "branches_problem", "dag_problem", "make_problem"]


@dataclass(frozen=True)
class ProcessorSpec:
    name: str
    kind: str
    flops_per_us: float
    overhead_us: float
    active_power_w: float
    idle_power_w: float
    memory_bytes: int | None = None


DEFAULT_PROCESSORS: dict[str, ProcessorSpec] = {
    "cpu": ProcessorSpec("cpu", "cpu", 2_000.0, 5.0, 2.0, 0.3),
    "gpu": ProcessorSpec("gpu", "gpu", 20_000.0, 40.0, 3.5, 0.2),
    "dsp": ProcessorSpec("dsp", "dsp", 6_000.0, 15.0, 0.8, 0.05),
    "remote": ProcessorSpec("remote", "remote", 200_000.0, 200.0, 0.6, 0.0),
}

_RANK_FRACTIONS = (1.0, 0.5, 0.25, 0.125, 0.0625)


def _link(a: ProcessorSpec, b: ProcessorSpec) -> Link:
    if "remote" in (a.kind, b.kind):
        return Link(a.name, b.name, latency_us=4_000.0, bytes_per_us=12.5, energy_uj_per_byte=0.4)
    return Link(a.name, b.name, latency_us=30.0, bytes_per_us=4_000.0, energy_uj_per_byte=0.0005)


def make_problem(
    name: str,
    n_layers: int,
    edges: Sequence[tuple[int, int]],
    *,
    processors: Sequence[str | ProcessorSpec] = ("cpu", "gpu", "remote"),
    n_ranks: int = 4,
    seed: int = 0,
    goal: str = "min_energy",
    latency_budget_us: float | None = None,
    energy_budget_uj: float | None = None,
    max_accuracy_loss: float | None = None,
    include_idle_energy: bool = False,
    memory_bytes: dict[str, int] | None = None,
) -> Problem:
    """A Problem over the DAG ``edges`` (pairs of layer indices, src < dst) with random layer sizes."""
    if not 1 <= n_ranks <= len(_RANK_FRACTIONS):
        raise ValueError(f"n_ranks={n_ranks}; expected 1..{len(_RANK_FRACTIONS)}")
    rng = random.Random(seed)
    specs = [DEFAULT_PROCESSORS[p] if isinstance(p, str) else p for p in processors]
    if memory_bytes:
        specs = [
            ProcessorSpec(s.name, s.kind, s.flops_per_us, s.overhead_us, s.active_power_w, s.idle_power_w,
                          memory_bytes.get(s.name, s.memory_bytes))
            for s in specs
        ]
    has_in = {v for v in range(n_layers)} - {d for _, d in edges}
    has_out = {v for v in range(n_layers)} - {s for s, _ in edges}
    out_bytes = [4 * rng.randint(256, 65_536) for _ in range(n_layers)]
    layers = []
    for v in range(n_layers):
        flops = int(10 ** rng.uniform(5.0, 7.7))
        params = int(10 ** rng.uniform(3.5, 6.3))
        sens = rng.uniform(0.05, 1.0)
        opts = []
        for s in specs:
            # how well this kind of layer suits this processor (conv vs. fully-connected, ...)
            affinity = rng.lognormvariate(0.0, 0.7)
            for r in range(n_ranks):
                f = _RANK_FRACTIONS[r]
                dur = s.overhead_us + affinity * f * flops / s.flops_per_us
                opts.append(
                    Option(
                        id=f"L{v}@{s.name}" + ("" if r == 0 else f":r{r}"),
                        processor=s.name,
                        duration_us=round(dur, 3),
                        energy_uj=round(dur * s.active_power_w, 3),
                        weight_bytes=int(4 * params * f),
                        accuracy_loss=round(sens * 4.0 * (1.0 - f) ** 2, 4),
                        rank=None if r == 0 else max(1, int(256 * f)),
                    )
                )
        layers.append(
            Layer(
                f"L{v}",
                opts,
                input_bytes=4 * 3 * 32 * 32 if v in has_in else 0,
                output_bytes=4 * 100 if v in has_out else 0,
            )
        )
    return Problem(
        name=name,
        processors=[Processor(s.name, s.kind, s.memory_bytes, s.idle_power_w) for s in specs],
        layers=layers,
        edges=[Edge(f"L{a}", f"L{b}", out_bytes[a]) for a, b in edges],
        links=[_link(a, b) for a in specs for b in specs if a.name != b.name],
        host=specs[0].name,
        goal=goal,
        latency_budget_us=latency_budget_us,
        energy_budget_uj=energy_budget_uj,
        max_accuracy_loss=max_accuracy_loss,
        include_idle_energy=include_idle_energy,
    )


def chain_problem(n: int, **kw) -> Problem:
    """A chain ``L0 -> L1 -> ... -> L(n-1)``."""
    return make_problem(kw.pop("name", f"chain{n}"), n, [(i, i + 1) for i in range(n - 1)], **kw)


def branches_problem(branch_len: int, n_branches: int = 2, **kw) -> Problem:
    """A stem layer, ``n_branches`` parallel chains of ``branch_len`` layers, and a join layer."""
    edges = []
    n = 1
    ends = []
    for _ in range(n_branches):
        prev = 0
        for _ in range(branch_len):
            edges.append((prev, n))
            prev = n
            n += 1
        ends.append(prev)
    for e in ends:
        edges.append((e, n))
    return make_problem(kw.pop("name", f"branches{n_branches}x{branch_len}"), n + 1, edges, **kw)


def dag_problem(n: int, *, width: int = 3, seed: int = 0, **kw) -> Problem:
    """A random connected DAG of ``n`` layers: each layer reads 1–2 of the ``width·2`` layers before it."""
    rng = random.Random(seed + 7919)
    edges = set()
    for v in range(1, n):
        lo = max(0, v - 2 * width)
        for u in rng.sample(range(lo, v), k=min(v - lo, rng.choice((1, 1, 2)))):
            edges.add((u, v))
    # every layer but the last feeds someone (one output)
    srcs = {u for u, _ in edges}
    for u in range(n - 1):
        if u not in srcs:
            edges.add((u, rng.randint(u + 1, min(n - 1, u + 2 * width))))
    return make_problem(kw.pop("name", f"dag{n}"), n, sorted(edges), seed=seed, **kw)


def benchmark_problems() -> dict[str, Problem]:
    """The synthetic benchmark instances (benchmarks/solvers_*.py), with budgets that bind.

    Budgets are set from heuristics only (deterministic, no exact solve): the latency budget lies
    between the HEFT makespan (fast) and the makespan of the greedy least-energy plan (slow); the energy
    budget of the min-latency variant likewise between the two plans' energies.
    """
    from deepx_opt.solvers.heuristics import GreedyCompression, Heft

    def between(p: Problem, frac: float) -> tuple[float, float]:
        fast = Heft().solve(p.replace(goal="min_latency"))
        cheap = GreedyCompression().solve(p.replace(goal="min_energy"))
        lat = fast.makespan_us + frac * (cheap.makespan_us - fast.makespan_us)
        en = fast.energy_uj + (1 - frac) * (cheap.energy_uj - fast.energy_uj)
        return lat, en

    local = ("cpu", "gpu", "dsp")
    out: dict[str, Problem] = {}
    chain = chain_problem(25, seed=1, n_ranks=4, max_accuracy_loss=3.0, processors=local, name="chain25")
    lat, en = between(chain, 0.1)
    out["chain25_min_energy"] = chain.replace(name="chain25_min_energy", latency_budget_us=round(lat, 1))
    out["chain25_min_latency"] = chain.replace(name="chain25_min_latency", goal="min_latency",
                                               energy_budget_uj=round(en, 1))
    remote = chain_problem(25, seed=1, n_ranks=4, max_accuracy_loss=3.0, name="chain25_remote")
    lat, _ = between(remote, 0.1)
    out["chain25_remote_min_energy"] = remote.replace(latency_budget_us=round(lat, 1))
    br = branches_problem(50, seed=2, n_ranks=4, max_accuracy_loss=4.0, processors=local, name="branches2x50")
    lat, _ = between(br, 0.1)
    out["branches2x50_min_energy"] = br.replace(name="branches2x50_min_energy", latency_budget_us=round(lat, 1))
    dag = dag_problem(120, seed=3, n_ranks=4, max_accuracy_loss=5.0, processors=local, name="dag120")
    dense_gpu = sum(max(o.weight_bytes for o in layer.options if o.processor == "gpu") for layer in dag.layers)
    lat, _ = between(dag, 0.3)  # HEFT ignores memory: budgets from the uncapped instance
    out["dag120_min_energy"] = dag.replace(name="dag120_min_energy", latency_budget_us=round(lat, 1))
    dag = make_problem("dag120", 120, [(dag.layer_index[e.src], dag.layer_index[e.dst]) for e in dag.edges],
                       seed=3, n_ranks=4, max_accuracy_loss=5.0, processors=local,
                       memory_bytes={"gpu": dense_gpu // 2})
    out["dag120_memcap_min_energy"] = dag.replace(name="dag120_memcap_min_energy", latency_budget_us=round(lat, 1))
    return out
