// SPDX-License-Identifier: MIT
/*
 * ring.c - the shared-memory rings (protocol version 4) and the loop that
 * polls them.
 *
 * A client that sets up rings (RING_SETUP, over the socket) submits frames
 * into its submission ring and takes replies and events from its completion
 * ring; the socket stays the control plane (HELLO, RING_SETUP, MEM_IMPORT
 * with its fd) and the fallback. proto/ring.h describes the layout and the
 * doorbell protocol.
 *
 * Polling. The daemon is one thread on one libevent loop. srv_run() replaces
 * event_base_dispatch(): while some ring is active it polls the active rings
 * back to back, and runs a non-blocking libevent pass every EVENTS_EVERY_NS
 * (sockets, timers and signals wait at most that long) and whenever a pass
 * over the rings did work. A ring that had no work for its spin budget
 * ([rings] spin_us, adapted per ring up to spin_max_us: ring_adapt) goes
 * to sleep: the daemon sets PROTO_RING_DAEMON_SLEEPING, fences, looks
 * once more, and from then on only its doorbell (an eventfd in the libevent
 * loop) wakes it. With no ring active the loop blocks in libevent as it
 * always did, so an idle daemon costs nothing.
 *
 * Sharing a CPU. Spinning is only useful when the other side runs on
 * another CPU. Each side publishes the CPU it last ran on; the poller
 * yields between passes at once when an active ring's client last ran on
 * its CPU, and after 2 us without work in any case, so a client on the same
 * CPU gets to run instead of waiting for the spin budget to run out.
 *
 * Trust. Every frame is copied out of the ring before it is decoded
 * (the client can rewrite the ring at any time), then goes through
 * session_frame() exactly as a socket frame does. The daemon never reads
 * back its own counters from the ring. A counter or frame length that
 * makes no sense ends that session (logged), as an unframeable socket frame
 * does; nothing another client has is touched.
 *
 * Ordering. Before a socket frame is handled, every frame already in the
 * session's submission ring is (conn_input calls ring_drained_for_socket),
 * so a client that writes the ring and then the socket is served in that
 * order. Replies go back on the channel their request came on.
 */
#include <errno.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <fcntl.h>
#include <inttypes.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"
#include "ring.h"
#include "session.h"

/* While rings are active, sockets and timers are looked at least this often. */
#define EVENTS_EVERY_NS 20000u

struct ring_chan {
	struct srv *srv;
	struct session *sess;
	struct conn *conn;
	struct proto_ring_map m;
	int bell_fd;              /* the client rings us */
	int wake_fd;              /* we ring the client */
	struct event *bell_ev;
	uint32_t sq_head;         /* ours; the header's copy is only published */
	uint32_t cq_tail;
	uint32_t pub_sq_head;     /* last published */
	uint32_t pub_cq_tail;
	struct evbuffer *overflow;/* completions that did not fit yet, in order */
	uint8_t *frame;           /* the private copy of the frame being handled */
	uint32_t frame_cap;
	uint64_t last_work_ns;
	uint64_t spin_ns;         /* this ring's poll budget now, adapted (see ring_adapt) */
	uint64_t parked_ns;       /* when it last went to sleep; 0 while polled */
	bool active;              /* on srv->ring_active */
	bool socket_waits;        /* conn_input deferred a socket frame until the ring drains */
	bool bell_et;             /* the doorbell is watched edge-triggered: never read */
	struct ring_chan *next, *prev;
	/* counters, for the leak report and LIST_CLIENTS */
	uint64_t frames;
	uint64_t doorbells;       /* times the client rang */
	uint64_t wakeups;         /* times we rang the client */
};

/* ==== the active list ================================================================ */

static void active_unlink(struct ring_chan *ch)
{
	struct srv *v = ch->srv;

	if (ch->prev)
		ch->prev->next = ch->next;
	else
		v->ring_active = ch->next;
	if (ch->next)
		ch->next->prev = ch->prev;
	else
		v->ring_active_tail = ch->prev;
	ch->next = ch->prev = NULL;
}

static void active_push(struct ring_chan *ch)
{
	struct srv *v = ch->srv;

	ch->prev = NULL;
	ch->next = v->ring_active;
	if (v->ring_active)
		v->ring_active->prev = ch;
	else
		v->ring_active_tail = ch;
	v->ring_active = ch;
}

static bool ring_park(struct ring_chan *ch);

/*
 * The active list is in order of last work, most recent first. Polling is
 * only worth it for rings that are busy now: every pass looks at every
 * active ring, so past [rings] max_polled the least recently busy one goes
 * to sleep on its doorbell. Without that bound a thousand clients taking
 * turns kept a thousand rings active and every request waited for a pass
 * over all of them.
 */
/* An active ring that just worked goes to the head: the most recently busy. */
static void active_to_front(struct ring_chan *ch)
{
	if (ch->srv->ring_active != ch) {
		active_unlink(ch);
		active_push(ch);
	}
}

static void ring_activate(struct ring_chan *ch)
{
	struct srv *v = ch->srv;

	ch->last_work_ns = now_ns();
	if (ch->active) {
		active_to_front(ch);
		return;
	}
	proto_ring_store(&ch->m.hdr->daemon_flags, 0);
	ch->active = true;
	active_push(ch);
	v->nring_active++;
	if (v->nring_active > v->rings.max_polled && v->ring_active_tail != ch)
		(void)ring_park(v->ring_active_tail);
}

static void ring_deactivate(struct ring_chan *ch)
{
	struct srv *v = ch->srv;

	if (!ch->active)
		return;
	active_unlink(ch);
	ch->active = false;
	v->nring_active--;
}

/* ==== violations ===================================================================== */

/* The client broke its ring: end its session, and only its. */
static void ring_violation(struct ring_chan *ch, const char *what, uint32_t a, uint32_t b)
{
	struct session *s = ch->sess;

	if (!ch->conn->dead)
		log_info("session %" PRIu64 " (pid %d): ring: %s (%" PRIu32 ", %" PRIu32
			 "); closing the session", session_id(s), (int)session_pid(s), what, a, b);
	ch->srv->stats.frames_bad++;
	ch->srv->stats.ring_violations++;
	ch->conn->dead = true;
	ring_deactivate(ch);
	/* Closed from the loop, wherever this was found (an eviction settles nothing). */
	event_active(ch->conn->resume, EV_TIMEOUT, 0);
}

/* ==== the completion ring ============================================================= */

/* Free bytes in the completion ring, or -1 when the client's cq_head makes no sense. */
static int64_t cq_free(struct ring_chan *ch)
{
	uint32_t head = proto_ring_load(&ch->m.hdr->cq_head);
	uint32_t used = ch->cq_tail - head;

	if (used > ch->m.cq_size) {
		ring_violation(ch, "completion head beyond the tail", head, ch->cq_tail);
		return -1;
	}
	return (int64_t)ch->m.cq_size - used;
}

static void cq_put(struct ring_chan *ch, const void *a, size_t alen, const void *b, size_t blen)
{
	uint8_t *at = ch->m.cq + (ch->cq_tail & (ch->m.cq_size - 1));

	memcpy(at, a, alen);
	if (blen)
		memcpy(at + alen, b, blen);
	ch->cq_tail += proto_ring_rec((uint32_t)(alen + blen));
}

/* Move queued completions into the ring as far as they fit. Return: moved any. */
static bool overflow_flush(struct ring_chan *ch)
{
	bool moved = false;

	while (evbuffer_get_length(ch->overflow) >= sizeof(struct proto_hdr)) {
		struct proto_hdr h;
		int64_t fr = cq_free(ch);

		evbuffer_copyout(ch->overflow, &h, sizeof(h));
		if (fr < proto_ring_rec(h.len))
			break;
		/* Contiguous thanks to the double mapping. */
		evbuffer_remove(ch->overflow, ch->m.cq + (ch->cq_tail & (ch->m.cq_size - 1)), h.len);
		ch->cq_tail += proto_ring_rec(h.len);
		moved = true;
	}
	return moved;
}

void ring_send(struct ring_chan *ch, const struct proto_hdr *h, const void *body, size_t blen)
{
	uint32_t rec = proto_ring_rec(h->len);

	if (ch->conn->dead)
		return;
	if (evbuffer_get_length(ch->overflow) || cq_free(ch) < rec) {
		if (ch->conn->dead)
			return;
		/* Bounded: only replies to parked accesses and fault events can wait here. */
		evbuffer_add(ch->overflow, h, sizeof(*h));
		if (blen)
			evbuffer_add(ch->overflow, body, blen);
		return;
	}
	cq_put(ch, h, sizeof(*h), body, blen);
}

/* Make what was consumed and completed visible, and wake a client that sleeps. */
void ring_publish(struct ring_chan *ch)
{
	struct proto_ring_hdr *hdr = ch->m.hdr;
	uint64_t one = 1;

	if (ch->sq_head == ch->pub_sq_head && ch->cq_tail == ch->pub_cq_tail)
		return;
	proto_ring_store(&hdr->daemon_cpu, ch->srv->ring_cpu);
	proto_ring_store(&hdr->sq_head, ch->sq_head);
	proto_ring_store(&hdr->cq_tail, ch->cq_tail);
	ch->pub_sq_head = ch->sq_head;
	ch->pub_cq_tail = ch->cq_tail;
	proto_ring_fence();
	if (proto_ring_peek(&hdr->client_flags) & PROTO_RING_CLIENT_WAKE) {
		/* Non-blocking: a full counter is still readable, which is all a wakeup needs. */
		(void)!write(ch->wake_fd, &one, sizeof(one));
		ch->wakeups++;
	}
}

/* ==== the submission ring ============================================================ */

/*
 * Handle what the submission ring holds, as conn_input does for the socket:
 * at most max_inflight frames, and only while a whole reply is sure to fit.
 * Return: whether anything moved.
 */
static bool ring_poll(struct ring_chan *ch)
{
	struct srv *v = ch->srv;
	struct session *s = ch->sess;
	struct conn *c = ch->conn;
	uint32_t mask = ch->m.sq_size - 1, handled = 0;
	bool moved;

	if (c->dead)
		return false;
	moved = overflow_flush(ch);
	while (handled < v->lim.max_inflight && !c->dead) {
		uint32_t tail = proto_ring_load(&ch->m.hdr->sq_tail);
		uint32_t used = tail - ch->sq_head;
		uint32_t max_frame = session_max_frame(s);
		struct proto_hdr h;
		int64_t flen;

		if (!used)
			break;
		if (used > ch->m.sq_size || used < sizeof(h)) {
			ring_violation(ch, "submission tail out of range", tail, ch->sq_head);
			break;
		}
		/* Every reply fits in max_frame: take a request only when one surely fits. */
		if (evbuffer_get_length(ch->overflow) || cq_free(ch) < max_frame)
			break;
		if (session_throttled(s))
			break;
		memcpy(&h, ch->m.sq + (ch->sq_head & mask), sizeof(h));
		flen = proto_frame_len(&h, sizeof(h), max_frame);
		if (flen < 0) {
			/* Unframeable, as on the socket: say why, then close. */
			struct proto_status st = { .status = (int32_t)flen };

			proto_hdr_init(&h, session_version(s), PROTO_RPY_ERROR, sizeof(h) + sizeof(st),
				       h.id);
			cq_put(ch, &h, sizeof(h), &st, sizeof(st));
			v->stats.frames_in++;
			ring_violation(ch, "unframeable submission", h.len, (uint32_t)-flen);
			moved = true;
			break;
		}
		if (proto_ring_rec((uint32_t)flen) > used) {
			ring_violation(ch, "frame longer than what was submitted", (uint32_t)flen,
				       used);
			break;
		}
		/* The client may rewrite the ring meanwhile: decode only a private copy. */
		memcpy(ch->frame, ch->m.sq + (ch->sq_head & mask), (size_t)flen);
		ch->sq_head += proto_ring_rec((uint32_t)flen);
		v->stats.frames_in++;
		v->stats.ring_frames++;
		ch->frames++;
		session_frame_from(s, ch->frame, (size_t)flen, true);
		handled++;
		moved = true;
		/* Each reply as soon as it is there: the client works on it while we go on. */
		ring_publish(ch);
	}
	if (moved)
		ring_publish(ch);
	if (ch->socket_waits && ch->sq_head == proto_ring_peek(&ch->m.hdr->sq_tail)) {
		ch->socket_waits = false;
		event_active(c->resume, EV_TIMEOUT, 0);
	}
	return moved;
}

bool ring_drained_for_socket(struct ring_chan *ch)
{
	if (ch->sq_head != proto_ring_load(&ch->m.hdr->sq_tail)) {
		ring_poll(ch);
		if (!ch->conn->dead && ch->sq_head != proto_ring_load(&ch->m.hdr->sq_tail)) {
			ch->socket_waits = true;
			ring_activate(ch);
			return false;
		}
	}
	return true;
}

/* After a ring's frames were handled: a session they ended is closed now. */
static void ring_settle(struct ring_chan *ch)
{
	if (ch->conn->dead)
		conn_finish(ch->conn); /* may free ch */
}

/*
 * Spin while work is likely. When the client rings, the ring was idle for
 * gap (its last work to now): a gap the budget could have covered, up to
 * spin_max_us, means polling longer would have served this request sooner
 * (without two syscalls and a cross-CPU wakeup), so the budget becomes
 * twice the gap; a longer gap means the client really paused, and the
 * budget halves back towards spin_us. So a client that submits in bursts
 * with short pauses keeps the daemon polling, and an idle one costs one
 * budget now and then.
 */
static void ring_adapt(struct ring_chan *ch, uint64_t now)
{
	const struct ring_settings *g = &ch->srv->rings;
	uint64_t lo = (uint64_t)g->spin_us * 1000u, hi = (uint64_t)g->spin_max_us * 1000u;
	uint64_t gap = now - ch->last_work_ns;

	if (hi < lo)
		hi = lo;
	if (gap <= hi)
		ch->spin_ns = 2 * gap < hi ? (2 * gap > lo ? 2 * gap : lo) : hi;
	else
		ch->spin_ns = ch->spin_ns / 2 > lo ? ch->spin_ns / 2 : lo;
}

static void bell_cb(evutil_socket_t fd, short what, void *arg)
{
	struct ring_chan *ch = arg;
	uint64_t n;

	(void)what;
	/* Level-triggered the counter is reset; edge-triggered each ring is an edge. */
	if (ch->bell_et || read(fd, &n, sizeof(n)) == (ssize_t)sizeof(n))
		ch->doorbells++;
	/* Serve first: the reply is what the client waits for, the bookkeeping is not. */
	ring_poll(ch);
	if (ch->parked_ns) {
		ring_adapt(ch, now_ns());
		ch->parked_ns = 0;
	}
	if (!ch->conn->dead)
		ring_activate(ch);
	ring_settle(ch);
}

void ring_kick(struct ring_chan *ch)
{
	if (!ch->conn->dead)
		ring_activate(ch);
}

/* Going to sleep on a ring: flag it, fence, and look once more (ring.h). Return: slept. */
static bool ring_park(struct ring_chan *ch)
{
	struct proto_ring_hdr *hdr = ch->m.hdr;
	uint32_t flags = PROTO_RING_DAEMON_SLEEPING;

	/* Stopped for want of room for replies: the client's next cq_head move must ring. */
	if (evbuffer_get_length(ch->overflow) ||
	    (proto_ring_peek(&hdr->sq_tail) != ch->sq_head &&
	     cq_free(ch) < session_max_frame(ch->sess)))
		flags |= PROTO_RING_DAEMON_CQ_WAIT;
	proto_ring_store(&hdr->daemon_flags, flags);
	proto_ring_fence();
	if (proto_ring_peek(&hdr->sq_tail) != ch->sq_head && !session_throttled(ch->sess) &&
	    cq_free(ch) >= session_max_frame(ch->sess)) {
		proto_ring_store(&hdr->daemon_flags, 0);
		return false;
	}
	if (evbuffer_get_length(ch->overflow) && cq_free(ch) >= (int64_t)sizeof(struct proto_hdr) &&
	    !ch->conn->dead) {
		/* The client made room since: the queued completions can move now. */
		proto_ring_store(&hdr->daemon_flags, 0);
		return false;
	}
	ring_deactivate(ch);
	ch->parked_ns = now_ns();
	return true;
}

/* One pass over the active rings. Return: whether any did work. */
static bool rings_pass(struct srv *v, uint64_t now)
{
	struct ring_chan *ch = v->ring_active, *next;
	bool work = false;

	v->ring_cpu = proto_ring_my_cpu();
	v->ring_colocated = false;
	for (; ch; ch = next) {
		next = ch->next;
		if (proto_ring_peek(&ch->m.hdr->client_cpu) == v->ring_cpu)
			v->ring_colocated = true;
		if (ring_poll(ch)) {
			/* The pass's clock serves: no second read per busy ring. A ring
			 * its poll found broken has left the list already. */
			if (ch->active)
				active_to_front(ch);
			ch->last_work_ns = now;
			work = true;
		} else if (now - ch->last_work_ns >= ch->spin_ns) {
			(void)ring_park(ch);
		}
		ring_settle(ch); /* may free ch; next is another session's, still there */
	}
	return work;
}

void srv_run(struct srv *v)
{
	uint64_t last_events = 0, last_work = 0;

	while (!event_base_got_break(v->base) && !event_base_got_exit(v->base)) {
		uint64_t now;
		bool work;

		if (!v->ring_active) {
			/* 1: nothing left to wait for (cannot happen: signals stay registered). */
			if (event_base_loop(v->base, EVLOOP_ONCE) != 0)
				break;
			last_events = last_work = now_ns();
			continue;
		}
		now = now_ns();
		work = rings_pass(v, now);
		/* Parked accesses wait for the fault service: run it now, not a pass later. */
		if (work)
			odp_svc_poll(v);
		/* Replies held for the journal: commit now, not at the next libevent pass. */
		persist_poll(v);
		if (work)
			last_work = now;
		/*
		 * Sockets, timers and the sleeping rings' doorbells are in
		 * libevent: look every EVENTS_EVERY_NS while the polled rings keep
		 * us busy, and on every idle pass while some rings sleep (their
		 * requests wait for nothing else).
		 */
		if (now - last_events >= EVENTS_EVERY_NS ||
		    (!work && v->nrings > v->nring_active)) {
			if (event_base_loop(v->base, EVLOOP_NONBLOCK) < 0)
				break;
			last_events = now_ns();
		}
		if (!work) {
			/* A client on our CPU cannot submit while we spin: let it run. */
			if (proto_ring_should_yield(v->ring_colocated ? v->ring_cpu : 0, v->ring_cpu,
						    now - last_work))
				sched_yield();
			else
				proto_ring_cpu_relax();
		}
	}
}

/* ==== RING_SETUP ===================================================================== */

static bool is_eventfd(int fd)
{
	char path[64], target[64];
	ssize_t n;

	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	n = readlink(path, target, sizeof(target) - 1);
	if (n < 0)
		return false;
	target[n] = 0;
	return !strcmp(target, "anon_inode:[eventfd]");
}

static int set_nonblock(int fd)
{
	int fl = fcntl(fd, F_GETFL);

	if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
		return -errno;
	return 0;
}

int ring_setup(struct session *s, const struct proto_req *req, struct ring_chan **ret,
	       struct proto_ring_setup_rpy *rpy)
{
	const struct proto_ring_setup *g = &req->u.ring_setup;
	struct srv *v = s->srv;
	struct ring_chan *ch = NULL;
	int fds[3], seals, r = 0;
	struct stat st;

	/* The fds came with this frame: take them whatever happens, so none is left queued. */
	for (int i = 0; i < 3; i++)
		fds[i] = conn_take_fd(s->conn);
	if (fds[0] < 0 || fds[1] < 0 || fds[2] < 0) {
		r = -EBADF;
		goto out_close;
	}
	if (!v->rings.enable) {
		r = -EOPNOTSUPP;
		goto out_close;
	}
	if (*ret) {
		r = -EEXIST;
		goto out_close;
	}
	if (g->sq_size < 2 * session_max_frame(s) || g->cq_size < 2 * session_max_frame(s) ||
	    g->sq_size > v->rings.max_size || g->cq_size > v->rings.max_size) {
		r = -EINVAL;
		goto out_close;
	}
	/* Mapped by us: its size must never change under us (a shrink would SIGBUS the daemon). */
	seals = fcntl(fds[0], F_GET_SEALS);
	if (seals < 0) {
		r = -EBADF;
		goto out_close;
	}
	if ((seals & (F_SEAL_SHRINK | F_SEAL_GROW)) != (F_SEAL_SHRINK | F_SEAL_GROW)) {
		r = -EPERM;
		goto out_close;
	}
	if (fstat(fds[0], &st) < 0 ||
	    (uint64_t)st.st_size != proto_ring_file_size(g->sq_size, g->cq_size)) {
		r = -EINVAL;
		goto out_close;
	}
	/*
	 * Holes: the pages must be the client's, allocated before setup
	 * (proto_ring_create), not the daemon's to fault in, charged to its
	 * cgroup, in the middle of a round trip.
	 */
	if ((uint64_t)st.st_blocks * 512u < (uint64_t)st.st_size) {
		log_info("session %" PRIu64
			 " (pid %d): RING_SETUP refused: the ring file has holes "
			 "(%" PRIu64 " of %" PRIu64 " bytes allocated)",
			 session_id(s), (int)session_pid(s), (uint64_t)st.st_blocks * 512u,
			 (uint64_t)st.st_size);
		r = -EINVAL;
		goto out_close;
	}
	if (!is_eventfd(fds[1]) || !is_eventfd(fds[2])) {
		r = -EBADF;
		goto out_close;
	}
	/* We must never block on a doorbell (this changes the client's file description too). */
	if (set_nonblock(fds[1]) || set_nonblock(fds[2])) {
		r = -EBADF;
		goto out_close;
	}
	ch = calloc(1, sizeof(*ch));
	if (!ch) {
		r = -ENOMEM;
		goto out_close;
	}
	ch->srv = v;
	ch->sess = s;
	ch->conn = s->conn;
	ch->bell_fd = fds[1];
	ch->wake_fd = fds[2];
	ch->frame_cap = session_max_frame(s);
	ch->frame = malloc(ch->frame_cap);
	ch->overflow = evbuffer_new();
	/*
	 * Edge-triggered where the backend can (epoll): every write to an
	 * eventfd is a new edge, so the doorbell costs the client its write and
	 * the daemon no read (measured: 0.3 us off a round trip to a sleeping
	 * ring). The counter is never drained; at one ring per request it would
	 * take centuries to reach its maximum.
	 */
	ch->bell_et = (event_base_get_features(v->base) & EV_FEATURE_ET) != 0;
	ch->bell_ev = event_new(v->base, ch->bell_fd,
				EV_READ | EV_PERSIST | (ch->bell_et ? EV_ET : 0), bell_cb, ch);
	if (!ch->frame || !ch->overflow || !ch->bell_ev) {
		r = -ENOMEM;
		goto out_free;
	}
	r = proto_ring_map(fds[0], g->sq_size, g->cq_size, &ch->m);
	if (r)
		goto out_free;
	/* The mappings keep the memory; the fd itself is not needed. */
	close(fds[0]);
	fds[0] = -1;
	if (event_add(ch->bell_ev, NULL)) {
		r = -ENOMEM;
		goto out_free;
	}
	/* Our counters start at zero whatever the client left there. */
	proto_ring_store(&ch->m.hdr->sq_head, 0);
	proto_ring_store(&ch->m.hdr->cq_tail, 0);
	ch->spin_ns = (uint64_t)v->rings.spin_us * 1000u;
	v->nrings++;
	proto_ring_store(&ch->m.hdr->daemon_cpu, proto_ring_my_cpu());
	ring_activate(ch);
	*ret = ch;
	rpy->spin_us = v->rings.spin_us;
	v->stats.rings_total++;
	log_debug("session %" PRIu64 ": rings of %" PRIu32 " + %" PRIu32 " bytes", session_id(s),
		  g->sq_size, g->cq_size);
	return 0;

out_free:
	if (ch) {
		proto_ring_unmap(&ch->m);
		if (ch->bell_ev)
			event_free(ch->bell_ev);
		if (ch->overflow)
			evbuffer_free(ch->overflow);
		free(ch->frame);
		free(ch);
	}
out_close:
	for (int i = 0; i < 3; i++)
		if (fds[i] >= 0)
			close(fds[i]);
	return r;
}

void ring_stats(const struct ring_chan *ch, uint64_t *frames, uint64_t *doorbells,
		uint64_t *wakeups)
{
	*frames = ch ? ch->frames : 0;
	*doorbells = ch ? ch->doorbells : 0;
	*wakeups = ch ? ch->wakeups : 0;
}

void ring_free(struct ring_chan *ch)
{
	if (!ch)
		return;
	ring_deactivate(ch);
	ch->srv->nrings--;
	event_free(ch->bell_ev);
	close(ch->bell_fd);
	close(ch->wake_fd);
	proto_ring_unmap(&ch->m);
	evbuffer_free(ch->overflow);
	free(ch->frame);
	free(ch);
}
