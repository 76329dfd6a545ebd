// SPDX-License-Identifier: MIT
/*
 * test_mr_set - daemon/mr_set.c, the sorted set of an rxe state's or ODP
 * region's MRs, against a plain model (a byte map of which MR covers each
 * unit): lookups, next-MR answers, drops with their widened range and the
 * MRs they deregister, in random order over many steps. rxe_mr_dereg is a
 * stub here that records which MR went, so a leak or a double deregistration
 * shows.
 */
#include <criterion/criterion.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "mr_set.h"
#include "rxe.h"

#define UNITS 512u /* the model's space: offsets 0 .. UNITS * U */
#define U 4096u
#define MAXMR 600u

static int dereg_count[MAXMR + 1];

/* The stub: MRs are (struct rxe_mr *)(uintptr_t)id, ids from 1. */
void rxe_mr_dereg(struct rxe_mr *mr)
{
	uintptr_t id = (uintptr_t)mr;

	cr_assert(id >= 1 && id <= MAXMR, "deregistered an MR that was never made: %zu",
		  (size_t)id);
	dereg_count[id]++;
}

static struct rxe_mr *mr_of(uint32_t id)
{
	return (struct rxe_mr *)(uintptr_t)id;
}

Test(mr_set, lookups_next_and_drops_against_a_model)
{
	static uint32_t model[UNITS]; /* 0: no MR; else its id */
	struct mr_set set = { 0 };
	uint32_t next_id = 1, live = 0;
	unsigned int seed = 12345;

	memset(dereg_count, 0, sizeof(dereg_count));
	for (int step = 0; step < 20000; step++) {
		uint32_t a = (uint32_t)rand_r(&seed) % UNITS;
		uint32_t len = 1 + (uint32_t)rand_r(&seed) % 8;
		int op = rand_r(&seed) % 10;

		if (a + len > UNITS)
			len = UNITS - a;
		if (op < 5 && next_id <= MAXMR) {
			/* push where the whole range is free (as the daemon only ever does) */
			bool free_range = true;

			for (uint32_t i = a; i < a + len; i++)
				free_range &= !model[i];
			if (!free_range)
				continue;
			cr_assert_eq(mr_set_reserve(&set), 0);
			mr_set_push(&set, (uint64_t)a * U, (uint64_t)len * U, mr_of(next_id));
			for (uint32_t i = a; i < a + len; i++)
				model[i] = next_id;
			next_id++;
			live++;
		} else if (op < 8) {
			/* a lookup in unit a: at its first byte (an MR's start, often) or inside */
			uint64_t off = (uint64_t)a * U, nx = 0;
			const struct sess_mr *m;

			if (rand_r(&seed) % 2)
				off += (uint64_t)rand_r(&seed) % U;
			m = mr_set_at(&set, off, &nx);
			uint64_t want_next = UINT64_MAX;

			if (model[a]) {
				cr_assert_not_null(m, "step %d: offset %#llx is in MR %u", step,
						   (unsigned long long)off, model[a]);
				cr_assert_eq((uintptr_t)m->mr, model[a]);
				cr_assert(off >= m->off && off < m->off + m->size);
				continue;
			}
			cr_assert_null(m, "step %d: offset %#llx is in no MR", step,
				       (unsigned long long)off);
			for (uint32_t i = a + 1; i < UNITS; i++) {
				if (model[i]) {
					want_next = (uint64_t)i * U;
					break;
				}
			}
			cr_assert_eq(nx, want_next, "step %d: next MR above %#llx", step,
				     (unsigned long long)off);
		} else {
			/* drop [lo, hi), at unit edges or inside: every MR it touches goes, whole
			 */
			uint64_t lo = (uint64_t)a * U + (rand_r(&seed) % 2 ? rand_r(&seed) % U : 0);
			uint64_t hi = lo + (uint64_t)len * U -
				      (rand_r(&seed) % 2 ? rand_r(&seed) % U : 0);
			uint64_t rlo = UINT64_MAX, rhi = 0, wlo = UINT64_MAX, whi = 0;
			static int before[MAXMR + 1];
			bool hit[MAXMR + 1] = { false };

			memcpy(before, dereg_count, sizeof(before));
			for (uint32_t i = (uint32_t)(lo / U); i < UNITS && (uint64_t)i * U < hi;
			     i++)
				if (model[i])
					hit[model[i]] = true;
			for (uint32_t i = 0; i < UNITS; i++) {
				if (model[i] && hit[model[i]]) {
					wlo = (uint64_t)i * U < wlo ? (uint64_t)i * U : wlo;
					whi = (uint64_t)(i + 1) * U > whi ? (uint64_t)(i + 1) * U
									  : whi;
					model[i] = 0;
				}
			}
			mr_set_drop(&set, lo, hi, &rlo, &rhi, NULL, NULL);
			cr_assert_eq(rlo, wlo, "step %d: widened start", step);
			cr_assert_eq(rhi, whi, "step %d: widened end", step);
			for (uint32_t id = 1; id <= MAXMR; id++) {
				cr_assert_eq(dereg_count[id] - before[id], hit[id] ? 1 : 0,
					     "step %d: MR %u deregistered %d times", step, id,
					     dereg_count[id] - before[id]);
				live -= hit[id];
			}
		}
		/* the invariant: sorted and disjoint, and as many as the model holds */
		cr_assert_eq(set.n, live);
		for (uint32_t i = 1; i < set.n; i++)
			cr_assert(set.v[i - 1].off + set.v[i - 1].size <= set.v[i].off,
				  "step %d: MRs %u and %u overlap or are out of order", step, i - 1,
				  i);
	}
	cr_assert_gt(next_id, 200, "the walk made enough MRs to mean something");
	mr_set_clear(&set);
	for (uint32_t id = 1; id < next_id; id++)
		cr_assert_eq(dereg_count[id], 1, "MR %u deregistered %d times in all", id,
			     dereg_count[id]);
	cr_assert_null(set.v);
}

Test(mr_set, an_empty_set_and_a_drop_of_nothing)
{
	struct mr_set set = { 0 };
	uint64_t nx = 0, rlo = UINT64_MAX, rhi = 0;

	cr_assert_null(mr_set_at(&set, 0, &nx));
	cr_assert_eq(nx, UINT64_MAX);
	mr_set_drop(&set, 0, UINT64_MAX, &rlo, &rhi, NULL, NULL);
	cr_assert_eq(rlo, UINT64_MAX);
	cr_assert_eq(rhi, 0);
	cr_assert_eq(mr_set_reserve(&set), 0);
	mr_set_push(&set, 0x1000, 0x1000, mr_of(1));
	/* adjacent edges belong to nobody else */
	cr_assert_null(mr_set_at(&set, 0xfff, &nx));
	cr_assert_eq(nx, 0x1000);
	cr_assert_not_null(mr_set_at(&set, 0x1fff, NULL));
	cr_assert_null(mr_set_at(&set, 0x2000, &nx));
	cr_assert_eq(nx, UINT64_MAX);
	/* a drop that ends where the MR starts, or starts where it ends, takes nothing */
	mr_set_drop(&set, 0, 0x1000, &rlo, &rhi, NULL, NULL);
	mr_set_drop(&set, 0x2000, 0x3000, &rlo, &rhi, NULL, NULL);
	cr_assert_eq(set.n, 1);
	memset(dereg_count, 0, sizeof(dereg_count));
	mr_set_clear(&set);
	cr_assert_eq(dereg_count[1], 1);
}
