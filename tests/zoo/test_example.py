"""examples/zoo_export.py runs and reports the file it wrote."""

from __future__ import annotations

import importlib.util
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "zoo_export.py"


def test_zoo_export_example_runs(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("zoo_export_example", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main(["digits_mlp", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    written = tmp_path / "digits_mlp.onnx"
    assert written.is_file() and f"{written.stat().st_size:,} bytes" in out
    assert "50,826" in out and "accuracy" in out
