"""Export a zoo model as an ONNX file and report its size (data → model → report).

Run: ``python examples/zoo_export.py [NAME] [--out DIR]`` (default: svhn into a temporary directory).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import onnx

from deepx_opt import zoo


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("name", nargs="?", default="svhn", help=f"one of: {', '.join(zoo.model_names())}")
    parser.add_argument("--out", type=Path, default=None, help="directory to write into (default: a temp dir)")
    args = parser.parse_args(argv)

    # model: what the zoo knows about it, then the file
    entry = zoo.get_entry(args.name)
    out_dir = args.out or Path(tempfile.mkdtemp(prefix="deepx-zoo-"))
    out_dir.mkdir(parents=True, exist_ok=True)
    path = zoo.export(entry.name, out_dir / f"{entry.name}.onnx", overwrite=True)

    # report: what was written, checked by ONNX itself
    model = onnx.load(str(path))
    onnx.checker.check_model(model)
    size_bytes = path.stat().st_size
    print(f"model        {entry.name}: {entry.description}")
    print(f"file         {path}")
    print(f"size         {size_bytes:,} bytes ({size_bytes / 2**20:.1f} MiB; "
          f"float32 weights {entry.weight_bytes:,} bytes)")
    print(f"parameters   {entry.params:,}")
    print(f"compute      {entry.gflop:.4f} GFLOP per inference (2 x MACs of Conv/Gemm)")
    print(f"input/output {entry.input_shape} -> {entry.output_shape}")
    print(f"ONNX nodes   {len(model.graph.node)} ({', '.join(sorted({n.op_type for n in model.graph.node}))})")
    if entry.trained:
        print(f"accuracy     {entry.test_accuracy:.2%} on the held-out sklearn-digits test split")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
