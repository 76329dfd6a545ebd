/* SPDX-License-Identifier: MIT */
/*
 * common.h - what the daemon benchmarks share: a clock, medians and
 * quantiles, CPU pinning, and a private daemon on a temporary socket.
 *
 * Header-only (static inline) so each benchmark stays one source file.
 * Define BENCH_NAME before including it: die() prefixes its messages with it,
 * and fig_row() names the benchmark with it.
 */
#ifndef IOVAD_BENCH_COMMON_H
#define IOVAD_BENCH_COMMON_H

#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#ifndef BENCH_NAME
#error "define BENCH_NAME before including common.h"
#endif

static inline uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static inline int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return (x > y) - (x < y);
}

/* Sorts v in place. */
static inline double median(uint64_t *v, int n)
{
	qsort(v, (size_t)n, sizeof(*v), cmp_u64);
	return n % 2 ? (double)v[n / 2] : ((double)v[n / 2 - 1] + (double)v[n / 2]) / 2;
}

/* Thread-safe: only the first caller exits (exit() twice at once is undefined). */
static inline void die(const char *what, int r)
{
	static atomic_flag dying = ATOMIC_FLAG_INIT;

	if (atomic_flag_test_and_set(&dying))
		for (;;)
			pause();
	fprintf(stderr, BENCH_NAME ": %s: %s\n", what, strerror(r < 0 ? -r : r));
	exit(1);
}

/* A Unix socket address for path; the paths here are short temporary ones. */
static inline struct sockaddr_un unix_addr(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	size_t len = strlen(path);

	if (len >= sizeof(sa.sun_path))
		die(path, ENAMETOOLONG);
	memcpy(sa.sun_path, path, len + 1);
	return sa;
}

/* pid 0 is the calling thread: pin each client thread from inside it. */
static inline void pin(pid_t pid, int cpu)
{
	cpu_set_t set;

	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	if (sched_setaffinity(pid, sizeof(set), &set))
		die("sched_setaffinity", errno);
}

/*
 * Start the daemon at bin on sock with the I/O backend option io (such as
 * "--io=uring") and, unless NULL, the configuration file config; return
 * once it accepts connections. Call it from the thread that lives longest:
 * the daemon gets SIGTERM when that thread ends, so a benchmark killed by a
 * signal or a timeout leaves no daemon behind.
 */
static inline pid_t start_daemon(const char *bin, const char *sock, const char *io,
				 const char *config)
{
	pid_t parent = getpid(), pid = fork();

	if (pid == 0) {
		if (prctl(PR_SET_PDEATHSIG, SIGTERM) || getppid() != parent)
			_exit(127);
		if (config)
			execl(bin, "iovad", "--config", config, "--socket", sock, io, "-q",
			      (char *)NULL);
		else
			execl(bin, "iovad", "--socket", sock, io, "-q", (char *)NULL);
		_exit(127);
	}
	for (int i = 0; i < 500; i++) {
		struct sockaddr_un sa = unix_addr(sock);
		int fd = socket(AF_UNIX, SOCK_STREAM, 0);

		if (!connect(fd, (struct sockaddr *)&sa, sizeof(sa))) {
			close(fd);
			return pid;
		}
		close(fd);
		usleep(10000);
	}
	die("daemon did not start", ETIMEDOUT);
	return -1;
}

/*
 * --csv FILE: every figure also as a row appended to FILE, for bench/run-all:
 * bench,metric,placement,value,unit,baseline,ratio,target (the columns
 * bench-rings writes), ratio = value / baseline when there is a baseline
 * (measured in the same run), target as "<=1.25" or ">=0.5" (of the ratio
 * when there is a baseline, else of the value), empty when none.
 */
static inline FILE *fig_open(const char *path)
{
	FILE *f = fopen(path, "a");

	if (!f)
		die(path, errno);
	return f;
}

static inline void fig_row(FILE *f, const char *metric, const char *place, double v,
			   const char *unit, double base, const char *target)
{
	if (!f)
		return;
	fprintf(f, BENCH_NAME ",%s,%s,%.4f,%s,%.4f,%.4f,%s\n", metric, place, v, unit, base,
		base > 0 ? v / base : 0.0, target);
	fflush(f);
}

/* "socket" when $IOVAD_RINGS turns libiovad's shared-memory rings off, else "rings". */
static inline const char *transport(void)
{
	const char *v = getenv("IOVAD_RINGS");

	if (v && (!strcmp(v, "0") || !strcmp(v, "no") || !strcmp(v, "off")))
		return "socket";
	return "rings";
}

#endif /* IOVAD_BENCH_COMMON_H */
