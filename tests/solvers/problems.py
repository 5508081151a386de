"""Hand-made Problems and Hypothesis strategies shared by the solver tests."""

from __future__ import annotations

from hypothesis import strategies as st

from deepx_opt.solvers.problem import Edge, Layer, Link, Option, Problem, Processor, uniform_links
from deepx_opt.solvers.synthetic import branches_problem, chain_problem, dag_problem

# Topcuoglu, Hariri & Wu (IEEE TPDS 2002), Fig. 2: computation costs on P1..P3 and communication costs.
TOPCUOGLU_W = {
    "T1": (14, 16, 9), "T2": (13, 19, 18), "T3": (11, 13, 19), "T4": (13, 8, 17), "T5": (12, 13, 10),
    "T6": (13, 16, 9), "T7": (7, 15, 11), "T8": (5, 11, 14), "T9": (18, 12, 20), "T10": (21, 7, 16),
}
TOPCUOGLU_C = {
    ("T1", "T2"): 18, ("T1", "T3"): 12, ("T1", "T4"): 9, ("T1", "T5"): 11, ("T1", "T6"): 14,
    ("T2", "T8"): 19, ("T2", "T9"): 16, ("T3", "T7"): 23, ("T4", "T8"): 27, ("T4", "T9"): 23,
    ("T5", "T9"): 13, ("T6", "T8"): 15, ("T7", "T10"): 17, ("T8", "T10"): 11, ("T9", "T10"): 13,
}


def topcuoglu_problem() -> Problem:
    """The classic HEFT example: latency 0 and 1 byte/µs links, so an edge's bytes are its µs."""
    procs = ["P1", "P2", "P3"]
    layers = [
        Layer(t, [Option(f"{t}@{p}", p, duration_us=w, energy_uj=w) for p, w in zip(procs, ws)])
        for t, ws in TOPCUOGLU_W.items()
    ]
    return Problem(
        "topcuoglu2002",
        [Processor(p) for p in procs],
        layers,
        [Edge(a, b, c) for (a, b), c in TOPCUOGLU_C.items()],
        uniform_links(procs, latency_us=0.0, bytes_per_us=1.0),
        host="P1",
        goal="min_latency",
    )


def fixed_problems() -> list[Problem]:
    """A spread of small Problems: chain, branches, DAG; both goals; budgets, memory, idle energy."""
    c = chain_problem(7, seed=11, max_accuracy_loss=1.5)
    lat = c.replace(latency_budget_us=4_000.0)
    br = branches_problem(3, seed=5, goal="min_latency", max_accuracy_loss=2.0, n_ranks=3)
    br = br.replace(energy_budget_uj=12_000.0)
    mem = dag_problem(9, seed=2, n_ranks=2, max_accuracy_loss=3.0, memory_bytes={"gpu": 1_500_000, "cpu": 3_000_000})
    idle = chain_problem(5, seed=3, n_ranks=2, include_idle_energy=True, goal="min_energy", latency_budget_us=9_000.0)
    infeasible = chain_problem(4, seed=1, latency_budget_us=50.0)
    return [lat, br, mem, idle, infeasible]


@st.composite
def small_problems(draw, *, max_layers: int = 5, chain: bool | None = None, max_options: int = 3) -> Problem:
    """Random tiny Problems (brute force must finish): chains or DAGs, 2–3 processors, ≤3 options."""
    n = draw(st.integers(1, max_layers))
    is_chain = draw(st.booleans()) if chain is None else chain
    np_ = draw(st.integers(2, 3))
    procs = [f"p{i}" for i in range(np_)]
    kinds = ["cpu"] + ["gpu"] * (np_ - 2) + [draw(st.sampled_from(["gpu", "remote"]))]
    kinds = kinds[:np_]
    edges: list[tuple[int, int]] = []
    if is_chain:
        edges = [(i, i + 1) for i in range(n - 1)]
    else:
        for v in range(1, n):
            for u in range(v):
                if draw(st.integers(0, 2)) == 0:
                    edges.append((u, v))
    quarter = st.integers(0, 240).map(lambda i: i / 4)  # exercises the grid rounding
    layers = []
    pairs = [(p, r) for p in procs for r in (None, 2)]
    for v in range(n):
        k = draw(st.integers(1, min(max_options, len(pairs))))
        chosen = draw(st.lists(st.sampled_from(pairs), min_size=k, max_size=k, unique=True))
        opts = []
        for p, r in chosen:
            opts.append(Option(
                id=f"o{v}_{p}_{r}", processor=p, rank=r,
                duration_us=draw(quarter), energy_uj=draw(quarter) + 0.3,
                weight_bytes=draw(st.integers(0, 100)) * (1 if r else 2),
                accuracy_loss=0.0 if r is None else draw(st.sampled_from([0.25, 0.5, 1.0, 1.7])),
                workspace_bytes=draw(st.sampled_from([0, 0, 10, 30])),
            ))
        has_pred = any(b == v for _, b in edges)
        has_succ = any(a == v for a, _ in edges)
        layers.append(Layer(
            f"L{v}", opts,
            input_bytes=0 if has_pred else draw(st.sampled_from([0, 40, 200])),
            output_bytes=0 if has_succ else draw(st.sampled_from([0, 40, 200])),
        ))
    links = []
    for a in procs:
        for b in procs:
            if a != b:
                links.append(Link(a, b, latency_us=draw(st.sampled_from([0.0, 2.5, 10.0])),
                                  bytes_per_us=draw(st.sampled_from([10.0, 40.0, 1000.0])),
                                  energy_uj_per_byte=draw(st.sampled_from([0.0, 0.01, 0.05]))))
    caps = {}
    if draw(st.booleans()):
        for p in procs:
            caps[p] = draw(st.one_of(st.none(), st.integers(0, 300)))
    idle = draw(st.integers(0, 3)) == 0
    processors = [Processor(p, kind, caps.get(p), draw(st.sampled_from([0.0, 0.05, 0.333])) if idle else 0.0)
                  for p, kind in zip(procs, kinds)]
    goal = draw(st.sampled_from(["min_energy", "min_latency"]))
    lat = draw(st.one_of(st.none(), st.integers(5, 250).map(float)))
    en = draw(st.one_of(st.none(), st.integers(20, 500).map(float)))
    acc = draw(st.one_of(st.none(), st.sampled_from([0.0, 0.5, 1.0, 2.5])))
    return Problem(
        "hyp", processors, layers, [Edge(f"L{a}", f"L{b}", draw(st.integers(0, 800))) for a, b in edges],
        links, host="p0", goal=goal, latency_budget_us=lat, energy_budget_uj=en, max_accuracy_loss=acc,
        include_idle_energy=idle,
    )
