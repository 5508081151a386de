"""Whole-model costs on one processor: the single-processor, full-rank plans of the DeepX tables.

:func:`summarize_model` reduces a ModelGraph to what those costs need (every op's work, weight bytes, the
activation peak, input/output bytes); :func:`check_single_processor` refuses a processor that cannot hold or
cannot run the model, saying why; :func:`single_processor_cost` predicts latency and energy.

A processor other than the profile's host receives the model input from the host and returns the output to
it over the profile's links; for a ``remote`` processor (Cloud only) the energy is what the device spends
sending the input, waiting (the remote processor's ``active_power_w`` × its compute time, plus the links'
``power_w`` × their latency: the round trip) and receiving the result.

Example
-------
>>> from deepx_opt.cost_models import load_profile                       # doctest: +SKIP
>>> from deepx_opt.cost_models.single import summarize_model, single_processor_cost   # doctest: +SKIP
>>> single_processor_cost(load_profile("tegrak1"), "gpu", summarize_model(model)).energy_uj  # doctest: +SKIP
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from deepx_opt.cost_models.latency import OpWork, layer_works, predict_work_us
from deepx_opt.cost_models.memory import activation_peak_bytes
from deepx_opt.errors import InfeasiblePlanError

__all__ = ["ModelSummary", "SingleProcessorCost", "summarize_model", "check_single_processor",
           "single_processor_cost"]


@dataclass
class ModelSummary:
    """What whole-model single-processor costs need, computed once per model.

    Attributes
    ----------
    works : list[OpWork]
        Every op of every layer, in order (Relus fused into their main op are left out).
    layer_of : list[str]
        The layer each work belongs to (aligned with ``works``).
    weight_bytes, peak_activation_bytes, input_bytes, output_bytes : int
    op_types : list[str]
        Distinct canonical op types the model uses.
    """

    name: str
    works: list[OpWork]
    layer_of: list[str]
    weight_bytes: int
    peak_activation_bytes: int
    input_bytes: int
    output_bytes: int
    op_types: list[str] = field(default_factory=list)

    @property
    def memory_bytes(self) -> int:
        return int(self.weight_bytes + self.peak_activation_bytes)

    def kinds(self) -> Counter:
        return Counter(w.kind for w in self.works)

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "works": [[w.kind, w.flops, w.bytes, w.op_type, w.name, w.im2col_bytes] for w in self.works],
            "layer_of": list(self.layer_of),
            "weight_bytes": self.weight_bytes,
            "peak_activation_bytes": self.peak_activation_bytes,
            "input_bytes": self.input_bytes,
            "output_bytes": self.output_bytes,
            "op_types": list(self.op_types),
        }

    @classmethod
    def from_dict(cls, d: dict) -> "ModelSummary":
        return cls(
            name=d["name"],
            works=[OpWork(kind=w[0], flops=float(w[1]), bytes=float(w[2]), op_type=w[3], name=w[4],
                          im2col_bytes=float(w[5]) if len(w) > 5 else 0.0) for w in d["works"]],
            layer_of=list(d["layer_of"]),
            weight_bytes=int(d["weight_bytes"]),
            peak_activation_bytes=int(d["peak_activation_bytes"]),
            input_bytes=int(d["input_bytes"]),
            output_bytes=int(d["output_bytes"]),
            op_types=list(d.get("op_types", [])),
        )


@dataclass(frozen=True)
class SingleProcessorCost:
    """Predicted cost of running a whole model on one processor (µs, µJ, bytes)."""

    processor: str
    compute_us: float
    transfer_us: float
    compute_energy_uj: float
    transfer_energy_uj: float
    memory_bytes: int

    @property
    def latency_us(self) -> float:
        return self.compute_us + self.transfer_us

    @property
    def energy_uj(self) -> float:
        return self.compute_energy_uj + self.transfer_energy_uj


def summarize_model(model: Any) -> ModelSummary:
    """Summarise a ModelGraph (dense or with low-rank layers) for whole-model costing."""
    from deepx_opt.cost_models.latency import context_bytes_of, model_shapes

    works: list[OpWork] = []
    layer_of: list[str] = []
    op_types: list[str] = []
    ctx = context_bytes_of(model_shapes(model))  # the model's working set (calibrated `cold` features)
    for v in model.layers():
        ws = layer_works(model, v, context_bytes=ctx)
        works += ws
        layer_of += [v] * len(ws)
        for op in model.dag.nodes[v]["ops"]:
            if op.op_type not in op_types:
                op_types.append(op.op_type)
    peak = activation_peak_bytes(model, {v: "p" for v in model.layers()}).get("p", 0)
    return ModelSummary(
        name=model.name,
        works=works,
        layer_of=layer_of,
        weight_bytes=int(model.total("weight_bytes")),
        peak_activation_bytes=int(peak),
        input_bytes=int(sum(t.nbytes for t in model.inputs.values())),
        output_bytes=int(sum(model.tensors[t].nbytes for t in model.outputs)),
        op_types=op_types,
    )


def check_single_processor(profile: Any, processor: str, summary: ModelSummary) -> None:
    """Raise :class:`~deepx_opt.errors.InfeasiblePlanError` if ``processor`` cannot run the whole model.

    Two reasons, checked in this order: work kinds (or op types) the processor does not support, and a
    memory need (weights + activation peak) above its capacity. The message names the processor, the reason
    and the numbers.
    """
    proc = profile.processor(processor)
    bad = sorted({w.kind for w in summary.works if not proc.supports_kind(w.kind)})
    if bad:
        layers = sorted({lay for w, lay in zip(summary.works, summary.layer_of) if w.kind in bad})
        raise InfeasiblePlanError(
            f"{summary.name} cannot run on {processor!r} ({profile.name}) alone: it does not support "
            f"{', '.join(bad)} work, which {len(layers)} layer(s) need ({', '.join(layers[:6])}"
            f"{', ...' if len(layers) > 6 else ''})"
        )
    bad_ops = [t for t in summary.op_types if not proc.supports_op(t)]
    if bad_ops:
        raise InfeasiblePlanError(
            f"{summary.name} cannot run on {processor!r} ({profile.name}) alone: it does not support ops "
            f"{', '.join(bad_ops)}; supported: {', '.join(proc.supported_ops or [])}"
        )
    if summary.memory_bytes > proc.memory_bytes:
        raise InfeasiblePlanError(
            f"{summary.name} cannot run on {processor!r} ({profile.name}) alone: it needs "
            f"{summary.memory_bytes / 2**20:.1f} MiB (weights {summary.weight_bytes / 2**20:.1f} MiB + activation "
            f"peak {summary.peak_activation_bytes / 2**20:.1f} MiB) but the processor has "
            f"{proc.memory_bytes / 2**20:.1f} MiB"
        )


def single_processor_cost(profile: Any, processor: str, summary: ModelSummary, *, check: bool = True) -> SingleProcessorCost:
    """Predicted latency and energy of the whole model on one processor (full plan, no overlap).

    Raises
    ------
    InfeasiblePlanError
        (with ``check``) when the processor cannot hold or run the model.
    CostModelError
        when the profile lacks a latency model for some of the model's work.
    """
    if check:
        check_single_processor(profile, processor, summary)
    proc = profile.processor(processor)
    compute_us = float(sum(predict_work_us(profile, processor, w) for w in summary.works)) \
        + proc.block_overhead_us * len(set(summary.layer_of))
    host = profile.host
    t_us = profile.transfer_time_us(host, processor, summary.input_bytes) + \
        profile.transfer_time_us(processor, host, summary.output_bytes)
    t_uj = profile.transfer_energy_uj(host, processor, summary.input_bytes) + \
        profile.transfer_energy_uj(processor, host, summary.output_bytes)
    return SingleProcessorCost(
        processor=processor,
        compute_us=compute_us,
        transfer_us=float(t_us),
        compute_energy_uj=proc.active_power_w * compute_us,
        transfer_energy_uj=float(t_uj),
        memory_bytes=summary.memory_bytes,
    )
