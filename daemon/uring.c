// SPDX-License-Identifier: MIT
/*
 * uring.c - the io_uring transport: recvmsg and sendmsg for every client
 * socket go through one ring, submitted in batches.
 *
 * The ring's completions are signalled on an eventfd registered with the
 * ring; libevent watches that eventfd, so the whole daemon still runs on
 * one libevent loop. Each wakeup drains the entire CQ (an eventfd count is
 * only a hint, see io_uring_register_eventfd(3)), handles every completion,
 * and only then submits the SQEs those completions queued (re-armed
 * receives, replies to send): one io_uring_submit() per wakeup, however
 * many clients were served.
 *
 * A connection has at most one recvmsg and one sendmsg in flight. When the
 * server frees a connection while operations are pending, the per-socket
 * state is detached from it and freed when its last completion arrives;
 * it takes the socket with it (c->fd = -1 for the server), so that the
 * descriptor number cannot be reused by another connection while an SQE
 * that names it may still run.
 *
 * A failed io_uring_submit (-EAGAIN, -EBUSY, -EINTR: the kernel is short of
 * resources) loses nothing: the SQEs stay in the ring and a timer submits
 * them again, backing off from 1 ms to 100 ms while it keeps failing. An
 * operation that could not get an SQE at all (the ring full and unsubmittable)
 * is re-armed by the same timer. Fault injection (FP_URING_SUBMIT) fails the
 * submit here with -EAGAIN.
 */
#include <errno.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <liburing.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "failpoint.h"
#include "internal.h"

#define URING_ENTRIES 256
#define RECV_BUF (64u << 10)
#define SEND_BUF (64u << 10)
#define MAX_FDS_PER_MSG 16

enum { OP_RECV = 1, OP_SEND = 2, OP_MASK = 3 };

#define RETRY_MIN_US 1000
#define RETRY_MAX_US 100000

struct uring_io {
	struct io_uring ring;
	struct srv *srv;
	int efd;
	struct event *ev;
	bool in_completion;   /* inside the CQ loop: submit at its end */
	struct uconn *current; /* whose completion is being handled: the loop frees it */
	unsigned int queued;  /* SQEs prepared, not yet submitted */
	struct event *retry;  /* submits again after a failure, re-arms what had no SQE */
	unsigned int retry_us;
	bool rearm;           /* some connection waits for the retry to re-arm */
	unsigned long submit_failures; /* in the current run of failures */
	struct uconn *all;    /* every uconn, attached or detached, for uring_io_fini */
};

struct uconn;
static struct uconn *outlived; /* see uring_io_fini */

struct uconn {
	struct conn *c;       /* NULL once the server let go of the connection */
	struct uring_io *u;
	struct uconn *next, *prev; /* u->all */
	int fd;
	bool own_fd;          /* detached with operations pending: fd is ours to close */
	int inflight;         /* operations the kernel still owns (or queued for it) */
	bool recv_armed, send_armed, paused;
	bool want_recv, want_send; /* no SQE was available: the retry timer arms them */
	struct msghdr rmsg;
	struct iovec riov;
	char cbuf[CMSG_SPACE(sizeof(int) * MAX_FDS_PER_MSG)];
	struct msghdr smsg;
	struct iovec siov;
	uint8_t *sbuf;        /* SEND_BUF bytes: what the in-flight sendmsg reads */
	uint8_t rbuf[RECV_BUF];
} __attribute__((aligned(8)));

static void retry_later(struct uring_io *u)
{
	struct timeval tv;

	if (evtimer_pending(u->retry, NULL))
		return;
	if (!u->retry_us)
		u->retry_us = RETRY_MIN_US;
	tv.tv_sec = 0;
	tv.tv_usec = (suseconds_t)u->retry_us;
	if (event_add(u->retry, &tv))
		log_err("io_uring: cannot schedule a retry");
}

/*
 * Submit what is queued. A failure keeps it queued (the SQEs stay in the
 * ring) and schedules a retry. Return: true when nothing is left queued.
 */
static bool submit_now(struct uring_io *u)
{
	int r;

	if (!u->queued)
		return true;
	if (fp_hit(FP_URING_SUBMIT))
		r = -EAGAIN; /* what the kernel returns when it is short of memory */
	else
		r = io_uring_submit(&u->ring);
	if (r < 0) {
		if (!u->submit_failures++)
			log_err("io_uring_submit: %s; %u SQEs kept for a retry", strerror(-r),
				u->queued);
		retry_later(u);
		return false;
	}
	if (u->submit_failures) {
		log_notice("io_uring_submit: submitting again after %lu failures",
			   u->submit_failures);
		u->submit_failures = 0;
	}
	/* The kernel may stop short of the whole batch: what it left is still queued. */
	u->queued = io_uring_sq_ready(&u->ring);
	if (u->queued) {
		retry_later(u);
		return false;
	}
	u->retry_us = 0;
	return true;
}

static struct io_uring_sqe *get_sqe(struct uring_io *u)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&u->ring);

	if (!sqe) {
		/* SQ full: push what is queued to make room. */
		submit_now(u);
		sqe = io_uring_get_sqe(&u->ring);
	}
	return sqe;
}

static void queued(struct uring_io *u)
{
	u->queued++;
	if (!u->in_completion)
		submit_now(u);
}

static void arm_recv(struct uconn *uc)
{
	struct io_uring_sqe *sqe;

	if (uc->recv_armed || uc->paused || !uc->c)
		return;
	sqe = get_sqe(uc->u);
	if (!sqe) {
		/* The ring is full and could not be submitted: the retry timer arms it. */
		uc->want_recv = true;
		uc->u->rearm = true;
		retry_later(uc->u);
		return;
	}
	uc->want_recv = false;
	uc->riov = (struct iovec){ uc->rbuf, sizeof(uc->rbuf) };
	uc->rmsg = (struct msghdr){ .msg_iov = &uc->riov, .msg_iovlen = 1,
				    .msg_control = uc->cbuf, .msg_controllen = sizeof(uc->cbuf) };
	io_uring_prep_recvmsg(sqe, uc->fd, &uc->rmsg, MSG_CMSG_CLOEXEC);
	io_uring_sqe_set_data64(sqe, (uint64_t)(uintptr_t)uc | OP_RECV);
	uc->recv_armed = true;
	uc->inflight++;
	queued(uc->u);
}

/*
 * The kernel reads the bytes of a sendmsg in flight until it completes, and
 * replies keep being appended to c->out meanwhile (a fault served later, a
 * pipelined request). libevent may move the bytes of a chain when it
 * appends (it realigns a chain drained at the front), so the in-flight
 * send reads a private copy; c->out keeps the bytes, for the backpressure
 * accounting and for a connection closing after its last reply, until
 * send_done drains what went out.
 */
static void arm_send(struct uconn *uc)
{
	struct io_uring_sqe *sqe;
	ev_ssize_t n;

	if (uc->send_armed || !uc->c || !evbuffer_get_length(uc->c->out))
		return;
	sqe = get_sqe(uc->u);
	if (!sqe) {
		uc->want_send = true;
		uc->u->rearm = true;
		retry_later(uc->u);
		return;
	}
	uc->want_send = false;
	n = evbuffer_copyout(uc->c->out, uc->sbuf, SEND_BUF);
	uc->siov = (struct iovec){ uc->sbuf, (size_t)(n > 0 ? n : 0) };
	uc->smsg = (struct msghdr){ .msg_iov = &uc->siov, .msg_iovlen = 1 };
	io_uring_prep_sendmsg(sqe, uc->fd, &uc->smsg, MSG_NOSIGNAL);
	io_uring_sqe_set_data64(sqe, (uint64_t)(uintptr_t)uc | OP_SEND);
	uc->send_armed = true;
	uc->inflight++;
	queued(uc->u);
}

static void take_fds(struct uconn *uc)
{
	for (struct cmsghdr *cm = CMSG_FIRSTHDR(&uc->rmsg); cm; cm = CMSG_NXTHDR(&uc->rmsg, cm)) {
		if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_RIGHTS) {
			int nf = (int)((cm->cmsg_len - CMSG_LEN(0)) / sizeof(int));
			int fds[MAX_FDS_PER_MSG];

			memcpy(fds, CMSG_DATA(cm), (size_t)nf * sizeof(int));
			conn_add_fds(uc->c, fds, nf);
		}
	}
}

static void recv_done(struct uconn *uc, int res)
{
	struct conn *c = uc->c;

	uc->recv_armed = false;
	if (!c)
		return;
	if (res <= 0) {
		if (res == -EINTR || res == -EAGAIN) {
			arm_recv(uc);
			return;
		}
		conn_closed(c, res);
		return;
	}
	take_fds(uc);
	evbuffer_add(c->in, uc->rbuf, (size_t)res);
	arm_recv(uc);
	conn_input(c); /* may free c: uc->c is NULL afterwards then */
}

static void send_done(struct uconn *uc, int res)
{
	struct conn *c = uc->c;

	uc->send_armed = false;
	if (!c)
		return;
	if (res < 0) {
		if (res == -EINTR || res == -EAGAIN) {
			arm_send(uc);
			return;
		}
		conn_closed(c, res);
		return;
	}
	evbuffer_drain(c->out, (size_t)res);
	if (evbuffer_get_length(c->out) <= c->srv->lim.out_low) {
		conn_output_drained(c); /* may free c */
		if (!uc->c)
			return;
	}
	arm_send(uc);
}

static void uc_free(struct uconn *uc)
{
	if (uc->prev)
		uc->prev->next = uc->next;
	else
		uc->u->all = uc->next;
	if (uc->next)
		uc->next->prev = uc->prev;
	if (uc->own_fd)
		close(uc->fd);
	free(uc->sbuf);
	free(uc);
}

/* After a failed submit, or with operations that found no SQE: try again. */
static void retry_cb(evutil_socket_t fd, short what, void *arg)
{
	struct uring_io *u = arg;

	(void)fd;
	(void)what;
	/* Back off while it keeps failing; submit_now resets this on success. */
	u->retry_us = u->retry_us * 2 > RETRY_MAX_US ? RETRY_MAX_US : u->retry_us * 2;
	if (!submit_now(u) || !u->rearm)
		return;
	u->rearm = false;
	for (struct conn *c = u->srv->conns, *next; c; c = next) {
		struct uconn *uc = c->uring_priv;

		next = c->next;
		if (!uc)
			continue;
		if (uc->want_recv)
			arm_recv(uc);
		if (uc->want_send)
			arm_send(uc);
	}
	/* Queued outside the CQ loop: arm_* submitted already (or scheduled a retry). */
}

static void uring_cb(evutil_socket_t fd, short what, void *arg)
{
	struct uring_io *u = arg;
	struct io_uring_cqe *cqe;
	uint64_t cnt;

	(void)what;
	(void)!read(fd, &cnt, sizeof(cnt));
	u->in_completion = true;
	while (io_uring_peek_cqe(&u->ring, &cqe) == 0) {
		uint64_t data = io_uring_cqe_get_data64(cqe);
		struct uconn *uc = (struct uconn *)(uintptr_t)(data & ~(uint64_t)OP_MASK);
		int res = cqe->res;

		io_uring_cqe_seen(&u->ring, cqe);
		if (!uc)
			continue;
		uc->inflight--;
		u->current = uc;
		if ((data & OP_MASK) == OP_RECV)
			recv_done(uc, res);
		else
			send_done(uc, res);
		u->current = NULL;
		/* Detached (the server let go) and nothing left in the kernel: done. */
		if (!uc->c && uc->inflight == 0)
			uc_free(uc);
	}
	u->in_completion = false;
	submit_now(u);
}

/* ---- transport ops ---------------------------------------------------------- */

static int u_attach(struct conn *c)
{
	struct uring_io *u = c->srv->uring;
	struct uconn *uc = calloc(1, sizeof(*uc));

	if (!uc)
		return -ENOMEM;
	/* Every connection sends (its HELLO reply at least): take the buffer now. */
	uc->sbuf = malloc(SEND_BUF);
	c->out = evbuffer_new();
	if (!uc->sbuf || !c->out) {
		free(uc->sbuf);
		free(uc);
		return -ENOMEM;
	}
	uc->c = c;
	uc->u = u;
	uc->fd = c->fd;
	uc->next = u->all;
	if (u->all)
		u->all->prev = uc;
	u->all = uc;
	c->uring_priv = uc;
	arm_recv(uc);
	return 0;
}

static void u_kick_write(struct conn *c)
{
	if (c->uring_priv)
		arm_send(c->uring_priv);
}

static void u_pause_read(struct conn *c, bool pause)
{
	struct uconn *uc = c->uring_priv;

	if (!uc)
		return;
	uc->paused = pause;
	/* A receive already in flight completes normally; pausing stops re-arming. */
	if (!pause)
		arm_recv(uc);
}

static void u_detach(struct conn *c)
{
	struct uconn *uc = c->uring_priv;

	if (uc) {
		uc->c = NULL;
		c->uring_priv = NULL;
		uc->want_recv = uc->want_send = false;
		if (uc->inflight) {
			/* Make pending operations complete now; free uc on the last one. */
			struct io_uring_sqe *sqe;

			/*
			 * Keep the socket open until then: an SQE still queued (its
			 * submit failed) or running names the descriptor, whose
			 * number must not go to a new connection meanwhile. After
			 * the shutdown, what still runs on it sends nothing.
			 */
			uc->own_fd = true;
			c->fd = -1;
			shutdown(uc->fd, SHUT_RDWR);
			sqe = get_sqe(uc->u);
			if (sqe) {
				io_uring_prep_cancel_fd(sqe, uc->fd, IORING_ASYNC_CANCEL_ALL);
				io_uring_sqe_set_data64(sqe, 0);
				queued(uc->u);
			}
		} else if (uc->u->current != uc) {
			/* Inside its own completion the CQ loop frees it afterwards. */
			uc_free(uc);
		}
	}
	if (c->out)
		evbuffer_free(c->out);
	c->out = NULL;
}

const struct transport_ops uring_transport = {
	.attach = u_attach,
	.kick_write = u_kick_write,
	.pause_read = u_pause_read,
	.detach = u_detach,
};

int uring_io_init(struct srv *s)
{
	struct io_uring_params p = { .flags = IORING_SETUP_SINGLE_ISSUER |
					      IORING_SETUP_COOP_TASKRUN };
	struct uring_io *u = calloc(1, sizeof(*u));
	int r;

	if (!u)
		return -ENOMEM;
	r = io_uring_queue_init_params(URING_ENTRIES, &u->ring, &p);
	if (r == -EINVAL) {
		/* An older kernel without these setup flags: plain ring. */
		memset(&p, 0, sizeof(p));
		r = io_uring_queue_init_params(URING_ENTRIES, &u->ring, &p);
	}
	if (r)
		goto err_free;
	u->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (u->efd < 0) {
		r = -errno;
		goto err_ring;
	}
	r = io_uring_register_eventfd(&u->ring, u->efd);
	if (r)
		goto err_efd;
	u->srv = s;
	u->retry = evtimer_new(s->base, retry_cb, u);
	u->ev = event_new(s->base, u->efd, EV_READ | EV_PERSIST, uring_cb, u);
	if (!u->retry || !u->ev || event_add(u->ev, NULL)) {
		r = -ENOMEM;
		goto err_efd;
	}
	s->uring = u;
	return 0;

err_efd:
	if (u->retry)
		event_free(u->retry);
	if (u->ev)
		event_free(u->ev);
	close(u->efd);
err_ring:
	io_uring_queue_exit(&u->ring);
err_free:
	free(u);
	return r;
}

void uring_io_fini(struct srv *s)
{
	struct uring_io *u = s->uring;

	if (!u)
		return;
	/* Connections are gone; reap what the kernel still returns, then close. */
	for (int tries = 0; tries < 100; tries++) {
		struct io_uring_cqe *cqe;
		struct __kernel_timespec ts = { 0, 1000000 };
		bool any = false;

		/* The cancels of the last detaches, or SQEs a failed submit left. */
		submit_now(u);
		while (io_uring_peek_cqe(&u->ring, &cqe) == 0 ||
		       io_uring_wait_cqe_timeout(&u->ring, &cqe, &ts) == 0) {
			uint64_t data = io_uring_cqe_get_data64(cqe);
			struct uconn *uc = (struct uconn *)(uintptr_t)(data & ~(uint64_t)OP_MASK);

			io_uring_cqe_seen(&u->ring, cqe);
			any = true;
			if (uc && --uc->inflight == 0 && !uc->c)
				uc_free(uc);
		}
		if (!any && !u->queued)
			break;
	}
	event_free(u->retry);
	event_free(u->ev);
	io_uring_queue_exit(&u->ring);
	/*
	 * Connections whose operations never completed (a submit that kept
	 * failing): the kernel cancels them asynchronously after the ring is
	 * closed and might still write into their buffers, so they are not
	 * freed but kept reachable (no leak report) until the process exits.
	 */
	if (u->all) {
		log_warn("io_uring: connection states outlived the ring; kept until exit");
		for (struct uconn *uc = u->all; uc; uc = uc->next)
			if (uc->own_fd)
				close(uc->fd);
		outlived = u->all;
		u->all = NULL;
	}
	close(u->efd);
	free(u);
	s->uring = NULL;
}
