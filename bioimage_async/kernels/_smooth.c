/*
 * The anti-aliased integer-factor downsample of kernels/resample_planes.py, compiled.
 *
 * Every output value goes through exactly the float32 operations of the numpy kernel, on the
 * same operands and in the same order (pinned bit for bit by the tests): per axis (z, then y,
 * then x), the centre tap times its weight, then each symmetric pair of taps added, weighted and
 * accumulated, moving outward. Built with -ffp-contract=off so that no multiply-add is fused
 * (a fused one rounds once instead of twice and would change the bits). One output plane at a
 * time, only at the sampled positions: the z pass reads the input planes it needs directly
 * (cast while read), so the work memory is one float32 plane and two float32 rows. Called
 * through ctypes, which releases the GIL, so blocks run in parallel threads.
 *
 * Input positions come as index arrays per axis (zi, yi, xi: the region's positions, padded by
 * the filter radius and mirrored at the volume's borders), read from ``data`` with its element
 * strides, so no padded copy of the block is made. Integer outputs are rounded half to even
 * (rintf, as np.rint) and clamped into the dtype's range.
 */
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

enum { U8 = 0, U16 = 1, I16 = 2, F32 = 3 };

/* Built for the machine's widest vectors where the compiler can (AVX2 or SSE2, picked at load
 * time); the operations and their order are the same in every version. */
#if defined(__GNUC__) && defined(__x86_64__) && !defined(__clang__)
#define VECTORIZED __attribute__((target_clones("arch=x86-64-v4", "avx2", "default")))
#else
#define VECTORIZED
#endif

/* The z pass of one output plane, straight from the input: ``plane`` (py * px floats) gets, at
 * every padded (y, x) position, the weighted sum over the lz input planes ``zq`` (each value cast
 * to float32 as it is read, the centre tap first, then each symmetric pair added, weighted and
 * accumulated). ``run_end[x]`` ends the run of consecutive x positions starting at x (the whole
 * row but its mirrored borders): each run is a contiguous, vectorizable loop. Reading the
 * input's own bytes (1 or 2 per voxel for integers) instead of a float32 copy of each plane is
 * what makes this pass cheap. */
#define Z_PASS(IN_T)                                                                          \
    VECTORIZED static void z_pass_##IN_T(const IN_T *data, int64_t sdz, int64_t sdy,          \
                                         int64_t sdx, const int64_t *zq, const float *w,      \
                                         int64_t lz, const int64_t *yi, int64_t py,           \
                                         const int64_t *xi, const int64_t *run_end,           \
                                         int64_t px, float *restrict plane) {                 \
        const int64_t r = lz / 2;                                                            \
        const float wc = w[r];                                                               \
        for (int64_t y = 0; y < py; y++) {                                                   \
            float *restrict out = plane + y * px;                                            \
            const IN_T *rows[64];                                                            \
            for (int64_t t = 0; t < lz; t++) rows[t] = data + zq[t] * sdz + yi[y] * sdy;     \
            for (int64_t x = 0; x < px; x = run_end[x]) {                                    \
                const int64_t n = run_end[x] - x, at = xi[x] * sdx;                          \
                float *restrict o = out + x;                                                 \
                const IN_T *restrict c = rows[r] + at;                                       \
                if (sdx == 1 && r == 2) { /* 5 taps, the 2x case: one pass, same order */    \
                    const IN_T *restrict a1 = rows[1] + at, *restrict b1 = rows[3] + at;     \
                    const IN_T *restrict a2 = rows[0] + at, *restrict b2 = rows[4] + at;     \
                    const float w1 = w[3], w2 = w[4];                                        \
                    for (int64_t e = 0; e < n; e++) {                                        \
                        float acc = (float)c[e] * wc;                                        \
                        float t = (float)a1[e] + (float)b1[e];                               \
                        t = t * w1;                                                          \
                        acc = acc + t;                                                       \
                        t = (float)a2[e] + (float)b2[e];                                     \
                        t = t * w2;                                                          \
                        o[e] = acc + t;                                                      \
                    }                                                                        \
                } else if (sdx == 1) {                                                       \
                    for (int64_t e = 0; e < n; e++) o[e] = (float)c[e] * wc;                 \
                    for (int64_t k = 1; k <= r; k++) {                                       \
                        const IN_T *restrict a = rows[r - k] + at, *restrict b = rows[r + k] + at; \
                        const float wk = w[r + k];                                           \
                        for (int64_t e = 0; e < n; e++) {                                    \
                            float t = (float)a[e] + (float)b[e];                             \
                            t = t * wk;                                                      \
                            o[e] = o[e] + t;                                                 \
                        }                                                                    \
                    }                                                                        \
                } else {                                                                     \
                    for (int64_t e = 0; e < n; e++) o[e] = (float)c[e * sdx] * wc;           \
                    for (int64_t k = 1; k <= r; k++) {                                       \
                        const IN_T *restrict a = rows[r - k] + at, *restrict b = rows[r + k] + at; \
                        const float wk = w[r + k];                                           \
                        for (int64_t e = 0; e < n; e++) {                                    \
                            float t = (float)a[e * sdx] + (float)b[e * sdx];                 \
                            t = t * wk;                                                      \
                            o[e] = o[e] + t;                                                 \
                        }                                                                    \
                    }                                                                        \
                }                                                                            \
            }                                                                                \
        }                                                                                    \
    }

Z_PASS(uint8_t)
Z_PASS(uint16_t)
Z_PASS(int16_t)
Z_PASS(float)

static void z_pass(int kind, const void *data, int64_t sdz, int64_t sdy, int64_t sdx,
                   const int64_t *zq, const float *w, int64_t lz, const int64_t *yi, int64_t py,
                   const int64_t *xi, const int64_t *run_end, int64_t px, float *plane) {
    switch (kind) {
    case U8: z_pass_uint8_t(data, sdz, sdy, sdx, zq, w, lz, yi, py, xi, run_end, px, plane); break;
    case U16: z_pass_uint16_t(data, sdz, sdy, sdx, zq, w, lz, yi, py, xi, run_end, px, plane); break;
    case I16: z_pass_int16_t(data, sdz, sdy, sdx, zq, w, lz, yi, py, xi, run_end, px, plane); break;
    default: z_pass_float(data, sdz, sdy, sdx, zq, w, lz, yi, py, xi, run_end, px, plane); break;
    }
}

/* ``dst[e] = sum_k w[k] * tap_k[e]`` in the numpy kernel's order: the centre tap times its
 * weight, then each symmetric pair added, weighted and accumulated, moving outward. Taps are
 * ``src + offset[k]``. A lone weight of 1 copies (x * 1.0 == x). */
VECTORIZED static void weighted_sum(const float *src, const int64_t *offset, const float *w,
                                    int64_t taps, int64_t n, float *restrict dst) {
    enum { CHUNK = 1024 }; /* accumulate in L1-sized pieces */
    const int64_t r = taps / 2;
    if (r == 2) { /* 5 taps, the 2x case: one pass, same order */
        const float *restrict c = src + offset[2], *restrict a1 = src + offset[1];
        const float *restrict b1 = src + offset[3], *restrict a2 = src + offset[0];
        const float *restrict b2 = src + offset[4];
        const float wc = w[2], w1 = w[3], w2 = w[4];
        for (int64_t e = 0; e < n; e++) {
            float acc = c[e] * wc;
            float t = a1[e] + b1[e];
            t = t * w1;
            acc = acc + t;
            t = a2[e] + b2[e];
            t = t * w2;
            dst[e] = acc + t;
        }
        return;
    }
    for (int64_t e0 = 0; e0 < n; e0 += CHUNK) {
        const int64_t m = n - e0 < CHUNK ? n - e0 : CHUNK;
        float *restrict acc = dst + e0;
        const float *restrict centre = src + offset[r] + e0;
        const float wc = w[r];
        for (int64_t e = 0; e < m; e++) acc[e] = centre[e] * wc;
        for (int64_t k = 1; k <= r; k++) {
            const float *restrict a = src + offset[r - k] + e0;
            const float *restrict b = src + offset[r + k] + e0;
            const float wk = w[r + k];
            for (int64_t e = 0; e < m; e++) {
                float t = a[e] + b[e];
                t = t * wk;
                acc[e] = acc[e] + t;
            }
        }
    }
}

/* ``dst[l] = sum_k w[k] * src[step * l + k - r]`` for l < n, in the same order as above: the
 * x pass at the sampled positions only. Step 2 (the common factor) has its own loop, which the
 * compiler vectorizes with constant-stride loads. */
#define SAMPLED_SUM(STEP)                                                                     \
    for (int64_t l = 0; l < n; l++) dst[l] = src[(STEP) * l] * w[r];                         \
    for (int64_t k = 1; k <= r; k++) {                                                       \
        const float *restrict a = src - k, *restrict b = src + k;                            \
        const float wk = w[r + k];                                                           \
        for (int64_t l = 0; l < n; l++) {                                                    \
            float t = a[(STEP) * l] + b[(STEP) * l];                                         \
            t = t * wk;                                                                      \
            dst[l] = dst[l] + t;                                                             \
        }                                                                                    \
    }

VECTORIZED static void sampled_sum(const float *src, int64_t step, const float *w, int64_t taps,
                                   int64_t n, float *restrict dst) {
    const int64_t r = taps / 2;
    if (step == 2 && r == 2) { /* the 2x case: one pass, same order */
        const float wc = w[2], w1 = w[3], w2 = w[4];
        for (int64_t l = 0; l < n; l++) {
            const float *s = src + 2 * l;
            float acc = s[0] * wc;
            float t = s[-1] + s[1];
            t = t * w1;
            acc = acc + t;
            t = s[-2] + s[2];
            t = t * w2;
            dst[l] = acc + t;
        }
    } else if (step == 2) {
        SAMPLED_SUM(2)
    } else {
        SAMPLED_SUM(step)
    }
}

/* Every ``step``-th value of ``src`` (``n`` of them) into ``out`` at ``base``: rounded half to
 * even (rintf, as np.rint) and clamped into range for integers, as is for float32. */
#define STORE(OUT_T, ROUND)                                                                   \
    VECTORIZED static void store_##OUT_T(const float *restrict src, int64_t step, int64_t n,  \
                                         float lo, float hi, OUT_T *restrict out) {           \
        for (int64_t l = 0; l < n; l++) {                                                    \
            float v = src[step * l];                                                         \
            if (ROUND) {                                                                     \
                v = rintf(v);                                                                \
                v = v < lo ? lo : v;                                                         \
                v = v > hi ? hi : v;                                                         \
            }                                                                                \
            out[l] = (OUT_T)v;                                                               \
        }                                                                                    \
    }

STORE(uint8_t, 1)
STORE(uint16_t, 1)
STORE(int16_t, 1)
STORE(float, 0)

static void store(int kind, const float *src, int64_t step, int64_t n, float lo, float hi,
                  void *out, int64_t at) {
    switch (kind) {
    case U8: store_uint8_t(src, step, n, lo, hi, (uint8_t *)out + at); break;
    case U16: store_uint16_t(src, step, n, lo, hi, (uint16_t *)out + at); break;
    case I16: store_int16_t(src, step, n, lo, hi, (int16_t *)out + at); break;
    default: store_float(src, step, n, lo, hi, (float *)out + at); break;
    }
}

/* Returns 0, or -1 for an unknown kind, more than 64 taps or no memory. ``ring`` holds lz * py * px
 * floats, ``plane`` py * px, ``rows`` px + 2 (one filtered row); ``out`` is (nz, ny, nx) of
 * the input's dtype. */
int smooth_sample(int kind, const void *data, int64_t sdz, int64_t sdy, int64_t sdx,
                  const int64_t *zi, const int64_t *yi, int64_t py, const int64_t *xi,
                  int64_t px, int64_t nz, int64_t ny, int64_t nx, int64_t sz, int64_t sy,
                  int64_t sx, const float *wz, int64_t lz, const float *wy, int64_t ly,
                  const float *wx, int64_t lx, float *plane, float *rows, double lo, double hi,
                  void *out) {
    if (kind < U8 || kind > F32 || lz > 64 || ly > 64 || lx > 64) return -1;
    const int64_t ry = ly / 2;
    int64_t y_off[64];
    for (int64_t k = 0; k < ly; k++) y_off[k] = (k - ry) * px;
    int64_t *run_end = malloc(px * sizeof(int64_t));
    if (run_end == NULL) return -1;
    for (int64_t x = px - 1; x >= 0; x--)
        run_end[x] = x + 1 < px && xi[x + 1] == xi[x] + 1 ? run_end[x + 1] : x + 1;
    for (int64_t i = 0; i < nz; i++) {
        z_pass(kind, data, sdz, sdy, sdx, zi + sz * i, wz, lz, yi, py, xi, run_end, px, plane);
        for (int64_t j = 0; j < ny; j++) {
            weighted_sum(plane + (sy * j + ry) * px, y_off, wy, ly, px, rows);
            sampled_sum(rows + lx / 2, sx, wx, lx, nx, rows + px);
            store(kind, rows + px, 1, nx, (float)lo, (float)hi, out, (i * ny + j) * nx);
        }
    }
    free(run_end);
    return 0;
}

/* An importable module (so setuptools builds and installs it like any extension); the
 * function above is reached through ctypes, which releases the GIL around each call. */
static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_smooth", NULL, -1, NULL, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__smooth(void) { return PyModule_Create(&module); }
