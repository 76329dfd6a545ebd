// SPDX-License-Identifier: MIT
/*
 * persist.c - IOVA-stable restarts: the state journal's records, replies
 * held until durable, restore by replay, checkpoints, the fd store and
 * RESUME.
 *
 * What is journaled is the request itself, with its reply: every request
 * that changed a durable session's state (DEV_OPEN/CLOSE, MEM_IMPORT/FREE,
 * IOVA_ALLOC, BATCH, ODP_REG/DEREG) once it succeeded, a batch always.
 * Restore runs each one again through the same handler, with the recorded
 * reply at hand so that allocations take the recorded handles and IOVAs
 * (struct replay), and compares what the handler answers with what the
 * client was told: a difference is logged and counted, and the restart
 * test fails on it. Replaying requests rather than journaling engine
 * effects keeps one code path for both, so the journal cannot describe a
 * state the handlers could not have produced.
 *
 * A reply to a journaled request is held back, with every later frame of
 * the session, until the journal is durable up to its record. A client
 * therefore never hears of a change the journal could lose; after a crash
 * it resends what it had no answer to, and persist_answered() answers the
 * requests the journal holds from their recorded replies.
 *
 * Memory objects live in the file-descriptor store of systemd (FDSTORE=1)
 * or of iovad-supervise, named "m.<session>.<serial>"; they come back as
 * inherited fds (LISTEN_FDNAMES) and the restored objects are placed at
 * their old phys. A name leaves the store once the object is released and
 * the record that released it is durable.
 *
 * Counters: each commit carries a snapshot of the daemon's counters; a
 * restore sets them to the last snapshot plus what the records after it
 * added (replay counts its own work, which is subtracted).
 */
#include "journal.h"
#include "session.h"

#include <errno.h>
#include <fcntl.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

enum jtype {
	J_SESS = 1,     /* struct j_sess */
	J_END = 2,      /* struct j_end */
	J_REQ = 3,      /* struct j_req + request frame + reply body */
	J_RPY = 4,      /* struct j_req (req_len 0) + reply body: for resent requests only */
	J_COUNTERS = 5, /* struct j_counters + values */
};

struct j_sess {
	uint64_t id;
	uint32_t uid, gid, pid;
	uint16_t version;
	uint16_t reserved;
	uint32_t max_frame, max_batch;
	uint8_t token[PROTO_TOKEN_LEN];
	uint64_t next_serial;
};

struct j_end {
	uint64_t id;
};

#define JREQ_CHECKPOINT 0x1u
struct j_req {
	uint64_t sess;
	uint64_t id;          /* the request's id (J_RPY) */
	uint32_t req_len;
	uint32_t rpy_len;
	uint16_t rpy_type;
	uint16_t flags;       /* JREQ_* */
	uint32_t reserved;
	uint64_t fd_serial;   /* MEM_IMPORT: the object's fd in the store */
};

struct j_counters {
	uint32_t n;
	uint32_t reserved;
};

/* A recorded reply, for a request the client may send again. */
struct cached_rpy {
	uint64_t id;
	uint16_t type;
	uint32_t len;
	uint8_t *body;
};

struct sess_persist {
	struct session *sess;
	RB_ENTRY(sess_persist) link;   /* persist.byid, every durable session */
	uint8_t token[PROTO_TOKEN_LEN];
	bool detached;                 /* restored: waits for RESUME */
	uint64_t next_serial;
	uint64_t hold_seq;             /* frames wait until the journal is durable to here */
	struct evbuffer *held;         /* struct held_hdr + frame, in order */
	struct sess_persist *hnext;    /* in persist.holding */
	bool holding;
	struct cached_rpy *cache;      /* sorted by id */
	uint32_t ncache, cache_cap;
	bool lost_memory;              /* restore: a memory object was not in the fd store */
};

struct held_hdr {
	uint32_t len;   /* of the frame that follows */
	uint32_t ring;
};

struct fd_removal {
	uint64_t seq;
	char name[48];
};

struct stored_fd {
	char *name;
	int fd;
};

static int byid_cmp(const struct sess_persist *a, const struct sess_persist *b)
{
	return a->sess->id < b->sess->id ? -1 : a->sess->id > b->sess->id;
}
RB_HEAD(sp_tree, sess_persist);
RB_GENERATE_STATIC(sp_tree, sess_persist, link, byid_cmp)

#define NCOUNTERS_SRV 11
#define NCOUNTERS_DOM 25  /* struct dom_stats up to free_busy..dma_bytes: the cumulative ones */
#define NCOUNTERS_ODP 13

struct persist {
	struct srv *srv;
	struct persist_settings set;
	struct journal *j;
	struct sp_tree byid;
	struct sess_persist *holding;  /* sessions with held frames */
	struct fd_removal *rm;         /* names to drop from the store once durable */
	uint32_t nrm, rm_cap;
	struct stored_fd *inherited;   /* restore: memfds by name */
	uint32_t ninherited;
	struct event *grace;
	struct event *ckpt_ev;         /* a checkpoint, outside the journal's callbacks */
	bool restoring;
	uint64_t last_ckpt_size;
	/* restore bookkeeping */
	uint64_t *snap, *at_snap;      /* the last snapshot, and replay's own counts then */
	bool have_snap;
	uint64_t restored_sessions, restored_records, mismatches;
};

/* ==== counters ==================================================================== */

static uint32_t ncounters(const struct srv *s)
{
	return NCOUNTERS_SRV + NCOUNTERS_DOM * s->devices.ndoms + NCOUNTERS_ODP;
}

static void odp_total(struct srv *s, struct odp_totals *t)
{
	*t = s->odp_gone;
	for (struct sess_persist *p = RB_MIN(sp_tree, &s->persist->byid); p;
	     p = RB_NEXT(sp_tree, &s->persist->byid, p))
		odp_session_totals(p->sess, t);
	/* Sessions that are not durable live only in conns. */
	for (struct conn *c = s->conns; c; c = c->next)
		if (c->sess && !c->sess->ps)
			odp_session_totals(c->sess, t);
}

static void counters_get(struct srv *s, uint64_t *v)
{
	struct odp_totals t;
	uint32_t k = 0;

	_Static_assert(sizeof(struct srv_stats) == NCOUNTERS_SRV * 8, "srv_stats");
	memcpy(v, &s->stats, sizeof(s->stats));
	k = NCOUNTERS_SRV;
	for (uint32_t d = 0; d < s->devices.ndoms; d++) {
		memcpy(v + k, &s->devices.doms[d]->stats, NCOUNTERS_DOM * 8);
		k += NCOUNTERS_DOM;
	}
	_Static_assert(sizeof(struct odp_counters) == 11 * 8, "odp_counters");
	odp_total(s, &t);
	memcpy(v + k, &t.c, sizeof(t.c));
	v[k + 11] = t.user_faults;
	v[k + 12] = t.user_fault_timeouts;
}

static void counters_set(struct srv *s, const uint64_t *v)
{
	struct odp_totals live = { 0 }, t;
	uint32_t k = NCOUNTERS_SRV;

	memcpy(&s->stats, v, sizeof(s->stats));
	for (uint32_t d = 0; d < s->devices.ndoms; d++) {
		memcpy(&s->devices.doms[d]->stats, v + k, NCOUNTERS_DOM * 8);
		k += NCOUNTERS_DOM;
	}
	/* Restored regions start from zero: what they had counted goes to odp_gone. */
	memcpy(&t.c, v + k, sizeof(t.c));
	t.user_faults = v[k + 11];
	t.user_fault_timeouts = v[k + 12];
	s->odp_gone = (struct odp_totals){ 0 };
	odp_total(s, &live);
	{
		uint64_t *dst = (uint64_t *)&s->odp_gone.c;
		const uint64_t *a = (const uint64_t *)&t.c, *b = (const uint64_t *)&live.c;

		for (int i = 0; i < 11; i++)
			dst[i] = a[i] >= b[i] ? a[i] - b[i] : 0;
	}
	s->odp_gone.user_faults = t.user_faults;
	s->odp_gone.user_fault_timeouts = t.user_fault_timeouts;
}

static void pre_commit(void *arg)
{
	struct persist *p = arg;
	uint32_t n = ncounters(p->srv);
	uint64_t v[NCOUNTERS_SRV + NCOUNTERS_DOM * 64 + NCOUNTERS_ODP];
	struct j_counters jc = { .n = n };

	if (n > sizeof(v) / sizeof(v[0]))
		return;
	counters_get(p->srv, v);
	(void)journal_append(p->j, J_COUNTERS,
			     (struct jpart[]){ { &jc, sizeof(jc) }, { v, n * 8u } }, 2);
}

/* ==== the fd store =================================================================== */

static void fd_name(char *buf, size_t len, uint64_t sess, uint64_t serial)
{
	snprintf(buf, len, "m.%" PRIu64 ".%" PRIu64, sess, serial);
}

static int store_fd(int fd, const char *name)
{
	char msg[96], path[64];
	int r, own;

	/*
	 * systemd keeps one entry per open file description: the same memfd
	 * imported twice would be stored once, under the first name. A
	 * reopened memfd is a description of its own.
	 */
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	own = strncmp(name, "m.", 2) ? -1 : open(path, O_RDWR | O_CLOEXEC);
	snprintf(msg, sizeof(msg), "FDSTORE=1\nFDNAME=%s", name);
	r = sd_pid_notify_with_fds(0, 0, msg, own >= 0 ? &own : &fd, 1);
	if (own >= 0)
		close(own);
	return r < 0 ? r : 0;
}

static void unstore_fd(const char *name)
{
	char msg[96];

	snprintf(msg, sizeof(msg), "FDSTOREREMOVE=1\nFDNAME=%s", name);
	(void)sd_pid_notify(0, 0, msg);
}

int persist_mem_added(struct session *s, struct sess_mem *m)
{
	struct persist *p = s->srv->persist;
	char name[48];

	if (!p || !s->ps)
		return 0;
	if (s->rp) {
		/* Restore: the object came from the store and stays there. */
		m->serial = s->rp->fd_serial;
		if (m->serial >= s->ps->next_serial)
			s->ps->next_serial = m->serial + 1;
		return 0;
	}
	m->serial = s->ps->next_serial++;
	fd_name(name, sizeof(name), s->id, m->serial);
	s->cur_fd_serial = m->serial;
	return store_fd(m->obj->fd, name);
}

void persist_mem_gone(struct session *s, struct sess_mem *m)
{
	struct persist *p = s->srv->persist;
	struct fd_removal *r;

	if (!p || !s->ps || p->restoring || s->srv->stopping)
		return;
	if (p->nrm == p->rm_cap) {
		uint32_t cap = p->rm_cap ? p->rm_cap * 2 : 64;
		struct fd_removal *n = realloc(p->rm, cap * sizeof(*n));

		if (!n)
			return; /* stays in the store: the next restore drops it */
		p->rm = n;
		p->rm_cap = cap;
	}
	r = &p->rm[p->nrm++];
	/* Whatever released it is in the journal no later than the next record. */
	r->seq = journal_last(p->j) + 1;
	fd_name(r->name, sizeof(r->name), s->id, m->serial);
}

bool persist_store_listener(struct srv *s, int fd)
{
	if (!s->persist || !getenv("NOTIFY_SOCKET"))
		return false;
	if (store_fd(fd, "listen")) {
		log_warn("cannot store the listening socket: clients will see ECONNREFUSED "
			 "while the daemon restarts");
		return false;
	}
	return true;
}

/* ==== held replies ======================================================================= */

static void release(struct persist *p, struct sess_persist *sp)
{
	struct session *s = sp->sess;
	bool ring_sent = false, sock_sent = false;

	while (evbuffer_get_length(sp->held) >= sizeof(struct held_hdr)) {
		struct held_hdr hh;
		uint8_t *f;

		evbuffer_copyout(sp->held, &hh, sizeof(hh));
		evbuffer_drain(sp->held, sizeof(hh));
		f = evbuffer_pullup(sp->held, hh.len);
		if (s->conn && !s->conn->dead) {
			if (hh.ring && s->ring) {
				ring_send(s->ring, (const struct proto_hdr *)f,
					  f + sizeof(struct proto_hdr),
					  hh.len - sizeof(struct proto_hdr));
				ring_sent = true;
			} else {
				evbuffer_add(s->conn->out, f, hh.len);
				sock_sent = true;
			}
		}
		evbuffer_drain(sp->held, hh.len);
	}
	(void)p;
	if (ring_sent)
		ring_publish(s->ring);
	if (sock_sent)
		srv_transport(s->srv)->kick_write(s->conn);
	/* It may have stopped reading for them (session_throttled). */
	if (s->conn && !s->conn->dead)
		conn_unthrottle(s->conn);
}

static void durable_cb(void *arg, uint64_t seq)
{
	struct persist *p = arg;
	struct sess_persist **pp = &p->holding;
	uint32_t i, k = 0;

	while (*pp) {
		struct sess_persist *sp = *pp;

		if (sp->hold_seq <= seq) {
			*pp = sp->hnext;
			sp->holding = false;
			release(p, sp);
		} else {
			pp = &sp->hnext;
		}
	}
	for (i = 0; i < p->nrm; i++) {
		if (p->rm[i].seq <= seq)
			unstore_fd(p->rm[i].name);
		else
			p->rm[k++] = p->rm[i];
	}
	p->nrm = k;
	/* Grown well past the last checkpoint: rewrite it from the live state. */
	if (journal_size(p->j) > p->set.checkpoint_bytes &&
	    journal_size(p->j) > 2 * p->last_ckpt_size)
		event_active(p->ckpt_ev, EV_TIMEOUT, 0);
}

static int checkpoint(struct persist *p);

static void ckpt_cb(evutil_socket_t fd, short what, void *arg)
{
	struct persist *p = arg;
	uint64_t before = journal_size(p->j), t0 = now_ns();
	int r;

	(void)fd;
	(void)what;
	if (!p->j || journal_size(p->j) <= p->set.checkpoint_bytes ||
	    journal_size(p->j) <= 2 * p->last_ckpt_size)
		return;
	r = checkpoint(p);
	if (r == -EBUSY)
		return; /* requests keep coming: the next commit tries again */
	if (r) {
		log_err("journal: checkpoint failed: %s; exiting to restart from the durable state",
			strerror(-r));
		_exit(75);
	}
	log_info("journal: checkpoint: %" PRIu64 " -> %" PRIu64 " bytes in %" PRIu64 " us",
		 before, journal_size(p->j), (now_ns() - t0) / 1000u);
}

static void failed_cb(void *arg, int err)
{
	(void)arg;
	/*
	 * The journal can no longer promise anything: die, and let the
	 * supervisor restart from what the file holds. Clients were told only
	 * what is durable, and resend the rest.
	 */
	log_err("journal: commit failed: %s; exiting to restart from the durable state",
		strerror(-err));
	_exit(75); /* EX_TEMPFAIL */
}

static const struct journal_ops jops = {
	.pre_commit = pre_commit,
	.durable = durable_cb,
	.failed = failed_cb,
};

size_t persist_held(const struct session *s)
{
	return s->ps && s->ps->held ? evbuffer_get_length(s->ps->held) : 0;
}

static void replay_compare(struct session *s, const struct proto_hdr *h, const void *body,
			   size_t len);

bool persist_send(struct session *s, bool ring, const struct proto_hdr *h, const void *body,
		  size_t len)
{
	struct persist *p = s->srv->persist;
	struct sess_persist *sp = s->ps;
	struct held_hdr hh = { .len = (uint32_t)(sizeof(*h) + len), .ring = ring };

	if (s->rp) {
		replay_compare(s, h, body, len);
		return true;
	}
	if (!p || !sp)
		return false;
	if (!s->conn)
		return true; /* detached: nobody to tell */
	if (!sp->holding && sp->hold_seq <= journal_durable(p->j))
		return false;
	if (!sp->held && !(sp->held = evbuffer_new()))
		return false; /* out of memory: better early than never */
	evbuffer_add(sp->held, &hh, sizeof(hh));
	evbuffer_add(sp->held, h, sizeof(*h));
	if (len)
		evbuffer_add(sp->held, body, len);
	if (!sp->holding) {
		sp->holding = true;
		sp->hnext = p->holding;
		p->holding = sp;
	}
	return true;
}

/* ==== journaling requests =============================================================== */

static bool journaled(uint16_t cmd)
{
	switch (cmd) {
	case PROTO_CMD_DEV_OPEN:
	case PROTO_CMD_DEV_CLOSE:
	case PROTO_CMD_MEM_IMPORT:
	case PROTO_CMD_MEM_FREE:
	case PROTO_CMD_IOVA_ALLOC:
	case PROTO_CMD_BATCH:
	case PROTO_CMD_ODP_REG:
	case PROTO_CMD_ODP_DEREG:
		return true;
	default:
		return false;
	}
}

static void hold_until(struct session *s, uint64_t seq)
{
	if (seq > s->ps->hold_seq)
		s->ps->hold_seq = seq;
}

void persist_reply(struct session *s, uint16_t type, const void *body, size_t len)
{
	struct persist *p = s->srv->persist;
	uint16_t cmd = type & (uint16_t)~PROTO_RPY;
	struct j_req jr;
	int32_t status;
	uint64_t seq;

	if (!p || !s->ps || s->rp || !s->cur_frame || p->restoring)
		return;
	if (type == PROTO_RPY_ERROR || !(type & PROTO_RPY) || !journaled(cmd) ||
	    len < sizeof(status))
		return;
	memcpy(&status, body, sizeof(status));
	if (status && cmd != PROTO_CMD_BATCH)
		return; /* it changed nothing */
	jr = (struct j_req){ .sess = s->id, .req_len = (uint32_t)s->cur_len,
			     .rpy_len = (uint32_t)len, .rpy_type = type,
			     .fd_serial = cmd == PROTO_CMD_MEM_IMPORT ? s->cur_fd_serial : 0 };
	memcpy(&jr.id, s->cur_frame + offsetof(struct proto_hdr, id), sizeof(jr.id));
	seq = journal_append(p->j, J_REQ,
			     (struct jpart[]){ { &jr, sizeof(jr) }, { s->cur_frame, s->cur_len },
					       { body, len } }, 3);
	if (!seq) {
		log_err("session %" PRIu64 ": journal: out of memory; exiting to restart from "
			"the durable state", s->id);
		_exit(75);
	}
	hold_until(s, seq);
}

static void journal_sess(struct persist *p, struct session *s)
{
	struct j_sess js = { .id = s->id, .uid = s->uid, .gid = s->gid, .pid = (uint32_t)s->pid,
			     .version = s->plim.version, .max_frame = s->plim.max_frame,
			     .max_batch = s->plim.max_batch, .next_serial = s->ps->next_serial };
	uint64_t seq;

	memcpy(js.token, s->ps->token, sizeof(js.token));
	seq = journal_append(p->j, J_SESS, (struct jpart[]){ { &js, sizeof(js) } }, 1);
	if (seq)
		hold_until(s, seq);
}

static struct sess_persist *sp_new(struct persist *p, struct session *s)
{
	struct sess_persist *sp = calloc(1, sizeof(*sp));

	if (!sp)
		return NULL;
	sp->sess = s;
	sp->next_serial = 1;
	s->ps = sp;
	RB_INSERT(sp_tree, &p->byid, sp);
	return sp;
}

static void sp_free(struct persist *p, struct sess_persist *sp)
{
	struct sess_persist **pp;

	if (sp->holding)
		for (pp = &p->holding; *pp; pp = &(*pp)->hnext)
			if (*pp == sp) {
				*pp = sp->hnext;
				break;
			}
	RB_REMOVE(sp_tree, &p->byid, sp);
	if (sp->held)
		evbuffer_free(sp->held);
	for (uint32_t i = 0; i < sp->ncache; i++)
		free(sp->cache[i].body);
	free(sp->cache);
	sp->sess->ps = NULL;
	free(sp);
}

void persist_hello(struct session *s, struct proto_session *tail)
{
	struct persist *p = s->srv->persist;
	uint8_t token[PROTO_TOKEN_LEN];

	memset(tail, 0, sizeof(*tail));
	if (!p || s->plim.version < PROTO_VERSION_RESUME || !sp_new(p, s))
		return;
	if (getrandom(token, sizeof(token), 0) != (ssize_t)sizeof(token)) {
		sp_free(p, s->ps);
		return;
	}
	memcpy(s->ps->token, token, sizeof(token));
	memcpy(tail->token, token, sizeof(token));
	tail->flags = PROTO_SESSION_DURABLE;
	journal_sess(p, s);
}

void persist_session_end(struct session *s)
{
	struct persist *p = s->srv->persist;

	if (!p || !s->ps)
		return;
	if (!p->restoring && !s->srv->stopping && p->j) {
		struct j_end je = { .id = s->id };

		(void)journal_append(p->j, J_END, (struct jpart[]){ { &je, sizeof(je) } }, 1);
	}
	sp_free(p, s->ps);
}

/* ==== answering resent requests ============================================================= */

static struct cached_rpy *cache_find(struct sess_persist *sp, uint64_t id)
{
	uint32_t lo = 0, hi = sp->ncache;

	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;

		if (sp->cache[mid].id < id)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < sp->ncache && sp->cache[lo].id == id ? &sp->cache[lo] : NULL;
}

static int cache_add(struct sess_persist *sp, uint64_t id, uint16_t type, const void *body,
		     size_t len)
{
	struct cached_rpy *c = cache_find(sp, id);
	uint32_t at;

	if (!c) {
		if (sp->ncache == sp->cache_cap) {
			uint32_t cap = sp->cache_cap ? sp->cache_cap * 2 : 64;
			struct cached_rpy *n = realloc(sp->cache, cap * sizeof(*n));

			if (!n)
				return -ENOMEM;
			sp->cache = n;
			sp->cache_cap = cap;
		}
		/* Ids grow: almost always an append. */
		for (at = sp->ncache; at > 0 && sp->cache[at - 1].id > id; at--)
			;
		memmove(sp->cache + at + 1, sp->cache + at,
			(sp->ncache - at) * sizeof(*sp->cache));
		sp->ncache++;
		c = &sp->cache[at];
		c->body = NULL;
	}
	free(c->body);
	c->id = id;
	c->type = type;
	c->len = (uint32_t)len;
	c->body = malloc(len ? len : 1);
	if (!c->body) {
		c->len = 0;
		return -ENOMEM;
	}
	memcpy(c->body, body, len);
	return 0;
}

static void cache_clear(struct sess_persist *sp)
{
	for (uint32_t i = 0; i < sp->ncache; i++)
		free(sp->cache[i].body);
	free(sp->cache);
	sp->cache = NULL;
	sp->ncache = sp->cache_cap = 0;
}

bool persist_answered(struct session *s, const struct proto_req *req, bool ring)
{
	struct sess_persist *sp = s->ps;
	struct cached_rpy *c;

	if (!sp || !sp->ncache)
		return false;
	c = cache_find(sp, req->hdr.id);
	if (!c) {
		/* Past every resent request: the record is no longer needed. */
		if (req->hdr.id > sp->cache[sp->ncache - 1].id)
			cache_clear(sp);
		return false;
	}
	sess_send(s, ring, req->hdr.id, c->type, c->body, c->len);
	return true;
}

/* ==== replay ============================================================================ */

static void replay_compare(struct session *s, const struct proto_hdr *h, const void *body,
			   size_t len)
{
	struct replay *rp = s->rp;
	bool same;

	if (h->id == 0 && h->type != rp->type)
		return; /* an event raised during replay: nobody to tell */
	rp->sent = true;
	if (rp->checkpoint) {
		/* Synthesized: only success, and (for batches) every op's status, count. */
		int32_t st;

		memcpy(&st, body, sizeof(st));
		same = h->type == rp->type && st == 0;
		if (same && h->type == (PROTO_CMD_BATCH | PROTO_RPY)) {
			const struct proto_op_result *a, *b;
			uint32_t n = (uint32_t)((len - sizeof(struct proto_batch_rpy)) /
						sizeof(*a));

			a = (const void *)((const uint8_t *)body + sizeof(struct proto_batch_rpy));
			b = (const void *)(rp->body + sizeof(struct proto_batch_rpy));
			for (uint32_t i = 0; i < n && same; i++)
				same = a[i].status == b[i].status;
		}
	} else if (h->type == (PROTO_CMD_BATCH | PROTO_RPY) && len == rp->len &&
		   h->type == rp->type) {
		/* The flush count depends on the IOTLB's history: compare the ops only. */
		same = !memcmp((const uint8_t *)body + sizeof(struct proto_batch_rpy),
			       rp->body + sizeof(struct proto_batch_rpy),
			       len - sizeof(struct proto_batch_rpy));
	} else {
		same = h->type == rp->type && len == rp->len && !memcmp(body, rp->body, len);
	}
	if (!same) {
		int32_t want = 0, got = 0;

		if (rp->len >= 4)
			memcpy(&want, rp->body, 4);
		if (len >= 4)
			memcpy(&got, body, 4);
		rp->mismatch = true;
		log_err("restore: session %" PRIu64 ": %s answered differently (status %d, "
			"recorded %d)", s->id, proto_cmd_name(h->type & (uint16_t)~PROTO_RPY), got,
			want);
	}
}

static struct sess_persist *find_sess(struct persist *p, uint64_t id)
{
	struct session key_s = { .id = id };
	struct sess_persist key = { .sess = &key_s };

	return RB_FIND(sp_tree, &p->byid, &key);
}

static int inherited_take(struct persist *p, uint64_t sess, uint64_t serial)
{
	char name[48];

	fd_name(name, sizeof(name), sess, serial);
	for (uint32_t i = 0; i < p->ninherited; i++)
		if (p->inherited[i].fd >= 0 && !strcmp(p->inherited[i].name, name)) {
			int fd = p->inherited[i].fd;

			p->inherited[i].fd = -1;
			return fd;
		}
	return -1;
}

static int replay_req(struct persist *p, const struct j_req *jr, const uint8_t *frame,
		      const uint8_t *rpy)
{
	struct sess_persist *sp = find_sess(p, jr->sess);
	struct replay rp = { .type = jr->rpy_type, .body = rpy, .len = jr->rpy_len, .fd = -1,
			     .fd_serial = jr->fd_serial,
			     .checkpoint = !!(jr->flags & JREQ_CHECKPOINT) };
	struct proto_req req;
	struct session *s;
	int r;

	if (!sp) {
		log_err("restore: a request of unknown session %" PRIu64, jr->sess);
		p->mismatches++;
		return 0;
	}
	s = sp->sess;
	r = proto_decode_request(frame, jr->req_len, &s->plim, &req);
	if (r) {
		log_err("restore: session %" PRIu64 ": a recorded %s no longer decodes: %s", s->id,
			proto_cmd_name(req.hdr.type), strerror(-r));
		p->mismatches++;
		return 0;
	}
	if (req.hdr.type == PROTO_CMD_MEM_IMPORT) {
		rp.fd = inherited_take(p, s->id, jr->fd_serial);
		if (rp.fd < 0) {
			/* The store was emptied (an explicit stop before systemd 254): it is gone. */
			log_warn("restore: session %" PRIu64 ": memory object %" PRIu64 " is not in "
				 "the fd store: the session cannot be restored", s->id, jr->fd_serial);
			sp->lost_memory = true;
			return 0;
		}
	}
	if (sp->lost_memory) {
		p->restored_records++;
		return 0;
	}
	s->rp = &rp;
	session_dispatch(s, &req);
	s->rp = NULL;
	if (rp.fd >= 0)
		close(rp.fd);
	if (!rp.sent || rp.mismatch)
		p->mismatches++;
	p->restored_records++;
	if (!rp.checkpoint && cache_add(sp, req.hdr.id, jr->rpy_type, rpy, jr->rpy_len))
		return -ENOMEM;
	return 0;
}

static int restore_rec(void *arg, const struct jrec_hdr *h, const uint8_t *b, size_t len)
{
	struct persist *p = arg;
	struct srv *v = p->srv;

	switch (h->type) {
	case J_SESS: {
		struct j_sess js;
		struct session *s;
		struct sess_persist *sp_upd;

		if (len < sizeof(js))
			return -EBADMSG;
		memcpy(&js, b, sizeof(js));
		/* Again for a session: it was resumed, and negotiated anew. */
		if ((sp_upd = find_sess(p, js.id))) {
			s = sp_upd->sess;
			s->pid = (pid_t)js.pid;
			s->plim.version = js.version;
			s->plim.max_frame = js.max_frame;
			s->plim.max_batch = js.max_batch;
			s->max_frame = js.max_frame;
			return 0;
		}
		s = session_new(v, NULL, (pid_t)js.pid, js.uid, js.gid);
		if (!s || !sp_new(p, s))
			return -ENOMEM;
		RB_REMOVE(sp_tree, &p->byid, s->ps);
		s->id = js.id;
		RB_INSERT(sp_tree, &p->byid, s->ps);
		if (v->next_session_id < js.id)
			v->next_session_id = js.id;
		s->plim.version = js.version;
		s->plim.max_frame = js.max_frame;
		s->plim.max_batch = js.max_batch;
		s->max_frame = js.max_frame;
		memcpy(s->ps->token, js.token, sizeof(js.token));
		s->ps->next_serial = js.next_serial ? js.next_serial : 1;
		s->ps->detached = true;
		return 0;
	}
	case J_END: {
		struct j_end je;
		struct sess_persist *sp;

		if (len < sizeof(je))
			return -EBADMSG;
		memcpy(&je, b, sizeof(je));
		sp = find_sess(p, je.id);
		if (sp)
			session_free(sp->sess);
		return 0;
	}
	case J_REQ:
	case J_RPY: {
		struct j_req jr;

		if (len < sizeof(jr))
			return -EBADMSG;
		memcpy(&jr, b, sizeof(jr));
		if ((uint64_t)jr.req_len + jr.rpy_len > len - sizeof(jr) ||
		    jr.rpy_len > PROTO_FRAME_MAX || (h->type == J_REQ) != (jr.req_len != 0))
			return -EBADMSG;
		if (h->type == J_RPY) {
			struct sess_persist *sp = find_sess(p, jr.sess);

			return sp ? cache_add(sp, jr.id, jr.rpy_type, b + sizeof(jr), jr.rpy_len) :
				    0;
		}
		return replay_req(p, &jr, b + sizeof(jr), b + sizeof(jr) + jr.req_len);
	}
	case J_COUNTERS: {
		struct j_counters jc;

		if (len < sizeof(jc))
			return -EBADMSG;
		memcpy(&jc, b, sizeof(jc));
		if (jc.n != ncounters(v) || len < sizeof(jc) + jc.n * 8ull) {
			/* The device table changed: counters start again. */
			p->have_snap = false;
			return 0;
		}
		memcpy(p->snap, b + sizeof(jc), jc.n * 8ull);
		counters_get(v, p->at_snap);
		p->have_snap = true;
		return 0;
	}
	default:
		log_warn("restore: unknown record type %u skipped", h->type);
		return 0;
	}
}

/* ==== checkpoints ======================================================================= */

struct synth {
	struct persist *p;
	struct session *s;
	uint8_t *frame;
	uint8_t *rpy;
	uint64_t id;
	int err;
};

static void synth_emit(struct synth *y, uint16_t cmd, const void *body, size_t blen,
		       const void *rpy, size_t rlen, uint64_t fd_serial)
{
	struct proto_hdr h;
	struct j_req jr;
	uint8_t *f = y->frame;

	if (y->err)
		return;
	proto_hdr_init(&h, y->s->plim.version, cmd, (uint32_t)(sizeof(h) + blen), ++y->id);
	memcpy(f, &h, sizeof(h));
	memcpy(f + sizeof(h), body, blen);
	jr = (struct j_req){ .sess = y->s->id, .id = h.id, .req_len = (uint32_t)(sizeof(h) + blen),
			     .rpy_len = (uint32_t)rlen, .rpy_type = cmd | PROTO_RPY,
			     .flags = JREQ_CHECKPOINT, .fd_serial = fd_serial };
	if (!journal_append(y->p->j, J_REQ,
			    (struct jpart[]){ { &jr, sizeof(jr) }, { f, jr.req_len }, { rpy, rlen } },
			    3))
		y->err = -EIO;
}

/* A handle of s on device index dev: an open one, or a spare opened (and closed later). */
static uint32_t synth_dev(struct synth *y, uint32_t dev, uint32_t *spare)
{
	struct session *s = y->s;
	struct dev_entry *e = &s->srv->devices.devs[dev];
	uint32_t n = sizeof(s->devs) / sizeof(s->devs[0]);
	struct proto_dev_open q = { 0 };
	struct proto_dev_open_rpy r = { 0 };

	for (uint32_t i = 0; i < n; i++)
		if (s->devs[i] == e)
			return i + 1;
	if (spare[dev])
		return spare[dev];
	for (uint32_t i = 0; i < n; i++) {
		bool used = s->devs[i] != NULL;

		for (uint32_t d = 0; d < s->srv->devices.ndevs && !used; d++)
			used = spare[d] == i + 1;
		if (used)
			continue;
		snprintf(q.name, sizeof(q.name), "%s", e->name);
		r.dev = i + 1;
		synth_emit(y, PROTO_CMD_DEV_OPEN, &q, sizeof(q), &r, sizeof(r), 0);
		spare[dev] = i + 1;
		return i + 1;
	}
	y->err = -EMFILE;
	return 0;
}

static void synth_ops(struct synth *y, struct proto_op *ops, struct proto_op_result *res,
		      uint32_t n)
{
	struct proto_batch b = { .count = n };
	uint8_t *body = y->rpy + PROTO_FRAME_MAX / 2;
	struct proto_batch_rpy br = { .count = n };

	memcpy(body, &b, sizeof(b));
	memcpy(body + sizeof(b), ops, n * sizeof(*ops));
	memcpy(y->rpy, &br, sizeof(br));
	memcpy(y->rpy + sizeof(br), res, n * sizeof(*res));
	synth_emit(y, PROTO_CMD_BATCH, body, sizeof(b) + n * sizeof(*ops), y->rpy,
		   sizeof(br) + n * sizeof(*res), 0);
}

/* A batch under construction. */
struct synth_batch {
	struct proto_op ops[64];
	struct proto_op_result res[64];
	uint32_t n, max;
};

static void sb_add(struct synth *y, struct synth_batch *sb, const struct proto_op *op,
		   uint64_t value)
{
	sb->ops[sb->n] = *op;
	sb->res[sb->n] = (struct proto_op_result){ .status = 0, .value = value };
	if (++sb->n == sb->max) {
		synth_ops(y, sb->ops, sb->res, sb->n);
		sb->n = 0;
	}
}

static void sb_flush(struct synth *y, struct synth_batch *sb)
{
	if (sb->n)
		synth_ops(y, sb->ops, sb->res, sb->n);
	sb->n = 0;
}

static unsigned long link_attrs(uint8_t a)
{
	return ((a & LINK_ATTR_SKIP_CPU_SYNC) ? DMA_ATTR_SKIP_CPU_SYNC : 0) |
	       ((a & LINK_ATTR_MMIO) ? DMA_ATTR_MMIO : 0) |
	       ((a & LINK_ATTR_COHERENT) ? DMA_ATTR_REQUIRE_COHERENT : 0);
}

static void orphan_note(struct sess_mem **v, uint32_t *n, uint32_t max, struct sess_mem *m)
{
	if (m->handle)
		return;
	for (uint32_t i = 0; i < *n; i++)
		if (v[i] == m)
			return;
	if (*n < max)
		v[(*n)++] = m;
}

/* The requests that would rebuild s as it stands. */
static void synth_session(struct persist *p, struct session *s)
{
	struct dev_table *t = &s->srv->devices;
	struct synth y = { .p = p, .s = s, .frame = malloc(PROTO_FRAME_MAX),
			   .rpy = malloc(PROTO_FRAME_MAX) };
	uint32_t *spare = calloc(t->ndevs ? t->ndevs : 1, sizeof(*spare));
	uint32_t ndev = sizeof(s->devs) / sizeof(s->devs[0]);
	struct synth_batch sb = { .max = s->plim.max_batch < 64 ? s->plim.max_batch : 64 };
	struct j_sess js = { .id = s->id, .uid = s->uid, .gid = s->gid, .pid = (uint32_t)s->pid,
			     .version = s->plim.version, .max_frame = s->plim.max_frame,
			     .max_batch = s->plim.max_batch, .next_serial = s->ps->next_serial };
	uint32_t orphan_slot = s->nmem_slots + 1, norphans = 0;
	struct sess_mem **orphans = NULL;

	if (!y.frame || !y.rpy || !spare || !sb.max) {
		p->mismatches++;
		goto out;
	}
	memcpy(js.token, s->ps->token, sizeof(js.token));
	if (!journal_append(p->j, J_SESS, (struct jpart[]){ { &js, sizeof(js) } }, 1))
		goto out;
	/* Open handles, each at its own number (a closed slot stays free). */
	for (uint32_t i = 0; i < ndev; i++) {
		struct proto_dev_open q = { 0 };
		struct proto_dev_open_rpy r = { .dev = i + 1 };

		if (!s->devs[i])
			continue;
		snprintf(q.name, sizeof(q.name), "%s", s->devs[i]->name);
		synth_emit(&y, PROTO_CMD_DEV_OPEN, &q, sizeof(q), &r, sizeof(r), 0);
	}
	/* Memory objects: live ones at their handles, orphans (freed, still pinned) above. */
	for (uint32_t i = 0; i < s->nmem_slots; i++) {
		struct sess_mem *m = s->mems[i];
		struct proto_mem_import q;
		struct proto_mem_import_rpy r;

		if (!m)
			continue;
		q = (struct proto_mem_import){ .offset = m->obj->fd_off, .size = m->obj->size };
		r = (struct proto_mem_import_rpy){ .mem = m->handle, .phys = m->obj->phys,
						   .size = m->obj->size,
			.implicit_slot = (uint32_t)(m->implicit_off >> PROTO_IMPLICIT_SLOT_SHIFT) };
		synth_emit(&y, PROTO_CMD_MEM_IMPORT, &q, sizeof(q), &r, sizeof(r), m->serial);
	}
	/* Orphans: freed by the client, still pinned by links or maps. */
	if (s->pinned_orphans) {
		orphans = calloc(s->pinned_orphans, sizeof(*orphans));
		if (!orphans) {
			y.err = -ENOMEM;
			goto out;
		}
		for (struct sess_state *ss = svec_first(&s->states); ss;
		     ss = svec_next(&s->states, ss))
			for (uint32_t i = 0; i < ss->nlinks; i++)
				orphan_note(orphans, &norphans, s->pinned_orphans, ss->links[i].mem);
		for (struct sess_map *mp = svec_first(&s->maps); mp; mp = svec_next(&s->maps, mp))
			orphan_note(orphans, &norphans, s->pinned_orphans, mp->mem);
	}
	for (uint32_t i = 0; i < norphans; i++) {
		struct sess_mem *m = orphans[i];
		struct proto_mem_import q;
		struct proto_mem_import_rpy r;

		m->handle = orphan_slot++; /* for the records only; cleared below */
		q = (struct proto_mem_import){ .offset = m->obj->fd_off, .size = m->obj->size };
		r = (struct proto_mem_import_rpy){ .mem = m->handle, .phys = m->obj->phys,
						   .size = m->obj->size,
			.implicit_slot = (uint32_t)(m->implicit_off >> PROTO_IMPLICIT_SLOT_SHIFT) };
		synth_emit(&y, PROTO_CMD_MEM_IMPORT, &q, sizeof(q), &r, sizeof(r), m->serial);
	}
	/* IOVA states and their links; a synced record gets its sync. */
	for (struct sess_state *ss = svec_first(&s->states); ss; ss = svec_next(&s->states, ss)) {
		uint32_t dh = synth_dev(&y, ss->dev, spare);
		struct dev_entry *e = &t->devs[ss->dev];
		uint64_t g = e->dom->granule - 1;
		struct proto_iova_alloc q = { .dev = dh, .phys = ss->st.addr & g,
					      .size = dma_iova_size(&ss->st) };
		struct proto_iova_alloc_rpy r = { .addr = ss->st.addr, .size = dma_iova_size(&ss->st) };

		synth_emit(&y, PROTO_CMD_IOVA_ALLOC, &q, sizeof(q), &r, sizeof(r), 0);
		for (uint32_t i = 0; i < ss->nlinks; i++) {
			const struct link_rec *l = &ss->links[i];
			struct proto_op op = { .opcode = PROTO_OP_LINK, .dev = dh,
					       .iova = ss->st.addr, .phys = l->phys,
					       .offset = l->off, .size = l->size, .dir = l->dir,
					       .attrs = link_attrs(l->attrs) };

			sb_add(&y, &sb, &op, 0);
			if (session_range_synced(s, ss, l->off, l->size)) {
				op.opcode = PROTO_OP_SYNC;
				op.phys = 0;
				op.dir = 0;
				op.attrs = 0;
				sb_add(&y, &sb, &op, 0);
			}
		}
		sb_flush(&y, &sb);
	}
	/* Streaming mappings at their DMA addresses. */
	for (struct sess_map *mp = svec_first(&s->maps); mp; mp = svec_next(&s->maps, mp)) {
		struct proto_op op = { .opcode = PROTO_OP_MAP, .dev = synth_dev(&y, mp->dev, spare),
				       .phys = mp->phys, .size = mp->size, .dir = mp->dir,
				       .attrs = mp->attrs };

		sb_add(&y, &sb, &op, mp->dma);
	}
	sb_flush(&y, &sb);
	/* The orphans go as they went. */
	for (uint32_t i = 0; i < norphans; i++) {
		struct proto_mem_ref q = { .mem = orphans[i]->handle };
		struct proto_status r = { 0 };

		synth_emit(&y, PROTO_CMD_MEM_FREE, &q, sizeof(q), &r, sizeof(r), 0);
		orphans[i]->handle = 0;
	}
	/* ODP regions at their IOVAs and handles. */
	for (uint32_t i = 0; i < s->nodp_slots; i++) {
		struct proto_odp_reg q;
		struct proto_odp_reg_rpy r;

		if (!s->odps[i] || !odp_region_request(s, i + 1, &q, &r))
			continue;
		q.dev = synth_dev(&y, q.dev, spare);
		synth_emit(&y, PROTO_CMD_ODP_REG, &q, sizeof(q), &r, sizeof(r), 0);
	}
	/* Spare handles close again. */
	for (uint32_t d = 0; d < t->ndevs; d++) {
		struct proto_dev_ref q = { .dev = spare[d] };
		struct proto_status r = { 0 };

		if (spare[d])
			synth_emit(&y, PROTO_CMD_DEV_CLOSE, &q, sizeof(q), &r, sizeof(r), 0);
	}
	/* Replies a resent request may still ask for. */
	for (uint32_t i = 0; i < s->ps->ncache; i++) {
		const struct cached_rpy *c = &s->ps->cache[i];
		struct j_req jr = { .sess = s->id, .id = c->id, .rpy_len = c->len,
				    .rpy_type = c->type };

		if (!journal_append(p->j, J_RPY,
				    (struct jpart[]){ { &jr, sizeof(jr) }, { c->body, c->len } }, 2))
			y.err = -EIO;
	}
	if (y.err)
		p->mismatches++;
out:
	free(orphans);
	free(spare);
	free(y.frame);
	free(y.rpy);
}

static int checkpoint(struct persist *p)
{
	int r = journal_rewrite_begin(p->j);

	if (r)
		return r;
	for (struct sess_persist *sp = RB_MIN(sp_tree, &p->byid); sp;
	     sp = RB_NEXT(sp_tree, &p->byid, sp))
		synth_session(p, sp->sess);
	pre_commit(p);
	r = journal_rewrite_end(p->j);
	if (!r)
		p->last_ckpt_size = journal_size(p->j);
	return r;
}

/* ==== grace period, resume ================================================================ */

static void grace_cb(evutil_socket_t fd, short what, void *arg)
{
	struct persist *p = arg;
	struct sess_persist *sp, *next;
	uint32_t n = 0;

	(void)fd;
	(void)what;
	for (sp = RB_MIN(sp_tree, &p->byid); sp; sp = next) {
		next = RB_NEXT(sp_tree, &p->byid, sp);
		if (!sp->detached)
			continue;
		log_notice("session %" PRIu64 " (pid %d): not resumed within %u ms: torn down",
			   sp->sess->id, (int)sp->sess->pid, p->set.grace_ms);
		session_free(sp->sess);
		n++;
	}
	if (n)
		srv_notify_status(p->srv);
}

struct session *persist_resume(struct session *s, const struct proto_req *req, int *err)
{
	struct persist *p = s->srv->persist;
	const struct proto_resume *q = &req->u.resume;
	struct sess_persist *sp;
	struct session *t;

	*err = -ENOENT;
	if (!p || !(sp = find_sess(p, q->session_id)))
		return NULL;
	t = sp->sess;
	if (!token_eq(sp->token, q->token) || t->uid != s->uid) {
		*err = -EACCES;
		return NULL;
	}
	if (!sp->detached) {
		*err = -EBUSY;
		return NULL;
	}
	sp->detached = false;
	t->conn = s->conn;
	t->pid = s->pid;
	t->gid = s->gid;
	s->conn->sess = t;
	s->conn = NULL;
	*err = 0;
	return t;
}

/* After RESUME negotiated: the journal learns the session's new limits. */
void persist_resumed(struct session *t)
{
	if (t->srv->persist && t->ps && t->srv->persist->j)
		journal_sess(t->srv->persist, t);
}

/* ==== open, close ========================================================================== */

int persist_open(struct srv *v, const struct persist_settings *set, int nfds, char **names,
		 bool *claimed, char *err, size_t errlen)
{
	struct persist *p = calloc(1, sizeof(*p));
	uint64_t cut = 0, *now = NULL;
	uint32_t dropped = 0, detached = 0;
	int r;

	if (!p)
		return -ENOMEM;
	p->srv = v;
	p->set = *set;
	RB_INIT(&p->byid);
	v->persist = p;
	if (set->require_fdstore && !getenv("NOTIFY_SOCKET")) {
		snprintf(err, errlen, "[persist] state_dir is set, but there is no file-descriptor "
			 "store (NOTIFY_SOCKET): run under systemd (FileDescriptorStoreMax=) or "
			 "iovad-supervise, or set [persist] require_fdstore = no");
		r = -EINVAL;
		goto fail;
	}
	p->inherited = calloc((size_t)nfds + 1, sizeof(*p->inherited));
	p->snap = calloc(ncounters(v), 8);
	p->at_snap = calloc(ncounters(v), 8);
	now = calloc(ncounters(v), 8);
	if (!p->inherited || !p->snap || !p->at_snap || !now) {
		r = -ENOMEM;
		goto fail;
	}
	for (int i = 0; i < nfds; i++)
		if (names && names[i] && !strncmp(names[i], "m.", 2)) {
			p->inherited[p->ninherited].name = names[i];
			p->inherited[p->ninherited].fd = SD_LISTEN_FDS_START + i;
			p->ninherited++;
			claimed[i] = true;
		}
	p->grace = evtimer_new(v->base, grace_cb, p);
	p->ckpt_ev = event_new(v->base, -1, 0, ckpt_cb, p);
	if (!p->grace || !p->ckpt_ev) {
		r = -ENOMEM;
		goto fail;
	}
	r = journal_open(&p->j, set->state_dir, set->sync, v->base, &jops, p, err, errlen);
	if (r)
		goto fail;
	p->restoring = true;
	r = journal_read(p->j, restore_rec, p, &cut);
	p->restoring = false;
	if (r) {
		snprintf(err, errlen, "%s/journal: cannot restore: %s", set->state_dir,
			 strerror(-r));
		goto fail;
	}
	if (cut)
		log_warn("journal: cut a torn tail of %" PRIu64 " bytes (a commit the daemon died in;"
			 " none of it was acknowledged)", cut);
	/* Counters: the last snapshot, plus what the records after it did. */
	if (p->have_snap) {
		uint32_t n = ncounters(v);

		counters_get(v, now);
		for (uint32_t i = 0; i < n; i++)
			now[i] = p->snap[i] + (now[i] >= p->at_snap[i] ? now[i] - p->at_snap[i] : 0);
		counters_set(v, now);
	}
	/* A client whose process is gone will not come back; one whose memory is gone cannot. */
	for (struct sess_persist *sp = RB_MIN(sp_tree, &p->byid), *next; sp; sp = next) {
		next = RB_NEXT(sp_tree, &p->byid, sp);
		p->restored_sessions++;
		if (sp->lost_memory || (sp->sess->pid > 0 && kill(sp->sess->pid, 0) < 0 &&
					errno == ESRCH)) {
			session_free(sp->sess);
			dropped++;
		} else {
			detached++;
		}
	}
	/* Objects nobody refers to any more leave the store. */
	for (uint32_t i = 0; i < p->ninherited; i++)
		if (p->inherited[i].fd >= 0) {
			unstore_fd(p->inherited[i].name);
			close(p->inherited[i].fd);
			p->inherited[i].fd = -1;
		}
	r = checkpoint(p);
	if (r) {
		snprintf(err, errlen, "%s: checkpoint: %s", set->state_dir, strerror(-r));
		goto fail;
	}
	if (detached) {
		struct timeval tv = { .tv_sec = set->grace_ms / 1000,
				      .tv_usec = (set->grace_ms % 1000) * 1000 };

		evtimer_add(p->grace, &tv);
	}
	log_notice("state journal %s/journal: restored %" PRIu64 " sessions (%u waiting to "
		   "resume, %u of exited processes dropped) from %" PRIu64 " requests; %" PRIu64
		   " mismatches", set->state_dir, p->restored_sessions, detached, dropped,
		   p->restored_records, p->mismatches);
	free(now);
	return 0;
fail:
	free(now);
	persist_free(v);
	return r;
}

void persist_close(struct srv *v)
{
	struct persist *p = v->persist;
	struct sess_persist *sp, *next;

	if (!p)
		return;
	if (p->j) {
		struct journal_stats st;

		pre_commit(p);
		(void)journal_flush(p->j);
		journal_stats(p->j, &st);
		log_notice("journal: %" PRIu64 " commits, %" PRIu64 " records, %" PRIu64 " bytes, %"
			   PRIu64 " checkpoints, %" PRIu64 " us per commit", st.commits, st.records,
			   st.bytes, st.checkpoints,
			   st.commits ? st.commit_ns_total / st.commits / 1000u : 0);
		journal_close(p->j);
		p->j = NULL;
	}
	/* Restored sessions nobody resumed: memory only, the journal keeps them. */
	for (sp = RB_MIN(sp_tree, &p->byid); sp; sp = next) {
		next = RB_NEXT(sp_tree, &p->byid, sp);
		if (!sp->sess->conn)
			session_free(sp->sess);
	}
}

void persist_free(struct srv *v)
{
	struct persist *p = v->persist;
	struct sess_persist *sp;

	if (!p)
		return;
	persist_close(v);
	while ((sp = RB_MIN(sp_tree, &p->byid)))
		sp_free(p, sp);
	if (p->grace)
		event_free(p->grace);
	if (p->ckpt_ev)
		event_free(p->ckpt_ev);
	for (uint32_t i = 0; i < p->ninherited; i++)
		if (p->inherited[i].fd >= 0)
			close(p->inherited[i].fd);
	free(p->inherited);
	free(p->rm);
	free(p->snap);
	free(p->at_snap);
	free(p);
	v->persist = NULL;
}

void persist_poll(struct srv *v)
{
	if (v->persist && v->persist->j)
		journal_poll(v->persist->j);
}

uint64_t persist_mismatches(const struct srv *v)
{
	return v->persist ? v->persist->mismatches : 0;
}
