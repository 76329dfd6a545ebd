// SPDX-License-Identifier: MIT
/*
 * ring.c - creating and mapping the shared-memory rings (see ring.h).
 *
 * The double mapping: reserve the whole span with an inaccessible anonymous
 * mapping, then map the file over it with MAP_FIXED, each ring's data twice
 * in a row. Nothing else in the address space can land in between, and a
 * failure part-way leaves only the reservation to unmap.
 */
#include "ring.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

int proto_ring_create(uint32_t sq_size, uint32_t cq_size)
{
	uint64_t size = proto_ring_file_size(sq_size, cq_size);
	int fd, r;

	if (!proto_ring_size_ok(sq_size) || !proto_ring_size_ok(cq_size))
		return -EINVAL;
	fd = memfd_create("iovad-ring", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (fd < 0)
		return -errno;
	if (ftruncate(fd, (off_t)size) < 0 || fallocate(fd, 0, 0, (off_t)size) < 0 ||
	    fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) < 0) {
		r = -errno;
		close(fd);
		return r;
	}
	return fd;
}

static int map_at(uint8_t *at, size_t len, int fd, uint64_t off)
{
	void *p = mmap(at, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED | MAP_POPULATE, fd,
		       (off_t)off);

	return p == MAP_FAILED ? -errno : 0;
}

int proto_ring_map(int fd, uint32_t sq_size, uint32_t cq_size, struct proto_ring_map *ret)
{
	long page = sysconf(_SC_PAGESIZE);
	size_t len = PROTO_RING_HDR_SIZE + 2 * (size_t)sq_size + 2 * (size_t)cq_size;
	uint64_t cq_off = PROTO_RING_HDR_SIZE + (uint64_t)sq_size;
	uint8_t *a, *sq, *cq;
	int r;

	memset(ret, 0, sizeof(*ret));
	if (!proto_ring_size_ok(sq_size) || !proto_ring_size_ok(cq_size))
		return -EINVAL;
	/* Every mapping below starts at a multiple of the header size. */
	if (page <= 0 || (unsigned long)page > PROTO_RING_HDR_SIZE)
		return -EOPNOTSUPP;
	a = mmap(NULL, len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (a == MAP_FAILED)
		return -errno;
	sq = a + PROTO_RING_HDR_SIZE;
	cq = sq + 2 * (size_t)sq_size;
	r = map_at(a, PROTO_RING_HDR_SIZE, fd, 0);
	if (!r)
		r = map_at(sq, sq_size, fd, PROTO_RING_HDR_SIZE);
	if (!r)
		r = map_at(sq + sq_size, sq_size, fd, PROTO_RING_HDR_SIZE);
	if (!r)
		r = map_at(cq, cq_size, fd, cq_off);
	if (!r)
		r = map_at(cq + cq_size, cq_size, fd, cq_off);
	if (r) {
		munmap(a, len);
		return r;
	}
	ret->hdr = (struct proto_ring_hdr *)a;
	ret->sq = sq;
	ret->cq = cq;
	ret->sq_size = sq_size;
	ret->cq_size = cq_size;
	ret->area = a;
	ret->area_len = len;
	return 0;
}

void proto_ring_unmap(struct proto_ring_map *m)
{
	if (m->area)
		munmap(m->area, m->area_len);
	memset(m, 0, sizeof(*m));
}
