/* SPDX-License-Identifier: MIT */
/*
 * mr_set.h - the verbs MRs of one IOVA state or one ODP region (rxe backend):
 * disjoint ranges, each [off, off + size) from the owner's first IOVA, kept
 * sorted by off so that finding the MR of an offset is a binary search,
 * O(log n), however many MRs a region's faults have left behind. Adding and
 * dropping move the tail (memmove), which is far cheaper than the MR
 * registration or deregistration that comes with each.
 */
#ifndef IOVAD_DAEMON_MR_SET_H
#define IOVAD_DAEMON_MR_SET_H

#include <stdint.h>

struct rxe_mr;

struct sess_mr {
	uint64_t off;
	uint64_t size;
	struct rxe_mr *mr;
};

struct mr_set {
	struct sess_mr *v; /* sorted by off, disjoint */
	uint32_t n, cap;
};

/* Room for one more MR (call before registering it). Return: 0, -ENOMEM. */
int mr_set_reserve(struct mr_set *set);
/* Add an MR over a range no MR of the set covers; mr_set_reserve() made room. */
void mr_set_push(struct mr_set *set, uint64_t off, uint64_t size, struct rxe_mr *mr);
/* The MR holding offset off, or NULL; *next (may be NULL) gets the start of
 * the first MR above off, or UINT64_MAX. */
const struct sess_mr *mr_set_at(const struct mr_set *set, uint64_t off, uint64_t *next);
/* Deregister the MRs intersecting [lo, hi), telling dropped (may be NULL)
 * about each first; widen [*rlo, *rhi) over what they covered. */
void mr_set_drop(struct mr_set *set, uint64_t lo, uint64_t hi, uint64_t *rlo, uint64_t *rhi,
		 void (*dropped)(void *arg, const struct sess_mr *m), void *arg);
/* Deregister every MR and free the set. */
void mr_set_clear(struct mr_set *set);

#endif /* IOVAD_DAEMON_MR_SET_H */
