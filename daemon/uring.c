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
 * state is detached from it and freed when its last completion arrives.
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

#include "internal.h"

#define URING_ENTRIES 256
#define RECV_BUF (64u << 10)
#define SEND_BUF (64u << 10)
#define MAX_FDS_PER_MSG 16

enum { OP_RECV = 1, OP_SEND = 2, OP_MASK = 3 };

struct uring_io {
	struct io_uring ring;
	int efd;
	struct event *ev;
	bool in_completion;   /* inside the CQ loop: submit at its end */
	struct uconn *current; /* whose completion is being handled: the loop frees it */
	unsigned int queued;  /* SQEs prepared, not yet submitted */
};

struct uconn {
	struct conn *c;       /* NULL once the server let go of the connection */
	struct uring_io *u;
	int fd;
	int inflight;         /* operations the kernel still owns */
	bool recv_armed, send_armed, paused;
	struct msghdr rmsg;
	struct iovec riov;
	char cbuf[CMSG_SPACE(sizeof(int) * MAX_FDS_PER_MSG)];
	struct msghdr smsg;
	struct iovec siov;
	uint8_t *sbuf;        /* SEND_BUF bytes: what the in-flight sendmsg reads */
	uint8_t rbuf[RECV_BUF];
} __attribute__((aligned(8)));

static void submit_now(struct uring_io *u)
{
	if (u->queued) {
		int r = io_uring_submit(&u->ring);

		if (r < 0)
			log_err("io_uring_submit: %s", strerror(-r));
		u->queued = 0;
	}
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
		log_err("io_uring: no SQE for recvmsg");
		return;
	}
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
	if (!uc->sbuf) {
		uc->sbuf = malloc(SEND_BUF);
		if (!uc->sbuf) {
			log_err("io_uring: no memory for a send buffer");
			return;
		}
	}
	sqe = get_sqe(uc->u);
	if (!sqe) {
		log_err("io_uring: no SQE for sendmsg");
		return;
	}
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
		if (!uc->c && uc->inflight == 0) {
			free(uc->sbuf);
			free(uc);
		}
	}
	u->in_completion = false;
	submit_now(u);
}

/* ---- transport ops ---------------------------------------------------------- */

static int u_attach(struct conn *c)
{
	struct uconn *uc = calloc(1, sizeof(*uc));

	if (!uc)
		return -ENOMEM;
	c->out = evbuffer_new();
	if (!c->out) {
		free(uc->sbuf);
		free(uc);
		return -ENOMEM;
	}
	uc->c = c;
	uc->u = c->srv->uring;
	uc->fd = c->fd;
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
		if (uc->inflight) {
			/* Make pending operations complete now; free uc on the last one. */
			struct io_uring_sqe *sqe = get_sqe(uc->u);

			shutdown(uc->fd, SHUT_RDWR);
			if (sqe) {
				io_uring_prep_cancel_fd(sqe, uc->fd, IORING_ASYNC_CANCEL_ALL);
				io_uring_sqe_set_data64(sqe, 0);
				queued(uc->u);
			}
		} else if (uc->u->current != uc) {
			/* Inside its own completion the CQ loop frees it afterwards. */
			free(uc->sbuf);
			free(uc);
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
	u->ev = event_new(s->base, u->efd, EV_READ | EV_PERSIST, uring_cb, u);
	if (!u->ev || event_add(u->ev, NULL)) {
		r = -ENOMEM;
		goto err_efd;
	}
	s->uring = u;
	return 0;

err_efd:
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
	submit_now(u);
	for (int tries = 0; tries < 100; tries++) {
		struct io_uring_cqe *cqe;
		struct __kernel_timespec ts = { 0, 1000000 };
		bool any = false;

		while (io_uring_peek_cqe(&u->ring, &cqe) == 0 ||
		       io_uring_wait_cqe_timeout(&u->ring, &cqe, &ts) == 0) {
			uint64_t data = io_uring_cqe_get_data64(cqe);
			struct uconn *uc = (struct uconn *)(uintptr_t)(data & ~(uint64_t)OP_MASK);

			io_uring_cqe_seen(&u->ring, cqe);
			any = true;
			if (uc && --uc->inflight == 0 && !uc->c) {
				free(uc->sbuf);
				free(uc);
			}
		}
		if (!any)
			break;
	}
	event_free(u->ev);
	io_uring_queue_exit(&u->ring);
	close(u->efd);
	free(u);
	s->uring = NULL;
}
