// SPDX-License-Identifier: MIT
/*
 * bench-scale - does the daemon's work per operation stay flat as clients,
 * IOVA states, ODP regions and mapped pages grow, and what does dense
 * mapping cost it in memory? The curves bench/run-all plots (issue 7, parts
 * 2 and 3). Every figure is a median or a quantile over many samples taken
 * in this run; nothing is judged here.
 *
 * clients  Latency of one link+sync round trip (a BATCH of LINK + SYNC of one
 *          4 KiB page, as bench-ipc times it; the UNLINK after it is not
 *          timed) against N connected clients, N = 1, 2, 4 ... 1024. Every
 *          client is a connection of its own holding real state: a device, a
 *          64 KiB memory object, and an IOVA state with 15 pages linked and
 *          synced, one LINK each. One driver thread sends the requests
 *          round-robin over all N sessions, one at a time. Why this load: with
 *          one request in flight the latency is the daemon's cost per
 *          operation plus the transport's, with N sessions around it (its
 *          lookups, its event loop watching N sockets, cold caches: each
 *          request touches a different session than the one before). N clients
 *          in closed loop at once would measure queueing instead: on 2 vCPUs N
 *          concurrent requests take N service times whatever the daemon does.
 *          p50 and p99 are each the median of 5 consecutive blocks' own, so
 *          that one burst of another tenant's work does not make the figure.
 *          The throughput view comes second: one batch in flight on every
 *          session at once, then wait for them all, and ns per operation =
 *          elapsed / N. A per-operation cost that grew with N shows in both.
 *          Client and daemon on one vCPU, then on two. The daemon's memory
 *          (smaps_rollup Anonymous) per client comes along.
 * batch    Pages linked per second against B, the LINKs (one 4 KiB page each)
 *          per round trip, B = 1, 2, 4 ... 4096, each round trip ending with
 *          one SYNC over them. A libiovad batch holds at most 256 operations
 *          (what it offers in HELLO; the protocol's cap is 1024), so when B + 1
 *          exceeds that the round trip is several batches submitted together,
 *          the SYNC in the last. Against the same operations on the domain
 *          engine in-process (B links and one sync in one dom_batch).
 * rss      The daemon's own memory against mapped 4 KiB pages, up to 4 Mi
 *          pages (16 GiB of IOVA linked densely) on a domain with blocks = no,
 *          so that every page is a 4 KiB leaf. The memory object is a sparse
 *          memfd nobody writes: the daemon maps it and never faults it in, so
 *          what grows is its bookkeeping. /proc/PID/smaps_rollup is read after
 *          each step (Rss and Anonymous); bytes per page = growth of Anonymous
 *          over a baseline taken once the memory object and the state exist,
 *          divided by the pages linked. The engine's own count of page-table
 *          bytes (iovad_dev_stats) comes along, to tell its tables from the
 *          allocator's overhead and from the session's records. Two ways to
 *          link the same pages: 1 MiB per LINK, and 4 KiB per LINK (a scatter
 *          list of single pages). At each step: one link+sync round trip in
 *          another, small state, and the unlink and the relink+sync of one
 *          page of the big state. Target: <= 8.5 B per page.
 * fault    The first device touch of a page of an ODP region (fault, service,
 *          retry, reply) and the mapped read after it, against the region's
 *          size, 1 GiB .. 1 TiB reserved (x4 steps), and the registration,
 *          whole-region invalidation and deregistration of the region.
 *          [odp] fault_around = 4K, so each first touch is exactly one fault;
 *          the pages touched are spread over the whole region and written by
 *          the client first (minor faults, as in bench-odp). The memory object
 *          is a sparse memfd as large as the region.
 * states   Round trips against the number of live IOVA states of one session
 *          (1 .. 65536: create = try_alloc, destroy = free, link+sync of a
 *          page of another state), and against the number of its ODP regions
 *          (1 .. 1024: create = odp_reg, destroy = odp_dereg, a first touch in
 *          another region).
 * rings    One link+sync round trip and one ODP first touch with libiovad's
 *          shared-memory rings allowed and without them (IOVAD_RINGS=0):
 *          client and daemon on one vCPU; on two with neither side polling
 *          ([rings] spin_us = 0, IOVAD_RING_SPIN_US=0); on two polling (the
 *          shipped spin settings). Each point runs in a child process with its
 *          own environment. A daemon that does not know [rings] (its
 *          --check-config refuses the section) runs without it, both modes
 *          then measure the socket, and the rows say so (rings_config = no).
 *
 * Transport: clients, batch and fault run twice, over the socket
 * (IOVAD_RINGS=0) and over libiovad's shared-memory rings (allowed: what
 * libiovad does by default when the daemon offers them; libiovad reads the
 * variable at connect, so each mode connects afresh); rss and states run over
 * the rings. A daemon without rings gets the socket only. --mode socket|rings
 * picks one. Round 0 of each measurement is an untimed warm-up. Placement:
 * the driver always runs on CPU 0; "1cpu" puts the daemon there too, "2cpu"
 * on CPU 1. Each part starts its own daemon (--daemon PATH) on a temporary
 * socket with the configuration it needs, and the file-descriptor soft limit
 * is raised to the hard one (the daemon inherits it). --csv DIR writes one
 * CSV per part (for bench/run-all); --quick (or --smoke) runs every part
 * small, in seconds. Not a test: it prints figures, no pass/fail.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#define BENCH_NAME "bench-scale"
#include "../common.h"
#include "domain.h"
#include <iovad/iovad.h>

#define SZ_4K        UINT64_C(4096)
#define SZ_1M        (UINT64_C(1) << 20)
#define SZ_1G        (UINT64_C(1) << 30)
#define ACCESS_BYTES 64u
#define FILL         0x5a
#define RIGHTS       (IOVAD_ACCESS_DEVICE_READ | IOVAD_ACCESS_DEVICE_WRITE)

#define CL_PAGES     16u      /* each client's memory and state: page 0 timed, 1..15 linked */
#define BATCH_MAX_B  4096u    /* the largest B of the batch curve */
#define MAX_BATCHES  64u      /* libiovad batches one round trip may take */

enum part {
	PART_CLIENTS = 1u << 0,
	PART_BATCH = 1u << 1,
	PART_RSS = 1u << 2,
	PART_FAULT = 1u << 3,
	PART_STATES = 1u << 4,
	PART_RINGS = 1u << 5,
	PART_ALL = (1u << 6) - 1,
};

static const char *const part_names[] = { "clients", "batch", "rss", "fault", "states", "rings" };
#define NPARTS (sizeof(part_names) / sizeof(part_names[0]))

struct opts {
	const char *bin;
	const char *csv_dir;
	unsigned int parts;
	int ncpus;
	uint32_t min_clients;   /* clients: the first N */
	uint32_t max_clients;   /* clients: the last N */
	uint32_t lat_samples;   /* round trips per latency point */
	uint32_t batch_pages;   /* batch: pages linked per round */
	uint32_t batch_rounds;
	uint64_t max_pages;     /* rss: the last point */
	uint64_t max_region;    /* fault: the largest region */
	uint32_t fault_pages;   /* fault: pages touched per round */
	uint32_t fault_rounds;
	uint32_t max_states;    /* states: the last count */
	uint32_t max_regions;
	uint32_t ring_iters;    /* rings: round trips per point */
	uint32_t ring_pages;    /* rings: first touches per point */
	int nmodes;             /* 2 when the daemon offers rings: socket, then rings */
	int first_mode;         /* --mode rings: 1 */
};

/*
 * The transports the clients, batch and fault parts run over: the socket
 * ($IOVAD_RINGS=0) and libiovad's shared-memory rings (allowed: libiovad
 * uses them when the daemon offers them). libiovad reads $IOVAD_RINGS when it
 * connects, so set_mode() goes before the connections of a mode.
 */
static const char *const mode_names[2] = { "socket", "rings" };

static void set_mode(int mode)
{
	if (mode == 0)
		setenv("IOVAD_RINGS", "0", 1);
	else
		unsetenv("IOVAD_RINGS");
}

/* ---- statistics ------------------------------------------------------------------------ */

/* Nearest-rank quantile q of n sorted samples. */
static uint64_t quant(const uint64_t *v, size_t n, double q)
{
	size_t i = (size_t)(q * (double)n + 0.999999);

	if (!n)
		return 0;
	return v[i ? (i > n ? n : i) - 1 : 0];
}

static void sort_u64(uint64_t *v, size_t n)
{
	qsort(v, n, sizeof(*v), cmp_u64);
}

static double us(uint64_t ns)
{
	return (double)ns / 1e3;
}

static int cmp_dbl(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

/* Sorts v in place. */
static double med_d(double *v, size_t n)
{
	qsort(v, n, sizeof(*v), cmp_dbl);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static void *xcalloc(size_t n, size_t sz)
{
	void *p = calloc(n ? n : 1, sz);

	if (!p)
		die("calloc", ENOMEM);
	return p;
}

/* ---- the private daemon ------------------------------------------------------------------ */

/*
 * One daemon runs at a time, on dir/d.sock with dir/d.conf. die() exits
 * through atexit(clean_up) and a terminating signal through on_signal(), so
 * neither a daemon nor the temporary directory outlives a failed run.
 */
static char dir[32] = "/tmp/iovad-scale-XXXXXX";
static char sock_path[64], conf_path[64], probe_path[64];
static volatile pid_t live_pid;

/* Async-signal-safe: kill, unlink and rmdir only. */
static void clean_files(bool reap)
{
	if (live_pid > 0) {
		kill(live_pid, SIGTERM);
		if (reap)
			waitpid(live_pid, NULL, 0);
		live_pid = 0;
	}
	unlink(sock_path);
	unlink(conf_path);
	unlink(probe_path);
	rmdir(dir);
}

static void clean_up(void)
{
	clean_files(true);
}

static void on_signal(int sig)
{
	clean_files(false);
	signal(sig, SIG_DFL);
	raise(sig);
}

static void write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");

	if (!f)
		die(path, errno);
	if (fputs(text, f) < 0) {
		fclose(f);
		die(path, EIO);
	}
	if (fclose(f))
		die(path, errno);
}

/* Start the daemon with config text (NULL: the built-in configuration), pinned to cpu. */
static pid_t daemon_up(const struct opts *o, const char *text, int cpu)
{
	if (text)
		write_file(conf_path, text);
	live_pid = start_daemon(o->bin, sock_path, "--io=uring", text ? conf_path : NULL);
	pin(live_pid, cpu);
	return live_pid;
}

static void daemon_down(void)
{
	pid_t pid = live_pid;
	int st;

	live_pid = 0;
	kill(pid, SIGTERM);
	if (waitpid(pid, &st, 0) < 0 || !WIFEXITED(st) || WEXITSTATUS(st))
		fprintf(stderr, BENCH_NAME ": note: the daemon ended with status %#x\n", st);
	unlink(sock_path);
	unlink(conf_path);
}

/* Does the daemon accept this configuration text (iovad --check-config)? */
static bool daemon_accepts(const struct opts *o, const char *text)
{
	pid_t pid;
	int st;

	write_file(probe_path, text);
	pid = fork();
	if (pid < 0)
		die("fork", errno);
	if (pid == 0) {
		int null = open("/dev/null", O_WRONLY);

		if (null >= 0) {
			dup2(null, 1);
			dup2(null, 2);
		}
		execl(o->bin, "iovad", "--check-config", probe_path, (char *)NULL);
		_exit(127);
	}
	if (waitpid(pid, &st, 0) < 0)
		die("waitpid", errno);
	unlink(probe_path);
	return WIFEXITED(st) && WEXITSTATUS(st) == 0;
}

/* The daemon's own memory, from /proc/PID/smaps_rollup, in KiB. */
struct mem_use {
	uint64_t rss_kib, anon_kib;
};

static void mem_use(pid_t pid, struct mem_use *m)
{
	char path[64], line[256];
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/smaps_rollup", (int)pid);
	f = fopen(path, "r");
	if (!f)
		die(path, errno);
	memset(m, 0, sizeof(*m));
	while (fgets(line, sizeof(line), f)) {
		unsigned long long v;

		if (sscanf(line, "Rss: %llu kB", &v) == 1)
			m->rss_kib = v;
		else if (sscanf(line, "Anonymous: %llu kB", &v) == 1)
			m->anon_kib = v;
	}
	fclose(f);
}

/*
 * CPU time pid's threads have run, ns, from /proc/PID/task/TID/schedstat
 * (pid 0: the calling thread). The daemon's CPU per operation is the work
 * per operation without the wake-ups and the queueing a latency includes.
 */
static uint64_t cpu_ns(pid_t pid)
{
	char path[64], line[128];
	uint64_t sum = 0;
	struct dirent *de;
	DIR *d;

	if (!pid) {
		FILE *f = fopen("/proc/thread-self/schedstat", "r");
		unsigned long long v = 0;

		if (!f || !fgets(line, sizeof(line), f) || sscanf(line, "%llu", &v) != 1)
			die("/proc/thread-self/schedstat", errno ? errno : EIO);
		fclose(f);
		return v;
	}
	snprintf(path, sizeof(path), "/proc/%d/task", (int)pid);
	d = opendir(path);
	if (!d)
		die(path, errno);
	while ((de = readdir(d))) {
		char p2[400];
		unsigned long long v;
		FILE *f;

		if (de->d_name[0] == '.')
			continue;
		snprintf(p2, sizeof(p2), "%s/%s/schedstat", path, de->d_name);
		f = fopen(p2, "r");
		if (!f)
			continue; /* a thread that just ended */
		if (fgets(line, sizeof(line), f) && sscanf(line, "%llu", &v) == 1)
			sum += v;
		fclose(f);
	}
	closedir(d);
	return sum;
}

/* ---- CSV ----------------------------------------------------------------------------------- */

/* dir/name.csv with its header line, or NULL without --csv. */
static FILE *csv_part(const struct opts *o, const char *name, const char *header)
{
	char path[4096];
	FILE *f;

	if (!o->csv_dir)
		return NULL;
	snprintf(path, sizeof(path), "%s/%s.csv", o->csv_dir, name);
	f = fopen(path, "w");
	if (!f)
		die(path, errno);
	fprintf(f, "%s\n", header);
	return f;
}

__attribute__((format(printf, 2, 3))) static void csv_row(FILE *f, const char *fmt, ...)
{
	va_list ap;

	if (!f)
		return;
	va_start(ap, fmt);
	vfprintf(f, fmt, ap);
	va_end(ap);
	fputc('\n', f);
	fflush(f);
}

static void csv_close(FILE *f)
{
	if (f && fclose(f))
		die("csv", errno);
}

/* ---- a client ------------------------------------------------------------------------------- */

struct cl {
	struct iovad *c;
	struct iovad_dev *dev;
	struct iovad_mem *mem;
	struct iovad_iova_state st;  /* pages 1..15 linked, page 0 for the timed operations */
	struct iovad_batch *b, *u;   /* link+sync, unlink */
};

static void wait_ok(struct iovad_batch *b, const char *what)
{
	int r = iovad_batch_wait(b);

	if (r)
		die(what, r);
	for (size_t i = 0; i < iovad_batch_count(b); i++)
		if ((r = iovad_batch_op_status(b, i)))
			die(what, r);
}

static void cl_open(struct cl *k, const char *sock, const char *dev, size_t pages)
{
	int r;

	memset(k, 0, sizeof(*k));
	if ((r = iovad_connect(sock, &k->c)) || (r = iovad_dev_open(k->c, dev, &k->dev)) ||
	    (r = iovad_mem_alloc(k->c, pages * SZ_4K, &k->mem)) ||
	    (r = iovad_batch_new(k->c, &k->b)) || (r = iovad_batch_new(k->c, &k->u)))
		die("client setup", r);
}

static void cl_close(struct cl *k)
{
	iovad_batch_free(k->b);
	iovad_batch_free(k->u);
	iovad_mem_free(k->mem);
	iovad_dev_close(k->dev);
	iovad_disconnect(k->c);
}

static void alloc_state(struct cl *k, struct iovad_iova_state *st, uint64_t bytes)
{
	if (!iovad_iova_try_alloc(k->dev, st, iovad_mem_phys(k->mem), bytes))
		die("try_alloc", errno);
}

/* The client of the clients part: its state has pages 1..15 linked (15 LINKs) and synced. */
static void cl_open_loaded(struct cl *k, const char *sock)
{
	uint64_t phys;

	cl_open(k, sock, "sim0", CL_PAGES);
	phys = iovad_mem_phys(k->mem);
	alloc_state(k, &k->st, CL_PAGES * SZ_4K);
	iovad_batch_reset(k->b);
	for (uint32_t p = 1; p < CL_PAGES; p++)
		iovad_batch_link(k->b, k->dev, &k->st, phys + p * SZ_4K, p * SZ_4K, SZ_4K,
				 IOVAD_DMA_BIDIRECTIONAL, 0);
	iovad_batch_sync(k->b, k->dev, &k->st, SZ_4K, (CL_PAGES - 1) * SZ_4K);
	if (iovad_batch_submit(k->b, NULL, NULL))
		die("submit", EIO);
	wait_ok(k->b, "setup links");
}

/* Queue LINK + SYNC of the page at off of st in b (not submitted). */
static void prep_link_sync(struct cl *k, struct iovad_batch *b, struct iovad_iova_state *st,
			   uint64_t phys, uint64_t off)
{
	iovad_batch_reset(b);
	iovad_batch_link(b, k->dev, st, phys, off, SZ_4K, IOVAD_DMA_BIDIRECTIONAL, 0);
	iovad_batch_sync(b, k->dev, st, off, SZ_4K);
}

/* One timed link+sync round trip of the page at off of st: ns. */
static uint64_t rt_link_sync(struct cl *k, struct iovad_iova_state *st, uint64_t phys,
			     uint64_t off)
{
	uint64_t t0, t;
	int r;

	prep_link_sync(k, k->b, st, phys, off);
	t0 = now_ns();
	r = iovad_batch_submit(k->b, NULL, NULL);
	if (!r)
		r = iovad_batch_wait(k->b);
	t = now_ns() - t0;
	if (r || (r = iovad_batch_op_status(k->b, 0)) || (r = iovad_batch_op_status(k->b, 1)))
		die("link+sync", r);
	return t;
}

/* One unlink round trip: ns. */
static uint64_t rt_unlink(struct cl *k, struct iovad_iova_state *st, uint64_t off, uint64_t len)
{
	uint64_t t0 = now_ns();
	int r = iovad_iova_unlink(k->dev, st, off, len, IOVAD_DMA_BIDIRECTIONAL, 0);

	if (r)
		die("unlink", r);
	return now_ns() - t0;
}

/* ---- clients ------------------------------------------------------------------------------- */

#define LAT_BLOCKS 5u

/*
 * p50 and p99 of n samples taken in time order, each the median over
 * LAT_BLOCKS consecutive blocks of the block's own quantile: a burst of
 * interference from another tenant of the machine (a few ms in one block)
 * moves one block's p99, not the figure. Sorts t in place; t[n - 1] is then
 * the maximum.
 */
static void block_quantiles(uint64_t *t, uint32_t n, uint64_t *p50, uint64_t *p99)
{
	uint64_t q50[LAT_BLOCKS], q99[LAT_BLOCKS];
	uint32_t per = n / LAT_BLOCKS;

	if (per < 100) {
		sort_u64(t, n);
		*p50 = quant(t, n, 0.5);
		*p99 = quant(t, n, 0.99);
		return;
	}
	for (uint32_t b = 0; b < LAT_BLOCKS; b++) {
		sort_u64(t + b * per, per);
		q50[b] = quant(t + b * per, per, 0.5);
		q99[b] = quant(t + b * per, per, 0.99);
	}
	sort_u64(q50, LAT_BLOCKS);
	sort_u64(q99, LAT_BLOCKS);
	*p50 = q50[LAT_BLOCKS / 2];
	*p99 = q99[LAT_BLOCKS / 2];
	sort_u64(t, n);
}

static void clients_mode(const struct opts *o, int mode, FILE *csv)
{
	const char *mname = mode_names[mode];
	struct cl *k = xcalloc(o->max_clients, sizeof(*k));
	uint64_t *t = xcalloc(o->lat_samples, sizeof(*t));
	uint64_t *join = xcalloc(o->max_clients, sizeof(*join));
	int nplace = o->ncpus >= 2 ? 2 : 1;
	struct mem_use base, now;
	uint32_t have = 0;
	pid_t d;

	set_mode(mode);
	d = daemon_up(o, NULL, 0);
	mem_use(d, &base);
	for (uint32_t n = o->min_clients; n <= o->max_clients; n *= 2) {
		uint32_t from = have;
		uint64_t mem_alloc;

		while (have < n) {
			struct cl *c = &k[have];
			uint64_t t0;
			int r;

			if ((r = iovad_connect(sock_path, &c->c)) ||
			    (r = iovad_dev_open(c->c, "sim0", &c->dev)))
				die("client setup", r);
			t0 = now_ns();
			if ((r = iovad_mem_alloc(c->c, CL_PAGES * SZ_4K, &c->mem)))
				die("mem_alloc", r);
			join[have - from] = now_ns() - t0;
			iovad_mem_free(c->mem);
			iovad_dev_close(c->dev);
			iovad_disconnect(c->c);
			cl_open_loaded(c, sock_path);
			have++;
		}
		sort_u64(join, n - from);
		mem_alloc = quant(join, n - from, 0.5);
		if (n == o->min_clients)
			mem_alloc = 0; /* from 0 to n at once: not one step of the curve */
		mem_use(d, &now);
		for (int pl = 0; pl < nplace; pl++) {
			uint32_t rounds = 4096 / n, samples = o->lat_samples;
			uint64_t p50, p99, c0, cpu_rt, dc = 0, cc = 0;
			double *per;

			pin(d, pl);
			/* Warm-up: every session once. */
			for (uint32_t i = 0; i < n; i++) {
				rt_link_sync(&k[i], &k[i].st, iovad_mem_phys(k[i].mem), 0);
				rt_unlink(&k[i], &k[i].st, 0, SZ_4K);
			}
			c0 = cpu_ns(d);
			for (uint32_t i = 0; i < samples; i++) {
				struct cl *c = &k[i % n];

				t[i] = rt_link_sync(c, &c->st, iovad_mem_phys(c->mem), 0);
				rt_unlink(c, &c->st, 0, SZ_4K);
			}
			cpu_rt = (cpu_ns(d) - c0) / (2 * (uint64_t)samples);
			block_quantiles(t, samples, &p50, &p99);

			/* Every session with one batch in flight. */
			if (rounds < 5)
				rounds = 5;
			if (rounds > 200)
				rounds = 200;
			per = xcalloc(rounds, sizeof(*per));
			for (uint32_t r = 0; r < rounds; r++) {
				uint64_t t0, d0, cl0;

				for (uint32_t i = 0; i < n; i++)
					prep_link_sync(&k[i], k[i].b, &k[i].st,
						       iovad_mem_phys(k[i].mem), 0);
				d0 = cpu_ns(d);
				cl0 = cpu_ns(0);
				t0 = now_ns();
				for (uint32_t i = 0; i < n; i++)
					if (iovad_batch_submit(k[i].b, NULL, NULL))
						die("submit", EIO);
				for (uint32_t i = 0; i < n; i++)
					wait_ok(k[i].b, "link+sync in flight");
				per[r] = (double)(now_ns() - t0) / n;
				cc += cpu_ns(0) - cl0;
				dc += cpu_ns(d) - d0;
				/* Untimed: unlink on every session, also all in flight. */
				for (uint32_t i = 0; i < n; i++) {
					iovad_batch_reset(k[i].u);
					iovad_batch_unlink(k[i].u, k[i].dev, &k[i].st, 0, SZ_4K,
							   IOVAD_DMA_BIDIRECTIONAL, 0);
					if (iovad_batch_submit(k[i].u, NULL, NULL))
						die("submit", EIO);
				}
				for (uint32_t i = 0; i < n; i++)
					wait_ok(k[i].u, "unlink in flight");
			}
			{
				double inflight = med_d(per, rounds), ops = (double)rounds * n;
				double kib = (double)(now.anon_kib - base.anon_kib) / n;

				printf("%-6s %6u %-5s %8.2f %8.2f %9.1f %8" PRIu64 " %8.0f %8.0f %8.0f "
				       "%8.2f %7.1f\n", mname, n, pl ? "2cpu" : "1cpu", us(p50), us(p99),
				       us(t[samples - 1]), cpu_rt, inflight, (double)dc / ops,
				       (double)cc / ops, us(mem_alloc), kib);
				csv_row(csv, "%s,%u,%s,%.3f,%.3f,%.3f,%u,%" PRIu64 ",%.1f,%.1f,%.1f,%.3f,"
					"%" PRIu64 ",%.2f", mname, n, pl ? "2cpu" : "1cpu", us(p50), us(p99),
					us(t[samples - 1]), samples, cpu_rt, inflight,
					(double)dc / ops, (double)cc / ops, us(mem_alloc),
					now.anon_kib, kib);
			}
			free(per);
		}
	}
	for (uint32_t i = 0; i < have; i++)
		cl_close(&k[i]);
	daemon_down();
	free(k);
	free(t);
	free(join);
}

static void part_clients(const struct opts *o)
{
	FILE *csv = csv_part(o, "clients",
			     "mode,clients,placement,p50_us,p99_us,max_us,samples,daemon_cpu_ns_per_rt,"
			     "inflight_ns_per_op,inflight_daemon_cpu_ns_per_op,"
			     "inflight_client_cpu_ns_per_op,mem_alloc_p50_us,daemon_anon_kib,"
			     "daemon_kib_per_client");

	printf("\nclients: one link+sync round trip against connected clients, each with a device,\n"
	       "  64 KiB of memory and a state with 15 links; one request at a time, round-robin\n"
	       "  over the sessions (%u samples per point, p50 and p99 the medians of %u blocks'\n"
	       "  own, in time order; the daemon's CPU per round trip is\n"
	       "  its schedstat over the loop / 2 requests); then one batch in flight on every\n"
	       "  session at once (ns per operation = elapsed / N, and the daemon's and the\n"
	       "  client's CPU per operation); the mem_alloc round trips of the clients that\n"
	       "  joined at this step\n", o->lat_samples, LAT_BLOCKS);
	printf("%-6s %6s %-5s %8s %8s %9s %8s %8s %8s %8s %8s %7s\n", "mode", "N", "place",
	       "p50 us", "p99 us", "max us", "cpu/rt", "if ns/op", "if dcpu", "if ccpu", "mem_al",
	       "KiB/cl");
	for (int mode = o->first_mode; mode < o->nmodes; mode++)
		clients_mode(o, mode, csv);
	csv_close(csv);
}

/* ---- batch ------------------------------------------------------------------------------------ */

struct rt_batches {
	struct iovad_batch *b[MAX_BATCHES];
	uint32_t n;      /* in use for the current round trip */
};

/*
 * Queue LINKs of pages [first, first + nb) of st (page i of the state maps
 * page i of the memory) and one SYNC over them, spilling into further
 * batches when one is full (-ENOSPC: libiovad's negotiated size).
 */
static void prep_links(struct cl *k, struct rt_batches *rb, struct iovad_iova_state *st,
		       uint64_t first, uint32_t nb)
{
	uint64_t phys = iovad_mem_phys(k->mem);
	uint32_t i = 0;
	int r;

	rb->n = 0;
	iovad_batch_reset(rb->b[0]);
	while (i <= nb) {
		struct iovad_batch *b = rb->b[rb->n];
		uint64_t off = (first + i) * SZ_4K;

		if (i < nb)
			r = iovad_batch_link(b, k->dev, st, phys + off, off, SZ_4K,
					     IOVAD_DMA_BIDIRECTIONAL, 0);
		else
			r = iovad_batch_sync(b, k->dev, st, first * SZ_4K, nb * SZ_4K);
		if (r == -ENOSPC) {
			if (++rb->n == MAX_BATCHES)
				die("too many batches for one round trip", ENOSPC);
			iovad_batch_reset(rb->b[rb->n]);
			continue;
		}
		if (r < 0)
			die("batch", r);
		i++;
	}
	rb->n++;
}

/* Pages per second over the batches of a round (median of the rounds). */
static double iovad_pps(const struct opts *o, struct cl *k, struct rt_batches *rb,
			struct iovad_iova_state *st, uint32_t nb, uint32_t *nbatches)
{
	double *pps = xcalloc(o->batch_rounds, sizeof(*pps));
	double m;

	for (uint32_t round = 0; round <= o->batch_rounds; round++) {
		uint64_t t = 0;

		for (uint32_t first = 0; first + nb <= o->batch_pages; first += nb) {
			uint64_t t0;

			prep_links(k, rb, st, first, nb);
			t0 = now_ns();
			for (uint32_t i = 0; i < rb->n; i++)
				if (iovad_batch_submit(rb->b[i], NULL, NULL))
					die("submit", EIO);
			for (uint32_t i = 0; i < rb->n; i++)
				wait_ok(rb->b[i], "link batch");
			t += now_ns() - t0;
		}
		rt_unlink(k, st, 0, (uint64_t)o->batch_pages * SZ_4K); /* untimed */
		if (round)
			pps[round - 1] = (double)o->batch_pages / ((double)t / 1e9);
	}
	*nbatches = rb->n;
	m = med_d(pps, o->batch_rounds);
	free(pps);
	return m;
}

/* The same operations on the engine in-process: B links and one sync per dom_batch. */
static double inproc_pps(const struct opts *o, uint32_t nb)
{
	double *pps = xcalloc(o->batch_rounds, sizeof(*pps));
	struct pmem_space p;
	struct dom_domain *dom;
	struct dom_device *dev;
	struct pmem_obj *mem;
	struct dma_iova_state st;
	uint64_t len = (uint64_t)o->batch_pages * SZ_4K;
	double m;
	int r;

	if ((r = pmem_space_init(&p)) ||
	    (r = dom_domain_create(&p, &(struct dom_config){ 0 }, &dom)) ||
	    (r = dom_device_create(dom, &(struct dom_device_config){ .name = "sim0" }, &dev)) ||
	    (r = pmem_obj_create(&p, len, "bench-scale", &mem)))
		die("in-process setup", r);
	if (!dma_iova_try_alloc(dev, &st, 0, len))
		die("in-process try_alloc", ENOMEM);
	for (uint32_t round = 0; round <= o->batch_rounds; round++) {
		uint64_t t0 = now_ns(), t;

		for (uint32_t first = 0; first + nb <= o->batch_pages; first += nb) {
			dom_batch_begin(dom);
			for (uint32_t i = 0; i < nb; i++) {
				uint64_t off = (first + i) * SZ_4K;

				if ((r = dma_iova_link(dev, &st, mem->phys + off, off, SZ_4K,
						       DMA_BIDIRECTIONAL, 0)))
					die("in-process link", r);
			}
			dma_iova_sync(dev, &st, first * SZ_4K, nb * SZ_4K);
			dom_batch_end(dom);
		}
		t = now_ns() - t0;
		dma_iova_unlink(dev, &st, 0, len, DMA_BIDIRECTIONAL, 0);
		if (round)
			pps[round - 1] = (double)o->batch_pages / ((double)t / 1e9);
	}
	dma_iova_free(dev, &st);
	dom_device_destroy(dev);
	dom_domain_destroy(dom);
	pmem_space_fini(&p);
	m = med_d(pps, o->batch_rounds);
	free(pps);
	return m;
}

static void part_batch(const struct opts *o)
{
	FILE *csv = csv_part(o, "batch",
			     "mode,links_per_rt,placement,batches_per_rt,pages_per_s,"
			     "inproc_pages_per_s,ratio");
	int nplace = o->ncpus >= 2 ? 2 : 1;
	double inproc[16];

	printf("\nbatch: pages linked per second against LINKs per round trip (one 4 KiB page\n"
	       "  each, one SYNC at the end), %u pages per round, median of %u rounds\n",
	       o->batch_pages, o->batch_rounds);
	printf("%-6s %6s %-6s %8s %14s %14s %7s\n", "mode", "B", "place", "batches",
	       "iovad pages/s", "in-process", "ratio");
	for (int mode = o->first_mode; mode < o->nmodes; mode++) {
		struct iovad_iova_state st;
		struct rt_batches rb = { 0 };
		struct cl k;
		pid_t d;
		int r;

		set_mode(mode);
		d = daemon_up(o, NULL, 0);
		cl_open(&k, sock_path, "sim0", o->batch_pages);
		alloc_state(&k, &st, (uint64_t)o->batch_pages * SZ_4K);
		for (uint32_t i = 0; i < MAX_BATCHES; i++)
			if ((r = iovad_batch_new(k.c, &rb.b[i])))
				die("batch_new", r);
		for (int pl = 0; pl < nplace; pl++) {
			uint32_t bi = 0;

			pin(d, pl);
			for (uint32_t nb = 1; nb <= BATCH_MAX_B && nb <= o->batch_pages;
			     nb *= 2, bi++) {
				uint32_t nbatches;
				double pps = iovad_pps(o, &k, &rb, &st, nb, &nbatches);

				/* The engine's figure depends on neither mode nor placement. */
				if (mode == 0 && pl == 0)
					inproc[bi] = inproc_pps(o, nb);
				printf("%-6s %6u %-6s %8u %14.0f %14.0f %7.3f\n", mode_names[mode], nb,
				       pl ? "2cpu" : "1cpu", nbatches, pps, inproc[bi],
				       pps / inproc[bi]);
				csv_row(csv, "%s,%u,%s,%u,%.0f,%.0f,%.4f", mode_names[mode], nb,
					pl ? "2cpu" : "1cpu", nbatches, pps, inproc[bi],
					pps / inproc[bi]);
			}
		}
		for (uint32_t i = 0; i < MAX_BATCHES; i++)
			iovad_batch_free(rb.b[i]);
		iovad_iova_free(k.dev, &st);
		cl_close(&k);
		daemon_down();
	}
	csv_close(csv);
}

/* ---- rss ---------------------------------------------------------------------------------------- */

#define RSS_PROBES 101u
#define RSS_INFLIGHT 16u

/* The operations one libiovad batch of k's connection holds (negotiated in HELLO). */
static uint32_t batch_cap(struct cl *k, struct iovad_batch *b, struct iovad_iova_state *st)
{
	uint32_t n = 0;

	iovad_batch_reset(b);
	while (iovad_batch_sync(b, k->dev, st, 0, SZ_4K) >= 0)
		n++;
	iovad_batch_reset(b);
	return n;
}

/*
 * Link pages [from, to) of st (page i of the state maps page i of the
 * memory), link_pages pages per LINK, each batch ending with a SYNC over what
 * it linked, RSS_INFLIGHT batches in flight.
 */
static void link_range(struct cl *k, struct rt_batches *rb, uint32_t cap,
		       struct iovad_iova_state *st, uint64_t from, uint64_t to, uint64_t link_pages)
{
	uint64_t phys = iovad_mem_phys(k->mem), p = from;

	while (p < to) {
		uint32_t n = 0;

		for (; n < RSS_INFLIGHT && p < to; n++) {
			struct iovad_batch *b = rb->b[n];
			uint64_t first = p;
			int r;

			iovad_batch_reset(b);
			while (p < to && iovad_batch_count(b) + 1 < cap) {
				uint64_t np = to - p < link_pages ? to - p : link_pages;

				r = iovad_batch_link(b, k->dev, st, phys + p * SZ_4K, p * SZ_4K,
						     np * SZ_4K, IOVAD_DMA_BIDIRECTIONAL, 0);
				if (r < 0)
					die("batch_link", r);
				p += np;
			}
			r = iovad_batch_sync(b, k->dev, st, first * SZ_4K, (p - first) * SZ_4K);
			if (r < 0)
				die("batch_sync", r);
			if ((r = iovad_batch_submit(b, NULL, NULL)))
				die("submit", r);
		}
		for (uint32_t i = 0; i < n; i++)
			wait_ok(rb->b[i], "dense link");
	}
}

static void part_rss(const struct opts *o)
{
	static const char conf[] =
		"[limits]\nmax_links = 16777216\nmax_mem_bytes = 64G\n"
		"[domain flat]\nblocks = no\n[device flat0]\ndomain = flat\n";
	FILE *csv = csv_part(o, "rss",
			     "series,pages,daemon_rss_kib,daemon_anon_kib,table_bytes,"
			     "bytes_per_page,table_bytes_per_page,link_sync_p50_us,"
			     "unlink_big_p50_us,relink_big_p50_us,mode");
	const char *mname = mode_names[o->nmodes - 1];
	uint64_t *t0 = xcalloc(RSS_PROBES, sizeof(uint64_t));
	uint64_t *t1 = xcalloc(RSS_PROBES, sizeof(uint64_t));
	uint64_t *t2 = xcalloc(RSS_PROBES, sizeof(uint64_t));

	printf("\nrss: the daemon's memory against densely linked 4 KiB pages (blocks = no), sparse\n"
	       "  memfd; bytes/page = Anonymous growth over the baseline / pages; then round trips\n"
	       "  (p50 of %u, over the %s): link+sync in a small state, unlink and relink+sync\n"
	       "  of one page of the big one\n", RSS_PROBES, mname);
	set_mode(o->nmodes - 1);
	printf("%-8s %9s %10s %10s %9s %9s %9s %9s %9s\n", "series", "pages", "Rss KiB",
	       "Anon KiB", "B/page", "tbl B/pg", "l+s (us)", "unl (us)", "rel (us)");
	for (int s = 0; s < 2; s++) {
		const char *series = s ? "link4k" : "link1m";
		uint64_t link_pages = s ? 1 : 256, linked = 0;
		struct iovad_iova_state big, small;
		struct rt_batches rb = { 0 };
		struct mem_use base, m;
		uint32_t cap;
		struct cl k;
		pid_t d;
		int r;

		d = daemon_up(o, conf, 0);
		cl_open(&k, sock_path, "flat0", o->max_pages);
		for (uint32_t i = 0; i < RSS_INFLIGHT; i++)
			if ((r = iovad_batch_new(k.c, &rb.b[i])))
				die("batch_new", r);
		alloc_state(&k, &big, o->max_pages * SZ_4K);
		alloc_state(&k, &small, 16 * SZ_4K);
		cap = batch_cap(&k, rb.b[0], &big);
		/* The small state's tables exist before the baseline. */
		for (int i = 0; i < 16; i++) {
			rt_link_sync(&k, &small, iovad_mem_phys(k.mem), 0);
			rt_unlink(&k, &small, 0, SZ_4K);
		}
		mem_use(d, &base);
		for (uint64_t pages = 4096; pages <= o->max_pages; pages *= 2) {
			struct iovad_dev_stats ds = { 0 };
			uint64_t stride = pages / RSS_PROBES;
			double bpp, tpp;

			link_range(&k, &rb, cap, &big, linked, pages, link_pages);
			linked = pages;
			mem_use(d, &m);
			if ((r = iovad_dev_stats(k.dev, &ds)))
				die("dev_stats", r);
			for (uint32_t i = 0; i < RSS_PROBES; i++) {
				uint64_t off = (uint64_t)i * stride * SZ_4K;

				t0[i] = rt_link_sync(&k, &small, iovad_mem_phys(k.mem), 0);
				rt_unlink(&k, &small, 0, SZ_4K);
				t1[i] = rt_unlink(&k, &big, off, SZ_4K);
				t2[i] = rt_link_sync(&k, &big, iovad_mem_phys(k.mem) + off, off);
			}
			sort_u64(t0, RSS_PROBES);
			sort_u64(t1, RSS_PROBES);
			sort_u64(t2, RSS_PROBES);
			bpp = (double)(m.anon_kib - base.anon_kib) * 1024.0 / (double)pages;
			tpp = (double)ds.table_bytes / (double)pages;
			printf("%-8s %9" PRIu64 " %10" PRIu64 " %10" PRIu64
			       " %9.2f %9.2f %9.2f %9.2f %9.2f\n", series, pages, m.rss_kib,
			       m.anon_kib, bpp, tpp, us(quant(t0, RSS_PROBES, 0.5)),
			       us(quant(t1, RSS_PROBES, 0.5)), us(quant(t2, RSS_PROBES, 0.5)));
			csv_row(csv, "%s,%" PRIu64 ",%" PRIu64 ",%" PRIu64 ",%" PRIu64
				",%.3f,%.3f,%.3f,%.3f,%.3f,%s", series, pages, m.rss_kib, m.anon_kib,
				ds.table_bytes, bpp, tpp, us(quant(t0, RSS_PROBES, 0.5)),
				us(quant(t1, RSS_PROBES, 0.5)), us(quant(t2, RSS_PROBES, 0.5)),
				mname);
		}
		for (uint32_t i = 0; i < RSS_INFLIGHT; i++)
			iovad_batch_free(rb.b[i]);
		cl_close(&k);
		daemon_down();
	}
	free(t0);
	free(t1);
	free(t2);
	csv_close(csv);
}

/* ---- fault ----------------------------------------------------------------------------------- */

static void touch(struct iovad_dev *dev, uint64_t iova)
{
	uint8_t buf[ACCESS_BYTES];
	int r = iovad_dev_dma_read(dev, iova, buf, sizeof(buf));

	if (r)
		die("dev_dma_read", r);
	if (buf[0] != FILL)
		die("dev_dma_read returned the wrong bytes", EIO);
}

/* A page index for sample i of n, spread over npages: one per stripe, placed pseudo-randomly. */
static uint64_t spread_page(uint32_t i, uint32_t n, uint64_t npages)
{
	uint64_t stripe = npages / n, x = (uint64_t)i * 0x9e3779b97f4a7c15u;

	x ^= x >> 29;
	return (uint64_t)i * stripe + (stripe ? x % stripe : 0);
}

struct fault_result {
	uint64_t first[2], mapped[2];  /* p50, p99 */
	uint64_t reg, inval, dereg;    /* ns: one each, the median of the rounds for inval */
};

static void fault_run(const struct opts *o, struct cl *k, uint64_t size, struct fault_result *res)
{
	uint32_t n = o->fault_pages, rounds = o->fault_rounds;
	uint64_t npages = size / SZ_4K, *pg = xcalloc(n, sizeof(uint64_t));
	uint64_t *first = xcalloc((size_t)n * rounds, sizeof(uint64_t));
	uint64_t *mapped = xcalloc((size_t)n * rounds, sizeof(uint64_t));
	uint64_t *inval = xcalloc(rounds + 1, sizeof(uint64_t));
	uint8_t *va = iovad_mem_addr(k->mem);
	struct iovad_odp *odp;
	uint64_t t0;
	size_t s = 0;
	int r;

	for (uint32_t i = 0; i < n; i++) {
		pg[i] = spread_page(i, n, npages);
		memset(va + pg[i] * SZ_4K, FILL, ACCESS_BYTES);
	}
	t0 = now_ns();
	if ((r = iovad_odp_reg(k->dev, k->mem, 0, size, RIGHTS, 0, &odp)))
		die("odp_reg", r);
	res->reg = now_ns() - t0;
	for (uint32_t round = 0; round <= rounds; round++) {
		for (uint32_t i = 0; i < n; i++) {
			uint64_t iova = iovad_odp_iova(odp) + pg[i] * SZ_4K, a, b, c;

			a = now_ns();
			touch(k->dev, iova);
			b = now_ns();
			touch(k->dev, iova);
			c = now_ns();
			if (round) {
				first[s] = b - a;
				mapped[s++] = c - b;
			}
		}
		t0 = now_ns();
		if ((r = iovad_odp_invalidate(odp, 0, size)))
			die("odp_invalidate", r);
		inval[round] = now_ns() - t0;
	}
	t0 = now_ns();
	if ((r = iovad_odp_dereg(odp)))
		die("odp_dereg", r);
	res->dereg = now_ns() - t0;
	sort_u64(first, s);
	sort_u64(mapped, s);
	sort_u64(inval + 1, rounds);
	res->first[0] = quant(first, s, 0.5);
	res->first[1] = quant(first, s, 0.99);
	res->mapped[0] = quant(mapped, s, 0.5);
	res->mapped[1] = quant(mapped, s, 0.99);
	res->inval = quant(inval + 1, rounds, 0.5);
	free(pg);
	free(first);
	free(mapped);
	free(inval);
}

static void part_fault(const struct opts *o)
{
	static const char conf[] = "[odp]\nfault_around = 4K\n[limits]\nmax_mem_bytes = 2T\n";
	FILE *csv = csv_part(o, "fault",
			     "mode,region_bytes,placement,pages,first_p50_us,first_p99_us,"
			     "mapped_p50_us,mapped_p99_us,fault_cost_p50_us,reg_us,invalidate_us,"
			     "dereg_us");
	int nplace = o->ncpus >= 2 ? 2 : 1;

	printf("\nfault: first device touch (64-byte read) of a page of an ODP region against its\n"
	       "  size; fault_around = 4K, %u pages spread over the region x %u rounds; reg,\n"
	       "  whole-region invalidate and dereg round trips\n", o->fault_pages,
	       o->fault_rounds);
	printf("%-6s %8s %-5s %8s %8s %8s %8s %10s %10s %10s\n", "mode", "region", "place",
	       "1st p50", "1st p99", "map p50", "map p99", "reg (us)", "inval (us)", "dereg (us)");
	for (int mode = o->first_mode; mode < o->nmodes; mode++) {
		pid_t d;

		set_mode(mode);
		d = daemon_up(o, conf, 0);
		for (uint64_t size = SZ_1G; size <= o->max_region; size *= 4) {
			struct cl k;

			cl_open(&k, sock_path, "sim0", size / SZ_4K);
			for (int pl = 0; pl < nplace; pl++) {
				struct fault_result fr;
				char label[16];

				pin(d, pl);
				fault_run(o, &k, size, &fr);
				snprintf(label, sizeof(label), "%" PRIu64 "G", size >> 30);
				printf("%-6s %8s %-5s %8.2f %8.2f %8.2f %8.2f %10.1f %10.1f %10.1f\n",
				       mode_names[mode], label, pl ? "2cpu" : "1cpu", us(fr.first[0]),
				       us(fr.first[1]), us(fr.mapped[0]), us(fr.mapped[1]),
				       us(fr.reg), us(fr.inval), us(fr.dereg));
				csv_row(csv, "%s,%" PRIu64 ",%s,%u,%.3f,%.3f,%.3f,%.3f,%.3f,%.1f,%.1f,"
					"%.1f", mode_names[mode], size, pl ? "2cpu" : "1cpu",
					o->fault_pages, us(fr.first[0]), us(fr.first[1]),
					us(fr.mapped[0]), us(fr.mapped[1]),
					us(fr.first[0]) - us(fr.mapped[0]), us(fr.reg), us(fr.inval),
					us(fr.dereg));
			}
			cl_close(&k);
		}
		daemon_down();
	}
	csv_close(csv);
}

/* ---- states and regions ---------------------------------------------------------------------- */

#define STATE_PROBES 501u

static void part_states(const struct opts *o)
{
	static const char conf[] =
		"[odp]\nfault_around = 4K\n[limits]\nmax_states = 1048576\nmax_odp = 65536\n";
	FILE *csv = csv_part(o, "states",
			     "kind,count,create_p50_us,destroy_p50_us,link_sync_p50_us,"
			     "first_touch_p50_us,mode");
	const char *mname = mode_names[o->nmodes - 1];
	uint64_t *ta = xcalloc(STATE_PROBES, sizeof(uint64_t));
	uint64_t *tf = xcalloc(STATE_PROBES, sizeof(uint64_t));
	uint64_t *tl = xcalloc(STATE_PROBES, sizeof(uint64_t));
	struct iovad_iova_state *fill, probe, ls;
	struct iovad_odp **regs;
	uint32_t have = 0;
	struct cl k;
	int r;

	printf("\nstates: round trips (p50 of %u, over the %s) against the live IOVA states and\n"
	       "  ODP regions of one session\n", STATE_PROBES, mname);
	set_mode(o->nmodes - 1);
	printf("%-7s %7s %12s %12s %12s %12s\n", "kind", "count", "alloc (us)", "free (us)",
	       "l+s (us)", "touch (us)");
	daemon_up(o, conf, 0);
	cl_open(&k, sock_path, "sim0", 256);
	memset(iovad_mem_addr(k.mem), FILL, 256 * SZ_4K);
	alloc_state(&k, &ls, 16 * SZ_4K);
	fill = xcalloc(o->max_states, sizeof(*fill));
	/* count = live states, the link+sync state included; the probe's own is the count + 1st. */
	for (uint32_t n = 1; n <= o->max_states; n *= 4) {
		while (have + 1 < n)
			alloc_state(&k, &fill[have++], SZ_4K);
		for (uint32_t i = 0; i < STATE_PROBES; i++) {
			uint64_t t0 = now_ns();

			if (!iovad_iova_try_alloc(k.dev, &probe, iovad_mem_phys(k.mem), SZ_4K))
				die("try_alloc", errno);
			ta[i] = now_ns() - t0;
			t0 = now_ns();
			if ((r = iovad_iova_free(k.dev, &probe)))
				die("iova_free", r);
			tf[i] = now_ns() - t0;
			tl[i] = rt_link_sync(&k, &ls, iovad_mem_phys(k.mem), 0);
			rt_unlink(&k, &ls, 0, SZ_4K);
		}
		sort_u64(ta, STATE_PROBES);
		sort_u64(tf, STATE_PROBES);
		sort_u64(tl, STATE_PROBES);
		printf("%-7s %7u %12.2f %12.2f %12.2f %12s\n", "states", n, us(quant(ta, STATE_PROBES, .5)),
		       us(quant(tf, STATE_PROBES, .5)), us(quant(tl, STATE_PROBES, .5)), "-");
		csv_row(csv, "states,%u,%.3f,%.3f,%.3f,,%s", n, us(quant(ta, STATE_PROBES, .5)),
			us(quant(tf, STATE_PROBES, .5)), us(quant(tl, STATE_PROBES, .5)), mname);
	}
	for (uint32_t i = 0; i < have; i++)
		if ((r = iovad_iova_free(k.dev, &fill[i])))
			die("iova_free", r);
	free(fill);

	/* ODP regions: region 0 is the one touched; the probe registers one more. */
	regs = xcalloc(o->max_regions, sizeof(*regs));
	have = 0;
	for (uint32_t n = 1; n <= o->max_regions; n *= 4) {
		struct iovad_odp *p;

		while (have < n)
			if ((r = iovad_odp_reg(k.dev, k.mem, 0, 256 * SZ_4K, RIGHTS, 0,
					       &regs[have++])))
				die("odp_reg", r);
		for (uint32_t i = 0; i < STATE_PROBES; i++) {
			uint64_t t0 = now_ns(), pgi = i % 256;

			if ((r = iovad_odp_reg(k.dev, k.mem, 0, 256 * SZ_4K, RIGHTS, 0, &p)))
				die("odp_reg", r);
			ta[i] = now_ns() - t0;
			t0 = now_ns();
			if ((r = iovad_odp_dereg(p)))
				die("odp_dereg", r);
			tf[i] = now_ns() - t0;
			if (pgi == 0 && (r = iovad_odp_invalidate(regs[0], 0, 256 * SZ_4K)))
				die("odp_invalidate", r);
			t0 = now_ns();
			touch(k.dev, iovad_odp_iova(regs[0]) + pgi * SZ_4K);
			tl[i] = now_ns() - t0;
		}
		sort_u64(ta, STATE_PROBES);
		sort_u64(tf, STATE_PROBES);
		sort_u64(tl, STATE_PROBES);
		printf("%-7s %7u %12.2f %12.2f %12s %12.2f\n", "regions", n,
		       us(quant(ta, STATE_PROBES, .5)), us(quant(tf, STATE_PROBES, .5)), "-",
		       us(quant(tl, STATE_PROBES, .5)));
		csv_row(csv, "regions,%u,%.3f,%.3f,,%.3f,%s", n, us(quant(ta, STATE_PROBES, .5)),
			us(quant(tf, STATE_PROBES, .5)), us(quant(tl, STATE_PROBES, .5)), mname);
	}
	for (uint32_t i = 0; i < have; i++)
		iovad_odp_dereg(regs[i]);
	free(regs);
	iovad_iova_free(k.dev, &ls);
	cl_close(&k);
	daemon_down();
	free(ta);
	free(tf);
	free(tl);
	csv_close(csv);
}

/* ---- rings ------------------------------------------------------------------------------------- */

/*
 * The child of one rings point: connect (libiovad reads IOVAD_RINGS from the
 * environment the parent gave it), time link+sync round trips and ODP first
 * touches, print "ls_p50 ls_p99 first_p50 first_p99 mapped_p50" in ns.
 */
static int rings_child(const char *sock, uint32_t iters, uint32_t pages)
{
	uint64_t *t = xcalloc(iters, sizeof(uint64_t));
	uint64_t *f = xcalloc(pages, sizeof(uint64_t)), *m = xcalloc(pages, sizeof(uint64_t));
	struct iovad_iova_state st;
	struct iovad_odp *odp;
	struct cl k;
	int r;

	pin(0, 0);
	cl_open(&k, sock, "sim0", pages);
	memset(iovad_mem_addr(k.mem), FILL, (size_t)pages * SZ_4K);
	alloc_state(&k, &st, SZ_4K);
	for (uint32_t i = 0; i < iters / 10 + 1; i++) { /* warm-up */
		rt_link_sync(&k, &st, iovad_mem_phys(k.mem), 0);
		rt_unlink(&k, &st, 0, SZ_4K);
	}
	for (uint32_t i = 0; i < iters; i++) {
		t[i] = rt_link_sync(&k, &st, iovad_mem_phys(k.mem), 0);
		rt_unlink(&k, &st, 0, SZ_4K);
	}
	sort_u64(t, iters);
	if ((r = iovad_odp_reg(k.dev, k.mem, 0, (size_t)pages * SZ_4K, RIGHTS, 0, &odp)))
		die("odp_reg", r);
	for (int round = 0; round < 2; round++) { /* round 0: the daemon's own CPU mapping */
		for (uint32_t p = 0; p < pages; p++) {
			uint64_t iova = iovad_odp_iova(odp) + p * SZ_4K, a, b, c;

			a = now_ns();
			touch(k.dev, iova);
			b = now_ns();
			touch(k.dev, iova);
			c = now_ns();
			f[p] = b - a;
			m[p] = c - b;
		}
		if ((r = iovad_odp_invalidate(odp, 0, (size_t)pages * SZ_4K)))
			die("odp_invalidate", r);
	}
	sort_u64(f, pages);
	sort_u64(m, pages);
	printf("%" PRIu64 " %" PRIu64 " %" PRIu64 " %" PRIu64 " %" PRIu64 "\n", quant(t, iters, .5),
	       quant(t, iters, .99), quant(f, pages, .5), quant(f, pages, .99), quant(m, pages, .5));
	iovad_odp_dereg(odp);
	iovad_iova_free(k.dev, &st);
	cl_close(&k);
	free(t);
	free(f);
	free(m);
	return 0;
}

/*
 * Run one rings point in a child with IOVAD_RINGS=0 (socket) or unset (rings
 * allowed), and IOVAD_RING_SPIN_US=0 when the client must not poll.
 */
static void rings_point(const struct opts *o, bool socket_only, bool no_spin, uint64_t v[5])
{
	char iters[16], pages[16], line[256];
	int pfd[2], st;
	pid_t pid;
	FILE *f;

	snprintf(iters, sizeof(iters), "%u", o->ring_iters);
	snprintf(pages, sizeof(pages), "%u", o->ring_pages);
	if (pipe(pfd))
		die("pipe", errno);
	pid = fork();
	if (pid < 0)
		die("fork", errno);
	if (pid == 0) {
		dup2(pfd[1], 1);
		close(pfd[0]);
		close(pfd[1]);
		if (socket_only)
			setenv("IOVAD_RINGS", "0", 1);
		else
			unsetenv("IOVAD_RINGS");
		if (no_spin)
			setenv("IOVAD_RING_SPIN_US", "0", 1);
		else
			unsetenv("IOVAD_RING_SPIN_US");
		execl("/proc/self/exe", "bench-scale", "--rings-child", sock_path, iters, pages,
		      (char *)NULL);
		_exit(127);
	}
	close(pfd[1]);
	f = fdopen(pfd[0], "r");
	if (!f || !fgets(line, sizeof(line), f) ||
	    sscanf(line, "%" SCNu64 " %" SCNu64 " %" SCNu64 " %" SCNu64 " %" SCNu64, &v[0], &v[1],
		   &v[2], &v[3], &v[4]) != 5)
		die("rings child: no figures", EIO);
	fclose(f);
	if (waitpid(pid, &st, 0) < 0 || !WIFEXITED(st) || WEXITSTATUS(st))
		die("rings child failed", EIO);
}

/*
 * Three placements: one vCPU, with the rings' shipped polling policy (the
 * daemon yields at once to a client on its CPU); two vCPUs without polling
 * (daemon [rings] spin_us = spin_max_us = 0, client IOVAD_RING_SPIN_US=0:
 * every request and reply is a wake-up); two vCPUs polling (the shipped
 * defaults: both sides spin a while before they sleep).
 */
static void part_rings(const struct opts *o)
{
	static const struct {
		const char *name;
		int cpu;
		bool poll;
	} place[] = { { "1cpu", 0, true }, { "2cpu", 1, false }, { "2cpu-poll", 1, true } };
	FILE *csv = csv_part(o, "rings",
			     "mode,placement,rings_config,link_sync_p50_us,link_sync_p99_us,"
			     "odp_first_p50_us,odp_first_p99_us,odp_mapped_p50_us");
	bool rings = daemon_accepts(o, "[rings]\nenable = yes\nspin_us = 0\n");
	size_t nplace = o->ncpus >= 2 ? 3 : 1;

	printf("\nrings: link+sync round trip and ODP first touch, with libiovad's rings allowed\n"
	       "  and with IOVAD_RINGS=0; %u round trips, %u first touches per point; the daemon\n"
	       "  %s [rings]%s\n", o->ring_iters, o->ring_pages,
	       rings ? "accepts" : "does not know",
	       rings ? "" : ": both modes measure the socket");
	printf("%-7s %-10s %6s %10s %10s %10s %10s %10s\n", "mode", "place", "rings", "l+s p50",
	       "l+s p99", "1st p50", "1st p99", "map p50");
	for (size_t pl = 0; pl < nplace; pl++) {
		char conf[256] = "[odp]\nfault_around = 4K\n";

		if (rings)
			snprintf(conf, sizeof(conf), "[odp]\nfault_around = 4K\n[rings]\nenable = yes\n%s",
				 place[pl].poll ? "" : "spin_us = 0\nspin_max_us = 0\n");
		daemon_up(o, conf, place[pl].cpu);
		for (int mode = 0; mode < 2; mode++) {
			const char *mname = mode ? "rings" : "socket";
			uint64_t v[5];

			rings_point(o, mode == 0, !place[pl].poll, v);
			printf("%-7s %-10s %6s %10.2f %10.2f %10.2f %10.2f %10.2f\n", mname,
			       place[pl].name, rings ? "yes" : "no", us(v[0]), us(v[1]), us(v[2]),
			       us(v[3]), us(v[4]));
			csv_row(csv, "%s,%s,%s,%.3f,%.3f,%.3f,%.3f,%.3f", mname, place[pl].name,
				rings ? "yes" : "no", us(v[0]), us(v[1]), us(v[2]), us(v[3]),
				us(v[4]));
		}
		daemon_down();
	}
	csv_close(csv);
}

/* ---- main --------------------------------------------------------------------------------------- */

static void usage(const char *argv0)
{
	fprintf(stderr,
		"usage: %s [--quick|--smoke] [--daemon PATH] [--csv DIR] [--part NAME]...\n"
		"          [--mode socket|rings] [--min-clients N] [--max-clients N] [--max-pages N]\n"
		"parts: clients batch rss fault states rings (default: all)\n", argv0);
	exit(2);
}

/* The client and daemon each hold an fd or two per connection: raise the soft limit. */
static void raise_nofile(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl))
		die("getrlimit", errno);
	rl.rlim_cur = rl.rlim_max;
	if (setrlimit(RLIMIT_NOFILE, &rl))
		die("setrlimit", errno);
}

int main(int argc, char **argv)
{
	struct opts o = {
		.bin = IOVAD_DAEMON_PATH, .min_clients = 1, .max_clients = 1024, .lat_samples = 25000,
		.batch_pages = BATCH_MAX_B, .batch_rounds = 7, .max_pages = UINT64_C(1) << 22,
		.max_region = UINT64_C(1) << 40, .fault_pages = 2048, .fault_rounds = 3,
		.max_states = 65536, .max_regions = 1024, .ring_iters = 20000, .ring_pages = 2048,
	};
	uint32_t max_clients = 0;
	uint64_t max_pages = 0;
	int only = 0;
	uint64_t t0 = now_ns();

	if (argc == 5 && !strcmp(argv[1], "--rings-child"))
		return rings_child(argv[2], (uint32_t)atoi(argv[3]), (uint32_t)atoi(argv[4]));
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--daemon") && i + 1 < argc) {
			o.bin = argv[++i];
		} else if (!strcmp(argv[i], "--csv") && i + 1 < argc) {
			o.csv_dir = argv[++i];
		} else if (!strcmp(argv[i], "--part") && i + 1 < argc) {
			size_t p;

			i++;
			for (p = 0; p < NPARTS && strcmp(argv[i], part_names[p]); p++)
				;
			if (p == NPARTS)
				usage(argv[0]);
			o.parts |= 1u << p;
		} else if (!strcmp(argv[i], "--max-clients") && i + 1 < argc) {
			max_clients = (uint32_t)strtoul(argv[++i], NULL, 0);
		} else if (!strcmp(argv[i], "--min-clients") && i + 1 < argc) {
			o.min_clients = (uint32_t)strtoul(argv[++i], NULL, 0);
		} else if (!strcmp(argv[i], "--mode") && i + 1 < argc) {
			i++;
			if (!strcmp(argv[i], "socket"))
				only = 1;
			else if (!strcmp(argv[i], "rings"))
				only = 2;
			else
				usage(argv[0]);
		} else if (!strcmp(argv[i], "--max-pages") && i + 1 < argc) {
			max_pages = strtoull(argv[++i], NULL, 0);
		} else if (!strcmp(argv[i], "--quick") || !strcmp(argv[i], "--smoke")) {
			o.max_clients = 16;
			o.lat_samples = 400;
			o.batch_pages = 512;
			o.batch_rounds = 2;
			o.max_pages = 1u << 14;
			o.max_region = UINT64_C(4) << 30;
			o.fault_pages = 64;
			o.fault_rounds = 1;
			o.max_states = 64;
			o.max_regions = 16;
			o.ring_iters = 300;
			o.ring_pages = 64;
		} else {
			usage(argv[0]);
		}
	}
	if (max_clients)
		o.max_clients = max_clients;
	if (!o.min_clients || o.min_clients > o.max_clients)
		usage(argv[0]);
	if (max_pages >= 4096)
		o.max_pages = max_pages;
	if (!o.parts)
		o.parts = PART_ALL;
	o.ncpus = (int)sysconf(_SC_NPROCESSORS_ONLN);
	raise_nofile();
	if (!mkdtemp(dir))
		die("mkdtemp", errno);
	snprintf(sock_path, sizeof(sock_path), "%s/d.sock", dir);
	snprintf(conf_path, sizeof(conf_path), "%s/d.conf", dir);
	snprintf(probe_path, sizeof(probe_path), "%s/probe.conf", dir);
	atexit(clean_up);
	o.nmodes = daemon_accepts(&o, "[rings]\nenable = yes\n") ? 2 : 1;
	if (only == 1)
		o.nmodes = 1;
	else if (only == 2 && o.nmodes == 2)
		o.first_mode = 1;
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	signal(SIGHUP, on_signal);
	pin(0, 0);

	printf("bench-scale: daemon %s, %d CPUs online; driver on CPU 0, daemon on CPU 0 (1cpu) "
	       "or 1 (2cpu); %s\n", o.bin, o.ncpus,
	       o.nmodes == 2 ? "over the socket (IOVAD_RINGS=0) and over the rings" :
			       "the daemon offers no rings: over the socket only");
	if (o.parts & PART_CLIENTS)
		part_clients(&o);
	if (o.parts & PART_BATCH)
		part_batch(&o);
	if (o.parts & PART_RSS)
		part_rss(&o);
	if (o.parts & PART_FAULT)
		part_fault(&o);
	if (o.parts & PART_STATES)
		part_states(&o);
	if (o.parts & PART_RINGS)
		part_rings(&o);
	printf("\nbench-scale: done in %.1f s\n", (double)(now_ns() - t0) / 1e9);
	return 0;
}
