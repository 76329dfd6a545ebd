// SPDX-License-Identifier: MIT
/*
 * odp.c - libiovad's on-demand paging calls (protocol version 2): regions,
 * prefetch, invalidation, discard, counters, and user-handled faults.
 *
 * User faults: the daemon sends a PROTO_EVT_FAULT frame (id 0) when a device
 * access needs a page of an IOVAD_ODP_USER_FAULTS region, parks the access,
 * and waits for FAULT_DONE. The reader queues the event (odp_event_locked,
 * under the lock, inside dispatch) and makes the event fd readable. Then:
 * - a fault whose region has a handler is taken by odp_run_faults(), which
 *   iovad_process() calls, and conn_wait() calls between reads, so whichever
 *   thread is waiting for a reply runs it (no lock, no reader role): a
 *   single-threaded client waiting for its own parked access answers the
 *   fault from inside that very call;
 * - a fault whose region has no handler waits for iovad_odp_fault_next();
 * - a fault of a region we do not know (deregistered meanwhile) is answered
 *   -EFAULT by the next odp_run_faults(), so the daemon is not left waiting
 *   for its timeout.
 * Handlers may call anything, blocking calls included; a handler's own
 * waits run further handlers, up to FAULT_DEPTH_MAX deep, beyond which the
 * faults are left to other threads (or to the outer handler's caller) so a
 * fault storm cannot grow the stack without bound.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

_Static_assert(IOVAD_ACCESS_LOCAL_READ == PROTO_ODP_ACCESS_LOCAL_READ &&
		       IOVAD_ACCESS_DEVICE_READ == PROTO_ODP_ACCESS_DEVICE_READ &&
		       IOVAD_ACCESS_DEVICE_WRITE == PROTO_ODP_ACCESS_DEVICE_WRITE,
	       "access rights are the wire's");
_Static_assert(IOVAD_ODP_IMPLICIT == PROTO_ODP_IMPLICIT &&
		       IOVAD_ODP_USER_FAULTS == PROTO_ODP_USER_FAULTS,
	       "region flags are the wire's");
_Static_assert((unsigned int)IOVAD_ADVISE_PREFETCH == PROTO_ADVISE_PREFETCH &&
		       (unsigned int)IOVAD_ADVISE_PREFETCH_WRITE == PROTO_ADVISE_PREFETCH_WRITE &&
		       (unsigned int)IOVAD_ADVISE_PREFETCH_NO_FAULT ==
			       PROTO_ADVISE_PREFETCH_NO_FAULT,
	       "advice is the wire's");
_Static_assert(IOVAD_ADVISE_FLAG_FLUSH == PROTO_ADVISE_FLAG_FLUSH, "advise flags are the wire's");

/* Nested handler runs per thread (a handler's wait runs handlers, and so on). */
#define FAULT_DEPTH_MAX 4

static _Thread_local unsigned int fault_depth;

/* ---- requests ---- */

/* One request with a plain reply body of rpy_len bytes (status first). */
static int odp_rpc(struct iovad *c, uint16_t cmd, const void *body, size_t blen, void *rpy,
		   size_t rpy_len)
{
	struct pending p;
	int r;

	r = pending_init(&p);
	if (r)
		return r;
	p.rpy = rpy;
	p.rpy_len = rpy_len;
	r = conn_call(c, &p, cmd, body, blen, NULL, 0, -1);
	pending_destroy(&p);
	return r;
}

static int odp_status_rpc(struct iovad *c, uint16_t cmd, const void *body, size_t blen)
{
	struct proto_status rpy;

	return odp_rpc(c, cmd, body, blen, &rpy, sizeof(rpy));
}

/* The ODP messages exist from PROTO_VERSION_ODP on; an older daemon would close on them. */
static bool odp_capable(const struct iovad *c)
{
	return c->version >= PROTO_VERSION_ODP;
}

/*
 * Answer a fault without waiting for the reply: the runner answering for an
 * unknown region has nothing to do with the status, and must not sit in a
 * round trip per fault. The reply lands in an orphan, which frees itself.
 */
static void fault_reject(struct iovad *c, uint64_t fault_id)
{
	struct proto_fault_done req = { .fault_id = fault_id, .status = -EFAULT };
	struct pending *p;
	int r;

	p = malloc(sizeof(*p));
	if (!p)
		return; /* the daemon times the fault out */
	if (pending_init(p)) {
		free(p);
		return;
	}
	p->rpy_len = sizeof(struct proto_status);
	r = conn_send(c, p, PROTO_CMD_FAULT_DONE, &req, sizeof(req), NULL, 0, -1);
	pthread_mutex_lock(&c->lock);
	/* Failed or already answered: completed and not an orphan, so still ours to free. */
	if (r || p->done) {
		pthread_mutex_unlock(&c->lock);
		pending_destroy(p);
		free(p);
		return;
	}
	p->orphan = true;
	/* req is on this stack: a reconnect sends a copy again. */
	pending_keep_locked(c, p);
	pthread_mutex_unlock(&c->lock);
}

/* ---- the fault queue ---- */

void odp_registered_locked(struct iovad *c, struct iovad_odp *odp, const void *rpy)
{
	struct proto_odp_reg_rpy r;

	memcpy(&r, rpy, sizeof(r));
	odp->handle = r.odp;
	odp->iova = r.iova;
	odp->size = r.size;
	ilist_add_tail(&c->odps, &odp->node);
}

static struct iovad_odp *odp_find_locked(struct iovad *c, uint32_t handle)
{
	for (struct ilist *n = c->odps.next; n != &c->odps; n = n->next) {
		struct iovad_odp *o = ilist_entry(n, struct iovad_odp, node);

		if (o->handle == handle)
			return o;
	}
	return NULL;
}

int odp_event_locked(struct iovad *c, const uint8_t *frame, size_t len)
{
	struct proto_evt_fault ev;
	struct odp_evt *e;
	uint64_t one = 1;
	int r;

	r = proto_decode_event(frame, len, c->version, c->max_frame, &ev);
	if (r)
		return r;
	e = calloc(1, sizeof(*e));
	/*
	 * Nothing to be done about it here (no lock may be dropped in dispatch):
	 * the daemon times the fault out and the access fails with -ETIMEDOUT.
	 */
	if (!e)
		return 0;
	e->ev = ev;
	e->odp = odp_find_locked(c, ev.odp);
	ilist_add_tail(&c->faults, &e->node);
	/* Wake an event loop: iovad_process runs handlers, iovad_odp_fault_next takes the rest. */
	(void)!write(c->evfd, &one, sizeof(one));
	return 0;
}

/* A fault for a handler runner: its region has a handler, or it has no region. */
static bool evt_runnable(const struct odp_evt *e)
{
	return !e->odp || e->odp->cb;
}

bool odp_faults_runnable_locked(const struct iovad *c)
{
	for (const struct ilist *n = c->faults.next; n != &c->faults; n = n->next)
		if (evt_runnable(ilist_entry(n, const struct odp_evt, node)))
			return true;
	return false;
}

bool odp_may_run_faults(void)
{
	return fault_depth < FAULT_DEPTH_MAX;
}

static void evt_to_fault(const struct odp_evt *e, struct iovad_odp_fault *f)
{
	*f = (struct iovad_odp_fault){
		.id = e->ev.fault_id,
		.odp = e->odp,
		.offset = e->ev.offset,
		.len = (size_t)e->ev.len,
		.access = e->ev.access,
		.iova = e->ev.iova,
	};
}

int odp_run_faults(struct iovad *c)
{
	unsigned int budget = 0;
	int n = 0;

	if (!odp_may_run_faults())
		return 0;
	fault_depth++;
	pthread_mutex_lock(&c->lock);
	/*
	 * Only as many as are queued now: a handler whose answer lets the
	 * device fault again must not keep this caller here for ever.
	 */
	for (struct ilist *i = c->faults.next; i != &c->faults; i = i->next)
		budget++;
	while (budget--) {
		struct odp_evt *e = NULL;
		struct iovad_odp_fault f;
		iovad_odp_fault_cb cb;
		void *arg;

		for (struct ilist *i = c->faults.next; i != &c->faults; i = i->next) {
			struct odp_evt *q = ilist_entry(i, struct odp_evt, node);

			if (evt_runnable(q)) {
				e = q;
				break;
			}
		}
		if (!e)
			break;
		ilist_del(&e->node);
		/* Taken under the lock: the handler may be changed or the region freed after. */
		cb = e->odp ? e->odp->cb : NULL;
		arg = e->odp ? e->odp->cb_arg : NULL;
		evt_to_fault(e, &f);
		pthread_mutex_unlock(&c->lock);
		if (cb) {
			cb(&f, arg);
			n++;
		} else {
			fault_reject(c, f.id);
		}
		free(e);
		pthread_mutex_lock(&c->lock);
	}
	pthread_mutex_unlock(&c->lock);
	fault_depth--;
	return n;
}

void odp_faults_drop_locked(struct iovad *c)
{
	while (!ilist_empty(&c->faults)) {
		struct odp_evt *e = ilist_entry(c->faults.next, struct odp_evt, node);

		ilist_del(&e->node);
		free(e);
	}
}

/* ---- regions ---- */

int iovad_odp_reg(struct iovad_dev *d, struct iovad_mem *mem, uint64_t offset, size_t len,
		  uint32_t access, uint32_t flags, struct iovad_odp **ret)
{
	struct proto_odp_reg req = { 0 };
	struct proto_odp_reg_rpy rpy;
	struct iovad_odp *odp;
	struct pending p;
	struct iovad *c;
	int r;

	if (!d || !ret || (flags & ~PROTO_ODP_FLAGS) || (access & ~PROTO_ODP_ACCESS))
		return -EINVAL;
	c = d->c;
	if (flags & IOVAD_ODP_IMPLICIT) {
		if (mem || offset)
			return -EINVAL;
	} else {
		if (!mem)
			return -EINVAL;
		if (mem->c != c)
			return -EBADF;
	}
	if (!odp_capable(c))
		return -EOPNOTSUPP;
	req.dev = d->handle;
	req.mem = mem ? mem->handle : 0;
	req.offset = offset;
	req.len = len;
	req.access = access;
	req.flags = flags;

	odp = calloc(1, sizeof(*odp));
	if (!odp)
		return -ENOMEM;
	ilist_init(&odp->node);
	odp->c = c;
	odp->flags = flags;
	odp->access = access;
	odp->mem_handle = req.mem;
	odp->offset = offset;
	r = pending_init(&p);
	if (r)
		goto err_free;
	p.rpy = &rpy;
	p.rpy_len = sizeof(rpy);
	/* Listed by conn.c as the reply is dispatched: a fault may follow right behind it. */
	p.odp = odp;
	r = conn_call(c, &p, PROTO_CMD_ODP_REG, &req, sizeof(req), NULL, 0, -1);
	pending_destroy(&p);
	if (r)
		goto err_free;
	*ret = odp;
	return 0;

err_free:
	free(odp);
	return r;
}

int iovad_odp_dereg(struct iovad_odp *odp)
{
	struct proto_odp_ref req = { 0 };
	struct iovad *c;
	int r;

	if (!odp)
		return 0;
	c = odp->c;
	req.odp = odp->handle;
	pthread_mutex_lock(&c->lock);
	/*
	 * Unlisted first: a fault arriving from now on is answered -EFAULT
	 * instead of reaching a handler of a region on its way out. Those
	 * already queued lose their region the same way.
	 */
	ilist_del(&odp->node);
	for (struct ilist *n = c->faults.next; n != &c->faults; n = n->next) {
		struct odp_evt *e = ilist_entry(n, struct odp_evt, node);

		if (e->odp == odp)
			e->odp = NULL;
	}
	pthread_mutex_unlock(&c->lock);
	/* The handle goes whatever the daemon says (or if it is gone: the session went with it). */
	r = odp_status_rpc(c, PROTO_CMD_ODP_DEREG, &req, sizeof(req));
	free(odp);
	return r;
}

uint64_t iovad_odp_iova(const struct iovad_odp *odp)
{
	return odp ? odp->iova : 0;
}

size_t iovad_odp_size(const struct iovad_odp *odp)
{
	return odp ? (size_t)odp->size : 0;
}

uint64_t iovad_odp_mem_iova(const struct iovad_odp *odp, const struct iovad_mem *mem)
{
	uint64_t off;

	if (!odp || !mem || mem->c != odp->c)
		goto inval;
	if (!(odp->flags & IOVAD_ODP_IMPLICIT)) {
		/* Region offset 0 is the object's byte offset: byte 0 sits offset below it. */
		if (mem->handle != odp->mem_handle)
			goto inval;
		return odp->iova - odp->offset;
	}
	off = (uint64_t)mem->implicit_slot << PROTO_IMPLICIT_SLOT_SHIFT;
	/* A region smaller than the client's implicit space does not reach every object. */
	if (off >= odp->size)
		goto inval;
	return odp->iova + off;

inval:
	errno = EINVAL;
	return 0;
}

int iovad_odp_advise(struct iovad_odp *odp, enum iovad_odp_advice advice, uint64_t offset,
		     size_t len, uint32_t flags)
{
	struct proto_odp_range req = { 0 };

	if (!odp || (unsigned int)advice > PROTO_ADVISE_MAX || (flags & ~PROTO_ADVISE_FLAG_FLUSH))
		return -EINVAL;
	req.odp = odp->handle;
	req.advice = (uint32_t)advice;
	req.flags = flags;
	req.offset = offset;
	req.len = len;
	return odp_status_rpc(odp->c, PROTO_CMD_ODP_ADVISE, &req, sizeof(req));
}

int iovad_odp_invalidate(struct iovad_odp *odp, uint64_t offset, size_t len)
{
	struct proto_odp_range req = { 0 };

	if (!odp)
		return -EINVAL;
	req.odp = odp->handle;
	req.offset = offset;
	req.len = len;
	return odp_status_rpc(odp->c, PROTO_CMD_ODP_INVALIDATE, &req, sizeof(req));
}

int iovad_mem_discard(struct iovad_mem *mem, uint64_t offset, size_t len)
{
	struct proto_mem_range req = { 0 };

	if (!mem)
		return -EINVAL;
	if (!odp_capable(mem->c))
		return -EOPNOTSUPP;
	req.mem = mem->handle;
	req.offset = offset;
	req.len = len;
	/* The daemon punches the hole in the shared file: our mapping reads zeros too. */
	return odp_status_rpc(mem->c, PROTO_CMD_MEM_DISCARD, &req, sizeof(req));
}

/* ---- counters ---- */

static int odp_stats_rpc(struct iovad *c, uint32_t handle, struct iovad_odp_stats *ret)
{
	struct proto_odp_ref req = { .odp = handle };
	struct proto_odp_stats_rpy rpy;
	const struct proto_odp_counters *s = &rpy.c;
	int r;

	if (!odp_capable(c))
		return -EOPNOTSUPP;
	r = odp_rpc(c, PROTO_CMD_ODP_STATS, &req, sizeof(req), &rpy, sizeof(rpy));
	if (r)
		return r;
	/* Field by field: the public struct may grow or reorder independently of the wire. */
	*ret = (struct iovad_odp_stats){
		.size = sizeof(*ret),
		.page_faults = s->page_faults,
		.page_faults_handled = s->page_faults_handled,
		.page_invalidations = s->page_invalidations,
		.page_invalidations_handled = s->page_invalidations_handled,
		.page_prefetch = s->page_prefetch,
		.fault_errors = s->fault_errors,
		.fault_retries = s->fault_retries,
		.perm_upgrades = s->perm_upgrades,
		.syncs = s->syncs,
		.flushes = s->flushes,
		.user_faults = s->user_faults,
		.user_fault_timeouts = s->user_fault_timeouts,
		.mapped_bytes = s->mapped_bytes,
		.fault_count = s->fault_count,
		.fault_p50_ns = s->fault_p50_ns,
		.fault_p99_ns = s->fault_p99_ns,
	};
	return 0;
}

int iovad_odp_stats(struct iovad_odp *odp, struct iovad_odp_stats *ret)
{
	if (!odp || !ret)
		return -EINVAL;
	return odp_stats_rpc(odp->c, odp->handle, ret);
}

int iovad_odp_stats_total(struct iovad *c, struct iovad_odp_stats *ret)
{
	if (!c || !ret)
		return -EINVAL;
	return odp_stats_rpc(c, 0, ret);
}

/* ---- user faults ---- */

int iovad_odp_set_fault_handler(struct iovad_odp *odp, iovad_odp_fault_cb cb, void *arg)
{
	struct iovad *c;
	uint64_t one = 1;
	bool wake;

	if (!odp || !(odp->flags & IOVAD_ODP_USER_FAULTS))
		return -EINVAL;
	c = odp->c;
	pthread_mutex_lock(&c->lock);
	odp->cb = cb;
	odp->cb_arg = arg;
	/* Faults queued for iovad_odp_fault_next() are the handler's now: get them run. */
	wake = cb && odp_faults_runnable_locked(c);
	pthread_mutex_unlock(&c->lock);
	if (wake)
		(void)!write(c->evfd, &one, sizeof(one));
	return 0;
}

int iovad_odp_fault_next(struct iovad *c, struct iovad_odp_fault *ret)
{
	int r = -EAGAIN;

	if (!c || !ret)
		return -EINVAL;
	pthread_mutex_lock(&c->lock);
	for (struct ilist *n = c->faults.next; n != &c->faults; n = n->next) {
		struct odp_evt *e = ilist_entry(n, struct odp_evt, node);

		if (evt_runnable(e))
			continue;
		ilist_del(&e->node);
		evt_to_fault(e, ret);
		free(e);
		r = 0;
		break;
	}
	if (r && c->dead)
		r = -ENOTCONN;
	pthread_mutex_unlock(&c->lock);
	return r;
}

int iovad_odp_fault_complete(struct iovad *c, uint64_t fault_id, int status)
{
	struct proto_fault_done req = { .fault_id = fault_id, .status = status };

	/* 0 or a negative errno, as every status on the wire. */
	if (!c || status > 0 || status < -4095)
		return -EINVAL;
	if (!odp_capable(c))
		return -EOPNOTSUPP;
	return odp_status_rpc(c, PROTO_CMD_FAULT_DONE, &req, sizeof(req));
}
