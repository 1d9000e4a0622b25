/* AVX-512BW kernel: split-nibble vpshufb lookups, 64 bytes at a time, two sources folded into an
 * accumulator per vpternlogq. The tail is done with masked loads and stores, so no byte past a
 * buffer is touched. */
#pragma GCC target("avx512f,avx512bw,avx512vl,bmi2")
#include <immintrin.h>

#include "internal.h"
#include "simd512.h"


static inline __attribute__((always_inline)) __m512i mul_nib(const uint8_t *t, __m512i lo,
                                                            __m512i hi) {
    __m512i tl = _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)t));
    __m512i th = _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)(t + 16)));
    return _mm512_xor_si512(_mm512_shuffle_epi8(tl, lo), _mm512_shuffle_epi8(th, hi));
}

static inline __attribute__((always_inline)) void avx512_step(int R, int full, __mmask64 mask,
                                                             size_t i, int k, const uint8_t *tbl,
                                                             const uint8_t *const *src,
                                                             uint8_t *const *dst) {
    const __m512i nib = _mm512_set1_epi8(0x0f);
    size_t rs = (size_t)k * STORE_TBL_BYTES;
    __m512i acc[STORE_ROW_GROUP];
    for (int r = 0; r < R; r++) acc[r] = _mm512_setzero_si512();
    for (int j = 0; j < k; j++) {
        __m512i v = store_load512(full, mask, src[j] + i);
        __m512i lo = _mm512_and_si512(v, nib);
        __m512i hi = _mm512_and_si512(_mm512_srli_epi64(v, 4), nib);
        const uint8_t *t = tbl + (size_t)j * STORE_TBL_BYTES;
        for (int r = 0; r < R; r++) {
            __m512i tl = _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)(t + r * rs)));
            __m512i th =
                _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)(t + r * rs + 16)));
            acc[r] = _mm512_ternarylogic_epi64(acc[r], _mm512_shuffle_epi8(tl, lo),
                                               _mm512_shuffle_epi8(th, hi), 0x96);
        }
    }
    for (int r = 0; r < R; r++) store_store512(full, mask, dst[r] + i, acc[r]);
}

static inline __attribute__((always_inline)) void avx512_rows(int R, size_t len, int k,
                                                             const uint8_t *tbl,
                                                             const uint8_t *const *src,
                                                             uint8_t *const *dst) {
    size_t i = 0;
    for (; i + 64 <= len; i += 64) avx512_step(R, 1, 0, i, k, tbl, src, dst);
    if (i < len) avx512_step(R, 0, _bzhi_u64(~0ULL, (unsigned)(len - i)), i, k, tbl, src, dst);
}

void store_ec_kernel_avx512(size_t len, int k, int rows, const uint8_t *tbl,
                            const uint8_t *const *src, uint8_t *const *dst) {
    STORE_FOR_ROW_GROUPS(avx512_rows, len, k, rows, tbl, src, dst);
}

