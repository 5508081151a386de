"""The model zoo: the DeepX paper's four models, larger DAG-shaped CNNs, and models trained on real data.

Every model is built in memory with ``onnx.helper`` (opset 13, float32, batch 1, static shapes), passes
``onnx.checker`` and runs in onnxruntime. Untrained models get deterministic synthetic weights with
power-law singular-value spectra like trained networks' (see :mod:`deepx_opt.zoo.weights` for the
construction and why white noise would make Runtime Layer Compression meaningless). The ``digits_*``
models are really trained on scikit-learn's ``load_digits`` (see :mod:`deepx_opt.zoo.digits`), with the
weights shipped in ``deepx_opt/zoo/data/``. Architectures and the choices behind them are documented in
:mod:`deepx_opt.zoo.models`.

A zoo name may be given as ``"alexnet"``, ``"AlexNet"`` or ``"zoo:alexnet"``.

Examples
--------
>>> from deepx_opt import zoo
>>> [e.name for e in zoo.list_models()][:4]
['alexnet', 'svhn', 'speakerid', 'audioscene']
>>> zoo.is_zoo_name("zoo:SVHN"), zoo.is_zoo_name("model.onnx")
(True, False)
>>> model = zoo.build("speakerid")
>>> [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
[1, 700]
"""

from __future__ import annotations

import functools
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import onnx

from deepx_opt.errors import InputError, ModelLoadError
from deepx_opt.zoo._builder import NetBuilder
from deepx_opt.zoo.digits import (
    MIN_TEST_ACCURACY,
    DigitsDataset,
    digits_dataset,
    load_trained,
)
from deepx_opt.zoo.models import SPECS

__all__ = [
    "ZooEntry",
    "list_models",
    "model_names",
    "get_entry",
    "build",
    "export",
    "is_zoo_name",
    "canonical_name",
    "digits_dataset",
    "DigitsDataset",
    "MIN_TEST_ACCURACY",
]

ZOO_PREFIX = "zoo:"


@dataclass(frozen=True)
class ZooEntry:
    """What the zoo knows about one model (all figures computed from the architecture, not typed in).

    Attributes
    ----------
    name
        The zoo name, e.g. ``"alexnet"``.
    description
        One line.
    input_shape, output_shape
        Static shapes of the graph input ``"input"`` and output ``"output"`` (batch 1).
    params
        Trainable parameters (Conv/Gemm weights and biases, BatchNormalization scale and bias).
    flops
        2 × multiply-accumulates of the Conv and Gemm layers for one inference.
    trained
        True when the weights were trained on real data (then ``test_accuracy`` is set).
    paper
        True for the four models of the DeepX paper's evaluation.
    test_accuracy
        Test-set accuracy measured when the shipped weights were trained (None if untrained).
    """

    name: str
    description: str
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    params: int
    flops: int
    trained: bool
    paper: bool
    test_accuracy: float | None = None

    @property
    def gflop(self) -> float:
        """``flops`` in units of 10⁹."""
        return self.flops / 1e9

    @property
    def weight_bytes(self) -> int:
        """float32 bytes of the trainable parameters."""
        return 4 * self.params


def canonical_name(name: str) -> str:
    """``"zoo:AlexNet"`` → ``"alexnet"``; raises :class:`ModelLoadError` for an unknown name."""
    if not isinstance(name, str):
        raise ModelLoadError(f"zoo model name must be a string, got {type(name).__name__}")
    key = name.strip().lower()
    if key.startswith(ZOO_PREFIX):
        key = key[len(ZOO_PREFIX):]
    if key not in SPECS:
        raise ModelLoadError(f"unknown zoo model {name!r}; known models: {', '.join(SPECS)}")
    return key


def is_zoo_name(name: str) -> bool:
    """True if ``name`` names a zoo model (case-insensitive, optional ``"zoo:"`` prefix).

    A string that is a path to an existing file is still a zoo name if it matches; callers that accept
    both should check for the file first.
    """
    try:
        canonical_name(name)
    except ModelLoadError:
        return False
    return True


def model_names() -> list[str]:
    """Zoo names in listing order."""
    return list(SPECS)


@functools.lru_cache(maxsize=None)
def get_entry(name: str) -> ZooEntry:
    """The :class:`ZooEntry` of one model (computed by a weight-less dry build; cheap)."""
    key = canonical_name(name)
    spec = SPECS[key]
    b = NetBuilder(key, spec.input_shape, materialize=False)
    out = spec.arch(b)
    acc = load_trained(key)[1]["test_accuracy"] if spec.trained else None
    return ZooEntry(
        name=key,
        description=spec.description,
        input_shape=spec.input_shape,
        output_shape=b.shapes[out],
        params=b.params,
        flops=b.flops,
        trained=spec.trained,
        paper=spec.paper,
        test_accuracy=acc,
    )


def list_models() -> list[ZooEntry]:
    """Every zoo model's :class:`ZooEntry`, paper models first."""
    return [get_entry(n) for n in SPECS]


def build(name: str, *, seed: int = 0) -> onnx.ModelProto:
    """Build zoo model ``name`` as a checked ``onnx.ModelProto``.

    Parameters
    ----------
    name
        A zoo name (see :func:`list_models`).
    seed
        Seed of the synthetic weights; two builds with the same seed serialise to identical bytes.
        Trained models ignore it (their weights are the shipped ones).

    Raises
    ------
    ModelLoadError
        For an unknown name (the message lists the known ones) or missing trained weights.
    """
    key = canonical_name(name)
    spec = SPECS[key]
    entry = get_entry(key)
    doc = f"deepx_opt zoo model {key!r}: {spec.description}."
    if spec.trained:
        doc += f" Test accuracy {entry.test_accuracy:.4f} on the fixed sklearn-digits split."
    else:
        doc += f" Synthetic power-law-spectrum weights, seed {int(seed)}."
    b = NetBuilder(key, spec.input_shape, seed=seed, doc=doc)
    out = spec.arch(b)
    return b.finish([out])


def export(name: str, path: str | os.PathLike, *, overwrite: bool = False, seed: int = 0) -> Path:
    """Build zoo model ``name`` and save it as an ONNX file; returns the path written.

    The file is written to a temporary name in the same directory and then renamed, so a failed export
    never leaves a truncated model behind.

    Raises
    ------
    InputError
        If ``path`` exists and ``overwrite`` is False, or its directory does not exist.
    ModelLoadError
        For an unknown model name.
    """
    key = canonical_name(name)
    path = Path(path)
    if path.exists() and not overwrite:
        raise InputError(f"{path} already exists; pass overwrite=True (CLI: --force) to replace it")
    if path.is_dir():
        raise InputError(f"{path} is a directory; give a file name such as {path / (key + '.onnx')}")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise InputError(f"directory {parent} of {path} does not exist")
    model = build(key, seed=seed)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(model.SerializeToString())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the file ordinary permissions
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
