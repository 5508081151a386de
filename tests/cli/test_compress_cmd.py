"""``deepx compress``: writes a runnable factorised ONNX model within the limit; JSON report; refusals."""

from __future__ import annotations

import argparse
import json

import numpy as np
import onnxruntime as ort
import pytest

from deepx_opt import zoo
from deepx_opt.cli import compress_cmd
from deepx_opt.errors import CompressionError, InputError


def run_cmd(argv):
    p = argparse.ArgumentParser()
    sub = p.add_subparsers()
    compress_cmd.add_parser(sub)
    args = p.parse_args(["compress", *argv])
    return args.func(args)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = zoo.digits_dataset().for_model("digits_mlp")
    tmp = tmp_path_factory.mktemp("compress")
    np.save(tmp / "x.npy", d.x_test[:270])
    np.save(tmp / "y.npy", d.y_test[:270])
    np.save(tmp / "y_short.npy", d.y_test[:100])
    np.save(tmp / "x_bad.npy", d.x_test[:270, :60])
    return tmp


def test_compress_json_and_written_model_runs(files, capsys):
    out = files / "small.onnx"
    code = run_cmd(["digits_mlp", "--max-accuracy-loss", "2", "--calib", str(files / "x.npy"),
                    "--labels", str(files / "y.npy"), "-o", str(out), "--json"])
    assert code == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["predicted_loss_pts"] <= 2.0
    assert rep["measured"]["measured_loss_pts"] <= 2.0
    # the verified prediction: the written model's disagreement on the calibration data (smoothed: samples close
    # to flipping count part-way, so at least the count's share of it) + the per-layer margin
    from deepx_opt.graphs.accuracy import DEFAULT_LAYER_MARGIN_PTS, DEFAULT_MARGIN

    assert rep["verified_loss_pts"] <= 2.0
    n_layers = sum(r is not None for r in rep["ranks"].values())
    smooth = (rep["verified_loss_pts"] - DEFAULT_LAYER_MARGIN_PTS * n_layers) / (1 + DEFAULT_MARGIN)
    count = 100 - rep["measured"]["agreement_pct"]
    assert 0 <= smooth and abs(smooth - count) <= 1.0
    # two numbers: the point estimate (reported as the prediction, no margin) and the bound held to the limit
    from deepx_opt.graphs.accuracy import DEFAULT_POINT_BLEND, DEFAULT_POINT_SCALE, DEFAULT_VERIFIED_POINT_LAYER_PTS

    assert rep["prediction"] == "verified" and rep["loss_bound_pts"] == rep["verified_loss_pts"]
    assert rep["predicted_loss_pts"] <= rep["loss_bound_pts"] <= 2.0
    w = DEFAULT_POINT_BLEND  # the measurement against the additive point estimate, capped by the bound
    assert rep["predicted_loss_pts"] == pytest.approx(
        min(w * (DEFAULT_POINT_SCALE * smooth + DEFAULT_VERIFIED_POINT_LAYER_PTS * n_layers)
            + (1 - w) * rep["sum_a_point_pts"], rep["loss_bound_pts"]))
    assert rep["sum_a_point_pts"] <= rep["sum_a_pts"]
    assert rep["sum_a_pts"] > rep["predicted_loss_pts"]  # Σa carries the quantile and the margins
    for row in rep["layers"]:
        assert 0 <= row["predicted_loss_pts"] <= row["loss_bound_pts"]
    assert sum(r["loss_bound_pts"] for r in rep["layers"]) == pytest.approx(rep["sum_a_pts"])
    assert sum(r["predicted_loss_pts"] for r in rep["layers"]) == pytest.approx(rep["sum_a_point_pts"])
    assert rep["after"]["weight_bytes"] < rep["before"]["weight_bytes"]
    assert rep["after"]["flops"] < rep["before"]["flops"]
    assert rep["estimator"] == "disagreement" and rep["notes"] and rep["verified_on_calibration"]
    assert any(r is not None for r in rep["ranks"].values())
    # the file is a real ONNX model that onnxruntime runs, with a free batch dimension
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    x = np.load(files / "x.npy")
    probs = sess.run(None, {sess.get_inputs()[0].name: x})[0]
    assert probs.shape == (270, 10)
    acc = 100 * np.mean(probs.argmax(1) == np.load(files / "y.npy"))
    assert acc == pytest.approx(rep["measured"]["compressed_top1_pct"])
    ops = {n.op_type for n in __import__("onnx").load(str(out)).graph.node}
    assert "MatMul" in ops  # factorised layers: MatMul(A, U) → Gemm(·, V, C)


def test_compress_text_without_labels_and_overwrite(files, capsys):
    out = files / "t.onnx"
    argv = ["digits_mlp", "--max-accuracy-loss", "1", "--calib", str(files / "x.npy"), "-o", str(out),
            "--ranks", "0.5,0.25,e0.9", "--method", "weight"]
    assert run_cmd(argv) == 0
    text = capsys.readouterr().out
    assert "estimator: disagreement" in text and "note:" in text and "fewer" in text and "verified" in text
    assert "measured on the calibration data" not in text  # no labels, no measured loss
    with pytest.raises(InputError, match="--force"):
        run_cmd(argv)
    assert run_cmd(argv + ["--force"]) == 0


@pytest.mark.parametrize(
    "extra, exc, pattern",
    [
        (["--calib", "{d}/x_bad.npy"], InputError, r"\(270, 60\).*\(n, 64\)"),
        (["--calib", "{d}/x.npy", "--labels", "{d}/y_short.npy"], InputError, r"\(100,\).*\(270,\)"),
        (["--calib", "{d}/missing.npy"], InputError, "does not exist"),
        (["--calib", "{d}/x.npy", "--ranks", "500"], CompressionError, r"500.*1\.\.64"),
        (["--calib", "{d}/x.npy", "--ranks", "0"], CompressionError, r"0.*1\.\.64"),
        (["--calib", "{d}/x.npy", "--ranks", "abc"], InputError, "not understood"),
        (["--calib", "{d}/x.npy", "--max-accuracy-loss", "-1"], InputError, ">= 0"),
    ],
)
def test_compress_bad_input(files, extra, exc, pattern):
    extra = [e.format(d=files) for e in extra]
    argv = ["digits_mlp", "-o", str(files / "bad.onnx"), "--force"]
    if "--max-accuracy-loss" not in extra:
        argv += ["--max-accuracy-loss", "1"]
    with pytest.raises(exc, match=pattern):
        run_cmd(argv + extra)


def test_loss_target_with_labels(files, capsys):
    argv = ["digits_mlp", "--max-accuracy-loss", "2", "--calib", str(files / "x.npy"), "--labels", str(files / "y.npy"),
            "--target", "loss", "--no-verify", "-o", str(files / "l.onnx"), "--json"]
    assert run_cmd(argv) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["estimator"] == "labels" and rep["verified_on_calibration"] is False and rep["verified_loss_pts"] is None
    # without verification: the additive point estimate and the additive bound that the selection held
    assert rep["prediction"] == "additive"
    assert rep["predicted_loss_pts"] == rep["sum_a_point_pts"] <= rep["loss_bound_pts"] == rep["sum_a_pts"] <= 2.0


def test_model_from_onnx_file(files, capsys):
    import onnx

    src = files / "mlp.onnx"
    onnx.save(zoo.build("digits_mlp"), str(src))
    code = run_cmd([str(src), "--max-accuracy-loss", "1", "--calib", str(files / "x.npy"),
                    "-o", str(files / "from_file.onnx"), "--force", "--json", "--objective", "weight_bytes"])
    assert code == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["objective"] == "weight_bytes" and rep["after"]["weight_bytes"] < rep["before"]["weight_bytes"]
    assert (files / "from_file.onnx").is_file()


def test_through_deepx_main(files, capsys):
    from deepx_opt.cli import main

    code = main(["compress", "digits_mlp", "--max-accuracy-loss", "1", "--calib", str(files / "x_bad.npy"),
                 "-o", str(files / "m.onnx")])
    assert code == 2
    assert "deepx compress: error:" in capsys.readouterr().err
