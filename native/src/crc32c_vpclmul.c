/* CRC32C by 512-bit VPCLMULQDQ folding: four zmm accumulators eat 256 bytes per iteration (each
 * 128-bit lane folds forward 2048 bits), then fold to one zmm, to one 128-bit lane, and finish
 * with the crc32 instruction. See store_crc_fold_const for the register convention. */
#pragma GCC target("avx512f,avx512bw,avx512vl,vpclmulqdq,pclmul,sse4.2")
#include <immintrin.h>
#include <pthread.h>

#include "internal.h"

uint32_t store_crc_fold128_tail(__m128i x, const uint8_t *p, size_t len);

static inline __m512i zconsts(unsigned bits) {
    return _mm512_broadcast_i32x4(_mm_set_epi64x((long long)store_crc_fold_const(bits - 1),
                                                 (long long)store_crc_fold_const(bits + 63)));
}

static inline __m512i zfold(__m512i x, __m512i k, __m512i data) {
    return _mm512_ternarylogic_epi64(_mm512_clmulepi64_epi128(x, k, 0x00),
                                     _mm512_clmulepi64_epi128(x, k, 0x11), data, 0x96);
}

/* Constants are computed once; a static table keeps the loop free of setup. */
static __m512i k2048, k512, klanes;

static void init_consts(void) {
    k2048 = zconsts(2048);
    k512 = zconsts(512);
    /* Lane i of the last zmm folds forward by 384, 256, 128 bits; lane 3 stays (multiplier 1 is
     * not a fold, so it is handled by masking below). */
    __m128i l0 = _mm_set_epi64x((long long)store_crc_fold_const(383),
                                (long long)store_crc_fold_const(447));
    __m128i l1 = _mm_set_epi64x((long long)store_crc_fold_const(255),
                                (long long)store_crc_fold_const(319));
    __m128i l2 = _mm_set_epi64x((long long)store_crc_fold_const(127),
                                (long long)store_crc_fold_const(191));
    klanes = _mm512_inserti32x4(
        _mm512_inserti32x4(_mm512_inserti32x4(_mm512_setzero_si512(), l0, 0), l1, 1), l2, 2);
}

static pthread_once_t consts_once = PTHREAD_ONCE_INIT;

uint32_t store_crc_vpclmul(uint32_t c, const uint8_t *p, size_t len) {
    if (len < 512) return store_crc_clmul(c, p, len);
    pthread_once(&consts_once, init_consts);
    __m512i z0 = _mm512_xor_si512(_mm512_loadu_si512(p),
                                  _mm512_zextsi128_si512(_mm_cvtsi32_si128((int)c)));
    __m512i z1 = _mm512_loadu_si512(p + 64);
    __m512i z2 = _mm512_loadu_si512(p + 128);
    __m512i z3 = _mm512_loadu_si512(p + 192);
    p += 256;
    len -= 256;
    while (len >= 256) {
        z0 = zfold(z0, k2048, _mm512_loadu_si512(p));
        z1 = zfold(z1, k2048, _mm512_loadu_si512(p + 64));
        z2 = zfold(z2, k2048, _mm512_loadu_si512(p + 128));
        z3 = zfold(z3, k2048, _mm512_loadu_si512(p + 192));
        p += 256;
        len -= 256;
    }
    z1 = zfold(z0, k512, z1);
    z2 = zfold(z1, k512, z2);
    z3 = zfold(z2, k512, z3);
    while (len >= 64) {
        z3 = zfold(z3, k512, _mm512_loadu_si512(p));
        p += 64;
        len -= 64;
    }
    __m512i t = _mm512_xor_si512(_mm512_clmulepi64_epi128(z3, klanes, 0x00),
                                 _mm512_clmulepi64_epi128(z3, klanes, 0x11));
    __m128i x = _mm_xor_si128(_mm512_extracti32x4_epi32(z3, 3), _mm512_castsi512_si128(t));
    x = _mm_xor_si128(x, _mm_xor_si128(_mm512_extracti32x4_epi32(t, 1),
                                       _mm512_extracti32x4_epi32(t, 2)));
    return store_crc_fold128_tail(x, p, len);
}
