"""`deepx profile list/show/check` through the real CLI entry point."""

import json

import pytest

from deepx_opt.cli import main


def test_profile_list(capsys):
    assert main(["profile", "list"]) == 0
    out = capsys.readouterr().out
    assert "snapdragon800" in out and "tegrak1" in out


def test_profile_show(capsys):
    assert main(["profile", "show", "tegrak1", "--models"]) == 0
    out = capsys.readouterr().out
    for word in ("lpu", "gpu", "cloud", "remote", "wireless", "conv, dwconv, pool, lrn", "GFLOP/s"):
        assert word in out


def test_profile_show_json_round_trips(capsys):
    assert main(["profile", "show", "snapdragon800", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["version"] == 1 and [p["name"] for p in d["processors"]] == ["cpu", "dsp", "cloud"]


@pytest.mark.parametrize("name", ["snapdragon800", "tegrak1"])
def test_profile_check_residuals_within_25pct(capsys, name):
    assert main(["profile", "check", name]) == 0
    out = capsys.readouterr().out
    assert "published mJ" in out and "residual" in out
    assert "refused" in out
    assert "FAIL" not in out


def test_profile_check_json_and_tolerance(capsys):
    assert main(["profile", "check", "tegrak1", "--json"]) == 0
    cells = json.loads(capsys.readouterr().out)
    assert len(cells) == 16
    worst = max(abs(c["residual_pct"]) for c in cells if c["residual_pct"] is not None)
    assert worst <= 25
    # a tolerance tighter than the worst residual fails the check
    assert main(["profile", "check", "tegrak1", "--max-residual", f"{worst / 2:.3f}"]) == 1
    assert "FAIL" in capsys.readouterr().out


def test_profile_errors(capsys, tmp_path):
    assert main(["profile", "show", "nosuchdevice"]) == 2
    assert "built-in: snapdragon800, tegrak1" in capsys.readouterr().err
    bad = tmp_path / "p.json"
    bad.write_text(json.dumps({"version": 7, "name": "x", "processors": []}))
    assert main(["profile", "show", str(bad)]) == 2
    assert "version" in capsys.readouterr().err


def test_profile_show_lists_the_low_rank_table(tmp_path, capsys):
    from deepx_opt.cost_models import load_profile, save_profile

    p = load_profile("tegrak1")
    p.processor("gpu").lowrank_table = {"entries": [{"signature": ["gemm", 1, 256, 128], "ranks": [8, 32],
                                                     "log_ratio": [0.4, 0.0]}]}
    save_profile(p, tmp_path / "p.json")
    assert main(["profile", "show", str(tmp_path / "p.json"), "--models"]) == 0
    out = capsys.readouterr().out
    assert "low-rank table" in out and "gemm 1×256×128" in out and "8: ×1.49, 32: ×1.00" in out


def test_profile_show_prints_the_calibration_repeat_check(tmp_path, capsys):
    from deepx_opt.cost_models import load_profile, save_profile

    p = load_profile("tegrak1")
    p.meta["calibration"] = {"processors": {"gpu": {"repeat_check": {
        "processor": "gpu", "blocks": 39, "within_pct": 100 * 20 / 39, "drift": 1.08, "within_after_drift_pct": 70.0}}}}
    save_profile(p, tmp_path / "p.json")
    assert main(["profile", "show", str(tmp_path / "p.json")]) == 0
    out = capsys.readouterr().out
    assert "repeat check gpu: 20 of 39 dense blocks (51.3%) within ±10%" in out and "(drift 1.08)" in out
    assert "warning: the calibration of gpu did not repeat" in out
    assert main(["profile", "show", "tegrak1"]) == 0  # a built-in profile has no calibration: no such line
    assert "repeat check" not in capsys.readouterr().out
