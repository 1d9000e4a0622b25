/* io_uring for drive I/O (liburing): one ring per event loop. Operations are queued with a tag,
 * submitted in one io_uring_enter per loop turn, and their completions reaped without waiting:
 * the ring signals an eventfd the event loop waits on, so no thread ever blocks in the kernel
 * for a file operation. Built without liburing (no header at build time), every call reports
 * -ENOSYS and callers use their thread pool. */
#include <errno.h>
#include <stdlib.h>

#include "store_native.h"

#ifdef STORE_HAVE_LIBURING
#include <liburing.h>

struct store_ring {
    struct io_uring ring;
};

store_ring *store_ring_new(unsigned entries, int eventfd, int *status) {
    store_ring *r = calloc(1, sizeof *r);
    if (!r) {
        if (status) *status = -ENOMEM;
        return NULL;
    }
    /* SUBMIT_ALL: one bad entry does not stop the submission of the ones after it (5.18+);
     * older kernels refuse the flag: try without. Not COOP_TASKRUN: it defers completions to
     * our thread's next return from the kernel, and an idle event loop sleeping in epoll_wait
     * for the eventfd would then wait for a completion that waits for it (seen: a volume's
     * closing syncs never finished once the gateway went idle). */
    int rc = io_uring_queue_init(entries, &r->ring, IORING_SETUP_SUBMIT_ALL);
    if (rc == -EINVAL) rc = io_uring_queue_init(entries, &r->ring, 0);
    if (rc == 0 && eventfd >= 0) {
        rc = io_uring_register_eventfd(&r->ring, eventfd);
        if (rc) io_uring_queue_exit(&r->ring);
    }
    if (rc) {
        free(r);
        if (status) *status = rc;
        return NULL;
    }
    if (status) *status = 0;
    return r;
}

void store_ring_free(store_ring *r) {
    if (!r) return;
    io_uring_queue_exit(&r->ring);
    free(r);
}

/* After the prep call: io_uring_prep_* clear the entry's flags and user data. */
static int finish_sqe(struct io_uring_sqe *sqe, uint64_t tag, int link) {
    io_uring_sqe_set_data64(sqe, tag);
    if (link) io_uring_sqe_set_flags(sqe, IOSQE_IO_LINK);
    return 0;
}

int store_ring_read(store_ring *r, int fd, uint8_t *buf, size_t len, uint64_t offset, uint64_t tag,
                    int link) {
    if (!r || (!buf && len) || len > 0x7fffffff) return -EINVAL;
    struct io_uring_sqe *sqe = io_uring_get_sqe(&r->ring);
    if (!sqe) return -EBUSY;
    io_uring_prep_read(sqe, fd, buf, (unsigned)len, offset);
    return finish_sqe(sqe, tag, link);
}

int store_ring_write(store_ring *r, int fd, const uint8_t *buf, size_t len, uint64_t offset,
                     uint64_t tag, int link) {
    if (!r || (!buf && len) || len > 0x7fffffff) return -EINVAL;
    struct io_uring_sqe *sqe = io_uring_get_sqe(&r->ring);
    if (!sqe) return -EBUSY;
    io_uring_prep_write(sqe, fd, buf, (unsigned)len, offset);
    return finish_sqe(sqe, tag, link);
}

int store_ring_fsync(store_ring *r, int fd, int datasync, uint64_t tag, int link) {
    if (!r) return -EINVAL;
    struct io_uring_sqe *sqe = io_uring_get_sqe(&r->ring);
    if (!sqe) return -EBUSY;
    io_uring_prep_fsync(sqe, fd, datasync ? IORING_FSYNC_DATASYNC : 0);
    return finish_sqe(sqe, tag, link);
}

int store_ring_submit(store_ring *r) {
    if (!r) return -EINVAL;
    return io_uring_submit(&r->ring);
}

int store_ring_space(store_ring *r) {
    if (!r) return -EINVAL;
    return (int)io_uring_sq_space_left(&r->ring);
}

int store_ring_reap(store_ring *r, uint64_t *tags, int32_t *results, int max) {
    if (!r || max < 0 || (max && (!tags || !results))) return -EINVAL;
    struct io_uring_cqe *cqes[64];
    int n = 0;
    while (n < max) {
        unsigned want = (unsigned)(max - n) < 64 ? (unsigned)(max - n) : 64;
        unsigned got = io_uring_peek_batch_cqe(&r->ring, cqes, want);
        if (!got) break;
        for (unsigned i = 0; i < got; i++) {
            tags[n] = io_uring_cqe_get_data64(cqes[i]);
            results[n] = cqes[i]->res;
            n++;
        }
        io_uring_cq_advance(&r->ring, got);
    }
    return n;
}

#else /* no liburing at build time */

store_ring *store_ring_new(unsigned entries, int eventfd, int *status) {
    (void)entries, (void)eventfd;
    if (status) *status = -ENOSYS;
    return NULL;
}

void store_ring_free(store_ring *r) { (void)r; }

int store_ring_read(store_ring *r, int fd, uint8_t *buf, size_t len, uint64_t offset, uint64_t tag,
                    int link) {
    (void)r, (void)fd, (void)buf, (void)len, (void)offset, (void)tag, (void)link;
    return -ENOSYS;
}

int store_ring_write(store_ring *r, int fd, const uint8_t *buf, size_t len, uint64_t offset,
                     uint64_t tag, int link) {
    (void)r, (void)fd, (void)buf, (void)len, (void)offset, (void)tag, (void)link;
    return -ENOSYS;
}

int store_ring_fsync(store_ring *r, int fd, int datasync, uint64_t tag, int link) {
    (void)r, (void)fd, (void)datasync, (void)tag, (void)link;
    return -ENOSYS;
}

int store_ring_submit(store_ring *r) {
    (void)r;
    return -ENOSYS;
}

int store_ring_space(store_ring *r) {
    (void)r;
    return -ENOSYS;
}

int store_ring_reap(store_ring *r, uint64_t *tags, int32_t *results, int max) {
    (void)r, (void)tags, (void)results, (void)max;
    return -ENOSYS;
}

#endif
