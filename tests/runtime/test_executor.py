"""The executor: dense and split placements against onnxruntime, transfers, reports, validation, plans."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest

from deepx_opt import zoo
from deepx_opt.errors import BackendUnavailableError, InputError, PlanError
from deepx_opt.graphs import load_onnx
from deepx_opt.runtime.executor import RunReport, execute, execute_graph

from .conftest import REQUIRE_OPENCL
from .models import branchy_cnn, mlp


def _opencl_name() -> str:
    from deepx_opt.runtime.opencl_probe import working_devices

    if not working_devices():
        if REQUIRE_OPENCL:
            pytest.fail("DEEPX_REQUIRE_OPENCL=1 but no working OpenCL device was found")
        pytest.skip("no working OpenCL device")
    return "opencl:0"


def _inputs(model, seed=0):
    rng = np.random.default_rng(seed)
    return {n: rng.standard_normal(t.shape).astype(t.dtype) for n, t in model.inputs.items()}


def _ort(proto, feeds):
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    sess = ort.InferenceSession(proto.SerializeToString(), so, providers=["CPUExecutionProvider"])
    return dict(zip([o.name for o in sess.get_outputs()], sess.run(None, feeds)))


MODELS = {
    "branchy": branchy_cnn,
    "mlp": mlp,
    "digits_cnn": lambda: zoo.build("digits_cnn"),
    "svhn": lambda: zoo.build("svhn"),
}


def _placement(model, how: str, cl: str | None):
    layers = model.layers()
    if how == "cpu":
        return {v: "cpu" for v in layers}
    if how == "opencl":
        return {v: cl for v in layers}
    return {v: ("cpu" if i % 2 == 0 else cl) for i, v in enumerate(layers)}


@pytest.mark.parametrize("how", ["cpu", "opencl", "alternating"])
@pytest.mark.parametrize("name", sorted(MODELS))
def test_execute_matches_onnxruntime(name, how):
    cl = None if how == "cpu" else _opencl_name()
    proto = MODELS[name]()
    model = load_onnx(proto)
    feeds = _inputs(model)
    outs, report = execute_graph(model, _placement(model, how, cl), feeds, repeat=2, warmup=1)
    ref = _ort(proto, feeds)
    assert set(outs) == set(model.outputs)
    for o in model.outputs:
        np.testing.assert_allclose(outs[o], ref[o], rtol=1e-4, atol=1e-5, err_msg=f"{name}/{how}: {o}")
    assert report.repeat == 2 and len(report.latencies_us) == 2
    assert report.latency_us_min <= report.latency_us <= report.latency_us_max
    assert set(report.blocks) == set(model.layers())
    for v, b in report.blocks.items():
        assert b.processor == _placement(model, how, cl)[v]
        assert 0 <= b.start_us <= b.finish_us <= report.latencies_us[-1] + 1.0
    assert report.output_bytes == sum(outs[o].nbytes for o in model.outputs)
    assert report.input_bytes == sum(a.nbytes for a in feeds.values())


def _expected_crossing_bytes(model, placement):
    """One copy per (tensor, destination processor) whose producer runs elsewhere."""
    copies = set()
    for u, v, d in model.dag.edges(data=True):
        if placement[u] != placement[v]:
            for t in d["tensors"]:
                copies.add((t, placement[v]))
    return sum(model.tensors[t].nbytes for t, _ in copies), len(copies)


def test_transfers_counted_on_cross_processor_edges():
    cl = _opencl_name()
    model = load_onnx(branchy_cnn())
    placement = _placement(model, "alternating", cl)
    _, report = execute_graph(model, placement, _inputs(model), repeat=1, warmup=0)
    exp_bytes, exp_n = _expected_crossing_bytes(model, placement)
    assert exp_n > 0
    assert report.transfer_bytes == exp_bytes
    assert len(report.transfers) == exp_n
    for tr in report.transfers:
        assert tr.src_processor != tr.dst_processor and tr.latency_us >= 0
        assert placement[tr.src_layer] == tr.src_processor and placement[tr.dst_layer] == tr.dst_processor
    _, dense = execute_graph(model, {v: "cpu" for v in model.layers()}, _inputs(model), repeat=1, warmup=0)
    assert dense.transfer_bytes == 0 and dense.transfers == []


def test_report_fields_and_json_roundtrip(tmp_path):
    model = load_onnx(branchy_cnn())
    _, report = execute_graph(model, {v: "cpu" for v in model.layers()}, _inputs(model), repeat=3, warmup=0)
    back = RunReport.from_json(report.to_json())
    assert back == report
    assert report.mem_source in ("rss-hwm", "rss-sampled") and report.peak_rss_bytes > 0
    assert report.energy_source == "none" and report.energy_uj is None
    # Conv+BN blocks upload folded weights instead of the BN parameters
    all_weights = sum(model.weights[w].nbytes for v in model.layers() for w in set(model.layer(v)["weight_names"]))
    bn_params = sum(model.weights[t].nbytes for v in model.layers() for op in model.layer(v)["ops"]
                    if op.op_type == "BatchNormalization" for t in op.inputs[1:5])
    assert report.weight_bytes["cpu"] == all_weights - bn_params
    # every block output is held on the processor at least until its readers ran
    largest = max(model.tensors[t].nbytes for v in model.layers() for t in model.layer(v)["outputs"])
    assert report.peak_live_bytes["cpu"] >= report.weight_bytes["cpu"] + largest
    with pytest.raises(InputError, match="not a deepx_opt run report"):
        RunReport.from_dict({"format": "x"})


def test_peak_live_bytes_tracks_activations():
    model = load_onnx(mlp())
    _, report = execute_graph(model, {v: "cpu" for v in model.layers()}, _inputs(model), repeat=1, warmup=0)
    w = report.weight_bytes["cpu"]
    # x (2x20) and z are uploaded; hr (2x16) is alive while mm and sig run
    assert report.peak_live_bytes["cpu"] >= w + 2 * 16 * 4
    assert report.peak_live_bytes["cpu"] <= w + sum(t.nbytes for t in model.tensors.values())


def test_input_validation_names_the_input():
    model = load_onnx(mlp())
    feeds = _inputs(model)
    place = {v: "cpu" for v in model.layers()}
    with pytest.raises(InputError, match=r"input 'x': expected shape \(2, 20\) dtype float32, got shape \(2, 21\)"):
        execute_graph(model, place, dict(feeds, x=np.zeros((2, 21), np.float32)))
    with pytest.raises(InputError, match=r"input 'z'.*got shape \(2, 8\) dtype float64"):
        execute_graph(model, place, dict(feeds, z=np.zeros((2, 8))))
    with pytest.raises(InputError, match="missing graph input.*'z'"):
        execute_graph(model, place, {"x": feeds["x"]})
    with pytest.raises(InputError, match="unknown input"):
        execute_graph(model, place, dict(feeds, extra=feeds["x"]))


def test_unavailable_processor_lists_existing_ones():
    model = load_onnx(mlp())
    feeds = _inputs(model)
    for bad in ("tpu:0", "opencl:99", "opencl:no-such-device"):
        place = {v: "cpu" for v in model.layers()}
        place[model.layers()[0]] = bad
        with pytest.raises(BackendUnavailableError, match=r"cpu"):
            execute_graph(model, place, feeds)


def test_placement_must_cover_layers():
    model = load_onnx(mlp())
    with pytest.raises(PlanError, match="no processor for layer"):
        execute_graph(model, {model.layers()[0]: "cpu"}, _inputs(model))


def test_fused_relu_and_cpu_threads_option():
    model = load_onnx(zoo.build("digits_mlp"))
    feeds = _inputs(model)
    outs1, _ = execute_graph(model, {v: "cpu" for v in model.layers()}, feeds, backend_options={"cpu": {"threads": 1}})
    outs2, _ = execute_graph(model, {v: "cpu" for v in model.layers()}, feeds)
    for o in model.outputs:
        np.testing.assert_allclose(outs1[o], outs2[o], rtol=1e-6, atol=1e-7)


def test_execute_plan_applies_ranks_and_placement():
    from deepx_opt.graphs.compression import apply_ranks
    from deepx_opt.solvers.plan import Assignment, Plan, Status

    model = load_onnx(zoo.build("speakerid"))
    feeds = _inputs(model)
    layers = model.layers()
    fc = model.weighted_layers()[0]
    assignments = {}
    t = 0.0
    for v in layers:
        assignments[v] = Assignment(layer=v, option_id=f"{v}@x", rank=4 if v == fc else None,
                                    processor="cpu", start_us=t, finish_us=t + 10.0)
        t += 10.0
    plan = Plan(problem_name="p", solver="manual", status=Status.FEASIBLE, goal="min_latency",
                assignments=assignments, makespan_us=t, energy_uj=5.0)
    outs, report = execute(plan, model, feeds, repeat=1, warmup=0)
    ref, _ = execute_graph(apply_ranks(model, {fc: 4}), {v: "cpu" for v in layers}, feeds, repeat=1, warmup=0)
    dense, _ = execute_graph(model, {v: "cpu" for v in layers}, feeds, repeat=1, warmup=0)
    for o in model.outputs:
        np.testing.assert_allclose(outs[o], ref[o], rtol=1e-5, atol=1e-6)
    assert any(not np.allclose(outs[o], dense[o], atol=1e-4) for o in model.outputs)
    assert report.predicted["makespan_us"] == t and report.predicted["ranks"][fc] == 4
    assert report.predicted["block_latency_us"][fc] == 10.0
    with pytest.raises(PlanError, match="status INFEASIBLE|has status"):
        execute(Plan(problem_name="p", solver="s", status=Status.INFEASIBLE, goal="min_latency"), model, feeds)


def test_backend_failure_in_a_worker_is_raised_in_the_caller():
    """An op failing on a worker thread surfaces as the caller's exception; the run does not hang."""
    from deepx_opt.errors import UnsupportedOpError

    model = load_onnx(branchy_cnn()).copy()
    victim = "lrn"
    ops = model.layer(victim)["ops"]
    ops[0] = type(ops[0])("Frobnicate", ops[0].inputs, ops[0].outputs, {}, ops[0].name)
    cl = _opencl_name()
    placement = _placement(model, "alternating", cl)
    with pytest.raises(UnsupportedOpError, match="Frobnicate"):
        execute_graph(model, placement, _inputs(model), repeat=1, warmup=0)


def test_prepare_steps_folds_bn_and_fuses_activations():
    from deepx_opt.graphs import OpSpec
    from deepx_opt.runtime.executor import _prepare_steps

    rng = np.random.default_rng(0)
    w = {"W": rng.standard_normal((4, 2, 3, 3)).astype(np.float32), "B": rng.standard_normal(4).astype(np.float32),
         "s": rng.uniform(0.5, 2, 4).astype(np.float32), "b": rng.standard_normal(4).astype(np.float32),
         "m": rng.standard_normal(4).astype(np.float32), "v": rng.uniform(0.5, 2, 4).astype(np.float32)}
    conv_attrs = dict(kernel_shape=(3, 3), strides=(1, 1), pads=(1, 1, 1, 1), dilations=(1, 1), group=1)
    ops = [OpSpec("Conv", ["x", "W", "B"], ["c"], conv_attrs), OpSpec("BatchNormalization", ["c", "s", "b", "m", "v"], ["n"], {"epsilon": 1e-5}),
           OpSpec("Clip", ["n"], ["y"], {"min": 0.0, "max": 6.0})]
    extra = {}
    steps = _prepare_steps(ops, ["y"], w, extra, "L")
    assert len(steps) == 1
    op_type, ins, outs, attrs = steps[0]
    assert op_type == "Conv" and outs == ["y"] and attrs["fused_activation"] == "Clip"
    assert (attrs["fused_min"], attrs["fused_max"]) == (0.0, 6.0)
    x = rng.standard_normal((1, 2, 5, 5)).astype(np.float32)
    from deepx_opt.runtime.backends import get_backend

    be = get_backend("cpu")
    ref = be.run("Conv", [x, w["W"], w["B"]], conv_attrs)[0]
    ref = be.run("BatchNormalization", [ref, w["s"], w["b"], w["m"], w["v"]], {"epsilon": 1e-5})[0]
    ref = np.clip(ref, 0, 6)
    got = be.run("Conv", [x] + [extra.get(t, w.get(t)) for t in ins[1:]], attrs)[0]
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)
    # an intermediate that is also a block output is neither folded nor fused
    steps = _prepare_steps(ops, ["c", "y"], w, {}, "L")
    assert [st[0] for st in steps] == ["Conv", "BatchNormalization", "Clip"]
    # BN with a non-constant parameter stays
    steps = _prepare_steps(ops, ["y"], {k: v for k, v in w.items() if k != "m"}, {}, "L")
    assert [st[0] for st in steps] == ["Conv", "BatchNormalization", "Clip"]


def test_block_steps_matches_what_execute_runs():
    from deepx_opt.runtime import block_steps, get_backend

    model = load_onnx(branchy_cnn())
    steps, extra = block_steps(model, "stem")
    assert [s[0] for s in steps] == ["Conv"] and steps[0][3]["fused_activation"] == "Relu" and len(extra) == 2
    be = get_backend("cpu")
    feeds = _inputs(model)
    env = dict(feeds)
    for op_type, ins, outs, attrs in steps:
        args = [env.get(t, extra.get(t, model.weights.get(t))) if t else None for t in ins]
        env.update(zip(outs, be.run(op_type, args, attrs)))
    dense = dict(feeds)
    for op in model.layer("stem")["ops"]:
        args = [dense.get(t, model.weights.get(t)) if t else None for t in op.inputs]
        dense.update(zip(op.outputs, be.run(op.op_type, args, op.attrs)))
    out = model.layer("stem")["outputs"][0]
    np.testing.assert_allclose(env[out], dense[out], rtol=1e-5, atol=1e-5)


def _gemm_chain(sizes):
    """A chain of Gemm blocks ``x[1, sizes[0]] → … → [1, sizes[-1]]`` (one block per Gemm)."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(1)
    nodes, inits, prev = [], [], "x"
    for i, (k, n) in enumerate(zip(sizes[:-1], sizes[1:])):
        inits.append(numpy_helper.from_array((rng.standard_normal((k, n)) / np.sqrt(k)).astype(np.float32), f"w{i}"))
        nodes.append(helper.make_node("Gemm", [prev, f"w{i}"], [f"h{i}"], name=f"fc{i}"))
        prev = f"h{i}"
    g = helper.make_graph(nodes, "chain", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, sizes[0]])],
                          [helper.make_tensor_value_info(prev, TensorProto.FLOAT, [1, sizes[-1]])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = min(m.ir_version, 9)
    return m


def _count_synchronize(monkeypatch):
    from deepx_opt.runtime.backends.opencl import OpenCLBackend

    calls = {"n": 0}
    orig = OpenCLBackend.synchronize

    def counting(self):
        calls["n"] += 1
        orig(self)

    monkeypatch.setattr(OpenCLBackend, "synchronize", counting)
    return calls


def test_opencl_blocks_timed_by_queue_markers_without_a_finish_per_block(monkeypatch):
    """On OpenCL the executor waits on the queue a fixed number of times per run, not once per block,
    and the marker-timed block times still tell a heavy block from light ones."""
    cl = _opencl_name()
    # 12 blocks; fc1 is a 1×2048 · 2048×2048 Gemm (4 M MACs, 16 MiB of weight), fc3… are 1×16 · 16×16
    sizes = [16, 2048, 2048, 16] + [16] * 9
    proto = _gemm_chain(sizes)
    model = load_onnx(proto)
    feeds = _inputs(model)
    calls = _count_synchronize(monkeypatch)
    outs, report = execute_graph(model, {v: cl for v in model.layers()}, feeds, repeat=3, warmup=1)
    ref = _ort(proto, feeds)
    for o in model.outputs:
        np.testing.assert_allclose(outs[o], ref[o], rtol=1e-4, atol=1e-4)
    # once for the weight upload, then per run (1 warm-up + 3 timed): the clock pairing, the input upload,
    # the block that makes the graph output, the end of the run — not once per block (12 per run)
    assert calls["n"] <= 1 + 4 * 4, calls["n"]
    blocks = [report.blocks[f"fc{i}"] for i in range(len(sizes) - 1)]
    heavy = blocks[1].latency_us
    light = sorted(b.latency_us for i, b in enumerate(blocks) if i > 2)
    assert heavy > 3 * light[len(light) // 2], (heavy, light)
    # a chain on one in-order queue: blocks follow one another on the timeline, inside the run
    for a, b in zip(blocks, blocks[1:]):
        assert b.start_us >= a.finish_us - 50.0, (a, b)
    assert sum(b.latency_us for b in blocks) <= report.latency_us_max + 100.0
    assert all(b.latency_us >= 0 for b in blocks)


def test_opencl_without_profiling_times_blocks_on_the_host(monkeypatch):
    """A backend whose queue records no timestamps (``profiling=False``) is synchronised after every block."""
    cl = _opencl_name()
    proto = _gemm_chain([16] * 7)
    model = load_onnx(proto)
    feeds = _inputs(model)
    calls = _count_synchronize(monkeypatch)
    outs, report = execute_graph(model, {v: cl for v in model.layers()}, feeds, repeat=1, warmup=0,
                                 backend_options={cl: {"profiling": False}})
    ref = _ort(proto, feeds)
    for o in model.outputs:
        np.testing.assert_allclose(outs[o], ref[o], rtol=1e-4, atol=1e-5)
    assert calls["n"] >= 6  # one per block
    for b in report.blocks.values():
        assert 0 <= b.start_us <= b.finish_us <= report.latency_us + 1.0


def test_sync_block_timing_waits_for_every_block_on_a_marker_backend(monkeypatch):
    """``block_timing="sync"`` on a profiling OpenCL queue: one host wait per block (what calibration and
    validation use: reproducible per-block times), outputs unchanged; an unknown mode is refused."""
    cl = _opencl_name()
    proto = _gemm_chain([16] * 7)
    model = load_onnx(proto)
    feeds = _inputs(model)
    calls = _count_synchronize(monkeypatch)
    outs, report = execute_graph(model, {v: cl for v in model.layers()}, feeds, repeat=2, warmup=0,
                                 block_timing="sync")
    ref = _ort(proto, feeds)
    for o in model.outputs:
        np.testing.assert_allclose(outs[o], ref[o], rtol=1e-4, atol=1e-5)
    assert calls["n"] >= 2 * 6  # one per block and run
    for b in report.blocks.values():
        assert 0 <= b.start_us <= b.finish_us <= report.latency_us_max + 1.0
    with pytest.raises(InputError, match="block_timing 'markers'; accepted"):
        execute_graph(model, {v: cl for v in model.layers()}, feeds, block_timing="markers")


def test_opencl_marker_timing_across_processors_keeps_transfers_apart():
    """Alternating cpu/OpenCL blocks: outputs match, every crossing is a recorded transfer, and each
    OpenCL block's span lies inside the run."""
    cl = _opencl_name()
    proto = _gemm_chain([16, 512, 512, 512, 16])
    model = load_onnx(proto)
    feeds = _inputs(model)
    placement = {v: ("cpu" if i % 2 else cl) for i, v in enumerate(model.layers())}
    outs, report = execute_graph(model, placement, feeds, repeat=2, warmup=1)
    ref = _ort(proto, feeds)
    for o in model.outputs:
        np.testing.assert_allclose(outs[o], ref[o], rtol=1e-4, atol=1e-4)
    assert len(report.transfers) == 3
    for b in report.blocks.values():
        assert -50.0 <= b.start_us <= b.finish_us <= report.latencies_us[-1] + 50.0, b
    order = [report.blocks[f"fc{i}"] for i in range(4)]
    for a, b in zip(order, order[1:]):
        assert b.start_us >= a.finish_us - 50.0


def test_alternating_processors_stay_correct_over_many_runs():
    """Blocks on a marker-timed OpenCL queue are only enqueued when their worker moves on; tensors dropped
    then must outlive the pending kernels (a freed zero-copy buffer once corrupted ~1 run in 2)."""
    cl = _opencl_name()
    proto = branchy_cnn()
    model = load_onnx(proto)
    for seed in range(8):
        feeds = _inputs(model, seed)
        outs, _ = execute_graph(model, _placement(model, "alternating", cl), feeds, repeat=3, warmup=0)
        ref = _ort(proto, feeds)
        for o in model.outputs:
            np.testing.assert_allclose(outs[o], ref[o], rtol=1e-4, atol=1e-5, err_msg=f"seed {seed}: {o}")


def test_latency_only_runs_skip_the_energy_reading():
    """``measure_energy=False``: no NVML reading whatever the placement; the report says why."""
    model = load_onnx(zoo.build("digits_mlp"))
    feeds = _inputs(model)
    _, report = execute_graph(model, {v: "cpu" for v in model.layers()}, feeds, repeat=1, warmup=0,
                              measure_energy=False)
    assert report.energy_uj is None and report.energy_source == "none"
    assert any("not requested" in n for n in report.notes), report.notes


def test_spinning_synchronize_waits_for_the_queue():
    """``sync="spin"`` polls a marker instead of ``clFinish``: the queue is drained when it returns (a
    download of the last output needs no further wait and matches onnxruntime); bad values are refused."""
    from deepx_opt.errors import BackendError
    from deepx_opt.runtime.backends import get_backend

    cl = _opencl_name()
    proto = _gemm_chain([64, 512, 512, 16])
    model = load_onnx(proto)
    feeds = _inputs(model)
    outs, report = execute_graph(model, {v: cl for v in model.layers()}, feeds, repeat=2, warmup=1,
                                 backend_options={cl: {"sync": "spin"}}, block_timing="sync")
    ref = _ort(proto, feeds)
    for o in model.outputs:
        np.testing.assert_allclose(outs[o], ref[o], rtol=1e-4, atol=1e-4)
    assert all(b.latency_us > 0 for b in report.blocks.values())
    be = get_backend(cl, sync="spin")
    x = be.upload(np.ones((256, 256), np.float32))
    y = be.run("MatMul", [x, x], {})[0]
    be.synchronize()
    assert be.download(y)[0, 0] == pytest.approx(256.0)
    with pytest.raises(BackendError, match="sync must be 'spin' or 'finish'"):
        get_backend(cl, sync="sleep")


def test_relayout_weight_moves_only_the_storage():
    from deepx_opt.errors import BackendError
    from deepx_opt.runtime.backends.base import WEIGHT_NK_ATTR, relayout_weight

    w = np.arange(6, dtype=np.float32).reshape(3, 2)  # K=3 inputs, N=2 outputs
    attrs, wt = relayout_weight("Gemm", {"transB": 0, "alpha": 1.0}, w, "nk")
    assert attrs == {"transB": 1, "alpha": 1.0} and wt.flags.c_contiguous
    np.testing.assert_array_equal(wt, w.T)
    assert relayout_weight("Gemm", {"transB": 1}, wt, "nk") is None  # already stored so
    back, w2 = relayout_weight("Gemm", {"transB": 1}, wt, "kn")
    assert back["transB"] == 0 and np.array_equal(w2, w)
    assert relayout_weight("Gemm", {"transA": 1, "transB": 0}, w, "nk") is None  # left alone
    attrs, wt = relayout_weight("MatMul", {}, w, "nk")
    assert attrs == {WEIGHT_NK_ATTR: 1}
    assert relayout_weight("MatMul", {}, w, None) is None
    assert relayout_weight("MatMul", {}, np.ones((2, 3, 4), np.float32), "nk") is None  # not a 2-D weight
    with pytest.raises(BackendError, match="accepted: 'nk', 'kn', None"):
        relayout_weight("Gemm", {}, w, "kn-ish")


def test_cpu_runs_gemm_weights_stored_outputs_by_inputs():
    """numpy's gemm_weight_layout is "nk": a factorised MLP's MatMul/Gemm(transB=0) weights are re-laid out
    once for the cpu (block_steps shows it), and the output still matches onnxruntime."""
    from deepx_opt.graphs import apply_ranks
    from deepx_opt.graphs.rlc_onnx import to_onnx
    from deepx_opt.runtime import block_steps, get_backend
    from deepx_opt.runtime.backends.base import WEIGHT_NK_ATTR

    assert get_backend("cpu").gemm_weight_layout == "nk"
    dense = load_onnx(mlp())
    layers = [v for v in dense.layers() if any(op.op_type in ("Gemm", "MatMul") for op in dense.layer(v)["ops"])]
    model = apply_ranks(dense, {layers[0]: 4})
    steps, extra = block_steps(model, layers[0], "nk")
    gemms = [s for s in steps if s[0] in ("Gemm", "MatMul")]
    assert len(gemms) == 2 and extra
    for op_type, ins, _, attrs in gemms:
        assert ins[1] in extra and ins[1].endswith(".nk")
        assert attrs.get("transB", 0) == 1 if op_type == "Gemm" else attrs[WEIGHT_NK_ATTR] == 1
    plain, _ = block_steps(model, layers[0])
    assert all(ins[1] in model.weights for op, ins, _, _ in plain if op in ("Gemm", "MatMul"))
    feeds = _inputs(model)
    outs, rep = execute_graph(model, {v: "cpu" for v in model.layers()}, feeds)
    ref = _ort(to_onnx(model), feeds)
    for name, val in ref.items():
        np.testing.assert_allclose(outs[name], val, rtol=1e-4, atol=1e-5)
