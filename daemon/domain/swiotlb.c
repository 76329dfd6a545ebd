// SPDX-License-Identifier: MIT
/*
 * swiotlb.c - bounce buffer pool for untrusted devices
 */
#include "swiotlb.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

int swiotlb_init(struct swiotlb_pool *p, struct pmem_space *s, uint64_t slot_size,
		 uint32_t nslots)
{
	int r;

	memset(p, 0, sizeof(*p));
	if (!nslots || !slot_size || (slot_size & (slot_size - 1)))
		return -EINVAL;
	p->slots = calloc(nslots, sizeof(*p->slots));
	if (!p->slots)
		return -ENOMEM;
	r = pmem_obj_create(s, slot_size * nslots, "iovad-swiotlb", &p->mem);
	if (r) {
		free(p->slots);
		p->slots = NULL;
		return r;
	}
	p->base = p->mem->phys;
	p->slot_size = slot_size;
	p->nslots = nslots;
	return 0;
}

void swiotlb_fini(struct swiotlb_pool *p, struct pmem_space *s)
{
	if (!p)
		return;
	pmem_obj_destroy(s, p->mem);
	free(p->slots);
	memset(p, 0, sizeof(*p));
}

/* Next fit: n free slots in a row, starting the search at the cursor. */
static int find_slots(struct swiotlb_pool *p, uint32_t n, uint32_t *ret)
{
	uint32_t start = p->cursor, run = 0;

	for (uint32_t k = 0; k < p->nslots; k++) {
		uint32_t i = (start + k) % p->nslots;

		if (i == 0)
			run = 0; /* a run may not wrap around the end of the pool */
		if (p->slots[i].used) {
			run = 0;
			continue;
		}
		if (++run == n) {
			*ret = i + 1 - n;
			p->cursor = (i + 1) % p->nslots;
			return 0;
		}
	}
	return -ENOMEM;
}

int swiotlb_map(struct swiotlb_pool *p, struct pmem_space *s, uint64_t orig, uint64_t len,
		uint64_t *ret_phys)
{
	uint64_t off = orig & (p->slot_size - 1);
	uint64_t span, slot_phys;
	uint32_t n, first;
	uint8_t *va;
	int r;

	if (!len)
		return -EINVAL;
	if (len > SWIOTLB_MAX_MAPPING) {
		p->stats.failures++;
		return -ENOMEM;
	}
	span = (off + len + p->slot_size - 1) & ~(p->slot_size - 1);
	n = (uint32_t)(span / p->slot_size);
	if (find_slots(p, n, &first)) {
		p->stats.failures++;
		return -ENOMEM;
	}
	slot_phys = p->base + (uint64_t)first * p->slot_size;
	va = pmem_va(s, slot_phys, span);
	/* Pre- and post-padding are zeroed; the buffer itself is the original's bytes. */
	memset(va, 0, off);
	memset(va + off + len, 0, span - off - len);
	r = pmem_read(s, orig, va + off, len);
	if (r)
		return r;
	for (uint32_t i = 0; i < n; i++) {
		p->slots[first + i].used = 1;
		p->slots[first + i].head = i == 0;
	}
	p->slots[first].orig = orig;
	p->slots[first].len = (uint32_t)len;
	p->slots[first].nslots = n;
	p->stats.maps++;
	p->stats.bounced_bytes += len;
	p->stats.slots_used += n;
	if (p->stats.slots_used > p->stats.slots_hwm)
		p->stats.slots_hwm = p->stats.slots_used;
	*ret_phys = slot_phys + off;
	return 0;
}

int64_t swiotlb_unmap(struct swiotlb_pool *p, struct pmem_space *s, uint64_t phys,
		      bool copy_back)
{
	struct swiotlb_slot *sl;
	uint32_t idx, n;
	uint64_t len;

	if (!swiotlb_owns(p, phys))
		return -ENOENT;
	idx = (uint32_t)((phys - p->base) / p->slot_size);
	sl = &p->slots[idx];
	if (!sl->used || !sl->head || (sl->orig & (p->slot_size - 1)) != (phys & (p->slot_size - 1)))
		return -ENOENT;
	len = sl->len;
	if (copy_back) {
		/* The original is client memory that is still placed: it cannot fail. */
		(void)pmem_copy(s, sl->orig, phys, len);
		p->stats.copied_back += len;
	}
	n = sl->nslots;
	for (uint32_t i = 0; i < n; i++)
		memset(&p->slots[idx + i], 0, sizeof(*sl));
	p->stats.unmaps++;
	p->stats.slots_used -= n;
	return (int64_t)len;
}
