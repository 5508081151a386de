"""Re-score the GPU energy models of earlier `cost_validation.py` runs with the current power-model fit.

`benchmarks/cost_validation.py` keeps everything a power-model fit needs: the calibrated profile holds the
NVML samples calibration measured (`power_model.fit.samples_data`: energy per run, block works, block times)
and the latency models; `cost_validation.json` holds every NVML validation measurement
(`energy_passes`: energy per inference, the blocks' works and primed times). This script refits the power
model of each run's calibration samples with the current :func:`deepx_opt.cost_models.power.fit_power_model`
(optionally re-based on the latency predictions: ``--basis predicted``) and predicts every validation
measurement of every given run from *predicted* latencies, as the planner does — so a change of the fit or
of its selection is checked against real NVML measurements without a GPU, and across sessions (a model
fitted in one session, scored on the measurements of another).

Needs only numpy, scipy and this package. Prints tables; writes ``energy_refit.json`` under ``--out``.

    python benchmarks/energy_refit.py /tmp/energy_results/run3 /tmp/energy_results/run4 --out /tmp/refit
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np


def _find(d: Path, name: str) -> Path:
    hits = sorted(d.rglob(name))
    if not hits:
        raise SystemExit(f"no {name} under {d}")
    return hits[0]


def load_run(d: Path, processor: str) -> dict:
    """Calibration samples, validation measurements and the profile of one cost_validation output folder."""
    from deepx_opt.cost_models import load_profile
    from deepx_opt.cost_models.power import sample_from_list

    res = json.loads(_find(d, "cost_validation.json").read_text())
    prof = load_profile(str(_find(d, "cost_validation_profile.json")))
    proc = prof.processor(processor)
    if not proc.power_model or not proc.power_model.get("fit", {}).get("samples_data"):
        raise SystemExit(f"{d}: processor {processor!r} has no power model with stored samples")
    cal = [sample_from_list(x) for x in proc.power_model["fit"]["samples_data"]]
    rows = [r for r in (res.get("energy_passes") or res.get("energy") or [])
            if r["processor"] == processor and "sample" in r and r["variant"] != "dense again"]
    val = [(r, sample_from_list(r["sample"])) for r in rows]
    return {"dir": str(d), "profile": prof, "cal": cal, "val": val}


def predicted_blocks(prof, processor: str, sample, total_ms: float | None = None) -> list:
    """``(predicted µs, works)`` per block. Samples stored before the works kept their im2col and context
    bytes (features of the latency models) predict slightly off: with ``total_ms`` (the prediction made on
    the device, stored in the row) the blocks are scaled to it."""
    from deepx_opt.cost_models.latency import predict_works_us

    out = [(predict_works_us(prof, processor, ws), ws) for _, ws in sample.blocks]
    if total_ms:
        k = total_ms * 1e3 / sum(t for t, _ in out)
        out = [(t * k, ws) for t, ws in out]
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("dirs", nargs="+", help="cost_validation.py output folders (searched recursively)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--processor", default="opencl:0")
    ap.add_argument("--basis", default="measured", choices=["measured", "predicted"],
                    help="block times of the calibration runs: as stored (primed measurements) or re-based on "
                         "the run's latency predictions (refit_power_model)")
    args = ap.parse_args(argv)
    from deepx_opt.cost_models.energy import plan_energy_uj
    from deepx_opt.cost_models.profile import profile_from_dict
    from deepx_opt.cost_models.power import fit_power_model, refit_power_model

    runs = [load_run(Path(d), args.processor) for d in args.dirs]
    out = {"basis": args.basis, "fits": [], "scores": []}
    for i, fr in enumerate(runs):
        prof = fr["profile"]
        if args.basis == "predicted":
            pm = refit_power_model(prof, args.processor)
        else:
            model, _ = fit_power_model(fr["cal"])
            pm = model.to_dict()
        d = prof.to_dict()
        next(p for p in d["processors"] if p["name"] == args.processor)["power_model"] = pm
        fitted = profile_from_dict(d)
        fit = pm["fit"]
        print(f"\n== fitted on {fr['dir']}: {fit['chosen']}: "
              + ", ".join(f"{f}={c:.4g}" for f, c in zip(pm["features"], pm["coef_"])))
        print("   " + "  ".join(f"{c['name']} {c['loo_mape_pct']:.1f}%{'' if c.get('eligible', True) else '(x)'}"
                               for c in fit["candidates"]))
        out["fits"].append({"dir": fr["dir"], "power_model": {k: v for k, v in pm.items() if k != "fit"},
                            "chosen": fit["chosen"], "candidates": fit["candidates"]})
        for j, tr in enumerate(runs):
            tprof = tr["profile"]
            per = {}
            for r, s in tr["val"]:
                blocks = predicted_blocks(tprof, args.processor, s, r.get("predicted_ms"))
                after = plan_energy_uj(fitted, blocks=[(args.processor, t, ws) for t, ws in blocks]).total_uj
                before = tprof.processor(args.processor).active_power_w * sum(t for t, _ in blocks)
                per.setdefault((r["model"], r["variant"]), []).append((s.energy_uj, before, after))
            rows = []
            for (m, v), xs in per.items():
                meas = float(np.mean([x[0] for x in xs]))
                rows.append({"model": m, "variant": v, "measured_mj": meas / 1e3,
                             "passes_mj": [x[0] / 1e3 for x in xs], "before_mj": xs[0][1] / 1e3,
                             "after_mj": xs[0][2] / 1e3,
                             "before_err_pct": (xs[0][1] - meas) / meas * 100,
                             "after_err_pct": (xs[0][2] - meas) / meas * 100})
            eb = np.array([abs(r["before_err_pct"]) for r in rows])
            ea = np.array([abs(r["after_err_pct"]) for r in rows])
            score = {"fit_on": fr["dir"], "test_on": tr["dir"], "n": len(rows),
                     "before_mape_pct": float(eb.mean()), "after_mape_pct": float(ea.mean()),
                     "before_within15_pct": float((eb <= 15).mean() * 100),
                     "after_within15_pct": float((ea <= 15).mean() * 100),
                     "after_bias_pct": float(np.mean([r["after_err_pct"] for r in rows])), "rows": rows}
            out["scores"].append(score)
            tag = "same session" if i == j else "other session"
            print(f"   test on {tr['dir']} ({tag}, {len(rows)} model variants, mean of the NVML passes): "
                  f"before MAPE {score['before_mape_pct']:.1f}% ({score['before_within15_pct']:.0f}% within 15%), "
                  f"after {score['after_mape_pct']:.1f}% ({score['after_within15_pct']:.0f}% within 15%, "
                  f"bias {score['after_bias_pct']:+.1f}%)")
            if i == j:
                for r in sorted(rows, key=lambda r: (r["model"], r["variant"])):
                    print(f"      {r['model']:11s} {r['variant']:10s} measured {r['measured_mj']:6.1f} mJ "
                          f"({'/'.join(f'{x:.0f}' for x in r['passes_mj'])})  before {r['before_mj']:6.1f} "
                          f"({r['before_err_pct']:+4.0f}%)  after {r['after_mj']:6.1f} ({r['after_err_pct']:+4.0f}%)")
    o = Path(args.out)
    o.mkdir(parents=True, exist_ok=True)
    (o / "energy_refit.json").write_text(json.dumps(out, indent=1))
    print(f"\nwrote {o / 'energy_refit.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
