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
 *
 * Rings belong to a connection. When a durable session reconnects (conn.c),
 * the old rings go with the old socket, and ring_request() asks for new ones
 * on the new socket, right behind the requests sent again. Nobody waits for
 * that RING_SETUP: its reply adopts the rings (ring_setup_done_locked), and
 * meanwhile everything goes on the socket.
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

/*
 * Wait for room in the submission ring (send_lock held). Reading replies
 * meanwhile may meet the break and reconnect (in this thread), which
 * replaces the rings: the state is checked before the ring is touched again.
 * Return: 0, CONN_REPLACED, -EPIPE, -ENOTCONN.
 */
static int ring_wait_room(struct iovad *c, uint32_t rec, uint64_t gen)
{
	for (;;) {
		uint32_t head = proto_ring_load(&c->ring.hdr->sq_head);
		struct pollfd pfd = { .fd = c->ring_wake, .events = POLLIN };
		int r;

		if (c->ring.sq_size - (c->sq_tail - head) >= rec)
			return 0;
		r = conn_write_state(c, gen);
		if (r)
			return r;
		/*
		 * Full: the daemon takes more once there is room for its replies,
		 * so read them if nobody else does, then let it catch up.
		 */
		conn_read_some(c);
		r = conn_write_state(c, gen);
		if (r)
			return r;
		ring_doorbell(c, PROTO_RING_DAEMON_SLEEPING);
		if (poll(&pfd, 1, ROOM_REPOLL_MS) < 0 && errno != EINTR)
			return -errno;
	}
}

int ring_submit(struct iovad *c, const struct iovec *iov, int niov, uint32_t len, uint64_t gen)
{
	uint32_t mask = c->ring.sq_size - 1, rec = proto_ring_rec(len);
	uint8_t *at;
	int r;

	r = ring_wait_room(c, rec, gen);
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

/* A set of rings being set up: the mapping and the three fds RING_SETUP carries. */
struct ring_new {
	struct proto_ring_map map;
	struct proto_ring_setup req;
	struct proto_ring_setup_rpy rpy;
	int fds[3];
};

/* Return: 0, or -errno (no rings here: the socket works all the same). */
static int ring_make(struct iovad *c, struct ring_new *n)
{
	uint32_t size = PROTO_RING_DEFAULT;
	int r;

	memset(n, 0, sizeof(*n));
	n->fds[0] = n->fds[1] = n->fds[2] = -1;
	/* Twice the largest frame, so a whole reply always fits behind one being read. */
	while (size < 2 * c->max_frame)
		size <<= 1;
	n->req.sq_size = n->req.cq_size = size;
	n->fds[0] = proto_ring_create(size, size);
	if (n->fds[0] < 0)
		return n->fds[0];
	r = proto_ring_map(n->fds[0], size, size, &n->map);
	if (r) {
		close(n->fds[0]);
		return r;
	}
	n->fds[1] = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	n->fds[2] = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (n->fds[1] < 0 || n->fds[2] < 0) {
		r = -errno;
		proto_ring_unmap(&n->map);
		for (int i = 0; i < 3; i++)
			if (n->fds[i] >= 0)
				close(n->fds[i]);
		return r;
	}
	n->map.hdr->magic = PROTO_RING_MAGIC;
	n->map.hdr->sq_size = size;
	n->map.hdr->cq_size = size;
	/* Nobody polls the completion ring until a reader does: wake us. */
	n->map.hdr->client_flags = PROTO_RING_CLIENT_WAKE;
	return 0;
}

static void ring_discard(struct ring_new *n)
{
	proto_ring_unmap(&n->map);
	for (int i = 0; i < 3; i++)
		close(n->fds[i]);
}

/* The daemon took them: use them (lock held). Return: 0, or -errno (then they are discarded). */
static int ring_adopt_locked(struct iovad *c, struct ring_new *n)
{
	struct epoll_event ev = { .events = EPOLLIN, .data.fd = n->fds[2] };

	/* An event loop waiting on iovad_event_fd() must see completions too. */
	if (epoll_ctl(c->epfd, EPOLL_CTL_ADD, n->fds[2], &ev) < 0) {
		int r = -errno;

		ring_discard(n);
		return r;
	}
	close(n->fds[0]);
	c->ring = n->map;
	c->ring_bell = n->fds[1];
	c->ring_wake = n->fds[2];
	c->ring_spin_ns = env_spin_ns();
	c->sq_tail = 0;
	c->cq_head = 0;
	c->ring_inflight = 0;
	c->ring_on = true;
	/* Requests out on the socket are served after ring ones: new ones wait for them (conn.c). */
	c->ring_hold = true;
	return 0;
}

static int ring_adopt(struct iovad *c, struct ring_new *n)
{
	int r;

	pthread_mutex_lock(&c->lock);
	r = ring_adopt_locked(c, n);
	pthread_mutex_unlock(&c->lock);
	return r;
}

int ring_open(struct iovad *c)
{
	struct proto_ring_setup_rpy rpy;
	struct ring_new n;
	struct pending p;
	int r;

	if (c->version < PROTO_VERSION_RING || env_off("IOVAD_RINGS"))
		return 0;
	if (ring_make(c, &n))
		return 0; /* no memfd here: the socket works all the same */
	r = pending_init(&p);
	if (r) {
		ring_discard(&n);
		return 0;
	}
	p.rpy = &rpy;
	p.rpy_len = sizeof(rpy);
	r = conn_call_fds(c, &p, PROTO_CMD_RING_SETUP, &n.req, sizeof(n.req), n.fds, 3);
	pending_destroy(&p);
	if (r) {
		/* Refused (not offered, or limits): stay on the socket. */
		ring_discard(&n);
		return r == -ENOTCONN ? r : 0;
	}
	/* The daemon has the rings now: without a wakeup we cannot use them. */
	return ring_adopt(c, &n) ? -ENOTCONN : 0;
}

int ring_request(struct iovad *c)
{
	struct ring_new *n;
	struct pending *p;

	if (env_off("IOVAD_RINGS"))
		return 0;
	n = malloc(sizeof(*n));
	p = malloc(sizeof(*p));
	if (!n || !p || pending_init(p)) {
		free(n);
		free(p);
		return 0; /* the socket works all the same */
	}
	if (ring_make(c, n)) {
		free(n);
		pending_destroy(p);
		free(p);
		return 0;
	}
	/* Nobody waits: the reply adopts the rings (or not), then p goes as orphans do. */
	p->orphan = true;
	p->ring_new = n;
	p->rpy = &n->rpy;
	p->rpy_len = sizeof(n->rpy);
	return conn_write_internal(c, p, PROTO_CMD_RING_SETUP, &n->req, sizeof(n->req), n->fds, 3);
}

int ring_setup_done_locked(struct iovad *c, struct pending *p)
{
	struct ring_new *n = p->ring_new;
	int r = 0;

	p->ring_new = NULL;
	/* Never twice: one reconnect asks once, and cancels what an earlier one asked. */
	if (c->ring_on)
		ring_discard(n);
	else
		r = ring_adopt_locked(c, n); /* on failure they are discarded already */
	free(n);
	return r;
}

void ring_new_free(struct ring_new *n)
{
	ring_discard(n);
	free(n);
}

void ring_close(struct iovad *c)
{
	if (!c->ring_on)
		return;
	pthread_mutex_lock(&c->lock);
	c->ring_on = false;
	/* What was out on them is sent again on the socket, if at all. */
	for (struct ilist *n = c->pending.next; n != &c->pending; n = n->next)
		ilist_entry(n, struct pending, node)->ring = false;
	c->ring_inflight = 0;
	pthread_mutex_unlock(&c->lock);
	(void)epoll_ctl(c->epfd, EPOLL_CTL_DEL, c->ring_wake, NULL);
	proto_ring_unmap(&c->ring);
	close(c->ring_bell);
	close(c->ring_wake);
}
