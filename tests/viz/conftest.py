"""Shared plans for the viz tests: Problems built with the solvers' own classes, solved by real solvers."""

from __future__ import annotations

import io
import os

import numpy as np
import pytest

from deepx_opt.solvers import Edge, Layer, Option, Problem, Processor, get_solver, uniform_links
from deepx_opt.solvers.synthetic import branches_problem, chain_problem

# names a browser, an SVG and DOT must all survive
ODD = 'conv<1> & "x"'


def fork_join_problem(goal: str = "min_latency") -> Problem:
    """stem → (left, right) → join on cpu/gpu, where running both branches in parallel on two
    processors is the fastest plan; one layer has an awkward name."""
    procs = [Processor("cpu", kind="cpu", idle_power_w=0.2), Processor("gpu", kind="gpu", idle_power_w=0.1)]

    def opts(name: str, cpu_us: float, gpu_us: float) -> list[Option]:
        return [
            Option(f"{name}@cpu", "cpu", duration_us=cpu_us, energy_uj=2.0 * cpu_us, weight_bytes=4000),
            Option(f"{name}@cpu:r8", "cpu", duration_us=cpu_us / 2, energy_uj=cpu_us, weight_bytes=1000,
                   accuracy_loss=0.4, rank=8),
            Option(f"{name}@gpu", "gpu", duration_us=gpu_us, energy_uj=3.0 * gpu_us, weight_bytes=4000),
        ]

    layers = [
        Layer("stem", opts("stem", 100, 60), input_bytes=12_288),
        Layer(ODD, opts("left", 400, 150)),
        Layer("right", opts("right", 400, 150)),
        Layer("join", opts("join", 50, 80), output_bytes=40),
    ]
    edges = [Edge("stem", ODD, 64_000), Edge("stem", "right", 64_000), Edge(ODD, "join", 8_000),
             Edge("right", "join", 8_000)]
    return Problem("fork_join", procs, layers, edges,
                   uniform_links(["cpu", "gpu"], latency_us=10, bytes_per_us=2_000, energy_uj_per_byte=0.001),
                   host="cpu", goal=goal, max_accuracy_loss=1.0)


@pytest.fixture(scope="session")
def fork_join():
    prob = fork_join_problem()
    plan = get_solver("cpsat").solve(prob, time_limit_s=20)
    assert plan.status.value == "OPTIMAL"
    return prob, plan


@pytest.fixture(scope="session")
def branches():
    prob = branches_problem(3, n_branches=2, seed=1, goal="min_latency", max_accuracy_loss=5.0)
    plan = get_solver("cpsat").solve(prob, time_limit_s=20)
    assert plan.status.has_plan
    return prob, plan


@pytest.fixture(scope="session")
def chain():
    prob = chain_problem(6, seed=2, goal="min_energy", max_accuracy_loss=3.0)
    plan = get_solver("cpsat").solve(prob, time_limit_s=20)
    assert plan.status.has_plan
    return prob, plan


def png_stats(data: bytes) -> tuple[tuple[int, ...], float]:
    """(shape, pixel standard deviation) of a PNG; a blank image has deviation 0."""
    from matplotlib.image import imread

    img = imread(io.BytesIO(data), format="png")
    return img.shape, float(np.asarray(img[..., :3], dtype=float).std())


def keep_picture(name: str, data: bytes | str) -> None:
    """Copy a picture to $DEEPX_VIZ_OUT (when set) so that a person can look at it."""
    out = os.environ.get("DEEPX_VIZ_OUT")
    if not out:
        return
    os.makedirs(out, exist_ok=True)
    mode = "wb" if isinstance(data, bytes) else "w"
    with open(os.path.join(out, name), mode) as f:
        f.write(data)


# ---------------------------------------------------------------------------------------- a real run
def fork_join_model():
    """A real ONNX model (x → stem → (left, right) → join) imported into a ModelGraph."""
    from onnx import helper

    from deepx_opt.graphs import load_onnx
    from tests.onnx_utils import make_model, rand

    nodes = [
        helper.make_node("Gemm", ["x", "W0", "B0"], ["h"], name="stem"),
        helper.make_node("Relu", ["h"], ["hr"], name="stem_relu"),
        helper.make_node("Gemm", ["hr", "W1", "B1"], ["a"], name="left"),
        helper.make_node("Gemm", ["hr", "W2", "B2"], ["b"], name="right"),
        helper.make_node("Add", ["a", "b"], ["y"], name="join"),
    ]
    inits = {f"W{i}": rand(256, 256, seed=2 * i + 1) for i in range(3)}
    inits.update({f"B{i}": rand(256, seed=2 * i + 2) for i in range(3)})
    return load_onnx(make_model(nodes, {"x": [1, 256]}, {"y": [1, 256]}, inits, name="fork_join_mlp"))


def model_problem(model) -> Problem:
    """A Problem over ``model``'s blocks (names, edges, bytes from the ModelGraph) on cpu + gpu, with
    costs from FLOPs: a stand-in for the planner's build_problem in these tests."""
    procs = [Processor("cpu", kind="cpu"), Processor("gpu", kind="gpu")]
    layers = []
    for v in model.layers():
        d = model.dag.nodes[v]
        f = d["flops"]
        opts = [Option(f"{v}@cpu", "cpu", duration_us=5 + f / 2000, energy_uj=2 * (5 + f / 2000),
                       weight_bytes=d["weight_bytes"]),
                Option(f"{v}@gpu", "gpu", duration_us=20 + f / 20000, energy_uj=3 * (20 + f / 20000),
                       weight_bytes=d["weight_bytes"])]
        if d["weighted"]:
            opts.append(Option(f"{v}@cpu:r8", "cpu", duration_us=5 + f / 16000, energy_uj=2 * (5 + f / 16000),
                               weight_bytes=d["weight_bytes"] // 4, accuracy_loss=0.5, rank=8))
        n_in = sum(model.tensors[t].shape and int(__import__("numpy").prod(model.tensors[t].shape)) * 4
                   for t in d["inputs"] if t in model.inputs)
        n_out = sum(int(__import__("numpy").prod(model.tensors[t].shape)) * 4 for t in d["outputs"] if t in model.outputs)
        layers.append(Layer(v, opts, input_bytes=int(n_in), output_bytes=int(n_out)))
    edges = [Edge(u, v, int(b)) for u, v, b in model.dag.edges(data="bytes")]
    return Problem(model.name, procs, layers, edges,
                   uniform_links(["cpu", "gpu"], latency_us=5, bytes_per_us=4000, energy_uj_per_byte=0.001),
                   host="cpu", goal="min_latency", max_accuracy_loss=0.6)


def opencl_or_skip() -> str:
    """The processor the plan's "gpu" runs on: an OpenCL device; skip without one (fail under
    DEEPX_REQUIRE_OPENCL=1)."""
    from deepx_opt.runtime.backends.base import available_backends

    cl = [b for b in available_backends() if b.startswith("opencl")]
    if cl:
        return cl[0]
    if os.environ.get("DEEPX_REQUIRE_OPENCL") == "1":
        pytest.fail("DEEPX_REQUIRE_OPENCL=1 but no working OpenCL device (apt-get install pocl-opencl-icd)")
    pytest.skip("no working OpenCL device (apt-get install pocl-opencl-icd)")


@pytest.fixture(scope="session")
def real_run():
    """(problem, plan, RunReport) of the fork-join model executed for real (numpy CPU + OpenCL)."""
    from deepx_opt.runtime.executor import execute

    gpu = opencl_or_skip()
    model = fork_join_model()
    prob = model_problem(model)
    plan = get_solver("cpsat").solve(prob, time_limit_s=20)
    assert plan.status.has_plan
    x = {"x": np.random.default_rng(0).standard_normal((1, 256)).astype(np.float32)}
    _, report = execute(plan, model, x, processor_map={"gpu": gpu}, repeat=3, warmup=1)
    return prob, plan, report


# ---------------------------------------------------------------------------------------- zoo models
@pytest.fixture(scope="session")
def zoo_svhn():
    """The SVHN CNN with RLC candidates on the Snapdragon 800 profile, planned by CP-SAT."""
    from deepx_opt import zoo
    from deepx_opt.graphs import load_onnx
    from deepx_opt.graphs.candidates import candidates
    from deepx_opt.planner import build_problem

    model = load_onnx(zoo.build("svhn"), name="svhn")
    prob = build_problem(candidates(model), "snapdragon800", latency_budget_ms=40, max_accuracy_loss=3)
    plan = get_solver("cpsat").solve(prob, time_limit_s=20)
    assert plan.status.has_plan
    return prob, plan


@pytest.fixture(scope="session")
def zoo_resnet():
    """The ResNet-50-shaped DAG (72 blocks, residual joins), dense, on Snapdragon 800, planned by HEFT."""
    from deepx_opt import zoo
    from deepx_opt.graphs import load_onnx
    from deepx_opt.planner import build_problem

    model = load_onnx(zoo.build("resnet50like"), name="resnet50like")
    prob = build_problem(model, "snapdragon800", goal="min_latency")
    plan = get_solver("heft").solve(prob, time_limit_s=20)
    assert plan.status.has_plan
    return prob, plan
