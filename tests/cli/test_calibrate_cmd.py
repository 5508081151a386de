"""`deepx calibrate` through the real CLI entry point (quick mode, numpy backend)."""

import json
from pathlib import Path

from deepx_opt.cli import main
from deepx_opt.cost_models import load_profile


def test_calibrate_quick_writes_refuses_and_forces(tmp_path, capsys):
    out = tmp_path / "host.json"
    assert main(["calibrate", "--processors", "cpu", "--quick", "--no-progress", "--power", "cpu=20,4",
                 "-o", str(out)]) == 0
    text = capsys.readouterr().out
    assert f"wrote {out}" in text and "fit MAPE" in text and "repeat check cpu: " in text
    p = load_profile(out)
    assert p.processor("cpu").active_power_w == 20 and p.processor("cpu").idle_power_w == 4
    assert p.meta["calibration"]["mode"] == "quick"
    before = out.read_text()
    assert main(["calibrate", "--processors", "cpu", "--quick", "-o", str(out)]) == 2
    assert "--force" in capsys.readouterr().err
    assert out.read_text() == before


def test_calibrate_argument_errors(tmp_path, capsys):
    assert main(["calibrate", "--quick"]) == 2
    assert "-o PROFILE.json" in capsys.readouterr().err
    assert main(["calibrate", "--quick", "--power", "cpu=lots", "-o", str(tmp_path / "x.json")]) == 2
    assert "PROC=ACTIVE,IDLE" in capsys.readouterr().err
    assert main(["calibrate", "--quick", "--processors", "tpu", "-o", str(tmp_path / "y.json")]) == 2
    assert "available" in capsys.readouterr().err


def test_calibrate_validate_prints_the_table_and_the_repeatability_ceiling(tmp_path, capsys):
    out = tmp_path / "host.json"
    assert main(["calibrate", "--processors", "cpu", "--quick", "--no-progress", "--validate",
                 "--validate-models", "digits_mlp", "-o", str(out)]) == 0
    text = capsys.readouterr().out
    assert "validation on digits_mlp" in text and "within ±10%" in text
    # the ceiling row: digits_mlp's 4 dense blocks, timed by calibration (quick mode samples the zoo) and again
    ceiling = text.split("repeatability:", 1)[1]
    assert any(line.split()[:2] == ["cpu", "4"] for line in ceiling.splitlines())


DATA = Path(__file__).resolve().parents[1] / "data"


def test_calibrate_times_a_models_own_onnx_file_and_validates_it(tmp_path, capsys):
    """--models adds a model of one's own (an ONNX file, named after the file) to the models calibration runs
    whole: its blocks become in-model samples of the fit, and --validate-models takes files too."""
    own = str(DATA / "torch_resnet_tiny.onnx")
    out = tmp_path / "host.json"
    assert main(["calibrate", "--processors", "cpu", "--quick", "--no-progress", "--models", f"digits_mlp,{own}",
                 "--validate", "--validate-models", own, "-o", str(out)]) == 0
    text = capsys.readouterr().out
    assert "validation on torch_resnet_tiny" in text
    cal = load_profile(out).meta["calibration"]["processors"]["cpu"]
    assert cal["models"] == ["digits_mlp", "torch_resnet_tiny"]
    timed = {(m, layer) for m, layer, *_ in cal["fit_data"]["blocks"]}
    assert ("torch_resnet_tiny", "/layer1/dw/Conv") in timed and ("digits_mlp", "fc1") in timed
    # the ceiling row: the file's 10 dense blocks, timed by calibration and again by validation
    ceiling = text.split("repeatability:", 1)[1]
    assert any(line.split()[:2] == ["cpu", "10"] for line in ceiling.splitlines())
    # planning a model says which of its blocks that calibration never timed in context, and how to time them
    plan = ["plan", "--profile", str(out), "--latency-budget", "50", "--no-compression"]
    assert main([*plan[:1], own, *plan[1:]]) == 0
    assert "never timed" not in capsys.readouterr().out
    assert main([*plan[:1], "digits_cnn", *plan[1:]]) == 0
    note = [ln for ln in capsys.readouterr().out.splitlines() if "never timed" in ln]
    # its softmax has the shape of digits_mlp's, timed in context; its other blocks do not
    assert len(note) == 1 and note[0].startswith("note: 5 of 6 blocks of digits_cnn were never timed inside a "
                                                 "model when cpu was calibrated")
    assert "deepx calibrate --models zoo,digits_cnn -o PROFILE.json" in note[0]


def test_calibrate_refuses_bad_model_lists_before_benchmarking(tmp_path, capsys):
    out = tmp_path / "x.json"
    cases = [
        (["--models", "digits_mlp,no_such_model"], "'no_such_model' is neither an existing file nor a zoo model"),
        (["--models", str(tmp_path / "missing.onnx")], "missing.onnx"),
        (["--models", "digits_mlp,zoo:digits_mlp"], "distinct names"),
        (["--models", " , "], "--models is empty"),
        (["--validate", "--validate-models", "nope"], "'nope' is neither"),
        (["--cache", "--models", "digits_mlp"], "--models does not apply to --cache"),
    ]
    for extra, message in cases:
        assert main(["calibrate", "--processors", "cpu", "--quick", "--no-progress", "-o", str(out), *extra]) == 2
        assert message in capsys.readouterr().err, extra
        assert not out.exists()
