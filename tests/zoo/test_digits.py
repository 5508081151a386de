"""The real-data models: the fixed digits split, shipped weights, accuracy re-measured through onnxruntime."""

from __future__ import annotations

import numpy as np
import pytest

from deepx_opt import zoo
from deepx_opt.errors import InputError, ModelLoadError
from deepx_opt.zoo import digits as D

from ._helpers import built, initializers, ort_session

TRAINED = ["digits_mlp", "digits_cnn"]


def test_dataset_split_shapes_scaling_and_stratification():
    d = zoo.digits_dataset()
    assert d.layout == "flat"
    assert d.x_train.shape == (1257, 64) and d.x_test.shape == (540, 64)
    assert d.x_train.dtype == np.float32 and d.y_train.dtype == np.int64
    assert 0.0 == d.x_train.min() and d.x_train.max() == 1.0  # pixels 0..16 scaled by 1/16
    # stratified: every class has ~30 % of its samples in the test split
    for c in range(10):
        n_test, n_train = int((d.y_test == c).sum()), int((d.y_train == c).sum())
        assert abs(n_test / (n_test + n_train) - 0.3) < 0.02
    with pytest.raises(ValueError):
        d.x_train[0, 0] = 1.0  # cached arrays are read-only


def test_for_model_layouts_are_the_same_data():
    d = zoo.digits_dataset()
    img = d.for_model("digits_cnn")
    assert img.x_test.shape == (540, 1, 8, 8) and img.layout == "image"
    assert np.array_equal(img.x_test.reshape(540, 64), d.x_test)
    assert np.array_equal(img.y_test, d.y_test)
    assert d.for_model("digits_mlp").x_train.shape == (1257, 64)
    with pytest.raises(InputError, match="alexnet"):
        d.for_model("alexnet")
    with pytest.raises(InputError, match="layout"):
        d.with_layout("nhwc")


@pytest.mark.parametrize("name", TRAINED)
def test_onnx_model_reaches_documented_accuracy_in_onnxruntime(name):
    d = zoo.digits_dataset().for_model(name)
    sess = ort_session(built(name))
    probs = np.concatenate([sess.run(None, {"input": x[None]})[0] for x in d.x_test])
    acc = D.accuracy(probs, d.y_test)
    entry = zoo.get_entry(name)
    assert acc >= zoo.MIN_TEST_ACCURACY
    # the figure recorded at training time (numpy forward) is what onnxruntime measures on the exported file
    assert acc == pytest.approx(entry.test_accuracy, abs=1.5 / d.y_test.size)
    # and the numpy reference forward agrees with onnxruntime numerically
    ref = D.forward_numpy(name, initializers(built(name)), d.x_test)
    np.testing.assert_allclose(probs, ref, atol=1e-5)


def test_shipped_weights_match_the_onnx_initializers():
    for name in TRAINED:
        weights, meta = D.load_trained(name)
        inits = initializers(built(name))
        assert set(weights) <= set(inits)
        for k, v in weights.items():
            assert np.array_equal(inits[k], v)
        assert meta["n_test"] == 540 and meta["split"]["stratified"]


def test_cnn_backward_pass_matches_finite_differences():
    rng = np.random.default_rng(0)
    shapes = {"conv1.weight": (3, 1, 3, 3), "conv1.bias": (3,), "conv2.weight": (4, 3, 3, 3), "conv2.bias": (4,),
              "fc1.weight": (5, 64), "fc1.bias": (5,), "fc2.weight": (10, 5), "fc2.bias": (10,)}
    p = {k: rng.standard_normal(s) * 0.5 for k, s in shapes.items()}
    x = rng.standard_normal((3, 1, 8, 8))
    y = np.array([1, 4, 7])
    _, grads = D.cnn_loss_and_grads(p, x, y)
    h = 1e-6
    for k in p:
        flat = p[k].reshape(-1)
        for i in rng.choice(flat.size, size=min(flat.size, 6), replace=False):
            old = flat[i]
            flat[i] = old + h
            plus, _ = D.cnn_loss_and_grads(p, x, y)
            flat[i] = old - h
            minus, _ = D.cnn_loss_and_grads(p, x, y)
            flat[i] = old
            assert grads[k].reshape(-1)[i] == pytest.approx((plus - minus) / (2 * h), abs=1e-6, rel=1e-4), k


def test_training_really_learns():
    # A short run of each trainer (not the shipped budget) must already beat chance by far.
    w, meta = D.train_digits_mlp(seed=1)
    assert meta["test_accuracy"] >= 0.95
    assert w["fc1.weight"].shape == (256, 64) and w["fc3.weight"].shape == (10, 128)
    w, meta = D.train_digits_cnn(seed=1, epochs=2)
    assert meta["test_accuracy"] >= 0.85
    assert w["conv2.weight"].shape == (32, 16, 3, 3) and w["fc1.weight"].shape == (64, 512)


def test_save_and_load_round_trip(tmp_path):
    weights = {"fc1.weight": np.arange(6, dtype=np.float32).reshape(2, 3)}
    path = D.save_trained("digits_mlp", weights, {"test_accuracy": 0.5}, tmp_path)
    loaded, meta = D.load_trained("digits_mlp", tmp_path)
    assert path.name == "digits_mlp.npz"
    assert np.array_equal(loaded["fc1.weight"], weights["fc1.weight"]) and meta == {"test_accuracy": 0.5}


def test_missing_or_unknown_trained_weights_raise(tmp_path):
    with pytest.raises(ModelLoadError, match="deepx_opt.zoo.train"):
        D.load_trained("digits_cnn", tmp_path)
    with pytest.raises(ModelLoadError, match="not a trained zoo model"):
        D.load_trained("alexnet")
    (tmp_path / "digits_cnn.npz").write_bytes(b"not an npz")
    with pytest.raises(ModelLoadError, match="unreadable"):
        D.load_trained("digits_cnn", tmp_path)
