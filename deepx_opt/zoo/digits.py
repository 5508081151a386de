"""Real data and really trained models: scikit-learn's ``load_digits`` (no download).

The data set has 1,797 grey-level 8×8 images of handwritten digits (values 0..16). The zoo uses one fixed
stratified split (70 % train / 30 % test, ``random_state=0``: 1,257 / 540 images) and one scaling
(``x / 16``, so pixels lie in [0, 1]); :func:`digits_dataset` returns exactly what training used.

Two models are trained on it, both deterministically (fixed seeds, one BLAS thread):

* ``digits_mlp`` — 64 → 256 → 128 → 10, ReLU, softmax; scikit-learn's ``MLPClassifier`` (Adam).
* ``digits_cnn`` — 1×8×8 → conv 3×3 (16, pad 1) → ReLU → conv 3×3 (32, pad 1) → ReLU → max-pool 2 →
  FC 64 → ReLU → FC 10 → softmax; trained by the plain numpy code below (im2col convolution,
  hand-written backward pass, Adam). The hidden FC of 64 gives RLC a fully connected layer with a
  non-trivial rank as well as two trained convolutions.

The trained weights ship as ``deepx_opt/zoo/data/<name>.npz`` (written by ``python -m deepx_opt.zoo.train``)
together with the test accuracy measured by the numpy forward pass in this module; the tests re-measure
it through onnxruntime on the exported ONNX model.

Example
-------
>>> d = digits_dataset()
>>> d.x_train.shape, d.x_test.shape, d.x_train.dtype
((1257, 64), (540, 64), dtype('float32'))
>>> d.for_model("digits_cnn").x_test.shape
(540, 1, 8, 8)
"""

from __future__ import annotations

import functools
import json
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from deepx_opt.errors import InputError, ModelLoadError

__all__ = [
    "DigitsDataset",
    "digits_dataset",
    "DATA_DIR",
    "TRAINED_MODELS",
    "MIN_TEST_ACCURACY",
    "train_digits_mlp",
    "train_digits_cnn",
    "forward_numpy",
    "cnn_loss_and_grads",
    "accuracy",
    "save_trained",
    "load_trained",
]

#: Where the trained weights ship.
DATA_DIR = Path(__file__).resolve().parent / "data"
#: The trained models and the layout of their input.
TRAINED_MODELS = {"digits_mlp": "flat", "digits_cnn": "image"}
#: Documented floor of the test accuracy of every trained digits model (tests enforce it).
MIN_TEST_ACCURACY = 0.95

SPLIT_SEED = 0
TEST_FRACTION = 0.3
PIXEL_SCALE = 16.0


@dataclass(frozen=True)
class DigitsDataset:
    """The fixed train/test split of ``load_digits``, scaled to [0, 1], float32 inputs, int64 labels.

    ``layout`` is ``"flat"`` (``(n, 64)``, for ``digits_mlp``) or ``"image"`` (``(n, 1, 8, 8)``,
    for ``digits_cnn``). Arrays are read-only (the data set is cached).
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    layout: str = "flat"
    n_classes: int = 10

    def with_layout(self, layout: str) -> "DigitsDataset":
        """The same data with inputs shaped ``"flat"`` ``(n, 64)`` or ``"image"`` ``(n, 1, 8, 8)``."""
        shapes = {"flat": (-1, 64), "image": (-1, 1, 8, 8)}
        if layout not in shapes:
            raise InputError(f"digits layout {layout!r} is not one of {sorted(shapes)}")
        return replace(
            self,
            x_train=_readonly(self.x_train.reshape(shapes[layout])),
            x_test=_readonly(self.x_test.reshape(shapes[layout])),
            layout=layout,
        )

    def for_model(self, name: str) -> "DigitsDataset":
        """The data shaped for zoo model ``name`` (``"digits_mlp"`` or ``"digits_cnn"``)."""
        if name not in TRAINED_MODELS:
            raise InputError(f"no digits input layout for model {name!r}; known: {sorted(TRAINED_MODELS)}")
        return self.with_layout(TRAINED_MODELS[name])


def _readonly(a: np.ndarray) -> np.ndarray:
    a = a.view()
    a.flags.writeable = False
    return a


@functools.lru_cache(maxsize=1)
def _flat_dataset() -> DigitsDataset:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x = (digits.data / PIXEL_SCALE).astype(np.float32)
    y = digits.target.astype(np.int64)
    x_tr, x_te, y_tr, y_te = train_test_split(
        x, y, test_size=TEST_FRACTION, stratify=y, random_state=SPLIT_SEED
    )
    return DigitsDataset(*(_readonly(np.ascontiguousarray(a)) for a in (x_tr, y_tr, x_te, y_te)))


def digits_dataset(layout: str = "flat") -> DigitsDataset:
    """The fixed stratified 70/30 split of scikit-learn's digits, pixels scaled by 1/16.

    Parameters
    ----------
    layout
        ``"flat"`` for ``(n, 64)`` inputs or ``"image"`` for ``(n, 1, 8, 8)``.
    """
    return _flat_dataset().with_layout(layout)


def accuracy(probs_or_logits: np.ndarray, labels: np.ndarray) -> float:
    """Fraction of rows whose arg-max equals the label."""
    return float(np.mean(np.argmax(probs_or_logits, axis=1) == labels))


# --------------------------------------------------------------------------------- numpy forward passes
def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _im2col3(x: np.ndarray) -> np.ndarray:
    """3×3, stride 1, pad 1 patches of ``x`` (B, C, H, W) as a (B·H·W, C·9) matrix (ONNX weight order)."""
    b, c, h, w = x.shape
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    cols = np.empty((b, h, w, c, 3, 3), dtype=x.dtype)
    for di in range(3):
        for dj in range(3):
            cols[..., di, dj] = xp[:, :, di:di + h, dj:dj + w].transpose(0, 2, 3, 1)
    return cols.reshape(b * h * w, c * 9)


def _col2im3(dcols: np.ndarray, shape: tuple[int, int, int, int]) -> np.ndarray:
    b, c, h, w = shape
    d = dcols.reshape(b, h, w, c, 3, 3)
    dxp = np.zeros((b, c, h + 2, w + 2), dtype=dcols.dtype)
    for di in range(3):
        for dj in range(3):
            dxp[:, :, di:di + h, dj:dj + w] += d[..., di, dj].transpose(0, 3, 1, 2)
    return dxp[:, :, 1:-1, 1:-1]


def _conv3_forward(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    n, _, h, wd = x.shape
    cols = _im2col3(x)
    y = cols @ w.reshape(w.shape[0], -1).T + b
    return y.reshape(n, h, wd, -1).transpose(0, 3, 1, 2), cols


def _maxpool2(x: np.ndarray) -> np.ndarray:
    b, c, h, w = x.shape
    return x.reshape(b, c, h // 2, 2, w // 2, 2).max(axis=(3, 5))


def forward_numpy(name: str, weights: dict[str, np.ndarray], x: np.ndarray) -> np.ndarray:
    """Class probabilities of trained model ``name`` computed with plain numpy (the reference forward).

    ``x`` is shaped as :meth:`DigitsDataset.for_model` gives it; any batch size.
    """
    x = np.asarray(x, dtype=np.float32)
    if name == "digits_mlp":
        h = np.maximum(x @ weights["fc1.weight"].T + weights["fc1.bias"], 0)
        h = np.maximum(h @ weights["fc2.weight"].T + weights["fc2.bias"], 0)
        return _softmax(h @ weights["fc3.weight"].T + weights["fc3.bias"])
    if name == "digits_cnn":
        h, _ = _conv3_forward(x, weights["conv1.weight"], weights["conv1.bias"])
        h, _ = _conv3_forward(np.maximum(h, 0), weights["conv2.weight"], weights["conv2.bias"])
        h = _maxpool2(np.maximum(h, 0)).reshape(x.shape[0], -1)
        h = np.maximum(h @ weights["fc1.weight"].T + weights["fc1.bias"], 0)
        return _softmax(h @ weights["fc2.weight"].T + weights["fc2.bias"])
    raise InputError(f"no numpy forward for model {name!r}; known: {sorted(TRAINED_MODELS)}")


# ------------------------------------------------------------------------------------------- training
def train_digits_mlp(data: DigitsDataset | None = None, *, seed: int = 0) -> tuple[dict[str, np.ndarray], dict]:
    """Train ``digits_mlp`` (64 → 256 → 128 → 10) with scikit-learn's ``MLPClassifier``.

    Returns
    -------
    weights, meta
        ``{"fc1.weight": (256, 64), "fc1.bias": (256,), ...}`` in ONNX Gemm ``transB=1`` layout and a
        dict with the hyper-parameters, the training time and the numpy-measured test accuracy.
    """
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier
    from threadpoolctl import threadpool_limits

    data = (data or digits_dataset()).with_layout("flat")
    hyper = dict(
        hidden_layer_sizes=(256, 128), activation="relu", solver="adam", alpha=1e-4, batch_size=64,
        learning_rate_init=1e-3, max_iter=60, shuffle=True, random_state=seed, tol=0.0,
    )
    t0 = time.perf_counter()
    with threadpool_limits(1), warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # max_iter is the fixed training budget
        clf = MLPClassifier(**hyper).fit(data.x_train, data.y_train)
    train_s = time.perf_counter() - t0
    weights = {}
    for i, (w, b) in enumerate(zip(clf.coefs_, clf.intercepts_), start=1):
        weights[f"fc{i}.weight"] = np.ascontiguousarray(w.T, dtype=np.float32)
        weights[f"fc{i}.bias"] = b.astype(np.float32)
    meta = {
        "trainer": "sklearn.neural_network.MLPClassifier",
        "hyper": {k: list(v) if isinstance(v, tuple) else v for k, v in hyper.items()},
        "epochs": int(clf.n_iter_),
        "train_s": round(train_s, 2),
    }
    meta.update(_measure(weights, "digits_mlp", data))
    return weights, meta


def cnn_loss_and_grads(p: dict[str, np.ndarray], x: np.ndarray, y: np.ndarray) -> tuple[float, dict[str, np.ndarray]]:
    """Mean softmax cross-entropy of ``digits_cnn`` on a batch and its gradient for every parameter.

    ``x`` is ``(b, 1, 8, 8)`` float32, ``y`` ``(b,)`` int labels; ``p`` maps the ONNX initializer names
    (``conv1.weight``, ...) to arrays. The backward pass is written by hand (tests check it against
    finite differences).
    """
    b = x.shape[0]
    c1, c2 = p["conv1.weight"].shape[0], p["conv2.weight"].shape[0]
    a1, cols1 = _conv3_forward(x, p["conv1.weight"], p["conv1.bias"])
    r1 = np.maximum(a1, 0)
    a2, cols2 = _conv3_forward(r1, p["conv2.weight"], p["conv2.bias"])
    r2 = np.maximum(a2, 0)
    pooled = _maxpool2(r2)
    f = pooled.reshape(b, -1)
    a3 = f @ p["fc1.weight"].T + p["fc1.bias"]
    r3 = np.maximum(a3, 0)
    probs = _softmax(r3 @ p["fc2.weight"].T + p["fc2.bias"])
    loss = float(-np.mean(np.log(probs[np.arange(b), y] + 1e-12)))
    g: dict[str, np.ndarray] = {}
    dz = probs.copy()
    dz[np.arange(b), y] -= 1.0
    dz /= b
    g["fc2.weight"] = dz.T @ r3
    g["fc2.bias"] = dz.sum(0)
    dr3 = (dz @ p["fc2.weight"]) * (a3 > 0)
    g["fc1.weight"] = dr3.T @ f
    g["fc1.bias"] = dr3.sum(0)
    dpool = (dr3 @ p["fc1.weight"]).reshape(pooled.shape)

    def up(t: np.ndarray) -> np.ndarray:
        return np.repeat(np.repeat(t, 2, axis=2), 2, axis=3)

    # Max-pool gradient goes to the arg-max; ties (rare, mostly zeros after ReLU) share it equally.
    mask = (r2 == up(pooled)).astype(x.dtype)
    _, _, h2, w2 = r2.shape
    mask /= up(mask.reshape(b, c2, h2 // 2, 2, w2 // 2, 2).sum(axis=(3, 5)))
    da2 = up(dpool) * mask * (a2 > 0)
    da2m = da2.transpose(0, 2, 3, 1).reshape(-1, c2)
    g["conv2.weight"] = (da2m.T @ cols2).reshape(p["conv2.weight"].shape)
    g["conv2.bias"] = da2m.sum(0)
    dr1 = _col2im3(da2m @ p["conv2.weight"].reshape(c2, -1), r1.shape)
    da1m = (dr1 * (a1 > 0)).transpose(0, 2, 3, 1).reshape(-1, c1)
    g["conv1.weight"] = (da1m.T @ cols1).reshape(p["conv1.weight"].shape)
    g["conv1.bias"] = da1m.sum(0)
    return loss, g


def train_digits_cnn(
    data: DigitsDataset | None = None,
    *,
    seed: int = 0,
    epochs: int = 30,
    batch_size: int = 32,
    lr: float = 2e-3,
    weight_decay: float = 1e-4,
) -> tuple[dict[str, np.ndarray], dict]:
    """Train ``digits_cnn`` with numpy: mini-batch Adam on softmax cross-entropy, He-normal init.

    The learning rate follows a cosine schedule to 0 over ``epochs``; ``weight_decay`` is an L2 penalty
    on the weights (not the biases). No early stopping and no use of the test set during training.
    """
    from threadpoolctl import threadpool_limits

    data = (data or digits_dataset()).with_layout("image")
    rng = np.random.default_rng(seed)
    shapes = {
        "conv1.weight": (16, 1, 3, 3), "conv1.bias": (16,),
        "conv2.weight": (32, 16, 3, 3), "conv2.bias": (32,),
        "fc1.weight": (64, 512), "fc1.bias": (64,),
        "fc2.weight": (10, 64), "fc2.bias": (10,),
    }
    p: dict[str, np.ndarray] = {}
    for k, shp in shapes.items():
        if k.endswith(".bias"):
            p[k] = np.zeros(shp, dtype=np.float32)
        else:
            fan_in = int(np.prod(shp[1:]))
            p[k] = (rng.standard_normal(shp) * np.sqrt(2.0 / fan_in)).astype(np.float32)
    m = {k: np.zeros_like(v) for k, v in p.items()}
    v = {k: np.zeros_like(v_) for k, v_ in p.items()}
    beta1, beta2, eps = 0.9, 0.999, 1e-8
    x_all, y_all = data.x_train, data.y_train
    n = x_all.shape[0]
    steps_per_epoch = -(-n // batch_size)
    total = epochs * steps_per_epoch
    step = 0
    t0 = time.perf_counter()
    with threadpool_limits(1):
        for _epoch in range(epochs):
            order = rng.permutation(n)
            for start in range(0, n, batch_size):
                idx = order[start:start + batch_size]
                _loss, g = cnn_loss_and_grads(p, x_all[idx], y_all[idx])
                # Adam with cosine learning rate and L2 on weights
                step += 1
                lr_t = 0.5 * lr * (1.0 + np.cos(np.pi * (step - 1) / total))
                for k in p:
                    grad = g[k].astype(np.float32)
                    if k.endswith(".weight"):
                        grad = grad + weight_decay * p[k]
                    m[k] = beta1 * m[k] + (1 - beta1) * grad
                    v[k] = beta2 * v[k] + (1 - beta2) * grad * grad
                    mhat = m[k] / (1 - beta1 ** step)
                    vhat = v[k] / (1 - beta2 ** step)
                    p[k] = (p[k] - lr_t * mhat / (np.sqrt(vhat) + eps)).astype(np.float32)
    train_s = time.perf_counter() - t0
    meta = {
        "trainer": "deepx_opt.zoo.digits.train_digits_cnn (numpy)",
        "hyper": {"seed": seed, "epochs": epochs, "batch_size": batch_size, "lr": lr,
                  "lr_schedule": "cosine", "weight_decay": weight_decay, "optimizer": "adam"},
        "epochs": epochs,
        "train_s": round(train_s, 2),
    }
    meta.update(_measure(p, "digits_cnn", data))
    return p, meta


def _measure(weights: dict[str, np.ndarray], name: str, data: DigitsDataset) -> dict:
    d = data.for_model(name)
    return {
        "train_accuracy": accuracy(forward_numpy(name, weights, d.x_train), d.y_train),
        "test_accuracy": accuracy(forward_numpy(name, weights, d.x_test), d.y_test),
        "n_train": int(d.y_train.shape[0]),
        "n_test": int(d.y_test.shape[0]),
        "split": {"test_fraction": TEST_FRACTION, "stratified": True, "random_state": SPLIT_SEED},
        "pixel_scale": PIXEL_SCALE,
    }


# ------------------------------------------------------------------------------------------ storage
def save_trained(name: str, weights: dict[str, np.ndarray], meta: dict, directory: Path | str = DATA_DIR) -> Path:
    """Write ``<directory>/<name>.npz`` with the weights and ``meta`` as a JSON string."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.npz"
    arrays = {k: np.asarray(v, dtype=np.float32) for k, v in weights.items()}
    np.savez_compressed(path, __meta__=np.array(json.dumps(meta, sort_keys=True)), **arrays)
    return path


@functools.lru_cache(maxsize=None)
def _load_cached(path: str) -> tuple[dict[str, np.ndarray], dict]:
    with np.load(path, allow_pickle=False) as z:
        meta = json.loads(str(z["__meta__"]))
        weights = {k: _readonly(z[k]) for k in z.files if k != "__meta__"}
    return weights, meta


def load_trained(name: str, directory: Path | str = DATA_DIR) -> tuple[dict[str, np.ndarray], dict]:
    """The shipped weights (read-only arrays) and training metadata of trained model ``name``."""
    if name not in TRAINED_MODELS:
        raise ModelLoadError(f"{name!r} is not a trained zoo model; trained models: {sorted(TRAINED_MODELS)}")
    path = Path(directory) / f"{name}.npz"
    if not path.is_file():
        raise ModelLoadError(
            f"trained weights of {name!r} not found at {path}; regenerate them with `python -m deepx_opt.zoo.train`"
        )
    try:
        return _load_cached(str(path))
    except (OSError, ValueError, KeyError) as exc:
        raise ModelLoadError(f"trained weights file {path} is unreadable ({exc}); "
                             "regenerate it with `python -m deepx_opt.zoo.train`") from exc
