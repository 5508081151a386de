"""``deepx processors``: the processors this machine has (numpy CPU, each working OpenCL device)."""

from __future__ import annotations

from deepx_opt.cli._common import print_json, print_table


def add_parser(sub) -> None:
    p = sub.add_parser("processors", help="list the processors this machine can run blocks on",
                       description="List this machine's processors: the numpy CPU backend and every OpenCL device "
                                   "that builds and runs a probe kernel (broken platforms are skipped with a warning).")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=run)


def run(args) -> int:
    import os

    from deepx_opt.runtime.opencl_probe import working_devices

    rows = [{"name": "cpu", "backend": "numpy", "kind": "cpu", "device": f"host CPU, {os.cpu_count()} cores (BLAS)",
             "memory_gib": None}]
    for i, d in enumerate(working_devices()):
        rows.append({"name": f"opencl:{i}", "backend": "opencl", "kind": d.device_type, "device": d.label,
                     "memory_gib": round(d.global_mem_bytes / 2**30, 1)})
    if args.json:
        print_json(rows)
        return 0
    print_table(["processor", "backend", "kind", "device", "memory GiB"],
                [[r["name"], r["backend"], r["kind"], r["device"], "-" if r["memory_gib"] is None else r["memory_gib"]]
                 for r in rows], align="llllr")
    if len(rows) == 1:
        print("note: no working OpenCL device (install pocl-opencl-icd or a vendor ICD for more processors)")
    return 0
