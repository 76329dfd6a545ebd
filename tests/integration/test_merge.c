// SPDX-License-Identifier: MIT
/*
 * test_merge.c - the daemon merges the contiguous LINKs of a batch into one
 * engine call ([domain] merge_links, daemon/session.c link_run()), and
 * nothing a client can see differs from the LINKs one by one.
 *
 * One daemon, two domains that differ only in merge_links (and an untrusted
 * pair, where the aligned pieces are not bounced). Every scenario sends the
 * same batches to a device of each, with the same memory and states, and
 * compares what comes back: the status of every operation, the devices'
 * counters (links, unlinks, mapped and page-table bytes, flushes), and what
 * the device reads at every page of the states, byte for byte, or the
 * fault it gets. The scenarios are the cases where merging could go wrong:
 * a run over a page already linked (the merged call fails, the LINKs go one
 * by one and only that one fails), runs past the end of the memory object
 * or of the state, a run broken by an unaligned piece, by another state or
 * by another direction, a 2 MiB aligned run (the pieces make 4 KiB leaves,
 * so must the run), runs that continue each other across batches, and
 * unlinking pages out of the middle of a merged run.
 *
 * The daemon runs with IOVAD_FAILPOINTS=link_run=every:3, so that one
 * merged call in three fails on purpose and its LINKs go one by one; its
 * "failpoints at exit" line proves that runs were merged at all.
 */
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"

#define PG 4096u
#define MEM_PAGES 1024u /* 4 MiB: room for a 2 MiB aligned run */

static const char conf_text[] =
	"[domain merged]\n"
	"visibility = sync\n"
	"[domain single]\n"
	"merge_links = no\n"
	"[domain umerged]\nflush = strict\n"
	"[domain usingle]\n"
	"merge_links = no\n"
	"[device a]\ndomain = merged\n"
	"[device b]\ndomain = single\n"
	"[device ua]\ndomain = umerged\ntrusted = no\n"
	"[device ub]\ndomain = usingle\ntrusted = no\n";

static struct daemon d;
static struct iovad *c;
static char conf[64], log_path[64];

/* One side of the comparison: a device, its memory, its states. */
struct side {
	struct iovad *c;   /* a connection of its own: the other side's memory is not its */
	struct iovad_dev *dev;
	struct iovad_mem *mem;
	struct iovad_iova_state st[3];
};

static struct side A, B;

static void start(void)
{
	int fd, saved;

	snprintf(conf, sizeof(conf), "/tmp/iovad-merge-%d.conf", (int)getpid());
	snprintf(log_path, sizeof(log_path), "/tmp/iovad-merge-%d.log", (int)getpid());
	fd = open(conf, O_CREAT | O_TRUNC | O_WRONLY, 0600);
	cr_assert_geq(fd, 0);
	cr_assert_eq(write(fd, conf_text, sizeof(conf_text) - 1), (ssize_t)sizeof(conf_text) - 1);
	close(fd);
	/* The daemon's stderr into a file (it inherits fd 2), for its failpoint counts. */
	fd = open(log_path, O_CREAT | O_TRUNC | O_WRONLY, 0600);
	cr_assert_geq(fd, 0);
	saved = dup(2);
	cr_assert_geq(saved, 0);
	setenv("IOVAD_FAILPOINTS", "link_run=every:3", 1);
	dup2(fd, 2);
	daemon_start_config(&d, conf);
	dup2(saved, 2);
	close(saved);
	close(fd);
	unsetenv("IOVAD_FAILPOINTS");
	cr_assert_eq(iovad_connect(d.sock, &c), 0);
}

static void stop(void)
{
	if (A.c)
		iovad_disconnect(A.c);
	if (B.c)
		iovad_disconnect(B.c);
	A.c = B.c = NULL;
	iovad_disconnect(c);
	c = NULL;
	daemon_stop(&d);
	unlink(conf);
	unlink(log_path);
}

TestSuite(merge, .init = start, .fini = stop, .timeout = 60);

static void side_up(struct side *s, const char *dev, uint64_t state_pages)
{
	memset(s, 0, sizeof(*s));
	cr_assert_eq(iovad_connect(d.sock, &s->c), 0);
	cr_assert_eq(iovad_dev_open(s->c, dev, &s->dev), 0);
	cr_assert_eq(iovad_mem_alloc(s->c, MEM_PAGES * PG, &s->mem), 0);
	fill_pattern(iovad_mem_addr(s->mem), MEM_PAGES * PG, 7);
	for (int i = 0; i < 3; i++)
		cr_assert(iovad_iova_try_alloc(s->dev, &s->st[i], iovad_mem_phys(s->mem),
					       state_pages * PG), "state %d", i);
}

static void both_up(const char *da, const char *db, uint64_t state_pages)
{
	side_up(&A, da, state_pages);
	side_up(&B, db, state_pages);
}

/* An operation of a script, applied to either side. */
enum { LINK, SYNC, UNLINK };
struct op {
	int what;
	int st;            /* which state */
	uint64_t mem_off;  /* byte offset in the side's memory object (LINK) */
	uint64_t off;      /* offset in the state */
	uint64_t size;
	enum iovad_dma_dir dir;
};

#define L(s, m, o, n) { LINK, s, (uint64_t)(m), (uint64_t)(o), (uint64_t)(n), IOVAD_DMA_BIDIRECTIONAL }
#define LD(s, m, o, n, dr) { LINK, s, (uint64_t)(m), (uint64_t)(o), (uint64_t)(n), dr }
#define S(s, o, n) { SYNC, s, 0, (uint64_t)(o), (uint64_t)(n), 0 }
#define U(s, o, n) { UNLINK, s, 0, (uint64_t)(o), (uint64_t)(n), IOVAD_DMA_BIDIRECTIONAL }

/* Run ops as one batch on side s; status of each into res. */
static void run_batch(struct side *s, const struct op *ops, size_t n, int *res)
{
	struct iovad_batch *b;

	cr_assert_eq(iovad_batch_new(s->c, &b), 0);
	for (size_t i = 0; i < n; i++) {
		const struct op *o = &ops[i];
		int r;

		if (o->what == LINK)
			r = iovad_batch_link(b, s->dev, &s->st[o->st],
					     iovad_mem_phys(s->mem) + o->mem_off, o->off, o->size,
					     o->dir, 0);
		else if (o->what == SYNC)
			r = iovad_batch_sync(b, s->dev, &s->st[o->st], o->off, o->size);
		else
			r = iovad_batch_unlink(b, s->dev, &s->st[o->st], o->off, o->size, o->dir, 0);
		cr_assert_eq(r, (int)i);
	}
	cr_assert_eq(iovad_batch_submit(b, NULL, NULL), 0);
	cr_assert_eq(iovad_batch_wait(b), 0);
	for (size_t i = 0; i < n; i++)
		res[i] = iovad_batch_op_status(b, i);
	iovad_batch_free(b);
}

/* The same batch on both sides: the same status for every operation. Returns A's. */
static void same_batch(const struct op *ops, size_t n, int *res)
{
	int rb[256];

	cr_assert_leq(n, 256);
	run_batch(&A, ops, n, res);
	run_batch(&B, ops, n, rb);
	for (size_t i = 0; i < n; i++)
		cr_assert_eq(res[i], rb[i], "op %zu: %d merged, %d one by one", i, res[i], rb[i]);
}

/* The same counters, and at every page of every state the same bytes or the same fault. */
static void same_view(uint64_t state_pages)
{
	struct iovad_dev_stats sa, sb;
	static uint8_t ba[PG], bb[PG];

	cr_assert_eq(iovad_dev_stats(A.dev, &sa), 0);
	cr_assert_eq(iovad_dev_stats(B.dev, &sb), 0);
	cr_assert_eq(sa.links, sb.links, "links %" PRIu64 " vs %" PRIu64, sa.links, sb.links);
	cr_assert_eq(sa.unlinks, sb.unlinks);
	cr_assert_eq(sa.syncs, sb.syncs);
	cr_assert_eq(sa.iotlb_flushes, sb.iotlb_flushes);
	cr_assert_eq(sa.mapped_bytes, sb.mapped_bytes, "mapped %" PRIu64 " vs %" PRIu64,
		     sa.mapped_bytes, sb.mapped_bytes);
	cr_assert_eq(sa.table_bytes, sb.table_bytes, "tables %" PRIu64 " vs %" PRIu64,
		     sa.table_bytes, sb.table_bytes);
	cr_assert_eq(sa.bounced_bytes, sb.bounced_bytes);
	for (int i = 0; i < 3; i++) {
		for (uint64_t p = 0; p < state_pages; p++) {
			int ra = iovad_dev_dma_read(A.dev, A.st[i].addr + p * PG, ba, PG);
			int rb = iovad_dev_dma_read(B.dev, B.st[i].addr + p * PG, bb, PG);

			cr_assert_eq(ra, rb, "state %d page %" PRIu64 ": %d vs %d", i, p, ra, rb);
			if (!ra)
				cr_assert_eq(memcmp(ba, bb, PG), 0, "state %d page %" PRIu64, i, p);
		}
	}
}

/* The link_run counts of the daemon's "failpoints at exit" line. */
static void link_run_counts(unsigned long *hits, unsigned long *fails)
{
	char buf[65536];
	int fd;
	ssize_t n;

	iovad_disconnect(A.c);
	iovad_disconnect(B.c);
	A.c = B.c = NULL;
	iovad_disconnect(c);
	c = NULL;
	cr_assert_eq(daemon_stop(&d), 0);
	fd = open(log_path, O_RDONLY);
	cr_assert_geq(fd, 0);
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	cr_assert_gt(n, 0);
	buf[n] = 0;
	cr_assert(fp_exit_counts(buf, "link_run", hits, fails), "no link_run counts in: %s", buf);
}

Test(merge, contiguous_pages_conflicts_and_bounds_answer_as_one_by_one)
{
	const uint64_t sp = 64;
	int r[256];
	unsigned long hits, fails;

	both_up("a", "b", sp);
	/* 1. 64 pages of state 0, page by page, then one sync. */
	{
		struct op ops[65];

		for (int i = 0; i < 64; i++)
			ops[i] = (struct op)L(0, i * PG, i * PG, PG);
		ops[64] = (struct op)S(0, 0, 64 * PG);
		same_batch(ops, 65, r);
		for (int i = 0; i < 65; i++)
			cr_assert_eq(r[i], 0, "op %d", i);
	}
	same_view(sp);
	/* 2. Page 40 of state 1 first; then all 64: only op 40 fails (-EEXIST). */
	{
		struct op one[] = { L(1, 40 * PG, 40 * PG, PG) };
		struct op ops[65];

		same_batch(one, 1, r);
		cr_assert_eq(r[0], 0);
		for (int i = 0; i < 64; i++)
			ops[i] = (struct op)L(1, i * PG, i * PG, PG);
		ops[64] = (struct op)S(1, 0, 64 * PG);
		same_batch(ops, 65, r);
		for (int i = 0; i < 64; i++)
			cr_assert_eq(r[i], i == 40 ? -EEXIST : 0, "op %d: %d", i, r[i]);
	}
	same_view(sp);
	/* 3. State 2: a run past the memory object's end (the last 4 pages: -EFAULT)... */
	{
		struct op ops[9];

		for (int i = 0; i < 8; i++)
			ops[i] = (struct op)L(2, (MEM_PAGES - 4 + i) * PG, i * PG, PG);
		ops[8] = (struct op)S(2, 0, 8 * PG);
		same_batch(ops, 9, r);
		for (int i = 0; i < 8; i++)
			cr_assert_eq(r[i], i < 4 ? 0 : -EFAULT, "op %d: %d", i, r[i]);
	}
	/* ...and one past the state's end (-EINVAL from page 64 on). */
	{
		struct op ops[9];

		for (int i = 0; i < 8; i++)
			ops[i] = (struct op)L(2, (100 + i) * PG, (60 + i) * PG, PG);
		ops[8] = (struct op)S(2, 0, sp * PG);
		same_batch(ops, 9, r);
		for (int i = 0; i < 8; i++)
			cr_assert_eq(r[i], i < 4 ? 0 : -EINVAL, "op %d: %d", i, r[i]);
	}
	same_view(sp);
	/*
	 * 4. Runs broken by an unaligned piece, by another state, by another
	 * direction, and two runs that continue each other across batches.
	 */
	{
		struct op ops[] = {
			L(2, 200 * PG, 8 * PG, PG), L(2, 201 * PG, 9 * PG, PG),
			L(2, 202 * PG + 512, 10 * PG, PG), /* unaligned phys: -EIO (offset > 0) */
			L(2, 203 * PG, 11 * PG, PG), L(2, 204 * PG, 12 * PG, PG),
			U(0, 10 * PG, 4 * PG),       /* another state between */
			L(2, 205 * PG, 13 * PG, PG), L(2, 206 * PG, 14 * PG, PG),
			LD(2, 207 * PG, 15 * PG, PG, IOVAD_DMA_TO_DEVICE),
			LD(2, 208 * PG, 16 * PG, PG, IOVAD_DMA_TO_DEVICE),
			L(0, 10 * PG, 10 * PG, PG), L(0, 11 * PG, 11 * PG, PG),
			L(0, 12 * PG, 12 * PG, PG), L(0, 13 * PG, 13 * PG, PG),
			S(2, 0, sp * PG), S(0, 0, sp * PG),
		};

		same_batch(ops, sizeof(ops) / sizeof(ops[0]), r);
		cr_assert_eq(r[2], -EIO, "unaligned phys with offset > 0: %d", r[2]);
		for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++)
			if (i != 2)
				cr_assert_eq(r[i], 0, "op %zu: %d", i, r[i]);
	}
	{
		struct op ops[] = { L(2, 209 * PG, 17 * PG, PG), L(2, 210 * PG, 18 * PG, PG),
				    L(2, 211 * PG, 19 * PG, PG), S(2, 0, sp * PG) };

		same_batch(ops, 4, r);
		for (int i = 0; i < 4; i++)
			cr_assert_eq(r[i], 0);
	}
	same_view(sp);
	/* 5. Pages out of the middle of merged runs: they fault, their neighbours read. */
	{
		struct op ops[] = { U(0, 33 * PG, PG), U(0, 50 * PG, 3 * PG), U(2, 18 * PG, PG) };

		same_batch(ops, 3, r);
		for (int i = 0; i < 3; i++)
			cr_assert_eq(r[i], 0);
	}
	same_view(sp);
	{
		uint8_t buf[64];

		cr_assert_eq(iovad_dev_dma_read(A.dev, A.st[0].addr + 33 * PG, buf, sizeof(buf)),
			     -EFAULT);
		cr_assert_eq(iovad_dev_dma_read(A.dev, A.st[0].addr + 34 * PG, buf, sizeof(buf)), 0);
		cr_assert_eq(memcmp(buf, (uint8_t *)iovad_mem_addr(A.mem) + 34 * PG, sizeof(buf)),
			     0);
	}
	/* Everything back: the states free, the memory unpinned, nothing mapped. */
	for (int i = 0; i < 3; i++) {
		struct op ops[] = { U(i, 0, sp * PG) };

		same_batch(ops, 1, r);
		cr_assert_eq(iovad_iova_free(A.dev, &A.st[i]), 0);
		cr_assert_eq(iovad_iova_free(B.dev, &B.st[i]), 0);
	}
	{
		struct iovad_dev_stats sa;

		cr_assert_eq(iovad_dev_stats(A.dev, &sa), 0);
		cr_assert_eq(sa.mapped_bytes, 0);
	}
	link_run_counts(&hits, &fails);
	cr_assert_geq(hits, 8, "runs were merged: %lu", hits);
	cr_assert_eq(fails, hits / 3, "one in three failed on purpose: %lu of %lu", fails, hits);
}

Test(merge, a_2m_aligned_run_keeps_4k_leaves)
{
	const uint64_t sp = 512;
	int r[256];
	unsigned long hits, fails;
	struct iovad_dev_stats sa;

	/*
	 * 2 MiB in one batch: 256 LINKs of 8 KiB. Merged, it is one 2 MiB
	 * aligned range, which the engine would map as one block; the pieces
	 * one by one make 4 KiB leaves, and so must the run.
	 */
	both_up("a", "b", sp);
	cr_assert_eq(A.st[0].addr & ((2u << 20) - 1), 0, "2 MiB aligned");
	{
		struct op ops[256];

		for (int i = 0; i < 256; i++)
			ops[i] = (struct op)L(0, i * 2 * PG, i * 2 * PG, 2 * PG);
		same_batch(ops, 256, r);
		for (int i = 0; i < 256; i++)
			cr_assert_eq(r[i], 0, "op %d", i);
	}
	{
		struct op ops[] = { S(0, 0, sp * PG) };

		same_batch(ops, 1, r);
		cr_assert_eq(r[0], 0);
	}
	/* The same tables: a last-level table under the 2 MiB on both sides. */
	same_view(sp);
	cr_assert_eq(iovad_dev_stats(A.dev, &sa), 0);
	cr_assert_geq(sa.table_bytes, 4 * PG, "root and three levels below: %" PRIu64,
		      sa.table_bytes);
	/* One page out of it: no block to split, on either side. */
	{
		struct op ops[] = { U(0, 300 * PG, PG) };

		same_batch(ops, 1, r);
		cr_assert_eq(r[0], 0);
	}
	same_view(sp);
	link_run_counts(&hits, &fails);
	cr_assert_eq(hits, 1, "the 256 LINKs were one run: %lu", hits);
}

Test(merge, untrusted_devices_aligned_and_bounced_pieces)
{
	const uint64_t sp = 32;
	int r[256];
	struct op ops[34];

	both_up("ua", "ub", sp);
	/* Whole pages (not bounced, mergeable), then an unaligned size that bounces its tail. */
	for (int i = 0; i < 16; i++)
		ops[i] = (struct op)L(0, i * PG, i * PG, PG);
	ops[16] = (struct op)L(0, 16 * PG, 16 * PG, PG + 100);
	ops[17] = (struct op)S(0, 0, sp * PG);
	same_batch(ops, 18, r);
	for (int i = 0; i < 18; i++)
		cr_assert_eq(r[i], 0, "op %d: %d", i, r[i]);
	same_view(sp);
}
