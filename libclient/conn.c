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

/*
 * The connection this thread holds the reader role of, if any. A sender
 * that holds it must read for itself when the socket is full: nobody else
 * can, and taking the role again is impossible (conn_drain would see it
 * taken and return, and the daemon and we would wait for each other).
 */
static _Thread_local const struct iovad *tl_reading;

int pending_init(struct pending *p)
{
	memset(p, 0, sizeof(*p));
	ilist_init(&p->node);
	return -pthread_cond_init(&p->cond, NULL);
}

void pending_destroy(struct pending *p)
{
	pthread_cond_destroy(&p->cond);
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

static void complete_locked(struct iovad *c, struct pending *p, int status)
{
	if (p->ring)
		c->ring_inflight--;
	ilist_del(&p->node);
	p->done = true;
	p->status = status;
	/* Listed before anything after this reply is read: a fault on it must find it. */
	if (p->odp && !status)
		odp_registered_locked(c, p->odp, p->rpy);
	if (p->orphan) {
		pending_destroy(p);
		free(p);
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
			      sizeof(h) + p->rpy_len))
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
	if (blen != want && !(st.status < 0 && blen == sizeof(st)))
		goto violation;
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
 * Return: 1 (read something), 0 (nothing to read, !block), -ENOTCONN.
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
		goto dead; /* EOF or a socket error */
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

static int reader_step(struct iovad *c, bool block)
{
	return c->ring_on ? ring_step(c, block) : sock_step(c, block);
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
static int wait_writable(struct iovad *c)
{
	for (;;) {
		struct pollfd pfd = { .fd = c->fd, .events = POLLOUT };
		bool mine = tl_reading == c;
		bool can_read;

		pthread_mutex_lock(&c->lock);
		if (c->dead) {
			pthread_mutex_unlock(&c->lock);
			return -ENOTCONN;
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
			if (pfd.revents & (POLLHUP | POLLERR))
				return -EPIPE;
		}
		if (pfd.revents & POLLNVAL)
			return -EBADF;
		if (pfd.revents & POLLOUT)
			return 0;
	}
}

/* The most fds one frame carries (RING_SETUP's three). */
#define FRAME_FDS_MAX 3

/* Write a whole frame, handling partial writes; fds go with the first byte. send_lock held. */
static int send_frame(struct iovad *c, struct iovec *iov, int niov, const int *fds, int nfds)
{
	union {
		char buf[CMSG_SPACE(sizeof(int) * FRAME_FDS_MAX)];
		struct cmsghdr align;
	} cm;
	struct msghdr mh;
	ssize_t n;
	int r;

	while (niov > 0) {
		memset(&mh, 0, sizeof(mh));
		mh.msg_iov = iov;
		mh.msg_iovlen = (size_t)niov;
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
		n = sendmsg(c->fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK) {
				r = wait_writable(c);
				if (r)
					return r;
				continue;
			}
			return -errno;
		}
		/* The ancillary data went with these bytes: never send it twice. */
		nfds = 0;
		while (niov > 0 && (size_t)n >= iov->iov_len) {
			n -= (ssize_t)iov->iov_len;
			iov++;
			niov--;
		}
		if (niov > 0) {
			iov->iov_base = (uint8_t *)iov->iov_base + n;
			iov->iov_len -= (size_t)n;
		}
	}
	return 0;
}

static int send_fds(struct iovad *c, struct pending *p, uint16_t cmd, const void *body,
		    size_t blen, const void *data, size_t dlen, const int *fds, int nfds)
{
	size_t len = sizeof(struct proto_hdr) + blen + dlen;
	struct proto_hdr h;
	struct iovec iov[3];
	uint16_t version;
	bool ring;
	int niov = 0, r;

	if (blen > c->max_frame || dlen > c->max_frame || len > c->max_frame)
		return -EMSGSIZE;
	if (nfds > FRAME_FDS_MAX)
		return -EINVAL;
	/* fds travel on the socket only; everything else takes the ring when there is one. */
	ring = c->ring_on && nfds == 0;
	/* Enter p before writing: its reply may be read before the write returns. */
	pthread_mutex_lock(&c->send_lock);
	pthread_mutex_lock(&c->lock);
	if (c->dead) {
		pthread_mutex_unlock(&c->lock);
		pthread_mutex_unlock(&c->send_lock);
		return -ENOTCONN;
	}
	p->id = c->next_id++;
	p->cmd = cmd;
	p->done = false;
	p->sending = true;
	p->status = 0;
	p->ring = ring;
	if (ring)
		c->ring_inflight++;
	ilist_add_tail(&c->pending, &p->node);
	/* HELLO goes out before a version is agreed: offer the newest we speak. */
	version = c->version ? c->version : PROTO_VERSION_MAX;
	pthread_mutex_unlock(&c->lock);

	proto_hdr_init(&h, version, cmd, (uint32_t)len, p->id);
	iov[niov++] = (struct iovec){ .iov_base = &h, .iov_len = sizeof(h) };
	if (blen)
		iov[niov++] = (struct iovec){ .iov_base = (void *)body, .iov_len = blen };
	if (dlen)
		iov[niov++] = (struct iovec){ .iov_base = (void *)data, .iov_len = dlen };
	r = ring ? ring_submit(c, iov, niov, (uint32_t)len) : send_frame(c, iov, niov, fds, nfds);
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
	struct proto_hello_rpy rpy;
	struct pending p;
	uint32_t fit;
	int r;

	r = pending_init(&p);
	if (r)
		return r;
	p.rpy = &rpy;
	p.rpy_len = sizeof(rpy);
	r = conn_call(c, &p, PROTO_CMD_HELLO, &req, sizeof(req), NULL, 0, -1);
	pending_destroy(&p);
	if (r)
		return r;
	/* The daemon may only lower what we offered. */
	if (rpy.version < PROTO_VERSION_MIN || rpy.version > PROTO_VERSION_MAX ||
	    rpy.max_frame < PROTO_FRAME_MIN || rpy.max_frame > PROTO_FRAME_DEFAULT ||
	    rpy.max_batch == 0 || rpy.max_batch > PROTO_BATCH_DEFAULT)
		return -EPROTONOSUPPORT;
	/* A full batch must fit in one frame. */
	fit = (uint32_t)((rpy.max_frame - sizeof(struct proto_hdr) - sizeof(struct proto_batch)) /
			 sizeof(struct proto_op));
	pthread_mutex_lock(&c->lock);
	c->version = rpy.version;
	c->max_frame = rpy.max_frame;
	c->max_batch = rpy.max_batch < fit ? rpy.max_batch : fit;
	c->max_inflight = rpy.max_inflight;
	c->session_id = rpy.session_id;
	pthread_mutex_unlock(&c->lock);
	return 0;
}

static int sock_connect(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	size_t n = strlen(path);
	int fd, r;

	if (n == 0)
		return -EINVAL;
	if (n >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	memcpy(sa.sun_path, path, n);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	/* A Unix connect interrupted before it was accepted into the backlog can be retried. */
	do
		r = connect(fd, (struct sockaddr *)&sa, sizeof(sa));
	while (r < 0 && errno == EINTR);
	if (r < 0)
		goto err_close;
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
	if (!c->rbuf) {
		r = -ENOMEM;
		goto err_destroy_send_lock;
	}
	c->fd = sock_connect(path);
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
	free(c->rbuf);
err_destroy_send_lock:
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
	free(c->rbuf);
	pthread_mutex_destroy(&c->send_lock);
	pthread_mutex_destroy(&c->lock);
	free(c);
}
