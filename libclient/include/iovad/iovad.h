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
struct iovad_odp;      /* an on-demand-paging region */

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
 * An rxe device configured with odp = mr whose ODP passed the daemon's check:
 * each ODP region of it is one ODP memory region, and the device faults its
 * pages in itself (the kernel's ODP), as a NIC with ODP does; iovad's fault
 * service and its fault counters see only what is refused. Without it, ODP
 * on rxe is emulated: every device fault goes through iovad's fault service.
 */
#define IOVAD_DEV_ODP_MR 0x20u

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
/**
 * iovad_uses_rings - whether requests travel on shared-memory rings.
 * iovad_connect() sets them up when the daemon offers them (protocol 4) and
 * $IOVAD_RINGS is not 0; otherwise everything goes over the socket. A
 * waiting thread polls the completion ring for $IOVAD_RING_SPIN_US
 * (default 50) microseconds before it sleeps.
 */
IOVAD_EXPORT bool iovad_uses_rings(const struct iovad *c);
/**
 * iovad_session_durable - whether the daemon journals this session
 * (protocol 5, a daemon run with a state directory). A durable session
 * survives the daemon's restart: when the connection breaks, the library
 * reconnects to the same socket by itself (backing off from 1 to 100 ms,
 * for up to $IOVAD_RECONNECT_TIMEOUT_MS, default 30000, 0 never), resumes
 * the session with all its handles and IOVAs as they were, and sends again
 * every request that had no reply, which the daemon runs exactly once.
 * Callers see only a delay, in whatever call was waiting (iovad_process()
 * included). Only if that fails do calls fail with -ENOTCONN, as they always
 * do when the daemon is gone. User-fault events in flight may be lost: the
 * daemon raises the fault again when the device retries.
 */
IOVAD_EXPORT bool iovad_session_durable(const struct iovad *c);
/** iovad_reconnects - how many times the session was resumed on a new connection. */
IOVAD_EXPORT uint64_t iovad_reconnects(const struct iovad *c);

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

/** The device writes buf at iova. Inside an ODP region a missing page is faulted in
 * first (the call returns when the access completed). Return: 0; -EFAULT on an I/O
 * page fault that could not be served (see iovad_dev_last_fault()), including iova
 * not inside this client's mappings or regions; -ETIMEDOUT (a user-handled fault was
 * not answered in time); -EAGAIN (max_inflight accesses already wait for this client's
 * answers to user faults). */
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

/* ---- on-demand paging ------------------------------------------------------------ */

/*
 * An ODP region reserves IOVA for a whole range and maps nothing: pages are
 * mapped when the device first touches them (an I/O page fault the daemon
 * serves, linking a fault-around window and syncing once per batch of
 * faults), and unmapped when the memory changes (iovad_mem_discard) or on
 * request (iovad_odp_invalidate). The device sees the bytes of the memory
 * object, whatever the client wrote there, at the region's IOVA.
 */

/* Rights, as ibv_reg_mr's access flags (LOCAL_READ is always implied). */
#define IOVAD_ACCESS_LOCAL_READ   0x1u
#define IOVAD_ACCESS_DEVICE_READ  0x2u
#define IOVAD_ACCESS_DEVICE_WRITE 0x4u

/* Region flags */
#define IOVAD_ODP_IMPLICIT    0x1u  /* one region over all this client's memory objects */
#define IOVAD_ODP_USER_FAULTS 0x2u  /* this client resolves the region's faults itself */

/* Prefetch advice, as ibv_advise_mr's */
enum iovad_odp_advice {
	IOVAD_ADVISE_PREFETCH = 0,          /* map for device reads */
	IOVAD_ADVISE_PREFETCH_WRITE = 1,    /* map for device reads and writes */
	IOVAD_ADVISE_PREFETCH_NO_FAULT = 2, /* map only pages already resident */
};
#define IOVAD_ADVISE_FLAG_FLUSH 0x1u  /* wait until the pages are mapped */

/**
 * iovad_odp_reg - reserve IOVA for [offset, offset + len) of mem on d and map nothing.
 * With IOVAD_ODP_IMPLICIT, mem is NULL, offset 0, and len 0 (the daemon's
 * implicit size) or the size wanted: every memory object of this client,
 * present and future, appears at iovad_odp_mem_iova().
 * Return: 0; -EINVAL (bad flags or access, misaligned or out of the object),
 * -EOPNOTSUPP (identity domain), -ENOSPC (no IOVA space), -EDQUOT (too many
 * regions), -EBADF (mem not this connection's), -ENOTCONN.
 */
IOVAD_EXPORT int iovad_odp_reg(struct iovad_dev *d, struct iovad_mem *mem, uint64_t offset,
			       size_t len, uint32_t access, uint32_t flags,
			       struct iovad_odp **ret);
/** iovad_odp_dereg - unmap everything and release the IOVA. Return: 0, -ENOTCONN. NULL-safe. */
IOVAD_EXPORT int iovad_odp_dereg(struct iovad_odp *odp);
/** The region's first IOVA. */
IOVAD_EXPORT uint64_t iovad_odp_iova(const struct iovad_odp *odp);
IOVAD_EXPORT size_t iovad_odp_size(const struct iovad_odp *odp);
/** The IOVA of mem's byte 0 in the region (implicit: any object; explicit: its own object,
 * where offset 0 of the region is mem's byte offset). Return: the IOVA; 0 with errno
 * EINVAL when mem is not in the region. */
IOVAD_EXPORT uint64_t iovad_odp_mem_iova(const struct iovad_odp *odp,
					 const struct iovad_mem *mem);

/**
 * iovad_odp_advise - prefetch [offset, offset + len) of the region, as ibv_advise_mr.
 * Asynchronous unless IOVAD_ADVISE_FLAG_FLUSH. Return: 0; -EINVAL (range, advice,
 * flags); -EFAULT (flush: part of the range has no backing or lacks the right);
 * -ENOTCONN.
 */
IOVAD_EXPORT int iovad_odp_advise(struct iovad_odp *odp, enum iovad_odp_advice advice,
				  uint64_t offset, size_t len, uint32_t flags);
/** iovad_odp_invalidate - unmap [offset, offset + len) with one gathered flush.
 * Return: 0; -EINVAL (outside the region); -ENOTCONN. */
IOVAD_EXPORT int iovad_odp_invalidate(struct iovad_odp *odp, uint64_t offset, size_t len);
/** iovad_mem_discard - punch a hole in [offset, offset + len) of mem (page-aligned) and
 * invalidate every region over it before returning; the bytes read back as zeros.
 * Return: 0; -EINVAL; -ENOTCONN. */
IOVAD_EXPORT int iovad_mem_discard(struct iovad_mem *mem, uint64_t offset, size_t len);

/* Counters under mlx5's names, and the fault-service latency. */
struct iovad_odp_stats {
	uint32_t size;                       /* set by the library to what it filled */
	uint32_t reserved;
	uint64_t page_faults;                /* pages mapped by faults */
	uint64_t page_faults_handled;        /* fault events served */
	uint64_t page_invalidations;         /* pages unmapped by invalidations */
	uint64_t page_invalidations_handled; /* invalidation events */
	uint64_t page_prefetch;              /* pages mapped by prefetch */
	uint64_t fault_errors;               /* faults answered -EFAULT (or failed by a handler) */
	uint64_t fault_retries;              /* faults that raced an invalidation and retried */
	uint64_t perm_upgrades;              /* read-only pages made writable in place */
	uint64_t syncs;                      /* dma_iova_sync calls of the fault service */
	uint64_t flushes;                    /* IOTLB flushes of the fault service */
	uint64_t user_faults;                /* faults delivered to a user handler */
	uint64_t user_fault_timeouts;
	uint64_t mapped_bytes;               /* now */
	uint64_t fault_count;                /* faults timed */
	uint64_t fault_p50_ns;               /* fault to resume, median (bucket bound) */
	uint64_t fault_p99_ns;
};

/** iovad_odp_stats - one region's counters; with odp NULL, use iovad_odp_stats_total().
 * Return: 0, -ENOTCONN. */
IOVAD_EXPORT int iovad_odp_stats(struct iovad_odp *odp, struct iovad_odp_stats *ret);
/** This connection's totals over every region it has had. Return: 0, -ENOTCONN. */
IOVAD_EXPORT int iovad_odp_stats_total(struct iovad *c, struct iovad_odp_stats *ret);

/* A fault of an IOVAD_ODP_USER_FAULTS region, waiting for this client. */
struct iovad_odp_fault {
	uint64_t id;
	struct iovad_odp *odp;
	uint64_t offset;   /* region offset of the window to fill, page-aligned */
	size_t len;
	uint32_t access;   /* 1 read, 2 write */
	uint64_t iova;     /* the access that faulted */
};

typedef void (*iovad_odp_fault_cb)(const struct iovad_odp_fault *f, void *arg);

/**
 * iovad_odp_set_fault_handler - run cb for each fault of odp. cb runs with no lock held,
 * from iovad_process() or from any thread of this connection that is waiting for a
 * reply; it (or anyone later) answers with iovad_odp_fault_complete(). Without a
 * handler, faults queue for iovad_odp_fault_next(). Return: 0, -EINVAL (not a
 * user-faults region).
 */
IOVAD_EXPORT int iovad_odp_set_fault_handler(struct iovad_odp *odp, iovad_odp_fault_cb cb,
					     void *arg);
/** Take the oldest queued fault (poll iovad_event_fd() and call iovad_process() first).
 * Return: 0, -EAGAIN (none), -ENOTCONN. */
IOVAD_EXPORT int iovad_odp_fault_next(struct iovad *c, struct iovad_odp_fault *ret);
/** Answer a fault: 0 = resolved (the data is in place: the access resumes), -errno = failed
 * (the access gets -EFAULT). Return: 0; -ENOENT (unknown, or already timed out); -ENOTCONN. */
IOVAD_EXPORT int iovad_odp_fault_complete(struct iovad *c, uint64_t fault_id, int status);

/**
 * iovad_iova_rkey - the rkey of the RDMA memory region that covers iova, for a remote peer
 * of the daemon's rdma_cm listener (rdma_listen) to RDMA READ/WRITE at (iova, rkey). Only
 * on a device with backend = rxe, and only for this client's own linked and synced ranges
 * (or faulted-in ODP windows): the MR exists from sync until unlink. Since libiovad 1.2
 * (protocol version 3). Return: 0; -ENOENT (no MR of this client holds iova); -EOPNOTSUPP
 * (not an rxe device, or a daemon older than protocol 3); -EBADF, -ENOTCONN.
 */
IOVAD_EXPORT int iovad_iova_rkey(struct iovad_dev *d, uint64_t iova, uint32_t *rkey);

/* What a remote peer needs to reach an MR of this client (iovad_iova_peer_key()). */
struct iovad_peer_key {
	uint64_t mr_iova; /* the MR that covers the IOVA asked about: [mr_iova, + mr_len) */
	uint64_t mr_len;
	uint32_t rkey;
	uint32_t reserved;
	uint8_t token[16]; /* this session's peer token: a secret, as the session's memory is */
};

/**
 * iovad_iova_peer_key - iovad_iova_rkey with the MR's extent and this session's peer
 * token. Each session's MRs live in a protection domain of their own; a remote peer of
 * rdma_listen presents the token when it connects (struct proto_peer_hello as the
 * private data of rdma_connect: magic "IOVP", 4 reserved bytes, the 16 token bytes) and
 * is then attached to this session: it reaches this session's MRs, and no other
 * client's, whatever rkey it tries. A connect with no live session's token is rejected.
 * The token, like the rkeys, changes when the daemon restarts. Since libiovad 1.5
 * (protocol version 6). Return: as iovad_iova_rkey; -EOPNOTSUPP also from a daemon older
 * than protocol 6.
 */
IOVAD_EXPORT int iovad_iova_peer_key(struct iovad_dev *d, uint64_t iova,
				     struct iovad_peer_key *ret);

/** A message for a return value of this library (negative errno). Never NULL. */
IOVAD_EXPORT const char *iovad_strerror(int err);

#ifdef __cplusplus
}
#endif

#endif /* IOVAD_IOVAD_H */
