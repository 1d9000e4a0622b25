/* CRC32C by VPCLMULQDQ folding on 256-bit registers (AVX2; no AVX-512 needed, as on AMD Zen 3
 * and Intel Alder Lake): four ymm accumulators eat 128 bytes per iteration (each 128-bit lane
 * folds forward 1024 bits), then fold to one ymm, its two lanes to one, and finish with the
 * 128-bit tail. Eight accumulators measured no faster: the multiplies' throughput is the bound.
 *
 * So long buffers go in chunks that keep both kinds of execution unit busy: the multiplier folds
 * a chunk's first HY_FOLD bytes while the crc32 unit runs three streams over its next three
 * HY_LANE bytes, in the same loop; the four states then merge as the three-stream kernel's do
 * (crc32c_sse42.c): crc(F || A || B || C) = shift(f, 3L) ^ shift(a, 2L) ^ shift(b, L) ^ c.
 * See store_crc_fold_const for the register convention. */
#pragma GCC target("avx2,vpclmulqdq,pclmul,sse4.2")
#include <immintrin.h>
#include <pthread.h>
#include <string.h>

#include "internal.h"

uint32_t store_crc_fold128_tail(__m128i x, const uint8_t *p, size_t len);
__m128i store_crc_shift_const(size_t bytes);
uint32_t store_crc_shift(uint32_t s, __m128i k);

#define HY_STEPS 64
#define HY_FOLD (128 * HY_STEPS)
#define HY_LANE (32 * HY_STEPS)
#define HY_CHUNK (HY_FOLD + 3 * HY_LANE)
/* Above this the data comes from memory, where the four streams run at half the one's speed
 * (measured: 12 against 25 GB/s at 16 and 64 MiB), so long buffers fold alone. */
#define HY_MAX_BYTES (1u << 20)

/* The constants that fold a 128-bit lane forward by `bits`. */
static inline __m128i lane_consts(unsigned bits) {
    return _mm_set_epi64x((long long)store_crc_fold_const(bits - 1),
                          (long long)store_crc_fold_const(bits + 63));
}

static __m256i k1024, k256;
static __m128i k128, hy_shift[3]; /* shift a state by L, 2L, 3L bytes (L = HY_LANE) */
static pthread_once_t consts_once = PTHREAD_ONCE_INIT;

static void init_consts(void) {
    k1024 = _mm256_broadcastsi128_si256(lane_consts(1024));
    k256 = _mm256_broadcastsi128_si256(lane_consts(256));
    k128 = lane_consts(128);
    for (size_t i = 0; i < 3; i++) hy_shift[i] = store_crc_shift_const((i + 1) * HY_LANE);
}

static inline __m256i load(const uint8_t *p) { return _mm256_loadu_si256((const __m256i *)p); }

static inline __m256i yfold(__m256i x, __m256i k, __m256i data) {
    __m256i lo = _mm256_clmulepi64_epi128(x, k, 0x00), hi = _mm256_clmulepi64_epi128(x, k, 0x11);
    return _mm256_xor_si256(_mm256_xor_si256(lo, hi), data);
}

static inline __m256i first_ymm(const uint8_t *p, uint32_t c) {
    return _mm256_xor_si256(load(p),
                            _mm256_set_m128i(_mm_setzero_si128(), _mm_cvtsi32_si128((int)c)));
}

/* One ymm's two lanes as one: lane 0 (the earlier 16 bytes) folds forward 128 bits onto lane 1. */
static inline __m128i lanes(__m256i y) {
    __m128i first = _mm256_castsi256_si128(y), second = _mm256_extracti128_si256(y, 1);
    return _mm_xor_si128(second, _mm_xor_si128(_mm_clmulepi64_si128(first, k128, 0x00),
                                               _mm_clmulepi64_si128(first, k128, 0x11)));
}

static inline uint64_t crc32_of_32(uint64_t s, const uint8_t *p) {
    uint64_t w[4];
    memcpy(w, p, 32);
    s = _mm_crc32_u64(s, w[0]);
    s = _mm_crc32_u64(s, w[1]);
    s = _mm_crc32_u64(s, w[2]);
    return _mm_crc32_u64(s, w[3]);
}

static uint32_t hybrid_chunk(uint32_t c, const uint8_t *p) {
    const uint8_t *a = p + HY_FOLD, *b = a + HY_LANE, *d = b + HY_LANE;
    __m256i y0 = first_ymm(p, c), y1 = load(p + 32), y2 = load(p + 64), y3 = load(p + 96);
    uint64_t sa = 0, sb = 0, sd = 0;
    for (size_t i = 1; i < HY_STEPS; i++) {
        const uint8_t *q = p + 128 * i;
        y0 = yfold(y0, k1024, load(q));
        y1 = yfold(y1, k1024, load(q + 32));
        y2 = yfold(y2, k1024, load(q + 64));
        y3 = yfold(y3, k1024, load(q + 96));
        sa = crc32_of_32(sa, a + 32 * (i - 1));
        sb = crc32_of_32(sb, b + 32 * (i - 1));
        sd = crc32_of_32(sd, d + 32 * (i - 1));
    }
    sa = crc32_of_32(sa, a + 32 * (HY_STEPS - 1));
    sb = crc32_of_32(sb, b + 32 * (HY_STEPS - 1));
    sd = crc32_of_32(sd, d + 32 * (HY_STEPS - 1));
    y3 = yfold(yfold(yfold(y0, k256, y1), k256, y2), k256, y3);
    uint32_t sf = store_crc_fold128_tail(lanes(y3), p + HY_FOLD, 0);
    return store_crc_shift(sf, hy_shift[2]) ^ store_crc_shift((uint32_t)sa, hy_shift[1]) ^
           store_crc_shift((uint32_t)sb, hy_shift[0]) ^ (uint32_t)sd;
}

uint32_t store_crc_vpclmul256(uint32_t c, const uint8_t *p, size_t len) {
    if (len < 256) return store_crc_clmul(c, p, len);
    pthread_once(&consts_once, init_consts);
    while (len >= HY_CHUNK && len <= HY_MAX_BYTES) {
        c = hybrid_chunk(c, p);
        p += HY_CHUNK;
        len -= HY_CHUNK;
    }
    if (len < 256) return store_crc_clmul(c, p, len);
    __m256i y0 = first_ymm(p, c), y1 = load(p + 32), y2 = load(p + 64), y3 = load(p + 96);
    p += 128;
    len -= 128;
    while (len >= 128) {
        y0 = yfold(y0, k1024, load(p));
        y1 = yfold(y1, k1024, load(p + 32));
        y2 = yfold(y2, k1024, load(p + 64));
        y3 = yfold(y3, k1024, load(p + 96));
        p += 128;
        len -= 128;
    }
    y3 = yfold(yfold(yfold(y0, k256, y1), k256, y2), k256, y3);
    while (len >= 32) {
        y3 = yfold(y3, k256, load(p));
        p += 32;
        len -= 32;
    }
    return store_crc_fold128_tail(lanes(y3), p, len);
}
