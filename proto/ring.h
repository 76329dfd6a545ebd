/* SPDX-License-Identifier: MIT */
/*
 * ring.h - the shared-memory rings of protocol version 4 (RING_SETUP).
 *
 * One memfd per session, created, allocated and sealed by the client:
 *
 *   [0, 4 KiB)                     struct proto_ring_hdr
 *   [4 KiB, 4 KiB + sq_size)       submission ring: request frames, client -> daemon
 *   [.., .. + cq_size)             completion ring: replies and events, daemon -> client
 *
 * Each ring is a byte ring of whole protocol frames, exactly as they would
 * travel on the socket, each starting at an 8-byte aligned position. Both
 * sides map each ring's data twice, back to back (proto_ring_map), so a
 * frame that wraps is still contiguous in memory: nobody splits or pads.
 *
 * Positions are free-running 32-bit byte counters; used = tail - head in
 * unsigned arithmetic, and a ring is at most 2^31 bytes. Each side owns the
 * counters on one cache line and only reads the other's, as io_uring's
 * SQ/CQ heads and tails are owned (liburing's barrier.h has the same
 * acquire/release pairs):
 *
 *   client line: sq_tail (frames submitted), cq_head (bytes consumed),
 *                client_flags, client_cpu
 *   daemon line: sq_head (bytes consumed), cq_tail (frames completed),
 *                daemon_flags, daemon_cpu
 *
 * The *_cpu fields say where each side last ran, so a waiter on the same
 * CPU as the side it waits for yields instead of spinning
 * (proto_ring_should_yield).
 *
 * Doorbells, each an eventfd, with the flag that says whether to ring it:
 *   - PROTO_RING_DAEMON_SLEEPING (daemon_flags): the daemon stopped polling
 *     this ring. After the client moves sq_tail it issues a full fence,
 *     reads the flags and, if this one is set, writes the daemon's eventfd.
 *     After it moves cq_head it does the same if PROTO_RING_DAEMON_CQ_WAIT
 *     is set as well: the daemon went to sleep waiting for room for replies.
 *   - PROTO_RING_CLIENT_WAKE (client_flags): nobody in the client is
 *     polling the completion ring. After the daemon moves cq_tail or sq_head
 *     it issues a full fence, reads the flag and, if set, writes the
 *     client's eventfd.
 * Whoever goes to sleep sets its flag, issues a full fence and checks the
 * ring once more before it sleeps (the store-fence-load pairing on both
 * sides is what makes a lost wakeup impossible).
 *
 * The daemon trusts nothing here: it keeps its own copies of sq_head and
 * cq_tail, copies every frame out of the ring before it decodes it, and a
 * counter that makes no sense (more used than the ring holds, a frame
 * longer than what was submitted) ends that session only.
 */
#ifndef IOVAD_PROTO_RING_H
#define IOVAD_PROTO_RING_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sched.h>

#define PROTO_RING_MAGIC     0x47524f49u  /* "IORG" */
#define PROTO_RING_HDR_SIZE  4096u
#define PROTO_RING_SIZE_MIN  (8u << 10)   /* two PROTO_FRAME_MIN frames */
#define PROTO_RING_SIZE_MAX  (64u << 20)
#define PROTO_RING_DEFAULT   (256u << 10)
#define PROTO_RING_ALIGN     8u

/* daemon_flags */
#define PROTO_RING_DAEMON_SLEEPING 0x1u
#define PROTO_RING_DAEMON_CQ_WAIT  0x2u  /* ...and waits for room in the completion ring */
/* client_flags */
#define PROTO_RING_CLIENT_WAKE     0x1u

struct proto_ring_hdr {
	/* line 0: written by the client before RING_SETUP; informative only */
	uint32_t magic;
	uint32_t sq_size;
	uint32_t cq_size;
	uint32_t reserved0[13];
	/* line 1: written by the client only */
	uint32_t sq_tail;
	uint32_t cq_head;
	uint32_t client_flags;
	uint32_t client_cpu;      /* 1 + the CPU it last submitted from; 0: unknown */
	uint32_t reserved1[12];
	/* line 2: written by the daemon only */
	uint32_t sq_head;
	uint32_t cq_tail;
	uint32_t daemon_flags;
	uint32_t daemon_cpu;      /* 1 + the CPU it last published from; 0: unknown */
	uint32_t reserved2[12];
};

_Static_assert(sizeof(struct proto_ring_hdr) == 192, "ring header size");
_Static_assert(offsetof(struct proto_ring_hdr, sq_tail) == 64, "client line");
_Static_assert(offsetof(struct proto_ring_hdr, sq_head) == 128, "daemon line");

static inline bool proto_ring_size_ok(uint32_t size)
{
	return size >= PROTO_RING_SIZE_MIN && size <= PROTO_RING_SIZE_MAX && !(size & (size - 1));
}

/* Bytes a frame of len bytes takes in a ring. */
static inline uint32_t proto_ring_rec(uint32_t len)
{
	return (len + PROTO_RING_ALIGN - 1) & ~(PROTO_RING_ALIGN - 1);
}

static inline uint32_t proto_ring_load(const uint32_t *p)
{
	return __atomic_load_n(p, __ATOMIC_ACQUIRE);
}

static inline uint32_t proto_ring_peek(const uint32_t *p)
{
	return __atomic_load_n(p, __ATOMIC_RELAXED);
}

static inline void proto_ring_store(uint32_t *p, uint32_t v)
{
	__atomic_store_n(p, v, __ATOMIC_RELEASE);
}

/* The fence between "I published / I set my sleep flag" and "does the other side sleep / have work". */
static inline void proto_ring_fence(void)
{
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
}

/* A waiter that has seen nothing for this long yields its CPU between looks. */
#define PROTO_RING_SPIN_YIELD_NS 2000u

/* 1 + the calling thread's CPU, for the *_cpu fields (0 if the kernel will not say). */
static inline uint32_t proto_ring_my_cpu(void)
{
	int cpu = sched_getcpu();

	return cpu < 0 ? 0 : (uint32_t)cpu + 1;
}

/*
 * Waiting for the other side, as adaptive mutexes wait for an owner: spin
 * only while it runs on another CPU. When it last ran on ours it cannot
 * make progress while we spin, so yield at once; and after
 * PROTO_RING_SPIN_YIELD_NS yield anyway, in case it moved.
 */
static inline bool proto_ring_should_yield(uint32_t peer_cpu, uint32_t my_cpu, uint64_t waited_ns)
{
	return waited_ns >= PROTO_RING_SPIN_YIELD_NS || (peer_cpu && peer_cpu == my_cpu);
}

static inline void proto_ring_cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#elif defined(__aarch64__)
	__asm__ __volatile__("yield" ::: "memory");
#endif
}

/* One process's view of a session's rings. */
struct proto_ring_map {
	struct proto_ring_hdr *hdr;
	uint8_t *sq;          /* sq_size bytes, then the same bytes again */
	uint8_t *cq;          /* cq_size bytes, then the same bytes again */
	uint32_t sq_size;
	uint32_t cq_size;
	void *area;           /* the whole reservation */
	size_t area_len;
};

/* Bytes of the memfd for these ring sizes. */
static inline uint64_t proto_ring_file_size(uint32_t sq_size, uint32_t cq_size)
{
	return (uint64_t)PROTO_RING_HDR_SIZE + sq_size + cq_size;
}

/*
 * proto_ring_create - the client's side: a memfd of the right size, its
 * pages allocated (fallocate), and sealed against shrinking and growing.
 * The daemon maps it, so nobody may change its size: it refuses a file
 * that is not sealed (-EPERM). It refuses one with holes too (-EINVAL): the
 * rings' memory is the client's, charged to the client when it is
 * allocated, and a page first touched in the middle of a round trip costs
 * a page fault on each side (measured: p99 of a ring round trip 5.6 us
 * instead of 2.6 with 64 clients, while the rings filled for the first
 * time). An allocation that fails fails here, at setup, where the socket
 * can take over, not as a SIGBUS halfway through.
 * Return: the fd, or -errno.
 */
int proto_ring_create(uint32_t sq_size, uint32_t cq_size);

/*
 * proto_ring_map - map fd's rings, each data area twice in a row, with the
 * page tables filled in (MAP_POPULATE): no minor fault on the fast path.
 * Return: 0, -EINVAL (sizes), -EOPNOTSUPP (pages larger than the header), -errno.
 */
int proto_ring_map(int fd, uint32_t sq_size, uint32_t cq_size, struct proto_ring_map *ret);
void proto_ring_unmap(struct proto_ring_map *m);

#endif /* IOVAD_PROTO_RING_H */
