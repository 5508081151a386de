"""OpenCL C sources of the OpenCL backend (kept apart from the host code so both stay readable).

Three programs:

* ``GEMM_BLOCKED`` — register-blocked GEMM for CPU-like devices (PoCL): each work-item owns 6 rows ×
  32 columns in twelve ``float16`` accumulators; A and B are packed into panels so the inner loop streams
  two contiguous strips. GPU-style local-memory tiling is far slower on PoCL (docs/opencl.md).
* ``GEMM_TILED`` — 2-D register-blocked local-memory GEMM for GPUs (tile shape set by build options;
  ``opencl.TILE_CONFIGS``), e.g. 128×128 per work-group, 8×8 per work-item.
* ``FLOAT_OPS`` — float32 compute kernels (im2col, depthwise conv, pooling, LRN, softmax, BN, unary ops).
* ``GENERIC_OPS`` — data-movement and arithmetic kernels templated on the element type ``T``
  (broadcasting binary ops, permute, 2-D block copy for Concat, Pad) and ``CAST`` (``SRC`` → ``DST``).

Both GEMM kernels compute ``C[m, n] = act(alpha · Σ_k A[m, k] B[k, n] + beta · bias[m·bias_sm + n·bias_sn])``
with row-major A (lda), B (ldb), C (ldc) at element offsets, so bias-add and a ReLU/Clip (a clamp to
``[lo, hi]``) are fused into the GEMM.
"""

GEMM_ARGS = """
    const int M, const int N, const int K,
    __global const float *A, const int a_off, const int lda,
    __global const float *B, const int b_off, const int ldb,
    __global float *C, const int c_off, const int ldc,
    __global const float *bias, const int bias_off, const int bias_sm, const int bias_sn, const int has_bias,
    const float alpha, const float beta, const float lo, const float hi
"""

GEMM_EPILOGUE = """
/* the fused activation is a clamp: none = [-inf, inf], Relu = [0, inf], Clip = [min, max] */
inline void store_out(__global float *C, int idx, float v, __global const float *bias, int bidx,
                      int has_bias, float alpha, float beta, float lo, float hi) {
    v *= alpha;
    if (has_bias) v += beta * bias[bidx];
    C[idx] = fmin(fmax(v, lo), hi);
}
"""

GEMM_BLOCKED = GEMM_EPILOGUE + """
#define RB 6   /* rows per work-item (A panel height) */
#define NP 2   /* 16-column B panels per work-item */
/* Both operands are packed (pack_a / pack_b / im2col_packed):
   A in 6-row panels: element (m, k) at a_off + (m / 6) * K * 6 + k * 6 + m % 6 (rows padded with zeros),
   B in 16-column panels: element (k, n) at b_off + (n / 16) * K * 16 + k * 16 + n % 16, the column count
   padded with zeros to a multiple of 32, so each work-item streams contiguous strips: per k, 6 scalars of
   A and two float16 of B feed 12 broadcast FMAs into 12 float16 accumulators (6 x 32 outputs).
   Measured on PoCL (2-vCPU AVX-512): 6x32 121 GFLOP/s at 1024^3, 8x16 85, 5x32 102, 7x32 108, 4x48 73.
   lda and ldb are unused. */
__kernel void gemm(""" + GEMM_ARGS + """) {
    const int cb = get_global_id(0) * 16 * NP;
    const int rb = get_global_id(1) * RB;
    if (cb >= N || rb >= M) return;
    float16 acc[NP][RB];
    for (int p = 0; p < NP; ++p)
        for (int i = 0; i < RB; ++i) acc[p][i] = 0.0f;
    __global const float *Bb = B + b_off + (cb / 16) * K * 16;
    __global const float *Ab = A + a_off + (rb / RB) * K * RB;
    for (int k = 0; k < K; ++k) {
        float16 bv[NP];
        #pragma unroll
        for (int p = 0; p < NP; ++p) bv[p] = vload16(k, Bb + p * K * 16);
        #pragma unroll
        for (int i = 0; i < RB; ++i) {
            const float av = Ab[k * RB + i];
            #pragma unroll
            for (int p = 0; p < NP; ++p) acc[p][i] = fma((float16)(av), bv[p], acc[p][i]);
        }
    }
    const int rows = min(RB, M - rb);
    for (int p = 0; p < NP; ++p) {
        const int c0 = cb + 16 * p;
        const int ncols = min(16, N - c0);
        for (int i = 0; i < rows; ++i) {
            float r[16];
            vstore16(acc[p][i], 0, r);
            const int m = rb + i;
            for (int j = 0; j < ncols; ++j)
                store_out(C, c_off + m * ldc + c0 + j, r[j], bias, bias_off + m * bias_sm + (c0 + j) * bias_sn,
                          has_bias, alpha, beta, lo, hi);
        }
    }
}

/* one row of A (row-major, at a_off) times B in 16-column panels: for the few-row GEMMs of batch-1
   fully-connected layers, where 8-row panels would waste 7/8 of the FMAs; two accumulators break the
   FMA dependency chain. Row offsets of C and bias are applied by the caller. */
__kernel void gemv(const int N, const int K, __global const float *A, const int a_off,
                   __global const float *B, const int b_off, __global float *C, const int c_off,
                   __global const float *bias, const int bias_off, const int bias_sn, const int has_bias,
                   const float alpha, const float beta, const float lo, const float hi) {
    const int cb = get_global_id(0) * 16;
    if (cb >= N) return;
    __global const float *Bb = B + b_off + (cb / 16) * K * 16;
    __global const float *a = A + a_off;
    float16 acc0 = 0.0f, acc1 = 0.0f;
    int k = 0;
    for (; k + 1 < K; k += 2) {
        acc0 = fma((float16)(a[k]), vload16(k, Bb), acc0);
        acc1 = fma((float16)(a[k + 1]), vload16(k + 1, Bb), acc1);
    }
    if (k < K) acc0 = fma((float16)(a[k]), vload16(k, Bb), acc0);
    float r[16];
    vstore16(acc0 + acc1, 0, r);
    const int ncols = min(16, N - cb);
    for (int j = 0; j < ncols; ++j)
        store_out(C, c_off + cb + j, r[j], bias, bias_off + (cb + j) * bias_sn, has_bias, alpha, beta, lo, hi);
}

/* pack an M x K matrix (element (m, k) at in_off + m * sm + k * sk) into RB-row panels */
__kernel void pack_a(__global float *out, const int out_off, __global const float *in, const int in_off,
                     const int sm, const int sk, const int M, const int K, const int n_total) {
    const int gid = get_global_id(0);
    if (gid >= n_total) return;
    const int i = gid % RB;
    const int k = (gid / RB) % K;
    const int m = (gid / (RB * K)) * RB + i;
    out[out_off + gid] = m < M ? in[in_off + m * sm + k * sk] : 0.0f;
}

/* pack a K x N matrix (element (k, n) at in_off + k * sk + n * sn) into 16-column panels */
__kernel void pack_b(__global float *out, __global const float *in, const int in_off, const int sk,
                     const int sn, const int K, const int N, const int n_total) {
    const int gid = get_global_id(0);
    if (gid >= n_total) return;
    const int j = gid % 16;
    const int k = (gid / 16) % K;
    const int n = (gid / (16 * K)) * 16 + j;
    out[gid] = n < N ? in[in_off + k * sk + n * sn] : 0.0f;
}

/* im2col straight into the packed panel layout, one (kdim x OH*OW) panel set per group; one work-item
   fills the 16 columns of one panel row (index arithmetic once per 16 values, one vector store) */
__kernel void im2col_packed(__global float *cols, __global const float *x, const int x_off,
                            const int Cg, const int H, const int W, const int OH, const int OW,
                            const int kh, const int kw, const int sh, const int sw, const int pt, const int pl,
                            const int dh, const int dw, const int n_rows) {
    const int gid = get_global_id(0);
    if (gid >= n_rows) return;
    const int kdim = Cg * kh * kw;
    const int ohw = OH * OW;
    const int npan = (ohw + 16 * NP - 1) / (16 * NP) * NP;
    const int k = gid % kdim;
    const int t = gid / kdim;
    const int pan = t % npan;
    const int g = t / npan;
    const int kj = k % kw;
    const int ki = (k / kw) % kh;
    const int c = g * Cg + k / (kh * kw);
    __global const float *xc = x + x_off + c * H * W;
    int n = pan * 16;
    int oh = n / OW, ow = n % OW;
    float v[16];
    /* fast path: the 16 columns lie in one output row and their window cells inside the input row */
    if (n + 16 <= ohw && ow + 16 <= OW) {
        const int h = oh * sh - pt + ki * dh;
        const int w0 = ow * sw - pl + kj * dw;
        if (h >= 0 && h < H && w0 >= 0 && w0 + 15 * sw < W) {
            __global const float *src = xc + h * W + w0;
            if (sw == 1) {
                vstore16(vload16(0, src), gid, cols);
            } else {
                for (int j = 0; j < 16; ++j) v[j] = src[j * sw];
                vstore16(vload16(0, v), gid, cols);
            }
            return;
        }
    }
    for (int j = 0; j < 16; ++j, ++n) {
        float val = 0.0f;
        if (n < ohw) {
            const int h = oh * sh - pt + ki * dh;
            const int w = ow * sw - pl + kj * dw;
            if (h >= 0 && h < H && w >= 0 && w < W) val = xc[h * W + w];
        }
        v[j] = val;
        if (++ow == OW) { ow = 0; ++oh; }
    }
    vstore16(vload16(0, v), gid, cols);
}
"""


def _load_tile(t0: str) -> str:
    """OpenCL statements: the next A and B stage (k from ``t0``) from global memory into registers."""
    return f"""
    #pragma unroll
    for (int i = 0; i < NA; ++i) {{
        const int e = tid + i * NT, r = e / BK, k = e % BK, gm = m0 + r, gk = ({t0}) + k;
        ra[i] = (e < TM * BK && gm < M && gk < ke) ? Ag[gm * lda + gk] : 0.0f;
    }}
    #pragma unroll
    for (int i = 0; i < NB; ++i) {{
        const int e = tid + i * NT, k = e / TN, n = e % TN, gk = ({t0}) + k, gn = n0 + n;
        rb[i] = (e < TN * BK && gk < ke && gn < N) ? Bg[gk * ldb + gn] : 0.0f;
    }}
"""


def _store_tile(buf: str) -> str:
    """OpenCL statements: the registers of one stage into local buffer ``buf`` (A transposed, k-major)."""
    return f"""
    #pragma unroll
    for (int i = 0; i < NA; ++i) {{
        const int e = tid + i * NT;
        if (e < TM * BK) As[({buf}) * BK * LDAS + (e % BK) * LDAS + e / BK] = ra[i];
    }}
    #pragma unroll
    for (int i = 0; i < NB; ++i) {{
        const int e = tid + i * NT;
        if (e < TN * BK) Bs[({buf}) * BK * LDBS + (e / TN) * LDBS + e % TN] = rb[i];
    }}
"""


_GEMM_ARGS_RESTRICT = (GEMM_ARGS.replace("__global const float *A", "__global const float * restrict A")
                       .replace("__global const float *B", "__global const float * restrict B"))

GEMM_TILED = GEMM_EPILOGUE + """
/* 2-D register-blocked GEMM for GPUs. Build options define the tile:
   TM x TN  outputs per work-group (block tile), WM x WN outputs per work-item (WM, WN multiples of 4),
   BK       the k-depth of one local-memory stage.
   Work-group (TN/WN, TM/WM). Per stage, the work-group copies an A tile (TM x BK, stored k-major, i.e.
   transposed) and a B tile (BK x TN) into local memory; double-buffered, with the next stage's global
   loads issued into registers before the current stage's FMAs (one barrier per stage). Each work-item
   reads, per k, WM/4 float4 of A and WN/4 float4 of B from local memory and does WM*WN FMAs. A work-item's
   rows are {g*4*TY + ty*4 + q} and its columns {h*4*TX + tx*4 + r}: a warp's float4 reads of B cover
   contiguous 16-byte words (no bank conflicts), those of A are broadcasts. Edge tiles: loads outside
   M, N, K read zeros, stores outside M, N are skipped, so any M, N, K >= 0 and any lda/ldb/offsets work. */
#define TX (TN / WN)
#define TY (TM / WM)
#define NT (TX * TY)
#define LDAS (TM + 4)  /* local row pitch (floats); +4 keeps float4 alignment and staggers banks */
#define LDBS (TN + 4)
#define NA ((TM * BK + NT - 1) / NT)
#define NB ((TN * BK + NT - 1) / NT)

__kernel __attribute__((reqd_work_group_size(TX, TY, 1)))
void gemm(""" + _GEMM_ARGS_RESTRICT + """, const int kchunk) {
    const int tx = get_local_id(0), ty = get_local_id(1);
    const int tid = ty * TX + tx;
    const int m0 = get_group_id(1) * TM, n0 = get_group_id(0) * TN;
    const int kb = get_group_id(2) * kchunk, ke = min(K, kb + kchunk);
    __local float4 As4[2 * BK * LDAS / 4];
    __local float4 Bs4[2 * BK * LDBS / 4];
    __local float *As = (__local float *)As4;
    __local float *Bs = (__local float *)Bs4;
    __global const float *Ag = A + a_off;
    __global const float *Bg = B + b_off;
    float acc[WM][WN];
    #pragma unroll
    for (int i = 0; i < WM; ++i)
        #pragma unroll
        for (int j = 0; j < WN; ++j) acc[i][j] = 0.0f;
    float ra[NA], rb[NB];

""" + _load_tile("kb") + _store_tile("0") + """
    barrier(CLK_LOCAL_MEM_FENCE);
    int cur = 0;
    for (int t = kb; t < ke; t += BK) {
        const int has_next = t + BK < ke;
        if (has_next) {""" + _load_tile("t + BK") + """        }
        __local const float4 *as = As4 + cur * (BK * LDAS / 4) + ty;
        __local const float4 *bs = Bs4 + cur * (BK * LDBS / 4) + tx;
        #pragma unroll
        for (int k = 0; k < BK; ++k) {
            float a[WM], b[WN];
            #pragma unroll
            for (int g = 0; g < WM / 4; ++g) {
                const float4 v = as[k * (LDAS / 4) + g * TY];
                a[4 * g] = v.x; a[4 * g + 1] = v.y; a[4 * g + 2] = v.z; a[4 * g + 3] = v.w;
            }
            #pragma unroll
            for (int h = 0; h < WN / 4; ++h) {
                const float4 v = bs[k * (LDBS / 4) + h * TX];
                b[4 * h] = v.x; b[4 * h + 1] = v.y; b[4 * h + 2] = v.z; b[4 * h + 3] = v.w;
            }
            #pragma unroll
            for (int i = 0; i < WM; ++i)
                #pragma unroll
                for (int j = 0; j < WN; ++j) acc[i][j] = fma(a[i], b[j], acc[i][j]);
        }
        if (has_next) {""" + _store_tile("cur ^ 1") + """        }
        barrier(CLK_LOCAL_MEM_FENCE);
        cur ^= 1;
    }
    #pragma unroll
    for (int i = 0; i < WM; ++i) {
        const int m = m0 + (i / 4) * 4 * TY + ty * 4 + i % 4;
        if (m >= M) continue;
        #pragma unroll
        for (int j = 0; j < WN; ++j) {
            const int n = n0 + (j / 4) * 4 * TX + tx * 4 + j % 4;
            if (n < N)
                store_out(C, c_off + get_group_id(2) * M * ldc + m * ldc + n, acc[i][j], bias, bias_off + m * bias_sm + n * bias_sn,
                          has_bias, alpha, beta, lo, hi);
        }
    }
}

/* split-K: the work-group grid's third dimension splits K into chunks of kchunk (each a multiple of BK);
   chunk z writes its raw partial product to C + z * M * ldc (a workspace; the caller passes alpha = 1, no
   bias, no clamp) and splitk_reduce sums the S partials and applies the epilogue. */
__kernel void splitk_reduce(__global float *C, const int c_off, const int ldc, __global const float *W,
                            const int S, const int M, const int N,
                            __global const float *bias, const int bias_off, const int bias_sm, const int bias_sn,
                            const int has_bias, const float alpha, const float beta, const float lo,
                            const float hi) {
    const int gid = get_global_id(0);
    if (gid >= M * N) return;
    const int m = gid / N, n = gid % N;
    float s = 0.0f;
    for (int z = 0; z < S; ++z) s += W[z * M * N + gid];
    store_out(C, c_off + m * ldc + n, s, bias, bias_off + m * bias_sm + n * bias_sn, has_bias, alpha, beta, lo, hi);
}

/* few-row GEMM (batch-1 fully-connected layers): one work-item per column n and K chunk z (second grid
   dimension), all M <= GEMV_ROWS rows at once; a warp reads a contiguous row segment of B per k, A is a
   broadcast. Partials go to W[z * M * N + m * N + n] for splitk_reduce. */
#define GEMV_ROWS 8
__kernel void gemv_part(const int M, const int N, const int K, __global const float * restrict A, const int a_off,
                        const int lda, __global const float * restrict B, const int b_off, const int ldb,
                        __global float *W, const int kchunk) {
    const int n = get_global_id(0);
    const int z = get_global_id(1);
    if (n >= N) return;
    const int kb = z * kchunk, ke = min(K, kb + kchunk);
    float acc[GEMV_ROWS];
    #pragma unroll
    for (int m = 0; m < GEMV_ROWS; ++m) acc[m] = 0.0f;
    __global const float *a = A + a_off;
    __global const float *b = B + b_off + n;
    #pragma unroll 4
    for (int k = kb; k < ke; ++k) {
        const float bv = b[k * ldb];
        #pragma unroll
        for (int m = 0; m < GEMV_ROWS; ++m)
            if (m < M) acc[m] = fma(a[m * lda + k], bv, acc[m]);
    }
    #pragma unroll
    for (int m = 0; m < GEMV_ROWS; ++m)
        if (m < M) W[z * M * N + m * N + n] = acc[m];
}
"""

FLOAT_OPS = """
__kernel void im2col(__global float *cols, __global const float *x, const int x_off,
                     const int C, const int H, const int W, const int OH, const int OW,
                     const int kh, const int kw, const int sh, const int sw, const int pt, const int pl,
                     const int dh, const int dw, const int n) {
    const int gid = get_global_id(0);
    if (gid >= n) return;
    const int ow = gid % OW;
    int t = gid / OW;
    const int oh = t % OH; t /= OH;
    const int kj = t % kw; t /= kw;
    const int ki = t % kh;
    const int c = t / kh;
    const int h = oh * sh - pt + ki * dh;
    const int w = ow * sw - pl + kj * dw;
    cols[gid] = (h >= 0 && h < H && w >= 0 && w < W) ? x[x_off + (c * H + h) * W + w] : 0.0f;
}

/* depthwise (group == C_in, one input channel per filter; mult filters per input channel) */
__kernel void dwconv(__global float *out, __global const float *x, __global const float *wt,
                     __global const float *bias, const int has_bias,
                     const int C, const int H, const int W, const int OH, const int OW,
                     const int kh, const int kw, const int sh, const int sw, const int pt, const int pl,
                     const int dh, const int dw, const int mult, const float lo, const float hi, const int n) {
    const int gid = get_global_id(0);
    if (gid >= n) return;
    const int ow = gid % OW;
    int t = gid / OW;
    const int oh = t % OH; t /= OH;
    const int co = t % (C * mult);
    const int b = t / (C * mult);
    const int ci = co / mult;
    __global const float *xb = x + (b * C + ci) * H * W;
    __global const float *wb = wt + co * kh * kw;
    float acc = has_bias ? bias[co] : 0.0f;
    for (int ki = 0; ki < kh; ++ki) {
        const int h = oh * sh - pt + ki * dh;
        if (h < 0 || h >= H) continue;
        for (int kj = 0; kj < kw; ++kj) {
            const int w = ow * sw - pl + kj * dw;
            if (w >= 0 && w < W) acc = fma(xb[h * W + w], wb[ki * kw + kj], acc);
        }
    }
    out[gid] = fmin(fmax(acc, lo), hi);
}

/* mode 0: max, 1: average excluding pads, 2: average including declared pads */
__kernel void pool2d(__global float *out, __global const float *x,
                     const int H, const int W, const int OH, const int OW,
                     const int kh, const int kw, const int sh, const int sw,
                     const int pt, const int pl, const int pb, const int pr,
                     const int dh, const int dw, const int mode, const int n) {
    const int gid = get_global_id(0);
    if (gid >= n) return;
    const int ow = gid % OW;
    int t = gid / OW;
    const int oh = t % OH;
    const int nc = t / OH;
    __global const float *xb = x + nc * H * W;
    const int hs = oh * sh - pt, ws = ow * sw - pl;
    if (mode == 0) {
        float m = -INFINITY;
        for (int ki = 0; ki < kh; ++ki) {
            const int h = hs + ki * dh;
            if (h < 0 || h >= H) continue;
            for (int kj = 0; kj < kw; ++kj) {
                const int w = ws + kj * dw;
                if (w >= 0 && w < W) m = fmax(m, xb[h * W + w]);
            }
        }
        out[gid] = m;
        return;
    }
    float s = 0.0f;
    int cnt = 0;
    for (int ki = 0; ki < kh; ++ki) {
        const int h = hs + ki;
        if (h < 0 || h >= H) continue;
        for (int kj = 0; kj < kw; ++kj) {
            const int w = ws + kj;
            if (w >= 0 && w < W) { s += xb[h * W + w]; ++cnt; }
        }
    }
    if (mode == 2) cnt = (min(hs + kh, H + pb) - hs) * (min(ws + kw, W + pr) - ws);
    out[gid] = s / (float)cnt;
}

/* mode 0: mean, 1: max over the HW trailing elements of each (n, c) */
__kernel void gpool(__global float *out, __global const float *x, const int HW, const int mode, const int n) {
    const int gid = get_global_id(0);
    if (gid >= n) return;
    __global const float *xb = x + gid * HW;
    float acc = mode ? -INFINITY : 0.0f;
    for (int i = 0; i < HW; ++i) acc = mode ? fmax(acc, xb[i]) : acc + xb[i];
    out[gid] = mode ? acc : acc / (float)HW;
}

__kernel void lrn(__global float *out, __global const float *x, const int C, const int HW,
                  const int size, const float alpha, const float beta, const float bias, const int n) {
    const int gid = get_global_id(0);
    if (gid >= n) return;
    const int p = gid % HW;
    const int c = (gid / HW) % C;
    const int b = gid / (HW * C);
    const int lo = max(0, c - (size - 1) / 2);
    const int hi = min(C - 1, c + (size - 1) - (size - 1) / 2);
    float s = 0.0f;
    for (int k = lo; k <= hi; ++k) { const float v = x[(b * C + k) * HW + p]; s += v * v; }
    const float d = bias + alpha / (float)size * s;  /* > 0 */
    /* PoCL's pow/exp/log are scalar library calls (~90 / 25 ns per element); the common betas
       (AlexNet's 0.75) go through rsqrt/sqrt, which vectorise (~2 ns) */
    float inv;
    if (beta == 0.75f) inv = rsqrt(d) * rsqrt(sqrt(d));
    else if (beta == 0.5f) inv = rsqrt(d);
    else if (beta == 1.0f) inv = 1.0f / d;
    else inv = exp(-beta * log(d));
    out[gid] = x[gid] * inv;
}

__kernel void softmax(__global float *out, __global const float *x, const int dim, const int inner,
                      const int is_log, const int n) {
    const int gid = get_global_id(0);
    if (gid >= n) return;
    const int o = gid / inner, i = gid % inner;
    const int base = o * dim * inner + i;
    float m = -INFINITY;
    for (int k = 0; k < dim; ++k) m = fmax(m, x[base + k * inner]);
    float s = 0.0f;
    for (int k = 0; k < dim; ++k) s += exp(x[base + k * inner] - m);
    if (is_log) {
        const float ls = log(s);
        for (int k = 0; k < dim; ++k) out[base + k * inner] = x[base + k * inner] - m - ls;
    } else {
        const float inv = 1.0f / s;
        for (int k = 0; k < dim; ++k) out[base + k * inner] = exp(x[base + k * inner] - m) * inv;
    }
}

/* softmax of contiguous rows, one work-group (SMX_WG = get_local_size(0), a power of two <= 256) per
   row: strided partial max and sum of exp, tree reductions in local memory */
__kernel void softmax_rows(__global float *out, __global const float *x, const int dim, const int is_log) {
    __local float red[256];
    const int lid = get_local_id(0), wg = get_local_size(0);
    __global const float *xr = x + get_group_id(0) * dim;
    __global float *yr = out + get_group_id(0) * dim;
    float m = -INFINITY;
    for (int k = lid; k < dim; k += wg) m = fmax(m, xr[k]);
    red[lid] = m;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int s = wg / 2; s > 0; s >>= 1) {
        if (lid < s) red[lid] = fmax(red[lid], red[lid + s]);
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    m = red[0];
    barrier(CLK_LOCAL_MEM_FENCE);
    float acc = 0.0f;
    for (int k = lid; k < dim; k += wg) acc += exp(xr[k] - m);
    red[lid] = acc;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int s = wg / 2; s > 0; s >>= 1) {
        if (lid < s) red[lid] += red[lid + s];
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    const float total = red[0];
    if (is_log) {
        const float ls = log(total);
        for (int k = lid; k < dim; k += wg) yr[k] = xr[k] - m - ls;
    } else {
        const float inv = 1.0f / total;
        for (int k = lid; k < dim; k += wg) yr[k] = exp(xr[k] - m) * inv;
    }
}

__kernel void batchnorm(__global float *out, __global const float *x, __global const float *scale,
                        __global const float *bias, __global const float *mean, __global const float *var,
                        const float eps, const int C, const int HW, const int n) {
    const int gid = get_global_id(0);
    if (gid >= n) return;
    const int c = (gid / HW) % C;
    const float s = scale[c] / sqrt(var[c] + eps);
    out[gid] = (x[gid] - mean[c]) * s + bias[c];
}

/* op 0 relu, 1 sigmoid, 2 tanh, 3 leaky relu (p0), 4 clip [p0, p1] */
__kernel void unary(__global float *out, __global const float *x, const int op, const float p0,
                    const float p1, const int n) {
    const int gid = get_global_id(0);
    if (gid >= n) return;
    const float v = x[gid];
    float r;
    switch (op) {
        case 0: r = fmax(v, 0.0f); break;
        case 1: r = 1.0f / (1.0f + exp(-v)); break;
        case 2: r = tanh(v); break;
        case 3: r = v >= 0.0f ? v : p0 * v; break;
        default: r = fmin(fmax(v, p0), p1); break;
    }
    out[gid] = r;
}
"""

GENERIC_OPS = """
#define MAXR 6
/* op 0 add, 1 sub, 2 mul, 3 div */
inline T binop(const int op, const T x, const T y) {
    return op == 0 ? x + y : op == 1 ? x - y : op == 2 ? x * y : x / y;
}

/* meta = out dims[6], a strides[6], b strides[6] (0 where broadcast): the elements of a and b that output
   element gid reads */
inline void bcast_index(int rem, const int rank, __global const int *meta, int *ia, int *ib) {
    *ia = 0;
    *ib = 0;
    for (int d = rank - 1; d >= 0; --d) {
        const int c = rem % meta[d];
        rem /= meta[d];
        *ia += c * meta[MAXR + d];
        *ib += c * meta[2 * MAXR + d];
    }
}

/* a fused Relu/Clip: clamped to [lo, hi] in the same pass (NaN stays NaN, as numpy's maximum keeps it) */
inline T clamp_to(const T r, const T lo, const T hi) {
    return r < lo ? lo : r > hi ? hi : r;
}

__kernel void binary(__global T *out, __global const T *a, __global const T *b, const int op,
                     const int rank, __global const int *meta, const int n) {
    const int gid = get_global_id(0);
    if (gid >= n) return;
    int ia, ib;
    bcast_index(gid, rank, meta, &ia, &ib);
    out[gid] = binop(op, a[ia], b[ib]);
}

__kernel void binary_same(__global T *out, __global const T *a, __global const T *b, const int op, const int n) {
    const int gid = get_global_id(0);
    if (gid >= n) return;
    out[gid] = binop(op, a[gid], b[gid]);
}

__kernel void binary_act(__global T *out, __global const T *a, __global const T *b, const int op, const T lo,
                         const T hi, const int rank, __global const int *meta, const int n) {
    const int gid = get_global_id(0);
    if (gid >= n) return;
    int ia, ib;
    bcast_index(gid, rank, meta, &ia, &ib);
    out[gid] = clamp_to(binop(op, a[ia], b[ib]), lo, hi);
}

__kernel void binary_same_act(__global T *out, __global const T *a, __global const T *b, const int op,
                              const T lo, const T hi, const int n) {
    const int gid = get_global_id(0);
    if (gid >= n) return;
    out[gid] = clamp_to(binop(op, a[gid], b[gid]), lo, hi);
}

/* meta = out dims[6], input strides (elements) of the axis each out dim reads [6] */
__kernel void permute(__global T *out, __global const T *in, const int rank, __global const int *meta,
                      const int n) {
    const int gid = get_global_id(0);
    if (gid >= n) return;
    int rem = gid, src = 0;
    for (int d = rank - 1; d >= 0; --d) {
        const int c = rem % meta[d];
        rem /= meta[d];
        src += c * meta[MAXR + d];
    }
    out[gid] = in[src];
}

__kernel void copy2d(__global T *out, __global const T *in, const int cols, const int out_ld,
                     const int out_off, const int n) {
    const int gid = get_global_id(0);
    if (gid >= n) return;
    out[out_off + (gid / cols) * out_ld + gid % cols] = in[gid];
}

/* mode 0 constant, 1 reflect, 2 edge; meta = out dims[6], in dims[6], in strides[6], begin pads[6] */
__kernel void pad(__global T *out, __global const T *in, const int rank, __global const int *meta,
                  const int mode, const float value, const int n) {
    const int gid = get_global_id(0);
    if (gid >= n) return;
    int rem = gid, src = 0, outside = 0;
    for (int d = rank - 1; d >= 0; --d) {
        const int c = rem % meta[d];
        rem /= meta[d];
        const int len = meta[MAXR + d];
        int s = c - meta[3 * MAXR + d];
        if (s < 0 || s >= len) {
            if (mode == 0) { outside = 1; s = 0; }
            else if (mode == 2) s = s < 0 ? 0 : len - 1;
            else {
                const int period = 2 * (len - 1);
                if (period == 0) s = 0;
                else {
                    s = s % period;
                    if (s < 0) s += period;
                    if (s >= len) s = period - s;
                }
            }
        }
        src += s * meta[2 * MAXR + d];
    }
    out[gid] = outside ? (T)value : in[src];
}
"""

CAST = """
__kernel void cast(__global DST *out, __global const SRC *in, const int n) {
    const int gid = get_global_id(0);
    if (gid >= n) return;
#ifdef TO_BOOL
    out[gid] = in[gid] != (SRC)0 ? 1 : 0;  /* bool is "non-zero", not C truncation (0.5 -> true) */
#else
    out[gid] = (DST)in[gid];
#endif
}
"""
