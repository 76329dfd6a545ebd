// SPDX-License-Identifier: MIT
/*
 * test_limits.c - every resource a client can make the daemon allocate has
 * a limit, and memory that one client used never reaches another.
 *
 * Each test starts its own daemon with a small [limits] configuration, so
 * that a limit is reached after a handful of requests. For every limit it
 * checks the exact errno the daemon documents (proto/PROTOCOL.md section 6,
 * iovad.conf.example), that the refusal leaves the session usable, that
 * another client is not affected (the limits are per connection), and that
 * giving something back makes room again.
 *
 * The reuse tests check what a client inherits from another through the
 * daemon: a bounce slot (zeroed around the buffer and filled with the
 * buffer's own bytes whatever the direction: the kernel's CVE-2022-0854
 * fix), a reused IOVA (not present until linked, also after a teardown),
 * and a freed memory object (unmapped from the daemon, its phys no longer
 * the freeing client's).
 *
 * docs/security.md lists which test proves which limit.
 */
#include <dirent.h>
#include <grp.h>
#include <inttypes.h>
#include <pwd.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/mman.h>
#include <sys/eventfd.h>
#include <sys/stat.h>

#include "harness.h"
#include "ring.h"

#define PG 4096u

static struct daemon d;
static char cfg[64];

/* Small limits: each one is reached after a few requests. */
#define SMALL_LIMITS                                                                              \
	"[limits]\nmax_mems = 4\nmax_mem_bytes = 256K\nmax_states = 4\nmax_maps = 4\n"            \
	"max_links = 4\nmax_fds = 4\nmax_odp = 2\nmax_inflight = 4\nmax_unsent_bytes = 64K\n"

static void start_with(const char *text)
{
	FILE *f;
	int fd;

	strcpy(cfg, "/tmp/iovad-limits-XXXXXX");
	fd = mkstemp(cfg);
	cr_assert_geq(fd, 0);
	f = fdopen(fd, "w");
	cr_assert_not_null(f);
	fputs(text, f);
	fclose(f);
	daemon_start_config(&d, cfg);
}

static void bystander_reap(void);

static void stop(void)
{
	bystander_reap();
	cr_assert_eq(daemon_stop(&d), 0, "the daemon did not shut down cleanly");
	if (cfg[0])
		unlink(cfg);
}

TestSuite(limits, .fini = stop, .timeout = 60);
TestSuite(reuse, .fini = stop, .timeout = 60);

struct client {
	struct iovad *c;
	struct iovad_dev *dev;
};

static void up(struct client *k, const char *dev)
{
	cr_assert_eq(iovad_connect(d.sock, &k->c), 0);
	cr_assert_eq(iovad_dev_open(k->c, dev, &k->dev), 0);
}

static void down(struct client *k)
{
	iovad_dev_close(k->dev);
	iovad_disconnect(k->c);
}

/* A whole round on a client that must keep working: alloc, link, sync, DMA both ways, destroy. */
static void round_trip(struct client *k, unsigned int seed)
{
	struct iovad_mem *m;
	struct iovad_iova_state st;
	uint8_t out[256], in[256];

	cr_assert_eq(iovad_mem_alloc(k->c, PG, &m), 0);
	cr_assert(iovad_iova_try_alloc(k->dev, &st, 0, PG));
	cr_assert_eq(iovad_iova_link(k->dev, &st, iovad_mem_phys(m), 0, PG,
				     IOVAD_DMA_BIDIRECTIONAL, 0), 0);
	cr_assert_eq(iovad_iova_sync(k->dev, &st, 0, PG), 0);
	fill_pattern(out, sizeof(out), seed);
	cr_assert_eq(iovad_dev_dma_write(k->dev, st.addr + 8, out, sizeof(out)), 0);
	cr_assert_eq(iovad_dev_dma_read(k->dev, st.addr + 8, in, sizeof(in)), 0);
	cr_assert_arr_eq(in, out, sizeof(in));
	cr_assert_eq(iovad_iova_destroy(k->dev, &st, PG, IOVAD_DMA_BIDIRECTIONAL, 0), 0);
	iovad_mem_free(m);
}

/* ---- raw frames ------------------------------------------------------------------------------ */

struct raw {
	int fd;
	uint64_t id;
	uint64_t session;
};

static void raw_up(struct raw *r)
{
	struct proto_hello h = { .version_min = PROTO_VERSION_MIN,
				 .version_max = PROTO_VERSION_MAX,
				 .max_frame = PROTO_FRAME_DEFAULT,
				 .max_batch = PROTO_BATCH_DEFAULT };
	struct proto_hello_rpy rpy;
	uint8_t buf[256];

	r->fd = raw_connect(d.sock);
	cr_assert_geq(r->fd, 0);
	cr_assert_eq(raw_send(r->fd, PROTO_CMD_HELLO, 1, &h, sizeof(h)), 0);
	cr_assert_gt(raw_recv(r->fd, buf, sizeof(buf), 5000), 0);
	cr_assert_eq(frame_status(buf), 0);
	memcpy(&rpy, buf + sizeof(struct proto_hdr), sizeof(rpy));
	r->session = rpy.session_id;
	r->id = 100;
}

/* One request; the reply (events skipped) into rpy. Return: the reply's status. */
static int raw_rq(struct raw *r, uint16_t type, const void *body, size_t len, const int *fds,
		  int nfds, void *rpy, size_t cap)
{
	static uint8_t buf[PROTO_FRAME_DEFAULT];
	uint64_t id = ++r->id;
	struct proto_hdr h;

	cr_assert_eq(raw_send_fds(r->fd, PROTO_VERSION, type, id, body, len, fds, nfds), 0);
	for (;;) {
		int n = raw_recv(r->fd, buf, sizeof(buf), 10000);

		cr_assert_gt(n, 0, "no reply to type %u: %d", type, n);
		memcpy(&h, buf, sizeof(h));
		if (h.type == PROTO_EVT_FAULT)
			continue;
		cr_assert_eq(h.id, id);
		cr_assert(h.type == (type | PROTO_RPY) || h.type == PROTO_RPY_ERROR);
		if (rpy)
			memcpy(rpy, buf + sizeof(h), (size_t)n - sizeof(h) < cap ?
						     (size_t)n - sizeof(h) : cap);
		return frame_status(buf);
	}
}

static uint32_t raw_dev_open(struct raw *r, const char *name)
{
	struct proto_dev_open o = { 0 };
	struct proto_dev_open_rpy rpy;

	strcpy(o.name, name);
	cr_assert_eq(raw_rq(r, PROTO_CMD_DEV_OPEN, &o, sizeof(o), NULL, 0, &rpy, sizeof(rpy)), 0);
	return rpy.dev;
}

/* A sealed memfd of size bytes, filled with pattern seed. */
static int sealed_memfd(const char *name, size_t size, unsigned int seed)
{
	int fd = memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING);
	void *p;

	cr_assert_geq(fd, 0);
	cr_assert_eq(ftruncate(fd, (off_t)size), 0);
	p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	cr_assert_neq(p, MAP_FAILED);
	fill_pattern(p, size, seed);
	munmap(p, size);
	cr_assert_eq(fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW), 0);
	return fd;
}

static int raw_import(struct raw *r, int fd, uint64_t size, struct proto_mem_import_rpy *rpy)
{
	struct proto_mem_import mi = { .offset = 0, .size = size };

	return raw_rq(r, PROTO_CMD_MEM_IMPORT, &mi, sizeof(mi), fd >= 0 ? &fd : NULL, fd >= 0,
		      rpy, sizeof(*rpy));
}

/* A state of size bytes on dev, linked to phys and synced. Return: its IOVA. */
static uint64_t raw_state(struct raw *r, uint32_t dev, uint64_t phys, uint64_t size)
{
	struct proto_iova_alloc ia = { .dev = dev, .phys = phys, .size = size };
	struct proto_iova_alloc_rpy ar;
	struct {
		struct proto_batch b;
		struct proto_op op[2];
	} bt = { .b = { .count = 2 } };
	struct {
		struct proto_batch_rpy b;
		struct proto_op_result res[2];
	} br;

	cr_assert_eq(raw_rq(r, PROTO_CMD_IOVA_ALLOC, &ia, sizeof(ia), NULL, 0, &ar, sizeof(ar)), 0);
	bt.op[0] = (struct proto_op){ .opcode = PROTO_OP_LINK, .dev = dev, .iova = ar.addr,
				      .phys = phys, .size = size };
	bt.op[1] = (struct proto_op){ .opcode = PROTO_OP_SYNC, .dev = dev, .iova = ar.addr,
				      .size = size };
	cr_assert_eq(raw_rq(r, PROTO_CMD_BATCH, &bt, sizeof(bt), NULL, 0, &br, sizeof(br)), 0);
	cr_assert_eq(br.res[0].status, 0);
	cr_assert_eq(br.res[1].status, 0);
	return ar.addr;
}

/* Requests the daemon has handled for a session (LIST_CLIENTS, as iovadctl shows them). */
static uint64_t session_requests(uint64_t session)
{
	static uint8_t buf[PROTO_FRAME_DEFAULT];
	struct proto_list q = { 0 };
	struct proto_list_rpy rpy;
	struct raw r;

	raw_up(&r);
	cr_assert_eq(raw_rq(&r, PROTO_CMD_LIST_CLIENTS, &q, sizeof(q), NULL, 0, buf, sizeof(buf)),
		     0);
	memcpy(&rpy, buf, sizeof(rpy));
	cr_assert_eq(rpy.count, rpy.total);
	for (uint32_t i = 0; i < rpy.count; i++) {
		struct proto_client_entry e;

		memcpy(&e, buf + sizeof(rpy) + i * sizeof(e), sizeof(e));
		if (e.session_id == session) {
			close(r.fd);
			return e.requests;
		}
	}
	cr_assert_fail("no session %" PRIu64, session);
	return 0;
}

/* ---- memory objects ---------------------------------------------------------------------------- */

Test(limits, memory_objects_are_counted_per_client)
{
	struct client a, b;
	struct iovad_mem *m[4], *bm[4], *x;
	struct iovad_iova_state st;

	start_with(SMALL_LIMITS);
	up(&a, "sim0");
	up(&b, "sim0");
	for (int i = 0; i < 4; i++)
		cr_assert_eq(iovad_mem_alloc(a.c, PG, &m[i]), 0);
	cr_assert_eq(iovad_mem_alloc(a.c, PG, &x), -EDQUOT, "max_mems = 4");
	/* The other client has its own count. */
	for (int i = 0; i < 4; i++)
		cr_assert_eq(iovad_mem_alloc(b.c, PG, &bm[i]), 0);
	/* A freed object makes room... */
	iovad_mem_free(m[3]);
	cr_assert_eq(iovad_mem_alloc(a.c, PG, &m[3]), 0);
	/* ...unless it is still linked: the daemon keeps it (pinned) and it still counts. */
	cr_assert(iovad_iova_try_alloc(a.dev, &st, 0, PG));
	cr_assert_eq(iovad_iova_link(a.dev, &st, iovad_mem_phys(m[0]), 0, PG,
				     IOVAD_DMA_BIDIRECTIONAL, 0), 0);
	iovad_mem_free(m[0]);
	cr_assert_eq(iovad_mem_alloc(a.c, PG, &x), -EDQUOT, "a pinned object still counts");
	cr_assert_eq(iovad_iova_destroy(a.dev, &st, PG, IOVAD_DMA_BIDIRECTIONAL, 0), 0);
	cr_assert_eq(iovad_mem_alloc(a.c, PG, &m[0]), 0, "released with its last link");
	for (int i = 0; i < 4; i++) {
		iovad_mem_free(m[i]);
		iovad_mem_free(bm[i]);
	}
	round_trip(&a, 1);
	round_trip(&b, 2);
	down(&a);
	down(&b);
}

Test(limits, memory_bytes_are_counted_per_client)
{
	struct client a, b;
	struct iovad_mem *m, *n, *x, *bm;

	start_with(SMALL_LIMITS);
	up(&a, "sim0");
	up(&b, "sim0");
	cr_assert_eq(iovad_mem_alloc(a.c, 512u << 10, &x), -EDQUOT, "one object above 256K");
	cr_assert_eq(iovad_mem_alloc(a.c, 192u << 10, &m), 0);
	/* Sizes count rounded up to pages: 64K + 1 byte is 68K, 4K over. */
	cr_assert_eq(iovad_mem_alloc(a.c, (64u << 10) + 1, &x), -EDQUOT, "max_mem_bytes = 256K");
	cr_assert_eq(iovad_mem_alloc(a.c, 64u << 10, &n), 0, "exactly up to the limit");
	cr_assert_eq(iovad_mem_alloc(a.c, PG, &x), -EDQUOT);
	cr_assert_eq(iovad_mem_alloc(b.c, 256u << 10, &bm), 0, "the other client's own 256K");
	iovad_mem_free(n);
	cr_assert_eq(iovad_mem_alloc(a.c, 64u << 10, &n), 0, "freeing made room");
	iovad_mem_free(m);
	iovad_mem_free(n);
	iovad_mem_free(bm);
	round_trip(&a, 3);
	round_trip(&b, 4);
	cr_assert_eq(daemon_status(&d).mem_bytes, 0, "every byte released");
	down(&a);
	down(&b);
}

/* ---- received fds --------------------------------------------------------------------------- */

/*
 * fds that ride on frames other than MEM_IMPORT wait in the connection's queue
 * for a MEM_IMPORT (PROTOCOL.md: "in arrival order, extra fds are closed"): at
 * most max_fds of them, the rest are closed at once, and the queue is empty
 * again once imports took them or the connection ends.
 */
Test(limits, queued_fds_are_capped_and_extras_closed)
{
	struct raw r;
	struct proto_mem_import_rpy ir;
	int fds[6], nfds0, n;

	start_with(SMALL_LIMITS);
	raw_up(&r);
	nfds0 = daemon_nfds(&d);
	cr_assert_gt(nfds0, 0);
	/* fd i is (i + 1) pages: an import of the wrong one would be refused. */
	for (int i = 0; i < 6; i++) {
		char name[32];

		snprintf(name, sizeof(name), "iovad-lim-fd%d", i);
		fds[i] = sealed_memfd(name, (size_t)(i + 1) * PG, (unsigned int)i);
	}
	/* Six fds on a STATUS frame: four are kept, two closed. */
	cr_assert_eq(raw_rq(&r, PROTO_CMD_STATUS, NULL, 0, fds, 6, NULL, 0), 0);
	n = daemon_nfds(&d);
	cr_assert_eq(n, nfds0 + 4, "max_fds = 4 held, the rest closed: %d -> %d", nfds0, n);
	/* Again and again: the count does not grow. */
	for (int round = 0; round < 10; round++)
		cr_assert_eq(raw_rq(&r, PROTO_CMD_STATUS, NULL, 0, fds, 6, NULL, 0), 0);
	n = daemon_nfds(&d);
	cr_assert_eq(n, nfds0 + 4, "still four: %d -> %d", nfds0, n);
	/* MEM_IMPORTs without fds of their own take the queued ones, oldest first. */
	for (int i = 0; i < 4; i++)
		cr_assert_eq(raw_import(&r, -1, (uint64_t)(i + 1) * PG, &ir), 0, "fd %d", i);
	/* ...the queue held exactly max_fds: the extras were not kept for later. */
	cr_assert_eq(raw_import(&r, -1, PG, &ir), -EBADF, "nothing queued any more");
	/* The session still works, with an fd of its own; mems = 4 now is the quota. */
	cr_assert_eq(raw_import(&r, fds[0], PG, &ir), -EDQUOT);
	/* The imported objects hold one fd each (max_mems bounds those): no more than that. */
	n = daemon_nfds(&d);
	cr_assert_eq(n, nfds0 + 4, "one per memory object: %d -> %d", nfds0, n);
	close(r.fd);
	cr_assert_eq(daemon_wait_teardowns(&d, 1).teardowns, 1);
	/* The STATUS probes' own connections close asynchronously too: wait for the count. */
	for (int i = 0; i < 200 && (n = daemon_nfds(&d)) != nfds0 - 1; i++)
		usleep(10000);
	cr_assert_eq(n, nfds0 - 1, "all released at disconnect, with its socket: %d -> %d", nfds0,
		     n);
	for (int i = 0; i < 6; i++)
		close(fds[i]);
}

/* ---- IOVA states, streaming maps, link records, ODP regions, devices ----------------------------- */

Test(limits, iova_states)
{
	struct client a, b;
	struct iovad_iova_state st[5], bst[4];

	start_with(SMALL_LIMITS);
	up(&a, "sim0");
	up(&b, "sim0");
	for (int i = 0; i < 4; i++)
		cr_assert(iovad_iova_try_alloc(a.dev, &st[i], 0, PG));
	errno = 0;
	cr_assert_not(iovad_iova_try_alloc(a.dev, &st[4], 0, PG));
	cr_assert_eq(errno, EDQUOT, "max_states = 4: errno %d", errno);
	/* Per client, and over all of its devices. */
	{
		struct iovad_dev *lazy;

		cr_assert_eq(iovad_dev_open(a.c, "sim-lazy0", &lazy), 0);
		errno = 0;
		cr_assert_not(iovad_iova_try_alloc(lazy, &st[4], 0, PG));
		cr_assert_eq(errno, EDQUOT);
		iovad_dev_close(lazy);
	}
	for (int i = 0; i < 4; i++)
		cr_assert(iovad_iova_try_alloc(b.dev, &bst[i], 0, PG), "b's own four");
	cr_assert_eq(iovad_iova_free(a.dev, &st[3]), 0);
	cr_assert(iovad_iova_try_alloc(a.dev, &st[3], 0, PG), "freeing made room");
	for (int i = 0; i < 4; i++) {
		cr_assert_eq(iovad_iova_free(a.dev, &st[i]), 0);
		cr_assert_eq(iovad_iova_free(b.dev, &bst[i]), 0);
	}
	round_trip(&a, 5);
	round_trip(&b, 6);
	down(&a);
	down(&b);
}

Test(limits, streaming_maps)
{
	struct client a, b;
	struct iovad_mem *m, *bm;
	uint64_t dma[5], bdma[4];

	start_with(SMALL_LIMITS);
	up(&a, "sim0");
	up(&b, "sim0");
	cr_assert_eq(iovad_mem_alloc(a.c, 16 * PG, &m), 0);
	cr_assert_eq(iovad_mem_alloc(b.c, 16 * PG, &bm), 0);
	for (int i = 0; i < 4; i++)
		cr_assert_eq(iovad_map_phys(a.dev, iovad_mem_phys(m) + (uint64_t)i * PG, PG,
					    IOVAD_DMA_TO_DEVICE, 0, &dma[i]), 0);
	cr_assert_eq(iovad_map_phys(a.dev, iovad_mem_phys(m) + 4 * PG, PG, IOVAD_DMA_TO_DEVICE, 0,
				    &dma[4]), -EDQUOT, "max_maps = 4");
	for (int i = 0; i < 4; i++)
		cr_assert_eq(iovad_map_phys(b.dev, iovad_mem_phys(bm) + (uint64_t)i * PG, PG,
					    IOVAD_DMA_TO_DEVICE, 0, &bdma[i]), 0);
	cr_assert_eq(iovad_unmap_phys(a.dev, dma[3], PG, IOVAD_DMA_TO_DEVICE, 0), 0);
	cr_assert_eq(iovad_map_phys(a.dev, iovad_mem_phys(m) + 4 * PG, PG, IOVAD_DMA_TO_DEVICE, 0,
				    &dma[3]), 0, "unmapping made room");
	{
		uint8_t buf[64];

		cr_assert_eq(iovad_dev_dma_read(a.dev, dma[3], buf, sizeof(buf)), 0);
		cr_assert_arr_eq(buf, (uint8_t *)iovad_mem_addr(m) + 4 * PG, sizeof(buf));
	}
	for (int i = 0; i < 4; i++) {
		cr_assert_eq(iovad_unmap_phys(a.dev, dma[i], PG, IOVAD_DMA_TO_DEVICE, 0), 0);
		cr_assert_eq(iovad_unmap_phys(b.dev, bdma[i], PG, IOVAD_DMA_TO_DEVICE, 0), 0);
	}
	iovad_mem_free(m);
	iovad_mem_free(bm);
	round_trip(&a, 7);
	round_trip(&b, 8);
	down(&a);
	down(&b);
}

/*
 * A link record is what a link costs the daemon: links that continue a
 * record (next in IOVA and phys) extend it and cost nothing more, so only
 * scattered links count towards max_links.
 */
Test(limits, link_records)
{
	struct client a, b;
	struct iovad_mem *m;
	struct iovad_iova_state st, bst;
	uint64_t phys;

	start_with(SMALL_LIMITS);
	up(&a, "sim0");
	up(&b, "sim0");
	cr_assert_eq(iovad_mem_alloc(a.c, 32 * PG, &m), 0);
	phys = iovad_mem_phys(m);
	cr_assert(iovad_iova_try_alloc(a.dev, &st, 0, 32 * PG));
	/* Pages 0..3 one by one: one record. */
	for (uint64_t p = 0; p < 4; p++)
		cr_assert_eq(iovad_iova_link(a.dev, &st, phys + p * PG, p * PG, PG,
					     IOVAD_DMA_BIDIRECTIONAL, 0), 0);
	/* Pages 6, 8, 10: three more, with gaps. */
	for (uint64_t p = 6; p <= 10; p += 2)
		cr_assert_eq(iovad_iova_link(a.dev, &st, phys + p * PG, p * PG, PG,
					     IOVAD_DMA_BIDIRECTIONAL, 0), 0);
	cr_assert_eq(iovad_iova_link(a.dev, &st, phys + 12 * PG, 12 * PG, PG,
				     IOVAD_DMA_BIDIRECTIONAL, 0), -EDQUOT, "max_links = 4");
	/* Nothing was linked by the refused call: the device faults there. */
	cr_assert_eq(iovad_iova_sync(a.dev, &st, 0, 32 * PG), 0);
	{
		uint8_t buf[16];

		cr_assert_eq(iovad_dev_dma_read(a.dev, st.addr + 12 * PG, buf, sizeof(buf)),
			     -EFAULT);
		cr_assert_eq(iovad_dev_dma_read(a.dev, st.addr + 3 * PG, buf, sizeof(buf)), 0);
	}
	/* The other client links its own. */
	{
		struct iovad_mem *bm;

		cr_assert_eq(iovad_mem_alloc(b.c, 16 * PG, &bm), 0);
		cr_assert(iovad_iova_try_alloc(b.dev, &bst, 0, 16 * PG));
		for (uint64_t p = 0; p < 8; p += 2)
			cr_assert_eq(iovad_iova_link(b.dev, &bst, iovad_mem_phys(bm) + p * PG,
						     p * PG, PG, IOVAD_DMA_BIDIRECTIONAL, 0), 0);
		cr_assert_eq(iovad_iova_destroy(b.dev, &bst, 16 * PG, IOVAD_DMA_BIDIRECTIONAL, 0),
			     -ENOENT, "holes");
		iovad_mem_free(bm);
	}
	/* Unlinking a record makes room. */
	cr_assert_eq(iovad_iova_unlink(a.dev, &st, 10 * PG, PG, IOVAD_DMA_BIDIRECTIONAL, 0), 0);
	cr_assert_eq(iovad_iova_link(a.dev, &st, phys + 12 * PG, 12 * PG, PG,
				     IOVAD_DMA_BIDIRECTIONAL, 0), 0);
	cr_assert_eq(iovad_iova_destroy(a.dev, &st, 32 * PG, IOVAD_DMA_BIDIRECTIONAL, 0), -ENOENT);
	iovad_mem_free(m);
	round_trip(&a, 9);
	round_trip(&b, 10);
	down(&a);
	down(&b);
}

Test(limits, odp_regions)
{
	struct client a, b;
	struct iovad_mem *m, *bm;
	struct iovad_odp *o[3], *bo[2];
	const uint32_t rw = IOVAD_ACCESS_LOCAL_READ | IOVAD_ACCESS_DEVICE_READ |
			    IOVAD_ACCESS_DEVICE_WRITE;

	start_with(SMALL_LIMITS);
	up(&a, "sim0");
	up(&b, "sim0");
	cr_assert_eq(iovad_mem_alloc(a.c, 16 * PG, &m), 0);
	cr_assert_eq(iovad_mem_alloc(b.c, 16 * PG, &bm), 0);
	cr_assert_eq(iovad_odp_reg(a.dev, m, 0, 8 * PG, rw, 0, &o[0]), 0);
	cr_assert_eq(iovad_odp_reg(a.dev, NULL, 0, 0, rw, IOVAD_ODP_IMPLICIT, &o[1]), 0);
	cr_assert_eq(iovad_odp_reg(a.dev, m, 8 * PG, 8 * PG, rw, 0, &o[2]), -EDQUOT,
		     "max_odp = 2");
	for (int i = 0; i < 2; i++)
		cr_assert_eq(iovad_odp_reg(b.dev, bm, (uint64_t)i * 8 * PG, 8 * PG, rw, 0, &bo[i]),
			     0);
	cr_assert_eq(iovad_odp_dereg(o[1]), 0);
	cr_assert_eq(iovad_odp_reg(a.dev, m, 8 * PG, 8 * PG, rw, 0, &o[2]), 0, "room again");
	{
		uint8_t buf[64];

		fill_pattern(iovad_mem_addr(m), 16 * PG, 11);
		cr_assert_eq(iovad_dev_dma_read(a.dev, iovad_odp_iova(o[2]), buf, sizeof(buf)), 0);
		cr_assert_arr_eq(buf, (uint8_t *)iovad_mem_addr(m) + 8 * PG, sizeof(buf));
	}
	cr_assert_eq(iovad_odp_dereg(o[0]), 0);
	cr_assert_eq(iovad_odp_dereg(o[2]), 0);
	cr_assert_eq(iovad_odp_dereg(bo[0]), 0);
	cr_assert_eq(iovad_odp_dereg(bo[1]), 0);
	iovad_mem_free(m);
	iovad_mem_free(bm);
	round_trip(&a, 12);
	round_trip(&b, 13);
	down(&a);
	down(&b);
}

/* 64 device handles per connection (a fixed table, PROTOCOL.md section 6): -EMFILE. */
Test(limits, open_devices)
{
	struct client a, b;
	struct iovad_dev *h[64], *x;

	start_with(SMALL_LIMITS);
	up(&a, "sim0");
	up(&b, "sim0");
	/* a.dev is the first. */
	for (int i = 1; i < 64; i++)
		cr_assert_eq(iovad_dev_open(a.c, i % 2 ? "sim0" : "sim-lazy0", &h[i]), 0, "%d", i);
	cr_assert_eq(iovad_dev_open(a.c, "sim0", &x), -EMFILE);
	cr_assert_eq(iovad_dev_open(b.c, "sim-lazy0", &x), 0, "the other client's table");
	iovad_dev_close(x);
	iovad_dev_close(h[7]);
	cr_assert_eq(iovad_dev_open(a.c, "sim0", &h[7]), 0, "a closed handle makes room");
	round_trip(&a, 14);
	for (int i = 1; i < 64; i++)
		iovad_dev_close(h[i]);
	round_trip(&b, 15);
	down(&a);
	down(&b);
}

/*
 * IOVA is shared by every client of a domain: without a quota one client
 * reserves a whole 48-bit aperture with a few dozen states and no memory,
 * and every other client's try_alloc and map fail.
 */
Test(limits, iova_bytes)
{
	struct client a, b;
	struct iovad_mem *m;
	struct iovad_iova_state st, x;
	struct iovad_odp *o;
	uint64_t dma;
	const uint32_t rw = IOVAD_ACCESS_LOCAL_READ | IOVAD_ACCESS_DEVICE_READ |
			    IOVAD_ACCESS_DEVICE_WRITE;

	start_with("[limits]\nmax_iova_bytes = 1M\n");
	up(&a, "sim0");
	up(&b, "sim0");
	cr_assert_eq(iovad_mem_alloc(a.c, 16 * PG, &m), 0);
	errno = 0;
	cr_assert_not(iovad_iova_try_alloc(a.dev, &x, 0, 2u << 20));
	cr_assert_eq(errno, EDQUOT, "one state above the quota");
	cr_assert(iovad_iova_try_alloc(a.dev, &st, 0, 1u << 20), "exactly the quota");
	errno = 0;
	cr_assert_not(iovad_iova_try_alloc(a.dev, &x, 0, PG));
	cr_assert_eq(errno, EDQUOT, "max_iova_bytes = 1M");
	cr_assert_eq(iovad_map_phys(a.dev, iovad_mem_phys(m), PG, IOVAD_DMA_TO_DEVICE, 0, &dma),
		     -EDQUOT, "maps count too");
	cr_assert_eq(iovad_odp_reg(a.dev, m, 0, 16 * PG, rw, 0, &o), -EDQUOT, "and ODP regions");
	cr_assert(iovad_iova_try_alloc(b.dev, &x, 0, 1u << 20), "the other client's own quota");
	cr_assert_eq(iovad_iova_free(b.dev, &x), 0);
	cr_assert_eq(iovad_iova_free(a.dev, &st), 0);
	cr_assert_eq(iovad_odp_reg(a.dev, m, 0, 16 * PG, rw, 0, &o), 0, "room again");
	cr_assert_eq(iovad_map_phys(a.dev, iovad_mem_phys(m), PG, IOVAD_DMA_TO_DEVICE, 0, &dma), 0);
	cr_assert_eq(iovad_unmap_phys(a.dev, dma, PG, IOVAD_DMA_TO_DEVICE, 0), 0);
	cr_assert_eq(iovad_odp_dereg(o), 0);
	iovad_mem_free(m);
	round_trip(&a, 16);
	down(&a);
	down(&b);
}

/* With the default quota (64T), a client reserving all it can leaves the aperture to others. */
Test(limits, one_client_cannot_take_a_domains_whole_aperture)
{
	struct client a, b;
	struct iovad_iova_state st;
	int n = 0;

	start_with("[limits]\nmax_states = 1024\n");
	up(&a, "sim0");
	up(&b, "sim0");
	for (uint64_t sz = UINT64_C(1) << 46; sz >= PG;) {
		if (iovad_iova_try_alloc(a.dev, &st, 0, sz))
			n++;
		else
			sz >>= 1;
	}
	cr_assert_lt(n, 1024);
	cr_assert(iovad_iova_try_alloc(b.dev, &st, 0, 1u << 30), "b still gets IOVA");
	round_trip(&b, 17);
	down(&a);
	down(&b);
}

/*
 * Page tables: one 4 KiB page linked at scattered IOVAs (1 GiB apart) costs
 * the daemon two 4 KiB tables per link while the client holds 4 KiB; the
 * tables a client's links add are capped by max_table_bytes.
 */
Test(limits, page_table_bytes)
{
	struct client a, b;
	struct iovad_mem *m;
	struct iovad_iova_state st;
	struct iovad_dev_stats s0, s1;
	uint64_t k;
	int r = 0;

	start_with("[limits]\nmax_table_bytes = 64K\n");
	up(&a, "sim0");
	up(&b, "sim0");
	cr_assert_eq(iovad_mem_alloc(a.c, PG, &m), 0);
	cr_assert(iovad_iova_try_alloc(a.dev, &st, 0, UINT64_C(64) << 30));
	cr_assert_eq(iovad_dev_stats(a.dev, &s0), 0);
	for (k = 0; k < 64; k++) {
		r = iovad_iova_link(a.dev, &st, iovad_mem_phys(m), k << 30, PG,
				    IOVAD_DMA_TO_DEVICE, 0);
		if (r)
			break;
	}
	cr_assert_eq(r, -EDQUOT, "max_table_bytes = 64K");
	cr_assert_eq(iovad_dev_stats(a.dev, &s1), 0);
	cr_assert_leq(s1.table_bytes - s0.table_bytes, (64 + 16) << 10, "%" PRIu64 " bytes",
		      s1.table_bytes - s0.table_bytes);
	round_trip(&b, 18);
	/* Unlinking frees the tables and credits them. */
	cr_assert_eq(iovad_iova_unlink(a.dev, &st, 0, PG, IOVAD_DMA_TO_DEVICE, 0), 0);
	cr_assert_eq(iovad_iova_unlink(a.dev, &st, UINT64_C(1) << 30, PG, IOVAD_DMA_TO_DEVICE, 0),
		     0);
	cr_assert_eq(iovad_iova_link(a.dev, &st, iovad_mem_phys(m), k << 30, PG,
				     IOVAD_DMA_TO_DEVICE, 0), 0, "room again");
	cr_assert_eq(iovad_iova_destroy(a.dev, &st, UINT64_C(64) << 30, IOVAD_DMA_TO_DEVICE, 0),
		     -ENOENT);
	iovad_mem_free(m);
	round_trip(&a, 19);
	down(&a);
	down(&b);
}

/* Connections of unprivileged users: max_conns_per_uid each (root is never counted). */
Test(limits, connections_per_user)
{
	struct passwd *nobody = getpwnam("nobody");
	pid_t pid;
	int status;

	if (geteuid() != 0 || !nobody)
		cr_skip_test("needs root to become 'nobody'");
	start_with("[policy]\nallow_users = nobody\n[limits]\nmax_conns_per_uid = 3\n");
	cr_assert_eq(chmod(d.dir, 0755), 0);
	cr_assert_eq(chmod(d.sock, 0666), 0);
	pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		struct iovad *c[4];

		if (setgroups(0, NULL) || setgid(nobody->pw_gid) || setuid(nobody->pw_uid))
			_exit(10);
		for (int i = 0; i < 3; i++)
			if (iovad_connect(d.sock, &c[i]))
				_exit(11 + i);
		if (iovad_connect(d.sock, &c[3]) != -EDQUOT)
			_exit(20);
		iovad_disconnect(c[0]);
		for (int i = 0; i < 100; i++) {
			if (!iovad_connect(d.sock, &c[0]))
				_exit(0);
			usleep(10000); /* the daemon sees the close asynchronously */
		}
		_exit(21);
	}
	cr_assert_eq(waitpid(pid, &status, 0), pid);
	cr_assert(WIFEXITED(status));
	cr_assert_eq(WEXITSTATUS(status), 0, "as nobody: exit %d", WEXITSTATUS(status));
	{
		struct client a;

		up(&a, "sim0");
		round_trip(&a, 20);
		down(&a);
	}
}

/* ---- unsent replies and in-flight requests ------------------------------------------------------ */

struct bystander {
	pthread_t t;
	atomic_bool stop;
	atomic_int rounds;
	atomic_int errors;
	bool running;
};

/* Not on a test's stack: a failed assertion leaves the test's frame while the thread runs. */
static struct bystander by;

static void *bystander_main(void *arg)
{
	struct bystander *b = arg;
	struct iovad *c;
	struct iovad_dev *dev;
	struct iovad_mem *m;
	struct iovad_iova_state st;
	uint8_t out[512], in[512];

	if (iovad_connect(d.sock, &c) || iovad_dev_open(c, "sim0", &dev) ||
	    iovad_mem_alloc(c, PG, &m) || !iovad_iova_try_alloc(dev, &st, 0, PG) ||
	    iovad_iova_link(dev, &st, iovad_mem_phys(m), 0, PG, IOVAD_DMA_BIDIRECTIONAL, 0) ||
	    iovad_iova_sync(dev, &st, 0, PG)) {
		b->errors++;
		return NULL;
	}
	while (!b->stop) {
		fill_pattern(out, sizeof(out), (unsigned int)b->rounds);
		if (iovad_dev_dma_write(dev, st.addr, out, sizeof(out)) ||
		    iovad_dev_dma_read(dev, st.addr, in, sizeof(in)) || memcmp(in, out, sizeof(in)))
			b->errors++;
		b->rounds++;
	}
	iovad_iova_destroy(dev, &st, PG, IOVAD_DMA_BIDIRECTIONAL, 0);
	iovad_mem_free(m);
	iovad_disconnect(c);
	return NULL;
}

static void bystander_start(struct bystander *b)
{
	memset(b, 0, sizeof(*b));
	cr_assert_eq(pthread_create(&b->t, NULL, bystander_main, b), 0);
	b->running = true;
	for (int i = 0; i < 1000 && b->rounds < 3 && !b->errors; i++)
		usleep(5000);
	cr_assert_geq(b->rounds, 3, "the bystander did not start");
}

/* It keeps being served: a few more rounds while the other client misbehaves. */
static void bystander_progress(struct bystander *b)
{
	int before = b->rounds;

	for (int i = 0; i < 2000 && b->rounds < before + 10; i++)
		usleep(5000);
	cr_assert_geq(b->rounds, before + 10, "the bystander stalled");
	cr_assert_eq(b->errors, 0, "the bystander saw %d errors", (int)b->errors);
}

static void bystander_stop(struct bystander *b)
{
	b->stop = true;
	pthread_join(b->t, NULL);
	b->running = false;
	cr_assert_eq(b->errors, 0);
}

/* After a failed test: stop the thread before the daemon goes. */
static void bystander_reap(void)
{
	if (by.running) {
		by.stop = true;
		pthread_join(by.t, NULL);
		by.running = false;
	}
}

/*
 * A client pipelines requests whose replies are 60 KB each and never reads:
 * the daemon stops reading it once max_unsent_bytes of replies wait, so the
 * client cannot push more than that plus the kernel's socket buffers, and
 * the daemon's RSS stays flat. Others are served meanwhile. When the client
 * reads again, every request gets its reply, in order.
 */
Test(limits, unsent_replies_stop_reading_a_client_that_does_not_read)
{
	enum { DMA_LEN = 60000, FLOOD = 50 << 20 };
	struct raw r;
	struct proto_mem_import_rpy ir;
	struct proto_dma dm;
	uint8_t frame[sizeof(struct proto_hdr) + sizeof(struct proto_dma)];
	static uint8_t chunk[sizeof(frame) * 256], buf[PROTO_FRAME_DEFAULT];
	uint8_t expect[DMA_LEN];
	size_t sent = 0;
	uint64_t handled;
	long rss0, rss1;
	uint32_t dev;
	int fd, fl;

	start_with(SMALL_LIMITS);
	raw_up(&r);
	dev = raw_dev_open(&r, "sim0");
	fd = sealed_memfd("iovad-lim-flood", 16 * PG, 21);
	cr_assert_eq(raw_import(&r, fd, 16 * PG, &ir), 0);
	dm = (struct proto_dma){ .dev = dev, .len = DMA_LEN,
				 .iova = raw_state(&r, dev, ir.phys, 16 * PG) };
	fill_pattern(expect, sizeof(expect), 21);
	rss0 = daemon_rss_kb(&d);

	/* 256 requests per send, as fast as the socket takes them, without reading. */
	{
		struct proto_hdr h;

		proto_hdr_init(&h, PROTO_VERSION, PROTO_CMD_DMA_READ, sizeof(frame), 7);
		memcpy(frame, &h, sizeof(h));
		memcpy(frame + sizeof(h), &dm, sizeof(dm));
		for (size_t i = 0; i < sizeof(chunk); i += sizeof(frame))
			memcpy(chunk + i, frame, sizeof(frame));
	}
	fl = fcntl(r.fd, F_GETFL);
	fcntl(r.fd, F_SETFL, fl | O_NONBLOCK);
	while (sent < FLOOD) {
		size_t off = sent % sizeof(chunk);
		ssize_t n = send(r.fd, chunk + off, sizeof(chunk) - off, MSG_NOSIGNAL);

		if (n < 0) {
			cr_assert_eq(errno, EAGAIN);
			/* Give the daemon time to take what it will, then try once more. */
			usleep(200000);
			n = send(r.fd, chunk + off, sizeof(chunk) - off, MSG_NOSIGNAL);
			if (n < 0)
				break;
		}
		sent += (size_t)n;
	}
	cr_assert_lt(sent, (size_t)FLOOD, "the daemon kept reading a client that never reads");
	cr_assert_lt(sent, (size_t)(8 << 20), "accepted %zu bytes of requests", sent);
	/*
	 * Of those it ran only as many as max_unsent_bytes and the sockets' buffers
	 * hold replies for (64K + about 200K each way: a dozen): the rest wait
	 * unread, in the kernel and at most one read (64K) in the daemon.
	 */
	handled = session_requests(r.session);
	rss1 = daemon_rss_kb(&d);
	if (getenv("LIMITS_DEBUG"))
		fprintf(stderr, "sent %zu (%zu requests) handled %" PRIu64 " rss %ld -> %ld\n",
			sent, sent / sizeof(frame), handled, rss0, rss1);
	cr_assert_lt(handled, 6 + 64, "ran %" PRIu64 " of %zu requests whose replies wait",
		     handled, sent / sizeof(frame));
	cr_assert_lt(rss1 - rss0, 16 * 1024, "RSS grew by %ld kB for %zu requests",
		     rss1 - rss0, sent / sizeof(frame));
	/* Another client is served meanwhile. */
	bystander_start(&by);
	bystander_progress(&by);
	bystander_stop(&by);
	cr_assert_eq(session_requests(r.session), handled, "the flooder is still stalled");

	/* Now read: every request accepted gets its reply, and the rest of a torn frame goes. */
	fcntl(r.fd, F_SETFL, fl);
	{
		size_t frames = (sent + sizeof(frame) - 1) / sizeof(frame), tail = sent % sizeof(frame);

		if (tail) {
			/*
			 * The rest of the torn frame: the daemon takes it once replies
			 * drain, so read them while waiting for room (a blocking send
			 * here would wait for the daemon, which waits for us).
			 */
			const uint8_t *p = frame + tail;
			size_t left = sizeof(frame) - tail;

			while (left) {
				struct pollfd pf = { .fd = r.fd, .events = POLLIN | POLLOUT };

				cr_assert_gt(poll(&pf, 1, 10000), 0);
				if (pf.revents & POLLOUT) {
					ssize_t n = send(r.fd, p, left, MSG_NOSIGNAL | MSG_DONTWAIT);

					if (n > 0) {
						p += n;
						left -= (size_t)n;
					}
				}
				if (left && (pf.revents & POLLIN)) {
					cr_assert_gt(raw_recv(r.fd, buf, sizeof(buf), 10000), 0);
					cr_assert_eq(frame_status(buf), 0);
					cr_assert_eq(memcmp(buf + sizeof(struct proto_hdr) +
							    sizeof(struct proto_dma_rpy), expect,
							    DMA_LEN), 0);
					frames--;
				}
			}
		}
		for (size_t i = 0; i < frames; i++) {
			int k = raw_recv(r.fd, buf, sizeof(buf), 10000);

			cr_assert_eq(k, (int)(sizeof(struct proto_hdr) + sizeof(struct proto_dma_rpy) +
					      DMA_LEN), "reply %zu of %zu: %d", i, frames, k);
			cr_assert_eq(frame_status(buf), 0);
			cr_assert_eq(memcmp(buf + sizeof(struct proto_hdr) +
					    sizeof(struct proto_dma_rpy), expect, DMA_LEN), 0);
		}
	}
	/* Then the session works as before. */
	cr_assert_eq(raw_rq(&r, PROTO_CMD_STATUS, NULL, 0, NULL, 0, NULL, 0), 0);
	close(r.fd);
	close(fd);
}

/*
 * Device accesses parked on user faults that the client never answers:
 * at most max_inflight of them wait (one more is refused -EAGAIN at once,
 * without stopping the connection, which must stay readable for the answers),
 * and they fail -ETIMEDOUT after [odp] user_fault_timeout_ms. Then the
 * client may park as many again, and those complete once answered.
 */
Test(limits, pending_user_faults_are_bounded_and_time_out)
{
	enum { N = 10, LIMIT = 4, TIMEOUT_MS = 1500 };
	struct raw r;
	struct proto_mem_import_rpy ir;
	struct proto_odp_reg reg;
	struct proto_odp_reg_rpy rr;
	struct proto_dma dm;
	static uint8_t buf[PROTO_FRAME_DEFAULT];
	uint8_t expect[64];
	uint32_t dev;
	int fd, again = 0, timedout = 0, events = 0, ok = 0;
	struct timespec t0, t1;
	uint64_t fault_id = 0, elapsed_ms;

	start_with(SMALL_LIMITS "[odp]\nuser_fault_timeout_ms = 1500\n");
	raw_up(&r);
	dev = raw_dev_open(&r, "sim0");
	fd = sealed_memfd("iovad-lim-odp", 16 * PG, 31);
	cr_assert_eq(raw_import(&r, fd, 16 * PG, &ir), 0);
	reg = (struct proto_odp_reg){ .dev = dev, .mem = ir.mem, .len = 16 * PG,
				      .access = PROTO_ODP_ACCESS, .flags = PROTO_ODP_USER_FAULTS };
	cr_assert_eq(raw_rq(&r, PROTO_CMD_ODP_REG, &reg, sizeof(reg), NULL, 0, &rr, sizeof(rr)), 0);
	dm = (struct proto_dma){ .dev = dev, .len = 64, .iova = rr.iova };
	fill_pattern(expect, sizeof(expect), 31);
	bystander_start(&by);

	/* N reads of the same page, in one go: LIMIT park on one fault, the rest -EAGAIN. */
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (int i = 0; i < N; i++)
		cr_assert_eq(raw_send_fds(r.fd, PROTO_VERSION, PROTO_CMD_DMA_READ,
					  1000 + (uint64_t)i, &dm, sizeof(dm), NULL, 0),
			     0);
	while (again < N - LIMIT || !events) {
		int n = raw_recv(r.fd, buf, sizeof(buf), 10000);

		cr_assert_gt(n, 0);
		if (frame_type(buf) == PROTO_EVT_FAULT) {
			events++;
			continue;
		}
		cr_assert_eq(frame_type(buf), PROTO_CMD_DMA_READ | PROTO_RPY);
		cr_assert_eq(frame_status(buf), -EAGAIN, "status %d", frame_status(buf));
		again++;
	}
	cr_assert_eq(events, 1, "one fault for the page, however many wait on it");
	/* The connection is still read: requests other than parked accesses are answered. */
	cr_assert_eq(raw_rq(&r, PROTO_CMD_STATUS, NULL, 0, NULL, 0, NULL, 0), 0);
	bystander_progress(&by);
	/* Nobody answers: the parked ones time out. */
	while (timedout < LIMIT) {
		int n = raw_recv(r.fd, buf, sizeof(buf), 10000 + TIMEOUT_MS);

		cr_assert_gt(n, 0, "no -ETIMEDOUT after %d of %d", timedout, LIMIT);
		cr_assert_eq(frame_type(buf), PROTO_CMD_DMA_READ | PROTO_RPY);
		cr_assert_eq(frame_status(buf), -ETIMEDOUT, "status %d", frame_status(buf));
		timedout++;
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	elapsed_ms = (uint64_t)(t1.tv_sec - t0.tv_sec) * 1000 +
		     (uint64_t)(t1.tv_nsec - t0.tv_nsec) / 1000000;
	cr_assert_geq(elapsed_ms, TIMEOUT_MS - 50, "timed out after %" PRIu64 " ms", elapsed_ms);
	cr_assert_eq(raw_recv(r.fd, buf, sizeof(buf), 100), -ETIMEDOUT, "nothing else is pending");

	/* Back under the limit: LIMIT park again (no -EAGAIN), and answering completes them. */
	for (int i = 0; i < LIMIT; i++)
		cr_assert_eq(raw_send_fds(r.fd, PROTO_VERSION, PROTO_CMD_DMA_READ,
					  2000 + (uint64_t)i, &dm, sizeof(dm), NULL, 0),
			     0);
	while (!fault_id) {
		int n = raw_recv(r.fd, buf, sizeof(buf), 10000);
		struct proto_evt_fault ev;

		cr_assert_gt(n, 0);
		cr_assert_eq(frame_type(buf), PROTO_EVT_FAULT, "type %#x status %d",
			     frame_type(buf), frame_status(buf));
		memcpy(&ev, buf + sizeof(struct proto_hdr), sizeof(ev));
		fault_id = ev.fault_id;
	}
	{
		struct proto_fault_done fd_ = { .fault_id = fault_id, .status = 0 };

		cr_assert_eq(raw_send_fds(r.fd, PROTO_VERSION, PROTO_CMD_FAULT_DONE, 3000, &fd_,
					  sizeof(fd_), NULL, 0),
			     0);
	}
	while (ok < LIMIT) {
		int n = raw_recv(r.fd, buf, sizeof(buf), 10000);
		struct proto_hdr h;

		cr_assert_gt(n, 0);
		memcpy(&h, buf, sizeof(h));
		if (h.type == (PROTO_CMD_FAULT_DONE | PROTO_RPY)) {
			cr_assert_eq(frame_status(buf), 0);
			continue;
		}
		cr_assert_eq(h.type, PROTO_CMD_DMA_READ | PROTO_RPY);
		cr_assert_geq(h.id, 2000);
		cr_assert_eq(frame_status(buf), 0, "status %d", frame_status(buf));
		cr_assert_eq(memcmp(buf + sizeof(h) + sizeof(struct proto_dma_rpy), expect,
				    sizeof(expect)), 0);
		ok++;
	}
	bystander_stop(&by);
	close(r.fd);
	close(fd);
}

/* ---- shared-memory rings ---------------------------------------------------------------------- */

static int ring_setup_with(int fd, uint32_t size)
{
	struct proto_ring_setup g = { .sq_size = size, .cq_size = size };
	int fds[3];
	uint64_t id = 77;
	uint8_t buf[256];
	int r;

	fds[0] = proto_ring_create(size, size);
	cr_assert_geq(fds[0], 0);
	fds[1] = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	fds[2] = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	cr_assert_eq(
		raw_send_fds(fd, PROTO_VERSION, PROTO_CMD_RING_SETUP, id, &g, sizeof(g), fds, 3),
		0);
	cr_assert_gt(raw_recv(fd, buf, sizeof(buf), 5000), 0);
	cr_assert_eq(frame_type(buf), PROTO_CMD_RING_SETUP | PROTO_RPY);
	r = frame_status(buf);
	for (int i = 0; i < 3; i++)
		close(fds[i]);
	return r;
}

/* [rings] max_size caps the shared memory a client makes the daemon map. */
Test(limits, ring_size)
{
	struct proto_hello h = { .version_min = PROTO_VERSION_RING,
				 .version_max = PROTO_VERSION_MAX, .max_frame = PROTO_FRAME_MIN,
				 .max_batch = PROTO_BATCH_DEFAULT };
	uint8_t buf[256];
	int fd, nfds0;

	start_with(SMALL_LIMITS "[rings]\nmax_size = 16K\n");
	fd = raw_connect(d.sock);
	cr_assert_geq(fd, 0);
	cr_assert_eq(raw_send(fd, PROTO_CMD_HELLO, 1, &h, sizeof(h)), 0);
	cr_assert_gt(raw_recv(fd, buf, sizeof(buf), 5000), 0);
	cr_assert_eq(frame_status(buf), 0);
	nfds0 = daemon_nfds(&d);
	cr_assert_eq(ring_setup_with(fd, 32u << 10), -EINVAL, "above max_size = 16K");
	cr_assert_eq(ring_setup_with(fd, 1u << 20), -EINVAL);
	cr_assert_eq(daemon_nfds(&d), nfds0, "a refused setup keeps none of its fds");
	cr_assert_eq(ring_setup_with(fd, 16u << 10), 0, "at the limit");
	close(fd);
}

/* ---- reuse: bounce slots ------------------------------------------------------------------------ */

/*
 * A 64K bounce pool: 16 one-granule slots, so 16 bounced maps use them all
 * and every slot the first client dirtied goes to the second.
 */
#define BOUNCE_CONFIG                                                                             \
	"[domain bounce]\nswiotlb = 64K\n"                                                         \
	"[device untrusted0]\ndomain = bounce\ntrusted = no\n"                                     \
	"[domain lazybounce]\nflush = lazy\nfq_timeout_ms = 10000\nswiotlb = 64K\n"                \
	"[device untrusted-lazy]\ndomain = lazybounce\ntrusted = no\n"
#define SLOTS 16

/* A dirties every slot: 16 unaligned maps, the device writes all 4096 bytes of each granule. */
static void dirty_every_slot(struct client *a, struct iovad_mem *am)
{
	static uint8_t secret[PG];
	uint64_t dma[SLOTS], x;

	memset(secret, 0xa5, sizeof(secret));
	for (int i = 0; i < SLOTS; i++) {
		cr_assert_eq(iovad_map_phys(a->dev, iovad_mem_phys(am) + (uint64_t)i * PG + 1, PG - 1,
					    IOVAD_DMA_BIDIRECTIONAL, 0, &dma[i]), 0);
		cr_assert_eq(dma[i] & (PG - 1), 1, "bounced, at the same in-granule offset");
		cr_assert_eq(iovad_dev_dma_write(a->dev, dma[i] - 1, secret, PG), 0);
	}
	cr_assert_eq(iovad_map_phys(a->dev, iovad_mem_phys(am) + SLOTS * PG + 1, 8,
				    IOVAD_DMA_BIDIRECTIONAL, 0, &x), -ENOMEM, "the pool is full");
	for (int i = 0; i < SLOTS; i++)
		cr_assert_eq(iovad_unmap_phys(a->dev, dma[i], PG - 1, IOVAD_DMA_BIDIRECTIONAL, 0), 0);
}

#define B_OFF 0x100u
#define B_LEN 0x200u

Test(reuse, a_bounce_slot_never_shows_another_clients_bytes)
{
	struct client a, b;
	struct iovad_mem *am, *bm;
	uint64_t dma[SLOTS], x;
	static uint8_t gran[PG], want[SLOTS * PG];
	uint8_t *bmem;

	start_with(BOUNCE_CONFIG);
	up(&a, "untrusted0");
	up(&b, "untrusted0");
	cr_assert(iovad_dev_flags(a.dev) & IOVAD_DEV_UNTRUSTED);
	cr_assert_eq(iovad_mem_alloc(a.c, (SLOTS + 1) * PG, &am), 0);
	cr_assert_eq(iovad_mem_alloc(b.c, SLOTS * PG, &bm), 0);
	bmem = iovad_mem_addr(bm);
	fill_pattern(bmem, SLOTS * PG, 41);
	memcpy(want, bmem, sizeof(want));

	/* 1. Bidirectional: the device sees B's bytes and zeros, in every slot. */
	dirty_every_slot(&a, am);
	for (int i = 0; i < SLOTS; i++)
		cr_assert_eq(iovad_map_phys(b.dev, iovad_mem_phys(bm) + (uint64_t)i * PG + B_OFF,
					    B_LEN, IOVAD_DMA_BIDIRECTIONAL, 0, &dma[i]), 0);
	cr_assert_eq(iovad_map_phys(b.dev, iovad_mem_phys(bm) + B_OFF, 8, IOVAD_DMA_BIDIRECTIONAL,
				    0, &x), -ENOMEM, "all 16 slots are b's now");
	for (int i = 0; i < SLOTS; i++) {
		cr_assert_eq(iovad_dev_dma_read(b.dev, dma[i] - B_OFF, gran, PG), 0);
		for (uint32_t j = 0; j < PG; j++) {
			uint8_t w = j >= B_OFF && j < B_OFF + B_LEN ? want[i * PG + j] : 0;

			cr_assert_eq(gran[j], w, "slot of map %d, byte %#x: %#x, not %#x", i, j,
				     gran[j], w);
		}
		cr_assert_eq(iovad_unmap_phys(b.dev, dma[i], B_LEN, IOVAD_DMA_BIDIRECTIONAL, 0), 0);
	}

	/*
	 * 2. From the device, written only in part (CVE-2022-0854): the unmap copies
	 * the whole buffer back, so the slot must have started as B's own bytes.
	 */
	dirty_every_slot(&a, am);
	for (int i = 0; i < SLOTS; i++)
		cr_assert_eq(iovad_map_phys(b.dev, iovad_mem_phys(bm) + (uint64_t)i * PG + B_OFF,
					    B_LEN, IOVAD_DMA_FROM_DEVICE, 0, &dma[i]), 0);
	{
		uint8_t w[16];

		memset(w, 0x3c, sizeof(w));
		cr_assert_eq(iovad_dev_dma_write(b.dev, dma[5] + 32, w, sizeof(w)), 0);
		memcpy(want + 5 * PG + B_OFF + 32, w, sizeof(w));
	}
	for (int i = 0; i < SLOTS; i++)
		cr_assert_eq(iovad_unmap_phys(b.dev, dma[i], B_LEN, IOVAD_DMA_FROM_DEVICE, 0), 0);
	for (uint32_t j = 0; j < SLOTS * PG; j++)
		cr_assert_eq(bmem[j], want[j], "b's byte %#x after the copy-back: %#x, not %#x", j,
			     bmem[j], want[j]);

	/* 3. The IOVA API bounces the same way (link of an unaligned head). */
	dirty_every_slot(&a, am);
	{
		struct iovad_iova_state st[SLOTS];

		for (int i = 0; i < SLOTS; i++) {
			uint64_t phys = iovad_mem_phys(bm) + (uint64_t)i * PG + B_OFF;

			cr_assert(iovad_iova_try_alloc(b.dev, &st[i], phys, B_LEN));
			cr_assert_eq(iovad_iova_link(b.dev, &st[i], phys, 0, B_LEN,
						     IOVAD_DMA_BIDIRECTIONAL, 0), 0);
			cr_assert(st[i].__size & IOVAD_IOVA_USE_SWIOTLB, "bounced");
			cr_assert_eq(iovad_iova_sync(b.dev, &st[i], 0, B_LEN), 0);
		}
		for (int i = 0; i < SLOTS; i++) {
			cr_assert_eq(iovad_dev_dma_read(b.dev, st[i].addr - B_OFF, gran, PG), 0);
			for (uint32_t j = 0; j < PG; j++) {
				uint8_t w = j >= B_OFF && j < B_OFF + B_LEN ? want[i * PG + j] : 0;

				cr_assert_eq(gran[j], w, "linked slot %d, byte %#x: %#x", i, j,
					     gran[j]);
			}
			cr_assert_eq(iovad_iova_destroy(b.dev, &st[i], B_LEN,
							IOVAD_DMA_BIDIRECTIONAL, 0), 0);
		}
	}
	iovad_mem_free(am);
	iovad_mem_free(bm);
	down(&a);
	down(&b);
}

/*
 * A lazy domain releases a bounce slot at unmap but flushes the IOTLB later
 * (the kernel does the same): until then the IOTLB may still translate the
 * old IOVA to a slot that already holds another client's bytes. Only the
 * daemon's check that an access lies inside the client's own mappings keeps
 * the device there; the IOVA itself waits in the flush queue.
 */
Test(reuse, a_stale_iotlb_entry_never_reaches_a_reused_bounce_slot)
{
	struct client a, b;
	struct iovad_mem *am, *bm;
	uint64_t adma[SLOTS], bdma[SLOTS];
	static uint8_t gran[PG];
	uint8_t buf[64];

	start_with(BOUNCE_CONFIG);
	up(&a, "untrusted-lazy");
	up(&b, "untrusted-lazy");
	cr_assert(iovad_dev_flags(a.dev) & IOVAD_DEV_LAZY);
	cr_assert_eq(iovad_mem_alloc(a.c, SLOTS * PG, &am), 0);
	cr_assert_eq(iovad_mem_alloc(b.c, SLOTS * PG, &bm), 0);
	memset(iovad_mem_addr(am), 0xa5, SLOTS * PG);
	fill_pattern(iovad_mem_addr(bm), SLOTS * PG, 71);
	/* A maps, its device reads (the IOTLB caches each translation), A unmaps. */
	for (int i = 0; i < SLOTS; i++) {
		cr_assert_eq(iovad_map_phys(a.dev, iovad_mem_phys(am) + (uint64_t)i * PG + 1, PG - 1,
					    IOVAD_DMA_BIDIRECTIONAL, 0, &adma[i]), 0);
		cr_assert_eq(iovad_dev_dma_read(a.dev, adma[i], buf, sizeof(buf)), 0);
		cr_assert_eq(buf[0], 0xa5);
	}
	for (int i = 0; i < SLOTS; i++)
		cr_assert_eq(iovad_unmap_phys(a.dev, adma[i], PG - 1, IOVAD_DMA_BIDIRECTIONAL, 0), 0);
	/* B takes every slot (A's IOVAs are still queued, not flushed). */
	for (int i = 0; i < SLOTS; i++) {
		cr_assert_eq(iovad_map_phys(b.dev, iovad_mem_phys(bm) + (uint64_t)i * PG + 1, PG - 1,
					    IOVAD_DMA_BIDIRECTIONAL, 0, &bdma[i]), 0);
		cr_assert_neq(bdma[i] & ~(uint64_t)(PG - 1), adma[i] & ~(uint64_t)(PG - 1),
			      "a queued IOVA is not reused before the flush");
	}
	/* A's device at its old IOVAs: faults, reads nothing of B's, writes nothing into it. */
	for (int i = 0; i < SLOTS; i++) {
		memset(buf, 0x11, sizeof(buf));
		cr_assert_eq(iovad_dev_dma_read(a.dev, adma[i], buf, sizeof(buf)), -EFAULT);
		for (size_t j = 0; j < sizeof(buf); j++)
			cr_assert_eq(buf[j], 0x11, "a byte of b's reached a");
		cr_assert_eq(iovad_dev_dma_write(a.dev, adma[i], buf, sizeof(buf)), -EFAULT);
	}
	for (int i = 0; i < SLOTS; i++) {
		cr_assert_eq(iovad_dev_dma_read(b.dev, bdma[i] - 1, gran, PG), 0);
		cr_assert_eq(gran[0], 0);
		cr_assert_arr_eq(gran + 1, (uint8_t *)iovad_mem_addr(bm) + (size_t)i * PG + 1, PG - 1,
				 "b's slot %d is b's", i);
		cr_assert_eq(iovad_unmap_phys(b.dev, bdma[i], PG - 1, IOVAD_DMA_BIDIRECTIONAL, 0), 0);
	}
	iovad_mem_free(am);
	iovad_mem_free(bm);
	down(&a);
	down(&b);
}

/* ---- reuse: IOVAs ---------------------------------------------------------------------------------- */

/* A's state: 4 pages of secret bytes, linked, synced and read by the device. */
static uint64_t a_links(struct client *a, struct iovad_mem **m, struct iovad_iova_state *st)
{
	uint8_t buf[64];

	cr_assert_eq(iovad_mem_alloc(a->c, 4 * PG, m), 0);
	memset(iovad_mem_addr(*m), 0xa5, 4 * PG);
	cr_assert(iovad_iova_try_alloc(a->dev, st, 0, 4 * PG));
	cr_assert_eq(iovad_iova_link(a->dev, st, iovad_mem_phys(*m), 0, 4 * PG,
				     IOVAD_DMA_BIDIRECTIONAL, 0), 0);
	cr_assert_eq(iovad_iova_sync(a->dev, st, 0, 4 * PG), 0);
	cr_assert_eq(iovad_dev_dma_read(a->dev, st->addr + PG, buf, sizeof(buf)), 0);
	cr_assert_eq(buf[0], 0xa5);
	return st->addr;
}

/* B's fresh state over (maybe) A's old IOVA: not present until B links, then only B's bytes. */
static void b_checks(struct client *b, uint64_t old, bool want_same)
{
	struct iovad_iova_state st;
	struct iovad_mem *m;
	struct iovad_fault f;
	uint8_t buf[64];

	cr_assert_eq(iovad_mem_alloc(b->c, 4 * PG, &m), 0);
	fill_pattern(iovad_mem_addr(m), 4 * PG, 51);
	cr_assert(iovad_iova_try_alloc(b->dev, &st, 0, 4 * PG));
	if (want_same)
		cr_assert_eq(st.addr, old, "the allocator hands A's IOVA to B");
	for (uint64_t off = 0; off < 4 * PG; off += PG) {
		memset(buf, 0x5a, sizeof(buf));
		cr_assert_eq(iovad_dev_dma_read(b->dev, st.addr + off, buf, sizeof(buf)), -EFAULT,
			     "page %" PRIu64 " before any link", off / PG);
		for (size_t i = 0; i < sizeof(buf); i++)
			cr_assert_eq(buf[i], 0x5a);
		cr_assert_eq(iovad_dev_last_fault(b->dev, &f), 0);
		cr_assert_eq(f.reason, 1, "not present");
	}
	/* Linked and synced in part: the rest still faults. */
	cr_assert_eq(iovad_iova_link(b->dev, &st, iovad_mem_phys(m), 0, PG,
				     IOVAD_DMA_BIDIRECTIONAL, 0), 0);
	cr_assert_eq(iovad_iova_sync(b->dev, &st, 0, PG), 0);
	cr_assert_eq(iovad_dev_dma_read(b->dev, st.addr, buf, sizeof(buf)), 0);
	cr_assert_arr_eq(buf, iovad_mem_addr(m), sizeof(buf));
	cr_assert_eq(iovad_dev_dma_read(b->dev, st.addr + PG, buf, sizeof(buf)), -EFAULT);
	/* And A's old IOVA, if B did not get it, is no place for B's device either. */
	if (old != st.addr)
		cr_assert_eq(iovad_dev_dma_read(b->dev, old, buf, sizeof(buf)), -EFAULT);
	cr_assert_eq(iovad_iova_destroy(b->dev, &st, PG, IOVAD_DMA_BIDIRECTIONAL, 0), 0);
	iovad_mem_free(m);
}

Test(reuse, a_reused_iova_is_not_present_until_linked)
{
	struct client a, b;
	struct iovad_mem *m;
	struct iovad_iova_state st;
	uint64_t old;
	uint8_t buf[16];

	start_with(SMALL_LIMITS);
	up(&a, "sim0");
	up(&b, "sim0");
	/* Destroyed by A. */
	old = a_links(&a, &m, &st);
	cr_assert_eq(iovad_iova_destroy(a.dev, &st, 4 * PG, IOVAD_DMA_BIDIRECTIONAL, 0), 0);
	cr_assert_eq(iovad_dev_dma_read(a.dev, old, buf, sizeof(buf)), -EFAULT, "gone for A too");
	b_checks(&b, old, true);
	iovad_mem_free(m);
	/* Left linked by A, torn down when A disconnects. */
	old = a_links(&a, &m, &st);
	down(&a);
	cr_assert_eq(daemon_wait_teardowns(&d, 1).teardowns, 1);
	b_checks(&b, old, true);
	/* Unlinked but not freed by A, then freed: the same. */
	up(&a, "sim0");
	old = a_links(&a, &m, &st);
	cr_assert_eq(iovad_iova_unlink(a.dev, &st, 0, 4 * PG, IOVAD_DMA_BIDIRECTIONAL, 0), 0);
	cr_assert_eq(iovad_iova_free(a.dev, &st), 0);
	b_checks(&b, old, true);
	iovad_mem_free(m);
	down(&a);
	down(&b);
}

/* On a lazy domain the IOVA waits in the flush queue: never reused before the IOTLB flush. */
Test(reuse, a_reused_iova_on_a_lazy_domain)
{
	struct client a, b;
	struct iovad_mem *m;
	struct iovad_iova_state st;
	uint64_t old;

	start_with(SMALL_LIMITS);
	up(&a, "sim-lazy0");
	up(&b, "sim-lazy0");
	cr_assert(iovad_dev_flags(a.dev) & IOVAD_DEV_LAZY);
	old = a_links(&a, &m, &st);
	cr_assert_eq(iovad_iova_destroy(a.dev, &st, 4 * PG, IOVAD_DMA_BIDIRECTIONAL, 0), 0);
	/* At once (still queued: another IOVA) or after the flush (maybe the same). */
	b_checks(&b, old, false);
	usleep(50000); /* past fq_timeout_ms: the queue was flushed */
	b_checks(&b, old, false);
	iovad_mem_free(m);
	old = a_links(&a, &m, &st);
	down(&a);
	cr_assert_eq(daemon_wait_teardowns(&d, 1).teardowns, 1);
	b_checks(&b, old, false);
	down(&b);
}

/* ---- forged session tokens ------------------------------------------------------------------ */

/* RESUME as the first frame of a new connection; return its status. */
static int resume_as(const struct proto_session *tok, uint64_t session)
{
	struct proto_resume q = { .hello = { .version_min = PROTO_VERSION_RESUME,
					     .version_max = PROTO_VERSION_MAX,
					     .max_frame = PROTO_FRAME_DEFAULT,
					     .max_batch = PROTO_BATCH_DEFAULT },
				  .session_id = session };
	uint8_t buf[256];
	int fd = raw_connect(d.sock), n, st;

	if (fd < 0)
		return fd;
	memcpy(q.token, tok->token, sizeof(q.token));
	if (raw_send(fd, PROTO_CMD_RESUME, 1, &q, sizeof(q))) {
		close(fd);
		return -EIO;
	}
	n = raw_recv(fd, buf, sizeof(buf), 5000);
	st = n > 0 ? frame_status(buf) : n ? n : -ECONNRESET;
	close(fd);
	return st;
}

/*
 * A durable session (protocol 5, a daemon with a journal) can be taken over
 * by a new connection that names it and proves its token: never with a
 * wrong token, never by another uid even with the right one, never while
 * its connection lives, and not at all once the client closed it.
 */
Test(forged, session_tokens_are_refused, .fini = stop, .timeout = 60)
{
	struct passwd *nobody = getpwnam("nobody");
	struct proto_hello h = { .version_min = PROTO_VERSION_RESUME,
				 .version_max = PROTO_VERSION_MAX,
				 .max_frame = PROTO_FRAME_DEFAULT,
				 .max_batch = PROTO_BATCH_DEFAULT };
	struct proto_hello_rpy hr;
	struct proto_session tok, bad;
	uint8_t buf[256];
	char dir[] = "/tmp/iovad-limits-state-XXXXXX", conf[512], cmd[600];
	int fd, n;

	cr_assert_not_null(mkdtemp(dir));
	snprintf(conf, sizeof(conf),
		 "[policy]\nallow_users = nobody\n"
		 "[persist]\nstate_dir = %s\nrequire_fdstore = no\nsync = none\n", dir);
	start_with(conf);
	fd = raw_connect(d.sock);
	cr_assert_geq(fd, 0);
	cr_assert_eq(raw_send(fd, PROTO_CMD_HELLO, 1, &h, sizeof(h)), 0);
	n = raw_recv(fd, buf, sizeof(buf), 5000);
	cr_assert_eq(n, (int)(sizeof(struct proto_hdr) + sizeof(hr) + sizeof(tok)));
	cr_assert_eq(frame_status(buf), 0);
	memcpy(&hr, buf + sizeof(struct proto_hdr), sizeof(hr));
	memcpy(&tok, buf + sizeof(struct proto_hdr) + sizeof(hr), sizeof(tok));
	cr_assert(tok.flags & PROTO_SESSION_DURABLE, "journaled");
	bad = tok;
	bad.token[PROTO_TOKEN_LEN - 1] ^= 1;
	cr_assert_eq(resume_as(&bad, hr.session_id), -EACCES, "one bit of the token wrong");
	memset(&bad, 0, sizeof(bad));
	cr_assert_eq(resume_as(&bad, hr.session_id), -EACCES, "a token of zeros");
	cr_assert_eq(resume_as(&tok, hr.session_id + 1000), -ENOENT, "no such session");
	cr_assert_eq(resume_as(&tok, hr.session_id), -EBUSY, "its connection still holds it");
	if (geteuid() == 0 && nobody) {
		pid_t pid;
		int status;

		cr_assert_eq(chmod(d.dir, 0755), 0);
		cr_assert_eq(chmod(d.sock, 0666), 0);
		pid = fork();
		cr_assert_geq(pid, 0);
		if (pid == 0) {
			if (setgroups(0, NULL) || setgid(nobody->pw_gid) || setuid(nobody->pw_uid))
				_exit(10);
			n = resume_as(&tok, hr.session_id);
			_exit(n == -EACCES ? 0 : 20 + (n < 0 ? -n : 0) % 50);
		}
		cr_assert_eq(waitpid(pid, &status, 0), pid);
		cr_assert(WIFEXITED(status));
		cr_assert_eq(WEXITSTATUS(status), 0, "right token, another uid: exit %d",
			     WEXITSTATUS(status));
	}
	/* The original connection is untouched. */
	cr_assert_eq(raw_send(fd, PROTO_CMD_STATUS, 2, NULL, 0), 0);
	cr_assert_gt(raw_recv(fd, buf, sizeof(buf), 5000), 0);
	cr_assert_eq(frame_status(buf), 0);
	/* Closed by its client, the session is gone: nothing left to take over. */
	close(fd);
	for (int i = 0; i < 200 && (n = resume_as(&tok, hr.session_id)) == -EBUSY; i++)
		usleep(10000);
	cr_assert_eq(n, -ENOENT);
	cr_assert_eq(daemon_stop(&d), 0);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	cr_assert_eq(system(cmd), 0);
}

/* ---- reuse: memory objects ------------------------------------------------------------------------- */

/* Lines of /proc/<daemon>/maps and links in /proc/<daemon>/fd that name this memfd. */
static int daemon_refs(const char *name)
{
	char path[64], line[512];
	int n = 0;
	FILE *f;
	DIR *dir;
	struct dirent *e;

	snprintf(path, sizeof(path), "/proc/%d/maps", (int)d.pid);
	f = fopen(path, "r");
	cr_assert_not_null(f);
	while (fgets(line, sizeof(line), f))
		if (strstr(line, name))
			n++;
	fclose(f);
	snprintf(path, sizeof(path), "/proc/%d/fd", (int)d.pid);
	dir = opendir(path);
	cr_assert_not_null(dir);
	while ((e = readdir(dir))) {
		char lp[600];
		ssize_t k;

		if (e->d_name[0] == '.')
			continue;
		snprintf(lp, sizeof(lp), "%s/%s", path, e->d_name);
		k = readlink(lp, line, sizeof(line) - 1);
		if (k <= 0)
			continue;
		line[k] = 0;
		if (strstr(line, name))
			n++;
	}
	closedir(dir);
	return n;
}

Test(reuse, a_freed_memory_object_is_unmapped_and_its_phys_not_the_clients)
{
	struct client a, b;
	struct iovad_mem *m, *bm;
	struct iovad_iova_state st;
	char name[64];
	uint64_t phys, dma;
	uint8_t buf[64];
	int fd;

	start_with(SMALL_LIMITS);
	up(&a, "sim0");
	up(&b, "sim0");
	snprintf(name, sizeof(name), "iovad-sec-%d", (int)getpid());
	fd = sealed_memfd(name, 4 * PG, 61);
	cr_assert_eq(iovad_mem_import(a.c, fd, 0, 4 * PG, &m), 0);
	close(fd); /* only the daemon holds it now */
	cr_assert_geq(daemon_refs(name), 2, "mapped and held by the daemon");
	phys = iovad_mem_phys(m);

	/* Freed while linked: kept until the last link goes, as the kernel keeps a mapped page. */
	cr_assert(iovad_iova_try_alloc(a.dev, &st, 0, 4 * PG));
	cr_assert_eq(iovad_iova_link(a.dev, &st, phys, 0, 4 * PG, IOVAD_DMA_BIDIRECTIONAL, 0), 0);
	cr_assert_eq(iovad_iova_sync(a.dev, &st, 0, 4 * PG), 0);
	cr_assert_eq(iovad_map_phys(a.dev, phys + PG, PG, IOVAD_DMA_TO_DEVICE, 0, &dma), 0);
	iovad_mem_free(m);
	cr_assert_geq(daemon_refs(name), 2, "pinned by the link and the map");
	cr_assert_eq(iovad_iova_destroy(a.dev, &st, 4 * PG, IOVAD_DMA_BIDIRECTIONAL, 0), 0);
	cr_assert_geq(daemon_refs(name), 2, "still pinned by the map");
	cr_assert_eq(iovad_dev_dma_read(a.dev, dma, buf, sizeof(buf)), 0);
	cr_assert_eq(iovad_unmap_phys(a.dev, dma, PG, IOVAD_DMA_TO_DEVICE, 0), 0);
	cr_assert_eq(daemon_refs(name), 0, "unmapped from the daemon and its fd closed");
	/* The device faults at every IOVA A had. */
	cr_assert_eq(iovad_dev_dma_read(a.dev, st.addr, buf, sizeof(buf)), -EFAULT);
	cr_assert_eq(iovad_dev_dma_read(a.dev, dma, buf, sizeof(buf)), -EFAULT);
	cr_assert_eq(daemon_status(&d).mem_bytes, 0);

	/* B's new memory may take the same phys: A's old phys does not reach it. */
	cr_assert_eq(iovad_mem_alloc(b.c, 4 * PG, &bm), 0);
	cr_assert_eq(iovad_mem_phys(bm), phys, "the allocator places B where A was");
	fill_pattern(iovad_mem_addr(bm), 4 * PG, 62);
	cr_assert_eq(iovad_map_phys(a.dev, phys, PG, IOVAD_DMA_BIDIRECTIONAL, 0, &dma), -EFAULT);
	cr_assert(iovad_iova_try_alloc(a.dev, &st, phys, PG));
	cr_assert_eq(iovad_iova_link(a.dev, &st, phys, 0, PG, IOVAD_DMA_BIDIRECTIONAL, 0), -EFAULT);
	cr_assert_eq(iovad_iova_free(a.dev, &st), 0);
	/* B's own use of it works. */
	cr_assert_eq(iovad_map_phys(b.dev, phys, PG, IOVAD_DMA_TO_DEVICE, 0, &dma), 0);
	cr_assert_eq(iovad_dev_dma_read(b.dev, dma, buf, sizeof(buf)), 0);
	cr_assert_arr_eq(buf, iovad_mem_addr(bm), sizeof(buf));
	cr_assert_eq(iovad_unmap_phys(b.dev, dma, PG, IOVAD_DMA_TO_DEVICE, 0), 0);
	iovad_mem_free(bm);

	/* A's memory left behind at disconnect goes too. */
	fd = sealed_memfd(name, 4 * PG, 63);
	cr_assert_eq(iovad_mem_import(a.c, fd, 0, 4 * PG, &m), 0);
	close(fd);
	cr_assert_geq(daemon_refs(name), 2);
	down(&a);
	cr_assert_eq(daemon_wait_teardowns(&d, 1).teardowns, 1);
	cr_assert_eq(daemon_refs(name), 0, "released at teardown");
	down(&b);
}
