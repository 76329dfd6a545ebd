// SPDX-License-Identifier: MIT
/*
 * iova.c - IOVA space allocator with the policy of the kernel's iova.c
 *
 * Free space lives in an AVL tree of maximal free ranges [start, end] keyed
 * by start; every node also records the longest free range of its subtree.
 * A top-down search walks right-first and skips subtrees whose longest range
 * is too short or that lie entirely above the limit, so the first aligned fit
 * met is the highest one.
 *
 * Freed ranges of up to 32 pages are parked in per-order magazines, exactly
 * as the kernel's rcache does (minus the per-CPU layer): they stay allocated
 * as far as the tree is concerned until a magazine is flushed.
 *
 * Tree nodes come from a spare list that is topped up on allocation, so that
 * giving space back (iova_free, magazine flushes) never needs malloc() and
 * therefore cannot fail for a well-behaved caller.
 */
#include "iova.h"

#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

struct iova_free_node {
	uint64_t start;			/* first free pfn */
	uint64_t end;			/* last free pfn, inclusive */
	uint64_t max_len;		/* longest free range in this subtree */
	struct iova_free_node *left;	/* also links the spare list */
	struct iova_free_node *right;
	int height;
};

/* Spare nodes kept beyond the strict need, to avoid malloc/free churn. */
#define SPARE_SLACK 64

/* Internal: no room in the tree (turned into -ENOMEM for the caller). */
#define NO_ROOM (-ENOSPC)

/* ---------------------------------------------------------------------- */
/* AVL tree of free ranges                                                */
/* ---------------------------------------------------------------------- */

static inline int node_height(const struct iova_free_node *n)
{
	return n ? n->height : 0;
}

static inline uint64_t node_max(const struct iova_free_node *n)
{
	return n ? n->max_len : 0;
}

static void update(struct iova_free_node *n)
{
	int hl = node_height(n->left), hr = node_height(n->right);
	uint64_t m = n->end - n->start + 1;

	n->height = 1 + (hl > hr ? hl : hr);
	if (node_max(n->left) > m)
		m = n->left->max_len;
	if (node_max(n->right) > m)
		m = n->right->max_len;
	n->max_len = m;
}

static struct iova_free_node *rotate_right(struct iova_free_node *n)
{
	struct iova_free_node *l = n->left;

	n->left = l->right;
	l->right = n;
	update(n);
	update(l);
	return l;
}

static struct iova_free_node *rotate_left(struct iova_free_node *n)
{
	struct iova_free_node *r = n->right;

	n->right = r->left;
	r->left = n;
	update(n);
	update(r);
	return r;
}

static struct iova_free_node *rebalance(struct iova_free_node *n)
{
	int bal;

	update(n);
	bal = node_height(n->left) - node_height(n->right);
	if (bal > 1) {
		if (node_height(n->left->left) < node_height(n->left->right))
			n->left = rotate_left(n->left);
		return rotate_right(n);
	}
	if (bal < -1) {
		if (node_height(n->right->right) < node_height(n->right->left))
			n->right = rotate_right(n->right);
		return rotate_left(n);
	}
	return n;
}

/*
 * The recursive helpers below are bounded by the AVL height (< 1.45 log2 n,
 * so under 100 levels for any node count that fits in memory).
 */
static struct iova_free_node *tree_insert(struct iova_free_node *n, struct iova_free_node *new)
{
	if (!n)
		return new;
	if (new->start < n->start)
		n->left = tree_insert(n->left, new);
	else
		n->right = tree_insert(n->right, new);
	return rebalance(n);
}

static struct iova_free_node *remove_min(struct iova_free_node *n, struct iova_free_node **min)
{
	if (!n->left) {
		*min = n;
		return n->right;
	}
	n->left = remove_min(n->left, min);
	return rebalance(n);
}

/*
 * Unlink the node keyed @start, which must exist. Nodes are relinked, never
 * copied, so pointers to other nodes stay valid across the call.
 */
static struct iova_free_node *tree_remove(struct iova_free_node *n, uint64_t start,
					  struct iova_free_node **out)
{
	assert(n);
	if (start < n->start) {
		n->left = tree_remove(n->left, start, out);
	} else if (start > n->start) {
		n->right = tree_remove(n->right, start, out);
	} else {
		struct iova_free_node *l = n->left, *r = n->right, *m;

		*out = n;
		if (!r)
			return l;
		r = remove_min(r, &m);
		m->left = l;
		m->right = r;
		return rebalance(m);
	}
	return rebalance(n);
}

/*
 * Give the node keyed @key new bounds and refresh the augmented lengths on
 * the path. The caller guarantees the key order is unchanged (bounds only
 * shrink inside the old range or grow over space no other node covers), so
 * the shape and the balance stay valid.
 */
static void tree_set(struct iova_free_node *n, uint64_t key, uint64_t start, uint64_t end)
{
	assert(n);
	if (key < n->start) {
		tree_set(n->left, key, start, end);
	} else if (key > n->start) {
		tree_set(n->right, key, start, end);
	} else {
		n->start = start;
		n->end = end;
	}
	update(n);
}

/* The node with the largest start <= pfn, or NULL. */
static struct iova_free_node *tree_floor(struct iova_free_node *n, uint64_t pfn)
{
	struct iova_free_node *best = NULL;

	while (n) {
		if (n->start <= pfn) {
			best = n;
			n = n->right;
		} else {
			n = n->left;
		}
	}
	return best;
}

static struct iova_free_node *tree_lookup(struct iova_free_node *n, uint64_t start)
{
	while (n && n->start != start)
		n = start < n->start ? n->left : n->right;
	return n;
}

static void tree_destroy(struct iova_free_node *n)
{
	if (!n)
		return;
	tree_destroy(n->left);
	tree_destroy(n->right);
	free(n);
}

/*
 * Highest p with p & mask == 0 and [p, p + size) inside the free range @n
 * clipped at @limit. Return: true with *pfn set.
 */
static bool range_fit(const struct iova_free_node *n, uint64_t size, uint64_t mask,
		      uint64_t limit, uint64_t *pfn)
{
	uint64_t hi = n->end < limit ? n->end : limit;
	uint64_t p;

	if (hi < n->start || hi - n->start + 1 < size)
		return false;
	p = (hi - (size - 1)) & ~mask;
	if (p < n->start)
		return false;
	*pfn = p;
	return true;
}

/*
 * Search in descending address order. A subtree is skipped when its longest
 * range is shorter than @size; the right subtree and the node itself are
 * skipped when they start above @limit (ranges are disjoint, so everything
 * right of a node ending at or past the limit is above it). The first node
 * that can host an aligned fit therefore holds the highest one.
 */
static struct iova_free_node *find_fit(struct iova_free_node *n, uint64_t size, uint64_t mask,
				       uint64_t limit, uint64_t *pfn)
{
	while (n && n->max_len >= size) {
		if (n->end < limit) {
			struct iova_free_node *r = find_fit(n->right, size, mask, limit, pfn);

			if (r)
				return r;
		}
		if (n->start <= limit && range_fit(n, size, mask, limit, pfn))
			return n;
		n = n->left;	/* tail call done by hand */
	}
	return NULL;
}

/* ---------------------------------------------------------------------- */
/* Node supply                                                            */
/* ---------------------------------------------------------------------- */

static struct iova_free_node *node_get(struct iova_allocator *a)
{
	struct iova_free_node *n = a->spare;

	if (n) {
		a->spare = n->left;
		return n;
	}
	/*
	 * Only reachable when a caller frees pieces of ranges it was not
	 * given (e.g. half of an allocation), which the busy count cannot
	 * foresee.
	 */
	n = malloc(sizeof(*n));
	if (n)
		a->nr_nodes++;
	return n;
}

static void node_put(struct iova_allocator *a, struct iova_free_node *n)
{
	n->left = a->spare;
	a->spare = n;
}

/*
 * Called before a range is taken from the tree. Free ranges and allocated
 * ranges alternate, so free_ranges <= busy + 1: owning busy + 2 nodes after
 * the allocation is enough for every later free to find a node. A spare is
 * also required now, for the split the allocation itself may cause.
 */
static int ensure_nodes(struct iova_allocator *a)
{
	struct iova_free_node *n;

	if (a->nr_nodes >= a->nr_busy + 2 && a->spare)
		return 0;
	n = malloc(sizeof(*n));
	if (!n)
		return -ENOMEM;
	a->nr_nodes++;
	node_put(a, n);
	return 0;
}

static void trim_nodes(struct iova_allocator *a)
{
	while (a->spare && a->nr_nodes > a->nr_busy + 1 + SPARE_SLACK) {
		struct iova_free_node *n = a->spare;

		a->spare = n->left;
		a->nr_nodes--;
		free(n);
	}
}

static void init_node(struct iova_free_node *n, uint64_t start, uint64_t end)
{
	n->start = start;
	n->end = end;
	n->max_len = end - start + 1;
	n->left = NULL;
	n->right = NULL;
	n->height = 1;
}

/* ---------------------------------------------------------------------- */
/* Taking and giving back tree space                                      */
/* ---------------------------------------------------------------------- */

/*
 * Remove [pfn, pfn + size) from the free range @n that contains it. The
 * caller has run ensure_nodes(), so a split always finds a spare node.
 */
static void carve(struct iova_allocator *a, struct iova_free_node *n, uint64_t pfn,
		  uint64_t size)
{
	uint64_t s = n->start, e = n->end, last = pfn + (size - 1);

	assert(pfn >= s && last <= e);
	if (pfn == s && last == e) {
		struct iova_free_node *out;

		a->root = tree_remove(a->root, s, &out);
		node_put(a, out);
		a->stats.free_ranges--;
	} else if (pfn == s) {
		tree_set(a->root, s, last + 1, e);
	} else if (last == e) {
		tree_set(a->root, s, s, pfn - 1);
	} else {
		struct iova_free_node *m = node_get(a);

		assert(m);
		tree_set(a->root, s, s, pfn - 1);
		init_node(m, last + 1, e);
		a->root = tree_insert(a->root, m);
		a->stats.free_ranges++;
	}
	a->nr_busy++;
	a->stats.pages_in_use += size;
}

/*
 * Return [pfn, pfn + size) to the tree, merging with free neighbours.
 * Return: 0, -EINVAL if it overlaps free space, -ENOMEM (misuse only, see
 * node_get()).
 */
static int tree_release(struct iova_allocator *a, uint64_t pfn, uint64_t size)
{
	uint64_t last = pfn + (size - 1);
	struct iova_free_node *lo, *left, *right;

	/*
	 * The free range starting last at or below @last is the only one
	 * that can overlap: any earlier one ends before it starts.
	 */
	lo = tree_floor(a->root, last);
	if (lo && lo->end >= pfn)
		return -EINVAL;
	left = lo && lo->end + 1 == pfn ? lo : NULL;
	right = last < a->end_pfn ? tree_lookup(a->root, last + 1) : NULL;

	if (left && right) {
		struct iova_free_node *out;
		uint64_t end = right->end;

		a->root = tree_remove(a->root, right->start, &out);
		node_put(a, out);
		tree_set(a->root, left->start, left->start, end);
		a->stats.free_ranges--;
	} else if (left) {
		tree_set(a->root, left->start, left->start, last);
	} else if (right) {
		tree_set(a->root, right->start, pfn, right->end);
	} else {
		struct iova_free_node *m = node_get(a);

		if (!m)
			return -ENOMEM;
		init_node(m, pfn, last);
		a->root = tree_insert(a->root, m);
		a->stats.free_ranges++;
	}
	if (a->nr_busy)
		a->nr_busy--;
	a->stats.pages_in_use -= size;
	trim_nodes(a);
	return 0;
}

/* Return: 0 with *pfn set, NO_ROOM, -ENOMEM. */
static int tree_alloc(struct iova_allocator *a, uint64_t size, uint64_t align, uint64_t limit,
		      uint64_t *pfn)
{
	struct iova_free_node *n;
	uint64_t p = 0;
	int ret;

	n = find_fit(a->root, size, align - 1, limit, &p);
	if (!n)
		return NO_ROOM;
	ret = ensure_nodes(a);
	if (ret)
		return ret;
	carve(a, n, p, size);
	*pfn = p;
	return 0;
}

/* ---------------------------------------------------------------------- */
/* Magazines                                                              */
/* ---------------------------------------------------------------------- */

/*
 * Empty a magazine into the tree. A failure here means the caller once freed
 * a cacheable range that was not allocated (double free): count it and drop
 * the entry, as the range is free already.
 */
static uint64_t mag_flush(struct iova_allocator *a, struct iova_magazine *m, uint64_t size)
{
	uint64_t n = 0;
	uint32_t i;

	if (!m || !m->size)
		return 0;
	for (i = 0; i < m->size; i++) {
		if (tree_release(a, m->pfns[i], size))
			a->stats.bad_frees++;
	}
	n = m->size;
	m->size = 0;
	/* rcache_flushes counts non-empty magazines, not ranges. */
	a->stats.rcache_flushes++;
	return n;
}

static struct iova_magazine *mag_alloc(void)
{
	struct iova_magazine *m = malloc(sizeof(*m));

	if (m)
		m->size = 0;
	return m;
}

/* Flush every magazine; depot magazines are freed. Return: ranges returned. */
static uint64_t flush_all(struct iova_allocator *a)
{
	uint64_t n = 0;
	unsigned int o;

	for (o = 0; o < IOVA_RCACHE_ORDERS; o++) {
		struct iova_rcache *rc = &a->rcaches[o];
		uint64_t size = UINT64_C(1) << o;

		n += mag_flush(a, rc->loaded, size);
		n += mag_flush(a, rc->prev, size);
		while (rc->depot_size) {
			struct iova_magazine *m = rc->depot[--rc->depot_size];

			n += mag_flush(a, m, size);
			free(m);
		}
	}
	return n;
}

/* Topmost entry whose range ends at or below the limit, moved out. */
static bool mag_pop(struct iova_magazine *m, uint64_t max_pfn, uint64_t *pfn)
{
	uint32_t i = m->size;

	while (i--) {
		if (m->pfns[i] <= max_pfn) {
			*pfn = m->pfns[i];
			m->pfns[i] = m->pfns[--m->size];
			return true;
		}
	}
	return false;
}

static bool rcache_get(struct iova_allocator *a, unsigned int order, uint64_t limit,
		       uint64_t *pfn)
{
	struct iova_rcache *rc = &a->rcaches[order];
	uint64_t size = UINT64_C(1) << order;
	struct iova_magazine *m = rc->loaded;

	/* Entries are size pfns long: the last page must be <= limit. */
	if (limit < size - 1)
		return false;
	if (!m || !m->size) {
		if (rc->prev && rc->prev->size) {
			rc->loaded = rc->prev;
			rc->prev = m;
		} else if (rc->depot_size) {
			free(m);
			rc->loaded = rc->depot[--rc->depot_size];
		} else {
			return false;
		}
		m = rc->loaded;
	}
	return mag_pop(m, limit - (size - 1), pfn);
}

/* Return: 0, or an error from the tree when the magazine path was bypassed. */
static int rcache_put(struct iova_allocator *a, unsigned int order, uint64_t pfn)
{
	struct iova_rcache *rc = &a->rcaches[order];
	uint64_t size = UINT64_C(1) << order;
	struct iova_magazine *m = rc->loaded;

	if (m && m->size < IOVA_MAG_SIZE) {
		m->pfns[m->size++] = pfn;
		return 0;
	}
	if (!m || !rc->prev) {
		/* Magazines are set up on the first free of each order. */
		if (!m)
			m = rc->loaded = mag_alloc();
		if (m && !rc->prev)
			rc->prev = mag_alloc();
		if (!m || !rc->prev)
			return tree_release(a, pfn, size);
	}
	if (m->size == IOVA_MAG_SIZE) {
		if (rc->prev->size < IOVA_MAG_SIZE) {
			rc->loaded = rc->prev;
			rc->prev = m;
		} else {
			struct iova_magazine *new = NULL;

			if (rc->depot_size < IOVA_DEPOT_MAX)
				new = mag_alloc();
			if (new) {
				rc->depot[rc->depot_size++] = m;
				rc->loaded = new;
			} else {
				/* Depot full (or no memory): recycle in place. */
				mag_flush(a, m, size);
			}
		}
		m = rc->loaded;
	}
	m->pfns[m->size++] = pfn;
	return 0;
}

/* ---------------------------------------------------------------------- */
/* Public API                                                             */
/* ---------------------------------------------------------------------- */

/* Order of roundup_pow_of_two(n), n >= 1 and n <= 2^63. */
static inline unsigned int order_of(uint64_t n)
{
	return n <= 1 ? 0 : 64 - (unsigned int)__builtin_clzll(n - 1);
}

int iova_allocator_init(struct iova_allocator *a, uint64_t start_pfn, uint64_t end_pfn)
{
	struct iova_free_node *n;

	memset(a, 0, sizeof(*a));
	if (!start_pfn)
		start_pfn = 1;
	if (end_pfn < start_pfn)
		return -EINVAL;
	n = malloc(sizeof(*n));
	if (!n)
		return -ENOMEM;
	init_node(n, start_pfn, end_pfn);
	a->start_pfn = start_pfn;
	a->end_pfn = end_pfn;
	a->root = n;
	a->nr_nodes = 1;
	a->stats.free_ranges = 1;
	return 0;
}

void iova_allocator_fini(struct iova_allocator *a)
{
	unsigned int o;

	if (!a)
		return;
	for (o = 0; o < IOVA_RCACHE_ORDERS; o++) {
		struct iova_rcache *rc = &a->rcaches[o];

		free(rc->loaded);
		free(rc->prev);
		while (rc->depot_size)
			free(rc->depot[--rc->depot_size]);
	}
	tree_destroy(a->root);
	while (a->spare) {
		struct iova_free_node *n = a->spare;

		a->spare = n->left;
		free(n);
	}
	memset(a, 0, sizeof(*a));
}

int iova_alloc(struct iova_allocator *a, uint64_t npages, uint64_t limit_pfn, uint64_t *ret_pfn)
{
	uint64_t size = npages, align;
	int ret;

	if (!npages || limit_pfn < a->start_pfn)
		return -EINVAL;
	if (limit_pfn > a->end_pfn)
		limit_pfn = a->end_pfn;

	if (npages <= IOVA_RCACHE_MAX_PAGES) {
		unsigned int order = order_of(npages);

		if (rcache_get(a, order, limit_pfn, ret_pfn)) {
			a->stats.rcache_hits++;
			a->stats.allocs++;
			return 0;
		}
		a->stats.rcache_misses++;
		size = UINT64_C(1) << order;
		align = size;
	} else if (npages > a->end_pfn - a->start_pfn + 1 || npages > UINT64_C(1) << 63) {
		/* Cannot fit, and roundup_pow_of_two() would overflow. */
		a->stats.alloc_failures++;
		return -ENOMEM;
	} else {
		align = UINT64_C(1) << order_of(npages);
	}

	ret = tree_alloc(a, size, align, limit_pfn, ret_pfn);
	/* Space may only be parked in magazines: give it back, retry once. */
	if (ret == NO_ROOM && flush_all(a))
		ret = tree_alloc(a, size, align, limit_pfn, ret_pfn);
	if (ret == NO_ROOM) {
		a->stats.alloc_failures++;
		return -ENOMEM;
	}
	if (ret)
		return ret;
	a->stats.allocs++;
	return 0;
}

int iova_free(struct iova_allocator *a, uint64_t pfn, uint64_t npages)
{
	uint64_t size = npages;
	unsigned int order = 0;
	int ret;

	if (!npages)
		return -EINVAL;
	if (npages <= IOVA_RCACHE_MAX_PAGES) {
		order = order_of(npages);
		size = UINT64_C(1) << order;
	}
	if (pfn < a->start_pfn || pfn > a->end_pfn || size - 1 > a->end_pfn - pfn)
		return -EINVAL;

	if (npages <= IOVA_RCACHE_MAX_PAGES)
		ret = rcache_put(a, order, pfn);
	else
		ret = tree_release(a, pfn, size);
	if (ret == -EINVAL)
		a->stats.bad_frees++;
	if (!ret)
		a->stats.frees++;
	return ret;
}

static bool tree_has(const struct iova_allocator *a, uint64_t pfn, uint64_t last)
{
	const struct iova_free_node *n = tree_floor(a->root, pfn);

	return n && n->end >= last;
}

int iova_reserve(struct iova_allocator *a, uint64_t pfn, uint64_t npages)
{
	uint64_t last;
	int ret;

	if (!npages || pfn < a->start_pfn || pfn > a->end_pfn || npages - 1 > a->end_pfn - pfn)
		return -EINVAL;
	last = pfn + (npages - 1);
	/* Free ranges are maximal, so a free [pfn, last] sits in one node. */
	if (!tree_has(a, pfn, last) && !(flush_all(a) && tree_has(a, pfn, last)))
		return -EEXIST;
	ret = ensure_nodes(a);
	if (ret)
		return ret;
	carve(a, tree_floor(a->root, pfn), pfn, npages);
	return 0;
}

void iova_flush_rcaches(struct iova_allocator *a)
{
	flush_all(a);
}

uint64_t iova_largest_free(const struct iova_allocator *a)
{
	return node_max(a->root);
}

bool iova_is_free(const struct iova_allocator *a, uint64_t pfn, uint64_t npages)
{
	if (!npages)
		return true;
	if (npages - 1 > UINT64_MAX - pfn)
		return false;
	return tree_has(a, pfn, pfn + (npages - 1));
}
