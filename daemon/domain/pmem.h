/* SPDX-License-Identifier: MIT */
/*
 * pmem.h - a synthetic physical address space backed by memfds
 *
 * A memory object is a memfd (or any mappable fd) range placed at a physical
 * address of its own, so "phys" means what it means in the kernel: a bus
 * address the IOMMU translates to, independent of any process's virtual
 * mapping. The engine maps every object once, shared, and reads and writes
 * the bytes behind any phys through that mapping.
 *
 * Placement: objects are placed first-fit from PMEM_PHYS_BASE, aligned to
 * 2 MiB (1 GiB for objects of 1 GiB or more) so that large objects can be
 * mapped with IOMMU blocks. pmem_obj_import_at() places an object at a given
 * phys instead, which is how a restarted daemon puts memory back where its
 * clients' IOVAs expect it.
 *
 * No global state, no logging. Not thread-safe.
 */
#ifndef IOVAD_DOMAIN_PMEM_H
#define IOVAD_DOMAIN_PMEM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PMEM_PHYS_BASE  UINT64_C(0x40000000)        /* 1 GiB: phys 0 stays unused */
#define PMEM_PHYS_LIMIT (UINT64_C(1) << 46)         /* 64 TiB of synthetic RAM */
#define PMEM_MAX_OBJECTS 65536u

struct pmem_obj {
	uint64_t phys;    /* first byte's physical address */
	uint64_t size;    /* bytes, a multiple of the host page size */
	uint64_t id;      /* unique within the space, never reused */
	int fd;           /* owned (a dup of what the caller gave) */
	uint64_t fd_off;  /* offset of byte 0 inside fd */
	uint8_t *va;      /* engine's shared mapping of the whole object */
	void *priv;       /* the owner's; the engine never touches it */
};

struct pmem_stats {
	uint64_t objects;  /* currently placed */
	uint64_t bytes;    /* currently placed */
	uint64_t created;  /* ever */
	uint64_t destroyed;
};

struct pmem_space {
	struct pmem_obj **objs; /* sorted by phys, non-overlapping */
	uint32_t nr, cap;
	uint32_t last;          /* index of the last lookup hit (locality) */
	uint64_t next_id;
	struct pmem_stats stats;
};

int pmem_space_init(struct pmem_space *s);
/* Destroys every object still placed. NULL-safe. */
void pmem_space_fini(struct pmem_space *s);

/*
 * pmem_obj_create - a new zero-filled memfd object of size bytes (rounded up
 * to the host page size), placed first-fit.
 * Return: 0, -EINVAL (size 0 or too large), -ENOSPC (no phys room or
 * PMEM_MAX_OBJECTS reached), or the -errno of memfd_create/ftruncate/mmap.
 */
int pmem_obj_create(struct pmem_space *s, uint64_t size, const char *name,
		    struct pmem_obj **ret);

/*
 * pmem_obj_import - place [offset, offset + size) of fd. The fd is
 * duplicated (CLOEXEC); the caller keeps its own. offset must be page
 * aligned, size is rounded up to the page size and must lie inside the file.
 * Return: as pmem_obj_create, plus -EBADF, -EINVAL (misaligned, beyond EOF).
 */
int pmem_obj_import(struct pmem_space *s, int fd, uint64_t offset, uint64_t size,
		    struct pmem_obj **ret);

/*
 * pmem_obj_import_at - as pmem_obj_import, at a given page-aligned phys.
 * Return: as pmem_obj_import, plus -EEXIST if it overlaps a placed object.
 */
int pmem_obj_import_at(struct pmem_space *s, int fd, uint64_t offset, uint64_t size,
		       uint64_t phys, struct pmem_obj **ret);

/* pmem_obj_destroy - unplace, unmap and close. NULL-safe. */
void pmem_obj_destroy(struct pmem_space *s, struct pmem_obj *o);

/* pmem_find - the object containing phys, or NULL. O(1) on locality, else O(log n). */
struct pmem_obj *pmem_find(struct pmem_space *s, uint64_t phys);

/*
 * pmem_va - the engine's pointer to [phys, phys + len) when the whole range
 * lies inside one object, else NULL.
 */
void *pmem_va(struct pmem_space *s, uint64_t phys, uint64_t len);

/*
 * pmem_read / pmem_write - copy bytes at any phys; the range may span
 * adjacent objects. Return: 0, or -EFAULT if any byte is not backed.
 */
int pmem_read(struct pmem_space *s, uint64_t phys, void *buf, uint64_t len);
int pmem_write(struct pmem_space *s, uint64_t phys, const void *buf, uint64_t len);
/* pmem_zero - as pmem_write, with zeros. */
int pmem_zero(struct pmem_space *s, uint64_t phys, uint64_t len);

/* pmem_copy - copy len bytes from src to dst phys (non-overlapping). */
int pmem_copy(struct pmem_space *s, uint64_t dst, uint64_t src, uint64_t len);

/*
 * pmem_populate - fault [phys, phys + len) into the engine's mapping, for
 * writing when write (MADV_POPULATE_READ/WRITE; touching each page where
 * those are missing). A hole punched by pmem_discard() comes back as zeros.
 * The range must lie in one object. Return: 0, -EFAULT, or madvise's -errno.
 */
int pmem_populate(struct pmem_space *s, uint64_t phys, uint64_t len, bool write);

/*
 * pmem_discard - punch a hole in [phys, phys + len) (page-aligned, inside one
 * object): the memory goes back to the system and reads as zeros afterwards,
 * in every process that maps it. Return: 0, -EINVAL (misaligned), -EFAULT
 * (not inside one object), or fallocate's -errno.
 */
int pmem_discard(struct pmem_space *s, uint64_t phys, uint64_t len);

/*
 * pmem_resident - is every page of [phys, phys + len) (inside one object)
 * resident, so that touching it would not fault (mincore)? false on error.
 */
bool pmem_resident(struct pmem_space *s, uint64_t phys, uint64_t len);

#endif /* IOVAD_DOMAIN_PMEM_H */
