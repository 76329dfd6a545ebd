// SPDX-License-Identifier: MIT
/*
 * pmem.c - synthetic physical address space backed by memfds
 */
#include "pmem.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* Linux 5.14; older libc headers lack them, the syscall refuses them with EINVAL. */
#ifndef MADV_POPULATE_READ
#define MADV_POPULATE_READ 22
#endif
#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

#define SZ_2M (UINT64_C(2) << 20)
#define SZ_1G (UINT64_C(1) << 30)

static uint64_t page_size(void)
{
	long ps = sysconf(_SC_PAGESIZE);

	return ps > 0 ? (uint64_t)ps : 4096;
}

static uint64_t align_up(uint64_t x, uint64_t a)
{
	return (x + a - 1) & ~(a - 1);
}

int pmem_space_init(struct pmem_space *s)
{
	memset(s, 0, sizeof(*s));
	s->next_id = 1;
	return 0;
}

void pmem_space_fini(struct pmem_space *s)
{
	if (!s)
		return;
	while (s->nr)
		pmem_obj_destroy(s, s->objs[s->nr - 1]);
	free(s->objs);
	memset(s, 0, sizeof(*s));
}

/* Index of the first object whose phys is > phys (upper bound). */
static uint32_t upper_bound(const struct pmem_space *s, uint64_t phys)
{
	uint32_t lo = 0, hi = s->nr;

	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;

		if (s->objs[mid]->phys <= phys)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

static bool range_free(const struct pmem_space *s, uint64_t phys, uint64_t size)
{
	uint32_t i = upper_bound(s, phys);

	/* The object before may reach into the range, the one after may start in it. */
	if (i > 0) {
		const struct pmem_obj *p = s->objs[i - 1];

		if (p->phys + p->size > phys)
			return false;
	}
	if (i < s->nr && s->objs[i]->phys < phys + size)
		return false;
	return true;
}

/* First fit at the given alignment, in ascending phys order. */
static int find_room(const struct pmem_space *s, uint64_t size, uint64_t *ret)
{
	uint64_t align = size >= SZ_1G ? SZ_1G : SZ_2M;
	uint64_t cur = PMEM_PHYS_BASE;

	for (uint32_t i = 0; i <= s->nr; i++) {
		uint64_t end = i < s->nr ? s->objs[i]->phys : PMEM_PHYS_LIMIT;

		cur = align_up(cur, align);
		if (cur < end && end - cur >= size) {
			*ret = cur;
			return 0;
		}
		if (i < s->nr)
			cur = s->objs[i]->phys + s->objs[i]->size;
	}
	return -ENOSPC;
}

static int insert(struct pmem_space *s, struct pmem_obj *o)
{
	uint32_t i;

	if (s->nr == s->cap) {
		uint32_t cap = s->cap ? s->cap * 2 : 16;
		struct pmem_obj **n = realloc(s->objs, cap * sizeof(*n));

		if (!n)
			return -ENOMEM;
		s->objs = n;
		s->cap = cap;
	}
	i = upper_bound(s, o->phys);
	memmove(&s->objs[i + 1], &s->objs[i], (s->nr - i) * sizeof(*s->objs));
	s->objs[i] = o;
	s->nr++;
	s->last = i;
	return 0;
}

/*
 * Place fd's [offset, offset + size) at phys (or first-fit when !at).
 * Takes ownership of fd in every case.
 */
static int place(struct pmem_space *s, int fd, uint64_t offset, uint64_t size, bool at,
		 uint64_t phys, struct pmem_obj **ret)
{
	struct pmem_obj *o;
	void *va;
	int r;

	if (s->nr >= PMEM_MAX_OBJECTS) {
		r = -ENOSPC;
		goto err_close;
	}
	if (at) {
		if (phys < PMEM_PHYS_BASE || phys > PMEM_PHYS_LIMIT - size ||
		    phys & (page_size() - 1)) {
			r = -EINVAL;
			goto err_close;
		}
		if (!range_free(s, phys, size)) {
			r = -EEXIST;
			goto err_close;
		}
	} else {
		r = find_room(s, size, &phys);
		if (r)
			goto err_close;
	}

	o = calloc(1, sizeof(*o));
	if (!o) {
		r = -ENOMEM;
		goto err_close;
	}
	va = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, (off_t)offset);
	if (va == MAP_FAILED) {
		r = -errno;
		goto err_free;
	}
	o->phys = phys;
	o->size = size;
	o->fd = fd;
	o->fd_off = offset;
	o->va = va;
	o->id = s->next_id++;
	r = insert(s, o);
	if (r)
		goto err_unmap;
	s->stats.objects++;
	s->stats.bytes += size;
	s->stats.created++;
	*ret = o;
	return 0;

err_unmap:
	munmap(va, size);
err_free:
	free(o);
err_close:
	close(fd);
	return r;
}

static int check_size(uint64_t *size)
{
	if (*size == 0 || *size > PMEM_PHYS_LIMIT - PMEM_PHYS_BASE)
		return -EINVAL;
	*size = align_up(*size, page_size());
	return 0;
}

int pmem_obj_create(struct pmem_space *s, uint64_t size, const char *name,
		    struct pmem_obj **ret)
{
	int fd, r;

	r = check_size(&size);
	if (r)
		return r;
	fd = memfd_create(name ? name : "iovad-pmem", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (fd < 0)
		return -errno;
	if (ftruncate(fd, (off_t)size) < 0) {
		r = -errno;
		close(fd);
		return r;
	}
	return place(s, fd, 0, size, false, 0, ret);
}

static int import(struct pmem_space *s, int fd, uint64_t offset, uint64_t size, bool at,
		  uint64_t phys, struct pmem_obj **ret)
{
	struct stat st;
	int dfd, r;

	if (fd < 0)
		return -EBADF;
	if (offset & (page_size() - 1))
		return -EINVAL;
	if (fstat(fd, &st) < 0)
		return -errno;
	if (!S_ISREG(st.st_mode))
		return -EINVAL;
	/* The bytes asked for must exist; the mapping then covers their last page. */
	if (!size || offset > (uint64_t)st.st_size || (uint64_t)st.st_size - offset < size)
		return -EINVAL;
	r = check_size(&size);
	if (r)
		return r;
	dfd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
	if (dfd < 0)
		return -errno;
	return place(s, dfd, offset, size, at, phys, ret);
}

int pmem_obj_import(struct pmem_space *s, int fd, uint64_t offset, uint64_t size,
		    struct pmem_obj **ret)
{
	return import(s, fd, offset, size, false, 0, ret);
}

int pmem_obj_import_at(struct pmem_space *s, int fd, uint64_t offset, uint64_t size,
		       uint64_t phys, struct pmem_obj **ret)
{
	return import(s, fd, offset, size, true, phys, ret);
}

void pmem_obj_destroy(struct pmem_space *s, struct pmem_obj *o)
{
	uint32_t i;

	if (!o)
		return;
	i = upper_bound(s, o->phys);
	if (i > 0 && s->objs[i - 1] == o) {
		i--;
		memmove(&s->objs[i], &s->objs[i + 1], (s->nr - i - 1) * sizeof(*s->objs));
		s->nr--;
		s->last = 0;
		s->stats.objects--;
		s->stats.bytes -= o->size;
		s->stats.destroyed++;
	}
	munmap(o->va, o->size);
	close(o->fd);
	free(o);
}

struct pmem_obj *pmem_find(struct pmem_space *s, uint64_t phys)
{
	struct pmem_obj *o;
	uint32_t i;

	if (s->last < s->nr) {
		o = s->objs[s->last];
		if (phys - o->phys < o->size)
			return o;
	}
	i = upper_bound(s, phys);
	if (i == 0)
		return NULL;
	o = s->objs[i - 1];
	if (phys - o->phys >= o->size)
		return NULL;
	s->last = i - 1;
	return o;
}

void *pmem_va(struct pmem_space *s, uint64_t phys, uint64_t len)
{
	struct pmem_obj *o = pmem_find(s, phys);

	if (!o || len > o->size - (phys - o->phys))
		return NULL;
	return o->va + (phys - o->phys);
}

enum xfer { XFER_READ, XFER_WRITE, XFER_ZERO };

/* Walks the objects covering [phys, phys + len); checks first, then copies. */
static int xfer(struct pmem_space *s, uint64_t phys, void *buf, uint64_t len, enum xfer op)
{
	uint64_t p = phys, left = len;
	uint8_t *b = buf;

	if (phys + len < phys)
		return -EFAULT;
	/* A transfer is all or nothing: make sure every byte is backed first. */
	while (left) {
		struct pmem_obj *o = pmem_find(s, p);
		uint64_t n;

		if (!o)
			return -EFAULT;
		n = o->size - (p - o->phys);
		n = n < left ? n : left;
		p += n;
		left -= n;
	}
	p = phys;
	left = len;
	while (left) {
		struct pmem_obj *o = pmem_find(s, p);
		uint64_t n = o->size - (p - o->phys);
		uint8_t *va = o->va + (p - o->phys);

		n = n < left ? n : left;
		if (op == XFER_READ)
			memcpy(b, va, n);
		else if (op == XFER_WRITE)
			memcpy(va, b, n);
		else
			memset(va, 0, n);
		if (b)
			b += n;
		p += n;
		left -= n;
	}
	return 0;
}

int pmem_read(struct pmem_space *s, uint64_t phys, void *buf, uint64_t len)
{
	return xfer(s, phys, buf, len, XFER_READ);
}

int pmem_write(struct pmem_space *s, uint64_t phys, const void *buf, uint64_t len)
{
	return xfer(s, phys, (void *)buf, len, XFER_WRITE);
}

int pmem_zero(struct pmem_space *s, uint64_t phys, uint64_t len)
{
	return xfer(s, phys, NULL, len, XFER_ZERO);
}

int pmem_copy(struct pmem_space *s, uint64_t dst, uint64_t src, uint64_t len)
{
	uint8_t tmp[4096];

	while (len) {
		uint64_t n = len < sizeof(tmp) ? len : sizeof(tmp);
		int r = pmem_read(s, src, tmp, n);

		if (r)
			return r;
		r = pmem_write(s, dst, tmp, n);
		if (r)
			return r;
		src += n;
		dst += n;
		len -= n;
	}
	return 0;
}

/*
 * The engine's mapping of [phys, phys + len) widened to whole host pages,
 * when it lies inside one object (objects are page-aligned, so the widened
 * range is still inside). NULL for len 0 or a range that is not.
 */
static uint8_t *page_span(struct pmem_space *s, uint64_t phys, uint64_t len, uint64_t *ret_len)
{
	uint64_t ps = page_size(), off;
	struct pmem_obj *o;

	if (!len)
		return NULL;
	o = pmem_find(s, phys);
	if (!o)
		return NULL;
	off = phys - o->phys;
	if (len > o->size - off)
		return NULL;
	*ret_len = align_up(off + len, ps) - (off & ~(ps - 1));
	return o->va + (off & ~(ps - 1));
}

/*
 * Fault each page in by hand, where MADV_POPULATE_* is unknown. A plain
 * read + write back of a byte would race with a client writing the same
 * byte through its own mapping and could undo its store; an atomic add of
 * zero is a write fault that never changes the value.
 */
static void touch_pages(uint8_t *va, uint64_t len, bool write)
{
	uint64_t ps = page_size();

	for (uint64_t i = 0; i < len; i += ps) {
		if (write)
			(void)__atomic_fetch_add(va + i, 0, __ATOMIC_RELAXED);
		else
			(void)*(volatile uint8_t *)(va + i);
	}
}

int pmem_populate(struct pmem_space *s, uint64_t phys, uint64_t len, bool write)
{
	uint64_t n;
	uint8_t *va = page_span(s, phys, len, &n);

	if (!va)
		return -EFAULT;
	if (!madvise(va, n, write ? MADV_POPULATE_WRITE : MADV_POPULATE_READ))
		return 0;
	/* EINVAL: a kernel older than 5.14 (our arguments are page-aligned). */
	if (errno != EINVAL)
		return -errno;
	touch_pages(va, n, write);
	return 0;
}

int pmem_discard(struct pmem_space *s, uint64_t phys, uint64_t len)
{
	uint64_t ps = page_size();
	struct pmem_obj *o;

	if (!len || ((phys | len) & (ps - 1)))
		return -EINVAL;
	o = pmem_find(s, phys);
	if (!o || len > o->size - (phys - o->phys))
		return -EFAULT;
	/*
	 * Punching the hole in the file, not madvise(MADV_DONTNEED) on our
	 * mapping, frees the pages for every process that maps the object
	 * (shmem zaps their PTEs too), as a discard by the owner should.
	 */
	if (fallocate(o->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
		      (off_t)(o->fd_off + (phys - o->phys)), (off_t)len) < 0)
		return -errno;
	return 0;
}

bool pmem_resident(struct pmem_space *s, uint64_t phys, uint64_t len)
{
	unsigned char vec[256];
	uint64_t ps = page_size(), n;
	uint8_t *va = page_span(s, phys, len, &n);

	if (!va)
		return false;
	/* In chunks, so a large range needs no allocation. */
	while (n) {
		uint64_t chunk = n < sizeof(vec) * ps ? n : sizeof(vec) * ps;
		size_t pages = (size_t)(chunk / ps);

		if (mincore(va, chunk, vec) < 0)
			return false;
		for (size_t i = 0; i < pages; i++)
			if (!(vec[i] & 1))
				return false;
		va += chunk;
		n -= chunk;
	}
	return true;
}
