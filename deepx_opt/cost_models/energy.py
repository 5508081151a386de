"""Energy models: what a block costs on its processor, plus link transfers.

A block of latency ``t`` µs on processor ``p`` costs (:func:`block_energy_uj`)

* ``active_power_w(p) · t`` when the profile gives ``p`` no power model (modelled powers: datasheets, or
  fitted to published figures), or
* ``p``'s fitted :class:`~deepx_opt.cost_models.power.PowerModel` of the block's works and ``t``:
  e.g. ``P_wait · t + e_flop · FLOPs + e_byte · bytes`` — a GPU that mostly waits for the host's kernel
  launches and synchronisation draws near its idle power, not its kernel-loop power. Fitted from NVML
  energy during calibration (see :mod:`deepx_opt.cost_models.power`).

The planner prices every option with :func:`block_energy_uj`, and :func:`plan_energy_uj` sums the same
thing over a schedule:

``energy_uj = Σ_blocks block_energy_uj + Σ_p run_energy_uj(p) + Σ_transfers link energy``  (W·µs = µJ)

where ``run_energy_uj(p)`` is a power model's per-inference energy outside the blocks (the executor's
per-run set-up; 0 without a power model), counted once for each processor that runs blocks. It is the
same for every plan that uses ``p``, so it is not in the planner's per-option energies. When
``include_idle=True``, ``Σ_p idle_power_w(p) · (makespan_us − busy_us(p))`` over every processor of the
profile is added: the idle draw of processors that are held powered while the plan runs. The default is
``include_idle=False`` — the DeepX figures this project reproduces are the energy of the processors doing
the work, and a solver minimising energy should not be rewarded for stretching a plan. (A power model's
``time_us`` coefficient already prices the waiting *inside* a processor's own blocks.) A ``remote``
processor's ``active_power_w`` is what the *local device* spends while the server computes (waiting with
the radio on); its idle power is 0, so the server's own energy is never counted.

A transfer of ``b`` bytes over a link costs ``energy_per_byte_uj · b + power_w · latency_us``; tensors
between two processors without a direct link go through the host (``DeviceProfile.route``).

Powers come from the profile and are labelled there: ``power_source = "modelled"`` or ``"measured"``.

Example
-------
>>> from deepx_opt.cost_models import load_profile
>>> from deepx_opt.cost_models.energy import block_energy_uj, busy_energy_uj
>>> p = load_profile("tegrak1")
>>> busy_energy_uj(p, "gpu", 1000.0) == p.processor("gpu").active_power_w * 1000.0
True
>>> block_energy_uj(p, "gpu", 1000.0) == busy_energy_uj(p, "gpu", 1000.0)   # no power model
True
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

from deepx_opt.errors import CostModelError

__all__ = ["EnergyBreakdown", "busy_energy_uj", "block_energy_uj", "run_energy_uj", "power_model_of",
           "transfer_energy_uj", "plan_energy_uj"]


def busy_energy_uj(profile, processor: str, busy_us: float) -> float:
    """Energy (µJ) a processor spends busy for ``busy_us`` µs at its active power (an upper bound where
    the processor has a power model: use :func:`block_energy_uj` with the block's works)."""
    if busy_us < 0:
        raise CostModelError(f"busy time {busy_us!r} µs on {processor!r} is negative")
    return profile.processor(processor).active_power_w * float(busy_us)


_MODELS: dict[int, tuple[Any, Any]] = {}


def power_model_of(profile, processor: str):
    """The :class:`~deepx_opt.cost_models.power.PowerModel` of a processor, or None when it has none."""
    from deepx_opt.cost_models.power import PowerModel

    d = profile.processor(processor).power_model
    if d is None:
        return None
    hit = _MODELS.get(id(d))
    if hit is not None and hit[0] is d:
        return hit[1]
    m = PowerModel.from_dict(d)
    if len(_MODELS) > 256:
        _MODELS.clear()
    _MODELS[id(d)] = (d, m)
    return m


def block_energy_uj(profile, processor: str, latency_us: float, works: Sequence[Any] | None = None, *,
                    ops: Sequence[Any] | None = None, shapes: Mapping[str, Any] | None = None,
                    context_bytes: float | None = None, fused_relu: bool = True) -> float:
    """Energy (µJ) of one block of (predicted) latency ``latency_us`` µs on ``processor``.

    With a power model on the processor, its prediction from the block's works: give ``works``
    (:func:`~deepx_opt.cost_models.latency.block_works`), or ``ops`` with ``shapes`` (and ``context_bytes``)
    as for :func:`~deepx_opt.cost_models.latency.predict_block_us`. Without one, ``active_power_w ×
    latency_us`` (works are not needed).

    Raises
    ------
    CostModelError
        for a negative latency, or a processor with a power model and neither works nor ops + shapes.

    Example
    -------
    >>> from deepx_opt.cost_models import load_profile
    >>> p = load_profile("snapdragon800")
    >>> block_energy_uj(p, "dsp", 100.0) == p.processor("dsp").active_power_w * 100.0
    True
    """
    if not latency_us >= 0:
        raise CostModelError(f"block latency {latency_us!r} µs on {processor!r}; expected a number >= 0")
    model = power_model_of(profile, processor)
    if model is None:
        return profile.processor(processor).active_power_w * float(latency_us)
    if works is None:
        if ops is None or shapes is None:
            raise CostModelError(
                f"processor {processor!r} of profile {profile.name!r} has a power model ({model.family}: "
                f"{', '.join(model.features)}): its block energy needs the block's works, or ops and shapes")
        from deepx_opt.cost_models.latency import block_works

        works = block_works(ops, shapes, fused_relu=fused_relu, context_bytes=float(context_bytes or 0.0))
    return model.predict_block_uj(works, float(latency_us))


def run_energy_uj(profile, processor: str) -> float:
    """Energy (µJ) per inference that a processor's power model puts outside its blocks (0 without one)."""
    model = power_model_of(profile, processor)
    return 0.0 if model is None else model.run_energy_uj


def transfer_energy_uj(profile, src: str, dst: str, nbytes: float) -> float:
    """Energy (µJ) of moving ``nbytes`` from ``src`` to ``dst`` (0 when they are the same processor)."""
    if nbytes < 0:
        raise CostModelError(f"transfer of {nbytes!r} bytes from {src!r} to {dst!r} is negative")
    return profile.transfer_energy_uj(src, dst, nbytes)


@dataclass
class EnergyBreakdown:
    """Energy of a plan, split by where it goes (all µJ). ``source`` says whether powers were measured."""

    busy_uj: dict[str, float] = field(default_factory=dict)
    idle_uj: dict[str, float] = field(default_factory=dict)
    transfer_uj: float = 0.0
    source: str = "modelled"
    run_uj: dict[str, float] = field(default_factory=dict)

    @property
    def total_uj(self) -> float:
        return float(sum(self.busy_uj.values()) + sum(self.idle_uj.values()) + sum(self.run_uj.values())
                     + self.transfer_uj)


def plan_energy_uj(profile, busy_us: Mapping[str, float] | None = None,
                   transfers: Iterable[tuple[str, str, float]] = (), *, makespan_us: float | None = None,
                   include_idle: bool = False,
                   blocks: Iterable[tuple[str, float, Sequence[Any]]] | None = None) -> EnergyBreakdown:
    """Energy of a schedule given what each processor ran and the tensors moved between processors.

    Parameters
    ----------
    busy_us : mapping processor → µs, optional
        Total busy time of each processor (default: summed from ``blocks``). Priced at the active power;
        a processor with a power model needs ``blocks`` instead.
    transfers : iterable of (src, dst, bytes)
        Every tensor moved between processors.
    makespan_us : float, optional
        End-to-end time; required with ``include_idle``.
    include_idle : bool
        Add each processor's idle power over the part of the makespan it is not busy (see module docstring).
    blocks : iterable of (processor, latency_us, works), optional
        Every block of the schedule: priced by :func:`block_energy_uj` (the planner's per-option energy),
        plus each used processor's :func:`run_energy_uj` once (``.run_uj``).

    Returns
    -------
    EnergyBreakdown
        ``.total_uj`` is the total; ``.source`` is ``"measured"`` only if every busy processor's power was.

    Raises
    ------
    CostModelError
        a processor with a power model given by busy time only; ``include_idle`` without ``makespan_us``;
        a processor busy longer than the makespan.
    """
    out = EnergyBreakdown()
    sources = set()
    if blocks is not None:
        blocks = list(blocks)
        summed: dict[str, float] = {}
        for p, t, ws in blocks:
            out.busy_uj[p] = out.busy_uj.get(p, 0.0) + block_energy_uj(profile, p, float(t), list(ws))
            summed[p] = summed.get(p, 0.0) + float(t)
            sources.add(profile.processor(p).power_source)
        for p in summed:
            r = run_energy_uj(profile, p)
            if r:
                out.run_uj[p] = r
        if busy_us is None:
            busy_us = summed
        else:
            extra = sorted(set(busy_us) - set(summed))
            if extra:
                raise CostModelError(f"processors {extra} have busy time but no blocks; give each processor's "
                                     "work either as blocks or as busy time")
    else:
        if busy_us is None:
            raise CostModelError("plan_energy_uj needs busy_us or blocks")
        for p, t in busy_us.items():
            if power_model_of(profile, p) is not None and t > 0:
                raise CostModelError(
                    f"processor {p!r} of profile {profile.name!r} has a power model: its energy depends on the "
                    f"work, not on busy time alone; pass blocks=[(processor, latency_us, works), ...]")
            out.busy_uj[p] = busy_energy_uj(profile, p, t)
            sources.add(profile.processor(p).power_source)
    out.transfer_uj = float(sum(transfer_energy_uj(profile, s, d, b) for s, d, b in transfers))
    if include_idle:
        if makespan_us is None:
            raise CostModelError("include_idle=True needs makespan_us")
        for proc in profile.processors:
            free = float(makespan_us) - float(busy_us.get(proc.name, 0.0))
            if free < -1e-6 * max(1.0, float(makespan_us)):
                raise CostModelError(
                    f"processor {proc.name!r} is busy {busy_us.get(proc.name)} µs, longer than the makespan "
                    f"{makespan_us} µs")
            out.idle_uj[proc.name] = proc.idle_power_w * max(free, 0.0)
    out.source = "measured" if sources == {"measured"} else "modelled"
    return out
