// SPDX-License-Identifier: MIT
/*
 * Shared-memory rings (protocol version 4) against the real daemon: that
 * libiovad uses them by default and falls back to the socket, that
 * RING_SETUP checks what it is given, that ring entries are validated like
 * socket frames, that completions wait for room rather than get lost, and
 * that a client that corrupts its ring ends only its own session.
 *
 * The raw tests drive the rings by hand through proto/ring.h, as a client
 * that does not use libiovad would.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"
#include "ring.h"

static struct daemon d;

static void start(void)
{
	daemon_start(&d);
}

static void stop(void)
{
	cr_assert_eq(daemon_stop(&d), 0, "the daemon did not shut down cleanly");
}

static char cfg_path[128];

static void start_cfg(const char *text)
{
	FILE *f;

	snprintf(cfg_path, sizeof(cfg_path), "/tmp/iovad-rings-%d.conf", (int)getpid());
	f = fopen(cfg_path, "w");
	cr_assert_not_null(f);
	fputs(text, f);
	fclose(f);
	daemon_start_config(&d, cfg_path);
}

static void stop_cfg(void)
{
	stop();
	unlink(cfg_path);
}

/* ---- raw ring client ----------------------------------------------------------------- */

struct raw {
	int fd;                 /* the socket */
	struct proto_ring_map m;
	int bell, wake;
	uint32_t sq_tail, cq_head;
};

static int hello_max(int fd, uint16_t vmax, uint32_t max_frame)
{
	struct proto_hello h = { .version_min = 1, .version_max = vmax, .max_frame = max_frame,
				 .max_batch = PROTO_BATCH_DEFAULT };
	uint8_t buf[256];
	int n;

	cr_assert_eq(raw_send(fd, PROTO_CMD_HELLO, 1, &h, sizeof(h)), 0);
	n = raw_recv(fd, buf, sizeof(buf), 5000);
	cr_assert_gt(n, 0);
	return frame_status(buf);
}

/* Send RING_SETUP with these fds; return the reply's status. */
static int setup_with(int fd, uint32_t sq, uint32_t cq, const int *fds, int nfds)
{
	struct proto_ring_setup g = { .sq_size = sq, .cq_size = cq };
	uint8_t buf[256];
	int n;

	cr_assert_eq(raw_send_fds(fd, PROTO_VERSION_RING, PROTO_CMD_RING_SETUP, 77, &g, sizeof(g),
				  fds, nfds),
		     0);
	n = raw_recv(fd, buf, sizeof(buf), 5000);
	cr_assert_gt(n, 0, "no reply to RING_SETUP");
	cr_assert_eq(frame_type(buf), PROTO_CMD_RING_SETUP | PROTO_RPY);
	return frame_status(buf);
}

/* A raw session with rings of sq and cq bytes, after HELLO with max_frame. */
static void raw_open(struct raw *r, uint32_t max_frame, uint32_t sq, uint32_t cq)
{
	int fds[3];

	memset(r, 0, sizeof(*r));
	r->fd = raw_connect(d.sock);
	cr_assert_geq(r->fd, 0);
	cr_assert_eq(hello_max(r->fd, PROTO_VERSION_RING, max_frame), 0);
	fds[0] = proto_ring_create(sq, cq);
	cr_assert_geq(fds[0], 0);
	cr_assert_eq(proto_ring_map(fds[0], sq, cq, &r->m), 0);
	r->bell = fds[1] = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	r->wake = fds[2] = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	r->m.hdr->client_flags = PROTO_RING_CLIENT_WAKE;
	cr_assert_eq(setup_with(r->fd, sq, cq, fds, 3), 0);
	close(fds[0]);
}

static void raw_close(struct raw *r)
{
	proto_ring_unmap(&r->m);
	close(r->bell);
	close(r->wake);
	close(r->fd);
}

static void bell(struct raw *r)
{
	uint64_t one = 1;

	proto_ring_fence();
	if (proto_ring_peek(&r->m.hdr->daemon_flags) & PROTO_RING_DAEMON_SLEEPING)
		cr_assert_eq(write(r->bell, &one, sizeof(one)), (ssize_t)sizeof(one));
}

/* Put one frame into the submission ring (not published). */
static void put(struct raw *r, uint16_t type, uint64_t id, const void *body, size_t blen)
{
	uint8_t *at = r->m.sq + (r->sq_tail & (r->m.sq_size - 1));
	struct proto_hdr h;

	proto_hdr_init(&h, PROTO_VERSION_RING, type, (uint32_t)(sizeof(h) + blen), id);
	memcpy(at, &h, sizeof(h));
	if (blen)
		memcpy(at + sizeof(h), body, blen);
	r->sq_tail += proto_ring_rec((uint32_t)(sizeof(h) + blen));
}

static void publish(struct raw *r)
{
	proto_ring_store(&r->m.hdr->sq_tail, r->sq_tail);
	bell(r);
}

/* Take one completion within timeout_ms into buf; return its length, or -ETIMEDOUT. */
static int take(struct raw *r, void *buf, size_t cap, int timeout_ms)
{
	for (int waited = 0;; waited++) {
		uint32_t tail = proto_ring_load(&r->m.hdr->cq_tail);

		if (tail != r->cq_head) {
			const uint8_t *f = r->m.cq + (r->cq_head & (r->m.cq_size - 1));
			struct proto_hdr h;

			memcpy(&h, f, sizeof(h));
			cr_assert_leq(h.len, cap);
			memcpy(buf, f, h.len);
			r->cq_head += proto_ring_rec(h.len);
			proto_ring_store(&r->m.hdr->cq_head, r->cq_head);
			/* Room for the daemon's replies again: it may be waiting for that. */
			proto_ring_fence();
			if ((proto_ring_peek(&r->m.hdr->daemon_flags) &
			     (PROTO_RING_DAEMON_SLEEPING | PROTO_RING_DAEMON_CQ_WAIT)) ==
			    (PROTO_RING_DAEMON_SLEEPING | PROTO_RING_DAEMON_CQ_WAIT)) {
				uint64_t one = 1;

				(void)!write(r->bell, &one, sizeof(one));
			}
			return (int)h.len;
		}
		if (waited >= timeout_ms)
			return -ETIMEDOUT;
		{
			struct pollfd p = { .fd = r->wake, .events = POLLIN };
			uint64_t n;

			if (poll(&p, 1, 1) > 0)
				(void)!read(r->wake, &n, sizeof(n));
		}
	}
}

static uint64_t frame_id(const void *buf)
{
	struct proto_hdr h;

	memcpy(&h, buf, sizeof(h));
	return h.id;
}

/* True once the daemon has closed the socket (EOF within timeout_ms). */
static bool socket_closed(int fd, int timeout_ms)
{
	uint8_t buf[512];

	for (;;) {
		int n = raw_recv(fd, buf, sizeof(buf), timeout_ms);

		if (n == 0 || n == -ECONNRESET)
			return true;
		if (n < 0)
			return false;
	}
}

/* The flags LIST_CLIENTS reports for session sid (-1: not listed). */
static long client_flags(uint64_t sid)
{
	uint8_t buf[PROTO_FRAME_DEFAULT];
	struct proto_list q = { 0 };
	int fd = raw_connect(d.sock), n;
	long flags = -1;

	cr_assert_geq(fd, 0);
	cr_assert_eq(raw_hello(fd), 0);
	cr_assert_eq(raw_send(fd, PROTO_CMD_LIST_CLIENTS, 5, &q, sizeof(q)), 0);
	n = raw_recv(fd, buf, sizeof(buf), 5000);
	cr_assert_gt(n, 0);
	cr_assert_eq(frame_status(buf), 0);
	{
		struct proto_list_rpy lr;
		const uint8_t *e = buf + sizeof(struct proto_hdr) + sizeof(lr);

		memcpy(&lr, buf + sizeof(struct proto_hdr), sizeof(lr));
		for (uint32_t i = 0; i < lr.count; i++) {
			struct proto_client_entry ce;

			memcpy(&ce, e + i * sizeof(ce), sizeof(ce));
			if (ce.session_id == sid)
				flags = ce.flags;
		}
	}
	close(fd);
	return flags;
}

/* A link + sync + DMA write/read round through libiovad; returns the session id. */
static uint64_t workload(struct iovad *c)
{
	struct iovad_iova_state st;
	struct iovad_dev *dev;
	struct iovad_mem *m;
	uint8_t out[256], in[256];

	cr_assert_eq(iovad_dev_open(c, "sim0", &dev), 0);
	cr_assert_eq(iovad_mem_alloc(c, 64 << 10, &m), 0);
	cr_assert(iovad_iova_try_alloc(dev, &st, iovad_mem_phys(m), 64 << 10));
	cr_assert_eq(iovad_iova_link(dev, &st, iovad_mem_phys(m), 0, 64 << 10,
				     IOVAD_DMA_BIDIRECTIONAL, 0), 0);
	cr_assert_eq(iovad_iova_sync(dev, &st, 0, 64 << 10), 0);
	fill_pattern(out, sizeof(out), 3);
	cr_assert_eq(iovad_dev_dma_write(dev, st.addr + 4096, out, sizeof(out)), 0);
	cr_assert_eq(memcmp((uint8_t *)iovad_mem_addr(m) + 4096, out, sizeof(out)), 0);
	cr_assert_eq(iovad_dev_dma_read(dev, st.addr + 4096, in, sizeof(in)), 0);
	cr_assert_eq(memcmp(in, out, sizeof(out)), 0);
	iovad_iova_destroy(dev, &st, 64 << 10, IOVAD_DMA_BIDIRECTIONAL, 0);
	iovad_mem_free(m);
	iovad_dev_close(dev);
	return iovad_session_id(c);
}

/* ---- libiovad ---------------------------------------------------------------------------- */

TestSuite(rings, .init = start, .fini = stop, .timeout = 120);

Test(rings, libiovad_uses_rings_by_default_and_falls_back_on_request)
{
	struct iovad *c;
	uint64_t sid;

	unsetenv("IOVAD_RINGS");
	cr_assert_eq(iovad_connect(d.sock, &c), 0);
	cr_assert(iovad_uses_rings(c), "libiovad did not set up rings with a daemon that has them");
	sid = workload(c);
	cr_assert_eq(client_flags(sid), PROTO_CLIENT_RINGS);
	iovad_disconnect(c);

	setenv("IOVAD_RINGS", "0", 1);
	cr_assert_eq(iovad_connect(d.sock, &c), 0);
	cr_assert_not(iovad_uses_rings(c));
	sid = workload(c);
	cr_assert_eq(client_flags(sid), 0);
	iovad_disconnect(c);
	unsetenv("IOVAD_RINGS");
}

/* Many threads share one connection: pipelined ring submissions, replies matched by id. */
static void *hammer(void *arg)
{
	struct iovad_dev *dev = arg;

	for (int i = 0; i < 2000; i++) {
		struct iovad_dev_stats s;

		if (iovad_dev_stats(dev, &s))
			return (void *)1;
	}
	return NULL;
}

Test(rings, threads_share_the_rings)
{
	pthread_t t[4];
	struct iovad_dev *dev;
	struct iovad *c;

	unsetenv("IOVAD_RINGS");
	cr_assert_eq(iovad_connect(d.sock, &c), 0);
	cr_assert(iovad_uses_rings(c));
	cr_assert_eq(iovad_dev_open(c, "sim0", &dev), 0);
	for (int i = 0; i < 4; i++)
		cr_assert_eq(pthread_create(&t[i], NULL, hammer, dev), 0);
	for (int i = 0; i < 4; i++) {
		void *ret;

		pthread_join(t[i], &ret);
		cr_assert_null(ret, "thread %d saw an error", i);
	}
	iovad_dev_close(dev);
	iovad_disconnect(c);
}

Test(rings, a_client_killed_mid_ring_is_torn_down)
{
	uint64_t before = daemon_status(&d).teardowns;
	int p[2];
	pid_t pid;

	unsetenv("IOVAD_RINGS");
	cr_assert_eq(pipe(p), 0);
	pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		struct iovad_iova_state st;
		struct iovad_dev *dev;
		struct iovad_mem *m;
		struct iovad *c;

		if (iovad_connect(d.sock, &c) || !iovad_uses_rings(c) ||
		    iovad_dev_open(c, "sim0", &dev) || iovad_mem_alloc(c, 1 << 20, &m) ||
		    !iovad_iova_try_alloc(dev, &st, iovad_mem_phys(m), 1 << 20) ||
		    iovad_iova_link(dev, &st, iovad_mem_phys(m), 0, 1 << 20,
				    IOVAD_DMA_BIDIRECTIONAL, 0))
			_exit(1);
		(void)!write(p[1], "x", 1);
		pause();
		_exit(0);
	}
	close(p[1]);
	{
		char x;

		/* EOF (the child exited) instead of its byte: it could not set up. */
		cr_assert_eq(read(p[0], &x, 1), 1, "the child could not set up");
	}
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	cr_assert_geq(daemon_wait_teardowns(&d, before + 1).teardowns, before + 1);
	close(p[0]);
}

/* ---- RING_SETUP ----------------------------------------------------------------------- */

Test(rings, setup_checks_what_it_is_given)
{
	int fd = raw_connect(d.sock), good, unsealed, holes, ev1, ev2, pfd[2], fds[3];
	const uint32_t sz = PROTO_RING_DEFAULT;

	cr_assert_geq(fd, 0);
	cr_assert_eq(hello_max(fd, PROTO_VERSION_RING, PROTO_FRAME_DEFAULT), 0);
	good = proto_ring_create(sz, sz);
	cr_assert_geq(good, 0);
	ev1 = eventfd(0, EFD_CLOEXEC);
	ev2 = eventfd(0, EFD_CLOEXEC);
	cr_assert_eq(pipe(pfd), 0);

	/* Not sealed: the client could shrink it under the daemon's mapping. */
	unsealed = memfd_create("unsealed", MFD_CLOEXEC);
	cr_assert_eq(ftruncate(unsealed, (off_t)proto_ring_file_size(sz, sz)), 0);
	fds[0] = unsealed, fds[1] = ev1, fds[2] = ev2;
	cr_assert_eq(setup_with(fd, sz, sz, fds, 3), -EPERM);
	/*
	 * Sealed but with holes, all of it or its last page: the rings' pages are
	 * the client's to allocate, not the daemon's to fault in later.
	 */
	holes = memfd_create("holes", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	cr_assert_eq(ftruncate(holes, (off_t)proto_ring_file_size(sz, sz)), 0);
	cr_assert_eq(fcntl(holes, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW), 0);
	fds[0] = holes;
	cr_assert_eq(setup_with(fd, sz, sz, fds, 3), -EINVAL);
	cr_assert_eq(fallocate(holes, 0, 0, (off_t)proto_ring_file_size(sz, sz) - 4096), 0);
	cr_assert_eq(setup_with(fd, sz, sz, fds, 3), -EINVAL);
	/* A size that is not what the request says. */
	fds[0] = good;
	cr_assert_eq(setup_with(fd, sz * 2, sz, fds, 3), -EINVAL);
	/* Smaller than two frames of the negotiated size. */
	cr_assert_eq(setup_with(fd, PROTO_FRAME_DEFAULT, sz, fds, 3), -EINVAL);
	/* Above the daemon's max_size (4 MiB by default). */
	cr_assert_eq(setup_with(fd, 8u << 20, sz, fds, 3), -EINVAL);
	/* Doorbells that are not eventfds. */
	fds[1] = pfd[0];
	cr_assert_eq(setup_with(fd, sz, sz, fds, 3), -EBADF);
	fds[1] = ev1;
	/* Too few fds: the ones that came are not left behind for a later frame. */
	cr_assert_eq(setup_with(fd, sz, sz, fds, 2), -EBADF);
	cr_assert_eq(setup_with(fd, sz, sz, fds, 0), -EBADF);
	/* Then it works, once. */
	cr_assert_eq(setup_with(fd, sz, sz, fds, 3), 0);
	cr_assert_eq(setup_with(fd, sz, sz, fds, 3), -EEXIST);
	close(good);
	close(unsealed);
	close(holes);
	close(ev1);
	close(ev2);
	close(pfd[0]);
	close(pfd[1]);
	close(fd);
}

/* A RING_SETUP refused by the decoder takes its fds along: the next one gets its own. */
Test(rings, a_refused_setup_takes_its_fds_along)
{
	struct proto_ring_setup bad = { .sq_size = PROTO_RING_DEFAULT,
					.cq_size = PROTO_RING_DEFAULT, .reserved = 1 };
	struct proto_dev_open o = { 0 };
	uint8_t buf[512];
	int fd, stale[3], fds[3];
	struct raw r;

	memset(&r, 0, sizeof(r));
	fd = r.fd = raw_connect(d.sock);
	cr_assert_geq(fd, 0);
	cr_assert_eq(hello_max(fd, PROTO_VERSION_RING, PROTO_FRAME_DEFAULT), 0);
	stale[0] = proto_ring_create(PROTO_RING_DEFAULT, PROTO_RING_DEFAULT);
	stale[1] = eventfd(0, EFD_CLOEXEC);
	stale[2] = eventfd(0, EFD_CLOEXEC);
	cr_assert_eq(raw_send_fds(fd, PROTO_VERSION_RING, PROTO_CMD_RING_SETUP, 5, &bad,
				  sizeof(bad), stale, 3),
		     0);
	cr_assert_gt(raw_recv(fd, buf, sizeof(buf), 5000), 0);
	cr_assert_eq(frame_status(buf), -EINVAL);
	/* Now a good one, with fds of its own: its memfd must be the one the daemon maps. */
	fds[0] = proto_ring_create(PROTO_RING_DEFAULT, PROTO_RING_DEFAULT);
	cr_assert_eq(proto_ring_map(fds[0], PROTO_RING_DEFAULT, PROTO_RING_DEFAULT, &r.m), 0);
	r.bell = fds[1] = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	r.wake = fds[2] = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	r.m.hdr->client_flags = PROTO_RING_CLIENT_WAKE;
	cr_assert_eq(setup_with(fd, PROTO_RING_DEFAULT, PROTO_RING_DEFAULT, fds, 3), 0);
	strcpy(o.name, "sim0");
	put(&r, PROTO_CMD_DEV_OPEN, 1, &o, sizeof(o));
	publish(&r);
	cr_assert_gt(take(&r, buf, sizeof(buf), 5000), 0,
		     "the daemon mapped another frame's memfd: nothing came back on ours");
	cr_assert_eq(frame_status(buf), 0);
	for (int i = 0; i < 3; i++)
		close(stale[i]);
	close(fds[0]);
	raw_close(&r);
}

Test(rings, version_3_sessions_have_no_ring_setup)
{
	int fd = raw_connect(d.sock), fds[3];
	struct proto_ring_setup g = { .sq_size = PROTO_RING_DEFAULT, .cq_size = PROTO_RING_DEFAULT };
	uint8_t buf[256];

	cr_assert_geq(fd, 0);
	cr_assert_eq(hello_max(fd, PROTO_VERSION_RKEY, PROTO_FRAME_DEFAULT), 0);
	fds[0] = proto_ring_create(PROTO_RING_DEFAULT, PROTO_RING_DEFAULT);
	fds[1] = eventfd(0, EFD_CLOEXEC);
	fds[2] = eventfd(0, EFD_CLOEXEC);
	cr_assert_eq(raw_send_fds(fd, PROTO_VERSION_RKEY, PROTO_CMD_RING_SETUP, 9, &g, sizeof(g),
				  fds, 3),
		     0);
	cr_assert_gt(raw_recv(fd, buf, sizeof(buf), 5000), 0);
	cr_assert_eq(frame_status(buf), -ENOSYS);
	for (int i = 0; i < 3; i++)
		close(fds[i]);
	close(fd);
}

/* ---- raw rings ---------------------------------------------------------------------------- */

Test(rings, entries_are_handled_in_order_and_validated_like_frames)
{
	struct proto_dev_open o = { 0 };
	struct proto_dev_ref ref = { .dev = 1 };
	struct proto_mem_import mi = { .size = 4096 };
	uint8_t buf[4096];
	struct raw r;

	raw_open(&r, PROTO_FRAME_DEFAULT, PROTO_RING_DEFAULT, PROTO_RING_DEFAULT);
	strcpy(o.name, "sim0");
	put(&r, PROTO_CMD_DEV_OPEN, 100, &o, sizeof(o));
	for (uint64_t id = 101; id < 140; id++)
		put(&r, PROTO_CMD_DEV_STATS, id, &ref, sizeof(ref));
	/* A bad reserved field: -EINVAL for that request, and the session goes on. */
	ref.reserved = 1;
	put(&r, PROTO_CMD_DEV_STATS, 140, &ref, sizeof(ref));
	/* An fd-carrying request on the ring: refused, fds travel on the socket only. */
	put(&r, PROTO_CMD_MEM_IMPORT, 141, &mi, sizeof(mi));
	ref.reserved = 0;
	put(&r, PROTO_CMD_DEV_STATS, 142, &ref, sizeof(ref));
	publish(&r);
	for (uint64_t id = 100; id <= 142; id++) {
		int n = take(&r, buf, sizeof(buf), 5000);

		cr_assert_gt(n, 0, "completion %lu missing", (unsigned long)id);
		cr_assert_eq(frame_id(buf), id, "completions out of order");
		if (id == 140 || id == 141)
			cr_assert_eq(frame_status(buf), -EINVAL, "id %lu", (unsigned long)id);
		else
			cr_assert_eq(frame_status(buf), 0, "id %lu", (unsigned long)id);
	}
	/* The socket still works for the control plane. */
	cr_assert_eq(raw_send_v(r.fd, PROTO_VERSION_RING, PROTO_CMD_DEV_STATS, 200, &ref, sizeof(ref)),
		     0);
	cr_assert_gt(raw_recv(r.fd, buf, sizeof(buf), 5000), 0);
	cr_assert_eq(frame_id(buf), 200);
	cr_assert_eq(frame_status(buf), 0);
	raw_close(&r);
}

Test(rings, socket_frames_wait_for_what_the_ring_already_holds)
{
	struct proto_dev_open o = { 0 };
	struct proto_dev_ref ref = { .dev = 1 };
	uint8_t buf[4096];
	struct raw r;

	raw_open(&r, PROTO_FRAME_DEFAULT, PROTO_RING_DEFAULT, PROTO_RING_DEFAULT);
	strcpy(o.name, "sim0");
	/* Once the daemon sleeps on the ring, publish without a doorbell: only the ordering rule makes it look. */
	for (int i = 0; i < 2000 && !(proto_ring_load(&r.m.hdr->daemon_flags) &
				      PROTO_RING_DAEMON_SLEEPING); i++)
		usleep(1000);
	cr_assert(proto_ring_load(&r.m.hdr->daemon_flags) & PROTO_RING_DAEMON_SLEEPING,
		  "the daemon never stopped polling an idle ring");
	put(&r, PROTO_CMD_DEV_OPEN, 1, &o, sizeof(o));
	proto_ring_store(&r.m.hdr->sq_tail, r.sq_tail);
	/* On the socket, DEV_STATS of the device the ring entry opens. */
	cr_assert_eq(raw_send_v(r.fd, PROTO_VERSION_RING, PROTO_CMD_DEV_STATS, 2, &ref, sizeof(ref)),
		     0);
	cr_assert_gt(raw_recv(r.fd, buf, sizeof(buf), 5000), 0);
	cr_assert_eq(frame_id(buf), 2);
	cr_assert_eq(frame_status(buf), 0, "the socket frame overtook the ring entry");
	cr_assert_gt(take(&r, buf, sizeof(buf), 5000), 0);
	cr_assert_eq(frame_id(buf), 1);
	cr_assert_eq(frame_status(buf), 0);
	raw_close(&r);
}

Test(rings, completions_wait_for_room_and_none_is_lost)
{
	struct proto_dev_open o = { 0 };
	struct proto_dev_ref ref = { .dev = 1 };
	const uint64_t n = 600;
	uint8_t buf[4096];
	struct raw r;

	/* max_frame 4 KiB, completion ring 8 KiB: room for one reply at a time. */
	raw_open(&r, PROTO_FRAME_MIN, 64u << 10, PROTO_RING_SIZE_MIN);
	strcpy(o.name, "sim0");
	put(&r, PROTO_CMD_DEV_OPEN, 1, &o, sizeof(o));
	for (uint64_t id = 2; id <= n; id++)
		put(&r, PROTO_CMD_DEV_STATS, id, &ref, sizeof(ref));
	publish(&r);
	/* Let the daemon fill the completion ring and stop. */
	usleep(100000);
	cr_assert_lt(proto_ring_load(&r.m.hdr->sq_head), r.sq_tail,
		     "the daemon took requests with no room for their replies");
	for (uint64_t id = 1; id <= n; id++) {
		int len = take(&r, buf, sizeof(buf), 5000);

		cr_assert_gt(len, 0, "completion %lu lost", (unsigned long)id);
		cr_assert_eq(frame_id(buf), id);
		cr_assert_eq(frame_status(buf), 0);
	}
	cr_assert_eq(proto_ring_load(&r.m.hdr->sq_head), r.sq_tail);
	raw_close(&r);
}

/* A good client keeps working while another breaks its ring in each way. */
static void survives_corruption(void (*corrupt)(struct raw *r), bool expect_error_frame)
{
	uint64_t bad_before = daemon_status(&d).frames_bad;
	struct iovad *good;
	uint8_t buf[4096];
	struct raw r;

	unsetenv("IOVAD_RINGS");
	cr_assert_eq(iovad_connect(d.sock, &good), 0);
	(void)workload(good);
	raw_open(&r, PROTO_FRAME_DEFAULT, PROTO_RING_DEFAULT, PROTO_RING_DEFAULT);
	corrupt(&r);
	bell(&r);
	if (expect_error_frame) {
		cr_assert_gt(take(&r, buf, sizeof(buf), 5000), 0, "no error completion");
		cr_assert_eq(frame_type(buf), PROTO_RPY_ERROR);
		cr_assert_lt(frame_status(buf), 0);
	}
	cr_assert(socket_closed(r.fd, 5000), "the daemon kept a session whose ring is broken");
	cr_assert_gt(daemon_status(&d).frames_bad, bad_before);
	(void)workload(good);
	iovad_disconnect(good);
	raw_close(&r);
	cr_assert(daemon_alive(&d));
}

static void tail_beyond_ring(struct raw *r)
{
	proto_ring_store(&r->m.hdr->sq_tail, r->m.sq_size * 3);
}

static void tail_inside_header(struct raw *r)
{
	proto_ring_store(&r->m.hdr->sq_tail, 8);
}

static void bad_magic(struct raw *r)
{
	uint8_t junk[64];

	memset(junk, 0xab, sizeof(junk));
	memcpy(r->m.sq, junk, sizeof(junk));
	proto_ring_store(&r->m.hdr->sq_tail, sizeof(junk));
}

static void frame_longer_than_submitted(struct raw *r)
{
	struct proto_dev_ref ref = { .dev = 1 };

	put(r, PROTO_CMD_DEV_STATS, 5, &ref, sizeof(ref));
	proto_ring_store(&r->m.hdr->sq_tail, 24);
}

static void oversized_frame(struct raw *r)
{
	struct proto_hdr h;

	proto_hdr_init(&h, PROTO_VERSION_RING, PROTO_CMD_DEV_STATS, PROTO_FRAME_MAX, 6);
	memcpy(r->m.sq, &h, sizeof(h));
	proto_ring_store(&r->m.hdr->sq_tail, PROTO_FRAME_DEFAULT);
}

static void cq_head_beyond_tail(struct raw *r)
{
	struct proto_dev_ref ref = { .dev = 1 };

	proto_ring_store(&r->m.hdr->cq_head, 0x80000000u);
	put(r, PROTO_CMD_DEV_STATS, 7, &ref, sizeof(ref));
	proto_ring_store(&r->m.hdr->sq_tail, r->sq_tail);
}

Test(rings, corrupt_tail_ends_only_that_session)
{
	survives_corruption(tail_beyond_ring, false);
	survives_corruption(tail_inside_header, false);
}

Test(rings, corrupt_frames_end_only_that_session)
{
	survives_corruption(bad_magic, true);
	survives_corruption(oversized_frame, true);
	survives_corruption(frame_longer_than_submitted, false);
}

Test(rings, corrupt_completion_head_ends_only_that_session)
{
	survives_corruption(cq_head_beyond_tail, false);
}

/* ---- configurations ----------------------------------------------------------------------- */

Test(rings_off, a_daemon_without_rings_keeps_libiovad_on_the_socket, .init = NULL,
     .fini = NULL, .timeout = 60)
{
	int fd, fds[3];
	struct iovad *c;

	start_cfg("[rings]\nenable = no\n");
	unsetenv("IOVAD_RINGS");
	cr_assert_eq(iovad_connect(d.sock, &c), 0);
	cr_assert_not(iovad_uses_rings(c));
	cr_assert_eq(client_flags(workload(c)), 0);
	iovad_disconnect(c);
	fd = raw_connect(d.sock);
	cr_assert_eq(hello_max(fd, PROTO_VERSION_RING, PROTO_FRAME_DEFAULT), 0);
	fds[0] = proto_ring_create(PROTO_RING_DEFAULT, PROTO_RING_DEFAULT);
	fds[1] = eventfd(0, EFD_CLOEXEC);
	fds[2] = eventfd(0, EFD_CLOEXEC);
	cr_assert_eq(setup_with(fd, PROTO_RING_DEFAULT, PROTO_RING_DEFAULT, fds, 3), -EOPNOTSUPP);
	for (int i = 0; i < 3; i++)
		close(fds[i]);
	close(fd);
	stop_cfg();
}

Test(rings_off, without_spinning_every_request_rings_the_doorbell, .timeout = 120)
{
	struct iovad *c;
	uint64_t sid;

	/* The daemon sleeps on every ring at once: each request must wake it. */
	start_cfg("[rings]\nspin_us = 0\nspin_max_us = 0\n");
	unsetenv("IOVAD_RINGS");
	setenv("IOVAD_RING_SPIN_US", "0", 1);
	cr_assert_eq(iovad_connect(d.sock, &c), 0);
	cr_assert(iovad_uses_rings(c));
	for (int i = 0; i < 50; i++)
		sid = workload(c);
	cr_assert_eq(client_flags(sid), PROTO_CLIENT_RINGS);
	iovad_disconnect(c);
	unsetenv("IOVAD_RING_SPIN_US");
	stop_cfg();
}

/* Past max_polled the least recently busy ring sleeps: clients taking turns go through doorbells. */
Test(rings_off, clients_beyond_max_polled_are_served_through_their_doorbells, .timeout = 120)
{
	enum { N = 6 };
	struct iovad *cl[N];
	uint64_t sid[N];

	start_cfg("[rings]\nmax_polled = 2\n");
	unsetenv("IOVAD_RINGS");
	for (int i = 0; i < N; i++) {
		cr_assert_eq(iovad_connect(d.sock, &cl[i]), 0);
		cr_assert(iovad_uses_rings(cl[i]));
	}
	/* Round-robin: every turn finds the client's ring evicted by the others. */
	for (int round = 0; round < 20; round++)
		for (int i = 0; i < N; i++)
			sid[i] = workload(cl[i]);
	for (int i = 0; i < N; i++) {
		cr_assert_eq(client_flags(sid[i]), PROTO_CLIENT_RINGS);
		iovad_disconnect(cl[i]);
	}
	stop_cfg();
}
