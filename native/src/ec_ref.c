/* The portable reference kernel: byte-at-a-time table lookups. It is the oracle every SIMD kernel
 * is tested against, and the tail loop the AVX2 kernel uses. */
#include "internal.h"

void store_ec_kernel_ref(size_t len, int k, int rows, const uint8_t *tbl,
                         const uint8_t *const *src, uint8_t *const *dst) {
    for (int r = 0; r < rows; r++) {
        const uint8_t *row = tbl + (size_t)r * (size_t)k * STORE_TBL_BYTES;
        uint8_t *d = dst[r];
        const uint8_t *mt = store_gf_mul_table[row[0]];
        const uint8_t *s = src[0];
        for (size_t i = 0; i < len; i++) d[i] = mt[s[i]];
        for (int j = 1; j < k; j++) {
            mt = store_gf_mul_table[row[(size_t)j * STORE_TBL_BYTES]];
            s = src[j];
            for (size_t i = 0; i < len; i++) d[i] ^= mt[s[i]];
        }
    }
}
