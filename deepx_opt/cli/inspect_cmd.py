"""``deepx inspect MODEL``: the layer table of a model (unit blocks, shapes, GFLOP, params, MB)."""

from __future__ import annotations

from deepx_opt.cli._common import add_model_args, load_model_arg, print_json, print_table


def add_parser(sub) -> None:
    p = sub.add_parser("inspect", help="show a model's unit blocks (layer table and totals)",
                       description="Import MODEL (an .onnx file or a zoo name) and print its unit blocks: "
                                   "op, output shape, GFLOP, parameters, weight MB.")
    add_model_args(p)
    p.add_argument("--json", action="store_true", help='print {"layers": [...], "totals": {...}} instead of a table')
    p.set_defaults(func=run)


def run(args) -> int:
    from deepx_opt.graphs import layer_table, totals

    model = load_model_arg(args.model, args.input_shape, args.cut_outputs)
    rows = layer_table(model)
    tot = totals(model)
    if args.json:
        print_json({"model": model.name, "inputs": {k: v.to_dict() for k, v in model.inputs.items()},
                    "outputs": model.outputs, "notes": model.notes, "layers": rows, "totals": tot})
        return 0
    print(f"model {model.name}: inputs " + ", ".join(f"{k} {list(v.shape)} {v.dtype}" for k, v in model.inputs.items()))
    for note in model.notes:
        print(f"note: {note}")
    table = []
    for r in rows:
        op = r["op"] + ("+" + "+".join(r["epilogue"]) if r["epilogue"] else "")
        shape = "×".join(str(d) for d in r["output_shapes"][0]) if r["output_shapes"] else "-"
        table.append([r["name"], op, shape, f"{r['flops'] / 1e9:.4f}", f"{r['params']:,}", f"{r['weight_bytes'] / 1e6:.2f}"])
    print_table(["layer", "op", "output", "GFLOP", "params", "MB"], table, align="lllrrr")
    print(f"total: {tot['layers']} blocks, {tot['flops'] / 1e9:.3f} GFLOP, {tot['params']:,} params, "
          f"{tot['weight_bytes'] / 1e6:.2f} MB weights, largest activation {tot['max_output_bytes'] / 1e6:.2f} MB")
    return 0
