// SPDX-License-Identifier: MIT
/*
 * session.c - one client: its devices, memory, IOVA states and streaming
 * mappings, the dispatch of its requests into the domain engine, and the
 * teardown when it goes away.
 *
 * Isolation: a client names a state by (device, IOVA) and a mapping by
 * (device, dma address), exactly as the kernel does, and the daemon looks
 * both up in this session only: another client's IOVA is "no such state"
 * (-ENOENT) and the engine is never called with it. Every phys a client
 * links or maps must lie inside one of its own live memory objects
 * (-EFAULT otherwise), and device DMA is only allowed inside its own states,
 * mappings and ODP regions (elsewhere it is a not-present fault, -EFAULT,
 * and the engine is not asked).
 *
 * Memory objects are pinned by the link records and mappings that point
 * into them: MEM_FREE drops the handle at once, the memory itself goes when
 * its last mapping does, so the device can never reach freed memory.
 */
#include <errno.h>
#include <event2/buffer.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "failpoint.h"
#include "internal.h"
#include "rxe.h"
#include "session.h"

/* The structures are in session.h, shared with odp_svc.c. */

/* ==== ordered sets (struct svec) ============================================ */

static int node_cmp(const struct svec_node *a, const struct svec_node *b)
{
	if (a->dom != b->dom)
		return a->dom < b->dom ? -1 : 1;
	return a->base < b->base ? -1 : a->base > b->base;
}

RB_GENERATE_STATIC(svec_tree, svec_node, link, node_cmp)

/* An element sits right after its node, in the same allocation. */
static void *elem_of(const struct svec_node *n)
{
	return (void *)(uintptr_t)(n + 1);
}

static struct svec_node *node_of(const void *e)
{
	return (struct svec_node *)(uintptr_t)e - 1;
}

/* A key-only node for lookups. */
static struct svec_node *probe(struct svec_node *p, uint32_t dom, uint64_t base)
{
	memset(p, 0, sizeof(*p));
	p->dom = dom;
	p->base = base;
	return p;
}

void svec_init(struct svec *s, size_t esz)
{
	RB_INIT(&s->t);
	s->n = 0;
	s->esz = esz;
}

void svec_fini(struct svec *s)
{
	struct svec_node *n, *t;

	RB_FOREACH_SAFE(n, svec_tree, &s->t, t) {
		RB_REMOVE(svec_tree, &s->t, n);
		free(n);
	}
	s->n = 0;
}

void *svec_first(const struct svec *s)
{
	struct svec_node *n = RB_MIN(svec_tree, (struct svec_tree *)(uintptr_t)&s->t);

	return n ? elem_of(n) : NULL;
}

void *svec_last(const struct svec *s)
{
	struct svec_node *n = RB_MAX(svec_tree, (struct svec_tree *)(uintptr_t)&s->t);

	return n ? elem_of(n) : NULL;
}

void *svec_next(const struct svec *s, const void *e)
{
	struct svec_node *n = RB_NEXT(svec_tree, (struct svec_tree *)(uintptr_t)&s->t, node_of(e));

	(void)s; /* the BSD macro takes the head and does not need it */
	return n ? elem_of(n) : NULL;
}

void *svec_at(const struct svec *s, uint32_t i)
{
	void *e = i < s->n ? svec_first(s) : NULL;

	while (e && i--)
		e = svec_next(s, e);
	return e;
}

/* A zeroed element with key (dom, base) that the caller fills in; NULL if taken or no memory. */
void *svec_insert(struct svec *s, uint32_t dom, uint64_t base)
{
	struct svec_node *n = calloc(1, sizeof(*n) + s->esz);
	struct skey k = { .dom = dom, .base = base };

	if (!n)
		return NULL;
	n->dom = dom;
	n->base = base;
	if (RB_INSERT(svec_tree, &s->t, n)) {
		free(n);
		return NULL;
	}
	memcpy(elem_of(n), &k, sizeof(k));
	s->n++;
	return elem_of(n);
}

void svec_remove(struct svec *s, void *e)
{
	struct svec_node *n = node_of(e);

	RB_REMOVE(svec_tree, &s->t, n);
	free(n);
	s->n--;
}

/* The element with exactly (dom, base), or NULL. */
void *svec_find(const struct svec *s, uint32_t dom, uint64_t base)
{
	struct svec_node p;
	struct svec_node *n = RB_FIND(svec_tree, (struct svec_tree *)(uintptr_t)&s->t,
				      probe(&p, dom, base));

	return n ? elem_of(n) : NULL;
}

/* The element whose [base, base + span) holds [iova, iova + len), or NULL. */
void *svec_containing(const struct svec *s, uint32_t dom, uint64_t iova, uint64_t len,
		      size_t span_off)
{
	struct svec_tree *t = (struct svec_tree *)(uintptr_t)&s->t;
	struct svec_node p, *n;
	uint64_t span;

	/* The last element with key <= (dom, iova): the one before the first that is above. */
	if (iova == UINT64_MAX)
		n = RB_NFIND(svec_tree, t, probe(&p, dom + 1, 0));
	else
		n = RB_NFIND(svec_tree, t, probe(&p, dom, iova + 1));
	n = n ? RB_PREV(svec_tree, t, n) : RB_MAX(svec_tree, t);
	if (!n || n->dom != dom || n->base > iova)
		return NULL;
	memcpy(&span, (const uint8_t *)elem_of(n) + span_off, sizeof(span));
	if (iova - n->base >= span || len > span - (iova - n->base))
		return NULL;
	return elem_of(n);
}

/* ==== replies ============================================================== */

uint8_t *scratch(struct session *s)
{
	return s->srv->scratch;
}

void sess_send(struct session *s, bool ring, uint64_t id, uint16_t type, const void *body,
	       size_t len)
{
	struct proto_hdr h;
	uint16_t version = s->plim.version ? s->plim.version : PROTO_VERSION;

	proto_hdr_init(&h, version, type, (uint32_t)(sizeof(h) + len), id);
	/* Held until the journal has the request (or compared, in a replay). */
	if ((s->ps || s->rp) && persist_send(s, ring, &h, body, len))
		return;
	if (ring && s->ring) {
		ring_send(s->ring, &h, body, len);
		/* Inside a ring pass the poller publishes once at the end. */
		if (!s->in_ring)
			ring_publish(s->ring);
		return;
	}
	evbuffer_add(s->conn->out, &h, sizeof(h));
	if (len)
		evbuffer_add(s->conn->out, body, len);
	/* From a frame's handler, conn_input writes once after the frame. */
	if (!s->in_frame)
		srv_transport(s->srv)->kick_write(s->conn);
}

/* A reply: header, then body (status first), on the channel the request came on. */
void reply(struct session *s, const struct proto_req *req, uint16_t type, const void *body,
	   size_t len)
{
	if (s->ps)
		persist_reply(s, type, body, len);
	sess_send(s, s->in_ring, req->hdr.id, type, body, len);
}

void reply_status(struct session *s, const struct proto_req *req, int status)
{
	struct proto_status st = { .status = status };

	reply(s, req, req->hdr.type | PROTO_RPY, &st, sizeof(st));
}

/* ==== memory objects ======================================================== */

static void mem_release(struct session *s, struct sess_mem *m)
{
	persist_mem_gone(s, m);
	s->mem_bytes -= m->obj->size;
	s->nmems--;
	if (!m->handle)
		s->pinned_orphans--;
	pmem_obj_destroy(&s->srv->devices.pmem, m->obj);
	free(m);
}

static void mem_unpin(struct session *s, struct sess_mem *m)
{
	if (--m->pins == 0 && !m->handle)
		mem_release(s, m);
}

/* The live memory object of this client holding [phys, phys + size), or NULL. */
static struct sess_mem *mem_of_range(struct session *s, uint64_t phys, uint64_t size)
{
	struct pmem_obj *o = pmem_find(&s->srv->devices.pmem, phys);
	struct sess_mem *m;

	if (!o || !o->priv)
		return NULL;
	m = o->priv;
	if (m->sess != s || !m->handle)
		return NULL;
	if (!size || size > o->size - (phys - o->phys))
		return NULL;
	return m;
}

struct sess_mem *mem_by_handle(struct session *s, uint32_t h)
{
	if (h == 0 || h > s->nmem_slots)
		return NULL;
	return s->mems[h - 1];
}

static int handle_mem_import(struct session *s, const struct proto_req *req)
{
	const struct proto_mem_import *mi = &req->u.mem_import;
	struct proto_mem_import_rpy rpy = { 0 };
	struct sess_mem *m;
	uint32_t slot;
	int fd = s->rp ? dup(s->rp->fd) : conn_take_fd(s->conn), r;
	struct proto_mem_import_rpy want = { 0 };

	if (fd < 0)
		return -EBADF;
	if (s->rp && s->rp->len >= sizeof(want))
		memcpy(&want, s->rp->body, sizeof(want));
	/*
	 * The daemon maps the client's memory: if the client could shrink it,
	 * a later device access would fault (SIGBUS) in the daemon. Require a
	 * memfd sealed against shrinking, as udmabuf does.
	 */
	{
		int seals = fcntl(fd, F_GET_SEALS);

		if (seals < 0 || !(seals & F_SEAL_SHRINK)) {
			/* Not sealable at all (a pipe, a plain file): not usable memory. */
			r = seals < 0 ? -EBADF : -EPERM;
			goto out_close;
		}
	}
	if (s->nmems >= s->srv->lim.max_mems || mi->size > s->srv->lim.max_mem_bytes ||
	    s->mem_bytes > s->srv->lim.max_mem_bytes - mi->size) {
		r = -EDQUOT;
		goto out_close;
	}
	for (slot = 0; slot < s->nmem_slots && s->mems[slot]; slot++)
		;
	/* Restore: the recorded handle (slots above the table's end grow it). */
	if (s->rp) {
		slot = want.mem - 1;
		if (!want.mem || want.mem > 1u << 20 || (slot < s->nmem_slots && s->mems[slot])) {
			r = -EEXIST;
			goto out_close;
		}
	}
	while (slot >= s->nmem_slots) {
		uint32_t n = s->nmem_slots ? s->nmem_slots * 2 : 16;
		struct sess_mem **nm = realloc(s->mems, n * sizeof(*nm));

		if (!nm) {
			r = -ENOMEM;
			goto out_close;
		}
		memset(nm + s->nmem_slots, 0, (n - s->nmem_slots) * sizeof(*nm));
		s->mems = nm;
		s->nmem_slots = n;
	}
	m = calloc(1, sizeof(*m));
	if (!m) {
		r = -ENOMEM;
		goto out_close;
	}
	if (s->rp)
		r = pmem_obj_import_at(&s->srv->devices.pmem, fd, mi->offset, mi->size, want.phys,
				       &m->obj);
	else
		r = pmem_obj_import(&s->srv->devices.pmem, fd, mi->offset, mi->size, &m->obj);
	if (r) {
		free(m);
		/* A bad or unmappable fd is the client's -EBADF; a bad range its -EINVAL. */
		if (r == -ENODEV || r == -EACCES)
			r = -EBADF;
		goto out_close;
	}
	m->sess = s;
	m->handle = slot + 1;
	m->obj->priv = m;
	if (odp_mem_added(s, m)) {
		pmem_obj_destroy(&s->srv->devices.pmem, m->obj);
		free(m);
		r = -ENOMEM;
		goto out_close;
	}
	/* Into the fd store before the journal says it exists. */
	r = persist_mem_added(s, m);
	if (r) {
		log_warn("session %" PRIu64 ": cannot store a memory object's fd: %s", s->id,
			 strerror(-r));
		odp_mem_removed(s, m);
		pmem_obj_destroy(&s->srv->devices.pmem, m->obj);
		free(m);
		r = -ENOSPC;
		goto out_close;
	}
	s->mems[slot] = m;
	s->nmems++;
	s->mem_bytes += m->obj->size;
	rpy.mem = m->handle;
	if (s->plim.version >= PROTO_VERSION_ODP)
		rpy.implicit_slot = (uint32_t)(m->implicit_off >> PROTO_IMPLICIT_SLOT_SHIFT);
	rpy.phys = m->obj->phys;
	rpy.size = m->obj->size;
	reply(s, req, req->hdr.type | PROTO_RPY, &rpy, sizeof(rpy));
	r = 0;
out_close:
	close(fd); /* pmem keeps its own duplicate */
	return r;
}

static int handle_mem_free(struct session *s, const struct proto_req *req)
{
	struct sess_mem *m = mem_by_handle(s, req->u.mem_ref.mem);

	if (!m)
		return -EBADF;
	/* As munmap under an ODP MR: no region may keep mapping it. */
	odp_mem_removed(s, m);
	s->mems[m->handle - 1] = NULL;
	m->handle = 0;
	if (m->pins)
		s->pinned_orphans++;
	else
		mem_release(s, m);
	reply_status(s, req, 0);
	return 0;
}

/* ==== devices ================================================================= */

struct dev_entry *dev_by_handle(struct session *s, uint32_t h)
{
	if (h == 0 || h > sizeof(s->devs) / sizeof(s->devs[0]))
		return NULL;
	return s->devs[h - 1];
}

static int handle_dev_open(struct session *s, const struct proto_req *req)
{
	struct dev_entry *e = devices_find(&s->srv->devices, req->u.dev_open.name);
	struct proto_dev_open_rpy rpy = { 0 };
	uint32_t i, n = sizeof(s->devs) / sizeof(s->devs[0]);

	if (n > s->srv->lim.max_devs)
		n = s->srv->lim.max_devs;
	if (!e)
		return -ENODEV;
	for (i = 0; i < n && s->devs[i]; i++)
		;
	if (s->rp) {
		const struct proto_dev_open_rpy *w = (const void *)s->rp->body;

		i = s->rp->len >= sizeof(*w) ? w->dev - 1 : n;
		if (i >= sizeof(s->devs) / sizeof(s->devs[0]) || s->devs[i])
			return -EEXIST;
		n = i + 1;
	}
	if (i == n)
		return -EMFILE;
	s->devs[i] = e;
	rpy.dev = i + 1;
	rpy.flags = e->flags;
	rpy.merge_boundary = dma_get_merge_boundary(e->dev);
	rpy.dma_mask = e->dev->dma_mask;
	rpy.granule_shift = e->dom->cfg.type == DOM_IDENTITY ? 0 : e->dom->cfg.granule_shift;
	reply(s, req, req->hdr.type | PROTO_RPY, &rpy, sizeof(rpy));
	return 0;
}

/*
 * Closing a handle does not tear down what was mapped through it: states and
 * mappings belong to the session and stay reachable through another handle
 * of the same device, as a driver's mappings outlive a file descriptor.
 */
static int handle_dev_close(struct session *s, const struct proto_req *req)
{
	uint32_t h = req->u.dev_ref.dev;

	if (!dev_by_handle(s, h))
		return -EBADF;
	s->devs[h - 1] = NULL;
	reply_status(s, req, 0);
	return 0;
}

static int handle_dev_stats(struct session *s, const struct proto_req *req)
{
	struct dev_entry *e = dev_by_handle(s, req->u.dev_ref.dev);
	struct proto_dev_stats_rpy rpy = { 0 };

	if (!e)
		return -EBADF;
	devices_stats(e, &rpy.stats);
	reply(s, req, req->hdr.type | PROTO_RPY, &rpy, sizeof(rpy));
	return 0;
}

/* ==== IOVA states ================================================================ */

static uint64_t granule_mask(const struct dev_entry *e)
{
	return e->dom->granule - 1;
}

/*
 * Quotas on what a client makes the domain engine hold for it, beyond the
 * objects counted above: the IOVA it reserves (the aperture of a domain is
 * shared by every client of its devices: one client could reserve all of
 * it with a few huge states) and the page tables its links and maps add
 * (a 4 KiB page linked at a thousand scattered IOVAs costs a thousand
 * tables). Tables are shared within a domain, so they are charged by what
 * each call added and credited by what each call freed, never below 0.
 */
bool iova_over_quota(const struct session *s, uint64_t size)
{
	uint64_t max = s->srv->lim.max_iova_bytes;

	return size > max || s->iova_bytes > max - size;
}

static uint64_t tables_of(const struct dev_entry *e)
{
	return e->dom->cfg.type == DOM_IDENTITY ? 0 : e->dom->pt.stats.table_bytes;
}

static void tables_charge(struct session *s, uint64_t before, uint64_t after)
{
	uint64_t d;

	if (after >= before) {
		s->table_bytes += after - before;
		return;
	}
	d = before - after;
	s->table_bytes -= d < s->table_bytes ? d : s->table_bytes;
}

static bool tables_over_quota(const struct session *s)
{
	return s->table_bytes >= s->srv->lim.max_table_bytes;
}

static struct sess_state *state_find(struct session *s, const struct dev_entry *e, uint64_t addr)
{
	struct sess_state *st = s->last;

	if (st && st->st.addr == addr && st->dom == e->dom_index)
		return st;
	st = svec_find(&s->states, e->dom_index, addr & ~granule_mask(e));
	if (!st || st->st.addr != addr)
		return NULL;
	s->last = st;
	return st;
}

static int handle_iova_alloc(struct session *s, const struct proto_req *req)
{
	const struct proto_iova_alloc *a = &req->u.iova_alloc;
	struct dev_entry *e = dev_by_handle(s, a->dev);
	struct proto_iova_alloc_rpy rpy = { 0 };
	struct dma_iova_state st;
	struct sess_state *ss;
	uint64_t pad;

	if (!e)
		return -EBADF;
	if (e->dom->cfg.type == DOM_IDENTITY)
		return -EOPNOTSUPP;
	if (!a->size || (a->size & DMA_IOVA_USE_SWIOTLB))
		return -EINVAL;
	if (s->states.n >= s->srv->lim.max_states || iova_over_quota(s, a->size))
		return -EDQUOT;
	if (s->rp && s->rp->len >= sizeof(rpy)) {
		memcpy(&rpy, s->rp->body, sizeof(rpy));
		e->dom->want_iova = rpy.addr & ~granule_mask(e);
		memset(&rpy, 0, sizeof(rpy));
	}
	if (!dma_iova_try_alloc(e->dev, &st, a->phys, a->size)) {
		e->dom->want_iova = 0;
		return -ENOSPC;
	}
	pad = st.addr & granule_mask(e);
	s->last = NULL; /* elements move */
	ss = svec_insert(&s->states, e->dom_index, st.addr - pad);
	if (!ss) {
		(void)dma_iova_free(e->dev, &st);
		return -ENOMEM;
	}
	ss->dom = e->dom_index;
	ss->dev = e->index;
	ss->base = st.addr - pad;
	ss->span = (a->size + pad + granule_mask(e)) & ~granule_mask(e);
	ss->st = st;
	s->iova_bytes += ss->span;
	rpy.addr = st.addr;
	rpy.size = st.__size;
	reply(s, req, req->hdr.type | PROTO_RPY, &rpy, sizeof(rpy));
	return 0;
}

/*
 * Link records. A state's records are kept sorted by offset; they never
 * overlap (the engine refuses a second link of a linked range), so their
 * ends are sorted too and the records an unlink touches are found by binary
 * search: the cost of an unlink does not grow with how much else is linked.
 * Each record pins its memory object once.
 *
 * On a sim device a link that continues a neighbouring record (next in IOVA
 * and in phys, same object, same direction) extends it, so a buffer linked
 * page by page is one record, not one per page (40 bytes each). An rxe
 * state keeps one record per link: a sync registers whole records as MRs,
 * and a merged record could reach beyond the range being synced.
 */

/* Index of the first record that ends after off. */
static uint32_t link_first_after(const struct sess_state *ss, uint64_t off)
{
	uint32_t lo = 0, hi = ss->nlinks;

	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;
		const struct link_rec *l = &ss->links[mid];

		if (l->off + l->size <= off)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/* Room for one more record, so that the next link_rec_add() cannot fail. */
static int link_rec_reserve(struct sess_state *ss)
{
	if (ss->nlinks == ss->cap) {
		uint32_t cap = ss->cap ? ss->cap * 2 : 4;
		struct link_rec *n = realloc(ss->links, cap * sizeof(*n));

		if (!n)
			return -ENOMEM;
		ss->links = n;
		ss->cap = cap;
	}
	return 0;
}

static int link_rec_insert(struct session *s, struct sess_state *ss, uint32_t at,
			   const struct link_rec *rec)
{
	if (link_rec_reserve(ss))
		return -ENOMEM;
	memmove(&ss->links[at + 1], &ss->links[at], (ss->nlinks - at) * sizeof(*ss->links));
	ss->links[at] = *rec;
	ss->nlinks++;
	ss->linked += rec->size;
	s->nlinks++;
	rec->mem->pins++;
	return 0;
}

/* Drop records [a, b), all inside what was unlinked. */
static void link_rec_remove(struct session *s, struct sess_state *ss, uint32_t a, uint32_t b)
{
	for (uint32_t i = a; i < b; i++) {
		ss->linked -= ss->links[i].size;
		mem_unpin(s, ss->links[i].mem);
	}
	/* Nothing after them (and no array at all for a state never linked): no move. */
	if (b < ss->nlinks)
		memmove(&ss->links[a], &ss->links[b], (ss->nlinks - b) * sizeof(*ss->links));
	ss->nlinks -= b - a;
	s->nlinks -= b - a;
}

static bool link_continues(const struct link_rec *a, uint64_t off, uint64_t phys,
			   const struct sess_mem *m, uint8_t dir, uint8_t attrs)
{
	return a->off + a->size == off && a->phys + a->size == phys && a->mem == m &&
	       a->dir == dir && a->attrs == attrs;
}

static uint8_t pack_attrs(uint64_t attrs)
{
	return (uint8_t)(((attrs & DMA_ATTR_SKIP_CPU_SYNC) ? LINK_ATTR_SKIP_CPU_SYNC : 0) |
			 ((attrs & DMA_ATTR_MMIO) ? LINK_ATTR_MMIO : 0) |
			 ((attrs & DMA_ATTR_REQUIRE_COHERENT) ? LINK_ATTR_COHERENT : 0));
}

static struct rxe_dev *state_rxe(const struct session *s, const struct sess_state *ss);

static int link_rec_add(struct session *s, struct sess_state *ss, uint64_t off, uint64_t size,
			uint64_t phys, struct sess_mem *m, uint8_t dir, uint8_t attrs)
{
	uint32_t at = link_first_after(ss, off);
	struct link_rec rec = { off, size, phys, m, dir, LINK_MR_NONE, attrs };

	if (!state_rxe(s, ss)) {
		struct link_rec *prev = at ? &ss->links[at - 1] : NULL;
		struct link_rec *next = at < ss->nlinks ? &ss->links[at] : NULL;

		if (prev && link_continues(prev, off, phys, m, dir, attrs)) {
			prev->size += size;
			ss->linked += size;
			/* It may close the gap to the next record as well. */
			if (next && link_continues(prev, next->off, next->phys, next->mem, next->dir,
						   next->attrs)) {
				prev->size += next->size;
				ss->linked += next->size; /* link_rec_remove takes it off again */
				link_rec_remove(s, ss, at, at + 1);
			}
			return 0;
		}
		if (next && link_continues(&rec, next->off, next->phys, next->mem, next->dir,
					   next->attrs)) {
			next->off = off;
			next->phys = phys;
			next->size += size;
			ss->linked += size;
			return 0;
		}
	}
	return link_rec_insert(s, ss, at, &rec);
}

/* ==== rxe backend: link records as verbs MRs ================================================= */

int sess_pdx(struct session *s, const struct dev_entry *e, struct rxe_pdx **ret)
{
	const struct dev_table *t = &s->srv->devices;
	int r;

	*ret = NULL;
	if (!e->rxe)
		return -EINVAL;
	if (!s->pdx) {
		s->pdx = calloc(t->ndevs, sizeof(*s->pdx));
		if (!s->pdx)
			return -ENOMEM;
	}
	if (!s->pdx[e->index]) {
		r = rxe_pdx_new(e->rxe, &s->pdx[e->index]);
		if (r) {
			log_warn("session %" PRIu64 ": %s: cannot make the session's PD: %s", s->id,
				 rxe_name(e->rxe), strerror(-r));
			return r;
		}
	}
	*ret = s->pdx[e->index];
	return 0;
}

/* The rxe device a state's MRs live on (its PD), or NULL on a sim device. */
static struct rxe_dev *state_rxe(const struct session *s, const struct sess_state *ss)
{
	return s->srv->devices.devs[ss->dev].rxe;
}

static unsigned int dir_acc(uint8_t dir)
{
	switch (dir) {
	case DMA_TO_DEVICE:
		return RXE_ACC_READ;
	case DMA_FROM_DEVICE:
		return RXE_ACC_WRITE;
	default:
		return RXE_ACC_READ | RXE_ACC_WRITE;
	}
}

/* Is this record to be registered now? */
static bool mr_wanted(const struct link_rec *l, uint64_t lo, uint64_t hi, bool pending_only)
{
	if (l->mr == LINK_MR_REG || l->off < lo || l->off + l->size > hi)
		return false;
	return !pending_only || l->mr == LINK_MR_PENDING;
}

/*
 * Register the link records inside [lo, hi) that have no MR yet (with
 * pending_only, only those whose MR an unlink took away), one MR per run of
 * records adjacent in IOVA, in the same memory object with contiguous phys,
 * and of the same direction: as few MRs as the access rights allow. The
 * memory is the daemon's own mapping of the client's memfd, which stays
 * mapped while a link record pins it.
 * Return: 0, or the first failure's -errno (the records it left out have no
 * MR, so the device faults there, and a later sync tries them again).
 */
static int mrs_register(struct session *s, struct sess_state *ss, uint64_t lo, uint64_t hi,
			bool pending_only)
{
	struct rxe_dev *rxe = state_rxe(s, ss);
	struct rxe_pdx *x;
	int ret;

	ret = sess_pdx(s, &s->srv->devices.devs[ss->dev], &x);
	if (ret)
		return ret;
	/* The records are sorted by offset already. */
	for (uint32_t i = 0, j; i < ss->nlinks; i = j) {
		struct link_rec *l = &ss->links[i];
		uint64_t end = l->off + l->size, pend = l->phys + l->size;
		struct pmem_obj *o = l->mem->obj;
		struct rxe_mr *mr;
		int r;

		j = i + 1;
		if (!mr_wanted(l, lo, hi, pending_only))
			continue;
		for (; j < ss->nlinks; j++) {
			const struct link_rec *n = &ss->links[j];

			if (!mr_wanted(n, lo, hi, pending_only) || n->off != end ||
			    n->mem != l->mem || n->phys != pend || n->dir != l->dir)
				break;
			end += n->size;
			pend += n->size;
		}
		if (mr_set_reserve(&ss->mrs))
			return -ENOMEM;
		r = rxe_mr_reg(x, o->va + (l->phys - o->phys), end - l->off, ss->st.addr + l->off,
			       dir_acc(l->dir), &mr);
		if (r) {
			log_warn("session %" PRIu64 ": %s: cannot register IOVA %#" PRIx64
				 " + %#" PRIx64 ": %s", s->id, rxe_name(rxe), ss->st.addr + l->off,
				 end - l->off, strerror(-r));
			if (!ret)
				ret = r;
			continue;
		}
		mr_set_push(&ss->mrs, l->off, end - l->off, mr);
		for (uint32_t k = i; k < j; k++)
			ss->links[k].mr = LINK_MR_REG;
	}
	return ret;
}

/* mr_set_drop() callback: the state's records under a dropped MR lose it. */
static void links_lose_mr(void *arg, const struct sess_mr *m)
{
	struct sess_state *ss = arg;

	for (uint32_t k = link_first_after(ss, m->off);
	     k < ss->nlinks && ss->links[k].off < m->off + m->size; k++)
		if (ss->links[k].off >= m->off)
			ss->links[k].mr = LINK_MR_PENDING;
}

static void link_rec_forget(struct session *s, struct sess_state *ss, uint64_t lo, uint64_t hi);

/*
 * Forget the link records inside IOVA [lo, hi) (offsets from the state's
 * addr, already widened to the granules the engine unmapped); records that
 * straddle an edge keep their outside parts. On an rxe device the MRs that
 * intersect the window go first (the device must not reach unlinked memory),
 * and what remains linked of them is registered again.
 */
static void link_rec_trim(struct session *s, struct sess_state *ss, uint64_t lo, uint64_t hi)
{
	uint64_t rlo = UINT64_MAX, rhi = 0;

	if (!ss->mrs.n) {
		link_rec_forget(s, ss, lo, hi);
		return;
	}
	/* The device must not reach unlinked memory; what stays linked comes back below. */
	mr_set_drop(&ss->mrs, lo, hi, &rlo, &rhi, links_lose_mr, ss);
	link_rec_forget(s, ss, lo, hi);
	if (rlo < rhi)
		(void)mrs_register(s, ss, rlo, rhi, true);
}

static void link_rec_forget(struct session *s, struct sess_state *ss, uint64_t lo, uint64_t hi)
{
	uint32_t i = link_first_after(ss, lo), gone;

	if (i < ss->nlinks && ss->links[i].off < lo) {
		struct link_rec *l = &ss->links[i];
		uint64_t end = l->off + l->size;

		if (end > hi) {
			/* Split: a hole punched in the middle. */
			struct link_rec tail = { hi, end - hi, l->phys + (hi - l->off), l->mem,
						 l->dir, l->mr, l->attrs };

			/*
			 * Out of memory for the tail's record: keep the whole one,
			 * which only overstates what stays pinned.
			 */
			if (link_rec_insert(s, ss, i + 1, &tail))
				return;
			l = &ss->links[i]; /* the array may have moved */
			ss->linked -= end - lo;
			l->size = lo - l->off;
			return;
		}
		/* Its head stays. */
		ss->linked -= end - lo;
		l->size = lo - l->off;
		i++;
	}
	/* Records entirely inside go together. */
	for (gone = i; gone < ss->nlinks && ss->links[gone].off + ss->links[gone].size <= hi; gone++)
		;
	link_rec_remove(s, ss, i, gone);
	if (i < ss->nlinks && ss->links[i].off < hi) {
		/* Its tail stays. */
		struct link_rec *l = &ss->links[i];

		ss->linked -= hi - l->off;
		l->phys += hi - l->off;
		l->size -= hi - l->off;
		l->off = hi;
	}
}

static void state_remove(struct session *s, struct sess_state *ss)
{
	s->iova_bytes -= ss->span;
	link_rec_trim(s, ss, 0, UINT64_MAX);
	free(ss->links);
	free(ss->mrs.v);
	if (s->last == ss)
		s->last = NULL;
	svec_remove(&s->states, ss);
}

/* The unmapped IOVA of an unlink of [off, off + size), as offsets from addr. */
static void unlink_window(const struct dev_entry *e, const struct sess_state *ss, uint64_t off,
			  uint64_t size, uint64_t *lo, uint64_t *hi)
{
	uint64_t a = ss->st.addr + off, m = granule_mask(e);
	uint64_t start = a & ~m, end = (a + size + m) & ~m;

	*lo = start > ss->st.addr ? start - ss->st.addr : 0;
	*hi = end - ss->st.addr;
}

static int op_link(struct session *s, struct dev_entry *e, const struct proto_op *op,
		   uint64_t *value)
{
	struct sess_state *ss = state_find(s, e, op->iova);
	struct sess_mem *m;
	int r;

	if (!ss)
		return -ENOENT;
	m = mem_of_range(s, op->phys, op->size);
	if (!m)
		return -EFAULT;
	if (s->nlinks >= s->srv->lim.max_links || tables_over_quota(s))
		return -EDQUOT;
	r = dma_iova_link(e->dev, &ss->st, op->phys, op->offset, op->size, op->dir, op->attrs);
	if (r)
		return r;
	if (link_rec_add(s, ss, op->offset, op->size, op->phys, m, (uint8_t)op->dir,
			 pack_attrs(op->attrs))) {
		(void)dma_iova_unlink(e->dev, &ss->st, op->offset, op->size, op->dir, op->attrs);
		return -ENOMEM;
	}
	*value = ss->st.__size;
	return 0;
}

/*
 * Merging the LINK operations of a batch. A client that links a buffer
 * page by page (a scatter list, ODP-style) sends LINKs that follow each
 * other in phys and in offset; the block layer merges such segments before
 * it calls dma_iova_link(), and so does iovad: the run from op i on becomes
 * one dma_iova_link_run() and one link record, with the result every one of
 * its LINKs would have had. Only when nothing can differ from the calls one
 * by one: same device, state, direction and attrs; granule-aligned pieces
 * shorter than the smallest block (so the same leaves); inside one memory
 * object; a sim state (on rxe each link is a record of its own, an MR at
 * sync); and far enough from max_links and max_table_bytes that no LINK of
 * the run could have met them. If the merged call fails, the caller does
 * the LINKs one by one, and each gets its own answer. [domain] merge_links =
 * no turns it off. Return: the LINKs done (0: none, do the *span LINKs of
 * the run one by one).
 */
#define LINK_RUN_MIN 2

static uint32_t link_run(struct session *s, struct dev_entry *e, const struct proto_req *req,
			 uint32_t i, const struct proto_op *op, struct proto_op_result *res,
			 uint32_t *span)
{
	const uint64_t gmask = granule_mask(e);
	const unsigned int gshift = (unsigned int)__builtin_ctzll(e->dom->granule);
	/* Pieces of a block's size or more could have made blocks: not merged. */
	const uint64_t piece_max = e->dom->pt.cfg.blocks ? (UINT64_C(1) << (gshift + 9)) - 1 :
							    UINT64_MAX;
	uint64_t off = op->offset, phys = op->phys, size = op->size, bound, tbl;
	uint32_t n = req->u.batch.count, k = 1;
	struct sess_state *ss;
	struct sess_mem *m;
	int r;

	*span = 1;
	if (!op->size || op->size > piece_max || ((op->phys | op->offset | op->size) & gmask))
		return 0;
	for (; i + k < n; k++) {
		struct proto_op nx;

		proto_op_get(req, i + k, &nx);
		if (nx.opcode != PROTO_OP_LINK || nx.dev != op->dev || nx.iova != op->iova ||
		    nx.dir != op->dir || nx.attrs != op->attrs || !nx.size || nx.size > piece_max ||
		    ((nx.phys | nx.size) & gmask) || nx.offset != off + size ||
		    nx.phys != phys + size || size + nx.size < size)
			break;
		size += nx.size;
	}
	*span = k;
	if (k < LINK_RUN_MIN || off + size < off || phys + size < phys)
		return 0;
	ss = state_find(s, e, op->iova);
	if (!ss || state_rxe(s, ss))
		return 0;
	m = mem_of_range(s, phys, size);
	/* One by one, every LINK checks max_links first; at most the first adds a record. */
	if (!m || s->nlinks + 1 >= s->srv->lim.max_links)
		return 0;
	/* The tables the run may add, at most: every level's, over its span and one more. */
	tbl = e->dom->granule;
	bound = ((size >> (gshift + 9)) + 2) * e->dom->pt.levels * tbl;
	if (s->table_bytes >= s->srv->lim.max_table_bytes ||
	    bound >= s->srv->lim.max_table_bytes - s->table_bytes)
		return 0;
	if (link_rec_reserve(ss))
		return 0;
	if (fp_hit(FP_LINK_RUN))
		return 0;
	r = dma_iova_link_run(e->dev, &ss->st, phys, off, size, op->dir, op->attrs, k);
	if (r)
		return 0;
	/* Cannot fail: there is room for a record. */
	(void)link_rec_add(s, ss, off, size, phys, m, (uint8_t)op->dir, pack_attrs(op->attrs));
	for (uint32_t j = 0; j < k; j++)
		res[i + j] = (struct proto_op_result){ .status = 0, .value = ss->st.__size };
	return k;
}

static int op_unlink(struct session *s, struct dev_entry *e, const struct proto_op *op)
{
	struct sess_state *ss = state_find(s, e, op->iova);
	uint64_t lo, hi;
	int r;

	if (!ss)
		return -ENOENT;
	r = dma_iova_unlink(e->dev, &ss->st, op->offset, op->size, op->dir, op->attrs);
	if (r && r != -ENOENT)
		return r;
	unlink_window(e, ss, op->offset, op->size, &lo, &hi);
	link_rec_trim(s, ss, lo, hi);
	return r;
}

static int op_destroy(struct session *s, struct dev_entry *e, const struct proto_op *op,
		      uint64_t *value)
{
	struct sess_state *ss = state_find(s, e, op->iova);
	uint64_t lo, hi;
	int r;

	if (!ss)
		return -ENOENT;
	r = dma_iova_destroy(e->dev, &ss->st, op->size, op->dir, op->attrs);
	if (!dma_use_iova(&ss->st)) {
		/* The engine freed the IOVA (with or without holes): the state is gone. */
		state_remove(s, ss);
		*value = PROTO_OP_STATE_RELEASED;
		return r;
	}
	if (op->size && (r == -EBUSY || r == -ENOENT)) {
		unlink_window(e, ss, 0, op->size, &lo, &hi);
		link_rec_trim(s, ss, lo, hi);
	}
	return r;
}

static int op_free(struct session *s, struct dev_entry *e, const struct proto_op *op,
		   uint64_t *value)
{
	struct sess_state *ss = state_find(s, e, op->iova);
	int r;

	if (!ss)
		return -ENOENT;
	r = dma_iova_free(e->dev, &ss->st);
	if (!r) {
		state_remove(s, ss);
		*value = PROTO_OP_STATE_RELEASED;
	}
	return r;
}

static int op_sync(struct session *s, struct dev_entry *e, const struct proto_op *op)
{
	struct sess_state *ss = state_find(s, e, op->iova);
	int r;

	if (!ss)
		return -ENOENT;
	r = dma_iova_sync(e->dev, &ss->st, op->offset, op->size);
	/* rxe: what the sync made visible becomes MRs, the whole batch at once. */
	if (!r && state_rxe(s, ss))
		r = mrs_register(s, ss, op->offset, op->offset + op->size, false);
	return r;
}

/* ==== streaming mappings ========================================================== */

static int op_map(struct session *s, struct dev_entry *e, const struct proto_op *op,
		  uint64_t *value)
{
	struct sess_mem *m = mem_of_range(s, op->phys, op->size);
	struct sess_map *mp;
	uint64_t dma, base, mask;
	int r;

	if (!m)
		return -EFAULT;
	if (s->maps.n >= s->srv->lim.max_maps || tables_over_quota(s))
		return -EDQUOT;
	mask = e->dom->cfg.type == DOM_IDENTITY ? 0 : granule_mask(e);
	/* The IOVA a map takes: its bytes rounded out to granules (and one for the offset). */
	if (mask && iova_over_quota(s, op->size + 2 * mask))
		return -EDQUOT;
	/* rxe: swiotlb bounce slots are not registered, so an untrusted device maps nothing. */
	if (e->rxe && (e->flags & PROTO_DEV_UNTRUSTED))
		return -EOPNOTSUPP;
	if (s->rp && e->dom->cfg.type != DOM_IDENTITY)
		e->dom->want_iova = *value & ~granule_mask(e);
	r = dma_map_phys(e->dev, op->phys, op->size, op->dir, op->attrs, &dma);
	e->dom->want_iova = 0;
	if (r)
		return r;
	base = dma & ~mask;
	/* On an identity domain two maps may share a base: key them by dma then. */
	if (!mask)
		base = dma;
	if (svec_find(&s->maps, e->dom_index, base) || !(mp = svec_insert(&s->maps, e->dom_index,
									      base))) {
		(void)dma_unmap_phys(e->dev, dma, op->size, op->dir, op->attrs);
		return mask ? -ENOMEM : -EEXIST;
	}
	mp->dom = e->dom_index;
	mp->dev = e->index;
	mp->base = base;
	mp->span = mask ? ((dma + op->size + mask) & ~mask) - base : op->size;
	mp->dma = dma;
	mp->size = op->size;
	mp->mem = m;
	mp->mr = NULL;
	mp->phys = op->phys;
	mp->dir = op->dir;
	mp->attrs = (uint32_t)op->attrs;
	/*
	 * rxe: the mapping is visible at once, so it is an MR at once, over
	 * exactly the bytes asked for (ibv_reg_mr_iova2 takes any byte range
	 * whose va and iova share the page offset, as phys and dma do here).
	 */
	if (e->rxe) {
		struct pmem_obj *o = m->obj;
		struct rxe_pdx *x;

		r = sess_pdx(s, e, &x);
		if (!r)
			r = rxe_mr_reg(x, o->va + (op->phys - o->phys), op->size, dma,
				       dir_acc(op->dir), &mp->mr);
		if (r) {
			log_warn("session %" PRIu64 ": %s: cannot register streaming map %#" PRIx64
				 " + %#" PRIx64 ": %s", s->id, rxe_name(e->rxe), dma, op->size,
				 strerror(-r));
			svec_remove(&s->maps, mp);
			(void)dma_unmap_phys(e->dev, dma, op->size, op->dir, op->attrs);
			return r;
		}
	}
	if (mask)
		s->iova_bytes += mp->span;
	m->pins++;
	*value = dma;
	return 0;
}

static int op_unmap(struct session *s, struct dev_entry *e, const struct proto_op *op)
{
	uint64_t mask = e->dom->cfg.type == DOM_IDENTITY ? 0 : granule_mask(e);
	struct sess_map *mp = svec_find(&s->maps, e->dom_index, mask ? op->iova & ~mask : op->iova);
	int r;

	if (!mp || mp->dma != op->iova || mp->size != op->size)
		return -ENOENT;
	r = dma_unmap_phys(e->dev, op->iova, op->size, op->dir, op->attrs);
	if (r)
		return r;
	if (mask)
		s->iova_bytes -= mp->span;
	rxe_mr_dereg(mp->mr);
	mem_unpin(s, mp->mem);
	svec_remove(&s->maps, mp);
	return 0;
}

/* ==== batches ======================================================================= */

static int handle_batch(struct session *s, const struct proto_req *req)
{
	uint32_t n = req->u.batch.count, touched = 0, flushes = 0, one_by_one = 0;
	struct proto_batch_rpy rpy = { 0 };
	struct proto_op_result *res;
	struct dev_table *t = &s->srv->devices;
	bool failed = false;
	size_t len = sizeof(rpy) + (size_t)n * sizeof(*res);

	res = (struct proto_op_result *)(scratch(s) + sizeof(rpy));
	for (uint32_t i = 0; i < n; i++) {
		struct proto_op op;
		struct dev_entry *e;
		uint64_t value = 0, tables;
		int r;

		proto_op_get(req, i, &op);
		/* Restore: a map goes back to its recorded address. */
		if (s->rp && op.opcode == PROTO_OP_MAP &&
		    s->rp->len >= sizeof(rpy) + (i + 1) * sizeof(*res))
			memcpy(&value, s->rp->body + sizeof(rpy) + i * sizeof(*res) +
				       offsetof(struct proto_op_result, value), sizeof(value));
		if (failed && (req->u.batch.flags & PROTO_BATCH_STOP_ON_ERROR)) {
			res[i] = (struct proto_op_result){ .status = -ECANCELED };
			continue;
		}
		e = dev_by_handle(s, op.dev);
		if (!e) {
			r = -EBADF;
			goto done;
		}
		/* Every sync in the batch lands in one flush per domain. */
		if (e->dom_index < 32 && !(touched & (1u << e->dom_index))) {
			touched |= 1u << e->dom_index;
			dom_batch_begin(e->dom);
		}
		/* max_table_bytes: each operation is charged what it added to the tables. */
		tables = tables_of(e);
		if (op.opcode == PROTO_OP_LINK && i >= one_by_one && e->merge_links) {
			uint32_t span, k = link_run(s, e, req, i, &op, res, &span);

			if (k) {
				tables_charge(s, tables, tables_of(e));
				i += k - 1;
				continue;
			}
			/* Not mergeable, or the merged call failed: this run one by one. */
			one_by_one = i + span;
		}
		switch (op.opcode) {
		case PROTO_OP_LINK:
			r = op_link(s, e, &op, &value);
			break;
		case PROTO_OP_SYNC:
			r = op_sync(s, e, &op);
			break;
		case PROTO_OP_UNLINK:
			r = op_unlink(s, e, &op);
			break;
		case PROTO_OP_DESTROY:
			r = op_destroy(s, e, &op, &value);
			break;
		case PROTO_OP_FREE:
			r = op_free(s, e, &op, &value);
			break;
		case PROTO_OP_MAP:
			r = op_map(s, e, &op, &value);
			break;
		case PROTO_OP_UNMAP:
			r = op_unmap(s, e, &op);
			break;
		default:
			r = -EINVAL; /* the decoder already refuses these */
			break;
		}
		tables_charge(s, tables, tables_of(e));
done:
		res[i] = (struct proto_op_result){ .status = r, .value = value };
		if (r)
			failed = true;
	}
	for (uint32_t d = 0; d < t->ndoms && d < 32; d++) {
		if (!(touched & (1u << d)))
			continue;
		flushes += (uint32_t)dom_batch_end(t->doms[d]);
		if (t->doms[d]->cfg.flush == DOM_FLUSH_LAZY)
			devices_fq_arm(t, d);
	}
	rpy.count = n;
	rpy.flushes = flushes;
	memcpy(scratch(s), &rpy, sizeof(rpy));
	reply(s, req, req->hdr.type | PROTO_RPY, scratch(s), len);
	return 0;
}

/* ==== the simulated device =============================================================== */

/* Is [iova, iova + len) inside one of this client's states or mappings on e's domain? */
static bool dma_allowed(struct session *s, const struct dev_entry *e, uint64_t iova, uint64_t len)
{
	return svec_containing(&s->states, e->dom_index, iova, len,
			       offsetof(struct sess_state, span)) ||
	       svec_containing(&s->maps, e->dom_index, iova, len, offsetof(struct sess_map, span)) ||
	       odp_dma_allowed(s, e, iova, len);
}

/*
 * rxe device: the streaming map of s on e that holds iova in its MR, if any:
 * its rkey, and in *left the bytes from iova to the MR's end. Bytes of a map's
 * granules outside [dma, dma + size) have no MR.
 */
static const struct sess_map *map_rxe_at(struct session *s, const struct dev_entry *e,
					 uint64_t iova, uint32_t *rkey, uint64_t *left)
{
	const struct sess_map *mp = svec_containing(&s->maps, e->dom_index, iova, 1,
						    offsetof(struct sess_map, span));

	if (!mp || !mp->mr || s->srv->devices.devs[mp->dev].rxe != e->rxe || iova < mp->dma ||
	    iova - mp->dma >= mp->size)
		return NULL;
	*rkey = rxe_mr_rkey(mp->mr);
	*left = mp->dma + mp->size - iova;
	return mp;
}

/*
 * A device access on an rxe device: RDMA through the MRs of the client's
 * states, streaming maps and ODP regions, split where the MR changes. Where no MR holds the
 * IOVA (not linked, not synced, unlinked, unmapped, not faulted in, another
 * client's)
 * the access goes out with an rkey no MR has, so rxe itself refuses it;
 * that is the fault, at the first byte no MR covers.
 */
int rxe_dev_dma(struct session *s, const struct dev_entry *e, uint64_t iova, uint8_t *buf,
		uint64_t len, bool write, struct dom_fault *f)
{
	const uint64_t total = len;
	struct rxe_pdx *x;
	int rp = sess_pdx(s, e, &x);

	if (rp)
		return rp;

	while (len) {
		struct sess_state *ss = svec_containing(&s->states, e->dom_index, iova, 1,
							offsetof(struct sess_state, span));
		uint32_t rkey = RXE_RKEY_INVALID;
		uint64_t n = len, oleft;
		int r;

		if (ss && state_rxe(s, ss) == e->rxe && iova >= ss->st.addr) {
			const struct sess_mr *m = mr_set_at(&ss->mrs, iova - ss->st.addr, NULL);

			if (m) {
				uint64_t left = m->off + m->size - (iova - ss->st.addr);

				rkey = rxe_mr_rkey(m->mr);
				n = len < left ? len : left;
			}
		} else if (!ss && map_rxe_at(s, e, iova, &rkey, &oleft)) {
			n = len < oleft ? len : oleft;
		} else if (!ss && odp_rxe_key(s, e, iova, &rkey, &oleft)) {
			/* An ODP region: its MRs follow what the fault service mapped. */
			n = len < oleft ? len : oleft;
		}
		r = rxe_dma(x, iova, rkey, buf, n, write);
		if (r == -EFAULT) {
			/* Counted and logged in the domain, as the engine's own faults are. */
			*f = (struct dom_fault){ .iova = iova, .reason = DOM_FAULT_NOT_PRESENT,
						 .access = write ? DOM_ACCESS_WRITE :
								   DOM_ACCESS_READ };
			dom_dev_dma_account(e->dev, 0, 0, f);
		}
		if (r)
			return r;
		iova += n;
		buf += n;
		len -= n;
	}
	dom_dev_dma_account(e->dev, write ? DOM_ACCESS_WRITE : DOM_ACCESS_READ, total, NULL);
	return 0;
}

static int handle_dma(struct session *s, const struct proto_req *req)
{
	const struct proto_dma *d = &req->u.dma;
	struct dev_entry *e = dev_by_handle(s, d->dev);
	struct proto_dma_rpy rpy = { 0 };
	struct dom_fault f = { 0 };
	bool rd = req->hdr.type == PROTO_CMD_DMA_READ;
	uint8_t *data = scratch(s) + sizeof(rpy);
	int r;

	if (!e)
		return -EBADF;
	if (!dma_allowed(s, e, d->iova, d->len)) {
		/*
		 * Nothing of this client's is mapped there: as far as its device
		 * context goes, that is a not-present fault. The engine is not
		 * asked (the IOVA may be another client's), so the domain's fault
		 * log and counters only ever hold faults on this client's own
		 * mappings.
		 */
		r = -EFAULT;
		f = (struct dom_fault){ .iova = d->iova, .reason = DOM_FAULT_NOT_PRESENT,
					.access = rd ? DOM_ACCESS_READ : DOM_ACCESS_WRITE };
	} else if (e->rxe) {
		/* rxe_dma only reads buf for a write: the request's bytes stay as they are. */
		r = rxe_dev_dma(s, e, d->iova, rd ? data : (uint8_t *)(uintptr_t)req->data, d->len,
				!rd, &f);
	} else if (rd) {
		r = dom_dev_dma_read(e->dev, d->iova, data, d->len, &f);
	} else {
		r = dom_dev_dma_write(e->dev, d->iova, req->data, d->len, &f);
	}
	/* A fault inside an ODP region goes to the fault service; the reply comes later. */
	if (r == -EFAULT && f.reason != DOM_FAULT_ADDRESS) {
		int pr = odp_dma_fault(s, e, req, &f);

		if (pr > 0)
			return 0;
		if (pr < 0)
			return pr; /* -EAGAIN: too many accesses wait for this client's answers */
	}
	rpy.st.status = r;
	if (r == -EFAULT)
		rpy.fault = (struct proto_fault){ .iova = f.iova, .access = f.access,
						  .reason = f.reason };
	else if (r)
		return r;
	memcpy(scratch(s), &rpy, sizeof(rpy));
	reply(s, req, req->hdr.type | PROTO_RPY, scratch(s),
	      sizeof(rpy) + (rd && !r ? d->len : 0));
	return 0;
}

/*
 * IOVA_RKEY: what a remote RDMA peer needs to reach iova, the rkey and bounds
 * of the MR holding it. Only this client's MRs: a state's synced links, a
 * streaming map, or a faulted-in window of one of its ODP regions. Nothing registered there (not
 * synced, unlinked, not faulted in, another client's) is -ENOENT, not a
 * fault: no device access happened.
 */
static int handle_iova_rkey(struct session *s, const struct proto_req *req)
{
	const struct proto_iova_rkey *q = &req->u.iova_rkey;
	struct dev_entry *e = dev_by_handle(s, q->dev);
	struct proto_iova_rkey_rpy rpy = { 0 };
	struct sess_state *ss;
	bool found = false;

	if (!e)
		return -EBADF;
	if (!e->rxe)
		return -EOPNOTSUPP;
	ss = svec_containing(&s->states, e->dom_index, q->iova, 1,
			     offsetof(struct sess_state, span));
	if (ss && state_rxe(s, ss) == e->rxe && q->iova >= ss->st.addr) {
		const struct sess_mr *m = mr_set_at(&ss->mrs, q->iova - ss->st.addr, NULL);

		if (m) {
			rpy.rkey = rxe_mr_rkey(m->mr);
			rpy.mr_iova = ss->st.addr + m->off;
			rpy.mr_len = m->size;
			found = true;
		}
	} else if (!ss) {
		const struct sess_map *mp = map_rxe_at(s, e, q->iova, &rpy.rkey, &rpy.mr_len);

		if (mp) {
			rpy.mr_iova = mp->dma;
			rpy.mr_len = mp->size;
			found = true;
		} else {
			found = odp_rxe_mr(s, e, q->iova, &rpy.rkey, &rpy.mr_iova, &rpy.mr_len);
		}
	}
	if (!found)
		return -ENOENT;
	if (session_version(s) >= PROTO_VERSION_PEER) {
		struct {
			struct proto_iova_rkey_rpy r;
			struct proto_peer_token t;
		} full;

		full.r = rpy;
		memcpy(full.t.token, s->peer_token, sizeof(full.t.token));
		reply(s, req, req->hdr.type | PROTO_RPY, &full, sizeof(full));
		return 0;
	}
	reply(s, req, req->hdr.type | PROTO_RPY, &rpy, sizeof(rpy));
	return 0;
}

/* ==== admin queries ======================================================================= */

bool is_admin(const struct session *s)
{
	return s->uid == 0 || s->uid == s->srv->pol.self_uid;
}

static int handle_status(struct session *s, const struct proto_req *req)
{
	struct srv *v = s->srv;
	struct proto_status_rpy rpy = {
		.uptime_ns = now_ns() - v->start_ns,
		.pid = (uint32_t)getpid(),
		.io_backend = v->io,
		.clients = v->nconns,
		.devices = v->devices.ndevs,
		.sessions_total = v->stats.sessions_total,
		.frames_in = v->stats.frames_in,
		.frames_bad = v->stats.frames_bad,
		.teardowns = v->stats.teardowns,
		.leaked_states = v->stats.leaked_states,
		.leaked_maps = v->stats.leaked_maps,
		.leaked_mems = v->stats.leaked_mems,
		.mem_bytes = v->devices.pmem.stats.bytes,
	};

	reply(s, req, req->hdr.type | PROTO_RPY, &rpy, sizeof(rpy));
	return 0;
}

/* Fill a list reply with entries from start while they fit in the negotiated frame. */
static int handle_list(struct session *s, const struct proto_req *req)
{
	struct proto_list_rpy rpy = { 0 };
	uint8_t *out = scratch(s) + sizeof(rpy);
	size_t room = s->max_frame - sizeof(struct proto_hdr) - sizeof(rpy), esz;
	uint32_t start = req->u.list.start, total, count = 0;
	struct srv *v = s->srv;
	struct session *target = NULL;

	switch (req->hdr.type) {
	case PROTO_CMD_LIST_DEVICES:
		esz = sizeof(struct proto_dev_entry);
		total = v->devices.ndevs;
		break;
	case PROTO_CMD_LIST_CLIENTS:
		esz = sizeof(struct proto_client_entry);
		total = v->nconns;
		break;
	default:
		esz = sizeof(struct proto_map_entry);
		for (struct conn *c = v->conns; c; c = c->next)
			if (c->sess && c->sess->id == req->u.list.session_id)
				target = c->sess;
		if (!target)
			return -ESRCH;
		total = target->states.n + target->maps.n;
		break;
	}
	/* LIST_CLIENTS: walk the connection list once, not once per entry; CLIENT_MAPS its sets. */
	struct conn *cur = v->conns;
	const void *it = NULL, *it_map = NULL;

	for (uint32_t k = 0; req->hdr.type == PROTO_CMD_LIST_CLIENTS && k < start && cur; k++)
		cur = cur->next;
	for (uint32_t i = start; i < total && (count + 1) * esz <= room; i++, count++) {
		uint8_t *p = out + count * esz;

		if (req->hdr.type == PROTO_CMD_LIST_DEVICES) {
			const struct dev_entry *e = &v->devices.devs[i];
			struct proto_dev_entry de = { .flags = e->flags, .dma_mask = e->dev->dma_mask,
						      .domain = e->dom_index };

			memcpy(de.name, e->name, sizeof(de.name));
			de.granule_shift = e->dom->cfg.type == DOM_IDENTITY ?
					   0 : e->dom->cfg.granule_shift;
			devices_stats(e, &de.stats);
			memcpy(p, &de, sizeof(de));
		} else if (req->hdr.type == PROTO_CMD_LIST_CLIENTS) {
			struct proto_client_entry ce = { 0 };

			if (cur && cur->sess)
				session_entry(cur->sess, &ce);
			/* Version 4 defined the former reserved field: older sessions see 0. */
			if (s->plim.version < PROTO_VERSION_RING)
				ce.flags = 0;
			if (cur)
				cur = cur->next;
			memcpy(p, &ce, sizeof(ce));
		} else {
			struct proto_map_entry me = { 0 };

			if (i < target->states.n) {
				const struct sess_state *ss;

				/* By position once, then in order: a page costs O(start + count). */
				it = it ? svec_next(&target->states, it) : svec_at(&target->states, i);
				ss = it;

				me = (struct proto_map_entry){ .dev = ss->dev, .kind = 1,
							       .iova = ss->st.addr,
							       .size = dma_iova_size(&ss->st),
							       .linked_bytes = ss->linked };
			} else {
				const struct sess_map *mp;

				if (i == target->states.n || !it_map)
					it_map = svec_at(&target->maps, i - target->states.n);
				else
					it_map = svec_next(&target->maps, it_map);
				mp = it_map;

				me = (struct proto_map_entry){ .dev = mp->dev, .kind = 2,
							       .iova = mp->dma, .size = mp->size,
							       .linked_bytes = mp->size };
			}
			memcpy(p, &me, sizeof(me));
		}
	}
	rpy.count = count;
	rpy.total = total;
	memcpy(scratch(s), &rpy, sizeof(rpy));
	reply(s, req, req->hdr.type | PROTO_RPY, scratch(s), sizeof(rpy) + count * esz);
	return 0;
}

/* ==== HELLO and dispatch ================================================================== */

static int handle_hello(struct session *s, const struct proto_req *req)
{
	const struct proto_hello *h = &req->u.hello;
	struct limits *l = &s->srv->lim;
	struct {
		struct proto_hello_rpy h;
		struct proto_session tail;
	} out = { 0 };
	struct proto_hello_rpy rpy = { 0 };

	if (s->plim.version)
		return -EALREADY;
	rpy.version = h->version_max < PROTO_VERSION_MAX ? h->version_max : PROTO_VERSION_MAX;
	rpy.max_frame = h->max_frame < l->max_frame ? h->max_frame : l->max_frame;
	rpy.max_batch = h->max_batch < l->max_batch ? h->max_batch : l->max_batch;
	rpy.max_inflight = l->max_inflight;
	rpy.session_id = s->id;
	rpy.max_mems = l->max_mems;
	rpy.max_states = l->max_states;
	rpy.max_mem_bytes = l->max_mem_bytes;
	s->plim.version = rpy.version;
	s->plim.max_frame = rpy.max_frame;
	s->plim.max_batch = rpy.max_batch;
	s->max_frame = rpy.max_frame;
	if (rpy.version < PROTO_VERSION_RESUME) {
		reply(s, req, req->hdr.type | PROTO_RPY, &rpy, sizeof(rpy));
		return 0;
	}
	/* Version 5: the token, and whether the journal keeps the session. */
	out.h = rpy;
	persist_hello(s, &out.tail);
	_Static_assert(sizeof(out) == sizeof(out.h) + sizeof(out.tail), "hello tail packs");
	reply(s, req, req->hdr.type | PROTO_RPY, &out, sizeof(out));
	return 0;
}

/* RESUME: this connection's fresh session gives way to a restored one. */
static int handle_resume(struct session *s, const struct proto_req *req)
{
	const struct proto_hello *h = &req->u.resume.hello;
	struct limits *l = &s->srv->lim;
	struct {
		struct proto_hello_rpy h;
		struct proto_session tail;
	} out = { 0 };
	struct session *t;
	int r;

	if (s->plim.version)
		return -EALREADY;
	t = persist_resume(s, req, &r);
	if (!t)
		return r;
	out.h.version = h->version_max < PROTO_VERSION_MAX ? h->version_max : PROTO_VERSION_MAX;
	out.h.max_frame = h->max_frame < l->max_frame ? h->max_frame : l->max_frame;
	out.h.max_batch = h->max_batch < l->max_batch ? h->max_batch : l->max_batch;
	out.h.max_inflight = l->max_inflight;
	out.h.session_id = t->id;
	out.h.max_mems = l->max_mems;
	out.h.max_states = l->max_states;
	out.h.max_mem_bytes = l->max_mem_bytes;
	t->plim.version = out.h.version;
	t->plim.max_frame = out.h.max_frame;
	t->plim.max_batch = out.h.max_batch;
	t->max_frame = out.h.max_frame;
	memcpy(out.tail.token, req->u.resume.token, sizeof(out.tail.token));
	out.tail.flags = PROTO_SESSION_DURABLE;
	t->in_ring = false;
	persist_resumed(t);
	sess_send(t, false, req->hdr.id, req->hdr.type | PROTO_RPY, &out, sizeof(out));
	log_info("session %" PRIu64 ": resumed by pid %d", t->id, (int)t->pid);
	return 0;
}

static void drop_frame_fds(struct session *s, uint16_t type)
{
	int n = type == PROTO_CMD_MEM_IMPORT ? 1 : type == PROTO_CMD_RING_SETUP ? 3 : 0;

	while (n--) {
		int fd = conn_take_fd(s->conn);

		if (fd >= 0)
			close(fd);
	}
}

static int handle_ring_setup(struct session *s, const struct proto_req *req)
{
	struct proto_ring_setup_rpy rpy = { 0 };
	int r;

	/* Its fds travel on the socket: on the ring it would take someone else's. */
	if (s->in_ring)
		return -EINVAL;
	r = ring_setup(s, req, &s->ring, &rpy);
	if (r)
		return r;
	reply(s, req, req->hdr.type | PROTO_RPY, &rpy, sizeof(rpy));
	return 0;
}

void session_frame_from(struct session *s, const uint8_t *frame, size_t len, bool ring)
{
	s->in_ring = ring;
	session_frame(s, frame, len);
	s->in_ring = false;
}

struct ring_chan *session_ring(const struct session *s)
{
	return s->ring;
}

uint32_t session_max_frame(const struct session *s)
{
	return s->max_frame;
}

uint16_t session_version(const struct session *s)
{
	return s && s->plim.version ? s->plim.version : PROTO_VERSION;
}

pid_t session_pid(const struct session *s)
{
	return s->pid;
}

void session_frame(struct session *s, const uint8_t *frame, size_t len)
{
	struct proto_req req;
	int r;

	s->requests++;
	s->in_frame = true;
	r = proto_decode_request(frame, len, &s->plim, &req);
	if (r) {
		/*
		 * A refused MEM_IMPORT or RING_SETUP still takes the fds that came
		 * with it: left queued, they would go to the next such request,
		 * which would map another frame's memory.
		 */
		if (!s->in_ring)
			drop_frame_fds(s, req.hdr.type);
		s->srv->stats.frames_bad++;
		log_debug("session %" PRIu64 ": bad %s frame: %s", s->id,
			  proto_cmd_name(req.hdr.type), strerror(-r));
		/* The framing itself is suspect: say why and close. */
		if (r == -EMSGSIZE || r == -EPROTONOSUPPORT || (r == -EBADMSG && req.hdr.magic !=
								     PROTO_MAGIC)) {
			reply(s, &req, PROTO_RPY_ERROR, &(struct proto_status){ .status = r },
			      sizeof(struct proto_status));
			s->conn->dead = true;
			s->in_frame = false;
			return;
		}
		reply(s, &req, r == -ENOSYS ? PROTO_RPY_ERROR : req.hdr.type | PROTO_RPY,
		      &(struct proto_status){ .status = r }, sizeof(struct proto_status));
		s->in_frame = false;
		return;
	}
	if (req.hdr.type == PROTO_CMD_RESUME) {
		r = handle_resume(s, &req);
		s->in_frame = false;
		if (r) {
			reply_status(s, &req, r);
			return;
		}
		/* The connection belongs to the restored session now: this one goes. */
		session_free(s);
		return;
	}
	/* Resent after a restart, and already in the journal: the same answer again. */
	if (s->ps && persist_answered(s, &req, s->in_ring)) {
		if (!s->in_ring)
			drop_frame_fds(s, req.hdr.type);
		s->in_frame = false;
		return;
	}
	s->cur_frame = frame;
	s->cur_len = len;
	session_dispatch(s, &req);
	s->cur_frame = NULL;
	s->in_frame = false;
}

void session_dispatch(struct session *s, const struct proto_req *preq)
{
	struct proto_req req = *preq;
	int r;

	switch (req.hdr.type) {
	case PROTO_CMD_HELLO:
		r = handle_hello(s, &req);
		break;
	case PROTO_CMD_DEV_OPEN:
		r = handle_dev_open(s, &req);
		break;
	case PROTO_CMD_DEV_CLOSE:
		r = handle_dev_close(s, &req);
		break;
	case PROTO_CMD_DEV_STATS:
		r = handle_dev_stats(s, &req);
		break;
	case PROTO_CMD_MEM_IMPORT:
		/* Its fd travels on the socket: on the ring it would take someone else's. */
		r = s->in_ring ? -EINVAL : handle_mem_import(s, &req);
		break;
	case PROTO_CMD_MEM_FREE:
		r = handle_mem_free(s, &req);
		break;
	case PROTO_CMD_IOVA_ALLOC:
		r = handle_iova_alloc(s, &req);
		break;
	case PROTO_CMD_BATCH:
		r = handle_batch(s, &req);
		break;
	case PROTO_CMD_DMA_READ:
	case PROTO_CMD_DMA_WRITE:
		r = handle_dma(s, &req);
		break;
	case PROTO_CMD_ODP_REG:
		r = odp_handle_reg(s, &req);
		break;
	case PROTO_CMD_ODP_DEREG:
		r = odp_handle_dereg(s, &req);
		break;
	case PROTO_CMD_ODP_ADVISE:
		r = odp_handle_advise(s, &req);
		break;
	case PROTO_CMD_ODP_INVALIDATE:
		r = odp_handle_invalidate(s, &req);
		break;
	case PROTO_CMD_MEM_DISCARD:
		r = odp_handle_discard(s, &req);
		break;
	case PROTO_CMD_ODP_STATS:
		r = odp_handle_stats(s, &req);
		break;
	case PROTO_CMD_FAULT_DONE:
		r = odp_handle_fault_done(s, &req);
		break;
	case PROTO_CMD_LIST_ODP:
		r = is_admin(s) ? odp_handle_list(s, &req) : -EPERM;
		break;
	case PROTO_CMD_IOVA_RKEY:
		r = handle_iova_rkey(s, &req);
		break;
	case PROTO_CMD_RING_SETUP:
		r = handle_ring_setup(s, &req);
		break;
	case PROTO_CMD_STATUS:
		r = is_admin(s) ? handle_status(s, &req) : -EPERM;
		break;
	case PROTO_CMD_LIST_DEVICES:
	case PROTO_CMD_LIST_CLIENTS:
	case PROTO_CMD_CLIENT_MAPS:
		r = is_admin(s) ? handle_list(s, &req) : -EPERM;
		break;
	default:
		r = -ENOSYS;
		break;
	}
	if (r)
		reply_status(s, &req, r);
}

/* Is [off, off + size) of a state published (synced)? Looks at its first and last granule. */
bool session_range_synced(struct session *s, const struct sess_state *ss, uint64_t off,
			  uint64_t size)
{
	const struct dev_entry *e = &s->srv->devices.devs[ss->dev];
	struct pgtbl_leaf a, b;
	uint64_t iova = ss->st.addr + off;

	if (e->dom->cfg.visibility == DOM_VISIBLE_ON_LINK)
		return true;
	if (pgtbl_lookup(&e->dom->pt, iova, &a) || pgtbl_lookup(&e->dom->pt, iova + size - 1, &b))
		return false;
	return !(a.prot & PGTBL_PENDING) && !(b.prot & PGTBL_PENDING);
}

/* ==== lifetime ================================================================================ */

struct session *session_new(struct srv *v, struct conn *c, pid_t pid, uid_t uid, gid_t gid)
{
	struct session *s = calloc(1, sizeof(*s));

	if (!s)
		return NULL;
	s->srv = v;
	s->conn = c;
	s->id = ++v->next_session_id;
	s->pid = pid;
	s->uid = uid;
	s->gid = gid;
	s->max_frame = v->lim.max_frame;
	s->plim.max_frame = v->lim.max_frame;
	s->plim.max_batch = v->lim.max_batch;
	svec_init(&s->states, sizeof(struct sess_state));
	svec_init(&s->maps, sizeof(struct sess_map));
	svec_init(&s->odp_spans, sizeof(struct odp_span));
	/* A remote peer's only way in: never guessable (getrandom blocks only before boot's
	 * seeding). */
	if (getrandom(s->peer_token, sizeof(s->peer_token), 0) != (ssize_t)sizeof(s->peer_token)) {
		log_err("session: getrandom: %s", strerror(errno));
		free(s);
		return NULL;
	}
	v->stats.sessions_total++;
	return s;
}

uint64_t session_id(const struct session *s)
{
	return s->id;
}

bool session_hello_done(const struct session *s)
{
	return s->plim.version != 0;
}

bool session_throttled(const struct session *s)
{
	/*
	 * Only accesses the daemon itself will serve count: those parked on the
	 * client's own answers (user faults) must not stop the daemon reading
	 * that answer. They are bounded in odp_dma_fault instead (-EAGAIN).
	 */
	if (!s)
		return false;
	/* Replies held for the journal count as unsent: read no more past the mark. */
	return s->parked - s->uparked >= s->srv->lim.max_inflight ||
	       (s->ps && persist_held(s) > s->srv->lim.out_high);
}

void session_entry(const struct session *s, struct proto_client_entry *ret)
{
	uint64_t linked = 0;

	for (const struct sess_state *ss = svec_first(&s->states); ss;
	     ss = svec_next(&s->states, ss))
		linked += ss->linked;
	*ret = (struct proto_client_entry){
		.session_id = s->id, .pid = (uint32_t)s->pid, .uid = s->uid, .gid = s->gid,
		.mems = s->nmems, .mem_bytes = s->mem_bytes, .states = s->states.n,
		.maps = s->maps.n, .linked_bytes = linked, .requests = s->requests,
		.flags = s->ring ? PROTO_CLIENT_RINGS : 0,
	};
}

/*
 * Tear down everything the client still held, in the kernel's order:
 * unlink and flush, free the IOVA, unmap streaming mappings, then drop the
 * memory. What was left is a leak in DMA-API-debug terms: count and log it.
 */
void session_free(struct session *s)
{
	struct dev_table *t;
	uint32_t nstates, nmaps, nmems;
	uint64_t linked = 0, mem_bytes;
	bool kept;

	if (!s)
		return;
	t = &s->srv->devices;
	/* Shutting down with a journal: the session lives on in it, not a leak. */
	kept = s->ps && s->srv->stopping;
	persist_session_end(s);
	/* Regions first: they map memory without pinning it. */
	/* Its remote peers first: nothing may reach its MRs while they go. */
	peers_session_gone(s->srv, s);
	odp_session_free(s);
	nstates = s->states.n;
	nmaps = s->maps.n;
	nmems = s->nmems;
	mem_bytes = s->mem_bytes;
	while (s->states.n) {
		struct sess_state *ss = svec_last(&s->states);
		struct dev_entry *e = &t->devs[ss->dev];

		linked += ss->linked;
		(void)dma_iova_destroy(e->dev, &ss->st, dma_iova_size(&ss->st), DMA_BIDIRECTIONAL,
				       0);
		if (dma_use_iova(&ss->st)) {
			/* Cannot happen: destroy of the whole state unlinks everything. */
			log_err("session %" PRIu64 ": IOVA %#" PRIx64 " still busy at teardown",
				s->id, ss->st.addr);
		}
		state_remove(s, ss);
	}
	while (s->maps.n) {
		struct sess_map *mp = svec_last(&s->maps);
		struct dev_entry *e = &t->devs[mp->dev];

		rxe_mr_dereg(mp->mr);
		(void)dma_unmap_phys(e->dev, mp->dma, mp->size, DMA_BIDIRECTIONAL, 0);
		mem_unpin(s, mp->mem);
		svec_remove(&s->maps, mp);
	}
	for (uint32_t i = 0; i < s->nmem_slots; i++)
		if (s->mems[i])
			mem_release(s, s->mems[i]);
	/* Every MR and peer QP in them is gone now. */
	for (uint32_t i = 0; s->pdx && i < t->ndevs; i++)
		rxe_pdx_free(s->pdx[i]);
	free(s->pdx);
	for (uint32_t d = 0; d < t->ndoms; d++)
		if (t->doms[d]->cfg.flush == DOM_FLUSH_LAZY)
			devices_fq_arm(t, d);
	if (kept) {
		log_info("session %" PRIu64 ": kept in the journal for its client to resume", s->id);
	} else if (nstates || nmaps || nmems) {
		s->srv->stats.teardowns++;
		s->srv->stats.leaked_states += nstates;
		s->srv->stats.leaked_maps += nmaps;
		s->srv->stats.leaked_mems += nmems;
		log_notice("session %" PRIu64 " (pid %d uid %u): teardown: %u IOVA states "
			   "(%" PRIu64 " bytes linked), %u streaming mappings, %u memory objects "
			   "(%" PRIu64 " bytes) left by the client",
			   s->id, (int)s->pid, (unsigned int)s->uid, nstates, linked, nmaps, nmems,
			   mem_bytes);
	}
	svec_fini(&s->states);
	svec_fini(&s->maps);
	svec_fini(&s->odp_spans);
	free(s->odps);
	free(s->by_slot);
	free(s->mems);
	/* Last: nothing above may send, and the ring's mappings go with it. */
	ring_free(s->ring);
	free(s);
}
