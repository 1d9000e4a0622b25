/* AVX2 kernel: GF(2^8) multiply by split-nibble table lookups (vpshufb), 32 bytes at a time.
 * Output rows are done in groups whose accumulators stay in registers (STORE_FOR_ROW_GROUPS);
 * each group reads every source once. The last len % 32 bytes go through the reference kernel. */
#pragma GCC target("avx2")
#include <immintrin.h>

#include "internal.h"


/* U registers (32 bytes each) per source per step: each table broadcast then serves U lookups.
 * U = 2 needs 2R accumulators + 2 tables + 4 nibble registers + the mask in the 16 ymm registers,
 * so only groups of up to 4 rows take it. */
static inline __attribute__((always_inline)) void avx2_step(int R, int U, size_t i, int k,
                                                           const uint8_t *tbl,
                                                           const uint8_t *const *src,
                                                           uint8_t *const *dst) {
    const __m256i nib = _mm256_set1_epi8(0x0f);
    __m256i acc[2][STORE_ROW_GROUP];
    for (int u = 0; u < U; u++)
        for (int r = 0; r < R; r++) acc[u][r] = _mm256_setzero_si256();
    for (int j = 0; j < k; j++) {
        __m256i lo[2], hi[2];
        for (int u = 0; u < U; u++) {
            __m256i v = _mm256_loadu_si256((const __m256i *)(src[j] + i + 32 * u));
            lo[u] = _mm256_and_si256(v, nib);
            hi[u] = _mm256_and_si256(_mm256_srli_epi64(v, 4), nib);
        }
        for (int r = 0; r < R; r++) {
            const uint8_t *t = tbl + ((size_t)r * (size_t)k + (size_t)j) * STORE_TBL_BYTES;
            __m256i tl = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)t));
            __m256i th = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(t + 16)));
            for (int u = 0; u < U; u++)
                acc[u][r] = _mm256_xor_si256(acc[u][r],
                                             _mm256_xor_si256(_mm256_shuffle_epi8(tl, lo[u]),
                                                              _mm256_shuffle_epi8(th, hi[u])));
        }
    }
    for (int u = 0; u < U; u++)
        for (int r = 0; r < R; r++)
            _mm256_storeu_si256((__m256i *)(dst[r] + i + 32 * u), acc[u][r]);
}

static inline __attribute__((always_inline)) void avx2_rows(int R, size_t len, int k,
                                                           const uint8_t *tbl,
                                                           const uint8_t *const *src,
                                                           uint8_t *const *dst) {
    size_t i = 0;
    if (R <= 4)
        for (; i + 64 <= len; i += 64) avx2_step(R, 2, i, k, tbl, src, dst);
    for (; i + 32 <= len; i += 32) avx2_step(R, 1, i, k, tbl, src, dst);
}

void store_ec_kernel_avx2(size_t len, int k, int rows, const uint8_t *tbl,
                          const uint8_t *const *src, uint8_t *const *dst) {
    STORE_FOR_ROW_GROUPS(avx2_rows, len, k, rows, tbl, src, dst);
    size_t done = len & ~(size_t)31;
    if (done == len) return;
    const uint8_t *tail_src[STORE_EC_MAX_SHARDS];
    uint8_t *tail_dst[STORE_EC_MAX_SHARDS];
    for (int j = 0; j < k; j++) tail_src[j] = src[j] + done;
    for (int r = 0; r < rows; r++) tail_dst[r] = dst[r] + done;
    /* The tables hold lo/hi nibble products, so c = lo[1] recovers the coefficient. */
    uint8_t ref_tbl[STORE_EC_MAX_SHARDS * STORE_EC_MAX_SHARDS * STORE_TBL_BYTES];
    for (int e = 0; e < rows * k; e++)
        ref_tbl[(size_t)e * STORE_TBL_BYTES] = tbl[(size_t)e * STORE_TBL_BYTES + 1];
    store_ec_kernel_ref(len - done, k, rows, ref_tbl, tail_src, tail_dst);
}
