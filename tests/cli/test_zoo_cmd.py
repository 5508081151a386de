"""`deepx zoo list` and `deepx zoo export`, through the real CLI entry point."""

from __future__ import annotations

import json

import onnx

from deepx_opt import zoo
from deepx_opt.cli import main


def test_list_prints_every_model_with_its_figures(capsys):
    assert main(["zoo", "list"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].split()[:5] == ["name", "params", "GFLOP", "input", "trained"]
    for entry in zoo.list_models():
        row = next(line for line in lines if line.split()[0] == entry.name)
        assert f"{entry.gflop:.4f}" in row
        assert "x".join(map(str, entry.input_shape)) in row
        assert ("yes" in row) == entry.trained
    assert "60.97M" in out and "313.5K" in out and "1.81M" in out and "1.70M" in out


def test_list_json_matches_the_api(capsys):
    assert main(["zoo", "list", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in rows] == zoo.model_names()
    by_name = {r["name"]: r for r in rows}
    assert by_name["alexnet"]["params"] == 60_965_224 and by_name["alexnet"]["flops"] == 1_448_813_632
    assert by_name["digits_cnn"]["test_accuracy"] >= zoo.MIN_TEST_ACCURACY
    assert by_name["svhn"]["input_shape"] == [1, 3, 32, 32]


def test_export_writes_a_model_and_refuses_to_overwrite_without_force(tmp_path, capsys):
    path = tmp_path / "dnn.onnx"
    assert main(["zoo", "export", "AudioScene", "-o", str(path)]) == 0
    out = capsys.readouterr().out
    assert "wrote" in out and str(path) in out and "1,701,019 params" in out
    model = onnx.load(str(path))
    onnx.checker.check_model(model)
    first = path.read_bytes()

    assert main(["zoo", "export", "audioscene", "-o", str(path), "--seed", "2"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    assert "already exists" in err and "--force" in err
    assert path.read_bytes() == first

    assert main(["zoo", "export", "audioscene", "-o", str(path), "--seed", "2", "--force"]) == 0
    assert path.read_bytes() != first


def test_export_unknown_model_fails_with_the_known_names(tmp_path, capsys):
    assert main(["zoo", "export", "lenet", "-o", str(tmp_path / "x.onnx")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "lenet" in err and "alexnet" in err and "digits_cnn" in err
    assert not (tmp_path / "x.onnx").exists()
