// SPDX-License-Identifier: MIT
/*
 * test_iotlb.c - the IOTLB cache and the unmap gather's merge rules.
 */
#include <criterion/criterion.h>
#include <errno.h>

#include "iotlb.h"

#define SZ_4K UINT64_C(0x1000)
#define SZ_2M (UINT64_C(2) << 20)

Test(iotlb, init_validates_size)
{
	struct iotlb t;

	cr_assert_eq(iotlb_init(&t, 0, SZ_4K), -EINVAL);
	cr_assert_eq(iotlb_init(&t, 6, SZ_4K), -EINVAL);
	cr_assert_eq(iotlb_init(&t, IOTLB_MAX_ENTRIES * 2, SZ_4K), -EINVAL);
	cr_assert_eq(iotlb_init(&t, 8, 0), -EINVAL);
	cr_assert_eq(iotlb_init(&t, 8, SZ_4K | SZ_2M), 0);
	cr_assert_eq(t.nshifts, 2);
	iotlb_fini(&t);
}

Test(iotlb, lookup_insert_and_sizes)
{
	struct iotlb t;
	const struct iotlb_entry *e;

	cr_assert_eq(iotlb_init(&t, 8, SZ_4K | SZ_2M), 0);
	cr_assert_null(iotlb_lookup(&t, 0x200000));
	iotlb_insert(&t, 0x200000 + 0x1234, 21, 0x40000000 + 0x1234, 3);
	e = iotlb_lookup(&t, 0x3fffff);
	cr_assert_not_null(e);
	cr_assert_eq(e->iova, 0x200000);
	cr_assert_eq(e->phys, 0x40000000);
	cr_assert_eq(e->shift, 21);
	cr_assert_null(iotlb_lookup(&t, 0x400000));
	cr_assert_eq(t.stats.hits, 1);
	cr_assert_eq(t.stats.misses, 2);
	iotlb_fini(&t);
}

Test(iotlb, lru_within_a_set)
{
	struct iotlb t;

	/* One set of 4 ways: the fifth insert evicts the least recently used. */
	cr_assert_eq(iotlb_init(&t, 4, SZ_4K), 0);
	for (uint64_t i = 0; i < 4; i++)
		iotlb_insert(&t, i * SZ_4K, 12, i * SZ_4K, 1);
	cr_assert_not_null(iotlb_lookup(&t, 0)); /* page 0 is now the most recent */
	iotlb_insert(&t, 9 * SZ_4K, 12, 0, 1);
	cr_assert_not_null(iotlb_lookup(&t, 0));
	cr_assert_null(iotlb_lookup(&t, SZ_4K), "page 1 was the LRU");
	cr_assert_eq(t.stats.evictions, 1);
	cr_assert_eq(t.nvalid, 4);
	iotlb_fini(&t);
}

Test(iotlb, invalidate_range_and_all)
{
	struct iotlb t;

	cr_assert_eq(iotlb_init(&t, 64, SZ_4K | SZ_2M), 0);
	for (uint64_t i = 0; i < 8; i++)
		iotlb_insert(&t, i * SZ_4K, 12, i * SZ_4K, 1);
	iotlb_insert(&t, SZ_2M, 21, 0, 1);
	iotlb_inv_range(&t, 2 * SZ_4K, 4 * SZ_4K - 1);
	cr_assert_not_null(iotlb_lookup(&t, SZ_4K));
	cr_assert_null(iotlb_lookup(&t, 2 * SZ_4K));
	cr_assert_null(iotlb_lookup(&t, 3 * SZ_4K));
	cr_assert_not_null(iotlb_lookup(&t, 4 * SZ_4K));
	/* A range touching one page of a block drops the whole block. */
	iotlb_inv_range(&t, SZ_2M + 5 * SZ_4K, SZ_2M + 5 * SZ_4K);
	cr_assert_null(iotlb_lookup(&t, SZ_2M));
	cr_assert_eq(t.stats.invalidated, 3);
	iotlb_inv_all(&t);
	cr_assert_eq(t.nvalid, 0);
	cr_assert_null(iotlb_lookup(&t, 0));
	iotlb_fini(&t);
}

Test(gather, adjacent_merge_disjoint_or_new_size_syncs_first)
{
	struct iotlb_gather g;

	iotlb_gather_init(&g);
	cr_assert_not(iotlb_gather_needs_sync(&g, 0x5000, SZ_4K, SZ_4K), "empty gather");
	iotlb_gather_add(&g, 0x5000, SZ_4K, SZ_4K);
	cr_assert_not(iotlb_gather_needs_sync(&g, 0x6000, SZ_4K, SZ_4K), "adjacent above");
	iotlb_gather_add(&g, 0x6000, SZ_4K, SZ_4K);
	cr_assert_not(iotlb_gather_needs_sync(&g, 0x4000, SZ_4K, SZ_4K), "adjacent below");
	iotlb_gather_add(&g, 0x4000, SZ_4K, SZ_4K);
	cr_assert_eq(g.start, 0x4000);
	cr_assert_eq(g.end, 0x6fff);
	cr_assert(iotlb_gather_needs_sync(&g, 0x8000, SZ_4K, SZ_4K), "disjoint");
	cr_assert(iotlb_gather_needs_sync(&g, 0x7000, SZ_2M, SZ_2M), "page size change");
	/* A run of pages merges like its pages would have, one by one. */
	cr_assert_not(iotlb_gather_needs_sync(&g, 0x7000, 4 * SZ_4K, SZ_4K));
	iotlb_gather_add(&g, 0x7000, 4 * SZ_4K, SZ_4K);
	cr_assert_eq(g.end, 0xafff);
	cr_assert(iotlb_gather_needs_sync(&g, 0xc000, 2 * SZ_4K, SZ_4K), "a run past a hole");
}

Test(iotlb, skips_ranges_outside_the_cached_bounds)
{
	struct iotlb t;

	cr_assert_eq(iotlb_init(&t, 8, SZ_4K), 0);
	iotlb_insert(&t, 0x10000, 12, 0, 1);
	iotlb_insert(&t, 0x20000, 12, 0, 1);
	cr_assert_eq(t.lo, 0x10000);
	cr_assert_eq(t.hi, 0x20fff);
	iotlb_inv_range(&t, 0x30000, 0x40000);
	cr_assert_eq(t.nvalid, 2, "outside the bounds: nothing dropped");
	iotlb_inv_range(&t, 0x10000, 0x20000);
	cr_assert_eq(t.nvalid, 0);
	cr_assert_eq(t.lo, UINT64_MAX, "bounds reset once empty");
	iotlb_fini(&t);
}
