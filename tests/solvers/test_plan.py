import dataclasses

import pytest

from deepx_opt.errors import PlanError
from deepx_opt.solvers import Plan, Status, check_plan, evaluate, get_solver
from deepx_opt.solvers.plan import empty_plan
from deepx_opt.solvers.problem import Processor
from deepx_opt.solvers.synthetic import branches_problem


@pytest.fixture(scope="module")
def solved():
    # two branches on a DAG with cross-processor edges; min latency, so branches run in parallel
    prob = branches_problem(3, seed=5, goal="min_latency", max_accuracy_loss=2.0, n_ranks=2)
    prob = prob.replace(energy_budget_uj=40_000.0)
    plan = get_solver("cpsat").solve(prob, time_limit_s=20)
    assert plan.status is Status.OPTIMAL
    assert check_plan(prob, plan) == []
    return prob, plan


def _with(plan, layer, **changes):
    a = dict(plan.assignments)
    a[layer] = dataclasses.replace(a[layer], **changes)
    return dataclasses.replace(plan, assignments=a)


def _has(violations, text):
    assert any(text in v for v in violations), violations


def test_plan_json_round_trip(solved, tmp_path):
    prob, plan = solved
    again = Plan.from_json(plan.to_json())
    assert again == plan
    plan.save(tmp_path / "plan.json")
    assert Plan.load(tmp_path / "plan.json") == plan
    assert check_plan(prob, again) == []
    assert list(again.assignments) == [layer.name for layer in prob.layers]
    assert again.assignments["L1"].processor in {"cpu", "gpu", "remote"}


def test_plan_json_errors():
    with pytest.raises(PlanError, match="format"):
        Plan.from_json('{"format": "nope"}')
    with pytest.raises(PlanError, match="status 'GREAT'"):
        Plan.from_json('{"format": "deepx_opt.plan", "version": 1, "status": "GREAT"}')


def test_missing_and_unknown_assignments(solved):
    prob, plan = solved
    a = dict(plan.assignments)
    del a["L2"]
    _has(check_plan(prob, dataclasses.replace(plan, assignments=a)), "'L2' has no assignment")
    _has(check_plan(prob, _with(plan, "L2", option_id="nope")), "option 'nope' does not exist")


def test_processor_and_rank_must_match_option(solved):
    prob, plan = solved
    other = next(p.name for p in prob.processors if p.name != plan.assignments["L1"].processor)
    _has(check_plan(prob, _with(plan, "L1", processor=other)), "but option")
    _has(check_plan(prob, _with(plan, "L1", rank=999)), "rank 999")


def test_duration_precedence_and_overlap(solved):
    prob, plan = solved
    a = plan.assignments["L1"]
    _has(check_plan(prob, _with(plan, "L1", finish_us=a.finish_us + 5)), "finish−start")
    # successor starts before its predecessor's data can arrive
    succ = prob.successors("L1")[0]
    s = plan.assignments[succ]
    early = a.finish_us - 1.0
    _has(check_plan(prob, _with(plan, succ, start_us=early, finish_us=early + s.finish_us - s.start_us)),
         "before its input is ready")
    # two layers on one processor at the same time: put L1 onto L4's slot and processor
    b = plan.assignments["L4"]
    opt = next(o for o in prob.layer("L1").options if o.processor == b.processor)
    moved = _with(plan, "L1", option_id=opt.id, processor=opt.processor, rank=opt.rank,
                  start_us=b.start_us, finish_us=b.start_us + opt.duration_us)
    v = check_plan(prob, moved)
    assert any("overlaps" in x for x in v) or any("before its input" in x for x in v), v


def test_memory_budgets_and_accuracy(solved):
    prob, plan = solved
    used = {p: m for p, m in plan.memory_bytes.items() if m > 0}
    p0 = next(iter(used))
    procs = [Processor(p.name, p.kind, used[p0] - 1 if p.name == p0 else None, p.idle_power_w) for p in prob.processors]
    _has(check_plan(prob.replace(processors=procs), plan), "exceeds its capacity")
    _has(check_plan(prob.replace(latency_budget_us=plan.makespan_us * 0.9), plan), "exceeds the latency budget")
    _has(check_plan(prob.replace(energy_budget_uj=plan.energy_uj * 0.9), plan), "exceeds the energy budget")
    assert plan.accuracy_loss > 0
    _has(check_plan(prob.replace(max_accuracy_loss=plan.accuracy_loss * 0.5), plan), "exceeds the limit")


def test_reported_totals_and_status(solved):
    prob, plan = solved
    _has(check_plan(prob, dataclasses.replace(plan, energy_uj=plan.energy_uj + 1)), "reported energy")
    _has(check_plan(prob, dataclasses.replace(plan, makespan_us=plan.makespan_us - 1)), "reported makespan")
    _has(check_plan(prob, dataclasses.replace(plan, accuracy_loss=0.0)), "reported accuracy")
    _has(check_plan(prob, dataclasses.replace(plan, memory_bytes={})), "reported memory")
    _has(check_plan(prob, dataclasses.replace(plan, objective=plan.objective * 0.5)), "objective")
    _has(check_plan(prob, dataclasses.replace(plan, gap=0.1)), "OPTIMAL with a non-zero gap")
    _has(check_plan(prob, dataclasses.replace(plan, status=Status.INFEASIBLE)), "carries")
    _has(check_plan(prob, dataclasses.replace(plan, problem_name="other")), "is for problem")
    bad = dataclasses.replace(plan, bound=plan.objective * 2, status=Status.FEASIBLE, gap=None)
    _has(check_plan(prob, bad), "exceeds objective")


def test_empty_plan_rules(solved):
    prob, _ = solved
    p = empty_plan(prob, solver="x", status=Status.INFEASIBLE, message="m")
    assert check_plan(prob, p) == [] and p.assignments == {}
    with pytest.raises(PlanError):
        empty_plan(prob, solver="x", status=Status.OPTIMAL, message="m")


def test_evaluate_list_schedule_and_totals():
    prob = branches_problem(2, seed=1, goal="min_latency", processors=("cpu", "gpu"), n_ranks=1)
    names = [layer.name for layer in prob.layers]
    # stem and branch A on gpu, branch B and join on cpu: the branches overlap in time
    choice = {n: f"{n}@gpu" if n in ("L0", "L1", "L2") else f"{n}@cpu" for n in names}
    ev = evaluate(prob, choice)
    plan = ev.to_plan("manual")
    assert check_plan(prob, plan) == []
    a = plan.assignments
    assert a["L3"].start_us < a["L2"].finish_us  # parallel branches on different processors
    cross = prob.transfer_energy_uj("gpu", "cpu", next(e.bytes for e in prob.edges if (e.src, e.dst) == ("L0", "L3")))
    assert plan.energy_breakdown_uj["transfer"] >= cross > 0
    assert plan.energy_uj == pytest.approx(sum(plan.energy_breakdown_uj.values()))
    with pytest.raises(PlanError, match="no option"):
        evaluate(prob, {"L0": "L0@cpu"})
