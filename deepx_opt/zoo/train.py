"""Train the zoo's real-data models and write their weights: ``python -m deepx_opt.zoo.train``.

Writes ``deepx_opt/zoo/data/digits_mlp.npz`` and ``digits_cnn.npz`` (or ``--out DIR``) and prints each
model's training time and train/test accuracy. Training is deterministic (fixed seeds, one BLAS thread);
weights may still differ in the last bits on another BLAS build, which is why the weights are shipped.
``--check`` trains into a temporary directory and compares with the shipped accuracy instead.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from deepx_opt.zoo.digits import (
    DATA_DIR,
    MIN_TEST_ACCURACY,
    load_trained,
    save_trained,
    train_digits_cnn,
    train_digits_mlp,
)

TRAINERS = {"digits_mlp": train_digits_mlp, "digits_cnn": train_digits_cnn}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deepx_opt.zoo.train", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DATA_DIR, help=f"output directory (default {DATA_DIR})")
    parser.add_argument("--only", choices=sorted(TRAINERS), action="append", help="train only these models")
    parser.add_argument("--check", action="store_true",
                        help="train into a temporary directory and compare with the shipped weights' accuracy")
    args = parser.parse_args(argv)
    names = args.only or list(TRAINERS)
    out = Path(tempfile.mkdtemp(prefix="deepx-zoo-train-")) if args.check else args.out
    status = 0
    print(f"{'model':<12} {'epochs':>6} {'train_s':>8} {'train_acc':>9} {'test_acc':>8}  file")
    for name in names:
        weights, meta = TRAINERS[name]()
        path = save_trained(name, weights, meta, out)
        print(f"{name:<12} {meta['epochs']:>6} {meta['train_s']:>8.2f} {meta['train_accuracy']:>9.4f} "
              f"{meta['test_accuracy']:>8.4f}  {path}")
        if meta["test_accuracy"] < MIN_TEST_ACCURACY:
            print(f"  {name}: test accuracy {meta['test_accuracy']:.4f} is below the documented "
                  f"{MIN_TEST_ACCURACY}", file=sys.stderr)
            status = 1
        if args.check:
            shipped = load_trained(name)[1]["test_accuracy"]
            print(f"  shipped test accuracy {shipped:.4f} (difference {meta['test_accuracy'] - shipped:+.4f})")
    return status


if __name__ == "__main__":
    sys.exit(main())
