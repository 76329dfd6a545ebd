/* SPDX-License-Identifier: MIT */
/*
 * odp.h - on-demand paging: IOVA regions that map nothing until the device
 * touches them, and the I/O page-fault service that fills them in.
 *
 * The kernel's ODP path (ib_umem_odp + hmm_dma_map) reserves IOVA for the
 * whole region with dma_iova_try_alloc and maps nothing. A device page fault
 * resolves the backing pages (hmm_range_fault), then links and syncs them one
 * page at a time, and the device resumes. Invalidations (MMU notifiers)
 * unlink. Faults and invalidations race; the kernel closes the race with a
 * notifier sequence number: read it, resolve (may sleep), and before
 * installing anything check that no invalidation ran meanwhile, else retry.
 *
 * This engine does the same with two differences, both on purpose:
 *  - odp_service() takes a whole batch of pending faults, links every page
 *    they need and makes them visible with one IOTLB flush per domain
 *    (ODP_SYNC_BATCH); ODP_SYNC_PER_PAGE keeps the kernel's one link + one
 *    sync per page for comparison;
 *  - a fault maps a fault-around window: the faulting range widened to a
 *    power-of-two window aligned down to its own size (as mlx5 aligns ODP
 *    maps to the MR's page size and implicit children to their 1 GiB
 *    chunk), clipped to the region, default 64 KiB, at most 4 MiB (mlx5's
 *    MAX_PREFETCH_LEN).
 *
 * Permissions: a read fault and PREFETCH map pages device-read-only; a write
 * fault and PREFETCH_WRITE map read+write (within the region's rights). A
 * write that hits a read-only page upgrades it in place (dom_iova_upgrade),
 * without an unlink, as a write fault on a read-only ODP page does in mlx5.
 *
 * Backing: the owner supplies odp_resolve_fn, which says where a region
 * offset lives in the pmem space (an explicit region is one memory object;
 * an implicit one spans all of a client's objects). Resolving populates the
 * page in the engine's mapping: a hole punched by pmem_discard() reads back
 * as zeros, as an anonymous fault would.
 *
 * Same rules as the rest of the engine: no I/O, no logging, no global state;
 * the owner serialises all calls on a domain.
 */
#ifndef IOVAD_DOMAIN_ODP_H
#define IOVAD_DOMAIN_ODP_H

#include <stdbool.h>
#include <stdint.h>

#include "domain.h"

/* Region rights, as ibv_reg_mr's access flags. LOCAL_READ is always implied. */
#define ODP_ACCESS_LOCAL_READ   0x1u
#define ODP_ACCESS_DEVICE_READ  0x2u
#define ODP_ACCESS_DEVICE_WRITE 0x4u
#define ODP_ACCESS_MASK         0x7u

enum odp_sync_mode {
	ODP_SYNC_BATCH = 0,    /* link everything the batch needs, one flush per domain */
	ODP_SYNC_PER_PAGE = 1, /* the kernel's hmm_dma_map path: link + sync per page */
};

#define ODP_WINDOW_DEFAULT (UINT64_C(64) << 10)
#define ODP_WINDOW_MAX     (UINT64_C(4) << 20)
#define ODP_MAX_RETRIES    16u /* invalidation collisions before a fault gives up (-EAGAIN) */

struct odp_config {
	enum odp_sync_mode sync;
	uint64_t window;  /* fault-around bytes: 0 = the granule; a power of two <= ODP_WINDOW_MAX */
};

/* Counters, under mlx5's names where mlx5 has one. */
struct odp_counters {
	uint64_t page_faults;                /* pages mapped or upgraded by faults */
	uint64_t page_faults_handled;        /* fault events served successfully */
	uint64_t page_invalidations;         /* pages unmapped by invalidations */
	uint64_t page_invalidations_handled; /* invalidations that intersected the region */
	uint64_t page_prefetch;              /* pages mapped or upgraded by prefetch */
	uint64_t fault_errors;               /* faults answered with an error */
	uint64_t fault_retries;              /* resolves that raced an invalidation */
	uint64_t perm_upgrades;              /* pages made writable in place */
	uint64_t syncs;                      /* dma_iova_sync calls the service made */
	uint64_t flushes;                    /* IOTLB flushes the service cost */
	uint64_t populated;                  /* pages populated in the backing */
};

/*
 * A latency histogram, log-linear: 4 sub-buckets per power of two of
 * nanoseconds (bucket = 4 * msb + the next two bits), so any quantile is
 * known to within 25%.
 */
#define ODP_HIST_BUCKETS 256u
struct odp_hist {
	uint64_t count;
	uint64_t sum_ns;
	uint64_t bucket[ODP_HIST_BUCKETS];
};

void odp_hist_add(struct odp_hist *h, uint64_t ns);
/* Merge src into dst. */
void odp_hist_merge(struct odp_hist *dst, const struct odp_hist *src);
/* The upper bound of the bucket holding quantile q (0 < q <= 1); 0 when empty. */
uint64_t odp_hist_quantile(const struct odp_hist *h, double q);

/*
 * Where the region's byte at off (granule-aligned) lives: *phys, and in *run
 * how many bytes from off are backed contiguously (a granule multiple > 0).
 * Return: 0, or -EFAULT when nothing backs off; then *run may say how many
 * bytes from off have no backing (0: not known, one granule is assumed), so
 * that a prefetch steps over a whole hole at once. Called during
 * odp_service(); it may call odp_invalidate() on the region (a notifier that
 * fires while the fault resolves), which makes the fault retry.
 */
typedef int (*odp_resolve_fn)(void *arg, uint64_t off, uint64_t *phys, uint64_t *run);

struct odp_region {
	struct dom_device *dev;
	struct dma_iova_state st;  /* the whole region's IOVA, from dma_iova_try_alloc */
	uint64_t size;             /* bytes reserved, a granule multiple */
	uint32_t access;           /* ODP_ACCESS_* */
	uint64_t seq;              /* bumped by every odp_invalidate() */
	odp_resolve_fn resolve;
	void *arg;
	uint64_t mapped;           /* bytes mapped now */
	struct odp_counters cnt;
	struct odp_hist hist;      /* fault latency, fed by the owner (odp_hist_add) */
};

/*
 * odp_region_init - reserve IOVA for size bytes on dev and map nothing.
 * Return: 0; -EINVAL (size 0 or not a granule multiple, access bits outside
 * ODP_ACCESS_MASK, no resolve); -EOPNOTSUPP (identity domain: nothing to
 * fault); -ENOSPC (no IOVA space below the device's mask).
 */
int odp_region_init(struct odp_region *r, struct dom_device *dev, uint64_t size, uint32_t access,
		    odp_resolve_fn resolve, void *arg);

/*
 * odp_region_fini - unlink everything mapped (one gathered flush) and free
 * the IOVA (through the flush queue on a lazy domain). NULL-safe.
 */
void odp_region_fini(struct odp_region *r);

/* Fault flags */
#define ODP_FAULT_PREFETCH    0x1u /* count as prefetch, not as a fault */
#define ODP_FAULT_NO_POPULATE 0x2u /* map only pages already resident (PREFETCH_NO_FAULT) */
#define ODP_FAULT_EXACT       0x4u /* no fault-around window (prefetch maps what it is told) */

/* One access to serve: [off, off + len) of r for access. */
struct odp_fault {
	struct odp_region *r;
	uint64_t off;
	uint64_t len;
	uint32_t access;  /* DOM_ACCESS_READ or DOM_ACCESS_WRITE */
	uint32_t flags;   /* ODP_FAULT_* */
	int status;       /* out: 0; -EFAULT (beyond the region or its rights, or no
			   * backing); -ENOMEM (page table); -EAGAIN (kept racing
			   * invalidations); -EINVAL (len 0) */
	uint64_t pages;   /* out: pages mapped or upgraded for this fault */
};

/*
 * odp_needs_service - would an access of [off, off + len) for access fault?
 * true if any granule in it is unmapped, unpublished or lacks the right.
 */
bool odp_needs_service(const struct odp_region *r, uint64_t off, uint64_t len, uint32_t access);

/*
 * odp_service - serve n faults (each may be on a different region or
 * domain): for each, map every granule of its window that is not mapped
 * with the access it needs, after resolving and populating its backing and
 * checking the region's sequence number (retry on a collision), upgrading
 * read-only granules in place for writes. Then make them visible: in
 * ODP_SYNC_BATCH mode one dma_iova_sync per fault inside one dom_batch per
 * domain, so the whole call costs one IOTLB flush per domain touched; in
 * ODP_SYNC_PER_PAGE mode one link and one sync (and flush) per granule.
 * Each fault's status and pages are set; the counters of its region too.
 * Return: IOTLB flushes spent (>= 0).
 */
int odp_service(const struct odp_config *cfg, struct odp_fault *f, uint32_t n);

/*
 * odp_invalidate - unlink whatever is mapped in [off, off + len) of r (holes
 * are skipped) with one gathered flush, and bump r->seq so a fault resolving
 * concurrently retries. Return: pages unmapped (>= 0), or -EINVAL (range
 * outside the region).
 */
int64_t odp_invalidate(struct odp_region *r, uint64_t off, uint64_t len);

#endif /* IOVAD_DOMAIN_ODP_H */
