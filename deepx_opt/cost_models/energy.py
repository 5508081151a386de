"""Energy models: processor busy time × power, plus link transfers.

The device's energy for running work is

``energy_uj = Σ_p active_power_w(p) · busy_us(p)  +  Σ_transfers link energy``  (W·µs = µJ)

and, when ``include_idle=True``, also ``Σ_p idle_power_w(p) · (makespan_us − busy_us(p))`` over every
processor of the profile: the idle draw of processors that are held powered while the plan runs. The default
is ``include_idle=False`` — the DeepX figures this project reproduces are the energy of the processors doing
the work, and a solver minimising energy should not be rewarded for stretching a plan. A ``remote``
processor's ``active_power_w`` is what the *local device* spends while the server computes (waiting with
the radio on); its idle power is 0, so the server's own energy is never counted.

A transfer of ``b`` bytes over a link costs ``energy_per_byte_uj · b + power_w · latency_us``; tensors
between two processors without a direct link go through the host (``DeviceProfile.route``).

Powers come from the profile and are labelled there: ``power_source = "modelled"`` (datasheets, or fitted to
published figures) or ``"measured"`` (a GPU's active power fitted from NVML energy during calibration).

Example
-------
>>> from deepx_opt.cost_models import load_profile
>>> from deepx_opt.cost_models.energy import busy_energy_uj
>>> p = load_profile("tegrak1")
>>> busy_energy_uj(p, "gpu", 1000.0) == p.processor("gpu").active_power_w * 1000.0
True
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Mapping

from deepx_opt.errors import CostModelError

__all__ = ["EnergyBreakdown", "busy_energy_uj", "transfer_energy_uj", "plan_energy_uj"]


def busy_energy_uj(profile, processor: str, busy_us: float) -> float:
    """Energy (µJ) a processor spends busy for ``busy_us`` µs at its active power."""
    if busy_us < 0:
        raise CostModelError(f"busy time {busy_us!r} µs on {processor!r} is negative")
    return profile.processor(processor).active_power_w * float(busy_us)


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

    @property
    def total_uj(self) -> float:
        return float(sum(self.busy_uj.values()) + sum(self.idle_uj.values()) + self.transfer_uj)


def plan_energy_uj(profile, busy_us: Mapping[str, float], transfers: Iterable[tuple[str, str, float]] = (), *,
                   makespan_us: float | None = None, include_idle: bool = False) -> EnergyBreakdown:
    """Energy of a schedule given each processor's busy time and the tensors moved between processors.

    Parameters
    ----------
    busy_us : mapping processor → µs
        Total busy time of each processor.
    transfers : iterable of (src, dst, bytes)
        Every tensor moved between processors.
    makespan_us : float, optional
        End-to-end time; required with ``include_idle``.
    include_idle : bool
        Add each processor's idle power over the part of the makespan it is not busy (see module docstring).

    Returns
    -------
    EnergyBreakdown
        ``.total_uj`` is the total; ``.source`` is ``"measured"`` only if every busy processor's power was.
    """
    out = EnergyBreakdown()
    sources = set()
    for p, t in busy_us.items():
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
