/* Loads and stores of one 64-byte step for the AVX-512 kernels; include after the file's
 * `#pragma GCC target` that enables AVX-512BW. Full steps use plain loads and stores: a masked
 * store costs several times a plain one on some cores (AMD Zen 4) even with every mask bit set,
 * and the compiler does not drop an all-ones mask on its own. */
#ifndef STORE_NATIVE_SIMD512_H
#define STORE_NATIVE_SIMD512_H
#include <immintrin.h>
#include <stdint.h>

static inline __attribute__((always_inline)) __m512i store_load512(int full, __mmask64 mask,
                                                                  const uint8_t *p) {
    return full ? _mm512_loadu_si512(p) : _mm512_maskz_loadu_epi8(mask, p);
}

static inline __attribute__((always_inline)) void store_store512(int full, __mmask64 mask,
                                                                uint8_t *p, __m512i v) {
    if (full)
        _mm512_storeu_si512(p, v);
    else
        _mm512_mask_storeu_epi8(p, mask, v);
}
#endif
