// SPDX-License-Identifier: MIT
/*
 * ring.c - libiovad's side of the shared-memory rings (protocol version 4;
 * the layout and the doorbell protocol are in proto/ring.h).
 *
 * After HELLO, conn_open() asks for rings unless $IOVAD_RINGS is 0: it
 * creates the sealed memfd and two eventfds and sends them with RING_SETUP.
 * A daemon that does not offer rings (older, or [rings] enable = no) says
 * so, and the connection simply stays on the socket.
 *
 * With rings on, every request without an fd is written into the
 * submission ring (under send_lock, like a socket write), and the reader
 * role (conn.c) takes replies and events from the completion ring. A
 * waiting reader polls the completion ring for ring_spin_ns (adaptive to
 * where the daemon runs: it yields at once when the daemon last ran on its
 * CPU, and after 2 us anyway), then sleeps in poll() on the socket and the wake eventfd, with
 * PROTO_RING_CLIENT_WAKE set so the daemon rings it.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <poll.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/epoll.h>
#include <sys/uio.h>
#include <unistd.h>

#include "internal.h"

/* Default poll budget of a waiting reader; $IOVAD_RING_SPIN_US overrides it. */
#define RING_SPIN_US_DEFAULT 50u
/* A sender waiting for room re-checks this often while another thread reads (ms). */
#define ROOM_REPOLL_MS 1

static bool env_off(const char *name)
{
	const char *v = getenv(name);

	return v && (!strcmp(v, "0") || !strcmp(v, "no") || !strcmp(v, "off"));
}

static uint64_t env_spin_ns(void)
{
	const char *v = getenv("IOVAD_RING_SPIN_US");
	char *end;
	unsigned long x;

	if (!v || !*v)
		return (uint64_t)RING_SPIN_US_DEFAULT * 1000u;
	x = strtoul(v, &end, 10);
	if (*end || x > 1000000)
		return (uint64_t)RING_SPIN_US_DEFAULT * 1000u;
	return (uint64_t)x * 1000u;
}

void ring_doorbell(struct iovad *c, uint32_t want)
{
	uint64_t one = 1;

	proto_ring_fence();
	if ((proto_ring_peek(&c->ring.hdr->daemon_flags) & want) == want)
		(void)!write(c->ring_bell, &one, sizeof(one));
}

int ring_submit(struct iovad *c, const struct iovec *iov, int niov, uint32_t len)
{
	uint32_t mask = c->ring.sq_size - 1, rec = proto_ring_rec(len);
	uint8_t *at;
	int r;

	r = ring_wait_room(c, rec);
	if (r)
		return r;
	at = c->ring.sq + (c->sq_tail & mask);
	for (int i = 0; i < niov; i++) {
		memcpy(at, iov[i].iov_base, iov[i].iov_len);
		at += iov[i].iov_len;
	}
	c->sq_tail += rec;
	proto_ring_store(&c->ring.hdr->client_cpu, proto_ring_my_cpu());
	proto_ring_store(&c->ring.hdr->sq_tail, c->sq_tail);
	ring_doorbell(c, PROTO_RING_DAEMON_SLEEPING);
	return 0;
}

int ring_wait_room(struct iovad *c, uint32_t rec)
{
	for (;;) {
		uint32_t head = proto_ring_load(&c->ring.hdr->sq_head);
		struct pollfd pfd = { .fd = c->ring_wake, .events = POLLIN };

		if (c->ring.sq_size - (c->sq_tail - head) >= rec)
			return 0;
		if (conn_dead(c))
			return -ENOTCONN;
		/*
		 * Full: the daemon takes more once there is room for its replies,
		 * so read them if nobody else does, then let it catch up.
		 */
		conn_read_some(c);
		ring_doorbell(c, PROTO_RING_DAEMON_SLEEPING);
		if (poll(&pfd, 1, ROOM_REPOLL_MS) < 0 && errno != EINTR)
			return -errno;
	}
}

int ring_open(struct iovad *c)
{
	uint32_t size = PROTO_RING_DEFAULT;
	struct proto_ring_setup req = { 0 };
	struct proto_ring_setup_rpy rpy;
	struct epoll_event ev = { .events = EPOLLIN };
	struct pending p;
	int fds[3] = { -1, -1, -1 }, r;

	if (c->version < PROTO_VERSION_RING || env_off("IOVAD_RINGS"))
		return 0;
	/* Twice the largest frame, so a whole reply always fits behind one being read. */
	while (size < 2 * c->max_frame)
		size <<= 1;
	req.sq_size = req.cq_size = size;
	fds[0] = proto_ring_create(size, size);
	if (fds[0] < 0)
		return 0; /* no memfd here: the socket works all the same */
	r = proto_ring_map(fds[0], size, size, &c->ring);
	if (r)
		goto out_close;
	fds[1] = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	fds[2] = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (fds[1] < 0 || fds[2] < 0)
		goto out_unmap;
	c->ring.hdr->magic = PROTO_RING_MAGIC;
	c->ring.hdr->sq_size = size;
	c->ring.hdr->cq_size = size;
	/* Nobody polls the completion ring until a reader does: wake us. */
	c->ring.hdr->client_flags = PROTO_RING_CLIENT_WAKE;
	r = pending_init(&p);
	if (r)
		goto out_unmap;
	p.rpy = &rpy;
	p.rpy_len = sizeof(rpy);
	r = conn_call_fds(c, &p, PROTO_CMD_RING_SETUP, &req, sizeof(req), fds, 3);
	pending_destroy(&p);
	if (r == -ENOTCONN)
		goto out_unmap;
	if (r) {
		/* Refused (not offered, or limits): stay on the socket. */
		r = 0;
		goto out_unmap;
	}
	/* An event loop waiting on iovad_event_fd() must see completions too. */
	ev.data.fd = fds[2];
	if (epoll_ctl(c->epfd, EPOLL_CTL_ADD, fds[2], &ev) < 0) {
		/* The daemon has the rings now: without a wakeup we cannot use them. */
		r = -ENOTCONN;
		goto out_unmap;
	}
	close(fds[0]);
	c->ring_bell = fds[1];
	c->ring_wake = fds[2];
	c->ring_spin_ns = env_spin_ns();
	pthread_mutex_lock(&c->lock);
	c->ring_on = true;
	pthread_mutex_unlock(&c->lock);
	return 0;

out_unmap:
	proto_ring_unmap(&c->ring);
out_close:
	for (int i = 0; i < 3; i++)
		if (fds[i] >= 0)
			close(fds[i]);
	return r == -ENOTCONN ? r : 0;
}

void ring_close(struct iovad *c)
{
	if (!c->ring_on)
		return;
	proto_ring_unmap(&c->ring);
	close(c->ring_bell);
	close(c->ring_wake);
	c->ring_on = false;
}
