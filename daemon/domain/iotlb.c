// SPDX-License-Identifier: MIT
/*
 * iotlb.c - bounded set-associative IOTLB
 */
#include "iotlb.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

int iotlb_init(struct iotlb *t, uint32_t entries, uint64_t pgsize_bitmap)
{
	memset(t, 0, sizeof(*t));
	if (!entries || entries > IOTLB_MAX_ENTRIES || (entries & (entries - 1)))
		return -EINVAL;
	t->ways = entries < IOTLB_WAYS ? entries : IOTLB_WAYS;
	t->nsets = entries / t->ways;
	t->lo = UINT64_MAX;
	t->e = calloc(entries, sizeof(*t->e));
	if (!t->e)
		return -ENOMEM;
	for (unsigned int s = 0; s < 64 && t->nshifts < 4; s++)
		if (pgsize_bitmap & (UINT64_C(1) << s))
			t->shifts[t->nshifts++] = (uint8_t)s;
	if (!t->nshifts) {
		iotlb_fini(t);
		return -EINVAL;
	}
	return 0;
}

void iotlb_fini(struct iotlb *t)
{
	if (!t)
		return;
	free(t->e);
	t->e = NULL;
}

static inline struct iotlb_entry *set_of(struct iotlb *t, uint64_t base, unsigned int shift)
{
	uint64_t key = base >> shift;

	/* Mix the size in so that a block and its first page use different sets. */
	key ^= (key >> 17) ^ ((uint64_t)shift * 0x9e37u);
	return &t->e[(key & (t->nsets - 1)) * t->ways];
}

const struct iotlb_entry *iotlb_lookup(struct iotlb *t, uint64_t iova)
{
	if (t->nvalid) {
		for (unsigned int i = 0; i < t->nshifts; i++) {
			unsigned int shift = t->shifts[i];
			uint64_t base = iova & ~((UINT64_C(1) << shift) - 1);
			struct iotlb_entry *set = set_of(t, base, shift);

			for (unsigned int w = 0; w < t->ways; w++) {
				struct iotlb_entry *e = &set[w];

				if (e->valid && e->iova == base && e->shift == shift) {
					e->lru = ++t->stamp;
					t->stats.hits++;
					return e;
				}
			}
		}
	}
	t->stats.misses++;
	return NULL;
}

void iotlb_insert(struct iotlb *t, uint64_t iova, unsigned int shift, uint64_t phys,
		  unsigned int prot)
{
	uint64_t base = iova & ~((UINT64_C(1) << shift) - 1);
	struct iotlb_entry *set = set_of(t, base, shift), *victim = &set[0];

	for (unsigned int w = 0; w < t->ways; w++) {
		struct iotlb_entry *e = &set[w];

		if (!e->valid) {
			victim = e;
			break;
		}
		/* Unsigned distance from the current stamp survives wrap-around. */
		if (t->stamp - e->lru > t->stamp - victim->lru)
			victim = e;
	}
	if (victim->valid)
		t->stats.evictions++;
	else
		t->nvalid++;
	victim->iova = base;
	victim->phys = phys - (iova - base);
	victim->shift = (uint8_t)shift;
	victim->prot = (uint8_t)prot;
	victim->valid = 1;
	victim->lru = ++t->stamp;
	if (base < t->lo)
		t->lo = base;
	if (base + ((UINT64_C(1) << shift) - 1) > t->hi)
		t->hi = base + ((UINT64_C(1) << shift) - 1);
}

static void reset_bounds(struct iotlb *t)
{
	t->lo = UINT64_MAX;
	t->hi = 0;
}

void iotlb_inv_range(struct iotlb *t, uint64_t start, uint64_t last)
{
	uint32_t n = t->nsets * t->ways;

	/* Nothing cached in the range: skip the scan (common for cold unmaps). */
	if (!t->nvalid || last < t->lo || start > t->hi)
		return;
	for (uint32_t i = 0; i < n && t->nvalid; i++) {
		struct iotlb_entry *e = &t->e[i];
		uint64_t elast;

		if (!e->valid)
			continue;
		elast = e->iova + ((UINT64_C(1) << e->shift) - 1);
		if (e->iova <= last && elast >= start) {
			e->valid = 0;
			t->nvalid--;
			t->stats.invalidated++;
		}
	}
	if (!t->nvalid)
		reset_bounds(t);
}

void iotlb_inv_all(struct iotlb *t)
{
	uint32_t n = t->nsets * t->ways;

	if (!t->nvalid)
		return;
	for (uint32_t i = 0; i < n; i++) {
		if (t->e[i].valid) {
			t->e[i].valid = 0;
			t->stats.invalidated++;
		}
	}
	t->nvalid = 0;
	reset_bounds(t);
}
