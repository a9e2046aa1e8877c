/*
 * The mode (most frequent value, ties to the smallest) of each window of a 3D integer array:
 * the label-safe reduction of kernels/reductions.py, compiled.
 *
 * Windows are ``[i*f, min((i+1)*f, n))`` per axis, so those clipped at the far border vote with
 * the voxels they have. A window whose voxels all equal its first one (most windows of a label
 * volume) is settled while it is read; in the others each voxel is counted against all (windows
 * of up to 8 voxels: 2x2x2, 1x2x2 and smaller; numpy's sorting networks serve larger ones) and
 * the smallest of the most frequent values is the result. Integers are compared as the dtype's values (signed or unsigned), so
 * 64-bit labels are exact. Called through ctypes, which releases the GIL.
 */
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>

enum { I8 = 0, U8, I16, U16, I32, U32, I64, U64 };

/* Built for AVX2 too where the compiler can (picked at load time): the uniform tests are
 * vector compares. */
#if defined(__GNUC__) && defined(__x86_64__) && !defined(__clang__)
#define VECTORIZED __attribute__((target_clones("avx2", "default")))
#else
#define VECTORIZED
#endif

#define SWAP(T, a, b)                                                                            \
    {                                                                                        \
        const T lo_ = v[a] < v[b] ? v[a] : v[b], hi_ = v[a] < v[b] ? v[b] : v[a];             \
        v[a] = lo_;                                                                          \
        v[b] = hi_;                                                                          \
    }

/* The mode of ``n`` <= 8 values: sorted (a branch-free sorting network for 8 and 4 values,
 * insertion otherwise), then the first longest run of equal values, which is the smallest of
 * the most frequent ones. ``v`` is reordered. */
#define SMALL_MODE(T)                                                                         \
    static inline T small_mode_##T(T *v, int64_t n) {                                         \
        if (n == 8) {                                                                        \
            SWAP(T, 0, 2) SWAP(T, 1, 3) SWAP(T, 4, 6) SWAP(T, 5, 7) SWAP(T, 0, 4) SWAP(T, 1, 5) SWAP(T, 2, 6)     \
            SWAP(T, 3, 7) SWAP(T, 0, 1) SWAP(T, 2, 3) SWAP(T, 4, 5) SWAP(T, 6, 7) SWAP(T, 2, 4) SWAP(T, 3, 5)     \
            SWAP(T, 1, 4) SWAP(T, 3, 6) SWAP(T, 1, 2) SWAP(T, 3, 4) SWAP(T, 5, 6)                           \
        } else if (n == 4) {                                                                 \
            SWAP(T, 0, 1) SWAP(T, 2, 3) SWAP(T, 0, 2) SWAP(T, 1, 3) SWAP(T, 1, 2)                           \
        } else {                                                                             \
            for (int64_t i = 1; i < n; i++) {                                                \
                T key = v[i];                                                                \
                int64_t j = i - 1;                                                           \
                for (; j >= 0 && v[j] > key; j--) v[j + 1] = v[j];                           \
                v[j + 1] = key;                                                              \
            }                                                                                \
        }                                                                                    \
        T best = v[0];                                                                       \
        int64_t best_count = 1, count = 1;                                                   \
        for (int64_t i = 1; i < n; i++) {                                                    \
            count = v[i] == v[i - 1] ? count + 1 : 1;                                        \
            best = count > best_count ? v[i] : best;                                         \
            best_count = count > best_count ? count : best_count;                            \
        }                                                                                    \
        return best;                                                                         \
    }

/* The full windows of one row of windows, ``N`` voxels each, from ``corner`` on. */
#define FULL_WINDOWS(T, N)                                                                    \
    for (; l < whole; l++, corner += step) {                                                 \
        const T first = corner[0];                                                           \
        int uniform = 1;                                                                     \
        for (int64_t k = 0; k < (N); k++) {                                                  \
            v[k] = corner[offset[k]];                                                        \
            uniform &= v[k] == first;                                                        \
        }                                                                                    \
        *out++ = uniform ? first : small_mode_##T(v, (N));                                   \
    }

/* The same for x windows of 2 adjacent voxels (x stride 1): the uniform test runs row by row
 * over the whole row of windows, as loops the compiler vectorizes; the mixed windows are then
 * counted one by one. ``flags`` holds ``whole`` bytes. */
#define PAIRED_WINDOWS(T)                                                                     \
    {                                                                                        \
        const int64_t rows = f[0] * f[1];                                                    \
        T *restrict dst = out;                                                               \
        const T *restrict r0 = corner;                                                       \
        for (int64_t m = 0; m < whole; m++) {                                                \
            dst[m] = r0[2 * m];                                                              \
            flags[m] = r0[2 * m] == r0[2 * m + 1];                                           \
        }                                                                                    \
        for (int64_t k = 1; k < rows; k++) {                                                 \
            const T *restrict rk = corner + (k / f[1]) * s[0] + (k % f[1]) * s[1];           \
            for (int64_t m = 0; m < whole; m++)                                              \
                flags[m] &= (rk[2 * m] == dst[m]) & (rk[2 * m + 1] == dst[m]);               \
        }                                                                                    \
        for (int64_t m = 0; m < whole; m++) {                                                \
            if (flags[m]) continue;                                                          \
            for (int64_t k = 0; k < full; k++) v[k] = corner[2 * m + offset[k]];            \
            dst[m] = small_mode_##T(v, full);                                                \
        }                                                                                    \
        out += whole;                                                                        \
        l = whole;                                                                           \
    }

#define MODE(T)                                                                               \
    SMALL_MODE(T)                                                                            \
    VECTORIZED static void mode_##T(const T *data, const int64_t *s, const int64_t *n, const int64_t *f, \
                         T *out, unsigned char *restrict flags) {                            \
        const int64_t o0 = (n[0] + f[0] - 1) / f[0], o1 = (n[1] + f[1] - 1) / f[1];          \
        const int64_t o2 = (n[2] + f[2] - 1) / f[2];                                         \
        int64_t offset[8], full = 0; /* a full window's voxels, relative to its corner */    \
        for (int64_t z = 0; z < f[0]; z++)                                                   \
            for (int64_t y = 0; y < f[1]; y++)                                               \
                for (int64_t x = 0; x < f[2]; x++) offset[full++] = z * s[0] + y * s[1] + x * s[2]; \
        T v[8];                                                                              \
        for (int64_t i = 0; i < o0; i++) {                                                   \
            const int64_t z0 = i * f[0], z1 = z0 + f[0] < n[0] ? z0 + f[0] : n[0];           \
            for (int64_t j = 0; j < o1; j++) {                                               \
                const int64_t y0 = j * f[1], y1 = y0 + f[1] < n[1] ? y0 + f[1] : n[1];       \
                const T *corner = data + z0 * s[0] + y0 * s[1];                              \
                int64_t l = 0;                                                               \
                if (z1 - z0 == f[0] && y1 - y0 == f[1]) { /* full windows along this row */  \
                    const int64_t whole = n[2] / f[2], step = f[2] * s[2];                   \
                    if (f[2] == 2 && s[2] == 1)                                              \
                        PAIRED_WINDOWS(T)                                                    \
                    else                                                                     \
                        switch (full) { /* constant sizes: unrolled loads */                 \
                    case 8: FULL_WINDOWS(T, 8); break;                                       \
                    case 4: FULL_WINDOWS(T, 4); break;                                       \
                    case 2: FULL_WINDOWS(T, 2); break;                                       \
                    default: FULL_WINDOWS(T, full); break;                                   \
                    }                                                                        \
                }                                                                            \
                for (; l < o2; l++) { /* windows clipped at a border */                      \
                    const int64_t x0 = l * f[2], x1 = x0 + f[2] < n[2] ? x0 + f[2] : n[2];   \
                    int64_t count = 0;                                                       \
                    for (int64_t z = z0; z < z1; z++)                                        \
                        for (int64_t y = y0; y < y1; y++)                                    \
                            for (int64_t x = x0; x < x1; x++)                                \
                                v[count++] = data[z * s[0] + y * s[1] + x * s[2]];           \
                    *out++ = small_mode_##T(v, count);                                       \
                }                                                                            \
            }                                                                                \
        }                                                                                    \
    }

MODE(int8_t)
MODE(uint8_t)
MODE(int16_t)
MODE(uint16_t)
MODE(int32_t)
MODE(uint32_t)
MODE(int64_t)
MODE(uint64_t)

/* ``data`` has shape ``n`` and element strides ``s``; ``out`` is C-ordered, ceil(n / f).
 * Returns 0, or -1 for an unknown kind, no memory or windows of more than 8 voxels (numpy's sorting
 * networks serve those). */
int mode_windows(int kind, const void *data, const int64_t *s, const int64_t *n, const int64_t *f,
                 void *out) {
    if (f[0] * f[1] * f[2] > 8) return -1;
    unsigned char *flags = malloc((size_t)(n[2] / f[2] + 1));
    if (flags == NULL) return -1;
    int code = 0;
    switch (kind) {
    case I8: mode_int8_t(data, s, n, f, out, flags); break;
    case U8: mode_uint8_t(data, s, n, f, out, flags); break;
    case I16: mode_int16_t(data, s, n, f, out, flags); break;
    case U16: mode_uint16_t(data, s, n, f, out, flags); break;
    case I32: mode_int32_t(data, s, n, f, out, flags); break;
    case U32: mode_uint32_t(data, s, n, f, out, flags); break;
    case I64: mode_int64_t(data, s, n, f, out, flags); break;
    case U64: mode_uint64_t(data, s, n, f, out, flags); break;
    default: code = -1;
    }
    free(flags);
    return code;
}

/* An importable module (so setuptools builds and installs it like any extension); the
 * function above is reached through ctypes, which releases the GIL around each call. */
static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_mode", NULL, -1, NULL, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__mode(void) { return PyModule_Create(&module); }
