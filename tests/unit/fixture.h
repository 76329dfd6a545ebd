/* SPDX-License-Identifier: MIT */
/*
 * fixture.h - shared setup for the domain engine's unit tests: a pmem space,
 * one domain, a device on it, a fake clock and some patterned memory.
 */
#ifndef IOVAD_TESTS_FIXTURE_H
#define IOVAD_TESTS_FIXTURE_H

#include <criterion/criterion.h>
#include <stdint.h>
#include <string.h>

#include "domain.h"

#define SZ_4K  UINT64_C(0x1000)
#define SZ_16K UINT64_C(0x4000)
#define SZ_64K UINT64_C(0x10000)
#define SZ_2M  (UINT64_C(2) << 20)
#define SZ_1G  (UINT64_C(1) << 30)

struct fx {
	struct pmem_space pmem;
	struct dom_domain *dom;
	struct dom_device *dev;
	struct pmem_obj *mem;
	uint64_t now; /* the fake clock, in ns */
};

static inline uint64_t fx_clock(void *arg)
{
	return ((struct fx *)arg)->now;
}

static inline void fx_pattern(struct pmem_obj *o, uint8_t seed)
{
	for (uint64_t i = 0; i < o->size; i++)
		o->va[i] = (uint8_t)(seed + i * 7 + (i >> 12));
}

static inline uint8_t fx_byte(uint8_t seed, uint64_t i)
{
	return (uint8_t)(seed + i * 7 + (i >> 12));
}

/* A domain from cfg (clock replaced by the fake one), one device, mem_size of memory. */
static inline void fx_setup(struct fx *f, struct dom_config cfg, struct dom_device_config dcfg,
			    uint64_t mem_size)
{
	memset(f, 0, sizeof(*f));
	f->now = 1000;
	cr_assert_eq(pmem_space_init(&f->pmem), 0);
	cfg.clock = fx_clock;
	cfg.clock_arg = f;
	cr_assert_eq(dom_domain_create(&f->pmem, &cfg, &f->dom), 0);
	if (!dcfg.name)
		dcfg.name = "dev0";
	cr_assert_eq(dom_device_create(f->dom, &dcfg, &f->dev), 0);
	if (mem_size) {
		cr_assert_eq(pmem_obj_create(&f->pmem, mem_size, "test", &f->mem), 0);
		fx_pattern(f->mem, 0x11);
	}
}

static inline void fx_teardown(struct fx *f)
{
	dom_device_destroy(f->dev);
	cr_assert_eq(dom_domain_destroy(f->dom), 0);
	pmem_space_fini(&f->pmem);
}

static inline struct dom_stats fx_stats(const struct fx *f)
{
	struct dom_stats s;

	dom_domain_stats(f->dom, &s);
	return s;
}

#endif /* IOVAD_TESTS_FIXTURE_H */
