// SPDX-License-Identifier: MIT
/*
 * domain.c - simulated IOMMU domain and the IOVA-based DMA API
 *
 * The structure follows drivers/iommu/dma-iommu.c: try_alloc reserves IOVA
 * space, link maps without syncing, sync publishes, unlink unmaps through a
 * gather and flushes, destroy goes through the flush queue on lazy domains.
 */
#include "domain.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define DEFAULT_APERTURE_END ((UINT64_C(1) << PGTBL_IAS_BITS) - 1)

static inline uint64_t gmask(const struct dom_domain *d)
{
	return d->granule - 1;
}

static inline uint64_t galign(const struct dom_domain *d, uint64_t x)
{
	return (x + gmask(d)) & ~gmask(d);
}

static uint64_t clock_monotonic_ns(void *arg)
{
	struct timespec ts;

	(void)arg;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint64_t now_ns(const struct dom_domain *d)
{
	return d->cfg.clock(d->cfg.clock_arg);
}

static uint64_t roundup_pow2(uint64_t x)
{
	return x <= 1 ? 1 : UINT64_C(1) << (64 - __builtin_clzll(x - 1));
}

static bool translating(const struct dom_domain *d)
{
	return d->cfg.type == DOM_TRANSLATING;
}

/* ==== domains and devices ============================================== */

int dom_domain_create(struct pmem_space *pmem, const struct dom_config *cfg,
		      struct dom_domain **ret)
{
	struct pgtbl_cfg pcfg = { 0 };
	struct dom_domain *d;
	int r;

	if (!pmem || !cfg || cfg->type > DOM_IDENTITY || cfg->flush > DOM_FLUSH_LAZY ||
	    cfg->visibility > DOM_VISIBLE_ON_LINK)
		return -EINVAL;
	d = calloc(1, sizeof(*d));
	if (!d)
		return -ENOMEM;
	d->cfg = *cfg;
	d->pmem = pmem;
	if (!d->cfg.granule_shift)
		d->cfg.granule_shift = 12;
	if (!d->cfg.aperture_end)
		d->cfg.aperture_end = DEFAULT_APERTURE_END;
	if (!d->cfg.iotlb_entries)
		d->cfg.iotlb_entries = IOTLB_DEFAULT_ENTRIES;
	if (!d->cfg.fq_timeout_ns)
		d->cfg.fq_timeout_ns = DOM_FQ_TIMEOUT_NS;
	if (!d->cfg.swiotlb_bytes)
		d->cfg.swiotlb_bytes = DOM_DEFAULT_SWIOTLB_BYTES;
	if (!d->cfg.clock)
		d->cfg.clock = clock_monotonic_ns;
	d->granule = UINT64_C(1) << d->cfg.granule_shift;

	r = -EINVAL;
	if (d->cfg.granule_shift != 12 && d->cfg.granule_shift != 14 &&
	    d->cfg.granule_shift != 16)
		goto err_free;
	if (d->cfg.aperture_end > DEFAULT_APERTURE_END ||
	    d->cfg.aperture_start >= d->cfg.aperture_end ||
	    (d->cfg.aperture_start & gmask(d)) || ((d->cfg.aperture_end + 1) & gmask(d)))
		goto err_free;
	if (d->cfg.swiotlb_bytes < d->granule)
		goto err_free;

	if (!translating(d)) {
		*ret = d;
		return 0;
	}

	pcfg.granule_shift = d->cfg.granule_shift;
	pcfg.blocks = d->cfg.granule_shift == 12 && !d->cfg.no_blocks;
	pcfg.max_table_bytes = d->cfg.max_table_bytes;
	r = pgtbl_init(&d->pt, &pcfg);
	if (r)
		goto err_free;
	r = iotlb_init(&d->tlb, d->cfg.iotlb_entries, d->pt.pgsize_bitmap);
	if (r)
		goto err_pgtbl;
	r = iova_allocator_init(&d->iovad, d->cfg.aperture_start >> d->cfg.granule_shift,
				d->cfg.aperture_end >> d->cfg.granule_shift);
	if (r)
		goto err_iotlb;
	*ret = d;
	return 0;

err_iotlb:
	iotlb_fini(&d->tlb);
err_pgtbl:
	pgtbl_fini(&d->pt);
err_free:
	free(d);
	return r;
}

int dom_domain_destroy(struct dom_domain *d)
{
	if (!d)
		return 0;
	if (d->ndevices)
		return -EBUSY;
	if (translating(d)) {
		dom_fq_flush(d);
		iova_allocator_fini(&d->iovad);
		iotlb_fini(&d->tlb);
		pgtbl_fini(&d->pt);
		swiotlb_fini(&d->swiotlb, d->pmem);
	}
	free(d);
	return 0;
}

int dom_device_create(struct dom_domain *d, const struct dom_device_config *cfg,
		      struct dom_device **ret)
{
	struct dom_device *dev;
	unsigned int bits;
	size_t len;

	if (!d || !cfg || !cfg->name)
		return -EINVAL;
	len = strlen(cfg->name);
	bits = cfg->dma_mask_bits ? cfg->dma_mask_bits : 64;
	if (!len || len >= DOM_DEVICE_NAME_MAX || bits > 64)
		return -EINVAL;
	dev = calloc(1, sizeof(*dev));
	if (!dev)
		return -ENOMEM;
	memcpy(dev->name, cfg->name, len + 1);
	dev->dma_mask_bits = bits;
	dev->dma_mask = bits == 64 ? UINT64_MAX : (UINT64_C(1) << bits) - 1;
	dev->untrusted = cfg->untrusted;
	dev->coherent = !cfg->non_coherent;
	dev->pci_32bit_workaround = !cfg->not_pci;
	dev->dom = d;
	d->ndevices++;
	*ret = dev;
	return 0;
}

void dom_device_destroy(struct dom_device *dev)
{
	if (!dev)
		return;
	dev->dom->ndevices--;
	free(dev);
}

void dom_domain_stats(const struct dom_domain *d, struct dom_stats *ret)
{
	*ret = d->stats;
	if (translating(d)) {
		ret->iotlb_hits = d->tlb.stats.hits;
		ret->iotlb_misses = d->tlb.stats.misses;
		ret->table_bytes = d->pt.stats.table_bytes;
		ret->mapped_bytes = d->pt.stats.mapped_bytes;
	}
}

/* ==== IOTLB flushing ==================================================== */

static void count_flush(struct dom_domain *d, uint64_t *which)
{
	(*which)++;
	d->stats.iotlb_flushes++;
}

/* The kernel's iommu_iotlb_sync(): invalidate what the gather holds, reset it. */
static void gather_sync(struct dom_domain *d, struct iotlb_gather *g)
{
	bool queued = g->queued;

	if (g->end) {
		iotlb_inv_range(&d->tlb, g->start, g->end);
		count_flush(d, &d->stats.flush_range);
	}
	iotlb_gather_init(g);
	g->queued = queued;
}

struct unmap_ctx {
	struct dom_domain *d;
	struct iotlb_gather *g;
};

/* pgtbl_unmap() callback: iommu_iotlb_gather_add_page(), for a run of pages. */
static void gather_add_run(void *arg, uint64_t iova, uint64_t len, uint64_t pgsize)
{
	struct unmap_ctx *c = arg;

	/* A queued unmap is covered by the flush queue's full flush. */
	if (c->g->queued)
		return;
	if (iotlb_gather_needs_sync(c->g, iova, len, pgsize))
		gather_sync(c->d, c->g);
	iotlb_gather_add(c->g, iova, len, pgsize);
}

/* One whole-IOTLB flush; everything queued before it becomes reusable. */
static void fq_flush_iotlb(struct dom_domain *d)
{
	d->fq.flush_start_cnt++;
	iotlb_inv_all(&d->tlb);
	count_flush(d, &d->stats.flush_all);
	d->fq.flush_finish_cnt++;
}

/* Release the IOVAs of every entry whose flush has completed. */
static int fq_ring_free(struct dom_domain *d)
{
	struct dom_flush_queue *fq = &d->fq;
	int n = 0;

	while (fq->head != fq->tail) {
		struct dom_fq_entry *e = &fq->ring[fq->head];

		if (e->counter >= fq->flush_finish_cnt)
			break;
		(void)iova_free(&d->iovad, e->pfn, e->npages);
		fq->head = (fq->head + 1) % DOM_FQ_SIZE;
		n++;
	}
	return n;
}

static bool fq_full(const struct dom_flush_queue *fq)
{
	return (fq->tail + 1) % DOM_FQ_SIZE == fq->head;
}

static void fq_queue(struct dom_domain *d, uint64_t pfn, uint64_t npages)
{
	struct dom_flush_queue *fq = &d->fq;

	fq_ring_free(d);
	if (fq_full(fq)) {
		d->stats.fq_full++;
		fq_flush_iotlb(d);
		fq_ring_free(d);
	}
	fq->ring[fq->tail] = (struct dom_fq_entry){
		.pfn = pfn, .npages = npages, .counter = fq->flush_start_cnt,
	};
	fq->tail = (fq->tail + 1) % DOM_FQ_SIZE;
	d->stats.fq_queued++;
	if (!fq->deadline)
		fq->deadline = now_ns(d) + d->cfg.fq_timeout_ns;
}

uint64_t dom_fq_deadline(const struct dom_domain *d)
{
	return d->fq.deadline;
}

int dom_fq_poll(struct dom_domain *d)
{
	if (!d->fq.deadline || now_ns(d) < d->fq.deadline)
		return 0;
	d->stats.fq_timer++;
	return dom_fq_flush(d);
}

int dom_fq_flush(struct dom_domain *d)
{
	if (!translating(d))
		return 0;
	d->fq.deadline = 0;
	if (d->fq.head == d->fq.tail)
		return 0;
	fq_flush_iotlb(d);
	return fq_ring_free(d);
}

void dom_batch_begin(struct dom_domain *d)
{
	d->batch_depth++;
}

int dom_batch_end(struct dom_domain *d)
{
	if (!d->batch_depth || --d->batch_depth || !d->batch_flush_pending)
		return 0;
	d->batch_flush_pending = false;
	count_flush(d, &d->stats.flush_sync_map);
	return 1;
}

/* The IOMMU's "sync map": new PTEs become visible to the device. */
static void sync_map(struct dom_domain *d, uint64_t iova, uint64_t size)
{
	(void)pgtbl_publish(&d->pt, iova, size);
	if (d->batch_depth)
		d->batch_flush_pending = true;
	else
		count_flush(d, &d->stats.flush_sync_map);
}

/* ==== IOVA allocation =================================================== */

/* iommu_dma_alloc_iova(): size is granule-aligned; returns 0 on failure. */
static uint64_t alloc_iova(struct dom_device *dev, uint64_t size)
{
	struct dom_domain *d = dev->dom;
	unsigned int shift = d->cfg.granule_shift;
	uint64_t limit = dev->dma_mask, pfn, n;

	if (d->want_iova) {
		/* Restore: exactly this IOVA, rounded as the allocator would have. */
		pfn = d->want_iova >> shift;
		d->want_iova = 0;
		n = size >> shift;
		if (n < IOVA_RCACHE_MAX_PAGES)
			n = roundup_pow2(n);
		if (((pfn + n) << shift) - 1 > dev->dma_mask)
			return 0;
		/* Freed ranges may still sit in the flush queue: let them go first. */
		if (iova_reserve(&d->iovad, pfn, n) &&
		    (dom_fq_flush(d), iova_reserve(&d->iovad, pfn, n)))
			return 0;
		goto done;
	}
	if (limit > d->cfg.aperture_end)
		limit = d->cfg.aperture_end;
	/*
	 * PCI devices get an address below 4 GiB first (single address cycle),
	 * until the first time that space runs out.
	 */
	if (limit > UINT32_MAX && dev->pci_32bit_workaround) {
		if (!iova_alloc(&d->iovad, size >> shift, UINT32_MAX >> shift, &pfn))
			goto done;
		dev->pci_32bit_workaround = false;
	}
	if (iova_alloc(&d->iovad, size >> shift, limit >> shift, &pfn)) {
		d->stats.iova_alloc_failures++;
		return 0;
	}
done:
	d->stats.iova_allocs++;
	return pfn << shift;
}

/* iommu_dma_free_iova(): straight back, or through the flush queue. */
static void free_iova(struct dom_domain *d, uint64_t iova, uint64_t size, bool queued)
{
	unsigned int shift = d->cfg.granule_shift;

	d->stats.iova_frees++;
	if (queued)
		fq_queue(d, iova >> shift, size >> shift);
	else
		(void)iova_free(&d->iovad, iova >> shift, size >> shift);
}

bool dma_iova_try_alloc(struct dom_device *dev, struct dma_iova_state *state, uint64_t phys,
			uint64_t size)
{
	struct dom_domain *d = dev->dom;
	uint64_t iova_off, len, addr;

	memset(state, 0, sizeof(*state));
	if (!translating(d))
		return false;
	if (!size || (size & DMA_IOVA_USE_SWIOTLB))
		return false;
	iova_off = phys & gmask(d);
	len = galign(d, size + iova_off);
	if (len < size)
		return false;
	addr = alloc_iova(dev, len);
	if (!addr)
		return false;
	state->addr = addr + iova_off;
	state->__size = size;
	return true;
}

int dma_iova_reserve(struct dom_device *dev, const struct dma_iova_state *state)
{
	struct dom_domain *d = dev->dom;
	uint64_t pad, base, len;
	unsigned int shift = d->cfg.granule_shift;
	int r;

	if (!translating(d) || !dma_use_iova(state))
		return -EINVAL;
	pad = state->addr & gmask(d);
	base = state->addr - pad;
	len = galign(d, dma_iova_size(state) + pad);
	if (base + len - 1 > dev->dma_mask)
		return -EINVAL;
	/* Allocations are rounded the allocator's way; reserve what it would have. */
	len >>= shift;
	if (len < IOVA_RCACHE_MAX_PAGES)
		len = roundup_pow2(len);
	r = iova_reserve(&d->iovad, base >> shift, len);
	if (!r)
		d->stats.iova_allocs++;
	return r;
}

uint64_t dma_get_merge_boundary(const struct dom_device *dev)
{
	return translating(dev->dom) ? gmask(dev->dom) : 0;
}

/* ==== link / sync / unlink ============================================== */

static int check_dir_attrs(enum dma_data_direction dir, unsigned long attrs)
{
	if ((unsigned int)dir > DMA_FROM_DEVICE || (attrs & ~DMA_ATTR_KNOWN))
		return -EINVAL;
	return 0;
}

/* dma_info_to_prot(): the direction sets the device's rights. */
static unsigned int dir_to_prot(const struct dom_device *dev, enum dma_data_direction dir,
				unsigned long attrs)
{
	unsigned int prot;

	switch (dir) {
	case DMA_TO_DEVICE:
		prot = PGTBL_READ;
		break;
	case DMA_FROM_DEVICE:
		prot = PGTBL_WRITE | (dev->dom->cfg.from_device_rw ? PGTBL_READ : 0);
		break;
	default:
		prot = PGTBL_READ | PGTBL_WRITE;
		break;
	}
	if (attrs & DMA_ATTR_MMIO)
		prot |= PGTBL_MMIO;
	else if (dev->coherent)
		prot |= PGTBL_CACHE;
	return prot;
}

static bool needs_cpu_sync(const struct dom_device *dev, unsigned long attrs)
{
	return !dev->coherent && !(attrs & (DMA_ATTR_SKIP_CPU_SYNC | DMA_ATTR_MMIO));
}

/* __dma_iova_link(): iova, phys and size are granule-aligned here (or map fails). */
/* The leaves of a link: dir's permissions (plus flags), pending until sync if so configured. */
static int map_link(struct dom_device *dev, uint64_t iova, uint64_t phys, uint64_t size,
		    enum dma_data_direction dir, unsigned long attrs, unsigned int flags)
{
	struct dom_domain *d = dev->dom;
	unsigned int prot = dir_to_prot(dev, dir, attrs) | flags;

	if (d->cfg.visibility == DOM_VISIBLE_ON_SYNC)
		prot |= PGTBL_PENDING;
	return pgtbl_map(&d->pt, iova, phys, size, prot);
}

static int link_range(struct dom_device *dev, uint64_t iova, uint64_t phys, uint64_t size,
		      enum dma_data_direction dir, unsigned long attrs)
{
	if (!size)
		return 0; /* an empty aligned middle between two bounced granules */
	if (needs_cpu_sync(dev, attrs))
		dev->dom->stats.cpu_cache_syncs++;
	return map_link(dev, iova, phys, size, dir, attrs, 0);
}

static int swiotlb_ready(struct dom_domain *d)
{
	if (d->swiotlb.mem)
		return 0;
	return swiotlb_init(&d->swiotlb, d->pmem, d->granule,
			    (uint32_t)(d->cfg.swiotlb_bytes >> d->cfg.granule_shift));
}

/*
 * Bounce [phys, phys + len) and map the slot's whole granule at addr - pad.
 * Return: 0 with *ret_bphys, or -ENOMEM / the map's error.
 */
static int bounce_and_link(struct dom_device *dev, uint64_t addr, uint64_t phys, uint64_t len,
			   enum dma_data_direction dir, unsigned long attrs, uint64_t pad)
{
	struct dom_domain *d = dev->dom;
	uint64_t bphys;
	int r;

	if (swiotlb_ready(d) || swiotlb_map(&d->swiotlb, d->pmem, phys, len, &bphys))
		return -ENOMEM;
	r = link_range(dev, addr - pad, bphys - pad, galign(d, len + pad), dir, attrs);
	if (r) {
		(void)swiotlb_unmap(&d->swiotlb, d->pmem, bphys, false);
		return r;
	}
	d->stats.bounce_maps++;
	d->stats.bounced_bytes += len;
	return 0;
}

static int unlink_common(struct dom_device *dev, struct dma_iova_state *state,
			 uint64_t offset, uint64_t size, enum dma_data_direction dir,
			 unsigned long attrs, bool free_iova_after);

/* iommu_dma_iova_link_swiotlb(): bounce the unaligned head and tail granules. */
static int link_swiotlb(struct dom_device *dev, struct dma_iova_state *state, uint64_t phys,
			uint64_t offset, uint64_t size, enum dma_data_direction dir,
			unsigned long attrs)
{
	struct dom_domain *d = dev->dom;
	uint64_t start_pad = phys & gmask(d);
	uint64_t end_pad = (phys + size) & gmask(d);
	uint64_t addr = state->addr + offset, mapped = 0;
	int r;

	if (start_pad) {
		uint64_t blen = size < d->granule - start_pad ? size : d->granule - start_pad;

		r = bounce_and_link(dev, addr, phys, blen, dir, attrs, start_pad);
		if (r)
			return r;
		state->__size |= DMA_IOVA_USE_SWIOTLB;
		mapped += blen;
		size -= blen;
		if (!size)
			return 0;
	}
	/* Phys is aligned from here on, so the tail is whatever is left unaligned. */
	if (end_pad > size)
		end_pad = size;
	r = link_range(dev, addr + mapped, phys + mapped, size - end_pad, dir, attrs);
	if (r)
		goto err_unlink;
	mapped += size - end_pad;
	if (end_pad) {
		r = bounce_and_link(dev, addr + mapped, phys + mapped, end_pad, dir, attrs, 0);
		if (r)
			goto err_unlink;
		state->__size |= DMA_IOVA_USE_SWIOTLB;
	}
	return 0;

err_unlink:
	/* Undo what this call linked (the kernel unlinks from 0 here; we unlink ours). */
	if (mapped)
		(void)unlink_common(dev, state, offset, mapped, dir, attrs, false);
	return r;
}

static int check_state_range(const struct dom_device *dev, const struct dma_iova_state *state,
			     uint64_t offset, uint64_t size)
{
	if (!translating(dev->dom) || !dma_use_iova(state) || !size)
		return -EINVAL;
	if (offset > dma_iova_size(state) || size > dma_iova_size(state) - offset)
		return -EINVAL;
	return 0;
}

int dma_iova_link(struct dom_device *dev, struct dma_iova_state *state, uint64_t phys,
		  uint64_t offset, uint64_t size, enum dma_data_direction dir,
		  unsigned long attrs)
{
	struct dom_domain *d = dev->dom;
	uint64_t start_pad;
	int r;

	r = check_state_range(dev, state, offset, size);
	if (!r)
		r = check_dir_attrs(dir, attrs);
	if (r)
		goto out;
	start_pad = phys & gmask(d);
	/* A caller bug: only the first range may start inside a granule. */
	if (start_pad && offset > 0) {
		r = -EIO;
		goto out;
	}
	if ((attrs & DMA_ATTR_REQUIRE_COHERENT) && !dev->coherent) {
		r = -EOPNOTSUPP;
		goto out;
	}
	if (dev->untrusted && ((phys | size) & gmask(d))) {
		if (attrs & (DMA_ATTR_MMIO | DMA_ATTR_REQUIRE_COHERENT))
			r = -EPERM;
		else
			r = link_swiotlb(dev, state, phys, offset, size, dir, attrs);
		goto out;
	}
	r = link_range(dev, state->addr + offset - start_pad, phys - start_pad,
		       galign(d, size + start_pad), dir, attrs);
out:
	if (r)
		d->stats.link_errors++;
	else
		d->stats.links++;
	return r;
}

int dma_iova_link_run(struct dom_device *dev, struct dma_iova_state *state, uint64_t phys,
		      uint64_t offset, uint64_t size, enum dma_data_direction dir,
		      unsigned long attrs, uint32_t nr)
{
	struct dom_domain *d = dev->dom;
	int r;

	if (!nr || ((phys | offset | size) & gmask(d)))
		return -EINVAL;
	r = check_state_range(dev, state, offset, size);
	if (!r)
		r = check_dir_attrs(dir, attrs);
	if (r)
		return r;
	if ((attrs & DMA_ATTR_REQUIRE_COHERENT) && !dev->coherent)
		return -EOPNOTSUPP;
	/* Aligned: no start pad and, on an untrusted device, nothing to bounce. */
	r = map_link(dev, state->addr + offset, phys, size, dir, attrs, PGTBL_NO_BLOCKS);
	if (r)
		return r;
	if (needs_cpu_sync(dev, attrs))
		d->stats.cpu_cache_syncs += nr;
	d->stats.links += nr;
	return 0;
}

int dma_iova_sync(struct dom_device *dev, struct dma_iova_state *state, uint64_t offset,
		  uint64_t size)
{
	struct dom_domain *d = dev->dom;
	uint64_t start, end;
	int r;

	r = check_state_range(dev, state, offset, size);
	if (r)
		return r;
	start = (state->addr + offset) & ~gmask(d);
	end = galign(d, state->addr + offset + size);
	d->stats.syncs++;
	sync_map(d, start, end - start);
	return 0;
}

/*
 * iommu_dma_iova_unlink_range_slow(): walk the range a granule at a time,
 * doing CPU cache maintenance and releasing bounce slots (copying back first
 * when the device may have written).
 */
static void slow_walk(struct dom_device *dev, uint64_t addr, uint64_t end,
		      enum dma_data_direction dir, unsigned long attrs)
{
	struct dom_domain *d = dev->dom;
	uint64_t pad = addr & gmask(d);
	bool copy_back = dir == DMA_FROM_DEVICE || dir == DMA_BIDIRECTIONAL;

	while (addr < end) {
		struct pgtbl_leaf leaf;
		uint64_t len = d->granule - pad, phys;

		if (len > end - addr)
			len = end - addr;
		if (!pgtbl_lookup(&d->pt, addr, &leaf)) {
			phys = leaf.phys + (addr - leaf.iova);
			if (needs_cpu_sync(dev, attrs))
				d->stats.cpu_cache_syncs++;
			if (swiotlb_owns(&d->swiotlb, phys))
				(void)swiotlb_unmap(&d->swiotlb, d->pmem, phys, copy_back);
		}
		addr += len;
		pad = 0;
	}
}

/* Spans at most this many granules are walked granule by granule. */
#define SLOW_WALK_GRANULES 64u

/*
 * The kernel walks the whole range a granule at a time, mapped or not, so a
 * huge state (an implicit ODP region reserves 1 TiB) cost seconds of the
 * daemon's only thread at teardown: 0.8 s for 1 TiB, 12 s for 16 TiB, every
 * other client waiting. Spans nothing maps are skipped instead, halving the
 * range (at granule boundaries) until a span is empty or small: the work is
 * the granules that are mapped plus O(log size) per mapped span.
 */
static void unlink_range_slow(struct dom_device *dev, uint64_t addr, uint64_t size,
			      enum dma_data_direction dir, unsigned long attrs)
{
	struct dom_domain *d = dev->dom;
	uint64_t end = addr + size, start = addr & ~gmask(d), mid;

	if (!pgtbl_any_mapped(&d->pt, start, end - start))
		return;
	if (end - start <= (uint64_t)SLOW_WALK_GRANULES * d->granule) {
		slow_walk(dev, addr, end, dir, attrs);
		return;
	}
	mid = start + (((end - start) / 2) & ~gmask(d));
	unlink_range_slow(dev, addr, mid - addr, dir, attrs);
	unlink_range_slow(dev, mid, end - mid, dir, attrs);
}

/*
 * __iommu_dma_iova_unlink(). With free_iova_after (destroy) the IOVA is
 * released too: on a lazy domain the flush and the reuse are deferred.
 */
static int unlink_common(struct dom_device *dev, struct dma_iova_state *state,
			 uint64_t offset, uint64_t size, enum dma_data_direction dir,
			 unsigned long attrs, bool free_iova_after)
{
	struct dom_domain *d = dev->dom;
	uint64_t addr = state->addr + offset;
	uint64_t pad = addr & gmask(d);
	struct iotlb_gather g;
	struct unmap_ctx ctx = { .d = d, .g = &g };
	uint64_t base, len;
	int64_t unmapped;
	int r = 0;

	if ((state->__size & DMA_IOVA_USE_SWIOTLB) || needs_cpu_sync(dev, attrs))
		unlink_range_slow(dev, addr, size, dir, attrs);

	iotlb_gather_init(&g);
	g.queued = free_iova_after && d->cfg.flush == DOM_FLUSH_LAZY;
	size = galign(d, size + pad);
	addr -= pad;
	unmapped = pgtbl_unmap(&d->pt, addr, size, gather_add_run, &ctx);
	if (!g.queued)
		gather_sync(d, &g);
	d->stats.unlinks++;
	if (unmapped < 0)
		return (int)unmapped;
	if ((uint64_t)unmapped != size) {
		d->stats.unlink_holes++;
		r = -ENOENT;
	}
	if (!free_iova_after)
		return r;

	/* Destroy: everything in the allocation must be gone before it is freed. */
	pad = state->addr & gmask(d);
	base = state->addr - pad;
	len = galign(d, dma_iova_size(state) + pad);
	if (pgtbl_any_mapped(&d->pt, base, len)) {
		if (g.queued)
			fq_flush_iotlb(d); /* what was unlinked must not linger */
		d->stats.free_busy++;
		return -EBUSY;
	}
	free_iova(d, base, len, g.queued);
	memset(state, 0, sizeof(*state));
	return r;
}

int dma_iova_unlink(struct dom_device *dev, struct dma_iova_state *state, uint64_t offset,
		    uint64_t size, enum dma_data_direction dir, unsigned long attrs)
{
	int r = check_state_range(dev, state, offset, size);

	if (!r)
		r = check_dir_attrs(dir, attrs);
	if (r)
		return r;
	return unlink_common(dev, state, offset, size, dir, attrs, false);
}

int dma_iova_free(struct dom_device *dev, struct dma_iova_state *state)
{
	struct dom_domain *d = dev->dom;
	uint64_t pad, base, len;

	if (!translating(d) || !dma_use_iova(state))
		return -EINVAL;
	pad = state->addr & gmask(d);
	base = state->addr - pad;
	len = galign(d, dma_iova_size(state) + pad);
	if (pgtbl_any_mapped(&d->pt, base, len)) {
		d->stats.free_busy++;
		return -EBUSY;
	}
	free_iova(d, base, len, false);
	memset(state, 0, sizeof(*state));
	return 0;
}

int dma_iova_destroy(struct dom_device *dev, struct dma_iova_state *state,
		     uint64_t mapped_len, enum dma_data_direction dir, unsigned long attrs)
{
	int r;

	if (!mapped_len)
		return dma_iova_free(dev, state);
	r = check_state_range(dev, state, 0, mapped_len);
	if (!r)
		r = check_dir_attrs(dir, attrs);
	if (r)
		return r;
	return unlink_common(dev, state, 0, mapped_len, dir, attrs, true);
}

/*
 * The IOTLB entries of the leaves an upgrade changed must go: a cached
 * read-only translation would keep refusing the write. Adjacent leaves are
 * merged into one invalidation, as a gather would, because every
 * invalidation scans the whole IOTLB.
 */
struct upgrade_ctx {
	struct dom_domain *d;
	uint64_t start, last;  /* pending run, inclusive; last < start when empty */
};

static void upgrade_inv_flush(struct upgrade_ctx *c)
{
	if (c->last >= c->start)
		iotlb_inv_range(&c->d->tlb, c->start, c->last);
	c->start = 1;
	c->last = 0;
}

static void upgrade_inv_add(void *arg, uint64_t iova, uint64_t len, uint64_t pgsize)
{
	struct upgrade_ctx *c = arg;

	(void)pgsize;
	if (c->last >= c->start && iova == c->last + 1) {
		c->last = iova + len - 1;
		return;
	}
	upgrade_inv_flush(c);
	c->start = iova;
	c->last = iova + len - 1;
}

int64_t dom_iova_upgrade(struct dom_device *dev, struct dma_iova_state *state, uint64_t offset,
			 uint64_t size, enum dma_data_direction dir)
{
	struct dom_domain *d = dev->dom;
	struct upgrade_ctx ctx = { .d = d, .start = 1, .last = 0 };
	uint64_t addr, end, iova;
	unsigned int set;
	int64_t changed;
	int r;

	r = check_state_range(dev, state, offset, size);
	if (!r)
		r = check_dir_attrs(dir, 0);
	if (r)
		return r;
	addr = (state->addr + offset) & ~gmask(d);
	end = galign(d, state->addr + offset + size);

	/* All or nothing: refuse before touching a PTE if any granule is a hole. */
	for (iova = addr; iova < end;) {
		struct pgtbl_leaf leaf;

		if (pgtbl_lookup(&d->pt, iova, &leaf))
			return -ENOENT;
		iova = leaf.iova + leaf.size;
	}

	/* Only the rights: a leaf's cache/MMIO attributes stay what link chose. */
	set = dir_to_prot(dev, dir, 0) & (PGTBL_READ | PGTBL_WRITE);
	changed = pgtbl_protect(&d->pt, addr, end - addr, set, upgrade_inv_add, &ctx);
	if (changed <= 0)
		return changed;
	upgrade_inv_flush(&ctx);
	/* The new rights must reach the IOMMU like new PTEs do: a sync-map flush. */
	if (d->batch_depth)
		d->batch_flush_pending = true;
	else
		count_flush(d, &d->stats.flush_sync_map);
	return changed;
}

/* ==== streaming fallback ================================================ */

int dma_map_phys(struct dom_device *dev, uint64_t phys, uint64_t size,
		 enum dma_data_direction dir, unsigned long attrs, uint64_t *ret_dma)
{
	struct dom_domain *d = dev->dom;
	uint64_t off, len, iova, bphys = 0;
	bool bounced = false;
	int r;

	r = check_dir_attrs(dir, attrs);
	if (r || !size || phys + size < phys)
		return -EINVAL;
	if ((attrs & DMA_ATTR_REQUIRE_COHERENT) && !dev->coherent)
		return -EOPNOTSUPP;
	if (!translating(d)) {
		/* dma-direct: the bus address is phys, if the device can reach it. */
		if (phys + size - 1 > dev->dma_mask)
			return -EIO;
		d->stats.map_phys++;
		*ret_dma = phys;
		return 0;
	}
	if (dev->untrusted && ((phys | size) & gmask(d))) {
		if (attrs & (DMA_ATTR_MMIO | DMA_ATTR_REQUIRE_COHERENT))
			return -EPERM;
		if (swiotlb_ready(d) || swiotlb_map(&d->swiotlb, d->pmem, phys, size, &bphys))
			return -ENOMEM;
		d->stats.bounce_maps++;
		d->stats.bounced_bytes += size;
		phys = bphys;
		bounced = true;
	}
	if (needs_cpu_sync(dev, attrs))
		d->stats.cpu_cache_syncs++;
	off = phys & gmask(d);
	len = galign(d, size + off);
	iova = alloc_iova(dev, len);
	if (!iova) {
		r = -ENOMEM;
		goto err_unbounce;
	}
	r = pgtbl_map(&d->pt, iova, phys - off, len, dir_to_prot(dev, dir, attrs));
	if (r)
		goto err_free;
	count_flush(d, &d->stats.flush_sync_map); /* iommu_map() syncs */
	d->stats.map_phys++;
	*ret_dma = iova + off;
	return 0;

err_free:
	free_iova(d, iova, len, false);
	/* Never handed out: neither an allocation nor a free (allocs - frees = live). */
	d->stats.iova_frees--;
	d->stats.iova_allocs--;
err_unbounce:
	if (bounced)
		(void)swiotlb_unmap(&d->swiotlb, d->pmem, bphys, false);
	return r;
}

int dma_unmap_phys(struct dom_device *dev, uint64_t dma, uint64_t size,
		   enum dma_data_direction dir, unsigned long attrs)
{
	struct dom_domain *d = dev->dom;
	struct pgtbl_leaf first, last;
	struct iotlb_gather g;
	struct unmap_ctx ctx = { .d = d, .g = &g };
	uint64_t off, base, len, phys;
	int64_t unmapped;
	int r;

	r = check_dir_attrs(dir, attrs);
	if (r || !size || dma + size < dma)
		return -EINVAL;
	if (!translating(d)) {
		d->stats.unmap_phys++;
		return 0;
	}
	off = dma & gmask(d);
	base = dma - off;
	len = galign(d, size + off);
	/* Refuse before touching anything unless the whole range is mapped at both ends. */
	if (pgtbl_lookup(&d->pt, base, &first) || pgtbl_lookup(&d->pt, base + len - 1, &last))
		return -ENOENT;
	phys = first.phys + (dma - first.iova);
	if (needs_cpu_sync(dev, attrs))
		d->stats.cpu_cache_syncs++;

	iotlb_gather_init(&g);
	g.queued = d->cfg.flush == DOM_FLUSH_LAZY;
	unmapped = pgtbl_unmap(&d->pt, base, len, gather_add_run, &ctx);
	if (!g.queued)
		gather_sync(d, &g);
	if (unmapped < 0)
		return (int)unmapped;
	if ((uint64_t)unmapped != len) {
		/* Holes: it was not one mapping; do not free IOVA we cannot vouch for. */
		if (g.queued)
			fq_flush_iotlb(d);
		d->stats.unlink_holes++;
		return -ENOENT;
	}
	if (swiotlb_owns(&d->swiotlb, phys))
		(void)swiotlb_unmap(&d->swiotlb, d->pmem, phys,
				    dir == DMA_FROM_DEVICE || dir == DMA_BIDIRECTIONAL);
	free_iova(d, base, len, g.queued);
	d->stats.unmap_phys++;
	return 0;
}

/* ==== the device's DMA engine ========================================== */

struct dma_seg {
	uint8_t *va;
	uint64_t len;
};

#define DMA_SEGS_ON_STACK 16

static int fault(struct dom_domain *d, uint64_t iova, uint32_t access, uint32_t reason,
		 struct dom_fault *ret)
{
	struct dom_fault f = { .iova = iova, .access = access, .reason = reason };

	d->faults[d->nfaults % DOM_FAULT_LOG] = f;
	d->nfaults++;
	d->stats.io_page_faults++;
	if (ret)
		*ret = f;
	return -EFAULT;
}

/*
 * Translate one access at iova: through the IOTLB, else by walking the page
 * table and caching the leaf. Sets *phys and *avail (bytes to the end of the
 * leaf), or returns a fault reason.
 */
static uint32_t translate(struct dom_domain *d, uint64_t iova, uint32_t access,
			  uint64_t *phys, uint64_t *avail)
{
	const struct iotlb_entry *e = iotlb_lookup(&d->tlb, iova);
	uint64_t base, size;
	unsigned int prot;

	if (e) {
		base = e->iova;
		size = UINT64_C(1) << e->shift;
		prot = e->prot;
		*phys = e->phys + (iova - base);
	} else {
		struct pgtbl_leaf leaf;

		if (pgtbl_lookup(&d->pt, iova, &leaf))
			return DOM_FAULT_NOT_PRESENT;
		if (leaf.prot & PGTBL_PENDING)
			return DOM_FAULT_NOT_SYNCED;
		base = leaf.iova;
		size = leaf.size;
		prot = leaf.prot & PGTBL_PROT_MASK;
		*phys = leaf.phys + (iova - base);
		iotlb_insert(&d->tlb, base, (unsigned int)__builtin_ctzll(size), leaf.phys, prot);
	}
	if ((access == DOM_ACCESS_READ && !(prot & PGTBL_READ)) ||
	    (access == DOM_ACCESS_WRITE && !(prot & PGTBL_WRITE)))
		return DOM_FAULT_PERMISSION;
	*avail = base + size - iova;
	return 0;
}

static int dev_dma(struct dom_device *dev, uint64_t iova, uint8_t *buf, uint64_t len,
		   uint32_t access, struct dom_fault *ret_fault)
{
	struct dom_domain *d = dev->dom;
	struct dma_seg stack[DMA_SEGS_ON_STACK], *segs = stack;
	uint32_t nsegs = 0, cap = DMA_SEGS_ON_STACK;
	uint64_t cur = iova, left = len;
	int r = 0;

	if (!len || iova + len - 1 < iova)
		return -EINVAL;
	/* Pass 1: translate everything, so a fault moves no byte at all. */
	while (left) {
		uint64_t phys, avail, n;
		struct pmem_obj *o;
		uint32_t reason;

		if (cur > dev->dma_mask || left - 1 > dev->dma_mask - cur)
			return fault(d, cur > dev->dma_mask ? cur : dev->dma_mask + 1, access,
				     DOM_FAULT_ADDRESS, ret_fault);
		if (translating(d)) {
			reason = translate(d, cur, access, &phys, &avail);
			if (reason) {
				r = fault(d, cur, access, reason, ret_fault);
				goto out;
			}
		} else {
			phys = cur;
			avail = left;
		}
		o = pmem_find(d->pmem, phys);
		if (!o) {
			r = fault(d, cur, access, DOM_FAULT_BUS, ret_fault);
			goto out;
		}
		n = o->size - (phys - o->phys);
		n = n < avail ? n : avail;
		n = n < left ? n : left;
		if (nsegs == cap) {
			struct dma_seg *ns = malloc(2 * cap * sizeof(*ns));

			if (!ns) {
				r = -ENOMEM;
				goto out;
			}
			memcpy(ns, segs, nsegs * sizeof(*ns));
			if (segs != stack)
				free(segs);
			segs = ns;
			cap *= 2;
		}
		segs[nsegs].va = o->va + (phys - o->phys);
		segs[nsegs].len = n;
		nsegs++;
		cur += n;
		left -= n;
	}
	/* Pass 2: move the bytes. */
	for (uint32_t i = 0; i < nsegs; i++) {
		if (access == DOM_ACCESS_READ)
			memcpy(buf, segs[i].va, segs[i].len);
		else
			memcpy(segs[i].va, buf, segs[i].len);
		buf += segs[i].len;
	}
	if (access == DOM_ACCESS_READ)
		d->stats.dma_reads++;
	else
		d->stats.dma_writes++;
	d->stats.dma_bytes += len;
out:
	if (segs != stack)
		free(segs);
	return r;
}

int dom_dev_dma_read(struct dom_device *dev, uint64_t iova, void *buf, uint64_t len,
		     struct dom_fault *ret_fault)
{
	return dev_dma(dev, iova, buf, len, DOM_ACCESS_READ, ret_fault);
}

int dom_dev_dma_write(struct dom_device *dev, uint64_t iova, const void *buf, uint64_t len,
		      struct dom_fault *ret_fault)
{
	return dev_dma(dev, iova, (uint8_t *)buf, len, DOM_ACCESS_WRITE, ret_fault);
}

void dom_dev_dma_account(struct dom_device *dev, uint32_t access, uint64_t len,
			 const struct dom_fault *f)
{
	struct dom_domain *d = dev->dom;

	if (f) {
		(void)fault(d, f->iova, f->access, f->reason, NULL);
		return;
	}
	if (access == DOM_ACCESS_READ)
		d->stats.dma_reads++;
	else
		d->stats.dma_writes++;
	d->stats.dma_bytes += len;
}

const char *dom_fault_reason_str(uint32_t reason)
{
	switch (reason) {
	case DOM_FAULT_NOT_PRESENT:
		return "not present";
	case DOM_FAULT_NOT_SYNCED:
		return "linked but not synced";
	case DOM_FAULT_PERMISSION:
		return "permission";
	case DOM_FAULT_ADDRESS:
		return "beyond the DMA mask";
	case DOM_FAULT_BUS:
		return "no memory behind the translation";
	default:
		return "unknown";
	}
}
