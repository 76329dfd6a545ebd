// SPDX-License-Identifier: MIT
/*
 * test_domain.c - domains and devices: strict and lazy flushing, the flush
 * queue, the bounded IOTLB, granules, blocks, shared domains, identity
 * domains, the DMA engine's faults, and restoring IOVAs after a restart.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#include "fixture.h"

static void map_one(struct fx *f, struct dma_iova_state *st, uint64_t phys, uint64_t size,
		    enum dma_data_direction dir)
{
	cr_assert(dma_iova_try_alloc(f->dev, st, phys, size));
	cr_assert_eq(dma_iova_link(f->dev, st, phys, 0, size, dir, 0), 0);
	cr_assert_eq(dma_iova_sync(f->dev, st, 0, size), 0);
}

/* ---- lazy domains and the flush queue ----------------------------------- */

Test(lazy, destroy_defers_flush_and_stale_entries_keep_translating)
{
	struct fx f;
	struct dma_iova_state st, st2;
	struct dom_fault flt;
	uint64_t addr;
	uint8_t b;

	fx_setup(&f, (struct dom_config){ .flush = DOM_FLUSH_LAZY },
		 (struct dom_device_config){ 0 }, SZ_2M);
	map_one(&f, &st, f.mem->phys, SZ_4K, DMA_TO_DEVICE);
	addr = st.addr;
	cr_assert_eq(dom_dev_dma_read(f.dev, addr, &b, 1, NULL), 0); /* cache it */
	cr_assert_eq(dma_iova_destroy(f.dev, &st, SZ_4K, DMA_TO_DEVICE, 0), 0);
	cr_assert_eq(fx_stats(&f).fq_queued, 1);
	cr_assert_eq(fx_stats(&f).flush_range, 0, "no synchronous flush on lazy destroy");
	cr_assert_eq(fx_stats(&f).mapped_bytes, 0, "the PTE is gone...");
	cr_assert_eq(dom_dev_dma_read(f.dev, addr, &b, 1, NULL), 0,
		     "...but the cached translation still works, as on hardware");
	cr_assert_eq(b, fx_byte(0x11, 0));

	/* The IOVA is not reused before the flush. */
	cr_assert(dma_iova_try_alloc(f.dev, &st2, 0, SZ_4K));
	cr_assert_neq(st2.addr, addr);
	cr_assert_eq(dma_iova_free(f.dev, &st2), 0);

	/* The timer: nothing before 10 ms, a full flush after. */
	cr_assert_eq(dom_fq_deadline(f.dom), 1000 + DOM_FQ_TIMEOUT_NS);
	f.now += DOM_FQ_TIMEOUT_NS - 1;
	cr_assert_eq(dom_fq_poll(f.dom), 0);
	f.now += 1;
	cr_assert_eq(dom_fq_poll(f.dom), 1);
	cr_assert_eq(fx_stats(&f).fq_timer, 1);
	cr_assert_eq(fx_stats(&f).flush_all, 1);
	cr_assert_eq(dom_fq_deadline(f.dom), 0);
	cr_assert_eq(dom_dev_dma_read(f.dev, addr, &b, 1, &flt), -EFAULT);
	cr_assert_eq(flt.reason, DOM_FAULT_NOT_PRESENT);
	/* Now the IOVA comes back. */
	cr_assert(dma_iova_try_alloc(f.dev, &st2, 0, SZ_4K));
	cr_assert_eq(st2.addr, addr);
	cr_assert_eq(dma_iova_free(f.dev, &st2), 0);
	fx_teardown(&f);
}

Test(lazy, unlink_still_flushes_synchronously)
{
	struct fx f;
	struct dma_iova_state st;
	uint8_t b;

	fx_setup(&f, (struct dom_config){ .flush = DOM_FLUSH_LAZY },
		 (struct dom_device_config){ 0 }, SZ_2M);
	map_one(&f, &st, f.mem->phys, SZ_4K, DMA_TO_DEVICE);
	cr_assert_eq(dom_dev_dma_read(f.dev, st.addr, &b, 1, NULL), 0);
	cr_assert_eq(dma_iova_unlink(f.dev, &st, 0, SZ_4K, DMA_TO_DEVICE, 0), 0);
	cr_assert_eq(fx_stats(&f).flush_range, 1);
	cr_assert_eq(dom_dev_dma_read(f.dev, st.addr, &b, 1, NULL), -EFAULT);
	cr_assert_eq(dma_iova_free(f.dev, &st), 0);
	cr_assert_eq(fx_stats(&f).fq_queued, 0, "free is immediate, as the kernel's");
	fx_teardown(&f);
}

Test(lazy, full_ring_forces_a_flush_of_everything)
{
	struct fx f;
	struct dma_iova_state st;

	fx_setup(&f, (struct dom_config){ .flush = DOM_FLUSH_LAZY },
		 (struct dom_device_config){ 0 }, SZ_2M);
	/* The ring holds DOM_FQ_SIZE - 1 entries; the next one finds it full. */
	for (unsigned int i = 0; i < DOM_FQ_SIZE - 1; i++) {
		map_one(&f, &st, f.mem->phys, SZ_4K, DMA_TO_DEVICE);
		cr_assert_eq(dma_iova_destroy(f.dev, &st, SZ_4K, DMA_TO_DEVICE, 0), 0);
	}
	cr_assert_eq(fx_stats(&f).fq_full, 0);
	cr_assert_eq(fx_stats(&f).flush_all, 0);
	map_one(&f, &st, f.mem->phys, SZ_4K, DMA_TO_DEVICE);
	cr_assert_eq(dma_iova_destroy(f.dev, &st, SZ_4K, DMA_TO_DEVICE, 0), 0);
	cr_assert_eq(fx_stats(&f).fq_full, 1);
	cr_assert_eq(fx_stats(&f).flush_all, 1);
	cr_assert_eq(fx_stats(&f).fq_queued, DOM_FQ_SIZE);
	cr_assert_eq(dom_fq_flush(f.dom), 1, "only the last one is still queued");
	cr_assert_eq(fx_stats(&f).flush_all, 2);
	fx_teardown(&f);
}

Test(lazy, unmap_phys_goes_through_the_queue)
{
	struct fx f;
	uint64_t dma;
	uint8_t b;

	fx_setup(&f, (struct dom_config){ .flush = DOM_FLUSH_LAZY },
		 (struct dom_device_config){ 0 }, SZ_2M);
	cr_assert_eq(dma_map_phys(f.dev, f.mem->phys, SZ_4K, DMA_TO_DEVICE, 0, &dma), 0);
	cr_assert_eq(dom_dev_dma_read(f.dev, dma, &b, 1, NULL), 0);
	cr_assert_eq(dma_unmap_phys(f.dev, dma, SZ_4K, DMA_TO_DEVICE, 0), 0);
	cr_assert_eq(fx_stats(&f).fq_queued, 1);
	cr_assert_eq(dom_dev_dma_read(f.dev, dma, &b, 1, NULL), 0, "stale until the flush");
	cr_assert_eq(dom_fq_flush(f.dom), 1);
	cr_assert_eq(dom_dev_dma_read(f.dev, dma, &b, 1, NULL), -EFAULT);
	fx_teardown(&f);
}

/* ---- visibility option --------------------------------------------------- */

Test(visibility, on_link_domain_needs_no_sync)
{
	struct fx f;
	struct dma_iova_state st;
	uint8_t b;

	fx_setup(&f, (struct dom_config){ .visibility = DOM_VISIBLE_ON_LINK },
		 (struct dom_device_config){ 0 }, SZ_2M);
	cr_assert(dma_iova_try_alloc(f.dev, &st, 0, SZ_4K));
	cr_assert_eq(dma_iova_link(f.dev, &st, f.mem->phys, 0, SZ_4K, DMA_TO_DEVICE, 0), 0);
	cr_assert_eq(dom_dev_dma_read(f.dev, st.addr, &b, 1, NULL), 0);
	cr_assert_eq(b, fx_byte(0x11, 0));
	fx_teardown(&f);
}

/* ---- the IOTLB ------------------------------------------------------------ */

Test(iotlb_model, bounded_and_evicting)
{
	struct fx f;
	struct dma_iova_state st;
	uint8_t b;

	fx_setup(&f, (struct dom_config){ .iotlb_entries = 16, .no_blocks = true },
		 (struct dom_device_config){ 0 }, SZ_2M);
	map_one(&f, &st, f.mem->phys, 64 * SZ_4K, DMA_TO_DEVICE);
	for (int i = 0; i < 64; i++)
		cr_assert_eq(dom_dev_dma_read(f.dev, st.addr + i * SZ_4K, &b, 1, NULL), 0);
	cr_assert_leq(f.dom->tlb.nvalid, 16);
	cr_assert_geq(f.dom->tlb.stats.evictions, 48);
	cr_assert_eq(fx_stats(&f).iotlb_misses, 64);
	/* A second touch of the most recent page hits. */
	cr_assert_eq(dom_dev_dma_read(f.dev, st.addr + 63 * SZ_4K, &b, 1, NULL), 0);
	cr_assert_eq(fx_stats(&f).iotlb_hits, 1);
	fx_teardown(&f);
}

Test(iotlb_model, block_costs_one_entry)
{
	struct fx f;
	struct dma_iova_state st;
	uint8_t b;

	fx_setup(&f, (struct dom_config){ 0 }, (struct dom_device_config){ 0 }, SZ_2M);
	map_one(&f, &st, f.mem->phys, SZ_2M, DMA_TO_DEVICE);
	for (uint64_t off = 0; off < SZ_2M; off += 64 * SZ_4K)
		cr_assert_eq(dom_dev_dma_read(f.dev, st.addr + off, &b, 1, NULL), 0);
	cr_assert_eq(f.dom->tlb.nvalid, 1);
	cr_assert_eq(fx_stats(&f).iotlb_misses, 1);
	cr_assert_eq(fx_stats(&f).iotlb_hits, 7);
	fx_teardown(&f);
}

/* ---- granules ------------------------------------------------------------- */

static void granule_roundtrip(unsigned int shift)
{
	struct fx f;
	struct dma_iova_state st;
	uint64_t g = UINT64_C(1) << shift;
	uint8_t out[300], in[300];

	fx_setup(&f, (struct dom_config){ .granule_shift = shift },
		 (struct dom_device_config){ 0 }, 8 * g);
	cr_assert_eq(dma_get_merge_boundary(f.dev), g - 1);
	if (shift == 12)
		cr_assert_eq(f.dom->pt.pgsize_bitmap, g | SZ_2M | SZ_1G, "4 KiB, 2 MiB, 1 GiB");
	else
		cr_assert_eq(f.dom->pt.pgsize_bitmap, g, "one page size: the granule");
	cr_assert(dma_iova_try_alloc(f.dev, &st, 0, 3 * g));
	cr_assert_eq(st.addr % (4 * g), 0);
	cr_assert_eq(dma_iova_link(f.dev, &st, f.mem->phys, 0, g + 100, DMA_BIDIRECTIONAL, 0),
		     0);
	cr_assert_eq(fx_stats(&f).mapped_bytes, 2 * g);
	cr_assert_eq(dma_iova_link(f.dev, &st, f.mem->phys, g + 100, g, DMA_BIDIRECTIONAL, 0),
		     -EINVAL, "not on the merge boundary");
	cr_assert_eq(dma_iova_link(f.dev, &st, f.mem->phys + 2 * g, 2 * g, g,
				   DMA_BIDIRECTIONAL, 0), 0);
	cr_assert_eq(dma_iova_sync(f.dev, &st, 0, 3 * g), 0);
	for (unsigned int i = 0; i < sizeof(out); i++)
		out[i] = (uint8_t)(i ^ 0x5c);
	/* Straddle the boundary between the two links. */
	cr_assert_eq(dom_dev_dma_write(f.dev, st.addr + 2 * g - 150, out, sizeof(out), NULL), 0);
	cr_assert_eq(dom_dev_dma_read(f.dev, st.addr + 2 * g - 150, in, sizeof(in), NULL), 0);
	cr_assert_arr_eq(in, out, sizeof(out));
	cr_assert_eq(f.mem->va[2 * g - 150], out[0]);
	cr_assert_eq(dma_iova_destroy(f.dev, &st, 3 * g, DMA_BIDIRECTIONAL, 0), 0);
	fx_teardown(&f);
}

Test(granule, g4k)
{
	granule_roundtrip(12);
}

Test(granule, g16k)
{
	granule_roundtrip(14);
}

Test(granule, g64k)
{
	granule_roundtrip(16);
}

Test(granule, bad_granule_and_aperture_rejected)
{
	struct pmem_space p;
	struct dom_domain *d;

	cr_assert_eq(pmem_space_init(&p), 0);
	cr_assert_eq(dom_domain_create(&p, &(struct dom_config){ .granule_shift = 13 }, &d),
		     -EINVAL);
	cr_assert_eq(dom_domain_create(&p, &(struct dom_config){ .aperture_end = 0x1234 }, &d),
		     -EINVAL);
	cr_assert_eq(dom_domain_create(&p, &(struct dom_config){ .iotlb_entries = 3 }, &d),
		     -EINVAL);
	cr_assert_eq(dom_domain_create(&p, &(struct dom_config){
		.aperture_end = UINT64_C(1) << 50 }, &d), -EINVAL);
	pmem_space_fini(&p);
}

Test(granule, aperture_bounds_allocation)
{
	struct fx f;
	struct dma_iova_state st;
	int n = 0;

	fx_setup(&f, (struct dom_config){ .aperture_start = 0x100000, .aperture_end = 0x10ffff },
		 (struct dom_device_config){ 0 }, 0);
	while (dma_iova_try_alloc(f.dev, &st, 0, SZ_4K)) {
		cr_assert_geq(st.addr, 0x100000);
		cr_assert_leq(st.addr, 0x10ffff);
		n++;
	}
	cr_assert_eq(n, 16);
	fx_teardown(&f);
}

/* ---- blocks and splitting through the API -------------------------------- */

Test(blocks, two_meg_block_split_on_partial_unlink)
{
	struct fx f;
	struct dma_iova_state st;
	struct pgtbl_leaf leaf;
	struct dom_fault flt;
	uint8_t b;

	fx_setup(&f, (struct dom_config){ 0 }, (struct dom_device_config){ 0 }, 2 * SZ_2M);
	map_one(&f, &st, f.mem->phys, SZ_2M, DMA_BIDIRECTIONAL);
	cr_assert_eq(pgtbl_lookup(&f.dom->pt, st.addr, &leaf), 0);
	cr_assert_eq(leaf.size, SZ_2M);
	cr_assert_eq(dom_dev_dma_read(f.dev, st.addr + SZ_4K, &b, 1, NULL), 0);

	/* Unlink one page out of the middle: the block splits, the rest survives. */
	cr_assert_eq(dma_iova_unlink(f.dev, &st, 16 * SZ_4K, SZ_4K, DMA_BIDIRECTIONAL, 0), 0);
	cr_assert_eq(f.dom->pt.stats.block_splits, 1);
	cr_assert_eq(fx_stats(&f).mapped_bytes, SZ_2M - SZ_4K);
	cr_assert_eq(dom_dev_dma_read(f.dev, st.addr + 16 * SZ_4K, &b, 1, &flt), -EFAULT,
		     "the cached block was flushed");
	cr_assert_eq(flt.reason, DOM_FAULT_NOT_PRESENT);
	for (uint64_t p = 0; p < 512; p += 15) {
		if (p == 16)
			continue;
		cr_assert_eq(dom_dev_dma_read(f.dev, st.addr + p * SZ_4K + 7, &b, 1, NULL), 0);
		cr_assert_eq(b, fx_byte(0x11, p * SZ_4K + 7));
	}
	cr_assert_eq(dma_iova_unlink(f.dev, &st, 0, 16 * SZ_4K, DMA_BIDIRECTIONAL, 0), 0);
	cr_assert_eq(dma_iova_unlink(f.dev, &st, 17 * SZ_4K, SZ_2M - 17 * SZ_4K,
				     DMA_BIDIRECTIONAL, 0), 0);
	cr_assert_eq(dma_iova_free(f.dev, &st), 0);
	cr_assert_eq(fx_stats(&f).table_bytes, 4096, "back to the root table alone");
	fx_teardown(&f);
}

Test(blocks, one_gig_block_when_aligned)
{
	struct fx f;
	struct dma_iova_state st;
	struct pgtbl_leaf leaf;
	uint8_t b = 0x77, r;

	/* A sparse 1 GiB memfd: placed 1 GiB-aligned, so a 1 GiB leaf fits. */
	fx_setup(&f, (struct dom_config){ 0 }, (struct dom_device_config){ 0 }, 0);
	cr_assert_eq(pmem_obj_create(&f.pmem, SZ_1G, "big", &f.mem), 0);
	cr_assert_eq(f.mem->phys % SZ_1G, 0);
	map_one(&f, &st, f.mem->phys, SZ_1G, DMA_BIDIRECTIONAL);
	cr_assert_eq(st.addr % SZ_1G, 0);
	cr_assert_eq(pgtbl_lookup(&f.dom->pt, st.addr + 12345, &leaf), 0);
	cr_assert_eq(leaf.size, SZ_1G);
	cr_assert_eq(dom_dev_dma_write(f.dev, st.addr + SZ_1G - 1, &b, 1, NULL), 0);
	cr_assert_eq(f.mem->va[SZ_1G - 1], 0x77);
	/* Split down two levels by unlinking one 4 KiB page. */
	cr_assert_eq(dma_iova_unlink(f.dev, &st, SZ_4K, SZ_4K, DMA_BIDIRECTIONAL, 0), 0);
	cr_assert_eq(f.dom->pt.stats.block_splits, 2);
	cr_assert_eq(dom_dev_dma_read(f.dev, st.addr + SZ_1G - 1, &r, 1, NULL), 0);
	cr_assert_eq(r, 0x77);
	cr_assert_eq(pgtbl_lookup(&f.dom->pt, st.addr + SZ_1G - 1, &leaf), 0);
	cr_assert_eq(leaf.size, SZ_2M);
	cr_assert_eq(dma_iova_unlink(f.dev, &st, 0, SZ_4K, DMA_BIDIRECTIONAL, 0), 0);
	cr_assert_eq(dma_iova_destroy(f.dev, &st, SZ_1G, DMA_BIDIRECTIONAL, 0), -ENOENT);
	cr_assert_eq(fx_stats(&f).mapped_bytes, 0);
	pmem_obj_destroy(&f.pmem, f.mem);
	fx_teardown(&f);
}

Test(blocks, misaligned_phys_gets_pages)
{
	struct fx f;
	struct dma_iova_state st;
	struct pgtbl_leaf leaf;

	fx_setup(&f, (struct dom_config){ 0 }, (struct dom_device_config){ 0 }, 2 * SZ_2M);
	map_one(&f, &st, f.mem->phys + SZ_4K, SZ_2M, DMA_TO_DEVICE);
	cr_assert_eq(pgtbl_lookup(&f.dom->pt, st.addr, &leaf), 0);
	cr_assert_eq(leaf.size, SZ_4K);
	fx_teardown(&f);
}

/* ---- devices sharing a domain --------------------------------------------- */

Test(group, devices_share_translations_and_counters)
{
	struct fx f;
	struct dom_device *peer, *d32;
	struct dma_iova_state st;
	uint8_t b = 0x42, r;

	fx_setup(&f, (struct dom_config){ 0 }, (struct dom_device_config){ 0 }, SZ_2M);
	cr_assert_eq(dom_device_create(f.dom, &(struct dom_device_config){ .name = "peer" },
				       &peer), 0);
	cr_assert_eq(dom_device_create(f.dom, &(struct dom_device_config){
		.name = "narrow", .dma_mask_bits = 32 }, &d32), 0);
	cr_assert_eq(f.dom->ndevices, 3);
	map_one(&f, &st, f.mem->phys, SZ_4K, DMA_BIDIRECTIONAL);
	cr_assert_eq(dom_dev_dma_write(f.dev, st.addr, &b, 1, NULL), 0);
	cr_assert_eq(dom_dev_dma_read(peer, st.addr, &r, 1, NULL), 0);
	cr_assert_eq(r, 0x42);
	cr_assert_eq(fx_stats(&f).dma_writes, 1);
	cr_assert_eq(fx_stats(&f).dma_reads, 1);
	/* The domain cannot go while devices are attached. */
	cr_assert_eq(dom_domain_destroy(f.dom), -EBUSY);
	/* A 32-bit device cannot emit an address above its mask. */
	struct dom_fault flt;

	cr_assert_eq(dom_dev_dma_read(d32, UINT64_C(1) << 40, &r, 1, &flt), -EFAULT);
	cr_assert_eq(flt.reason, DOM_FAULT_ADDRESS);
	dom_device_destroy(peer);
	dom_device_destroy(d32);
	fx_teardown(&f);
}

Test(group, shared_domain_magazine_respects_each_mask)
{
	struct fx f;
	struct dom_device *wide, *d32;
	struct dma_iova_state a, b;

	fx_setup(&f, (struct dom_config){ 0 }, (struct dom_device_config){ 0 }, 0);
	cr_assert_eq(dom_device_create(f.dom, &(struct dom_device_config){
		.name = "wide", .not_pci = true }, &wide), 0);
	cr_assert_eq(dom_device_create(f.dom, &(struct dom_device_config){
		.name = "d32", .dma_mask_bits = 32, .not_pci = true }, &d32), 0);
	cr_assert(dma_iova_try_alloc(wide, &a, 0, SZ_4K));
	cr_assert_gt(a.addr, UINT32_MAX);
	cr_assert_eq(dma_iova_free(wide, &a), 0);
	/* The freed high IOVA sits in the magazine; the 32-bit device must not get it. */
	cr_assert(dma_iova_try_alloc(d32, &b, 0, SZ_4K));
	cr_assert_leq(b.addr, UINT32_MAX);
	dom_device_destroy(wide);
	dom_device_destroy(d32);
	fx_teardown(&f);
}

/* ---- identity domains ------------------------------------------------------ */

Test(identity, no_iova_api_and_phys_is_the_bus_address)
{
	struct fx f;
	struct dma_iova_state st = { .addr = 5, .__size = 5 };
	uint64_t dma;
	uint8_t b = 0x99, r;

	fx_setup(&f, (struct dom_config){ .type = DOM_IDENTITY }, (struct dom_device_config){ 0 },
		 SZ_2M);
	cr_assert_not(dma_iova_try_alloc(f.dev, &st, f.mem->phys, SZ_4K));
	cr_assert_eq(st.addr, 0);
	cr_assert_eq(st.__size, 0);
	cr_assert_eq(dma_get_merge_boundary(f.dev), 0);
	cr_assert_eq(dma_map_phys(f.dev, f.mem->phys + 0x10, 0x100, DMA_TO_DEVICE, 0, &dma), 0);
	cr_assert_eq(dma, f.mem->phys + 0x10);
	cr_assert_eq(dom_dev_dma_write(f.dev, dma, &b, 1, NULL), 0);
	cr_assert_eq(dom_dev_dma_read(f.dev, dma, &r, 1, NULL), 0);
	cr_assert_eq(f.mem->va[0x10], 0x99);
	cr_assert_eq(dma_unmap_phys(f.dev, dma, 0x100, DMA_TO_DEVICE, 0), 0);
	cr_assert_eq(dma_iova_link(f.dev, &st, f.mem->phys, 0, SZ_4K, DMA_TO_DEVICE, 0),
		     -EINVAL);
	fx_teardown(&f);
}

Test(identity, map_beyond_mask_is_eio)
{
	struct fx f;
	uint64_t dma;

	fx_setup(&f, (struct dom_config){ .type = DOM_IDENTITY },
		 (struct dom_device_config){ .dma_mask_bits = 30 }, SZ_2M);
	cr_assert_geq(f.mem->phys, UINT64_C(1) << 30);
	cr_assert_eq(dma_map_phys(f.dev, f.mem->phys, SZ_4K, DMA_TO_DEVICE, 0, &dma), -EIO);
	fx_teardown(&f);
}

/* ---- the DMA engine ------------------------------------------------------- */

Test(dma_engine, large_transfer_over_many_pages_and_faults_are_atomic)
{
	struct fx f;
	struct dma_iova_state st;
	struct dom_fault flt;
	uint64_t len = 40 * SZ_4K;
	uint8_t *buf = malloc(len + SZ_4K);

	fx_setup(&f, (struct dom_config){ .no_blocks = true }, (struct dom_device_config){ 0 },
		 SZ_2M);
	cr_assert(dma_iova_try_alloc(f.dev, &st, 0, len + SZ_4K));
	cr_assert_eq(dma_iova_link(f.dev, &st, f.mem->phys, 0, len, DMA_BIDIRECTIONAL, 0), 0);
	cr_assert_eq(dma_iova_sync(f.dev, &st, 0, len), 0);
	for (uint64_t i = 0; i < len + SZ_4K; i++)
		buf[i] = (uint8_t)(i * 13);
	cr_assert_eq(dom_dev_dma_write(f.dev, st.addr, buf, len, NULL), 0);
	for (uint64_t i = 0; i < len; i += 997)
		cr_assert_eq(f.mem->va[i], (uint8_t)(i * 13));
	/* One page too far: the access faults at the first unmapped page, and moves nothing. */
	memset(buf, 0xee, len + SZ_4K);
	cr_assert_eq(dom_dev_dma_write(f.dev, st.addr + SZ_4K, buf, len, &flt), -EFAULT);
	cr_assert_eq(flt.iova, st.addr + len);
	cr_assert_eq(flt.access, DOM_ACCESS_WRITE);
	cr_assert_eq(f.mem->va[SZ_4K], (uint8_t)(SZ_4K * 13), "no partial write");
	cr_assert_eq(f.dom->nfaults, 1);
	cr_assert_eq(f.dom->faults[0].iova, st.addr + len);
	cr_assert_eq(dom_dev_dma_read(f.dev, st.addr, buf, 0, NULL), -EINVAL);
	free(buf);
	fx_teardown(&f);
}

Test(dma_engine, translation_to_unbacked_phys_is_a_bus_fault)
{
	struct fx f;
	struct dma_iova_state st;
	struct dom_fault flt;
	uint8_t b;

	fx_setup(&f, (struct dom_config){ 0 }, (struct dom_device_config){ 0 }, 0);
	/* Peer-to-peer style: link an address no memory object backs. */
	cr_assert(dma_iova_try_alloc(f.dev, &st, 0, SZ_4K));
	cr_assert_eq(dma_iova_link(f.dev, &st, UINT64_C(0x10000000), 0, SZ_4K, DMA_TO_DEVICE,
				   DMA_ATTR_MMIO), 0);
	cr_assert_eq(dma_iova_sync(f.dev, &st, 0, SZ_4K), 0);
	cr_assert_eq(dom_dev_dma_read(f.dev, st.addr, &b, 1, &flt), -EFAULT);
	cr_assert_eq(flt.reason, DOM_FAULT_BUS);
	cr_assert_str_eq(dom_fault_reason_str(flt.reason), "no memory behind the translation");
	fx_teardown(&f);
}

/* ---- restart: IOVAs restored exactly -------------------------------------- */

Test(restore, states_come_back_at_the_same_iova_and_phys)
{
	struct fx f, g;
	struct dma_iova_state st[4], other;
	uint64_t sizes[4] = { SZ_4K, 3 * SZ_4K + 5, SZ_2M, 40 * SZ_4K };
	uint64_t phys, mem_size;
	struct pmem_obj *mem2;
	int fd;
	uint8_t b;

	fx_setup(&f, (struct dom_config){ 0 }, (struct dom_device_config){ 0 }, 4 * SZ_2M);
	phys = f.mem->phys;
	mem_size = f.mem->size;
	for (int i = 0; i < 4; i++) {
		cr_assert(dma_iova_try_alloc(f.dev, &st[i], phys, sizes[i]));
		cr_assert_eq(dma_iova_link(f.dev, &st[i], phys, 0, sizes[i], DMA_TO_DEVICE, 0), 0);
	}
	fd = fcntl(f.mem->fd, F_DUPFD_CLOEXEC, 3);
	cr_assert_geq(fd, 0);

	/* "Restart": a new space and domain; memory goes back to its phys. */
	fx_setup(&g, (struct dom_config){ 0 }, (struct dom_device_config){ 0 }, 0);
	cr_assert_eq(pmem_obj_import_at(&g.pmem, fd, 0, mem_size, phys, &mem2), 0);
	cr_assert_eq(pmem_obj_import_at(&g.pmem, fd, 0, SZ_4K, phys, &mem2), -EEXIST);
	for (int i = 0; i < 4; i++) {
		cr_assert_eq(dma_iova_reserve(g.dev, &st[i]), 0);
		cr_assert_eq(dma_iova_reserve(g.dev, &st[i]), -EEXIST);
		cr_assert_eq(dma_iova_link(g.dev, &st[i], phys, 0, sizes[i], DMA_TO_DEVICE, 0), 0);
		cr_assert_eq(dma_iova_sync(g.dev, &st[i], 0, sizes[i]), 0);
		cr_assert_eq(dom_dev_dma_read(g.dev, st[i].addr + sizes[i] - 1, &b, 1, NULL), 0);
		cr_assert_eq(b, fx_byte(0x11, sizes[i] - 1), "same IOVA, same bytes");
	}
	/* New allocations never collide with the restored ones. */
	for (int n = 0; n < 64; n++) {
		cr_assert(dma_iova_try_alloc(g.dev, &other, 0, 3 * SZ_4K));
		for (int i = 0; i < 4; i++) {
			uint64_t lo = st[i].addr & ~(SZ_4K - 1);
			uint64_t hi = st[i].addr + dma_iova_size(&st[i]);

			cr_assert(other.addr + 3 * SZ_4K <= lo || other.addr >= hi);
		}
	}
	close(fd);
	fx_teardown(&f);
	fx_teardown(&g);
}
