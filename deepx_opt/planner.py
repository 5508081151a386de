"""From a model and a device profile to a planning :class:`~deepx_opt.solvers.Problem`.

This is the one place where the three lower layers meet (DESIGN.md: ``graphs`` knows nothing of speed,
``cost_models`` nothing of solvers, ``solvers`` nothing of ONNX): for every layer, every RLC option (dense or a
rank) is placed on every processor that can run it, and costed by the profile's fitted latency model;
energy is :func:`~deepx_opt.cost_models.energy.block_energy_uj` of that time (the processor's fitted power
model of the block's works, or its active power × the time); transfers use the profile's links.
"""

from __future__ import annotations

from typing import Sequence

from deepx_opt.errors import CostModelError, ProblemError

__all__ = ["build_problem", "dense_candidates"]

def dense_candidates(model):
    """A :class:`~deepx_opt.graphs.candidates.CandidateGraph`-like view with only the dense option per layer."""
    from deepx_opt.graphs.candidates import LayerOption, op_tensors

    class _Dense:
        def __init__(self, m):
            self.model = m
            self.options = {
                v: [LayerOption(v, None, int(d["flops"]), int(d["params"]), int(d["weight_bytes"]), list(d["ops"]), 0.0,
                                tensors=op_tensors(m, d["ops"]))]
                for v, d in ((v, m.dag.nodes[v]) for v in m.layers())
            }
            self.notes = ["no compression options: every layer dense"]

    return _Dense(model)


def _option_shapes(model, option) -> dict:
    """Shapes of every tensor an option's ops touch (activations and weights, factor weights included)."""
    if option.tensors:
        return dict(option.tensors)
    from deepx_opt.cost_models.latency import model_shapes

    return model_shapes(model)


def _links(profile, names: Sequence[str]):
    """Solver links from the profile's routes: time and energy are affine in bytes, so two points fix them."""
    from deepx_opt.solvers import Link

    links = []
    probe = 1_000_000
    for a in names:
        for b in names:
            if a == b:
                continue
            t0, t1 = profile.transfer_time_us(a, b, 0), profile.transfer_time_us(a, b, probe)
            e0, e1 = profile.transfer_energy_uj(a, b, 0), profile.transfer_energy_uj(a, b, probe)
            slope = (t1 - t0) / probe
            links.append(Link(a, b, latency_us=t0, bytes_per_us=(1.0 / slope) if slope > 0 else 1e12,
                              energy_uj_per_byte=max(0.0, (e1 - e0) / probe), fixed_energy_uj=max(0.0, e0)))
    return links


def build_problem(
    candidates,
    profile,
    *,
    latency_budget_ms: float | None = None,
    energy_budget_mj: float | None = None,
    max_accuracy_loss: float | None = None,
    processors: Sequence[str] | None = None,
    goal: str | None = None,
    include_idle_energy: bool = False,
    name: str | None = None,
    skipped: dict[str, set[str]] | None = None,
):
    """Build the planning Problem of a model on a device.

    Parameters
    ----------
    candidates : CandidateGraph or ModelGraph
        RLC candidates (every layer at several ranks), or a ModelGraph (dense only).
    profile : DeviceProfile or str
        A device profile or the name/path of one.
    latency_budget_ms, energy_budget_mj : float, optional
        Budgets. With a latency budget the goal is least energy; with an energy budget, least latency.
    max_accuracy_loss : float, optional
        Limit on the summed estimated accuracy loss (points).
    processors : sequence of str, optional
        Use only these processors of the profile (default: all of them).
    goal : {"min_energy", "min_latency"}, optional
        Overrides the goal implied by the budgets (default ``min_energy``, or ``min_latency`` when only an
        energy budget is given).
    include_idle_energy : bool
        Count idle power of every processor over the makespan.
    skipped : dict, optional
        Filled with processor → the kinds of work (or ops) it was left out for.

    Returns
    -------
    Problem
        ``problem.name`` is the model name.

    Examples
    --------
    >>> from deepx_opt import zoo
    >>> from deepx_opt.graphs import load_onnx
    >>> p = build_problem(load_onnx(zoo.build("speakerid")), "tegrak1", latency_budget_ms=50)
    >>> [len(l.options) for l in p.layers], p.goal
    ([4, 4, 4, 4], 'min_energy')
    """
    from deepx_opt.cost_models import load_profile
    from deepx_opt.cost_models.latency import predict_block_us
    from deepx_opt.cost_models.energy import block_energy_uj
    from deepx_opt.graphs import ModelGraph
    from deepx_opt.solvers import Edge, Layer, Option, Problem, Processor

    prof = load_profile(profile)
    cands = dense_candidates(candidates) if isinstance(candidates, ModelGraph) else candidates
    model = cands.model
    names = list(processors) if processors else prof.processor_names
    unknown = [p for p in names if p not in prof.processor_names]
    if unknown:
        raise ProblemError(f"processors {unknown} are not in profile {prof.name!r}; it has {prof.processor_names}")
    for what, v in (("latency budget (ms)", latency_budget_ms), ("energy budget (mJ)", energy_budget_mj),
                    ("accuracy-loss limit (points)", max_accuracy_loss)):
        if v is not None and not v > 0:
            raise ProblemError(f"{what} must be positive, got {v!r}")
    if goal is None:
        goal = "min_latency" if (energy_budget_mj is not None and latency_budget_ms is None) else "min_energy"

    skips = skipped if skipped is not None else {}
    # the model's working set: blocks of a model larger than the cache run with cold caches
    from deepx_opt.cost_models.latency import context_bytes_of, model_shapes

    context = context_bytes_of(model_shapes(model))
    layers = []
    for v in model.layers():
        d = model.dag.nodes[v]
        opts = []
        for o in cands.options[v]:
            shapes = None
            for p in names:
                proc = prof.processor(p)
                op_types = {op.op_type for op in o.ops}
                bad_ops = sorted(t for t in op_types if not proc.supports_op(t))
                if not proc.supports_kind(d["kind"]) or bad_ops:
                    skips.setdefault(p, set()).add(d["kind"] if not bad_ops else "/".join(bad_ops))
                    continue
                if shapes is None:
                    shapes = _option_shapes(model, o)
                try:
                    dur = predict_block_us(prof, p, ops=o.ops, shapes=shapes, context_bytes=context)
                except CostModelError as exc:
                    raise CostModelError(f"layer {v!r} on {p!r}: {exc}") from None
                rank_tag = "" if o.rank is None else f"@r{o.rank}"
                opts.append(Option(
                    id=f"{v}{rank_tag}@{p}", processor=p, duration_us=float(dur),
                    energy_uj=block_energy_uj(prof, p, dur, ops=o.ops, shapes=shapes, context_bytes=context),
                    weight_bytes=int(o.weight_bytes),
                    accuracy_loss=float(o.accuracy_loss_pts), rank=o.rank, full_rank=o.rank is None,
                    workspace_bytes=int(d["input_bytes"] + d["output_bytes"]),
                ))
        if not opts:
            raise ProblemError(
                f"layer {v!r} ({d['kind']}) can run on none of the processors {names} of profile {prof.name!r}"
            )
        in_bytes = sum(model.tensors[t].nbytes for t in d["inputs"] if t in model.inputs)
        out_bytes = sum(model.tensors[t].nbytes for t in d["outputs"] if t in model.outputs)
        layers.append(Layer(v, opts, input_bytes=int(in_bytes), output_bytes=int(out_bytes)))

    edges = [Edge(u, w, int(b)) for u, w, b in model.dag.edges(data="bytes")]
    procs = [Processor(p, kind=prof.processor(p).kind, memory_bytes=int(prof.processor(p).memory_bytes),
                       idle_power_w=float(prof.processor(p).idle_power_w)) for p in names]
    host = prof.host if prof.host in names else names[0]
    return Problem(
        name=name or model.name,
        processors=procs,
        layers=layers,
        edges=edges,
        links=_links(prof, names),
        host=host,
        goal=goal,
        latency_budget_us=None if latency_budget_ms is None else float(latency_budget_ms) * 1000.0,
        energy_budget_uj=None if energy_budget_mj is None else float(energy_budget_mj) * 1000.0,
        max_accuracy_loss=max_accuracy_loss,
        include_idle_energy=include_idle_energy,
    )

