"""`deepx calibrate` through the real CLI entry point (quick mode, numpy backend)."""

import json

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
