"""The numpy reference backend (processor ``cpu``).

Convolution is im2col + one BLAS GEMM per image and group: the column matrix is built by ``kh·kw`` strided
slice copies (channel-major, NCHW), which measured faster than ``sliding_window_view`` + a transposing copy
and than an NHWC layout that needs the activations transposed twice (``benchmarks/runtime_backends.py``).
1×1 stride-1 unpadded convolutions are a plain GEMM on the input with no copy, and depthwise convolutions
(``group == C_in == C_out``) gather their taps per block of channels and reduce them with a batched matmul.
Scratch buffers (padded input, column matrices) are kept per thread and reused, so a warm run allocates
only its outputs. Pooling reduces strided slices of the unpadded input, each tap clipped to the outputs
whose window cell lies inside the input.

Everything stays float32; BLAS does the heavy lifting. The number of BLAS threads is set per instance
(``threads=``) through threadpoolctl while the instance runs a BLAS op (Conv, Gemm, MatMul). OpenBLAS's thread count is global to the
process, so two ``cpu`` instances used at the same time from different threads share it.
"""

from __future__ import annotations

import functools
import threading
from typing import Any, Sequence

import numpy as np

from deepx_opt.errors import BackendError, InputError
from deepx_opt.runtime.backends.base import (
    WEIGHT_NK_ATTR,
    Backend,
    fused_bounds,
    conv_output_hw,
    pool_output_hw,
)

__all__ = ["NumpyBackend", "recommended_openblas_coretype"]


def recommended_openblas_coretype() -> str | None:
    """``"SkylakeX"`` when this x86 CPU has AVX-512F, else ``None``.

    OpenBLAS picks Haswell (AVX2) kernels on some AVX-512 CPUs (AMD Zen 4/5) unless the environment variable
    ``OPENBLAS_CORETYPE=SkylakeX`` is set before numpy is first imported; AVX-512 kernels are ~1.8× faster
    there. Call this early, e.g. in ``deepx_opt/__init__.py``::

        coretype = recommended_openblas_coretype()
        if coretype:
            os.environ.setdefault("OPENBLAS_CORETYPE", coretype)

    Only ``/proc/cpuinfo`` is read (no numpy import), so the call is safe before numpy loads.
    """
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as fh:
            for line in fh:
                if line.startswith("flags"):
                    return "SkylakeX" if " avx512f" in f" {line.split(':', 1)[1]} " else None
    except OSError:
        pass
    return None


#: ops that call BLAS; only these pay for switching the BLAS thread count (~10 us per op)
_BLAS_OPS = frozenset({"Conv", "Gemm", "MatMul"})


class _Scratch(threading.local):
    """Grow-only flat float32 buffers reused between ops of one thread."""

    def __init__(self) -> None:
        self.bufs: dict[str, np.ndarray] = {}

    def get(self, tag: str, shape: tuple[int, ...]) -> np.ndarray:
        size = int(np.prod(shape))
        buf = self.bufs.get(tag)
        if buf is None or buf.size < size:
            buf = self.bufs[tag] = np.empty(max(size, 1), dtype=np.float32)
        return buf[:size].reshape(shape)


def _f32(x: np.ndarray) -> np.ndarray:
    return x if x.dtype == np.float32 else x.astype(np.float32)


def _activate_inplace(y: np.ndarray, attrs: dict) -> np.ndarray:
    """Apply a fused Relu/Clip (see ``fused_bounds``) in place to a fresh float result."""
    bounds = fused_bounds(attrs)
    if bounds is None or y.dtype.kind != "f":
        return y
    lo, hi = bounds
    if np.isinf(hi):
        np.maximum(y, np.float32(lo), out=y)
    else:
        np.clip(y, np.float32(lo), np.float32(hi), out=y)
    return y


class NumpyBackend(Backend):
    """numpy/BLAS backend; handles are ``numpy.ndarray`` (never modified after creation).

    Parameters
    ----------
    threads : int, optional
        BLAS threads used while this instance runs ops (``None``: leave the process setting alone).

    Example
    -------
    >>> import numpy as np
    >>> be = NumpyBackend(threads=1)
    >>> x = be.upload(np.ones((1, 1, 4, 4), np.float32))
    >>> w = be.upload(np.ones((2, 1, 3, 3), np.float32))
    >>> attrs = dict(kernel_shape=(3, 3), strides=(1, 1), pads=(1, 1, 1, 1), dilations=(1, 1), group=1)
    >>> be.download(be.run("Conv", [x, w, None], attrs)[0])[0, 0, 0].tolist()
    [4.0, 6.0, 6.0, 4.0]
    """

    kind = "cpu"
    #: OpenBLAS's batch-1 GEMM with the weight stored outputs × inputs (``x @ Wᵀ``) takes another code path
    #: than with it stored inputs × outputs: the same with one thread, 1.4–3.1× faster with two (weights of
    #: 0.25–4 MB, this 2-core machine), 2–7.6× with 16 (the H200 host, weights of 2–16 MB); slower only for
    #: 1–1.4 MB weights on many threads (1.4–1.6× there), which OpenBLAS splits between threads in the other
    #: layout and not yet in this one (``benchmarks/gemm_layout.py``).
    gemm_weight_layout = "nk"

    def __init__(self, threads: int | None = None) -> None:
        if threads is not None and (not isinstance(threads, int) or threads < 1):
            raise BackendError(f"threads must be a positive int or None, got {threads!r}")
        self.name = "cpu"
        self.threads = threads
        self._scratch = _Scratch()
        self._controller = None
        if threads is not None:
            from threadpoolctl import ThreadpoolController

            self._controller = ThreadpoolController()
        self._ops = {
            "Conv": self._conv, "Gemm": self._gemm, "MatMul": self._matmul,
            "BatchNormalization": self._batchnorm,
            "Relu": lambda i, a: [np.maximum(i[0], 0)],
            "Sigmoid": self._sigmoid,
            "Tanh": lambda i, a: [np.tanh(i[0])],
            "Identity": lambda i, a: [i[0]],
            "LeakyRelu": lambda i, a: [np.where(i[0] >= 0, i[0], i[0] * np.asarray(a["alpha"], i[0].dtype))],
            "Clip": self._clip,
            "Softmax": functools.partial(self._softmax, log=False),
            "LogSoftmax": functools.partial(self._softmax, log=True),
            "MaxPool": functools.partial(self._pool, is_max=True),
            "AveragePool": functools.partial(self._pool, is_max=False),
            "GlobalAveragePool": lambda i, a: [i[0].mean(axis=tuple(range(2, i[0].ndim)), keepdims=True,
                                                         dtype=np.float32).astype(i[0].dtype, copy=False)],
            "GlobalMaxPool": lambda i, a: [i[0].max(axis=tuple(range(2, i[0].ndim)), keepdims=True)],
            "LRN": self._lrn,
            "Reshape": lambda i, a: [i[0].reshape(tuple(int(d) for d in a["shape"]))],
            "Transpose": lambda i, a: [np.ascontiguousarray(np.transpose(i[0], a["perm"]))],
            "Concat": lambda i, a: [np.concatenate(list(i), axis=int(a["axis"]))],
            "Add": lambda i, a: [_activate_inplace(np.add(i[0], i[1]), a)],
            "Sub": lambda i, a: [_activate_inplace(np.subtract(i[0], i[1]), a)],
            "Mul": lambda i, a: [_activate_inplace(np.multiply(i[0], i[1]), a)],
            "Div": self._div,
            "Sum": self._sum,
            "Pad": self._pad,
            "Cast": lambda i, a: [i[0].astype(np.dtype(a["to"]))],
        }

    # ------------------------------------------------------------------------------------- protocol
    def upload(self, array: np.ndarray) -> np.ndarray:
        """The array itself when C-contiguous (no copy: do not modify it afterwards), else a copy.

        float64 arrays are stored as float32, the runtime's compute type; other dtypes are kept.
        """
        arr = np.asarray(array)
        if arr.dtype == np.float64:
            arr = arr.astype(np.float32)
        return arr if arr.flags.c_contiguous else arr.copy(order="C")

    def download(self, handle: np.ndarray) -> np.ndarray:
        return np.array(handle, copy=True)

    def shape_of(self, handle: np.ndarray) -> tuple[int, ...]:
        return tuple(handle.shape)

    def dtype_of(self, handle: np.ndarray) -> np.dtype:
        return handle.dtype

    def run(self, op_type: str, inputs: Sequence[Any], attrs: dict) -> list[np.ndarray]:
        fn = self._ops.get(op_type)
        if fn is None:
            raise self._unsupported(op_type)
        if self._controller is None or op_type not in _BLAS_OPS:
            return fn(inputs, attrs)
        with self._controller.limit(limits=self.threads, user_api="blas"):
            return fn(inputs, attrs)

    # ------------------------------------------------------------------------------------ linear ops
    def _gemm(self, inputs, attrs):
        a, b = inputs[0], inputs[1]
        c = inputs[2] if len(inputs) > 2 else None
        if attrs.get("transA", 0):
            a = a.T
        if attrs.get("transB", 0):
            b = b.T
        y = np.matmul(a, b)
        alpha = float(attrs.get("alpha", 1.0))
        beta = float(attrs.get("beta", 1.0))
        if alpha != 1.0:
            y *= np.float32(alpha)
        if c is not None and beta != 0.0:
            if beta == 1.0:
                y += c
            else:
                y += np.float32(beta) * c
        _activate_inplace(y, attrs)
        return [y]

    def _matmul(self, inputs, attrs):
        b = inputs[1].T if attrs.get(WEIGHT_NK_ATTR) else inputs[1]
        y = np.matmul(inputs[0], b)
        _activate_inplace(y, attrs)
        return [y]

    def _padded(self, x: np.ndarray, pads: Sequence[int]) -> np.ndarray:
        """Zero-padded copy of one image (C, H, W) in a reused scratch buffer."""
        pt, pl, pb, pr = pads
        if not (pt or pl or pb or pr):
            return x
        c, h, w = x.shape
        xp = self._scratch.get("pad", (c, h + pt + pb, w + pl + pr))
        # the buffer is reused across shapes, so clear the border explicitly
        if pt:
            xp[:, :pt] = 0
        if pb:
            xp[:, pt + h:] = 0
        if pl:
            xp[:, pt:pt + h, :pl] = 0
        if pr:
            xp[:, pt:pt + h, pl + w:] = 0
        xp[:, pt:pt + h, pl:pl + w] = x
        return xp

    def _conv(self, inputs, attrs):
        x, w = inputs[0], inputs[1]
        b = inputs[2] if len(inputs) > 2 else None
        if x.ndim != 4:
            raise InputError(f"Conv on the cpu backend needs a 4-D NCHW input, got shape {x.shape}")
        n, c, h, wd = x.shape
        cout, cg, kh, kw = w.shape
        g = int(attrs["group"])
        sh, sw = attrs["strides"]
        dh, dw = attrs["dilations"]
        pads = tuple(int(p) for p in attrs["pads"])
        oh, ow = conv_output_hw((h, wd), (kh, kw), (sh, sw), pads, (dh, dw))
        out = np.empty((n, cout, oh, ow), dtype=np.float32)
        if g == c and cout == c and cg == 1:
            self._depthwise(x, w, out, (sh, sw), pads, (dh, dw))
        elif g == 1 and kh == 1 and kw == 1 and sh == 1 and sw == 1 and not any(pads):
            w2 = w.reshape(cout, c)
            for i in range(n):
                np.matmul(w2, x[i].reshape(c, h * wd), out=out[i].reshape(cout, oh * ow))
        else:
            cog = cout // g
            kdim = cg * kh * kw
            wg = w.reshape(g, cog, kdim)
            for i in range(n):
                xp = self._padded(x[i], pads)
                cols = self._scratch.get("cols", (c, kh, kw, oh, ow))
                for ki in range(kh):
                    r0 = ki * dh
                    for kj in range(kw):
                        c0 = kj * dw
                        cols[:, ki, kj] = xp[:, r0:r0 + sh * (oh - 1) + 1:sh, c0:c0 + sw * (ow - 1) + 1:sw]
                cols2 = cols.reshape(g, kdim, oh * ow)
                oi = out[i].reshape(g, cog, oh * ow)
                if g == 1:
                    np.matmul(wg[0], cols2[0], out=oi[0])
                else:
                    np.matmul(wg, cols2, out=oi)
        if b is not None:
            out += b.reshape(1, cout, 1, 1)
        _activate_inplace(out, attrs)
        return [out]

    def _depthwise(self, x, w, out, strides, pads, dilations):
        """Depthwise conv (one filter per channel): per block of channels, the kh·kw taps are gathered
        into a small column buffer and reduced by a batched (1 × kh·kw) @ (kh·kw × OH·OW) matmul.

        Blocks of ~32 K output elements keep the buffer in cache; measured 1.3–1.8× faster than kh·kw
        whole-tensor multiply-add passes (benchmarks/runtime_backends.py, dwconv row).
        """
        n, c, h, wd = x.shape
        _, _, kh, kw = w.shape
        sh, sw = strides
        dh, dw = dilations
        oh, ow = out.shape[2:]
        taps = kh * kw
        cb = max(1, 32768 // max(1, oh * ow))
        wr = w.reshape(c, 1, taps)
        for i in range(n):
            xp = self._padded(x[i], pads)
            cols = self._scratch.get("dwcols", (min(cb, c), taps, oh, ow))
            oi = out[i].reshape(c, 1, oh * ow)
            for c0 in range(0, c, cb):
                c1 = min(c, c0 + cb)
                cc = cols[:c1 - c0]
                for ki in range(kh):
                    for kj in range(kw):
                        cc[:, ki * kw + kj] = xp[c0:c1, ki * dh:ki * dh + sh * (oh - 1) + 1:sh,
                                                 kj * dw:kj * dw + sw * (ow - 1) + 1:sw]
                np.matmul(wr[c0:c1], cc.reshape(c1 - c0, taps, oh * ow), out=oi[c0:c1])

    # ------------------------------------------------------------------------------- normalisation
    def _batchnorm(self, inputs, attrs):
        x, scale, bias, mean, var = inputs[:5]
        s = (scale / np.sqrt(var + np.float32(attrs["epsilon"]))).astype(x.dtype, copy=False)
        shift = (bias - mean * s).astype(x.dtype, copy=False)
        bshape = (1, x.shape[1]) + (1,) * (x.ndim - 2)
        y = x * s.reshape(bshape)
        y += shift.reshape(bshape)
        return [y]

    def _lrn(self, inputs, attrs):
        x = inputs[0]
        size = int(attrs["size"])
        alpha, beta, bias = float(attrs["alpha"]), float(attrs["beta"]), float(attrs["bias"])
        c = x.shape[1]
        sq = np.square(x)
        acc = sq.copy()
        lo, hi = (size - 1) // 2, size - 1 - (size - 1) // 2
        for o in range(-lo, hi + 1):
            if o == 0 or abs(o) >= c:
                continue
            if o > 0:
                acc[:, :c - o] += sq[:, o:]
            else:
                acc[:, -o:] += sq[:, :c + o]
        acc *= np.float32(alpha / size)
        acc += np.float32(bias)
        np.power(acc, np.float32(beta), out=acc)
        return [x / acc]

    def _softmax(self, inputs, attrs, *, log: bool):
        x = inputs[0]
        axis = int(attrs["axis"])
        if attrs.get("legacy", False):
            shape = x.shape
            x2 = x.reshape(int(np.prod(shape[:axis], dtype=np.int64)), -1)
            return [self._softmax_axis(x2, 1, log).reshape(shape)]
        return [self._softmax_axis(x, axis, log)]

    @staticmethod
    def _softmax_axis(x, axis, log):
        y = x - x.max(axis=axis, keepdims=True)
        if log:
            y -= np.log(np.exp(y).sum(axis=axis, keepdims=True))
            return y
        np.exp(y, out=y)
        y /= y.sum(axis=axis, keepdims=True)
        return y

    # ------------------------------------------------------------------------------------- pooling
    def _pool(self, inputs, attrs, *, is_max: bool):
        """Max/average pooling as kh·kw strided-slice reductions, each tap restricted to the outputs whose
        window cell falls inside the input (no padded copy of the input)."""
        x = inputs[0]
        if x.ndim != 4:
            raise InputError(f"pooling on the cpu backend needs a 4-D NCHW input, got shape {x.shape}")
        n, c, h, w = x.shape
        kh, kw = attrs["kernel_shape"]
        sh, sw = attrs["strides"]
        dh, dw = attrs.get("dilations", (1, 1)) if is_max else (1, 1)
        pt, pl, pb, pr = (int(p) for p in attrs["pads"])
        ceil_mode = int(attrs.get("ceil_mode", 0))
        oh, ow = pool_output_hw((h, w), (kh, kw), (sh, sw), (pt, pl, pb, pr), (dh, dw), ceil_mode)

        def span(k, d, s, p, size, o):
            # outputs o0..o1-1 whose tap-k cell (o*s - p + k*d) lies in [0, size), and that cell for o0
            off = k * d - p
            o0 = max(0, (-off + s - 1) // s)
            o1 = min(o, (size - 1 - off) // s + 1)
            return o0, max(o0, o1), o0 * s + off

        full = not (pt or pl or pb or pr) and (oh - 1) * sh + dh * (kh - 1) < h and (ow - 1) * sw + dw * (kw - 1) < w
        out = None if full else np.full((n, c, oh, ow), -np.inf if is_max else 0.0, dtype=x.dtype)
        for ki in range(kh):
            r0, r1, i0 = span(ki, dh, sh, pt, h, oh)
            if r1 <= r0:
                continue
            for kj in range(kw):
                c0, c1, j0 = span(kj, dw, sw, pl, w, ow)
                if c1 <= c0:
                    continue
                sl = x[:, :, i0:i0 + sh * (r1 - r0 - 1) + 1:sh, j0:j0 + sw * (c1 - c0 - 1) + 1:sw]
                if out is None:
                    out = sl.copy()
                    continue
                dst = out[:, :, r0:r1, c0:c1]
                if is_max:
                    np.maximum(dst, sl, out=dst)
                else:
                    dst += sl
        if is_max:
            return [out]
        # divisor per output position: window cells inside the input (count_include_pad=0) or inside
        # input + declared pads (count_include_pad=1); ceil-mode overhang never counts (onnxruntime rule)
        cip = int(attrs.get("count_include_pad", 0))

        def counts(o, s, k, size, p0, p1):
            start = np.arange(o) * s - p0
            end = np.minimum(start + k, size + p1) if cip else np.minimum(start + k, size)
            begin = start if cip else np.maximum(start, 0)
            return (end - begin).astype(np.float32)

        out /= np.outer(counts(oh, sh, kh, h, pt, pb), counts(ow, sw, kw, w, pl, pr))
        return [out]

    # ---------------------------------------------------------------------------------- elementwise
    @staticmethod
    def _sigmoid(inputs, attrs):
        from scipy.special import expit

        return [expit(inputs[0])]

    @staticmethod
    def _clip(inputs, attrs):
        x = inputs[0]
        lo, hi = float(attrs.get("min", -np.inf)), float(attrs.get("max", np.inf))
        lo_v = np.asarray(lo).astype(x.dtype) if np.isfinite(lo) else None
        hi_v = np.asarray(hi).astype(x.dtype) if np.isfinite(hi) else None
        if lo_v is None and hi_v is None:
            return [x]
        return [np.clip(x, lo_v, hi_v)]

    @staticmethod
    def _div(inputs, attrs):
        a, b = inputs[0], inputs[1]
        if a.dtype.kind in "iu" and b.dtype.kind in "iu":
            # ONNX integer division truncates toward zero (numpy's // floors)
            q = np.floor_divide(a, b)
            fix = (np.remainder(a, b) != 0) & ((a < 0) ^ (b < 0))
            return [q + fix.astype(q.dtype)]
        return [_activate_inplace(np.divide(a, b), attrs)]

    @staticmethod
    def _sum(inputs, attrs):
        if len(inputs) == 1:
            return [inputs[0]]
        acc = np.add(inputs[0], inputs[1])
        for t in inputs[2:]:
            acc = np.add(acc, t)
        return [_activate_inplace(acc, attrs)]

    @staticmethod
    def _pad(inputs, attrs):
        x = inputs[0]
        pads = [int(p) for p in attrs["pads"]]
        r = x.ndim
        if len(pads) != 2 * r:
            raise InputError(f"Pad needs {2 * r} pads for a rank-{r} input, got {pads}")
        begin, end = pads[:r], pads[r:]
        # negative pads crop first
        crop = tuple(slice(max(0, -b), x.shape[i] - max(0, -e)) for i, (b, e) in enumerate(zip(begin, end)))
        x = x[crop]
        widths = [(max(0, b), max(0, e)) for b, e in zip(begin, end)]
        mode = attrs.get("mode", "constant")
        if mode == "constant":
            return [np.pad(x, widths, mode="constant", constant_values=np.asarray(attrs.get("value", 0.0)).astype(x.dtype))]
        if mode in ("reflect", "edge"):
            return [np.pad(x, widths, mode=mode)]
        raise InputError(f"Pad mode {mode!r} is not one of 'constant', 'reflect', 'edge'")
