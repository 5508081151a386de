"""Fit the built-in profiles ``snapdragon800`` and ``tegrak1`` to the DeepX paper's published energies.

Run by hand (it rewrites the JSON files of this folder)::

    python -m deepx_opt.profiles.fit_paper            # fit, print the residual tables, write the profiles
    python -m deepx_opt.profiles.fit_paper --dry-run  # fit and print only

What is fixed and what is fitted
--------------------------------
Each device is first *sketched* from its datasheet (:data:`SKETCHES`): processors with plausible memory
capacities, active and idle powers, links (bandwidth, latency, energy per byte), and for every processor a
prior throughput (effective conv and GEMM GFLOP/s, memory GB/s, per-op overhead µs) that gives every work
kind a prior linear latency model ``c0 + c1·flops + c2·bytes`` (:func:`prior_coefficients`).

The fit then scales groups of those coefficients by multipliers ``m_g`` (:data:`GROUPS`: conv overhead, pool
overhead, LRN overhead, conv compute, GEMM overhead, GEMM compute — six per processor) and, for the wireless link, its
energy per byte and latency. The multipliers minimise, by ``scipy.optimize.least_squares``,

``Σ_cells ((E_pred − E_pub) / E_pub)²  +  λ² Σ_g (ln m_g)²``

where ``E_pred`` is the energy of the single-processor full-rank plan
(:func:`deepx_opt.cost_models.single.single_processor_cost`). The small log-prior (``λ`` = :data:`LAMBDA`)
keeps unconstrained groups (e.g. conv on the LPU, which runs no CNN) at their datasheet values and makes the
fit unique. Powers are not fitted (energy = power × time cannot separate them); they are labelled
``"modelled"``.

Honesty note: each processor has 2-4 published cells and 6 multipliers, so a small residual shows the
profile *can* reproduce the table, not that it predicts unseen figures. The paper's figures are not mutually
consistent under any FLOP/byte model (e.g. SVHN costs 28 % of AlexNet on the Tegra CPU with 1.4 % of its
FLOPs), so the fitted per-layer overheads are large; ``deepx profile check NAME`` prints every cell.
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from deepx_opt.cost_models.paper import PUBLISHED_MJ, compare_with_paper, paper_summaries, write_paper_summaries
from deepx_opt.cost_models.profile import WORK_KINDS, profile_from_dict, save_profile
from deepx_opt.cost_models.single import ModelSummary

__all__ = ["SKETCHES", "GROUPS", "LAMBDA", "prior_coefficients", "fit_device", "main"]

HERE = Path(__file__).resolve().parent

#: Weight of the log-prior on each multiplier (a factor e away from the datasheet costs like a 5 % miss).
LAMBDA = 0.05

#: Multipliers are kept within [BOUND, 1/BOUND].
BOUND = 1e-6

#: Multiplier groups: (group, kinds, coefficient indices it scales: 0 = c0, 1 = c1 (flops), 2 = c2 (bytes)).
GROUPS: tuple[tuple[str, tuple[str, ...], tuple[int, ...]], ...] = (
    ("conv_overhead", ("conv", "dwconv"), (0,)),
    ("pool_overhead", ("pool",), (0,)),
    ("lrn_overhead", ("lrn",), (0,)),
    ("conv_compute", ("conv", "dwconv", "pool", "lrn"), (1, 2)),
    ("gemm_overhead", ("gemm", "elementwise", "softmax", "concat", "reshape", "pad", "copy"), (0,)),
    ("gemm_compute", ("gemm", "elementwise", "softmax", "concat", "reshape", "pad", "copy"), (1, 2)),
)

GiB = 2**30
MiB = 2**20

#: Datasheet sketches. ``prior``: effective conv / GEMM GFLOP/s, memory GB/s, per-op overhead µs.
SKETCHES: dict[str, dict[str, Any]] = {
    "snapdragon800": {
        "description": "Qualcomm Snapdragon 800 (DeepX, IPSN 2016): 4x Krait 400 CPU, Hexagon QDSP6 v5 DSP, "
                       "cloud over WiFi. Latency coefficients fitted to the paper's single-processor energies "
                       "(deepx_opt/profiles/fit_paper.py); powers modelled.",
        "host": "cpu",
        "processors": [
            {"name": "cpu", "kind": "cpu", "memory_bytes": int(1.5 * GiB), "active_power_w": 3.0,
             "idle_power_w": 0.15, "prior": {"conv_gflops": 4.0, "gemm_gflops": 2.0, "mem_gbps": 4.0,
                                             "overhead_us": 200.0}},
            {"name": "dsp", "kind": "dsp", "memory_bytes": 128 * MiB, "active_power_w": 0.6,
             "idle_power_w": 0.02, "prior": {"conv_gflops": 2.0, "gemm_gflops": 1.0, "mem_gbps": 2.0,
                                             "overhead_us": 500.0}},
            {"name": "cloud", "kind": "remote", "memory_bytes": 64 * GiB, "active_power_w": 0.9,
             "idle_power_w": 0.0, "prior": {"conv_gflops": 500.0, "gemm_gflops": 100.0, "mem_gbps": 30.0,
                                            "overhead_us": 50.0}},
        ],
        "links": [
            {"src": "cpu", "dst": "dsp", "bandwidth_bytes_per_s": 1.5e9, "latency_us": 300.0,
             "energy_per_byte_uj": 0.001, "power_w": 0.0, "wireless": False},
            {"src": "cpu", "dst": "cloud", "bandwidth_bytes_per_s": 2.5e6, "latency_us": 40000.0,
             "energy_per_byte_uj": 0.6, "power_w": 0.9, "wireless": True},
        ],
    },
    "tegrak1": {
        "description": "Nvidia Tegra K1 (DeepX, IPSN 2016): 4x Cortex-A15 CPU, low-power companion A15 core "
                       "(LPU), Kepler GPU (192 cores), cloud over WiFi. Latency coefficients fitted to the "
                       "paper's single-processor energies (deepx_opt/profiles/fit_paper.py); powers modelled.",
        "host": "cpu",
        "processors": [
            {"name": "cpu", "kind": "cpu", "memory_bytes": int(1.5 * GiB), "active_power_w": 4.0,
             "idle_power_w": 0.2, "prior": {"conv_gflops": 6.0, "gemm_gflops": 3.0, "mem_gbps": 6.0,
                                            "overhead_us": 100.0}},
            {"name": "lpu", "kind": "lpu", "memory_bytes": 512 * MiB, "active_power_w": 0.4,
             "idle_power_w": 0.01, "unsupported_kinds": ["conv", "dwconv", "pool", "lrn"],
             "prior": {"conv_gflops": 0.8, "gemm_gflops": 0.5, "mem_gbps": 1.5, "overhead_us": 300.0}},
            {"name": "gpu", "kind": "gpu", "memory_bytes": int(1.5 * GiB), "active_power_w": 3.5,
             "idle_power_w": 0.1, "prior": {"conv_gflops": 100.0, "gemm_gflops": 30.0, "mem_gbps": 12.0,
                                            "overhead_us": 150.0}},
            {"name": "cloud", "kind": "remote", "memory_bytes": 64 * GiB, "active_power_w": 1.0,
             "idle_power_w": 0.0, "prior": {"conv_gflops": 500.0, "gemm_gflops": 100.0, "mem_gbps": 30.0,
                                            "overhead_us": 50.0}},
        ],
        "links": [
            {"src": "cpu", "dst": "lpu", "bandwidth_bytes_per_s": 4.0e9, "latency_us": 100.0,
             "energy_per_byte_uj": 0.0005, "power_w": 0.0, "wireless": False},
            {"src": "cpu", "dst": "gpu", "bandwidth_bytes_per_s": 6.0e9, "latency_us": 50.0,
             "energy_per_byte_uj": 0.0005, "power_w": 0.0, "wireless": False},
            {"src": "cpu", "dst": "cloud", "bandwidth_bytes_per_s": 2.5e6, "latency_us": 40000.0,
             "energy_per_byte_uj": 0.6, "power_w": 1.0, "wireless": True},
        ],
    },
}


def prior_coefficients(prior: Mapping[str, float]) -> dict[str, list[float]]:
    """Prior ``[c0 µs, c1 µs/flop, c2 µs/byte]`` of every work kind from a processor's datasheet sketch."""
    conv = 1.0 / (prior["conv_gflops"] * 1e3)  # 1 GFLOP/s = 1e3 flop/µs
    gemm = 1.0 / (prior["gemm_gflops"] * 1e3)
    mem = 1.0 / (prior["mem_gbps"] * 1e3)      # 1 GB/s = 1e3 byte/µs
    o = prior["overhead_us"]
    out = {
        "conv": [o, conv, mem],
        "dwconv": [o, 4 * conv, mem],           # depthwise convs reuse little: a quarter of dense efficiency
        "gemm": [o, gemm, mem],
        "pool": [0.5 * o, gemm, mem],
        "lrn": [0.5 * o, gemm, mem],
        "elementwise": [0.2 * o, gemm, mem],
        "softmax": [0.2 * o, gemm, mem],
        "concat": [0.2 * o, 0.0, mem],
        "pad": [0.2 * o, 0.0, mem],
        "copy": [0.2 * o, 0.0, mem],
        "reshape": [0.05 * o, 0.0, mem],
    }
    assert set(out) == set(WORK_KINDS)
    return out


def _group_latency(prior: Mapping[str, list[float]], s: ModelSummary) -> np.ndarray:
    """Latency (µs) of a model at the prior, split by multiplier group: latency = L · m."""
    L = np.zeros(len(GROUPS))
    for w in s.works:
        c = prior[w.kind]
        terms = (c[0], c[1] * w.flops, c[2] * w.bytes)
        for gi, (_, kinds, idx) in enumerate(GROUPS):
            if w.kind in kinds:
                L[gi] += sum(terms[i] for i in idx)
    return L


def _apply(sketch: dict, mult: dict[str, np.ndarray], link_mult: dict[str, float], fit_info: dict) -> dict:
    """Profile JSON dict from a sketch and fitted multipliers."""
    d = {"version": 1, "name": "", "description": sketch["description"], "host": sketch["host"],
         "processors": [], "links": [], "meta": fit_info}
    for p in sketch["processors"]:
        prior = prior_coefficients(p["prior"])
        m = mult[p["name"]]
        models = {}
        for kind in WORK_KINDS:
            coef = list(prior[kind])
            for gi, (_, kinds, idx) in enumerate(GROUPS):
                if kind in kinds:
                    for i in idx:
                        coef[i] *= float(m[gi])
            models[kind] = {"family": "linear", "features": ["flops", "bytes"],
                            "coef_": [float(f"{c:.6g}") for c in coef], "n_samples_": 0,
                            "source": "datasheet prior x multipliers fitted to DeepX published energies"}
        q = {k: v for k, v in p.items() if k != "prior"}
        q.setdefault("unsupported_kinds", [])
        q["backend"] = None
        q["power_source"] = "modelled"
        q["latency_models"] = models
        d["processors"].append(q)
    for lk in sketch["links"]:
        lk = dict(lk)
        if lk.get("wireless"):
            lk["energy_per_byte_uj"] = float(f"{lk['energy_per_byte_uj'] * link_mult['energy_per_byte']:.6g}")
            lk["latency_us"] = float(f"{lk['latency_us'] * link_mult['latency']:.6g}")
        d["links"].append(lk)
    return d


def fit_device(name: str, summaries: Mapping[str, ModelSummary], *, sketch: dict | None = None,
               published: Mapping[str, Mapping[str, float | None]] | None = None, lam: float = LAMBDA) -> dict:
    """Fit one device's multipliers; returns the profile as a JSON-ready dict (validated).

    Parameters
    ----------
    name : str
        Device (and profile) name, a key of :data:`SKETCHES` unless ``sketch`` is given.
    summaries : mapping model → ModelSummary
    sketch, published : optional
        Override the datasheet sketch / the published table (tests use synthetic ones).
    """
    from scipy.optimize import least_squares

    sketch = copy.deepcopy(sketch or SKETCHES[name])
    published = published or PUBLISHED_MJ[name]
    procs = {p["name"]: p for p in sketch["processors"]}
    remote = [p["name"] for p in sketch["processors"] if p["kind"] == "remote"]
    wireless = [lk for lk in sketch["links"] if lk.get("wireless")]
    ng = len(GROUPS)
    order = [p["name"] for p in sketch["processors"]]
    n_link = 2 if wireless else 0

    # Precompute each cell's latency split by group; the non-fitted part of the transfer energy.
    base = profile_from_dict(_apply(sketch, {p: np.ones(ng) for p in order},
                                    {"energy_per_byte": 1.0, "latency": 1.0}, {}) | {"name": name})
    cells = []
    for proc, row in published.items():
        for model, pub in row.items():
            if pub is None:
                continue
            s = summaries[model]
            L = _group_latency(prior_coefficients(procs[proc]["prior"]), s)
            route = base.route(base.host, proc) + base.route(proc, base.host)
            nbytes = [s.input_bytes] * len(base.route(base.host, proc)) + [s.output_bytes] * len(base.route(proc, base.host))
            fixed, per_byte_w, lat_w = 0.0, 0.0, 0.0
            for lk, nb in zip(route, nbytes):
                if lk.wireless:
                    per_byte_w += lk.energy_per_byte_uj * nb
                    lat_w += lk.power_w * lk.latency_us
                else:
                    fixed += lk.transfer_energy_uj(nb)
            cells.append((proc, model, float(pub) * 1000.0, L, procs[proc]["active_power_w"], fixed, per_byte_w, lat_w))

    def unpack(theta):
        m = {p: np.exp(theta[i * ng:(i + 1) * ng]) for i, p in enumerate(order)}
        lm = np.exp(theta[len(order) * ng:]) if n_link else np.ones(2)
        return m, lm

    def resid(theta):
        m, lm = unpack(theta)
        r = []
        for proc, _, pub, L, pw, fixed, pbw, latw in cells:
            e = pw * float(L @ m[proc]) + fixed + pbw * lm[0] + latw * lm[1]
            r.append(e / pub - 1.0)
        return np.r_[r, lam * theta]

    # The data term is linear in the multipliers, the prior is not: start the log-space fit both from the
    # datasheet (all multipliers 1) and from a non-negative least-squares solution of the data term alone
    # (tiny ridge towards 1), and keep the better optimum.
    from scipy.optimize import nnls

    nparam = len(order) * ng + n_link
    rows, rhs = [], []
    for proc, _, pub, L, pw, fixed, pbw, latw in cells:
        row = np.zeros(nparam)
        i = order.index(proc)
        row[i * ng:(i + 1) * ng] = pw * L / pub
        if n_link:
            row[-2:] = [pbw / pub, latw / pub]
        rows.append(row)
        rhs.append(1.0 - fixed / pub)
    A = np.array(rows)
    scale = np.linalg.norm(A, axis=0)
    scale[scale == 0] = 1.0
    ridge = 1e-4  # in column-scaled space: only picks one of the many exact solutions
    As = np.vstack([A / scale, ridge * np.eye(nparam)])
    m_lin = nnls(As, np.r_[rhs, np.zeros(nparam)], maxiter=100 * nparam)[0] / scale
    starts = [np.zeros(nparam),
              np.log(np.clip(m_lin, 10 * BOUND, 0.1 / BOUND)),
              np.log(np.clip(np.where(m_lin > 1e-9, m_lin, 1.0), 10 * BOUND, 0.1 / BOUND))]
    fit = None
    for theta0 in starts:
        r = least_squares(resid, theta0, method="trf", bounds=(np.log(BOUND), -np.log(BOUND)), max_nfev=20000)
        if fit is None or r.cost < fit.cost:
            fit = r
    m, lm = unpack(fit.x)
    info = {
        "paper_device": name,
        "fit": {
            "method": "least squares on relative error of the single-processor full-rank energies, "
                      f"log-prior weight {lam} on group multipliers (deepx_opt/profiles/fit_paper.py)",
            "groups": [g for g, _, _ in GROUPS],
            "multipliers": {p: [float(f"{x:.4g}") for x in m[p]] for p in order},
            "link_multipliers": {"energy_per_byte": float(f"{lm[0]:.4g}"), "latency": float(f"{lm[1]:.4g}")},
            "priors": {p["name"]: p["prior"] for p in sketch["processors"]},
            "remote_processors": remote,
        },
    }
    d = _apply(sketch, m, {"energy_per_byte": float(lm[0]), "latency": float(lm[1])}, info)
    d["name"] = name
    profile_from_dict(d)  # validate
    return d


def format_table(cells) -> str:
    """The residual table `deepx profile check` prints."""
    lines = [f"{'processor':9s} {'model':11s} {'published mJ':>12s} {'predicted mJ':>12s} {'residual':>9s}  "
             f"{'latency ms':>10s}"]
    for c in cells:
        if c.refused is not None:
            pub = "—" if c.published_mj is None else f"{c.published_mj:.1f}"
            lines.append(f"{c.processor:9s} {c.model:11s} {pub:>12s} {'refused':>12s} {'':>9s}  {'':>10s}  "
                         f"({c.refused})")
        else:
            pub = "—" if c.published_mj is None else f"{c.published_mj:.1f}"
            res = "" if c.residual_pct is None else f"{c.residual_pct:+.1f}%"
            lines.append(f"{c.processor:9s} {c.model:11s} {pub:>12s} {c.predicted_mj:12.1f} {res:>9s}  "
                         f"{c.latency_ms:10.1f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m deepx_opt.profiles.fit_paper", description=__doc__.split("\n")[0])
    ap.add_argument("--dry-run", action="store_true", help="fit and print, write nothing")
    ap.add_argument("--rebuild", action="store_true", help="rebuild the model summaries from the zoo (slow)")
    args = ap.parse_args(argv)
    summaries = paper_summaries(rebuild=args.rebuild)
    if args.rebuild and not args.dry_run:
        print(f"wrote {write_paper_summaries(summaries)}")
    worst = 0.0
    for name in SKETCHES:
        d = fit_device(name, summaries)
        prof = profile_from_dict(d)
        cells = compare_with_paper(prof, summaries)
        print(f"== {name}: multipliers {d['meta']['fit']['multipliers']}  link {d['meta']['fit']['link_multipliers']}")
        print(format_table(cells))
        worst = max([worst] + [abs(c.residual_pct) for c in cells if c.residual_pct is not None])
        d["meta"]["fit"]["cells"] = [
            {"processor": c.processor, "model": c.model, "published_mj": c.published_mj,
             "predicted_mj": None if c.predicted_mj is None else round(c.predicted_mj, 2),
             "residual_pct": None if c.residual_pct is None else round(c.residual_pct, 2),
             "refused": c.refused} for c in cells]
        if not args.dry_run:
            print(f"wrote {save_profile(profile_from_dict(d), HERE / f'{name}.json')}")
    print(f"worst |residual| {worst:.1f}%")
    return 0


if __name__ == "__main__":
    sys.exit(main())
