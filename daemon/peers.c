// SPDX-License-Identifier: MIT
/*
 * peers.c - remote RDMA peers of the rxe backend ([daemon] rdma_listen).
 *
 * An external RDMA process connects with rdma_cm and then RDMA READs and
 * WRITEs a client's linked ranges at (iova, rkey) (iovad_iova_peer_key). It
 * names the client with the session's peer token, the private data of its
 * connect (struct proto_peer_hello), and the daemon's side of the
 * connection is a passive responder in that session's PD (sess_pdx; rxe_open
 * takes librdmacm's context so that this works) that never posts a work
 * request of its own. An MR is reached only through a QP of its PD, so the
 * peer reaches that session's MRs and no other's, whatever rkey it tries. A
 * connect without a live session's token is rejected. When the session
 * ends, its peers are disconnected before its PD goes.
 *
 * A peer's access outside every MR (not synced, unlinked, another rkey) is
 * refused by rxe with a remote access error, which puts both ends' QPs in
 * ERR. rxe on Linux 6.1 raises no async event for it on the responder, so
 * the state is read back: on a timer while peers are connected, and when the
 * CM reports a disconnect. A QP found in ERR is the device's fault: counted
 * in io_page_faults with a record (reason 1, not present; the IOVA is not
 * known on this side, so 0), and the peer is dropped.
 *
 * Everything runs on the daemon's loop thread: the rdma_cm event channel's fd
 * is non-blocking and read from a libevent callback.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>
#include <event2/event.h>
#include <infiniband/verbs.h>
#include <rdma/rdma_cma.h>

#include "internal.h"
#include "rxe.h"
#include "session.h"

#define PEER_CHECK_MS 20        /* QP state poll while peers are connected */
#define PEER_BACKLOG 16
#define PEER_RD_ATOMIC 4        /* RDMA READs a peer may have outstanding at us */

struct peer {
	struct peer *next;
	struct peers *ps;
	struct rdma_cm_id *id;
	struct ibv_cq *cq;
	struct dev_entry *e;
	const struct session *sess; /* the one whose PD its QP is in */
	uint64_t n;             /* for the log */
	bool up;                /* ESTABLISHED seen */
};

struct peers {
	struct srv *srv;
	struct rdma_event_channel *ch;
	struct rdma_cm_id *lid;
	struct event *ev;
	struct event *timer;
	struct peer *list;
	uint64_t next_n;
	uint64_t faults;
	uint64_t refused; /* connects without a live session's token */
};

/* The rxe device whose (librdmacm) context a connection came in on. */
static struct dev_entry *dev_of(struct peers *ps, const struct ibv_context *verbs)
{
	struct dev_table *t = &ps->srv->devices;

	for (uint32_t i = 0; verbs && i < t->ndevs; i++)
		if (t->devs[i].rxe && rxe_cm_context(t->devs[i].rxe) == verbs)
			return &t->devs[i];
	return NULL;
}

/*
 * The session whose peer token a connect presented (its private data, a
 * struct proto_peer_hello), or NULL. Every live session's token is compared
 * in full, whatever matched before: the time taken says nothing of them.
 */
static struct session *session_of_token(struct peers *ps, const void *pd, size_t len)
{
	struct proto_peer_hello h;
	struct session *found = NULL;

	if (!pd || len < sizeof(h))
		return NULL;
	memcpy(&h, pd, sizeof(h));
	if (h.magic != PROTO_PEER_MAGIC || h.reserved)
		return NULL;
	for (struct conn *c = ps->srv->conns; c; c = c->next) {
		struct session *s = c->sess;

		if (!s || c->dead || !session_hello_done(s))
			continue;
		if (token_eq(s->peer_token, h.token) && !found)
			found = s;
	}
	return found;
}

/* A peer's access the responder refused: the engine never saw it, nor its IOVA. */
static void record_fault(struct dev_entry *e)
{
	dom_dev_dma_account(e->dev, 0, 0,
			    &(struct dom_fault){ .iova = 0, .access = 0,
						 .reason = DOM_FAULT_NOT_PRESENT });
}

static void peer_free(struct peers *ps, struct peer *p, bool disconnect)
{
	for (struct peer **pp = &ps->list; *pp; pp = &(*pp)->next)
		if (*pp == p) {
			*pp = p->next;
			break;
		}
	/* The peer learns it from its CM: DISCONNECTED, or a REJECT before ESTABLISHED. */
	if (disconnect)
		(void)rdma_disconnect(p->id);
	if (p->id->qp)
		rdma_destroy_qp(p->id);
	if (p->cq)
		ibv_destroy_cq(p->cq);
	rdma_destroy_id(p->id);
	free(p);
	if (!ps->list && ps->timer)
		evtimer_del(ps->timer);
}

/* Has the peer's access failed? Its responder QP is in ERR then (or cannot be read). */
static bool peer_failed(struct peer *p)
{
	struct ibv_qp_init_attr ia;
	struct ibv_qp_attr a;

	if (!p->id->qp)
		return false;
	if (ibv_query_qp(p->id->qp, &a, IBV_QP_STATE, &ia))
		return true;
	return a.qp_state == IBV_QPS_ERR;
}

static void peer_fault(struct peers *ps, struct peer *p, const char *when)
{
	ps->faults++;
	record_fault(p->e);
	log_info("rdma peer %" PRIu64 " on %s: remote access error (%s): fault recorded, "
		 "peer dropped", p->n, p->e->name, when);
}

static void check_cb(evutil_socket_t fd, short what, void *arg)
{
	struct peers *ps = arg;
	const struct timeval tv = { 0, PEER_CHECK_MS * 1000 };

	(void)fd;
	(void)what;
	for (struct peer *p = ps->list, *next; p; p = next) {
		next = p->next;
		if (p->up && peer_failed(p)) {
			peer_fault(ps, p, "QP in error");
			peer_free(ps, p, true);
		}
	}
	if (ps->list)
		evtimer_add(ps->timer, &tv);
}

static struct peer *peer_of(struct peers *ps, const struct rdma_cm_id *id)
{
	for (struct peer *p = ps->list; p; p = p->next)
		if (p->id == id)
			return p;
	return NULL;
}

/*
 * A connection request: a QP in the device's PD with room for nothing of its
 * own (the peer's READs and WRITEs need no WR on this side), accepted with
 * enough responder resources for the peer's outstanding READs.
 * Return: 0, or -errno (the caller rejects and destroys the id).
 */
static int peer_accept(struct peers *ps, struct rdma_cm_id *id, struct session *sess)
{
	struct rdma_conn_param cp = { .responder_resources = PEER_RD_ATOMIC,
				      .initiator_depth = PEER_RD_ATOMIC, .rnr_retry_count = 7 };
	const struct timeval tv = { 0, PEER_CHECK_MS * 1000 };
	struct ibv_qp_init_attr qa;
	struct dev_entry *e = dev_of(ps, id->verbs);
	struct rxe_pdx *x;
	struct peer *p;
	int r;

	if (!e) {
		log_warn("rdma peer: connection on %s, which is no rxe device of ours: rejected",
			 id->verbs ? ibv_get_device_name(id->verbs->device) : "no device");
		return -ENODEV;
	}
	if (!sess) {
		ps->refused++;
		log_info("rdma peer on %s: no live session's peer token in its connect: rejected",
			 e->name);
		return -EACCES;
	}
	r = sess_pdx(sess, e, &x);
	if (r)
		return r;
	p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	p->ps = ps;
	p->id = id;
	p->e = e;
	p->sess = sess;
	p->n = ++ps->next_n;
	errno = 0;
	p->cq = ibv_create_cq(id->verbs, 2, NULL, NULL, 0);
	if (!p->cq) {
		r = errno ? -errno : -ENOMEM;
		log_warn("rdma peer %" PRIu64 " on %s: cannot create a CQ: %s", p->n, e->name,
			 strerror(-r));
		free(p);
		return r;
	}
	memset(&qa, 0, sizeof(qa));
	qa.qp_type = IBV_QPT_RC;
	qa.send_cq = qa.recv_cq = p->cq;
	qa.cap.max_send_wr = qa.cap.max_recv_wr = 1;
	qa.cap.max_send_sge = qa.cap.max_recv_sge = 1;
	if (rdma_create_qp(id, rxe_pdx_pd(x), &qa)) {
		r = errno ? -errno : -ENOMEM;
		log_warn("rdma peer %" PRIu64 " on %s: cannot create a QP in its PD: %s", p->n,
			 e->name, strerror(-r));
		ibv_destroy_cq(p->cq);
		free(p);
		return r;
	}
	if (rdma_accept(id, &cp)) {
		r = errno ? -errno : -EIO;
		log_warn("rdma peer %" PRIu64 " on %s: rdma_accept: %s", p->n, e->name,
			 strerror(-r));
		rdma_destroy_qp(id);
		ibv_destroy_cq(p->cq);
		free(p);
		return r;
	}
	p->next = ps->list;
	ps->list = p;
	if (!evtimer_pending(ps->timer, NULL))
		evtimer_add(ps->timer, &tv);
	return 0;
}

static void cm_cb(evutil_socket_t fd, short what, void *arg)
{
	struct peers *ps = arg;
	struct rdma_cm_event *ev;

	(void)fd;
	(void)what;
	/* Non-blocking channel: EAGAIN once every queued event is read. */
	while (!rdma_get_cm_event(ps->ch, &ev)) {
		enum rdma_cm_event_type type = ev->event;
		struct rdma_cm_id *id = ev->id;
		struct peer *p = type == RDMA_CM_EVENT_CONNECT_REQUEST ? NULL : peer_of(ps, id);
		struct session *sess = NULL;
		int r;

		/* The private data is the event's: read before the ack frees it. */
		if (type == RDMA_CM_EVENT_CONNECT_REQUEST)
			sess = session_of_token(ps, ev->param.conn.private_data,
						ev->param.conn.private_data_len);
		/* Acked before any destroy: rdma_destroy_id waits for its events' acks. */
		rdma_ack_cm_event(ev);
		switch (type) {
		case RDMA_CM_EVENT_CONNECT_REQUEST:
			r = peer_accept(ps, id, sess);
			if (r) {
				(void)rdma_reject(id, NULL, 0);
				rdma_destroy_id(id);
			}
			break;
		case RDMA_CM_EVENT_ESTABLISHED:
			if (p) {
				p->up = true;
				log_info("rdma peer %" PRIu64
					 " on %s: connected to session %" PRIu64,
					 p->n, p->e->name, session_id(p->sess));
			}
			break;
		case RDMA_CM_EVENT_DISCONNECTED:
		case RDMA_CM_EVENT_CONNECT_ERROR:
		case RDMA_CM_EVENT_UNREACHABLE:
		case RDMA_CM_EVENT_REJECTED:
		case RDMA_CM_EVENT_TIMEWAIT_EXIT:
			if (!p)
				break;
			/* A peer that saw a remote access error disconnects: our QP tells. */
			if (p->up && peer_failed(p))
				peer_fault(ps, p, "disconnect after it");
			else
				log_info("rdma peer %" PRIu64 " on %s: %s", p->n, p->e->name,
					 rdma_event_str(type));
			peer_free(ps, p, false);
			break;
		case RDMA_CM_EVENT_DEVICE_REMOVAL:
			log_warn("rdma_listen: the RDMA device went away");
			break;
		default:
			break;
		}
	}
	if (errno != EAGAIN && errno != EWOULDBLOCK)
		log_warn("rdma_listen: rdma_get_cm_event: %s", strerror(errno));
}

int peers_start(struct srv *s, const char *host, uint16_t port, char *err, size_t errlen)
{
	struct sockaddr_storage ss = { 0 };
	struct peers *ps;
	int r, fl;

	if (strchr(host, ':')) {
		struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;

		a->sin6_family = AF_INET6;
		a->sin6_port = htons(port);
		r = inet_pton(AF_INET6, host, &a->sin6_addr) == 1 ? 0 : -EINVAL;
	} else {
		struct sockaddr_in *a = (struct sockaddr_in *)&ss;

		a->sin_family = AF_INET;
		a->sin_port = htons(port);
		r = inet_pton(AF_INET, host, &a->sin_addr) == 1 ? 0 : -EINVAL;
	}
	if (r) {
		snprintf(err, errlen, "rdma_listen: bad address %s", host);
		return r;
	}
	ps = calloc(1, sizeof(*ps));
	if (!ps) {
		snprintf(err, errlen, "rdma_listen: out of memory");
		return -ENOMEM;
	}
	ps->srv = s;
	s->peers = ps;
	errno = 0;
	ps->ch = rdma_create_event_channel();
	if (!ps->ch) {
		r = errno ? -errno : -ENODEV;
		snprintf(err, errlen, "rdma_listen: rdma_create_event_channel: %s (rdma_ucm loaded?)",
			 strerror(-r));
		goto fail;
	}
	fl = fcntl(ps->ch->fd, F_GETFL);
	if (fl < 0 || fcntl(ps->ch->fd, F_SETFL, fl | O_NONBLOCK) < 0) {
		r = -errno;
		snprintf(err, errlen, "rdma_listen: non-blocking event channel: %s", strerror(-r));
		goto fail;
	}
	if (rdma_create_id(ps->ch, &ps->lid, ps, RDMA_PS_TCP)) {
		r = -errno;
		snprintf(err, errlen, "rdma_listen: rdma_create_id: %s", strerror(-r));
		goto fail;
	}
	if (rdma_bind_addr(ps->lid, (struct sockaddr *)&ss)) {
		r = -errno;
		snprintf(err, errlen, "rdma_listen: bind %s:%u: %s", host, port, strerror(-r));
		goto fail;
	}
	/* A specific address belongs to one RDMA device: it must be one of ours. */
	if (ps->lid->verbs && !dev_of(ps, ps->lid->verbs)) {
		r = -EADDRNOTAVAIL;
		snprintf(err, errlen, "rdma_listen: %s belongs to RDMA device %s, which no device "
			 "with backend = rxe uses (or rdma_cm is not usable there)", host,
			 ibv_get_device_name(ps->lid->verbs->device));
		goto fail;
	}
	if (rdma_listen(ps->lid, PEER_BACKLOG)) {
		r = -errno;
		snprintf(err, errlen, "rdma_listen: listen on %s:%u: %s", host, port, strerror(-r));
		goto fail;
	}
	ps->ev = event_new(s->base, ps->ch->fd, EV_READ | EV_PERSIST, cm_cb, ps);
	ps->timer = evtimer_new(s->base, check_cb, ps);
	if (!ps->ev || !ps->timer || event_add(ps->ev, NULL)) {
		r = -ENOMEM;
		snprintf(err, errlen, "rdma_listen: cannot watch the event channel");
		goto fail;
	}
	log_notice("rdma_listen: remote peers on %s:%u", host, port);
	return 0;
fail:
	peers_stop(s);
	return r;
}

void peers_stop(struct srv *s)
{
	struct peers *ps = s->peers;

	if (!ps)
		return;
	while (ps->list)
		peer_free(ps, ps->list, true);
	if (ps->ev)
		event_free(ps->ev);
	if (ps->timer)
		event_free(ps->timer);
	if (ps->lid)
		rdma_destroy_id(ps->lid);
	if (ps->ch)
		rdma_destroy_event_channel(ps->ch);
	if (ps->faults)
		log_notice("rdma_listen: %" PRIu64 " peer access fault(s) in all", ps->faults);
	if (ps->refused)
		log_notice("rdma_listen: %" PRIu64 " connect(s) refused for want of a session's "
			   "peer token",
			   ps->refused);
	free(ps);
	s->peers = NULL;
}

void peers_session_gone(struct srv *v, const struct session *s)
{
	struct peers *ps = v->peers;

	if (!ps)
		return;
	for (struct peer *p = ps->list, *next; p; p = next) {
		next = p->next;
		if (p->sess != s)
			continue;
		log_info("rdma peer %" PRIu64 " on %s: session %" PRIu64 " ended: disconnected",
			 p->n, p->e->name, session_id(s));
		peer_free(ps, p, true);
	}
}
