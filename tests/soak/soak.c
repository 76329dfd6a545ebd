// SPDX-License-Identifier: MIT
/*
 * soak.c - iovad-soak: the real daemon under many clients for a while.
 *
 * It starts the built iovad on a temporary socket with a configuration of
 * tight per-client limits, connects N clients (default 1000) and lets a few
 * driver threads run them round-robin for T seconds, each client a small
 * state machine over its own memory object:
 *
 *   pages  0..15  four IOVA states of 16 KiB: try_alloc, link + sync (in
 *                 batches, sometimes a sync of its own), unlink half, link it
 *                 again, destroy, a batch that syncs every state at once
 *   pages 16..23  two streaming mappings of 16 KiB: map, unmap
 *   pages 24..31  an ODP region (a quarter of the clients resolve its faults
 *                 themselves): device accesses that fault, invalidate,
 *                 discard (punch a hole), deregister, register again
 *
 * plus device DMA through all of them, requests the daemon must refuse, and
 * disconnects without cleaning up (the daemon tears the session down),
 * followed by a fresh session. Every result is checked against what the
 * model expects, every byte the device writes is read back through the
 * client's own mapping of the memory and every byte the device reads was
 * written there by the client. Batches are submitted asynchronously on all
 * of a thread's clients before any is waited for, so the daemon sees many
 * connections' requests in each loop iteration.
 *
 * The daemon's memory is sampled every second from /proc/PID/status. At the
 * end every client disconnects (half cleanly, half leaving everything), and
 * the daemon's counters must account for each session, each leftover and
 * each mapping. Exit status 0 only if nothing went wrong.
 *
 *   iovad-soak [--clients N] [--seconds T] [--threads K] [--io uring|epoll]
 *              [--seed S] [--daemon PATH] [--no-rss-check] [--no-rss-return-check]
 *
 * IOVAD_TEST_SEED=S is the same as --seed S; without either the seed is
 * fresh, and printed.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "proto.h"
#include <iovad/iovad.h>

#ifndef IOVAD_DAEMON_PATH
#define IOVAD_DAEMON_PATH "iovad"
#endif

#define PAGE 4096u
#define NSTATES 4
#define NMAPS 2
#define CHUNK (4 * PAGE)             /* one state's or one mapping's bytes */
#define MAP_OFF (NSTATES * CHUNK)    /* first byte of the mappings' pages */
#define ODP_OFF (MAP_OFF + NMAPS * CHUNK)
#define ODP_LEN (8 * PAGE)
#define MEM_SIZE (ODP_OFF + ODP_LEN) /* 128 KiB per client */
#define MAX_ERRORS_SHOWN 40

/*
 * The daemon's RSS after the load may exceed the baseline by this much.
 * When its sessions are gone the daemon has freed their memory, but glibc
 * gives back only the top of its heap: the freed chunks below it stay
 * resident, between the small blocks that live on (the domains' allocators
 * and tables, libevent's per-descriptor arrays). Measured with 1000 clients
 * on epoll: +10.7 MiB after the load, of which 0.65 MiB is in use
 * (malloc_stats), and malloc_trim(0) gets back 2.4 MiB. So what stays
 * follows the peak number of sessions (about 11 KiB each), not the time or
 * the operations done; 16 MiB covers 1000 clients with room for noise. The
 * io_uring transport's two 64 KiB buffers per connection stay resident the
 * same way (+85 MiB after 1000 clients) unless the heap is trimmed when the
 * last client leaves: run_soak in scripts/test.sh says where that stands.
 */
#define RSS_AFTER_MARGIN_KB (16 * 1024)
/*
 * Growth during the load: the daemon's own memory (RSS less the clients'
 * memory objects and rings mapped into it) at its peak in the last quarter
 * of the run may exceed its peak in the second quarter by this much plus
 * 20%. The first quarter is left out: 1000 clients connecting grow it by
 * design. On io_uring the heap keeps settling for a while after that, as
 * the per-connection buffers of sessions that left are freed only when the
 * kernel has cancelled their I/O: +12 MiB of 115 between the second and
 * last quarters of a 12 s run, a plateau near 140 MiB in a 60 s one. A leak
 * of a hundred bytes per operation grows it by 20 MiB a second; a leak per
 * session shows in the daemon's counters, LeakSanitizer (soak_smoke in the
 * ASan build, fuzz_session) and valgrind instead.
 */
#define RSS_GROWTH_MARGIN_KB (8 * 1024)

enum { S_FREE, S_LINKED, S_HALF };
enum { M_FREE, M_MAPPED };

/* What a client's pending asynchronous batch does, checked in pass 2. */
enum batch_kind {
	B_NONE,
	B_LINK,       /* state: link both halves + sync */
	B_LINK_NOSYNC,/* state: link both halves; then a device read must fault; then sync */
	B_UNLINK,     /* state: unlink the second half */
	B_RELINK,     /* state: link the second half + sync */
	B_DESTROY,    /* state: destroy */
	B_SYNCALL,    /* every linked state: sync all of it */
	B_MAP,        /* mapping: map */
	B_UNMAP,      /* mapping: unmap; then a device read there must fault */
	B_BADLINK,    /* state: link phys outside this client's memory: -EFAULT */
	B_BADUNMAP,   /* unmap of a dma never mapped: -ENOENT */
};

struct client {
	int id;
	uint64_t rng;
	struct iovad *c;
	struct iovad_dev *dev;
	struct iovad_mem *mem;
	struct iovad_batch *b;
	uint8_t *va;
	uint64_t phys;
	bool strict;          /* strict flush: unlinked means unreachable at once */
	bool user_faults;     /* its ODP region's faults are its own to resolve */
	int st[NSTATES];
	struct iovad_iova_state ios[NSTATES];
	int mp[NMAPS];
	uint64_t dma[NMAPS];
	struct iovad_odp *odp;
	/* the batch in flight */
	enum batch_kind bk;
	int bslot;
	int bops;
	uint64_t user_faults_done;
};

struct totals {
	atomic_uint_fast64_t ops;        /* operations sent, a batch's one by one */
	atomic_uint_fast64_t checks;     /* results compared with the model's */
	atomic_uint_fast64_t errors;
	atomic_uint_fast64_t dma_bytes;
	atomic_uint_fast64_t odp_faults; /* device accesses that had to be faulted in */
	atomic_uint_fast64_t user_faults;
	atomic_uint_fast64_t connects;
	atomic_uint_fast64_t dirty;      /* disconnects that left everything to the daemon */
	atomic_uint_fast64_t clean;
	atomic_uint_fast64_t left_states, left_maps, left_mems;
};

static struct totals tot;
static atomic_bool stop_load;

static struct {
	int clients;
	int seconds;
	int threads;
	const char *io;
	const char *daemon;
	uint64_t seed;
	bool rss_check;        /* judge the daemon's RSS at all */
	bool rss_return_check; /* ...and its return to the baseline after the load */
} opt = { 1000, 60, 4, "uring", IOVAD_DAEMON_PATH, 0, true, true };

static struct {
	pid_t pid;
	char dir[64];
	char sock[128];
	char log[128];
} dmn;

static const char *dev_names[] = { "sim0", "sim1", "sim-lazy0" };

/* STATUS probes: each is a session of its own. */
static uint64_t nprobes;

/* ---- results ------------------------------------------------------------------ */

static void __attribute__((format(printf, 2, 3))) fail(const struct client *k, const char *fmt,
							 ...)
{
	uint64_t n = atomic_fetch_add(&tot.errors, 1);
	va_list ap;

	if (n >= MAX_ERRORS_SHOWN)
		return;
	flockfile(stderr);
	fprintf(stderr, "soak: client %d (session %" PRIu64 "): ", k ? k->id : -1,
		k && k->c ? iovad_session_id(k->c) : 0);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	funlockfile(stderr);
}

/* One operation's result against the model's; false (and counted) when they differ. */
static bool expect(struct client *k, const char *op, int got, int want)
{
	atomic_fetch_add(&tot.checks, 1);
	if (got == want)
		return true;
	fail(k, "%s: expected %d (%s), got %d (%s)", op, want, want ? iovad_strerror(want) : "ok",
	     got, got ? iovad_strerror(got) : "ok");
	return false;
}

static uint64_t rnd(struct client *k)
{
	/* splitmix64: every client its own reproducible stream */
	uint64_t z = (k->rng += 0x9e3779b97f4a7c15u);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
	return z ^ (z >> 31);
}

static uint32_t below(struct client *k, uint32_t n)
{
	return (uint32_t)(rnd(k) % n);
}

static void fill_random(struct client *k, uint8_t *p, size_t len)
{
	for (size_t i = 0; i < len; i += 8) {
		uint64_t v = rnd(k);

		memcpy(p + i, &v, len - i < 8 ? len - i : 8);
	}
}

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* ---- device DMA, checked through the client's mapping --------------------------- */

/*
 * The device writes random bytes at iova (the client's byte mem_off), which
 * must appear in the client's mapping; then the client writes other bytes
 * there, which the device must read back.
 */
static void dma_check(struct client *k, const char *what, uint64_t iova, size_t mem_off,
		      size_t len)
{
	uint8_t out[2 * PAGE], in[2 * PAGE];
	char op[64];

	fill_random(k, out, len);
	snprintf(op, sizeof(op), "%s dma_write", what);
	atomic_fetch_add(&tot.ops, 2);
	if (!expect(k, op, iovad_dev_dma_write(k->dev, iova, out, len), 0))
		return;
	if (memcmp(k->va + mem_off, out, len)) {
		fail(k, "%s: %zu bytes the device wrote at %#" PRIx64 " are not in the client's "
		     "memory at +%#zx", what, len, iova, mem_off);
		return;
	}
	fill_random(k, k->va + mem_off, len);
	snprintf(op, sizeof(op), "%s dma_read", what);
	if (!expect(k, op, iovad_dev_dma_read(k->dev, iova, in, len), 0))
		return;
	if (memcmp(in, k->va + mem_off, len))
		fail(k, "%s: the device read at %#" PRIx64 " other bytes than the client's memory "
		     "at +%#zx holds", what, iova, mem_off);
	atomic_fetch_add(&tot.dma_bytes, 2 * len);
}

/* A device read where nothing of this client's is reachable must fault. */
static void dma_must_fault(struct client *k, const char *what, uint64_t iova)
{
	uint8_t b[64];

	atomic_fetch_add(&tot.ops, 1);
	expect(k, what, iovad_dev_dma_read(k->dev, iova, b, sizeof(b)), -EFAULT);
}

/* A random access inside [0, span): offset and length, at most two pages. */
static void pick_range(struct client *k, size_t span, size_t *off, size_t *len)
{
	*len = 1 + below(k, 2 * PAGE);
	if (*len > span)
		*len = span;
	*off = below(k, (uint32_t)(span - *len + 1));
}

/* ---- sessions --------------------------------------------------------------------- */

static void odp_fault_cb(const struct iovad_odp_fault *f, void *arg)
{
	struct client *k = arg;
	int r;

	/* The data is the client's memory itself: it is in place, say so. */
	if (f->offset + f->len > ODP_LEN || !f->len)
		fail(k, "user fault window [%#" PRIx64 ", +%#zx) outside the region", f->offset,
		     f->len);
	r = iovad_odp_fault_complete(k->c, f->id, 0);
	atomic_fetch_add(&tot.ops, 1);
	expect(k, "odp_fault_complete", r, 0);
	k->user_faults_done++;
	atomic_fetch_add(&tot.user_faults, 1);
}

static bool client_connect(struct client *k)
{
	int r;

	memset(k->st, 0, sizeof(k->st));
	memset(k->ios, 0, sizeof(k->ios));
	memset(k->mp, 0, sizeof(k->mp));
	k->odp = NULL;
	k->bk = B_NONE;
	atomic_fetch_add(&tot.ops, 3); /* HELLO, DEV_OPEN, MEM_IMPORT */
	r = iovad_connect(dmn.sock, &k->c);
	if (!expect(k, "connect", r, 0)) {
		k->c = NULL;
		return false;
	}
	atomic_fetch_add(&tot.connects, 1);
	r = iovad_dev_open(k->c, dev_names[k->id % 3], &k->dev);
	if (!expect(k, "dev_open", r, 0))
		goto err;
	r = iovad_mem_alloc(k->c, MEM_SIZE, &k->mem);
	if (!expect(k, "mem_alloc", r, 0))
		goto err;
	r = iovad_batch_new(k->c, &k->b);
	if (!expect(k, "batch_new", r, 0))
		goto err;
	k->va = iovad_mem_addr(k->mem);
	k->phys = iovad_mem_phys(k->mem);
	k->strict = k->id % 3 != 2;
	k->user_faults = k->id % 4 == 3;
	return true;
err:
	iovad_disconnect(k->c);
	k->c = NULL;
	return false;
}

/* Leave everything to the daemon, which must tear it down and count it. */
static void client_drop(struct client *k)
{
	uint64_t states = 0, maps = 0;

	for (int i = 0; i < NSTATES; i++)
		states += k->st[i] != S_FREE;
	for (int i = 0; i < NMAPS; i++)
		maps += k->mp[i] != M_FREE;
	atomic_fetch_add(&tot.left_states, states);
	atomic_fetch_add(&tot.left_maps, maps);
	atomic_fetch_add(&tot.left_mems, 1);
	atomic_fetch_add(&tot.dirty, 1);
	iovad_disconnect(k->c);
	k->c = NULL;
}

/* Undo everything, in one batch where possible, then disconnect: no teardown work left. */
static void client_close(struct client *k)
{
	int n = 0, r;

	iovad_batch_reset(k->b);
	for (int i = 0; i < NSTATES; i++)
		if (k->st[i] != S_FREE)
			n += iovad_batch_destroy(k->b, k->dev, &k->ios[i],
						 k->st[i] == S_LINKED ? CHUNK : CHUNK / 2,
						 IOVAD_DMA_BIDIRECTIONAL, 0) >= 0;
	for (int i = 0; i < NMAPS; i++)
		if (k->mp[i] == M_MAPPED)
			n += iovad_batch_unmap(k->b, k->dev, k->dma[i], CHUNK,
					       IOVAD_DMA_BIDIRECTIONAL, 0) >= 0;
	if (n) {
		atomic_fetch_add(&tot.ops, (unsigned int)n);
		r = iovad_batch_submit(k->b, NULL, NULL);
		if (expect(k, "close: batch_submit", r, 0) &&
		    expect(k, "close: batch", iovad_batch_wait(k->b), 0))
			for (int i = 0; i < n; i++)
				expect(k, "close: destroy/unmap", iovad_batch_op_status(k->b, i),
				       0);
	}
	if (k->odp) {
		atomic_fetch_add(&tot.ops, 1);
		expect(k, "close: odp_dereg", iovad_odp_dereg(k->odp), 0);
	}
	atomic_fetch_add(&tot.ops, 2);
	iovad_mem_free(k->mem);
	iovad_dev_close(k->dev);
	iovad_batch_free(k->b);
	atomic_fetch_add(&tot.clean, 1);
	iovad_disconnect(k->c);
	k->c = NULL;
}

/* ---- pass 1: submit a batch, or leave the client for a synchronous step ------------ */

static int find(const int *v, int n, int want, struct client *k)
{
	int start = (int)below(k, (uint32_t)n);

	for (int i = 0; i < n; i++)
		if (v[(start + i) % n] == want)
			return (start + i) % n;
	return -1;
}

static int find_linked(struct client *k)
{
	int start = (int)below(k, NSTATES);

	for (int i = 0; i < NSTATES; i++)
		if (k->st[(start + i) % NSTATES] != S_FREE)
			return (start + i) % NSTATES;
	return -1;
}

static uint64_t state_phys(const struct client *k, int i)
{
	return k->phys + (uint64_t)i * CHUNK;
}

static void batch_go(struct client *k, enum batch_kind bk, int slot, int ops)
{
	int r;

	k->bk = bk;
	k->bslot = slot;
	k->bops = ops;
	atomic_fetch_add(&tot.ops, (unsigned int)ops);
	r = iovad_batch_submit(k->b, NULL, NULL);
	if (!expect(k, "batch_submit", r, 0))
		k->bk = B_NONE;
}

/* Build and submit one asynchronous batch; false if this step is not a batch. */
static bool step_submit(struct client *k)
{
	const int D = IOVAD_DMA_BIDIRECTIONAL;
	uint32_t pick = below(k, 100);
	int i, n = 0;

	iovad_batch_reset(k->b);
	if (pick < 14 && (i = find(k->st, NSTATES, S_FREE, k)) >= 0) {
		bool nosync = below(k, 4) == 0 && k->strict;

		atomic_fetch_add(&tot.ops, 1);
		if (!iovad_iova_try_alloc(k->dev, &k->ios[i], state_phys(k, i), CHUNK)) {
			fail(k, "iova_try_alloc: %s", iovad_strerror(-errno));
			return true;
		}
		n += iovad_batch_link(k->b, k->dev, &k->ios[i], state_phys(k, i), 0, CHUNK / 2, D,
				      0) >= 0;
		n += iovad_batch_link(k->b, k->dev, &k->ios[i], state_phys(k, i) + CHUNK / 2,
				      CHUNK / 2, CHUNK / 2, D, 0) >= 0;
		if (!nosync)
			n += iovad_batch_sync(k->b, k->dev, &k->ios[i], 0, CHUNK) >= 0;
		batch_go(k, nosync ? B_LINK_NOSYNC : B_LINK, i, n);
		return true;
	}
	if (pick < 22 && (i = find(k->st, NSTATES, S_LINKED, k)) >= 0) {
		n += iovad_batch_unlink(k->b, k->dev, &k->ios[i], CHUNK / 2, CHUNK / 2, D, 0) >= 0;
		batch_go(k, B_UNLINK, i, n);
		return true;
	}
	if (pick < 30 && (i = find(k->st, NSTATES, S_HALF, k)) >= 0) {
		n += iovad_batch_link(k->b, k->dev, &k->ios[i], state_phys(k, i) + CHUNK / 2,
				      CHUNK / 2, CHUNK / 2, D, 0) >= 0;
		n += iovad_batch_sync(k->b, k->dev, &k->ios[i], CHUNK / 2, CHUNK / 2) >= 0;
		batch_go(k, B_RELINK, i, n);
		return true;
	}
	if (pick < 38 && (i = find_linked(k)) >= 0) {
		n += iovad_batch_destroy(k->b, k->dev, &k->ios[i],
					 k->st[i] == S_LINKED ? CHUNK : CHUNK / 2, D, 0) >= 0;
		batch_go(k, B_DESTROY, i, n);
		return true;
	}
	if (pick < 42 && find(k->st, NSTATES, S_LINKED, k) >= 0) {
		for (i = 0; i < NSTATES; i++)
			if (k->st[i] == S_LINKED)
				n += iovad_batch_sync(k->b, k->dev, &k->ios[i], 0, CHUNK) >= 0;
		batch_go(k, B_SYNCALL, -1, n);
		return true;
	}
	if (pick < 50 && (i = find(k->mp, NMAPS, M_FREE, k)) >= 0) {
		n += iovad_batch_map(k->b, k->dev, k->phys + MAP_OFF + (uint64_t)i * CHUNK, CHUNK,
				     D, 0, &k->dma[i]) >= 0;
		batch_go(k, B_MAP, i, n);
		return true;
	}
	if (pick < 56 && (i = find(k->mp, NMAPS, M_MAPPED, k)) >= 0) {
		n += iovad_batch_unmap(k->b, k->dev, k->dma[i], CHUNK, D, 0) >= 0;
		batch_go(k, B_UNMAP, i, n);
		return true;
	}
	if (pick < 58 && (i = find(k->st, NSTATES, S_LINKED, k)) >= 0) {
		/* The first page of another client's memory, or past the end of ours. */
		n += iovad_batch_link(k->b, k->dev, &k->ios[i], k->phys + MEM_SIZE, 0, PAGE, D,
				      0) >= 0;
		batch_go(k, B_BADLINK, i, n);
		return true;
	}
	if (pick < 59) {
		/* IOVA 0 is never handed out, so no mapping of this client's starts there. */
		n += iovad_batch_unmap(k->b, k->dev, 0, PAGE, D, 0) >= 0;
		batch_go(k, B_BADUNMAP, -1, n);
		return true;
	}
	return false;
}

/* ---- pass 2: check a batch, or run one synchronous step ---------------------------------- */

static void step_complete(struct client *k)
{
	enum batch_kind bk = k->bk;
	int i = k->bslot, r;

	k->bk = B_NONE;
	r = iovad_batch_wait(k->b);
	if (!expect(k, "batch", r, 0))
		return;
	if (iovad_batch_count(k->b) != (size_t)k->bops) {
		fail(k, "batch: %zu ops queued, %d meant", iovad_batch_count(k->b), k->bops);
		return;
	}
	switch (bk) {
	case B_LINK:
	case B_LINK_NOSYNC:
		for (int j = 0; j < k->bops; j++)
			if (!expect(k, j == 2 ? "sync" : "link", iovad_batch_op_status(k->b, j), 0))
				return;
		k->st[i] = S_LINKED;
		if (bk == B_LINK_NOSYNC) {
			/* Linked, not synced: not visible to the device yet (visibility = sync). */
			dma_must_fault(k, "dma_read of linked, unsynced IOVA", k->ios[i].addr);
			atomic_fetch_add(&tot.ops, 1);
			expect(k, "sync", iovad_iova_sync(k->dev, &k->ios[i], 0, CHUNK), 0);
		}
		/* The last page: the second link record's. */
		dma_check(k, "state", k->ios[i].addr + CHUNK - PAGE,
			  (size_t)i * CHUNK + CHUNK - PAGE, PAGE);
		break;
	case B_UNLINK:
		if (!expect(k, "unlink", iovad_batch_op_status(k->b, 0), 0))
			return;
		k->st[i] = S_HALF;
		/* Strict: the unlink flushed the IOTLB, the device cannot reach those pages. */
		if (k->strict)
			dma_must_fault(k, "dma_read of unlinked IOVA",
				       k->ios[i].addr + CHUNK / 2 + below(k, CHUNK / 2 - 64));
		break;
	case B_RELINK:
		for (int j = 0; j < k->bops; j++)
			if (!expect(k, j ? "sync" : "link", iovad_batch_op_status(k->b, j), 0))
				return;
		k->st[i] = S_LINKED;
		break;
	case B_DESTROY:
		if (!expect(k, "destroy", iovad_batch_op_status(k->b, 0), 0))
			return;
		k->st[i] = S_FREE;
		if (iovad_use_iova(&k->ios[i]))
			fail(k, "destroy: the state still has its IOVA %#" PRIx64, k->ios[i].addr);
		break;
	case B_SYNCALL:
		for (int j = 0; j < k->bops; j++)
			expect(k, "sync (all states)", iovad_batch_op_status(k->b, j), 0);
		break;
	case B_MAP:
		if (!expect(k, "map", iovad_batch_op_status(k->b, 0), 0))
			return;
		k->mp[i] = M_MAPPED;
		{
			size_t off, len;

			pick_range(k, CHUNK, &off, &len);
			dma_check(k, "map", k->dma[i] + off, MAP_OFF + (size_t)i * CHUNK + off,
				  len);
		}
		break;
	case B_UNMAP:
		if (!expect(k, "unmap", iovad_batch_op_status(k->b, 0), 0))
			return;
		k->mp[i] = M_FREE;
		/* The daemon knows no mapping of ours there: a fault, whatever the domain. */
		dma_must_fault(k, "dma_read of unmapped dma", k->dma[i] + below(k, CHUNK - 64));
		break;
	case B_BADLINK:
		expect(k, "link of memory not ours", iovad_batch_op_status(k->b, 0), -EFAULT);
		break;
	case B_BADUNMAP:
		expect(k, "unmap of nothing", iovad_batch_op_status(k->b, 0), -ENOENT);
		break;
	case B_NONE:
		break;
	}
}

static void odp_step(struct client *k, uint32_t pick)
{
	size_t off, len;
	int r;

	if (!k->odp) {
		atomic_fetch_add(&tot.ops, 1);
		r = iovad_odp_reg(k->dev, k->mem, ODP_OFF, ODP_LEN,
				  IOVAD_ACCESS_LOCAL_READ | IOVAD_ACCESS_DEVICE_READ |
					  IOVAD_ACCESS_DEVICE_WRITE,
				  k->user_faults ? IOVAD_ODP_USER_FAULTS : 0, &k->odp);
		if (!expect(k, "odp_reg", r, 0)) {
			k->odp = NULL;
			return;
		}
		if (k->user_faults)
			expect(k, "odp_set_fault_handler",
			       iovad_odp_set_fault_handler(k->odp, odp_fault_cb, k), 0);
		/* A fresh region maps nothing: the first touch faults. */
		atomic_fetch_add(&tot.odp_faults, 1);
		pick_range(k, ODP_LEN, &off, &len);
		dma_check(k, "odp", iovad_odp_iova(k->odp) + off, ODP_OFF + off, len);
		return;
	}
	if (pick < 50) {
		pick_range(k, ODP_LEN, &off, &len);
		dma_check(k, "odp", iovad_odp_iova(k->odp) + off, ODP_OFF + off, len);
	} else if (pick < 75) {
		/* Unmap some pages; the next access there faults them in again. */
		uint32_t pg = below(k, ODP_LEN / PAGE), npg = 1 + below(k, ODP_LEN / PAGE - pg);
		struct iovad_odp_stats a = { 0 }, b = { 0 };
		bool count = below(k, 4) == 0;

		atomic_fetch_add(&tot.ops, 1);
		r = iovad_odp_invalidate(k->odp, (uint64_t)pg * PAGE, (size_t)npg * PAGE);
		if (!expect(k, "odp_invalidate", r, 0))
			return;
		if (count) {
			atomic_fetch_add(&tot.ops, 1);
			expect(k, "odp_stats", iovad_odp_stats(k->odp, &a), 0);
		}
		atomic_fetch_add(&tot.odp_faults, 1);
		dma_check(k, "odp after invalidate", iovad_odp_iova(k->odp) + (uint64_t)pg * PAGE,
			  ODP_OFF + (size_t)pg * PAGE, 64);
		if (count) {
			atomic_fetch_add(&tot.ops, 1);
			expect(k, "odp_stats", iovad_odp_stats(k->odp, &b), 0);
			if (b.page_faults_handled <= a.page_faults_handled)
				fail(k, "odp: an access to an invalidated page was not faulted in "
				     "(faults handled %" PRIu64 " -> %" PRIu64 ")",
				     a.page_faults_handled, b.page_faults_handled);
		}
	} else if (pick < 90) {
		/* Punch a hole: the client's memory and the device both see zeros there. */
		uint32_t pg = below(k, ODP_LEN / PAGE);
		static const uint8_t zero[PAGE];
		uint8_t in[PAGE];

		atomic_fetch_add(&tot.ops, 2);
		if (!expect(k, "mem_discard",
			    iovad_mem_discard(k->mem, ODP_OFF + (uint64_t)pg * PAGE, PAGE), 0))
			return;
		if (memcmp(k->va + ODP_OFF + (size_t)pg * PAGE, zero, PAGE))
			fail(k, "mem_discard: the client's page %u still holds data", pg);
		atomic_fetch_add(&tot.odp_faults, 1);
		if (expect(k, "odp dma_read after discard",
			   iovad_dev_dma_read(k->dev, iovad_odp_iova(k->odp) + (uint64_t)pg * PAGE,
					      in, PAGE), 0) &&
		    memcmp(in, zero, PAGE))
			fail(k, "odp: the device read data from a discarded page");
	} else {
		atomic_fetch_add(&tot.ops, 1);
		expect(k, "odp_dereg", iovad_odp_dereg(k->odp), 0);
		k->odp = NULL;
	}
}

/* One synchronous step: device DMA, ODP, a refused access, or a disconnect. */
static void step_sync(struct client *k)
{
	uint32_t pick = below(k, 1000);
	size_t off, len;
	int i;

	if (pick < 3) {
		/* 0.3%: gone without a word; the next visit connects a fresh session. */
		client_drop(k);
		return;
	}
	if (pick < 5) {
		client_close(k);
		return;
	}
	if (pick < 400 && (i = find_linked(k)) >= 0) {
		/* The linked part: all of it, or its first half. */
		pick_range(k, k->st[i] == S_LINKED ? CHUNK : CHUNK / 2, &off, &len);
		dma_check(k, "state", k->ios[i].addr + off, (size_t)i * CHUNK + off, len);
		return;
	}
	if (pick < 550 && (i = find(k->mp, NMAPS, M_MAPPED, k)) >= 0) {
		pick_range(k, CHUNK, &off, &len);
		dma_check(k, "map", k->dma[i] + off, MAP_OFF + (size_t)i * CHUNK + off, len);
		return;
	}
	if (pick < 580) {
		/* No mapping of any client starts at IOVA 0 (aperture_start). */
		dma_must_fault(k, "dma_read at IOVA 0", 0);
		return;
	}
	odp_step(k, below(k, 100));
}

/* ---- driver threads ----------------------------------------------------------------------- */

struct driver {
	pthread_t t;
	struct client *k;
	int n;
};

static void *driver_main(void *arg)
{
	struct driver *d = arg;

	while (!atomic_load(&stop_load)) {
		/* Pass 1: every client with a batch step submits it, none waits yet. */
		for (int j = 0; j < d->n; j++) {
			struct client *k = &d->k[j];

			if (!k->c && !client_connect(k))
				continue;
			(void)step_submit(k);
		}
		/* Pass 2: collect and check the batches; the others take a synchronous step. */
		for (int j = 0; j < d->n; j++) {
			struct client *k = &d->k[j];

			if (!k->c)
				continue;
			if (k->bk != B_NONE)
				step_complete(k);
			else
				step_sync(k);
		}
	}
	/* The end: half leave everything to the daemon, half clean up. */
	for (int j = 0; j < d->n; j++) {
		struct client *k = &d->k[j];

		if (!k->c)
			continue;
		if (k->id % 2)
			client_drop(k);
		else
			client_close(k);
	}
	return NULL;
}

/* ---- the daemon ---------------------------------------------------------------------------- */

static int raw_connect(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd;

	if (strlen(path) >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	memcpy(sa.sun_path, path, strlen(path) + 1);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		int r = -errno;

		close(fd);
		return r;
	}
	return fd;
}

static int raw_send(int fd, uint16_t type, uint64_t id, const void *body, size_t len)
{
	uint8_t buf[256];
	struct proto_hdr h;

	proto_hdr_init(&h, PROTO_VERSION, type, (uint32_t)(sizeof(h) + len), id);
	memcpy(buf, &h, sizeof(h));
	if (len)
		memcpy(buf + sizeof(h), body, len);
	if (send(fd, buf, sizeof(h) + len, MSG_NOSIGNAL) != (ssize_t)(sizeof(h) + len))
		return -EIO;
	return 0;
}

static int raw_recv(int fd, void *buf, size_t cap)
{
	uint8_t *b = buf;
	size_t got = 0, want = sizeof(struct proto_hdr);

	while (got < want) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		ssize_t n;

		if (poll(&p, 1, 5000) <= 0)
			return -ETIMEDOUT;
		n = recv(fd, b + got, want - got, 0);
		if (n <= 0)
			return n ? -errno : -ECONNRESET;
		got += (size_t)n;
		if (got == sizeof(struct proto_hdr)) {
			struct proto_hdr h;

			memcpy(&h, b, sizeof(h));
			if (h.len < sizeof(h) || h.len > cap)
				return -EMSGSIZE;
			want = h.len;
		}
	}
	return (int)got;
}

/* The admin STATUS request (libiovad has no call for it), on a connection of its own. */
static int daemon_status(struct proto_status_rpy *ret)
{
	struct proto_hello h = { .version_min = PROTO_VERSION_MIN, .version_max = PROTO_VERSION_MAX,
				 .max_frame = PROTO_FRAME_DEFAULT,
				 .max_batch = PROTO_BATCH_DEFAULT };
	uint8_t buf[512];
	int fd = raw_connect(dmn.sock), r = -EIO;

	if (fd < 0)
		return fd;
	nprobes++;
	if (raw_send(fd, PROTO_CMD_HELLO, 1, &h, sizeof(h)) ||
	    raw_recv(fd, buf, sizeof(buf)) <= 0 ||
	    raw_send(fd, PROTO_CMD_STATUS, 2, NULL, 0) ||
	    raw_recv(fd, buf, sizeof(buf)) != (int)(sizeof(struct proto_hdr) + sizeof(*ret)))
		goto out;
	memcpy(ret, buf + sizeof(struct proto_hdr), sizeof(*ret));
	r = ret->st.status;
out:
	close(fd);
	return r;
}

struct rss {
	long rss, anon, file, shmem; /* kB */
};

static bool daemon_rss(struct rss *ret)
{
	char path[64], line[256];
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)dmn.pid);
	f = fopen(path, "r");
	if (!f)
		return false;
	*ret = (struct rss){ -1, -1, -1, -1 };
	while (fgets(line, sizeof(line), f)) {
		(void)(sscanf(line, "VmRSS: %ld kB", &ret->rss) == 1 ||
		       sscanf(line, "RssAnon: %ld kB", &ret->anon) == 1 ||
		       sscanf(line, "RssFile: %ld kB", &ret->file) == 1 ||
		       sscanf(line, "RssShmem: %ld kB", &ret->shmem) == 1);
	}
	fclose(f);
	return ret->rss >= 0 && ret->anon >= 0 && ret->shmem >= 0;
}

/* The daemon's own memory: everything but the clients' memory objects mapped into it. */
static long own_kb(const struct rss *r)
{
	return r->rss - r->shmem;
}

static int daemon_start(void)
{
	char cfg[128], io[32];
	FILE *f;

	strcpy(dmn.dir, "/tmp/iovad-soak-XXXXXX");
	if (!mkdtemp(dmn.dir))
		return -errno;
	snprintf(dmn.sock, sizeof(dmn.sock), "%s/iovad.sock", dmn.dir);
	snprintf(dmn.log, sizeof(dmn.log), "%s/iovad.log", dmn.dir);
	snprintf(cfg, sizeof(cfg), "%s/iovad.conf", dmn.dir);
	f = fopen(cfg, "w");
	if (!f)
		return -errno;
	/*
	 * Limits just above what one client of the model uses (one memory
	 * object, 4 states of 2 link records, 2 mappings, 1 region): a session
	 * that miscounts what it holds soon hits one, and the soak sees -EDQUOT.
	 * sim0 and sim1 share a strict domain, as an IOMMU group does.
	 */
	fprintf(f, "[daemon]\nlog_level = warning\n\n"
		"[limits]\nmax_mems = 2\nmax_mem_bytes = 256K\nmax_states = 4\nmax_maps = 2\n"
		"max_links = 8\nmax_odp = 1\nmax_inflight = 64\nmax_unsent_bytes = 1M\n\n"
		"[odp]\nfault_around = 16K\nuser_fault_timeout_ms = 30000\n\n"
		"[domain strict]\nflush = strict\n\n[domain lazy]\nflush = lazy\n\n"
		"[device sim0]\ndomain = strict\n\n[device sim1]\ndomain = strict\n\n"
		"[device sim-lazy0]\ndomain = lazy\n");
	if (fclose(f))
		return -EIO;
	snprintf(io, sizeof(io), "--io=%s", opt.io);
	dmn.pid = fork();
	if (dmn.pid < 0)
		return -errno;
	if (dmn.pid == 0) {
		int fd = open(dmn.log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (fd >= 0)
			dup2(fd, 2);
		execl(opt.daemon, "iovad", "--config", cfg, "--socket", dmn.sock, io, (char *)NULL);
		_exit(127);
	}
	for (int i = 0; i < 1000; i++) {
		int fd = raw_connect(dmn.sock);

		if (fd >= 0) {
			close(fd);
			return 0;
		}
		if (waitpid(dmn.pid, NULL, WNOHANG) == dmn.pid)
			break;
		usleep(10000);
	}
	return -ECONNREFUSED;
}

static void daemon_log_tail(void)
{
	char cmd[256];

	snprintf(cmd, sizeof(cmd), "tail -n 20 %s >&2", dmn.log);
	(void)!system(cmd);
}

/* SIGTERM; the exit status (0 is a clean shutdown). */
static int daemon_stop(void)
{
	int status = 0;

	kill(dmn.pid, SIGTERM);
	for (int i = 0; i < 1000 && waitpid(dmn.pid, &status, WNOHANG) == 0; i++)
		usleep(10000);
	if (waitpid(dmn.pid, &status, WNOHANG) == 0) {
		kill(dmn.pid, SIGKILL);
		waitpid(dmn.pid, &status, 0);
		return -1;
	}
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* Lines the daemon logged at error level ("<3>"): none are expected. */
static int daemon_log_errors(void)
{
	char line[1100];
	int n = 0;
	FILE *f = fopen(dmn.log, "r");

	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f))
		if (!strncmp(line, "<3>", 3) && n++ < 10)
			fprintf(stderr, "soak: daemon: %s", line);
	fclose(f);
	return n;
}

/* ---- RSS sampling ------------------------------------------------------------------------ */

struct sampler {
	pthread_t t;
	uint64_t t0;
	long quarter_ms;
	struct rss peak;          /* by VmRSS */
	long own_peak[4];         /* the daemon's own memory, in each quarter of the load */
	int samples;
	atomic_bool stop;
};

static void *sampler_main(void *arg)
{
	struct sampler *s = arg;

	while (!atomic_load(&s->stop)) {
		struct rss r;
		long q;

		if (daemon_rss(&r)) {
			q = (long)(now_ms() - s->t0) / s->quarter_ms;
			q = q > 3 ? 3 : q;
			if (r.rss > s->peak.rss)
				s->peak = r;
			if (own_kb(&r) > s->own_peak[q])
				s->own_peak[q] = own_kb(&r);
			s->samples++;
		}
		for (int i = 0; i < 10 && !atomic_load(&s->stop); i++)
			usleep(100000);
	}
	return NULL;
}

/* ---- main ------------------------------------------------------------------------------------ */

static void usage(FILE *f)
{
	fprintf(f, "usage: iovad-soak [--clients N] [--seconds T] [--threads K]\n"
		   "                  [--io uring|epoll] [--seed S] [--daemon PATH]\n"
		   "                  [--no-rss-check] [--no-rss-return-check]\n");
}

static int parse(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "clients", required_argument, NULL, 'c' },
		{ "seconds", required_argument, NULL, 's' },
		{ "threads", required_argument, NULL, 't' },
		{ "io", required_argument, NULL, 'i' },
		{ "seed", required_argument, NULL, 'S' },
		{ "daemon", required_argument, NULL, 'd' },
		{ "no-rss-check", no_argument, NULL, 'R' },
		{ "no-rss-return-check", no_argument, NULL, 'r' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	const char *env = getenv("IOVAD_TEST_SEED");
	int ch;

	opt.seed = env && *env ? strtoull(env, NULL, 0) : (uint64_t)time(NULL) ^ (uint64_t)getpid();
	while ((ch = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
		switch (ch) {
		case 'c':
			opt.clients = atoi(optarg);
			break;
		case 's':
			opt.seconds = atoi(optarg);
			break;
		case 't':
			opt.threads = atoi(optarg);
			break;
		case 'i':
			opt.io = optarg;
			break;
		case 'S':
			opt.seed = strtoull(optarg, NULL, 0);
			break;
		case 'd':
			opt.daemon = optarg;
			break;
		case 'R':
			opt.rss_check = false;
			break;
		case 'r':
			opt.rss_return_check = false;
			break;
		case 'h':
			usage(stdout);
			exit(0);
		default:
			usage(stderr);
			return 2;
		}
	}
	if (opt.clients < 1 || opt.seconds < 1 || opt.threads < 1 || opt.threads > opt.clients) {
		usage(stderr);
		return 2;
	}
	return 0;
}

/* Each connection costs the client 3 descriptors (socket, eventfd, epoll) and the daemon 2. */
static int raise_nofile(void)
{
	struct rlimit rl;
	rlim_t need = (rlim_t)opt.clients * 3 + 64;

	if (getrlimit(RLIMIT_NOFILE, &rl))
		return -errno;
	if (rl.rlim_cur < need) {
		rl.rlim_cur = rl.rlim_max < need ? rl.rlim_max : need;
		if (setrlimit(RLIMIT_NOFILE, &rl))
			return -errno;
	}
	if (rl.rlim_cur < need) {
		fprintf(stderr, "soak: %d clients need %lu open files, the hard limit is %lu\n",
			opt.clients, (unsigned long)need, (unsigned long)rl.rlim_max);
		return -EMFILE;
	}
	return 0;
}

/* Wait until the daemon holds no session but the asking one. */
static int wait_quiet(struct proto_status_rpy *st)
{
	int r = 0;

	for (int i = 0; i < 1000; i++) {
		r = daemon_status(st);
		if (r || st->clients <= 1)
			return r;
		usleep(10000);
	}
	return -ETIMEDOUT;
}

static int check_devices(void)
{
	struct iovad *c;
	int r, bad = 0;

	r = iovad_connect(dmn.sock, &c);
	if (r) {
		fail(NULL, "connect for device stats: %s", iovad_strerror(r));
		return 1;
	}
	for (size_t i = 0; i < sizeof(dev_names) / sizeof(dev_names[0]); i++) {
		struct iovad_dev_stats s = { 0 };
		struct iovad_dev *d;

		if (iovad_dev_open(c, dev_names[i], &d) || iovad_dev_stats(d, &s)) {
			fail(NULL, "%s: no stats", dev_names[i]);
			bad++;
			continue;
		}
		printf("soak: %-9s iova allocs %" PRIu64 ", frees %" PRIu64 ", links %" PRIu64
		       ", unlinks %" PRIu64 ", syncs %" PRIu64 ", maps %" PRIu64 ", unmaps %" PRIu64
		       ", io page faults %" PRIu64 ", mapped now %" PRIu64 " bytes, page table %"
		       PRIu64 " bytes\n",
		       dev_names[i], s.iova_allocs, s.iova_frees, s.links, s.unlinks, s.syncs,
		       s.map_phys, s.unmap_phys, s.io_page_faults, s.mapped_bytes, s.table_bytes);
		/* Nothing may stay mapped, and every IOVA handed out was given back. */
		if (s.mapped_bytes || s.iova_allocs != s.iova_frees || s.map_phys != s.unmap_phys) {
			fail(NULL, "%s: after every client left: %" PRIu64 " bytes mapped, %"
			     PRIu64 " IOVA allocations against %" PRIu64 " frees, %" PRIu64
			     " maps against %" PRIu64 " unmaps", dev_names[i], s.mapped_bytes,
			     s.iova_allocs,
			     s.iova_frees, s.map_phys, s.unmap_phys);
			bad++;
		}
		iovad_dev_close(d);
	}
	iovad_disconnect(c);
	return bad;
}

/* Every session gone: the daemon's counters must account for each of them. */
static int check_counters(const struct proto_status_rpy *st0, uint64_t probes0)
{
	struct proto_status_rpy st;
	uint64_t want;
	int r = wait_quiet(&st);

	if (r) {
		fail(NULL, "the daemon still holds sessions after every client left (%s)",
		     strerror(-r));
		return 1;
	}
	printf("soak: daemon: %" PRIu64 " sessions, %" PRIu64 " frames (%" PRIu64 " refused), %"
	       PRIu64 " torn down holding %" PRIu64 " states, %" PRIu64 " maps, %" PRIu64
	       " memory objects; client memory now %" PRIu64 " bytes\n",
	       st.sessions_total, st.frames_in, st.frames_bad, st.teardowns, st.leaked_states,
	       st.leaked_maps, st.leaked_mems, st.mem_bytes);
	/* Every client session, every STATUS probe's since the first, nothing else. */
	want = st0->sessions_total + atomic_load(&tot.connects) + (nprobes - probes0);
	if (st.sessions_total != want || st.clients != 1 || st.frames_bad != st0->frames_bad ||
	    st.teardowns - st0->teardowns != atomic_load(&tot.dirty) ||
	    st.leaked_states - st0->leaked_states != atomic_load(&tot.left_states) ||
	    st.leaked_maps - st0->leaked_maps != atomic_load(&tot.left_maps) ||
	    st.leaked_mems - st0->leaked_mems != atomic_load(&tot.left_mems) || st.mem_bytes) {
		fail(NULL, "daemon counters (expected in brackets): sessions %" PRIu64 " (%" PRIu64
		     "), clients %u (1), frames refused %" PRIu64 " (%" PRIu64 "), teardowns %"
		     PRIu64 " (%" PRIu64 "), states left %" PRIu64 " (%" PRIu64 "), maps left %"
		     PRIu64 " (%" PRIu64 "), memory objects left %" PRIu64 " (%" PRIu64
		     "), client memory %" PRIu64 " bytes (0)",
		     st.sessions_total, want, st.clients, st.frames_bad, st0->frames_bad,
		     st.teardowns - st0->teardowns, (uint64_t)atomic_load(&tot.dirty),
		     st.leaked_states - st0->leaked_states, (uint64_t)atomic_load(&tot.left_states),
		     st.leaked_maps - st0->leaked_maps, (uint64_t)atomic_load(&tot.left_maps),
		     st.leaked_mems - st0->leaked_mems, (uint64_t)atomic_load(&tot.left_mems),
		     st.mem_bytes);
		return 1;
	}
	return 0;
}

static void cleanup_dir(bool keep_log)
{
	char cfg[160];

	snprintf(cfg, sizeof(cfg), "%s/iovad.conf", dmn.dir);
	unlink(cfg);
	if (keep_log) {
		fprintf(stderr, "soak: the daemon's log is %s\n", dmn.log);
		return;
	}
	unlink(dmn.log);
	rmdir(dmn.dir);
}

int main(int argc, char **argv)
{
	struct sampler smp = { 0 };
	struct proto_status_rpy st0, sa, sb;
	struct rss base, after = { -1, -1, -1, -1 };
	uint64_t t0, t1, ops, probes0;
	struct driver *drv;
	struct client *k;
	double secs;
	int r, rc, bad = 0;

	r = parse(argc, argv);
	if (r)
		return r;
	signal(SIGPIPE, SIG_IGN);
	if (raise_nofile())
		return 1;
	printf("soak: %d clients on %d threads for %d s, io=%s, seed %" PRIu64
	       " (IOVAD_TEST_SEED=%" PRIu64 " repeats the choices)\n",
	       opt.clients, opt.threads, opt.seconds, opt.io, opt.seed, opt.seed);
	fflush(stdout);
	k = calloc((size_t)opt.clients, sizeof(*k));
	drv = calloc((size_t)opt.threads, sizeof(*drv));
	if (!k || !drv)
		return 1;
	r = daemon_start();
	if (r) {
		fprintf(stderr, "soak: the daemon did not start: %s\n", strerror(-r));
		daemon_log_tail();
		return 1;
	}
	/* Baseline: the daemon started and has served a session. */
	if (daemon_status(&st0)) {
		fprintf(stderr, "soak: STATUS failed\n");
		daemon_stop();
		return 1;
	}
	probes0 = nprobes;
	usleep(200000);
	if (!daemon_rss(&base)) {
		fprintf(stderr, "soak: cannot read the daemon's /proc status\n");
		daemon_stop();
		return 1;
	}

	for (int i = 0; i < opt.clients; i++) {
		k[i].id = i;
		k[i].rng = opt.seed * 1000003u + (uint64_t)i;
	}
	smp.t0 = now_ms();
	smp.quarter_ms = opt.seconds * 250L;
	smp.peak = base;
	pthread_create(&smp.t, NULL, sampler_main, &smp);
	sa = st0;
	t0 = now_ms();
	for (int i = 0; i < opt.threads; i++) {
		int lo = (int)((long)opt.clients * i / opt.threads);
		int hi = (int)((long)opt.clients * (i + 1) / opt.threads);

		drv[i] = (struct driver){ .k = k + lo, .n = hi - lo };
		pthread_create(&drv[i].t, NULL, driver_main, &drv[i]);
	}
	for (int s = 0; s < opt.seconds; s++) {
		sleep(1);
		if (opt.seconds >= 20 && (s + 1) % 10 == 0) {
			printf("soak: %3d s: %" PRIu64 " ops, %" PRIu64 " errors, daemon RSS "
			       "peak %ld kB\n", s + 1, (uint64_t)atomic_load(&tot.ops),
			       (uint64_t)atomic_load(&tot.errors), smp.peak.rss);
			fflush(stdout);
		}
	}
	atomic_store(&stop_load, true);
	/* The daemon's own count of the requests it took during the load. */
	if (daemon_status(&sb)) {
		fail(NULL, "STATUS at the end of the load failed");
		bad++;
		sb = sa;
	}
	t1 = now_ms();
	ops = atomic_load(&tot.ops);
	for (int i = 0; i < opt.threads; i++)
		pthread_join(drv[i].t, NULL);
	atomic_store(&smp.stop, true);
	pthread_join(smp.t, NULL);

	bad += check_counters(&st0, probes0);
	bad += check_devices();
	/* Let a lazy domain's flush-queue timer fire and the allocator settle. */
	usleep(1500000);
	if (!daemon_rss(&after)) {
		fail(NULL, "the daemon is gone");
		bad++;
	}
	rc = daemon_stop();
	if (rc) {
		fail(NULL, "the daemon exited with status %d", rc);
		bad++;
	}
	if (daemon_log_errors()) {
		fail(NULL, "the daemon logged errors");
		bad++;
	}

	secs = (double)(t1 - t0) / 1000.0;
	printf("soak: clients %d, %.1f s: %" PRIu64 " operations (%.0f ops/s), %" PRIu64
	       " requests taken by the daemon (%.0f/s), %" PRIu64 " results checked, %" PRIu64
	       " MiB of device DMA checked byte for byte\n",
	       opt.clients, secs, ops, (double)ops / secs, sb.frames_in - sa.frames_in,
	       (double)(sb.frames_in - sa.frames_in) / secs, (uint64_t)atomic_load(&tot.checks),
	       (uint64_t)atomic_load(&tot.dma_bytes) >> 20);
	printf("soak: %" PRIu64 " sessions connected, %" PRIu64 " dropped without cleanup, %" PRIu64
	       " closed cleanly; %" PRIu64 " ODP accesses that faulted, %" PRIu64
	       " user faults answered\n",
	       (uint64_t)atomic_load(&tot.connects), (uint64_t)atomic_load(&tot.dirty),
	       (uint64_t)atomic_load(&tot.clean), (uint64_t)atomic_load(&tot.odp_faults),
	       (uint64_t)atomic_load(&tot.user_faults));
	printf("soak: daemon RSS (kB): baseline %ld (own %ld), peak %ld (own %ld, clients' memory "
	       "%ld), after %ld (own %ld); own peak in the second quarter %ld, in the last %ld; "
	       "%d samples\n",
	       base.rss, own_kb(&base), smp.peak.rss, own_kb(&smp.peak), smp.peak.shmem, after.rss,
	       own_kb(&after), smp.own_peak[1], smp.own_peak[3], smp.samples);
	if (opt.rss_check) {
		if (!opt.rss_return_check) {
			printf("soak: RSS after the load not judged (--no-rss-return-check)\n");
		} else if (after.rss < 0 || after.rss > base.rss + RSS_AFTER_MARGIN_KB) {
			fail(NULL, "daemon RSS after the load %ld kB, more than the baseline %ld "
			     "kB + %d kB", after.rss, base.rss, RSS_AFTER_MARGIN_KB);
			bad++;
		}
		if (smp.own_peak[3] > smp.own_peak[1] + RSS_GROWTH_MARGIN_KB +
					  smp.own_peak[1] / 5) {
			fail(NULL, "daemon memory grew during the load: its own peak %ld kB in the "
			     "last quarter against %ld kB in the second (+%d kB + 20%% allowed)",
			     smp.own_peak[3], smp.own_peak[1], RSS_GROWTH_MARGIN_KB);
			bad++;
		}
	}
	printf("soak: errors %" PRIu64 "\n", (uint64_t)atomic_load(&tot.errors));
	rc = atomic_load(&tot.errors) || bad;
	if (rc)
		daemon_log_tail();
	printf("soak: %s\n", rc ? "FAILED" : "passed");
	cleanup_dir(rc);
	free(k);
	free(drv);
	return rc;
}
