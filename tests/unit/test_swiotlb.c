// SPDX-License-Identifier: MIT
/*
 * test_swiotlb.c - the bounce pool on its own: slot placement, padding,
 * copy-back and exhaustion.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <string.h>

#include "swiotlb.h"

#define SZ_4K UINT64_C(0x1000)

static struct pmem_space s;
static struct swiotlb_pool p;
static struct pmem_obj *mem;

static void setup(void)
{
	cr_assert_eq(pmem_space_init(&s), 0);
	cr_assert_eq(swiotlb_init(&p, &s, SZ_4K, 8), 0);
	cr_assert_eq(pmem_obj_create(&s, 16 * SZ_4K, "mem", &mem), 0);
	for (uint64_t i = 0; i < mem->size; i++)
		mem->va[i] = (uint8_t)(i | 1);
}

static void teardown(void)
{
	swiotlb_fini(&p, &s);
	pmem_space_fini(&s);
}

TestSuite(swiotlb, .init = setup, .fini = teardown);

Test(swiotlb, bounce_keeps_offset_zero_pads_and_copies)
{
	uint64_t b;
	uint8_t *va;

	/* Dirty the pool first so zeroing is observable. */
	memset(pmem_va(&s, p.base, 8 * SZ_4K), 0xff, 8 * SZ_4K);
	cr_assert_eq(swiotlb_map(&p, &s, mem->phys + 0x123, 0x40, &b), 0);
	cr_assert(swiotlb_owns(&p, b));
	cr_assert_eq(b & 0xfff, 0x123);
	va = pmem_va(&s, b & ~(SZ_4K - 1), SZ_4K);
	for (uint64_t i = 0; i < SZ_4K; i++) {
		if (i >= 0x123 && i < 0x163)
			cr_assert_eq(va[i], (uint8_t)(i | 1));
		else
			cr_assert_eq(va[i], 0, "padding byte %lu", (unsigned long)i);
	}
	cr_assert_eq(p.stats.slots_used, 1);
	cr_assert_eq(swiotlb_unmap(&p, &s, b + 1, true), -ENOENT, "not a bounce address");
	va[0x123] = 0xab;
	cr_assert_eq(swiotlb_unmap(&p, &s, b, true), 0x40);
	cr_assert_eq(mem->va[0x123], 0xab);
	cr_assert_eq(swiotlb_unmap(&p, &s, b, true), -ENOENT, "already released");
	cr_assert_eq(p.stats.slots_used, 0);
}

Test(swiotlb, multi_slot_and_exhaustion)
{
	uint64_t a, b, c;

	cr_assert_eq(swiotlb_map(&p, &s, mem->phys + 0x800, 5 * SZ_4K, &a), 0);
	cr_assert_eq(p.stats.slots_used, 6);
	cr_assert_eq(swiotlb_map(&p, &s, mem->phys, 2 * SZ_4K + 1, &b), -ENOMEM);
	cr_assert_eq(swiotlb_map(&p, &s, mem->phys, 2 * SZ_4K, &b), 0);
	cr_assert_eq(swiotlb_map(&p, &s, mem->phys, 1, &c), -ENOMEM);
	cr_assert_eq(p.stats.failures, 2);
	cr_assert_eq(p.stats.slots_hwm, 8);
	cr_assert_eq(swiotlb_unmap(&p, &s, a, false), 5 * SZ_4K);
	cr_assert_eq(mem->va[0x800], (uint8_t)(0x800 | 1), "no copy back when not asked");
	cr_assert_eq(swiotlb_map(&p, &s, mem->phys, 1, &c), 0);
	cr_assert_eq(swiotlb_map(&p, &s, mem->phys, SWIOTLB_MAX_MAPPING + 1, &c), -ENOMEM);
	cr_assert_eq(swiotlb_map(&p, &s, mem->phys, 0, &c), -EINVAL);
}
