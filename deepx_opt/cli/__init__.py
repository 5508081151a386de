"""The ``deepx`` command.

Each sub-command lives in its own module of this package, which defines ``add_parser(subparsers)``
(registering its arguments and ``set_defaults(func=...)``). ``func(args)`` returns the exit code.
A :class:`~deepx_opt.errors.DeepxError` becomes one line on stderr and exit code 2; no traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from deepx_opt.errors import DeepxError

# One line per sub-command module (deepx_opt/cli/<name>.py), in the order `deepx --help` lists them.
COMMAND_MODULES = [
    "demo_cmd",
    "zoo_cmd",
    "inspect_cmd",
    "processors_cmd",
    "profile_cmd",
    "calibrate_cmd",
    "compress_cmd",
    "plan_cmd",
    "compare_cmd",
    "pareto_cmd",
    "run_cmd",
    "report_cmd",
]


def build_parser() -> argparse.ArgumentParser:
    from deepx_opt import __version__

    parser = argparse.ArgumentParser(
        prog="deepx",
        description="Plan, run and inspect deep-learning inference on heterogeneous processors (after DeepX).",
    )
    parser.add_argument("--version", action="version", version=f"deepx_opt {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMAND_MODULES:
        importlib.import_module(f"deepx_opt.cli.{name}").add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code = args.func(args)
    except DeepxError as exc:
        msg = str(exc).strip().replace("\n", " ")
        print(f"deepx {args.command}: error: {msg}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"deepx {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # `deepx inspect ... | head`: the reader went away; not an error of ours.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    return int(code or 0)


if __name__ == "__main__":
    sys.exit(main())
