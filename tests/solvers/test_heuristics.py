import pytest

from deepx_opt.solvers import Status, check_plan, get_solver
from deepx_opt.solvers.heuristics import Heft
from deepx_opt.solvers.problem import Edge, Layer, Option, Problem, Processor, uniform_links

from .problems import topcuoglu_problem

# Topcuoglu et al. 2002, Fig. 4(a), worked by hand in this file's docstring order:
# (processor, start, finish) per task; makespan 80.
HEFT_GOLDEN = {
    "T1": ("P3", 0, 9), "T3": ("P3", 9, 28), "T4": ("P2", 18, 26), "T2": ("P1", 27, 40),
    "T5": ("P3", 28, 38), "T6": ("P2", 26, 42), "T9": ("P2", 56, 68), "T7": ("P3", 38, 49),
    "T8": ("P1", 57, 62), "T10": ("P2", 73, 80),
}
UPWARD_RANKS = {"T1": 108.0, "T2": 77.0, "T3": 80.0, "T4": 80.0, "T5": 69.0, "T6": 63.333,
                "T7": 42.667, "T8": 35.667, "T9": 44.333, "T10": 14.667}


def test_heft_golden_schedule():
    prob = topcuoglu_problem()
    g = prob.grid
    choice, start, ranks, order = Heft().schedule(g)
    # ranks on the grid are in 0.01 µs units
    for v, name in enumerate(g.names):
        assert ranks[v] / 100 == pytest.approx(UPWARD_RANKS[name], abs=1e-3), name
    assert [g.names[v] for v in order] == ["T1", "T3", "T4", "T2", "T5", "T6", "T9", "T7", "T8", "T10"]
    plan = get_solver("heft").solve(prob)
    assert check_plan(prob, plan) == []
    assert plan.status is Status.FEASIBLE
    for name, (proc, s, f) in HEFT_GOLDEN.items():
        a = plan.assignments[name]
        assert (a.processor, a.start_us, a.finish_us) == (proc, pytest.approx(s), pytest.approx(f)), name
    assert plan.makespan_us == pytest.approx(80.0)
    # HEFT is a heuristic: the exact optimum of this instance is no worse
    opt = get_solver("cpsat").solve(prob, time_limit_s=30)
    assert opt.status is Status.OPTIMAL and opt.makespan_us <= 80.0


def _split_problem():
    procs = [Processor("cpu", "cpu"), Processor("cloud", "remote")]
    d_cpu = {"L0": 10.0, "L1": 20.0, "L2": 30.0}
    layers = [
        Layer(n, [Option(f"{n}@cpu", "cpu", d, d), Option(f"{n}@cloud", "cloud", 1.0, 0.5)],
              input_bytes=5000 if n == "L0" else 0, output_bytes=10 if n == "L2" else 0)
        for n, d in d_cpu.items()
    ]
    return Problem("split", procs, layers, [Edge("L0", "L1", 1000), Edge("L1", "L2", 100)],
                   uniform_links(["cpu", "cloud"], latency_us=5.0, bytes_per_us=100.0), host="cpu",
                   goal="min_latency")


def test_neurosurgeon_hand_worked_split():
    # splits: all cloud 63.1 us; after L0 32.1; after L1 42.1; all cpu 60  ->  split after L0
    prob = _split_problem()
    plan = get_solver("neurosurgeon").solve(prob)
    assert check_plan(prob, plan) == []
    assert [plan.assignments[n].processor for n in ("L0", "L1", "L2")] == ["cpu", "cloud", "cloud"]
    assert plan.makespan_us == pytest.approx(32.1)
    assert plan.assignments["L1"].start_us == pytest.approx(25.0)
    assert get_solver("cloud_only").solve(prob).makespan_us == pytest.approx(63.1)
    assert get_solver("cpu_only").solve(prob).makespan_us == pytest.approx(60.0)


def test_neurosurgeon_without_remote_is_infeasible_with_reason():
    prob = _split_problem().replace(processors=[Processor("cpu", "cpu"), Processor("cloud", "gpu")])
    plan = get_solver("neurosurgeon").solve(prob)
    assert plan.status is Status.INFEASIBLE and "remote" in plan.message and plan.assignments == {}


def _greedy_problem(budget_us):
    def opts(n, dense, low, acc):
        return [Option(f"{n}@cpu", "cpu", dense, 2 * dense), Option(f"{n}@gpu", "gpu", dense, dense),
                Option(f"{n}@gpu:r8", "gpu", low, low, rank=8, accuracy_loss=acc)]
    layers = [Layer("A", opts("A", 100.0, 40.0, 1.0)), Layer("B", opts("B", 100.0, 60.0, 0.5))]
    return Problem("greedy", [Processor("cpu"), Processor("gpu", "gpu")], layers, [Edge("A", "B", 0)],
                   uniform_links(["cpu", "gpu"], latency_us=1.0, bytes_per_us=10.0), host="cpu",
                   goal="min_energy", latency_budget_us=budget_us, max_accuracy_loss=1.2)


def test_greedy_compression_cheapest_processor_then_best_ratio():
    # gpu is the cheaper processor; 200 us > 170 us budget: B (40 us saved for 0.5 point) is compressed
    # first and suffices; A's compression would then break the 1.2-point limit
    prob = _greedy_problem(170.0)
    plan = get_solver("greedy_compression").solve(prob)
    assert check_plan(prob, plan) == []
    assert {n: a.option_id for n, a in plan.assignments.items()} == {"A": "A@gpu", "B": "B@gpu:r8"}
    assert plan.accuracy_loss == pytest.approx(0.5)
    opt = get_solver("cpsat").solve(prob)
    assert opt.objective <= plan.objective
    # a budget that needs both layers compressed cannot be met within 1.2 points
    bad = get_solver("greedy_compression").solve(_greedy_problem(110.0))
    assert bad.status is Status.INFEASIBLE and "latency" in bad.message


def test_single_processor_baselines():
    prob = _greedy_problem(None)
    plan = get_solver("gpu_only").solve(prob)
    assert check_plan(prob, plan) == [] and all(a.rank is None for a in plan.assignments.values())
    assert plan.energy_uj == pytest.approx(200.0)
    missing = prob.replace(layers=[prob.layers[0], Layer("B", [o for o in prob.layers[1].options if o.processor == "gpu"])])
    p = get_solver("cpu_only").solve(missing)
    assert p.status is Status.INFEASIBLE and "'B' has no full-rank option on 'cpu'" in p.message
