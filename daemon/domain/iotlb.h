/* SPDX-License-Identifier: MIT */
/*
 * iotlb.h - a bounded, set-associative IOTLB and the kernel's unmap gather
 *
 * The simulated device translates through this cache before it walks the
 * page table, so a translation that is cached keeps working after its PTE is
 * gone until somebody flushes it: exactly the window that strict and lazy
 * flush policies trade against each other on real hardware.
 *
 * Entries are tagged by (IOVA base, leaf size), so a 2 MiB block costs one
 * entry. 4-way set associative with LRU replacement inside a set.
 */
#ifndef IOVAD_DOMAIN_IOTLB_H
#define IOVAD_DOMAIN_IOTLB_H

#include <stdbool.h>
#include <stdint.h>

#define IOTLB_WAYS 4u
#define IOTLB_MAX_ENTRIES 65536u
#define IOTLB_DEFAULT_ENTRIES 128u

struct iotlb_entry {
	uint64_t iova;     /* base, aligned to 1 << shift */
	uint64_t phys;     /* output of the base */
	uint32_t lru;      /* last-use stamp */
	uint8_t shift;     /* leaf size */
	uint8_t prot;      /* PGTBL_* permission bits */
	uint8_t valid;
};

struct iotlb_stats {
	uint64_t hits;
	uint64_t misses;
	uint64_t evictions;
	uint64_t invalidated; /* entries dropped by flushes */
};

struct iotlb {
	struct iotlb_entry *e;
	uint32_t nsets;        /* power of two */
	uint32_t ways;
	uint32_t nvalid;
	uint32_t stamp;
	uint64_t lo, hi;       /* every valid entry lies in [lo, hi] (a superset) */
	uint8_t shifts[4];     /* leaf sizes the domain can produce */
	uint8_t nshifts;
	struct iotlb_stats stats;
};

/*
 * iotlb_init - entries must be a power of two in [1, IOTLB_MAX_ENTRIES];
 * pgsize_bitmap names the leaf sizes lookups must probe.
 * Return: 0, -EINVAL, -ENOMEM.
 */
int iotlb_init(struct iotlb *t, uint32_t entries, uint64_t pgsize_bitmap);
void iotlb_fini(struct iotlb *t);

/* iotlb_lookup - the entry translating iova, or NULL. Counts a hit or a miss. */
const struct iotlb_entry *iotlb_lookup(struct iotlb *t, uint64_t iova);

/* iotlb_insert - cache a leaf (replacing the set's LRU way when full). */
void iotlb_insert(struct iotlb *t, uint64_t iova, unsigned int shift, uint64_t phys,
		  unsigned int prot);

/* iotlb_inv_range - drop every entry intersecting [start, last] (inclusive). */
void iotlb_inv_range(struct iotlb *t, uint64_t start, uint64_t last);

/* iotlb_inv_all - drop everything. */
void iotlb_inv_all(struct iotlb *t);

/*
 * The unmap gather, as the kernel's struct iommu_iotlb_gather: the range of
 * IOVA unmapped since the last flush and the leaf size it was unmapped at.
 * end == 0 means empty. queued: the flush is deferred to a flush queue.
 */
struct iotlb_gather {
	uint64_t start;
	uint64_t end;     /* inclusive */
	uint64_t pgsize;
	bool queued;
};

static inline void iotlb_gather_init(struct iotlb_gather *g)
{
	g->start = UINT64_MAX;
	g->end = 0;
	g->pgsize = 0;
	g->queued = false;
}

/*
 * iotlb_gather_needs_sync - true when adding [iova, iova + len), unmapped at
 * leaf size pgsize, requires flushing what the gather holds first: the new
 * range is disjoint from it (adjacent ranges merge) or the leaf size changed.
 * The kernel adds one page at a time; a run of adjacent same-size pages is
 * exactly what it would have merged, so adding runs flushes the same ranges.
 */
static inline bool iotlb_gather_needs_sync(const struct iotlb_gather *g, uint64_t iova,
					   uint64_t len, uint64_t pgsize)
{
	uint64_t last = iova + len - 1;

	if (g->pgsize && g->pgsize != pgsize)
		return true;
	return g->end != 0 && (last + 1 < g->start || iova > g->end + 1);
}

static inline void iotlb_gather_add(struct iotlb_gather *g, uint64_t iova, uint64_t len,
				    uint64_t pgsize)
{
	uint64_t last = iova + len - 1;

	g->pgsize = pgsize;
	if (iova < g->start)
		g->start = iova;
	if (last > g->end)
		g->end = last;
}

#endif /* IOVAD_DOMAIN_IOTLB_H */
