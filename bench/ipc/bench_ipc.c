// SPDX-License-Identifier: MIT
/*
 * bench-ipc - what the socket costs: iovad over libiovad against baselines
 * measured in the same run.
 *
 * 1. Latency of one link+sync round trip (a BATCH of LINK + SYNC through
 *    libiovad) against a bare Unix-socket round trip with the same request
 *    and reply sizes, between two processes placed the same way: both on
 *    one CPU, and on two different CPUs (sched_setaffinity on both ends).
 *    Target: ratio <= 1.25.
 * 2. Pages linked per second with 256-operation batches (255 LINKs of one
 *    4 KiB page + 1 SYNC), with several batches in flight, against the
 *    same operations done in-process on the domain engine. Target: >= 50%.
 *
 * It starts its own daemon (--daemon PATH, default next to this binary's
 * build tree) on a temporary socket. Not a test: it prints medians, and
 * --csv FILE appends them as rows (bench/common.h, fig_row). libiovad uses
 * the shared-memory rings when the daemon offers them; $IOVAD_RINGS=0 keeps
 * it on the socket, which is what the bare-socket ratios compare.
 */
#include <errno.h>
#include <inttypes.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define BENCH_NAME "bench-ipc"
#include "../common.h"
#include "domain.h"
#include "proto.h"
#include <iovad/iovad.h>

#define SZ_4K 4096u
#define BATCH_LINKS 255
#define INFLIGHT 16

/* ---- the bare socket baseline ----------------------------------------------------- */

/* Request and reply sizes of a LINK + SYNC batch on the wire. */
#define REQ_BYTES (sizeof(struct proto_hdr) + sizeof(struct proto_batch) + 2 * sizeof(struct proto_op))
#define RPY_BYTES (sizeof(struct proto_hdr) + sizeof(struct proto_batch_rpy) + \
		   2 * sizeof(struct proto_op_result))

static int full_io(int fd, void *buf, size_t len, bool rd)
{
	uint8_t *b = buf;

	while (len) {
		ssize_t n = rd ? read(fd, b, len) : write(fd, b, len);

		if (n <= 0)
			return -1;
		b += n;
		len -= (size_t)n;
	}
	return 0;
}

static pid_t echo_server(const char *path)
{
	struct sockaddr_un sa = unix_addr(path);
	int lfd = socket(AF_UNIX, SOCK_STREAM, 0);
	pid_t pid;

	if (lfd < 0 || bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) || listen(lfd, 4))
		die("echo server", errno);
	pid = fork();
	if (pid == 0) {
		uint8_t req[REQ_BYTES], rpy[RPY_BYTES] = { 0 };
		int fd = accept(lfd, NULL, NULL);

		while (fd >= 0 && !full_io(fd, req, sizeof(req), true))
			if (full_io(fd, rpy, sizeof(rpy), false))
				break;
		_exit(0);
	}
	close(lfd);
	return pid;
}

static double bare_rtt(const char *path, int iters)
{
	struct sockaddr_un sa = unix_addr(path);
	uint8_t req[REQ_BYTES] = { 1 }, rpy[RPY_BYTES];
	uint64_t *t = calloc((size_t)iters, sizeof(*t));
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);
	double m;

	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)))
		die("connect echo", errno);
	for (int i = 0; i < iters; i++) {
		uint64_t t0 = now_ns();

		if (full_io(fd, req, sizeof(req), false) || full_io(fd, rpy, sizeof(rpy), true))
			die("echo", EIO);
		t[i] = now_ns() - t0;
	}
	close(fd);
	m = median(t, iters);
	free(t);
	return m;
}

/* ---- iovad ------------------------------------------------------------------------- */

static double iovad_rtt(struct iovad *c, struct iovad_dev *dev, struct iovad_mem *m, int iters)
{
	uint64_t *t = calloc((size_t)iters, sizeof(*t));
	struct iovad_iova_state st;
	struct iovad_batch *b;
	double med;
	int r;

	if (!iovad_iova_try_alloc(dev, &st, 0, SZ_4K))
		die("try_alloc", errno);
	r = iovad_batch_new(c, &b);
	if (r)
		die("batch_new", r);
	for (int i = 0; i < iters; i++) {
		uint64_t t0;

		iovad_batch_reset(b);
		iovad_batch_link(b, dev, &st, iovad_mem_phys(m), 0, SZ_4K, IOVAD_DMA_BIDIRECTIONAL, 0);
		iovad_batch_sync(b, dev, &st, 0, SZ_4K);
		t0 = now_ns();
		r = iovad_batch_submit(b, NULL, NULL);
		if (!r)
			r = iovad_batch_wait(b);
		t[i] = now_ns() - t0;
		if (r || iovad_batch_op_status(b, 0) || iovad_batch_op_status(b, 1))
			die("link+sync", r ? r : iovad_batch_op_status(b, 0));
		r = iovad_iova_unlink(dev, &st, 0, SZ_4K, IOVAD_DMA_BIDIRECTIONAL, 0);
		if (r)
			die("unlink", r);
	}
	iovad_batch_free(b);
	iovad_iova_free(dev, &st);
	med = median(t, iters);
	free(t);
	return med;
}

/* Pages per second: batches of 255 LINKs + 1 SYNC, INFLIGHT batches pipelined. */
static double iovad_pages_per_s(struct iovad *c, struct iovad_dev *dev, struct iovad_mem *m,
				int batches)
{
	struct iovad_iova_state st[INFLIGHT];
	struct iovad_batch *b[INFLIGHT], *u;
	uint64_t t0, t = 0;
	int r;

	for (int k = 0; k < INFLIGHT; k++) {
		if (!iovad_iova_try_alloc(dev, &st[k], 0, BATCH_LINKS * SZ_4K))
			die("try_alloc", errno);
		if ((r = iovad_batch_new(c, &b[k])))
			die("batch_new", r);
	}
	if ((r = iovad_batch_new(c, &u)))
		die("batch_new", r);
	for (int done = 0; done < batches; done += INFLIGHT) {
		for (int k = 0; k < INFLIGHT; k++) {
			uint64_t phys = iovad_mem_phys(m) + (uint64_t)k * BATCH_LINKS * SZ_4K;

			iovad_batch_reset(b[k]);
			for (int i = 0; i < BATCH_LINKS; i++)
				iovad_batch_link(b[k], dev, &st[k], phys + (uint64_t)i * SZ_4K,
						 (size_t)i * SZ_4K, SZ_4K, IOVAD_DMA_BIDIRECTIONAL, 0);
			iovad_batch_sync(b[k], dev, &st[k], 0, BATCH_LINKS * SZ_4K);
		}
		t0 = now_ns();
		for (int k = 0; k < INFLIGHT; k++)
			if ((r = iovad_batch_submit(b[k], NULL, NULL)))
				die("submit", r);
		for (int k = 0; k < INFLIGHT; k++)
			if ((r = iovad_batch_wait(b[k])) || (r = iovad_batch_op_status(b[k], 0)))
				die("batch", r);
		t += now_ns() - t0;
		/* Untimed: unlink everything for the next round, in one batch. */
		iovad_batch_reset(u);
		for (int k = 0; k < INFLIGHT; k++)
			iovad_batch_unlink(u, dev, &st[k], 0, BATCH_LINKS * SZ_4K,
					   IOVAD_DMA_BIDIRECTIONAL, 0);
		if ((r = iovad_batch_submit(u, NULL, NULL)) || (r = iovad_batch_wait(u)))
			die("unlink batch", r);
	}
	for (int k = 0; k < INFLIGHT; k++) {
		iovad_batch_free(b[k]);
		iovad_iova_free(dev, &st[k]);
	}
	iovad_batch_free(u);
	return (double)batches * BATCH_LINKS / ((double)t / 1e9);
}

/* The same operations in-process on the domain engine. */
static double inproc_pages_per_s(int batches)
{
	struct pmem_space p;
	struct dom_domain *dom;
	struct dom_device *dev;
	struct pmem_obj *mem;
	struct dma_iova_state st;
	uint64_t t0, t = 0;

	if (pmem_space_init(&p) || dom_domain_create(&p, &(struct dom_config){ 0 }, &dom) ||
	    dom_device_create(dom, &(struct dom_device_config){ .name = "sim0" }, &dev) ||
	    pmem_obj_create(&p, BATCH_LINKS * SZ_4K, "bench", &mem))
		die("in-process setup", ENOMEM);
	if (!dma_iova_try_alloc(dev, &st, 0, BATCH_LINKS * SZ_4K))
		die("in-process try_alloc", ENOMEM);
	for (int n = 0; n < batches; n++) {
		t0 = now_ns();
		dom_batch_begin(dom);
		for (int i = 0; i < BATCH_LINKS; i++)
			if (dma_iova_link(dev, &st, mem->phys + (uint64_t)i * SZ_4K,
					  (uint64_t)i * SZ_4K, SZ_4K, DMA_BIDIRECTIONAL, 0))
				die("in-process link", EIO);
		dma_iova_sync(dev, &st, 0, BATCH_LINKS * SZ_4K);
		dom_batch_end(dom);
		t += now_ns() - t0;
		dma_iova_unlink(dev, &st, 0, BATCH_LINKS * SZ_4K, DMA_BIDIRECTIONAL, 0);
	}
	dma_iova_free(dev, &st);
	dom_device_destroy(dev);
	dom_domain_destroy(dom);
	pmem_space_fini(&p);
	return (double)batches * BATCH_LINKS / ((double)t / 1e9);
}

int main(int argc, char **argv)
{
	const char *bin = IOVAD_DAEMON_PATH, *io = "--io=uring";
	int iters = 20000, batches = 2000, reps = 5;
	char dir[] = "/tmp/iovad-bench-XXXXXX", sock[128], echo[128], metric[64];
	double pps_ipc[2][8], pps_local[8];
	FILE *csv = NULL;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--daemon") && i + 1 < argc)
			bin = argv[++i];
		else if (!strcmp(argv[i], "--epoll"))
			io = "--io=epoll";
		else if (!strcmp(argv[i], "--quick"))
			iters = 2000, batches = 200, reps = 3;
		else if (!strcmp(argv[i], "--csv") && i + 1 < argc)
			csv = fig_open(argv[++i]);
		else {
			fprintf(stderr, "usage: %s [--daemon PATH] [--epoll] [--quick] [--csv FILE]\n",
				argv[0]);
			return 2;
		}
	}
	if (!mkdtemp(dir))
		die("mkdtemp", errno);
	snprintf(sock, sizeof(sock), "%s/iovad.sock", dir);
	snprintf(echo, sizeof(echo), "%s/echo.sock", dir);

	printf("bench-ipc: %s, request %zu B, reply %zu B, medians of %d round trips\n", io + 5,
	       (size_t)REQ_BYTES, (size_t)RPY_BYTES, iters);
	printf("%-34s %12s %12s %8s %8s\n", "placement", "iovad (us)", "bare (us)", "ratio",
	       "target");
	for (int placement = 0; placement < 2; placement++) {
		int cpu_srv = placement ? 1 : 0;
		pid_t d = start_daemon(bin, sock, io, NULL), e = echo_server(echo);
		struct iovad *c;
		struct iovad_dev *dev;
		struct iovad_mem *m;
		double a, b;
		int r;

		if (placement && sysconf(_SC_NPROCESSORS_ONLN) < 2) {
			kill(d, SIGTERM);
			kill(e, SIGTERM);
			break;
		}
		pin(0, 0);
		pin(d, cpu_srv);
		pin(e, cpu_srv);
		if ((r = iovad_connect(sock, &c)) || (r = iovad_dev_open(c, "sim0", &dev)) ||
		    (r = iovad_mem_alloc(c, INFLIGHT * BATCH_LINKS * SZ_4K, &m)))
			die("connect", r);
		a = iovad_rtt(c, dev, m, iters) / 1000.0;
		b = bare_rtt(echo, iters) / 1000.0;
		printf("%-34s %12.2f %12.2f %8.2f %8s\n",
		       placement ? "client and daemon on 2 CPUs" : "client and daemon on 1 CPU", a, b,
		       a / b, "1.25");
		snprintf(metric, sizeof(metric), "link_sync_rtt_%s_us", transport());
		fig_row(csv, metric, placement ? "2cpu" : "1cpu", a, "us", b, "<=1.25");
		fig_row(csv, "bare_socket_rtt_us", placement ? "2cpu" : "1cpu", b, "us", 0, "");
		for (int k = 0; k < reps; k++) {
			pps_ipc[placement][k] = iovad_pages_per_s(c, dev, m, batches);
			if (placement == 0)
				pps_local[k] = inproc_pages_per_s(batches);
		}
		iovad_mem_free(m);
		iovad_dev_close(dev);
		iovad_disconnect(c);
		kill(d, SIGTERM);
		waitpid(d, NULL, 0);
		waitpid(e, NULL, 0);
		unlink(sock);
		unlink(echo);
	}
	{
		uint64_t ipc[2][8], loc[8];
		double mi[2], ml;

		for (int k = 0; k < reps; k++) {
			ipc[0][k] = (uint64_t)pps_ipc[0][k];
			ipc[1][k] = (uint64_t)pps_ipc[1][k];
			loc[k] = (uint64_t)pps_local[k];
		}
		mi[0] = median(ipc[0], reps);
		mi[1] = median(ipc[1], reps);
		ml = median(loc, reps);
		printf("\npages linked per second, 255 LINK + 1 SYNC per batch, %d batches in flight "
		       "(median of %d runs)\n", INFLIGHT, reps);
		printf("%-34s %14.0f  (same ops, one engine call each)\n", "in-process domain engine",
		       ml);
		printf("%-34s %14.0f  %5.1f%% (target >= 50%%)\n", "iovad, client and daemon on 1 CPU",
		       mi[0], 100.0 * mi[0] / ml);
		printf("%-34s %14.0f  %5.1f%% (target >= 50%%)\n", "iovad, on 2 CPUs", mi[1],
		       100.0 * mi[1] / ml);
		snprintf(metric, sizeof(metric), "link_pages_per_s_%s", transport());
		fig_row(csv, "link_pages_per_s_inprocess", "1cpu", ml, "pages/s", 0, "");
		fig_row(csv, metric, "1cpu", mi[0], "pages/s", ml, ">=0.5");
		fig_row(csv, metric, "2cpu", mi[1], "pages/s", ml, ">=0.5");
	}
	if (csv)
		fclose(csv);
	rmdir(dir);
	return 0;
}
