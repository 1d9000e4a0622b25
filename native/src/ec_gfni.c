/* GFNI kernel: one vgf2p8affineqb multiplies 64 bytes by a GF(2^8) constant (its 8x8 bit matrix
 * broadcast from the table), two sources folded into each accumulator per vpternlogq. Output rows
 * go in register-resident groups; the tail uses masked loads and stores. */
#pragma GCC target("avx512f,avx512bw,avx512vl,gfni,bmi2")
#include <immintrin.h>
#include <string.h>

#include "internal.h"


static inline __attribute__((always_inline)) __m512i gfmul(const uint8_t *t, __m512i v) {
    long long m;
    memcpy(&m, t, sizeof m);
    return _mm512_gf2p8affine_epi64_epi8(v, _mm512_set1_epi64(m), 0);
}

static inline __attribute__((always_inline)) void gfni_step(int R, __mmask64 mask, size_t i,
                                                           int k, const uint8_t *tbl,
                                                           const uint8_t *const *src,
                                                           uint8_t *const *dst) {
    size_t rs = (size_t)k * STORE_TBL_BYTES;
    __m512i acc[STORE_ROW_GROUP];
    for (int r = 0; r < R; r++) acc[r] = _mm512_setzero_si512();
    int j = 0;
    for (; j + 2 <= k; j += 2) {
        __m512i a = _mm512_maskz_loadu_epi8(mask, src[j] + i);
        __m512i b = _mm512_maskz_loadu_epi8(mask, src[j + 1] + i);
        const uint8_t *t = tbl + (size_t)j * STORE_TBL_BYTES;
        for (int r = 0; r < R; r++)
            acc[r] = _mm512_ternarylogic_epi64(acc[r], gfmul(t + r * rs, a),
                                               gfmul(t + r * rs + STORE_TBL_BYTES, b), 0x96);
    }
    if (j < k) {
        __m512i a = _mm512_maskz_loadu_epi8(mask, src[j] + i);
        const uint8_t *t = tbl + (size_t)j * STORE_TBL_BYTES;
        for (int r = 0; r < R; r++) acc[r] = _mm512_xor_si512(acc[r], gfmul(t + r * rs, a));
    }
    for (int r = 0; r < R; r++) _mm512_mask_storeu_epi8(dst[r] + i, mask, acc[r]);
}

static inline __attribute__((always_inline)) void gfni_rows(int R, size_t len, int k,
                                                           const uint8_t *tbl,
                                                           const uint8_t *const *src,
                                                           uint8_t *const *dst) {
    size_t i = 0;
    for (; i + 64 <= len; i += 64) gfni_step(R, ~(__mmask64)0, i, k, tbl, src, dst);
    if (i < len) gfni_step(R, _bzhi_u64(~0ULL, (unsigned)(len - i)), i, k, tbl, src, dst);
}

void store_ec_kernel_gfni(size_t len, int k, int rows, const uint8_t *tbl,
                          const uint8_t *const *src, uint8_t *const *dst) {
    STORE_FOR_ROW_GROUPS(gfni_rows, len, k, rows, tbl, src, dst);
}

