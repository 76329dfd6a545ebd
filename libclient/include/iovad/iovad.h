/* SPDX-License-Identifier: MIT */
/*
 * iovad.h - libiovad, the client library of the iovad IOVA mapping service.
 *
 * The calls mirror the kernel's IOVA-based DMA API (include/linux/dma-mapping.h)
 * one for one, with a device handle in place of struct device and the daemon
 * doing the work, so driver-style code ports in both directions:
 *
 *	struct iovad_iova_state st;
 *
 *	if (!iovad_iova_try_alloc(dev, &st, phys, len))
 *		return iovad_map_phys(dev, phys, len, IOVAD_DMA_TO_DEVICE, 0, &dma);
 *	iovad_iova_link(dev, &st, phys, 0, len, IOVAD_DMA_TO_DEVICE, 0);
 *	iovad_iova_sync(dev, &st, 0, len);
 *	...
 *	iovad_iova_destroy(dev, &st, len, IOVAD_DMA_TO_DEVICE, 0);
 *
 * Errors: every call returns 0 (or a count) on success and a negative errno
 * on failure, including the mirrors of the kernel's void calls. -ENOTCONN
 * means the daemon is gone. iovad_strerror() describes any of them.
 *
 * Threads: one connection may be used from many threads at once; requests
 * are pipelined on the socket and each caller waits only for its own reply.
 *
 * Batches: struct iovad_batch queues link, sync, unlink, destroy, free, map
 * and unmap operations and submits them in one round trip; all the syncs in
 * a batch cost one IOTLB flush. A batch completes through a callback run by
 * iovad_process(), which an event loop calls when iovad_event_fd() is
 * readable, or synchronously with iovad_batch_wait().
 */
#ifndef IOVAD_IOVAD_H
#define IOVAD_IOVAD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__) && !defined(IOVAD_EXPORT)
#define IOVAD_EXPORT __attribute__((visibility("default")))
#elif !defined(IOVAD_EXPORT)
#define IOVAD_EXPORT
#endif

#define IOVAD_DEFAULT_SOCKET "/run/iovad/iovad.sock"

struct iovad;          /* a connection (a session in the daemon) */
struct iovad_dev;      /* an opened device */
struct iovad_mem;      /* a memory object known to the daemon */
struct iovad_batch;    /* a queue of operations submitted in one round trip */

/* As struct dma_iova_state: the IOVA and the size; the top bit of __size means "bounced". */
struct iovad_iova_state {
	uint64_t addr;
	uint64_t __size;
};

enum iovad_dma_dir {
	IOVAD_DMA_BIDIRECTIONAL = 0,
	IOVAD_DMA_TO_DEVICE = 1,
	IOVAD_DMA_FROM_DEVICE = 2,
};

#define IOVAD_ATTR_SKIP_CPU_SYNC    (1UL << 5)
#define IOVAD_ATTR_MMIO             (1UL << 10)
#define IOVAD_ATTR_REQUIRE_COHERENT (1UL << 11)

#define IOVAD_IOVA_USE_SWIOTLB (UINT64_C(1) << 63)

/* Device properties, as iovad_dev_flags() reports them. */
#define IOVAD_DEV_IDENTITY     0x1u
#define IOVAD_DEV_UNTRUSTED    0x2u
#define IOVAD_DEV_NON_COHERENT 0x4u
#define IOVAD_DEV_LAZY         0x8u

/*
 * Counters of a device's domain since the daemon started (devices sharing a
 * domain share them). @size is set by the library to the size it filled, so
 * the struct can grow at the end.
 */
struct iovad_dev_stats {
	uint32_t size;
	uint32_t reserved;
	uint64_t iova_allocs;
	uint64_t iova_frees;
	uint64_t links;
	uint64_t unlinks;
	uint64_t syncs;
	uint64_t iotlb_flushes;
	uint64_t bounced_bytes;
	uint64_t io_page_faults;
	uint64_t map_phys;
	uint64_t unmap_phys;
	uint64_t dma_reads;
	uint64_t dma_writes;
	uint64_t dma_bytes;
	uint64_t free_busy;
	uint64_t mapped_bytes;
	uint64_t table_bytes;
};

/* The last I/O page fault a device DMA call hit (iovad_dev_last_fault()). */
struct iovad_fault {
	uint64_t iova;
	uint32_t access;  /* 1 read, 2 write */
	uint32_t reason;  /* 1 not present, 2 not synced, 3 permission, 4 address, 5 bus */
};

/* ---- connection ----------------------------------------------------------- */

/**
 * iovad_connect - connect to the daemon and negotiate the protocol.
 * @socket_path: NULL for $IOVAD_SOCKET, else /run/iovad/iovad.sock
 * Return: 0; -ENOENT or -ECONNREFUSED (no daemon), -EACCES (not allowed by
 * the socket or the daemon's policy), -EPROTONOSUPPORT, -ENOMEM.
 */
IOVAD_EXPORT int iovad_connect(const char *socket_path, struct iovad **ret);
/** iovad_disconnect - close; the daemon tears down whatever is left. NULL-safe. */
IOVAD_EXPORT void iovad_disconnect(struct iovad *c);
/** iovad_session_id - the daemon's id for this connection (iovadctl shows it). */
IOVAD_EXPORT uint64_t iovad_session_id(const struct iovad *c);

/* ---- devices ------------------------------------------------------------------ */

/** Return: 0; -ENODEV (no such device), -EMFILE (too many open), -ENOTCONN. */
IOVAD_EXPORT int iovad_dev_open(struct iovad *c, const char *name, struct iovad_dev **ret);
IOVAD_EXPORT void iovad_dev_close(struct iovad_dev *d);
/** iovad_dev_flags - IOVAD_DEV_* of an opened device. */
IOVAD_EXPORT uint32_t iovad_dev_flags(const struct iovad_dev *d);
/** Return: 0 and *ret filled (ret->size set); -ENOTCONN. */
IOVAD_EXPORT int iovad_dev_stats(struct iovad_dev *d, struct iovad_dev_stats *ret);

/* ---- memory ------------------------------------------------------------------- */

/** iovad_mem_alloc - a zeroed memfd-backed object, mapped in this process and in the daemon.
 * Return: 0; -EINVAL (size 0), -EDQUOT (over this client's limit), -ENOMEM, -ENOTCONN. */
IOVAD_EXPORT int iovad_mem_alloc(struct iovad *c, size_t size, struct iovad_mem **ret);
/** iovad_mem_import - register [offset, offset + size) of a memfd (the caller keeps fd).
 * The memfd must be sealed with F_SEAL_SHRINK: the daemon maps it, and memory that
 * could shrink under that mapping would crash it.
 * Return: as iovad_mem_alloc, plus -EBADF (not a memfd), -EPERM (not sealed against
 * shrinking), and -EINVAL for a misaligned offset or a range beyond the end. */
IOVAD_EXPORT int iovad_mem_import(struct iovad *c, int fd, uint64_t offset, size_t size,
				  struct iovad_mem **ret);
IOVAD_EXPORT void *iovad_mem_addr(const struct iovad_mem *m);
IOVAD_EXPORT size_t iovad_mem_size(const struct iovad_mem *m);
/** The synthetic physical address of byte 0, as the daemon placed it. */
IOVAD_EXPORT uint64_t iovad_mem_phys(const struct iovad_mem *m);
/** iovad_mem_free - release; a memory object still linked stays pinned in the daemon
 * until its last mapping goes (the handle is gone at once). NULL-safe. */
IOVAD_EXPORT void iovad_mem_free(struct iovad_mem *m);

/* ---- the IOVA-based DMA API ------------------------------------------------ */

/** false when the device has no translating IOMMU (use iovad_map_phys), when size is 0,
 * or when no IOVA is free; errno says which. *st is zeroed first. */
IOVAD_EXPORT bool iovad_iova_try_alloc(struct iovad_dev *d, struct iovad_iova_state *st,
				       uint64_t phys, size_t size);
IOVAD_EXPORT bool iovad_use_iova(const struct iovad_iova_state *st);
IOVAD_EXPORT size_t iovad_iova_size(const struct iovad_iova_state *st);
/** Return: 0; -EINVAL, -EIO, -EPERM, -EOPNOTSUPP, -ENOMEM, -EEXIST as dma_iova_link;
 * -ENOENT (not this client's state), -EFAULT (phys not in this client's memory). */
IOVAD_EXPORT int iovad_iova_link(struct iovad_dev *d, struct iovad_iova_state *st,
				 uint64_t phys, size_t offset, size_t size,
				 enum iovad_dma_dir dir, unsigned long attrs);
IOVAD_EXPORT int iovad_iova_sync(struct iovad_dev *d, struct iovad_iova_state *st,
				 size_t offset, size_t size);
IOVAD_EXPORT int iovad_iova_unlink(struct iovad_dev *d, struct iovad_iova_state *st,
				   size_t offset, size_t size, enum iovad_dma_dir dir,
				   unsigned long attrs);
IOVAD_EXPORT int iovad_iova_destroy(struct iovad_dev *d, struct iovad_iova_state *st,
				    size_t mapped_len, enum iovad_dma_dir dir, unsigned long attrs);
/** Return: 0; -EBUSY (ranges still linked: nothing freed), -ENOENT. */
IOVAD_EXPORT int iovad_iova_free(struct iovad_dev *d, struct iovad_iova_state *st);
IOVAD_EXPORT uint64_t iovad_get_merge_boundary(struct iovad_dev *d);
IOVAD_EXPORT int iovad_map_phys(struct iovad_dev *d, uint64_t phys, size_t size,
				enum iovad_dma_dir dir, unsigned long attrs, uint64_t *ret_dma);
IOVAD_EXPORT int iovad_unmap_phys(struct iovad_dev *d, uint64_t dma, size_t size,
				  enum iovad_dma_dir dir, unsigned long attrs);

/* ---- the simulated device ------------------------------------------------------- */

/** The device writes buf at iova. Return: 0; -EFAULT on an I/O page fault (see
 * iovad_dev_last_fault()) or when iova is not inside this client's mappings. */
IOVAD_EXPORT int iovad_dev_dma_write(struct iovad_dev *d, uint64_t iova, const void *buf,
				     size_t len);
IOVAD_EXPORT int iovad_dev_dma_read(struct iovad_dev *d, uint64_t iova, void *buf, size_t len);
/** The fault record of this thread's last -EFAULT from a DMA call on d. */
IOVAD_EXPORT int iovad_dev_last_fault(const struct iovad_dev *d, struct iovad_fault *ret);

/* ---- batches ---------------------------------------------------------------------- */

typedef void (*iovad_batch_cb)(struct iovad_batch *b, int status, void *arg);

/** Return: 0, -ENOMEM. A batch holds up to the limit negotiated at connect. */
IOVAD_EXPORT int iovad_batch_new(struct iovad *c, struct iovad_batch **ret);
/** Free a batch that is not in flight. NULL-safe. */
IOVAD_EXPORT void iovad_batch_free(struct iovad_batch *b);
/** Empty a completed batch for reuse. Return: 0, -EBUSY while in flight. */
IOVAD_EXPORT int iovad_batch_reset(struct iovad_batch *b);
/* Queue one operation. Return: its index (>= 0); -ENOSPC when full; -EBUSY in flight. */
IOVAD_EXPORT int iovad_batch_link(struct iovad_batch *b, struct iovad_dev *d,
				  struct iovad_iova_state *st, uint64_t phys, size_t offset,
				  size_t size, enum iovad_dma_dir dir, unsigned long attrs);
IOVAD_EXPORT int iovad_batch_sync(struct iovad_batch *b, struct iovad_dev *d,
				  struct iovad_iova_state *st, size_t offset, size_t size);
IOVAD_EXPORT int iovad_batch_unlink(struct iovad_batch *b, struct iovad_dev *d,
				    struct iovad_iova_state *st, size_t offset, size_t size,
				    enum iovad_dma_dir dir, unsigned long attrs);
IOVAD_EXPORT int iovad_batch_destroy(struct iovad_batch *b, struct iovad_dev *d,
				     struct iovad_iova_state *st, size_t mapped_len,
				     enum iovad_dma_dir dir, unsigned long attrs);
IOVAD_EXPORT int iovad_batch_iova_free(struct iovad_batch *b, struct iovad_dev *d,
				       struct iovad_iova_state *st);
/* *ret_dma is written when the batch completes. */
IOVAD_EXPORT int iovad_batch_map(struct iovad_batch *b, struct iovad_dev *d, uint64_t phys,
				 size_t size, enum iovad_dma_dir dir, unsigned long attrs,
				 uint64_t *ret_dma);
IOVAD_EXPORT int iovad_batch_unmap(struct iovad_batch *b, struct iovad_dev *d, uint64_t dma,
				   size_t size, enum iovad_dma_dir dir, unsigned long attrs);
IOVAD_EXPORT size_t iovad_batch_count(const struct iovad_batch *b);
/** Submit in one round trip; cb (may be NULL) runs from iovad_process() or
 * iovad_batch_wait(). Return: 0; -EINVAL (empty), -EBUSY (already in flight), -ENOTCONN. */
IOVAD_EXPORT int iovad_batch_submit(struct iovad_batch *b, iovad_batch_cb cb, void *arg);
/** Wait for a submitted batch. Return: the batch's status (0 when the daemon ran it). */
IOVAD_EXPORT int iovad_batch_wait(struct iovad_batch *b);
/** Status of operation i of a completed batch (0 or -errno; -ECANCELED if not run). */
IOVAD_EXPORT int iovad_batch_op_status(const struct iovad_batch *b, size_t i);
/** IOTLB flushes the completed batch cost (all its syncs together: 0 or 1). */
IOVAD_EXPORT int iovad_batch_flushes(const struct iovad_batch *b);

/** A descriptor that becomes readable when completions may be waiting (edge: a hint). */
IOVAD_EXPORT int iovad_event_fd(struct iovad *c);
/** Read what the daemon sent without blocking and run completed batches' callbacks.
 * Return: callbacks run (>= 0), or -ENOTCONN. */
IOVAD_EXPORT int iovad_process(struct iovad *c);

/** A message for a return value of this library (negative errno). Never NULL. */
IOVAD_EXPORT const char *iovad_strerror(int err);

#ifdef __cplusplus
}
#endif

#endif /* IOVAD_IOVAD_H */
