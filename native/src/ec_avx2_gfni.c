/* AVX2 + GFNI kernel, for CPUs that have GFNI without AVX-512 (Intel's E-core and client parts):
 * the VEX form of vgf2p8affineqb multiplies 32 bytes by a GF(2^8) constant. Steps do as many
 * registers per source as the row group leaves room for (see gfni256_step). The last len % 32
 * bytes are copied through a zeroed block (no byte past a buffer is touched). */
#pragma GCC target("avx2,gfni")
#include <immintrin.h>
#include <string.h>

#include "internal.h"


/* U registers (32 bytes each) per source per step, so each broadcast matrix serves U multiplies:
 * U * R accumulators + U sources + the matrix must fit the 16 ymm registers. Measured against
 * ISA-L's avx2_gfni entry point: wider steps pay for up to three rows (four was a spill). */
static inline __attribute__((always_inline)) void gfni256_step(int R, int U, size_t i, int k,
                                                              const uint8_t *tbl,
                                                              const uint8_t *const *src,
                                                              uint8_t *const *dst) {
    size_t rs = (size_t)k * STORE_TBL_BYTES;
    __m256i acc[4][STORE_ROW_GROUP];
    for (int u = 0; u < U; u++)
        for (int r = 0; r < R; r++) acc[u][r] = _mm256_setzero_si256();
    for (int j = 0; j < k; j++) {
        __m256i v[4];
        for (int u = 0; u < U; u++) v[u] = _mm256_loadu_si256((const __m256i *)(src[j] + i + 32 * u));
        const uint8_t *t = tbl + (size_t)j * STORE_TBL_BYTES;
        for (int r = 0; r < R; r++) {
            long long m;
            memcpy(&m, t + r * rs, sizeof m);
            __m256i mat = _mm256_set1_epi64x(m);
            for (int u = 0; u < U; u++)
                acc[u][r] = _mm256_xor_si256(acc[u][r], _mm256_gf2p8affine_epi64_epi8(v[u], mat, 0));
        }
    }
    for (int u = 0; u < U; u++)
        for (int r = 0; r < R; r++)
            _mm256_storeu_si256((__m256i *)(dst[r] + i + 32 * u), acc[u][r]);
}

static inline __attribute__((always_inline)) void gfni256_rows(int R, size_t len, int k,
                                                              const uint8_t *tbl,
                                                              const uint8_t *const *src,
                                                              uint8_t *const *dst) {
    size_t i = 0;
    if (R <= 2)
        for (; i + 128 <= len; i += 128) gfni256_step(R, 4, i, k, tbl, src, dst);
    if (R == 3)
        for (; i + 96 <= len; i += 96) gfni256_step(R, 3, i, k, tbl, src, dst);
    for (; i + 64 <= len; i += 64) gfni256_step(R, 2, i, k, tbl, src, dst);
    for (; i + 32 <= len; i += 32) gfni256_step(R, 1, i, k, tbl, src, dst);
}

void store_ec_kernel_avx2_gfni(size_t len, int k, int rows, const uint8_t *tbl,
                               const uint8_t *const *src, uint8_t *const *dst) {
    STORE_FOR_ROW_GROUPS(gfni256_rows, len, k, rows, tbl, src, dst);
    size_t done = len & ~(size_t)31, tail = len - done;
    if (tail == 0) return;
    uint8_t in[STORE_EC_MAX_SHARDS][32], out[STORE_EC_MAX_SHARDS][32];
    const uint8_t *tail_src[STORE_EC_MAX_SHARDS];
    uint8_t *tail_dst[STORE_EC_MAX_SHARDS];
    for (int j = 0; j < k; j++) {
        memset(in[j], 0, sizeof in[j]);
        memcpy(in[j], src[j] + done, tail);
        tail_src[j] = in[j];
    }
    for (int r = 0; r < rows; r++) tail_dst[r] = out[r];
    STORE_FOR_ROW_GROUPS(gfni256_rows, 32, k, rows, tbl, tail_src, tail_dst);
    for (int r = 0; r < rows; r++) memcpy(dst[r] + done, out[r], tail);
}
