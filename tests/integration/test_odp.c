// SPDX-License-Identifier: MIT
/*
 * test_odp.c - on-demand paging against the real daemon: regions that map
 * nothing until the device touches them, faults served in batches,
 * invalidation by discard, implicit regions, prefetch, in-place permission
 * upgrades, concurrency, and faults resolved by the client itself.
 *
 * The first test follows rdma-core's tests/test_odp.py: every iteration
 * discards the pages, so every device access faults them back in, and the
 * bytes must match both ways.
 */
#include <pthread.h>
#include <stdatomic.h>

#include "harness.h"

#define PG 4096u

static struct daemon d;

static void setup(void)
{
	daemon_start(&d);
}

static void teardown(void)
{
	daemon_stop(&d);
}

static uint64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/*
 * Wait up to ms for a queued user fault: poll the event fd, process, take.
 * Bounded by time, not by iterations: while another thread holds the reader
 * role the event fd can stay readable and poll() return at once.
 */
static int wait_fault(struct iovad *c, struct iovad_odp_fault *f, unsigned int ms)
{
	uint64_t end = mono_ms() + ms;
	int r;

	do {
		struct pollfd p = { .fd = iovad_event_fd(c), .events = POLLIN };

		(void)poll(&p, 1, 10);
		(void)iovad_process(c);
		r = iovad_odp_fault_next(c, f);
		if (r != -EAGAIN)
			return r;
		usleep(1000);
	} while (mono_ms() < end);
	return r;
}

/* Start the daemon with an extra configuration text. */
static void start_with(const char *text)
{
	char path[] = "/tmp/iovad-odp-conf-XXXXXX";
	int fd = mkstemp(path);

	cr_assert_geq(fd, 0);
	cr_assert_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
	daemon_start_config(&d, path);
	unlink(path);
}

TestSuite(odp, .init = setup, .fini = teardown, .timeout = 120);
/* Tests that start the daemon with a configuration of their own. */
TestSuite(odp_conf, .fini = teardown, .timeout = 120);

struct client {
	struct iovad *c;
	struct iovad_dev *dev;
	struct iovad_mem *mem;
	struct iovad_odp *odp;
	size_t size;
};

static void client_up(struct client *k, size_t size, uint32_t access, uint32_t flags)
{
	k->size = size;
	cr_assert_eq(iovad_connect(d.sock, &k->c), 0);
	cr_assert_eq(iovad_dev_open(k->c, "sim0", &k->dev), 0);
	cr_assert_eq(iovad_mem_alloc(k->c, size, &k->mem), 0);
	cr_assert_eq(iovad_odp_reg(k->dev, k->mem, 0, size, access, flags, &k->odp), 0);
}

static void client_down(struct client *k)
{
	cr_assert_eq(iovad_odp_dereg(k->odp), 0);
	iovad_mem_free(k->mem);
	iovad_dev_close(k->dev);
	iovad_disconnect(k->c);
}

static struct iovad_odp_stats stats_of(struct iovad_odp *o)
{
	struct iovad_odp_stats s;

	cr_assert_eq(iovad_odp_stats(o, &s), 0);
	return s;
}

#define RW (IOVAD_ACCESS_LOCAL_READ | IOVAD_ACCESS_DEVICE_READ | IOVAD_ACCESS_DEVICE_WRITE)

Test(odp, registration_maps_nothing_and_first_touch_faults)
{
	struct client k;
	struct iovad_odp_stats s;
	uint8_t buf[PG];

	client_up(&k, 1 << 20, RW, 0);
	cr_assert_neq(iovad_odp_iova(k.odp), 0);
	cr_assert_eq(iovad_odp_size(k.odp), 1 << 20);
	s = stats_of(k.odp);
	cr_assert_eq(s.mapped_bytes, 0, "nothing mapped at registration");
	cr_assert_eq(s.page_faults, 0);
	fill_pattern(iovad_mem_addr(k.mem), k.size, 3);
	cr_assert_eq(iovad_dev_dma_read(k.dev, iovad_odp_iova(k.odp) + 5 * PG, buf, sizeof(buf)), 0);
	cr_assert_arr_eq(buf, (uint8_t *)iovad_mem_addr(k.mem) + 5 * PG, sizeof(buf));
	s = stats_of(k.odp);
	cr_assert_eq(s.page_faults_handled, 1);
	/* The default 64 KiB fault-around window, aligned: pages 0..15. */
	cr_assert_eq(s.page_faults, 16);
	cr_assert_eq(s.mapped_bytes, 16 * PG);
	cr_assert_eq(s.syncs, 1, "one sync for the whole window");
	cr_assert_eq(s.fault_count, 1);
	cr_assert_gt(s.fault_p50_ns, 0);
	/* A page inside the window does not fault again. */
	cr_assert_eq(iovad_dev_dma_read(k.dev, iovad_odp_iova(k.odp) + 15 * PG, buf, 64), 0);
	cr_assert_eq(stats_of(k.odp).page_faults_handled, 1);
	client_down(&k);
}

/* rdma-core's test_odp: 100 rounds, each forcing faults by discarding first. */
Test(odp, hundred_iterations_of_discard_then_device_read_and_write)
{
	struct client k;
	const size_t len = 64 * PG;
	uint8_t *want = malloc(len), *got = malloc(len);
	uint64_t iova;

	cr_assert(want && got);
	client_up(&k, len, RW, 0);
	iova = iovad_odp_iova(k.odp);
	for (unsigned int it = 0; it < 100; it++) {
		uint8_t *mem = iovad_mem_addr(k.mem);
		size_t off = (it * 7 % 48) * PG, n = (1 + it % 16) * PG;

		/* Drop the pages: the device must fault them back in. */
		cr_assert_eq(iovad_mem_discard(k.mem, 0, len), 0);
		for (size_t i = 0; i < 64; i++)
			cr_assert_eq(mem[i * PG], 0, "a discarded page reads as zeros");
		/* Client writes, device reads. */
		fill_pattern(mem + off, n, it);
		cr_assert_eq(iovad_dev_dma_read(k.dev, iova + off, got, n), 0, "iteration %u", it);
		cr_assert_arr_eq(got, mem + off, n, "device read, iteration %u", it);
		/* Device writes, client reads. */
		fill_pattern(want, n, it + 1000);
		cr_assert_eq(iovad_dev_dma_write(k.dev, iova + off, want, n), 0, "iteration %u", it);
		cr_assert_arr_eq(mem + off, want, n, "device write, iteration %u", it);
	}
	{
		struct iovad_odp_stats s = stats_of(k.odp);

		cr_assert_geq(s.page_faults_handled, 100, "every round faulted");
		cr_assert_geq(s.page_invalidations_handled, 100);
		cr_assert_eq(s.mapped_bytes / PG,
			     s.page_faults + s.page_prefetch - s.perm_upgrades - s.page_invalidations,
			     "mapped = faulted + prefetched - upgraded - invalidated");
	}
	client_down(&k);
	free(want);
	free(got);
}

Test(odp, write_to_a_read_only_page_upgrades_in_place)
{
	struct client k;
	struct iovad_odp_stats s0, s1;
	uint8_t buf[PG], w[PG];

	client_up(&k, 16 * PG, RW, 0);
	cr_assert_eq(iovad_dev_dma_read(k.dev, iovad_odp_iova(k.odp), buf, sizeof(buf)), 0);
	s0 = stats_of(k.odp);
	cr_assert_eq(s0.perm_upgrades, 0);
	fill_pattern(w, sizeof(w), 9);
	cr_assert_eq(iovad_dev_dma_write(k.dev, iovad_odp_iova(k.odp), w, sizeof(w)), 0);
	cr_assert_arr_eq(iovad_mem_addr(k.mem), w, sizeof(w));
	s1 = stats_of(k.odp);
	cr_assert_gt(s1.perm_upgrades, 0, "the read-only mapping was upgraded");
	cr_assert_eq(s1.page_invalidations, s0.page_invalidations, "without an unlink");
	cr_assert_eq(s1.mapped_bytes, s0.mapped_bytes);
	client_down(&k);
}

Test(odp, access_beyond_rights_or_outside_faults_with_a_record)
{
	struct client k;
	struct iovad_fault f;
	uint8_t buf[64] = { 0 };

	client_up(&k, 16 * PG, IOVAD_ACCESS_LOCAL_READ | IOVAD_ACCESS_DEVICE_READ, 0);
	cr_assert_eq(iovad_dev_dma_write(k.dev, iovad_odp_iova(k.odp) + PG, buf, sizeof(buf)),
		     -EFAULT);
	cr_assert_eq(iovad_dev_last_fault(k.dev, &f), 0);
	cr_assert_eq(f.iova, iovad_odp_iova(k.odp) + PG);
	cr_assert_eq(f.access, 2);
	cr_assert_eq(stats_of(k.odp).fault_errors, 1);
	cr_assert_eq(stats_of(k.odp).mapped_bytes, 0, "nothing mapped for a refused access");
	/* Reads are within the rights. */
	cr_assert_eq(iovad_dev_dma_read(k.dev, iovad_odp_iova(k.odp) + PG, buf, sizeof(buf)), 0);
	/* Past the end of the region: not this client's, not present. */
	cr_assert_eq(iovad_dev_dma_read(k.dev, iovad_odp_iova(k.odp) + 16 * PG, buf, 8), -EFAULT);
	cr_assert_eq(iovad_dev_last_fault(k.dev, &f), 0);
	cr_assert_eq(f.reason, 1);
	client_down(&k);
}

/*
 * A prefetch over the whole of a huge implicit region with one small object
 * in it costs what is backed: the daemon steps over each hole at once.
 * Walked a granule at a time, 1 TiB held the daemon's only thread for 3 s
 * (the session fuzzer found it at 64 TiB); the test's timeout catches that.
 */
Test(odp, prefetch_over_a_sparse_implicit_region_skips_its_holes, .timeout = 60)
{
	struct iovad_odp_stats st = { 0 };
	struct iovad *c;
	struct iovad_dev *dev;
	struct iovad_mem *m;
	struct iovad_odp *odp;
	uint8_t buf[PG];

	cr_assert_eq(iovad_connect(d.sock, &c), 0);
	cr_assert_eq(iovad_dev_open(c, "sim0", &dev), 0);
	cr_assert_eq(iovad_mem_alloc(c, 8 * PG, &m), 0);
	fill_pattern(iovad_mem_addr(m), 8 * PG, 9);
	/* 64 TiB: granule by granule that is 16 G steps, minutes; the timeout catches it. */
	cr_assert_eq(iovad_odp_reg(dev, NULL, 0, (size_t)64 << 40, RW, IOVAD_ODP_IMPLICIT, &odp),
		     0);
	cr_assert_eq(iovad_odp_size(odp), (size_t)64 << 40);
	cr_assert_eq(iovad_odp_advise(odp, IOVAD_ADVISE_PREFETCH_WRITE, 0, iovad_odp_size(odp),
				      IOVAD_ADVISE_FLAG_FLUSH), 0);
	cr_assert_eq(iovad_odp_stats(odp, &st), 0);
	cr_assert_eq(st.page_prefetch, 8, "every backed page, and only those");
	/* Mapped already: the device reads without a fault. */
	cr_assert_eq(iovad_dev_dma_read(dev, iovad_odp_mem_iova(odp, m) + 3 * PG, buf, PG), 0);
	cr_assert_arr_eq(buf, (uint8_t *)iovad_mem_addr(m) + 3 * PG, PG);
	cr_assert_eq(iovad_odp_stats(odp, &st), 0);
	cr_assert_eq(st.page_faults_handled, 0);
	iovad_odp_dereg(odp);
	iovad_mem_free(m);
	iovad_dev_close(dev);
	iovad_disconnect(c);
}

Test(odp, implicit_region_covers_present_and_future_objects)
{
	struct iovad *c;
	struct iovad_dev *dev;
	struct iovad_mem *m1, *m2;
	struct iovad_odp *odp;
	uint8_t buf[PG], w[PG];

	cr_assert_eq(iovad_connect(d.sock, &c), 0);
	cr_assert_eq(iovad_dev_open(c, "sim0", &dev), 0);
	cr_assert_eq(iovad_mem_alloc(c, 8 * PG, &m1), 0);
	cr_assert_eq(iovad_odp_reg(dev, NULL, 0, 0, RW, IOVAD_ODP_IMPLICIT, &odp), 0);
	cr_assert_geq(iovad_odp_size(odp), (size_t)1 << 30, "a large default range");
	cr_assert_eq(iovad_mem_alloc(c, 8 * PG, &m2), 0, "registered after the region");
	cr_assert_neq(iovad_odp_mem_iova(odp, m1), iovad_odp_mem_iova(odp, m2));
	fill_pattern(iovad_mem_addr(m1), 8 * PG, 1);
	fill_pattern(iovad_mem_addr(m2), 8 * PG, 2);
	cr_assert_eq(iovad_dev_dma_read(dev, iovad_odp_mem_iova(odp, m1) + PG, buf, PG), 0);
	cr_assert_arr_eq(buf, (uint8_t *)iovad_mem_addr(m1) + PG, PG);
	cr_assert_eq(iovad_dev_dma_read(dev, iovad_odp_mem_iova(odp, m2) + 2 * PG, buf, PG), 0);
	cr_assert_arr_eq(buf, (uint8_t *)iovad_mem_addr(m2) + 2 * PG, PG);
	fill_pattern(w, PG, 77);
	cr_assert_eq(iovad_dev_dma_write(dev, iovad_odp_mem_iova(odp, m2), w, PG), 0);
	cr_assert_arr_eq(iovad_mem_addr(m2), w, PG);
	/* A freed object leaves the region: its IOVA faults and finds nothing. */
	{
		uint64_t gone = iovad_odp_mem_iova(odp, m1);

		iovad_mem_free(m1);
		cr_assert_eq(iovad_dev_dma_read(dev, gone, buf, 64), -EFAULT);
	}
	cr_assert_eq(iovad_odp_dereg(odp), 0);
	iovad_mem_free(m2);
	iovad_disconnect(c);
}

Test(odp, every_prefetch_variant)
{
	struct client k;
	struct iovad_odp_stats s;
	uint8_t buf[PG];
	uint64_t iova;

	client_up(&k, 64 * PG, RW, 0);
	iova = iovad_odp_iova(k.odp);
	/* PREFETCH, synchronous: exactly the pages asked for, read-only. */
	cr_assert_eq(iovad_odp_advise(k.odp, IOVAD_ADVISE_PREFETCH, 0, 4 * PG,
				      IOVAD_ADVISE_FLAG_FLUSH), 0);
	s = stats_of(k.odp);
	cr_assert_eq(s.page_prefetch, 4);
	cr_assert_eq(s.mapped_bytes, 4 * PG);
	cr_assert_eq(iovad_dev_dma_read(k.dev, iova, buf, 4 * 1024), 0);
	cr_assert_eq(stats_of(k.odp).page_faults_handled, 0, "prefetched: no fault");
	/* PREFETCH_WRITE: writes go through without a fault. */
	cr_assert_eq(iovad_odp_advise(k.odp, IOVAD_ADVISE_PREFETCH_WRITE, 8 * PG, 4 * PG,
				      IOVAD_ADVISE_FLAG_FLUSH), 0);
	cr_assert_eq(iovad_dev_dma_write(k.dev, iova + 8 * PG, buf, PG), 0);
	cr_assert_eq(stats_of(k.odp).page_faults_handled, 0);
	/* PREFETCH_NO_FAULT maps resident pages only: discarded ones stay unmapped. */
	memset((uint8_t *)iovad_mem_addr(k.mem) + 16 * PG, 1, 2 * PG); /* resident */
	cr_assert_eq(iovad_mem_discard(k.mem, 18 * PG, 2 * PG), 0);   /* not resident */
	cr_assert_eq(iovad_odp_advise(k.odp, IOVAD_ADVISE_PREFETCH_NO_FAULT, 16 * PG, 4 * PG,
				      IOVAD_ADVISE_FLAG_FLUSH), 0);
	s = stats_of(k.odp);
	cr_assert_eq(s.page_prefetch, 4 + 4 + 2, "only the two resident pages");
	cr_assert_eq(iovad_dev_dma_read(k.dev, iova + 18 * PG, buf, 64), 0);
	cr_assert_eq(stats_of(k.odp).page_faults_handled, 1, "the discarded page faulted");
	/* Asynchronous PREFETCH: returns at once, maps soon after. */
	cr_assert_eq(iovad_odp_advise(k.odp, IOVAD_ADVISE_PREFETCH, 32 * PG, 8 * PG, 0), 0);
	for (int i = 0; i < 2000 && stats_of(k.odp).page_prefetch < 18; i++)
		usleep(5000);
	cr_assert_eq(stats_of(k.odp).page_prefetch, 18);
	/* Bad advice arguments. */
	cr_assert_eq(iovad_odp_advise(k.odp, IOVAD_ADVISE_PREFETCH, 60 * PG, 8 * PG, 0), -EINVAL);
	cr_assert_eq(iovad_odp_advise(k.odp, (enum iovad_odp_advice)7, 0, PG, 0), -EINVAL);
	client_down(&k);
}

Test(odp, invalidate_unmaps_with_one_flush_and_the_next_access_faults)
{
	struct client k;
	struct iovad_odp_stats s0, s1;
	uint8_t buf[64];

	client_up(&k, 64 * PG, RW, 0);
	cr_assert_eq(iovad_odp_advise(k.odp, IOVAD_ADVISE_PREFETCH, 0, 32 * PG,
				      IOVAD_ADVISE_FLAG_FLUSH), 0);
	s0 = stats_of(k.odp);
	cr_assert_eq(iovad_odp_invalidate(k.odp, 8 * PG, 16 * PG), 0);
	s1 = stats_of(k.odp);
	cr_assert_eq(s1.page_invalidations - s0.page_invalidations, 16);
	cr_assert_eq(s1.page_invalidations_handled - s0.page_invalidations_handled, 1);
	cr_assert_eq(s1.mapped_bytes, 16 * PG);
	cr_assert_eq(iovad_dev_dma_read(k.dev, iovad_odp_iova(k.odp) + 8 * PG, buf, 64), 0);
	cr_assert_eq(stats_of(k.odp).page_faults_handled, s1.page_faults_handled + 1);
	cr_assert_eq(iovad_odp_invalidate(k.odp, 60 * PG, 8 * PG), -EINVAL, "beyond the end");
	client_down(&k);
}

/* ---- the kernel's per-page sync mode, for comparison ---- */

Test(odp_conf, per_page_mode_syncs_every_page)
{
	struct client k;
	struct iovad_odp_stats s;
	uint8_t buf[PG];

	start_with("[odp]\nsync = per-page\nfault_around = 64K\n");
	client_up(&k, 64 * PG, RW, 0);
	cr_assert_eq(iovad_dev_dma_read(k.dev, iovad_odp_iova(k.odp), buf, sizeof(buf)), 0);
	s = stats_of(k.odp);
	cr_assert_eq(s.page_faults, 16);
	cr_assert_eq(s.syncs, 16, "one sync per page, as hmm_dma_map");
	cr_assert_eq(s.flushes, 16);
	client_down(&k);
}

Test(odp, batch_mode_syncs_once_per_window)
{
	struct client k;
	struct iovad_odp_stats s;
	uint8_t buf[PG];

	client_up(&k, 64 * PG, RW, 0);
	cr_assert_eq(iovad_dev_dma_read(k.dev, iovad_odp_iova(k.odp), buf, sizeof(buf)), 0);
	s = stats_of(k.odp);
	cr_assert_eq(s.page_faults, 16);
	cr_assert_eq(s.syncs, 1);
	cr_assert_eq(s.flushes, 1);
	client_down(&k);
}

/* ---- concurrency: threads and clients, faults against invalidations ---- */

struct worker {
	struct client *k;
	unsigned int id;
	unsigned int rounds;
	int err;
};

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	struct client *k = w->k;
	uint8_t *mem = iovad_mem_addr(k->mem);
	size_t off = (size_t)w->id * 16 * PG, n = 16 * PG;
	uint8_t *buf = malloc(n), *want = malloc(n);
	uint64_t iova = iovad_odp_iova(k->odp) + off;

	for (unsigned int r = 0; r < w->rounds && !w->err; r++) {
		fill_pattern(want, n, w->id * 1000 + r);
		if (iovad_dev_dma_write(k->dev, iova, want, n) || memcmp(mem + off, want, n)) {
			w->err = 1; /* a lost write */
			break;
		}
		if (r % 3 == 0 && iovad_mem_discard(k->mem, off, n)) {
			w->err = 2;
			break;
		}
		if (r % 3 == 1 && iovad_odp_invalidate(k->odp, off, n)) {
			w->err = 3;
			break;
		}
		if (iovad_dev_dma_read(k->dev, iova, buf, n)) {
			w->err = 4;
			break;
		}
		/* After a discard the device must see zeros, never the old bytes. */
		if (r % 3 == 0) {
			for (size_t i = 0; i < n; i++)
				if (buf[i]) {
					w->err = 5;
					break;
				}
		} else if (memcmp(buf, want, n)) {
			w->err = 6;
		}
	}
	free(buf);
	free(want);
	return NULL;
}

Test(odp, concurrent_faults_and_invalidations_threads_and_clients)
{
	enum { CLIENTS = 3, THREADS = 4, ROUNDS = 60 };
	struct client k[CLIENTS];
	struct worker w[CLIENTS][THREADS];
	pthread_t t[CLIENTS][THREADS];

	for (int c = 0; c < CLIENTS; c++)
		client_up(&k[c], THREADS * 16 * PG, RW, 0);
	for (int c = 0; c < CLIENTS; c++)
		for (int i = 0; i < THREADS; i++) {
			w[c][i] = (struct worker){ .k = &k[c], .id = (unsigned int)i,
						   .rounds = ROUNDS };
			cr_assert_eq(pthread_create(&t[c][i], NULL, worker_main, &w[c][i]), 0);
		}
	for (int c = 0; c < CLIENTS; c++)
		for (int i = 0; i < THREADS; i++) {
			pthread_join(t[c][i], NULL);
			cr_assert_eq(w[c][i].err, 0, "client %d thread %d: error %d", c, i,
				     w[c][i].err);
		}
	for (int c = 0; c < CLIENTS; c++) {
		struct iovad_odp_stats s = stats_of(k[c].odp);

		cr_assert_eq(s.mapped_bytes / PG,
			     s.page_faults + s.page_prefetch - s.perm_upgrades - s.page_invalidations,
			     "client %d: the counters add up", c);
		cr_assert_geq(s.page_invalidations_handled, THREADS * (ROUNDS / 3) * 2);
		cr_assert_eq(s.fault_errors, 0);
		client_down(&k[c]);
	}
	{
		struct proto_status_rpy st = daemon_status(&d);

		cr_assert_eq(st.mem_bytes, 0, "no memory left behind");
		cr_assert_eq(st.teardowns, 0, "every client cleaned up after itself");
	}
}

/* ---- user-handled faults ---- */

struct filler {
	struct iovad *c;
	struct client *k;
	atomic_int calls;
	int answer;
};

static void fill_cb(const struct iovad_odp_fault *f, void *arg)
{
	struct filler *fl = arg;
	uint8_t *mem = iovad_mem_addr(fl->k->mem);

	/* Fill the window from "elsewhere", then say so. */
	memset(mem + f->offset, 0xc3, f->len);
	atomic_fetch_add(&fl->calls, 1);
	(void)iovad_odp_fault_complete(fl->c, f->id, fl->answer);
}

Test(odp, user_fault_resolved_by_a_callback)
{
	struct client k;
	struct filler fl = { .answer = 0 };
	uint8_t buf[256];

	client_up(&k, 64 * PG, RW, IOVAD_ODP_USER_FAULTS);
	fl.c = k.c;
	fl.k = &k;
	cr_assert_eq(iovad_odp_set_fault_handler(k.odp, fill_cb, &fl), 0);
	/* One thread: the library runs the handler while the read waits. */
	cr_assert_eq(iovad_dev_dma_read(k.dev, iovad_odp_iova(k.odp) + 3 * PG, buf, sizeof(buf)),
		     0);
	for (size_t i = 0; i < sizeof(buf); i++)
		cr_assert_eq(buf[i], 0xc3);
	cr_assert_eq(atomic_load(&fl.calls), 1);
	cr_assert_eq(stats_of(k.odp).user_faults, 1);
	client_down(&k);
}

Test(odp, user_fault_failed_by_the_handler)
{
	struct client k;
	struct filler fl = { .answer = -EIO };
	uint8_t buf[64];

	client_up(&k, 16 * PG, RW, IOVAD_ODP_USER_FAULTS);
	fl.c = k.c;
	fl.k = &k;
	cr_assert_eq(iovad_odp_set_fault_handler(k.odp, fill_cb, &fl), 0);
	cr_assert_eq(iovad_dev_dma_read(k.dev, iovad_odp_iova(k.odp), buf, sizeof(buf)), -EFAULT);
	cr_assert_eq(stats_of(k.odp).fault_errors, 1);
	cr_assert_eq(stats_of(k.odp).mapped_bytes, 0);
	client_down(&k);
}

struct reader {
	struct client *k;
	int r;
};

static void *read_main(void *arg)
{
	struct reader *rd = arg;
	uint8_t buf[64];

	rd->r = iovad_dev_dma_read(rd->k->dev, iovad_odp_iova(rd->k->odp), buf, sizeof(buf));
	return NULL;
}

Test(odp_conf, user_fault_through_the_pollable_queue_and_the_timeout)
{
	struct client k;
	struct iovad_odp_fault f;
	struct reader rd;
	pthread_t t;
	int r;

	start_with("[odp]\nuser_fault_timeout_ms = 300\n");
	client_up(&k, 16 * PG, RW, IOVAD_ODP_USER_FAULTS);
	rd.k = &k;
	/* Answered through iovad_odp_fault_next(), from another thread. */
	cr_assert_eq(pthread_create(&t, NULL, read_main, &rd), 0);
	r = wait_fault(k.c, &f, 20000);
	cr_assert_eq(r, 0);
	cr_assert_eq(f.odp, k.odp);
	cr_assert_eq(f.access, 1);
	cr_assert_eq(f.iova, iovad_odp_iova(k.odp));
	memset(iovad_mem_addr(k.mem), 0x11, f.len);
	cr_assert_eq(iovad_odp_fault_complete(k.c, f.id, 0), 0);
	pthread_join(t, NULL);
	cr_assert_eq(rd.r, 0);
	/* Not answered: the access times out, and a late answer finds nothing. */
	cr_assert_eq(iovad_odp_invalidate(k.odp, 0, 16 * PG), 0);
	cr_assert_eq(pthread_create(&t, NULL, read_main, &rd), 0);
	pthread_join(t, NULL);
	cr_assert_eq(rd.r, -ETIMEDOUT);
	cr_assert_eq(stats_of(k.odp).user_fault_timeouts, 1);
	r = iovad_odp_fault_next(k.c, &f);
	cr_assert_eq(r, 0, "the fault was queued");
	cr_assert_eq(iovad_odp_fault_complete(k.c, f.id, 0), -ENOENT, "too late");
	client_down(&k);
}

Test(odp, client_that_dies_mid_fault_fails_its_faults_cleanly)
{
	struct proto_status_rpy st0 = daemon_status(&d), st;
	pid_t pid = fork();
	int status;

	cr_assert_geq(pid, 0);
	if (pid == 0) {
		struct client k;
		struct reader rd;
		struct iovad_odp_fault f;
		pthread_t t;

		k.size = 16 * PG;
		if (iovad_connect(d.sock, &k.c) || iovad_dev_open(k.c, "sim0", &k.dev) ||
		    iovad_mem_alloc(k.c, k.size, &k.mem) ||
		    iovad_odp_reg(k.dev, k.mem, 0, k.size, RW, IOVAD_ODP_USER_FAULTS, &k.odp))
			_exit(10);
		rd.k = &k;
		pthread_create(&t, NULL, read_main, &rd);
		/* Wait until the fault has been delivered, then die without answering. */
		_exit(wait_fault(k.c, &f, 20000) == 0 ? 0 : 11);
	}
	cr_assert_eq(waitpid(pid, &status, 0), pid);
	cr_assert(WIFEXITED(status));
	cr_assert_eq(WEXITSTATUS(status), 0, "the child saw its fault");
	st = daemon_wait_teardowns(&d, st0.teardowns + 1);
	cr_assert_eq(st.teardowns, st0.teardowns + 1, "torn down and reported");
	cr_assert_eq(st.mem_bytes, 0, "its memory is gone");
	cr_assert(daemon_alive(&d));
	/* And the daemon still serves others. */
	{
		struct client k;
		uint8_t buf[64];

		client_up(&k, 16 * PG, RW, 0);
		cr_assert_eq(iovad_dev_dma_read(k.dev, iovad_odp_iova(k.odp), buf, 64), 0);
		client_down(&k);
	}
}

Test(odp, bad_registrations)
{
	struct iovad *c;
	struct iovad_dev *dev, *id;
	struct iovad_mem *m;
	struct iovad_odp *o;

	cr_assert_eq(iovad_connect(d.sock, &c), 0);
	cr_assert_eq(iovad_dev_open(c, "sim0", &dev), 0);
	cr_assert_eq(iovad_dev_open(c, "identity0", &id), 0);
	cr_assert_eq(iovad_mem_alloc(c, 16 * PG, &m), 0);
	cr_assert_eq(iovad_odp_reg(dev, m, 100, PG, RW, 0, &o), -EINVAL, "misaligned");
	cr_assert_eq(iovad_odp_reg(dev, m, 0, 17 * PG, RW, 0, &o), -EINVAL, "beyond the object");
	cr_assert_eq(iovad_odp_reg(dev, m, 0, PG, 0x80, 0, &o), -EINVAL, "unknown access bit");
	cr_assert_eq(iovad_odp_reg(dev, m, 0, PG, RW, 0x80, &o), -EINVAL, "unknown flag");
	cr_assert_eq(iovad_odp_reg(id, m, 0, PG, RW, 0, &o), -EOPNOTSUPP, "identity domain");
	iovad_mem_free(m);
	iovad_disconnect(c);
}

/* A region's IOVA is reused after dereg: lookups must find the new region only. */
Test(odp, dereg_then_reg_again_at_the_same_iova)
{
	struct client k;
	uint64_t first;
	uint8_t buf[64];

	client_up(&k, 16 * PG, RW, 0);
	first = iovad_odp_iova(k.odp);
	cr_assert_eq(iovad_dev_dma_read(k.dev, first, buf, sizeof(buf)), 0);
	cr_assert_eq(iovad_odp_dereg(k.odp), 0);
	cr_assert_eq(iovad_dev_dma_read(k.dev, first, buf, sizeof(buf)), -EFAULT, "gone");
	cr_assert_eq(iovad_odp_reg(k.dev, k.mem, 0, 16 * PG, RW, 0, &k.odp), 0);
	cr_assert_eq(iovad_odp_iova(k.odp), first, "the allocator hands the same IOVA back");
	fill_pattern(iovad_mem_addr(k.mem), 16 * PG, 5);
	cr_assert_eq(iovad_dev_dma_read(k.dev, first + PG, buf, sizeof(buf)), 0);
	cr_assert_arr_eq(buf, (uint8_t *)iovad_mem_addr(k.mem) + PG, sizeof(buf));
	cr_assert_eq(stats_of(k.odp).page_faults_handled, 1, "counted on the new region");
	client_down(&k);
}

struct win_reader {
	struct client *k;
	uint64_t off;
	int r;
};

static void *win_read_main(void *arg)
{
	struct win_reader *w = arg;
	uint8_t buf[64];

	__atomic_store_n(&w->r, iovad_dev_dma_read(w->k->dev, iovad_odp_iova(w->k->odp) + w->off,
						   buf, sizeof(buf)), __ATOMIC_RELEASE);
	return NULL;
}

/*
 * Accesses waiting for the client's own answers are bounded by max_inflight
 * without stopping the daemon from reading the answers: the ones past the
 * bound are refused with -EAGAIN, the others complete once answered.
 */
Test(odp_conf, user_faults_are_bounded_and_never_block_their_answers)
{
	enum { READERS = 6, LIMIT = 4 };
	struct win_reader w[READERS];
	pthread_t t[READERS];
	struct client k;
	int answered = 0, ok = 0, again = 0;

	start_with("[limits]\nmax_inflight = 4\n[odp]\nuser_fault_timeout_ms = 20000\n");
	client_up(&k, READERS * 16 * PG, RW, IOVAD_ODP_USER_FAULTS);
	/* Each reader touches a window of its own: one user fault each. */
	for (int i = 0; i < READERS; i++) {
		w[i] = (struct win_reader){ .k = &k, .off = (uint64_t)i * 16 * PG, .r = 1 };
		cr_assert_eq(pthread_create(&t[i], NULL, win_read_main, &w[i]), 0);
	}
	/* Answer what arrives until every reader is back. */
	for (uint64_t end = mono_ms() + 20000; mono_ms() < end;) {
		struct iovad_odp_fault f;
		int done = 0;

		if (wait_fault(k.c, &f, 50) == 0) {
			memset((uint8_t *)iovad_mem_addr(k.mem) + f.offset, 0x7e, f.len);
			cr_assert_eq(iovad_odp_fault_complete(k.c, f.id, 0), 0);
			answered++;
		}
		for (int i = 0; i < READERS; i++)
			done += __atomic_load_n(&w[i].r, __ATOMIC_ACQUIRE) != 1;
		if (done == READERS)
			break;
	}
	for (int i = 0; i < READERS; i++) {
		pthread_join(t[i], NULL);
		if (w[i].r == 0)
			ok++;
		else if (w[i].r == -EAGAIN)
			again++;
		else
			cr_assert_fail("reader %d: %d", i, w[i].r);
	}
	cr_assert_eq(ok + again, READERS);
	cr_assert_geq(ok, LIMIT, "at least the bound's worth were served");
	cr_assert_eq(answered, ok, "one answer per served window");
	cr_assert(daemon_alive(&d));
	client_down(&k);
}
