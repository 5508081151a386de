"""Argument helpers shared by the sub-commands: model specs, input shapes, output files, tables."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Iterable, Sequence

from deepx_opt.errors import DeepxError, InputError

__all__ = ["add_model_args", "load_model_arg", "parse_input_shapes", "check_output_path", "print_table", "print_json",
           "load_arrays"]


def add_model_args(p) -> None:
    """MODEL positional plus --input-shape and --output, as every model-reading command takes them."""
    p.add_argument("model", metavar="MODEL", help="an .onnx file or a zoo model name (see `deepx zoo list`)")
    p.add_argument("--input-shape", action="append", default=[], metavar="NAME=D0,D1,...",
                   help="static shape of a graph input (repeatable); needed when a dim other than the batch is unknown")
    p.add_argument("--output", action="append", default=[], metavar="NAME", dest="cut_outputs",
                   help="cut the graph so that NAME is an output (repeatable); drops e.g. skl2onnx's ai.onnx.ml post-processing")


def parse_input_shapes(specs: Sequence[str]) -> dict[str, tuple[int, ...]]:
    """Parse ``["x=1,3,224,224"]`` into ``{"x": (1, 3, 224, 224)}``."""
    out: dict[str, tuple[int, ...]] = {}
    for spec in specs:
        name, sep, dims = spec.partition("=")
        try:
            if not sep or not name:
                raise ValueError
            shape = tuple(int(d) for d in dims.replace("x", ",").split(",") if d.strip())
            if not shape or any(d <= 0 for d in shape):
                raise ValueError
        except ValueError:
            raise InputError(f"--input-shape {spec!r} is not NAME=D0,D1,... with positive integer dims (e.g. input=1,3,224,224)") from None
        out[name] = shape
    return out


def load_model_arg(spec: str, input_shapes: Sequence[str] = (), outputs: Sequence[str] = ()):
    """Load MODEL given as a path or a zoo name into a ModelGraph."""
    from deepx_opt.graphs import load_model

    shapes = parse_input_shapes(input_shapes)
    return load_model(spec, input_shapes=shapes or None, outputs=list(outputs) or None)


def load_arrays(path: str | Path, what: str):
    """A .npy file as an array, or a .npz file as a dict name → array; InputError naming ``what`` otherwise."""
    import numpy as np

    p = Path(path)
    if not p.exists():
        raise InputError(f"{what} file '{p}' does not exist")
    if not p.is_file():
        raise InputError(f"{what} file '{p}' is not a regular file; give a .npy or .npz file")
    try:
        data = np.load(p, allow_pickle=False)
    except Exception as exc:
        raise InputError(f"{what} file '{p}' is not a .npy/.npz array file ({type(exc).__name__}: {exc})") from None
    return data if isinstance(data, np.ndarray) else dict(data.items())


def check_output_path(path: str | Path, force: bool) -> Path:
    """Refuse to overwrite an existing file unless ``force``; create the parent folder."""
    p = Path(path)
    if p.exists() and not force:
        raise InputError(f"output file '{p}' already exists; pass --force to overwrite it or choose another path")
    if p.exists() and p.is_dir():
        raise InputError(f"output path '{p}' is a directory; give a file name")
    p.parent.mkdir(parents=True, exist_ok=True)
    return p


def print_table(headers: Sequence[str], rows: Iterable[Sequence], *, align: str | None = None, file=None) -> None:
    """Print a plain-text table; ``align`` is a string of 'l'/'r' per column (default: numbers right)."""
    rows = [[str(c) for c in r] for r in rows]
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]
    if align is None:
        align = "".join("r" if rows and all(_numeric(r[i]) for r in rows) else "l" for i in range(len(headers)))
    out = file or sys.stdout

    def fmt(cells):
        return "  ".join(c.rjust(w) if a == "r" else c.ljust(w) for c, w, a in zip(cells, widths, align)).rstrip()

    print(fmt(headers), file=out)
    print("  ".join("-" * w for w in widths), file=out)
    for r in rows:
        print(fmt(r), file=out)


def _numeric(s: str) -> bool:
    try:
        float(s.replace(",", "").rstrip("%x×"))
        return True
    except ValueError:
        return s in ("-", "—", "")


def print_json(obj) -> None:
    json.dump(obj, sys.stdout, indent=2, default=_json_default)
    sys.stdout.write("\n")


def _json_default(o):
    import numpy as np

    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, (tuple, set)):
        return list(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def die(msg: str) -> DeepxError:  # convenience for commands
    return InputError(msg)
