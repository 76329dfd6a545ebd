// SPDX-License-Identifier: MIT
/*
 * test_pmem.c - the synthetic physical address space.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "pmem.h"

static struct pmem_space s;

static void setup(void)
{
	cr_assert_eq(pmem_space_init(&s), 0);
}

static void teardown(void)
{
	pmem_space_fini(&s);
}

TestSuite(pmem, .init = setup, .fini = teardown);

Test(pmem, placement_is_aligned_first_fit_and_reuses_holes)
{
	struct pmem_obj *a, *b, *c, *d;

	cr_assert_eq(pmem_obj_create(&s, 5000, "a", &a), 0);
	cr_assert_eq(a->phys, PMEM_PHYS_BASE);
	cr_assert_eq(a->size, 8192, "rounded up to the page size");
	cr_assert_eq(pmem_obj_create(&s, 4096, "b", &b), 0);
	cr_assert_eq(b->phys, PMEM_PHYS_BASE + (UINT64_C(2) << 20), "2 MiB aligned");
	cr_assert_eq(pmem_obj_create(&s, UINT64_C(1) << 30, "c", &c), 0);
	cr_assert_eq(c->phys % (UINT64_C(1) << 30), 0, "1 GiB objects are 1 GiB aligned");
	cr_assert_neq(a->id, b->id);
	pmem_obj_destroy(&s, a);
	cr_assert_eq(pmem_obj_create(&s, 4096, "d", &d), 0);
	cr_assert_eq(d->phys, PMEM_PHYS_BASE, "the hole is reused");
	cr_assert_eq(s.stats.objects, 3);
	cr_assert_eq(s.stats.created, 4);
	cr_assert_eq(s.stats.destroyed, 1);
}

Test(pmem, read_write_by_phys_and_find)
{
	struct pmem_obj *a;
	char buf[16];

	cr_assert_eq(pmem_obj_create(&s, 8192, "a", &a), 0);
	cr_assert_eq(pmem_write(&s, a->phys + 4090, "hello world", 12), 0);
	cr_assert_str_eq((char *)a->va + 4090, "hello world");
	cr_assert_eq(pmem_read(&s, a->phys + 4090, buf, 12), 0);
	cr_assert_str_eq(buf, "hello world");
	cr_assert_eq(pmem_find(&s, a->phys + 8191), a);
	cr_assert_null(pmem_find(&s, a->phys + 8192));
	cr_assert_null(pmem_find(&s, 0));
	cr_assert_not_null(pmem_va(&s, a->phys, 8192));
	cr_assert_null(pmem_va(&s, a->phys, 8193));
	cr_assert_eq(pmem_read(&s, a->phys + 8190, buf, 4), -EFAULT, "runs off the object");
	cr_assert_eq(pmem_zero(&s, a->phys + 4090, 5), 0);
	cr_assert_eq(a->va[4094], 0);
	cr_assert_eq(a->va[4095], ' ');
}

Test(pmem, import_shares_bytes_with_the_importer)
{
	struct pmem_obj *o;
	int fd = memfd_create("client", MFD_CLOEXEC);
	uint8_t *va;

	cr_assert_geq(fd, 0);
	cr_assert_eq(ftruncate(fd, 3 * 4096), 0);
	va = mmap(NULL, 3 * 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	cr_assert_neq(va, MAP_FAILED);
	cr_assert_eq(pmem_obj_import(&s, fd, 4096, 2 * 4096, &o), 0);
	va[4096 + 10] = 0x7e;
	cr_assert_eq(o->va[10], 0x7e, "the same pages");
	o->va[20] = 0x3f;
	cr_assert_eq(va[4096 + 20], 0x3f);
	cr_assert_eq(pmem_obj_import(&s, fd, 100, 4096, &o), -EINVAL, "misaligned offset");
	cr_assert_eq(pmem_obj_import(&s, fd, 4096, 3 * 4096, &o), -EINVAL, "beyond EOF");
	cr_assert_eq(pmem_obj_import(&s, -1, 0, 4096, &o), -EBADF);
	cr_assert_eq(pmem_obj_create(&s, 0, "zero", &o), -EINVAL);
	munmap(va, 3 * 4096);
	close(fd);
}

Test(pmem, import_at_places_exactly_and_refuses_overlap)
{
	struct pmem_obj *a, *b;
	int fd = memfd_create("client", MFD_CLOEXEC);
	uint64_t at = PMEM_PHYS_BASE + (UINT64_C(7) << 20);

	cr_assert_eq(ftruncate(fd, 2 * 4096), 0);
	cr_assert_eq(pmem_obj_import_at(&s, fd, 0, 2 * 4096, at, &a), 0);
	cr_assert_eq(a->phys, at);
	cr_assert_eq(pmem_obj_import_at(&s, fd, 0, 4096, at + 4096, &b), -EEXIST);
	cr_assert_eq(pmem_obj_import_at(&s, fd, 0, 4096, at - 4096, &b), 0, "adjacent is fine");
	cr_assert_eq(pmem_obj_import_at(&s, fd, 0, 4096, 12345, &b), -EINVAL);
	/* A transfer may cross adjacent objects. */
	cr_assert_eq(pmem_write(&s, at - 2, "xyzw", 4), 0);
	cr_assert_eq(a->va[0], 'z');
	close(fd);
}

Test(pmem, discard_zeroes_and_populate_brings_back)
{
	struct pmem_obj *a;
	uint8_t buf[8];

	cr_assert_eq(pmem_obj_create(&s, 8 * 4096, "a", &a), 0);
	memset(a->va, 0x5a, 8 * 4096);
	cr_assert(pmem_resident(&s, a->phys, 8 * 4096), "written pages are resident");
	cr_assert_eq(pmem_discard(&s, a->phys + 2 * 4096, 2 * 4096), 0);
	cr_assert_not(pmem_resident(&s, a->phys + 2 * 4096, 4096));
	cr_assert_not(pmem_resident(&s, a->phys, 8 * 4096));
	cr_assert(pmem_resident(&s, a->phys + 4 * 4096, 4096), "outside the hole untouched");
	cr_assert(pmem_resident(&s, a->phys + 4096 + 100, 10), "sub-page ranges round out");
	cr_assert_eq(a->va[2 * 4096], 0, "the hole reads as zeros");
	cr_assert_eq(a->va[4 * 4096 - 1], 0);
	cr_assert_eq(a->va[4 * 4096], 0x5a);
	cr_assert_eq(a->va[2 * 4096 - 1], 0x5a);

	/* Reading the hole above faulted a page back: discard again, populate. */
	cr_assert_eq(pmem_discard(&s, a->phys + 2 * 4096, 2 * 4096), 0);
	cr_assert_eq(pmem_populate(&s, a->phys + 2 * 4096, 2 * 4096, false), 0);
	cr_assert(pmem_resident(&s, a->phys + 2 * 4096, 2 * 4096));
	cr_assert_eq(pmem_discard(&s, a->phys + 2 * 4096, 4096), 0);
	cr_assert_eq(pmem_populate(&s, a->phys + 2 * 4096 + 5, 1, true), 0);
	cr_assert(pmem_resident(&s, a->phys + 2 * 4096, 4096));
	cr_assert_eq(pmem_read(&s, a->phys + 2 * 4096, buf, sizeof(buf)), 0);
	for (size_t i = 0; i < sizeof(buf); i++)
		cr_assert_eq(buf[i], 0);
}

Test(pmem, discard_populate_resident_errors)
{
	struct pmem_obj *a, *b;

	cr_assert_eq(pmem_obj_create(&s, 2 * 4096, "a", &a), 0);
	cr_assert_eq(pmem_obj_import_at(&s, a->fd, 0, 2 * 4096, a->phys + 2 * 4096, &b), 0);
	cr_assert_eq(pmem_discard(&s, a->phys + 1, 4096), -EINVAL);
	cr_assert_eq(pmem_discard(&s, a->phys, 100), -EINVAL);
	cr_assert_eq(pmem_discard(&s, a->phys, 0), -EINVAL);
	cr_assert_eq(pmem_discard(&s, a->phys, 4 * 4096), -EFAULT, "spans two objects");
	cr_assert_eq(pmem_discard(&s, 0x1000, 4096), -EFAULT);
	cr_assert_eq(pmem_populate(&s, a->phys + 4096, 2 * 4096, false), -EFAULT);
	cr_assert_eq(pmem_populate(&s, 0x1000, 4096, true), -EFAULT);
	cr_assert_eq(pmem_populate(&s, a->phys, 0, true), -EFAULT);
	cr_assert_not(pmem_resident(&s, a->phys, 4 * 4096));
	cr_assert_not(pmem_resident(&s, 0x1000, 4096));

	/* b maps the same file: a discard through it empties a's bytes too. */
	memset(a->va, 0x77, 2 * 4096);
	cr_assert_eq(pmem_discard(&s, b->phys + 4096, 4096), 0);
	cr_assert_eq(a->va[4096], 0);
	cr_assert_eq(a->va[4095], 0x77);
}
