"""Memory model: weights resident per processor plus the peak of live activations.

For a ModelGraph and a placement (layer → processor), processor ``p`` holds

* the weights of every layer placed on it (``weight_bytes``, or an override per layer for a low-rank
  choice), resident for the whole run, and
* the activation tensors live on it: a tensor is live on its producer's processor from the producing layer
  until its last reader there (graph outputs until the end), and on every other processor that reads it
  from the producing layer (the copy arrives then) until its last reader there. Graph inputs are live on
  each processor that reads them from the start.

Layers run in the model's topological order (``model.layers()``); the activation peak is the largest sum of
live tensors at any step. Temporaries inside one op (an im2col buffer, say) are not counted — they are the
backend's, and reused.

Example
-------
>>> from deepx_opt.cost_models.memory import memory_by_processor          # doctest: +SKIP
>>> memory_by_processor(model, {v: "cpu" for v in model.layers()})["cpu"].total_bytes   # doctest: +SKIP
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Mapping

from deepx_opt.errors import CostModelError

__all__ = ["MemoryUse", "memory_by_processor", "activation_peak_bytes"]


@dataclass(frozen=True)
class MemoryUse:
    """Memory of one processor under a placement (bytes)."""

    weight_bytes: int
    peak_activation_bytes: int

    @property
    def total_bytes(self) -> int:
        return int(self.weight_bytes + self.peak_activation_bytes)


def _tensor_bytes(model: Any, name: str) -> int:
    t = model.tensors.get(name)
    if t is None:
        raise CostModelError(f"model {model.name!r} has no tensor {name!r}")
    return int(t.nbytes)


def activation_peak_bytes(model: Any, placement: Mapping[str, str]) -> dict[str, int]:
    """Peak bytes of live activation tensors per processor (see module docstring)."""
    order = model.layers()
    missing = [v for v in order if v not in placement]
    if missing:
        raise CostModelError(f"placement lacks layers {missing[:5]}{' ...' if len(missing) > 5 else ''}")
    step = {v: i for i, v in enumerate(order)}
    end = len(order)
    producer: dict[str, str] = {}
    readers: dict[str, list[str]] = defaultdict(list)
    for v in order:
        d = model.dag.nodes[v]
        for t in d.get("outputs", []):
            producer[t] = v
        for t in d.get("inputs", []):
            readers[t].append(v)
    graph_outputs = set(model.outputs)
    # (processor) -> list of (start, stop, bytes); a tensor occupies steps start..stop inclusive
    intervals: dict[str, list[tuple[int, int, int]]] = defaultdict(list)
    for t in set(producer) | set(readers):
        nb = _tensor_bytes(model, t)
        prod = producer.get(t)
        start = step[prod] if prod is not None else 0
        last_on: dict[str, int] = {}
        for r in readers.get(t, []):
            p = placement[r]
            last_on[p] = max(last_on.get(p, -1), step[r])
        if prod is not None:
            pp = placement[prod]
            stop = end if t in graph_outputs else last_on.get(pp, step[prod])
            last_on[pp] = max(last_on.get(pp, -1), stop)
        for p, stop in last_on.items():
            intervals[p].append((start, stop, nb))
    peaks: dict[str, int] = {p: 0 for p in set(placement.values())}
    for p, ivs in intervals.items():
        delta = defaultdict(int)
        for a, b, nb in ivs:
            delta[a] += nb
            delta[b + 1] -= nb
        cur = best = 0
        for s in sorted(delta):
            cur += delta[s]
            best = max(best, cur)
        peaks[p] = int(best)
    return peaks


def memory_by_processor(model: Any, placement: Mapping[str, str], *,
                        weight_bytes: Mapping[str, int] | None = None) -> dict[str, MemoryUse]:
    """Weights resident and activation peak per processor for a placement.

    Parameters
    ----------
    model : ModelGraph
    placement : mapping layer → processor name
    weight_bytes : mapping layer → bytes, optional
        Overrides a layer's ``weight_bytes`` (e.g. the bytes of its low-rank factors at the chosen rank).
    """
    wb: dict[str, int] = defaultdict(int)
    for v in model.layers():
        if v not in placement:
            raise CostModelError(f"placement has no processor for layer {v!r}")
        b = (weight_bytes or {}).get(v, model.dag.nodes[v].get("weight_bytes", 0))
        wb[placement[v]] += int(b)
    peaks = activation_peak_bytes(model, placement)
    procs = set(wb) | set(peaks)
    return {p: MemoryUse(weight_bytes=int(wb.get(p, 0)), peak_activation_bytes=int(peaks.get(p, 0))) for p in procs}
