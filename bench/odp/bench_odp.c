// SPDX-License-Identifier: MIT
/*
 * bench-odp - what an I/O page fault costs through iovad, how many faults the
 * fault service turns around per second, and the engine alone for scale.
 *
 * 1. First-touch latency. A region with [odp] fault_around = 4K, so the
 *    first device read of each page is exactly one fault. Per page: one
 *    64-byte iovad_dev_dma_read (fault + service + retry + reply), then the
 *    same read again (mapped: the bare round trip). p50/p99 of both, of their
 *    per-page difference (the fault's own cost), the daemon's own
 *    fault-to-resume histogram, and ratios to the published 3.5-5.7 us per
 *    minor fault (NP-RDMA 2023). Client and daemon on one CPU, then on two:
 *    the round trip dominates and its cost depends on placement.
 * 2. Fault throughput. T client threads, each with its own connection (as
 *    separate processes or queue pairs would be), read one page of every
 *    fresh 64 KiB window of their regions as fast as they can, under
 *    [odp] sync = batch and sync = per-page (a daemon per mode, the two
 *    taking turns round by round): faults/s, pages/s, and from the counters
 *    syncs, flushes and pages per fault. Clients on CPU 0, the daemons on
 *    CPU 0 too, then on CPU 1.
 * 3. The engine alone, in-process: odp_service() on batches of 1, 16 and
 *    256 faults in both sync modes, 4 KiB and 64 KiB windows, and the whole
 *    fault path (device read, service, retry) without the daemon.
 *
 * The client writes its memory before any fault, so every fault is minor in
 * NP-RDMA's sense: the page is resident, only the IOMMU mapping is missing.
 * Round 0 of each measurement is an untimed warm-up; it also faults in the
 * daemon's own CPU mapping of the memory, a cost of the simulation that a
 * real IOMMU does not have. Not a test: it prints figures, no pass/fail;
 * --csv FILE appends the summary's figures as rows (bench/common.h, fig_row),
 * placed "rings" or "socket" ($IOVAD_RINGS=0).
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define BENCH_NAME "bench-odp"
#include "../common.h"
#include "domain.h"
#include "odp.h"
#include <iovad/iovad.h>

#define SZ_4K        4096u
#define SZ_64K       (64u << 10)
#define ACCESS_BYTES 64u
#define FILL         0x5a
#define RIGHTS       (IOVAD_ACCESS_DEVICE_READ | IOVAD_ACCESS_DEVICE_WRITE)
#define PUB_LO_US    3.5  /* NP-RDMA 2023, software handling of a minor fault */
#define PUB_HI_US    5.7
#define MAX_ROUNDS   50
#define TPUT_MEM     (8u << 20)   /* per client thread; its regions all map it */
#define ENG_OBJ      (16u << 20)  /* the in-process backing, wrapped around */
#define ENG_MAX_BATCH 256u

struct opts {
	const char *bin;
	char dir[32];
	int rounds;
	uint32_t lat_pages;    /* 1: pages touched per round */
	uint32_t tput_faults;  /* 2: faults per round, all threads together */
	uint32_t eng_faults;   /* 3: faults per round, a multiple of ENG_MAX_BATCH */
	int ncpus;
};

/* ---- the summary block, gathered as the parts run ---------------------------------- */

static char summary[16384];
static size_t summary_len;

__attribute__((format(printf, 1, 2))) static void summ(const char *fmt, ...)
{
	va_list ap;
	int n;

	if (summary_len >= sizeof(summary))
		return;
	va_start(ap, fmt);
	n = vsnprintf(summary + summary_len, sizeof(summary) - summary_len, fmt, ap);
	va_end(ap);
	if (n > 0)
		summary_len += (size_t)n;
}

/* ---- statistics ---------------------------------------------------------------------- */

/* Nearest-rank quantile q of n sorted samples: the index to read. */
static size_t q_index(size_t n, double q)
{
	size_t i = (size_t)(q * (double)n + 0.999999);

	return i ? (i > n ? n : i) - 1 : 0;
}

static int cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

	return (x > y) - (x < y);
}

static int cmp_d(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

/* Sorts v in place. */
static double med_d(double *v, int n)
{
	qsort(v, (size_t)n, sizeof(*v), cmp_d);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static double ratio(uint64_t a, uint64_t b)
{
	return b ? (double)a / (double)b : 0.0;
}

/* ---- a private daemon and its clients ------------------------------------------------ */

struct daemon {
	pid_t pid;
	char sock[64];
	char conf[64];
};

/*
 * Daemons running now, and the files they may leave. die() exits through
 * reap_daemons() and a terminating signal through on_signal(), so a failed
 * or interrupted run leaves neither a daemon nor the temporary directory.
 */
static volatile pid_t live[4];
static char live_dir[32];
static char live_files[6][64];

static void live_files_set(const char *dir)
{
	static const char *const names[3] = { "lat", "batch", "per-page" };

	strcpy(live_dir, dir);
	for (int i = 0; i < 6; i++)
		snprintf(live_files[i], sizeof(live_files[i]), "%s/%s.%s", dir, names[i / 2],
			 i % 2 ? "conf" : "sock");
}

/* Async-signal-safe: kill, unlink and rmdir only. */
static void clean_up(bool reap)
{
	for (size_t i = 0; i < sizeof(live) / sizeof(live[0]); i++)
		if (live[i] > 0) {
			kill(live[i], SIGTERM);
			if (reap)
				waitpid(live[i], NULL, 0);
			live[i] = 0;
		}
	if (live_dir[0]) {
		for (int i = 0; i < 6; i++)
			unlink(live_files[i]);
		rmdir(live_dir);
	}
}

static void reap_daemons(void)
{
	clean_up(true);
}

static void on_signal(int sig)
{
	clean_up(false);
	signal(sig, SIG_DFL);
	raise(sig);
}

static void live_set(pid_t old, pid_t pid)
{
	for (size_t i = 0; i < sizeof(live) / sizeof(live[0]); i++)
		if (live[i] == old) {
			live[i] = pid;
			return;
		}
	die("too many daemons", EMFILE);
}

/* Start a daemon with the config text, pinned to cpu. */
static void daemon_up(struct daemon *d, const struct opts *o, const char *name, const char *text,
		      int cpu)
{
	FILE *f;

	snprintf(d->sock, sizeof(d->sock), "%s/%s.sock", o->dir, name);
	snprintf(d->conf, sizeof(d->conf), "%s/%s.conf", o->dir, name);
	f = fopen(d->conf, "w");
	if (!f)
		die(d->conf, errno);
	if (fputs(text, f) < 0) {
		fclose(f);
		die(d->conf, EIO);
	}
	if (fclose(f))
		die(d->conf, errno);
	d->pid = start_daemon(o->bin, d->sock, "--io=uring", d->conf);
	live_set(0, d->pid);
	pin(d->pid, cpu);
}

static void daemon_down(struct daemon *d)
{
	kill(d->pid, SIGTERM);
	waitpid(d->pid, NULL, 0);
	live_set(d->pid, 0);
	unlink(d->sock);
	unlink(d->conf);
}

struct client {
	struct iovad *c;
	struct iovad_dev *dev;
	struct iovad_mem *mem;
	size_t bytes;
};

static void client_open(struct client *k, const char *sock, size_t bytes)
{
	int r;

	if ((r = iovad_connect(sock, &k->c)) || (r = iovad_dev_open(k->c, "sim0", &k->dev)) ||
	    (r = iovad_mem_alloc(k->c, bytes, &k->mem)))
		die("connect", r);
	/* Resident before any fault: a minor fault, as NP-RDMA's figure is. */
	memset(iovad_mem_addr(k->mem), FILL, bytes);
	k->bytes = bytes;
}

static void client_close(struct client *k)
{
	iovad_mem_free(k->mem);
	iovad_dev_close(k->dev);
	iovad_disconnect(k->c);
}

/* A region over all of the client's memory; several may map the same bytes. */
static struct iovad_odp *region(struct client *k)
{
	struct iovad_odp *odp;
	int r = iovad_odp_reg(k->dev, k->mem, 0, k->bytes, RIGHTS, 0, &odp);

	if (r)
		die("odp_reg", r);
	return odp;
}

static void unmap_all(struct iovad_odp *odp)
{
	int r = iovad_odp_invalidate(odp, 0, iovad_odp_size(odp));

	if (r)
		die("odp_invalidate", r);
}

static void touch(struct iovad_dev *dev, uint64_t iova)
{
	uint8_t buf[ACCESS_BYTES];
	int r = iovad_dev_dma_read(dev, iova, buf, sizeof(buf));

	if (r)
		die("dev_dma_read", r);
	if (buf[0] != FILL)
		die("dev_dma_read returned the wrong bytes", EIO);
}

/* ---- 1. first-touch latency ---------------------------------------------------------- */

struct lat_result {
	uint64_t first[2], mapped[2];  /* p50, p99, ns */
	int64_t cost[2];
	uint64_t daemon[2];            /* the daemon's histogram: bucket bounds */
	uint64_t touches, handled, pages;
	uint64_t slow_first, slow_mapped;  /* samples over 1 ms */
};

static void lat_run(const struct opts *o, int cpu_daemon, struct lat_result *res)
{
	size_t n = (size_t)o->rounds * o->lat_pages, i = 0;
	uint64_t *first = calloc(n, sizeof(*first)), *mapped = calloc(n, sizeof(*mapped));
	int64_t *cost = calloc(n, sizeof(*cost));
	struct iovad_odp_stats st = { 0 };
	struct iovad_odp *warm, *odp;
	struct daemon d;
	struct client k;
	int r;

	memset(res, 0, sizeof(*res));
	if (!first || !mapped || !cost)
		die("latency samples", ENOMEM);
	daemon_up(&d, o, "lat", "[odp]\nfault_around = 4K\nsync = batch\n", cpu_daemon);
	client_open(&k, d.sock, (size_t)o->lat_pages * SZ_4K);
	/* The warm-up has a region of its own: the timed one's histogram has only timed faults. */
	warm = region(&k);
	for (uint32_t p = 0; p < o->lat_pages; p++)
		touch(k.dev, iovad_odp_iova(warm) + (uint64_t)p * SZ_4K);

	odp = region(&k);
	for (int round = 0; round < o->rounds; round++) {
		for (uint32_t p = 0; p < o->lat_pages; p++, i++) {
			uint64_t iova = iovad_odp_iova(odp) + (uint64_t)p * SZ_4K, t0, t1, t2;

			t0 = now_ns();
			touch(k.dev, iova);
			t1 = now_ns();
			touch(k.dev, iova);
			t2 = now_ns();
			first[i] = t1 - t0;
			mapped[i] = t2 - t1;
			cost[i] = (int64_t)first[i] - (int64_t)mapped[i];
			res->slow_first += first[i] > 1000000;
			res->slow_mapped += mapped[i] > 1000000;
		}
		unmap_all(odp);  /* untimed: the next round faults again */
	}
	if ((r = iovad_odp_stats(odp, &st)))
		die("odp_stats", r);
	iovad_odp_dereg(odp);
	iovad_odp_dereg(warm);
	client_close(&k);
	daemon_down(&d);

	qsort(first, n, sizeof(*first), cmp_u64);
	qsort(mapped, n, sizeof(*mapped), cmp_u64);
	qsort(cost, n, sizeof(*cost), cmp_i64);
	res->first[0] = first[q_index(n, 0.5)];
	res->first[1] = first[q_index(n, 0.99)];
	res->mapped[0] = mapped[q_index(n, 0.5)];
	res->mapped[1] = mapped[q_index(n, 0.99)];
	res->cost[0] = cost[q_index(n, 0.5)];
	res->cost[1] = cost[q_index(n, 0.99)];
	res->daemon[0] = st.fault_p50_ns;
	res->daemon[1] = st.fault_p99_ns;
	res->touches = n;
	res->handled = st.page_faults_handled;
	res->pages = st.page_faults;
	free(first);
	free(mapped);
	free(cost);
}

static void lat_print(const char *tag, const char *label, const struct lat_result *r)
{
	double f50 = (double)r->first[0] / 1e3, c50 = (double)r->cost[0] / 1e3;

	printf("%-22s %-46s %9.2f %9.2f\n", label, "first touch: fault + service + retry + reply",
	       f50, (double)r->first[1] / 1e3);
	printf("%-22s %-46s %9.2f %9.2f\n", "", "same read again, mapped: the bare round trip",
	       (double)r->mapped[0] / 1e3, (double)r->mapped[1] / 1e3);
	printf("%-22s %-46s %9.2f %9.2f\n", "", "per-page difference: the fault's own cost", c50,
	       (double)r->cost[1] / 1e3);
	printf("%-22s %-46s %9.2f %9.2f\n", "", "daemon's fault-to-resume histogram (+-25%)",
	       (double)r->daemon[0] / 1e3, (double)r->daemon[1] / 1e3);
	printf("%-22s %-46s %9.2f %9.2f\n", "", "first-touch p50 / published 3.5 | 5.7 us",
	       f50 / PUB_LO_US, f50 / PUB_HI_US);
	printf("%-22s %-46s %9.2f %9.2f\n", "", "fault-cost p50 / published 3.5 | 5.7 us",
	       c50 / PUB_LO_US, c50 / PUB_HI_US);
	if (r->handled != r->touches || r->pages != r->touches)
		printf("%-22s note: %" PRIu64 " timed first touches, %" PRIu64
		       " faults served, %" PRIu64 " pages mapped\n", "", r->touches, r->handled,
		       r->pages);
	/* A p99 in milliseconds is a wake-up tail; say how much of it the mapped read shares. */
	if (r->slow_first || r->slow_mapped)
		printf("%-22s note: samples over 1 ms: first touch %.2f%%, mapped read %.2f%%\n",
		       "", 100.0 * (double)r->slow_first / (double)r->touches,
		       100.0 * (double)r->slow_mapped / (double)r->touches);

	summ("lat_%s_first_p50_us=%.2f\nlat_%s_first_p99_us=%.2f\n", tag, f50, tag,
	     (double)r->first[1] / 1e3);
	summ("lat_%s_mapped_p50_us=%.2f\nlat_%s_mapped_p99_us=%.2f\n", tag,
	     (double)r->mapped[0] / 1e3, tag, (double)r->mapped[1] / 1e3);
	summ("lat_%s_fault_cost_p50_us=%.2f\nlat_%s_fault_cost_p99_us=%.2f\n", tag, c50, tag,
	     (double)r->cost[1] / 1e3);
	summ("lat_%s_daemon_fault_p50_us=%.2f\nlat_%s_daemon_fault_p99_us=%.2f\n", tag,
	     (double)r->daemon[0] / 1e3, tag, (double)r->daemon[1] / 1e3);
	summ("lat_%s_first_p50_vs_3.5us=%.2f\nlat_%s_first_p50_vs_5.7us=%.2f\n", tag,
	     f50 / PUB_LO_US, tag, f50 / PUB_HI_US);
	summ("lat_%s_fault_cost_p50_vs_3.5us=%.2f\nlat_%s_fault_cost_p50_vs_5.7us=%.2f\n", tag,
	     c50 / PUB_LO_US, tag, c50 / PUB_HI_US);
}

/* ---- 2. fault throughput ------------------------------------------------------------- */

/* The counters part 2 reads, as deltas over one round. */
struct tput_counts {
	uint64_t pages, handled, syncs, flushes, errors;
};

struct tput_ctx {
	const char *sock[2];        /* a daemon per sync mode: [0] batch, [1] per-page */
	int cpu;                    /* where every client thread runs */
	uint32_t faults;            /* per thread per round */
	int rounds;                 /* timed; round 0 is the warm-up */
	pthread_barrier_t bar;
};

struct tput_thread {
	pthread_t tid;
	struct tput_ctx *x;
	struct tput_counts delta[2][MAX_ROUNDS + 1];
};

/* dst += sign * src (unsigned wrap-around makes -1 a subtraction). */
static void counts_add(struct tput_counts *dst, const struct tput_counts *src, int sign)
{
	uint64_t k = (uint64_t)(int64_t)sign;

	dst->pages += k * src->pages;
	dst->handled += k * src->handled;
	dst->syncs += k * src->syncs;
	dst->flushes += k * src->flushes;
	dst->errors += k * src->errors;
}

static void odp_totals(struct iovad *c, struct tput_counts *ret)
{
	struct iovad_odp_stats st = { 0 };
	int r = iovad_odp_stats_total(c, &st);

	if (r)
		die("odp_stats_total", r);
	*ret = (struct tput_counts){ .pages = st.page_faults, .handled = st.page_faults_handled,
				     .syncs = st.syncs, .flushes = st.flushes,
				     .errors = st.fault_errors };
}

/*
 * The modes take turns within each round, first one then the other
 * alternately, so that the ratio compares runs a second apart: on shared
 * vCPUs the cross-CPU figures drift by 2x or more over a minute.
 */
static int tput_mode(int round, int turn)
{
	return round & 1 ? 1 - turn : turn;
}

static void *tput_thread(void *arg)
{
	struct tput_thread *t = arg;
	struct tput_ctx *x = t->x;
	uint32_t wins = TPUT_MEM / SZ_64K, nreg = (x->faults + wins - 1) / wins;
	struct iovad_odp **odp[2];
	struct client k[2];

	pin(0, x->cpu);
	/*
	 * Fresh IOVA for every fault without fresh memory: many regions over
	 * the same 8 MiB, one read per 64 KiB window, so each read is a fault.
	 */
	for (int m = 0; m < 2; m++) {
		odp[m] = calloc(nreg, sizeof(*odp[m]));
		if (!odp[m])
			die("regions", ENOMEM);
		client_open(&k[m], x->sock[m], TPUT_MEM);
		for (uint32_t i = 0; i < nreg; i++)
			odp[m][i] = region(&k[m]);
	}
	for (int round = 0; round <= x->rounds; round++)
		for (int turn = 0; turn < 2; turn++) {
			int m = tput_mode(round, turn);
			struct tput_counts a, b;
			uint32_t done = 0;

			odp_totals(k[m].c, &a);
			pthread_barrier_wait(&x->bar);
			for (uint32_t i = 0; i < nreg; i++)
				for (uint32_t w = 0; w < wins && done < x->faults; w++, done++)
					touch(k[m].dev, iovad_odp_iova(odp[m][i]) +
							(uint64_t)w * SZ_64K);
			pthread_barrier_wait(&x->bar);
			odp_totals(k[m].c, &b);
			counts_add(&b, &a, -1);
			t->delta[m][round] = b;
			for (uint32_t i = 0; i < nreg; i++)
				unmap_all(odp[m][i]);
		}
	for (int m = 0; m < 2; m++) {
		for (uint32_t i = 0; i < nreg; i++)
			iovad_odp_dereg(odp[m][i]);
		free(odp[m]);
		client_close(&k[m]);
	}
	return NULL;
}

struct tput_result {
	double faults_s, pages_s;  /* medians over the timed rounds */
	struct tput_counts sum;    /* over the timed rounds and all threads */
};

/* Both modes with nthreads clients; return the median of the rounds' batch/per-page ratios. */
static double tput_run(const struct opts *o, const char *const sock[2], int cpu,
		       uint32_t nthreads, struct tput_result res[2])
{
	struct tput_ctx x = { .sock = { sock[0], sock[1] }, .cpu = cpu,
			      .faults = o->tput_faults / nthreads, .rounds = o->rounds };
	struct tput_thread *t = calloc(nthreads, sizeof(*t));
	double fs[2][MAX_ROUNDS], ps[2][MAX_ROUNDS], q[MAX_ROUNDS];
	uint64_t dt[2][MAX_ROUNDS + 1];

	if (!t)
		die("threads", ENOMEM);
	pthread_barrier_init(&x.bar, NULL, nthreads + 1);
	for (uint32_t i = 0; i < nthreads; i++) {
		t[i].x = &x;
		if (pthread_create(&t[i].tid, NULL, tput_thread, &t[i]))
			die("pthread_create", errno);
	}
	for (int round = 0; round <= o->rounds; round++)
		for (int turn = 0; turn < 2; turn++) {
			uint64_t t0;

			pthread_barrier_wait(&x.bar);
			t0 = now_ns();
			pthread_barrier_wait(&x.bar);
			dt[tput_mode(round, turn)][round] = now_ns() - t0;
		}
	for (uint32_t i = 0; i < nthreads; i++)
		pthread_join(t[i].tid, NULL);
	pthread_barrier_destroy(&x.bar);

	for (int m = 0; m < 2; m++) {
		memset(&res[m].sum, 0, sizeof(res[m].sum));
		for (int round = 1; round <= o->rounds; round++) {
			struct tput_counts s = { 0 };
			double sec = (double)dt[m][round] / 1e9;

			for (uint32_t i = 0; i < nthreads; i++)
				counts_add(&s, &t[i].delta[m][round], 1);
			fs[m][round - 1] = (double)((uint64_t)x.faults * nthreads) / sec;
			ps[m][round - 1] = (double)s.pages / sec;
			counts_add(&res[m].sum, &s, 1);
		}
	}
	/* Pair the rounds before the medians sort them. */
	for (int round = 0; round < o->rounds; round++)
		q[round] = fs[0][round] / fs[1][round];
	for (int m = 0; m < 2; m++) {
		res[m].faults_s = med_d(fs[m], o->rounds);
		res[m].pages_s = med_d(ps[m], o->rounds);
	}
	free(t);
	return med_d(q, o->rounds);
}

static const uint32_t tput_threads[] = { 4, 8 };
#define NTHREADS (sizeof(tput_threads) / sizeof(tput_threads[0]))

static void tput_print(const char *ptag, const char *place, int m, uint32_t nthreads,
		       const struct tput_result *r)
{
	static const char *const mode_name[2] = { "batch", "per-page" };
	static const char *const mode_tag[2] = { "batch", "per_page" };
	const struct tput_counts *s = &r->sum;
	const char *mt = mode_tag[m];

	printf("%-10s %-8s %2u %10.0f %10.0f %8.2f %8.3f %8.3f %8.2f %8.2f\n", place,
	       mode_name[m], nthreads, r->faults_s, r->pages_s, ratio(s->syncs, s->handled),
	       ratio(s->flushes, s->handled), ratio(s->flushes, s->pages),
	       ratio(s->pages, s->handled), ratio(s->syncs, s->flushes));
	if (s->errors)
		printf("   note: %" PRIu64 " faults answered with an error\n", s->errors);
	summ("tput_%s_%s_t%u_faults_per_s=%.0f\n", ptag, mt, nthreads, r->faults_s);
	summ("tput_%s_%s_t%u_pages_per_s=%.0f\n", ptag, mt, nthreads, r->pages_s);
	summ("tput_%s_%s_t%u_syncs_per_fault=%.2f\n", ptag, mt, nthreads,
	     ratio(s->syncs, s->handled));
	summ("tput_%s_%s_t%u_flushes_per_fault=%.3f\n", ptag, mt, nthreads,
	     ratio(s->flushes, s->handled));
	summ("tput_%s_%s_t%u_flushes_per_page=%.3f\n", ptag, mt, nthreads,
	     ratio(s->flushes, s->pages));
	summ("tput_%s_%s_t%u_pages_per_fault=%.2f\n", ptag, mt, nthreads,
	     ratio(s->pages, s->handled));
	summ("tput_%s_%s_t%u_syncs_per_flush=%.2f\n", ptag, mt, nthreads,
	     ratio(s->syncs, s->flushes));
}

static void tput_part(const struct opts *o)
{
	static const char *const conf[2] = {
		"[odp]\nfault_around = 64K\nsync = batch\n",
		"[odp]\nfault_around = 64K\nsync = per-page\n",
	};
	double q[2][NTHREADS];
	int nplace = o->ncpus >= 2 ? 2 : 1;

	printf("\n2. fault throughput: fault_around = 64K, one %u-byte read per fresh window, "
	       "T client threads\n   (each its own connection) on CPU 0, %u faults per round, "
	       "median of %d rounds,\n   the two modes taking turns; counters summed over the "
	       "rounds. Batch mode flushes once\n   per service batch, so there syncs/flush is "
	       "the faults served per batch\n", ACCESS_BYTES, o->tput_faults, o->rounds);
	printf("%-10s %-8s %2s %10s %10s %8s %8s %8s %8s %8s\n", "daemon on", "sync", "T",
	       "faults/s", "pages/s", "syncs/", "flushes/", "flushes/", "pages/", "syncs/");
	printf("%-10s %-8s %2s %10s %10s %8s %8s %8s %8s %8s\n", "", "", "", "", "", "fault",
	       "fault", "page", "fault", "flush");
	for (int pl = 0; pl < nplace; pl++) {
		const char *ptag = pl ? "2cpu" : "1cpu", *place = pl ? "CPU 1" : "CPU 0";
		struct daemon d[2];
		const char *sock[2];

		/* Clients on CPU 0; the daemons with them, or on CPU 1. */
		daemon_up(&d[0], o, "batch", conf[0], pl ? 1 : 0);
		daemon_up(&d[1], o, "per-page", conf[1], pl ? 1 : 0);
		sock[0] = d[0].sock;
		sock[1] = d[1].sock;
		for (size_t ti = 0; ti < NTHREADS; ti++) {
			struct tput_result r[2];

			q[pl][ti] = tput_run(o, sock, 0, tput_threads[ti], r);
			tput_print(ptag, place, 0, tput_threads[ti], &r[0]);
			tput_print(ptag, place, 1, tput_threads[ti], &r[1]);
		}
		daemon_down(&d[0]);
		daemon_down(&d[1]);
	}
	printf("faults/s, batch vs per-page (median of the rounds' ratios):");
	for (int pl = 0; pl < nplace; pl++)
		for (size_t ti = 0; ti < NTHREADS; ti++) {
			printf("  %s T=%u %.2fx", pl ? "CPU 1" : "CPU 0", tput_threads[ti],
			       q[pl][ti]);
			summ("tput_%s_t%u_batch_vs_per_page=%.2f\n", pl ? "2cpu" : "1cpu",
			     tput_threads[ti], q[pl][ti]);
		}
	printf("\n");
}

/* ---- 3. the engine alone --------------------------------------------------------------- */

struct eng {
	struct pmem_space p;
	struct dom_domain *dom;
	struct dom_device *dev;
	struct pmem_obj *obj;
	struct odp_region r;
};

/* Region offsets wrap around one object: fresh IOVA for every fault, bounded memory. */
static int eng_resolve(void *arg, uint64_t off, uint64_t *phys, uint64_t *run)
{
	const struct pmem_obj *o = arg;
	uint64_t at = off % o->size;

	*phys = o->phys + at;
	*run = o->size - at;
	return 0;
}

static void eng_init(struct eng *e, uint32_t faults)
{
	int r;

	if ((r = pmem_space_init(&e->p)) ||
	    (r = dom_domain_create(&e->p, &(struct dom_config){ 0 }, &e->dom)) ||
	    (r = dom_device_create(e->dom, &(struct dom_device_config){ .name = "sim0" },
				   &e->dev)) ||
	    (r = pmem_obj_create(&e->p, ENG_OBJ, "bench-odp", &e->obj)))
		die("in-process setup", r);
	memset(e->obj->va, FILL, ENG_OBJ);
	r = odp_region_init(&e->r, e->dev, (uint64_t)faults * SZ_64K,
			    ODP_ACCESS_DEVICE_READ | ODP_ACCESS_DEVICE_WRITE, eng_resolve, e->obj);
	if (r)
		die("odp_region_init", r);
}

static void eng_fini(struct eng *e)
{
	odp_region_fini(&e->r);
	dom_device_destroy(e->dev);
	dom_domain_destroy(e->dom);
	pmem_space_fini(&e->p);
}

static void eng_unmap(struct eng *e)
{
	int64_t r = odp_invalidate(&e->r, 0, e->r.size);

	if (r < 0)
		die("odp_invalidate", (int)r);
}

struct eng_result {
	double ns_fault, ns_page;  /* medians over the rounds */
	uint64_t faults, pages, syncs, flushes;
};

static void eng_run(struct eng *e, const struct opts *o, uint64_t window, enum odp_sync_mode mode,
		    uint32_t batch, struct eng_result *res)
{
	struct odp_config cfg = { .sync = mode, .window = window };
	struct odp_fault f[ENG_MAX_BATCH];
	double nf[MAX_ROUNDS], np[MAX_ROUNDS];

	memset(res, 0, sizeof(*res));
	for (int round = 0; round <= o->rounds; round++) {
		struct odp_counters c0;
		uint64_t t0, dt;

		eng_unmap(e);
		c0 = e->r.cnt;
		t0 = now_ns();
		for (uint32_t k = 0; k < o->eng_faults; k += batch) {
			for (uint32_t i = 0; i < batch; i++)
				f[i] = (struct odp_fault){ .r = &e->r, .off = (k + i) * window,
							   .len = ACCESS_BYTES,
							   .access = DOM_ACCESS_READ };
			odp_service(&cfg, f, batch);
			for (uint32_t i = 0; i < batch; i++)
				if (f[i].status)
					die("odp_service", f[i].status);
		}
		dt = now_ns() - t0;
		if (!round)
			continue;
		nf[round - 1] = (double)dt / o->eng_faults;
		np[round - 1] = (double)dt / (double)(e->r.cnt.page_faults - c0.page_faults);
		res->faults += e->r.cnt.page_faults_handled - c0.page_faults_handled;
		res->pages += e->r.cnt.page_faults - c0.page_faults;
		res->syncs += e->r.cnt.syncs - c0.syncs;
		res->flushes += e->r.cnt.flushes - c0.flushes;
	}
	res->ns_fault = med_d(nf, o->rounds);
	res->ns_page = med_d(np, o->rounds);
}

/*
 * The whole fault path without the daemon, as part 1 times it through the
 * daemon: a 64-byte device read that faults, odp_service() of that one fault
 * with a 4 KiB window, the read again; then the mapped read alone.
 * Return: the p50 of the first in *first_ns and of the mapped read in *mapped_ns.
 */
static void eng_full_path(struct eng *e, const struct opts *o, uint64_t *first_ns,
			  uint64_t *mapped_ns)
{
	size_t n = (size_t)o->rounds * o->eng_faults, i = 0;
	uint64_t *first = calloc(n, sizeof(*first)), *mapped = calloc(n, sizeof(*mapped));
	struct odp_config cfg = { .sync = ODP_SYNC_BATCH, .window = SZ_4K };
	uint8_t buf[ACCESS_BYTES];

	if (!first || !mapped)
		die("samples", ENOMEM);
	for (int round = 0; round <= o->rounds; round++) {
		eng_unmap(e);
		for (uint32_t k = 0; k < o->eng_faults; k++) {
			uint64_t off = (uint64_t)k * SZ_4K, t0, t1, t2;
			struct odp_fault f = { .r = &e->r, .off = off, .len = ACCESS_BYTES,
					       .access = DOM_ACCESS_READ };
			struct dom_fault df;

			t0 = now_ns();
			if (dom_dev_dma_read(e->dev, e->r.st.addr + off, buf, sizeof(buf), &df) !=
			    -EFAULT)
				die("in-process first touch did not fault", EIO);
			odp_service(&cfg, &f, 1);
			if (f.status || dom_dev_dma_read(e->dev, e->r.st.addr + off, buf,
							 sizeof(buf), &df))
				die("in-process fault service", f.status ? f.status : EIO);
			t1 = now_ns();
			if (dom_dev_dma_read(e->dev, e->r.st.addr + off, buf, sizeof(buf), &df))
				die("in-process mapped read", EIO);
			t2 = now_ns();
			if (!round)
				continue;
			first[i] = t1 - t0;
			mapped[i++] = t2 - t1;
		}
	}
	qsort(first, n, sizeof(*first), cmp_u64);
	qsort(mapped, n, sizeof(*mapped), cmp_u64);
	*first_ns = first[q_index(n, 0.5)];
	*mapped_ns = mapped[q_index(n, 0.5)];
	free(first);
	free(mapped);
}

/* Return: the in-process fault path's own cost (p50, ns), for the comparison with part 1. */
static uint64_t eng_part(const struct opts *o)
{
	static const uint64_t windows[] = { SZ_4K, SZ_64K };
	static const uint32_t batches[] = { 1, 16, ENG_MAX_BATCH };
	static const char *const mode_name[2] = { "batch", "per-page" };
	static const char *const mode_tag[2] = { "batch", "per_page" };
	uint64_t first, mapped;
	struct eng e;

	eng_init(&e, o->eng_faults);
	printf("\n3. the engine alone, in-process: odp_service() on batches of faults, %u faults "
	       "per round,\n   median of %d rounds (no socket, no event loop)\n", o->eng_faults,
	       o->rounds);
	printf("%-7s %-8s %5s %10s %10s %8s %8s %8s %8s\n", "window", "sync", "batch",
	       "ns/fault", "ns/page", "pages/", "syncs/", "flushes/", "flushes/");
	printf("%-7s %-8s %5s %10s %10s %8s %8s %8s %8s\n", "", "", "", "", "", "fault", "fault",
	       "fault", "page");
	for (size_t w = 0; w < sizeof(windows) / sizeof(windows[0]); w++)
		for (int m = 0; m < 2; m++)
			for (size_t b = 0; b < sizeof(batches) / sizeof(batches[0]); b++) {
				struct eng_result r;

				eng_run(&e, o, windows[w], (enum odp_sync_mode)m, batches[b], &r);
				printf("%-7s %-8s %5u %10.0f %10.0f %8.2f %8.2f %8.4f %8.4f\n",
				       w ? "64K" : "4K", mode_name[m], batches[b], r.ns_fault,
				       r.ns_page, ratio(r.pages, r.faults),
				       ratio(r.syncs, r.faults), ratio(r.flushes, r.faults),
				       ratio(r.flushes, r.pages));
				summ("eng_%s_%s_b%u_ns_per_fault=%.0f\n", w ? "64k" : "4k",
				     mode_tag[m], batches[b], r.ns_fault);
				summ("eng_%s_%s_b%u_ns_per_page=%.0f\n", w ? "64k" : "4k",
				     mode_tag[m], batches[b], r.ns_page);
				summ("eng_%s_%s_b%u_flushes_per_fault=%.4f\n", w ? "64k" : "4k",
				     mode_tag[m], batches[b], ratio(r.flushes, r.faults));
			}
	eng_full_path(&e, o, &first, &mapped);
	eng_fini(&e);
	printf("whole path, 4K window: faulting read + odp_service + read again: p50 %.2f us; "
	       "a mapped read: %.2f us;\n  the fault's own cost in-process: %.2f us\n",
	       (double)first / 1e3, (double)mapped / 1e3, ((double)first - (double)mapped) / 1e3);
	summ("eng_first_touch_p50_us=%.2f\neng_mapped_read_p50_us=%.2f\neng_fault_cost_us=%.2f\n",
	     (double)first / 1e3, (double)mapped / 1e3, ((double)first - (double)mapped) / 1e3);
	return first > mapped ? first - mapped : 0;
}

/* ---- main --------------------------------------------------------------------------------- */

/* The summary's key=value lines as rows of path (--csv), units from the keys' endings. */
static void summary_csv(const char *path)
{
	FILE *f = fig_open(path);
	char *save = NULL;

	for (char *l = strtok_r(summary, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
		char *eq = strchr(l, '=');
		const char *unit = "";
		size_t kl;

		if (!eq)
			continue;
		*eq = 0;
		kl = strlen(l);
		if (kl > 3 && !strcmp(l + kl - 3, "_us"))
			unit = "us";
		else if (strstr(l, "_ns_per_"))
			unit = "ns";
		else if (kl > 6 && !strcmp(l + kl - 6, "_per_s"))
			unit = "/s";
		fig_row(f, l, transport(), strtod(eq + 1, NULL), unit, 0, "");
	}
	fclose(f);
}

static void usage(const char *argv0)
{
	fprintf(stderr, "usage: %s [--quick] [--daemon PATH] [--rounds N (1..%d)] [--csv FILE]\n",
		argv0, MAX_ROUNDS);
	exit(2);
}

int main(int argc, char **argv)
{
	struct opts o = { .bin = IOVAD_DAEMON_PATH, .rounds = 5, .lat_pages = 4096,
			  .tput_faults = 32768, .eng_faults = 4096 };
	struct lat_result lat[2];
	uint64_t eng_cost;
	int rounds = 0, nplace;
	const char *csv = NULL;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--daemon") && i + 1 < argc) {
			o.bin = argv[++i];
		} else if (!strcmp(argv[i], "--rounds") && i + 1 < argc) {
			rounds = atoi(argv[++i]);
			if (rounds < 1 || rounds > MAX_ROUNDS)
				usage(argv[0]);
		} else if (!strcmp(argv[i], "--csv") && i + 1 < argc) {
			csv = argv[++i];
		} else if (!strcmp(argv[i], "--quick")) {
			o.rounds = 2;
			o.lat_pages = 256;
			o.tput_faults = 2048;
			o.eng_faults = 512;
		} else {
			usage(argv[0]);
		}
	}
	if (rounds)
		o.rounds = rounds;
	o.ncpus = (int)sysconf(_SC_NPROCESSORS_ONLN);
	nplace = o.ncpus >= 2 ? 2 : 1;
	strcpy(o.dir, "/tmp/iovad-bench-XXXXXX");
	if (!mkdtemp(o.dir))
		die("mkdtemp", errno);
	live_files_set(o.dir);
	atexit(reap_daemons);
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	signal(SIGHUP, on_signal);
	/* Every client thread and the in-process part run on CPU 0; only the daemon moves. */
	pin(0, 0);

	printf("bench-odp: daemon %s, %d CPUs online, %d timed rounds after a warm-up\n", o.bin,
	       o.ncpus, o.rounds);
	printf("\n1. first-touch fault latency: fault_around = 4K, one %u-byte "
	       "iovad_dev_dma_read per page,\n   %u pages x %d rounds (all samples pooled)\n",
	       ACCESS_BYTES, o.lat_pages, o.rounds);
	printf("%-22s %-46s %9s %9s\n", "placement", "measure", "p50 (us)", "p99 (us)");
	for (int pl = 0; pl < nplace; pl++) {
		lat_run(&o, pl ? 1 : 0, &lat[pl]);
		lat_print(pl ? "2cpu" : "1cpu", pl ? "client, daemon: 2 CPUs" :
			  "client, daemon: 1 CPU", &lat[pl]);
	}

	tput_part(&o);

	eng_cost = eng_part(&o);
	printf("what the daemon adds to a fault's own cost (part 1 fault cost p50 - in-process):");
	for (int pl = 0; pl < nplace; pl++) {
		double add = ((double)lat[pl].cost[0] - (double)eng_cost) / 1e3;

		printf("  %s %.2f us", pl ? "2 CPUs" : "1 CPU", add);
		summ("daemon_adds_per_fault_%s_us=%.2f\n", pl ? "2cpu" : "1cpu", add);
	}
	printf("\n\nsummary\n%s", summary);
	if (csv)
		summary_csv(csv);
	return 0;
}
