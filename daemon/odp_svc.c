// SPDX-License-Identifier: MIT
/*
 * odp_svc.c - on-demand paging in the daemon: a client's ODP regions, the
 * I/O page-fault service, and faults handed to the client to resolve.
 *
 * A device access (DMA_READ/DMA_WRITE) that faults inside one of the
 * client's ODP regions is parked, not answered. The fault service is one
 * libevent event, activated when the first fault is queued: it runs after
 * every connection's input of the current loop iteration was handled, so
 * it sees all the faults that arrived together, from every client, and
 * serves them with one odp_service() call: one IOTLB flush per domain for
 * the whole batch (or one per page with [odp] sync = per-page, the
 * kernel's way). Then each parked access is retried and answered. Replies
 * to parked accesses may therefore overtake later requests of the same
 * connection; the client matches replies by id.
 *
 * A region registered with PROTO_ODP_USER_FAULTS does not resolve its own
 * faults: the daemon sends the client a PROTO_EVT_FAULT for the fault-around
 * window and parks the access on that fault until the client answers
 * FAULT_DONE, the timeout fires, or the client goes away. The region's
 * sequence number is sampled when the event is sent; an invalidation of the
 * region before the answer means the client's data may already be stale, so
 * the fault is raised again rather than mapped (the kernel's
 * mmu_interval_read_retry, stretched over a round trip to the client).
 *
 * On an rxe device ([device] odp = emulate, the default, or a device
 * without working ODP) the same service is the emulation: the access is an
 * RDMA operation with the rkey of the region's MR at the IOVA, a remote
 * access error parks it as a fault would, and what the service maps becomes
 * MRs before the retry (see odp_mrs_sync). On an rxe device with ODP and
 * [device] odp = mr a region is one ODP MR instead, and the device faults
 * its pages in itself through the kernel (see odp_mr_reg); the service then
 * only prefetches into it.
 *
 * Bounds: a client has at most lim.max_inflight accesses parked for the
 * daemon's own service; beyond that its connection stops being read until
 * some are answered. Accesses parked on the client's own answers (user
 * faults) are bounded separately, also by lim.max_inflight: one more is
 * refused with -EAGAIN, because stopping to read would also stop the
 * answers that unpark them.
 */
#include <errno.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "internal.h"
#include "rxe.h"
#include "session.h"

struct sess_odp {
	struct session *sess;
	uint32_t handle;
	uint32_t flags;            /* PROTO_ODP_* */
	uint32_t access;           /* as registered (PROTO_ODP_ACCESS_*) */
	struct dev_entry *e;
	struct sess_mem *mem;      /* explicit: the object; NULL once the client freed it */
	uint64_t mem_off;          /* explicit: byte of mem at region offset 0 */
	uint64_t user_faults;
	uint64_t user_fault_timeouts;
	struct mr_set mrs;         /* rxe device, emulated: MRs over mapped granules */
	struct rxe_mr *omr;        /* rxe device with ODP: the region's one ODP MR */
	struct odp_region r;
};

/* A device access parked for the fault service, or an asynchronous prefetch. */
struct pfault {
	struct pfault *next;
	struct session *sess;
	struct sess_odp *o;
	uint64_t id;               /* the request's */
	uint16_t type;             /* PROTO_CMD_DMA_READ / DMA_WRITE / ODP_ADVISE */
	uint32_t tries;
	struct dev_entry *e;
	uint64_t iova;
	uint32_t len;
	struct dom_fault f;        /* the fault that parked it */
	struct odp_fault of;       /* what the service is asked to map */
	uint64_t t0;
	uint8_t *data;             /* DMA_WRITE: the payload */
	bool ring;                 /* the request came on the ring: so does the reply */
};

/* A fault handed to the client (PROTO_ODP_USER_FAULTS). */
struct ufault {
	struct ufault *next;
	struct sess_odp *o;
	uint64_t id;
	uint64_t off, len;         /* the window the client fills */
	uint32_t access;
	uint64_t iova;
	uint64_t seq;              /* the region's when the event was sent */
	uint32_t raised;           /* events sent for it */
	struct event *timer;
	struct pfault *waiters;    /* accesses parked on the answer */
};

#define DMA_RETRIES 4u /* fault, serve, retry rounds before an access gives up */

static uint64_t page_size_of(const struct dev_entry *e)
{
	return e->dom->granule > 4096 ? e->dom->granule : 4096;
}

static uint32_t to_dom_access(uint16_t type)
{
	return type == PROTO_CMD_DMA_WRITE ? DOM_ACCESS_WRITE : DOM_ACCESS_READ;
}

static bool rights_ok(const struct sess_odp *o, uint32_t access)
{
	uint32_t need = access == DOM_ACCESS_WRITE ? ODP_ACCESS_DEVICE_WRITE : ODP_ACCESS_DEVICE_READ;

	return o->r.access & need;
}

/* ==== backing: where a region offset lives ===================================== */

static int resolve_explicit(void *arg, uint64_t off, uint64_t *phys, uint64_t *run)
{
	struct sess_odp *o = arg;

	if (!o->mem || off >= o->r.size) {
		*run = 0;
		return -EFAULT;
	}
	*phys = o->mem->obj->phys + o->mem_off + off;
	*run = o->r.size - off;
	return 0;
}

/* Index of the first live object whose implicit range starts after off. */
static uint32_t slot_after(const struct session *s, uint64_t off)
{
	uint32_t lo = 0, hi = s->nby_slot;

	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;

		if (s->by_slot[mid]->implicit_off <= off)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/* The live object whose implicit range holds off, by binary search. */
static struct sess_mem *slot_find(const struct session *s, uint64_t off)
{
	uint32_t i = slot_after(s, off);
	struct sess_mem *m;

	if (!i)
		return NULL;
	m = s->by_slot[i - 1];
	return off - m->implicit_off < m->obj->size ? m : NULL;
}

/* Bytes from off to the next object's slot (or the region's end): a hole of the region. */
static uint64_t slot_gap(const struct sess_odp *o, uint64_t off)
{
	const struct session *s = o->sess;
	uint32_t i = slot_after(s, off);

	if (i < s->nby_slot && s->by_slot[i]->implicit_off < o->r.size)
		return s->by_slot[i]->implicit_off - off;
	return o->r.size - off;
}

static int resolve_implicit(void *arg, uint64_t off, uint64_t *phys, uint64_t *run)
{
	struct sess_odp *o = arg;
	struct sess_mem *m = slot_find(o->sess, off);
	uint64_t g = o->e->dom->granule, in;

	if (!m) {
		*run = off < o->r.size ? slot_gap(o, off) : 0;
		return -EFAULT;
	}
	in = off - m->implicit_off;
	*phys = m->obj->phys + in;
	*run = (m->obj->size - in) & ~(g - 1);
	if (*run > o->r.size - off)
		*run = o->r.size - off;
	return *run ? 0 : -EFAULT;
}

/* First fit in the client's implicit space: 2 MiB aligned, 1 GiB for big objects. */
int odp_mem_added(struct session *s, struct sess_mem *m)
{
	uint64_t align = m->obj->size >= (UINT64_C(1) << 30) ? UINT64_C(1) << 30 : UINT64_C(1) << 21;
	uint64_t at = 0;
	uint32_t i;

	if (s->nby_slot == s->by_slot_cap) {
		uint32_t cap = s->by_slot_cap ? s->by_slot_cap * 2 : 16;
		struct sess_mem **n = realloc(s->by_slot, cap * sizeof(*n));

		if (!n)
			return -ENOMEM;
		s->by_slot = n;
		s->by_slot_cap = cap;
	}
	for (i = 0; i < s->nby_slot; i++) {
		const struct sess_mem *q = s->by_slot[i];

		if (at + m->obj->size <= q->implicit_off)
			break;
		at = (q->implicit_off + q->obj->size + align - 1) & ~(align - 1);
	}
	if (s->rp && s->rp->len >= sizeof(struct proto_mem_import_rpy)) {
		/* Restore: where the client was told implicit regions see it. */
		const struct proto_mem_import_rpy *w = (const void *)s->rp->body;

		at = (uint64_t)w->implicit_slot << PROTO_IMPLICIT_SLOT_SHIFT;
		for (i = 0; i < s->nby_slot && s->by_slot[i]->implicit_off < at; i++)
			;
	}
	m->implicit_off = at;
	memmove(s->by_slot + i + 1, s->by_slot + i, (s->nby_slot - i) * sizeof(*s->by_slot));
	s->by_slot[i] = m;
	s->nby_slot++;
	return 0;
}

static struct sess_odp *odp_containing(struct session *s, const struct dev_entry *e,
				       uint64_t iova, uint64_t len);
static void fault_window(const struct sess_odp *o, const struct odp_settings *set, uint64_t off,
			 uint64_t len, uint64_t *woff, uint64_t *wlen);

/* ==== rxe: what the engine maps in a region, as verbs MRs =================================== */

/*
 * rxe has no ODP, so the emulation keeps the region's mapped granules
 * registered as ordinary MRs at their IOVAs: a granule the engine has not
 * mapped has no MR, and rxe refuses an access there with a remote access
 * error, which is the device page fault. The engine's page table is the
 * truth; the MRs follow it after every service (odp_mrs_sync) and
 * invalidation (invalidate_clipped), never the other way round.
 */

/* The daemon's mapping of region byte off, and in *run the bytes from there in one object. */
static uint8_t *backing_va(const struct sess_odp *o, uint64_t off, uint64_t *run)
{
	if (o->flags & PROTO_ODP_IMPLICIT) {
		struct sess_mem *m = slot_find(o->sess, off);

		if (!m)
			return NULL;
		*run = m->obj->size - (off - m->implicit_off);
		return m->obj->va + (off - m->implicit_off);
	}
	if (!o->mem)
		return NULL;
	*run = o->r.size - off;
	return o->mem->obj->va + o->mem_off + off;
}

/* The remote access the engine grants on the granule at off (0: not mapped). */
static unsigned int granule_acc(const struct sess_odp *o, uint64_t off)
{
	uint64_t g = o->e->dom->granule;
	unsigned int acc = 0;

	if (!odp_needs_service(&o->r, off, g, DOM_ACCESS_READ))
		acc |= RXE_ACC_READ;
	if (!odp_needs_service(&o->r, off, g, DOM_ACCESS_WRITE))
		acc |= RXE_ACC_WRITE;
	return acc;
}

/*
 * Register what the engine maps in [lo, hi) (granule-aligned, no MR there):
 * one MR per run of granules with the same rights in one object.
 * Return: 0, or the first failure's -errno (those granules stay without an
 * MR: the access faults again and the next service tries once more).
 */
static int odp_mrs_put(struct sess_odp *o, uint64_t lo, uint64_t hi)
{
	uint64_t g = o->e->dom->granule;
	struct rxe_pdx *x;
	int ret = sess_pdx(o->sess, o->e, &x);

	if (ret)
		return ret;

	while (lo < hi) {
		unsigned int acc = granule_acc(o, lo);
		uint64_t run = 0, end = lo + g;
		uint8_t *va = acc ? backing_va(o, lo, &run) : NULL;
		struct rxe_mr *mr;
		int r;

		if (!va) {
			lo = end;
			continue;
		}
		while (end < hi && end - lo < run && granule_acc(o, end) == acc)
			end += g;
		if (end - lo > run)
			end = lo + run;
		if (mr_set_reserve(&o->mrs))
			return -ENOMEM;
		r = rxe_mr_reg(x, va, end - lo, o->r.st.addr + lo, acc, &mr);
		if (r) {
			log_warn("session %" PRIu64 ": %s: cannot register ODP IOVA %#" PRIx64
				 " + %#" PRIx64 ": %s", o->sess->id, rxe_name(o->e->rxe),
				 o->r.st.addr + lo, end - lo, strerror(-r));
			if (!ret)
				ret = r;
		} else {
			mr_set_push(&o->mrs, lo, end - lo, mr);
		}
		lo = end;
	}
	return ret;
}

/* ==== rxe with ODP: the region as one ODP MR ================================================= */

/*
 * On a device with ODP the region is one ODP MR over the daemon's mapping
 * of its memory, at the region's IOVA, with the rights it was registered
 * with: nothing is pinned, and the device faults pages in itself through
 * the kernel (hmm), as a NIC with ODP does; a remote peer reaches any byte
 * of the region. The engine's page table still serves the region's other
 * devices and its prefetches, and what iovad prefetches it also prefetches
 * into the MR (ibv_advise_mr). An invalidation drops the daemon's PTEs over
 * the range (MADV_DONTNEED on its MAP_SHARED mapping: the bytes stay in the
 * file), and the kernel's MMU notifier invalidates the MR's pages, so the
 * device's next access faults again. Regions whose faults must reach
 * iovad (IOVAD_ODP_USER_FAULTS: the client fills pages first) and implicit
 * ones (many objects, no one range to register) stay on the emulation.
 * Return: true if o is now an ODP MR region.
 */
static bool odp_mr_reg(struct sess_odp *o)
{
	unsigned int acc = 0;
	struct rxe_pdx *x;
	int r;

	if (!o->e->odp_mr || (o->flags & (PROTO_ODP_IMPLICIT | PROTO_ODP_USER_FAULTS)) || !o->mem ||
	    sess_pdx(o->sess, o->e, &x))
		return false;
	if (o->access & PROTO_ODP_ACCESS_DEVICE_READ)
		acc |= RXE_ACC_READ;
	if (o->access & PROTO_ODP_ACCESS_DEVICE_WRITE)
		acc |= RXE_ACC_WRITE;
	r = rxe_mr_reg_odp(x, o->mem->obj->va + o->mem_off, o->r.size, o->r.st.addr, acc, &o->omr);
	if (r) {
		log_warn("session %" PRIu64 ": %s: cannot register ODP IOVA %#" PRIx64
			 " + %#" PRIx64 " as an ODP MR (%s): the region is emulated",
			 o->sess->id, rxe_name(o->e->rxe), o->r.st.addr, o->r.size, strerror(-r));
		return false;
	}
	return true;
}

/* The engine mapped [lo, hi) of an ODP MR region: fault it into the MR too. */
static void odp_mr_prefetch(struct sess_odp *o, uint64_t lo, uint64_t hi)
{
	unsigned int acc = granule_acc(o, lo);
	struct rxe_pdx *x;
	int r;

	if (!acc || lo >= hi || sess_pdx(o->sess, o->e, &x))
		return;
	r = rxe_mr_prefetch(x, o->omr, o->r.st.addr + lo, hi - lo, (acc & RXE_ACC_WRITE) != 0);
	if (r)
		log_debug("session %" PRIu64 ": %s: prefetch of ODP IOVA %#" PRIx64 " + %#" PRIx64
			  ": %s",
			  o->sess->id, rxe_name(o->e->rxe), o->r.st.addr + lo, hi - lo,
			  strerror(-r));
}

/* An ODP MR region's [off, end) was invalidated: the device must fault it again. */
static void odp_mr_invalidate(struct sess_odp *o, uint64_t off, uint64_t end)
{
	long pg = sysconf(_SC_PAGESIZE);
	uint64_t lo, hi;

	if (!o->mem || pg <= 0)
		return;
	/* Whole pages of the object's mapping, inside the region. */
	lo = (o->mem_off + off + (uint64_t)pg - 1) & ~((uint64_t)pg - 1);
	hi = (o->mem_off + end) & ~((uint64_t)pg - 1);
	if (lo >= hi)
		return;
	if (madvise(o->mem->obj->va + lo, hi - lo, MADV_DONTNEED))
		log_warn("session %" PRIu64 ": madvise(MADV_DONTNEED) of an ODP MR's pages: %s",
			 o->sess->id, strerror(errno));
}

static void odp_mr_dereg(struct sess_odp *o)
{
	rxe_mr_dereg(o->omr);
	o->omr = NULL;
}

/*
 * The engine served [off, off + len) of the region (its window): MRs over
 * that range go (a write fault may have upgraded read-only granules, which
 * a new MR must carry) and what is mapped there now is registered.
 */
static void odp_mrs_sync(struct sess_odp *o, uint64_t off, uint64_t len)
{
	uint64_t g = o->e->dom->granule, lo, hi;

	if (!o->e->rxe || off >= o->r.size || !len)
		return;
	lo = off & ~(g - 1);
	hi = len > o->r.size - off ? o->r.size : (off + len + g - 1) & ~(g - 1);
	if (o->omr) {
		odp_mr_prefetch(o, lo, hi);
		return;
	}
	mr_set_drop(&o->mrs, lo, hi, &lo, &hi, NULL, NULL);
	(void)odp_mrs_put(o, lo, hi);
}

/* The range the service was asked to map for f: its window unless exact. */
static void odp_mrs_served(struct sess_odp *o, const struct odp_settings *set,
			   const struct odp_fault *f)
{
	uint64_t woff = f->off, wlen = f->len;

	if (!o->e->rxe)
		return;
	if (!(f->flags & ODP_FAULT_EXACT) && f->off < o->r.size && f->len)
		fault_window(o, set, f->off, f->len, &woff, &wlen);
	odp_mrs_sync(o, woff, wlen);
}

bool odp_rxe_key(struct session *s, const struct dev_entry *e, uint64_t iova, uint32_t *rkey,
		 uint64_t *left)
{
	struct sess_odp *o = odp_containing(s, e, iova, 1);
	const struct sess_mr *m;
	uint64_t off, next;

	if (!o || !e->rxe)
		return false;
	off = iova - o->r.st.addr;
	if (o->omr) {
		/* The device faults the region in itself: one MR to its end. */
		*rkey = rxe_mr_rkey(o->omr);
		*left = o->r.size - off;
		return true;
	}
	m = mr_set_at(&o->mrs, off, &next);
	if (m) {
		*rkey = rxe_mr_rkey(m->mr);
		*left = m->off + m->size - off;
		return true;
	}
	/* No MR: rxe refuses it up to the next MR, and the fault names its first byte. */
	*rkey = RXE_RKEY_INVALID;
	*left = (next < o->r.size ? next : o->r.size) - off;
	return true;
}

bool odp_rxe_mr(struct session *s, const struct dev_entry *e, uint64_t iova, uint32_t *rkey,
		uint64_t *mr_iova, uint64_t *mr_len)
{
	struct sess_odp *o = odp_containing(s, e, iova, 1);
	const struct sess_mr *m;

	if (!o || !e->rxe)
		return false;
	if (o->omr) {
		*rkey = rxe_mr_rkey(o->omr);
		*mr_iova = o->r.st.addr;
		*mr_len = o->r.size;
		return true;
	}
	m = mr_set_at(&o->mrs, iova - o->r.st.addr, NULL);
	if (!m)
		return false;
	*rkey = rxe_mr_rkey(m->mr);
	*mr_iova = o->r.st.addr + m->off;
	*mr_len = m->size;
	return true;
}

/* Invalidate [off, off + len) of a region, clipped, granule-widened. */
static void invalidate_clipped(struct sess_odp *o, uint64_t off, uint64_t len)
{
	uint64_t g = o->e->dom->granule, end, rlo = UINT64_MAX, rhi = 0;

	if (off >= o->r.size || !len)
		return;
	end = len > o->r.size - off ? o->r.size : off + len;
	off &= ~(g - 1);
	end = (end + g - 1) & ~(g - 1);
	/* rxe: the MRs go first, then the pages; what stays mapped is registered again. */
	if (o->e->rxe && !o->omr)
		mr_set_drop(&o->mrs, off, end, &rlo, &rhi, NULL, NULL);
	(void)odp_invalidate(&o->r, off, end - off);
	if (o->omr)
		odp_mr_invalidate(o, off, end);
	if (rlo < rhi)
		(void)odp_mrs_put(o, rlo, rhi);
}

/* Every region of s over [mem byte off, + len): unmapped. */
static void invalidate_mem_range(struct session *s, const struct sess_mem *m, uint64_t off,
				 uint64_t len)
{
	for (uint32_t i = 0; i < s->nodp_slots; i++) {
		struct sess_odp *o = s->odps[i];

		if (!o)
			continue;
		if (o->flags & PROTO_ODP_IMPLICIT) {
			invalidate_clipped(o, m->implicit_off + off, len);
		} else if (o->mem == m) {
			uint64_t lo = off > o->mem_off ? off : o->mem_off;
			uint64_t hi = off + len < o->mem_off + o->r.size ? off + len :
					  o->mem_off + o->r.size;

			if (lo < hi)
				invalidate_clipped(o, lo - o->mem_off, hi - lo);
		}
	}
}

void odp_mem_removed(struct session *s, struct sess_mem *m)
{
	invalidate_mem_range(s, m, 0, m->obj->size);
	for (uint32_t i = 0; i < s->nodp_slots; i++) {
		if (s->odps[i] && s->odps[i]->mem == m) {
			/* An ODP MR follows the address: it must not see what is mapped there next.
			 */
			odp_mr_dereg(s->odps[i]);
			s->odps[i]->mem = NULL; /* later faults find nothing: -EFAULT */
		}
	}
	for (uint32_t i = 0; i < s->nby_slot; i++) {
		if (s->by_slot[i] != m)
			continue;
		memmove(s->by_slot + i, s->by_slot + i + 1,
			(s->nby_slot - i - 1) * sizeof(*s->by_slot));
		s->nby_slot--;
		break;
	}
}

/* ==== regions ======================================================================== */

static struct sess_odp *odp_by_handle(struct session *s, uint32_t h)
{
	if (h == 0 || h > s->nodp_slots)
		return NULL;
	return s->odps[h - 1];
}

static struct sess_odp *odp_containing(struct session *s, const struct dev_entry *e,
				       uint64_t iova, uint64_t len)
{
	struct odp_span *sp = svec_containing(&s->odp_spans, e->dom_index, iova, len,
					      offsetof(struct odp_span, span));

	return sp ? sp->o : NULL;
}

bool odp_dma_allowed(struct session *s, const struct dev_entry *e, uint64_t iova, uint64_t len)
{
	return odp_containing(s, e, iova, len) != NULL;
}

int odp_handle_reg(struct session *s, const struct proto_req *req)
{
	const struct proto_odp_reg *q = &req->u.odp_reg;
	struct dev_entry *e = dev_by_handle(s, q->dev);
	struct proto_odp_reg_rpy rpy = { 0 };
	struct sess_odp *o;
	struct odp_span *sp;
	uint64_t size, pg;
	uint32_t slot;
	int r;

	if (!e)
		return -EBADF;
	if (e->dom->cfg.type == DOM_IDENTITY)
		return -EOPNOTSUPP;
	if (s->nodps >= s->srv->lim.max_odp)
		return -EDQUOT;
	/* The IOVA it reserves counts towards max_iova_bytes (an implicit one: its size). */
	if (iova_over_quota(s, q->flags & PROTO_ODP_IMPLICIT ?
			       (q->len ? q->len : s->srv->odp.implicit_size) : q->len))
		return -EDQUOT;
	pg = page_size_of(e);
	o = calloc(1, sizeof(*o));
	if (!o)
		return -ENOMEM;
	/* Restore: the recorded IOVA, and below, the recorded handle. */
	if (s->rp && s->rp->len >= sizeof(rpy)) {
		memcpy(&rpy, s->rp->body, sizeof(rpy));
		e->dom->want_iova = rpy.iova;
	}
	o->sess = s;
	o->e = e;
	o->flags = q->flags;
	if (q->flags & PROTO_ODP_IMPLICIT) {
		size = q->len ? q->len : s->srv->odp.implicit_size;
		if (size & (pg - 1)) {
			r = -EINVAL;
			goto err_free;
		}
		r = odp_region_init(&o->r, e->dev, size, q->access, resolve_implicit, o);
	} else {
		struct sess_mem *m = mem_by_handle(s, q->mem);

		if (!m) {
			r = -EBADF;
			goto err_free;
		}
		if ((q->offset | q->len) & (pg - 1) || q->offset > m->obj->size ||
		    q->len > m->obj->size - q->offset) {
			r = -EINVAL;
			goto err_free;
		}
		o->mem = m;
		o->mem_off = q->offset;
		r = odp_region_init(&o->r, e->dev, q->len, q->access, resolve_explicit, o);
	}
	e->dom->want_iova = 0;
	if (r)
		goto err_free;
	for (slot = 0; slot < s->nodp_slots && s->odps[slot]; slot++)
		;
	if (s->rp) {
		slot = rpy.odp - 1;
		memset(&rpy, 0, sizeof(rpy));
		if (slot >= 1u << 20 || (slot < s->nodp_slots && s->odps[slot])) {
			odp_region_fini(&o->r);
			r = -EEXIST;
			goto err_free;
		}
	}
	while (slot >= s->nodp_slots) {
		uint32_t n = s->nodp_slots ? s->nodp_slots * 2 : 8;
		struct sess_odp **no = realloc(s->odps, n * sizeof(*no));

		if (!no)
			goto err_fini;
		memset(no + s->nodp_slots, 0, (n - s->nodp_slots) * sizeof(*no));
		s->odps = no;
		s->nodp_slots = n;
	}
	sp = svec_insert(&s->odp_spans, e->dom_index, o->r.st.addr);
	if (!sp)
		goto err_fini;
	*sp = (struct odp_span){ .dom = e->dom_index, .dev = e->index, .base = o->r.st.addr,
				 .span = o->r.size, .o = o };
	o->handle = slot + 1;
	o->access = q->access;
	(void)odp_mr_reg(o);
	s->odps[slot] = o;
	s->nodps++;
	s->iova_bytes += o->r.size;
	rpy.odp = o->handle;
	rpy.iova = o->r.st.addr;
	rpy.size = o->r.size;
	reply(s, req, req->hdr.type | PROTO_RPY, &rpy, sizeof(rpy));
	return 0;

err_fini:
	odp_region_fini(&o->r);
	r = -ENOMEM;
err_free:
	e->dom->want_iova = 0;
	free(o);
	return r;
}

static void live_totals(const struct session *s, struct odp_totals *t, uint64_t *mapped);

bool odp_region_request(struct session *s, uint32_t h, struct proto_odp_reg *q,
			struct proto_odp_reg_rpy *r)
{
	struct sess_odp *o = odp_by_handle(s, h);

	if (!o)
		return false;
	*q = (struct proto_odp_reg){ .dev = o->e->index, .len = o->r.size, .access = o->access,
				     .flags = o->flags };
	if (!(o->flags & PROTO_ODP_IMPLICIT)) {
		/* Its object was freed: nothing left for it to map, nothing to restore. */
		if (!o->mem || !o->mem->handle)
			return false;
		q->mem = o->mem->handle;
		q->offset = o->mem_off;
	}
	*r = (struct proto_odp_reg_rpy){ .odp = h, .iova = o->r.st.addr, .size = o->r.size };
	return true;
}

void odp_session_totals(const struct session *s, struct odp_totals *t)
{
	uint64_t mapped = 0;

	live_totals(s, t, &mapped);
}

/* ==== answering parked accesses ====================================================== */

static void pf_free(struct pfault *pf)
{
	free(pf->data);
	free(pf);
}

/* Answer a parked access (DMA with status; a failed fault carries its record) and free it. */
static void pf_finish(struct pfault *pf, int status, const void *data)
{
	struct session *s = pf->sess;

	if (pf->type != PROTO_CMD_ODP_ADVISE) {
		struct proto_dma_rpy rpy = { .st.status = status };
		uint8_t *out = scratch(s);
		bool rd = pf->type == PROTO_CMD_DMA_READ;

		if (status == -EFAULT || status == -ETIMEDOUT)
			rpy.fault = (struct proto_fault){ .iova = pf->f.iova, .access = pf->f.access,
							  .reason = pf->f.reason };
		if (status == 0 && pf->o) {
			uint64_t ns = now_ns() - pf->t0;

			odp_hist_add(&pf->o->r.hist, ns);
			odp_hist_add(&s->odp_hist, ns);
			odp_hist_add(&s->srv->odp_hist, ns);
		}
		memcpy(out, &rpy, sizeof(rpy));
		/* A retried read already left its bytes in place (data == out + sizeof(rpy)). */
		if (status == 0 && rd && data != out + sizeof(rpy))
			memcpy(out + sizeof(rpy), data, pf->len);
		sess_send(s, pf->ring, pf->id, pf->type | PROTO_RPY, out,
			 sizeof(rpy) + (status == 0 && rd ? pf->len : 0));
		s->parked--;
		conn_unthrottle(s->conn);
	}
	pf_free(pf);
}

static void service_cb(evutil_socket_t fd, short what, void *arg);

void odp_svc_poll(struct srv *v)
{
	/* The event stays active and finds an empty queue: harmless. */
	if (v->fq_head)
		service_cb(-1, 0, v);
}

static void fq_push(struct srv *v, struct pfault *pf)
{
	pf->next = NULL;
	if (!v->fq_head)
		event_active(v->fault_ev, EV_TIMEOUT, 0);
	*v->fq_tail = pf;
	v->fq_tail = &pf->next;
}

/* Take every queued entry for which drop(pf, arg) is true out of the service queue. */
static struct pfault *fq_take_if(struct srv *v, bool (*drop)(const struct pfault *, const void *),
				 const void *arg)
{
	struct pfault *taken = NULL, **pp = &v->fq_head;

	while (*pp) {
		struct pfault *pf = *pp;

		if (drop(pf, arg)) {
			*pp = pf->next;
			pf->next = taken;
			taken = pf;
		} else {
			pp = &pf->next;
		}
	}
	v->fq_tail = &v->fq_head;
	while (*v->fq_tail)
		v->fq_tail = &(*v->fq_tail)->next;
	return taken;
}

/* ==== user-handled faults ==================================================================== */

static void uf_timeout_cb(evutil_socket_t fd, short what, void *arg);

static void uf_send(struct session *s, struct ufault *uf)
{
	struct proto_evt_fault ev = {
		.fault_id = uf->id, .odp = uf->o->handle, .access = uf->access,
		.offset = uf->off, .len = uf->len, .iova = uf->iova,
	};
	struct timeval tv = {
		.tv_sec = s->srv->odp.user_fault_timeout_ms / 1000,
		.tv_usec = (s->srv->odp.user_fault_timeout_ms % 1000) * 1000,
	};

	uf->seq = uf->o->r.seq;
	uf->raised++;
	uf->o->user_faults++;
	/* Events take the ring when there is one: a client polling it sees them soonest. */
	sess_send(s, true, 0, PROTO_EVT_FAULT, &ev, sizeof(ev));
	evtimer_add(uf->timer, &tv);
}

static void uf_unlink(struct session *s, struct ufault *uf)
{
	for (struct ufault **pp = &s->ufaults; *pp; pp = &(*pp)->next)
		if (*pp == uf) {
			*pp = uf->next;
			break;
		}
}

/*
 * End a user fault: out of the session's list, timer gone, freed. Return
 * the accesses that waited on it (linked through ->next), which no longer
 * count as waiting for the client's answers.
 */
static struct pfault *uf_close(struct session *s, struct ufault *uf)
{
	struct pfault *waiters = uf->waiters;

	uf_unlink(s, uf);
	event_free(uf->timer);
	for (struct pfault *pf = waiters; pf; pf = pf->next)
		s->uparked--;
	free(uf);
	return waiters;
}

/* Fail every access waiting on uf with status, and free it. */
static void uf_fail(struct session *s, struct ufault *uf, int status)
{
	struct pfault *pf = uf_close(s, uf), *next;

	for (; pf; pf = next) {
		next = pf->next;
		pf->o->r.cnt.fault_errors++;
		pf_finish(pf, status, NULL);
	}
}

static void uf_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
	struct ufault *uf = arg;
	struct session *s = uf->o->sess;

	(void)fd;
	(void)what;
	uf->o->user_fault_timeouts++;
	log_info("session %" PRIu64 ": user fault %" PRIu64 " not answered in %u ms", s->id,
		 uf->id, s->srv->odp.user_fault_timeout_ms);
	uf_fail(s, uf, -ETIMEDOUT);
}

/* The window a fault at region offset off of len bytes maps, as the engine computes it. */
static void fault_window(const struct sess_odp *o, const struct odp_settings *set, uint64_t off,
			 uint64_t len, uint64_t *woff, uint64_t *wlen)
{
	uint64_t w = set->window > o->e->dom->granule ? set->window : o->e->dom->granule;
	uint64_t lo = off & ~(w - 1), hi = (off + len + w - 1) & ~(w - 1);

	if (hi > o->r.size || hi < lo)
		hi = o->r.size;
	*woff = lo;
	*wlen = hi - lo;
}

/*
 * Park pf on a user fault of its region covering its access, raising one if
 * needed. Return: 0, -EAGAIN (lim.max_inflight accesses already wait for
 * this client's answers), -ENOMEM.
 */
static int uf_park(struct session *s, struct pfault *pf)
{
	struct sess_odp *o = pf->o;
	uint64_t off = pf->of.off, end = pf->of.off + pf->of.len;
	struct ufault *uf;

	if (s->uparked >= s->srv->lim.max_inflight)
		return -EAGAIN;
	for (uf = s->ufaults; uf; uf = uf->next)
		if (uf->o == o && uf->off <= off && end <= uf->off + uf->len &&
		    uf->access >= pf->of.access)
			break;
	if (!uf) {
		uf = calloc(1, sizeof(*uf));
		if (!uf)
			return -ENOMEM;
		uf->timer = evtimer_new(s->srv->base, uf_timeout_cb, uf);
		if (!uf->timer) {
			free(uf);
			return -ENOMEM;
		}
		uf->o = o;
		uf->id = ++s->srv->next_fault_id;
		uf->access = pf->of.access;
		uf->iova = pf->f.iova;
		fault_window(o, &s->srv->odp, off, pf->of.len, &uf->off, &uf->len);
		uf->next = s->ufaults;
		s->ufaults = uf;
		uf_send(s, uf);
	}
	pf->next = uf->waiters;
	uf->waiters = pf;
	s->uparked++;
	return 0;
}

int odp_handle_fault_done(struct session *s, const struct proto_req *req)
{
	const struct proto_fault_done *q = &req->u.fault_done;
	struct ufault *uf;

	for (uf = s->ufaults; uf && uf->id != q->fault_id; uf = uf->next)
		;
	if (!uf)
		return -ENOENT;
	reply_status(s, req, 0);
	if (q->status < 0) {
		uf_fail(s, uf, -EFAULT);
		return 0;
	}
	if (uf->o->r.seq != uf->seq) {
		/* Invalidated while the client filled it: what it wrote may be gone. */
		uf->o->r.cnt.fault_retries++;
		if (uf->raised >= ODP_MAX_RETRIES) {
			uf_fail(s, uf, -EFAULT);
			return 0;
		}
		uf->id = ++s->srv->next_fault_id;
		uf_send(s, uf);
		return 0;
	}
	/* Resolved: map the window in this iteration's service batch, then retry. */
	{
		uint64_t off = uf->off, len = uf->len;
		struct pfault *pf = uf_close(s, uf), *next;

		for (; pf; pf = next) {
			next = pf->next;
			pf->of.off = off;
			pf->of.len = len;
			pf->of.flags = ODP_FAULT_EXACT;
			fq_push(s->srv, pf);
		}
	}
	return 0;
}

/* ==== the fault service ======================================================================= */

/* Park a faulting access (or re-park after a retry faulted). Return: 0, or as uf_park. */
static int pf_park(struct session *s, struct pfault *pf)
{
	struct sess_odp *o = pf->o;

	pf->of = (struct odp_fault){
		.r = &o->r,
		.off = pf->f.iova - o->r.st.addr,
		.len = pf->iova + pf->len - pf->f.iova,
		.access = to_dom_access(pf->type),
	};
	if (o->flags & PROTO_ODP_USER_FAULTS)
		return uf_park(s, pf);
	fq_push(s->srv, pf);
	return 0;
}

int odp_dma_fault(struct session *s, struct dev_entry *e, const struct proto_req *req,
		  const struct dom_fault *f)
{
	const struct proto_dma *d = &req->u.dma;
	struct sess_odp *o = odp_containing(s, e, d->iova, d->len);
	struct pfault *pf;
	int r;

	if (!o || f->iova < d->iova || f->iova - d->iova >= d->len)
		return 0;
	if (!rights_ok(o, to_dom_access(req->hdr.type))) {
		/* Beyond the region's rights: no service, the requester gets the fault. */
		o->r.cnt.fault_errors++;
		return 0;
	}
	pf = calloc(1, sizeof(*pf));
	if (!pf)
		return 0;
	if (req->hdr.type == PROTO_CMD_DMA_WRITE) {
		pf->data = malloc(d->len);
		if (!pf->data) {
			free(pf);
			return 0;
		}
		memcpy(pf->data, req->data, d->len);
	}
	pf->sess = s;
	pf->o = o;
	pf->id = req->hdr.id;
	pf->type = req->hdr.type;
	pf->ring = s->in_ring;
	pf->e = e;
	pf->iova = d->iova;
	pf->len = d->len;
	pf->f = *f;
	pf->t0 = now_ns();
	r = pf_park(s, pf);
	if (r) {
		pf_free(pf);
		/* Out of memory: answer with the fault; too many waiting: -EAGAIN. */
		return r == -EAGAIN ? r : 0;
	}
	s->parked++;
	return 1;
}

/* The service made pf's pages present: run the access again. */
static void pf_retry(struct pfault *pf)
{
	struct session *s = pf->sess;
	uint8_t *data = scratch(s) + sizeof(struct proto_dma_rpy);
	struct dom_fault f = { 0 };
	int r;

	if (pf->e->rxe)
		/* Through the MRs the service registered; rxe_dma recovered the QPs already. */
		r = rxe_dev_dma(s, pf->e, pf->iova,
				pf->type == PROTO_CMD_DMA_READ ? data : pf->data, pf->len,
				pf->type == PROTO_CMD_DMA_WRITE, &f);
	else if (pf->type == PROTO_CMD_DMA_READ)
		r = dom_dev_dma_read(pf->e->dev, pf->iova, data, pf->len, &f);
	else
		r = dom_dev_dma_write(pf->e->dev, pf->iova, pf->data, pf->len, &f);
	if (r == -EFAULT && ++pf->tries < DMA_RETRIES && f.reason != DOM_FAULT_ADDRESS) {
		/* Invalidated between the service and the retry, or a new page: again. */
		int pr;

		pf->f = f;
		pr = pf_park(s, pf);
		if (!pr)
			return;
		if (pr == -EAGAIN)
			r = -EAGAIN;
	}
	if (r == -EFAULT)
		pf->f = f;
	/* data is where pf_finish puts it: scratch after the reply header. */
	pf_finish(pf, r, data);
}

static void service_cb(evutil_socket_t fd, short what, void *arg)
{
	struct srv *v = arg;
	struct pfault *list = v->fq_head, *pf;
	struct odp_fault stack[64], *f = stack;
	uint32_t n = 0, i;
	struct dev_table *t = &v->devices;
	struct odp_config cfg = { .sync = v->odp.sync, .window = v->odp.window };

	(void)fd;
	(void)what;
	if (!list)
		return; /* the ring poller ran it already (odp_svc_poll) */
	v->fq_head = NULL;
	v->fq_tail = &v->fq_head;
	for (pf = list; pf; pf = pf->next)
		n++;
	if (n > sizeof(stack) / sizeof(stack[0])) {
		f = malloc(n * sizeof(*f));
		if (!f) {
			/* Serve them next time round rather than fail them. */
			for (pf = list; pf; pf = list) {
				list = pf->next;
				fq_push(v, pf);
			}
			return;
		}
	}
	for (pf = list, i = 0; pf; pf = pf->next, i++)
		f[i] = pf->of;
	(void)odp_service(&cfg, f, n);
	/* rxe: what was mapped becomes MRs before any access is retried. */
	for (pf = list, i = 0; pf; pf = pf->next, i++)
		odp_mrs_served(pf->o, &v->odp, &f[i]);
	for (pf = list, i = 0; pf; i++) {
		struct pfault *next = pf->next;

		pf->of = f[i];
		if (pf->type == PROTO_CMD_ODP_ADVISE)
			pf_free(pf);
		else if (f[i].status)
			pf_finish(pf, f[i].status == -ENOMEM ? -ENOMEM : -EFAULT, NULL);
		else
			pf_retry(pf);
		pf = next;
	}
	if (f != stack)
		free(f);
	for (uint32_t d = 0; d < t->ndoms; d++)
		if (t->doms[d]->cfg.flush == DOM_FLUSH_LAZY)
			devices_fq_arm(t, d);
}

int odp_svc_init(struct srv *v)
{
	v->fq_head = NULL;
	v->fq_tail = &v->fq_head;
	v->fault_ev = event_new(v->base, -1, 0, service_cb, v);
	return v->fault_ev ? 0 : -ENOMEM;
}

void odp_svc_fini(struct srv *v)
{
	/* Sessions are gone by now, and took their parked accesses with them. */
	if (v->fault_ev)
		event_free(v->fault_ev);
	v->fault_ev = NULL;
}

/* ==== advise, invalidate, discard ================================================================ */

int odp_handle_advise(struct session *s, const struct proto_req *req)
{
	const struct proto_odp_range *q = &req->u.odp_range;
	struct sess_odp *o = odp_by_handle(s, q->odp);
	struct odp_fault f;

	if (!o)
		return -EBADF;
	if (q->offset >= o->r.size || q->len > o->r.size - q->offset)
		return -EINVAL;
	f = (struct odp_fault){
		.r = &o->r, .off = q->offset, .len = q->len,
		.access = q->advice == PROTO_ADVISE_PREFETCH_WRITE ? DOM_ACCESS_WRITE :
								      DOM_ACCESS_READ,
		.flags = ODP_FAULT_PREFETCH | ODP_FAULT_EXACT |
			 (q->advice == PROTO_ADVISE_PREFETCH_NO_FAULT ? ODP_FAULT_NO_POPULATE : 0),
	};
	/* A write-only region is prefetched for what it allows. */
	if (f.access == DOM_ACCESS_READ && !(o->r.access & ODP_ACCESS_DEVICE_READ))
		f.access = DOM_ACCESS_WRITE;
	if (q->flags & PROTO_ADVISE_FLAG_FLUSH) {
		struct odp_config cfg = { .sync = s->srv->odp.sync, .window = s->srv->odp.window };

		(void)odp_service(&cfg, &f, 1);
		odp_mrs_served(o, &s->srv->odp, &f);
		if (o->e->dom->cfg.flush == DOM_FLUSH_LAZY)
			devices_fq_arm(&s->srv->devices, o->e->dom_index);
		return f.status ? f.status : (reply_status(s, req, 0), 0);
	}
	/* Asynchronous: joins this iteration's fault batch; the reply goes now. */
	struct pfault *pf = calloc(1, sizeof(*pf));

	if (!pf)
		return -ENOMEM;
	pf->sess = s;
	pf->o = o;
	pf->type = PROTO_CMD_ODP_ADVISE;
	pf->of = f;
	fq_push(s->srv, pf);
	reply_status(s, req, 0);
	return 0;
}

int odp_handle_invalidate(struct session *s, const struct proto_req *req)
{
	const struct proto_odp_range *q = &req->u.odp_range;
	struct sess_odp *o = odp_by_handle(s, q->odp);

	if (!o)
		return -EBADF;
	if (q->offset >= o->r.size || q->len > o->r.size - q->offset)
		return -EINVAL;
	invalidate_clipped(o, q->offset, q->len);
	reply_status(s, req, 0);
	return 0;
}

int odp_handle_discard(struct session *s, const struct proto_req *req)
{
	const struct proto_mem_range *q = &req->u.mem_range;
	struct sess_mem *m = mem_by_handle(s, q->mem);
	int r;

	if (!m)
		return -EBADF;
	if ((q->offset | q->len) & 4095 || q->offset >= m->obj->size ||
	    q->len > m->obj->size - q->offset)
		return -EINVAL;
	/* Notifier order: no device mapping survives, then the pages go. */
	invalidate_mem_range(s, m, q->offset, q->len);
	r = pmem_discard(&s->srv->devices.pmem, m->obj->phys + q->offset, q->len);
	if (r)
		return r;
	reply_status(s, req, 0);
	return 0;
}

/* ==== counters ========================================================================================= */

static void totals_add(struct odp_totals *t, const struct sess_odp *o)
{
	const struct odp_counters *c = &o->r.cnt;

	t->c.page_faults += c->page_faults;
	t->c.page_faults_handled += c->page_faults_handled;
	t->c.page_invalidations += c->page_invalidations;
	t->c.page_invalidations_handled += c->page_invalidations_handled;
	t->c.page_prefetch += c->page_prefetch;
	t->c.fault_errors += c->fault_errors;
	t->c.fault_retries += c->fault_retries;
	t->c.perm_upgrades += c->perm_upgrades;
	t->c.syncs += c->syncs;
	t->c.flushes += c->flushes;
	t->c.populated += c->populated;
	t->user_faults += o->user_faults;
	t->user_fault_timeouts += o->user_fault_timeouts;
}

static void fill_counters(struct proto_odp_counters *p, const struct odp_totals *t,
			  uint64_t mapped, const struct odp_hist *h)
{
	*p = (struct proto_odp_counters){
		.page_faults = t->c.page_faults,
		.page_faults_handled = t->c.page_faults_handled,
		.page_invalidations = t->c.page_invalidations,
		.page_invalidations_handled = t->c.page_invalidations_handled,
		.page_prefetch = t->c.page_prefetch,
		.fault_errors = t->c.fault_errors,
		.fault_retries = t->c.fault_retries,
		.perm_upgrades = t->c.perm_upgrades,
		.syncs = t->c.syncs,
		.flushes = t->c.flushes,
		.user_faults = t->user_faults,
		.user_fault_timeouts = t->user_fault_timeouts,
		.mapped_bytes = mapped,
		.fault_count = h->count,
		.fault_p50_ns = odp_hist_quantile(h, 0.5),
		.fault_p99_ns = odp_hist_quantile(h, 0.99),
	};
}

/* Add a session's live regions to *t and *mapped. */
static void live_totals(const struct session *s, struct odp_totals *t, uint64_t *mapped)
{
	for (uint32_t i = 0; i < s->nodp_slots; i++)
		if (s->odps[i]) {
			totals_add(t, s->odps[i]);
			*mapped += s->odps[i]->r.mapped;
		}
}

int odp_handle_stats(struct session *s, const struct proto_req *req)
{
	const struct proto_odp_ref *q = &req->u.odp_ref;
	struct proto_odp_stats_rpy rpy = { 0 };
	struct odp_totals t = { 0 };
	uint64_t mapped = 0;

	if (q->odp) {
		struct sess_odp *o = odp_by_handle(s, q->odp);

		if (!o)
			return -EBADF;
		totals_add(&t, o);
		fill_counters(&rpy.c, &t, o->r.mapped, &o->r.hist);
	} else if (q->flags & PROTO_ODP_STATS_DAEMON) {
		struct srv *v = s->srv;

		if (!is_admin(s))
			return -EPERM;
		/* Regions gone (of any session) plus every live one. */
		t = v->odp_gone;
		for (struct conn *c = v->conns; c; c = c->next)
			if (c->sess)
				live_totals(c->sess, &t, &mapped);
		fill_counters(&rpy.c, &t, mapped, &v->odp_hist);
	} else {
		t = s->odp_gone;
		live_totals(s, &t, &mapped);
		fill_counters(&rpy.c, &t, mapped, &s->odp_hist);
	}
	reply(s, req, req->hdr.type | PROTO_RPY, &rpy, sizeof(rpy));
	return 0;
}

int odp_handle_list(struct session *s, const struct proto_req *req)
{
	struct proto_list_rpy rpy = { 0 };
	const size_t esz = sizeof(struct proto_odp_entry);
	uint8_t *out = scratch(s) + sizeof(rpy);
	size_t room = s->max_frame - sizeof(struct proto_hdr) - sizeof(rpy);
	uint32_t start = req->u.list.start, idx = 0, count = 0;
	uint64_t want = req->u.list.session_id;

	for (struct conn *c = s->srv->conns; c; c = c->next) {
		struct session *t = c->sess;

		if (!t || (want && t->id != want))
			continue;
		for (uint32_t i = 0; i < t->nodp_slots; i++) {
			struct sess_odp *o = t->odps[i];
			struct proto_odp_entry en = { 0 };
			struct odp_totals tot = { 0 };

			if (!o)
				continue;
			if (idx++ < start || (count + 1) * esz > room)
				continue;
			totals_add(&tot, o);
			en.session_id = t->id;
			en.odp = o->handle;
			en.dev = o->e->index;
			en.flags = o->flags;
			en.access = o->r.access;
			en.iova = o->r.st.addr;
			en.size = o->r.size;
			fill_counters(&en.c, &tot, o->r.mapped, &o->r.hist);
			memcpy(out + count * esz, &en, esz);
			count++;
		}
	}
	rpy.count = count;
	rpy.total = idx;
	memcpy(scratch(s), &rpy, sizeof(rpy));
	reply(s, req, req->hdr.type | PROTO_RPY, scratch(s), sizeof(rpy) + count * esz);
	return 0;
}

/* ==== deregistration and teardown ========================================================== */

static bool pf_of_region(const struct pfault *pf, const void *o)
{
	return pf->o == o;
}

static bool pf_of_session(const struct pfault *pf, const void *s)
{
	return pf->sess == s;
}

/* Release a region: its parked accesses fail, its mappings and IOVA go. */
static void region_release(struct session *s, struct sess_odp *o, bool answer)
{
	struct pfault *pf = fq_take_if(s->srv, pf_of_region, o);
	struct odp_span *sp;

	while (pf) {
		struct pfault *next = pf->next;

		if (answer)
			pf_finish(pf, -EFAULT, NULL);
		else
			pf_free(pf);
		pf = next;
	}
	for (struct ufault *uf = s->ufaults, *next; uf; uf = next) {
		next = uf->next;
		if (uf->o == o)
			uf_fail(s, uf, -EFAULT);
	}
	/* rxe: no MR may outlive the mapping under it. */
	mr_set_clear(&o->mrs);
	odp_mr_dereg(o);
	/* The span first: fini zeroes the state the lookup is keyed by. */
	sp = svec_find(&s->odp_spans, o->e->dom_index, o->r.st.addr);
	if (sp)
		svec_remove(&s->odp_spans, sp);
	odp_region_fini(&o->r);
	totals_add(&s->odp_gone, o);
	totals_add(&s->srv->odp_gone, o);
	s->odps[o->handle - 1] = NULL;
	s->nodps--;
	s->iova_bytes -= o->r.size;
	if (o->e->dom->cfg.flush == DOM_FLUSH_LAZY)
		devices_fq_arm(&s->srv->devices, o->e->dom_index);
	free(o);
}

int odp_handle_dereg(struct session *s, const struct proto_req *req)
{
	struct sess_odp *o = odp_by_handle(s, req->u.odp_ref.odp);

	if (!o)
		return -EBADF;
	region_release(s, o, true);
	reply_status(s, req, 0);
	return 0;
}

void odp_session_free(struct session *s)
{
	struct pfault *pf = fq_take_if(s->srv, pf_of_session, s);
	uint32_t n = 0, uf = 0;

	/* The connection is going: nobody to answer, just free. */
	while (pf) {
		struct pfault *next = pf->next;

		pf_free(pf);
		pf = next;
	}
	while (s->ufaults) {
		/* A client that died mid-fault: its faults fail, counted, without replies. */
		struct pfault *w = uf_close(s, s->ufaults), *next;

		for (; w; w = next) {
			next = w->next;
			w->o->r.cnt.fault_errors++;
			pf_free(w);
		}
		uf++;
	}
	for (uint32_t i = 0; i < s->nodp_slots; i++)
		if (s->odps[i]) {
			region_release(s, s->odps[i], false);
			n++;
		}
	s->parked = 0;
	s->uparked = 0;
	if (n || uf)
		log_notice("session %" PRIu64 ": teardown: %u ODP regions, %u user faults "
			   "unanswered", s->id, n, uf);
}
