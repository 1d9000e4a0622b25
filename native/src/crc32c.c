/* CRC32C: the slicing-by-8 table oracle, the one-stream crc32 instruction path, the kernel choice,
 * and the folding constants the PCLMUL kernels use.
 *
 * Kernels work on the raw CRC state (the bitwise inverse of the published CRC). The public
 * functions do the inversions, so results chain: crc32c(b, crc32c(a)) == crc32c(a || b). */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define POLY_REFLECTED 0x82F63B78u
#define POLY_NORMAL 0x1EDC6F41u

static uint32_t sw_table[8][256];
static pthread_once_t sw_once = PTHREAD_ONCE_INIT;

static void sw_build(void) {
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int b = 0; b < 8; b++) c = (c >> 1) ^ (POLY_REFLECTED & (0u - (c & 1)));
        sw_table[0][i] = c;
    }
    for (uint32_t i = 0; i < 256; i++)
        for (int t = 1; t < 8; t++)
            sw_table[t][i] = (sw_table[t - 1][i] >> 8) ^ sw_table[0][sw_table[t - 1][i] & 0xff];
}

uint32_t store_crc_sw(uint32_t c, const uint8_t *p, size_t len) {
    pthread_once(&sw_once, sw_build);
    while (len && ((uintptr_t)p & 7)) {
        c = (c >> 8) ^ sw_table[0][(c ^ *p++) & 0xff];
        len--;
    }
    while (len >= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        w ^= c; /* little-endian: the state meets the first four bytes */
        c = sw_table[7][w & 0xff] ^ sw_table[6][(w >> 8) & 0xff] ^ sw_table[5][(w >> 16) & 0xff] ^
            sw_table[4][(w >> 24) & 0xff] ^ sw_table[3][(w >> 32) & 0xff] ^
            sw_table[2][(w >> 40) & 0xff] ^ sw_table[1][(w >> 48) & 0xff] ^
            sw_table[0][(w >> 56) & 0xff];
        p += 8;
        len -= 8;
    }
    while (len--) c = (c >> 8) ^ sw_table[0][(c ^ *p++) & 0xff];
    return c;
}

/* The folding kernels keep 128-bit lanes in which register bit i is the coefficient of x^(127-i)
 * (the CRC's reflected order). A 64x64 carry-less product of two such halves comes out one bit
 * short, i.e. multiplied by x^-1, so the constant that folds a half of degree offset d forward by
 * T bits is x^(T + d - 1) mod P, stored reflected in 64 bits: this function gives it for n. */
uint64_t store_crc_fold_const(unsigned n) {
    uint64_t r = 1; /* x^0, normal order, bit d <-> x^d */
    for (unsigned i = 0; i < n; i++) {
        r <<= 1;
        if (r & (1ull << 32)) r ^= (1ull << 32) | POLY_NORMAL;
    }
    uint64_t out = 0;
    for (int d = 0; d < 32; d++)
        if (r & (1ull << d)) out |= 1ull << (63 - d);
    return out;
}

static const char *const crc_names[STORE_CRC_COUNT] = {"sw",      "sse42", "clmul",
                                                        "vpclmul", "crc3",  "vpclmul256"};

const char *store_crc_name(int kernel) {
    return (kernel >= 0 && kernel < STORE_CRC_COUNT) ? crc_names[kernel] : NULL;
}

int store_crc_supported(int kernel) {
    __builtin_cpu_init();
    switch (kernel) {
    case STORE_CRC_SW: return 1;
    case STORE_CRC_SSE42: return __builtin_cpu_supports("sse4.2");
    case STORE_CRC_CLMUL:
        return __builtin_cpu_supports("sse4.2") && __builtin_cpu_supports("pclmul");
    case STORE_CRC_VPCLMUL:
        return store_crc_supported(STORE_CRC_CLMUL) && __builtin_cpu_supports("avx512f") &&
               __builtin_cpu_supports("vpclmulqdq");
    case STORE_CRC_CRC3: return store_crc_supported(STORE_CRC_CLMUL);
    case STORE_CRC_VPCLMUL256:
        return store_crc_supported(STORE_CRC_CLMUL) && __builtin_cpu_supports("avx2") &&
               __builtin_cpu_supports("vpclmulqdq");
    default: return 0;
    }
}

typedef uint32_t (*crc_kernel)(uint32_t, const uint8_t *, size_t);
static const crc_kernel crc_kernels[STORE_CRC_COUNT] = {
    store_crc_sw, store_crc_sse42, store_crc_clmul, store_crc_vpclmul, store_crc_crc3,
    store_crc_vpclmul256};
static int crc_default = STORE_CRC_SW;
static pthread_once_t crc_once = PTHREAD_ONCE_INIT;

/* The kernels best first (bench/ec.py): the widest folding the CPU has, then three crc32 streams.
 * STORE_NATIVE_ISA also pins the CRC kernel to its generation: avx2 and avx2gfni take no 512-bit
 * kernel, ref the table oracle. */
static const int crc_preference[] = {STORE_CRC_VPCLMUL, STORE_CRC_VPCLMUL256, STORE_CRC_CRC3,
                                     STORE_CRC_CLMUL,   STORE_CRC_SSE42,      STORE_CRC_SW};

/* Short buffers: one crc32 stream (sse42) beats the folding kernels, whose setup and final
 * reduction dominate. Measured crossovers (AMD EPYC, C loop; GB/s at 64 / 256 / 511 bytes:
 * sse42 6.6 / 10.5 / 10.6, vpclmul 3.8 / 8.3 / 10.8, vpclmul256 3.7 / 10.3 / 15.9; at 256 / 512:
 * crc3 9.0 / 11.2 and clmul 10.6 / 12.3 against sse42 14.4 / 12.2): the default kernel's calls
 * below ``crc_short_below`` bytes go to sse42. */
static int crc_short = STORE_CRC_SW;
static size_t crc_short_below = 0;

static void choose_default_crc(void) {
    int isa = store_isa_default();
    for (size_t i = 0; i < sizeof crc_preference / sizeof crc_preference[0]; i++) {
        int kernel = crc_preference[i];
        if (!store_crc_supported(kernel)) continue;
        if (isa == STORE_ISA_REF && kernel != STORE_CRC_SW) continue;
        if ((isa == STORE_ISA_AVX2 || isa == STORE_ISA_AVX2_GFNI) && kernel == STORE_CRC_VPCLMUL)
            continue;
        crc_default = kernel;
        return;
    }
}

static void choose_crc(void) {
    choose_default_crc();
    switch (crc_default) {
    case STORE_CRC_VPCLMUL: crc_short_below = 384; break;
    case STORE_CRC_VPCLMUL256: crc_short_below = 256; break;
    case STORE_CRC_CRC3:
    case STORE_CRC_CLMUL: crc_short_below = 512; break;
    default: crc_short_below = 0; break;
    }
    crc_short = crc_short_below ? STORE_CRC_SSE42 : crc_default;
}

int store_crc_default(void) {
    pthread_once(&crc_once, choose_crc);
    return crc_default;
}

/* The default kernel for a buffer of ``len`` bytes. */
static crc_kernel kernel_for(size_t len) {
    int kernel = store_crc_default();
    return crc_kernels[len < crc_short_below ? crc_short : kernel];
}

uint32_t store_crc32c(uint32_t crc, const uint8_t *buf, size_t len) {
    return ~kernel_for(len)(~crc, buf, len);
}

uint32_t store_crc32c_with(int kernel, uint32_t crc, const uint8_t *buf, size_t len, int *status) {
    if (!store_crc_supported(kernel)) {
        if (status) *status = STORE_ENOTSUP;
        return 0;
    }
    if (status) *status = STORE_OK;
    return ~crc_kernels[kernel](~crc, buf, len);
}

long store_crc32c_blocks(const uint8_t *buf, size_t len, size_t block_len, uint8_t *crcs) {
    if (block_len == 0) return 0;
    crc_kernel fn = kernel_for(block_len);
    long index = 0;
    for (size_t pos = 0; pos < len; pos += block_len, index++) {
        size_t n = len - pos < block_len ? len - pos : block_len;
        uint32_t crc = ~fn(~0u, buf + pos, n);
        uint8_t *c = crcs + 4 * (size_t)index;
        c[0] = (uint8_t)crc;
        c[1] = (uint8_t)(crc >> 8);
        c[2] = (uint8_t)(crc >> 16);
        c[3] = (uint8_t)(crc >> 24);
    }
    return index;
}

long store_crc32c_verify_blocks(const uint8_t *buf, size_t len, size_t block_len,
                                const uint8_t *crcs) {
    if (block_len == 0) return len ? 0 : -1;
    crc_kernel fn = kernel_for(block_len);
    long index = 0;
    for (size_t pos = 0; pos < len; pos += block_len, index++) {
        size_t n = len - pos < block_len ? len - pos : block_len;
        const uint8_t *c = crcs + 4 * (size_t)index;
        uint32_t stored = (uint32_t)c[0] | (uint32_t)c[1] << 8 | (uint32_t)c[2] << 16 |
                          (uint32_t)c[3] << 24;
        if (~fn(~0u, buf + pos, n) != stored) return index;
    }
    return -1;
}
