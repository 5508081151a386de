"""Factor pairs of Runtime Layer Compression: detection in real factorised models, the in-model table
(interpolation in rank, decay beyond the calibrated ranks, validation) and its fit from block samples."""

import copy
from dataclasses import replace
import math

import numpy as np
import pytest

from deepx_opt import zoo
from deepx_opt.cost_models import OpWork, load_profile, predict_work_us, save_profile
from deepx_opt.cost_models.calibrate import BlockSample, Sample, fit_latency_models, fit_lowrank_table, \
    model_block_works, timing_variant
from deepx_opt.cost_models.latency import LowRankTable, lowrank_pairs, predict_block_us, predict_works_us
from deepx_opt.cost_models.profile import DeviceProfile, Processor, profile_from_dict
from deepx_opt.errors import ProfileError
from deepx_opt.graphs import load_onnx


def _works(model: str, fraction: float | None) -> dict:
    g = load_onnx(zoo.build(model))
    return model_block_works(timing_variant(g, fraction, np.random.default_rng(0)))


def test_pairs_found_in_factorised_gemm_and_conv_layers_and_nowhere_else():
    dense, half = _works("digits_cnn", None), _works("digits_cnn", 0.5)
    assert all(lowrank_pairs(ws) == [] for ws in dense.values())
    g = load_onnx(zoo.build("digits_cnn"))
    fc1 = dense["fc1"][0].dims  # (1, inputs, outputs) of the dense GEMM
    [(i, sig, r)] = lowrank_pairs(half["fc1"])
    assert (i, sig) == (0, ("gemm", *fc1)) and r == round(0.5 * min(fc1[1:]))
    conv = dense["conv1"][0].dims  # (batch, cin, cout, kh, kw, hi, wi, ho, wo)
    [(i, sig, r)] = lowrank_pairs(half["conv1"])
    assert sig == ("conv", *conv) and r == round(0.5 * min(conv[1] * conv[3] * conv[4], conv[2]))
    assert half["conv1"][1].variant == "pointwise" and g.name == "digits_cnn"
    # two GEMMs that do not chain (the second does not read r channels) are not a pair
    a, b = OpWork("gemm", 1, 1, dims=(1, 64, 8)), OpWork("gemm", 1, 1, dims=(1, 16, 32))
    assert lowrank_pairs([a, b]) == []


def test_table_interpolates_in_log_rank_and_decays_beyond_the_calibrated_ranks():
    t = LowRankTable([{"signature": ["gemm", 1, 256, 128], "ranks": [8, 32], "log_ratio": [0.4, 0.0]}])
    assert t.correction(("gemm", 1, 256, 128), 16) == pytest.approx((0.2, 1.0))  # halfway in ln r
    assert t.correction(("gemm", 1, 256, 128), 32) == pytest.approx((0.0, 1.0))
    ratio, weight = t.correction(("gemm", 1, 256, 128), 4)  # one halving below: weight exp(-1/2)
    assert ratio == pytest.approx(0.4) and weight == pytest.approx(math.exp(-0.5))
    assert t.correction(("gemm", 1, 256, 128), 1)[1] < 0.02
    assert t.correction(("gemm", 1, 128, 256), 16) is None  # another shape
    assert LowRankTable.from_dict(t.to_dict()).to_dict() == t.to_dict()


@pytest.mark.parametrize("entry, match", [
    ({"signature": ["fft", 1, 2], "ranks": [1], "log_ratio": [0.0]}, "signature"),
    ({"signature": ["gemm", 1, 0, 4], "ranks": [1], "log_ratio": [0.0]}, "signature"),
    ({"signature": ["gemm", 1, 8, 4], "ranks": [2, 2], "log_ratio": [0.0, 0.1]}, "increasing"),
    ({"signature": ["gemm", 1, 8, 4], "ranks": [1, 2], "log_ratio": [0.0]}, "one length"),
    ({"signature": ["gemm", 1, 8, 4], "ranks": [1], "log_ratio": [float("nan")]}, "finite"),
])
def test_bad_table_in_a_profile_is_a_profile_error_naming_the_field(entry, match):
    proc = Processor("cpu", "cpu", 1 << 30, 10.0, 1.0, lowrank_table={"entries": [entry]})
    d = DeviceProfile(name="t", processors=[proc], links=[], host="cpu").to_dict()
    with pytest.raises(ProfileError, match=f"processors\\[0\\].lowrank_table: entries\\[0\\].*{match}"):
        profile_from_dict(d)


def _gemv_grid():
    # a GEMV costs 5 µs + 1 µs per kB of the weight when timed alone
    return [Sample(OpWork("gemm", 2 * kb * 256.0, kb * 1024.0, "MatMul", variant="gemv", dims=(1, 256, kb)), 5 + kb)
            for kb in (1, 2, 4, 8, 16, 32, 64, 128, 256)]


def _pair(k: int, r: int, n: int) -> tuple:
    return (OpWork("gemm", 2.0 * k * r, 4.0 * k * r, "MatMul", variant="gemv", dims=(1, k, r)),
            OpWork("gemm", 2.0 * r * n, 4.0 * r * n, "MatMul", variant="gemv", dims=(1, r, n)))


def test_fit_recovers_in_model_ratios_and_predicts_between_ranks(tmp_path):
    grid = _gemv_grid()
    models = fit_latency_models(grid, [], 0.0)
    proc = Processor("cpu", "cpu", 1 << 30, 10.0, 1.0, backend="cpu", latency_models=models, block_overhead_us=2.0)
    prof = DeviceProfile(name="t", processors=[proc], links=[], host="cpu")

    def plain(ws):
        return sum(predict_work_us(prof, "cpu", w) for w in ws)

    # inside models, pairs of this 1024 x 512 layer take 1.5x at rank 32 and 1.2x at rank 128 (+ overhead)
    blocks = [BlockSample(_pair(1024, r, 512), 2.0 + f * plain(_pair(1024, r, 512)), "m", "fc", f"rank={r}")
              for r, f in ((32, 1.5), (128, 1.2))]
    proc.lowrank_table = fit_lowrank_table(models, blocks, 2.0)
    t = LowRankTable.from_dict(proc.lowrank_table)
    assert len(t) == 1 and t.correction(("gemm", 1, 1024, 512), 32)[0] == pytest.approx(math.log(1.5), abs=1e-3)
    mid = _pair(1024, 64, 512)  # halfway in ln r: the geometric mean of the two ratios
    assert predict_works_us(prof, "cpu", mid) == pytest.approx(2.0 + math.sqrt(1.5 * 1.2) * plain(mid), rel=1e-3)
    assert predict_block_us(prof, "cpu", works=mid) == predict_works_us(prof, "cpu", mid)
    far = _pair(1024, 2, 512)  # four halvings below the calibrated ranks: the plain prediction
    assert predict_works_us(prof, "cpu", far) == pytest.approx(2.0 + plain(far), rel=1e-3)
    other = _pair(512, 64, 512)  # a shape calibration never timed
    assert predict_works_us(prof, "cpu", other) == pytest.approx(2.0 + plain(other))
    # leaving the model out leaves no table; the table survives a profile round trip
    assert fit_lowrank_table(models, blocks, 2.0, exclude_models=["m"]) is None
    save_profile(prof, tmp_path / "p.json")
    back = load_profile(tmp_path / "p.json")
    assert predict_works_us(back, "cpu", mid) == pytest.approx(predict_works_us(prof, "cpu", mid))
    no_table = copy.deepcopy(prof)
    no_table.processor("cpu").lowrank_table = None
    assert predict_works_us(no_table, "cpu", mid) == pytest.approx(2.0 + plain(mid))


def test_one_shape_in_two_models_keeps_each_models_ratio_by_working_set(tmp_path):
    grid = _gemv_grid()
    models = fit_latency_models(grid, [], 0.0)
    proc = Processor("cpu", "cpu", 1 << 30, 10.0, 1.0, backend="cpu", latency_models=models, block_overhead_us=2.0)
    prof = DeviceProfile(name="t", processors=[proc], links=[], host="cpu")

    def in_model(r: int, ctx: float) -> tuple:
        return tuple(replace(w, context_bytes=ctx) for w in _pair(1024, r, 512))

    def plain(ws):
        return sum(predict_work_us(prof, "cpu", w) for w in ws)

    # the same 1024 x 512 layer is 1.5x its factors' regression in a small model (its working set shrinking
    # with the rank, as a factorised model's does) and 0.9x in a model 16x larger
    small = {32: 1e5, 128: 2e5}
    blocks = [BlockSample(in_model(r, small[r]), 2.0 + 1.5 * plain(in_model(r, small[r])), "small", "fc", f"rank={r}")
              for r in (32, 128)]
    blocks += [BlockSample(in_model(r, 16 * small[r]), 2.0 + 0.9 * plain(in_model(r, 16 * small[r])), "big", "fc",
                           f"rank={r}") for r in (32, 128)]
    proc.lowrank_table = fit_lowrank_table(models, blocks, 2.0)
    [entry] = proc.lowrank_table["entries"]
    mean_log = (math.log(1.5) + math.log(0.9)) / 2
    assert len(entry["contexts"]) == 2 and entry["log_ratio"][0] == pytest.approx(mean_log, abs=1e-3)
    for ctx, f in ((small[32] * 2 ** 0.5, 1.5), (16 * small[32] * 2 ** 0.5, 0.9)):  # rank 64: between the two
        mid = in_model(64, ctx)  # its own model's ratio, shrunk a little towards the mean (prior weight 0.1)
        shrunk = math.exp((math.log(f) + LowRankTable.CONTEXT_PRIOR * mean_log) / (1 + LowRankTable.CONTEXT_PRIOR))
        assert predict_works_us(prof, "cpu", mid) == pytest.approx(2.0 + shrunk * plain(mid), rel=0.005)
    # a model far from both: the mean of the two ratios; an unknown working set (0): the same
    far, unknown = in_model(64, 1e9), in_model(64, 0.0)
    mean = math.exp(mean_log)
    assert predict_works_us(prof, "cpu", far) == pytest.approx(2.0 + mean * plain(far), rel=0.02)
    assert predict_works_us(prof, "cpu", unknown) == pytest.approx(2.0 + mean * plain(unknown), rel=0.02)
    save_profile(prof, tmp_path / "p.json")
    back = load_profile(tmp_path / "p.json")
    assert predict_works_us(back, "cpu", in_model(64, 3e5)) == pytest.approx(predict_works_us(prof, "cpu", in_model(64, 3e5)))


@pytest.mark.parametrize("contexts, match", [
    ([], "non-empty list"),
    ([{"context_bytes": [1e5], "log_ratio": [0.1, 0.2]}], "context_bytes.*one per rank"),
    ([{"context_bytes": [1e5, -1.0], "log_ratio": [0.1, 0.2]}], "context_bytes"),
    ([{"context_bytes": [1e5, 2e5], "log_ratio": [0.1]}], r"\[0\].log_ratio"),
])
def test_bad_context_curves_are_a_profile_error_naming_the_field(contexts, match):
    entry = {"signature": ["gemm", 1, 8, 4], "ranks": [1, 2], "log_ratio": [0.0, 0.1], "contexts": contexts}
    proc = Processor("cpu", "cpu", 1 << 30, 10.0, 1.0, lowrank_table={"entries": [entry]})
    d = DeviceProfile(name="t", processors=[proc], links=[], host="cpu").to_dict()
    with pytest.raises(ProfileError, match=f"processors\\[0\\].lowrank_table: entries\\[0\\].contexts.*{match}"):
        profile_from_dict(d)
