"""`deepx pareto MODEL --profile P ...` through the real CLI entry point, on a small zoo model."""

from __future__ import annotations

import csv
import json

import pytest

from deepx_opt.cli import main


def _dominates(a, b, tol=1e-9):
    return (a["makespan_us"] <= b["makespan_us"] + tol and a["energy_uj"] <= b["energy_uj"] + tol
            and (a["makespan_us"] < b["makespan_us"] - tol or a["energy_uj"] < b["energy_uj"] - tol))


@pytest.fixture(scope="module")
def latency_run(tmp_path_factory):
    d = tmp_path_factory.mktemp("pareto")
    out = d / "front.png"
    code = main(["pareto", "svhn", "--profile", "snapdragon800", "--sweep", "latency", "--points", "5",
                 "--max-accuracy-loss", "3", "--time-limit", "10", "-o", str(out)])
    return code, out


def test_latency_sweep_writes_picture_csv_json_and_a_clean_front(latency_run):
    code, out = latency_run
    assert code == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    doc = json.loads(out.with_suffix(".json").read_text())
    assert doc["format"] == "deepx_opt.pareto" and doc["sweep"] == "latency" and len(doc["budgets"]) == 5
    assert doc["max_accuracy_loss"] == 3.0
    front = doc["front"]
    assert front
    for a in front:  # no front point dominates another
        for b in front:
            assert a is b or not _dominates(a, b)
    for p in doc["points"]:
        if p["budget"] is not None and p["makespan_us"] is not None:
            assert p["makespan_us"] <= p["budget"] + 1e-6
            assert p["accuracy_loss"] <= 3.0 + 1e-9
    rows = list(csv.DictReader(out.with_suffix(".csv").open()))
    assert len(rows) == len(doc["points"])
    # every heuristic of the registry was tried on the same Problem
    assert {"heft", "greedy_compression", "neurosurgeon", "cpu_only"} <= set(doc["heuristics"])


def test_progress_and_table(tmp_path, capsys):
    out = tmp_path / "e.svg"
    assert main(["pareto", "digits_mlp", "--profile", "tegrak1", "--sweep", "energy", "--points", "3",
                 "--heuristics", "heft,cpu_only", "--no-compression", "-o", str(out)]) == 0
    cap = capsys.readouterr()
    assert cap.err.count("[deepx pareto] [") == 3  # one progress line per budget
    assert "least latency under energy budgets" in cap.out and "wrote" in cap.out
    assert "<svg" in out.read_text()
    doc = json.loads(out.with_suffix(".json").read_text())
    assert doc["heuristics"] == ["heft", "cpu_only"]
    for p in doc["points"]:
        if p["budget"] is not None and p["energy_uj"] is not None:
            assert p["energy_uj"] <= p["budget"] + 1e-6


def test_outputs_are_not_overwritten_without_force(latency_run, capsys):
    _, out = latency_run
    assert main(["pareto", "svhn", "--profile", "snapdragon800", "--points", "2", "-o", str(out)]) == 2
    assert "--force" in capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["--points", "0", "-o", "{t}/x.png"], "--points 0"),
    (["-o", "{t}/x.jpg"], "expected one of"),
    (["--solver", "nope", "-o", "{t}/x.png"], "unknown solver"),
])
def test_bad_arguments(tmp_path, capsys, argv, message):
    argv = [a.format(t=tmp_path) for a in argv]
    assert main(["pareto", "digits_mlp", "--profile", "tegrak1", "--no-compression", *argv]) == 2
    assert message in capsys.readouterr().err
