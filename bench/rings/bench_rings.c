// SPDX-License-Identifier: MIT
/*
 * bench-rings - what the shared-memory rings buy, against baselines measured
 * in the same run (issue 7's targets).
 *
 * 1. Round trip. One LINK + SYNC batch through libiovad (submit, wait), over
 *    the rings and over the socket ($IOVAD_RINGS=0), against a bare ring
 *    round trip: two processes on the same proto/ring.h rings, the echo side
 *    copying each request out and writing a reply of the same size, with
 *    the daemon's own waiting policy (proto_ring_should_yield: spin while
 *    the other side runs on another CPU, yield when it shares ours). Placements:
 *    client and daemon on two CPUs (polling: each side spins on its own
 *    CPU), the same with polling off on both sides (every request and
 *    reply rings a doorbell), and both on one CPU. Target: rings, polling
 *    <= 2x bare.
 * 2. ODP first touch over the rings, polling: a 64-byte device read of a
 *    page no fault has mapped yet ([odp] fault_around = 4K, so every timed
 *    read is exactly one fault), end to end as the client sees it, and the
 *    daemon's own fault-to-resume time from its histogram. Target: p50 <= 2 us.
 * 3. Throughput: 255 LINK + 1 SYNC per batch, 16 batches in flight, over the
 *    rings, against the same operations in-process on the domain engine
 *    (16 states of 255 pages, one engine batch each, one dma_iova_link per
 *    page), both from the median round. Target: >= 80%. Twice: as shipped,
 *    where the daemon merges the contiguous LINKs of a batch into one engine
 *    call ([domain] merge_links = yes: the 255 pages of a batch are one
 *    run), and with merge_links = no, every LINK its own call as in the
 *    baseline: the like-for-like cost of the rings and the session.
 *
 * It starts its own daemons (--daemon PATH) on temporary sockets. Not a
 * test: it prints medians and ratios, and --csv FILE appends them as rows
 * (bench,metric,placement,value,unit,baseline,ratio,target).
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define BENCH_NAME "bench-rings"
#include "../common.h"
#include "domain.h"
#include "proto.h"
#include "ring.h"
#include <iovad/iovad.h>

#define SZ_4K 4096u
#define BATCH_LINKS 255
#define INFLIGHT 16
#define ODP_PAGES 256u

/* A LINK + SYNC batch and its reply, as they travel. */
#define REQ_BYTES (sizeof(struct proto_hdr) + sizeof(struct proto_batch) + 2 * sizeof(struct proto_op))
#define RPY_BYTES (sizeof(struct proto_hdr) + sizeof(struct proto_batch_rpy) + \
		   2 * sizeof(struct proto_op_result))

static FILE *csv;

static void row(const char *metric, const char *place, double v, const char *unit, double base,
		const char *target)
{
	if (!csv)
		return;
	fprintf(csv, "bench-rings,%s,%s,%.4f,%s,%.4f,%.4f,%s\n", metric, place, v, unit, base,
		base > 0 ? v / base : 0.0, target);
	fflush(csv);
}

/* ---- the bare ring ------------------------------------------------------------------ */

/* The daemon's and libiovad's waiting policy (proto_ring_should_yield), on the same fields. */
static void wait_for(const uint32_t *ctr, uint32_t old, const uint32_t *peer_cpu, uint32_t *my_cpu)
{
	uint32_t cpu = proto_ring_my_cpu();
	uint64_t t0 = now_ns();

	proto_ring_store(my_cpu, cpu);
	while (proto_ring_load(ctr) == old) {
		if (proto_ring_should_yield(proto_ring_peek(peer_cpu), cpu, now_ns() - t0))
			sched_yield();
		else
			proto_ring_cpu_relax();
	}
}

static pid_t bare_echo(int fd, int cpu)
{
	pid_t pid = fork();

	if (pid == 0) {
		struct proto_ring_map m;
		uint8_t frame[REQ_BYTES], reply[RPY_BYTES] = { 0 };
		uint32_t sq_head = 0, cq_tail = 0;

		prctl(PR_SET_PDEATHSIG, SIGKILL);
		pin(0, cpu);
		if (proto_ring_map(fd, PROTO_RING_DEFAULT, PROTO_RING_DEFAULT, &m))
			_exit(1);
		for (;;) {
			wait_for(&m.hdr->sq_tail, sq_head, &m.hdr->client_cpu, &m.hdr->daemon_cpu);
			/* As the daemon does: copy the request out before looking at it. */
			memcpy(frame, m.sq + (sq_head & (m.sq_size - 1)), sizeof(frame));
			sq_head += proto_ring_rec(sizeof(frame));
			if (frame[0] == 0xff)
				_exit(0);
			memcpy(reply, frame, sizeof(struct proto_hdr));
			memcpy(m.cq + (cq_tail & (m.cq_size - 1)), reply, sizeof(reply));
			cq_tail += proto_ring_rec(sizeof(reply));
			proto_ring_store(&m.hdr->sq_head, sq_head);
			proto_ring_store(&m.hdr->cq_tail, cq_tail);
		}
	}
	return pid;
}

static double bare_rtt(int cpu_client, int cpu_echo, int iters)
{
	int fd = proto_ring_create(PROTO_RING_DEFAULT, PROTO_RING_DEFAULT), r;
	uint64_t *t = calloc((size_t)iters, sizeof(*t));
	uint8_t req[REQ_BYTES], rpy[RPY_BYTES];
	uint32_t sq_tail = 0, cq_head = 0;
	struct proto_ring_map m;
	pid_t e;
	double med;

	if (fd < 0)
		die("ring memfd", fd);
	if ((r = proto_ring_map(fd, PROTO_RING_DEFAULT, PROTO_RING_DEFAULT, &m)))
		die("ring map", r);
	e = bare_echo(fd, cpu_echo);
	pin(0, cpu_client);
	memset(req, 1, sizeof(req));
	for (int i = -iters / 10; i < iters; i++) {
		uint64_t t0 = now_ns();

		memcpy(m.sq + (sq_tail & (m.sq_size - 1)), req, sizeof(req));
		sq_tail += proto_ring_rec(sizeof(req));
		proto_ring_store(&m.hdr->sq_tail, sq_tail);
		wait_for(&m.hdr->cq_tail, cq_head, &m.hdr->daemon_cpu, &m.hdr->client_cpu);
		memcpy(rpy, m.cq + (cq_head & (m.cq_size - 1)), sizeof(rpy));
		cq_head += proto_ring_rec(sizeof(rpy));
		proto_ring_store(&m.hdr->cq_head, cq_head);
		if (i >= 0)
			t[i] = now_ns() - t0;
	}
	req[0] = 0xff;
	memcpy(m.sq + (sq_tail & (m.sq_size - 1)), req, sizeof(req));
	proto_ring_store(&m.hdr->sq_tail, sq_tail + proto_ring_rec(sizeof(req)));
	waitpid(e, NULL, 0);
	proto_ring_unmap(&m);
	close(fd);
	med = median(t, iters);
	free(t);
	return med;
}

/* ---- iovad -------------------------------------------------------------------------- */

struct client {
	struct iovad *c;
	struct iovad_dev *dev;
	struct iovad_mem *m;
};

static void client_open(struct client *k, const char *sock, bool rings, size_t bytes)
{
	int r;

	setenv("IOVAD_RINGS", rings ? "1" : "0", 1);
	if ((r = iovad_connect(sock, &k->c)) || (r = iovad_dev_open(k->c, "sim0", &k->dev)) ||
	    (r = iovad_mem_alloc(k->c, bytes, &k->m)))
		die("connect", r);
	memset(iovad_mem_addr(k->m), 0x5a, bytes);
}

static void client_close(struct client *k)
{
	iovad_mem_free(k->m);
	iovad_dev_close(k->dev);
	iovad_disconnect(k->c);
}

static double iovad_rtt(struct client *k, int iters)
{
	uint64_t *t = calloc((size_t)iters, sizeof(*t));
	struct iovad_iova_state st;
	struct iovad_batch *b;
	double med;
	int r;

	if (!iovad_iova_try_alloc(k->dev, &st, 0, SZ_4K))
		die("try_alloc", errno);
	if ((r = iovad_batch_new(k->c, &b)))
		die("batch_new", r);
	for (int i = -iters / 10; i < iters; i++) {
		uint64_t t0;

		iovad_batch_reset(b);
		iovad_batch_link(b, k->dev, &st, iovad_mem_phys(k->m), 0, SZ_4K,
				 IOVAD_DMA_BIDIRECTIONAL, 0);
		iovad_batch_sync(b, k->dev, &st, 0, SZ_4K);
		t0 = now_ns();
		r = iovad_batch_submit(b, NULL, NULL);
		if (!r)
			r = iovad_batch_wait(b);
		if (i >= 0)
			t[i] = now_ns() - t0;
		if (r || iovad_batch_op_status(b, 0) || iovad_batch_op_status(b, 1))
			die("link+sync", r ? r : iovad_batch_op_status(b, 0));
		if ((r = iovad_iova_unlink(k->dev, &st, 0, SZ_4K, IOVAD_DMA_BIDIRECTIONAL, 0)))
			die("unlink", r);
	}
	iovad_batch_free(b);
	iovad_iova_free(k->dev, &st);
	med = median(t, iters);
	free(t);
	return med;
}

/*
 * Rates come from the median round: on a shared machine a round now and
 * then loses milliseconds to another process's time slice, which says
 * nothing about either side of the comparison.
 */
static double pages_per_s(struct client *k, int batches)
{
	struct iovad_iova_state st[INFLIGHT];
	struct iovad_batch *b[INFLIGHT], *u;
	uint64_t t0, *rt = calloc((size_t)batches / INFLIGHT + 1, sizeof(*rt));
	int r, nr = 0;
	double med;

	for (int j = 0; j < INFLIGHT; j++) {
		if (!iovad_iova_try_alloc(k->dev, &st[j], 0, BATCH_LINKS * SZ_4K))
			die("try_alloc", errno);
		if ((r = iovad_batch_new(k->c, &b[j])))
			die("batch_new", r);
	}
	if ((r = iovad_batch_new(k->c, &u)))
		die("batch_new", r);
	for (int done = 0; done < batches; done += INFLIGHT) {
		for (int j = 0; j < INFLIGHT; j++) {
			uint64_t phys = iovad_mem_phys(k->m) + (uint64_t)j * BATCH_LINKS * SZ_4K;

			iovad_batch_reset(b[j]);
			for (int i = 0; i < BATCH_LINKS; i++)
				iovad_batch_link(b[j], k->dev, &st[j], phys + (uint64_t)i * SZ_4K,
						 (size_t)i * SZ_4K, SZ_4K, IOVAD_DMA_BIDIRECTIONAL, 0);
			iovad_batch_sync(b[j], k->dev, &st[j], 0, BATCH_LINKS * SZ_4K);
		}
		t0 = now_ns();
		for (int j = 0; j < INFLIGHT; j++)
			if ((r = iovad_batch_submit(b[j], NULL, NULL)))
				die("submit", r);
		for (int j = 0; j < INFLIGHT; j++)
			if ((r = iovad_batch_wait(b[j])) || (r = iovad_batch_op_status(b[j], 0)))
				die("batch", r);
		rt[nr++] = now_ns() - t0;
		iovad_batch_reset(u);
		for (int j = 0; j < INFLIGHT; j++)
			iovad_batch_unlink(u, k->dev, &st[j], 0, BATCH_LINKS * SZ_4K,
					   IOVAD_DMA_BIDIRECTIONAL, 0);
		if ((r = iovad_batch_submit(u, NULL, NULL)) || (r = iovad_batch_wait(u)))
			die("unlink batch", r);
	}
	for (int j = 0; j < INFLIGHT; j++) {
		iovad_batch_free(b[j]);
		iovad_iova_free(k->dev, &st[j]);
	}
	iovad_batch_free(u);
	med = median(rt, nr);
	free(rt);
	return (double)INFLIGHT * BATCH_LINKS / (med / 1e9);
}

/*
 * The same operations in-process on the domain engine, shaped as the ring
 * run is: INFLIGHT states of 255 pages over one memory object, each batch
 * linked and synced in one engine batch, then everything unlinked
 * (untimed) before the next round.
 */
static double inproc_pages_per_s(int batches)
{
	struct dma_iova_state st[INFLIGHT];
	struct pmem_space p;
	struct dom_domain *dom;
	struct dom_device *dev;
	struct pmem_obj *mem;
	uint64_t t0, *rt = calloc((size_t)batches / INFLIGHT + 1, sizeof(*rt));
	int nr = 0;
	double med;

	if (pmem_space_init(&p) || dom_domain_create(&p, &(struct dom_config){ 0 }, &dom) ||
	    dom_device_create(dom, &(struct dom_device_config){ .name = "sim0" }, &dev) ||
	    pmem_obj_create(&p, INFLIGHT * BATCH_LINKS * SZ_4K, "bench", &mem))
		die("in-process setup", ENOMEM);
	for (int j = 0; j < INFLIGHT; j++)
		if (!dma_iova_try_alloc(dev, &st[j], 0, BATCH_LINKS * SZ_4K))
			die("in-process try_alloc", ENOMEM);
	for (int done = 0; done < batches; done += INFLIGHT) {
		t0 = now_ns();
		for (int j = 0; j < INFLIGHT; j++) {
			uint64_t phys = mem->phys + (uint64_t)j * BATCH_LINKS * SZ_4K;

			dom_batch_begin(dom);
			for (int i = 0; i < BATCH_LINKS; i++)
				if (dma_iova_link(dev, &st[j], phys + (uint64_t)i * SZ_4K,
						  (uint64_t)i * SZ_4K, SZ_4K, DMA_BIDIRECTIONAL, 0))
					die("in-process link", EIO);
			dma_iova_sync(dev, &st[j], 0, BATCH_LINKS * SZ_4K);
			dom_batch_end(dom);
		}
		rt[nr++] = now_ns() - t0;
		dom_batch_begin(dom);
		for (int j = 0; j < INFLIGHT; j++)
			dma_iova_unlink(dev, &st[j], 0, BATCH_LINKS * SZ_4K, DMA_BIDIRECTIONAL, 0);
		dom_batch_end(dom);
	}
	for (int j = 0; j < INFLIGHT; j++)
		dma_iova_free(dev, &st[j]);
	dom_device_destroy(dev);
	dom_domain_destroy(dom);
	pmem_space_fini(&p);
	med = median(rt, nr);
	free(rt);
	return (double)INFLIGHT * BATCH_LINKS / (med / 1e9);
}

/* First touches: p50/p99 end to end, and the daemon's histogram p50. */
static void odp_first_touch(struct client *k, int rounds, double ret[3])
{
	size_t n = (size_t)rounds * ODP_PAGES, i = 0;
	uint64_t *t = calloc(n, sizeof(*t));
	struct iovad_odp_stats st;
	struct iovad_odp *odp;
	uint8_t buf[64];
	int r;

	if ((r = iovad_odp_reg(k->dev, k->m, 0, ODP_PAGES * SZ_4K,
			       IOVAD_ACCESS_DEVICE_READ | IOVAD_ACCESS_DEVICE_WRITE, 0, &odp)))
		die("odp_reg", r);
	for (int round = -1; round < rounds; round++) {
		for (uint32_t p = 0; p < ODP_PAGES; p++) {
			uint64_t t0 = now_ns();

			r = iovad_dev_dma_read(k->dev, iovad_odp_iova(odp) + (uint64_t)p * SZ_4K, buf,
					       sizeof(buf));
			if (r || buf[0] != 0x5a)
				die("first touch", r ? r : EIO);
			/* Round -1 warms up (and maps the daemon's own view of the memory). */
			if (round >= 0)
				t[i++] = now_ns() - t0;
		}
		if ((r = iovad_odp_invalidate(odp, 0, ODP_PAGES * SZ_4K)))
			die("invalidate", r);
	}
	if ((r = iovad_odp_stats(odp, &st)))
		die("odp_stats", r);
	iovad_odp_dereg(odp);
	qsort(t, n, sizeof(*t), cmp_u64);
	ret[0] = (double)t[n / 2] / 1e3;
	ret[1] = (double)t[n * 99 / 100] / 1e3;
	ret[2] = (double)st.fault_p50_ns / 1e3;
	free(t);
}

static double med_d(double *v, int n)
{
	uint64_t u[16];

	for (int i = 0; i < n; i++)
		u[i] = (uint64_t)v[i];
	return median(u, n);
}

int main(int argc, char **argv)
{
	const char *bin = IOVAD_DAEMON_PATH;
	int iters = 20000, batches = 2000, reps = 5, odp_rounds = 20, part = 0;
	char dir[] = "/tmp/iovad-rings-XXXXXX", sock[128], cfg[160], cfg_nospin[160];
	char cfg_nomerge[160];
	int ncpu = (int)sysconf(_SC_NPROCESSORS_ONLN);
	FILE *f;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--daemon") && i + 1 < argc) {
			bin = argv[++i];
		} else if (!strcmp(argv[i], "--csv") && i + 1 < argc) {
			csv = fopen(argv[++i], "a");
			if (!csv)
				die(argv[i], errno);
		} else if (!strcmp(argv[i], "--part") && i + 1 < argc) {
			part = atoi(argv[++i]);
		} else if (!strcmp(argv[i], "--quick")) {
			iters = 2000, batches = 160, reps = 3, odp_rounds = 3;
		} else {
			fprintf(stderr, "usage: %s [--daemon PATH] [--quick] [--part 1|2|3] [--csv FILE]\n",
				argv[0]);
			return 2;
		}
	}
	if (!mkdtemp(dir))
		die("mkdtemp", errno);
	snprintf(sock, sizeof(sock), "%s/iovad.sock", dir);
	snprintf(cfg, sizeof(cfg), "%s/iovad.conf", dir);
	snprintf(cfg_nospin, sizeof(cfg_nospin), "%s/nospin.conf", dir);
	snprintf(cfg_nomerge, sizeof(cfg_nomerge), "%s/nomerge.conf", dir);
	f = fopen(cfg, "w");
	if (!f)
		die(cfg, errno);
	/* One fault per page; the default spin budget. */
	fprintf(f, "[odp]\nfault_around = 4K\n");
	fclose(f);
	/* Every LINK its own engine call, as in-process: the like-for-like throughput. */
	f = fopen(cfg_nomerge, "w");
	if (!f)
		die(cfg_nomerge, errno);
	fprintf(f, "[odp]\nfault_around = 4K\n"
		"[domain sim0]\nmerge_links = no\n[device sim0]\ndomain = sim0\n");
	fclose(f);
	f = fopen(cfg_nospin, "w");
	if (!f)
		die(cfg_nospin, errno);
	fprintf(f, "[rings]\nspin_us = 0\nspin_max_us = 0\n");
	fclose(f);

	printf("bench-rings: request %zu B, reply %zu B, medians of %d round trips\n",
	       (size_t)REQ_BYTES, (size_t)RPY_BYTES, iters);
	printf("%-30s %11s %11s %11s %9s %7s\n", "placement", "rings (us)", "socket (us)",
	       "bare (us)", "rings/bare", "target");
	for (int two = 1; two >= 0 && (!part || part == 1); two--) {
		const char *place = two ? "2cpu-polling" : "1cpu";
		int cpu_d = two ? 1 : 0;
		double ring, sockt, bare;
		struct client k;
		pid_t d;

		if (two && ncpu < 2)
			continue;
		bare = bare_rtt(0, cpu_d, iters) / 1e3;
		d = start_daemon(bin, sock, "--io=uring", cfg);
		pin(d, cpu_d);
		pin(0, 0);
		client_open(&k, sock, true, INFLIGHT * BATCH_LINKS * SZ_4K);
		ring = iovad_rtt(&k, iters) / 1e3;
		client_close(&k);
		client_open(&k, sock, false, SZ_4K);
		sockt = iovad_rtt(&k, iters) / 1e3;
		client_close(&k);
		kill(d, SIGTERM);
		waitpid(d, NULL, 0);
		printf("%-30s %11.2f %11.2f %11.2f %9.2f %7s\n",
		       two ? "client, daemon on 2 CPUs" : "client, daemon on 1 CPU", ring, sockt,
		       bare, ring / bare, two ? "<= 2" : "-");
		row("link_sync_rtt_rings_us", place, ring, "us", bare, two ? "<=2" : "");
		row("link_sync_rtt_socket_us", place, sockt, "us", bare, "");
		row("bare_ring_rtt_us", place, bare, "us", 0, "");
		if (!two)
			continue;
		/* Across CPUs without polling: each request and reply wakes the other side. */
		d = start_daemon(bin, sock, "--io=uring", cfg_nospin);
		pin(d, cpu_d);
		setenv("IOVAD_RING_SPIN_US", "0", 1);
		client_open(&k, sock, true, SZ_4K);
		ring = iovad_rtt(&k, iters / 4) / 1e3;
		client_close(&k);
		unsetenv("IOVAD_RING_SPIN_US");
		kill(d, SIGTERM);
		waitpid(d, NULL, 0);
		printf("%-30s %11.2f %11s %11s %9s %7s\n", "  the same, rings not polled", ring, "",
		       "", "", "-");
		row("link_sync_rtt_rings_us", "2cpu-doorbell", ring, "us", bare, "");
	}

	printf("\nODP first touch over the rings, polling (64-byte device read, one fault each)\n");
	printf("%-30s %9s %9s %14s %7s\n", "placement", "p50 (us)", "p99 (us)", "daemon p50 (us)",
	       "target");
	for (int two = 1; two >= 0 && (!part || part == 2); two--) {
		const char *place = two ? "2cpu-polling" : "1cpu";
		struct client k;
		double v[3];
		pid_t d;

		if (two && ncpu < 2)
			continue;
		d = start_daemon(bin, sock, "--io=uring", cfg);
		pin(d, two ? 1 : 0);
		pin(0, 0);
		client_open(&k, sock, true, ODP_PAGES * SZ_4K);
		odp_first_touch(&k, odp_rounds, v);
		client_close(&k);
		kill(d, SIGTERM);
		waitpid(d, NULL, 0);
		printf("%-30s %9.2f %9.2f %14.2f %7s\n",
		       two ? "client, daemon on 2 CPUs" : "client, daemon on 1 CPU", v[0], v[1], v[2],
		       two ? "<= 2" : "-");
		row("odp_first_touch_p50_us", place, v[0], "us", 0, two ? "<=2" : "");
		row("odp_first_touch_p99_us", place, v[1], "us", 0, "");
		row("odp_daemon_fault_p50_us", place, v[2], "us", 0, "");
	}

	printf("\npages linked per second, 255 LINK + 1 SYNC per batch, %d batches in flight "
	       "(median of %d runs)\n", INFLIGHT, reps);
	if (!part || part == 3) {
		double loc[16], rng[2][16], ml;

		for (int k = 0; k < reps; k++)
			loc[k] = inproc_pages_per_s(batches);
		ml = med_d(loc, reps);
		printf("%-30s %14.0f\n", "in-process domain engine", ml);
		row("link_pages_per_s_inprocess", "1cpu", ml, "pages/s", 0, "");
		for (int two = 1; two >= 0; two--) {
			const char *place = two ? "2cpu-polling" : "1cpu";

			if (two && ncpu < 2)
				continue;
			for (int merge = 1; merge >= 0; merge--) {
				struct client k;
				double m;
				pid_t d;

				d = start_daemon(bin, sock, "--io=uring", merge ? cfg : cfg_nomerge);
				pin(d, two ? 1 : 0);
				pin(0, 0);
				client_open(&k, sock, true, INFLIGHT * BATCH_LINKS * SZ_4K);
				for (int j = 0; j < reps; j++)
					rng[two][j] = pages_per_s(&k, batches);
				client_close(&k);
				kill(d, SIGTERM);
				waitpid(d, NULL, 0);
				m = med_d(rng[two], reps);
				printf("%-30s %14.0f %6.1f%% (target >= 80%%)\n",
				       two ? (merge ? "rings, 2 CPUs (polling)" :
						      "  the same, merge_links = no") :
					     (merge ? "rings, 1 CPU" : "  the same, merge_links = no"),
				       m, 100.0 * m / ml);
				row(merge ? "link_pages_per_s_rings" : "link_pages_per_s_rings_one_by_one",
				    place, m, "pages/s", ml, ">=0.8");
			}
		}
	}
	unlink(cfg);
	unlink(cfg_nospin);
	unlink(cfg_nomerge);
	rmdir(dir);
	if (csv)
		fclose(csv);
	return 0;
}
