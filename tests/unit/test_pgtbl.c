// SPDX-License-Identifier: MIT
/*
 * test_pgtbl.c - unit tests for the radix IO page table
 */
#include <criterion/criterion.h>

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "pgtbl.h"

#define SZ_4K	(UINT64_C(1) << 12)
#define SZ_16K	(UINT64_C(1) << 14)
#define SZ_64K	(UINT64_C(1) << 16)
#define SZ_2M	(UINT64_C(1) << 21)
#define SZ_1G	(UINT64_C(1) << 30)
#define SZ_512G	(UINT64_C(1) << 39)
#define IAS_END	(UINT64_C(1) << PGTBL_IAS_BITS)

#define RW	(PGTBL_READ | PGTBL_WRITE)

static void pt_new(struct pgtbl *pt, unsigned int gshift, bool blocks, uint64_t max)
{
	struct pgtbl_cfg cfg = { .granule_shift = gshift, .blocks = blocks,
				 .max_table_bytes = max };

	cr_assert_eq(pgtbl_init(pt, &cfg), 0);
}

static bool stats_eq(const struct pgtbl_stats *a, const struct pgtbl_stats *b)
{
	return !memcmp(a, b, sizeof(*a));
}

/* Records unmap callbacks. */
#define REC_MAX 64
struct rec {
	unsigned int n;
	uint64_t iova[REC_MAX];
	uint64_t size[REC_MAX];   /* length of the reported run */
	uint64_t pgsize[REC_MAX]; /* leaf size */
};

static void rec_cb(void *arg, uint64_t iova, uint64_t len, uint64_t pgsize)
{
	struct rec *r = arg;

	if (r->n < REC_MAX) {
		r->iova[r->n] = iova;
		r->size[r->n] = len;
		r->pgsize[r->n] = pgsize;
	}
	r->n++;
}

static void expect_leaf(const struct pgtbl *pt, uint64_t iova, uint64_t phys, uint64_t size,
			unsigned int prot)
{
	struct pgtbl_leaf l;

	cr_assert_eq(pgtbl_lookup(pt, iova, &l), 0, "lookup %#" PRIx64, iova);
	cr_assert_eq(l.size, size, "size at %#" PRIx64 ": %#" PRIx64, iova, l.size);
	cr_assert_eq(l.iova, iova & ~(size - 1));
	cr_assert_eq(l.phys + (iova - l.iova), phys, "phys at %#" PRIx64, iova);
	cr_assert_eq(l.prot, prot, "prot at %#" PRIx64 ": %#x", iova, l.prot);
}

static void expect_none(const struct pgtbl *pt, uint64_t iova)
{
	struct pgtbl_leaf l;

	cr_assert_eq(pgtbl_lookup(pt, iova, &l), -ENOENT, "%#" PRIx64 " mapped", iova);
}

/* ---- formats ---------------------------------------------------------- */

static void check_format(unsigned int gshift, bool blocks, unsigned int levels,
			 unsigned int bpl, unsigned int top_bits, uint64_t bitmap)
{
	struct pgtbl pt;
	uint64_t g = UINT64_C(1) << gshift;
	uint64_t hi = IAS_END - g;

	pt_new(&pt, gshift, blocks, 0);
	cr_assert_eq(pt.levels, levels);
	cr_assert_eq(pt.bits_per_level, bpl);
	cr_assert_eq(pt.top_bits, top_bits);
	cr_assert_eq(pt.pgsize_bitmap, bitmap);
	cr_assert_eq(pgtbl_granule(&pt), g);
	cr_assert_eq(pt.stats.tables, 1);
	cr_assert_eq(pt.stats.table_bytes, (UINT64_C(8) << top_bits));

	/* Highest granule of the IAS, and the lowest. */
	cr_assert_eq(pgtbl_map(&pt, hi, 0xabc0000000 & ~(g - 1), g, RW), 0);
	cr_assert_eq(pgtbl_map(&pt, 0, g, g, PGTBL_READ), 0);
	expect_leaf(&pt, hi, 0xabc0000000 & ~(g - 1), g, RW);
	expect_leaf(&pt, hi + g - 1, (0xabc0000000 & ~(g - 1)) + g - 1, g, RW);
	expect_leaf(&pt, 0, g, g, PGTBL_READ);
	expect_none(&pt, hi - g);
	expect_none(&pt, g);
	cr_assert_eq(pt.root_nr, 2);
	/* Every non-root table is one granule. */
	cr_assert_eq(pt.stats.table_bytes,
		     (UINT64_C(8) << top_bits) + (pt.stats.tables - 1) * g);
	cr_assert_eq(pt.stats.tables, 1 + 2 * (levels - 1));
	cr_assert_eq(pgtbl_unmap(&pt, hi, g, NULL, NULL), (int64_t)g);
	cr_assert_eq(pgtbl_unmap(&pt, 0, g, NULL, NULL), (int64_t)g);
	cr_assert_eq(pt.stats.tables, 1);
	pgtbl_fini(&pt);
}

Test(pgtbl, format_4k)
{
	check_format(12, false, 4, 9, 9, SZ_4K);
}

Test(pgtbl, format_4k_blocks)
{
	check_format(12, true, 4, 9, 9, SZ_4K | SZ_2M | SZ_1G);
}

Test(pgtbl, format_16k)
{
	check_format(14, false, 4, 11, 1, SZ_16K);
}

Test(pgtbl, format_64k)
{
	check_format(16, false, 3, 13, 6, SZ_64K);
}

Test(pgtbl, format_high_blocks)
{
	struct pgtbl pt;

	pt_new(&pt, 12, true, 0);
	cr_assert_eq(pgtbl_map(&pt, IAS_END - SZ_1G, 5 * SZ_1G, SZ_1G, RW), 0);
	cr_assert_eq(pgtbl_map(&pt, IAS_END - SZ_1G - SZ_2M, SZ_2M, SZ_2M, RW), 0);
	expect_leaf(&pt, IAS_END - 1, 6 * SZ_1G - 1, SZ_1G, RW);
	expect_leaf(&pt, IAS_END - SZ_1G - 1, 2 * SZ_2M - 1, SZ_2M, RW);
	cr_assert_eq(pt.stats.block_maps, 2);
	pgtbl_fini(&pt);
}

Test(pgtbl, init_rejects)
{
	struct pgtbl pt;
	struct pgtbl_cfg cfg = { .granule_shift = 14, .blocks = true };

	cr_assert_eq(pgtbl_init(&pt, &cfg), -EINVAL);
	pgtbl_fini(&pt);
	cfg.granule_shift = 16;
	cr_assert_eq(pgtbl_init(&pt, &cfg), -EINVAL);
	cfg.granule_shift = 13;
	cfg.blocks = false;
	cr_assert_eq(pgtbl_init(&pt, &cfg), -EINVAL);
	cfg.granule_shift = 21;
	cr_assert_eq(pgtbl_init(&pt, &cfg), -EINVAL);
	pgtbl_fini(&pt);
	pgtbl_fini(NULL);
}

/* ---- argument checks ---------------------------------------------------- */

Test(pgtbl, einval)
{
	struct pgtbl pt;
	struct pgtbl_stats before;
	struct pgtbl_leaf l;

	pt_new(&pt, 12, true, 0);
	before = pt.stats;
	cr_assert_eq(pgtbl_map(&pt, 0x1001, 0, SZ_4K, RW), -EINVAL);
	cr_assert_eq(pgtbl_map(&pt, 0x1000, 0x800, SZ_4K, RW), -EINVAL);
	cr_assert_eq(pgtbl_map(&pt, 0x1000, 0, 0x1800, RW), -EINVAL);
	cr_assert_eq(pgtbl_map(&pt, 0x1000, 0, 0, RW), -EINVAL);
	cr_assert_eq(pgtbl_map(&pt, IAS_END, 0, SZ_4K, RW), -EINVAL);
	cr_assert_eq(pgtbl_map(&pt, IAS_END - SZ_4K, 0, 2 * SZ_4K, RW), -EINVAL);
	/* iova + size wraps around */
	cr_assert_eq(pgtbl_map(&pt, IAS_END - SZ_4K, 0, UINT64_MAX & ~(SZ_4K - 1), RW), -EINVAL);
	cr_assert_eq(pgtbl_unmap(&pt, 0x1001, SZ_4K, NULL, NULL), -EINVAL);
	cr_assert_eq(pgtbl_unmap(&pt, 0x1000, 0, NULL, NULL), -EINVAL);
	cr_assert_eq(pgtbl_unmap(&pt, IAS_END - SZ_4K, 2 * SZ_4K, NULL, NULL), -EINVAL);
	cr_assert_eq(pgtbl_publish(&pt, 0x1000, 0x10), -EINVAL);
	cr_assert_eq(pgtbl_publish(&pt, IAS_END, SZ_4K), -EINVAL);
	cr_assert_eq(pgtbl_lookup(&pt, IAS_END, &l), -ENOENT);
	cr_assert(!pgtbl_any_mapped(&pt, 0, 0));
	cr_assert(stats_eq(&pt.stats, &before));
	pgtbl_fini(&pt);

	/* 64 KiB granule: 4 KiB alignment is not enough. */
	pt_new(&pt, 16, false, 0);
	cr_assert_eq(pgtbl_map(&pt, SZ_4K, 0, SZ_64K, RW), -EINVAL);
	cr_assert_eq(pgtbl_map(&pt, SZ_64K, SZ_4K, SZ_64K, RW), -EINVAL);
	cr_assert_eq(pgtbl_map(&pt, SZ_64K, 0, SZ_4K, RW), -EINVAL);
	cr_assert_eq(pgtbl_map(&pt, SZ_64K, 0, SZ_64K, RW), 0);
	pgtbl_fini(&pt);
}

/* ---- -EEXIST and rollback ------------------------------------------------ */

Test(pgtbl, eexist_page)
{
	struct pgtbl pt;
	struct pgtbl_stats before;

	pt_new(&pt, 12, true, 0);
	cr_assert_eq(pgtbl_map(&pt, 0x5000, 0x9000, SZ_4K, RW), 0);
	before = pt.stats;
	cr_assert_eq(pgtbl_map(&pt, 0x5000, 0x1000, SZ_4K, PGTBL_READ), -EEXIST);
	cr_assert_eq(pgtbl_map(&pt, 0x1000, 0x1000, 8 * SZ_4K, PGTBL_READ), -EEXIST);
	/* a block over a table with a page below */
	cr_assert_eq(pgtbl_map(&pt, 0, 0, SZ_2M, PGTBL_READ), -EEXIST);
	cr_assert_eq(pgtbl_map(&pt, 0, 0, SZ_1G, PGTBL_READ), -EEXIST);
	cr_assert(stats_eq(&pt.stats, &before));
	expect_leaf(&pt, 0x5000, 0x9000, SZ_4K, RW);
	expect_none(&pt, 0x1000);
	expect_none(&pt, 0x4000);
	expect_none(&pt, 0x6000);
	pgtbl_fini(&pt);
}

Test(pgtbl, eexist_block)
{
	struct pgtbl pt;
	struct pgtbl_stats before;

	pt_new(&pt, 12, true, 0);
	cr_assert_eq(pgtbl_map(&pt, 4 * SZ_2M, 0, SZ_2M, RW), 0);
	expect_leaf(&pt, 4 * SZ_2M, 0, SZ_2M, RW);
	before = pt.stats;
	/* a page below the block: the walk meets the block */
	cr_assert_eq(pgtbl_map(&pt, 4 * SZ_2M + SZ_4K, SZ_4K, SZ_4K, RW), -EEXIST);
	/* a range whose 4K tail runs into the block */
	cr_assert_eq(pgtbl_map(&pt, 4 * SZ_2M - 3 * SZ_4K, SZ_4K, 4 * SZ_4K, RW), -EEXIST);
	/* blocks before and over it */
	cr_assert_eq(pgtbl_map(&pt, 2 * SZ_2M, 0, 3 * SZ_2M, RW), -EEXIST);
	cr_assert(stats_eq(&pt.stats, &before));
	expect_none(&pt, 4 * SZ_2M - SZ_4K);
	expect_none(&pt, 2 * SZ_2M);
	expect_none(&pt, 3 * SZ_2M);
	cr_assert(!pgtbl_any_mapped(&pt, 0, 4 * SZ_2M));
	pgtbl_fini(&pt);
}

Test(pgtbl, eexist_partial_range_rolls_back)
{
	struct pgtbl pt;
	struct pgtbl_stats before;
	uint64_t base = 7 * SZ_1G - 2 * SZ_2M;

	pt_new(&pt, 12, true, 0);
	/* lone page in the 4th 2 MiB of the range, across a 1 GiB boundary */
	cr_assert_eq(pgtbl_map(&pt, base + 3 * SZ_2M + 5 * SZ_4K, 0, SZ_4K, RW), 0);
	before = pt.stats;
	/* 4K head, 2M blocks (crossing 1G), then a conflict: everything undone */
	cr_assert_eq(pgtbl_map(&pt, base - 2 * SZ_4K, SZ_1G - 2 * SZ_4K, 5 * SZ_2M, RW), -EEXIST);
	cr_assert(stats_eq(&pt.stats, &before));
	cr_assert_eq(pt.root_nr, 1);
	expect_none(&pt, base - 2 * SZ_4K);
	expect_none(&pt, base);
	expect_none(&pt, base + 2 * SZ_2M);
	cr_assert(!pgtbl_any_mapped(&pt, 0, base + 3 * SZ_2M));
	/* Same without blocks: several leaf tables filled, then undone. */
	pgtbl_fini(&pt);
	pt_new(&pt, 12, false, 0);
	cr_assert_eq(pgtbl_map(&pt, base + 3 * SZ_2M + 5 * SZ_4K, 0, SZ_4K, RW), 0);
	before = pt.stats;
	cr_assert_eq(pgtbl_map(&pt, base, SZ_1G, 4 * SZ_2M, RW), -EEXIST);
	cr_assert(stats_eq(&pt.stats, &before));
	cr_assert(!pgtbl_any_mapped(&pt, 0, base + 3 * SZ_2M + 5 * SZ_4K));
	cr_assert(!pgtbl_any_mapped(&pt, base + 3 * SZ_2M + 6 * SZ_4K, SZ_1G));
	pgtbl_fini(&pt);
}

Test(pgtbl, enomem_rolls_back)
{
	struct pgtbl pt;
	struct pgtbl_stats before;

	/* root + L1 + L2 + one leaf table: the second leaf table is refused */
	pt_new(&pt, 12, false, 4 * SZ_4K);
	before = pt.stats;
	cr_assert_eq(pgtbl_map(&pt, SZ_2M - 8 * SZ_4K, 0, 16 * SZ_4K, RW), -ENOMEM);
	cr_assert(stats_eq(&pt.stats, &before));
	cr_assert_eq(pt.root_nr, 0);
	expect_none(&pt, SZ_2M - 8 * SZ_4K);
	cr_assert(!pgtbl_any_mapped(&pt, 0, IAS_END));
	/* fits in one leaf table */
	cr_assert_eq(pgtbl_map(&pt, 0, 0, SZ_2M, RW), 0);
	cr_assert_eq(pt.stats.table_bytes, 4 * SZ_4K);
	before = pt.stats;
	/* needs new L1 + L2 + leaf: fails at the first allocation */
	cr_assert_eq(pgtbl_map(&pt, SZ_512G, 0, SZ_4K, RW), -ENOMEM);
	cr_assert(stats_eq(&pt.stats, &before));
	cr_assert_eq(pt.root_nr, 1);
	pgtbl_fini(&pt);

	/* Allocation failing below freshly allocated tables: those are pruned. */
	pt_new(&pt, 12, false, 3 * SZ_4K);
	before = pt.stats;
	cr_assert_eq(pgtbl_map(&pt, SZ_1G, 0, SZ_4K, RW), -ENOMEM);
	cr_assert(stats_eq(&pt.stats, &before));
	cr_assert_eq(pt.root_nr, 0);
	pgtbl_fini(&pt);
}

Test(pgtbl, enomem_on_split)
{
	struct pgtbl pt;
	struct rec r = { 0 };

	/* root + L1 + L2: the 2M block fits, its split table does not */
	pt_new(&pt, 12, true, 3 * SZ_4K);
	cr_assert_eq(pgtbl_map(&pt, SZ_2M, SZ_2M, SZ_2M, RW), 0);
	cr_assert_eq(pgtbl_unmap(&pt, SZ_2M, SZ_4K, rec_cb, &r), -ENOMEM);
	cr_assert_eq(r.n, 0);
	cr_assert_eq(pt.stats.block_splits, 0);
	expect_leaf(&pt, SZ_2M, SZ_2M, SZ_2M, RW);
	cr_assert_eq(pgtbl_unmap(&pt, SZ_2M, SZ_2M, rec_cb, &r), (int64_t)SZ_2M);
	cr_assert_eq(r.n, 1);
	cr_assert_eq(pt.stats.tables, 1);
	pgtbl_fini(&pt);
}

/* ---- leaf size selection ----------------------------------------------- */

Test(pgtbl, block_chosen_when_aligned)
{
	struct pgtbl pt;

	pt_new(&pt, 12, true, 0);
	cr_assert_eq(pgtbl_map(&pt, 3 * SZ_2M, 7 * SZ_2M, 2 * SZ_2M, RW | PGTBL_CACHE), 0);
	expect_leaf(&pt, 3 * SZ_2M, 7 * SZ_2M, SZ_2M, RW | PGTBL_CACHE);
	expect_leaf(&pt, 5 * SZ_2M - SZ_4K, 9 * SZ_2M - SZ_4K, SZ_2M, RW | PGTBL_CACHE);
	cr_assert_eq(pt.stats.leaves, 2);
	cr_assert_eq(pt.stats.block_maps, 2);
	cr_assert_eq(pt.stats.mapped_bytes, 2 * SZ_2M);
	cr_assert_eq(pt.stats.tables, 3); /* root, L1, L2: no leaf table */

	cr_assert_eq(pgtbl_map(&pt, 5 * SZ_1G, 9 * SZ_1G, SZ_1G, PGTBL_READ), 0);
	expect_leaf(&pt, 5 * SZ_1G + 12345 * SZ_4K, 9 * SZ_1G + 12345 * SZ_4K, SZ_1G, PGTBL_READ);
	cr_assert_eq(pt.stats.block_maps, 3);
	cr_assert_eq(pt.stats.tables, 3);
	pgtbl_fini(&pt);
}

Test(pgtbl, block_not_chosen_when_misaligned)
{
	struct pgtbl pt;

	pt_new(&pt, 12, true, 0);
	/* iova 2M-aligned, phys not */
	cr_assert_eq(pgtbl_map(&pt, SZ_2M, SZ_2M + SZ_4K, SZ_2M, RW), 0);
	expect_leaf(&pt, SZ_2M, SZ_2M + SZ_4K, SZ_4K, RW);
	expect_leaf(&pt, 2 * SZ_2M - SZ_4K, 2 * SZ_2M, SZ_4K, RW);
	cr_assert_eq(pt.stats.leaves, 512);
	cr_assert_eq(pt.stats.block_maps, 0);
	/* phys 1G-aligned, iova only 2M-aligned: 2M blocks, no 1G */
	cr_assert_eq(pgtbl_map(&pt, SZ_1G + SZ_2M, 4 * SZ_1G, SZ_1G, RW), 0);
	expect_leaf(&pt, SZ_1G + SZ_2M, 4 * SZ_1G, SZ_2M, RW);
	cr_assert_eq(pt.stats.leaves, 1024);
	pgtbl_fini(&pt);

	/* blocks disabled: 2M-aligned everything still gives 4K leaves */
	pt_new(&pt, 12, false, 0);
	cr_assert_eq(pgtbl_map(&pt, SZ_2M, SZ_2M, SZ_2M, RW), 0);
	expect_leaf(&pt, SZ_2M, SZ_2M, SZ_4K, RW);
	cr_assert_eq(pt.stats.leaves, 512);
	pgtbl_fini(&pt);
}

Test(pgtbl, mixed_leaf_sizes)
{
	struct pgtbl pt;
	uint64_t iova = SZ_1G - SZ_2M - 3 * SZ_4K;
	uint64_t phys = 8 * SZ_1G - SZ_2M - 3 * SZ_4K;
	/* 3 x 4K, 1 x 2M, 1 x 1G, 2 x 2M, 5 x 4K */
	uint64_t size = 3 * SZ_4K + SZ_2M + SZ_1G + 2 * SZ_2M + 5 * SZ_4K;
	uint64_t d;

	pt_new(&pt, 12, true, 0);
	cr_assert_eq(pgtbl_map(&pt, iova, phys, size, RW), 0);
	cr_assert_eq(pt.stats.leaves, 3 + 1 + 1 + 2 + 5);
	cr_assert_eq(pt.stats.block_maps, 4);
	cr_assert_eq(pt.stats.mapped_bytes, size);
	for (d = 0; d < 3 * SZ_4K; d += SZ_4K)
		expect_leaf(&pt, iova + d, phys + d, SZ_4K, RW);
	expect_leaf(&pt, iova + d, phys + d, SZ_2M, RW);
	d += SZ_2M;
	cr_assert_eq(iova + d, SZ_1G);
	expect_leaf(&pt, iova + d, phys + d, SZ_1G, RW);
	d += SZ_1G;
	expect_leaf(&pt, iova + d, phys + d, SZ_2M, RW);
	d += SZ_2M;
	expect_leaf(&pt, iova + d, phys + d, SZ_2M, RW);
	d += SZ_2M;
	for (; d < size; d += SZ_4K)
		expect_leaf(&pt, iova + d, phys + d, SZ_4K, RW);
	expect_none(&pt, iova - SZ_4K);
	expect_none(&pt, iova + size);
	cr_assert_eq(pgtbl_unmap(&pt, iova, size, NULL, NULL), (int64_t)size);
	cr_assert_eq(pt.stats.tables, 1);
	pgtbl_fini(&pt);
}

/* ---- splits -------------------------------------------------------------- */

Test(pgtbl, block_split_on_partial_unmap)
{
	struct pgtbl pt;
	struct rec r = { 0 };
	uint64_t iova = 9 * SZ_2M, phys = 100 * SZ_2M, d;
	unsigned int prot = RW | PGTBL_PENDING;

	pt_new(&pt, 12, true, 0);
	cr_assert_eq(pgtbl_map(&pt, iova, phys, SZ_2M, prot), 0);
	cr_assert_eq(pgtbl_unmap(&pt, iova + 10 * SZ_4K, 2 * SZ_4K, rec_cb, &r),
		     (int64_t)(2 * SZ_4K));
	cr_assert_eq(r.n, 1);
	cr_assert_eq(r.iova[0], iova);
	cr_assert_eq(r.size[0], SZ_2M);
	cr_assert_eq(pt.stats.block_splits, 1);
	cr_assert_eq(pt.stats.leaves, 510);
	cr_assert_eq(pt.stats.mapped_bytes, SZ_2M - 2 * SZ_4K);
	for (d = 0; d < SZ_2M; d += SZ_4K) {
		if (d == 10 * SZ_4K || d == 11 * SZ_4K)
			expect_none(&pt, iova + d);
		else
			expect_leaf(&pt, iova + d, phys + d, SZ_4K, prot);
	}
	/* already split: a second partial unmap reports pages, not the block */
	r.n = 0;
	cr_assert_eq(pgtbl_unmap(&pt, iova + 11 * SZ_4K, 2 * SZ_4K, rec_cb, &r),
		     (int64_t)SZ_4K);
	cr_assert_eq(r.n, 1);
	cr_assert_eq(r.iova[0], iova + 12 * SZ_4K);
	cr_assert_eq(r.size[0], SZ_4K);
	cr_assert_eq(pt.stats.block_splits, 1);
	pgtbl_fini(&pt);
}

Test(pgtbl, block_split_1g)
{
	struct pgtbl pt;
	struct rec r = { 0 };
	uint64_t iova = 3 * SZ_1G, phys = 11 * SZ_1G, hole = iova + 300 * SZ_2M + 7 * SZ_4K;

	pt_new(&pt, 12, true, 0);
	cr_assert_eq(pgtbl_map(&pt, iova, phys, SZ_1G, PGTBL_READ | PGTBL_MMIO), 0);
	cr_assert_eq(pgtbl_unmap(&pt, hole, SZ_4K, rec_cb, &r), (int64_t)SZ_4K);
	/* 1G -> 512 x 2M, then the 2M with the hole -> 512 x 4K; one callback */
	cr_assert_eq(r.n, 1);
	cr_assert_eq(r.iova[0], iova);
	cr_assert_eq(r.size[0], SZ_1G);
	cr_assert_eq(pt.stats.block_splits, 2);
	cr_assert_eq(pt.stats.leaves, 511 + 511);
	cr_assert_eq(pt.stats.mapped_bytes, SZ_1G - SZ_4K);
	expect_none(&pt, hole);
	expect_leaf(&pt, iova, phys, SZ_2M, PGTBL_READ | PGTBL_MMIO);
	expect_leaf(&pt, iova + SZ_1G - 1, phys + SZ_1G - 1, SZ_2M, PGTBL_READ | PGTBL_MMIO);
	expect_leaf(&pt, hole - SZ_4K, phys + (hole - SZ_4K - iova), SZ_4K,
		    PGTBL_READ | PGTBL_MMIO);
	expect_leaf(&pt, hole + SZ_4K, phys + (hole + SZ_4K - iova), SZ_4K,
		    PGTBL_READ | PGTBL_MMIO);
	expect_leaf(&pt, iova + 301 * SZ_2M, phys + 301 * SZ_2M, SZ_2M, PGTBL_READ | PGTBL_MMIO);

	/* a 2M-aligned 2M piece of another 1G block: one split */
	cr_assert_eq(pgtbl_map(&pt, 5 * SZ_1G, 0, SZ_1G, RW), 0);
	r.n = 0;
	cr_assert_eq(pgtbl_unmap(&pt, 5 * SZ_1G + 4 * SZ_2M, SZ_2M, rec_cb, &r), (int64_t)SZ_2M);
	cr_assert_eq(r.n, 1);
	cr_assert_eq(r.iova[0], 5 * SZ_1G);
	cr_assert_eq(r.size[0], SZ_1G);
	cr_assert_eq(pt.stats.block_splits, 3);
	expect_none(&pt, 5 * SZ_1G + 4 * SZ_2M);
	expect_leaf(&pt, 5 * SZ_1G + 5 * SZ_2M, 5 * SZ_2M, SZ_2M, RW);
	pgtbl_fini(&pt);
}

/* ---- table lifetime ------------------------------------------------------ */

Test(pgtbl, tables_freed_when_empty)
{
	struct pgtbl pt;
	uint64_t peak;

	pt_new(&pt, 12, true, 0);
	cr_assert_eq(pgtbl_map(&pt, 0, 0, 5 * SZ_4K, RW), 0);
	cr_assert_eq(pgtbl_map(&pt, SZ_1G, SZ_1G, SZ_1G, RW), 0);
	cr_assert_eq(pgtbl_map(&pt, 3 * SZ_512G + 5 * SZ_2M, 0, 3 * SZ_2M + SZ_4K, RW), 0);
	cr_assert_eq(pgtbl_map(&pt, IAS_END - SZ_4K, 0, SZ_4K, RW), 0);
	cr_assert_eq(pgtbl_unmap(&pt, SZ_1G + SZ_2M, SZ_4K, NULL, NULL), (int64_t)SZ_4K);
	peak = pt.stats.tables;
	cr_assert_gt(peak, 8);
	cr_assert_eq(pt.stats.table_bytes, 4096 * peak);
	/* piecewise removal frees the tables as they empty */
	cr_assert_eq(pgtbl_unmap(&pt, 0, 2 * SZ_4K, NULL, NULL), (int64_t)(2 * SZ_4K));
	cr_assert_eq(pt.stats.tables, peak);
	cr_assert_eq(pgtbl_unmap(&pt, 0, 5 * SZ_4K, NULL, NULL), (int64_t)(3 * SZ_4K));
	/* the leaf table and its L2; the L1 still holds the split 1 GiB */
	cr_assert_eq(pt.stats.tables, peak - 2);
	cr_assert_eq(pgtbl_unmap(&pt, 0, IAS_END, NULL, NULL),
		     (int64_t)(SZ_1G - SZ_4K + 3 * SZ_2M + SZ_4K + SZ_4K));
	cr_assert_eq(pt.stats.tables, 1);
	cr_assert_eq(pt.stats.table_bytes, 4096);
	cr_assert_eq(pt.stats.tables_freed, peak - 1); /* split tables included */
	cr_assert_eq(pt.stats.leaves, 0);
	cr_assert_eq(pt.stats.mapped_bytes, 0);
	cr_assert_eq(pt.root_nr, 0);
	cr_assert(!pgtbl_any_mapped(&pt, 0, IAS_END));
	pgtbl_fini(&pt);
}

Test(pgtbl, density)
{
	struct pgtbl pt;
	uint64_t pages = (64 << 20) / SZ_4K;
	double ratio;

	pt_new(&pt, 12, false, 0);
	cr_assert_eq(pgtbl_map(&pt, SZ_1G, 0, 64 << 20, RW), 0);
	/* 32 leaf tables + L2 + L1 + root: leaves cost exactly 8 bytes a page */
	cr_assert_eq(pt.stats.tables, 35);
	cr_assert_eq(pt.stats.table_bytes, 35 * SZ_4K);
	ratio = (double)(pt.stats.table_bytes - 3 * SZ_4K) / (double)pages;
	cr_assert(ratio >= 8.0 && ratio <= 8.2, "ratio %f", ratio);
	cr_assert_eq(pgtbl_unmap(&pt, SZ_1G, 64 << 20, NULL, NULL), (int64_t)(64 << 20));
	/* over 1 GiB the upper levels are amortised, root included */
	pages = SZ_1G / SZ_4K;
	cr_assert_eq(pgtbl_map(&pt, SZ_1G, 0, SZ_1G, RW), 0);
	ratio = (double)pt.stats.table_bytes / (double)pages;
	cr_assert(ratio >= 8.0 && ratio <= 8.2, "ratio %f", ratio);
	cr_assert_eq(pt.stats.leaves, pages);
	pgtbl_fini(&pt);
}

/* Resident pages of this process (statm's second field), in bytes. */
static uint64_t resident_bytes(void)
{
	unsigned long size, res;
	FILE *f = fopen("/proc/self/statm", "r");

	cr_assert_not_null(f);
	cr_assert_eq(fscanf(f, "%lu %lu", &size, &res), 2);
	fclose(f);
	return (uint64_t)res * (uint64_t)sysconf(_SC_PAGESIZE);
}

/*
 * What a densely mapped page costs is measured in resident memory, not only
 * in the tables' own count: a table allocator that pads every table (glibc's
 * aligned_alloc(4096, 4096) takes two pages) would double it.
 */
Test(pgtbl, dense_mapping_resident_memory)
{
	struct pgtbl pt;
	uint64_t before, grew, tables, reserved;

	pt_new(&pt, 12, false, 0);
	before = resident_bytes();
	cr_assert_eq(pgtbl_map(&pt, SZ_1G, SZ_1G, SZ_1G, RW), 0);
	grew = resident_bytes() - before;
	tables = pt.stats.table_bytes - SZ_4K; /* the root was there before */
	/*
	 * 512 leaf tables + 1 L2 + 1 L1: 2 MiB and 8 KiB. The worker process
	 * itself grows by up to ~150 KiB meanwhile (seen), so allow a quarter
	 * more; a padding allocator would take twice the tables.
	 */
	cr_assert_eq(tables, 514 * SZ_4K);
	cr_assert_leq(grew, tables + tables / 4, "resident %" PRIu64 " for %" PRIu64 " of tables",
		      grew, tables);
	cr_assert_lt(pt.reserved_bytes - pt.stats.table_bytes, 64 * SZ_4K,
		     "more than one chunk's worth reserved beyond the tables");
	/* Unmapped, the chunks stay for the next map, which takes no more memory. */
	reserved = pt.reserved_bytes;
	cr_assert_eq(pgtbl_unmap(&pt, SZ_1G, SZ_1G, NULL, NULL), (int64_t)SZ_1G);
	cr_assert_eq(pt.stats.table_bytes, SZ_4K);
	cr_assert_eq(pt.reserved_bytes, reserved);
	before = resident_bytes();
	cr_assert_eq(pgtbl_map(&pt, 3 * SZ_1G, 0, SZ_1G, RW), 0);
	cr_assert_eq(pt.reserved_bytes, reserved, "a new chunk instead of the free ones");
	cr_assert_leq(resident_bytes(), before + tables / 4);
	pgtbl_fini(&pt);
	cr_assert_eq(pt.reserved_bytes, 0);
}

/* Tables from many chunks, freed in an order unlike their allocation, every granule. */
static void chunk_churn(unsigned int gshift)
{
	uint64_t g = UINT64_C(1) << gshift, root, reserved;
	const unsigned int n = 300; /* leaf + intermediate tables: several chunks */
	struct pgtbl pt;

	pt_new(&pt, gshift, false, 0);
	root = pt.stats.table_bytes;
	/* One granule every 1 GiB + 1 granule: a leaf table (and more) per page. */
	for (unsigned int i = 0; i < n; i++)
		cr_assert_eq(pgtbl_map(&pt, (uint64_t)i * (SZ_1G + g), (uint64_t)i * g, g, RW), 0);
	cr_assert_gt(pt.stats.tables, n);
	for (unsigned int i = 0; i < n; i++)
		expect_leaf(&pt, (uint64_t)i * (SZ_1G + g), (uint64_t)i * g, g, RW);
	/* Odd pages first, then even ones: chunks empty out of order. */
	for (unsigned int pass = 0; pass < 2; pass++)
		for (unsigned int i = 1 - pass; i < n; i += 2)
			cr_assert_eq(pgtbl_unmap(&pt, (uint64_t)i * (SZ_1G + g), g, NULL, NULL),
				     (int64_t)g);
	cr_assert_eq(pt.stats.tables, 1);
	cr_assert_eq(pt.stats.table_bytes, root);
	reserved = pt.reserved_bytes;
	cr_assert_lt(reserved - pt.stats.tables_freed * g, root + 64 * g,
		     "more than one chunk beyond the tables ever used");
	/* And again: every table comes from the chunks already there. */
	for (unsigned int i = 0; i < n; i++)
		cr_assert_eq(pgtbl_map(&pt, (uint64_t)i * (SZ_1G + g), (uint64_t)i * g, g, RW), 0);
	for (unsigned int i = 0; i < n; i++)
		expect_leaf(&pt, (uint64_t)i * (SZ_1G + g), (uint64_t)i * g, g, RW);
	cr_assert_eq(pt.reserved_bytes, reserved);
	pgtbl_fini(&pt);
}

Test(pgtbl, table_chunks_4k)
{
	chunk_churn(12);
}

Test(pgtbl, table_chunks_16k)
{
	chunk_churn(14);
}

Test(pgtbl, table_chunks_64k)
{
	chunk_churn(16);
}

/* ---- publish ------------------------------------------------------------ */

Test(pgtbl, publish_only_in_range)
{
	struct pgtbl pt;
	uint64_t d;

	pt_new(&pt, 12, true, 0);
	cr_assert_eq(pgtbl_map(&pt, SZ_1G, 0, 16 * SZ_4K, RW | PGTBL_PENDING), 0);
	cr_assert_eq(pgtbl_map(&pt, SZ_1G + 20 * SZ_4K, 0, SZ_4K, RW), 0);
	expect_leaf(&pt, SZ_1G, 0, SZ_4K, RW | PGTBL_PENDING);
	cr_assert_eq(pgtbl_publish(&pt, SZ_1G + 4 * SZ_4K, 4 * SZ_4K), 4);
	for (d = 0; d < 16; d++)
		expect_leaf(&pt, SZ_1G + d * SZ_4K, d * SZ_4K, SZ_4K,
			    RW | (d >= 4 && d < 8 ? 0 : PGTBL_PENDING));
	cr_assert_eq(pgtbl_publish(&pt, SZ_1G + 4 * SZ_4K, 4 * SZ_4K), 0);
	/* holes and already published leaves are not counted */
	cr_assert_eq(pgtbl_publish(&pt, SZ_1G, SZ_2M), 12);
	expect_leaf(&pt, SZ_1G + 15 * SZ_4K, 15 * SZ_4K, SZ_4K, RW);

	/* a block intersecting the range is published whole */
	cr_assert_eq(pgtbl_map(&pt, 2 * SZ_1G, 0, 2 * SZ_2M, PGTBL_READ | PGTBL_PENDING), 0);
	cr_assert_eq(pgtbl_publish(&pt, 2 * SZ_1G + SZ_2M - SZ_4K, 2 * SZ_4K), 2);
	expect_leaf(&pt, 2 * SZ_1G, 0, SZ_2M, PGTBL_READ);
	/* empty space, fast */
	cr_assert_eq(pgtbl_publish(&pt, 0, IAS_END), 0);
	pgtbl_fini(&pt);
}

/* ---- protect --------------------------------------------------------------- */

Test(pgtbl, protect_4k_leaves)
{
	struct pgtbl pt;
	struct pgtbl_stats before;
	struct rec rec = { 0 };
	const unsigned int R = PGTBL_READ | PGTBL_CACHE;

	pt_new(&pt, 12, true, 0);
	cr_assert_eq(pgtbl_map(&pt, SZ_1G, 0x5000, 4 * SZ_4K, R | PGTBL_PENDING), 0);
	cr_assert_eq(pgtbl_map(&pt, SZ_1G + 6 * SZ_4K, 0x9000, SZ_4K, R), 0);
	before = pt.stats;
	/* Leaves 1..3, a hole at 4..5, leaf 6: only present leaves change. */
	cr_assert_eq(pgtbl_protect(&pt, SZ_1G + SZ_4K, 7 * SZ_4K, PGTBL_WRITE, rec_cb, &rec),
		     (int64_t)(4 * SZ_4K));
	cr_assert_eq(rec.n, 4, "one callback per changed leaf");
	cr_assert_eq(rec.iova[0], SZ_1G + SZ_4K);
	cr_assert_eq(rec.size[0], SZ_4K);
	cr_assert_eq(rec.pgsize[0], SZ_4K);
	cr_assert_eq(rec.iova[3], SZ_1G + 6 * SZ_4K);
	expect_leaf(&pt, SZ_1G, 0x5000, SZ_4K, R | PGTBL_PENDING);
	for (uint64_t i = 1; i < 4; i++)
		expect_leaf(&pt, SZ_1G + i * SZ_4K, 0x5000 + i * SZ_4K, SZ_4K,
			    R | PGTBL_WRITE | PGTBL_PENDING);
	expect_leaf(&pt, SZ_1G + 6 * SZ_4K, 0x9000, SZ_4K, R | PGTBL_WRITE);
	expect_none(&pt, SZ_1G + 4 * SZ_4K);
	cr_assert(stats_eq(&before, &pt.stats), "protect allocates and frees nothing");

	/* Leaves that already have the bits are not changed nor reported. */
	rec.n = 0;
	cr_assert_eq(pgtbl_protect(&pt, SZ_1G, 8 * SZ_4K, PGTBL_WRITE, rec_cb, &rec),
		     (int64_t)SZ_4K);
	cr_assert_eq(rec.n, 1);
	cr_assert_eq(rec.iova[0], SZ_1G);
	cr_assert_eq(pgtbl_protect(&pt, SZ_1G, 8 * SZ_4K, PGTBL_WRITE | PGTBL_READ, NULL, NULL), 0);
	/* Only READ/WRITE are ever set: PENDING cannot be put back this way. */
	cr_assert_eq(pgtbl_protect(&pt, SZ_1G + 6 * SZ_4K, SZ_4K, PGTBL_PENDING | PGTBL_MMIO,
				   NULL, NULL), 0);
	expect_leaf(&pt, SZ_1G + 6 * SZ_4K, 0x9000, SZ_4K, R | PGTBL_WRITE);
	/* Empty space and errors. */
	cr_assert_eq(pgtbl_protect(&pt, 0, SZ_1G, PGTBL_WRITE, NULL, NULL), 0);
	cr_assert_eq(pgtbl_protect(&pt, SZ_1G + 1, SZ_4K, PGTBL_WRITE, NULL, NULL), -EINVAL);
	cr_assert_eq(pgtbl_protect(&pt, SZ_1G, 0, PGTBL_WRITE, NULL, NULL), -EINVAL);
	cr_assert_eq(pgtbl_protect(&pt, IAS_END - SZ_4K, 2 * SZ_4K, PGTBL_WRITE, NULL, NULL),
		     -EINVAL);
	pgtbl_fini(&pt);
}

Test(pgtbl, protect_block_changes_whole)
{
	struct pgtbl pt;
	struct rec rec = { 0 };

	pt_new(&pt, 12, true, 0);
	cr_assert_eq(pgtbl_map(&pt, 4 * SZ_2M, 2 * SZ_2M, 2 * SZ_2M, PGTBL_READ), 0);
	expect_leaf(&pt, 4 * SZ_2M, 2 * SZ_2M, SZ_2M, PGTBL_READ);
	/* One granule in the middle of the second block: the whole block changes. */
	cr_assert_eq(pgtbl_protect(&pt, 5 * SZ_2M + 7 * SZ_4K, SZ_4K, PGTBL_WRITE, rec_cb, &rec),
		     (int64_t)SZ_2M);
	cr_assert_eq(rec.n, 1);
	cr_assert_eq(rec.iova[0], 5 * SZ_2M, "reported at the block's base");
	cr_assert_eq(rec.size[0], SZ_2M);
	cr_assert_eq(rec.pgsize[0], SZ_2M);
	expect_leaf(&pt, 5 * SZ_2M, 3 * SZ_2M, SZ_2M, PGTBL_READ | PGTBL_WRITE);
	expect_leaf(&pt, 5 * SZ_2M + SZ_2M - 1, 4 * SZ_2M - 1, SZ_2M, PGTBL_READ | PGTBL_WRITE);
	expect_leaf(&pt, 4 * SZ_2M, 2 * SZ_2M, SZ_2M, PGTBL_READ);
	cr_assert_eq(pt.stats.block_splits, 0, "no split");
	/* A range over both: only the one still lacking the bit. */
	cr_assert_eq(pgtbl_protect(&pt, 4 * SZ_2M, 2 * SZ_2M, PGTBL_WRITE, NULL, NULL),
		     (int64_t)SZ_2M);
	pgtbl_fini(&pt);
}

/* ---- unmap callback ------------------------------------------------------ */

Test(pgtbl, unmap_callback_order_and_holes)
{
	struct pgtbl pt;
	struct rec r = { 0 };
	static const unsigned int pages[] = { 0, 1, 2, 5, 7, 511 };
	unsigned int i;

	pt_new(&pt, 12, true, 0);
	for (i = 0; i < sizeof(pages) / sizeof(pages[0]); i++)
		cr_assert_eq(pgtbl_map(&pt, pages[i] * SZ_4K, pages[i] * SZ_4K, SZ_4K, RW), 0);
	cr_assert_eq(pgtbl_map(&pt, 2 * SZ_2M, 0, SZ_2M, RW), 0);
	cr_assert_eq(pgtbl_map(&pt, 4 * SZ_2M, 0, SZ_4K, RW), 0);
	cr_assert_eq(pgtbl_unmap(&pt, SZ_4K, 4 * SZ_2M - SZ_4K, rec_cb, &r),
		     (int64_t)(5 * SZ_4K + SZ_2M));
	/* Pages 1 and 2 are adjacent: one run. Then 5, 7, 511, then the block. */
	cr_assert_eq(r.n, 5);
	cr_assert_eq(r.iova[0], SZ_4K);
	cr_assert_eq(r.size[0], 2 * SZ_4K);
	for (i = 1; i < 4; i++) {
		cr_assert_eq(r.iova[i], pages[i + 2] * SZ_4K);
		cr_assert_eq(r.size[i], SZ_4K);
	}
	for (i = 0; i < 4; i++)
		cr_assert_eq(r.pgsize[i], SZ_4K);
	cr_assert_eq(r.iova[4], 2 * SZ_2M);
	cr_assert_eq(r.size[4], SZ_2M);
	cr_assert_eq(r.pgsize[4], SZ_2M);
	expect_leaf(&pt, 0, 0, SZ_4K, RW);
	expect_leaf(&pt, 4 * SZ_2M, 0, SZ_4K, RW);
	/* nothing there: 0 bytes, no callback */
	r.n = 0;
	cr_assert_eq(pgtbl_unmap(&pt, SZ_512G, SZ_512G, rec_cb, &r), 0);
	cr_assert_eq(r.n, 0);
	/* NULL callback */
	cr_assert_eq(pgtbl_unmap(&pt, 0, SZ_1G, NULL, NULL), (int64_t)(2 * SZ_4K));
	pgtbl_fini(&pt);
}

Test(pgtbl, any_mapped_and_lookup)
{
	struct pgtbl pt;
	uint64_t at = 700 * SZ_1G + 3 * SZ_4K;

	pt_new(&pt, 12, true, 0);
	cr_assert(!pgtbl_any_mapped(&pt, 0, IAS_END));
	cr_assert(!pgtbl_any_mapped(&pt, 0, UINT64_MAX));
	cr_assert_eq(pgtbl_map(&pt, at, 0, SZ_4K, RW), 0);
	cr_assert(pgtbl_any_mapped(&pt, 0, IAS_END));
	cr_assert(pgtbl_any_mapped(&pt, 0, UINT64_MAX));
	cr_assert(!pgtbl_any_mapped(&pt, 0, at));
	cr_assert(!pgtbl_any_mapped(&pt, at + SZ_4K, IAS_END - at - SZ_4K));
	cr_assert(pgtbl_any_mapped(&pt, at + SZ_4K - 1, 1));
	cr_assert(pgtbl_any_mapped(&pt, at - 1, 2));
	cr_assert(!pgtbl_any_mapped(&pt, at - 1, 1));
	cr_assert(!pgtbl_any_mapped(&pt, IAS_END, SZ_4K));
	/* 1 TiB of nothing next to it */
	cr_assert(!pgtbl_any_mapped(&pt, SZ_1G * 1024, SZ_1G * 1024));
	cr_assert_eq(pgtbl_map(&pt, 800 * SZ_1G, 0, SZ_1G, RW), 0);
	cr_assert(pgtbl_any_mapped(&pt, 801 * SZ_1G - 1, 1));
	cr_assert(!pgtbl_any_mapped(&pt, 801 * SZ_1G, SZ_1G * 1024));
	expect_none(&pt, at - SZ_4K);
	expect_leaf(&pt, at + 5, 5, SZ_4K, RW);
	pgtbl_fini(&pt);
}

/* ---- randomized differential test --------------------------------------- */

#define W_PAGES		(UINT64_C(2) << 18)		/* 2 GiB of 4 KiB pages */
#define W_BASE		(511 * SZ_1G)			/* crosses a 512 GiB entry */
#define REF_VALID	0x80u

struct ref {
	uint64_t *phys;
	uint8_t *prot; /* REF_VALID | PGTBL_* */
	uint64_t mapped;
};

static uint64_t rng_next(uint64_t *s)
{
	uint64_t z = (*s += UINT64_C(0x9e3779b97f4a7c15));

	z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
	z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
	return z ^ (z >> 31);
}

static inline uint64_t pg_iova(uint64_t p)
{
	return W_BASE + p * SZ_4K;
}

/* Checks each unmap callback against the unmapped range. */
struct cb_check {
	uint64_t start, end, prev_end, sum;
	unsigned int calls;
	bool bad;
};

static void check_cb(void *arg, uint64_t iova, uint64_t len, uint64_t pgsize)
{
	struct cb_check *c = arg;
	uint64_t s, e;

	if ((pgsize != SZ_4K && pgsize != SZ_2M && pgsize != SZ_1G) || (iova & (pgsize - 1)) ||
	    !len || (len & (pgsize - 1)) || iova < c->prev_end || iova >= c->end ||
	    iova + len <= c->start)
		c->bad = true;
	c->prev_end = iova + len;
	s = iova > c->start ? iova : c->start;
	e = iova + len < c->end ? iova + len : c->end;
	if (e > s)
		c->sum += e - s;
	c->calls++;
}

static void ref_check_leaf(const struct ref *ref, uint64_t p, const struct pgtbl_leaf *l)
{
	uint64_t first, last, iova = pg_iova(p);

	cr_assert(l->size == SZ_4K || l->size == SZ_2M || l->size == SZ_1G);
	cr_assert_eq(l->iova, iova & ~(l->size - 1));
	cr_assert_eq(l->phys + (iova - l->iova), ref->phys[p], "phys at page %" PRIu64, p);
	cr_assert_eq(l->prot | REF_VALID, ref->prot[p], "prot at page %" PRIu64, p);
	/* the leaf must be a legitimate merge of reference pages */
	cr_assert_geq(l->iova, W_BASE);
	first = (l->iova - W_BASE) / SZ_4K;
	last = first + l->size / SZ_4K - 1;
	cr_assert_lt(last, W_PAGES);
	cr_assert_eq(ref->prot[first], ref->prot[p]);
	cr_assert_eq(ref->prot[last], ref->prot[p]);
	cr_assert_eq(ref->phys[first], l->phys);
	cr_assert_eq(ref->phys[last], l->phys + l->size - SZ_4K);
}

/* Every page of the window, and the leaf / byte counts. */
static void ref_full_check(const struct pgtbl *pt, const struct ref *ref)
{
	uint64_t p, leaves = 0, mapped = 0;
	struct pgtbl_leaf l;

	for (p = 0; p < W_PAGES; p++) {
		int r = pgtbl_lookup(pt, pg_iova(p), &l);

		if (!(ref->prot[p] & REF_VALID)) {
			cr_assert_eq(r, -ENOENT, "page %" PRIu64 " mapped", p);
			continue;
		}
		cr_assert_eq(r, 0, "page %" PRIu64 " not mapped", p);
		ref_check_leaf(ref, p, &l);
		mapped++;
		if (l.iova == pg_iova(p))
			leaves++;
	}
	cr_assert_eq(mapped, ref->mapped);
	cr_assert_eq(pt->stats.mapped_bytes, mapped * SZ_4K);
	cr_assert_eq(pt->stats.leaves, leaves);
}

static uint64_t ref_count(const struct ref *ref, uint64_t p, uint64_t n)
{
	uint64_t i, c = 0;

	for (i = p; i < p + n; i++)
		c += ref->prot[i] >> 7;
	return c;
}

static void ref_clear(struct ref *ref, uint64_t p, uint64_t n)
{
	ref->mapped -= ref_count(ref, p, n);
	memset(ref->prot + p, 0, n);
}

static void do_unmap(struct pgtbl *pt, struct ref *ref, uint64_t p, uint64_t n)
{
	struct cb_check c = { .start = pg_iova(p), .end = pg_iova(p + n) };
	uint64_t expect = ref_count(ref, p, n) * SZ_4K;
	int64_t r = pgtbl_unmap(pt, pg_iova(p), n * SZ_4K, check_cb, &c);

	cr_assert_eq(r, (int64_t)expect, "unmap %" PRIu64 "+%" PRIu64 ": %" PRId64
		     " != %" PRIu64, p, n, r, expect);
	cr_assert(!c.bad, "bad unmap callback");
	cr_assert_eq(c.sum, expect);
	cr_assert_eq(c.calls == 0, expect == 0);
	ref_clear(ref, p, n);
}

static void do_map(struct pgtbl *pt, struct ref *ref, uint64_t p, uint64_t n, uint64_t phys,
		   unsigned int prot)
{
	bool busy = ref_count(ref, p, n) != 0;
	int r = pgtbl_map(pt, pg_iova(p), phys, n * SZ_4K, prot);
	uint64_t i;

	cr_assert_eq(r, busy ? -EEXIST : 0, "map %" PRIu64 "+%" PRIu64 ": %d", p, n, r);
	if (busy)
		return;
	for (i = 0; i < n; i++) {
		ref->phys[p + i] = phys + i * SZ_4K;
		ref->prot[p + i] = (uint8_t)(prot | REF_VALID);
	}
	ref->mapped += n;
}

static uint64_t pick_len(uint64_t *s, uint64_t p, uint64_t max)
{
	uint64_t n = 1 + rng_next(s) % max;

	return p + n > W_PAGES ? W_PAGES - p : n;
}

static void differential(uint64_t seed, long nops)
{
	struct pgtbl pt;
	struct ref ref = { 0 };
	uint64_t s = seed;
	struct pgtbl_leaf l;
	long op;

	pt_new(&pt, 12, true, 0);
	ref.phys = calloc(W_PAGES, sizeof(*ref.phys));
	ref.prot = calloc(W_PAGES, 1);
	cr_assert(ref.phys && ref.prot);

	for (op = 1; op <= nops; op++) {
		uint64_t r = rng_next(&s), p = rng_next(&s) % W_PAGES, n;
		unsigned int kind = (unsigned int)(r % 100), sub = (unsigned int)(r >> 32) % 16;
		unsigned int prot = (unsigned int)(r >> 8) & (PGTBL_PROT_MASK | PGTBL_PENDING);

		if (kind < 38) {
			uint64_t phys;

			if (sub < 12) {
				/* small, random phys */
				n = pick_len(&s, p, sub < 9 ? 8 : 64);
				phys = (rng_next(&s) % (UINT64_C(1) << 24)) * SZ_4K;
			} else if (sub < 14) {
				/* 2M-aligned, block-sized, 2M-aligned phys */
				p &= ~UINT64_C(511);
				n = pick_len(&s, p, 3) * 512;
				if (p + n > W_PAGES)
					n = W_PAGES - p;
				phys = (rng_next(&s) % (UINT64_C(1) << 15)) * SZ_2M;
			} else {
				/* phys congruent to iova mod 2M: head, blocks, tail */
				n = pick_len(&s, p, 2048);
				phys = (rng_next(&s) % (UINT64_C(1) << 15)) * SZ_2M +
				       (pg_iova(p) & (SZ_2M - 1));
			}
			do_map(&pt, &ref, p, n, phys, prot);
		} else if (kind < 68) {
			if (sub < 10) {
				n = pick_len(&s, p, 16);
			} else if (sub < 15) {
				n = pick_len(&s, p, 1024);
			} else if (rng_next(&s) % 64 == 0) {
				n = pick_len(&s, p, 1 << 17);
			} else {
				p &= ~UINT64_C(511);
				n = pick_len(&s, p, 1024);
			}
			do_unmap(&pt, &ref, p, n);
		} else if (kind < 78) {
			uint64_t lo, hi, i, pend = 0;
			int64_t got;

			n = pick_len(&s, p, sub < 12 ? 16 : 1024);
			/* a leaf straddling an end is published whole */
			lo = p;
			hi = p + n;
			if (!pgtbl_lookup(&pt, pg_iova(p), &l)) {
				ref_check_leaf(&ref, p, &l);
				lo = (l.iova - W_BASE) / SZ_4K;
			}
			if (!pgtbl_lookup(&pt, pg_iova(p + n - 1), &l)) {
				ref_check_leaf(&ref, p + n - 1, &l);
				hi = (l.iova + l.size - W_BASE) / SZ_4K;
			}
			for (i = lo; i < hi; i++) {
				pend += (ref.prot[i] & PGTBL_PENDING) != 0;
				ref.prot[i] &= (uint8_t)~PGTBL_PENDING;
			}
			got = pgtbl_publish(&pt, pg_iova(p), n * SZ_4K);
			cr_assert_geq(got, 0);
			cr_assert_leq((uint64_t)got, pend);
			cr_assert_eq(got == 0, pend == 0);
		} else if (kind < 95) {
			int rc = pgtbl_lookup(&pt, pg_iova(p) + (r >> 40) % SZ_4K, &l);

			if (ref.prot[p] & REF_VALID) {
				cr_assert_eq(rc, 0);
				ref_check_leaf(&ref, p, &l);
			} else {
				cr_assert_eq(rc, -ENOENT);
			}
		} else {
			n = pick_len(&s, p, sub < 12 ? 64 : 4096);
			cr_assert_eq(pgtbl_any_mapped(&pt, pg_iova(p), n * SZ_4K),
				     ref_count(&ref, p, n) != 0);
		}

		if (op % 100000 == 50000) {
			/* rarely: clear one 1 GiB half and map it with one block */
			uint64_t h = (rng_next(&s) % 2) * (W_PAGES / 2);

			do_unmap(&pt, &ref, h, W_PAGES / 2);
			do_map(&pt, &ref, h, W_PAGES / 2, (rng_next(&s) % 64) * SZ_1G,
			       RW | PGTBL_PENDING);
			cr_assert_eq(pgtbl_lookup(&pt, pg_iova(h), &l), 0);
			cr_assert_eq(l.size, SZ_1G);
		}
		if (op % 50000 == 0)
			ref_full_check(&pt, &ref);
	}
	ref_full_check(&pt, &ref);
	cr_assert_gt(pt.stats.block_maps, 0);
	cr_assert_gt(pt.stats.block_splits, 0);

	do_unmap(&pt, &ref, 0, W_PAGES);
	cr_assert_eq(ref.mapped, 0);
	cr_assert_eq(pt.stats.tables, 1);
	cr_assert_eq(pt.stats.table_bytes, 4096);
	cr_assert_eq(pt.stats.leaves, 0);
	cr_assert_eq(pt.stats.mapped_bytes, 0);
	cr_assert_eq(pt.root_nr, 0);
	pgtbl_fini(&pt);
	free(ref.phys);
	free(ref.prot);
}

#define DIFF_OPS 1000000

Test(pgtbl, differential_fixed_seed, .timeout = 600)
{
	differential(UINT64_C(0x5eed1234abcd), DIFF_OPS);
}

Test(pgtbl, differential_env_seed, .timeout = 600)
{
	const char *env = getenv("IOVAD_TEST_SEED");
	uint64_t seed;

	if (env && *env) {
		seed = strtoull(env, NULL, 0);
	} else if (getrandom(&seed, sizeof(seed), 0) != (ssize_t)sizeof(seed)) {
		seed = (uint64_t)time(NULL) ^ ((uint64_t)clock() << 32);
	}
	fprintf(stderr, "pgtbl differential: seed=%" PRIu64 " (rerun with IOVAD_TEST_SEED=%"
		PRIu64 ")\n", seed, seed);
	differential(seed, DIFF_OPS);
}
