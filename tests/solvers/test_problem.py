import math

import pytest

from deepx_opt.errors import ProblemError
from deepx_opt.solvers.problem import (
    ENERGY_UNIT_UJ, TIME_UNIT_US, Edge, Layer, Link, Option, Problem, Processor, uniform_links,
)
from deepx_opt.solvers.synthetic import branches_problem, chain_problem, dag_problem

from .problems import fixed_problems


def _base(**kw):
    procs = kw.pop("processors", [Processor("cpu"), Processor("gpu", "gpu", memory_bytes=1000)])
    layers = kw.pop("layers", [
        Layer("a", [Option("a@cpu", "cpu", 10.0, 5.0), Option("a@gpu", "gpu", 2.0, 3.0, rank=4, full_rank=False)]),
        Layer("b", [Option("b@cpu", "cpu", 7.0, 4.0)]),
    ])
    edges = kw.pop("edges", [Edge("a", "b", 100)])
    links = kw.pop("links", uniform_links([p.name for p in procs], latency_us=1.0, bytes_per_us=10.0))
    return Problem("t", procs, layers, edges, links, **kw)


def test_valid_problem_and_accessors():
    p = _base()
    assert p.layer("a").option("a@gpu").rank == 4
    assert p.layer("a").option("a@cpu").is_dense and not p.layer("a").option("a@gpu").is_dense
    assert p.predecessors("b") == ["a"] and p.successors("a") == ["b"]
    assert p.is_chain()
    assert p.transfer_time_us("cpu", "gpu", 100) == pytest.approx(11.0)
    assert p.transfer_time_us("cpu", "cpu", 100) == 0.0


@pytest.mark.parametrize(
    "kw, match",
    [
        (dict(layers=[Layer("a", [Option("x", "tpu", 1.0, 1.0)])], edges=[]), "processor 'tpu' is unknown"),
        (dict(layers=[Layer("a", [])], edges=[]), "has no options"),
        (dict(layers=[Layer("a", [Option("x", "cpu", -1.0, 1.0)])], edges=[]), "duration_us=-1.0"),
        (dict(layers=[Layer("a", [Option("x", "cpu", math.nan, 1.0)])], edges=[]), "duration_us=nan"),
        (dict(layers=[Layer("a", [Option("x", "cpu", 1.0, 1.0), Option("x", "cpu", 2.0, 1.0)])], edges=[]),
         "duplicate option ids"),
        (dict(edges=[Edge("a", "b", 1), Edge("b", "a", 1)]), "cycle"),
        (dict(edges=[Edge("b", "a", 1)]), "topological order"),
        (dict(edges=[Edge("a", "zz", 1)]), "layer 'zz' is unknown"),
        (dict(edges=[Edge("a", "a", 1)]), "self-loop"),
        (dict(links=[]), "no link for processor pairs"),
        (dict(host="dsp"), "host processor 'dsp'"),
        (dict(goal="fast"), "goal 'fast' is unknown"),
        (dict(latency_budget_us=-5.0), "latency_budget_us=-5.0"),
        (dict(processors=[Processor("cpu"), Processor("cpu")]), "duplicate processor names"),
        (dict(links=[Link("cpu", "gpu", 0.0, 0.0), Link("gpu", "cpu", 0.0, 1.0)]), "bytes_per_us"),
        (dict(layers=[Layer("a", [Option("x", "cpu", 1.0, 1.0, rank=0)])], edges=[]), "rank=0"),
    ],
)
def test_validation_errors(kw, match):
    with pytest.raises(ProblemError, match=match):
        _base(**kw)


@pytest.mark.parametrize("prob", fixed_problems() + [dag_problem(40, seed=9, include_idle_energy=True)],
                         ids=lambda p: p.name)
def test_json_round_trip(prob, tmp_path):
    again = Problem.from_json(prob.to_json())
    assert again == prob
    prob.save(tmp_path / "p.json")
    assert Problem.load(tmp_path / "p.json") == prob
    assert again.grid.dur == prob.grid.dur


def test_json_errors(tmp_path):
    with pytest.raises(ProblemError, match="does not parse"):
        Problem.from_json("{")
    with pytest.raises(ProblemError, match="format"):
        Problem.from_json('{"format": "x"}')
    with pytest.raises(ProblemError, match="does not exist"):
        Problem.load(tmp_path / "missing.json")


def test_grid_rounds_costs_up_and_budgets_down():
    p = _base(latency_budget_us=10.005, energy_budget_uj=7.999, max_accuracy_loss=0.33339)
    g = p.grid
    assert g.dur[0] == [1000, 200]  # 10 µs, 2 µs at 0.01 µs
    assert g.latency_budget == 1000  # 10.005 µs rounds down
    assert g.energy_budget == 799
    assert g.acc_limit == 3333
    # exact multiples are not pushed up by floating-point noise
    q = _base(layers=[Layer("a", [Option("a", "cpu", 0.3, 0.07)]), Layer("b", [Option("b", "cpu", 1.0, 1.0)])])
    assert q.grid.dur[0] == [30] and q.grid.energy[0] == [7]
    assert TIME_UNIT_US == 0.01 and ENERGY_UNIT_UJ == 0.01


def test_synthetic_shapes():
    assert chain_problem(5).is_chain()
    b = branches_problem(4, n_branches=3)
    assert len(b.layers) == 14 and not b.is_chain()
    d = dag_problem(30, seed=1)
    assert len(d.layers) == 30 and len(d.processors) == 3
