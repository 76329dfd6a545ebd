/* SPDX-License-Identifier: MIT */
/*
 * iova.h - IOVA space allocator, equivalent to the kernel's drivers/iommu/iova.c
 *
 * The allocator hands out ranges of "pfns" (IOVA >> granule shift). Its
 * observable policy is the kernel's:
 *
 *  - size-aligned: every allocation is aligned to roundup_pow_of_two(npages);
 *    requests under IOVA_RCACHE_MAX_PAGES (32) pages are also rounded *up* to
 *    that power of two, larger ones keep their size;
 *  - top-down: the highest fitting range at or below limit_pfn wins;
 *  - pfn 0 is never handed out (start_pfn >= 1), so IOVA 0 stays invalid;
 *  - freed ranges of up to 32 pages go to per-order magazines (127 entries,
 *    "loaded" + "prev" + a bounded depot) and are reused in O(1).
 *
 * Unlike the kernel's rbtree of *allocated* ranges, the backing store is a
 * balanced tree of *free* ranges augmented with the largest free range in
 * each subtree, so a top-down search skips whole subtrees that cannot fit and
 * stays O(log n) under fragmentation instead of walking every allocation.
 *
 * Not thread-safe: the owning domain serialises access. No global state.
 */
#ifndef IOVAD_DOMAIN_IOVA_H
#define IOVAD_DOMAIN_IOVA_H

#include <stdbool.h>
#include <stdint.h>

#define IOVA_RCACHE_ORDERS   6   /* orders 0..5: 1..32 pages are cached */
#define IOVA_RCACHE_MAX_PAGES (1u << (IOVA_RCACHE_ORDERS - 1)) /* 32 */
#define IOVA_MAG_SIZE        127 /* pfns per magazine, as the kernel */
#define IOVA_DEPOT_MAX       32  /* full magazines kept per order */

struct iova_free_node;           /* private: node of the free-range tree */

struct iova_magazine {
	uint32_t size;
	uint64_t pfns[IOVA_MAG_SIZE];
};

struct iova_rcache {
	struct iova_magazine *loaded;
	struct iova_magazine *prev;
	struct iova_magazine *depot[IOVA_DEPOT_MAX];
	uint32_t depot_size;
};

struct iova_stats {
	uint64_t allocs;         /* successful iova_alloc() calls */
	uint64_t frees;          /* iova_free() calls accepted */
	uint64_t alloc_failures; /* no room below the limit */
	uint64_t rcache_hits;    /* allocations served by a magazine */
	uint64_t rcache_misses;  /* cacheable sizes that fell back to the tree */
	uint64_t rcache_flushes; /* magazines emptied back into the tree */
	uint64_t bad_frees;      /* frees overlapping free space (double free) */
	uint64_t pages_in_use;   /* pages allocated, including magazine-held */
	uint64_t free_ranges;    /* nodes in the free tree (fragmentation) */
};

struct iova_allocator {
	uint64_t start_pfn;           /* lowest allocatable pfn (>= 1) */
	uint64_t end_pfn;             /* highest allocatable pfn, inclusive */
	struct iova_free_node *root;  /* tree of free ranges */
	struct iova_rcache rcaches[IOVA_RCACHE_ORDERS];
	struct iova_stats stats;
	/*
	 * private: spare tree nodes, kept so that iova_free() never has to
	 * malloc(): the allocator owns at least one node more than the number
	 * of ranges the tree sees as allocated (magazine-held included).
	 */
	struct iova_free_node *spare;
	uint64_t nr_nodes;            /* nodes owned: tree + spare list */
	uint64_t nr_busy;             /* allocated ranges, as the tree sees */
};

/*
 * iova_allocator_init - set up an empty allocator over [start_pfn, end_pfn].
 * start_pfn 0 is raised to 1. Return: 0, -EINVAL if the range is empty,
 * -ENOMEM.
 */
int iova_allocator_init(struct iova_allocator *a, uint64_t start_pfn, uint64_t end_pfn);

/* iova_allocator_fini - release every internal allocation. NULL-safe. */
void iova_allocator_fini(struct iova_allocator *a);

/*
 * iova_alloc - allocate npages, size-aligned, top-down at or below limit_pfn.
 * Sizes under 32 pages are rounded up to a power of two first (the caller
 * must free with the same npages it asked for; rounding is internal).
 * Tries the magazine of the size order first, then the tree; if the tree has
 * no room, flushes every magazine back into the tree and retries once.
 * Return: 0 with *ret_pfn set, -EINVAL (npages 0 or limit below start),
 * -ENOMEM (no room).
 */
int iova_alloc(struct iova_allocator *a, uint64_t npages, uint64_t limit_pfn, uint64_t *ret_pfn);

/*
 * iova_free - give back a range returned by iova_alloc(pfn, npages).
 * Cacheable sizes go to a magazine (O(1)); others go back to the tree,
 * merging with neighbours. Return: 0, or -EINVAL when the range lies outside
 * the allocator or overlaps free space (counted in bad_frees).
 */
int iova_free(struct iova_allocator *a, uint64_t pfn, uint64_t npages);

/*
 * iova_reserve - take exactly [pfn, pfn + npages) out of the free space, as
 * a restore after restart or a reserved region needs. The range must be
 * entirely free (magazine contents count as free: they are flushed first if
 * they overlap). Return: 0, -EINVAL (outside), -EEXIST (not all free).
 */
int iova_reserve(struct iova_allocator *a, uint64_t pfn, uint64_t npages);

/* iova_flush_rcaches - return every magazine-held range to the tree. */
void iova_flush_rcaches(struct iova_allocator *a);

/*
 * iova_largest_free - the largest free range in the tree, in pages
 * (magazine-held ranges are not counted). O(1).
 */
uint64_t iova_largest_free(const struct iova_allocator *a);

/*
 * iova_is_free - true when every page of [pfn, pfn + npages) is in the free
 * tree (magazine-held pages count as allocated). For tests and checkers.
 */
bool iova_is_free(const struct iova_allocator *a, uint64_t pfn, uint64_t npages);

#endif /* IOVAD_DOMAIN_IOVA_H */
