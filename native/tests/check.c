/* Self-check of the native library, built with -fsanitize=address,undefined by `make asan`.
 *
 * Every buffer ends exactly where its memory ends: half the time it is its own malloc of exactly
 * its length (AddressSanitizer sees plain accesses past it), half the time it ends at a PROT_NONE
 * guard page (so masked AVX-512 loads and stores, which ASan does not instrument, fault too).
 * Compares each supported kernel with the reference on random geometries, lengths and erasures,
 * and each CRC kernel with the table oracle. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <unistd.h>
#include <stdlib.h>
#include <string.h>

#include "store_native.h"

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static uint64_t next(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static int failures = 0;
#define CHECK(cond, ...)                                                                          \
    do {                                                                                          \
        if (!(cond)) {                                                                            \
            fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);                                  \
            fprintf(stderr, __VA_ARGS__);                                                         \
            fprintf(stderr, "\n");                                                                \
            failures++;                                                                           \
        }                                                                                         \
    } while (0)

static int use_guard = 0;

/* len bytes ending at a guard page, or an exact malloc; release with release(). */
static uint8_t *alloc_buf(size_t len) {
    if (!use_guard) return malloc(len ? len : 1);
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    size_t body = (len + page - 1) / page * page;
    uint8_t *base = mmap(NULL, body + page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                         -1, 0);
    if (base == MAP_FAILED) abort();
    if (mprotect(base + body, page, PROT_NONE) != 0) abort();
    return base + body - len;
}

static void release(uint8_t *p, size_t len) {
    if (!use_guard) {
        free(p);
        return;
    }
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    size_t body = (len + page - 1) / page * page;
    munmap(p + len - body, body + page);
}

static uint8_t *rand_buf(size_t len) {
    uint8_t *b = alloc_buf(len);
    for (size_t i = 0; i < len; i++) b[i] = (uint8_t)next();
    return b;
}

static void check_ec(int k, int m, size_t len) {
    int n = k + m, st;
    store_ec *ref = store_ec_new(k, m, STORE_ISA_REF, &st);
    CHECK(ref, "ref codec %d+%d: %d", k, m, st);
    if (!ref) return;
    uint8_t *shards[STORE_EC_MAX_SHARDS], *expect[STORE_EC_MAX_SHARDS];
    for (int i = 0; i < n; i++) {
        shards[i] = i < k ? rand_buf(len) : alloc_buf(len);
        expect[i] = shards[i];
    }
    CHECK(store_ec_encode(ref, len, (const uint8_t *const *)shards, shards + k) == STORE_OK,
          "ref encode");
    for (int isa = 0; isa < STORE_ISA_COUNT; isa++) {
        if (!store_isa_supported(isa)) continue;
        store_ec *ec = store_ec_new(k, m, isa, &st);
        uint8_t *parity[STORE_EC_MAX_SHARDS];
        for (int r = 0; r < m; r++) parity[r] = alloc_buf(len);
        CHECK(store_ec_encode(ec, len, (const uint8_t *const *)shards, parity) == STORE_OK,
              "encode");
        for (int r = 0; r < m; r++)
            CHECK(memcmp(parity[r], expect[k + r], len) == 0, "%s encode %d+%d len %zu row %d",
                  store_isa_name(isa), k, m, len, r);
        /* Lose up to m random shards, rebuild them. */
        int lost = 1 + (int)(next() % (uint64_t)m);
        const uint8_t *present[STORE_EC_MAX_SHARDS];
        for (int i = 0; i < n; i++) present[i] = shards[i];
        int want[STORE_EC_MAX_SHARDS], nw = 0;
        while (nw < lost) {
            int i = (int)(next() % (uint64_t)n);
            if (!present[i]) continue;
            present[i] = NULL;
            want[nw++] = i;
        }
        uint8_t *out[STORE_EC_MAX_SHARDS];
        for (int w = 0; w < nw; w++) out[w] = alloc_buf(len);
        CHECK(store_ec_reconstruct(ec, len, present, want, nw, out) == STORE_OK, "reconstruct");
        for (int w = 0; w < nw; w++) {
            CHECK(memcmp(out[w], expect[want[w]], len) == 0, "%s rebuild %d+%d len %zu shard %d",
                  store_isa_name(isa), k, m, len, want[w]);
            release(out[w], len);
        }
        for (int r = 0; r < m; r++) release(parity[r], len);
        store_ec_free(ec);
    }
    for (int i = 0; i < n; i++) release(shards[i], len);
    store_ec_free(ref);
}

static void check_crc(size_t len) {
    uint8_t *b = rand_buf(len);
    uint32_t seed = (uint32_t)next();
    int st;
    uint32_t want = store_crc32c_with(STORE_CRC_SW, seed, b, len, &st);
    for (int kn = 1; kn < STORE_CRC_COUNT; kn++) {
        if (!store_crc_supported(kn)) continue;
        uint32_t got = store_crc32c_with(kn, seed, b, len, &st);
        CHECK(got == want, "crc %s len %zu: %08x != %08x", store_crc_name(kn), len, got, want);
    }
    /* The default path, which picks a kernel by length. */
    CHECK(store_crc32c(seed, b, len) == want, "crc32c() len %zu", len);
    release(b, len);
}

/* The io_uring ring: a write linked to its fdatasync, then a read, their tags and results, the
 * eventfd signalled; a full queue says EBUSY. Skipped (with a note) where the kernel or the build
 * has no io_uring. */
static void check_ring(void) {
    int efd = eventfd(0, EFD_CLOEXEC), st;
    store_ring *ring = store_ring_new(8, efd, &st);
    if (!ring) {
        CHECK(st == -ENOSYS || st == -EPERM, "ring: unexpected error %d", st);
        printf("note: io_uring unavailable here (%d): ring not checked\n", st);
        close(efd);
        return;
    }
    char path[] = "/tmp/store-ring-XXXXXX";
    int fd = mkstemp(path);
    unlink(path);
    size_t len = 70001;
    uint8_t *out = alloc_buf(len), *in = alloc_buf(len);
    for (size_t i = 0; i < len; i++) out[i] = (uint8_t)next();
    CHECK(store_ring_write(ring, fd, out, len, 4096, 1, 1) == 0, "ring write queued");
    CHECK(store_ring_fsync(ring, fd, 1, 2, 0) == 0, "ring fsync queued");
    CHECK(store_ring_submit(ring) == 2, "ring: two submitted");
    uint64_t tags[8];
    int32_t res[8];
    int got = 0;
    while (got < 2) {
        uint64_t signals;
        CHECK(read(efd, &signals, sizeof signals) == sizeof signals, "eventfd signalled");
        got += store_ring_reap(ring, tags + got, res + got, 8 - got);
    }
    CHECK(got == 2 && tags[0] == 1 && res[0] == (int32_t)len, "write: tag %llu res %d",
          (unsigned long long)tags[0], res[0]);
    CHECK(tags[1] == 2 && res[1] == 0, "fsync: tag %llu res %d", (unsigned long long)tags[1],
          res[1]);
    CHECK(store_ring_read(ring, fd, in, len, 4096, 3, 0) == 0, "ring read queued");
    CHECK(store_ring_submit(ring) == 1, "ring: one submitted");
    got = 0;
    while (!got) got = store_ring_reap(ring, tags, res, 8);
    CHECK(tags[0] == 3 && res[0] == (int32_t)len && memcmp(in, out, len) == 0, "read back");
    CHECK(store_ring_read(ring, -1, in, 1, 0, 4, 0) == 0 && store_ring_submit(ring) == 1, "bad fd");
    got = 0;
    while (!got) got = store_ring_reap(ring, tags, res, 8);
    CHECK(tags[0] == 4 && res[0] == -EBADF, "bad fd: %d", res[0]);
    /* The link holds: a failed write cancels the fdatasync queued after it. */
    CHECK(store_ring_write(ring, -1, out, 4096, 0, 5, 1) == 0, "failing write queued");
    CHECK(store_ring_fsync(ring, fd, 1, 6, 0) == 0 && store_ring_submit(ring) == 2, "linked");
    for (got = 0; got < 2;) got += store_ring_reap(ring, tags + got, res + got, 8 - got);
    for (int i = 0; i < 2; i++) {
        if (tags[i] == 5) CHECK(res[i] == -EBADF, "failing write: %d", res[i]);
        if (tags[i] == 6) CHECK(res[i] == -ECANCELED, "its linked sync cancelled: %d", res[i]);
    }
    CHECK(store_ring_space(ring) == 8, "an empty queue has its 8 entries free");
    int queued = 0;
    while (store_ring_fsync(ring, fd, 1, 10, 0) == 0) queued++;
    CHECK(store_ring_space(ring) == 0, "a full queue has none");
    CHECK(queued == 8, "a full queue says EBUSY after its 8 entries (%d)", queued);
    CHECK(store_ring_submit(ring) == 8, "all submitted");
    for (got = 0; got < 8;) got += store_ring_reap(ring, tags, res, 8 - got);
    store_ring_free(ring);
    release(out, len);
    release(in, len);
    close(fd);
    close(efd);
}

int main(void) {
    int st;
    const uint8_t v[] = "123456789";
    CHECK(store_crc32c(0, v, 9) == 0xE3069283u, "crc32c check value");
    /* ... and every chunk size of the three-stream kernel (3 x 4096, 3 x 1024, 3 x 256), with
     * what each leaves over. */
    size_t lens[] = {0,   1,   15,  31,   32,   33,   63,   64,   65,    127,   255,   256,
                     511, 512, 767, 768,  769,  3071, 3072, 3073, 4095,  4097,  12287, 12288,
                     12289, 15359, 16127, 24576, 65539, 1 << 20};
    for (use_guard = 0; use_guard < 2; use_guard++) {
        for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++) check_crc(lens[i]);
        for (int i = 0; i < 300; i++) check_crc((size_t)(next() % 5000));
        for (int i = 0; i < 40; i++) check_crc((size_t)(next() % 100000));
        for (int i = 0; i < 150; i++) {
            int k = 1 + (int)(next() % 16), m = 1 + (int)(next() % 8);
            if (k + m > STORE_EC_MAX_SHARDS) continue;
            check_ec(k, m, (size_t)(next() % 700));
        }
        check_ec(8, 3, 1 << 16);
        check_ec(8, 3, 100003); /* a 1 MiB+ stripe: out of L2 */
        check_ec(4, 2, (1 << 18) + 5);
        check_ec(1, 31, 100);
        check_ec(31, 1, 100);
    }
    check_ring();
    CHECK(store_ec_new(0, 1, -1, &st) == NULL && st == STORE_EINVAL, "k=0 refused");
    CHECK(store_ec_new(30, 3, -1, &st) == NULL && st == STORE_EINVAL, "k+m>32 refused");
    printf("%s: native self-check, %d failures\n", failures ? "FAILED" : "ok", failures);
    return failures ? 1 : 0;
}
