"""Energy (busy × power, idle, links) and memory (weights + live-activation peak) on real imported models."""

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from deepx_opt.cost_models import load_profile, memory_by_processor, plan_energy_uj
from deepx_opt.cost_models.energy import busy_energy_uj, transfer_energy_uj
from deepx_opt.cost_models.memory import activation_peak_bytes
from deepx_opt.errors import CostModelError
from deepx_opt.graphs import load_onnx


def test_busy_and_transfer_energy():
    p = load_profile("tegrak1")
    assert busy_energy_uj(p, "gpu", 2000.0) == pytest.approx(p.processor("gpu").active_power_w * 2000.0)
    lk = p.link("cpu", "cloud")
    assert transfer_energy_uj(p, "cpu", "cloud", 10_000) == pytest.approx(
        lk.energy_per_byte_uj * 10_000 + lk.power_w * lk.latency_us)
    assert transfer_energy_uj(p, "gpu", "gpu", 10_000) == 0.0
    with pytest.raises(CostModelError, match="negative"):
        busy_energy_uj(p, "cpu", -1.0)


def test_plan_energy_with_and_without_idle():
    p = load_profile("tegrak1")
    busy = {"cpu": 1000.0, "gpu": 3000.0}
    tr = [("cpu", "gpu", 4000), ("gpu", "cpu", 400)]
    e = plan_energy_uj(p, busy, tr)
    expect = 4.0 * 1000 + p.processor("gpu").active_power_w * 3000 + sum(
        p.transfer_energy_uj(s, d, b) for s, d, b in tr)
    assert e.total_uj == pytest.approx(expect)
    assert e.idle_uj == {} and e.source == "modelled"
    ei = plan_energy_uj(p, busy, tr, makespan_us=5000.0, include_idle=True)
    idle = sum(q.idle_power_w * (5000.0 - busy.get(q.name, 0.0)) for q in p.processors)
    assert ei.total_uj == pytest.approx(expect + idle)
    with pytest.raises(CostModelError, match="makespan"):
        plan_energy_uj(p, busy, include_idle=True)
    with pytest.raises(CostModelError, match="longer than the makespan"):
        plan_energy_uj(p, busy, makespan_us=2000.0, include_idle=True)


def _branchy_model():
    """x → a (Gemm 16→32) → {b (Relu-free Gemm 32→8), c (Gemm 32→8)} → Add → out."""
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.standard_normal(s).astype(np.float32), n)
             for n, s in (("wa", (16, 32)), ("wb", (32, 8)), ("wc", (32, 8)))]
    nodes = [helper.make_node("MatMul", ["x", "wa"], ["a"], name="a"),
             helper.make_node("MatMul", ["a", "wb"], ["b"], name="b"),
             helper.make_node("MatMul", ["a", "wc"], ["c"], name="c"),
             helper.make_node("Add", ["b", "c"], ["y"], name="add")]
    g = helper.make_graph(nodes, "branchy", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 16])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8])], inits)
    return load_onnx(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]))


def test_memory_single_processor_by_hand():
    m = _branchy_model()
    assert m.layers() == ["a", "b", "c", "add"]
    use = memory_by_processor(m, {v: "cpu" for v in m.layers()})["cpu"]
    assert use.weight_bytes == (16 * 32 + 32 * 8 + 32 * 8) * 4
    # step a: x(64) + a(128); step b: a + b(32); step c: a + b + c(32) = 192; add: b + c + y(32) = 96
    assert use.peak_activation_bytes == 192
    assert use.total_bytes == use.weight_bytes + 192


def test_memory_split_placement():
    m = _branchy_model()
    place = {"a": "cpu", "b": "cpu", "c": "gpu", "add": "cpu"}
    use = memory_by_processor(m, place, weight_bytes={"c": 100})
    assert use["gpu"].weight_bytes == 100
    assert use["cpu"].weight_bytes == (16 * 32 + 32 * 8) * 4
    peaks = activation_peak_bytes(m, place)
    # gpu holds a copy of a (128) and produces c (32) → 160; cpu: a is live until c, on the gpu... on the cpu
    # until b (its last cpu reader): x+a at step a = 192; at step c: b and c's arrival = 64; add: b, c, y = 96
    assert peaks["gpu"] == 160
    assert peaks["cpu"] == 192
    with pytest.raises(CostModelError, match="placement"):
        memory_by_processor(m, {"a": "cpu"})
