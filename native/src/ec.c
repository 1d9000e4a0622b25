/* The erasure codec: encode with the fixed parity rows, reconstruct through decode matrices that
 * are cached per erasure pattern.
 *
 * Decode: take the first k present shards S (indices u_0 < ... < u_{k-1}); B is the k x k matrix
 * of the generator rows u_r, so S = B * data and data = B^-1 * S. A wanted data shard w is row w of
 * B^-1; a wanted parity shard w is generator row w times B^-1. The expanded kernel tables for those
 * rows are the cache entry, keyed by (used mask, wanted mask). The cache is a small fixed array with
 * round-robin replacement behind a mutex; a hit copies the tables out, so entries are never shared
 * with a running kernel and eviction needs no reference counts. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define CACHE_SLOTS 64

struct cache_entry {
    uint32_t used_mask;
    uint32_t want_mask;  /* 0: empty slot (a lookup always wants something) */
    uint8_t *tbl;        /* popcount(want_mask) * k entries */
};

struct store_ec {
    int k, m, isa;
    store_ec_kernel kernel;
    uint8_t *matrix;     /* (k + m) x k generator */
    uint8_t *parity_tbl; /* m * k expanded entries */
    pthread_mutex_t lock;
    struct cache_entry cache[CACHE_SLOTS];
    int next_victim;
    uint64_t hits, misses;
};

static store_ec_kernel kernel_for(int isa) {
    switch (isa) {
    case STORE_ISA_AVX2: return store_ec_kernel_avx2;
    case STORE_ISA_AVX512: return store_ec_kernel_avx512;
    case STORE_ISA_GFNI: return store_ec_kernel_gfni;
    case STORE_ISA_AVX2_GFNI: return store_ec_kernel_avx2_gfni;
    default: return store_ec_kernel_ref;
    }
}

store_ec *store_ec_new(int k, int m, int isa, int *status) {
    int dummy;
    if (!status) status = &dummy;
    *status = STORE_EINVAL;
    if (k < 1 || m < 1 || k + m > STORE_EC_MAX_SHARDS) return NULL;
    if (isa < 0) isa = store_isa_default();
    if (isa < 0 || isa >= STORE_ISA_COUNT || !store_isa_supported(isa)) {
        *status = STORE_ENOTSUP;
        return NULL;
    }
    store_gf_init();
    *status = STORE_ENOMEM;
    store_ec *ec = calloc(1, sizeof *ec);
    if (!ec) return NULL;
    ec->k = k;
    ec->m = m;
    ec->isa = isa;
    ec->kernel = kernel_for(isa);
    ec->matrix = malloc((size_t)(k + m) * (size_t)k);
    ec->parity_tbl = malloc((size_t)m * (size_t)k * STORE_TBL_BYTES);
    if (!ec->matrix || !ec->parity_tbl || pthread_mutex_init(&ec->lock, NULL) != 0) {
        free(ec->matrix);
        free(ec->parity_tbl);
        free(ec);
        return NULL;
    }
    store_gf_cauchy_matrix(k, m, ec->matrix);
    store_gf_expand(isa, ec->matrix + (size_t)k * (size_t)k, m * k, ec->parity_tbl);
    *status = STORE_OK;
    return ec;
}

void store_ec_free(store_ec *ec) {
    if (!ec) return;
    for (int i = 0; i < CACHE_SLOTS; i++) free(ec->cache[i].tbl);
    pthread_mutex_destroy(&ec->lock);
    free(ec->matrix);
    free(ec->parity_tbl);
    free(ec);
}

int store_ec_isa(const store_ec *ec) { return ec->isa; }

void store_ec_cache_stats(const store_ec *ec, uint64_t *hits, uint64_t *misses) {
    pthread_mutex_lock((pthread_mutex_t *)&ec->lock);
    if (hits) *hits = ec->hits;
    if (misses) *misses = ec->misses;
    pthread_mutex_unlock((pthread_mutex_t *)&ec->lock);
}

/* Kernels read sources while writing outputs: an output that overlaps any other buffer would
 * silently corrupt the result, so it is refused. */
static int overlaps(const uint8_t *a, const uint8_t *b, size_t len) {
    return len && a < b + len && b < a + len;
}

static int check_buffers(size_t len, const uint8_t *const *src, int n_src, uint8_t *const *dst,
                         int n_dst) {
    for (int d = 0; d < n_dst; d++) {
        if (!dst[d] && len) return STORE_EINVAL;
        for (int s = 0; s < n_src; s++)
            if (src[s] && overlaps(dst[d], src[s], len)) return STORE_EINVAL;
        for (int e = d + 1; e < n_dst; e++)
            if (overlaps(dst[d], dst[e], len)) return STORE_EINVAL;
    }
    return STORE_OK;
}

int store_ec_encode(store_ec *ec, size_t len, const uint8_t *const *data, uint8_t *const *parity) {
    if (!ec || !data || !parity) return STORE_EINVAL;
    for (int j = 0; j < ec->k; j++)
        if (!data[j] && len) return STORE_EINVAL;
    int rc = check_buffers(len, data, ec->k, parity, ec->m);
    if (rc) return rc;
    if (len) ec->kernel(len, ec->k, ec->m, ec->parity_tbl, data, parity);
    return STORE_OK;
}

int store_ec_encode_crc(store_ec *ec, size_t len, const uint8_t *const *data,
                        uint8_t *const *parity, size_t block_len, uint32_t *crcs) {
    if (!ec || !data || !parity || !crcs || block_len == 0) return STORE_EINVAL;
    for (int j = 0; j < ec->k; j++)
        if (!data[j] && len) return STORE_EINVAL;
    int rc = check_buffers(len, data, ec->k, parity, ec->m);
    if (rc) return rc;
    int k = ec->k, n = ec->k + ec->m;
    size_t nblocks = (len + block_len - 1) / block_len;
    const uint8_t *src[STORE_EC_MAX_SHARDS];
    uint8_t *dst[STORE_EC_MAX_SHARDS];
    for (size_t b = 0; b < nblocks; b++) {
        size_t off = b * block_len;
        size_t blen = len - off < block_len ? len - off : block_len;
        for (int j = 0; j < k; j++) src[j] = data[j] + off;
        for (int r = 0; r < ec->m; r++) dst[r] = parity[r] + off;
        ec->kernel(blen, k, ec->m, ec->parity_tbl, src, dst);
        for (int s = 0; s < n; s++) {
            const uint8_t *p = s < k ? src[s] : dst[s - k];
            crcs[(size_t)s * nblocks + b] = store_crc32c(0, p, blen);
        }
    }
    return STORE_OK;
}

/* Build the expanded tables for (used, want) into a fresh allocation. */
static uint8_t *build_decode_tables(const store_ec *ec, const int *used, const int *want,
                                    int n_want) {
    int k = ec->k;
    uint8_t b[STORE_EC_MAX_SHARDS * STORE_EC_MAX_SHARDS];
    uint8_t inv[STORE_EC_MAX_SHARDS * STORE_EC_MAX_SHARDS];
    uint8_t rows[STORE_EC_MAX_SHARDS * STORE_EC_MAX_SHARDS];
    for (int r = 0; r < k; r++) memcpy(b + r * k, ec->matrix + (size_t)used[r] * k, (size_t)k);
    if (store_gf_invert(k, b, inv) != 0) return NULL; /* cannot happen for a Cauchy matrix */
    for (int w = 0; w < n_want; w++) {
        uint8_t *row = rows + w * k;
        if (want[w] < k) {
            memcpy(row, inv + want[w] * k, (size_t)k);
            continue;
        }
        const uint8_t *gen = ec->matrix + (size_t)want[w] * k;
        for (int c = 0; c < k; c++) {
            uint8_t acc = 0;
            for (int j = 0; j < k; j++) acc ^= store_gf_mul(gen[j], inv[j * k + c]);
            row[c] = acc;
        }
    }
    uint8_t *tbl = malloc((size_t)n_want * (size_t)k * STORE_TBL_BYTES);
    if (tbl) store_gf_expand(ec->isa, rows, n_want * k, tbl);
    return tbl;
}

/* Copy the tables for (used_mask, want_mask) into out, building and caching them on a miss. */
static int decode_tables(store_ec *ec, uint32_t used_mask, uint32_t want_mask, const int *used,
                         const int *want, int n_want, uint8_t *out) {
    size_t size = (size_t)n_want * (size_t)ec->k * STORE_TBL_BYTES;
    pthread_mutex_lock(&ec->lock);
    for (int i = 0; i < CACHE_SLOTS; i++) {
        struct cache_entry *e = &ec->cache[i];
        if (e->want_mask == want_mask && e->used_mask == used_mask) {
            memcpy(out, e->tbl, size);
            ec->hits++;
            pthread_mutex_unlock(&ec->lock);
            return STORE_OK;
        }
    }
    ec->misses++;
    pthread_mutex_unlock(&ec->lock);

    /* Built outside the lock: two threads missing on the same pattern both build it, which is
     * harmless (identical tables) and keeps the lock hold time tiny. */
    uint8_t *tbl = build_decode_tables(ec, used, want, n_want);
    if (!tbl) return STORE_ENOMEM;
    memcpy(out, tbl, size);

    pthread_mutex_lock(&ec->lock);
    struct cache_entry *e = &ec->cache[ec->next_victim];
    ec->next_victim = (ec->next_victim + 1) % CACHE_SLOTS;
    free(e->tbl);
    e->tbl = tbl;
    e->used_mask = used_mask;
    e->want_mask = want_mask;
    pthread_mutex_unlock(&ec->lock);
    return STORE_OK;
}

int store_ec_reconstruct(store_ec *ec, size_t len, const uint8_t *const *shards,
                         const int *want_idx, int n_want, uint8_t *const *out) {
    if (!ec || !shards || !want_idx || !out || n_want < 0) return STORE_EINVAL;
    int k = ec->k, n = ec->k + ec->m;
    if (n_want == 0) return STORE_OK;
    if (n_want > n) return STORE_EINVAL;

    int used[STORE_EC_MAX_SHARDS];
    const uint8_t *src[STORE_EC_MAX_SHARDS];
    uint32_t used_mask = 0;
    int n_used = 0;
    for (int i = 0; i < n && n_used < k; i++) {
        if (shards[i]) {
            used[n_used] = i;
            src[n_used] = shards[i];
            used_mask |= 1u << i;
            n_used++;
        }
    }
    if (n_used < k) return STORE_ETOOFEW;

    /* Sort the wanted shards ascending (carrying their outputs) so one pattern has one key. */
    int want[STORE_EC_MAX_SHARDS];
    uint8_t *dst[STORE_EC_MAX_SHARDS];
    uint32_t want_mask = 0;
    for (int w = 0; w < n_want; w++) {
        int idx = want_idx[w];
        if (idx < 0 || idx >= n || (want_mask & (1u << idx))) return STORE_EINVAL;
        want_mask |= 1u << idx;
    }
    int pos = 0;
    for (int idx = 0; idx < n; idx++) {
        if (!(want_mask & (1u << idx))) continue;
        for (int w = 0; w < n_want; w++)
            if (want_idx[w] == idx) dst[pos] = out[w];
        want[pos++] = idx;
    }
    int rc = check_buffers(len, src, k, dst, n_want);
    if (rc) return rc;
    if (len == 0) return STORE_OK;

    size_t size = (size_t)n_want * (size_t)k * STORE_TBL_BYTES;
    uint8_t stack_tbl[8192];
    uint8_t *tbl = size <= sizeof stack_tbl ? stack_tbl : malloc(size);
    if (!tbl) return STORE_ENOMEM;
    rc = decode_tables(ec, used_mask, want_mask, used, want, n_want, tbl);
    if (rc == STORE_OK) ec->kernel(len, k, n_want, tbl, src, dst);
    if (tbl != stack_tbl) free(tbl);
    return rc;
}
