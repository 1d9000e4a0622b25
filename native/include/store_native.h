/*
 * store_native.h - the one public header of store's native library.
 *
 * Reed-Solomon erasure coding over GF(2^8) and CRC32C.
 *
 * The code is systematic: shards 0..k-1 are the data as given, shards k..k+m-1 are parity computed
 * with the Cauchy matrix that ISA-L's gf_gen_cauchy1_matrix produces (polynomial 0x11d), so any k
 * of the k+m shards rebuild the rest and our parity is bit-identical to ISA-L's.
 * Limits: k >= 1, m >= 1, k + m <= STORE_EC_MAX_SHARDS (32).
 *
 * Every function returns an int status (STORE_OK or a negative STORE_E* code) and writes only into
 * caller-owned buffers. Shard buffers need no alignment and may have any length >= 0.
 * All functions are thread-safe; a codec may be shared by any number of threads.
 */
#ifndef STORE_NATIVE_H
#define STORE_NATIVE_H

#include <stddef.h>
#include <stdint.h>

#define STORE_EC_MAX_SHARDS 32

#define STORE_OK 0
#define STORE_EINVAL (-1)      /* bad argument (count, geometry, index) */
#define STORE_ENOTSUP (-2)     /* kernel not supported by this CPU */
#define STORE_ENOMEM (-3)
#define STORE_ETOOFEW (-4)     /* fewer than k shards present: data is lost */

/* Kernel ids (store_isa_default() says which is preferred). */
#define STORE_ISA_REF 0        /* portable C: the test oracle */
#define STORE_ISA_AVX2 1       /* pshufb split-nibble tables, 256-bit */
#define STORE_ISA_AVX512 2     /* pshufb split-nibble tables, 512-bit (AVX-512BW) */
#define STORE_ISA_GFNI 3       /* vgf2p8affineqb, 512-bit (GFNI + AVX-512BW) */
#define STORE_ISA_AVX2_GFNI 4  /* vgf2p8affineqb, 256-bit (GFNI + AVX2, no AVX-512 needed) */
#define STORE_ISA_COUNT 5

/* Name of a kernel id ("ref", "avx2", "avx512", "gfni", "avx2gfni"), or NULL. */
const char *store_isa_name(int isa);
/* 1 if this CPU (and OS) can run the kernel, else 0. */
int store_isa_supported(int isa);
/* The kernel new codecs use when asked for isa < 0: the best supported one, unless the
 * STORE_NATIVE_ISA environment variable names another (then that one, or -1 if it is unknown or
 * unsupported: callers must report that as an error). */
int store_isa_default(void);

typedef struct store_ec store_ec;

/* Create a codec for k data + m parity shards running kernel `isa` (< 0: store_isa_default()).
 * On failure returns NULL and sets *status. */
store_ec *store_ec_new(int k, int m, int isa, int *status);
void store_ec_free(store_ec *ec);
int store_ec_isa(const store_ec *ec);

/* parity[i] = sum_j C[i][j] * data[j] over `len` bytes, for i < m. */
int store_ec_encode(store_ec *ec, size_t len, const uint8_t *const *data, uint8_t *const *parity);

/* Encode, then CRC32C every `block_len`-byte block of every shard (the last may be shorter) while
 * it is hot in cache. crcs[s * nblocks + b] receives block b of shard s (s < k + m), where
 * nblocks = ceil(len / block_len). */
int store_ec_encode_crc(store_ec *ec, size_t len, const uint8_t *const *data,
                        uint8_t *const *parity, size_t block_len, uint32_t *crcs);

/* Rebuild the shards named in want_idx[0..n_want) from present shards.
 * shards[i] for i < k + m points at shard i, or is NULL when shard i is missing. The first k
 * present shards are used. out[w] receives shard want_idx[w]. Decode matrices are cached per
 * erasure pattern (bounded). Returns STORE_ETOOFEW when fewer than k shards are present. */
int store_ec_reconstruct(store_ec *ec, size_t len, const uint8_t *const *shards,
                         const int *want_idx, int n_want, uint8_t *const *out);

/* Decode-matrix cache counters (for tests and metrics). */
void store_ec_cache_stats(const store_ec *ec, uint64_t *hits, uint64_t *misses);

/* CRC32C (Castagnoli, as iSCSI/ext4/SSE4.2). `crc` is a previous result to continue from (0 to
 * start), so crc32c(b, crc32c(a, 0)) == crc32c(a || b, 0). */
#define STORE_CRC_SW 0         /* slicing-by-8 tables: the oracle */
#define STORE_CRC_SSE42 1      /* crc32q, one stream */
#define STORE_CRC_CLMUL 2      /* PCLMULQDQ folding, 128-bit, crc32 finish */
#define STORE_CRC_VPCLMUL 3    /* VPCLMULQDQ folding, 512-bit, crc32 finish */
#define STORE_CRC_CRC3 4       /* crc32q, three streams merged by PCLMULQDQ */
#define STORE_CRC_VPCLMUL256 5 /* VPCLMULQDQ folding, 256-bit (AVX2), crc32 finish */
#define STORE_CRC_COUNT 6

const char *store_crc_name(int kernel);
int store_crc_supported(int kernel);
int store_crc_default(void);
uint32_t store_crc32c(uint32_t crc, const uint8_t *buf, size_t len);
/* The same with a named kernel; STORE_ENOTSUP status via *status when the CPU lacks it. */
uint32_t store_crc32c_with(int kernel, uint32_t crc, const uint8_t *buf, size_t len, int *status);
/* Verify consecutive blocks of `block_len` bytes (the last may be short) laid back to back in
 * `buf` against `crcs` (one little-endian uint32 per block, as stored in shard files): the index
 * of the first block that does not match, or -1 when all do. One call per read, not per block. */
long store_crc32c_verify_blocks(const uint8_t *buf, size_t len, size_t block_len,
                                const uint8_t *crcs);
/* The CRC32C of each consecutive `block_len` block of `buf` (the last may be short), written
 * to `crcs` as little-endian uint32s (room for ceil(len / block_len) of them): the table that
 * store_crc32c_verify_blocks checks. Returns the number of blocks. */
long store_crc32c_blocks(const uint8_t *buf, size_t len, size_t block_len, uint8_t *crcs);

/* io_uring for drive I/O (liburing), one ring per event loop: operations are queued with a tag,
 * submitted together, and reaped without waiting; ``eventfd`` (>= 0) is signalled as
 * completions arrive. Every call returns 0 (or a count) or -errno: store_ring_new fails with
 * -ENOSYS when the library was built without liburing, -EPERM/-ENOSYS where the kernel refuses
 * (kernel.io_uring_disabled, seccomp, old kernels). Buffers must stay valid until their
 * operation's completion is reaped. ``link``: the next queued operation starts only after this
 * one succeeded (a write then its fdatasync). -EBUSY: the submission queue is full (submit). */
typedef struct store_ring store_ring;
store_ring *store_ring_new(unsigned entries, int eventfd, int *status);
void store_ring_free(store_ring *ring);
int store_ring_read(store_ring *ring, int fd, uint8_t *buf, size_t len, uint64_t offset,
                    uint64_t tag, int link);
int store_ring_write(store_ring *ring, int fd, const uint8_t *buf, size_t len, uint64_t offset,
                     uint64_t tag, int link);
int store_ring_fsync(store_ring *ring, int fd, int datasync, uint64_t tag, int link);
/* Submit what is queued: the number submitted. */
int store_ring_submit(store_ring *ring);
/* Free entries in the submission queue: a linked chain must be queued whole before a submit,
 * as a link does not reach across submissions. */
int store_ring_space(store_ring *ring);
/* Up to max completions that are ready: tags[i] finished with results[i] (bytes, or -errno). */
int store_ring_reap(store_ring *ring, uint64_t *tags, int32_t *results, int max);

#endif
