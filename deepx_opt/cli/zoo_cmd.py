"""``deepx zoo``: list the built-in models and export them as ONNX files.

Examples
--------
::

    deepx zoo list
    deepx zoo list --json
    deepx zoo export alexnet -o alexnet.onnx
    deepx zoo export svhn -o svhn.onnx --force --seed 3
"""

from __future__ import annotations

import argparse
import json

from deepx_opt import zoo


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "zoo",
        help="list or export the built-in models",
        description="The built-in model zoo: DeepX's paper models, ResNet/MobileNet-shaped CNNs and models "
        "trained on scikit-learn's digits.",
    )
    sub = p.add_subparsers(dest="zoo_command", metavar="ACTION")
    sub.required = True

    lp = sub.add_parser("list", help="table of the models (name, params, GFLOP, input, trained, description)")
    lp.add_argument("--json", action="store_true", help="print a JSON list instead of a table")
    lp.set_defaults(func=_list)

    ep = sub.add_parser("export", help="write one model as an ONNX file")
    ep.add_argument("name", help=f"zoo model name: {', '.join(zoo.model_names())}")
    ep.add_argument("-o", "--output", required=True, metavar="FILE.onnx", help="file to write")
    ep.add_argument("--force", action="store_true", help="overwrite FILE if it exists")
    ep.add_argument("--seed", type=int, default=0,
                    help="seed of synthetic weights (default 0; trained models ignore it)")
    ep.set_defaults(func=_export)


def _fmt_params(n: int) -> str:
    if n >= 1_000_000:
        return f"{n / 1e6:.2f}M"
    if n >= 1_000:
        return f"{n / 1e3:.1f}K"
    return str(n)


def _list(args: argparse.Namespace) -> int:
    entries = zoo.list_models()
    if args.json:
        rows = [
            {
                "name": e.name,
                "params": e.params,
                "flops": e.flops,
                "gflop": round(e.gflop, 6),
                "input_shape": list(e.input_shape),
                "output_shape": list(e.output_shape),
                "trained": e.trained,
                "paper": e.paper,
                "test_accuracy": e.test_accuracy,
                "description": e.description,
            }
            for e in entries
        ]
        print(json.dumps(rows, indent=2))
        return 0
    header = ("name", "params", "GFLOP", "input", "trained", "description")
    rows = []
    for e in entries:
        trained = f"yes ({e.test_accuracy:.1%})" if e.trained else "no"
        name = e.name + (" *" if e.paper else "")
        rows.append((name, _fmt_params(e.params), f"{e.gflop:.4f}", "x".join(map(str, e.input_shape)),
                     trained, e.description))
    widths = [max(len(r[i]) for r in rows + [header]) for i in range(len(header) - 1)]
    right = {1, 2}
    for r in [header] + rows:
        cells = [r[i].rjust(widths[i]) if i in right else r[i].ljust(widths[i]) for i in range(len(widths))]
        print("  ".join(cells + [r[-1]]).rstrip())
    print("* = model of the DeepX paper's evaluation; GFLOP = 2 x MACs of Conv/Gemm; "
          "trained accuracy is on the held-out digits test split")
    return 0


def _export(args: argparse.Namespace) -> int:
    path = zoo.export(args.name, args.output, overwrite=args.force, seed=args.seed)
    entry = zoo.get_entry(args.name)
    size = path.stat().st_size
    print(f"wrote {path} ({size / 1e6:.1f} MB): {entry.name}, {entry.params:,} params, "
          f"{entry.gflop:.3f} GFLOP, input {'x'.join(map(str, entry.input_shape))}")
    return 0
