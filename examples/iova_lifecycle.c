// SPDX-License-Identifier: MIT
/*
 * iova-lifecycle - the IOVA-based DMA API, start to finish, in-process.
 *
 * A driver-style walk through dma_iova_try_alloc -> link -> sync -> device
 * DMA -> unlink -> destroy on the simulated domain, then the same buffer on
 * an untrusted device (swiotlb bounce) and the streaming fallback on an
 * identity domain. Every step is checked; the exit status says whether the
 * bytes the device moved were the right ones.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "domain.h"

#define SZ_4K UINT64_C(0x1000)

static int failures;

#define STEP(expr)                                                                  \
	do {                                                                        \
		int r_ = (expr);                                                    \
		printf("  %-66s -> %s\n", #expr, r_ ? strerror(-r_) : "ok");        \
		if (r_)                                                             \
			failures++;                                                 \
	} while (0)

static void print_stats(const char *what, const struct dom_domain *d)
{
	struct dom_stats s;

	dom_domain_stats(d, &s);
	printf("  counters (%s): iova_allocs=%" PRIu64 " iova_frees=%" PRIu64 " links=%" PRIu64
	       " unlinks=%" PRIu64 " syncs=%" PRIu64 " iotlb_flushes=%" PRIu64
	       " bounced_bytes=%" PRIu64 " io_page_faults=%" PRIu64 " dma_bytes=%" PRIu64 "\n",
	       what, s.iova_allocs, s.iova_frees, s.links, s.unlinks, s.syncs, s.iotlb_flushes,
	       s.bounced_bytes, s.io_page_faults, s.dma_bytes);
}

/* Link a buffer in two ranges, sync once, let the device write it, check, tear down. */
static void lifecycle(struct dom_device *dev, struct pmem_obj *mem, uint64_t off, uint64_t len)
{
	struct dma_iova_state st;
	uint64_t phys = mem->phys + off, first;
	uint8_t msg[256], back[256];
	struct dom_fault flt;

	for (unsigned int i = 0; i < sizeof(msg); i++)
		msg[i] = (uint8_t)(i * 31 + 7);
	if (!dma_iova_try_alloc(dev, &st, phys, len)) {
		printf("  dma_iova_try_alloc: not possible, use dma_map_phys\n");
		failures++;
		return;
	}
	printf("  dma_iova_try_alloc(phys=%#" PRIx64 ", size=%#" PRIx64 ") -> iova %#" PRIx64 "\n",
	       phys, len, st.addr);
	/* The first range may start mid-granule; it must end on the merge boundary. */
	first = ((phys + SZ_4K) & ~(SZ_4K - 1)) - phys;
	STEP(dma_iova_link(dev, &st, phys, 0, first, DMA_BIDIRECTIONAL, 0));
	STEP(dma_iova_link(dev, &st, phys + first, first, len - first, DMA_BIDIRECTIONAL, 0));
	printf("  before sync the device faults: %s\n",
	       dom_dev_dma_write(dev, st.addr, msg, sizeof(msg), &flt) == -EFAULT ?
	       dom_fault_reason_str(flt.reason) : "NO FAULT (wrong)");
	STEP(dma_iova_sync(dev, &st, 0, len));
	STEP(dom_dev_dma_write(dev, st.addr + len - sizeof(msg), msg, sizeof(msg), NULL));
	STEP(dom_dev_dma_read(dev, st.addr + len - sizeof(msg), back, sizeof(back), NULL));
	STEP(dma_iova_destroy(dev, &st, len, DMA_BIDIRECTIONAL, 0));
	/* After destroy (and the bounce copy-back on an untrusted device) the CPU sees it. */
	if (memcmp(mem->va + off + len - sizeof(msg), msg, sizeof(msg)) || memcmp(back, msg, sizeof(msg))) {
		printf("  bytes: MISMATCH\n");
		failures++;
	} else {
		printf("  bytes: the device's write is in memory, byte for byte\n");
	}
}

int main(void)
{
	struct pmem_space pmem;
	struct dom_domain *sim0, *untrusted, *ident;
	struct dom_device *dev0, *udev, *idev;
	struct pmem_obj *mem;
	uint64_t dma;

	if (pmem_space_init(&pmem) || pmem_obj_create(&pmem, 1 << 20, "demo", &mem))
		return 1;
	dom_domain_create(&pmem, &(struct dom_config){ 0 }, &sim0);
	dom_domain_create(&pmem, &(struct dom_config){ 0 }, &untrusted);
	dom_domain_create(&pmem, &(struct dom_config){ .type = DOM_IDENTITY }, &ident);
	dom_device_create(sim0, &(struct dom_device_config){ .name = "sim0" }, &dev0);
	dom_device_create(untrusted, &(struct dom_device_config){ .name = "untrusted0",
		.untrusted = true }, &udev);
	dom_device_create(ident, &(struct dom_device_config){ .name = "identity0" }, &idev);

	printf("sim0: translating, 4 KiB granule, strict (merge boundary %#" PRIx64 ")\n",
	       dma_get_merge_boundary(dev0));
	lifecycle(dev0, mem, 0x2345, 5 * SZ_4K + 0x321);
	print_stats("sim0", sim0);

	printf("untrusted0: unaligned head and tail go through swiotlb\n");
	lifecycle(udev, mem, 0x40123, 3 * SZ_4K + 0x10);
	print_stats("untrusted0", untrusted);

	printf("identity0: no IOVA API; streaming map returns phys\n");
	printf("  dma_iova_try_alloc -> %s\n",
	       dma_iova_try_alloc(idev, &(struct dma_iova_state){ 0 }, mem->phys, SZ_4K) ?
	       "true (wrong)" : "false, as the kernel");
	STEP(dma_map_phys(idev, mem->phys + 0x80000, SZ_4K, DMA_TO_DEVICE, 0, &dma));
	printf("  dma address %#" PRIx64 " == phys %#" PRIx64 "\n", dma, mem->phys + 0x80000);
	if (dma != mem->phys + 0x80000)
		failures++;
	STEP(dma_unmap_phys(idev, dma, SZ_4K, DMA_TO_DEVICE, 0));

	dom_device_destroy(dev0);
	dom_device_destroy(udev);
	dom_device_destroy(idev);
	dom_domain_destroy(sim0);
	dom_domain_destroy(untrusted);
	dom_domain_destroy(ident);
	pmem_space_fini(&pmem);
	printf("iova-lifecycle: %s\n", failures ? "FAILED" : "all steps ok");
	return failures ? 1 : 0;
}
