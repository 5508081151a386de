"""RLC accuracy benchmark: predicted vs measured top-1 loss of rank choices on the trained digits models.

For each trained zoo model (``digits_mlp``, ``digits_cnn``), factorisation method (plain weight SVD vs
data-aware SVD), accuracy-loss limit (0.5, 1, 2, 5 points) and split of the held-out test set into a
calibration half and an evaluation half (``--splits``): build the candidates on the calibration half (with
labels), pick the least-FLOPs ranks within the limit, write the factorised model as ONNX and measure it with
onnxruntime on the *evaluation* half, which the estimator never saw.

Targets (issue): measured loss ≤ limit in every row; |predicted − measured| ≤ 1 point; at a 2-point limit
≥ 50 % fewer weight bytes on the fully connected model.

Run: ``python benchmarks/rlc_accuracy.py --out bench-out`` (about a minute on 2 cores). Prints the table
and writes ``rlc_accuracy.json``. Only numpy, onnx, onnxruntime, scipy and scikit-learn are needed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from deepx_opt import zoo  # noqa: E402
from deepx_opt.graphs import load_onnx  # noqa: E402
from deepx_opt.graphs.accuracy import top1  # noqa: E402
from deepx_opt.graphs.candidates import candidates, select_ranks  # noqa: E402
from deepx_opt.graphs.rlc_onnx import to_onnx  # noqa: E402

LIMITS = (0.5, 1.0, 2.0, 5.0)
MODELS = ("digits_mlp", "digits_cnn")
METHODS = ("weight", "data")


def ort_probs(proto_bytes: bytes, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.log_severity_level = 3
    sess = ort.InferenceSession(proto_bytes, so, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    if isinstance(sess.get_inputs()[0].shape[0], str):
        return sess.run(None, {name: x})[0]
    return np.concatenate([sess.run(None, {name: x[i:i + 1]})[0] for i in range(x.shape[0])])


def split(n: int, y: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A stratified half/half split of indices 0..n-1."""
    rng = np.random.default_rng(seed)
    cal, ev = [], []
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        cal += list(idx[: len(idx) // 2])
        ev += list(idx[len(idx) // 2:])
    return np.sort(cal), np.sort(ev)


def run(splits: int, calib_source: str, verify: bool = False) -> list[dict]:
    rows = []
    for name in MODELS:
        proto = zoo.build(name)
        model = load_onnx(proto)
        d = zoo.digits_dataset().for_model(name)
        for s in range(splits):
            if calib_source == "train":
                xc, yc, xe, ye = d.x_train, d.y_train, d.x_test, d.y_test
            else:
                ci, ei = split(len(d.y_test), d.y_test, s)
                xc, yc, xe, ye = d.x_test[ci], d.y_test[ci], d.x_test[ei], d.y_test[ei]
            dense_acc = 100 * float(np.mean(top1(ort_probs(proto.SerializeToString(), xe)) == ye))
            for method in METHODS:
                t0 = time.perf_counter()
                cg = candidates(model, calib=xc, labels=yc, method=method, seed=s)
                build_s = time.perf_counter() - t0
                before = cg.totals()
                for limit in LIMITS:
                    choice = select_ranks(cg, limit, verify=verify)
                    small = cg.apply(choice)
                    probs = ort_probs(to_onnx(small).SerializeToString(), xe)
                    acc = 100 * float(np.mean(top1(probs) == ye))
                    after = cg.totals(choice)
                    rows.append({
                        "model": name, "method": method, "split": s, "limit_pts": limit,
                        "predicted_pts": cg.predicted_loss_pts(choice),
                        "measured_pts": dense_acc - acc,
                        "dense_top1_pct": dense_acc, "compressed_top1_pct": acc,
                        "flops_saved_pct": 100 * (1 - after["flops"] / before["flops"]),
                        "bytes_saved_pct": 100 * (1 - after["weight_bytes"] / before["weight_bytes"]),
                        "ranks": choice, "calib_samples": int(len(yc)), "eval_samples": int(len(ye)),
                        "candidates_build_s": build_s, "estimator": cg.estimator.summary()["fit"],
                    })
    return rows


def summarise(rows: list[dict]) -> dict:
    out = {}
    for name in MODELS:
        for method in METHODS:
            r = [x for x in rows if x["model"] == name and x["method"] == method]
            if not r:
                continue
            err = [abs(x["predicted_pts"] - x["measured_pts"]) for x in r]
            at2 = [x["bytes_saved_pct"] for x in r if x["limit_pts"] == 2.0]
            out[f"{name}/{method}"] = {
                "rows": len(r),
                "within_limit": sum(x["measured_pts"] <= x["limit_pts"] + 1e-9 for x in r),
                "within_1pt": sum(e <= 1.0 + 1e-9 for e in err),
                "mean_abs_err_pts": float(np.mean(err)),
                "max_abs_err_pts": float(np.max(err)),
                "mean_bytes_saved_at_2pts_pct": float(np.mean(at2)) if at2 else None,
                "mean_flops_saved_pct": {str(lim): float(np.mean([x["flops_saved_pct"] for x in r if x["limit_pts"] == lim]))
                                         for lim in LIMITS},
            }
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=None, help="folder for rlc_accuracy.json")
    ap.add_argument("--splits", type=int, default=5, help="calibration/evaluation splits of the test set (default 5)")
    ap.add_argument("--calib-source", choices=["test-half", "train"], default="test-half",
                    help="calibrate on half of the test split (default) or on the training split (then evaluate on all "
                         "of the test split; optimistic: the model has seen that data)")
    ap.add_argument("--verify", action="store_true",
                    help="select as `deepx compress` does: re-measure the choice on the calibration data and tighten "
                         "(default: the planner's plain sum of a[v,r])")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    rows = run(args.splits if args.calib_source == "test-half" else 1, args.calib_source, args.verify)
    wall = time.perf_counter() - t0
    hdr = f"{'model':<11} {'method':<6} {'split':>5} {'limit':>5} {'pred':>6} {'meas':>6} {'|err|':>5} {'flops-':>7} {'bytes-':>7}  ranks"
    print(hdr)
    print("-" * len(hdr))
    for x in rows:
        ranks = ",".join(f"{k}:{'-' if v is None else v}" for k, v in x["ranks"].items())
        flag = "" if x["measured_pts"] <= x["limit_pts"] + 1e-9 else "  OVER"
        print(f"{x['model']:<11} {x['method']:<6} {x['split']:>5} {x['limit_pts']:>5.1f} {x['predicted_pts']:>6.2f} "
              f"{x['measured_pts']:>6.2f} {abs(x['predicted_pts'] - x['measured_pts']):>5.2f} {x['flops_saved_pct']:>6.1f}% "
              f"{x['bytes_saved_pct']:>6.1f}%  {ranks}{flag}")
    summary = summarise(rows)
    print()
    print(f"{'model/method':<18} {'rows':>4} {'<=limit':>7} {'|err|<=1':>8} {'mean|err|':>9} {'max|err|':>8} {'bytes- @2':>9}")
    for k, s in summary.items():
        b2 = "-" if s["mean_bytes_saved_at_2pts_pct"] is None else f"{s['mean_bytes_saved_at_2pts_pct']:.1f}%"
        print(f"{k:<18} {s['rows']:>4} {s['within_limit']:>7} {s['within_1pt']:>8} {s['mean_abs_err_pts']:>9.2f} "
              f"{s['max_abs_err_pts']:>8.2f} {b2:>9}")
    print(f"\n(pred/meas: top-1 loss in points; measured with onnxruntime on the held-out half; wall {wall:.1f} s)")
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        fname = "rlc_accuracy_verify.json" if args.verify else "rlc_accuracy.json"
        (out / fname).write_text(json.dumps(
            {"rows": rows, "summary": summary, "calib_source": args.calib_source, "verify": args.verify,
             "wall_s": wall}, indent=2))
        print(f"wrote {out / fname}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
