/* SPDX-License-Identifier: MIT */
/*
 * domain.h - the simulated IOMMU domain and the kernel's IOVA-based DMA API
 *
 * This is iovad's domain engine: a plain library with no sockets, no global
 * state and no logging. One struct per concept:
 *
 *   struct pmem_space     synthetic physical memory (pmem.h)
 *   struct dom_domain     an IOMMU domain: translating or identity; owns the
 *                         IOVA allocator (iova.h), the IO page table (pgtbl.h),
 *                         the IOTLB (iotlb.h), the flush queue and the
 *                         swiotlb bounce pool (swiotlb.h)
 *   struct dom_device     a DMA master attached to one domain; several devices
 *                         may share a domain, as in an IOMMU group
 *   struct dma_iova_state the caller's O(1) record of one IOVA allocation
 *
 * The dma_* calls mirror include/linux/dma-mapping.h, with the kernel's
 * semantics and error codes (see docs/SEMANTICS.md), so driver-style code
 * ports in both directions. The kernel's void calls return int here: 0 or a
 * -errno for the caller bugs the kernel only WARNs about.
 *
 * Where iovad differs from the kernel on purpose:
 *  - link beyond the state's size is -EINVAL (the kernel trusts the driver);
 *  - free (and destroy) with ranges still linked is -EBUSY and leaves the
 *    state intact (the kernel frees and leaks the mappings), counted in
 *    stats.free_busy;
 *  - unlink of a range that is not entirely linked unmaps what is there and
 *    returns -ENOENT (the kernel WARNs), counted in stats.unlink_holes;
 *  - dom_batch_begin/end collapse the IOTLB flushes of many syncs into one;
 *    without a batch every sync flushes, as in the kernel.
 *
 * Persistence: every piece of state is either plain data (configs, stats,
 * states) or can be rebuilt from it at the same addresses:
 * pmem_obj_import_at() puts memory back at its phys, dma_iova_reserve() takes
 * a saved state's exact IOVA back, and re-linking its ranges rebuilds the
 * page table. IOVAs are therefore stable across a daemon restart.
 *
 * Concurrency: none inside. The owner serialises all calls on a domain and on
 * the pmem space it uses.
 */
#ifndef IOVAD_DOMAIN_DOMAIN_H
#define IOVAD_DOMAIN_DOMAIN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "iotlb.h"
#include "iova.h"
#include "pgtbl.h"
#include "pmem.h"
#include "swiotlb.h"

enum dma_data_direction {
	DMA_BIDIRECTIONAL = 0,
	DMA_TO_DEVICE = 1,
	DMA_FROM_DEVICE = 2,
	DMA_NONE = 3,
};

/* The kernel's attribute bits that this engine understands. */
#define DMA_ATTR_SKIP_CPU_SYNC    (1UL << 5)
#define DMA_ATTR_MMIO             (1UL << 10)
#define DMA_ATTR_REQUIRE_COHERENT (1UL << 11)
#define DMA_ATTR_KNOWN (DMA_ATTR_SKIP_CPU_SYNC | DMA_ATTR_MMIO | DMA_ATTR_REQUIRE_COHERENT)

/* Top bit of dma_iova_state.__size: part of the range was bounced. */
#define DMA_IOVA_USE_SWIOTLB (UINT64_C(1) << 63)

struct dma_iova_state {
	uint64_t addr;
	uint64_t __size;
};

static inline bool dma_use_iova(const struct dma_iova_state *state)
{
	return state->__size != 0;
}

static inline uint64_t dma_iova_size(const struct dma_iova_state *state)
{
	return state->__size & ~DMA_IOVA_USE_SWIOTLB;
}

enum dom_type { DOM_TRANSLATING = 0, DOM_IDENTITY = 1 };
enum dom_flush_policy { DOM_FLUSH_STRICT = 0, DOM_FLUSH_LAZY = 1 };
/* When a linked range becomes visible to devices. */
enum dom_visibility { DOM_VISIBLE_ON_SYNC = 0, DOM_VISIBLE_ON_LINK = 1 };

#define DOM_FQ_SIZE 256u                          /* flush queue ring entries */
#define DOM_FQ_TIMEOUT_NS (UINT64_C(10) * 1000000) /* 10 ms, as the kernel */
#define DOM_DEFAULT_SWIOTLB_BYTES (UINT64_C(4) << 20)
#define DOM_FAULT_LOG 16u

typedef uint64_t (*dom_clock_fn)(void *arg);

struct dom_config {
	enum dom_type type;
	unsigned int granule_shift;   /* 12 (default when 0), 14 or 16 */
	uint64_t aperture_start;      /* default 0 (pfn 0 is never allocated) */
	uint64_t aperture_end;        /* inclusive; 0 means 2^48 - 1 */
	enum dom_flush_policy flush;
	enum dom_visibility visibility;
	bool from_device_rw;          /* DMA_FROM_DEVICE maps read+write */
	bool no_blocks;               /* never use 2 MiB / 1 GiB leaves */
	uint32_t iotlb_entries;       /* power of two; default 128 */
	uint64_t fq_timeout_ns;       /* default DOM_FQ_TIMEOUT_NS */
	uint64_t swiotlb_bytes;       /* bounce pool size; default 4 MiB */
	uint64_t max_table_bytes;     /* page-table memory cap; 0 = none */
	dom_clock_fn clock;           /* default CLOCK_MONOTONIC in ns */
	void *clock_arg;
};

struct dom_stats {
	uint64_t iova_allocs;       /* successful try_alloc and map_phys allocations */
	uint64_t iova_frees;        /* IOVA ranges released (immediately or queued) */
	uint64_t iova_alloc_failures;
	uint64_t links;             /* successful dma_iova_link calls */
	uint64_t link_errors;
	uint64_t unlinks;           /* dma_iova_unlink calls, and destroy's unlink */
	uint64_t unlink_holes;      /* unlinks that found part of the range unmapped */
	uint64_t syncs;             /* dma_iova_sync calls */
	uint64_t iotlb_flushes;     /* every flush below, added up */
	uint64_t flush_sync_map;    /* "sync map" flushes: publishing new links */
	uint64_t flush_range;       /* gathered range invalidations */
	uint64_t flush_all;         /* whole-IOTLB invalidations (flush queue) */
	uint64_t fq_queued;         /* IOVAs deferred through the flush queue */
	uint64_t fq_full;           /* queue found full: forced flush */
	uint64_t fq_timer;          /* flushes by the timeout */
	uint64_t bounce_maps;
	uint64_t bounced_bytes;
	uint64_t map_phys;
	uint64_t unmap_phys;
	uint64_t free_busy;         /* free/destroy refused: ranges still linked */
	uint64_t cpu_cache_syncs;   /* cache maintenance for non-coherent devices */
	uint64_t io_page_faults;
	uint64_t dma_reads;
	uint64_t dma_writes;
	uint64_t dma_bytes;
	uint64_t iotlb_hits;        /* copied from the IOTLB by dom_domain_stats() */
	uint64_t iotlb_misses;
	uint64_t table_bytes;       /* current, from the page table */
	uint64_t mapped_bytes;      /* current, from the page table */
};

enum dom_access { DOM_ACCESS_READ = 1, DOM_ACCESS_WRITE = 2 };

enum dom_fault_reason {
	DOM_FAULT_NOT_PRESENT = 1, /* no translation */
	DOM_FAULT_NOT_SYNCED,      /* linked, but dma_iova_sync has not run */
	DOM_FAULT_PERMISSION,      /* mapped without the right for this access */
	DOM_FAULT_ADDRESS,         /* above the device's DMA mask */
	DOM_FAULT_BUS,             /* translated to phys that no memory backs */
};

/* An I/O page fault record, as an IOMMU reports one. */
struct dom_fault {
	uint64_t iova;
	uint32_t access;  /* enum dom_access */
	uint32_t reason;  /* enum dom_fault_reason */
};

struct dom_fq_entry {
	uint64_t pfn;
	uint64_t npages;
	uint64_t counter;  /* flush_start_cnt when queued */
};

struct dom_flush_queue {
	struct dom_fq_entry ring[DOM_FQ_SIZE];
	uint32_t head, tail;      /* ring indices; empty when equal */
	uint64_t flush_start_cnt;
	uint64_t flush_finish_cnt;
	uint64_t deadline;        /* absolute ns; 0 when the timer is off */
};

struct dom_domain {
	struct dom_config cfg;
	struct pmem_space *pmem;
	uint64_t granule;
	struct iova_allocator iovad;
	struct pgtbl pt;
	struct iotlb tlb;
	struct dom_flush_queue fq;
	struct swiotlb_pool swiotlb;  /* created on the first bounce */
	uint32_t ndevices;
	uint32_t batch_depth;
	bool batch_flush_pending;
	struct dom_stats stats;
	struct dom_fault faults[DOM_FAULT_LOG]; /* most recent faults */
	uint64_t nfaults;
	/*
	 * Restore (IOVA-stable restart): when non-zero, the next IOVA
	 * allocation on this domain (try_alloc, map_phys, an ODP region) takes
	 * exactly this granule-aligned IOVA, or fails; then it is cleared.
	 */
	uint64_t want_iova;
};

struct dom_device_config {
	const char *name;
	unsigned int dma_mask_bits;   /* 1..64; default 64 when 0 */
	bool untrusted;               /* bounce unaligned heads and tails */
	bool non_coherent;            /* needs CPU cache maintenance */
	bool not_pci;                 /* skip the PCI "below 4 GiB first" try */
};

#define DOM_DEVICE_NAME_MAX 32

struct dom_device {
	char name[DOM_DEVICE_NAME_MAX];
	unsigned int dma_mask_bits;
	uint64_t dma_mask;
	bool untrusted;
	bool coherent;
	bool pci_32bit_workaround;    /* as the kernel: cleared on the first miss */
	struct dom_domain *dom;
};

/* -- domains and devices ------------------------------------------------- */

/*
 * dom_domain_create - Return: 0, -EINVAL (bad granule, aperture, IOTLB size),
 * -ENOMEM.
 */
int dom_domain_create(struct pmem_space *pmem, const struct dom_config *cfg,
		      struct dom_domain **ret);
/*
 * dom_domain_destroy - flush, then free everything. Devices must be gone.
 * Return: 0, or -EBUSY while devices are attached. NULL-safe.
 */
int dom_domain_destroy(struct dom_domain *d);

/* Return: 0, -EINVAL (name empty or too long, mask bits > 64), -ENOMEM. */
int dom_device_create(struct dom_domain *d, const struct dom_device_config *cfg,
		      struct dom_device **ret);
void dom_device_destroy(struct dom_device *dev);

/* Counters, with the IOTLB's and the page table's folded in. */
void dom_domain_stats(const struct dom_domain *d, struct dom_stats *ret);

/* -- the IOVA-based DMA API ------------------------------------------------ */

/*
 * dma_iova_try_alloc - zero *state, then reserve IOVA space for size bytes
 * starting at phys's offset in its granule. false (never an error code) on an
 * identity domain, for size 0 or with the top bit set, or when no IOVA is
 * free below the device's DMA mask: the caller then uses dma_map_phys().
 */
bool dma_iova_try_alloc(struct dom_device *dev, struct dma_iova_state *state, uint64_t phys,
			uint64_t size);

/*
 * dma_iova_link - map [phys, phys + size) at state->addr + offset, not yet
 * visible to the device (see dma_iova_sync). Return: 0; -EINVAL (no IOVA
 * state, bad direction or attrs, size 0, beyond the state, or a start that is
 * not on the merge boundary); -EIO (phys not granule-aligned with offset > 0);
 * -EPERM (would bounce with MMIO or REQUIRE_COHERENT); -EOPNOTSUPP
 * (REQUIRE_COHERENT on a non-coherent device); -ENOMEM (bounce pool or page
 * table); -EEXIST (already linked).
 */
int dma_iova_link(struct dom_device *dev, struct dma_iova_state *state, uint64_t phys,
		  uint64_t offset, uint64_t size, enum dma_data_direction dir,
		  unsigned long attrs);

/*
 * dma_iova_link_run - nr dma_iova_link() calls, merged by the caller, of
 * granule-aligned pieces that follow each other in phys and in offset and
 * together make [phys, phys + size) at offset, with one direction and one
 * set of attrs: the block layer's merge of contiguous segments, done by
 * iovad for the LINK operations of a batch. The result is the one the nr
 * calls give when they all succeed: the same leaves (granule leaves only,
 * never a block the pieces would not have made, so the caller keeps every
 * piece shorter than the smallest block), the same counters (links and
 * cpu_cache_syncs count nr). On error nothing is mapped and no counter
 * moves: the caller makes the nr calls one by one to learn which fails.
 * Return: 0; -EINVAL (nr 0, phys, offset or size not granule-aligned, or any
 * error dma_iova_link() would give the whole range: the caller's fallback
 * sorts it out); -EOPNOTSUPP; -ENOMEM; -EEXIST.
 */
int dma_iova_link_run(struct dom_device *dev, struct dma_iova_state *state, uint64_t phys,
		      uint64_t offset, uint64_t size, enum dma_data_direction dir,
		      unsigned long attrs, uint32_t nr);

/*
 * dma_iova_sync - make what was linked in [offset, offset + size) visible
 * (one IOTLB "sync map" flush, or none inside a batch). Return: 0, -EINVAL.
 */
int dma_iova_sync(struct dom_device *dev, struct dma_iova_state *state, uint64_t offset,
		  uint64_t size);

/*
 * dma_iova_unlink - unmap [offset, offset + size) through a gather and flush
 * synchronously (even on a lazy domain); bounced granules are copied back for
 * FROM_DEVICE and BIDIRECTIONAL and released. Return: 0, -EINVAL, -ENOENT
 * (part of the range was not linked; the rest was unlinked), -ENOMEM (a block
 * split needed a table that the cap refused).
 */
int dma_iova_unlink(struct dom_device *dev, struct dma_iova_state *state, uint64_t offset,
		    uint64_t size, enum dma_data_direction dir, unsigned long attrs);

/*
 * dma_iova_destroy - unlink [0, mapped_len) and free the IOVA. On a lazy
 * domain the flush and the IOVA's reuse go through the flush queue.
 * mapped_len 0 is dma_iova_free(). Return: as unlink, plus -EBUSY (ranges
 * beyond mapped_len are still linked: nothing is freed).
 */
int dma_iova_destroy(struct dom_device *dev, struct dma_iova_state *state,
		     uint64_t mapped_len, enum dma_data_direction dir, unsigned long attrs);

/*
 * dma_iova_free - release the IOVA space; *state is zeroed. Return: 0,
 * -EINVAL (no IOVA state), -EBUSY (ranges still linked; nothing freed).
 */
int dma_iova_free(struct dom_device *dev, struct dma_iova_state *state);

/*
 * dom_iova_upgrade - add the permissions of dir to the linked granules in
 * [offset, offset + size) of a state, in place, without an unlink (a write
 * fault on a page an ODP region mapped read-only). Cached IOTLB entries of
 * those granules are invalidated; the flush is counted like a sync's (one
 * for a whole dom_batch). Granules already carrying the permissions are left
 * alone. Return: bytes whose permissions changed (>= 0); -EINVAL (no state,
 * bad range or dir); -ENOENT (part of the range is not linked: nothing
 * changed).
 */
int64_t dom_iova_upgrade(struct dom_device *dev, struct dma_iova_state *state, uint64_t offset,
			 uint64_t size, enum dma_data_direction dir);

/* dma_get_merge_boundary - granule - 1, or 0 on an identity domain. */
uint64_t dma_get_merge_boundary(const struct dom_device *dev);

/*
 * dma_map_phys - the streaming fallback: allocate, map and sync one range
 * (bouncing all of it for an untrusted device when unaligned). On an identity
 * domain the DMA address is phys. Return: 0 with *ret_dma; -EINVAL; -EPERM
 * (bounce with MMIO); -EOPNOTSUPP; -ENOMEM (IOVA space, pool or table);
 * -EIO (identity domain: phys beyond the DMA mask).
 */
int dma_map_phys(struct dom_device *dev, uint64_t phys, uint64_t size,
		 enum dma_data_direction dir, unsigned long attrs, uint64_t *ret_dma);

/*
 * dma_unmap_phys - undo dma_map_phys. Return: 0, -EINVAL, -ENOENT (dma is
 * not the start of such a mapping of that size: nothing is freed).
 */
int dma_unmap_phys(struct dom_device *dev, uint64_t dma, uint64_t size,
		   enum dma_data_direction dir, unsigned long attrs);

/*
 * dma_iova_reserve - take a saved state's IOVA range back, exactly, on a
 * fresh domain (restart). Return: 0, -EINVAL, -EEXIST (already in use).
 */
int dma_iova_reserve(struct dom_device *dev, const struct dma_iova_state *state);

/* -- batching (iovad's improvement over one flush per sync) --------------- */

/* Syncs between begin and end publish immediately but flush once, at end. */
void dom_batch_begin(struct dom_domain *d);
/* Return: number of IOTLB flushes issued (0 or 1). */
int dom_batch_end(struct dom_domain *d);

/* -- flush queue ----------------------------------------------------------- */

/* Absolute deadline (ns on the domain's clock) of the flush-queue timer, 0 if off. */
uint64_t dom_fq_deadline(const struct dom_domain *d);
/*
 * dom_fq_poll - run the flush-queue timer if its deadline has passed on the
 * domain's clock. Return: IOVA ranges released.
 */
int dom_fq_poll(struct dom_domain *d);
/* dom_fq_flush - flush the whole IOTLB now and release every queued IOVA. */
int dom_fq_flush(struct dom_domain *d);

/* -- the simulated device's DMA engine ------------------------------------- */

/*
 * dom_dev_dma_read / dom_dev_dma_write - the device reads or writes len bytes
 * at iova, translating through the IOTLB and then the page table, with the
 * permissions checked. All or nothing: every page is translated before any
 * byte moves. Return: 0; -EINVAL (len 0 or wrapping); -EFAULT on an I/O page
 * fault, with *ret_fault filled (if not NULL) and the fault counted and
 * logged in the domain.
 */
int dom_dev_dma_read(struct dom_device *dev, uint64_t iova, void *buf, uint64_t len,
		     struct dom_fault *ret_fault);
int dom_dev_dma_write(struct dom_device *dev, uint64_t iova, const void *buf, uint64_t len,
		      struct dom_fault *ret_fault);

/*
 * dom_dev_dma_account - a device access whose bytes the engine did not move
 * (the rxe backend moves them by RDMA, a remote peer by itself), counted as
 * dom_dev_dma_read/write count theirs: with f NULL, one dma_reads or
 * dma_writes (access DOM_ACCESS_READ or _WRITE) and len dma_bytes; else the
 * fault f, counted in io_page_faults and logged.
 */
void dom_dev_dma_account(struct dom_device *dev, uint32_t access, uint64_t len,
			 const struct dom_fault *f);

const char *dom_fault_reason_str(uint32_t reason);

#endif /* IOVAD_DOMAIN_DOMAIN_H */
