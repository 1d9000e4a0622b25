/* GF(2^8) arithmetic, the systematic Cauchy matrix, matrix inversion and kernel table expansion.
 *
 * The field and the matrix are ISA-L's (gf_gen_cauchy1_matrix, polynomial 0x11d), so parity we
 * write is bit-identical to ISA-L's and the two can check each other. */
#include <pthread.h>
#include <string.h>

#include "internal.h"

uint8_t store_gf_mul_table[256][256];
static uint8_t gf_log[256];
static uint8_t gf_exp[512];
static uint8_t gf_inverse[256];
static pthread_once_t gf_once = PTHREAD_ONCE_INIT;

static void gf_build(void) {
    unsigned x = 1;
    for (int i = 0; i < 255; i++) {
        gf_exp[i] = (uint8_t)x;
        gf_exp[i + 255] = (uint8_t)x;
        gf_log[x] = (uint8_t)i;
        x <<= 1;
        if (x & 0x100) x ^= 0x11d;
    }
    for (int a = 0; a < 256; a++) {
        for (int b = 0; b < 256; b++) {
            store_gf_mul_table[a][b] =
                (a && b) ? gf_exp[gf_log[a] + gf_log[b]] : 0;
        }
    }
    gf_inverse[0] = 0;
    for (int a = 1; a < 256; a++) gf_inverse[a] = gf_exp[255 - gf_log[a]];
}

void store_gf_init(void) { pthread_once(&gf_once, gf_build); }

uint8_t store_gf_mul(uint8_t a, uint8_t b) { return store_gf_mul_table[a][b]; }

uint8_t store_gf_inv(uint8_t a) { return gf_inverse[a]; }

void store_gf_cauchy_matrix(int k, int m, uint8_t *a) {
    int n = k + m;
    memset(a, 0, (size_t)n * (size_t)k);
    for (int i = 0; i < k; i++) a[i * k + i] = 1;
    for (int i = k; i < n; i++)
        for (int j = 0; j < k; j++) a[i * k + j] = gf_inverse[(uint8_t)(i ^ j)];
}

int store_gf_invert(int n, uint8_t *in, uint8_t *out) {
    memset(out, 0, (size_t)n * (size_t)n);
    for (int i = 0; i < n; i++) out[i * n + i] = 1;
    for (int col = 0; col < n; col++) {
        int pivot = col;
        while (pivot < n && in[pivot * n + col] == 0) pivot++;
        if (pivot == n) return -1;
        if (pivot != col) {
            for (int j = 0; j < n; j++) {
                uint8_t t = in[col * n + j];
                in[col * n + j] = in[pivot * n + j];
                in[pivot * n + j] = t;
                t = out[col * n + j];
                out[col * n + j] = out[pivot * n + j];
                out[pivot * n + j] = t;
            }
        }
        uint8_t scale = gf_inverse[in[col * n + col]];
        for (int j = 0; j < n; j++) {
            in[col * n + j] = store_gf_mul_table[scale][in[col * n + j]];
            out[col * n + j] = store_gf_mul_table[scale][out[col * n + j]];
        }
        for (int r = 0; r < n; r++) {
            uint8_t f = in[r * n + col];
            if (r == col || f == 0) continue;
            for (int j = 0; j < n; j++) {
                in[r * n + j] ^= store_gf_mul_table[f][in[col * n + j]];
                out[r * n + j] ^= store_gf_mul_table[f][out[col * n + j]];
            }
        }
    }
    return 0;
}

/* vgf2p8affineqb computes output bit i of each byte as parity(matrix.byte[7 - i] & x): byte 7 - i
 * of the matrix lists the input bits that feed output bit i of c * x. */
static uint64_t gfni_matrix(uint8_t c) {
    uint64_t m = 0;
    for (int i = 0; i < 8; i++) {
        uint64_t row = 0;
        for (int j = 0; j < 8; j++)
            if ((store_gf_mul_table[c][1u << j] >> i) & 1) row |= 1u << j;
        m |= row << (8 * (7 - i));
    }
    return m;
}

void store_gf_expand(int isa, const uint8_t *coefs, int n, uint8_t *tbl) {
    for (int e = 0; e < n; e++) {
        uint8_t c = coefs[e];
        uint8_t *t = tbl + (size_t)e * STORE_TBL_BYTES;
        memset(t, 0, STORE_TBL_BYTES);
        switch (isa) {
        case STORE_ISA_GFNI:
        case STORE_ISA_AVX2_GFNI: {
            uint64_t m = gfni_matrix(c);
            memcpy(t, &m, sizeof m);
            break;
        }
        case STORE_ISA_AVX2:
        case STORE_ISA_AVX512:
            for (int x = 0; x < 16; x++) {
                t[x] = store_gf_mul_table[c][x];
                t[16 + x] = store_gf_mul_table[c][x << 4];
            }
            break;
        default:
            t[0] = c;
            break;
        }
    }
}
