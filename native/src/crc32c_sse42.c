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

/* Three crc32 streams at once: the instruction takes three cycles but issues one per cycle, so
 * three independent chains over the thirds of a chunk run at three times one chain's speed. The
 * chunk's CRC is then crc(A || B || C) = shift(a, 2L) ^ shift(b, L) ^ c, where a starts from the
 * running state, b and c from 0, and shift(s, n) is the state s followed by n zero bytes: the
 * 16-byte block [s, 0, 0, 0] folded forward to the chunk's last 16 bytes (one carry-less multiply
 * per half) and finished with the crc32 instruction. Chunks shrink with what is left. */
#define CRC3_SIZES 3
static const size_t crc3_stream[CRC3_SIZES] = {4096, 1024, 256}; /* bytes per stream */
static __m128i crc3_shift[CRC3_SIZES][2];                       /* by L and by 2L bytes */
static pthread_once_t crc3_once = PTHREAD_ONCE_INIT;

/* Shared with the 256-bit kernel's chunks (crc32c_vpclmul256.c). */
__m128i store_crc_shift_const(size_t bytes);
uint32_t store_crc_shift(uint32_t s, __m128i k);

__m128i store_crc_shift_const(size_t bytes) {
    unsigned bits = (unsigned)(8 * (bytes - 16)); /* from offset 0 to the last 16 bytes */
    return _mm_set_epi64x((long long)store_crc_fold_const(bits - 1),
                          (long long)store_crc_fold_const(bits + 63));
}

static void crc3_init(void) {
    for (int i = 0; i < CRC3_SIZES; i++) {
        crc3_shift[i][0] = store_crc_shift_const(crc3_stream[i]);
        crc3_shift[i][1] = store_crc_shift_const(2 * crc3_stream[i]);
    }
}

/* The state s followed by the zero bytes ``k`` was made for (store_crc_shift_const). */
uint32_t store_crc_shift(uint32_t s, __m128i k) {
    return finish(fold(_mm_cvtsi32_si128((int)s), k), NULL, 0);
}

/* Above this the three streams wait on memory (13 GB/s at 64 MiB, one folding chain 14). */
#define CRC3_MAX_BYTES (1u << 20)

uint32_t store_crc_crc3(uint32_t c, const uint8_t *p, size_t len) {
    if (len > CRC3_MAX_BYTES) return store_crc_clmul(c, p, len);
    pthread_once(&crc3_once, crc3_init);
    for (int i = 0; i < CRC3_SIZES; i++) {
        const size_t n = crc3_stream[i];
        while (len >= 3 * n) {
            uint64_t a = c, b = 0, d = 0;
            for (size_t j = 0; j < n; j += 8) {
                uint64_t wa, wb, wd;
                memcpy(&wa, p + j, 8);
                memcpy(&wb, p + n + j, 8);
                memcpy(&wd, p + 2 * n + j, 8);
                a = _mm_crc32_u64(a, wa);
                b = _mm_crc32_u64(b, wb);
                d = _mm_crc32_u64(d, wd);
            }
            c = store_crc_shift((uint32_t)a, crc3_shift[i][1]) ^
                store_crc_shift((uint32_t)b, crc3_shift[i][0]) ^ (uint32_t)d;
            p += 3 * n;
            len -= 3 * n;
        }
    }
    return store_crc_clmul(c, p, len); /* under 768 bytes: one folding chain beats one stream */
}
