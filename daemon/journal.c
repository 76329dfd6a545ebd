// SPDX-License-Identifier: MIT
/*
 * journal.c - the state journal (see journal.h): records, group commit
 * through io_uring (one linked write + fdatasync per loop iteration), the
 * torn-tail cut at open, and checkpoint rewrites.
 *
 * Two buffers: "fill" takes appends, "flight" is being written. A commit
 * swaps them when nothing is in flight, so records appended while one
 * commit is on its way go out together in the next: the more requests
 * arrive per fdatasync, the fewer fdatasyncs per request.
 */
#include "journal.h"
#include "failpoint.h"
#include "internal.h"

#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <liburing.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

struct jbuf {
	uint8_t *p;
	size_t len, cap;
	uint64_t last_seq;  /* highest seq in it */
};

struct journal {
	char *path, *tmp_path, *dir;
	int fd;
	int new_fd;              /* during a rewrite */
	bool sync;
	uint64_t off;            /* where the next commit writes */
	uint64_t seq;            /* last appended; never goes back, checkpoints included */
	uint64_t seq_before;     /* at the start of a checkpoint, for its abort */
	uint64_t durable;
	struct jbuf fill, flight;
	bool in_flight;
	uint32_t flight_cqes;    /* completions of the commit in flight seen so far */
	int flight_err;
	uint64_t flight_t0;
	struct io_uring ring;
	int efd;
	struct event *efd_ev;
	struct event *commit_ev;
	const struct journal_ops *ops;
	void *arg;
	struct journal_stats st;
};

#define JPAD(n) (((n) + 7u) & ~(size_t)7u)
#define JMAX_RECORD (64u << 20)

static int jbuf_reserve(struct jbuf *b, size_t more)
{
	size_t cap = b->cap ? b->cap : 64u << 10;
	uint8_t *p;

	if (b->len + more <= b->cap)
		return 0;
	while (cap < b->len + more)
		cap *= 2;
	p = realloc(b->p, cap);
	if (!p)
		return -ENOMEM;
	b->p = p;
	b->cap = cap;
	return 0;
}

static int full_pwrite(int fd, const uint8_t *p, size_t len, uint64_t off)
{
	while (len) {
		ssize_t n = pwrite(fd, p, len, (off_t)off);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += n;
		len -= (size_t)n;
		off += (uint64_t)n;
	}
	return 0;
}

static int sync_dir(const char *dir)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC), r = 0;

	if (fd < 0)
		return -errno;
	if (fsync(fd) < 0)
		r = -errno;
	close(fd);
	return r;
}

/* ==== group commit ============================================================ */

static void submit_commit(struct journal *j);

static void commit_done(struct journal *j, int err)
{
	j->in_flight = false;
	if (err) {
		j->ops->failed(j->arg, err);
		return;
	}
	j->off += j->flight.len;
	j->durable = j->flight.last_seq;
	j->st.commits++;
	j->st.bytes += j->flight.len;
	j->st.commit_ns_total += now_ns() - j->flight_t0;
	j->flight.len = 0;
	j->ops->durable(j->arg, j->durable);
	if (j->fill.len)
		event_active(j->commit_ev, EV_TIMEOUT, 0);
}

static void efd_cb(evutil_socket_t fd, short what, void *arg)
{
	struct journal *j = arg;
	struct io_uring_cqe *cqe;
	uint64_t v;
	int *err = &j->flight_err;

	(void)what;
	(void)!read(fd, &v, sizeof(v));
	while (io_uring_peek_cqe(&j->ring, &cqe) == 0) {
		uint64_t what_op = io_uring_cqe_get_data64(cqe);

		if (what_op == 3)
			*err = *err ? *err : -EIO; /* an injected fdatasync failure (failpoint.h) */
		else if (what_op == 1 && cqe->res >= 0 && (size_t)cqe->res != j->flight.len)
			*err = *err ? *err : -EIO; /* short write to a regular file: the disk is full */
		else if (cqe->res < 0 && !*err)
			*err = cqe->res == -ECANCELED ? -EIO : cqe->res;
		io_uring_cqe_seen(&j->ring, cqe);
		j->flight_cqes++;
	}
	/* The write and, in sync mode, the fdatasync linked to it (the two may come apart). */
	if (j->in_flight && j->flight_cqes >= (j->sync ? 2u : 1u))
		commit_done(j, *err);
}

static void submit_commit(struct journal *j)
{
	struct io_uring_sqe *sqe;
	struct jbuf t;
	int r;

	if (j->in_flight || !j->fill.len || j->new_fd >= 0)
		return;
	j->ops->pre_commit(j->arg);
	t = j->flight;
	j->flight = j->fill;
	j->fill = t;
	j->fill.len = 0;
	j->in_flight = true;
	j->flight_cqes = 0;
	j->flight_err = 0;
	j->flight_t0 = now_ns();
	if (fp_hit(FP_JOURNAL_WRITE)) {
		commit_done(j, -EIO);
		return;
	}
	sqe = io_uring_get_sqe(&j->ring);
	io_uring_prep_write(sqe, j->fd, j->flight.p, (unsigned int)j->flight.len, j->off);
	io_uring_sqe_set_data64(sqe, 1);
	if (j->sync) {
		sqe->flags |= IOSQE_IO_LINK;
		sqe = io_uring_get_sqe(&j->ring);
		io_uring_prep_fsync(sqe, j->fd, IORING_FSYNC_DATASYNC);
		io_uring_sqe_set_data64(sqe, 2);
		if (fp_hit(FP_JOURNAL_SYNC)) {
			/* The fdatasync "fails": replace it with a no-op the kernel completes. */
			io_uring_prep_nop(sqe);
			io_uring_sqe_set_data64(sqe, 3);
		}
	}
	/*
	 * sync = none: a buffered write into the page cache completes in a few
	 * microseconds, so wait for it here rather than for a wakeup through
	 * the eventfd and the next loop pass (which costs more than the write).
	 */
	r = j->sync ? io_uring_submit(&j->ring) : io_uring_submit_and_wait(&j->ring, 1);
	if (r < 0) {
		commit_done(j, r);
		return;
	}
	if (!j->sync)
		efd_cb(j->efd, EV_READ, j);
}

static void commit_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	submit_commit(arg);
}

uint64_t journal_append(struct journal *j, uint32_t type, const struct jpart *parts, int nparts)
{
	struct jrec_hdr h = { .magic = JREC_MAGIC, .type = type };
	size_t body = 0, total;
	uint8_t *p;
	uLong crc;

	for (int i = 0; i < nparts; i++)
		body += parts[i].len;
	total = sizeof(h) + body;
	if (total > JMAX_RECORD || jbuf_reserve(&j->fill, JPAD(total)))
		return 0;
	h.len = (uint32_t)total;
	h.seq = ++j->seq;
	crc = crc32(0L, (const Bytef *)&h, sizeof(h));
	p = j->fill.p + j->fill.len;
	memcpy(p, &h, sizeof(h));
	p += sizeof(h);
	for (int i = 0; i < nparts; i++) {
		if (!parts[i].len)
			continue;
		memcpy(p, parts[i].p, parts[i].len);
		crc = crc32(crc, p, (uInt)parts[i].len);
		p += parts[i].len;
	}
	memset(p, 0, JPAD(total) - total);
	((struct jrec_hdr *)(j->fill.p + j->fill.len))->crc = (uint32_t)crc;
	j->fill.len += JPAD(total);
	j->fill.last_seq = h.seq;
	j->st.records++;
	if (j->new_fd >= 0) {
		/* A checkpoint: straight into the new file, in big writes. */
		if (j->fill.len >= (4u << 20)) {
			if (full_pwrite(j->new_fd, j->fill.p, j->fill.len, j->off)) {
				j->fill.len = 0;
				return 0;
			}
			j->off += j->fill.len;
			j->fill.len = 0;
		}
		return h.seq;
	}
	if (!j->in_flight && j->fill.len == JPAD(total))
		event_active(j->commit_ev, EV_TIMEOUT, 0);
	return h.seq;
}

void journal_poll(struct journal *j)
{
	struct io_uring_cqe *cqe;

	/* A completion already there: take it without waiting for the eventfd's turn. */
	if (j->in_flight && io_uring_peek_cqe(&j->ring, &cqe) == 0)
		efd_cb(j->efd, EV_READ, j);
	if (!j->in_flight && j->fill.len)
		submit_commit(j);
}

uint64_t journal_durable(const struct journal *j)
{
	return j->durable;
}

uint64_t journal_last(const struct journal *j)
{
	return j->seq;
}

int journal_flush(struct journal *j)
{
	struct io_uring_cqe *cqe;

	if (!j)
		return 0;
	for (int round = 0; round < 2; round++) {
		if (!j->in_flight)
			submit_commit(j);
		if (!j->in_flight)
			break;
		/* Wait for this commit's completions, then let efd_cb account for them. */
		if (io_uring_wait_cqe_nr(&j->ring, &cqe, (j->sync ? 2u : 1u) - j->flight_cqes) < 0)
			return -EIO;
		efd_cb(j->efd, EV_READ, j);
		if (j->in_flight)
			return -EIO;
	}
	return 0;
}

/* ==== reading ===================================================================== */

int journal_read(struct journal *j, int (*fn)(void *arg, const struct jrec_hdr *h,
					     const uint8_t *body, size_t len),
		 void *arg, uint64_t *bytes_cut)
{
	struct stat sb;
	uint8_t *map = NULL;
	uint64_t off = 0, size;
	int r = 0;

	*bytes_cut = 0;
	if (fstat(j->fd, &sb) < 0)
		return -errno;
	size = (uint64_t)sb.st_size;
	if (size) {
		map = mmap(NULL, size, PROT_READ, MAP_PRIVATE, j->fd, 0);
		if (map == MAP_FAILED)
			return -errno;
	}
	while (off + sizeof(struct jrec_hdr) <= size) {
		struct jrec_hdr h;
		uLong crc;

		memcpy(&h, map + off, sizeof(h));
		/* Numbers go on across checkpoints: the file starts where its writer was. */
		if (off == 0 && h.seq)
			j->seq = h.seq - 1;
		if (h.magic != JREC_MAGIC || h.len < sizeof(h) || h.len > JMAX_RECORD ||
		    off + JPAD(h.len) > size || h.seq != j->seq + 1)
			break;
		{
			struct jrec_hdr z = h;

			z.crc = 0;
			crc = crc32(0L, (const Bytef *)&z, sizeof(z));
			crc = crc32(crc, map + off + sizeof(h), h.len - (uInt)sizeof(h));
		}
		if ((uint32_t)crc != h.crc)
			break;
		r = fn(arg, &h, map + off + sizeof(h), h.len - sizeof(h));
		if (r)
			break;
		j->seq = h.seq;
		off += JPAD(h.len);
	}
	if (map)
		munmap(map, size);
	if (r)
		return r;
	if (off < size) {
		*bytes_cut = size - off;
		if (ftruncate(j->fd, (off_t)off) < 0 || fdatasync(j->fd) < 0)
			return -errno;
	}
	j->off = off;
	j->durable = j->seq;
	return 0;
}

/* ==== checkpoints ================================================================= */

int journal_rewrite_begin(struct journal *j)
{
	int r = 0, tries = 0;

	/* Releasing replies may let requests in, and their records: drain those too. */
	while ((j->fill.len || j->in_flight) && !r && tries++ < 16)
		r = journal_flush(j);
	if (r)
		return r;
	if (j->fill.len || j->in_flight)
		return -EBUSY;
	j->new_fd = open(j->tmp_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (j->new_fd < 0)
		return -errno;
	j->fill.len = 0;
	j->off = 0;
	j->seq_before = j->seq;
	return 0;
}

void journal_rewrite_abort(struct journal *j)
{
	struct stat sb;

	if (j->new_fd < 0)
		return;
	close(j->new_fd);
	j->new_fd = -1;
	(void)unlink(j->tmp_path);
	j->fill.len = 0;
	/* Back to the old file's end and numbering. */
	j->off = fstat(j->fd, &sb) == 0 ? (uint64_t)sb.st_size : j->off;
	j->seq = j->seq_before;
}

int journal_rewrite_end(struct journal *j)
{
	int r = 0;

	if (j->fill.len)
		r = full_pwrite(j->new_fd, j->fill.p, j->fill.len, j->off);
	if (!r) {
		j->off += j->fill.len;
		j->fill.len = 0;
		if (fdatasync(j->new_fd) < 0 || rename(j->tmp_path, j->path) < 0)
			r = -errno;
	}
	if (!r)
		r = sync_dir(j->dir);
	if (r) {
		journal_rewrite_abort(j);
		return r;
	}
	close(j->fd);
	j->fd = j->new_fd;
	j->new_fd = -1;
	j->durable = j->seq;
	j->st.checkpoints++;
	return 0;
}

uint64_t journal_size(const struct journal *j)
{
	return j->off + j->fill.len;
}

void journal_stats(const struct journal *j, struct journal_stats *ret)
{
	*ret = j->st;
}

/* ==== open and close ================================================================ */

int journal_open(struct journal **ret, const char *dir, bool sync, struct event_base *base,
		 const struct journal_ops *ops, void *arg, char *err, size_t errlen)
{
	struct journal *j = calloc(1, sizeof(*j));
	int r;

	if (!j)
		return -ENOMEM;
	j->fd = j->new_fd = j->efd = -1;
	j->ring.ring_fd = -1;
	j->sync = sync;
	j->ops = ops;
	j->arg = arg;
	if (asprintf(&j->path, "%s/journal", dir) < 0 ||
	    asprintf(&j->tmp_path, "%s/journal.new", dir) < 0 || !(j->dir = strdup(dir))) {
		r = -ENOMEM;
		goto fail;
	}
	if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
		r = -errno;
		snprintf(err, errlen, "state directory %s: %s", dir, strerror(errno));
		goto fail;
	}
	(void)unlink(j->tmp_path); /* a checkpoint that never finished */
	j->fd = open(j->path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (j->fd < 0) {
		r = -errno;
		snprintf(err, errlen, "%s: %s", j->path, strerror(errno));
		goto fail;
	}
	r = io_uring_queue_init(8, &j->ring, 0);
	if (r) {
		snprintf(err, errlen, "journal: io_uring: %s", strerror(-r));
		j->ring.ring_fd = -1;
		goto fail;
	}
	j->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (j->efd < 0 || io_uring_register_eventfd(&j->ring, j->efd) < 0) {
		r = -errno;
		snprintf(err, errlen, "journal: eventfd: %s", strerror(errno));
		goto fail;
	}
	j->efd_ev = event_new(base, j->efd, EV_READ | EV_PERSIST, efd_cb, j);
	j->commit_ev = event_new(base, -1, 0, commit_cb, j);
	if (!j->efd_ev || !j->commit_ev || event_add(j->efd_ev, NULL)) {
		r = -ENOMEM;
		goto fail;
	}
	*ret = j;
	return 0;
fail:
	if (!err[0])
		snprintf(err, errlen, "journal: %s", strerror(-r));
	journal_close(j);
	return r;
}

void journal_close(struct journal *j)
{
	if (!j)
		return;
	if (j->fd >= 0 && j->ring.ring_fd >= 0 && j->efd_ev)
		(void)journal_flush(j);
	if (j->efd_ev)
		event_free(j->efd_ev);
	if (j->commit_ev)
		event_free(j->commit_ev);
	if (j->ring.ring_fd >= 0)
		io_uring_queue_exit(&j->ring);
	if (j->efd >= 0)
		close(j->efd);
	if (j->new_fd >= 0)
		close(j->new_fd);
	if (j->fd >= 0)
		close(j->fd);
	free(j->fill.p);
	free(j->flight.p);
	free(j->path);
	free(j->tmp_path);
	free(j->dir);
	free(j);
}
