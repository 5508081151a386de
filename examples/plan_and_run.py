"""Plan a trained model on this machine and run the plan: data → model → candidates → problem → plan → run.

    .venv/bin/python examples/plan_and_run.py

Uses scikit-learn's digits (real data, no download), the trained ``digits_mlp`` of the zoo, this machine's
calibrated profile (quick calibration, cached), CP-SAT, and the numpy/OpenCL runtime.
"""

from __future__ import annotations

import numpy as np

import deepx_opt as dx
from deepx_opt import zoo
from deepx_opt.cost_models.calibrate import host_profile
from deepx_opt.graphs.accuracy import evaluate_model


def main() -> None:
    # data: the fixed train/test split of sklearn's digits, shaped for the model
    ds = zoo.digits_dataset().for_model("digits_mlp")
    calib, labels = np.ascontiguousarray(ds.x_train[:600]), np.ascontiguousarray(ds.y_train[:600])

    # model: ONNX → DAG of unit blocks → every weighted layer at several SVD ranks with an accuracy estimate
    model = dx.load_onnx(zoo.build("digits_mlp"))
    cands = dx.candidates(model, calib=calib, labels=labels)

    # problem: costs from this machine's calibrated profile; least energy within 0.3 ms and 1 point of accuracy
    profile = host_profile(mode="quick")
    problem = dx.build_problem(cands, profile, latency_budget_ms=0.3, max_accuracy_loss=1.0)
    plan = dx.solve(problem, time_limit_s=10)
    assert dx.check_plan(problem, plan) == []
    print(f"{plan.status.value}: {plan.makespan_us:.0f} µs, {plan.energy_uj / 1000:.3f} mJ, "
          f"estimated loss {plan.accuracy_loss:.2f} pts")
    for a in plan.assignments.values():
        print(f"  {a.layer:6s} rank {a.rank or 'full':>4}  on {a.processor}")

    # run it for real and measure the accuracy of the compressed model on the held-out split
    x0 = {"input": np.ascontiguousarray(ds.x_test[:1])}
    _, report = dx.execute(plan, model, x0, repeat=20, rlc_method=cands.method,
                           factorizers=cands.estimator.factorizers)
    ranks = {v: a.rank for v, a in plan.assignments.items() if a.rank is not None}
    dense = evaluate_model(model, ds.x_test, ds.y_test)["top1_pct"]
    planned = evaluate_model(cands.apply(ranks), ds.x_test, ds.y_test)["top1_pct"]
    print(f"measured: {report.latency_us:.0f} µs (median of {report.repeat}); "
          f"top-1 {dense:.2f}% dense → {planned:.2f}% planned")


if __name__ == "__main__":
    main()
