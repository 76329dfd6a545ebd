// SPDX-License-Identifier: MIT
/*
 * test_dma_api.c - the IOVA-based DMA API's rules and error codes, one test
 * per rule of docs/SEMANTICS.md (kernel: drivers/iommu/dma-iommu.c).
 */
#include <errno.h>

#include "fixture.h"

static struct fx f;

static void setup_default(void)
{
	fx_setup(&f, (struct dom_config){ 0 }, (struct dom_device_config){ 0 }, 4 * SZ_2M);
}

static void teardown(void)
{
	fx_teardown(&f);
}

TestSuite(dma_api, .init = setup_default, .fini = teardown);

/* ---- dma_iova_try_alloc ----------------------------------------------- */

Test(dma_api, try_alloc_zeroes_state_and_sets_size)
{
	struct dma_iova_state st = { .addr = 0xdead, .__size = 0xbeef };

	cr_assert(dma_iova_try_alloc(f.dev, &st, f.mem->phys, 3 * SZ_4K));
	cr_assert(dma_use_iova(&st));
	cr_assert_eq(dma_iova_size(&st), 3 * SZ_4K);
	cr_assert_eq(st.__size & DMA_IOVA_USE_SWIOTLB, 0);
	cr_assert_neq(st.addr, 0);
}

Test(dma_api, try_alloc_false_for_size_zero_and_top_bit)
{
	struct dma_iova_state st = { .addr = 1, .__size = 1 };

	cr_assert_not(dma_iova_try_alloc(f.dev, &st, f.mem->phys, 0));
	cr_assert_eq(st.addr, 0);
	cr_assert_eq(st.__size, 0);
	cr_assert_not(dma_use_iova(&st));
	cr_assert_not(dma_iova_try_alloc(f.dev, &st, f.mem->phys, DMA_IOVA_USE_SWIOTLB | 4096));
	cr_assert_not(dma_use_iova(&st));
	cr_assert_eq(fx_stats(&f).iova_allocs, 0);
}

Test(dma_api, try_alloc_keeps_phys_offset_and_aligns_size)
{
	struct dma_iova_state st;
	uint64_t phys = f.mem->phys + 0x123;

	/* 0x2000 + 0x123 -> 3 granules -> rounded to 4, aligned to 4 granules. */
	cr_assert(dma_iova_try_alloc(f.dev, &st, phys, 0x2000));
	cr_assert_eq(st.addr & 0xfff, 0x123);
	cr_assert_eq((st.addr - 0x123) % (4 * SZ_4K), 0);
	cr_assert_eq(dma_iova_size(&st), 0x2000);
}

Test(dma_api, try_alloc_top_down_pci_below_4g_first)
{
	struct dma_iova_state a, b;

	cr_assert(dma_iova_try_alloc(f.dev, &a, 0, SZ_4K));
	/* A PCI device with a 64-bit mask gets the top of the 32-bit space first. */
	cr_assert_eq(a.addr, UINT64_C(0x100000000) - SZ_4K);
	cr_assert(dma_iova_try_alloc(f.dev, &b, 0, SZ_4K));
	cr_assert_eq(b.addr, a.addr - SZ_4K, "top-down: next below the first");
}

Test(dma_api, try_alloc_pci_falls_back_above_4g_for_good)
{
	static struct dma_iova_state st[2049];
	struct dma_iova_state last;

	/* 2048 x 2 MiB fill the 32-bit space (pfn 0's 2 MiB block excepted)... */
	for (int i = 0; i < 2047; i++) {
		cr_assert(dma_iova_try_alloc(f.dev, &st[i], 0, SZ_2M));
		cr_assert_lt(st[i].addr, UINT64_C(1) << 32);
	}
	cr_assert(f.dev->pci_32bit_workaround);
	/* ...so the next one goes above 4 GiB, and the device stays there. */
	cr_assert(dma_iova_try_alloc(f.dev, &st[2047], 0, SZ_2M));
	cr_assert_geq(st[2047].addr, UINT64_C(1) << 32);
	cr_assert_not(f.dev->pci_32bit_workaround);
	cr_assert_eq(dma_iova_free(f.dev, &st[0]), 0);
	cr_assert(dma_iova_try_alloc(f.dev, &last, 0, SZ_4K));
	cr_assert_geq(last.addr, UINT64_C(1) << 32, "no second try below 4 GiB, as the kernel");
}

Test(dma_api, try_alloc_non_pci_uses_whole_aperture)
{
	struct dom_device *np;
	struct dma_iova_state st;

	cr_assert_eq(dom_device_create(f.dom, &(struct dom_device_config){
		.name = "platform0", .not_pci = true }, &np), 0);
	cr_assert(dma_iova_try_alloc(np, &st, 0, SZ_4K));
	cr_assert_eq(st.addr, (UINT64_C(1) << 48) - SZ_4K, "top of the 48-bit aperture");
	cr_assert_eq(dma_iova_free(np, &st), 0);
	dom_device_destroy(np);
}

Test(dma_api, try_alloc_respects_dma_mask)
{
	struct dom_device *d32;
	struct dma_iova_state st;

	cr_assert_eq(dom_device_create(f.dom, &(struct dom_device_config){
		.name = "sim32", .dma_mask_bits = 32, .not_pci = true }, &d32), 0);
	for (int i = 0; i < 64; i++) {
		cr_assert(dma_iova_try_alloc(d32, &st, 0, SZ_2M));
		cr_assert_leq(st.addr + SZ_2M - 1, UINT32_MAX);
		cr_assert_eq(st.addr % SZ_2M, 0, "size-aligned");
	}
	dom_device_destroy(d32);
}

Test(dma_api, try_alloc_false_when_space_is_exhausted)
{
	struct dom_device *d;
	struct dma_iova_state st;
	int n = 0;

	/* A 20-bit device can address 256 granules; pfn 0 is never handed out. */
	cr_assert_eq(dom_device_create(f.dom, &(struct dom_device_config){
		.name = "tiny", .dma_mask_bits = 20, .not_pci = true }, &d), 0);
	while (dma_iova_try_alloc(d, &st, 0, SZ_4K))
		n++;
	cr_assert_eq(n, 255);
	cr_assert_not(dma_use_iova(&st));
	cr_assert_eq(fx_stats(&f).iova_alloc_failures, 1);
	dom_device_destroy(d);
}

Test(dma_api, freed_iova_is_reused)
{
	struct dma_iova_state st;
	uint64_t first;

	cr_assert(dma_iova_try_alloc(f.dev, &st, 0, 8 * SZ_4K));
	first = st.addr;
	cr_assert_eq(dma_iova_free(f.dev, &st), 0);
	cr_assert_not(dma_use_iova(&st), "free zeroes the state");
	cr_assert(dma_iova_try_alloc(f.dev, &st, 0, 8 * SZ_4K));
	cr_assert_eq(st.addr, first, "the magazine hands the same range back");
	cr_assert_eq(f.dom->iovad.stats.rcache_hits, 1);
}

/* ---- dma_iova_link ----------------------------------------------------- */

Test(dma_api, merge_boundary_is_granule_minus_one)
{
	cr_assert_eq(dma_get_merge_boundary(f.dev), SZ_4K - 1);
}

Test(dma_api, link_misaligned_offset_is_einval)
{
	struct dma_iova_state st;

	cr_assert(dma_iova_try_alloc(f.dev, &st, 0, 4 * SZ_4K));
	cr_assert_eq(dma_iova_link(f.dev, &st, f.mem->phys, 0x800, SZ_4K, DMA_TO_DEVICE, 0),
		     -EINVAL);
	cr_assert_eq(fx_stats(&f).link_errors, 1);
	cr_assert_eq(fx_stats(&f).mapped_bytes, 0);
}

Test(dma_api, link_unaligned_size_then_next_range_off_boundary)
{
	struct dma_iova_state st;

	cr_assert(dma_iova_try_alloc(f.dev, &st, 0, 4 * SZ_4K));
	/* The first range may end mid-granule (it maps the whole granule)... */
	cr_assert_eq(dma_iova_link(f.dev, &st, f.mem->phys, 0, 0x1800, DMA_TO_DEVICE, 0), 0);
	/* ...but then the next one cannot start where it ended. */
	cr_assert_eq(dma_iova_link(f.dev, &st, f.mem->phys + 0x1800, 0x1800, 0x800,
				   DMA_TO_DEVICE, 0), -EIO);
	cr_assert_eq(dma_iova_link(f.dev, &st, f.mem->phys + 0x2000, 0x1800, 0x800,
				   DMA_TO_DEVICE, 0), -EINVAL);
	cr_assert_eq(dma_iova_link(f.dev, &st, f.mem->phys + 0x2000, 0x2000, SZ_4K,
				   DMA_TO_DEVICE, 0), 0);
	cr_assert_eq(fx_stats(&f).mapped_bytes, 3 * SZ_4K);
	cr_assert_eq(dma_iova_destroy(f.dev, &st, 0x3000, DMA_TO_DEVICE, 0), 0);
}

Test(dma_api, link_unaligned_phys_with_offset_is_eio)
{
	struct dma_iova_state st;

	cr_assert(dma_iova_try_alloc(f.dev, &st, 0, 4 * SZ_4K));
	cr_assert_eq(dma_iova_link(f.dev, &st, f.mem->phys + 0x10, SZ_4K, SZ_4K,
				   DMA_TO_DEVICE, 0), -EIO);
	/* At offset 0 an unaligned phys is fine if try_alloc saw the same offset. */
	cr_assert(dma_iova_try_alloc(f.dev, &st, f.mem->phys + 0x10, 2 * SZ_4K));
	cr_assert_eq(dma_iova_link(f.dev, &st, f.mem->phys + 0x10, 0, 2 * SZ_4K,
				   DMA_TO_DEVICE, 0), 0);
}

Test(dma_api, link_phys_offset_different_from_try_alloc_is_einval)
{
	struct dma_iova_state st;

	cr_assert(dma_iova_try_alloc(f.dev, &st, f.mem->phys + 0x10, SZ_4K));
	cr_assert_eq(dma_iova_link(f.dev, &st, f.mem->phys + 0x20, 0, 0x100,
				   DMA_TO_DEVICE, 0), -EINVAL);
}

Test(dma_api, link_beyond_state_and_bad_args_are_einval)
{
	struct dma_iova_state st, none = { 0 };

	cr_assert(dma_iova_try_alloc(f.dev, &st, 0, 2 * SZ_4K));
	cr_assert_eq(dma_iova_link(f.dev, &st, f.mem->phys, SZ_4K, 2 * SZ_4K,
				   DMA_TO_DEVICE, 0), -EINVAL);
	cr_assert_eq(dma_iova_link(f.dev, &st, f.mem->phys, 0, 0, DMA_TO_DEVICE, 0), -EINVAL);
	cr_assert_eq(dma_iova_link(f.dev, &st, f.mem->phys, 0, SZ_4K, DMA_NONE, 0), -EINVAL);
	cr_assert_eq(dma_iova_link(f.dev, &st, f.mem->phys, 0, SZ_4K, DMA_TO_DEVICE,
				   1UL << 20), -EINVAL);
	cr_assert_eq(dma_iova_link(f.dev, &none, f.mem->phys, 0, SZ_4K, DMA_TO_DEVICE, 0),
		     -EINVAL);
	cr_assert_eq(fx_stats(&f).mapped_bytes, 0);
}

Test(dma_api, link_twice_is_eexist)
{
	struct dma_iova_state st;

	cr_assert(dma_iova_try_alloc(f.dev, &st, 0, 2 * SZ_4K));
	cr_assert_eq(dma_iova_link(f.dev, &st, f.mem->phys, 0, SZ_4K, DMA_TO_DEVICE, 0), 0);
	cr_assert_eq(dma_iova_link(f.dev, &st, f.mem->phys + SZ_4K, 0, 2 * SZ_4K,
				   DMA_TO_DEVICE, 0), -EEXIST);
	cr_assert_eq(fx_stats(&f).mapped_bytes, SZ_4K, "all or nothing");
}

Test(dma_api, link_is_invisible_until_sync)
{
	struct dma_iova_state st;
	struct dom_fault flt;
	uint8_t buf[64];

	cr_assert(dma_iova_try_alloc(f.dev, &st, 0, SZ_4K));
	cr_assert_eq(dma_iova_link(f.dev, &st, f.mem->phys, 0, SZ_4K, DMA_TO_DEVICE, 0), 0);
	cr_assert_eq(dom_dev_dma_read(f.dev, st.addr, buf, sizeof(buf), &flt), -EFAULT);
	cr_assert_eq(flt.reason, DOM_FAULT_NOT_SYNCED);
	cr_assert_eq(flt.iova, st.addr);
	cr_assert_eq(flt.access, DOM_ACCESS_READ);
	cr_assert_eq(dma_iova_sync(f.dev, &st, 0, SZ_4K), 0);
	cr_assert_eq(dom_dev_dma_read(f.dev, st.addr, buf, sizeof(buf), NULL), 0);
	for (unsigned int i = 0; i < sizeof(buf); i++)
		cr_assert_eq(buf[i], fx_byte(0x11, i));
	cr_assert_eq(fx_stats(&f).io_page_faults, 1);
}

Test(dma_api, direction_sets_permissions)
{
	struct dma_iova_state st;
	struct dom_fault flt;
	uint8_t b = 0x5a;

	cr_assert(dma_iova_try_alloc(f.dev, &st, 0, 3 * SZ_4K));
	cr_assert_eq(dma_iova_link(f.dev, &st, f.mem->phys, 0, SZ_4K, DMA_TO_DEVICE, 0), 0);
	cr_assert_eq(dma_iova_link(f.dev, &st, f.mem->phys + SZ_4K, SZ_4K, SZ_4K,
				   DMA_FROM_DEVICE, 0), 0);
	cr_assert_eq(dma_iova_link(f.dev, &st, f.mem->phys + 2 * SZ_4K, 2 * SZ_4K, SZ_4K,
				   DMA_BIDIRECTIONAL, 0), 0);
	cr_assert_eq(dma_iova_sync(f.dev, &st, 0, 3 * SZ_4K), 0);

	/* TO_DEVICE: the device may read, not write. */
	cr_assert_eq(dom_dev_dma_read(f.dev, st.addr, &b, 1, NULL), 0);
	cr_assert_eq(dom_dev_dma_write(f.dev, st.addr, &b, 1, &flt), -EFAULT);
	cr_assert_eq(flt.reason, DOM_FAULT_PERMISSION);
	cr_assert_eq(flt.access, DOM_ACCESS_WRITE);
	/* FROM_DEVICE: strictly write-only by default. */
	b = 0x5a;
	cr_assert_eq(dom_dev_dma_write(f.dev, st.addr + SZ_4K, &b, 1, NULL), 0);
	cr_assert_eq(dom_dev_dma_read(f.dev, st.addr + SZ_4K, &b, 1, &flt), -EFAULT);
	cr_assert_eq(flt.reason, DOM_FAULT_PERMISSION);
	/* BIDIRECTIONAL: both. */
	cr_assert_eq(dom_dev_dma_write(f.dev, st.addr + 2 * SZ_4K, &b, 1, NULL), 0);
	cr_assert_eq(dom_dev_dma_read(f.dev, st.addr + 2 * SZ_4K, &b, 1, NULL), 0);
	cr_assert_eq(b, 0x5a);
	cr_assert_eq(f.mem->va[2 * SZ_4K], 0x5a);
}

Test(dma_api, from_device_relaxed_to_read_write_by_domain_option)
{
	struct fx g;
	struct dma_iova_state st;
	uint8_t b;

	fx_setup(&g, (struct dom_config){ .from_device_rw = true },
		 (struct dom_device_config){ 0 }, SZ_2M);
	cr_assert(dma_iova_try_alloc(g.dev, &st, 0, SZ_4K));
	cr_assert_eq(dma_iova_link(g.dev, &st, g.mem->phys, 0, SZ_4K, DMA_FROM_DEVICE, 0), 0);
	cr_assert_eq(dma_iova_sync(g.dev, &st, 0, SZ_4K), 0);
	cr_assert_eq(dom_dev_dma_read(g.dev, st.addr, &b, 1, NULL), 0);
	cr_assert_eq(dma_iova_destroy(g.dev, &st, SZ_4K, DMA_FROM_DEVICE, 0), 0);
	fx_teardown(&g);
}

Test(dma_api, mmio_attr_maps_mmio_and_skips_cpu_sync)
{
	struct fx g;
	struct dma_iova_state st;
	struct pgtbl_leaf leaf;

	fx_setup(&g, (struct dom_config){ 0 },
		 (struct dom_device_config){ .non_coherent = true }, SZ_2M);
	cr_assert(dma_iova_try_alloc(g.dev, &st, 0, 2 * SZ_4K));
	cr_assert_eq(dma_iova_link(g.dev, &st, g.mem->phys, 0, SZ_4K, DMA_TO_DEVICE,
				   DMA_ATTR_MMIO), 0);
	cr_assert_eq(fx_stats(&g).cpu_cache_syncs, 0, "MMIO skips cache maintenance");
	cr_assert_eq(pgtbl_lookup(&g.dom->pt, st.addr, &leaf), 0);
	cr_assert(leaf.prot & PGTBL_MMIO);
	cr_assert_eq(dma_iova_link(g.dev, &st, g.mem->phys + SZ_4K, SZ_4K, SZ_4K,
				   DMA_TO_DEVICE, 0), 0);
	cr_assert_eq(fx_stats(&g).cpu_cache_syncs, 1, "a normal link on a non-coherent device");
	cr_assert_eq(pgtbl_lookup(&g.dom->pt, st.addr + SZ_4K, &leaf), 0);
	cr_assert_not(leaf.prot & PGTBL_MMIO);
	cr_assert_eq(dma_iova_destroy(g.dev, &st, 2 * SZ_4K, DMA_TO_DEVICE, 0), 0);
	fx_teardown(&g);
}

Test(dma_api, require_coherent_on_non_coherent_is_eopnotsupp)
{
	struct fx g;
	struct dma_iova_state st;

	fx_setup(&g, (struct dom_config){ 0 },
		 (struct dom_device_config){ .non_coherent = true }, SZ_2M);
	cr_assert(dma_iova_try_alloc(g.dev, &st, 0, SZ_4K));
	cr_assert_eq(dma_iova_link(g.dev, &st, g.mem->phys, 0, SZ_4K, DMA_TO_DEVICE,
				   DMA_ATTR_REQUIRE_COHERENT), -EOPNOTSUPP);
	fx_teardown(&g);
}

Test(dma_api, table_allocation_failure_is_enomem)
{
	struct fx g;
	struct dma_iova_state st;

	/* Room for the root only: the first link needs three more tables. */
	fx_setup(&g, (struct dom_config){ .max_table_bytes = 4096 },
		 (struct dom_device_config){ 0 }, SZ_2M);
	cr_assert(dma_iova_try_alloc(g.dev, &st, 0, SZ_4K));
	cr_assert_eq(dma_iova_link(g.dev, &st, g.mem->phys, 0, SZ_4K, DMA_TO_DEVICE, 0),
		     -ENOMEM);
	cr_assert_eq(fx_stats(&g).mapped_bytes, 0);
	cr_assert_eq(dma_iova_free(g.dev, &st), 0);
	fx_teardown(&g);
}

/* ---- sync and batching ---------------------------------------------------- */

Test(dma_api, each_sync_flushes_once_without_a_batch)
{
	struct dma_iova_state st;
	struct dom_stats s0 = fx_stats(&f), s1;

	cr_assert(dma_iova_try_alloc(f.dev, &st, 0, 8 * SZ_4K));
	for (int i = 0; i < 8; i++) {
		cr_assert_eq(dma_iova_link(f.dev, &st, f.mem->phys + i * SZ_4K, i * SZ_4K, SZ_4K,
					   DMA_TO_DEVICE, 0), 0);
		cr_assert_eq(dma_iova_sync(f.dev, &st, i * SZ_4K, SZ_4K), 0);
	}
	s1 = fx_stats(&f);
	cr_assert_eq(s1.syncs - s0.syncs, 8);
	cr_assert_eq(s1.flush_sync_map - s0.flush_sync_map, 8);
	cr_assert_eq(s1.iotlb_flushes - s0.iotlb_flushes, 8);
}

Test(dma_api, syncs_in_a_batch_collapse_into_one_flush)
{
	struct dma_iova_state st;
	struct dom_stats s0 = fx_stats(&f), s1;
	uint8_t b;

	cr_assert(dma_iova_try_alloc(f.dev, &st, 0, 8 * SZ_4K));
	dom_batch_begin(f.dom);
	for (int i = 0; i < 8; i++) {
		cr_assert_eq(dma_iova_link(f.dev, &st, f.mem->phys + i * SZ_4K, i * SZ_4K, SZ_4K,
					   DMA_TO_DEVICE, 0), 0);
		cr_assert_eq(dma_iova_sync(f.dev, &st, i * SZ_4K, SZ_4K), 0);
	}
	cr_assert_eq(fx_stats(&f).iotlb_flushes, s0.iotlb_flushes, "deferred to the end");
	cr_assert_eq(dom_batch_end(f.dom), 1);
	s1 = fx_stats(&f);
	cr_assert_eq(s1.syncs - s0.syncs, 8);
	cr_assert_eq(s1.iotlb_flushes - s0.iotlb_flushes, 1);
	cr_assert_eq(dom_dev_dma_read(f.dev, st.addr + 7 * SZ_4K, &b, 1, NULL), 0);
	cr_assert_eq(dom_batch_end(f.dom), 0, "unbalanced end is harmless");
}

Test(dma_api, sync_on_non_coherent_counts_cache_maintenance_on_link)
{
	struct fx g;
	struct dma_iova_state st;

	fx_setup(&g, (struct dom_config){ 0 },
		 (struct dom_device_config){ .non_coherent = true }, SZ_2M);
	cr_assert(dma_iova_try_alloc(g.dev, &st, 0, 2 * SZ_4K));
	cr_assert_eq(dma_iova_link(g.dev, &st, g.mem->phys, 0, 2 * SZ_4K, DMA_BIDIRECTIONAL, 0),
		     0);
	cr_assert_eq(fx_stats(&g).cpu_cache_syncs, 1);
	/* Unlink on a non-coherent device takes the slow path: one per granule. */
	cr_assert_eq(dma_iova_destroy(g.dev, &st, 2 * SZ_4K, DMA_BIDIRECTIONAL, 0), 0);
	cr_assert_eq(fx_stats(&g).cpu_cache_syncs, 3);
	/* SKIP_CPU_SYNC skips it. */
	cr_assert(dma_iova_try_alloc(g.dev, &st, 0, SZ_4K));
	cr_assert_eq(dma_iova_link(g.dev, &st, g.mem->phys, 0, SZ_4K, DMA_BIDIRECTIONAL,
				   DMA_ATTR_SKIP_CPU_SYNC), 0);
	cr_assert_eq(fx_stats(&g).cpu_cache_syncs, 3);
	cr_assert_eq(dma_iova_destroy(g.dev, &st, SZ_4K, DMA_BIDIRECTIONAL,
				      DMA_ATTR_SKIP_CPU_SYNC), 0);
	fx_teardown(&g);
}

/*
 * The slow unlink path (non-coherent device, bounced links) only visits
 * what is mapped: a 64 TiB state with two linked pages is torn down at
 * once (walking it a granule at a time, as the kernel does, is 16 G
 * lookups: the timeout catches that), and each linked page still gets its
 * cache maintenance.
 */
Test(dma_api, slow_unlink_skips_what_nothing_maps, .timeout = 30)
{
	const uint64_t huge = UINT64_C(64) << 40;
	struct dma_iova_state st;
	struct fx g;

	fx_setup(&g, (struct dom_config){ 0 },
		 (struct dom_device_config){ .non_coherent = true }, SZ_2M);
	cr_assert(dma_iova_try_alloc(g.dev, &st, 0, huge));
	cr_assert_eq(dma_iova_link(g.dev, &st, g.mem->phys, 0, SZ_4K, DMA_BIDIRECTIONAL, 0), 0);
	cr_assert_eq(dma_iova_link(g.dev, &st, g.mem->phys + SZ_4K, huge / 2 + 3 * SZ_4K, SZ_4K,
				   DMA_BIDIRECTIONAL, 0), 0);
	cr_assert_eq(fx_stats(&g).cpu_cache_syncs, 2);
	/* Holes everywhere else: -ENOENT, and the IOVA is released all the same. */
	(void)dma_iova_destroy(g.dev, &st, huge, DMA_BIDIRECTIONAL, 0);
	cr_assert_not(dma_use_iova(&st));
	cr_assert_eq(fx_stats(&g).cpu_cache_syncs, 4, "one maintenance per linked granule");
	fx_teardown(&g);
}

Test(dma_api, sync_out_of_range_is_einval)
{
	struct dma_iova_state st, none = { 0 };

	cr_assert(dma_iova_try_alloc(f.dev, &st, 0, SZ_4K));
	cr_assert_eq(dma_iova_sync(f.dev, &st, 0, 2 * SZ_4K), -EINVAL);
	cr_assert_eq(dma_iova_sync(f.dev, &none, 0, SZ_4K), -EINVAL);
	cr_assert_eq(fx_stats(&f).syncs, 0);
}

/* ---- unlink, gather, destroy, free -------------------------------------- */

Test(dma_api, unlink_of_contiguous_pages_is_one_flush)
{
	struct dma_iova_state st;
	struct dom_stats s0, s1;

	cr_assert(dma_iova_try_alloc(f.dev, &st, 0, 16 * SZ_4K));
	cr_assert_eq(dma_iova_link(f.dev, &st, f.mem->phys + SZ_4K, 0, 16 * SZ_4K,
				   DMA_TO_DEVICE, 0), 0);
	cr_assert_eq(dma_iova_sync(f.dev, &st, 0, 16 * SZ_4K), 0);
	s0 = fx_stats(&f);
	cr_assert_eq(dma_iova_unlink(f.dev, &st, 0, 16 * SZ_4K, DMA_TO_DEVICE, 0), 0);
	s1 = fx_stats(&f);
	cr_assert_eq(s1.flush_range - s0.flush_range, 1, "adjacent pages merge");
	cr_assert_eq(s1.unlinks - s0.unlinks, 1);
	cr_assert_eq(s1.mapped_bytes, 0);
}

Test(dma_api, unlink_flushes_early_on_page_size_change)
{
	struct dma_iova_state st;
	struct dom_stats s0, s1;
	struct pgtbl_leaf leaf;

	/* 2 MiB block followed by one 4 KiB page: two leaf sizes, two flushes. */
	cr_assert(dma_iova_try_alloc(f.dev, &st, 0, SZ_2M + SZ_4K));
	cr_assert_eq(st.addr % SZ_2M, 0);
	cr_assert_eq(f.mem->phys % SZ_2M, 0);
	cr_assert_eq(dma_iova_link(f.dev, &st, f.mem->phys, 0, SZ_2M + SZ_4K,
				   DMA_TO_DEVICE, 0), 0);
	cr_assert_eq(pgtbl_lookup(&f.dom->pt, st.addr, &leaf), 0);
	cr_assert_eq(leaf.size, SZ_2M, "a block is used when both sides are aligned");
	s0 = fx_stats(&f);
	cr_assert_eq(dma_iova_unlink(f.dev, &st, 0, SZ_2M + SZ_4K, DMA_TO_DEVICE, 0), 0);
	s1 = fx_stats(&f);
	cr_assert_eq(s1.flush_range - s0.flush_range, 2);
}

Test(dma_api, unlink_flushes_early_on_disjoint_range)
{
	struct dma_iova_state st;
	struct dom_stats s0, s1;

	cr_assert(dma_iova_try_alloc(f.dev, &st, 0, 4 * SZ_4K));
	cr_assert_eq(dma_iova_link(f.dev, &st, f.mem->phys, 0, SZ_4K, DMA_TO_DEVICE, 0), 0);
	cr_assert_eq(dma_iova_link(f.dev, &st, f.mem->phys, 2 * SZ_4K, SZ_4K, DMA_TO_DEVICE, 0),
		     0);
	s0 = fx_stats(&f);
	/* A hole between the two: disjoint, so the first is flushed early. */
	cr_assert_eq(dma_iova_unlink(f.dev, &st, 0, 3 * SZ_4K, DMA_TO_DEVICE, 0), -ENOENT);
	s1 = fx_stats(&f);
	cr_assert_eq(s1.flush_range - s0.flush_range, 2);
	cr_assert_eq(s1.unlink_holes - s0.unlink_holes, 1);
	cr_assert_eq(s1.mapped_bytes, 0, "what was linked is gone anyway");
}

Test(dma_api, unlink_takes_effect_at_once_for_the_device)
{
	struct dma_iova_state st;
	struct dom_fault flt;
	uint8_t b;

	cr_assert(dma_iova_try_alloc(f.dev, &st, 0, SZ_4K));
	cr_assert_eq(dma_iova_link(f.dev, &st, f.mem->phys, 0, SZ_4K, DMA_TO_DEVICE, 0), 0);
	cr_assert_eq(dma_iova_sync(f.dev, &st, 0, SZ_4K), 0);
	cr_assert_eq(dom_dev_dma_read(f.dev, st.addr, &b, 1, NULL), 0); /* now cached */
	cr_assert_eq(dma_iova_unlink(f.dev, &st, 0, SZ_4K, DMA_TO_DEVICE, 0), 0);
	cr_assert_eq(dom_dev_dma_read(f.dev, st.addr, &b, 1, &flt), -EFAULT);
	cr_assert_eq(flt.reason, DOM_FAULT_NOT_PRESENT);
}

Test(dma_api, free_with_ranges_linked_is_ebusy_and_counted)
{
	struct dma_iova_state st, saved;

	cr_assert(dma_iova_try_alloc(f.dev, &st, 0, 2 * SZ_4K));
	cr_assert_eq(dma_iova_link(f.dev, &st, f.mem->phys, SZ_4K, SZ_4K, DMA_TO_DEVICE, 0), 0);
	saved = st;
	cr_assert_eq(dma_iova_free(f.dev, &st), -EBUSY);
	cr_assert_eq(fx_stats(&f).free_busy, 1);
	cr_assert_eq(st.addr, saved.addr, "the state is left intact");
	cr_assert_eq(fx_stats(&f).iova_frees, 0);
	cr_assert_eq(dma_iova_unlink(f.dev, &st, SZ_4K, SZ_4K, DMA_TO_DEVICE, 0), 0);
	cr_assert_eq(dma_iova_free(f.dev, &st), 0);
	cr_assert_eq(fx_stats(&f).iova_frees, 1);
}

Test(dma_api, destroy_with_unmapped_tail_still_linked_is_ebusy)
{
	struct dma_iova_state st;

	cr_assert(dma_iova_try_alloc(f.dev, &st, 0, 2 * SZ_4K));
	cr_assert_eq(dma_iova_link(f.dev, &st, f.mem->phys, 0, 2 * SZ_4K, DMA_TO_DEVICE, 0), 0);
	cr_assert_eq(dma_iova_destroy(f.dev, &st, SZ_4K, DMA_TO_DEVICE, 0), -EBUSY);
	cr_assert_eq(fx_stats(&f).free_busy, 1);
	cr_assert_eq(fx_stats(&f).mapped_bytes, SZ_4K);
	cr_assert_eq(dma_iova_destroy(f.dev, &st, 2 * SZ_4K, DMA_TO_DEVICE, 0), -ENOENT,
		     "the first granule was already unlinked");
	cr_assert_eq(fx_stats(&f).mapped_bytes, 0);
	cr_assert_not(dma_use_iova(&st));
}

Test(dma_api, destroy_with_zero_length_is_free)
{
	struct dma_iova_state st;

	cr_assert(dma_iova_try_alloc(f.dev, &st, 0, SZ_4K));
	cr_assert_eq(dma_iova_destroy(f.dev, &st, 0, DMA_TO_DEVICE, 0), 0);
	cr_assert_not(dma_use_iova(&st));
	cr_assert_eq(fx_stats(&f).iova_frees, 1);
	cr_assert_eq(fx_stats(&f).unlinks, 0);
}

Test(dma_api, strict_destroy_flushes_and_frees_immediately)
{
	struct dma_iova_state st;
	struct dom_fault flt;
	uint64_t addr;
	uint8_t b;

	cr_assert(dma_iova_try_alloc(f.dev, &st, 0, SZ_4K));
	addr = st.addr;
	cr_assert_eq(dma_iova_link(f.dev, &st, f.mem->phys, 0, SZ_4K, DMA_TO_DEVICE, 0), 0);
	cr_assert_eq(dma_iova_sync(f.dev, &st, 0, SZ_4K), 0);
	cr_assert_eq(dom_dev_dma_read(f.dev, addr, &b, 1, NULL), 0);
	cr_assert_eq(dma_iova_destroy(f.dev, &st, SZ_4K, DMA_TO_DEVICE, 0), 0);
	cr_assert_eq(dom_dev_dma_read(f.dev, addr, &b, 1, &flt), -EFAULT);
	cr_assert_eq(fx_stats(&f).fq_queued, 0);
	cr_assert(dma_iova_try_alloc(f.dev, &st, 0, SZ_4K));
	cr_assert_eq(st.addr, addr, "reused at once");
}

/* ---- untrusted devices: swiotlb bouncing -------------------------------- */

static struct fx u;

static void setup_untrusted(void)
{
	fx_setup(&u, (struct dom_config){ 0 }, (struct dom_device_config){ .untrusted = true },
		 SZ_2M);
}

static void teardown_untrusted(void)
{
	fx_teardown(&u);
}

TestSuite(swiotlb_link, .init = setup_untrusted, .fini = teardown_untrusted);

Test(swiotlb_link, head_and_tail_bounced_middle_direct)
{
	struct dma_iova_state st;
	uint64_t phys = u.mem->phys + SZ_4K + 0x100; /* unaligned head */
	uint64_t size = 2 * SZ_4K + 0x200;           /* ends unaligned too */
	uint8_t buf[3 * SZ_4K];
	struct pgtbl_leaf leaf;
	struct dom_stats s;

	cr_assert(dma_iova_try_alloc(u.dev, &st, phys, size));
	cr_assert_eq(dma_iova_link(u.dev, &st, phys, 0, size, DMA_TO_DEVICE, 0), 0);
	cr_assert(st.__size & DMA_IOVA_USE_SWIOTLB, "bounce bit set");
	cr_assert_eq(dma_iova_size(&st), size);
	cr_assert_eq(dma_iova_sync(u.dev, &st, 0, size), 0);
	s = fx_stats(&u);
	cr_assert_eq(s.bounce_maps, 2);
	cr_assert_eq(s.bounced_bytes, (SZ_4K - 0x100) + 0x300);

	/* The device sees the buffer's bytes... */
	cr_assert_eq(dom_dev_dma_read(u.dev, st.addr, buf, size, NULL), 0);
	for (uint64_t i = 0; i < size; i++)
		cr_assert_eq(buf[i], fx_byte(0x11, SZ_4K + 0x100 + i), "byte %lu", (unsigned long)i);
	/* ...and zeros, not the neighbours' bytes, in the padding around it. */
	cr_assert_eq(dom_dev_dma_read(u.dev, st.addr - 0x100, buf, 0x100, NULL), 0);
	for (int i = 0; i < 0x100; i++)
		cr_assert_eq(buf[i], 0);
	cr_assert_eq(dom_dev_dma_read(u.dev, st.addr + size, buf, SZ_4K - 0x300, NULL), 0);
	for (uint64_t i = 0; i < SZ_4K - 0x300; i++)
		cr_assert_eq(buf[i], 0);
	/* The middle granule is the client's memory itself. */
	cr_assert_eq(pgtbl_lookup(&u.dom->pt, st.addr - 0x100 + SZ_4K, &leaf), 0);
	cr_assert_eq(leaf.phys, u.mem->phys + 2 * SZ_4K);
	cr_assert_eq(pgtbl_lookup(&u.dom->pt, st.addr - 0x100, &leaf), 0);
	cr_assert(swiotlb_owns(&u.dom->swiotlb, leaf.phys));

	cr_assert_eq(dma_iova_destroy(u.dev, &st, size, DMA_TO_DEVICE, 0), 0);
	cr_assert_eq(u.dom->swiotlb.stats.slots_used, 0);
}

Test(swiotlb_link, small_buffer_inside_one_granule_has_empty_middle)
{
	struct dma_iova_state st;
	uint64_t phys = u.mem->phys + 0x10;

	cr_assert(dma_iova_try_alloc(u.dev, &st, phys, 0x20));
	cr_assert_eq(dma_iova_link(u.dev, &st, phys, 0, 0x20, DMA_TO_DEVICE, 0), 0);
	cr_assert_eq(fx_stats(&u).bounce_maps, 1);
	cr_assert_eq(fx_stats(&u).mapped_bytes, SZ_4K);
	cr_assert_eq(dma_iova_destroy(u.dev, &st, 0x20, DMA_TO_DEVICE, 0), 0);
}

Test(swiotlb_link, aligned_buffer_is_not_bounced)
{
	struct dma_iova_state st;

	cr_assert(dma_iova_try_alloc(u.dev, &st, 0, 2 * SZ_4K));
	cr_assert_eq(dma_iova_link(u.dev, &st, u.mem->phys, 0, 2 * SZ_4K, DMA_TO_DEVICE, 0), 0);
	cr_assert_eq(st.__size & DMA_IOVA_USE_SWIOTLB, 0);
	cr_assert_eq(fx_stats(&u).bounce_maps, 0);
}

Test(swiotlb_link, bounce_refused_with_mmio_or_require_coherent)
{
	struct dma_iova_state st;
	uint64_t phys = u.mem->phys + 0x10;

	cr_assert(dma_iova_try_alloc(u.dev, &st, phys, 0x20));
	cr_assert_eq(dma_iova_link(u.dev, &st, phys, 0, 0x20, DMA_TO_DEVICE, DMA_ATTR_MMIO),
		     -EPERM);
	cr_assert_eq(dma_iova_link(u.dev, &st, phys, 0, 0x20, DMA_TO_DEVICE,
				   DMA_ATTR_REQUIRE_COHERENT), -EPERM);
	cr_assert_eq(fx_stats(&u).bounce_maps, 0);
}

Test(swiotlb_link, exhausted_pool_is_enomem)
{
	struct fx g;
	struct dma_iova_state st[3];

	/* A pool of two granules: the third bounce has nowhere to go. */
	fx_setup(&g, (struct dom_config){ .swiotlb_bytes = 2 * SZ_4K },
		 (struct dom_device_config){ .untrusted = true }, SZ_2M);
	for (int i = 0; i < 2; i++) {
		uint64_t phys = g.mem->phys + i * SZ_4K + 0x10;

		cr_assert(dma_iova_try_alloc(g.dev, &st[i], phys, 0x20));
		cr_assert_eq(dma_iova_link(g.dev, &st[i], phys, 0, 0x20, DMA_TO_DEVICE, 0), 0);
	}
	cr_assert(dma_iova_try_alloc(g.dev, &st[2], g.mem->phys + 0x810, 0x20));
	cr_assert_eq(dma_iova_link(g.dev, &st[2], g.mem->phys + 0x810, 0, 0x20,
				   DMA_TO_DEVICE, 0), -ENOMEM);
	cr_assert_eq(g.dom->swiotlb.stats.failures, 1);
	/* Releasing one makes room again. */
	cr_assert_eq(dma_iova_destroy(g.dev, &st[0], 0x20, DMA_TO_DEVICE, 0), 0);
	cr_assert_eq(dma_iova_link(g.dev, &st[2], g.mem->phys + 0x810, 0, 0x20,
				   DMA_TO_DEVICE, 0), 0);
	cr_assert_eq(dma_iova_destroy(g.dev, &st[1], 0x20, DMA_TO_DEVICE, 0), 0);
	cr_assert_eq(dma_iova_destroy(g.dev, &st[2], 0x20, DMA_TO_DEVICE, 0), 0);
	fx_teardown(&g);
}

static void bounce_copy_back(enum dma_data_direction dir, bool expect_copy)
{
	struct dma_iova_state st;
	uint64_t phys = u.mem->phys + 0x40;
	uint8_t data[0x40];

	memset(data, 0xa5, sizeof(data));
	cr_assert(dma_iova_try_alloc(u.dev, &st, phys, sizeof(data)));
	cr_assert_eq(dma_iova_link(u.dev, &st, phys, 0, sizeof(data), dir, 0), 0);
	cr_assert_eq(dma_iova_sync(u.dev, &st, 0, sizeof(data)), 0);
	if (dir == DMA_TO_DEVICE) {
		/* The device cannot write a TO_DEVICE mapping: poke the bounce slot. */
		struct pgtbl_leaf leaf;

		cr_assert_eq(pgtbl_lookup(&u.dom->pt, st.addr, &leaf), 0);
		cr_assert_eq(pmem_write(&u.pmem, leaf.phys + 0x40, data, sizeof(data)), 0);
	} else {
		cr_assert_eq(dom_dev_dma_write(u.dev, st.addr, data, sizeof(data), NULL), 0);
	}
	/* Not copied back before unlink: the device wrote the bounce slot. */
	cr_assert_eq(u.mem->va[0x40], fx_byte(0x11, 0x40));
	cr_assert_eq(dma_iova_destroy(u.dev, &st, sizeof(data), dir, 0), 0);
	for (unsigned int i = 0; i < sizeof(data); i++)
		cr_assert_eq(u.mem->va[0x40 + i], expect_copy ? 0xa5 : fx_byte(0x11, 0x40 + i));
	cr_assert_eq(u.mem->va[0x3f], fx_byte(0x11, 0x3f), "bytes before untouched");
	cr_assert_eq(u.mem->va[0x80], fx_byte(0x11, 0x80), "bytes after untouched");
}

Test(swiotlb_link, copied_back_for_from_device)
{
	bounce_copy_back(DMA_FROM_DEVICE, true);
}

Test(swiotlb_link, copied_back_for_bidirectional)
{
	bounce_copy_back(DMA_BIDIRECTIONAL, true);
}

Test(swiotlb_link, not_copied_back_for_to_device)
{
	bounce_copy_back(DMA_TO_DEVICE, false);
}

/* ---- streaming fallback ------------------------------------------------- */

Test(dma_api, map_phys_maps_and_syncs_one_range)
{
	uint64_t dma;
	uint8_t b;

	cr_assert_eq(dma_map_phys(f.dev, f.mem->phys + 0x10, 0x100, DMA_TO_DEVICE, 0, &dma), 0);
	cr_assert_eq(dma & 0xfff, 0x10);
	cr_assert_eq(dom_dev_dma_read(f.dev, dma, &b, 1, NULL), 0, "visible without a sync");
	cr_assert_eq(b, fx_byte(0x11, 0x10));
	cr_assert_eq(dma_unmap_phys(f.dev, dma, 0x100, DMA_TO_DEVICE, 0), 0);
	cr_assert_eq(dom_dev_dma_read(f.dev, dma, &b, 1, NULL), -EFAULT);
	cr_assert_eq(fx_stats(&f).map_phys, 1);
	cr_assert_eq(fx_stats(&f).unmap_phys, 1);
	cr_assert_eq(fx_stats(&f).iova_frees, 1);
}

Test(dma_api, unmap_phys_of_unknown_address_is_enoent)
{
	uint64_t dma;

	cr_assert_eq(dma_unmap_phys(f.dev, 0x12345000, SZ_4K, DMA_TO_DEVICE, 0), -ENOENT);
	cr_assert_eq(dma_map_phys(f.dev, f.mem->phys, SZ_4K, DMA_TO_DEVICE, 0, &dma), 0);
	cr_assert_eq(dma_unmap_phys(f.dev, dma, 2 * SZ_4K, DMA_TO_DEVICE, 0), -ENOENT,
		     "wrong size: refused");
	cr_assert_eq(fx_stats(&f).mapped_bytes, SZ_4K, "nothing was touched");
	cr_assert_eq(dma_unmap_phys(f.dev, dma, SZ_4K, DMA_TO_DEVICE, 0), 0);
}

Test(swiotlb_link, map_phys_bounces_whole_unaligned_buffer)
{
	uint64_t dma;
	uint8_t buf[0x300];

	cr_assert_eq(dma_map_phys(u.dev, u.mem->phys + 0x100, sizeof(buf), DMA_FROM_DEVICE, 0,
				  &dma), 0);
	cr_assert_eq(fx_stats(&u).bounced_bytes, sizeof(buf));
	memset(buf, 0x3c, sizeof(buf));
	cr_assert_eq(dom_dev_dma_write(u.dev, dma, buf, sizeof(buf), NULL), 0);
	cr_assert_eq(u.mem->va[0x100], fx_byte(0x11, 0x100), "device wrote the bounce slot");
	cr_assert_eq(dma_unmap_phys(u.dev, dma, sizeof(buf), DMA_FROM_DEVICE, 0), 0);
	for (unsigned int i = 0; i < sizeof(buf); i++)
		cr_assert_eq(u.mem->va[0x100 + i], 0x3c);
	cr_assert_eq(dma_map_phys(u.dev, u.mem->phys + 0x100, 0x10, DMA_TO_DEVICE,
				  DMA_ATTR_MMIO, &dma), -EPERM);
}

/* ---- dma_iova_link_run: merged LINKs, the same as the LINKs one by one -- */

static struct fx m1, m2; /* m1: the run merged; m2: the same pieces one by one */

static void setup_run(void)
{
	/* visibility = link: the leaves are published at once, and can be compared. */
	fx_setup(&m1, (struct dom_config){ .visibility = DOM_VISIBLE_ON_LINK },
		 (struct dom_device_config){ 0 }, 4 * SZ_2M);
	fx_setup(&m2, (struct dom_config){ .visibility = DOM_VISIBLE_ON_LINK },
		 (struct dom_device_config){ 0 }, 4 * SZ_2M);
}

static void teardown_run(void)
{
	fx_teardown(&m1);
	fx_teardown(&m2);
}

TestSuite(link_run, .init = setup_run, .fini = teardown_run);

/* Both fixtures: the same leaf (or hole) at every granule of [addr, addr + len). */
static void same_leaves(uint64_t a1, uint64_t a2, uint64_t len)
{
	for (uint64_t off = 0; off < len; off += SZ_4K) {
		struct pgtbl_leaf l1, l2;
		int r1 = pgtbl_lookup(&m1.dom->pt, a1 + off, &l1);
		int r2 = pgtbl_lookup(&m2.dom->pt, a2 + off, &l2);

		cr_assert_eq(r1, r2, "granule %#lx: %d vs %d", (unsigned long)off, r1, r2);
		if (r1)
			continue;
		cr_assert_eq(l1.phys - m1.mem->phys, l2.phys - m2.mem->phys);
		cr_assert_eq(l1.size, l2.size, "granule %#lx: leaf %#lx vs %#lx",
			     (unsigned long)off, (unsigned long)l1.size, (unsigned long)l2.size);
		cr_assert_eq(l1.prot, l2.prot);
	}
}

static void same_counters(void)
{
	struct dom_stats a = fx_stats(&m1), b = fx_stats(&m2);

	cr_assert_eq(a.links, b.links);
	cr_assert_eq(a.link_errors, b.link_errors);
	cr_assert_eq(a.cpu_cache_syncs, b.cpu_cache_syncs);
	cr_assert_eq(a.mapped_bytes, b.mapped_bytes);
	cr_assert_eq(m1.dom->pt.stats.table_bytes, m2.dom->pt.stats.table_bytes);
}

Test(link_run, a_2m_aligned_run_of_pages_makes_4k_leaves_and_counts_each_link)
{
	struct dma_iova_state s1, s2;
	const uint32_t n = 512; /* exactly one 2 MiB block, which the pieces never make */

	cr_assert(dma_iova_try_alloc(m1.dev, &s1, 0, SZ_2M));
	cr_assert(dma_iova_try_alloc(m2.dev, &s2, 0, SZ_2M));
	cr_assert_eq(s1.addr & (SZ_2M - 1), 0, "2 MiB aligned: a block would fit");
	cr_assert_eq(dma_iova_link_run(m1.dev, &s1, m1.mem->phys, 0, SZ_2M, DMA_BIDIRECTIONAL, 0,
				       n), 0);
	for (uint32_t i = 0; i < n; i++)
		cr_assert_eq(dma_iova_link(m2.dev, &s2, m2.mem->phys + i * SZ_4K, i * SZ_4K, SZ_4K,
					   DMA_BIDIRECTIONAL, 0), 0);
	cr_assert_eq(fx_stats(&m1).links, n);
	same_counters();
	same_leaves(s1.addr, s2.addr, SZ_2M);
	cr_assert_eq(m1.dom->pt.stats.block_maps, 0);
	/* The device reads the pages' bytes. */
	{
		uint8_t buf[64];

		cr_assert_eq(dom_dev_dma_read(m1.dev, s1.addr + 77 * SZ_4K + 5, buf, sizeof(buf),
					      NULL), 0);
		for (size_t i = 0; i < sizeof(buf); i++)
			cr_assert_eq(buf[i], fx_byte(0x11, 77 * SZ_4K + 5 + i));
	}
	/* One page out of the middle, as after LINKs one by one. */
	cr_assert_eq(dma_iova_unlink(m1.dev, &s1, 100 * SZ_4K, SZ_4K, DMA_BIDIRECTIONAL, 0), 0);
	cr_assert_eq(dma_iova_unlink(m2.dev, &s2, 100 * SZ_4K, SZ_4K, DMA_BIDIRECTIONAL, 0), 0);
	same_leaves(s1.addr, s2.addr, SZ_2M);
	cr_assert_eq(m1.dom->pt.stats.block_splits, 0);
}

Test(link_run, a_run_over_a_linked_page_fails_whole_and_changes_nothing)
{
	struct dma_iova_state st;
	struct dom_stats before;
	struct pgtbl_leaf leaf;

	cr_assert(dma_iova_try_alloc(m1.dev, &st, 0, 16 * SZ_4K));
	cr_assert_eq(dma_iova_link(m1.dev, &st, m1.mem->phys + 9 * SZ_4K, 9 * SZ_4K, SZ_4K,
				   DMA_TO_DEVICE, 0), 0);
	before = fx_stats(&m1);
	cr_assert_eq(dma_iova_link_run(m1.dev, &st, m1.mem->phys, 0, 16 * SZ_4K, DMA_TO_DEVICE,
				       0, 16), -EEXIST);
	cr_assert_eq(fx_stats(&m1).links, before.links, "no counter moves");
	cr_assert_eq(fx_stats(&m1).link_errors, before.link_errors);
	cr_assert_eq(fx_stats(&m1).mapped_bytes, before.mapped_bytes);
	for (uint64_t i = 0; i < 16; i++)
		cr_assert_eq(pgtbl_lookup(&m1.dom->pt, st.addr + i * SZ_4K, &leaf),
			     i == 9 ? 0 : -ENOENT, "page %lu", (unsigned long)i);
}

Test(link_run, refuses_what_it_cannot_merge)
{
	struct dma_iova_state st, none = { 0 };
	struct dom_stats before;

	cr_assert(dma_iova_try_alloc(m1.dev, &st, 0, 8 * SZ_4K));
	before = fx_stats(&m1);
	cr_assert_eq(dma_iova_link_run(m1.dev, &st, m1.mem->phys, 0, 8 * SZ_4K, DMA_TO_DEVICE,
				       0, 0), -EINVAL, "nr 0");
	cr_assert_eq(dma_iova_link_run(m1.dev, &st, m1.mem->phys + 0x10, 0, 2 * SZ_4K,
				       DMA_TO_DEVICE, 0, 2), -EINVAL, "phys not aligned");
	cr_assert_eq(dma_iova_link_run(m1.dev, &st, m1.mem->phys, 0, 2 * SZ_4K - 8,
				       DMA_TO_DEVICE, 0, 2), -EINVAL, "size not aligned");
	cr_assert_eq(dma_iova_link_run(m1.dev, &st, m1.mem->phys, 4 * SZ_4K, 8 * SZ_4K,
				       DMA_TO_DEVICE, 0, 8), -EINVAL, "beyond the state");
	cr_assert_eq(dma_iova_link_run(m1.dev, &none, m1.mem->phys, 0, 2 * SZ_4K, DMA_TO_DEVICE,
				       0, 2), -EINVAL, "no state");
	cr_assert_eq(dma_iova_link_run(m1.dev, &st, m1.mem->phys, 0, 2 * SZ_4K, 7, 0, 2),
		     -EINVAL, "bad direction");
	cr_assert_eq(fx_stats(&m1).links, before.links);
	cr_assert_eq(fx_stats(&m1).link_errors, before.link_errors, "the caller's fallback counts");
	cr_assert_eq(fx_stats(&m1).mapped_bytes, 0);
}

Test(link_run, counts_cache_maintenance_per_link_on_a_non_coherent_device)
{
	struct dma_iova_state s1, s2;

	fx_teardown(&m1);
	fx_teardown(&m2);
	fx_setup(&m1, (struct dom_config){ 0 }, (struct dom_device_config){ .non_coherent = true },
		 SZ_2M);
	fx_setup(&m2, (struct dom_config){ 0 }, (struct dom_device_config){ .non_coherent = true },
		 SZ_2M);
	cr_assert(dma_iova_try_alloc(m1.dev, &s1, 0, 8 * SZ_4K));
	cr_assert(dma_iova_try_alloc(m2.dev, &s2, 0, 8 * SZ_4K));
	cr_assert_eq(dma_iova_link_run(m1.dev, &s1, m1.mem->phys, 0, 8 * SZ_4K, DMA_TO_DEVICE,
				       0, 4), 0, "4 pieces of 2 pages");
	for (int i = 0; i < 4; i++)
		cr_assert_eq(dma_iova_link(m2.dev, &s2, m2.mem->phys + i * 2 * SZ_4K,
					   i * 2 * SZ_4K, 2 * SZ_4K, DMA_TO_DEVICE, 0), 0);
	cr_assert_eq(fx_stats(&m1).cpu_cache_syncs, 4);
	same_counters();
	/* Published at sync, as links are. */
	cr_assert_eq(dma_iova_sync(m1.dev, &s1, 0, 8 * SZ_4K), 0);
	cr_assert_eq(dma_iova_sync(m2.dev, &s2, 0, 8 * SZ_4K), 0);
	same_leaves(s1.addr, s2.addr, 8 * SZ_4K);
}
