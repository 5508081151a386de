"""A processor's fitted power model prices blocks the same way in the planner and in plan_energy_uj."""

from __future__ import annotations

import copy

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from deepx_opt.cost_models import load_profile
from deepx_opt.cost_models.energy import block_energy_uj, plan_energy_uj, power_model_of, run_energy_uj
from deepx_opt.cost_models.latency import block_works, context_bytes_of, model_shapes, predict_block_us
from deepx_opt.cost_models.power import PowerModel
from deepx_opt.cost_models.profile import profile_from_dict
from deepx_opt.errors import CostModelError
from deepx_opt.graphs import load_onnx
from deepx_opt.planner import build_problem

# waiting power 120 W, 20 pJ/FLOP, 180 pJ/byte, 30 mJ per inference (the form fitted on an H200)
MODEL = PowerModel(["time_us", "flops", "bytes", "runs"], coef_=[120.0, 2e-5, 1.8e-4, 30_000.0])


def _gpu_profile(model: PowerModel | None = MODEL):
    d = load_profile("tegrak1").to_dict()
    gpu = next(p for p in d["processors"] if p["name"] == "gpu")
    gpu["power_model"] = None if model is None else model.to_dict()
    gpu["power_source"] = "measured"
    return profile_from_dict(copy.deepcopy(d))


def _mlp():
    """x(1×256) → Gemm 256→512 + Relu → Gemm 512→10 → Softmax: a real ONNX model, built in memory."""
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.standard_normal(s).astype(np.float32), n)
             for n, s in (("w1", (256, 512)), ("b1", (512,)), ("w2", (512, 10)), ("b2", (10,)))]
    nodes = [helper.make_node("Gemm", ["x", "w1", "b1"], ["h"], name="fc1"),
             helper.make_node("Relu", ["h"], ["hr"], name="relu1"),
             helper.make_node("Gemm", ["hr", "w2", "b2"], ["z"], name="fc2"),
             helper.make_node("Softmax", ["z"], ["y"], name="prob", axis=1)]
    g = helper.make_graph(nodes, "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 256])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 10])], inits)
    return load_onnx(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]))


def test_block_energy_uses_the_power_model_or_active_power():
    prof = _gpu_profile()
    m = _mlp()
    shapes = model_shapes(m)
    ops = m.dag.nodes["fc1"]["ops"]
    works = block_works(ops, shapes)
    fl, by = sum(w.flops for w in works), sum(w.bytes for w in works)
    e = block_energy_uj(prof, "gpu", 100.0, works)
    assert e == pytest.approx(120.0 * 100.0 + 2e-5 * fl + 1.8e-4 * by)
    assert block_energy_uj(prof, "gpu", 100.0, ops=ops, shapes=shapes) == pytest.approx(e)
    # the per-inference energy is not a block's
    assert run_energy_uj(prof, "gpu") == 30_000.0 and run_energy_uj(prof, "cpu") == 0.0
    # a processor without a power model: active power × latency, no works needed
    assert block_energy_uj(prof, "cpu", 100.0) == prof.processor("cpu").active_power_w * 100.0
    with pytest.raises(CostModelError, match="needs the block's works"):
        block_energy_uj(prof, "gpu", 100.0)
    with pytest.raises(CostModelError, match="expected a number >= 0"):
        block_energy_uj(prof, "gpu", -1.0, works)


def test_planner_options_carry_the_power_model_energy():
    m = _mlp()
    prof, plain = _gpu_profile(), _gpu_profile(None)
    prob, prob0 = build_problem(m, prof, latency_budget_ms=100), build_problem(m, plain, latency_budget_ms=100)
    shapes, ctx = model_shapes(m), context_bytes_of(model_shapes(m))
    for layer, layer0 in zip(prob.layers, prob0.layers):
        ops = m.dag.nodes[layer.name]["ops"]
        for o, o0 in zip(layer.options, layer0.options):
            assert o.duration_us == o0.duration_us  # the power model changes energies only
            dur = predict_block_us(prof, o.processor, ops=ops, shapes=shapes, context_bytes=ctx)
            works = block_works(ops, shapes, context_bytes=ctx)
            if o.processor == "gpu":
                assert o.energy_uj == pytest.approx(MODEL.predict_block_uj(works, dur))
                assert o.energy_uj != pytest.approx(o0.energy_uj)
            else:
                assert o.energy_uj == pytest.approx(o0.energy_uj)


def test_plan_energy_from_blocks_adds_the_run_energy_once():
    prof = _gpu_profile()
    m = _mlp()
    shapes = model_shapes(m)
    blocks = [("gpu" if v != "prob" else "cpu", 50.0 + 10 * i, block_works(m.dag.nodes[v]["ops"], shapes))
              for i, v in enumerate(m.layers())]
    e = plan_energy_uj(prof, blocks=blocks, transfers=[("gpu", "cpu", 40)])
    gpu_blocks = sum(block_energy_uj(prof, p, t, w) for p, t, w in blocks if p == "gpu")
    assert e.busy_uj["gpu"] == pytest.approx(gpu_blocks)
    assert e.busy_uj["cpu"] == pytest.approx(prof.processor("cpu").active_power_w * blocks[-1][1])
    assert e.run_uj == {"gpu": 30_000.0}
    assert e.total_uj == pytest.approx(gpu_blocks + e.busy_uj["cpu"] + 30_000.0
                                       + prof.transfer_energy_uj("gpu", "cpu", 40))
    # idle power over the makespan uses the blocks' busy time
    ei = plan_energy_uj(prof, blocks=blocks, makespan_us=1000.0, include_idle=True)
    busy_gpu = sum(t for p, t, _ in blocks if p == "gpu")
    assert ei.idle_uj["gpu"] == pytest.approx(prof.processor("gpu").idle_power_w * (1000.0 - busy_gpu))
    # busy time alone cannot price a processor whose energy depends on the work
    with pytest.raises(CostModelError, match="has a power model"):
        plan_energy_uj(prof, {"gpu": 100.0})
    assert plan_energy_uj(prof, {"cpu": 100.0}).total_uj == pytest.approx(
        prof.processor("cpu").active_power_w * 100.0)
    with pytest.raises(CostModelError, match="busy_us or blocks"):
        plan_energy_uj(prof)


def test_power_model_cache_follows_profile_edits():
    prof = _gpu_profile()
    first = power_model_of(prof, "gpu")
    assert power_model_of(prof, "gpu") is first
    prof.processor("gpu").power_model = PowerModel(["time_us"], coef_=[10.0]).to_dict()
    assert power_model_of(prof, "gpu").waiting_power_w == 10.0
    prof.processor("gpu").power_model = None
    assert power_model_of(prof, "gpu") is None


def test_run_report_modelled_energy_uses_the_power_model_at_measured_block_times():
    """`deepx run`/`deepx demo` without NVML: each measured block priced by the processor's power model from
    the works of the graph that ran (factorised layers included), plus its per-inference energy."""
    from deepx_opt.cli.run_cmd import modelled_energy_uj
    from deepx_opt.graphs.compression import apply_ranks
    from deepx_opt.runtime.executor import execute_graph

    prof = _gpu_profile()
    model = _mlp()
    x = {"x": np.ones((1, 256), np.float32)}
    ranks = {"fc1": 8}
    ran = apply_ranks(model, ranks)
    _, rep = execute_graph(ran, {v: "cpu" for v in ran.layers()}, x, repeat=2)
    mapping = {"gpu": "cpu"}  # the plan's gpu ran on this machine's cpu
    got = modelled_energy_uj(rep, prof, mapping, model, ranks)
    shapes = model_shapes(apply_ranks(model, ranks, shape_only=True))
    ctx = context_bytes_of(shapes)
    want = MODEL.run_energy_uj + sum(
        block_energy_uj(prof, "gpu", rec.latency_us,
                        block_works(ran.layer(v)["ops"], shapes, outputs=ran.layer(v)["outputs"], context_bytes=ctx))
        for v, rec in rep.blocks.items())
    assert got == pytest.approx(want, rel=1e-9)
    busy = sum(rec.latency_us for rec in rep.blocks.values())
    assert got > MODEL.coef_[0] * busy  # not active power × busy time: the works and the run energy count
    assert modelled_energy_uj(rep, prof, mapping) is None  # a power model needs the graph's works
    plain = _gpu_profile(None)
    assert modelled_energy_uj(rep, plain, mapping) == pytest.approx(plain.processor("gpu").active_power_w * busy)
