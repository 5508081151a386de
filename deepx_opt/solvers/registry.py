"""One registry of solvers and heuristics: ``get_solver(name)``, ``list_solvers()``.

Every entry has ``solve(problem, *, time_limit_s=...) -> Plan``, so comparing the MILP with the
heuristics is a loop over the registry. ``"<processor>_only"`` names the single-processor baseline of
any processor (``"cpu_only"``, ``"gpu_only"``, ``"remote_only"``).
"""

from __future__ import annotations

from typing import Callable

from deepx_opt.errors import SolverError
from deepx_opt.solvers.base import Solver
from deepx_opt.solvers.problem import Problem

__all__ = ["get_solver", "list_solvers", "register_solver"]


def _cpsat() -> Solver:
    from deepx_opt.solvers.cpsat import CpSatSolver

    return CpSatSolver()


def _pulp(backend: str) -> Callable[[], Solver]:
    def make() -> Solver:
        from deepx_opt.solvers.pulp_milp import PulpSolver

        return PulpSolver(backend)

    return make


def _heuristic(cls_name: str) -> Callable[[], Solver]:
    def make() -> Solver:
        from deepx_opt.solvers import heuristics

        return getattr(heuristics, cls_name)()

    return make


def _dp() -> Solver:
    from deepx_opt.solvers.dp import ChainDP

    return ChainDP()


def _brute() -> Solver:
    from deepx_opt.solvers.brute import BruteForce

    return BruteForce()


_REGISTRY: dict[str, Callable[[], Solver]] = {
    "cpsat": _cpsat,
    "pulp_cbc": _pulp("cbc"),
    "pulp_highs": _pulp("highs"),
    "dp": _dp,
    "brute": _brute,
    "greedy_compression": _heuristic("GreedyCompression"),
    "heft": _heuristic("Heft"),
    "neurosurgeon": _heuristic("Neurosurgeon"),
}
_EXACT = {"cpsat", "pulp_cbc", "pulp_highs", "dp", "brute"}


def register_solver(name: str, factory: Callable[[], Solver]) -> None:
    """Add a solver; a name already taken raises SolverError."""
    if name in _REGISTRY or name.endswith("_only"):
        raise SolverError(f"solver name {name!r} is already registered (or reserved: '<processor>_only')")
    _REGISTRY[name] = factory


def get_solver(name: str) -> Solver:
    """The solver registered as ``name`` (a fresh instance).

    >>> get_solver("cpsat").name
    'cpsat'
    >>> get_solver("gpu_only").processor
    'gpu'
    """
    if name in _REGISTRY:
        return _REGISTRY[name]()
    if name.endswith("_only") and len(name) > len("_only"):
        from deepx_opt.solvers.heuristics import SingleProcessor

        return SingleProcessor(name[: -len("_only")])
    raise SolverError(
        f"unknown solver {name!r}; registered: {sorted(_REGISTRY)} and '<processor>_only' for any processor"
    )


def list_solvers(problem: Problem | None = None, *, kind: str = "all", available_only: bool = True) -> list[str]:
    """Registered solver names.

    With ``problem``, the ``<processor>_only`` baselines of its processors are included and solvers that
    cannot take it (the chain DP on a DAG, brute force on a large problem) are left out. ``kind`` is
    ``"all"``, ``"exact"`` or ``"heuristic"``. ``available_only`` drops back ends that are not installed.
    """
    if kind not in ("all", "exact", "heuristic"):
        raise SolverError(f"kind={kind!r}; expected 'all', 'exact' or 'heuristic'")
    names = list(_REGISTRY)
    if problem is not None:
        names += [f"{p.name}_only" for p in problem.processors]
    if kind == "exact":
        names = [n for n in names if n in _EXACT]
    elif kind == "heuristic":
        names = [n for n in names if n not in _EXACT]
    out = []
    for n in names:
        if available_only and n == "pulp_highs":
            from deepx_opt.solvers.pulp_milp import available_backends

            if "highs" not in available_backends():
                continue
        if problem is not None and get_solver(n).supports(problem) is not None:
            continue
        out.append(n)
    return out
