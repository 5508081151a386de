"""RLC accuracy benchmark: predicted vs measured top-1 loss of rank choices on the trained digits models.

For each trained zoo model (``digits_mlp``, ``digits_cnn``), factorisation method (plain weight SVD vs
data-aware SVD), accuracy-loss limit (0.5, 1, 2, 5 points) and calibration draw (``--seeds``): build the
candidates on the calibration data (with labels), pick the least-FLOPs ranks within the limit as
``deepx compress`` does (``--no-verify``: the planner's plain sum of ``a[v,r]``), write the factorised model
as ONNX and measure it with onnxruntime on evaluation data the estimator never saw.

Protocols (``--calib-source``):

* ``train`` (default): calibrate on a random stratified subset of the training split (``--calib-samples``,
  default 600 of 1,257, as ``deepx demo`` does; one draw per seed) and measure on the whole test split (540
  images, one sample = 0.19 points). No test label is used to choose ranks.
* ``test-half``: calibrate on a stratified half of the test split and measure on the other half (270 each;
  one seed = one split).

Targets (issue "RLC"): measured loss ≤ limit in every row; |predicted − measured| ≤ 1 point in every row;
at a 2-point limit ≥ 50 % fewer weight bytes on the fully connected model.

Run: ``python benchmarks/rlc_accuracy.py --out bench-out`` (about 10 s on 2 cores). Prints every row, the
per model × method × limit table (markdown) and the totals, and writes ``rlc_accuracy.json``. Only numpy,
onnx, onnxruntime and scipy are needed.
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


def calib_subset(y: np.ndarray, n: int, seed: int) -> np.ndarray:
    """``n`` indices of ``y`` drawn at random (stratified by class), sorted; all of them when ``n >= len(y)``."""
    if n >= len(y):
        return np.arange(len(y))
    rng = np.random.default_rng(1000 + seed)
    classes, counts = np.unique(y, return_counts=True)
    take = np.floor(counts * n / len(y)).astype(int)
    for i in np.argsort(-(counts * n / len(y) - take))[: n - int(take.sum())]:
        take[i] += 1
    idx = [rng.choice(np.flatnonzero(y == c), k, replace=False) for c, k in zip(classes, take)]
    return np.sort(np.concatenate(idx))


def run(seeds: int, calib_source: str, *, calib_samples: int = 600, verify: bool = False, target: str | None = None,
        margin: float | None = None, coverage: float | None = None) -> list[dict]:
    rows = []
    for name in MODELS:
        proto = zoo.build(name)
        model = load_onnx(proto)
        d = zoo.digits_dataset().for_model(name)
        for s in range(seeds):
            if calib_source == "train":
                ci = calib_subset(d.y_train, calib_samples, s)
                xc, yc, xe, ye = d.x_train[ci], d.y_train[ci], d.x_test, d.y_test
            else:
                ci, ei = split(len(d.y_test), d.y_test, s)
                xc, yc, xe, ye = d.x_test[ci], d.y_test[ci], d.x_test[ei], d.y_test[ei]
            dense_acc = 100 * float(np.mean(top1(ort_probs(proto.SerializeToString(), xe)) == ye))
            for method in METHODS:
                t0 = time.perf_counter()
                cg = candidates(model, calib=xc, labels=yc, method=method, seed=s, target=target, margin=margin,
                                coverage=coverage)
                build_s = time.perf_counter() - t0
                before = cg.totals()
                for limit in LIMITS:
                    choice = select_ranks(cg, limit, verify=verify)
                    small = cg.apply(choice)
                    probs = ort_probs(to_onnx(small).SerializeToString(), xe)
                    acc = 100 * float(np.mean(top1(probs) == ye))
                    after = cg.totals(choice)
                    sum_a = cg.predicted_loss_pts(choice)
                    verified = cg.verified_loss_pts(choice) if verify else None
                    rows.append({
                        "model": name, "method": method, "split": s, "limit_pts": limit,
                        # the prediction: the verified one (the choice measured whole on the calibration data,
                        # × (1 + margin)) when selecting as `deepx compress` does, else the planner's Σ a
                        "predicted_pts": sum_a if verified is None else verified,
                        "sum_a_pts": sum_a, "verified_pts": verified,
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
                "sum_a_within_1pt": sum(abs(x["sum_a_pts"] - x["measured_pts"]) <= 1.0 + 1e-9 for x in r),
                "mean_abs_err_pts": float(np.mean(err)),
                "max_abs_err_pts": float(np.max(err)),
                "mean_bytes_saved_at_2pts_pct": float(np.mean(at2)) if at2 else None,
                "mean_flops_saved_pct": {str(lim): float(np.mean([x["flops_saved_pct"] for x in r if x["limit_pts"] == lim]))
                                         for lim in LIMITS},
            }
    return out


def table(rows: list[dict]) -> list[dict]:
    """Per model × method × limit: means over the seeds, the worst measured loss and the row counts."""
    out = []
    for name in MODELS:
        for method in METHODS:
            for limit in LIMITS:
                r = [x for x in rows if x["model"] == name and x["method"] == method and x["limit_pts"] == limit]
                if not r:
                    continue
                out.append({
                    "model": name, "method": method, "limit_pts": limit, "rows": len(r),
                    "mean_predicted_pts": float(np.mean([x["predicted_pts"] for x in r])),
                    "mean_sum_a_pts": float(np.mean([x["sum_a_pts"] for x in r])),
                    "sum_a_within_1pt": sum(abs(x["sum_a_pts"] - x["measured_pts"]) <= 1.0 + 1e-9 for x in r),
                    "mean_measured_pts": float(np.mean([x["measured_pts"] for x in r])),
                    "max_measured_pts": float(np.max([x["measured_pts"] for x in r])),
                    "within_limit": sum(x["measured_pts"] <= limit + 1e-9 for x in r),
                    "within_1pt": sum(abs(x["predicted_pts"] - x["measured_pts"]) <= 1.0 + 1e-9 for x in r),
                    "mean_flops_saved_pct": float(np.mean([x["flops_saved_pct"] for x in r])),
                    "mean_bytes_saved_pct": float(np.mean([x["bytes_saved_pct"] for x in r])),
                })
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=None, help="folder for the JSON results")
    ap.add_argument("--seeds", type=int, default=5,
                    help="calibration draws (default 5): random training subsets (--calib-source train) or "
                         "calibration/evaluation splits of the test set (--calib-source test-half)")
    ap.add_argument("--calib-source", choices=["train", "test-half"], default="train",
                    help="calibrate on a random subset of the training split and measure on the whole test split "
                         "(default), or calibrate on half of the test split and measure on the other half")
    ap.add_argument("--calib-samples", type=int, default=600,
                    help="training samples per calibration draw (default 600 of 1257; --calib-source train)")
    ap.add_argument("--no-verify", action="store_true",
                    help="select with the planner's plain sum of a[v,r] only (default: as `deepx compress` does, "
                         "re-measure the choice on the calibration data and tighten)")
    ap.add_argument("--target", choices=["disagreement", "loss"], default=None, help="estimator target (default: the library's)")
    ap.add_argument("--margin", type=float, default=None, help="estimator margin (default: the library's)")
    ap.add_argument("--coverage", type=float, default=None, help="estimator coverage (default: the library's)")
    ap.add_argument("--quiet", action="store_true", help="print only the summary tables")
    args = ap.parse_args(argv)
    verify = not args.no_verify
    t0 = time.perf_counter()
    rows = run(args.seeds, args.calib_source, calib_samples=args.calib_samples, verify=verify, target=args.target,
               margin=args.margin, coverage=args.coverage)
    wall = time.perf_counter() - t0
    if not args.quiet:
        hdr = (f"{'model':<11} {'method':<6} {'seed':>4} {'limit':>5} {'Σa':>6} {'pred':>6} {'meas':>6} {'|err|':>5} "
               f"{'flops-':>7} {'bytes-':>7}  ranks")
        print(hdr)
        print("-" * len(hdr))
        for x in rows:
            ranks = ",".join(f"{k}:{'-' if v is None else v}" for k, v in x["ranks"].items())
            flag = "" if x["measured_pts"] <= x["limit_pts"] + 1e-9 else "  OVER"
            if abs(x["predicted_pts"] - x["measured_pts"]) > 1.0 + 1e-9:
                flag += "  ERR>1"
            print(f"{x['model']:<11} {x['method']:<6} {x['split']:>4} {x['limit_pts']:>5.1f} {x['sum_a_pts']:>6.2f} "
                  f"{x['predicted_pts']:>6.2f} "
                  f"{x['measured_pts']:>6.2f} {abs(x['predicted_pts'] - x['measured_pts']):>5.2f} "
                  f"{x['flops_saved_pct']:>6.1f}% {x['bytes_saved_pct']:>6.1f}%  {ranks}{flag}")
        print()
    tab = table(rows)
    print("| model | method | limit | mean Σa | mean pred | mean meas | max meas | rows ≤ limit | rows \\|err\\|≤1 "
          "| rows \\|Σa − meas\\|≤1 | FLOPs saved | bytes saved |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for t in tab:
        print(f"| {t['model']} | {t['method']} | {t['limit_pts']:g} | {t['mean_sum_a_pts']:.2f} | {t['mean_predicted_pts']:.2f} | "
              f"{t['mean_measured_pts']:.2f} | {t['max_measured_pts']:.2f} | {t['within_limit']}/{t['rows']} | "
              f"{t['within_1pt']}/{t['rows']} | {t['sum_a_within_1pt']}/{t['rows']} | {t['mean_flops_saved_pct']:.1f}% | "
              f"{t['mean_bytes_saved_pct']:.1f}% |")
    summary = summarise(rows)
    print()
    print(f"{'model/method':<18} {'rows':>4} {'<=limit':>7} {'|err|<=1':>8} {'mean|err|':>9} {'max|err|':>8} {'bytes- @2':>9}")
    for k, s in summary.items():
        b2 = "-" if s["mean_bytes_saved_at_2pts_pct"] is None else f"{s['mean_bytes_saved_at_2pts_pct']:.1f}%"
        print(f"{k:<18} {s['rows']:>4} {s['within_limit']:>7} {s['within_1pt']:>8} {s['mean_abs_err_pts']:>9.2f} "
              f"{s['max_abs_err_pts']:>8.2f} {b2:>9}")
    n_ok = sum(s["within_limit"] for s in summary.values())
    n_err = sum(s["within_1pt"] for s in summary.values())
    n_err_a = sum(s["sum_a_within_1pt"] for s in summary.values())
    print(f"\nall: measured ≤ limit in {n_ok}/{len(rows)} rows, |pred − meas| ≤ 1 point in {n_err}/{len(rows)} rows "
          f"(|Σa − meas| ≤ 1 point in {n_err_a}/{len(rows)})")
    where = ("whole test split" if args.calib_source == "train" else "held-out half of the test split")
    print(f"(Σa: the planner's additive estimate; pred: {'verified (measured whole on calibration data × (1 + margin))' if verify else 'Σa'}; "
          f"meas: top-1 loss in points measured with onnxruntime on the {where}; "
          f"{'verified' if verify else 'plain Σa'} selection; wall {wall:.1f} s)")
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        fname = "rlc_accuracy.json" if verify else "rlc_accuracy_no_verify.json"
        (out / fname).write_text(json.dumps(
            {"rows": rows, "table": tab, "summary": summary, "calib_source": args.calib_source,
             "calib_samples": args.calib_samples, "verify": verify, "target": args.target, "margin": args.margin,
             "coverage": args.coverage, "wall_s": wall}, indent=2))
        print(f"wrote {out / fname}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
