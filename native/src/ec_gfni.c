/* GFNI kernel: one vgf2p8affineqb multiplies 64 bytes by a GF(2^8) constant (its 8x8 bit matrix
 * broadcast from the table). Output rows go in register-resident groups; the tail uses masked loads
 * and stores. See gfni_step for the two source schedules. */
#pragma GCC target("avx512f,avx512bw,avx512vl,gfni,bmi2")
#include <immintrin.h>
#include <string.h>

#include "internal.h"


static inline __attribute__((always_inline)) __m512i gfmul(const uint8_t *t, __m512i v) {
    long long m;
    memcpy(&m, t, sizeof m);
    return _mm512_gf2p8affine_epi64_epi8(v, _mm512_set1_epi64(m), 0);
}

/* PAIRS: fold two sources per vpternlogq (fewer uops: fastest while the stripe is in cache), or
 * one source per step (streams from memory better: measured ~10% faster on stripes far larger
 * than L2, where the pairs' interleaved loads from two streams cost more than the saved xors). */
static inline __attribute__((always_inline)) void gfni_step(int R, int PAIRS, __mmask64 mask,
                                                           size_t i, int k, const uint8_t *tbl,
                                                           const uint8_t *const *src,
                                                           uint8_t *const *dst) {
    size_t rs = (size_t)k * STORE_TBL_BYTES;
    __m512i acc[STORE_ROW_GROUP];
    for (int r = 0; r < R; r++) acc[r] = _mm512_setzero_si512();
    int j = 0;
    for (; PAIRS && j + 2 <= k; j += 2) {
        __m512i a = _mm512_maskz_loadu_epi8(mask, src[j] + i);
        __m512i b = _mm512_maskz_loadu_epi8(mask, src[j + 1] + i);
        const uint8_t *t = tbl + (size_t)j * STORE_TBL_BYTES;
        for (int r = 0; r < R; r++)
            acc[r] = _mm512_ternarylogic_epi64(acc[r], gfmul(t + r * rs, a),
                                               gfmul(t + r * rs + STORE_TBL_BYTES, b), 0x96);
    }
    for (; j < k; j++) {
        __m512i a = _mm512_maskz_loadu_epi8(mask, src[j] + i);
        const uint8_t *t = tbl + (size_t)j * STORE_TBL_BYTES;
        for (int r = 0; r < R; r++) acc[r] = _mm512_xor_si512(acc[r], gfmul(t + r * rs, a));
    }
    for (int r = 0; r < R; r++) _mm512_mask_storeu_epi8(dst[r] + i, mask, acc[r]);
}

static inline __attribute__((always_inline)) void gfni_rows(int R, int PAIRS, size_t len, int k,
                                                           const uint8_t *tbl,
                                                           const uint8_t *const *src,
                                                           uint8_t *const *dst) {
    size_t i = 0;
    for (; i + 64 <= len; i += 64) gfni_step(R, PAIRS, ~(__mmask64)0, i, k, tbl, src, dst);
    if (i < len) gfni_step(R, PAIRS, _bzhi_u64(~0ULL, (unsigned)(len - i)), i, k, tbl, src, dst);
}

#define gfni_rows_cached(R, ...) gfni_rows(R, 1, __VA_ARGS__)
#define gfni_rows_streaming(R, ...) gfni_rows(R, 0, __VA_ARGS__)

/* Above this many bytes touched per call the stripe streams from memory (L2 is 1-2 MiB). */
#define STREAMING_BYTES (1u << 20)

void store_ec_kernel_gfni(size_t len, int k, int rows, const uint8_t *tbl,
                          const uint8_t *const *src, uint8_t *const *dst) {
    if (len * (size_t)(k + rows) > STREAMING_BYTES) {
        STORE_FOR_ROW_GROUPS(gfni_rows_streaming, len, k, rows, tbl, src, dst);
    } else {
        STORE_FOR_ROW_GROUPS(gfni_rows_cached, len, k, rows, tbl, src, dst);
    }
}
