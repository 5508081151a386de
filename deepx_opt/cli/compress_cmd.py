"""``deepx compress``: Runtime Layer Compression of a model within an accuracy-loss limit.

Picks one SVD rank per weighted layer (or leaves it dense) for the fewest FLOPs whose conservative loss bound
(``loss_bound_pts``: the estimate with its safety margins) stays within ``--max-accuracy-loss`` points, and
writes the factorised model as ONNX (runnable by onnxruntime or any ONNX runtime). It reports the point
estimate of the loss (``predicted_loss_pts``, no margin) next to the bound.

Example
-------
::

    deepx compress digits_mlp --max-accuracy-loss 1 --calib x_val.npy --labels y_val.npy -o small.onnx --json
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from deepx_opt.cli._common import add_model_args, check_output_path, load_model_arg, print_json, print_table
from deepx_opt.errors import InputError

__all__ = ["add_parser", "run", "parse_ranks", "load_array"]


def add_parser(subparsers) -> None:
    from deepx_opt.graphs.candidates import DEFAULT_METHOD

    p = subparsers.add_parser(
        "compress",
        help="factorise layers (SVD) for the fewest FLOPs within an accuracy-loss limit; write ONNX",
        description=(
            "Runtime Layer Compression: choose an SVD rank per weighted layer so that a conservative bound of the "
            "top-1 loss stays within --max-accuracy-loss points (an additive estimate fitted on the --calib data: "
            "top-1 disagreement with the dense model, or with --labels --target loss the measured accuracy drop), "
            "check the choice on the calibration data, and write the factorised model as ONNX."
        ),
    )
    add_model_args(p)
    p.add_argument("--max-accuracy-loss", type=float, required=True, metavar="PTS",
                   help="largest top-1 accuracy loss, in percentage points (e.g. 1 = one point); the loss bound "
                        "(with the estimator's safety margins) is held to it")
    p.add_argument("--calib", required=True, metavar="X.npy",
                   help="calibration inputs (.npy), samples first; held-out data measures best, the model's "
                        "training data also works (docs/rlc.md)")
    p.add_argument("--labels", metavar="Y.npy", help="integer labels of the calibration samples (.npy)")
    p.add_argument("--ranks", metavar="R,R,...",
                   help="candidate ranks for every layer: integers (absolute), fractions of min(K,N) (0.25), "
                        "kept-energy fractions (e0.95); default: 1/2..1/32 and e0.99,e0.95,e0.9")
    p.add_argument("--method", choices=["weight", "data"], default=DEFAULT_METHOD,
                   help=f"plain SVD of the weights or activation-weighted SVD on the calibration data (default {DEFAULT_METHOD})")
    p.add_argument("--target", choices=["disagreement", "loss"], default=None,
                   help="what the accuracy estimate is fitted to: top-1 disagreement with the dense model (default; "
                        "conservative) or, with --labels, the measured accuracy drop")
    p.add_argument("--objective", choices=["flops", "weight_bytes"], default="flops",
                   help="what to minimise (default flops)")
    p.add_argument("--no-verify", action="store_true",
                   help="trust the additive estimate alone; by default the chosen configuration is measured whole on "
                        "the calibration data and the budget tightened until that measurement (+ margins) meets the limit")
    p.add_argument("--margin", type=float, default=None, metavar="FRAC",
                   help="extra multiplicative safety margin of the accuracy bound (default 0: the bound is "
                        "already a 90%% quantile and adds 0.2 points per compressed layer; 0.1 = +10%%); the reported "
                        "point estimate carries no margin")
    p.add_argument("-o", "--out", required=True, metavar="OUT.onnx", help="where to write the compressed model")
    p.add_argument("--force", action="store_true", help="overwrite OUT.onnx if it exists")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=run)


def load_array(path: str, what: str) -> np.ndarray:
    """Load a ``.npy`` file, or raise :class:`InputError` naming the file."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{what} file '{p}' does not exist; accepted: a .npy file written by numpy.save")
    try:
        return np.load(p, allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise InputError(f"{what} file '{p}' is not a readable .npy array ({exc}); accepted: a .npy file written by numpy.save") from None


def parse_ranks(spec: str | None) -> list | None:
    """``"16,0.25,e0.95"`` → ``[16, 0.25, "e0.95"]``."""
    if spec is None:
        return None
    out: list = []
    for item in (s.strip() for s in spec.split(",")):
        if not item:
            continue
        try:
            if item.startswith("e"):
                float(item[1:])
                out.append(item)
            elif any(c in item for c in ".eE"):
                out.append(float(item))
            else:
                out.append(int(item))
        except ValueError:
            raise InputError(
                f"--ranks item {item!r} is not understood; accepted: integers (16), fractions (0.25), energies (e0.95)"
            ) from None
    if not out:
        raise InputError(f"--ranks {spec!r} names no rank; accepted: e.g. 16,0.25,e0.95")
    return out


def run(args: argparse.Namespace) -> int:
    import onnx

    from deepx_opt.graphs.accuracy import check_calibration, top1
    from deepx_opt.graphs.candidates import candidates, select_ranks
    from deepx_opt.graphs.rlc_onnx import OrtEvaluator, to_onnx

    out_path = check_output_path(args.out, args.force)
    if not np.isfinite(args.max_accuracy_loss) or args.max_accuracy_loss < 0:
        raise InputError(f"--max-accuracy-loss {args.max_accuracy_loss} is out of range; accepted: a number >= 0 (points)")
    model = load_model_arg(args.model, args.input_shape, args.cut_outputs)
    x = load_array(args.calib, "--calib")
    y = load_array(args.labels, "--labels") if args.labels else None
    feeds, labels = check_calibration(model, x, y)
    cg = candidates(model, ranks=parse_ranks(args.ranks), calib=feeds, labels=labels, method=args.method,
                    margin=args.margin, target=args.target)
    choice = select_ranks(cg, args.max_accuracy_loss, objective=args.objective, verify=not args.no_verify)
    small = cg.apply(choice)
    proto = to_onnx(small)
    onnx.save(proto, str(out_path))

    before, after = cg.totals(), cg.totals(choice)
    report = {
        "model": model.name,
        "output": str(out_path),
        "max_accuracy_loss_pts": float(args.max_accuracy_loss),
        "factor_method": cg.method,
        "estimator": cg.estimator.method,
        "objective": args.objective,
        "verified_on_calibration": not args.no_verify,
        "ranks": {v: r for v, r in choice.items()},
        # two numbers: the point estimate of the loss (no safety margin) and the conservative bound that was
        # held to the limit; verified runs take both from measuring the chosen configuration whole on the
        # calibration data, --no-verify from the additive per-layer estimates (Σ a_point, Σ a)
        "prediction": "additive" if args.no_verify else "verified",
        "predicted_loss_pts": cg.predicted_loss_point_pts(choice) if args.no_verify else cg.verified_loss_point_pts(choice),
        "loss_bound_pts": cg.predicted_loss_pts(choice) if args.no_verify else cg.verified_loss_pts(choice),
        "sum_a_point_pts": cg.predicted_loss_point_pts(choice),
        "sum_a_pts": cg.predicted_loss_pts(choice),
        # the verified bound (same as loss_bound_pts on verified runs; kept for earlier readers of the report)
        "verified_loss_pts": None if args.no_verify else cg.verified_loss_pts(choice),
        "before": before,
        "after": after,
        "flops_saved_pct": 100.0 * (1 - after["flops"] / before["flops"]) if before["flops"] else 0.0,
        "weight_bytes_saved_pct": 100.0 * (1 - after["weight_bytes"] / before["weight_bytes"]) if before["weight_bytes"] else 0.0,
        "layers": [],
        "notes": list(cg.notes),
    }
    for v, r in choice.items():
        d, o = cg.option(v, None), cg.option(v, r)
        fz = cg.estimator.factorizers[v]
        report["layers"].append({
            "layer": v, "rank": r, "max_rank": fz.max_rank, "flops_before": d.flops, "flops_after": o.flops,
            "weight_bytes_before": d.weight_bytes, "weight_bytes_after": o.weight_bytes,
            "predicted_loss_pts": o.accuracy_loss_point_pts, "loss_bound_pts": o.accuracy_loss_pts,
        })
    # measure the file actually written, with onnxruntime, on the calibration data
    ref = OrtEvaluator(model).run(feeds, outputs=[model.outputs[0]])[model.outputs[0]]
    got = _run_file(out_path, feeds, model.outputs[0])
    measured = {"on": "calibration data", "samples": int(ref.shape[0]),
                "agreement_pct": 100.0 * float(np.mean(top1(got) == top1(ref)))}
    if labels is not None:
        measured["dense_top1_pct"] = 100.0 * float(np.mean(top1(ref) == labels))
        measured["compressed_top1_pct"] = 100.0 * float(np.mean(top1(got) == labels))
        measured["measured_loss_pts"] = measured["dense_top1_pct"] - measured["compressed_top1_pct"]
    report["measured"] = measured

    if args.json:
        print_json(report)
        return 0
    rows = []
    for row in report["layers"]:
        rows.append([row["layer"], "dense" if row["rank"] is None else f"{row['rank']}/{row['max_rank']}",
                     f"{row['flops_before']:,}", f"{row['flops_after']:,}", f"{row['weight_bytes_before']:,}",
                     f"{row['weight_bytes_after']:,}", f"{row['predicted_loss_pts']:.2f}", f"{row['loss_bound_pts']:.2f}"])
    print_table(["layer", "rank", "flops before", "flops after", "bytes before", "bytes after", "pred loss pts",
                 "bound pts"], rows)
    print(f"FLOPs {before['flops']:,} -> {after['flops']:,} ({report['flops_saved_pct']:.1f}% fewer); weight bytes "
          f"{before['weight_bytes']:,} -> {after['weight_bytes']:,} ({report['weight_bytes_saved_pct']:.1f}% fewer)")
    est = cg.estimator
    margins = [f"+{est.margin:.0%}"] if est.margin else []
    if est.layer_margin_pts and est.method != "weight-energy":
        margins.append(f"+{est.layer_margin_pts:g} points per compressed layer")
    how = ("additive per-layer estimates" if args.no_verify
           else "verified: the choice measured whole on the calibration data")
    line = (f"predicted top-1 loss {report['predicted_loss_pts']:.2f} points (point estimate, {how}); bound "
            f"{report['loss_bound_pts']:.2f} points{' (' + ', '.join(margins) + ')' if margins else ''} within the limit "
            f"{args.max_accuracy_loss:g} (estimator: {est.method})")
    if labels is not None:
        line += f"; measured on the calibration data: {measured['measured_loss_pts']:.2f} points"
    print(line)
    print(f"top-1 agreement with the dense model on the calibration data: {measured['agreement_pct']:.1f}%")
    for n in report["notes"]:
        print(f"note: {n}")
    print(f"wrote {out_path}")
    return 0


def _run_file(path: Path, feeds: dict, output: str) -> np.ndarray:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.log_severity_level = 3
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    dims = sess.get_inputs()[0].shape
    if isinstance(dims[0], str):
        return sess.run([output], feeds)[0]
    n = next(iter(feeds.values())).shape[0]
    b = int(dims[0])
    return np.concatenate([sess.run([output], {k: v[i:i + b] for k, v in feeds.items()})[0] for i in range(0, n, b)])
