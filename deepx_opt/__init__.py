"""deepx_opt: plan deep-learning inference on heterogeneous, resource-limited devices.

The path of one request (docs/ir.md, DESIGN)::

    model = load_onnx("model.onnx")                      # ModelGraph: DAG of unit blocks
    cands = candidates(model, calib=x, labels=y)         # RLC: every weighted layer at several SVD ranks
    problem = build_problem(cands, "tegrak1", latency_budget_ms=40, max_accuracy_loss=1)
    plan = solve(problem)                                # CP-SAT by default; raises InfeasiblePlanError
    outputs, report = execute(plan, model, {"input": x0}, processor_map={"gpu": "opencl:0"})

Each stage is a plain function over plain data that can be saved and reloaded (ONNX, JSON). Heavy
dependencies are imported when the function that needs them is first called.
"""

from deepx_opt.errors import DeepxError

__version__ = "0.1.0"

__all__ = [
    "DeepxError", "__version__",
    "load_onnx", "candidates", "build_problem", "solve", "execute", "check_plan", "Plan", "Problem",
    "load_profile", "get_solver", "list_solvers",
]

_LAZY = {
    "load_onnx": ("deepx_opt.graphs", "load_onnx"),
    "candidates": ("deepx_opt.graphs.candidates", "candidates"),
    "build_problem": ("deepx_opt.planner", "build_problem"),
    "solve": ("deepx_opt.solvers", "solve"),
    "check_plan": ("deepx_opt.solvers", "check_plan"),
    "Plan": ("deepx_opt.solvers", "Plan"),
    "Problem": ("deepx_opt.solvers", "Problem"),
    "get_solver": ("deepx_opt.solvers", "get_solver"),
    "list_solvers": ("deepx_opt.solvers", "list_solvers"),
    "execute": ("deepx_opt.runtime", "execute"),
    "load_profile": ("deepx_opt.cost_models", "load_profile"),
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        mod, attr = _LAZY[name]
        value = getattr(importlib.import_module(mod), attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'deepx_opt' has no attribute {name!r}")
