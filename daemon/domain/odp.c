// SPDX-License-Identifier: MIT
/*
 * odp.c - on-demand paging regions and their I/O page-fault service
 *
 * A fault is served in passes over its window. A pass walks the window,
 * skipping what is already mapped with the access the fault needs, noting
 * what only needs an upgrade or a sync, and resolving (and populating) the
 * backing of every hole into a short on-stack list of runs. Only once the
 * pass is over, and the region's sequence number shows that no
 * invalidation ran during it, are the runs linked: a resolve that raced an
 * invalidation may have returned the backing the invalidation was about to
 * take away, and linking it would let the device reach memory that is no
 * longer the region's (the kernel's mmu_interval_read_begin/read_retry).
 * When the list fills, the pass ends early, is checked and linked, and the
 * next pass goes on from there; a collision restarts from the window's
 * start, so what an invalidation removed behind us is resolved again.
 *
 * Flush accounting in ODP_SYNC_BATCH mode: a domain's one flush is counted
 * in the counters of the region whose fault first did work on that domain
 * during the call (the flush is shared; counting it once keeps the regions'
 * counters adding up to the domains').
 */
#include "odp.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* ==== latency histogram ================================================= */

/*
 * Below 4 ns there are not two bits under the top one: those values get a
 * bucket each (0..3). From 4 up, bucket 4 * msb + the two bits below the
 * msb, so buckets 4..7 are never used and the last one is 4 * 63 + 3 = 255.
 */
static unsigned int hist_bucket(uint64_t ns)
{
	unsigned int msb;

	if (ns < 4)
		return (unsigned int)ns;
	msb = 63u - (unsigned int)__builtin_clzll(ns);
	return 4 * msb + (unsigned int)((ns >> (msb - 2)) & 3);
}

/* The largest value bucket b holds. */
static uint64_t hist_upper(unsigned int b)
{
	unsigned int msb = b / 4, sub = b % 4;

	if (b < 4)
		return b;
	if (b < 8)
		return 3; /* never filled */
	if (b == ODP_HIST_BUCKETS - 1)
		return UINT64_MAX;
	return ((uint64_t)(4 + sub + 1) << (msb - 2)) - 1;
}

_Static_assert(ODP_HIST_BUCKETS == 4 * 64, "one group of 4 buckets per bit of a u64");

void odp_hist_add(struct odp_hist *h, uint64_t ns)
{
	h->count++;
	h->sum_ns += ns;
	h->bucket[hist_bucket(ns)]++;
}

void odp_hist_merge(struct odp_hist *dst, const struct odp_hist *src)
{
	dst->count += src->count;
	dst->sum_ns += src->sum_ns;
	for (unsigned int i = 0; i < ODP_HIST_BUCKETS; i++)
		dst->bucket[i] += src->bucket[i];
}

uint64_t odp_hist_quantile(const struct odp_hist *h, double q)
{
	uint64_t rank, seen = 0;
	double x;

	if (!h->count)
		return 0;
	/* The rank-th smallest sample (1-based); q outside (0, 1] is clamped. */
	x = q * (double)h->count;
	if (!(x >= 1.0))
		rank = 1;
	else if (x >= (double)h->count)
		rank = h->count;
	else
		rank = (uint64_t)x + ((double)(uint64_t)x < x);
	for (unsigned int i = 0; i < ODP_HIST_BUCKETS; i++) {
		seen += h->bucket[i];
		if (seen >= rank)
			return hist_upper(i);
	}
	return hist_upper(ODP_HIST_BUCKETS - 1); /* buckets and count disagree */
}

/* ==== regions ============================================================ */

static inline uint64_t granule_of(const struct odp_region *r)
{
	return r->dev->dom->granule;
}

static inline struct pgtbl *pt_of(const struct odp_region *r)
{
	return &r->dev->dom->pt;
}

static inline uint64_t min_u64(uint64_t a, uint64_t b)
{
	return a < b ? a : b;
}

static inline uint64_t max_u64(uint64_t a, uint64_t b)
{
	return a > b ? a : b;
}

/* [off, off + len) non-empty and inside the region. */
static bool in_region(const struct odp_region *r, uint64_t off, uint64_t len)
{
	return len && off < r->size && len <= r->size - off;
}

int odp_region_init(struct odp_region *r, struct dom_device *dev, uint64_t size, uint32_t access,
		    odp_resolve_fn resolve, void *arg)
{
	if (!r || !dev || !resolve || !size || (access & ~ODP_ACCESS_MASK))
		return -EINVAL;
	if (dev->dom->cfg.type != DOM_TRANSLATING)
		return -EOPNOTSUPP;
	if (size & (dev->dom->granule - 1))
		return -EINVAL;
	memset(r, 0, sizeof(*r));
	/* Phys 0: the region starts on a granule, as every page it will map. */
	if (!dma_iova_try_alloc(dev, &r->st, 0, size))
		return -ENOSPC;
	r->dev = dev;
	r->size = size;
	r->access = access | ODP_ACCESS_LOCAL_READ;
	r->resolve = resolve;
	r->arg = arg;
	return 0;
}

void odp_region_fini(struct odp_region *r)
{
	int ret;

	if (!r || !r->dev || !dma_use_iova(&r->st))
		return;
	/*
	 * Holes are the normal state of a region: -ENOENT from them still
	 * frees the IOVA. Anything else (a block split refused by the table
	 * cap cannot happen for a whole-region unlink) leaves the state; then
	 * unlink piecewise and free by hand rather than leak a mapping.
	 */
	ret = dma_iova_destroy(r->dev, &r->st, r->size, DMA_BIDIRECTIONAL, 0);
	if (ret && ret != -ENOENT && dma_use_iova(&r->st)) {
		(void)dma_iova_unlink(r->dev, &r->st, 0, r->size, DMA_BIDIRECTIONAL, 0);
		(void)dma_iova_free(r->dev, &r->st);
	}
	memset(&r->st, 0, sizeof(r->st));
	r->mapped = 0;
	r->seq++;
	/* The counters and the histogram stay for the owner's final report. */
}

bool odp_needs_service(const struct odp_region *r, uint64_t off, uint64_t len, uint32_t access)
{
	unsigned int need = access == DOM_ACCESS_WRITE ? PGTBL_WRITE : PGTBL_READ;
	uint64_t g, iova, end;

	if (!len)
		return false;
	if (!in_region(r, off, len))
		return true; /* the access faults; the service will say -EFAULT */
	g = granule_of(r);
	iova = r->st.addr + (off & ~(g - 1));
	end = r->st.addr + ((off + len + g - 1) & ~(g - 1));
	while (iova < end) {
		struct pgtbl_leaf leaf;

		if (pgtbl_lookup(pt_of(r), iova, &leaf) || (leaf.prot & PGTBL_PENDING) ||
		    !(leaf.prot & need))
			return true;
		iova = leaf.iova + leaf.size;
	}
	return false;
}

int64_t odp_invalidate(struct odp_region *r, uint64_t off, uint64_t len)
{
	struct dom_domain *d;
	uint64_t before, g;
	int ret;

	if (!r || !r->dev || !dma_use_iova(&r->st) || !in_region(r, off, len))
		return -EINVAL;
	d = r->dev->dom;
	g = d->granule;
	/*
	 * Bump first, and whatever is mapped: a fault resolving right now may
	 * hold the old backing of a page it has not linked yet.
	 */
	r->seq++;
	r->cnt.page_invalidations_handled++;
	before = d->pt.stats.mapped_bytes;
	ret = dma_iova_unlink(r->dev, &r->st, off, len, DMA_BIDIRECTIONAL, 0);
	if (ret == -ENOMEM) {
		/*
		 * Splitting a block the range cuts needed a table the cap
		 * refused. Unmapping more than asked is always safe here (the
		 * device faults it back), so drop the whole 1 GiB-aligned span
		 * around the range: no leaf can straddle it, nothing to split.
		 */
		uint64_t big = UINT64_C(1) << 30;
		uint64_t s = (r->st.addr + off) & ~(big - 1);
		uint64_t e = ((r->st.addr + off + len - 1) | (big - 1)) + 1;

		s = max_u64(s, r->st.addr) - r->st.addr;
		e = min_u64(e, r->st.addr + r->size) - r->st.addr;
		(void)dma_iova_unlink(r->dev, &r->st, s, e - s, DMA_BIDIRECTIONAL, 0);
	}
	/* mapped_bytes only moves by what this region's unlink removed. */
	before -= d->pt.stats.mapped_bytes;
	r->mapped -= min_u64(before, r->mapped);
	r->cnt.page_invalidations += before / g;
	return (int64_t)(before / g);
}

/* ==== the fault service ================================================= */

enum run_kind {
	RUN_LINK,     /* a hole: link [off, off + len) to phys */
	RUN_UPGRADE,  /* linked without the right: upgrade in place */
	RUN_SYNC,     /* linked with the right, not yet published */
};

struct odp_run {
	uint64_t off;
	uint64_t len;
	uint64_t phys;
	uint8_t kind;
	bool pending;  /* RUN_UPGRADE: the leaves were not published either */
};

/* Runs gathered by one pass before it is checked and applied. */
#define ODP_RUNS 32u

/* Per-domain batch bookkeeping for ODP_SYNC_BATCH. */
struct odp_dom_ent {
	struct dom_domain *d;
	struct odp_region *r;  /* gets the domain's flush in its counters */
};

#define ODP_DOMS_ON_STACK 8u

struct odp_svc {
	uint64_t window;
	bool per_page;
	struct odp_dom_ent stack[ODP_DOMS_ON_STACK];
	struct odp_dom_ent *doms;
	uint32_t ndoms, cap;
};

/* Open a batch on r's domain unless this call already has. */
static int svc_batch(struct odp_svc *s, struct odp_region *r)
{
	struct dom_domain *d = r->dev->dom;

	if (s->per_page)
		return 0;
	for (uint32_t i = 0; i < s->ndoms; i++)
		if (s->doms[i].d == d)
			return 0;
	if (s->ndoms == s->cap) {
		struct odp_dom_ent *n = malloc(2 * s->cap * sizeof(*n));

		if (!n)
			return -ENOMEM;
		memcpy(n, s->doms, s->ndoms * sizeof(*n));
		if (s->doms != s->stack)
			free(s->doms);
		s->doms = n;
		s->cap *= 2;
	}
	dom_batch_begin(d);
	s->doms[s->ndoms++] = (struct odp_dom_ent){ .d = d, .r = r };
	return 0;
}

/* What one fault is asking for, worked out once. */
struct odp_job {
	struct odp_fault *f;
	struct odp_region *r;
	uint64_t g;
	uint64_t ws, we;           /* the window, granule-aligned */
	uint64_t rs, re;           /* the requested range, granule-aligned */
	unsigned int need;         /* PGTBL_READ or PGTBL_WRITE */
	enum dma_data_direction dir;
	bool write, prefetch, no_populate;
	bool touched;              /* something was linked, upgraded or synced */
	uint64_t pages;
};

/* The hole at off: how many bytes from off, up to max, are unmapped. */
static uint64_t hole_len(const struct odp_job *j, uint64_t off, uint64_t max)
{
	const struct pgtbl *pt = pt_of(j->r);
	uint64_t base = j->r->st.addr, n;

	if (!pgtbl_any_mapped(pt, base + off, max))
		return max; /* the common case: the window is one hole */
	for (n = j->g; n < max; n += j->g) {
		struct pgtbl_leaf leaf;

		if (!pgtbl_lookup(pt, base + off + n, &leaf))
			break;
	}
	return n;
}

/* Append a run, merging it into the previous one when they continue each other. */
static bool run_add(struct odp_run *runs, uint32_t *nr, const struct odp_run *x)
{
	if (*nr) {
		struct odp_run *p = &runs[*nr - 1];

		if (p->kind == x->kind && p->pending == x->pending && p->off + p->len == x->off &&
		    (x->kind != RUN_LINK || p->phys + p->len == x->phys)) {
			p->len += x->len;
			return true;
		}
	}
	if (*nr == ODP_RUNS)
		return false;
	runs[(*nr)++] = *x;
	return true;
}

/*
 * Resolve the hole at off (at most max bytes) into *x. Return: bytes the
 * walk may advance (> 0) with x->len 0 when there is nothing to link there,
 * or a -errno for a granule the fault cannot do without.
 */
static int64_t resolve_hole(struct odp_job *j, uint64_t off, uint64_t max, struct odp_run *x)
{
	struct odp_region *r = j->r;
	struct pmem_space *pmem = r->dev->dom->pmem;
	bool required = !j->prefetch && off >= j->rs && off < j->re;
	uint64_t phys = 0, run = 0, n;
	struct pmem_obj *o;
	int ret;

	x->len = 0;
	ret = r->resolve(r->arg, off, &phys, &run);
	if (ret) {
		/*
		 * No backing: fatal where the device asked, skipped where we
		 * guessed; the whole hole at once when resolve says how long it
		 * is, so a prefetch over a sparse region costs what is backed,
		 * not the region's size.
		 */
		if (required)
			return -EFAULT;
		run &= ~(j->g - 1);
		return (int64_t)(run > j->g ? min_u64(run, max) : j->g);
	}
	/* Resolve must hand back whole granules of memory we know. */
	if (!run || ((phys | run) & (j->g - 1)))
		ret = -EFAULT;
	o = ret ? NULL : pmem_find(pmem, phys);
	if (!o)
		return required ? -EFAULT : (int64_t)j->g;
	n = min_u64(min_u64(run, max), o->size - (phys - o->phys));
	n &= ~(j->g - 1);
	if (!n)
		return required ? -EFAULT : (int64_t)j->g;

	if (j->no_populate) {
		/* Map only the resident prefix; step over a non-resident granule. */
		if (!pmem_resident(pmem, phys, n)) {
			uint64_t k;

			for (k = 0; k < n && pmem_resident(pmem, phys + k, j->g); k += j->g)
				;
			if (!k)
				return (int64_t)j->g;
			n = k;
		}
	} else {
		if (pmem_populate(pmem, phys, n, j->write))
			return required ? -EFAULT : (int64_t)j->g;
		r->cnt.populated += n / j->g;
	}
	*x = (struct odp_run){ .off = off, .len = n, .phys = phys, .kind = RUN_LINK };
	return (int64_t)n;
}

/*
 * One pass from *pos: gather runs until the window ends, the list is full
 * or an invalidation bumps the region's seq past seq (the pass is void
 * then; no point resolving the rest). *pos is left where the pass stopped.
 * Return: 0, or -errno.
 */
static int scan(struct odp_job *j, uint64_t seq, uint64_t *pos, struct odp_run *runs,
		uint32_t *nr)
{
	struct odp_region *r = j->r;
	uint64_t off = *pos;
	int ret = 0;

	*nr = 0;
	while (off < j->we) {
		struct pgtbl_leaf leaf;
		struct odp_run x;
		uint64_t end;
		int64_t adv;

		if (!pgtbl_lookup(pt_of(r), r->st.addr + off, &leaf)) {
			bool pending = leaf.prot & PGTBL_PENDING;

			end = min_u64(leaf.iova + leaf.size - r->st.addr, j->we);
			if ((leaf.prot & j->need) && !pending) {
				off = end;
				continue;
			}
			x = (struct odp_run){
				.off = off, .len = end - off,
				.kind = (leaf.prot & j->need) ? RUN_SYNC : RUN_UPGRADE,
				.pending = pending,
			};
			if (!run_add(runs, nr, &x))
				break;
			off = end;
			continue;
		}
		if (*nr == ODP_RUNS)
			break; /* do not resolve what there is no room to keep */
		adv = resolve_hole(j, off, hole_len(j, off, j->we - off), &x);
		if (adv < 0) {
			ret = (int)adv;
			break;
		}
		if (x.len)
			(void)run_add(runs, nr, &x); /* room was checked above */
		off += (uint64_t)adv;
		if (r->seq != seq)
			break;
	}
	*pos = off;
	return ret;
}

static int apply_batch(struct odp_job *j, const struct odp_run *x)
{
	struct odp_region *r = j->r;
	int64_t up;
	int ret;

	switch (x->kind) {
	case RUN_LINK:
		ret = dma_iova_link(r->dev, &r->st, x->phys, x->off, x->len, j->dir, 0);
		if (ret)
			return ret;
		r->mapped += x->len;
		j->pages += x->len / j->g;
		break;
	case RUN_UPGRADE:
		up = dom_iova_upgrade(r->dev, &r->st, x->off, x->len, j->dir);
		if (up < 0)
			return (int)up;
		r->cnt.perm_upgrades += (uint64_t)up / j->g;
		j->pages += (uint64_t)up / j->g;
		break;
	default:
		j->pages += x->len / j->g; /* published by the fault's one sync */
		break;
	}
	j->touched = true;
	return 0;
}

/* The kernel's way: every granule linked and synced on its own. */
static int apply_per_page(struct odp_job *j, const struct odp_run *x)
{
	struct odp_region *r = j->r;

	for (uint64_t o = 0; o < x->len; o += j->g) {
		bool sync = true;
		int64_t up;
		int ret;

		switch (x->kind) {
		case RUN_LINK:
			ret = dma_iova_link(r->dev, &r->st, x->phys + o, x->off + o, j->g,
					    j->dir, 0);
			if (ret)
				return ret;
			r->mapped += j->g;
			j->pages++;
			break;
		case RUN_UPGRADE:
			up = dom_iova_upgrade(r->dev, &r->st, x->off + o, j->g, j->dir);
			if (up < 0)
				return (int)up;
			/* A block changes whole on its first granule, then reports 0. */
			r->cnt.perm_upgrades += (uint64_t)up / j->g;
			j->pages += (uint64_t)up / j->g;
			sync = x->pending; /* a published leaf needs only the upgrade's flush */
			break;
		default:
			j->pages++;
			break;
		}
		if (sync) {
			(void)dma_iova_sync(r->dev, &r->st, x->off + o, j->g);
			r->cnt.syncs++;
		}
		j->touched = true;
	}
	return 0;
}

/* Work out window, direction and rights. Return: 0 or the fault's -errno. */
static int job_init(struct odp_job *j, const struct odp_svc *s, struct odp_fault *f)
{
	struct odp_region *r = f->r;
	uint64_t w;

	memset(j, 0, sizeof(*j));
	j->f = f;
	j->r = r;
	if (!r || !r->dev || !dma_use_iova(&r->st) || !f->len)
		return -EINVAL;
	if (f->access != DOM_ACCESS_READ && f->access != DOM_ACCESS_WRITE)
		return -EINVAL;
	if (!in_region(r, f->off, f->len))
		return -EFAULT;
	j->write = f->access == DOM_ACCESS_WRITE;
	if (!(r->access & (j->write ? ODP_ACCESS_DEVICE_WRITE : ODP_ACCESS_DEVICE_READ)))
		return -EFAULT;
	j->g = granule_of(r);
	j->need = j->write ? PGTBL_WRITE : PGTBL_READ;
	if (!j->write)
		j->dir = DMA_TO_DEVICE;
	else
		j->dir = (r->access & ODP_ACCESS_DEVICE_READ) ? DMA_BIDIRECTIONAL : DMA_FROM_DEVICE;
	j->prefetch = f->flags & ODP_FAULT_PREFETCH;
	j->no_populate = f->flags & ODP_FAULT_NO_POPULATE;

	/* r->size is a granule multiple, so rounding up stays inside it. */
	j->rs = f->off & ~(j->g - 1);
	j->re = (f->off + f->len + j->g - 1) & ~(j->g - 1);
	w = (f->flags & ODP_FAULT_EXACT) ? j->g : max_u64(s->window, j->g);
	j->ws = f->off & ~(w - 1);
	j->we = min_u64(((f->off + f->len - 1) | (w - 1)) + 1, r->size);
	if (j->we < j->re) /* the sum wrapped: only possible near 2^64 */
		j->we = j->re;
	return 0;
}

static int fault_one(struct odp_svc *s, struct odp_fault *f)
{
	struct odp_run runs[ODP_RUNS];
	struct odp_job j;
	struct odp_region *r;
	struct dom_domain *d;
	uint64_t pos, flushes0;
	unsigned int tries = 0;
	int ret;

	ret = job_init(&j, s, f);
	if (ret)
		return ret;
	r = j.r;
	d = r->dev->dom;
	flushes0 = d->stats.flush_sync_map;
	pos = j.ws;
	while (pos < j.we) {
		uint64_t seq = r->seq, next = pos;
		uint32_t nr;

		ret = scan(&j, seq, &next, runs, &nr);
		if (r->seq != seq) {
			/* An invalidation ran while we resolved: nothing from this pass holds. */
			r->cnt.fault_retries++;
			if (++tries > ODP_MAX_RETRIES) {
				ret = -EAGAIN;
				break;
			}
			pos = j.ws; /* it may also have removed what earlier passes linked */
			continue;
		}
		if (!ret && nr)
			ret = svc_batch(s, r);
		for (uint32_t i = 0; !ret && i < nr; i++) {
			if (s->per_page)
				ret = apply_per_page(&j, &runs[i]);
			else
				ret = apply_batch(&j, &runs[i]);
		}
		if (ret)
			break;
		pos = next;
	}
	/* Publish what was linked, even when the fault failed half-way. */
	if (!s->per_page && j.touched) {
		(void)dma_iova_sync(r->dev, &r->st, j.ws, j.we - j.ws);
		r->cnt.syncs++;
	}
	/* Per page, every sync flushed on its own (unless the owner batches). */
	r->cnt.flushes += d->stats.flush_sync_map - flushes0;
	f->pages = j.pages;
	if (j.prefetch)
		r->cnt.page_prefetch += j.pages;
	else
		r->cnt.page_faults += j.pages;
	return ret;
}

int odp_service(const struct odp_config *cfg, struct odp_fault *f, uint32_t n)
{
	struct odp_svc s = { .window = ODP_WINDOW_DEFAULT };
	uint64_t flushes = 0;

	if (cfg) {
		/* Sanitise rather than fail a whole batch: a power of two, at most the max. */
		s.window = cfg->window > ODP_WINDOW_MAX ? ODP_WINDOW_MAX : cfg->window;
		if (s.window & (s.window - 1))
			s.window = UINT64_C(1) << (63 - __builtin_clzll(s.window));
		s.per_page = cfg->sync == ODP_SYNC_PER_PAGE;
	}
	s.doms = s.stack;
	s.cap = ODP_DOMS_ON_STACK;

	for (uint32_t i = 0; i < n; i++) {
		struct odp_region *r = f[i].r;
		uint64_t before = 0;

		f[i].pages = 0;
		if (r && r->dev)
			before = r->dev->dom->stats.flush_sync_map;
		f[i].status = fault_one(&s, &f[i]);
		if (r && r->dev)
			flushes += r->dev->dom->stats.flush_sync_map - before;
		if (!r)
			continue;
		if (f[i].status)
			r->cnt.fault_errors++;
		else if (!(f[i].flags & ODP_FAULT_PREFETCH))
			r->cnt.page_faults_handled++;
	}
	for (uint32_t i = 0; i < s.ndoms; i++) {
		int fl = dom_batch_end(s.doms[i].d);

		s.doms[i].r->cnt.flushes += (uint64_t)fl;
		flushes += (uint64_t)fl;
	}
	if (s.doms != s.stack)
		free(s.doms);
	return flushes > INT32_MAX ? INT32_MAX : (int)flushes;
}
