"""Deterministic synthetic weights whose singular-value spectra decay like trained networks'.

Why not white noise
-------------------
Runtime Layer Compression (RLC) replaces a weight matrix by its best rank-``r`` approximation. On an
i.i.d. Gaussian ("white-noise") matrix the singular values follow the Marchenko-Pastur law: they are all of
the same order, so every rank below full throws away a proportional share of the layer and the
accuracy/speed trade-off that RLC exploits does not exist. Trained layers are different: their spectra
have heavy power-law tails (Martin & Mahoney 2021, "Implicit self-regularization in deep neural
networks", JMLR 22), which is why low-rank factorisation of trained CNNs and DNNs works (Denton et al.
2014; DeepX, Lane et al. 2016). The zoo therefore draws each weight matrix as

.. math:: W = U \\operatorname{diag}(s) V^T, \\qquad s_i \\propto (i + 1)^{-\\alpha},

with ``U`` (m×k) and ``V`` (n×k) having orthonormal columns, ``k = min(m, n)``, and ``s`` scaled so that
``‖W‖_F`` equals the expected Frobenius norm of He initialisation (``E‖W‖²_F = 2·m·n / fan_in``), which
keeps activations of the untrained deep models in a sane range. ``α = 0.5`` (:data:`SPECTRUM_ALPHA`)
corresponds to an eigenvalue density tail ``p(λ) ∝ λ^(-2)`` — the "well-trained" end of the exponents
that Martin & Mahoney measured on trained ImageNet models — and makes the top 10 % of the singular values
of a layer with a few hundred or more of them carry more than half of its energy (``Σ s_i²``).
For a convolution the matrix is ``Cout × (Cin/group · kh · kw)`` per group, which is the matrix RLC
factorises.

How it stays fast
-----------------
A QR factorisation of a 9216×4096 Gaussian matrix (AlexNet's fc6) takes several seconds and the product
``U·diag(s)·Vᵀ`` costs another ~150 GMAC. Instead the orthogonal factors are *structured random
orthogonal transforms*: three rounds of (random sign flip → orthonormal DCT-II) along the rows, the
construction of structured orthogonal random features (Yu et al. 2016, "Orthogonal Random Features",
NeurIPS, with the DCT in place of the Hadamard transform so that any size works), applied with FFTs in
``O(m·n·log n)``. Each round is exactly orthogonal, so the spectrum is exactly ``s`` (up to float32
rounding), and AlexNet's 61M weights build in 2–3 s on one core (mostly memory traffic).

Example
-------
>>> import numpy as np
>>> w = spectral_matrix(64, 144, np.random.default_rng(0))
>>> w.shape, w.dtype
((64, 144), dtype('float32'))
>>> s = np.linalg.svd(w.astype(np.float64), compute_uv=False)
>>> bool(np.allclose(s / s[0], (np.arange(64) + 1.0) ** -0.5, atol=1e-5))
True
"""

from __future__ import annotations

import zlib

import numpy as np
import scipy.fft

__all__ = ["SPECTRUM_ALPHA", "MIX_ROUNDS", "layer_rng", "power_law_spectrum", "spectral_matrix", "spectral_conv_weight"]

#: Power-law exponent of the singular values, ``s_i ∝ (i + 1)^-α``.
SPECTRUM_ALPHA = 0.5

#: Rounds of sign-flip and DCT that make one structured random orthogonal transform.
MIX_ROUNDS = 3


def layer_rng(seed: int, layer_name: str) -> np.random.Generator:
    """A generator that depends only on ``seed`` and the layer's name, not on build order.

    Examples
    --------
    >>> float(layer_rng(0, "fc6").standard_normal()) == float(layer_rng(0, "fc6").standard_normal())
    True
    """
    return np.random.default_rng([int(seed), zlib.crc32(layer_name.encode("utf-8"))])


def power_law_spectrum(k: int, frobenius_norm: float, *, alpha: float = SPECTRUM_ALPHA) -> np.ndarray:
    """``k`` singular values ``s_i ∝ (i + 1)^-alpha`` (float64, descending) with ``‖s‖₂ = frobenius_norm``.

    Examples
    --------
    >>> s = power_law_spectrum(4, 2.0, alpha=1.0)
    >>> round(float(np.sqrt((s ** 2).sum())), 6), bool(s[0] > s[1] > s[2] > s[3])
    (2.0, True)
    """
    if k < 1:
        raise ValueError(f"spectrum length k={k} must be at least 1")
    s = (np.arange(k, dtype=np.float64) + 1.0) ** (-float(alpha))
    return s * (float(frobenius_norm) / np.linalg.norm(s))


def _mix_rows(x: np.ndarray, rng: np.random.Generator, rounds: int) -> np.ndarray:
    """Return ``x @ Q.T`` for a structured random orthogonal ``Q``, transforming along axis 1 in place.

    ``Q = C·D_r ··· C·D_1`` with ``C`` the orthonormal DCT-II and ``D_i`` random ±1 diagonals (the
    sign-flip/transform rounds of Yu et al.'s SORF, with a DCT in place of the Hadamard transform so that
    any size works). Column permutations would add little and cost a slow gather on large matrices.
    """
    n = x.shape[1]
    signs = np.array([-1.0, 1.0], dtype=x.dtype)
    for _ in range(rounds):
        x *= rng.choice(signs, size=n)[None, :]
        x = scipy.fft.dct(x, type=2, norm="ortho", axis=1, overwrite_x=True)
    return x


def spectral_matrix(
    m: int,
    n: int,
    rng: np.random.Generator,
    *,
    alpha: float = SPECTRUM_ALPHA,
    fan_in: int | None = None,
    rounds: int = MIX_ROUNDS,
) -> np.ndarray:
    """An ``m × n`` float32 matrix ``U·diag(s)·Vᵀ`` with a power-law spectrum and He-init norm.

    Parameters
    ----------
    m, n
        Rows (output units) and columns (inputs) of the matrix.
    rng
        Source of randomness (see :func:`layer_rng`).
    alpha
        Exponent of the spectrum ``s_i ∝ (i + 1)^-alpha``; 0 gives a flat spectrum.
    fan_in
        Fan-in for the He scale ``‖W‖²_F = 2·m·n / fan_in``; defaults to ``n``.
    rounds
        Rounds of the structured orthogonal transform (3 is enough to look Haar-random).

    Returns
    -------
    numpy.ndarray
        Shape ``(m, n)``, float32, singular values ``power_law_spectrum(min(m, n), ...)``.
    """
    if m < 1 or n < 1:
        raise ValueError(f"matrix shape ({m}, {n}) must be positive")
    fan_in = n if fan_in is None else int(fan_in)
    if m > n:
        # Build the transpose (same He norm, since fan_in is given) so that k = rows below.
        return np.ascontiguousarray(spectral_matrix(n, m, rng, alpha=alpha, fan_in=fan_in, rounds=rounds).T)
    s = power_law_spectrum(m, np.sqrt(2.0 * m * n / fan_in), alpha=alpha).astype(np.float32)
    # U: a random m × m orthogonal matrix, the transform applied to the rows of a random permutation matrix.
    u = np.zeros((m, m), dtype=np.float32)
    u[np.arange(m), rng.permutation(m)] = 1.0
    u = _mix_rows(u, rng, rounds)
    # U·diag(s)·[I_m 0]·Q_nᵀ = U·diag(s)·Vᵀ with V the first m columns of the orthogonal Q_n  (m × n).
    u *= s[None, :]
    full = np.zeros((m, n), dtype=np.float32)
    full[:, :m] = u
    return _mix_rows(full, rng, rounds)


def spectral_conv_weight(
    cout: int,
    cin_per_group: int,
    kh: int,
    kw: int,
    group: int,
    rng: np.random.Generator,
    *,
    alpha: float = SPECTRUM_ALPHA,
) -> np.ndarray:
    """A ``(cout, cin_per_group, kh, kw)`` conv weight; each group's ``(cout/group) × (cin/group·kh·kw)``
    matrix is a :func:`spectral_matrix` (He scale with ``fan_in = cin_per_group·kh·kw``).

    Examples
    --------
    >>> spectral_conv_weight(8, 2, 3, 3, 2, np.random.default_rng(0)).shape
    (8, 2, 3, 3)
    """
    if cout % group:
        raise ValueError(f"cout={cout} is not divisible by group={group}")
    per = cout // group
    cols = cin_per_group * kh * kw
    if per == 1:
        # Depthwise: every group is a 1 × cols matrix, whose only singular value is its norm; a Haar-random
        # direction scaled to the He norm sqrt(2) is exactly what spectral_matrix would give, in one draw.
        rows = rng.standard_normal((group, cols))
        rows *= np.sqrt(2.0) / np.linalg.norm(rows, axis=1, keepdims=True)
        return rows.astype(np.float32).reshape(cout, cin_per_group, kh, kw)
    blocks = [spectral_matrix(per, cols, rng, alpha=alpha) for _ in range(group)]
    return np.concatenate(blocks, axis=0).reshape(cout, cin_per_group, kh, kw)
