// SPDX-License-Identifier: MIT
/*
 * test_odp.c - on-demand paging: regions that map nothing until the device
 * faults, the batched fault service, invalidations racing resolves, and the
 * engine pieces under them (dom_iova_upgrade, the latency histogram).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include "fixture.h"
#include "odp.h"

#define RW_ACCESS (ODP_ACCESS_DEVICE_READ | ODP_ACCESS_DEVICE_WRITE)

static struct fx f;

/*
 * The region's backing as a resolve callback sees it: region offset x lives
 * at o->phys + x, except inside [hole_lo, hole_hi). The notifier hook fires
 * odp_invalidate() from inside the resolve, optionally switching the
 * backing first, and then hands back the phys it computed *before* the
 * switch: exactly the stale answer the sequence check must catch.
 */
struct backing {
	struct pmem_obj *o;
	uint64_t hole_lo, hole_hi;
	uint64_t run_max;        /* cap each run (0: as far as the object goes) */
	bool scatter;            /* granule i at the mirror position: nothing merges */
	unsigned int calls;
	struct odp_region *r;
	int fire;                /* notifier firings left; -1 = forever */
	unsigned int fire_at;    /* also fire once on this resolve call */
	struct pmem_obj *next;   /* backing after the first firing */
};

static struct backing B;
static struct odp_region R;

static int bk_resolve(void *arg, uint64_t off, uint64_t *phys, uint64_t *run)
{
	struct backing *b = arg;
	uint64_t size = b->o->size;

	b->calls++;
	if (off >= size || (off >= b->hole_lo && off < b->hole_hi))
		return -EFAULT;
	*phys = b->o->phys + off;
	*run = size - off;
	if (off < b->hole_lo && *run > b->hole_lo - off)
		*run = b->hole_lo - off;
	if (b->run_max && *run > b->run_max)
		*run = b->run_max;
	if (b->scatter) {
		*phys = b->o->phys + (size - SZ_4K - off);
		*run = SZ_4K;
	}
	if (b->fire || b->calls == b->fire_at) {
		if (b->fire > 0)
			b->fire--;
		if (b->next) {
			b->o = b->next;
			b->next = NULL;
		}
		cr_assert_geq(odp_invalidate(b->r, 0, b->r->size), 0);
	}
	return 0;
}

static void setup(void)
{
	fx_setup(&f, (struct dom_config){ 0 }, (struct dom_device_config){ 0 }, 4 * SZ_2M);
	memset(&B, 0, sizeof(B));
	memset(&R, 0, sizeof(R));
	B.o = f.mem;
	B.r = &R;
}

static void teardown(void)
{
	odp_region_fini(&R);
	fx_teardown(&f);
}

TestSuite(odp, .init = setup, .fini = teardown);

static void region(uint64_t size, uint32_t access)
{
	cr_assert_eq(odp_region_init(&R, f.dev, size, access, bk_resolve, &B), 0);
}

static int serve1(const struct odp_config *cfg, struct odp_fault *flt)
{
	return odp_service(cfg, flt, 1);
}

static struct odp_fault fault_at(uint64_t off, uint64_t len, uint32_t access, uint32_t flags)
{
	return (struct odp_fault){ .r = &R, .off = off, .len = len, .access = access,
				   .flags = flags, .status = 12345 };
}

static bool leaf_at(const struct odp_region *r, uint64_t off, struct pgtbl_leaf *l)
{
	return !pgtbl_lookup(&r->dev->dom->pt, r->st.addr + off, l);
}

static bool mapped_at(uint64_t off)
{
	struct pgtbl_leaf l;

	return leaf_at(&R, off, &l);
}

/* The device reads [off, off + len) of R and finds f.mem's pattern there. */
static void expect_pattern(uint64_t off, uint64_t len)
{
	static uint8_t buf[4 * SZ_2M];
	struct dom_fault flt;

	cr_assert_leq(len, sizeof(buf));
	cr_assert_eq(dom_dev_dma_read(f.dev, R.st.addr + off, buf, len, &flt), 0,
		     "read of [%#" PRIx64 ", +%#" PRIx64 ") faulted at offset %#" PRIx64 ": %s",
		     off, len, flt.iova - R.st.addr, dom_fault_reason_str(flt.reason));
	for (uint64_t i = 0; i < len; i++)
		cr_assert_eq(buf[i], fx_byte(0x11, off + i), "byte %#" PRIx64, off + i);
}

static uint32_t read_fault_reason(uint64_t off)
{
	struct dom_fault flt = { 0 };
	uint8_t b;

	cr_assert_eq(dom_dev_dma_read(f.dev, R.st.addr + off, &b, 1, &flt), -EFAULT);
	return flt.reason;
}

/* ---- regions ------------------------------------------------------------- */

Test(odp, region_init_maps_nothing)
{
	struct dom_stats s;

	region(SZ_2M, RW_ACCESS);
	s = fx_stats(&f);
	cr_assert_eq(s.mapped_bytes, 0);
	cr_assert_eq(s.links, 0);
	cr_assert_eq(s.iova_allocs, 1);
	cr_assert(dma_use_iova(&R.st));
	cr_assert_eq(dma_iova_size(&R.st), SZ_2M);
	cr_assert_eq(R.mapped, 0);
	cr_assert_eq(R.access, RW_ACCESS | ODP_ACCESS_LOCAL_READ, "LOCAL_READ implied");
	cr_assert_eq(B.calls, 0, "nothing resolved up front");
	cr_assert(odp_needs_service(&R, 0, 1, DOM_ACCESS_READ));
	cr_assert(odp_needs_service(&R, SZ_2M - 1, 1, DOM_ACCESS_WRITE));
	cr_assert(odp_needs_service(&R, SZ_2M, 1, DOM_ACCESS_READ), "outside: the service says no");
	cr_assert_not(odp_needs_service(&R, 0, 0, DOM_ACCESS_READ));
	cr_assert_eq(read_fault_reason(0), DOM_FAULT_NOT_PRESENT);
}

Test(odp, region_init_errors)
{
	struct dom_domain *id;
	struct dom_device *idev, *small;
	struct odp_region r2;

	cr_assert_eq(odp_region_init(&r2, f.dev, 0, RW_ACCESS, bk_resolve, &B), -EINVAL);
	cr_assert_eq(odp_region_init(&r2, f.dev, SZ_4K + 1, RW_ACCESS, bk_resolve, &B), -EINVAL);
	cr_assert_eq(odp_region_init(&r2, f.dev, SZ_4K, 0x8, bk_resolve, &B), -EINVAL);
	cr_assert_eq(odp_region_init(&r2, f.dev, SZ_4K, RW_ACCESS, NULL, &B), -EINVAL);

	cr_assert_eq(dom_domain_create(&f.pmem, &(struct dom_config){ .type = DOM_IDENTITY }, &id),
		     0);
	cr_assert_eq(dom_device_create(id, &(struct dom_device_config){ .name = "id0" }, &idev), 0);
	cr_assert_eq(odp_region_init(&r2, idev, SZ_64K, RW_ACCESS, bk_resolve, &B), -EOPNOTSUPP);
	dom_device_destroy(idev);
	cr_assert_eq(dom_domain_destroy(id), 0);

	/* A 16-bit device has 64 KiB of IOVA minus pfn 0: 1 MiB cannot fit. */
	cr_assert_eq(dom_device_create(f.dom, &(struct dom_device_config){
		.name = "tiny", .dma_mask_bits = 16, .not_pci = true }, &small), 0);
	cr_assert_eq(odp_region_init(&r2, small, SZ_2M / 2, RW_ACCESS, bk_resolve, &B), -ENOSPC);
	dom_device_destroy(small);
	odp_region_fini(NULL);
}

Test(odp, device_read_faults_then_succeeds_after_service)
{
	struct odp_fault flt;
	struct dom_stats s0, s1;

	region(SZ_2M, RW_ACCESS);
	cr_assert_eq(read_fault_reason(0x5123), DOM_FAULT_NOT_PRESENT);
	s0 = fx_stats(&f);
	flt = fault_at(0x5123, 100, DOM_ACCESS_READ, 0);
	cr_assert_eq(serve1(NULL, &flt), 1, "one flush");
	s1 = fx_stats(&f);
	cr_assert_eq(flt.status, 0);
	cr_assert_eq(flt.pages, 16, "the default 64 KiB window");
	expect_pattern(0x5123, 100);
	expect_pattern(0, SZ_64K);
	cr_assert_not(odp_needs_service(&R, 0, SZ_64K, DOM_ACCESS_READ));
	cr_assert(odp_needs_service(&R, 0, SZ_64K + 1, DOM_ACCESS_READ));
	cr_assert(odp_needs_service(&R, 0, 1, DOM_ACCESS_WRITE), "mapped read-only");
	cr_assert_eq(R.mapped, SZ_64K);
	cr_assert_eq(s1.mapped_bytes, SZ_64K);
	cr_assert_eq(s1.flush_sync_map - s0.flush_sync_map, 1);
	cr_assert_eq(s1.syncs - s0.syncs, 1);
	cr_assert_eq(R.cnt.page_faults, 16);
	cr_assert_eq(R.cnt.page_faults_handled, 1);
	cr_assert_eq(R.cnt.page_prefetch, 0);
	cr_assert_eq(R.cnt.populated, 16);
	cr_assert_eq(R.cnt.syncs, 1);
	cr_assert_eq(R.cnt.flushes, 1);
	cr_assert_eq(R.cnt.fault_errors, 0);
	cr_assert(pmem_resident(&f.pmem, f.mem->phys, SZ_64K));

	/* Served again: nothing left to do, no flush. */
	flt = fault_at(0x5123, 100, DOM_ACCESS_READ, 0);
	cr_assert_eq(serve1(NULL, &flt), 0);
	cr_assert_eq(flt.status, 0);
	cr_assert_eq(flt.pages, 0);
	cr_assert_eq(R.cnt.page_faults_handled, 2);
	cr_assert_eq(fx_stats(&f).flush_sync_map, s1.flush_sync_map);
}

/* ---- the fault-around window --------------------------------------------- */

static void expect_window(uint64_t lo, uint64_t hi, uint64_t size)
{
	for (uint64_t off = 0; off < size; off += SZ_4K)
		cr_assert_eq(mapped_at(off), off >= lo && off < hi,
			     "granule %#" PRIx64 " vs window [%#" PRIx64 ", %#" PRIx64 ")", off, lo,
			     hi);
}

Test(odp, window_aligned_and_clipped)
{
	const uint64_t size = 0x28000; /* 160 KiB: the last 64 KiB window is cut */
	struct odp_fault flt;

	region(size, RW_ACCESS);
	flt = fault_at(0x13000, 0x100, DOM_ACCESS_READ, 0);
	serve1(NULL, &flt);
	cr_assert_eq(flt.pages, 16);
	expect_window(0x10000, 0x20000, size);

	/* At the region's end the window stops at the end. */
	flt = fault_at(0x27800, 0x10, DOM_ACCESS_READ, 0);
	serve1(NULL, &flt);
	cr_assert_eq(flt.status, 0);
	cr_assert_eq(flt.pages, 8);
	expect_window(0x10000, 0x28000, size);
	odp_invalidate(&R, 0, size);

	/* A fault straddling two windows gets both. */
	flt = fault_at(0xf000, 0x2000, DOM_ACCESS_READ, 0);
	serve1(NULL, &flt);
	cr_assert_eq(flt.pages, 32);
	expect_window(0, 0x20000, size);
	odp_invalidate(&R, 0, size);

	/* EXACT: the faulting granules only, rounded out. */
	flt = fault_at(0x3fff, 0x1002, DOM_ACCESS_READ, ODP_FAULT_EXACT);
	serve1(NULL, &flt);
	cr_assert_eq(flt.pages, 3);
	expect_window(0x3000, 0x6000, size);
	odp_invalidate(&R, 0, size);

	/* Window 0 means the granule; 16 KiB windows align to 16 KiB. */
	flt = fault_at(0x5001, 1, DOM_ACCESS_READ, 0);
	serve1(&(struct odp_config){ .window = 0 }, &flt);
	cr_assert_eq(flt.pages, 1);
	expect_window(0x5000, 0x6000, size);
	odp_invalidate(&R, 0, size);
	flt = fault_at(0x6000, 1, DOM_ACCESS_READ, 0);
	serve1(&(struct odp_config){ .window = SZ_16K }, &flt);
	expect_window(0x4000, 0x8000, size);
	odp_invalidate(&R, 0, size);

	/* A window past the region covers it all; a bad one is rounded down. */
	flt = fault_at(0x1000, 1, DOM_ACCESS_READ, 0);
	serve1(&(struct odp_config){ .window = ODP_WINDOW_MAX }, &flt);
	cr_assert_eq(flt.pages, size / SZ_4K);
	odp_invalidate(&R, 0, size);
	flt = fault_at(0x9000, 1, DOM_ACCESS_READ, 0);
	serve1(&(struct odp_config){ .window = 48 << 10 }, &flt);
	expect_window(0x8000, 0x10000, size);
}

Test(odp, fault_around_skips_holes_but_the_fault_itself_needs_backing)
{
	struct odp_fault flt;

	region(SZ_2M, RW_ACCESS);
	B.hole_lo = 0x2000;
	B.hole_hi = 0x4000;
	flt = fault_at(0x5000, 8, DOM_ACCESS_READ, 0);
	serve1(NULL, &flt);
	cr_assert_eq(flt.status, 0);
	cr_assert_eq(flt.pages, 14);
	cr_assert_not(mapped_at(0x2000));
	cr_assert_not(mapped_at(0x3000));
	cr_assert(mapped_at(0x1000));
	cr_assert(mapped_at(0x4000));
	cr_assert(mapped_at(0xf000));
	expect_pattern(0x4000, 0xc000);

	flt = fault_at(0x3ff0, 0x20, DOM_ACCESS_READ, 0);
	serve1(NULL, &flt);
	cr_assert_eq(flt.status, -EFAULT, "no backing where the device asked");
	cr_assert_eq(R.cnt.fault_errors, 1);
	cr_assert_eq(R.cnt.page_faults_handled, 1);

	/* A prefetch just skips what has no backing. */
	flt = fault_at(0x2000, SZ_16K, DOM_ACCESS_READ, ODP_FAULT_PREFETCH | ODP_FAULT_EXACT);
	B.hole_hi = 0x3000;
	serve1(NULL, &flt);
	cr_assert_eq(flt.status, 0);
	cr_assert_eq(flt.pages, 1);
	cr_assert(mapped_at(0x3000));
	cr_assert_eq(R.cnt.page_prefetch, 1);
	cr_assert_eq(R.cnt.page_faults_handled, 1, "a prefetch is not a fault");
}

/* ---- rights and errors ---------------------------------------------------- */

Test(odp, rights_and_argument_errors)
{
	struct odp_fault flt;
	struct pgtbl_leaf l;
	struct dom_fault df;
	uint8_t b = 0x42;

	region(SZ_2M, ODP_ACCESS_DEVICE_READ);
	flt = fault_at(0, 1, DOM_ACCESS_WRITE, 0);
	cr_assert_eq(serve1(NULL, &flt), 0);
	cr_assert_eq(flt.status, -EFAULT, "no DEVICE_WRITE");
	cr_assert_eq(flt.pages, 0);
	cr_assert_eq(R.cnt.fault_errors, 1);
	cr_assert_eq(fx_stats(&f).mapped_bytes, 0);
	flt = fault_at(SZ_2M - 1, 2, DOM_ACCESS_READ, 0);
	serve1(NULL, &flt);
	cr_assert_eq(flt.status, -EFAULT, "runs off the region");
	flt = fault_at(SZ_2M, 1, DOM_ACCESS_READ, 0);
	serve1(NULL, &flt);
	cr_assert_eq(flt.status, -EFAULT);
	flt = fault_at(0, 0, DOM_ACCESS_READ, 0);
	serve1(NULL, &flt);
	cr_assert_eq(flt.status, -EINVAL);
	flt = fault_at(0, 1, 3, 0);
	serve1(NULL, &flt);
	cr_assert_eq(flt.status, -EINVAL);
	cr_assert_eq(R.cnt.fault_errors, 5);
	flt = (struct odp_fault){ .r = NULL, .len = 1, .access = DOM_ACCESS_READ };
	serve1(NULL, &flt);
	cr_assert_eq(flt.status, -EINVAL);
	odp_region_fini(&R);

	/* Write-only: reads refused, writes map write-only (FROM_DEVICE). */
	region(SZ_2M, ODP_ACCESS_DEVICE_WRITE);
	flt = fault_at(0, 1, DOM_ACCESS_READ, 0);
	serve1(NULL, &flt);
	cr_assert_eq(flt.status, -EFAULT, "no DEVICE_READ");
	flt = fault_at(0, 1, DOM_ACCESS_WRITE, 0);
	serve1(NULL, &flt);
	cr_assert_eq(flt.status, 0);
	cr_assert(leaf_at(&R, 0, &l));
	cr_assert_eq(l.prot & (PGTBL_READ | PGTBL_WRITE), PGTBL_WRITE);
	cr_assert_eq(dom_dev_dma_write(f.dev, R.st.addr + 7, &b, 1, &df), 0);
	cr_assert_eq(f.mem->va[7], 0x42);
	cr_assert_eq(dom_dev_dma_read(f.dev, R.st.addr + 7, &b, 1, &df), -EFAULT);
	cr_assert_eq(df.reason, DOM_FAULT_PERMISSION);
}

Test(odp, write_only_region_on_a_from_device_rw_domain_maps_read_too)
{
	struct odp_fault flt;
	struct pgtbl_leaf l;

	fx_teardown(&f);
	fx_setup(&f, (struct dom_config){ .from_device_rw = true }, (struct dom_device_config){ 0 },
		 SZ_2M);
	B.o = f.mem;
	region(SZ_2M, ODP_ACCESS_DEVICE_WRITE);
	flt = fault_at(0, 1, DOM_ACCESS_WRITE, 0);
	serve1(NULL, &flt);
	cr_assert_eq(flt.status, 0);
	cr_assert(leaf_at(&R, 0, &l));
	cr_assert_eq(l.prot & (PGTBL_READ | PGTBL_WRITE), PGTBL_READ | PGTBL_WRITE);
}

/* ---- permission upgrades ---------------------------------------------------- */

static void upgrade_in_place(enum odp_sync_mode mode)
{
	struct odp_config cfg = { .sync = mode, .window = ODP_WINDOW_DEFAULT };
	struct odp_fault flt;
	struct pgtbl_leaf l0, l1;
	struct dom_stats s0, s1;
	struct dom_fault df;
	uint8_t w[3] = { 0xa1, 0xa2, 0xa3 }, rb[3];

	region(SZ_2M, RW_ACCESS);
	flt = fault_at(0x2000, 16, DOM_ACCESS_READ, 0);
	serve1(&cfg, &flt);
	cr_assert_eq(flt.status, 0);
	cr_assert(leaf_at(&R, 0x2000, &l0));
	cr_assert_eq(l0.prot & (PGTBL_READ | PGTBL_WRITE), PGTBL_READ, "read faults map read-only");
	expect_pattern(0x2000, 16); /* and leaves the translation in the IOTLB */
	cr_assert_eq(dom_dev_dma_write(f.dev, R.st.addr + 0x2004, w, 3, &df), -EFAULT);
	cr_assert_eq(df.reason, DOM_FAULT_PERMISSION);
	cr_assert(odp_needs_service(&R, 0x2004, 3, DOM_ACCESS_WRITE));

	s0 = fx_stats(&f);
	flt = fault_at(0x2004, 3, DOM_ACCESS_WRITE, 0);
	serve1(&cfg, &flt);
	s1 = fx_stats(&f);
	cr_assert_eq(flt.status, 0);
	cr_assert_eq(flt.pages, 16);
	cr_assert_eq(R.cnt.perm_upgrades, 16);
	cr_assert_eq(R.cnt.page_faults, 32);
	cr_assert_eq(s1.unlinks, s0.unlinks, "no unlink");
	cr_assert_eq(s1.links, s0.links, "no link");
	cr_assert_eq(R.mapped, SZ_64K);
	cr_assert(leaf_at(&R, 0x2000, &l1));
	cr_assert_eq(l1.phys, l0.phys, "the same page");
	cr_assert_eq(l1.prot & (PGTBL_READ | PGTBL_WRITE), PGTBL_READ | PGTBL_WRITE);
	cr_assert_not(odp_needs_service(&R, 0, SZ_64K, DOM_ACCESS_WRITE));
	if (mode == ODP_SYNC_BATCH)
		cr_assert_eq(s1.flush_sync_map - s0.flush_sync_map, 1);
	else
		cr_assert_eq(s1.flush_sync_map - s0.flush_sync_map, 16, "one per granule");

	cr_assert_eq(dom_dev_dma_write(f.dev, R.st.addr + 0x2004, w, 3, &df), 0,
		     "stale read-only IOTLB entry: %s", dom_fault_reason_str(df.reason));
	cr_assert_eq(dom_dev_dma_read(f.dev, R.st.addr + 0x2004, rb, 3, &df), 0);
	cr_assert_eq(memcmp(rb, w, 3), 0);
	cr_assert_eq(f.mem->va[0x2005], 0xa2, "written through to the backing");
	expect_pattern(0x2000, 4);
	expect_pattern(0x2007, SZ_64K - 0x2007);
}

Test(odp, read_maps_read_only_write_upgrades_in_place)
{
	upgrade_in_place(ODP_SYNC_BATCH);
}

Test(odp, upgrade_in_place_per_page)
{
	upgrade_in_place(ODP_SYNC_PER_PAGE);
}

Test(odp, write_fault_maps_writable_at_once)
{
	struct odp_fault flt;
	uint8_t b = 9;

	region(SZ_2M, RW_ACCESS);
	flt = fault_at(0x30000, 1, DOM_ACCESS_WRITE, 0);
	serve1(NULL, &flt);
	cr_assert_eq(flt.pages, 16);
	cr_assert_eq(R.cnt.perm_upgrades, 0);
	cr_assert_eq(dom_dev_dma_write(f.dev, R.st.addr + 0x30000, &b, 1, NULL), 0);
	expect_pattern(0x30001, 0x100);
}

/* ---- batching ---------------------------------------------------------------- */

Test(odp, batch_costs_one_flush_per_domain)
{
	struct odp_fault flt[9];
	struct dom_stats s0, s1;
	uint64_t pages = 0;

	region(SZ_2M, RW_ACCESS);
	for (int i = 0; i < 8; i++)
		flt[i] = fault_at((uint64_t)i * 0x40000 + 0x1234, 64, DOM_ACCESS_READ, 0);
	/* A write on a window an earlier fault of the batch mapped read-only. */
	flt[8] = fault_at(0x1000, 1, DOM_ACCESS_WRITE, 0);
	s0 = fx_stats(&f);
	cr_assert_eq(odp_service(NULL, flt, 9), 1);
	s1 = fx_stats(&f);
	for (int i = 0; i < 9; i++) {
		cr_assert_eq(flt[i].status, 0);
		pages += flt[i].pages;
	}
	cr_assert_eq(flt[8].pages, 16, "upgraded");
	cr_assert_eq(pages, 9 * 16);
	cr_assert_eq(s1.flush_sync_map - s0.flush_sync_map, 1);
	cr_assert_eq(s1.iotlb_flushes - s0.iotlb_flushes, 1);
	cr_assert_eq(s1.syncs - s0.syncs, 9, "one sync per fault");
	cr_assert_eq(R.cnt.syncs, 9);
	cr_assert_eq(R.cnt.flushes, 1);
	cr_assert_eq(R.cnt.page_faults, 9 * 16);
	cr_assert_eq(R.cnt.page_faults_handled, 9);
	cr_assert_eq(R.cnt.perm_upgrades, 16);
	cr_assert_eq(f.dom->batch_depth, 0, "batch closed");
	for (int i = 0; i < 8; i++)
		expect_pattern((uint64_t)i * 0x40000, SZ_64K);
}

Test(odp, per_page_costs_one_flush_per_page)
{
	struct odp_config cfg = { .sync = ODP_SYNC_PER_PAGE, .window = ODP_WINDOW_DEFAULT };
	struct odp_fault flt[4];
	struct dom_stats s0, s1;
	int ret;

	region(SZ_2M, RW_ACCESS);
	for (int i = 0; i < 4; i++)
		flt[i] = fault_at((uint64_t)i * 0x80000, 8, DOM_ACCESS_READ, 0);
	s0 = fx_stats(&f);
	ret = odp_service(&cfg, flt, 4);
	s1 = fx_stats(&f);
	cr_assert_eq(ret, 64);
	cr_assert_eq(s1.flush_sync_map - s0.flush_sync_map, 64);
	cr_assert_eq(s1.syncs - s0.syncs, 64);
	cr_assert_eq(s1.links - s0.links, 64);
	cr_assert_eq(R.cnt.flushes, 64);
	cr_assert_eq(R.cnt.syncs, 64);
	cr_assert_eq(R.cnt.page_faults, 64);
	for (int i = 0; i < 4; i++)
		expect_pattern((uint64_t)i * 0x80000, SZ_64K);
}

Test(odp, batch_over_two_domains_flushes_each_once)
{
	struct dom_domain *d2;
	struct dom_device *dev2;
	struct odp_region r2;
	struct backing b2 = { 0 };
	struct odp_fault flt[4];

	cr_assert_eq(dom_domain_create(&f.pmem, &(struct dom_config){ .clock = fx_clock,
		.clock_arg = &f }, &d2), 0);
	cr_assert_eq(dom_device_create(d2, &(struct dom_device_config){ .name = "dev1" }, &dev2),
		     0);
	b2.o = f.mem;
	b2.r = &r2;
	region(SZ_2M, RW_ACCESS);
	cr_assert_eq(odp_region_init(&r2, dev2, SZ_2M, RW_ACCESS, bk_resolve, &b2), 0);
	flt[0] = fault_at(0, 1, DOM_ACCESS_READ, 0);
	flt[1] = (struct odp_fault){ .r = &r2, .off = 0x100000, .len = 1,
				     .access = DOM_ACCESS_WRITE };
	flt[2] = fault_at(0x100000, 1, DOM_ACCESS_READ, 0);
	flt[3] = (struct odp_fault){ .r = &r2, .off = 0, .len = 1, .access = DOM_ACCESS_READ };
	cr_assert_eq(odp_service(NULL, flt, 4), 2);
	for (int i = 0; i < 4; i++)
		cr_assert_eq(flt[i].status, 0);
	cr_assert_eq(R.cnt.flushes, 1);
	cr_assert_eq(r2.cnt.flushes, 1);
	cr_assert_eq(d2->stats.flush_sync_map, 1);
	cr_assert_eq(f.dom->stats.flush_sync_map, 1);
	odp_region_fini(&r2);
	cr_assert_eq(d2->pt.stats.mapped_bytes, 0);
	dom_device_destroy(dev2);
	cr_assert_eq(dom_domain_destroy(d2), 0);
}

Test(odp, scattered_backing_links_in_chunks)
{
	struct odp_fault flt;
	struct pgtbl_leaf l;

	/* 256 runs of one granule each: far more than one pass keeps. */
	region(SZ_2M, RW_ACCESS);
	B.scatter = true;
	flt = fault_at(0, 1, DOM_ACCESS_READ, 0);
	cr_assert_eq(serve1(&(struct odp_config){ .window = SZ_2M / 2 }, &flt), 1);
	cr_assert_eq(flt.status, 0);
	cr_assert_eq(flt.pages, 256);
	cr_assert_eq(R.cnt.syncs, 1);
	for (uint64_t off = 0; off < SZ_2M / 2; off += SZ_4K) {
		cr_assert(leaf_at(&R, off, &l));
		cr_assert_eq(l.phys, f.mem->phys + f.mem->size - SZ_4K - off);
	}
	cr_assert_not(mapped_at(SZ_2M / 2));
}

Test(odp, contiguous_backing_gets_a_block)
{
	struct odp_fault flt;
	struct pgtbl_leaf l;

	region(2 * SZ_2M, RW_ACCESS);
	flt = fault_at(0x1000, 1, DOM_ACCESS_READ, 0);
	serve1(&(struct odp_config){ .window = SZ_2M }, &flt);
	cr_assert_eq(flt.pages, 512);
	cr_assert(leaf_at(&R, 0, &l));
	cr_assert_eq(l.size, SZ_2M, "2 MiB-aligned IOVA and phys");
	/* A partial invalidation splits it and keeps the rest. */
	cr_assert_eq(odp_invalidate(&R, 0x3000, 0x1000), 1);
	cr_assert_not(mapped_at(0x3000));
	expect_pattern(0x4000, SZ_2M - 0x4000);
	expect_pattern(0, 0x3000);
	cr_assert_eq(R.mapped, SZ_2M - SZ_4K);
}

Test(odp, invalidate_falls_back_to_whole_block_when_split_is_refused)
{
	struct odp_fault flt;

	/* Root + two tables reach the 2 MiB block; a split needs a fourth. */
	fx_teardown(&f);
	fx_setup(&f, (struct dom_config){ .max_table_bytes = 3 * SZ_4K },
		 (struct dom_device_config){ 0 }, 4 * SZ_2M);
	B.o = f.mem;
	region(2 * SZ_2M, RW_ACCESS);
	flt = fault_at(0, 1, DOM_ACCESS_READ, ODP_FAULT_EXACT);
	flt.len = SZ_2M;
	serve1(NULL, &flt);
	cr_assert_eq(flt.status, 0);
	cr_assert_eq(odp_invalidate(&R, 0x3000, 0x1000), 512, "the whole block went");
	cr_assert_eq(fx_stats(&f).mapped_bytes, 0);
	cr_assert_eq(R.mapped, 0);
	cr_assert_eq(R.cnt.page_invalidations, 512);
	cr_assert_eq(read_fault_reason(0x3000), DOM_FAULT_NOT_PRESENT);
}

/* ---- invalidation ------------------------------------------------------------ */

Test(odp, invalidate_unmaps_bumps_seq_and_refaults)
{
	struct odp_fault flt[2];
	struct dom_stats s0;
	uint64_t seq;

	region(SZ_2M, RW_ACCESS);
	flt[0] = fault_at(0, 1, DOM_ACCESS_READ, 0);
	flt[1] = fault_at(SZ_64K, 1, DOM_ACCESS_READ, 0);
	odp_service(NULL, flt, 2);
	cr_assert_eq(R.mapped, 2 * SZ_64K);
	seq = R.seq;
	s0 = fx_stats(&f);
	cr_assert_eq(odp_invalidate(&R, 0x8000, SZ_64K), 16);
	cr_assert_eq(R.seq, seq + 1);
	cr_assert_eq(R.mapped, SZ_64K);
	cr_assert_eq(fx_stats(&f).mapped_bytes, SZ_64K);
	cr_assert_eq(fx_stats(&f).flush_range - s0.flush_range, 1, "one gathered flush");
	cr_assert_eq(R.cnt.page_invalidations, 16);
	cr_assert_eq(R.cnt.page_invalidations_handled, 1);
	cr_assert_eq(read_fault_reason(0x8000), DOM_FAULT_NOT_PRESENT);
	cr_assert_eq(read_fault_reason(SZ_64K + 0x7fff), DOM_FAULT_NOT_PRESENT);
	expect_pattern(0, 0x8000);
	expect_pattern(SZ_64K + 0x8000, 0x8000);

	/* Nothing mapped there: 0 pages, but resolves in flight must still retry. */
	cr_assert_eq(odp_invalidate(&R, 0x100000, SZ_64K), 0);
	cr_assert_eq(R.seq, seq + 2);
	cr_assert_eq(R.cnt.page_invalidations_handled, 2);
	/* Unaligned: whole granules. */
	cr_assert_eq(odp_invalidate(&R, 0x1800, 0x10), 1);
	cr_assert_eq(odp_invalidate(&R, SZ_2M, 1), -EINVAL);
	cr_assert_eq(odp_invalidate(&R, SZ_2M - 1, 2), -EINVAL);
	cr_assert_eq(odp_invalidate(&R, 0, 0), -EINVAL);
	cr_assert_eq(R.cnt.page_invalidations_handled, 3);

	flt[0] = fault_at(0x8000, 1, DOM_ACCESS_READ, 0);
	odp_service(NULL, flt, 1);
	cr_assert_eq(flt[0].pages, 9, "0x1000 and 0x8000..0xffff");
	expect_pattern(0, SZ_64K);
	expect_pattern(SZ_64K + 0x8000, 0x8000);
	cr_assert_eq(read_fault_reason(SZ_64K), DOM_FAULT_NOT_PRESENT, "not this fault's window");
}

/* ---- the notifier race ------------------------------------------------------- */

Test(odp, invalidation_during_resolve_retries_and_maps_the_new_backing)
{
	struct pmem_obj *o2;
	struct odp_fault flt;
	struct pgtbl_leaf l;
	uint8_t buf[64];

	cr_assert_eq(pmem_obj_create(&f.pmem, SZ_2M, "new", &o2), 0);
	fx_pattern(o2, 0x99);
	region(SZ_2M, RW_ACCESS);
	/* Something is already mapped, so the invalidation has work to do too. */
	flt = fault_at(SZ_64K, 1, DOM_ACCESS_READ, 0);
	serve1(NULL, &flt);
	cr_assert_eq(R.mapped, SZ_64K);

	B.fire = 1;
	B.next = o2;
	flt = fault_at(0x40, 64, DOM_ACCESS_READ, 0);
	serve1(NULL, &flt);
	cr_assert_eq(flt.status, 0);
	cr_assert_geq(R.cnt.fault_retries, 1);
	cr_assert_eq(R.cnt.page_invalidations, 16);
	cr_assert_eq(B.o, o2);
	for (uint64_t off = 0; off < SZ_64K; off += SZ_4K) {
		cr_assert(leaf_at(&R, off, &l));
		cr_assert_eq(l.phys, o2->phys + off, "stale phys at %#" PRIx64, off);
	}
	cr_assert_not(mapped_at(SZ_64K), "the invalidation removed the old window");
	cr_assert_eq(R.mapped, SZ_64K);
	cr_assert_eq(dom_dev_dma_read(f.dev, R.st.addr + 0x40, buf, 64, NULL), 0);
	for (int i = 0; i < 64; i++)
		cr_assert_eq(buf[i], fx_byte(0x99, 0x40 + (uint64_t)i));
}

Test(odp, invalidation_after_a_chunk_is_linked_restarts_the_window)
{
	struct odp_fault flt;
	struct pgtbl_leaf l;

	/*
	 * 64 scattered granules: the first pass links 32 of them; the notifier
	 * fires during the second pass's first resolve and removes those. The
	 * retry must start over from the window's start, not where it was.
	 */
	region(SZ_2M, RW_ACCESS);
	B.scatter = true;
	B.fire_at = 33;
	flt = fault_at(0, 1, DOM_ACCESS_READ, 0);
	serve1(&(struct odp_config){ .window = SZ_2M / 8 }, &flt);
	cr_assert_eq(flt.status, 0);
	cr_assert_eq(R.cnt.fault_retries, 1);
	cr_assert_eq(R.cnt.page_invalidations, 32);
	cr_assert_eq(flt.pages, 32 + 64, "pages linked, the first 32 twice");
	for (uint64_t off = 0; off < SZ_2M / 8; off += SZ_4K) {
		cr_assert(leaf_at(&R, off, &l), "hole at %#" PRIx64, off);
		cr_assert_eq(l.phys, f.mem->phys + f.mem->size - SZ_4K - off);
	}
	cr_assert_eq(R.mapped, SZ_2M / 8);
}

Test(odp, a_fault_failing_half_way_publishes_what_it_linked)
{
	struct odp_fault flt;
	struct pgtbl_leaf l;
	uint8_t b;

	/* The first pass links 32 scattered granules; the second hits the hole. */
	region(SZ_2M, RW_ACCESS);
	B.scatter = true;
	B.hole_lo = 40 * SZ_4K;
	B.hole_hi = 41 * SZ_4K;
	flt = fault_at(40 * SZ_4K, 1, DOM_ACCESS_READ, 0);
	cr_assert_eq(serve1(&(struct odp_config){ .window = SZ_2M / 8 }, &flt), 1);
	cr_assert_eq(flt.status, -EFAULT);
	cr_assert_eq(flt.pages, 32);
	cr_assert_eq(R.cnt.fault_errors, 1);
	cr_assert_eq(R.cnt.page_faults, 32);
	for (uint64_t off = 0; off < 32 * SZ_4K; off += SZ_4K) {
		cr_assert(leaf_at(&R, off, &l));
		cr_assert_eq(l.prot & PGTBL_PENDING, 0, "left unpublished at %#" PRIx64, off);
	}
	cr_assert_not(mapped_at(32 * SZ_4K), "nothing from the failed pass");
	cr_assert_eq(dom_dev_dma_read(f.dev, R.st.addr + 31 * SZ_4K, &b, 1, NULL), 0);
	cr_assert_eq(b, fx_byte(0x11, f.mem->size - 32 * SZ_4K));
}

Test(odp, invalidation_on_every_resolve_gives_eagain)
{
	struct odp_fault flt;

	region(SZ_2M, RW_ACCESS);
	B.fire = -1;
	flt = fault_at(0, 1, DOM_ACCESS_READ, 0);
	cr_assert_eq(serve1(NULL, &flt), 0);
	cr_assert_eq(flt.status, -EAGAIN);
	cr_assert_eq(flt.pages, 0);
	cr_assert_eq(R.cnt.fault_retries, ODP_MAX_RETRIES + 1);
	cr_assert_eq(R.cnt.fault_errors, 1);
	cr_assert_eq(R.cnt.page_faults_handled, 0);
	cr_assert_eq(fx_stats(&f).mapped_bytes, 0, "nothing stale installed");
	cr_assert_eq(R.mapped, 0);
}

/* ---- discard and residency --------------------------------------------------- */

Test(odp, discard_reads_zero_and_refaults_as_zero)
{
	struct odp_fault flt;
	uint8_t buf[SZ_4K];

	region(SZ_2M, RW_ACCESS);
	flt = fault_at(0, 1, DOM_ACCESS_READ, 0);
	serve1(NULL, &flt);
	expect_pattern(0, SZ_64K);
	cr_assert_eq(pmem_discard(&f.pmem, f.mem->phys + 0x3000, SZ_4K), 0);
	cr_assert_not(pmem_resident(&f.pmem, f.mem->phys + 0x3000, SZ_4K));
	/* Same shared memory: no stale copy even before the invalidation. */
	cr_assert_eq(dom_dev_dma_read(f.dev, R.st.addr + 0x3000, buf, SZ_4K, NULL), 0);
	for (uint64_t i = 0; i < SZ_4K; i++)
		cr_assert_eq(buf[i], 0);
	cr_assert_eq(pmem_discard(&f.pmem, f.mem->phys + 0x3000, SZ_4K), 0);
	cr_assert_eq(odp_invalidate(&R, 0x3000, SZ_4K), 1);
	cr_assert_eq(read_fault_reason(0x3000), DOM_FAULT_NOT_PRESENT);
	flt = fault_at(0x3000, 8, DOM_ACCESS_READ, 0);
	serve1(NULL, &flt);
	cr_assert_eq(flt.pages, 1);
	cr_assert(pmem_resident(&f.pmem, f.mem->phys + 0x3000, SZ_4K), "populated");
	memset(buf, 0xff, sizeof(buf));
	cr_assert_eq(dom_dev_dma_read(f.dev, R.st.addr + 0x3000, buf, SZ_4K, NULL), 0);
	for (uint64_t i = 0; i < SZ_4K; i++)
		cr_assert_eq(buf[i], 0);
	expect_pattern(0x4000, SZ_64K - 0x4000);
}

Test(odp, prefetch_no_fault_skips_what_is_not_resident)
{
	struct odp_fault flt;

	region(SZ_2M, RW_ACCESS);
	cr_assert_eq(pmem_discard(&f.pmem, f.mem->phys + 0x2000, 2 * SZ_4K), 0);
	flt = fault_at(0, 8 * SZ_4K, DOM_ACCESS_READ,
		       ODP_FAULT_PREFETCH | ODP_FAULT_NO_POPULATE | ODP_FAULT_EXACT);
	serve1(NULL, &flt);
	cr_assert_eq(flt.status, 0);
	cr_assert_eq(flt.pages, 6);
	cr_assert_eq(R.cnt.page_prefetch, 6);
	cr_assert_eq(R.cnt.page_faults, 0);
	cr_assert_eq(R.cnt.page_faults_handled, 0);
	cr_assert_eq(R.cnt.populated, 0);
	cr_assert_not(mapped_at(0x2000));
	cr_assert_not(mapped_at(0x3000));
	cr_assert(mapped_at(0x4000));
	cr_assert_not(mapped_at(0x8000), "EXACT: no window");
	cr_assert_not(pmem_resident(&f.pmem, f.mem->phys + 0x2000, SZ_4K), "not populated");
	expect_pattern(0, 0x2000);

	/* A real fault populates them (as zeros). */
	flt = fault_at(0x2000, 1, DOM_ACCESS_READ, 0);
	serve1(NULL, &flt);
	cr_assert_eq(flt.pages, 10);
	cr_assert(pmem_resident(&f.pmem, f.mem->phys + 0x2000, 2 * SZ_4K));
	cr_assert_eq(R.cnt.populated, 10);
}

/* ---- fini ---------------------------------------------------------------------- */

Test(odp, fini_unmaps_everything_and_frees_the_iova)
{
	struct odp_fault flt[3];
	struct dma_iova_state st;
	struct dom_stats s;
	uint64_t addr;

	region(SZ_2M, RW_ACCESS);
	addr = R.st.addr;
	flt[0] = fault_at(0, 1, DOM_ACCESS_READ, 0);
	flt[1] = fault_at(0x80000, 1, DOM_ACCESS_WRITE, 0);
	flt[2] = fault_at(SZ_2M - 1, 1, DOM_ACCESS_READ, 0);
	odp_service(NULL, flt, 3);
	odp_invalidate(&R, 0x4000, SZ_4K); /* a hole inside a window, too */
	cr_assert_eq(fx_stats(&f).mapped_bytes, 3 * SZ_64K - SZ_4K);
	odp_region_fini(&R);
	s = fx_stats(&f);
	cr_assert_eq(s.mapped_bytes, 0);
	cr_assert_eq(s.iova_frees, 1);
	cr_assert_eq(s.free_busy, 0);
	cr_assert_not(dma_use_iova(&R.st));
	cr_assert_eq(R.mapped, 0);
	odp_region_fini(&R); /* twice is fine */
	cr_assert(dma_iova_try_alloc(f.dev, &st, 0, SZ_2M));
	cr_assert_eq(st.addr, addr, "the same IOVA comes back");
	cr_assert_eq(dma_iova_free(f.dev, &st), 0);
	region(SZ_2M, RW_ACCESS);
	cr_assert_eq(R.st.addr, addr);
}

Test(odp, fini_on_a_lazy_domain_goes_through_the_flush_queue)
{
	struct odp_fault flt;
	struct dma_iova_state st;
	uint64_t addr;

	fx_teardown(&f);
	fx_setup(&f, (struct dom_config){ .flush = DOM_FLUSH_LAZY },
		 (struct dom_device_config){ 0 }, 4 * SZ_2M);
	B.o = f.mem;
	region(SZ_2M, RW_ACCESS);
	addr = R.st.addr;
	flt = fault_at(0, 1, DOM_ACCESS_READ, 0);
	serve1(NULL, &flt);
	odp_region_fini(&R);
	cr_assert_eq(fx_stats(&f).mapped_bytes, 0);
	cr_assert_eq(fx_stats(&f).fq_queued, 1);
	cr_assert(dma_iova_try_alloc(f.dev, &st, 0, SZ_2M));
	cr_assert_neq(st.addr, addr, "not reused before the flush");
	cr_assert_eq(dma_iova_free(f.dev, &st), 0);
	cr_assert_eq(dom_fq_flush(f.dom), 1);
}

/* ---- dom_iova_upgrade ---------------------------------------------------------- */

static unsigned int prot_at(uint64_t iova)
{
	struct pgtbl_leaf l;

	cr_assert_eq(pgtbl_lookup(&f.dom->pt, iova, &l), 0);
	return l.prot;
}

Test(odp, dom_iova_upgrade_all_or_nothing)
{
	struct dma_iova_state st;
	uint64_t fl;

	cr_assert(dma_iova_try_alloc(f.dev, &st, f.mem->phys, 4 * SZ_4K));
	cr_assert_eq(dma_iova_link(f.dev, &st, f.mem->phys, 0, 4 * SZ_4K, DMA_TO_DEVICE, 0), 0);
	cr_assert_eq(dma_iova_sync(f.dev, &st, 0, 4 * SZ_4K), 0);
	cr_assert_eq(dma_iova_unlink(f.dev, &st, 2 * SZ_4K, SZ_4K, DMA_TO_DEVICE, 0), 0);
	fl = fx_stats(&f).flush_sync_map;
	cr_assert_eq(dom_iova_upgrade(f.dev, &st, 0, 4 * SZ_4K, DMA_BIDIRECTIONAL), -ENOENT);
	for (int i = 0; i < 4; i++) {
		if (i == 2)
			continue;
		cr_assert_eq(prot_at(st.addr + (uint64_t)i * SZ_4K) & PGTBL_WRITE, 0,
			     "granule %d changed", i);
	}
	cr_assert_eq(fx_stats(&f).flush_sync_map, fl, "no flush");
	cr_assert_eq(dom_iova_upgrade(f.dev, &st, 0, 2 * SZ_4K + 1, DMA_FROM_DEVICE), -ENOENT);

	/* In range: bytes changed, one flush; a second time nothing. */
	cr_assert_eq(dom_iova_upgrade(f.dev, &st, 100, SZ_4K, DMA_FROM_DEVICE),
		     (int64_t)(2 * SZ_4K), "rounded out to granules");
	cr_assert_eq(prot_at(st.addr) & (PGTBL_READ | PGTBL_WRITE), PGTBL_READ | PGTBL_WRITE);
	cr_assert_neq(prot_at(st.addr) & PGTBL_CACHE, 0, "attributes kept");
	cr_assert_eq(fx_stats(&f).flush_sync_map, fl + 1);
	cr_assert_eq(dom_iova_upgrade(f.dev, &st, 0, 2 * SZ_4K, DMA_BIDIRECTIONAL), 0);
	cr_assert_eq(fx_stats(&f).flush_sync_map, fl + 1);

	/* Inside a batch: one flush at the end. */
	dom_batch_begin(f.dom);
	cr_assert_eq(dom_iova_upgrade(f.dev, &st, 3 * SZ_4K, SZ_4K, DMA_BIDIRECTIONAL),
		     (int64_t)SZ_4K);
	cr_assert_eq(fx_stats(&f).flush_sync_map, fl + 1);
	cr_assert_eq(dom_batch_end(f.dom), 1);
	cr_assert_eq(fx_stats(&f).flush_sync_map, fl + 2);

	cr_assert_eq(dom_iova_upgrade(f.dev, &st, 0, SZ_4K, DMA_NONE), -EINVAL);
	cr_assert_eq(dom_iova_upgrade(f.dev, &st, 0, 0, DMA_TO_DEVICE), -EINVAL);
	cr_assert_eq(dom_iova_upgrade(f.dev, &st, 0, 5 * SZ_4K, DMA_TO_DEVICE), -EINVAL);
	cr_assert_eq(dma_iova_destroy(f.dev, &st, 4 * SZ_4K, DMA_TO_DEVICE, 0), -ENOENT);
	cr_assert_eq(dom_iova_upgrade(f.dev, &st, 0, SZ_4K, DMA_TO_DEVICE), -EINVAL, "no state");
}

Test(odp, dom_iova_upgrade_keeps_pending_and_changes_blocks_whole)
{
	struct dma_iova_state st;
	struct dom_fault df;
	uint8_t b = 1;

	cr_assert(dma_iova_try_alloc(f.dev, &st, f.mem->phys, 2 * SZ_2M));
	cr_assert_eq(dma_iova_link(f.dev, &st, f.mem->phys, 0, SZ_2M, DMA_TO_DEVICE, 0), 0);
	cr_assert_eq(dma_iova_link(f.dev, &st, f.mem->phys + SZ_2M, SZ_2M, SZ_4K, DMA_TO_DEVICE,
				   0), 0);
	cr_assert_eq(dma_iova_sync(f.dev, &st, 0, SZ_2M), 0);
	/* The block is read-only and cached in the IOTLB. */
	cr_assert_eq(dom_dev_dma_read(f.dev, st.addr + 0x1234, &b, 1, NULL), 0);
	cr_assert_eq(dom_dev_dma_write(f.dev, st.addr + 0x1234, &b, 1, &df), -EFAULT);
	cr_assert_eq(dom_iova_upgrade(f.dev, &st, 0x5000, SZ_4K, DMA_BIDIRECTIONAL),
		     (int64_t)SZ_2M);
	cr_assert_eq(dom_dev_dma_write(f.dev, st.addr + 0x1234, &b, 1, &df), 0,
		     "fault %s", dom_fault_reason_str(df.reason));
	cr_assert_eq(f.dom->pt.stats.block_splits, 0);
	/* The unsynced granule stays unsynced. */
	cr_assert_eq(dom_iova_upgrade(f.dev, &st, SZ_2M, SZ_4K, DMA_FROM_DEVICE), (int64_t)SZ_4K);
	cr_assert_neq(prot_at(st.addr + SZ_2M) & PGTBL_PENDING, 0);
	cr_assert_eq(dom_dev_dma_write(f.dev, st.addr + SZ_2M, &b, 1, &df), -EFAULT);
	cr_assert_eq(df.reason, DOM_FAULT_NOT_SYNCED);
	cr_assert_eq(dma_iova_destroy(f.dev, &st, SZ_2M + SZ_4K, DMA_TO_DEVICE, 0), 0);
}

/* ---- histogram ----------------------------------------------------------------- */

Test(odp, histogram_quantiles_within_25_percent)
{
	static struct odp_hist h, h2, one;
	static const uint64_t probes[] = { 0, 1, 2, 3, 4, 5, 7, 8, 9, 1000, 1023, 1024, 1025,
					   123456789, UINT64_C(1) << 40, (UINT64_C(1) << 62) + 1,
					   UINT64_MAX };
	/* Quantiles of 1..1000 us, and q outside (0, 1] clamped. */
	static const struct { double q; uint64_t v; } qs[] = {
		{ 0.5, 500000 }, { 0.9, 900000 }, { 0.99, 990000 }, { 1.0, 1000000 },
		{ 0.001, 1000 }, { 0.0, 1000 }, { 2.0, 1000000 },
	};

	cr_assert_eq(odp_hist_quantile(&h, 0.5), 0, "empty");
	for (uint64_t v = 1; v <= 1000; v++)
		odp_hist_add(&h, v * 1000);
	cr_assert_eq(h.count, 1000);
	cr_assert_eq(h.sum_ns, 500500 * UINT64_C(1000));
	for (size_t i = 0; i < sizeof(qs) / sizeof(qs[0]); i++) {
		uint64_t got = odp_hist_quantile(&h, qs[i].q);

		cr_assert_geq(got, qs[i].v, "q %.3f: %" PRIu64, qs[i].q, got);
		cr_assert_leq(got, qs[i].v + qs[i].v / 4, "q %.3f: %" PRIu64, qs[i].q, got);
	}
	/* Every single value lands in a bucket whose bound is within 25% above it. */
	for (size_t i = 0; i < sizeof(probes) / sizeof(probes[0]); i++) {
		uint64_t v = probes[i], got;

		memset(&one, 0, sizeof(one));
		odp_hist_add(&one, v);
		got = odp_hist_quantile(&one, 1.0);
		cr_assert_geq(got, v);
		cr_assert_leq((double)got, (double)v * 1.25, "%" PRIu64 " -> %" PRIu64, v, got);
	}
	for (uint64_t v = 1; v < 100000; v += 37) {
		memset(&one, 0, sizeof(one));
		odp_hist_add(&one, v);
		cr_assert_geq(odp_hist_quantile(&one, 0.5), v);
		cr_assert_leq(odp_hist_quantile(&one, 0.5), v + v / 4);
	}
	/* Merge: the union. */
	odp_hist_add(&h2, 5);
	odp_hist_add(&h2, UINT64_C(1) << 50);
	odp_hist_merge(&h2, &h);
	cr_assert_eq(h2.count, 1002);
	cr_assert_eq(odp_hist_quantile(&h2, 0.0001), 5);
	cr_assert_geq(odp_hist_quantile(&h2, 1.0), UINT64_C(1) << 50);
	cr_assert_leq(odp_hist_quantile(&h2, 0.999), 1250000);
}

/* ---- randomized, against a model ---------------------------------------------- */

/*
 * The region's "virtual memory" is a byte array (model) whose pages live in
 * one of two objects and may migrate between them, be discarded (zeros) or
 * lose their backing altogether. Every change that moves or removes a page
 * invalidates it first, as an MMU notifier would; a migration may also fire
 * from inside a resolve, handing the engine a stale answer. Whatever the
 * device reads must be the model's bytes, every mapped granule must point
 * at the page's current home, and a fault that succeeded must leave its
 * range accessible.
 */
#define RND_PAGES 128u
#define RND_SIZE  ((uint64_t)RND_PAGES * SZ_4K)

struct rnd {
	uint64_t s;
	struct pmem_obj *obj[2];
	uint8_t home[RND_PAGES];      /* which object holds page p (at p's offset) */
	bool unbacked[RND_PAGES];
	uint8_t *model;
	unsigned int resolve_migrations; /* left for the service call in progress */
	unsigned int migrated_in_resolve;
};

static struct rnd X;

static uint64_t rnd_next(void)
{
	/* xorshift64*: reproducible from the seed, good enough to pick ops. */
	X.s ^= X.s >> 12;
	X.s ^= X.s << 25;
	X.s ^= X.s >> 27;
	return X.s * UINT64_C(2685821657736338717);
}

static uint64_t rnd_below(uint64_t n)
{
	return rnd_next() % n;
}

/* 1..max pages from p, not past the region. */
static unsigned int rnd_len(unsigned int p, unsigned int max)
{
	if (max > RND_PAGES - p)
		max = RND_PAGES - p;
	return 1 + (unsigned int)rnd_below(max);
}

static uint64_t rnd_phys(unsigned int p)
{
	return X.obj[X.home[p]]->phys + (uint64_t)p * SZ_4K;
}

static void rnd_migrate(unsigned int p0, unsigned int n)
{
	static uint8_t junk[SZ_4K];

	cr_assert_geq(odp_invalidate(&R, (uint64_t)p0 * SZ_4K, (uint64_t)n * SZ_4K), 0);
	memset(junk, 0xee, sizeof(junk));
	for (unsigned int p = p0; p < p0 + n; p++) {
		uint64_t old = rnd_phys(p);

		if (X.unbacked[p])
			continue;
		X.home[p] ^= 1;
		cr_assert_eq(pmem_write(&f.pmem, rnd_phys(p), X.model + (uint64_t)p * SZ_4K, SZ_4K),
			     0);
		/* The old page is reused at once: a stale mapping would show this. */
		cr_assert_eq(pmem_write(&f.pmem, old, junk, SZ_4K), 0);
	}
}

static int rnd_resolve(void *arg, uint64_t off, uint64_t *phys, uint64_t *run)
{
	unsigned int p = (unsigned int)(off / SZ_4K), q;

	(void)arg;
	cr_assert_eq(off % SZ_4K, 0);
	cr_assert_lt(p, RND_PAGES);
	if (X.unbacked[p])
		return -EFAULT;
	*phys = rnd_phys(p);
	for (q = p + 1; q < RND_PAGES && q < p + 64; q++)
		if (X.unbacked[q] || X.home[q] != X.home[p])
			break;
	*run = (uint64_t)(q - p) * SZ_4K;
	if (X.resolve_migrations && rnd_below(8) == 0) {
		/* The notifier fires now; our answer above is often already stale. */
		unsigned int m0 = (unsigned int)rnd_below(RND_PAGES);

		if (rnd_below(2))
			m0 = p - (unsigned int)rnd_below(p < 4 ? p + 1 : 4);

		X.resolve_migrations--;
		X.migrated_in_resolve++;
		rnd_migrate(m0, rnd_len(m0, 8));
	}
	return 0;
}

static void rnd_check_invariants(void)
{
	uint64_t mapped = 0;

	for (unsigned int p = 0; p < RND_PAGES; p++) {
		struct pgtbl_leaf l;

		if (!leaf_at(&R, (uint64_t)p * SZ_4K, &l))
			continue;
		mapped++;
		cr_assert_not(X.unbacked[p], "page %u mapped without backing", p);
		cr_assert_eq(l.phys + (R.st.addr + (uint64_t)p * SZ_4K - l.iova), rnd_phys(p),
			     "page %u: stale translation", p);
		cr_assert_eq(l.prot & PGTBL_PENDING, 0, "page %u left unsynced", p);
	}
	cr_assert_eq(mapped * SZ_4K, R.mapped);
}

static void rnd_device_access(void)
{
	static uint8_t buf[8 * SZ_4K];
	uint64_t off = rnd_below(RND_SIZE), len = 1 + rnd_below(sizeof(buf));
	bool write = rnd_below(3) == 0;
	int ret;

	if (len > RND_SIZE - off)
		len = RND_SIZE - off;
	if (write) {
		for (uint64_t i = 0; i < len; i++)
			buf[i] = (uint8_t)rnd_next();
		ret = dom_dev_dma_write(f.dev, R.st.addr + off, buf, len, NULL);
		if (!ret)
			memcpy(X.model + off, buf, len);
	} else {
		ret = dom_dev_dma_read(f.dev, R.st.addr + off, buf, len, NULL);
		if (!ret)
			cr_assert_eq(memcmp(buf, X.model + off, len), 0,
				     "device read [%#" PRIx64 ", +%#" PRIx64 ") differs", off, len);
	}
	if (ret)
		cr_assert(odp_needs_service(&R, off, len,
					    write ? DOM_ACCESS_WRITE : DOM_ACCESS_READ),
			  "access failed on a range needing no service");
}

static void rnd_faults(void)
{
	static const uint64_t windows[] = { 0, SZ_16K, SZ_64K, 4 * SZ_64K };
	struct odp_config cfg = {
		.sync = rnd_below(4) ? ODP_SYNC_BATCH : ODP_SYNC_PER_PAGE,
		.window = windows[rnd_below(4)],
	};
	struct odp_fault flt[3];
	uint32_t n = 1 + (uint32_t)rnd_below(3);

	for (uint32_t i = 0; i < n; i++) {
		uint64_t off = rnd_below(RND_SIZE), len = 1 + rnd_below(6 * SZ_4K);

		if (len > RND_SIZE - off)
			len = RND_SIZE - off;
		flt[i] = fault_at(off, len, rnd_below(2) ? DOM_ACCESS_WRITE : DOM_ACCESS_READ, 0);
		if (rnd_below(4) == 0)
			flt[i].flags |= ODP_FAULT_PREFETCH;
		if (rnd_below(6) == 0)
			flt[i].flags |= ODP_FAULT_NO_POPULATE;
		if (rnd_below(5) == 0)
			flt[i].flags |= ODP_FAULT_EXACT;
	}
	X.resolve_migrations = rnd_below(3) == 0 ? 2 : 0;
	X.migrated_in_resolve = 0;
	cr_assert_geq(odp_service(&cfg, flt, n), 0);
	X.resolve_migrations = 0;
	for (uint32_t i = 0; i < n; i++) {
		bool need_backing = !(flt[i].flags & ODP_FAULT_PREFETCH), hole = false;

		for (uint64_t p = flt[i].off / SZ_4K; p * SZ_4K < flt[i].off + flt[i].len; p++)
			hole |= X.unbacked[p];
		cr_assert_eq(flt[i].status, need_backing && hole ? -EFAULT : 0,
			     "fault %u [%#" PRIx64 ", +%#" PRIx64 ") flags %#x: %d", i, flt[i].off,
			     flt[i].len, flt[i].flags, flt[i].status);
		if (flt[i].status || (flt[i].flags & ODP_FAULT_NO_POPULATE) || hole ||
		    X.migrated_in_resolve)
			continue;
		cr_assert_not(odp_needs_service(&R, flt[i].off, flt[i].len, flt[i].access),
			      "fault %u served but still needs service", i);
	}
}

static void rnd_run(uint64_t seed, unsigned int steps)
{
	memset(&X, 0, sizeof(X));
	X.s = seed ? seed : 1;
	X.model = malloc(RND_SIZE);
	cr_assert_not_null(X.model);
	for (int i = 0; i < 2; i++)
		cr_assert_eq(pmem_obj_create(&f.pmem, RND_SIZE, "rnd", &X.obj[i]), 0);
	for (uint64_t i = 0; i < RND_SIZE; i++)
		X.model[i] = (uint8_t)rnd_next();
	cr_assert_eq(pmem_write(&f.pmem, X.obj[0]->phys, X.model, RND_SIZE), 0);
	cr_assert_eq(odp_region_init(&R, f.dev, RND_SIZE, RW_ACCESS, rnd_resolve, NULL), 0);

	for (unsigned int step = 0; step < steps; step++) {
		unsigned int op = (unsigned int)rnd_below(100);
		unsigned int p = (unsigned int)rnd_below(RND_PAGES);
		unsigned int n = rnd_len(p, 16);

		if (op < 35) {
			rnd_faults();
		} else if (op < 70) {
			rnd_device_access();
		} else if (op < 78) {
			/* Invalidate: the count is what was mapped there. */
			uint64_t before = R.mapped;
			int64_t got = odp_invalidate(&R, (uint64_t)p * SZ_4K, (uint64_t)n * SZ_4K);

			cr_assert_geq(got, 0);
			cr_assert_eq((uint64_t)got * SZ_4K, before - R.mapped);
		} else if (op < 84) {
			rnd_migrate(p, n);
		} else if (op < 90) {
			/* The owner drops pages: they read back as zeros. */
			if (X.unbacked[p])
				continue;
			cr_assert_eq(pmem_discard(&f.pmem, rnd_phys(p), SZ_4K), 0);
			memset(X.model + (uint64_t)p * SZ_4K, 0, SZ_4K);
		} else if (op < 94) {
			/* munmap: invalidate first, then the backing goes away. */
			cr_assert_geq(odp_invalidate(&R, (uint64_t)p * SZ_4K, (uint64_t)n * SZ_4K),
				      0);
			for (unsigned int q = p; q < p + n; q++)
				X.unbacked[q] = true;
		} else if (op < 97) {
			/* mmap again: fresh zero pages. */
			for (unsigned int q = p; q < p + n; q++) {
				if (!X.unbacked[q])
					continue;
				X.unbacked[q] = false;
				memset(X.model + (uint64_t)q * SZ_4K, 0, SZ_4K);
				cr_assert_eq(pmem_zero(&f.pmem, rnd_phys(q), SZ_4K), 0);
			}
		} else {
			/* The CPU writes its memory; a coherent device sees it. */
			uint64_t off = (uint64_t)p * SZ_4K + rnd_below(SZ_4K);
			uint8_t v = (uint8_t)rnd_next();

			if (X.unbacked[p])
				continue;
			X.model[off] = v;
			cr_assert_eq(pmem_write(&f.pmem, rnd_phys(p) + off % SZ_4K, &v, 1), 0);
		}
		rnd_check_invariants();
	}
	cr_assert_gt(R.cnt.page_faults + R.cnt.page_prefetch, 0);
	cr_assert_gt(R.cnt.page_invalidations, 0);
	odp_region_fini(&R);
	cr_assert_eq(fx_stats(&f).mapped_bytes, 0);
	free(X.model);
}

Test(odp, randomized_against_a_model, .timeout = 600)
{
	rnd_run(0x0dd5eed, 3000);
}

Test(odp, randomized_env_seed, .timeout = 600)
{
	const char *s = getenv("IOVAD_TEST_SEED");

	if (!s)
		cr_skip_test("IOVAD_TEST_SEED not set");
	rnd_run(strtoull(s, NULL, 0), 20000);
}
