/* CRC32C with the SSE4.2 crc32 instruction (one stream), and the 128-bit PCLMULQDQ folding kernel
 * that finishes with it. See store_crc_fold_const for the register convention. */
#pragma GCC target("sse4.2,pclmul")
#include <immintrin.h>
#include <pthread.h>
#include <string.h>

#include "internal.h"

uint32_t store_crc_sse42(uint32_t c, const uint8_t *p, size_t len) {
    uint64_t c64 = c;
    while (len >= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        c64 = _mm_crc32_u64(c64, w);
        p += 8;
        len -= 8;
    }
    c = (uint32_t)c64;
    while (len--) c = _mm_crc32_u8(c, *p++);
    return c;
}

/* Fold-by-128 and fold-by-512 constants, computed once (each costs a few hundred shifts). */
static uint64_t k128[2], k512[2];
static pthread_once_t consts_once = PTHREAD_ONCE_INIT;

static void init_consts(void) {
    k128[0] = store_crc_fold_const(128 + 63);
    k128[1] = store_crc_fold_const(128 - 1);
    k512[0] = store_crc_fold_const(512 + 63);
    k512[1] = store_crc_fold_const(512 - 1);
}

static inline __m128i consts(const uint64_t k[2]) {
    pthread_once(&consts_once, init_consts);
    return _mm_set_epi64x((long long)k[1], (long long)k[0]);
}

/* x * x^bits mod P (congruent, not reduced), ready to be xored into the block `bits` later. */
static inline __m128i fold(__m128i x, __m128i k) {
    return _mm_xor_si128(_mm_clmulepi64_si128(x, k, 0x00), _mm_clmulepi64_si128(x, k, 0x11));
}

/* Finish: the 16 folded bytes then the tail go through the crc32 instruction from state 0 (the
 * initial state was already xored into the first block). */
static inline uint32_t finish(__m128i x, const uint8_t *tail, size_t len) {
    uint64_t c = _mm_crc32_u64(0, (uint64_t)_mm_cvtsi128_si64(x));
    c = _mm_crc32_u64(c, (uint64_t)_mm_extract_epi64(x, 1));
    return store_crc_sse42((uint32_t)c, tail, len);
}

/* Shared by the 512-bit kernel to reduce what is left after its wide loop. */
uint32_t store_crc_fold128_tail(__m128i x, const uint8_t *p, size_t len);
uint32_t store_crc_fold128_tail(__m128i x, const uint8_t *p, size_t len) {
    const __m128i kf = consts(k128);
    while (len >= 16) {
        x = _mm_xor_si128(fold(x, kf), _mm_loadu_si128((const __m128i *)p));
        p += 16;
        len -= 16;
    }
    return finish(x, p, len);
}

uint32_t store_crc_clmul(uint32_t c, const uint8_t *p, size_t len) {
    if (len < 128) return store_crc_sse42(c, p, len);
    const __m128i k4 = consts(k512), k1 = consts(k128);
    __m128i x0 = _mm_xor_si128(_mm_loadu_si128((const __m128i *)p), _mm_cvtsi32_si128((int)c));
    __m128i x1 = _mm_loadu_si128((const __m128i *)(p + 16));
    __m128i x2 = _mm_loadu_si128((const __m128i *)(p + 32));
    __m128i x3 = _mm_loadu_si128((const __m128i *)(p + 48));
    p += 64;
    len -= 64;
    while (len >= 64) {
        x0 = _mm_xor_si128(fold(x0, k4), _mm_loadu_si128((const __m128i *)p));
        x1 = _mm_xor_si128(fold(x1, k4), _mm_loadu_si128((const __m128i *)(p + 16)));
        x2 = _mm_xor_si128(fold(x2, k4), _mm_loadu_si128((const __m128i *)(p + 32)));
        x3 = _mm_xor_si128(fold(x3, k4), _mm_loadu_si128((const __m128i *)(p + 48)));
        p += 64;
        len -= 64;
    }
    x1 = _mm_xor_si128(x1, fold(x0, k1));
    x2 = _mm_xor_si128(x2, fold(x1, k1));
    x3 = _mm_xor_si128(x3, fold(x2, k1));
    return store_crc_fold128_tail(x3, p, len);
}
