// SPDX-License-Identifier: MIT
/*
 * conn.c - libiovad's transport: the socket, frame writing, the table of
 * requests in flight and the reader role.
 *
 * Pipelining: any number of threads may have requests in flight on one
 * connection. A request is entered in the pending table (under send_lock, so
 * the table is in send order) and then written whole under send_lock. The
 * daemon answers most requests in order, but not all: a device access that
 * hits an ODP region waits for the fault service (or for this client's own
 * fault handler) while later requests are answered, so replies are matched
 * by id and nothing here relies on their order.
 *
 * Replies are read by whichever thread holds the "reader role"
 * (leader/follower): a thread waiting for its reply
 * takes the role if it is free and reads frames, completing whatever request
 * each frame answers, until its own is done; then it gives the role up and
 * wakes one thread still waiting, which takes it over. A thread that finds
 * the role taken sleeps on its own request's condition variable. So every
 * reply is read by exactly one thread, nobody reads while nobody waits, and
 * nobody sleeps while its reply sits unread in the socket.
 *
 * Nobody waits for an async batch, so its reply is read by the next thread
 * that reads at all: iovad_process() (non-blocking), iovad_batch_wait(), a
 * synchronous caller, or a sender whose write would block (the daemon stops
 * reading when its replies back up: whoever is stuck writing must read, or
 * both ends would wait for each other forever).
 *
 * The daemon also sends unsolicited frames, user faults (PROTO_EVT_FAULT):
 * the reader queues them (odp.c), and the handlers run outside the lock and
 * outside the reader role, by iovad_process() or by a thread in conn_wait()
 * between two reads. A waiting thread must run them itself: its own reply
 * may be a device access parked until one of them is answered.
 *
 * Any I/O error, EOF or protocol violation kills the connection: every
 * request in flight completes with -ENOTCONN, and so does every later one.
 * The socket is shut down (not closed: the descriptor number must not be
 * reused under a thread still polling it) so that blocked threads wake up.
 *
 * Except on a durable session (protocol 5, a daemon with a state journal):
 * when the socket breaks (EOF, ECONNRESET, EPIPE: the daemon died or is
 * restarting) the reader-role holder reconnects, RESUMEs the session and
 * sends every pending request again, in order and with its id, and the
 * callers see only a delay. The daemon answers a request it already made
 * durable from its record and runs the others; it sends no reply before the
 * request is durable, so nothing we were answered is lost. The reconnect
 * needs the reader role (nobody else may read or poll the socket) and
 * send_lock (nobody else may write): the reader that meets the break marks
 * the connection broken, which makes a sender stuck on the old socket give
 * send_lock up, its frame left pending for the resend; a sender that meets
 * the break marks it and takes the role if it is free. While it holds both,
 * the reconnecting thread is the only one touching the socket, the rings
 * and rbuf, so it may close and replace them. Only a reconnect that fails
 * (RESUME refused, or $IOVAD_RECONNECT_TIMEOUT_MS passed) kills the
 * connection as above. Protocol violations and the daemon's error frames
 * never reconnect.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <time.h>
#include <sched.h>
#include <unistd.h>

#include "internal.h"

/* The receive buffer holds at least one whole frame of the largest size we offer. */
#define RBUF_SIZE PROTO_FRAME_DEFAULT

/* A sender that cannot read (another thread is the reader) re-polls this often (ms). */
#define SEND_REPOLL_MS 10

/* Reads one non-blocking drain does before it lets its caller go on. */
#define DRAIN_MAX_READS 64

/* Reconnecting: how long by default, and the backoff between attempts (ms). */
#define RECONNECT_TIMEOUT_MS_DEFAULT 30000u
#define RECONNECT_TIMEOUT_MS_MAX     86400000u
#define RECONNECT_DELAY_MIN_MS       1u
#define RECONNECT_DELAY_MAX_MS       100u

/*
 * The connection this thread holds the reader role of, if any. A sender
 * that holds it must read for itself when the socket is full: nobody else
 * can, and taking the role again is impossible (conn_drain would see it
 * taken and return, and the daemon and we would wait for each other).
 */
static _Thread_local const struct iovad *tl_reading;

/*
 * The connection this thread holds send_lock of, if any: a writer that
 * reads while it waits may meet the break and reconnect right there, with
 * the send_lock it already holds.
 */
static _Thread_local const struct iovad *tl_sending;

static int sock_connect(const char *path, bool nonblock);
static int reconnect(struct iovad *c);

int pending_init(struct pending *p)
{
	memset(p, 0, sizeof(*p));
	ilist_init(&p->node);
	return -pthread_cond_init(&p->cond, NULL);
}

/* What a resend needed: done with it. */
static void pending_release(struct pending *p)
{
	for (int i = 0; i < p->nfds; i++)
		close(p->fds[i]);
	p->nfds = 0;
	free(p->own);
	p->own = NULL;
}

void pending_destroy(struct pending *p)
{
	if (p->ring_new) {
		ring_new_free(p->ring_new);
		p->ring_new = NULL;
	}
	pending_release(p);
	pthread_cond_destroy(&p->cond);
}

static bool may_reconnect(const struct iovad *c)
{
	return c->durable && c->reconnect_ms;
}

void pending_keep_locked(struct iovad *c, struct pending *p)
{
	uint8_t *own;

	if (!may_reconnect(c) || p->done || p->own)
		return;
	own = malloc(p->blen + p->dlen + 1);
	if (!own) {
		p->lost = true; /* failed at the next reconnect, if any */
		return;
	}
	if (p->blen)
		memcpy(own, p->body, p->blen);
	if (p->dlen)
		memcpy(own + p->blen, p->data, p->dlen);
	p->own = own;
	p->body = own;
	p->data = own + p->blen;
}

/* The broken flag is written under the lock, and peeked at by a reader without it. */
static void set_broken_locked(struct iovad *c, bool broken)
{
	__atomic_store_n(&c->broken, broken, __ATOMIC_RELAXED);
}

static bool peek_broken(struct iovad *c)
{
	return __atomic_load_n(&c->broken, __ATOMIC_RELAXED);
}

int conn_write_state(struct iovad *c, uint64_t gen)
{
	int r = 0;

	pthread_mutex_lock(&c->lock);
	if (c->dead)
		r = -ENOTCONN;
	else if (c->gen != gen)
		r = CONN_REPLACED;
	else if (c->broken)
		r = -EPIPE;
	pthread_mutex_unlock(&c->lock);
	return r;
}

/* errnos of a socket whose peer is gone (or going): a durable session reconnects. */
static bool sock_broke(int err)
{
	return err == EPIPE || err == ECONNRESET || err == ECONNABORTED || err == ENOTCONN;
}

bool conn_dead(struct iovad *c)
{
	bool dead;

	pthread_mutex_lock(&c->lock);
	dead = c->dead;
	pthread_mutex_unlock(&c->lock);
	return dead;
}

/* A completed async batch waits for iovad_process(): make the event fd readable. */
static void queue_batch_locked(struct iovad *c, struct iovad_batch *b)
{
	uint64_t one = 1;

	b->state = BATCH_QUEUED;
	ilist_add_tail(&c->done_batches, &b->done_node);
	/* A thread in iovad_batch_wait() takes it; waking the event loop would be a wasted syscall. */
	if (b->waited)
		return;
	/* Non-blocking; it can only fail if the counter would overflow, which is still readable. */
	(void)!write(c->evfd, &one, sizeof(one));
}

static void mark_dead_locked(struct iovad *c);

static void complete_locked(struct iovad *c, struct pending *p, int status)
{
	bool ring_lost = false;

	if (p->ring)
		c->ring_inflight--;
	ilist_del(&p->node);
	p->done = true;
	p->status = status;
	/* A reconnect's own RING_SETUP (an orphan): its rings, now in use. */
	if (p->ring_new && !status)
		ring_lost = ring_setup_done_locked(c, p) < 0;
	pending_release(p);
	/* Listed before anything after this reply is read: a fault on it must find it. */
	if (p->odp && !status)
		odp_registered_locked(c, p->odp, p->rpy);
	if (p->orphan) {
		pending_destroy(p);
		free(p);
		if (ring_lost)
			mark_dead_locked(c);
		return;
	}
	if (p->batch) {
		batch_complete_locked(p->batch, status);
		/* A batch still being written is queued by its submitter (conn_send). */
		if (!p->sending)
			queue_batch_locked(c, p->batch);
	}
	pthread_cond_signal(&p->cond);
}

static void mark_dead_locked(struct iovad *c)
{
	if (c->dead)
		return;
	c->dead = true;
	set_broken_locked(c, false);
	/* Wake a reader blocked in poll and a sender blocked on a full socket. */
	shutdown(c->fd, SHUT_RDWR);
	while (!ilist_empty(&c->pending))
		complete_locked(c, ilist_entry(c->pending.next, struct pending, node), -ENOTCONN);
	/* Nobody can answer them now, and the daemon has failed the accesses anyway. */
	odp_faults_drop_locked(c);
}

/* Wake one thread sleeping on its request (to read, or to run fault handlers). */
static void wake_waiter_locked(struct iovad *c)
{
	for (struct ilist *n = c->pending.next; n != &c->pending; n = n->next) {
		struct pending *q = ilist_entry(n, struct pending, node);

		if (q->waiting) {
			pthread_cond_signal(&q->cond);
			break;
		}
	}
}

/* Give up the reader role and wake one thread sleeping on its request, to take it over. */
static void reader_release_locked(struct iovad *c)
{
	c->reading = false;
	tl_reading = NULL;
	wake_waiter_locked(c);
}

/* One complete frame of len bytes (len checked against max_frame by proto_frame_len). */
static void dispatch_locked(struct iovad *c, const uint8_t *frame, size_t len)
{
	const uint8_t *body = frame + sizeof(struct proto_hdr);
	struct pending *p = NULL;
	struct proto_status st;
	struct proto_hdr h;
	size_t blen, want;

	memcpy(&h, frame, sizeof(h));
	/* Unsolicited: answers nothing, so it must not be matched to a request. */
	if (h.type == PROTO_EVT_FAULT) {
		if (odp_event_locked(c, frame, len))
			goto violation;
		return;
	}
	/* Mostly answered in order: the match is nearly always the first entry. */
	for (struct ilist *n = c->pending.next; n != &c->pending; n = n->next) {
		struct pending *q = ilist_entry(n, struct pending, node);

		if (q->id == h.id) {
			p = q;
			break;
		}
	}
	if (!p && h.type == PROTO_RPY_ERROR && !ilist_empty(&c->pending) &&
	    !proto_check_reply(frame, len, c->version, c->max_frame, 0, 0)) {
		/*
		 * An error about a frame the daemon could not attribute (id 0; or
		 * the refusal it sends on accept). It reads in order and closes at
		 * once, so blaming our oldest unanswered one is as good as any: a
		 * parked device access may take the blame for a later frame, but
		 * every request fails with the connection right after.
		 */
		p = ilist_entry(c->pending.next, struct pending, node);
	}
	/* A reply to nothing we asked. */
	if (!p)
		goto violation;
	if (proto_check_reply(frame, len, c->version, c->max_frame, p->cmd,
			      sizeof(h) + (p->rpy_alt_len ? p->rpy_alt_len : p->rpy_len)))
		goto violation;
	memcpy(&st, body, sizeof(st));
	if (h.type == PROTO_RPY_ERROR) {
		/* The daemon rejected the frame and closes: this request fails, then all. */
		complete_locked(c, p, st.status < 0 ? st.status : -EPROTO);
		mark_dead_locked(c);
		return;
	}
	if (st.status > 0)
		goto violation;
	blen = len - sizeof(h);
	want = p->rpy_len + (st.status == 0 ? p->rdata_len : 0);
	/* Exact length for the type; a failure may carry the status alone. */
	if (blen != want && !(st.status < 0 && blen == sizeof(st)) &&
	    !(st.status == 0 && p->rpy_alt_len && blen == p->rpy_alt_len))
		goto violation;
	p->rpy_got = blen;
	if (p->cmd == PROTO_CMD_BATCH && st.status == 0) {
		struct proto_batch_rpy br;

		memcpy(&br, body, sizeof(br));
		if (br.count != p->count)
			goto violation;
	}
	if (p->rpy) {
		memset(p->rpy, 0, p->rpy_len);
		memcpy(p->rpy, body, blen < p->rpy_len ? blen : p->rpy_len);
		if (st.status == 0 && p->rdata_len)
			memcpy(p->rdata, body + p->rpy_len, p->rdata_len);
	}
	complete_locked(c, p, st.status);
	return;

violation:
	mark_dead_locked(c);
}

/*
 * One recv() into rbuf, then dispatch every complete frame in it. Only the
 * reader-role holder calls this, without the lock. With block, it polls
 * until there is something to read.
 * Return: 1 (read something), 0 (nothing to read, !block), -EPIPE (EOF or
 * the peer is gone: the caller decides, see conn_broken), -ENOTCONN.
 */
static int sock_step(struct iovad *c, bool block)
{
	size_t off = 0;
	ssize_t n;
	bool dead;

	/*
	 * A blocking reader has just sent and its reply is rarely there yet (on
	 * one CPU, never): poll first rather than pay for a recv() that fails.
	 */
	if (block) {
		struct pollfd pfd = { .fd = c->fd, .events = POLLIN };

		if (poll(&pfd, 1, -1) < 0 && errno != EINTR)
			goto dead;
	}
	for (;;) {
		n = recv(c->fd, c->rbuf + c->rlen, RBUF_SIZE - c->rlen, MSG_DONTWAIT);
		if (n > 0)
			break;
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			struct pollfd pfd = { .fd = c->fd, .events = POLLIN };

			if (!block)
				return 0;
			if (poll(&pfd, 1, -1) < 0 && errno != EINTR)
				goto dead;
			continue;
		}
		if (n == 0 || sock_broke(errno))
			return -EPIPE; /* every frame before it is dispatched already */
		goto dead; /* another socket error */
	}
	c->rlen += (size_t)n;

	pthread_mutex_lock(&c->lock);
	while (!c->dead) {
		int64_t flen = proto_frame_len(c->rbuf + off, c->rlen - off, c->max_frame);

		if (flen < 0) {
			mark_dead_locked(c);
			break;
		}
		if (flen == 0 || (size_t)flen > c->rlen - off)
			break; /* the rest of the frame is still on its way */
		dispatch_locked(c, c->rbuf + off, (size_t)flen);
		off += (size_t)flen;
	}
	dead = c->dead;
	pthread_mutex_unlock(&c->lock);
	/* A partial frame moves to the front; it is shorter than max_frame <= RBUF_SIZE. */
	memmove(c->rbuf, c->rbuf + off, c->rlen - off);
	c->rlen -= off;
	return dead ? -ENOTCONN : 1;

dead:
	pthread_mutex_lock(&c->lock);
	mark_dead_locked(c);
	pthread_mutex_unlock(&c->lock);
	return -ENOTCONN;
}

/* Every frame the completion ring holds, dispatched in order. Lock held. Return: frames. */
static int cq_drain_locked(struct iovad *c)
{
	uint32_t mask = c->ring.cq_size - 1;
	int n = 0;

	while (!c->dead) {
		uint32_t tail = proto_ring_load(&c->ring.hdr->cq_tail), used = tail - c->cq_head;
		const uint8_t *f = c->ring.cq + (c->cq_head & mask);
		int64_t flen;

		if (!used)
			break;
		/* The daemon publishes whole frames only: anything else is a broken ring. */
		flen = used > c->ring.cq_size ? -1 : proto_frame_len(f, used, c->max_frame);
		if (flen <= 0 || proto_ring_rec((uint32_t)flen) > used) {
			mark_dead_locked(c);
			break;
		}
		dispatch_locked(c, f, (size_t)flen);
		c->cq_head += proto_ring_rec((uint32_t)flen);
		n++;
	}
	if (n)
		proto_ring_store(&c->ring.hdr->cq_head, c->cq_head);
	return n;
}

static uint64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint64_t conn_mono_ms(void)
{
	return mono_ns() / 1000000u;
}

/* Dispatch the completion ring; ring the daemon if it sleeps waiting for room. */
static int ring_take(struct iovad *c)
{
	bool dead;
	int n;

	pthread_mutex_lock(&c->lock);
	n = cq_drain_locked(c);
	dead = c->dead;
	pthread_mutex_unlock(&c->lock);
	if (dead)
		return -ENOTCONN;
	if (n)
		ring_doorbell(c, PROTO_RING_DAEMON_SLEEPING | PROTO_RING_DAEMON_CQ_WAIT);
	return n;
}

/*
 * The reader's step with rings on: the completion ring first; then, to
 * block, poll it for ring_spin_ns while requests are out on it, then sleep
 * on the socket (replies to socket requests, EOF) and the wake eventfd.
 * Return: as sock_step.
 */
static int ring_step(struct iovad *c, bool block)
{
	struct proto_ring_hdr *hdr = c->ring.hdr;
	struct pollfd pfd[2] = {
		{ .fd = c->fd, .events = POLLIN },
		{ .fd = c->ring_wake, .events = POLLIN },
	};
	uint64_t n;
	bool spin;
	int r;

	r = ring_take(c);
	if (r)
		return r < 0 ? r : 1;
	if (!block) {
		/* An event loop got here through the wake eventfd: reset it, then the socket. */
		(void)!read(c->ring_wake, &n, sizeof(n));
		r = sock_step(c, false);
		if (r)
			return r;
		r = ring_take(c);
		return r < 0 ? r : r > 0;
	}
	pthread_mutex_lock(&c->lock);
	spin = c->ring_inflight > 0 && c->ring_spin_ns;
	pthread_mutex_unlock(&c->lock);
	if (spin) {
		uint64_t t0 = mono_ns(), dt;
		uint32_t cpu = proto_ring_my_cpu();

		/* We look ourselves: the daemon need not ring (ring.h). */
		proto_ring_store(&hdr->client_flags, 0);
		while (proto_ring_peek(&hdr->cq_tail) == c->cq_head) {
			dt = mono_ns() - t0;
			if (dt >= c->ring_spin_ns)
				break;
			/* A daemon on our CPU cannot answer while we spin. */
			if (proto_ring_should_yield(proto_ring_peek(&hdr->daemon_cpu), cpu, dt))
				sched_yield();
			else
				proto_ring_cpu_relax();
		}
		proto_ring_store(&hdr->client_flags, PROTO_RING_CLIENT_WAKE);
	}
	/* Flag set (it is, outside the spin), fence, one more look, then sleep. */
	proto_ring_fence();
	if (proto_ring_load(&hdr->cq_tail) == c->cq_head) {
		if (poll(pfd, 2, -1) < 0 && errno != EINTR)
			goto dead;
		if (pfd[1].revents & POLLIN)
			(void)!read(c->ring_wake, &n, sizeof(n));
		if (pfd[0].revents) {
			r = sock_step(c, false);
			if (r < 0)
				return r;
		}
	}
	r = ring_take(c);
	return r < 0 ? r : 1;

dead:
	pthread_mutex_lock(&c->lock);
	mark_dead_locked(c);
	pthread_mutex_unlock(&c->lock);
	return -ENOTCONN;
}

/*
 * The socket broke (reader role held, no lock): reconnect if the session
 * is durable, else the connection is dead as it always was. Within a
 * reconnect (its resend read and met another break) only say so: the
 * reconnect further up this thread's stack starts over.
 * Return: 1 (reconnected: progress), -EPIPE (within a reconnect), -ENOTCONN.
 */
static int conn_broken(struct iovad *c)
{
	pthread_mutex_lock(&c->lock);
	if (c->dead) {
		pthread_mutex_unlock(&c->lock);
		return -ENOTCONN;
	}
	if (c->reconnecting) {
		set_broken_locked(c, true);
		pthread_mutex_unlock(&c->lock);
		return -EPIPE;
	}
	if (!may_reconnect(c)) {
		mark_dead_locked(c);
		pthread_mutex_unlock(&c->lock);
		return -ENOTCONN;
	}
	/* A sender stuck on the old socket sees this and lets send_lock go. */
	set_broken_locked(c, true);
	pthread_mutex_unlock(&c->lock);
	return reconnect(c) ? -ENOTCONN : 1;
}

static int reader_step(struct iovad *c, bool block)
{
	int r;

	/* A sender met the break first: nothing more will come on this socket but EOF. */
	if (peek_broken(c))
		r = -EPIPE;
	else
		r = c->ring_on ? ring_step(c, block) : sock_step(c, block);
	return r == -EPIPE ? conn_broken(c) : r;
}

void conn_read_some(struct iovad *c)
{
	/* The role is ours already (a reader sending): read directly, conn_drain would not. */
	if (tl_reading == c) {
		(void)reader_step(c, false);
		return;
	}
	conn_drain(c);
}

void conn_drain(struct iovad *c)
{
	pthread_mutex_lock(&c->lock);
	if (c->reading || c->dead) {
		pthread_mutex_unlock(&c->lock);
		return;
	}
	c->reading = true;
	tl_reading = c;
	pthread_mutex_unlock(&c->lock);
	for (int i = 0; i < DRAIN_MAX_READS; i++)
		if (reader_step(c, false) <= 0)
			break;
	pthread_mutex_lock(&c->lock);
	reader_release_locked(c);
	pthread_mutex_unlock(&c->lock);
}

/*
 * Fault handlers run here, between reads, by whoever waits: p may be a device
 * access the daemon parked until one of them is answered, and in a
 * single-threaded client this thread is the only one that can answer. They
 * run with the reader role given up (the role goes to another waiter, if
 * any), so a handler's own calls read their replies as any call does.
 */
void conn_wait(struct iovad *c, struct pending *p)
{
	/* Too deep in nested handlers: leave the faults to another thread, bounding the stack. */
	bool run_faults = odp_may_run_faults();

	pthread_mutex_lock(&c->lock);
	while (!p->done) {
		if (run_faults && odp_faults_runnable_locked(c)) {
			pthread_mutex_unlock(&c->lock);
			(void)odp_run_faults(c);
			pthread_mutex_lock(&c->lock);
			continue;
		}
		if (c->reading) {
			p->waiting = true;
			pthread_cond_wait(&p->cond, &c->lock);
			p->waiting = false;
			continue;
		}
		c->reading = true;
		tl_reading = c;
		while (!p->done && !(run_faults && odp_faults_runnable_locked(c))) {
			pthread_mutex_unlock(&c->lock);
			/* Blocking: returns after progress, or -ENOTCONN once p is completed. */
			(void)reader_step(c, true);
			pthread_mutex_lock(&c->lock);
			/* We may not run them: someone asleep may (it sleeps again if it cannot). */
			if (!run_faults && odp_faults_runnable_locked(c))
				wake_waiter_locked(c);
		}
		/* Done, or handlers to run first: either way another waiter may read meanwhile. */
		reader_release_locked(c);
	}
	pthread_mutex_unlock(&c->lock);
}

/*
 * The socket is full. Wait until it is writable, reading replies meanwhile
 * if nobody else is: the daemon may have stopped reading until its replies
 * are taken. send_lock held.
 */
static int wait_writable(struct iovad *c, uint64_t gen)
{
	for (;;) {
		struct pollfd pfd = { .fd = c->fd, .events = POLLOUT };
		bool mine = tl_reading == c;
		bool can_read;
		int r;

		pthread_mutex_lock(&c->lock);
		/* Dead, replaced by a reconnect we ran reading, or broken: stop writing. */
		r = c->dead ? -ENOTCONN : c->gen != gen ? CONN_REPLACED : c->broken ? -EPIPE : 0;
		if (r) {
			pthread_mutex_unlock(&c->lock);
			return r;
		}
		can_read = mine || !c->reading;
		pthread_mutex_unlock(&c->lock);
		if (can_read)
			pfd.events |= POLLIN;
		if (poll(&pfd, 1, can_read ? -1 : SEND_REPOLL_MS) < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (pfd.revents & (POLLIN | POLLHUP | POLLERR)) {
			/*
			 * Take what the daemon said (an error frame, or EOF) before
			 * giving up. With the role already ours, read directly:
			 * conn_drain would find the role taken and read nothing.
			 */
			if (mine)
				(void)reader_step(c, false);
			else if (can_read)
				conn_drain(c);
			if (pfd.revents & (POLLHUP | POLLERR)) {
				r = conn_write_state(c, gen);
				return r ? r : -EPIPE;
			}
		}
		if (pfd.revents & POLLNVAL)
			return -EBADF;
		if (pfd.revents & POLLOUT)
			return 0;
	}
}

union frame_cmsg {
	char buf[CMSG_SPACE(sizeof(int) * FRAME_FDS_MAX)];
	struct cmsghdr align;
};

/* One sendmsg() of what is left of a frame; fds (if nfds) ride along as SCM_RIGHTS. */
static ssize_t send_some(int fd, struct iovec *iov, int niov, const int *fds, int nfds)
{
	union frame_cmsg cm;
	struct msghdr mh = { .msg_iov = iov, .msg_iovlen = (size_t)niov };

	if (nfds > 0) {
		struct cmsghdr *cmsg;

		memset(&cm, 0, sizeof(cm));
		mh.msg_control = cm.buf;
		mh.msg_controllen = CMSG_SPACE(sizeof(int) * (size_t)nfds);
		cmsg = CMSG_FIRSTHDR(&mh);
		cmsg->cmsg_level = SOL_SOCKET;
		cmsg->cmsg_type = SCM_RIGHTS;
		cmsg->cmsg_len = CMSG_LEN(sizeof(int) * (size_t)nfds);
		memcpy(CMSG_DATA(cmsg), fds, sizeof(int) * (size_t)nfds);
	}
	return sendmsg(fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
}

/* n bytes of the frame went: step over them. Return: what is left of niov. */
static int iov_advance(struct iovec **piov, int niov, size_t n)
{
	struct iovec *iov = *piov;

	while (niov > 0 && n >= iov->iov_len) {
		n -= iov->iov_len;
		iov++;
		niov--;
	}
	if (niov > 0) {
		iov->iov_base = (uint8_t *)iov->iov_base + n;
		iov->iov_len -= n;
	}
	*piov = iov;
	return niov;
}

/*
 * Write a whole frame, handling partial writes; fds go with the first byte.
 * send_lock held; gen is iovad.gen when the frame was registered.
 * Return: 0, CONN_REPLACED, -EPIPE (the socket broke), -ENOTCONN, -errno.
 */
static int send_frame(struct iovad *c, struct iovec *iov, int niov, const int *fds, int nfds,
		      uint64_t gen)
{
	ssize_t n;
	int r;

	while (niov > 0) {
		n = send_some(c->fd, iov, niov, fds, nfds);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK) {
				r = wait_writable(c, gen);
				if (r)
					return r;
				continue;
			}
			return sock_broke(errno) ? -EPIPE : -errno;
		}
		/* The ancillary data went with these bytes: never send it twice. */
		nfds = 0;
		niov = iov_advance(&iov, niov, (size_t)n);
	}
	return 0;
}

/* After a resume the ring waits until no request is out on the socket (see reconnect). */
static bool ring_held_locked(struct iovad *c)
{
	if (!c->ring_hold)
		return false;
	for (struct ilist *n = c->pending.next; n != &c->pending; n = n->next)
		if (!ilist_entry(n, struct pending, node)->ring)
			return true;
	c->ring_hold = false;
	return false;
}

static int send_fds(struct iovad *c, struct pending *p, uint16_t cmd, const void *body,
		    size_t blen, const void *data, size_t dlen, const int *fds, int nfds)
{
	size_t len = sizeof(struct proto_hdr) + blen + dlen;
	int kept[FRAME_FDS_MAX];
	struct proto_hdr h;
	struct iovec iov[3];
	uint16_t version;
	uint64_t gen;
	bool ring, broken;
	int niov = 0, nkept = 0, r;

	if (blen > c->max_frame || dlen > c->max_frame || len > c->max_frame)
		return -EMSGSIZE;
	if (nfds > FRAME_FDS_MAX)
		return -EINVAL;
	/*
	 * A resend may come after the caller's fds are gone (closed by another
	 * thread, the number even reused): it sends duplicates of its own.
	 */
	if (may_reconnect(c)) {
		for (; nkept < nfds; nkept++) {
			kept[nkept] = fcntl(fds[nkept], F_DUPFD_CLOEXEC, 3);
			if (kept[nkept] < 0) {
				r = -errno;
				while (nkept--)
					close(kept[nkept]);
				return r;
			}
		}
	}
	/* Enter p before writing: its reply may be read before the write returns. */
	pthread_mutex_lock(&c->send_lock);
	tl_sending = c;
	pthread_mutex_lock(&c->lock);
	if (c->dead) {
		pthread_mutex_unlock(&c->lock);
		tl_sending = NULL;
		pthread_mutex_unlock(&c->send_lock);
		while (nkept--)
			close(kept[nkept]);
		return -ENOTCONN;
	}
	p->id = c->next_id++;
	p->cmd = cmd;
	p->done = false;
	p->sending = true;
	p->status = 0;
	p->body = body;
	p->blen = blen;
	p->data = data;
	p->dlen = dlen;
	memcpy(p->fds, kept, sizeof(int) * (size_t)nkept);
	p->nfds = nkept;
	p->gen = gen = c->gen;
	/* fds travel on the socket only; everything else takes the ring when there is one. */
	ring = c->ring_on && nfds == 0 && !ring_held_locked(c);
	p->ring = ring;
	if (ring)
		c->ring_inflight++;
	ilist_add_tail(&c->pending, &p->node);
	broken = c->broken;
	/* HELLO goes out before a version is agreed: offer the newest we speak. */
	version = c->version ? c->version : PROTO_VERSION_MAX;
	pthread_mutex_unlock(&c->lock);

	if (broken) {
		/* The reconnect that is due sends it, with everything else pending. */
		r = 0;
	} else {
		proto_hdr_init(&h, version, cmd, (uint32_t)len, p->id);
		iov[niov++] = (struct iovec){ .iov_base = &h, .iov_len = sizeof(h) };
		if (blen)
			iov[niov++] = (struct iovec){ .iov_base = (void *)body, .iov_len = blen };
		if (dlen)
			iov[niov++] = (struct iovec){ .iov_base = (void *)data, .iov_len = dlen };
		r = ring ? ring_submit(c, iov, niov, (uint32_t)len, gen) :
			   send_frame(c, iov, niov, fds, nfds, gen);
	}
	/* Replaced while we waited: the reconnect sent it again (or failed it). */
	if (r == CONN_REPLACED)
		r = 0;
	if (r == -EPIPE && may_reconnect(c)) {
		/*
		 * The daemon is gone, for now: the frame (whatever part of it
		 * went) is sent again after RESUME, as all that is pending is.
		 * Reconnect here if nobody is reading; else the reader does,
		 * once its poll sees the hang-up.
		 */
		pthread_mutex_lock(&c->lock);
		if (!c->dead)
			set_broken_locked(c, true);
		pthread_mutex_unlock(&c->lock);
		conn_drain(c);
		r = 0;
	}
	/*
	 * The daemon may have said why it closed (an access refusal is sent
	 * on accept, before it reads anything): take that in before the
	 * connection is declared dead, so the request fails with the reason.
	 */
	if (r)
		conn_drain(c);

	pthread_mutex_lock(&c->lock);
	if (r)
		mark_dead_locked(c); /* half a frame on the wire: nothing after it can be framed */
	p->sending = false;
	/* Answered (or killed) before we got here: queue it now, unless we report failure. */
	if (!r && p->done && p->batch)
		queue_batch_locked(c, p->batch);
	/* A failed send reports the daemon's reason when the drain found one. */
	if (r)
		r = p->status < 0 ? p->status : -ENOTCONN;
	pthread_mutex_unlock(&c->lock);
	tl_sending = NULL;
	pthread_mutex_unlock(&c->send_lock);
	return r;
}

int conn_send(struct iovad *c, struct pending *p, uint16_t cmd, const void *body, size_t blen,
	      const void *data, size_t dlen, int fd)
{
	return send_fds(c, p, cmd, body, blen, data, dlen, &fd, fd >= 0);
}

int conn_call(struct iovad *c, struct pending *p, uint16_t cmd, const void *body, size_t blen,
	      const void *data, size_t dlen, int fd)
{
	int r = conn_send(c, p, cmd, body, blen, data, dlen, fd);

	if (r)
		return r;
	conn_wait(c, p);
	return p->status;
}

int conn_call_fds(struct iovad *c, struct pending *p, uint16_t cmd, const void *body, size_t blen,
		  const int *fds, int nfds)
{
	int r = send_fds(c, p, cmd, body, blen, NULL, 0, fds, nfds);

	if (r)
		return r;
	conn_wait(c, p);
	return p->status;
}

static int hello(struct iovad *c)
{
	struct proto_hello req = {
		.version_min = PROTO_VERSION_MIN,
		.version_max = PROTO_VERSION_MAX,
		.max_frame = PROTO_FRAME_DEFAULT,
		.max_batch = PROTO_BATCH_DEFAULT,
	};
	/* Version 5 goes on with the session's token; an older daemon stops at hello_rpy. */
	struct {
		struct proto_hello_rpy h;
		struct proto_session s;
	} rpy;
	struct pending p;
	uint32_t fit;
	bool tail;
	int r;

	_Static_assert(sizeof(rpy) == sizeof(rpy.h) + sizeof(rpy.s), "hello tail packs");
	r = pending_init(&p);
	if (r)
		return r;
	p.rpy = &rpy;
	p.rpy_len = sizeof(rpy);
	p.rpy_alt_len = sizeof(rpy.h);
	r = conn_call(c, &p, PROTO_CMD_HELLO, &req, sizeof(req), NULL, 0, -1);
	tail = p.rpy_got == sizeof(rpy);
	pending_destroy(&p);
	if (r)
		return r;
	/* The daemon may only lower what we offered. */
	if (rpy.h.version < PROTO_VERSION_MIN || rpy.h.version > PROTO_VERSION_MAX ||
	    rpy.h.max_frame < PROTO_FRAME_MIN || rpy.h.max_frame > PROTO_FRAME_DEFAULT ||
	    rpy.h.max_batch == 0 || rpy.h.max_batch > PROTO_BATCH_DEFAULT)
		return -EPROTONOSUPPORT;
	/* A full batch must fit in one frame. */
	fit = (uint32_t)((rpy.h.max_frame - sizeof(struct proto_hdr) - sizeof(struct proto_batch)) /
			 sizeof(struct proto_op));
	pthread_mutex_lock(&c->lock);
	c->version = rpy.h.version;
	c->max_frame = rpy.h.max_frame;
	c->max_batch = rpy.h.max_batch < fit ? rpy.h.max_batch : fit;
	c->max_inflight = rpy.h.max_inflight;
	c->session_id = rpy.h.session_id;
	/* No tail (a daemon before version 5, or one that sends none): not durable. */
	c->durable = tail && rpy.h.version >= PROTO_VERSION_RESUME &&
		     (rpy.s.flags & PROTO_SESSION_DURABLE);
	if (c->durable)
		memcpy(c->token, rpy.s.token, sizeof(c->token));
	pthread_mutex_unlock(&c->lock);
	return 0;
}

/*
 * With nonblock, connect() itself does not wait: a listener whose backlog
 * is full is -EAGAIN, which the reconnect retries after its backoff.
 */
static int sock_connect(const char *path, bool nonblock)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	size_t n = strlen(path);
	int fd, r;

	if (n == 0)
		return -EINVAL;
	if (n >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	memcpy(sa.sun_path, path, n);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | (nonblock ? SOCK_NONBLOCK : 0), 0);
	if (fd < 0)
		return -errno;
	/* A Unix connect interrupted before it was accepted into the backlog can be retried. */
	do
		r = connect(fd, (struct sockaddr *)&sa, sizeof(sa));
	while (r < 0 && errno == EINTR);
	if (r < 0)
		goto err_close;
	if (nonblock)
		return fd;
	/* Blocking happens in poll(), where a sender can also read; never in the syscalls. */
	r = fcntl(fd, F_GETFL);
	if (r < 0 || fcntl(fd, F_SETFL, r | O_NONBLOCK) < 0)
		goto err_close;
	return fd;

err_close:
	r = -errno;
	close(fd);
	return r;
}

static uint32_t env_reconnect_ms(void)
{
	const char *v = getenv("IOVAD_RECONNECT_TIMEOUT_MS");
	unsigned long x;
	char *end;

	if (!v || !*v)
		return RECONNECT_TIMEOUT_MS_DEFAULT;
	errno = 0;
	x = strtoul(v, &end, 10);
	if (*end || errno || x > RECONNECT_TIMEOUT_MS_MAX || *v == '-')
		return RECONNECT_TIMEOUT_MS_DEFAULT;
	return (uint32_t)x;
}

/* ---- reconnecting (durable sessions) ---- */

/*
 * Read from fd into rbuf until a whole frame is there, by the deadline.
 * Return: its length; -EPIPE (EOF, a socket error), -ETIMEDOUT, -EPROTO.
 */
static int64_t xchg_frame(struct iovad *c, int fd, uint64_t deadline_ms)
{
	for (;;) {
		int64_t flen = proto_frame_len(c->rbuf, c->rlen, c->max_frame);
		struct pollfd pfd = { .fd = fd, .events = POLLIN };
		uint64_t now = conn_mono_ms();
		ssize_t n;

		if (flen < 0)
			return -EPROTO;
		if (flen > 0 && (size_t)flen <= c->rlen)
			return flen;
		if (now >= deadline_ms)
			return -ETIMEDOUT;
		if (poll(&pfd, 1, (int)(deadline_ms - now < INT32_MAX ? deadline_ms - now :
								   INT32_MAX)) < 0 &&
		    errno != EINTR)
			return -EPIPE;
		n = recv(fd, c->rbuf + c->rlen, RBUF_SIZE - c->rlen, MSG_DONTWAIT);
		if (n > 0)
			c->rlen += (size_t)n;
		else if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR))
			return -EPIPE;
	}
}

/*
 * One request and its reply on fd, a socket the reconnect has not
 * installed yet (reader role held): RESUME. Return: 0 with the reply's
 * status in *status and its body in rpy (rpy_len bytes on success);
 * -EPIPE (the socket broke), -ETIMEDOUT (deadline_ms passed), -EPROTO.
 */
static int conn_xchg(struct iovad *c, int fd, uint16_t cmd, const void *body, size_t blen,
		     const int *fds, int nfds, void *rpy, size_t rpy_len, int *status,
		     uint64_t deadline_ms)
{
	size_t len = sizeof(struct proto_hdr) + blen;
	struct iovec iov[2], *v = iov;
	struct proto_status st;
	struct proto_hdr h;
	uint64_t id;
	int niov = 2, r;

	pthread_mutex_lock(&c->lock);
	id = c->next_id++;
	pthread_mutex_unlock(&c->lock);
	proto_hdr_init(&h, c->version, cmd, (uint32_t)len, id);
	iov[0] = (struct iovec){ .iov_base = &h, .iov_len = sizeof(h) };
	iov[1] = (struct iovec){ .iov_base = (void *)body, .iov_len = blen };
	while (niov > 0) {
		struct pollfd pfd = { .fd = fd, .events = POLLOUT };
		uint64_t now = conn_mono_ms();
		ssize_t n = send_some(fd, v, niov, fds, nfds);

		if (n >= 0) {
			nfds = 0;
			niov = iov_advance(&v, niov, (size_t)n);
			continue;
		}
		if (errno == EINTR)
			continue;
		if (errno != EAGAIN && errno != EWOULDBLOCK)
			return -EPIPE;
		if (now >= deadline_ms)
			return -ETIMEDOUT;
		(void)poll(&pfd, 1, (int)(deadline_ms - now < INT32_MAX ? deadline_ms - now : INT32_MAX));
	}
	/* Nothing else was sent on fd: the reply, maybe after fault events of restored regions. */
	for (;;) {
		int64_t flen = xchg_frame(c, fd, deadline_ms);
		const uint8_t *f = c->rbuf;

		if (flen < 0)
			return (int)flen;
		memcpy(&h, f, sizeof(h));
		if (h.type == PROTO_EVT_FAULT) {
			pthread_mutex_lock(&c->lock);
			r = odp_event_locked(c, f, (size_t)flen);
			pthread_mutex_unlock(&c->lock);
			if (r)
				return -EPROTO;
		} else {
			/* Any header version: an error may come before the session is attached. */
			if (h.id != id || proto_check_reply(f, (size_t)flen, 0, c->max_frame, cmd,
							    sizeof(h) + rpy_len))
				return -EPROTO;
			memcpy(&st, f + sizeof(h), sizeof(st));
			if (st.status > 0 || (st.status == 0 && (size_t)flen != sizeof(h) + rpy_len))
				return -EPROTO;
			*status = st.status;
			if (!st.status)
				memcpy(rpy, f + sizeof(h), rpy_len);
		}
		/* What follows (events) stays for the reader. */
		memmove(c->rbuf, c->rbuf + flen, c->rlen - (size_t)flen);
		c->rlen -= (size_t)flen;
		if (h.type != PROTO_EVT_FAULT)
			return 0;
	}
}

/*
 * Take in whatever the broken connection still holds: replies the daemon
 * sent before it went are answers (durable ones), and the last word on
 * their requests; an error frame kills the connection as ever. Then drop
 * the rings, which belonged to that connection. Reader role and send_lock
 * held.
 */
static void reconnect_drain(struct iovad *c)
{
	while (sock_step(c, false) > 0)
		;
	pthread_mutex_lock(&c->lock);
	if (c->ring_on)
		(void)cq_drain_locked(c);
	pthread_mutex_unlock(&c->lock);
	/* Half a frame: its request is sent again, and answered again. */
	c->rlen = 0;
	ring_close(c);
}

/*
 * Write every pending request on the new socket, in send order, with its
 * id. All go on the socket, and the rings asked for behind them take
 * nothing while any of them is out (ring_hold): the daemon serves its ring
 * before its socket, and it must see the resent requests before any newer
 * id, or it forgets the replies it kept for them. A reply read meanwhile
 * (wait_writable) completes
 * its request, which leaves the list: each step looks again for the oldest
 * not yet written to this gen. Each frame is copied out under the lock,
 * since an orphan's owner may free its batch body meanwhile.
 * Return: 0; -EPIPE (broke again); -ENOTCONN; -ENOMEM, -errno (give up).
 */
static int resend_all(struct iovad *c)
{
	uint8_t *buf = malloc(c->max_frame);
	uint64_t gen;
	int r = 0;

	if (!buf)
		return -ENOMEM;
	pthread_mutex_lock(&c->lock);
	gen = c->gen;
	for (;;) {
		struct pending *p = NULL;
		struct iovec iov;
		struct proto_hdr h;
		int fds[FRAME_FDS_MAX], nfds;
		size_t len;

		r = c->dead ? -ENOTCONN : c->broken ? -EPIPE : 0;
		if (r)
			break;
		for (struct ilist *n = c->pending.next; n != &c->pending; n = n->next) {
			struct pending *q = ilist_entry(n, struct pending, node);

			if (q->gen != gen) {
				p = q;
				break;
			}
		}
		if (!p)
			break;
		p->gen = gen;
		if (p->lost) {
			complete_locked(c, p, -ENOTCONN);
			continue;
		}
		/* A previous reconnect's rings went with its connection: this one asks anew. */
		if (p->ring_new) {
			complete_locked(c, p, -ECANCELED);
			continue;
		}
		len = sizeof(h) + p->blen + p->dlen;
		proto_hdr_init(&h, c->version, p->cmd, (uint32_t)len, p->id);
		memcpy(buf, &h, sizeof(h));
		if (p->blen)
			memcpy(buf + sizeof(h), p->body, p->blen);
		if (p->dlen)
			memcpy(buf + sizeof(h) + p->blen, p->data, p->dlen);
		nfds = p->nfds;
		memcpy(fds, p->fds, sizeof(int) * (size_t)nfds);
		pthread_mutex_unlock(&c->lock);
		/* p's fds stay open: p cannot be answered before all of it is written. */
		iov = (struct iovec){ .iov_base = buf, .iov_len = len };
		r = send_frame(c, &iov, 1, fds, nfds, gen);
		pthread_mutex_lock(&c->lock);
		if (r == CONN_REPLACED)
			r = -EPIPE; /* cannot be: nothing reconnects under a reconnect */
		if (r)
			break;
	}
	pthread_mutex_unlock(&c->lock);
	free(buf);
	return r;
}

int conn_write_internal(struct iovad *c, struct pending *p, uint16_t cmd, const void *body,
			size_t blen, const int *fds, int nfds)
{
	size_t len = sizeof(struct proto_hdr) + blen;
	struct proto_hdr h;
	struct iovec iov[2];
	uint64_t gen;
	int r;

	pthread_mutex_lock(&c->lock);
	if (c->dead) {
		pthread_mutex_unlock(&c->lock);
		return -ENOTCONN;
	}
	p->id = c->next_id++;
	p->cmd = cmd;
	p->gen = gen = c->gen;
	ilist_add_tail(&c->pending, &p->node);
	pthread_mutex_unlock(&c->lock);
	proto_hdr_init(&h, c->version, cmd, (uint32_t)len, p->id);
	iov[0] = (struct iovec){ .iov_base = &h, .iov_len = sizeof(h) };
	iov[1] = (struct iovec){ .iov_base = (void *)body, .iov_len = blen };
	r = send_frame(c, iov, 2, fds, nfds, gen);
	return r == CONN_REPLACED ? -EPIPE : r == -ENOTCONN ? r : r ? -EPIPE : 0;
}

/*
 * One attempt: connect, RESUME, install the socket, resend, rings.
 * Return: 0; -EPIPE or -ETIMEDOUT (try again, if there is time); another
 * -errno (RESUME refused, or nonsense: give up).
 */
static int reconnect_once(struct iovad *c, bool rings, uint64_t deadline_ms)
{
	struct proto_resume req = {
		.hello = { .version_min = c->version, .version_max = c->version,
			   .max_frame = PROTO_FRAME_DEFAULT, .max_batch = PROTO_BATCH_DEFAULT },
		.session_id = c->session_id,
	};
	struct {
		struct proto_hello_rpy h;
		struct proto_session s;
	} rpy;
	struct epoll_event ev = { .events = EPOLLIN };
	int fd, status = 0, r;

	memcpy(req.token, c->token, sizeof(req.token));
	fd = sock_connect(c->path, true);
	if (fd < 0)
		return -EPIPE; /* no socket yet, nobody listening, backlog full: all for now */
	c->rlen = 0;
	r = conn_xchg(c, fd, PROTO_CMD_RESUME, &req, sizeof(req), NULL, 0, &rpy, sizeof(rpy),
		      &status, deadline_ms);
	if (!r && status)
		r = status; /* -ENOENT, -EACCES, -EBUSY, -EPROTONOSUPPORT: the session is gone to us */
	/* The same session, the same terms: what we built on them (frames, batches) still fits. */
	if (!r && (rpy.h.session_id != c->session_id || rpy.h.version != c->version ||
		   rpy.h.max_frame < c->max_frame || rpy.h.max_batch < c->max_batch ||
		   !(rpy.s.flags & PROTO_SESSION_DURABLE)))
		r = -EPROTO;
	if (r) {
		close(fd);
		return r;
	}
	ev.data.fd = fd;
	if (epoll_ctl(c->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
		r = -errno;
		close(fd);
		return r;
	}
	/* Nobody else polls or reads the old socket: we hold the role and send_lock. */
	close(c->fd);
	pthread_mutex_lock(&c->lock);
	c->fd = fd;
	c->gen++;
	c->max_inflight = rpy.h.max_inflight;
	set_broken_locked(c, false);
	/* Everything goes out again on the socket (ring_close made it so): its replies come there. */
	pthread_mutex_unlock(&c->lock);
	r = resend_all(c);
	/*
	 * Rings were in use: ask again, behind the resent requests. Not before
	 * them: the daemon answers resent requests from its record only until
	 * it sees a newer id, and RING_SETUP's is newer.
	 */
	if (!r && rings)
		r = ring_request(c);
	return r;
}

/*
 * The socket broke on a durable session: reconnect with backoff until
 * reconnect_ms after the break, RESUME, and send again what is pending.
 * Reader role held; send_lock taken here unless this thread holds it (a
 * writer that met the break while reading). On failure the connection is
 * dead, every request -ENOTCONN, as without reconnecting.
 * Return: 0, -errno.
 */
static int reconnect(struct iovad *c)
{
	uint64_t deadline = conn_mono_ms() + c->reconnect_ms;
	uint32_t delay = RECONNECT_DELAY_MIN_MS;
	bool take_send = tl_sending != c;
	bool rings = c->ring_on;
	int r;

	if (take_send) {
		pthread_mutex_lock(&c->send_lock);
		tl_sending = c;
	}
	pthread_mutex_lock(&c->lock);
	c->reconnecting = true;
	pthread_mutex_unlock(&c->lock);
	/* An event loop must not spin on the hang-up meanwhile. */
	(void)epoll_ctl(c->epfd, EPOLL_CTL_DEL, c->fd, NULL);
	for (;;) {
		uint64_t now;

		reconnect_drain(c);
		if (conn_dead(c)) {
			r = -ENOTCONN;
			break;
		}
		r = reconnect_once(c, rings, deadline);
		if (r != -EPIPE && r != -ETIMEDOUT)
			break;
		/* Broke again before the resend was through: what is left goes next time. */
		if (r == -EPIPE)
			(void)epoll_ctl(c->epfd, EPOLL_CTL_DEL, c->fd, NULL);
		now = conn_mono_ms();
		if (now >= deadline) {
			r = -ETIMEDOUT;
			break;
		}
		usleep((useconds_t)(deadline - now < delay ? deadline - now : delay) * 1000u);
		delay = delay * 2 < RECONNECT_DELAY_MAX_MS ? delay * 2 : RECONNECT_DELAY_MAX_MS;
	}
	pthread_mutex_lock(&c->lock);
	c->reconnecting = false;
	if (r) {
		struct epoll_event ev = { .events = EPOLLIN, .data.fd = c->fd };

		mark_dead_locked(c);
		/* Back in the set: the event loop must see the end (the hang-up) too. */
		(void)epoll_ctl(c->epfd, EPOLL_CTL_ADD, c->fd, &ev);
	} else {
		c->reconnects++;
	}
	pthread_mutex_unlock(&c->lock);
	if (take_send) {
		tl_sending = NULL;
		pthread_mutex_unlock(&c->send_lock);
	}
	return r;
}

int conn_open(const char *path, struct iovad **ret)
{
	struct epoll_event ev = { .events = EPOLLIN };
	struct iovad *c;
	int r;

	c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->fd = c->evfd = c->epfd = -1;
	ilist_init(&c->pending);
	ilist_init(&c->done_batches);
	ilist_init(&c->devs);
	ilist_init(&c->mems);
	ilist_init(&c->batches);
	ilist_init(&c->odps);
	ilist_init(&c->faults);
	c->next_id = 1;
	c->max_frame = PROTO_FRAME_DEFAULT;
	c->page_size = sysconf(_SC_PAGESIZE);
	if (c->page_size <= 0)
		c->page_size = 4096;

	r = -pthread_mutex_init(&c->lock, NULL);
	if (r)
		goto err_free;
	r = -pthread_mutex_init(&c->send_lock, NULL);
	if (r)
		goto err_destroy_lock;
	c->rbuf = malloc(RBUF_SIZE);
	c->path = strdup(path);
	if (!c->rbuf || !c->path) {
		r = -ENOMEM;
		goto err_free_rbuf;
	}
	c->reconnect_ms = env_reconnect_ms();
	c->fd = sock_connect(path, false);
	if (c->fd < 0) {
		r = c->fd;
		goto err_free_rbuf;
	}
	c->evfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (c->evfd < 0) {
		r = -errno;
		goto err_close_fds;
	}
	/*
	 * The event fd is an epoll set of the socket and the eventfd: a reply
	 * left unread in the socket and a batch completed by another thread's
	 * reads (gone from the socket, queued for iovad_process) both wake the
	 * caller's event loop.
	 */
	c->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (c->epfd < 0) {
		r = -errno;
		goto err_close_fds;
	}
	ev.data.fd = c->fd;
	if (epoll_ctl(c->epfd, EPOLL_CTL_ADD, c->fd, &ev) < 0) {
		r = -errno;
		goto err_close_fds;
	}
	ev.data.fd = c->evfd;
	if (epoll_ctl(c->epfd, EPOLL_CTL_ADD, c->evfd, &ev) < 0) {
		r = -errno;
		goto err_close_fds;
	}
	r = hello(c);
	if (r)
		goto err_close_fds;
	/* Rings when the daemon offers them; a refusal leaves us on the socket. */
	r = ring_open(c);
	if (r)
		goto err_close_fds;
	*ret = c;
	return 0;

err_close_fds:
	if (c->epfd >= 0)
		close(c->epfd);
	if (c->evfd >= 0)
		close(c->evfd);
	close(c->fd);
err_free_rbuf:
	free(c->path);
	free(c->rbuf);
	pthread_mutex_destroy(&c->send_lock);
err_destroy_lock:
	pthread_mutex_destroy(&c->lock);
err_free:
	free(c);
	return r;
}

void conn_close(struct iovad *c)
{
	ring_close(c);
	close(c->epfd);
	close(c->evfd);
	close(c->fd);
	free(c->path);
	free(c->rbuf);
	pthread_mutex_destroy(&c->send_lock);
	pthread_mutex_destroy(&c->lock);
	free(c);
}
