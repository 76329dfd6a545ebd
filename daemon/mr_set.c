// SPDX-License-Identifier: MIT
/*
 * mr_set.c - a sorted vector of disjoint MRs (mr_set.h).
 */
#include "mr_set.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "rxe.h"

int mr_set_reserve(struct mr_set *set)
{
	if (set->n == set->cap) {
		uint32_t cap = set->cap ? set->cap * 2 : 4;
		struct sess_mr *v = realloc(set->v, cap * sizeof(*v));

		if (!v)
			return -ENOMEM;
		set->v = v;
		set->cap = cap;
	}
	return 0;
}

/* The index of the first MR that starts above off (n if none). */
static uint32_t first_above(const struct mr_set *set, uint64_t off)
{
	uint32_t lo = 0, hi = set->n;

	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;

		if (set->v[mid].off > off)
			hi = mid;
		else
			lo = mid + 1;
	}
	return lo;
}

void mr_set_push(struct mr_set *set, uint64_t off, uint64_t size, struct rxe_mr *mr)
{
	uint32_t at = first_above(set, off);

	memmove(set->v + at + 1, set->v + at, (set->n - at) * sizeof(*set->v));
	set->v[at] = (struct sess_mr){ off, size, mr };
	set->n++;
}

const struct sess_mr *mr_set_at(const struct mr_set *set, uint64_t off, uint64_t *next)
{
	uint32_t at = first_above(set, off);

	/* Disjoint and sorted: only the last MR starting at or below off can hold it. */
	if (at && off - set->v[at - 1].off < set->v[at - 1].size)
		return &set->v[at - 1];
	if (next)
		*next = at < set->n ? set->v[at].off : UINT64_MAX;
	return NULL;
}

void mr_set_drop(struct mr_set *set, uint64_t lo, uint64_t hi, uint64_t *rlo, uint64_t *rhi,
		 void (*dropped)(void *arg, const struct sess_mr *m), void *arg)
{
	uint32_t from, to;

	if (lo >= hi)
		return;
	/* The first that may intersect: the one holding lo, else the first above it. */
	from = first_above(set, lo);
	if (from && lo - set->v[from - 1].off < set->v[from - 1].size)
		from--;
	for (to = from; to < set->n && set->v[to].off < hi; to++) {
		struct sess_mr *m = &set->v[to];

		if (dropped)
			dropped(arg, m);
		*rlo = m->off < *rlo ? m->off : *rlo;
		*rhi = m->off + m->size > *rhi ? m->off + m->size : *rhi;
		rxe_mr_dereg(m->mr);
	}
	if (to == from)
		return; /* nothing dropped (and an empty set may have no vector at all) */
	memmove(set->v + from, set->v + to, (set->n - to) * sizeof(*set->v));
	set->n -= to - from;
}

void mr_set_clear(struct mr_set *set)
{
	for (uint32_t i = 0; i < set->n; i++)
		rxe_mr_dereg(set->v[i].mr);
	free(set->v);
	*set = (struct mr_set){ 0 };
}
