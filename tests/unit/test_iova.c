// SPDX-License-Identifier: MIT
/*
 * test_iova.c - unit tests for the IOVA space allocator
 */
#include <criterion/criterion.h>

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "iova.h"

#define BIT(n) (UINT64_C(1) << (n))

static uint64_t pow2_up(uint64_t n)
{
	uint64_t p = 1;

	while (p < n)
		p <<= 1;
	return p;
}

/* Pages a request really occupies: rounded under 32 pages, exact above. */
static uint64_t occupied(uint64_t npages)
{
	return npages <= IOVA_RCACHE_MAX_PAGES ? pow2_up(npages) : npages;
}

static uint64_t must_alloc(struct iova_allocator *a, uint64_t npages, uint64_t limit)
{
	uint64_t pfn = 0;

	cr_assert_eq(iova_alloc(a, npages, limit, &pfn), 0, "alloc %lu pages below %#lx failed",
		     (unsigned long)npages, (unsigned long)limit);
	return pfn;
}

Test(iova, init_rejects_empty_and_raises_pfn0)
{
	struct iova_allocator a;

	cr_assert_eq(iova_allocator_init(&a, 10, 9), -EINVAL);
	cr_assert_eq(iova_allocator_init(&a, 0, 0), -EINVAL);
	cr_assert_eq(iova_allocator_init(&a, 0, 100), 0);
	cr_assert_eq(a.start_pfn, 1);
	cr_assert_eq(a.end_pfn, 100);
	cr_assert_eq(a.stats.free_ranges, 1);
	cr_assert_eq(iova_largest_free(&a), 100);
	cr_assert(iova_is_free(&a, 1, 100));
	cr_assert_not(iova_is_free(&a, 0, 1));
	iova_allocator_fini(&a);
	iova_allocator_fini(NULL);
}

Test(iova, invalid_arguments)
{
	struct iova_allocator a;
	uint64_t pfn;

	cr_assert_eq(iova_allocator_init(&a, 16, 1023), 0);
	cr_assert_eq(iova_alloc(&a, 0, 1023, &pfn), -EINVAL);
	cr_assert_eq(iova_alloc(&a, 1, 15, &pfn), -EINVAL);
	cr_assert_eq(iova_free(&a, 100, 0), -EINVAL);
	cr_assert_eq(iova_free(&a, 8, 1), -EINVAL);
	cr_assert_eq(iova_free(&a, 1024, 1), -EINVAL);
	cr_assert_eq(iova_free(&a, 1000, 64), -EINVAL);
	/* 3 pages round to 4: 1021 + 4 would pass the end. */
	cr_assert_eq(iova_free(&a, 1021, 3), -EINVAL);
	cr_assert_eq(a.stats.frees, 0);
	cr_assert_eq(a.stats.allocs, 0);
	/* A limit above the end is clamped, not rejected. */
	pfn = must_alloc(&a, 64, UINT64_MAX);
	cr_assert_eq(pfn, 960);
	iova_allocator_fini(&a);
}

Test(iova, size_aligned_rounding)
{
	struct iova_allocator a;
	uint64_t pfn;

	cr_assert_eq(iova_allocator_init(&a, 1, 1023), 0);
	pfn = must_alloc(&a, 3, 1023);
	cr_assert_eq(pfn % 4, 0);
	cr_assert_eq(pfn, 1020);
	cr_assert_eq(a.stats.pages_in_use, 4);
	cr_assert_not(iova_is_free(&a, 1023, 1), "the 4th rounded page must be taken");
	cr_assert(iova_is_free(&a, 1, 1019));
	pfn = must_alloc(&a, 5, 1023);
	cr_assert_eq(pfn, 1008, "5 pages round to 8, 8-aligned below 1020");
	cr_assert_eq(a.stats.pages_in_use, 12);
	cr_assert(iova_is_free(&a, 1016, 4));
	iova_allocator_fini(&a);
}

Test(iova, large_size_aligned_but_not_rounded)
{
	struct iova_allocator a;
	uint64_t pfn, p;

	cr_assert_eq(iova_allocator_init(&a, 1, 1023), 0);
	pfn = must_alloc(&a, 33, 1023);
	cr_assert_eq(pfn % 64, 0);
	cr_assert_eq(pfn, 960);
	cr_assert_eq(a.stats.pages_in_use, 33);
	cr_assert_not(iova_is_free(&a, 960, 1));
	cr_assert_not(iova_is_free(&a, 992, 1));
	cr_assert(iova_is_free(&a, 993, 31), "only 33 of the 64 aligned pages are used");
	/* The 31 spare pages of the aligned block serve other requests. */
	cr_assert_eq(must_alloc(&a, 16, 1023), 1008);
	cr_assert_eq(must_alloc(&a, 8, 1023), 1000);
	cr_assert_eq(must_alloc(&a, 4, 1023), 996);
	cr_assert_eq(must_alloc(&a, 2, 1023), 994);
	cr_assert_eq(must_alloc(&a, 1, 1023), 993);
	cr_assert_eq(a.stats.pages_in_use, 64);
	p = must_alloc(&a, 1, 1023);
	cr_assert_eq(p, 959, "block full: next page goes just below it");
	/* 100 pages: aligned to 128 but occupy 100. */
	pfn = must_alloc(&a, 100, 1023);
	cr_assert_eq(pfn, 768);
	cr_assert(iova_is_free(&a, 868, 959 - 868));
	iova_allocator_fini(&a);
}

Test(iova, top_down_first_fit)
{
	struct iova_allocator a;

	cr_assert_eq(iova_allocator_init(&a, 1, BIT(20) - 1), 0);
	cr_assert_eq(must_alloc(&a, 1, BIT(20) - 1), BIT(20) - 1);
	cr_assert_eq(must_alloc(&a, 8, 1000), 992);
	cr_assert_eq(must_alloc(&a, 8, 1000), 984);
	cr_assert_eq(must_alloc(&a, 64, BIT(20) - 1), BIT(20) - 128,
		     "the block just under the top is partly taken");
	cr_assert_eq(must_alloc(&a, 2, BIT(20) - 1), BIT(20) - 4);
	iova_allocator_fini(&a);
}

Test(iova, limit_32bit_in_48bit_space)
{
	struct iova_allocator a;
	const uint64_t limit = BIT(20) - 1; /* 4 GiB of 4 KiB pages */
	uint64_t pfn;
	int i;

	cr_assert_eq(iova_allocator_init(&a, 1, BIT(36) - 1), 0);
	for (i = 0; i < 100; i++) {
		uint64_t n = 1 + (uint64_t)i * 7;

		pfn = must_alloc(&a, n, limit);
		cr_assert_leq(pfn + occupied(n) - 1, limit);
		cr_assert_eq(pfn % pow2_up(n), 0);
	}
	cr_assert(iova_is_free(&a, BIT(20), BIT(36) - BIT(20)), "nothing above the limit");
	pfn = must_alloc(&a, 1, BIT(36) - 1);
	cr_assert_eq(pfn, BIT(36) - 1);
	iova_allocator_fini(&a);
}

Test(iova, pfn_zero_never_returned)
{
	struct iova_allocator a;
	uint64_t pfn;
	int i;

	cr_assert_eq(iova_allocator_init(&a, 0, 15), 0);
	cr_assert_eq(iova_alloc(&a, 16, 15, &pfn), -ENOMEM, "16 pages need pfn 0");
	cr_assert_eq(must_alloc(&a, 8, 15), 8);
	cr_assert_eq(iova_alloc(&a, 8, 15, &pfn), -ENOMEM);
	for (i = 0; i < 7; i++)
		cr_assert_neq(must_alloc(&a, 1, 15), 0);
	cr_assert_eq(iova_alloc(&a, 1, 15, &pfn), -ENOMEM);
	cr_assert_eq(a.stats.alloc_failures, 3);
	cr_assert_eq(a.stats.pages_in_use, 15);
	iova_allocator_fini(&a);
}

Test(iova, magazine_reuse)
{
	struct iova_allocator a;
	uint64_t p1, p2, p3;

	cr_assert_eq(iova_allocator_init(&a, 1, 4095), 0);
	p1 = must_alloc(&a, 4, 4095);
	cr_assert_eq(a.stats.rcache_misses, 1);
	must_alloc(&a, 4, 4095);
	cr_assert_eq(iova_free(&a, p1, 3), 0, "3 pages is the same order as 4");
	cr_assert_eq(a.stats.pages_in_use, 8, "magazine-held pages stay in use");
	cr_assert_not(iova_is_free(&a, p1, 4));
	p2 = must_alloc(&a, 4, 4095);
	cr_assert_eq(p2, p1);
	cr_assert_eq(a.stats.rcache_hits, 1);
	/* LIFO: the last freed range comes back first. */
	cr_assert_eq(iova_free(&a, p2, 4), 0);
	p3 = must_alloc(&a, 1, 4095);
	cr_assert_neq(p3, p2, "other orders have their own magazines");
	cr_assert_eq(must_alloc(&a, 4, 4095), p2);
	cr_assert_eq(a.stats.rcache_hits, 2);
	cr_assert_eq(a.stats.frees, 2);
	iova_allocator_fini(&a);
}

Test(iova, magazine_respects_limit)
{
	struct iova_allocator a;
	uint64_t hi, lo, p;

	cr_assert_eq(iova_allocator_init(&a, 1, 65535), 0);
	hi = must_alloc(&a, 8, 65535);
	cr_assert_eq(hi, 65528);
	cr_assert_eq(iova_free(&a, hi, 8), 0);
	/* Start below the limit but end above it: must not be reused. */
	p = must_alloc(&a, 8, hi + 3);
	cr_assert_neq(p, hi);
	cr_assert_leq(p + 7, hi + 3);
	cr_assert_eq(a.stats.rcache_hits, 0);
	cr_assert_eq(a.stats.rcache_misses, 2);
	lo = must_alloc(&a, 8, 4095);
	cr_assert_leq(lo + 7, 4095);
	cr_assert_eq(iova_free(&a, lo, 8), 0);
	/* Magazine now [hi, lo] with lo on top; a low limit finds lo. */
	cr_assert_eq(must_alloc(&a, 8, 4095), lo);
	cr_assert_eq(iova_free(&a, lo, 8), 0);
	/* Push hi above lo on the top; a low limit still has to take lo. */
	cr_assert_eq(must_alloc(&a, 8, 65535), lo);
	cr_assert_eq(must_alloc(&a, 8, 65535), hi);
	cr_assert_eq(iova_free(&a, lo, 8), 0);
	cr_assert_eq(iova_free(&a, hi, 8), 0);
	cr_assert_eq(must_alloc(&a, 8, 4095), lo, "top entry hi skipped, lo found below");
	cr_assert_eq(must_alloc(&a, 8, 65535), hi);
	cr_assert_eq(a.stats.rcache_hits, 5);
	iova_allocator_fini(&a);
}

/* Allocate n single pages, remembering them. */
static uint64_t *alloc_pages(struct iova_allocator *a, size_t n)
{
	uint64_t *p = calloc(n, sizeof(*p));
	size_t i;

	cr_assert_not_null(p);
	for (i = 0; i < n; i++)
		p[i] = must_alloc(a, 1, a->end_pfn);
	return p;
}

Test(iova, magazine_prev_and_depot)
{
	struct iova_allocator a;
	struct iova_rcache *rc = &a.rcaches[0];
	const size_t n = IOVA_MAG_SIZE * 3 + 5;
	uint64_t *p;
	size_t i;

	cr_assert_eq(iova_allocator_init(&a, 1, 8191), 0);
	p = alloc_pages(&a, n);
	for (i = 0; i < IOVA_MAG_SIZE; i++)
		cr_assert_eq(iova_free(&a, p[i], 1), 0);
	cr_assert_eq(rc->loaded->size, IOVA_MAG_SIZE);
	cr_assert_eq(rc->depot_size, 0);
	cr_assert_eq(iova_free(&a, p[i++], 1), 0);
	cr_assert_eq(rc->loaded->size, 1, "full loaded swapped with empty prev");
	cr_assert_eq(rc->prev->size, IOVA_MAG_SIZE);
	for (; i < 2 * IOVA_MAG_SIZE; i++)
		cr_assert_eq(iova_free(&a, p[i], 1), 0);
	cr_assert_eq(rc->depot_size, 0);
	cr_assert_eq(iova_free(&a, p[i++], 1), 0);
	cr_assert_eq(rc->depot_size, 1, "both full: loaded goes to the depot");
	cr_assert_eq(rc->loaded->size, 1);
	for (; i < n; i++)
		cr_assert_eq(iova_free(&a, p[i], 1), 0);
	cr_assert_eq(rc->depot_size, 2);
	cr_assert_eq(a.stats.pages_in_use, n);
	cr_assert_eq(a.stats.rcache_flushes, 0);

	/* Drain: loaded, then prev, then the depot, all hits, no tree use. */
	for (i = 0; i < n; i++)
		must_alloc(&a, 1, 8191);
	cr_assert_eq(a.stats.rcache_hits, n);
	cr_assert_eq(rc->depot_size, 0);
	cr_assert_eq(a.stats.pages_in_use, n);
	cr_assert_eq(a.stats.allocs, 2 * n);
	free(p);
	iova_allocator_fini(&a);
}

Test(iova, depot_overflow_returns_to_tree)
{
	struct iova_allocator a;
	struct iova_rcache *rc = &a.rcaches[0];
	const size_t cap = (size_t)IOVA_MAG_SIZE * (2 + IOVA_DEPOT_MAX);
	const size_t n = cap + 3;
	uint64_t *p, free0;
	size_t i;

	cr_assert_eq(iova_allocator_init(&a, 1, 8191), 0);
	p = alloc_pages(&a, n);
	free0 = a.stats.free_ranges;
	for (i = 0; i < cap; i++)
		cr_assert_eq(iova_free(&a, p[i], 1), 0);
	cr_assert_eq(rc->depot_size, IOVA_DEPOT_MAX);
	cr_assert_eq(rc->loaded->size, IOVA_MAG_SIZE);
	cr_assert_eq(rc->prev->size, IOVA_MAG_SIZE);
	cr_assert_eq(a.stats.pages_in_use, n);
	cr_assert_eq(a.stats.free_ranges, free0);

	/* Everything full: the loaded magazine is emptied into the tree. */
	cr_assert_eq(iova_free(&a, p[i++], 1), 0);
	cr_assert_eq(a.stats.rcache_flushes, 1);
	cr_assert_eq(rc->depot_size, IOVA_DEPOT_MAX);
	cr_assert_eq(rc->loaded->size, 1);
	cr_assert_eq(a.stats.pages_in_use, n - IOVA_MAG_SIZE);
	/* Loaded was filled last with p[cap - 127 .. cap - 1]. */
	cr_assert(iova_is_free(&a, p[cap - 1], 1));
	cr_assert(iova_is_free(&a, p[cap - IOVA_MAG_SIZE], 1));
	cr_assert_not(iova_is_free(&a, p[cap - IOVA_MAG_SIZE - 1], 1));
	cr_assert_not(iova_is_free(&a, p[cap], 1), "the new free is magazine-held");
	for (; i < n; i++)
		cr_assert_eq(iova_free(&a, p[i], 1), 0);
	iova_flush_rcaches(&a);
	cr_assert_eq(rc->depot_size, 0);
	cr_assert_eq(a.stats.pages_in_use, 0);
	cr_assert_eq(a.stats.free_ranges, 1);
	cr_assert_eq(iova_largest_free(&a), 8191);
	free(p);
	iova_allocator_fini(&a);
}

Test(iova, exhaustion_and_flush_rescue)
{
	struct iova_allocator a;
	uint64_t pfn, *p;
	size_t i;

	cr_assert_eq(iova_allocator_init(&a, 1, 127), 0);
	p = alloc_pages(&a, 127);
	cr_assert_eq(iova_alloc(&a, 1, 127, &pfn), -ENOMEM);
	cr_assert_eq(a.stats.alloc_failures, 1);
	cr_assert_eq(iova_largest_free(&a), 0);
	for (i = 0; i < 127; i++)
		cr_assert_eq(iova_free(&a, p[i], 1), 0);
	cr_assert_eq(iova_largest_free(&a), 0, "all space sits in magazines");
	cr_assert_eq(a.stats.pages_in_use, 127);

	/* 64 pages is not cacheable: tree fails, flush, retry succeeds. */
	pfn = must_alloc(&a, 64, 127);
	cr_assert_eq(pfn, 64);
	cr_assert_eq(a.stats.rcache_flushes, 1);
	cr_assert_eq(a.stats.alloc_failures, 1);
	cr_assert_eq(a.stats.pages_in_use, 64);
	cr_assert_eq(a.stats.free_ranges, 1);

	/* Same rescue for a cacheable order whose own magazine is empty. */
	for (i = 0; i < 63; i++)
		p[i] = must_alloc(&a, 1, 127);
	cr_assert_eq(iova_alloc(&a, 2, 127, &pfn), -ENOMEM);
	for (i = 0; i < 63; i++)
		cr_assert_eq(iova_free(&a, p[i], 1), 0);
	pfn = must_alloc(&a, 2, 127);
	cr_assert_eq(pfn, 62);
	cr_assert_eq(a.stats.rcache_flushes, 2);
	cr_assert_eq(a.stats.alloc_failures, 2);

	/* No 100-page hole anywhere, magazines empty: -ENOMEM. */
	cr_assert_eq(iova_free(&a, 64, 64), 0);
	cr_assert_eq(iova_alloc(&a, 100, 127, &pfn), -ENOMEM);
	cr_assert_eq(a.stats.alloc_failures, 3);
	free(p);
	iova_allocator_fini(&a);
}

Test(iova, double_free_rejected)
{
	struct iova_allocator a;
	uint64_t p, q;

	cr_assert_eq(iova_allocator_init(&a, 1, 4095), 0);
	p = must_alloc(&a, 64, 4095);
	q = must_alloc(&a, 100, 4095);
	cr_assert_eq(iova_free(&a, p, 64), 0);
	cr_assert_eq(iova_free(&a, p, 64), -EINVAL);
	cr_assert_eq(a.stats.bad_frees, 1);
	cr_assert_eq(a.stats.frees, 1);
	cr_assert_eq(a.stats.pages_in_use, 100);
	/* Partial overlap with free space is rejected as well. */
	cr_assert_eq(iova_free(&a, q + 50, 80), -EINVAL);
	cr_assert_eq(a.stats.bad_frees, 2);
	cr_assert_eq(iova_free(&a, q, 100), 0);
	cr_assert_eq(iova_free(&a, q, 100), -EINVAL);
	cr_assert_eq(a.stats.bad_frees, 3);
	cr_assert_eq(a.stats.pages_in_use, 0);
	cr_assert_eq(a.stats.free_ranges, 1);
	cr_assert_eq(iova_largest_free(&a), 4095);
	iova_allocator_fini(&a);
}

Test(iova, reserve)
{
	struct iova_allocator a;

	cr_assert_eq(iova_allocator_init(&a, 1, 4095), 0);
	cr_assert_eq(iova_reserve(&a, 100, 100), 0);
	cr_assert_not(iova_is_free(&a, 100, 1));
	cr_assert_not(iova_is_free(&a, 199, 1));
	cr_assert(iova_is_free(&a, 1, 99));
	cr_assert(iova_is_free(&a, 200, 3896));
	cr_assert_eq(a.stats.pages_in_use, 100);
	cr_assert_eq(a.stats.free_ranges, 2);
	cr_assert_eq(iova_reserve(&a, 100, 100), -EEXIST);
	cr_assert_eq(iova_reserve(&a, 150, 10), -EEXIST);
	cr_assert_eq(iova_reserve(&a, 50, 51), -EEXIST, "last page overlaps");
	cr_assert_eq(iova_reserve(&a, 50, 50), 0, "adjacent below is fine");
	cr_assert_eq(iova_reserve(&a, 0, 1), -EINVAL);
	cr_assert_eq(iova_reserve(&a, 4095, 2), -EINVAL);
	cr_assert_eq(iova_reserve(&a, 4096, 1), -EINVAL);
	cr_assert_eq(iova_reserve(&a, 10, 0), -EINVAL);
	cr_assert_eq(iova_reserve(&a, 4095, 1), 0, "last page");
	/* The allocator steers around reserved space. */
	cr_assert_eq(must_alloc(&a, 1, 4095), 4094);
	cr_assert_eq(must_alloc(&a, 16, 199), 32, "below the reservation at 50");
	cr_assert_eq(a.stats.pages_in_use, 100 + 50 + 1 + 1 + 16);
	iova_allocator_fini(&a);
}

Test(iova, reserve_over_magazine_space)
{
	struct iova_allocator a;
	uint64_t p, q;

	cr_assert_eq(iova_allocator_init(&a, 1, 4095), 0);
	p = must_alloc(&a, 16, 4095);
	q = must_alloc(&a, 1, 4095);
	cr_assert_eq(iova_free(&a, p, 16), 0);
	cr_assert_eq(iova_reserve(&a, p + 4, 8), 0, "held by a magazine: flushed, then taken");
	cr_assert_eq(a.stats.rcache_flushes, 1);
	cr_assert(iova_is_free(&a, p, 4));
	cr_assert(iova_is_free(&a, p + 12, 4));
	cr_assert_not(iova_is_free(&a, p + 4, 8));
	/* Live allocations are not magazine space: still -EEXIST. */
	cr_assert_eq(iova_reserve(&a, q, 1), -EEXIST);
	cr_assert_eq(a.stats.pages_in_use, 9);
	iova_allocator_fini(&a);
}

Test(iova, huge_space)
{
	struct iova_allocator a;
	const uint64_t end = BIT(52) - 1;
	uint64_t p, q, r;

	cr_assert_eq(iova_allocator_init(&a, 1, end), 0);
	cr_assert_eq(iova_largest_free(&a), end);
	p = must_alloc(&a, BIT(40), end);
	cr_assert_eq(p % BIT(40), 0);
	cr_assert_eq(p, BIT(52) - BIT(40));
	q = must_alloc(&a, BIT(40) + 1, end);
	cr_assert_eq(q % BIT(41), 0);
	cr_assert_eq(q, BIT(52) - BIT(42));
	cr_assert(iova_is_free(&a, q + BIT(40) + 1, p - (q + BIT(40) + 1)));
	r = must_alloc(&a, 1, end);
	cr_assert_eq(r, p - 1);
	cr_assert_eq(a.stats.pages_in_use, BIT(41) + 2);
	cr_assert_eq(iova_largest_free(&a), q - 1);
	/* A 32-bit limit in a 52-bit space. */
	cr_assert_eq(must_alloc(&a, BIT(19), BIT(20) - 1), BIT(19));
	cr_assert_eq(iova_alloc(&a, BIT(52), end, &r), -ENOMEM);
	cr_assert_eq(iova_alloc(&a, UINT64_MAX, end, &r), -ENOMEM);
	cr_assert_eq(iova_free(&a, q, BIT(40) + 1), 0);
	cr_assert_eq(iova_free(&a, p, BIT(40)), 0);
	cr_assert_eq(iova_free(&a, BIT(19), BIT(19)), 0);
	cr_assert_eq(iova_free(&a, p - 1, 1), 0);
	iova_flush_rcaches(&a);
	cr_assert_eq(a.stats.free_ranges, 1);
	cr_assert_eq(iova_largest_free(&a), end);
	iova_allocator_fini(&a);
}

#define FRAG_BLOCKS 4096

Test(iova, fragmentation)
{
	struct iova_allocator a;
	const uint64_t base = 64, end = 64 * (FRAG_BLOCKS + 1) - 1;
	uint64_t *blk, pfn;
	size_t i;

	/* Exactly FRAG_BLOCKS 64-page blocks: [64 * k, 64 * k + 63], k >= 1. */
	cr_assert_eq(iova_allocator_init(&a, base, end), 0);
	blk = calloc(FRAG_BLOCKS, sizeof(*blk));
	cr_assert_not_null(blk);
	for (i = 0; i < FRAG_BLOCKS; i++) {
		blk[i] = must_alloc(&a, 64, end);
		cr_assert_eq(blk[i], end + 1 - 64 * (i + 1));
	}
	cr_assert_eq(a.stats.free_ranges, 0);
	cr_assert_eq(iova_largest_free(&a), 0);
	for (i = 1; i < FRAG_BLOCKS; i += 2)
		cr_assert_eq(iova_free(&a, blk[i], 64), 0);
	cr_assert_eq(a.stats.free_ranges, FRAG_BLOCKS / 2);
	cr_assert_eq(iova_largest_free(&a), 64);

	/* Fits a hole: the highest hole wins, partially filled ones first. */
	cr_assert_eq(must_alloc(&a, 40, end), blk[1]);
	cr_assert_eq(must_alloc(&a, 64, end), blk[3]);
	cr_assert_eq(must_alloc(&a, 16, end), blk[1] + 48, "rest of the first hole");
	/* 20 rounds to 32, 32-aligned: no longer fits the first hole. */
	cr_assert_eq(must_alloc(&a, 20, end), blk[5] + 32);
	/* With a limit inside the fragmented zone: highest hole below it. */
	cr_assert_eq(must_alloc(&a, 64, blk[1000] + 10), blk[1001]);
	cr_assert_eq(a.stats.free_ranges, FRAG_BLOCKS / 2 - 2);

	/* Larger than every hole: fails, nothing parked in magazines to help. */
	cr_assert_eq(iova_alloc(&a, 65, end, &pfn), -ENOMEM);
	cr_assert_eq(a.stats.alloc_failures, 1);

	/* With free space under the zone, it lands there: [1, 639] here. */
	iova_allocator_fini(&a);
	cr_assert_eq(iova_allocator_init(&a, 1, end), 0);
	for (i = 0; i < FRAG_BLOCKS - 9; i++)
		cr_assert_eq(must_alloc(&a, 64, end), blk[i]);
	cr_assert_eq(blk[i - 1], 640);
	for (i = 1; i < FRAG_BLOCKS - 9; i += 2)
		cr_assert_eq(iova_free(&a, blk[i], 64), 0);
	cr_assert_eq(must_alloc(&a, 100, end), 512);
	cr_assert_eq(must_alloc(&a, 65, end), 384);
	cr_assert_eq(must_alloc(&a, 100, blk[10]), 256);
	cr_assert_eq(must_alloc(&a, 100, end), 128);
	cr_assert_eq(iova_alloc(&a, 100, end, &pfn), -ENOMEM);
	cr_assert_eq(must_alloc(&a, 64, end), blk[1], "holes still usable");
	free(blk);
	iova_allocator_fini(&a);
}

Test(iova, accounting_returns_to_initial_state)
{
	static const uint64_t sizes[] = { 1, 2, 3, 7, 16, 31, 32, 33, 64, 100, 513 };
	const size_t ns = sizeof(sizes) / sizeof(sizes[0]);
	struct iova_allocator a;
	uint64_t pfn[600];
	size_t i;

	cr_assert_eq(iova_allocator_init(&a, 1, BIT(24) - 1), 0);
	for (i = 0; i < 600; i++)
		pfn[i] = must_alloc(&a, sizes[i % ns], BIT(24) - 1 - i * 977);
	cr_assert_gt(a.stats.free_ranges, 1);
	for (i = 0; i < 600; i += 2)
		cr_assert_eq(iova_free(&a, pfn[i], sizes[i % ns]), 0);
	for (i = 1; i < 600; i += 2)
		cr_assert_eq(iova_free(&a, pfn[i], sizes[i % ns]), 0);
	cr_assert_gt(a.stats.pages_in_use, 0, "small sizes still sit in magazines");
	iova_flush_rcaches(&a);
	cr_assert_eq(a.stats.pages_in_use, 0);
	cr_assert_eq(a.stats.free_ranges, 1);
	cr_assert_eq(iova_largest_free(&a), BIT(24) - 1);
	cr_assert_eq(a.stats.allocs, 600);
	cr_assert_eq(a.stats.frees, 600);
	cr_assert_eq(a.stats.bad_frees, 0);
	iova_allocator_fini(&a);
	cr_assert_null(a.root);
}

/* ASan / valgrind check that nothing leaks with every structure populated. */
Test(iova, fini_releases_everything)
{
	struct iova_allocator a;
	uint64_t *p;
	size_t i, n = (size_t)IOVA_MAG_SIZE * 5;
	unsigned int o;

	cr_assert_eq(iova_allocator_init(&a, 1, BIT(20) - 1), 0);
	p = alloc_pages(&a, n);
	for (i = 0; i < n; i++)
		cr_assert_eq(iova_free(&a, p[i], 1), 0);
	for (o = 1; o < IOVA_RCACHE_ORDERS; o++) {
		uint64_t q = must_alloc(&a, BIT(o), BIT(20) - 1);

		cr_assert_eq(iova_free(&a, q, BIT(o)), 0);
	}
	free(p);
	p = calloc(1000, sizeof(*p));
	cr_assert_not_null(p);
	for (i = 0; i < 1000; i++)
		p[i] = must_alloc(&a, 64, BIT(20) - 1);
	for (i = 0; i < 1000; i += 2)
		cr_assert_eq(iova_free(&a, p[i], 64), 0);
	cr_assert_geq(a.rcaches[0].depot_size, 1);
	cr_assert_gt(a.stats.free_ranges, 400);
	cr_assert_not_null(a.spare);
	free(p);
	iova_allocator_fini(&a);
	cr_assert_null(a.root);
	cr_assert_null(a.rcaches[0].loaded);
	iova_allocator_fini(&a);
}

/* ---------------------------------------------------------------------- */
/* Randomized comparison with a page-state model                          */
/* ---------------------------------------------------------------------- */

#define R_END 8191
#define R_OPS 200000

enum page_state { PG_FREE, PG_LIVE, PG_HELD };

struct r_alloc {
	uint64_t pfn;
	uint64_t npages;
};

struct model {
	struct iova_allocator a;
	uint8_t st[R_END + 1];	/* page state; magazine-held is PG_HELD */
	struct r_alloc live[R_END + 1];
	size_t nr_live;
	uint64_t rng;
};

static uint64_t rnd(struct model *m)
{
	/* xorshift64*: fixed seed, reproducible. */
	m->rng ^= m->rng >> 12;
	m->rng ^= m->rng << 25;
	m->rng ^= m->rng >> 27;
	return m->rng * UINT64_C(2685821657736338717);
}

static void set_state(struct model *m, uint64_t pfn, uint64_t n, enum page_state s)
{
	memset(&m->st[pfn], s, n);
}

static bool all_state(const struct model *m, uint64_t pfn, uint64_t n, bool held_ok)
{
	uint64_t i;

	for (i = pfn; i < pfn + n; i++)
		if (m->st[i] != PG_FREE && !(held_ok && m->st[i] == PG_HELD))
			return false;
	return true;
}

/* Magazines were flushed: all held space is back in the tree. */
static void model_flushed(struct model *m)
{
	uint64_t i;

	for (i = 1; i <= R_END; i++)
		if (m->st[i] == PG_HELD)
			m->st[i] = PG_FREE;
}

/* A magazine went back to the tree without the model knowing which. */
static void model_resync(struct model *m)
{
	uint64_t i;

	for (i = 1; i <= R_END; i++) {
		bool f = iova_is_free(&m->a, i, 1);

		cr_assert(!(f && m->st[i] == PG_LIVE), "live page %lu is free", (unsigned long)i);
		if (f && m->st[i] == PG_HELD)
			m->st[i] = PG_FREE;
	}
}

/* Highest aligned p, p + size - 1 <= limit, over free (+ held) pages. */
static int64_t ref_fit(const struct model *m, uint64_t size, uint64_t align, uint64_t limit,
		       bool held_ok)
{
	uint64_t run = 0, q;

	for (q = limit; q >= 1; q--) {
		if (m->st[q] == PG_FREE || (held_ok && m->st[q] == PG_HELD))
			run++;
		else
			run = 0;
		if (run >= size && q % align == 0)
			return (int64_t)q;
	}
	return -1;
}

static void model_check(struct model *m)
{
	uint64_t used = 0, runs = 0, longest = 0, cur = 0, i;

	for (i = 1; i <= R_END; i++) {
		bool f = iova_is_free(&m->a, i, 1);

		cr_assert_eq(f, m->st[i] == PG_FREE, "page %lu state %d", (unsigned long)i,
			     m->st[i]);
		if (!f) {
			used++;
			cur = 0;
			continue;
		}
		if (!cur++)
			runs++;
		if (cur > longest)
			longest = cur;
	}
	cr_assert_eq(m->a.stats.pages_in_use, used);
	cr_assert_eq(m->a.stats.free_ranges, runs);
	cr_assert_eq(iova_largest_free(&m->a), longest);
}

static void r_alloc(struct model *m)
{
	uint64_t npages = 1 + rnd(m) % 100;
	uint64_t limit = rnd(m) % 2 ? R_END : 1 + rnd(m) % R_END;
	uint64_t size = occupied(npages), align = pow2_up(npages), pfn = 0;
	int64_t in_tree = ref_fit(m, size, align, limit, false);
	int64_t with_held = ref_fit(m, size, align, limit, true);
	uint64_t hits = m->a.stats.rcache_hits, flushes = m->a.stats.rcache_flushes;
	int ret = iova_alloc(&m->a, npages, limit, &pfn);

	if (ret) {
		cr_assert_eq(ret, -ENOMEM);
		cr_assert_eq(with_held, -1, "failed although %ld fits", (long)with_held);
		if (m->a.stats.rcache_flushes != flushes)
			model_flushed(m);
		return;
	}
	cr_assert_geq(pfn, 1);
	cr_assert_eq(pfn % align, 0);
	cr_assert_leq(pfn + size - 1, limit);
	if (m->a.stats.rcache_hits != hits) {
		cr_assert_leq(npages, IOVA_RCACHE_MAX_PAGES);
		cr_assert_eq(m->a.stats.rcache_flushes, flushes);
		cr_assert(memchr(&m->st[pfn], PG_FREE, size) == NULL &&
			  memchr(&m->st[pfn], PG_LIVE, size) == NULL,
			  "magazine returned a range it did not hold");
	} else if (in_tree >= 0) {
		cr_assert_eq(pfn, (uint64_t)in_tree, "not the highest fit");
		cr_assert_eq(m->a.stats.rcache_flushes, flushes);
	} else {
		/* Only reachable through the flush-and-retry path. */
		cr_assert_eq(pfn, (uint64_t)with_held, "not the highest fit after flush");
		cr_assert_gt(m->a.stats.rcache_flushes, flushes);
		model_flushed(m);
	}
	cr_assert(all_state(m, pfn, size, true));
	set_state(m, pfn, size, PG_LIVE);
	m->live[m->nr_live++] = (struct r_alloc){ pfn, npages };
}

static void r_free(struct model *m)
{
	size_t i;
	struct r_alloc r;
	uint64_t flushes = m->a.stats.rcache_flushes, bad = m->a.stats.bad_frees;

	if (!m->nr_live)
		return;
	i = rnd(m) % m->nr_live;
	r = m->live[i];
	m->live[i] = m->live[--m->nr_live];
	cr_assert_eq(iova_free(&m->a, r.pfn, r.npages), 0);
	if (r.npages > IOVA_RCACHE_MAX_PAGES) {
		set_state(m, r.pfn, r.npages, PG_FREE);
		if (rnd(m) % 8 == 0) {
			cr_assert_eq(iova_free(&m->a, r.pfn, r.npages), -EINVAL);
			cr_assert_eq(m->a.stats.bad_frees, bad + 1);
		}
		return;
	}
	set_state(m, r.pfn, occupied(r.npages), PG_HELD);
	if (m->a.stats.rcache_flushes != flushes)
		model_resync(m);
}

static void r_reserve(struct model *m)
{
	uint64_t npages = 33 + rnd(m) % 100, pfn = rnd(m) % (R_END + 8);
	uint64_t flushes = m->a.stats.rcache_flushes;
	int ret = iova_reserve(&m->a, pfn, npages), want;

	if (pfn < 1 || pfn + npages - 1 > R_END)
		want = -EINVAL;
	else if (all_state(m, pfn, npages, true))
		want = 0;
	else
		want = -EEXIST;
	cr_assert_eq(ret, want, "reserve %lu+%lu", (unsigned long)pfn, (unsigned long)npages);
	if (m->a.stats.rcache_flushes != flushes)
		model_flushed(m);
	if (ret)
		return;
	set_state(m, pfn, npages, PG_LIVE);
	m->live[m->nr_live++] = (struct r_alloc){ pfn, npages };
}

Test(iova, randomized_against_model, .timeout = 600)
{
	struct model *m = calloc(1, sizeof(*m));
	uint64_t op;
	size_t i;

	cr_assert_not_null(m);
	m->rng = UINT64_C(0x9e3779b97f4a7c15);
	cr_assert_eq(iova_allocator_init(&m->a, 0, R_END), 0);
	for (op = 0; op < R_OPS; op++) {
		uint64_t r = rnd(m) % 100;

		if (r < 50) {
			r_alloc(m);
		} else if (r < 92) {
			r_free(m);
		} else if (r < 93) {
			iova_flush_rcaches(&m->a);
			model_flushed(m);
		} else if (r < 96) {
			r_reserve(m);
		} else {
			uint64_t pfn = 1 + rnd(m) % R_END;
			uint64_t bad = m->a.stats.bad_frees;

			/* Overlaps free space (or lies outside): rejected. */
			if (pfn + 63 <= R_END && memchr(&m->st[pfn], PG_FREE, 64)) {
				cr_assert_eq(iova_free(&m->a, pfn, 64), -EINVAL);
				cr_assert_eq(m->a.stats.bad_frees, bad + 1);
			}
			cr_assert_eq(iova_free(&m->a, R_END - 10, 64), -EINVAL);
		}
		if (op % 97 == 0)
			model_check(m);
	}
	cr_assert_gt(m->a.stats.rcache_hits, 1000);
	cr_assert_gt(m->a.stats.alloc_failures, 100);
	cr_assert_gt(m->a.stats.rcache_flushes, 100);

	for (i = 0; i < m->nr_live; i++)
		cr_assert_eq(iova_free(&m->a, m->live[i].pfn, m->live[i].npages), 0);
	iova_flush_rcaches(&m->a);
	cr_assert_eq(m->a.stats.pages_in_use, 0);
	cr_assert_eq(m->a.stats.free_ranges, 1);
	cr_assert_eq(iova_largest_free(&m->a), R_END);
	iova_allocator_fini(&m->a);
	free(m);
}
