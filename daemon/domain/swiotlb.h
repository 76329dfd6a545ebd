/* SPDX-License-Identifier: MIT */
/*
 * swiotlb.h - bounce buffer pool for untrusted devices
 *
 * An untrusted device must never see memory outside the buffer it was given.
 * An IOMMU maps whole granules, so the unaligned head and tail granules of a
 * buffer are copied into slots of this pool and the slot is mapped instead.
 * Slots are one granule each, placed in the synthetic physical space, and a
 * bounce keeps its offset inside the granule (the kernel's alloc_align_mask
 * of iova_mask), so the IOMMU can map the slot's whole granule and the
 * device sees the bytes at the same in-granule offset. Everything in the
 * slot outside the buffer is zeroed when the bounce is set up, so nothing
 * left over from an earlier user (or another client) is ever visible.
 */
#ifndef IOVAD_DOMAIN_SWIOTLB_H
#define IOVAD_DOMAIN_SWIOTLB_H

#include <stdbool.h>
#include <stdint.h>

#include "pmem.h"

/* The kernel's swiotlb_max_mapping_size(): 128 slots of 2 KiB. */
#define SWIOTLB_MAX_MAPPING (UINT64_C(256) << 10)

struct swiotlb_slot {
	uint64_t orig;     /* original phys of the bounced bytes (head slot only) */
	uint32_t len;      /* bounced bytes (head slot only) */
	uint32_t nslots;   /* slots in this mapping (head slot only), 0 when free */
	uint8_t head;      /* first slot of a mapping */
	uint8_t used;
};

struct swiotlb_stats {
	uint64_t maps;
	uint64_t unmaps;
	uint64_t bounced_bytes;  /* bytes copied in at map time */
	uint64_t copied_back;    /* bytes copied out at unmap time */
	uint64_t failures;       /* pool exhausted */
	uint64_t slots_used;     /* current */
	uint64_t slots_hwm;      /* high-water mark */
};

struct swiotlb_pool {
	struct pmem_obj *mem;
	uint64_t base;          /* phys of slot 0 */
	uint64_t slot_size;     /* the IOMMU granule */
	uint32_t nslots;
	uint32_t cursor;        /* next-fit search start */
	struct swiotlb_slot *slots;
	struct swiotlb_stats stats;
};

/* Return: 0, -EINVAL, -ENOMEM, or pmem's errors. */
int swiotlb_init(struct swiotlb_pool *p, struct pmem_space *s, uint64_t slot_size,
		 uint32_t nslots);
void swiotlb_fini(struct swiotlb_pool *p, struct pmem_space *s);

static inline bool swiotlb_owns(const struct swiotlb_pool *p, uint64_t phys)
{
	return p && p->mem && phys - p->base < (uint64_t)p->nslots * p->slot_size;
}

/*
 * swiotlb_map - bounce [orig, orig + len): allocate the granule-aligned slots
 * covering (orig % slot_size) + len, zero them around the buffer, copy the
 * original bytes in (always, whatever the direction, so no stale bytes can
 * leak) and return the bounce phys, which has orig's in-granule offset.
 * Return: 0, -EINVAL (len 0), -ENOMEM (pool exhausted or len above
 * SWIOTLB_MAX_MAPPING), -EFAULT (orig not backed).
 */
int swiotlb_map(struct swiotlb_pool *p, struct pmem_space *s, uint64_t orig, uint64_t len,
		uint64_t *ret_phys);

/*
 * swiotlb_unmap - release the mapping whose bounce address is phys, copying
 * the bytes back to the original first when copy_back is set (the DMA
 * direction was FROM_DEVICE or BIDIRECTIONAL).
 * Return: bytes released, or -ENOENT when phys is not a live bounce address.
 */
int64_t swiotlb_unmap(struct swiotlb_pool *p, struct pmem_space *s, uint64_t phys,
		      bool copy_back);

#endif /* IOVAD_DOMAIN_SWIOTLB_H */
