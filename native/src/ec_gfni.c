/* GFNI kernel: one vgf2p8affineqb multiplies 64 bytes by a GF(2^8) constant (its 8x8 bit matrix
 * broadcast from the table). Output rows go in register-resident groups; the tail uses masked loads
 * and stores. */
#pragma GCC target("avx512f,avx512bw,avx512vl,gfni,bmi2")
#include <immintrin.h>
#include <string.h>

#include "internal.h"
#include "simd512.h"


static inline __attribute__((always_inline)) __m512i gfmul(const uint8_t *t, __m512i v) {
    long long m;
    memcpy(&m, t, sizeof m);
    return _mm512_gf2p8affine_epi64_epi8(v, _mm512_set1_epi64(m), 0);
}

/* One 64-byte column (the tail, or the last full one). Two sources fold into each accumulator per
 * vpternlogq (fewer uops): measured faster in and out of L2 than one source per step. */
static inline __attribute__((always_inline)) void gfni_step(int R, int full, __mmask64 mask,
                                                           size_t i, int k, const uint8_t *tbl,
                                                           const uint8_t *const *src,
                                                           uint8_t *const *dst) {
    size_t rs = (size_t)k * STORE_TBL_BYTES;
    __m512i acc[STORE_ROW_GROUP];
    for (int r = 0; r < R; r++) acc[r] = _mm512_setzero_si512();
    int j = 0;
    for (; j + 2 <= k; j += 2) {
        __m512i a = store_load512(full, mask, src[j] + i);
        __m512i b = store_load512(full, mask, src[j + 1] + i);
        const uint8_t *t = tbl + (size_t)j * STORE_TBL_BYTES;
        for (int r = 0; r < R; r++)
            acc[r] = _mm512_ternarylogic_epi64(acc[r], gfmul(t + r * rs, a),
                                               gfmul(t + r * rs + STORE_TBL_BYTES, b), 0x96);
    }
    for (; j < k; j++) {
        __m512i a = store_load512(full, mask, src[j] + i);
        const uint8_t *t = tbl + (size_t)j * STORE_TBL_BYTES;
        for (int r = 0; r < R; r++) acc[r] = _mm512_xor_si512(acc[r], gfmul(t + r * rs, a));
    }
    for (int r = 0; r < R; r++) store_store512(full, mask, dst[r] + i, acc[r]);
}

/* 128 bytes per step: each broadcast matrix serves two registers (2R accumulators + 4 sources +
 * 2 matrices fit the 32 zmm registers for any group). */
static inline __attribute__((always_inline)) void gfni_step2(int R, size_t i, int k,
                                                            const uint8_t *tbl,
                                                            const uint8_t *const *src,
                                                            uint8_t *const *dst) {
    size_t rs = (size_t)k * STORE_TBL_BYTES;
    __m512i acc0[STORE_ROW_GROUP], acc1[STORE_ROW_GROUP];
    for (int r = 0; r < R; r++) acc0[r] = acc1[r] = _mm512_setzero_si512();
    int j = 0;
    for (; j + 2 <= k; j += 2) {
        __m512i a0 = _mm512_loadu_si512(src[j] + i), a1 = _mm512_loadu_si512(src[j] + i + 64);
        __m512i b0 = _mm512_loadu_si512(src[j + 1] + i);
        __m512i b1 = _mm512_loadu_si512(src[j + 1] + i + 64);
        const uint8_t *t = tbl + (size_t)j * STORE_TBL_BYTES;
        for (int r = 0; r < R; r++) {
            long long ma, mb;
            memcpy(&ma, t + r * rs, sizeof ma);
            memcpy(&mb, t + r * rs + STORE_TBL_BYTES, sizeof mb);
            __m512i va = _mm512_set1_epi64(ma), vb = _mm512_set1_epi64(mb);
            acc0[r] = _mm512_ternarylogic_epi64(acc0[r], _mm512_gf2p8affine_epi64_epi8(a0, va, 0),
                                                _mm512_gf2p8affine_epi64_epi8(b0, vb, 0), 0x96);
            acc1[r] = _mm512_ternarylogic_epi64(acc1[r], _mm512_gf2p8affine_epi64_epi8(a1, va, 0),
                                                _mm512_gf2p8affine_epi64_epi8(b1, vb, 0), 0x96);
        }
    }
    for (; j < k; j++) {
        __m512i a0 = _mm512_loadu_si512(src[j] + i), a1 = _mm512_loadu_si512(src[j] + i + 64);
        const uint8_t *t = tbl + (size_t)j * STORE_TBL_BYTES;
        for (int r = 0; r < R; r++) {
            long long ma;
            memcpy(&ma, t + r * rs, sizeof ma);
            __m512i va = _mm512_set1_epi64(ma);
            acc0[r] = _mm512_xor_si512(acc0[r], _mm512_gf2p8affine_epi64_epi8(a0, va, 0));
            acc1[r] = _mm512_xor_si512(acc1[r], _mm512_gf2p8affine_epi64_epi8(a1, va, 0));
        }
    }
    for (int r = 0; r < R; r++) {
        _mm512_storeu_si512(dst[r] + i, acc0[r]);
        _mm512_storeu_si512(dst[r] + i + 64, acc1[r]);
    }
}

static inline __attribute__((always_inline)) void gfni_rows(int R, size_t len, int k,
                                                           const uint8_t *tbl,
                                                           const uint8_t *const *src,
                                                           uint8_t *const *dst) {
    size_t i = 0;
    for (; i + 128 <= len; i += 128) gfni_step2(R, i, k, tbl, src, dst);
    for (; i + 64 <= len; i += 64) gfni_step(R, 1, 0, i, k, tbl, src, dst);
    if (i < len) gfni_step(R, 0, _bzhi_u64(~0ULL, (unsigned)(len - i)), i, k, tbl, src, dst);
}

void store_ec_kernel_gfni(size_t len, int k, int rows, const uint8_t *tbl,
                          const uint8_t *const *src, uint8_t *const *dst) {
    STORE_FOR_ROW_GROUPS(gfni_rows, len, k, rows, tbl, src, dst);
}
