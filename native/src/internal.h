/* Internal declarations shared by the native sources (not part of the public API). */
#ifndef STORE_NATIVE_INTERNAL_H
#define STORE_NATIVE_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "store_native.h"

/* One expanded coefficient: what a kernel needs to multiply a byte stream by a GF(2^8) constant.
 *   ref:          byte 0 is the coefficient (the kernel uses gf_mul_table)
 *   avx2, avx512: lo[16] = c * x, hi[16] = c * (x << 4) for x < 16 (pshufb split-nibble tables)
 *   gfni, avx2gfni: the first 8 bytes are the 8x8 bit matrix for vgf2p8affineqb */
#define STORE_TBL_BYTES 32

/* dst[r] = sum_j coef[r][j] * src[j] over len bytes, for r < rows. tbl holds rows * k entries,
 * row-major. Kernels overwrite dst (they never read it), accept any len and any alignment. */
typedef void (*store_ec_kernel)(size_t len, int k, int rows, const uint8_t *tbl,
                                const uint8_t *const *src, uint8_t *const *dst);

/* Kernels keep one accumulator register per output row, in groups of at most this many rows. */
#define STORE_ROW_GROUP 6

/* Call rows_fn(R, len, k, tbl, src, dst) for each group of output rows, with R a compile-time
 * constant in every branch so the inlined rows_fn keeps its R accumulators in registers. */
#define STORE_FOR_ROW_GROUPS(rows_fn, len, k, rows, tbl, src, dst)                                \
    for (int r0_ = 0; r0_ < (rows); r0_ += STORE_ROW_GROUP) {                                     \
        int n_ = (rows) - r0_ < STORE_ROW_GROUP ? (rows) - r0_ : STORE_ROW_GROUP;                 \
        const uint8_t *t_ = (tbl) + (size_t)r0_ * (size_t)(k) * STORE_TBL_BYTES;                   \
        uint8_t *const *d_ = (dst) + r0_;                                                         \
        switch (n_) {                                                                             \
        case 1: rows_fn(1, len, k, t_, src, d_); break;                                           \
        case 2: rows_fn(2, len, k, t_, src, d_); break;                                           \
        case 3: rows_fn(3, len, k, t_, src, d_); break;                                           \
        case 4: rows_fn(4, len, k, t_, src, d_); break;                                           \
        case 5: rows_fn(5, len, k, t_, src, d_); break;                                           \
        default: rows_fn(6, len, k, t_, src, d_); break;                                          \
        }                                                                                         \
    }

void store_ec_kernel_ref(size_t, int, int, const uint8_t *, const uint8_t *const *, uint8_t *const *);
void store_ec_kernel_avx2(size_t, int, int, const uint8_t *, const uint8_t *const *, uint8_t *const *);
void store_ec_kernel_avx512(size_t, int, int, const uint8_t *, const uint8_t *const *, uint8_t *const *);
void store_ec_kernel_gfni(size_t, int, int, const uint8_t *, const uint8_t *const *, uint8_t *const *);
void store_ec_kernel_avx2_gfni(size_t, int, int, const uint8_t *, const uint8_t *const *,
                               uint8_t *const *);

/* GF(2^8), polynomial x^8 + x^4 + x^3 + x^2 + 1 (0x11d), as ISA-L. Tables are built once. */
extern uint8_t store_gf_mul_table[256][256];
void store_gf_init(void);
uint8_t store_gf_mul(uint8_t a, uint8_t b);
uint8_t store_gf_inv(uint8_t a);
/* (k + m) x k systematic Cauchy matrix: identity on top, a[i][j] = 1 / (i ^ j) below. */
void store_gf_cauchy_matrix(int k, int m, uint8_t *a);
/* Invert the n x n matrix in (destroyed) into out. Returns 0, or -1 if singular. */
int store_gf_invert(int n, uint8_t *in, uint8_t *out);
/* Expand n coefficients into n STORE_TBL_BYTES entries for kernel `isa`. */
void store_gf_expand(int isa, const uint8_t *coefs, int n, uint8_t *tbl);

/* CRC32C kernels on the raw (pre-inverted) state: return the state after `buf`. */
uint32_t store_crc_sw(uint32_t state, const uint8_t *buf, size_t len);
uint32_t store_crc_sse42(uint32_t state, const uint8_t *buf, size_t len);
uint32_t store_crc_clmul(uint32_t state, const uint8_t *buf, size_t len);
uint32_t store_crc_vpclmul(uint32_t state, const uint8_t *buf, size_t len);
uint32_t store_crc_crc3(uint32_t state, const uint8_t *buf, size_t len);
uint32_t store_crc_vpclmul256(uint32_t state, const uint8_t *buf, size_t len);
/* Folding constants: reflected x^(n) mod P as a 64-bit pclmul operand (see crc32c.c). */
uint64_t store_crc_fold_const(unsigned n);

#endif
