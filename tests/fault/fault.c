// SPDX-License-Identifier: MIT
/*
 * fault.c - iovad-fault: the daemon under injected faults (docs/reliability.md).
 *
 *   iovad-fault alloc [--io uring|epoll] [--max-runs N] [--from N] [--to N]
 *       A dry run counts the daemon's allocations over one fixed procedure:
 *       start, the workload of one client, the checks, stop. Then, for each
 *       hit number N of that range (or --max-runs of them, evenly spread),
 *       the same procedure with IOVAD_FAILPOINTS=alloc=nth:N:
 *         - a start refused by the failure must exit 1 or 2 with a message,
 *           not crash;
 *         - the workload's calls either succeed or return a clean errno
 *           (-ENOMEM; -ENOTCONN/-ECONNRESET/-EPIPE when the daemon drops the
 *           connection; -EFAULT only for a device access in an ODP region
 *           whose fault could not be served), every byte the device moves is
 *           checked, and no call hangs;
 *         - the daemon is alive and answers STATUS;
 *         - once the failure happened, a fresh client runs the whole workload
 *           without an error, and with every client gone the daemon holds
 *           nothing: no clients, no client memory, nothing mapped in any
 *           domain, as many IOVAs freed as allocated, no ODP region;
 *         - SIGTERM stops it with status 0 (in an ASan build: no leak, no
 *           error report).
 *
 *   iovad-fault uring_submit [--clients K] [--seconds T] [--spec SPEC]
 *       IOVAD_FAILPOINTS=uring_submit=every:3 (or SPEC); K client processes
 *       run the workload in a loop. Each either completes or gets a clean
 *       error; every client completes some; no call hangs; afterwards the
 *       same checks as above.
 *
 *   iovad-fault kill [--clients K] [--seconds T] [--seed S] [--spec SPEC]
 *       K client processes run the workload, stopping at random steps and
 *       leaving without cleaning up at random, on rings or on the socket;
 *       the driver SIGKILLs one at random moments (seeded; the seed is
 *       printed) and starts another. Afterwards the daemon must be alive,
 *       have torn every session down (no clients, no memory, nothing
 *       mapped), serve a new client, and stop with status 0.
 *
 *   common: [--io uring|epoll] [--daemon PATH] [--keep-logs] [-v]
 *           --backtrace: the daemon logs a backtrace of each injected failure
 *
 * Each prints a last line "fault: <test>: ... PASS" or "... FAIL"; the exit
 * status is 0 only on PASS. The daemon's own allocation failures are what
 * is injected; the client library (this process) is never failed.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef IOVAD_FAILINJ_PATH
#define IOVAD_FAILINJ_PATH "iovad-failinj"
#endif
/* harness.h's daemon_start (not used here) wants one. */
#define IOVAD_DAEMON_PATH IOVAD_FAILINJ_PATH
#include "harness.h"

#include "domain.h" /* DOM_DEFAULT_SWIOTLB_BYTES */

#define KiB 1024u
#define MEM_SIZE (256 * KiB)
#define MEM2_SIZE (64 * KiB)
#define WL_TIMEOUT_MS 20000    /* one workload; ODP user faults time out after 5 s */
#define QUIET_TIMEOUT_MS 15000 /* sessions torn down after their clients left */

static struct {
	const char *io;
	const char *daemon;
	const char *spec;
	int max_runs;
	unsigned long from, to;
	int clients;
	int seconds;
	uint64_t seed;
	bool seed_given;
	bool keep_logs;
	bool backtrace;
	int verbose;
} opt = { "uring", IOVAD_FAILINJ_PATH, NULL, 400, 0, 0, 4, 10, 0, false, false, false, 0 };

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static uint64_t splitmix(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15u);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
	return z ^ (z >> 31);
}

/* ==== the daemon ===================================================================== */

struct dmn {
	pid_t pid;
	char dir[64];
	char sock[128];
	char log[128];
	char conf[128];
};

enum { START_OK = 0, START_EXITED = 1, START_TIMEOUT = 2 };

/* Start the daemon armed with spec (NULL: unarmed). *status: the wait status if it exited. */
static int dmn_start(struct dmn *d, const char *spec, int *status)
{
	char io[32];
	int fd, r;

	memset(d, 0, sizeof(*d));
	strcpy(d->dir, "/tmp/iovad-fault-XXXXXX");
	if (!mkdtemp(d->dir)) {
		perror("mkdtemp");
		exit(2);
	}
	snprintf(d->sock, sizeof(d->sock), "%s/iovad.sock", d->dir);
	snprintf(d->log, sizeof(d->log), "%s/iovad.log", d->dir);
	snprintf(d->conf, sizeof(d->conf), "%s/iovad.conf", d->dir);
	/* The built-in devices (sim0, sim-lazy0, sim32, untrusted0, identity0, sim64k0). */
	fd = open(d->conf, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0 || write(fd, "[daemon]\nlog_level = notice\n", 28) != 28) {
		perror(d->conf);
		exit(2);
	}
	close(fd);
	snprintf(io, sizeof(io), "--io=%s", opt.io);
	d->pid = fork();
	if (d->pid < 0) {
		perror("fork");
		exit(2);
	}
	if (d->pid == 0) {
		int lfd = open(d->log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);

		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (lfd < 0 || dup2(lfd, 1) < 0 || dup2(lfd, 2) < 0)
			_exit(126);
		close_range(3, ~0U, 0);
		if (spec) {
			setenv("IOVAD_FAILPOINTS", spec, 1);
			setenv("IOVAD_FAILPOINTS_LOG", opt.backtrace ? "2" : "1", 1);
		} else {
			unsetenv("IOVAD_FAILPOINTS");
		}
		execl(opt.daemon, "iovad", "--socket", d->sock, io, "--config", d->conf,
		      (char *)NULL);
		_exit(127);
	}
	for (int i = 0; i < 3000; i++) {
		int cfd;

		if (waitpid(d->pid, status, WNOHANG) == d->pid) {
			d->pid = 0;
			return START_EXITED;
		}
		/*
		 * Ready when it answers HELLO: a connect alone may still reach a
		 * listener the daemon is about to close (a later start-up step failed).
		 */
		cfd = raw_connect(d->sock);
		if (cfd >= 0) {
			r = raw_hello(cfd);
			close(cfd);
			if (!r)
				return START_OK;
		}
		usleep(i < 100 ? 1000 : 10000);
	}
	return START_TIMEOUT;
}

static bool dmn_alive(struct dmn *d)
{
	int status;

	if (d->pid <= 0)
		return false;
	if (waitpid(d->pid, &status, WNOHANG) == d->pid) {
		d->pid = -status - 1; /* keep the status for the report */
		return false;
	}
	return true;
}

/* SIGTERM; the wait status, or -1 if it had to be killed. */
static int dmn_stop(struct dmn *d)
{
	int status = -1;

	if (d->pid < 0)
		return -d->pid - 1;
	if (d->pid == 0)
		return -1;
	kill(d->pid, SIGTERM);
	for (int i = 0; i < 2000; i++) {
		if (waitpid(d->pid, &status, WNOHANG) == d->pid) {
			d->pid = 0;
			return status;
		}
		usleep(5000);
	}
	kill(d->pid, SIGKILL);
	waitpid(d->pid, &status, 0);
	d->pid = 0;
	return -1;
}

static void dmn_cleanup(struct dmn *d, bool keep)
{
	unlink(d->sock);
	if (keep) {
		fprintf(stderr, "fault: daemon log kept: %s\n", d->log);
		return;
	}
	unlink(d->log);
	unlink(d->conf);
	rmdir(d->dir);
}

/* The whole log, NUL-terminated (malloc'd), or NULL. */
static char *dmn_log(const struct dmn *d)
{
	char *buf = NULL;
	size_t len = 0, cap = 0;
	int fd = open(d->log, O_RDONLY | O_CLOEXEC);
	ssize_t n;

	if (fd < 0)
		return NULL;
	do {
		if (cap - len < 4096) {
			char *nb = realloc(buf, cap = cap ? cap * 2 : 65536);

			if (!nb) {
				free(buf);
				close(fd);
				return NULL;
			}
			buf = nb;
		}
		n = read(fd, buf + len, cap - len - 1);
		if (n > 0)
			len += (size_t)n;
	} while (n > 0);
	close(fd);
	if (!buf)
		buf = calloc(1, 1);
	else
		buf[len] = '\0';
	return buf;
}

static bool dmn_log_has(const struct dmn *d, const char *needle)
{
	char *log = dmn_log(d);
	bool has = log && strstr(log, needle);

	free(log);
	return has;
}

static void dmn_log_tail(const struct dmn *d, int lines)
{
	char *log = dmn_log(d), *p;
	int n = 0;

	if (!log)
		return;
	p = log + strlen(log);
	while (p > log && n <= lines)
		if (*--p == '\n')
			n++;
	fprintf(stderr, "---- daemon log (last %d lines) ----\n%s\n----\n", lines,
		p == log ? p : p + 1);
	free(log);
}

enum { SAN_NONE = 0, SAN_LEAK = 1, SAN_ERROR = 2 };

/* A sanitizer's report in the log: SAN_ERROR (memory or UB), SAN_LEAK (leaks only). */
static int dmn_log_sanitizer(const struct dmn *d)
{
	char *log = dmn_log(d);
	int r = SAN_NONE;

	if (log && (strstr(log, "ERROR: AddressSanitizer") || strstr(log, "runtime error:")))
		r = SAN_ERROR;
	else if (log && strstr(log, "ERROR: LeakSanitizer"))
		r = SAN_LEAK;
	free(log);
	return r;
}

/* Why a start was refused: a line of the daemon's other than the failpoints' own. */
static bool dmn_log_has_reason(const struct dmn *d)
{
	char *log = dmn_log(d), *line, *save = NULL;
	bool found = false;

	for (line = log ? strtok_r(log, "\n", &save) : NULL; line && !found;
	     line = strtok_r(NULL, "\n", &save))
		found = (!strncmp(line, "<3>", 3) || !strncmp(line, "iovad: ", 7)) &&
			!strstr(line, "failpoint");
	free(log);
	return found;
}

static const char *const sites[] = { "alloc", "uring_submit", "journal_write", "journal_sync" };
#define NSITES 4

struct fp_counts {
	bool found;
	unsigned long hits[NSITES], fails[NSITES];
};

/* The "failpoints at exit" line of the daemon's log. */
static struct fp_counts dmn_counts(const struct dmn *d)
{
	struct fp_counts fc = { 0 };
	char *log = dmn_log(d), *p;

	if (!log)
		return fc;
	if (!strstr(log, "failpoints at exit:")) {
		/* Died before its exit line: count the failures it logged. */
		for (int i = 0; i < NSITES; i++) {
			char key[64];

			snprintf(key, sizeof(key), "failpoint %s: injected", sites[i]);
			for (p = strstr(log, key); p; p = strstr(p + 1, key))
				fc.fails[i]++;
		}
	} else {
		fc.found = true;
		for (int i = 0; i < NSITES; i++)
			if (!fp_exit_counts(log, sites[i], &fc.hits[i], &fc.fails[i]))
				fc.found = false;
	}
	free(log);
	return fc;
}

/* ---- admin queries on a raw connection (harness.h's frames) ---------------------- */

static int admin_call(const struct dmn *d, uint16_t cmd, const void *body, size_t blen,
		      uint8_t *buf, size_t cap)
{
	int fd = raw_connect(d->sock), n, r;

	if (fd < 0)
		return fd;
	r = raw_hello(fd);
	if (r) {
		close(fd);
		return r < 0 ? r : -EPROTO;
	}
	r = raw_send(fd, cmd, 2, body, blen);
	if (!r) {
		n = raw_recv(fd, buf, cap, 3000);
		r = n <= 0 ? (n ? n : -ECONNRESET) : frame_status(buf);
		if (!r && (size_t)n < sizeof(struct proto_hdr) + sizeof(struct proto_status))
			r = -EBADMSG;
	}
	close(fd);
	return r;
}

/* Retried a few times: the probe's own session may be the one an injected fault hits. */
static int dmn_status(const struct dmn *d, struct proto_status_rpy *ret)
{
	uint8_t buf[512];
	int r = -EIO;

	for (int i = 0; i < 3; i++) {
		r = admin_call(d, PROTO_CMD_STATUS, NULL, 0, buf, sizeof(buf));
		if (!r) {
			memcpy(ret, buf + sizeof(struct proto_hdr), sizeof(*ret));
			return 0;
		}
		usleep(10000);
	}
	return r;
}

/* LIST_*: the total, and the entries of the first page into ents (if not NULL). */
static int dmn_list(const struct dmn *d, uint16_t cmd, void *ents, size_t esz, uint32_t cap,
		    uint32_t *total)
{
	static uint8_t buf[PROTO_FRAME_MAX];
	struct proto_list q = { 0 };
	struct proto_list_rpy rpy;
	int r = -EIO;

	for (int i = 0; i < 3; i++) {
		r = admin_call(d, cmd, &q, sizeof(q), buf, sizeof(buf));
		if (!r)
			break;
		usleep(10000);
	}
	if (r)
		return r;
	memcpy(&rpy, buf + sizeof(struct proto_hdr), sizeof(rpy));
	*total = rpy.total;
	if (ents) {
		uint32_t n = rpy.count < cap ? rpy.count : cap;

		memcpy(ents, buf + sizeof(struct proto_hdr) + sizeof(rpy), n * esz);
		if (rpy.count < rpy.total)
			return -E2BIG;
	}
	return 0;
}

/*
 * Synthetic memory that is not a client's but counts in STATUS mem_bytes: the
 * bounce pool of untrusted0's domain (the default size: the configuration
 * does not set one), made at its first bounce and kept.
 */
#define MEM_FLOOR DOM_DEFAULT_SWIOTLB_BYTES

/*
 * With every client gone the daemon must hold nothing. Waits for the
 * teardowns (asynchronous to the clients' close). Return: true, or false
 * with why.
 */
static bool dmn_quiet_and_clean(const struct dmn *d, char *why, size_t len)
{
	struct proto_dev_entry devs[16];
	struct proto_status_rpy st;
	uint64_t deadline = now_ms() + QUIET_TIMEOUT_MS;
	uint32_t ndevs, nodp;
	int r;

	for (;;) {
		r = dmn_status(d, &st);
		if (r) {
			snprintf(why, len, "STATUS: %s", strerror(-r));
			return false;
		}
		/* The probe itself is a client. */
		if (st.clients <= 1 && (!st.mem_bytes || st.mem_bytes == MEM_FLOOR))
			break;
		if (now_ms() > deadline) {
			snprintf(why, len, "%u clients and %" PRIu64 " bytes of client memory left "
				 "%d s after the last client", st.clients - 1, st.mem_bytes,
				 QUIET_TIMEOUT_MS / 1000);
			return false;
		}
		usleep(20000);
	}
	r = dmn_list(d, PROTO_CMD_LIST_ODP, NULL, 0, 0, &nodp);
	if (r) {
		snprintf(why, len, "LIST_ODP: %s", strerror(-r));
		return false;
	}
	if (nodp) {
		snprintf(why, len, "%u ODP regions left", nodp);
		return false;
	}
	r = dmn_list(d, PROTO_CMD_LIST_DEVICES, devs, sizeof(devs[0]), 16, &ndevs);
	if (r) {
		snprintf(why, len, "LIST_DEVICES: %s", strerror(-r));
		return false;
	}
	for (uint32_t i = 0; i < ndevs && i < 16; i++) {
		const struct proto_dev_stats *s = &devs[i].stats;
		char name[PROTO_DEV_NAME_MAX + 1] = "";

		memcpy(name, devs[i].name, PROTO_DEV_NAME_MAX);
		if (s->mapped_bytes || s->iova_allocs != s->iova_frees) {
			snprintf(why, len, "device %s: %" PRIu64 " bytes still mapped, %" PRIu64
				 " IOVA allocations against %" PRIu64 " frees", name,
				 s->mapped_bytes, s->iova_allocs, s->iova_frees);
			return false;
		}
	}
	return true;
}

/* ==== the workload ====================================================================== */

/* Errors a call may return when the daemon could not allocate. */
#define ALLOW_EFAULT 0x1u /* a device access in an ODP region: the fault was not served */
/*
 * A call that allocates IOVA (IOVA_ALLOC, ODP_REG): the IOVA allocator says
 * "no room" for a tree node it could not allocate too, as the kernel's
 * alloc_iova() does, and dma_iova_try_alloc() is a bool.
 */
#define ALLOW_ENOSPC 0x2u

struct wl_result {
	uint32_t calls;
	uint32_t failed;
	uint32_t unclean;
	int32_t first_err;
	char first_op[40];
	char unclean_msg[200];
	bool complete;       /* every step ran and succeeded */
	char cur_op[40];     /* the call in progress (hang diagnosis) */
	_Atomic uint64_t heartbeat_ms;
};

struct wl {
	struct wl_result *r;
	uint64_t rng;
	int stop_at;   /* kill test: stop after this many steps (-1: never) */
	bool dirty;    /* kill test: leave without cleaning up */
	bool failed;
	struct iovad *c;
	struct iovad_dev *d0, *d1, *d2;
	struct iovad_mem *m, *m2;
	int memfd;
	uint8_t *va, *va2;
	uint64_t phys, phys2;
	int steps;
};

static void wl_unclean(struct wl *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void wl_unclean(struct wl *w, const char *fmt, ...)
{
	va_list ap;

	w->r->unclean++;
	if (w->r->unclean > 1)
		return;
	va_start(ap, fmt);
	vsnprintf(w->r->unclean_msg, sizeof(w->r->unclean_msg), fmt, ap);
	va_end(ap);
}

static bool clean_errno(int r, unsigned int allow)
{
	switch (r) {
	case -ENOMEM:
	case -ENOTCONN:
	case -ECONNRESET:
	case -EPIPE:
		return true;
	case -EFAULT:
		return allow & ALLOW_EFAULT;
	case -ENOSPC:
		return allow & ALLOW_ENOSPC;
	default:
		return false;
	}
}

static void wl_begin(struct wl *w, const char *op)
{
	/* Op names are short literals; a long one is cut, which is fine for a log. */
	snprintf(w->r->cur_op, sizeof(w->r->cur_op), "%.*s", (int)sizeof(w->r->cur_op) - 1, op);
	atomic_store(&w->r->heartbeat_ms, now_ms());
}

/* Account one call's result. Return: true when it succeeded. */
static bool wl_check(struct wl *w, const char *op, int r, unsigned int allow)
{
	w->r->calls++;
	atomic_store(&w->r->heartbeat_ms, now_ms());
	if (r >= 0)
		return true;
	w->r->failed++;
	w->failed = true;
	if (!w->r->first_err) {
		w->r->first_err = r;
		snprintf(w->r->first_op, sizeof(w->r->first_op), "%s", op);
	}
	if (!clean_errno(r, allow))
		wl_unclean(w, "%s: %d (%s)", op, r, iovad_strerror(r));
	if (opt.verbose > 1)
		fprintf(stderr, "  %s: %s\n", op, iovad_strerror(r));
	return false;
}

#define CALL(w, op, expr, allow) (wl_begin(w, op), wl_check(w, op, (expr), allow))

/* The next forward step may run: nothing failed and the kill test's stop point not reached. */
static bool wl_go(struct wl *w)
{
	if (w->failed)
		return false;
	if (w->stop_at >= 0 && w->steps >= w->stop_at)
		return false;
	w->steps++;
	return true;
}

static void fill(struct wl *w, uint8_t *p, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		if (!(i & 7))
			splitmix(&w->rng);
		p[i] = (uint8_t)(w->rng >> ((i & 7) * 8));
	}
}

/*
 * The device writes at iova, which must land in the client's memory at va;
 * the client writes there, which the device must read back.
 */
static void dma_check(struct wl *w, const char *what, struct iovad_dev *d, uint64_t iova,
		      uint8_t *va, size_t len, unsigned int allow)
{
	uint8_t out[8192], in[8192];
	char op[64];

	fill(w, out, len);
	snprintf(op, sizeof(op), "%s dma_write", what);
	if (!CALL(w, op, iovad_dev_dma_write(d, iova, out, len), allow))
		return;
	if (memcmp(va, out, len))
		wl_unclean(w, "%s: the bytes the device wrote at %#" PRIx64 " are not in memory",
			   what, iova);
	fill(w, va, len);
	snprintf(op, sizeof(op), "%s dma_read", what);
	if (!CALL(w, op, iovad_dev_dma_read(d, iova, in, len), allow))
		return;
	if (memcmp(in, va, len))
		wl_unclean(w, "%s: the device read other bytes at %#" PRIx64 " than memory holds",
			   what, iova);
}

static void fault_cb(const struct iovad_odp_fault *f, void *arg)
{
	struct wl *w = arg;

	/* The data is the client's memory itself: it is in place. */
	CALL(w, "odp_fault_complete", iovad_odp_fault_complete(w->c, f->id, 0), 0);
}

static int try_alloc(struct iovad_dev *d, struct iovad_iova_state *st, uint64_t phys, size_t len)
{
	return iovad_iova_try_alloc(d, st, phys, len) ? 0 : (errno ? -errno : -EIO);
}

static int import_memfd(struct wl *w)
{
	int r;

	w->memfd = memfd_create("iovad-fault", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (w->memfd < 0 || ftruncate(w->memfd, MEM_SIZE) ||
	    fcntl(w->memfd, F_ADD_SEALS, F_SEAL_SHRINK)) {
		perror("memfd");
		exit(3);
	}
	r = iovad_mem_import(w->c, w->memfd, 0, MEM_SIZE, &w->m);
	if (!r) {
		w->va = iovad_mem_addr(w->m);
		w->phys = iovad_mem_phys(w->m);
	}
	return r;
}

/*
 * What iovadctl asks, on a connection of its own, while this client holds
 * everything: STATUS, LIST_CLIENTS, CLIENT_MAPS of this session, LIST_ODP.
 */
static void admin_queries(struct wl *w)
{
	static const uint16_t cmds[] = { PROTO_CMD_STATUS, PROTO_CMD_LIST_CLIENTS,
					 PROTO_CMD_CLIENT_MAPS, PROTO_CMD_LIST_ODP };
	static uint8_t buf[PROTO_FRAME_MAX];
	const char *path = getenv("IOVAD_SOCKET");
	int fd, r, n;

	wl_begin(w, "admin connect");
	fd = raw_connect(path);
	if (fd < 0) {
		wl_check(w, "admin connect", fd, 0);
		return;
	}
	r = raw_hello(fd);
	if (!wl_check(w, "admin hello", r > 0 ? -EPROTO : r == -ETIMEDOUT ? r : r ? -ECONNRESET : 0,
		      0)) {
		close(fd);
		return;
	}
	for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++) {
		/* CLIENT_MAPS and LIST_ODP of this session; the others take 0. */
		struct proto_list q = { .session_id = cmds[i] == PROTO_CMD_CLIENT_MAPS ||
						      cmds[i] == PROTO_CMD_LIST_ODP ?
						      iovad_session_id(w->c) : 0 };

		wl_begin(w, "admin query");
		r = raw_send(fd, cmds[i], 10 + i, cmds[i] == PROTO_CMD_STATUS ? NULL : &q,
			     cmds[i] == PROTO_CMD_STATUS ? 0 : sizeof(q));
		if (!r) {
			n = raw_recv(fd, buf, sizeof(buf), 5000);
			/* A closed connection is a clean answer; a hang is not. */
			r = n > 0 ? frame_status(buf) : n == 0 ? -ECONNRESET : n;
		}
		if (!wl_check(w, "admin query", r, 0))
			break;
	}
	close(fd);
}

/*
 * One client, every kind of request, through libiovad:
 *   sim0        an IOVA state over 64 KiB: link, sync, device DMA, unlink, free
 *   untrusted0  map_phys of an unaligned range (bounced through swiotlb), unmap
 *   sim-lazy0   map_phys from an iovad_mem_alloc object, unmap (flush queue)
 *   sim0        a batch: link two halves + sync; DMA; destroy in a batch
 *   sim0        an ODP region: faults on device access, invalidate, discard, dereg
 *   sim-lazy0   an ODP region whose faults this client resolves itself
 * and then frees what it holds, unless the kill test says otherwise.
 */
static void workload(struct wl *w)
{
	struct iovad_iova_state st0 = { 0 }, st2 = { 0 };
	struct iovad_batch *b = NULL;
	struct iovad_odp *odp = NULL, *uodp = NULL;
	uint64_t dma1 = 0, dma2 = 0;
	bool st0_alloc = false, st0_linked = false, st2_alloc = false;
	bool st2_half[2] = { false, false }; /* st2's halves linked */
	bool st0_half = false; /* [32K, 64K) of st0 unlinked */
	bool mapped1 = false, mapped2 = false;
	int r;

	w->memfd = -1;
	if (!wl_go(w) || !CALL(w, "connect", iovad_connect(NULL, &w->c), 0)) {
		w->c = NULL;
		return;
	}
	if (wl_go(w))
		CALL(w, "dev_open sim0", iovad_dev_open(w->c, "sim0", &w->d0), 0);
	if (wl_go(w))
		CALL(w, "dev_open untrusted0", iovad_dev_open(w->c, "untrusted0", &w->d1), 0);
	if (wl_go(w))
		CALL(w, "dev_open sim-lazy0", iovad_dev_open(w->c, "sim-lazy0", &w->d2), 0);
	if (wl_go(w))
		CALL(w, "mem_import", import_memfd(w), 0);
	if (wl_go(w) && CALL(w, "mem_alloc", iovad_mem_alloc(w->c, MEM2_SIZE, &w->m2), 0)) {
		w->va2 = iovad_mem_addr(w->m2);
		w->phys2 = iovad_mem_phys(w->m2);
	}

	/* sim0: an IOVA state */
	if (wl_go(w))
		st0_alloc = CALL(w, "iova_try_alloc", try_alloc(w->d0, &st0, w->phys, 64 * KiB),
				 ALLOW_ENOSPC);
	if (wl_go(w))
		st0_linked = CALL(w, "iova_link", iovad_iova_link(w->d0, &st0, w->phys, 0, 64 * KiB,
								  IOVAD_DMA_BIDIRECTIONAL, 0), 0);
	if (wl_go(w))
		CALL(w, "iova_sync", iovad_iova_sync(w->d0, &st0, 0, 64 * KiB), 0);
	if (wl_go(w))
		dma_check(w, "state", w->d0, st0.addr + 4 * KiB, w->va + 4 * KiB, 8 * KiB, 0);

	/* untrusted0: a bounced streaming mapping (the device sees the bounce buffer) */
	if (wl_go(w))
		mapped1 = CALL(w, "map_phys untrusted", iovad_map_phys(w->d1, w->phys + 64 * KiB + 100,
								       3000, IOVAD_DMA_TO_DEVICE, 0,
								       &dma1), 0);
	if (wl_go(w)) {
		uint8_t in[3000];

		if (CALL(w, "bounce dma_read", iovad_dev_dma_read(w->d1, dma1, in, sizeof(in)), 0) &&
		    memcmp(in, w->va + 64 * KiB + 100, sizeof(in)))
			wl_unclean(w, "bounce: the device read other bytes than the memory held");
	}
	if (wl_go(w) && mapped1) {
		mapped1 = false;
		CALL(w, "unmap_phys untrusted", iovad_unmap_phys(w->d1, dma1, 3000,
								 IOVAD_DMA_TO_DEVICE, 0), 0);
	}

	/* sim-lazy0: a streaming mapping of the library's own memory object */
	if (wl_go(w))
		mapped2 = CALL(w, "map_phys lazy", iovad_map_phys(w->d2, w->phys2, 16 * KiB,
								  IOVAD_DMA_BIDIRECTIONAL, 0, &dma2), 0);
	if (wl_go(w))
		dma_check(w, "map", w->d2, dma2, w->va2, 4 * KiB, 0);
	if (wl_go(w) && mapped2) {
		mapped2 = false;
		CALL(w, "unmap_phys lazy", iovad_unmap_phys(w->d2, dma2, 16 * KiB,
							    IOVAD_DMA_BIDIRECTIONAL, 0), 0);
	}

	/* sim0: a batch */
	if (wl_go(w))
		CALL(w, "batch_new", iovad_batch_new(w->c, &b), 0);
	if (wl_go(w))
		st2_alloc = CALL(w, "iova_try_alloc 2", try_alloc(w->d0, &st2, w->phys + 96 * KiB,
								  32 * KiB), ALLOW_ENOSPC);
	if (wl_go(w)) {
		iovad_batch_link(b, w->d0, &st2, w->phys + 96 * KiB, 0, 16 * KiB,
				 IOVAD_DMA_BIDIRECTIONAL, 0);
		iovad_batch_link(b, w->d0, &st2, w->phys + 112 * KiB, 16 * KiB, 16 * KiB,
				 IOVAD_DMA_BIDIRECTIONAL, 0);
		iovad_batch_sync(b, w->d0, &st2, 0, 32 * KiB);
		if (CALL(w, "batch_submit link", iovad_batch_submit(b, NULL, NULL), 0) &&
		    CALL(w, "batch_wait link", iovad_batch_wait(b), 0))
			for (size_t i = 0; i < 3; i++)
				if (CALL(w, "batch op link", iovad_batch_op_status(b, i), 0) && i < 2)
					st2_half[i] = true;
	}
	if (wl_go(w))
		dma_check(w, "batch", w->d0, st2.addr + 12 * KiB, w->va + 108 * KiB, 8 * KiB, 0);
	if (wl_go(w) && st2_alloc && st2_half[0] && st2_half[1]) {
		iovad_batch_reset(b);
		iovad_batch_destroy(b, w->d0, &st2, 32 * KiB, IOVAD_DMA_BIDIRECTIONAL, 0);
		if (CALL(w, "batch_submit destroy", iovad_batch_submit(b, NULL, NULL), 0) &&
		    CALL(w, "batch_wait destroy", iovad_batch_wait(b), 0) &&
		    CALL(w, "batch op destroy", iovad_batch_op_status(b, 0), 0))
			st2_alloc = st2_half[0] = st2_half[1] = false;
	}

	/* sim0: ODP, faults served by the daemon */
	if (wl_go(w))
		CALL(w, "odp_reg", iovad_odp_reg(w->d0, w->m, 128 * KiB, 64 * KiB,
						 IOVAD_ACCESS_DEVICE_READ | IOVAD_ACCESS_DEVICE_WRITE,
						 0, &odp), ALLOW_ENOSPC);
	if (wl_go(w))
		dma_check(w, "odp", w->d0, iovad_odp_iova(odp) + 8 * KiB, w->va + 136 * KiB, 8 * KiB,
			  ALLOW_EFAULT);
	if (wl_go(w)) {
		struct iovad_odp_stats os;

		CALL(w, "odp_stats", iovad_odp_stats(odp, &os), 0);
	}
	if (wl_go(w))
		CALL(w, "odp_invalidate", iovad_odp_invalidate(odp, 0, 64 * KiB), 0);
	if (wl_go(w))
		CALL(w, "odp_advise", iovad_odp_advise(odp, IOVAD_ADVISE_PREFETCH_WRITE, 16 * KiB,
						       16 * KiB, IOVAD_ADVISE_FLAG_FLUSH),
		     ALLOW_EFAULT);
	if (wl_go(w))
		dma_check(w, "odp prefetched", w->d0, iovad_odp_iova(odp) + 20 * KiB,
			  w->va + 148 * KiB, 4 * KiB, ALLOW_EFAULT);
	if (wl_go(w))
		dma_check(w, "odp again", w->d0, iovad_odp_iova(odp) + 40 * KiB, w->va + 168 * KiB,
			  4 * KiB, ALLOW_EFAULT);
	if (wl_go(w))
		CALL(w, "mem_discard", iovad_mem_discard(w->m, 168 * KiB, 4 * KiB), 0);
	if (wl_go(w)) {
		uint8_t in[64];

		/* Discarded: the device reads zeros there, faulted in again. */
		if (CALL(w, "odp read discarded", iovad_dev_dma_read(w->d0, iovad_odp_iova(odp) +
								     40 * KiB, in, sizeof(in)),
			 ALLOW_EFAULT)) {
			for (size_t i = 0; i < sizeof(in); i++)
				if (in[i]) {
					wl_unclean(w, "odp: a discarded page does not read as zeros");
					break;
				}
		}
	}

	/* sim-lazy0: ODP whose faults this client resolves */
	if (wl_go(w))
		CALL(w, "odp_reg user", iovad_odp_reg(w->d2, w->m, 192 * KiB, 64 * KiB,
						      IOVAD_ACCESS_DEVICE_READ |
						      IOVAD_ACCESS_DEVICE_WRITE,
						      IOVAD_ODP_USER_FAULTS, &uodp), ALLOW_ENOSPC);
	if (wl_go(w))
		CALL(w, "odp_set_fault_handler", iovad_odp_set_fault_handler(uodp, fault_cb, w), 0);
	if (wl_go(w))
		dma_check(w, "user odp", w->d2, iovad_odp_iova(uodp) + 4 * KiB, w->va + 196 * KiB,
			  4 * KiB, ALLOW_EFAULT);

	/* back on sim0's state: unlink half, then the rest, and free */
	if (wl_go(w) && st0_linked)
		st0_half = CALL(w, "iova_unlink", iovad_iova_unlink(w->d0, &st0, 32 * KiB, 32 * KiB,
								    IOVAD_DMA_BIDIRECTIONAL, 0), 0);
	if (wl_go(w)) {
		uint8_t in[64];

		/* Unlinked on a strict domain: the device cannot reach it any more. */
		r = iovad_dev_dma_read(w->d0, st0.addr + 40 * KiB, in, sizeof(in));
		wl_begin(w, "dma_read unlinked");
		if (r != -EFAULT)
			wl_check(w, "dma_read unlinked", r ? r : -EEXIST, 0);
		else
			w->r->calls++;
	}

	if (wl_go(w)) {
		struct iovad_dev_stats ds;

		CALL(w, "dev_stats", iovad_dev_stats(w->d0, &ds), 0);
	}
	if (wl_go(w))
		admin_queries(w);

	if (w->dirty)
		goto out;
	/* Cleanup: everything this client holds, in reverse, also after a failure. */
	w->failed = false;
	w->stop_at = -1;
	if (uodp)
		CALL(w, "odp_dereg user", iovad_odp_dereg(uodp), 0);
	if (odp)
		CALL(w, "odp_dereg", iovad_odp_dereg(odp), 0);
	if (st2_alloc) {
		for (int i = 0; i < 2; i++)
			if (st2_half[i])
				CALL(w, "iova_unlink 2", iovad_iova_unlink(w->d0, &st2, i * 16 * KiB,
									   16 * KiB,
									   IOVAD_DMA_BIDIRECTIONAL,
									   0), 0);
		CALL(w, "iova_free 2", iovad_iova_free(w->d0, &st2), 0);
	}
	if (mapped2)
		CALL(w, "unmap_phys lazy", iovad_unmap_phys(w->d2, dma2, 16 * KiB,
							    IOVAD_DMA_BIDIRECTIONAL, 0), 0);
	if (mapped1)
		CALL(w, "unmap_phys untrusted", iovad_unmap_phys(w->d1, dma1, 3000,
								 IOVAD_DMA_TO_DEVICE, 0), 0);
	if (st0_alloc) {
		if (st0_linked)
			CALL(w, "iova_destroy", iovad_iova_destroy(w->d0, &st0,
								   st0_half ? 32 * KiB : 64 * KiB,
								   IOVAD_DMA_BIDIRECTIONAL, 0), 0);
		else
			CALL(w, "iova_free", iovad_iova_free(w->d0, &st0), 0);
	}
	iovad_batch_free(b);
	iovad_mem_free(w->m2);
	iovad_mem_free(w->m);
	iovad_dev_close(w->d2);
	iovad_dev_close(w->d1);
	iovad_dev_close(w->d0);
out:
	w->r->complete = !w->r->failed && w->stop_at < 0;
	iovad_disconnect(w->c);
	w->c = NULL;
	if (w->memfd >= 0)
		close(w->memfd);
}

/*
 * Run the workload in a child: on the rings (else the socket), cleaning up
 * (else leaving everything to the daemon). Return: 0, or -ETIMEDOUT (hung)
 * or -ECHILD (the client process failed) with why.
 */
static int run_workload_child(const struct dmn *d, struct wl_result *res, uint64_t seed,
			      bool rings, bool dirty, const char **why)
{
	pid_t pid;
	int status;
	uint64_t deadline;

	memset(res, 0, sizeof(*res));
	pid = fork();
	if (pid < 0) {
		perror("fork");
		exit(2);
	}
	if (pid == 0) {
		struct wl w = { .r = res, .rng = seed, .stop_at = -1, .dirty = dirty };

		setenv("IOVAD_SOCKET", d->sock, 1);
		if (!rings)
			setenv("IOVAD_RINGS", "0", 1);
		workload(&w);
		_exit(0);
	}
	deadline = now_ms() + WL_TIMEOUT_MS;
	for (;;) {
		if (waitpid(pid, &status, WNOHANG) == pid)
			break;
		if (now_ms() > deadline) {
			kill(pid, SIGKILL);
			waitpid(pid, &status, 0);
			*why = "the client hung";
			return -ETIMEDOUT;
		}
		usleep(2000);
	}
	if (!WIFEXITED(status) || WEXITSTATUS(status)) {
		*why = "the client process failed";
		return -ECHILD;
	}
	return 0;
}

/* ==== alloc: every allocation of a fixed procedure fails once ========================== */

struct totals {
	unsigned long runs;
	unsigned long injected[NSITES];
	unsigned long crashes;
	unsigned long hangs;
	unsigned long errors;      /* unclean errors, corruption, failed checks */
	unsigned long refused;     /* starts refused cleanly */
	unsigned long client_errors; /* clean errors clients saw */
	unsigned long completed;   /* workloads completed */
	unsigned long kills;
};

static struct totals tot;

static void __attribute__((format(printf, 2, 3))) run_fail(const struct dmn *d, const char *fmt,
							 ...)
{
	va_list ap;

	tot.errors++;
	fprintf(stderr, "fault: FAIL: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	if (d && tot.errors + tot.crashes + tot.hangs <= 5)
		dmn_log_tail(d, 25);
}

static const char *status_str(int status)
{
	static char buf[64];

	if (status == -1)
		snprintf(buf, sizeof(buf), "did not stop in 10 s");
	else if (WIFSIGNALED(status))
		snprintf(buf, sizeof(buf), "killed by signal %d (%s)", WTERMSIG(status),
			 strsignal(WTERMSIG(status)));
	else
		snprintf(buf, sizeof(buf), "exit status %d", WEXITSTATUS(status));
	return buf;
}

static void add_counts(const struct fp_counts *fc)
{
	for (int i = 0; i < NSITES; i++)
		tot.injected[i] += fc->fails[i];
}

/* The daemon stops with status 0, and its sanitizers found nothing. */
static bool stop_clean(struct dmn *d, const char *what)
{
	int status = dmn_stop(d);
	struct fp_counts fc = dmn_counts(d);

	add_counts(&fc);
	if (status == -1 || WIFSIGNALED(status)) {
		tot.crashes++;
		run_fail(d, "%s: the daemon %s at SIGTERM", what, status_str(status));
		return false;
	}
	if (WEXITSTATUS(status) || dmn_log_sanitizer(d)) {
		run_fail(d, "%s: the daemon stopped with %s%s", what, status_str(status),
			 dmn_log_sanitizer(d) ? " and a sanitizer report" : "");
		return false;
	}
	if (!fc.found) {
		run_fail(d, "%s: no 'failpoints at exit' line in the daemon's log", what);
		return false;
	}
	return true;
}

/*
 * The procedure with spec. A dry run (hits not NULL) fails nothing and runs
 * one client; *hits: the daemon's alloc hits at exit. Return: whether it passed.
 */
static bool alloc_run(const char *spec, const char *label, unsigned long *hits)
{
	struct wl_result *res = mmap(NULL, sizeof(*res), PROT_READ | PROT_WRITE,
				     MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	struct dmn d;
	char why[256];
	const char *cwhy = "";
	bool injected = false, ok = false, dry = hits != NULL;
	int status, r;

	if (res == MAP_FAILED) {
		perror("mmap");
		exit(2);
	}
	tot.runs++;
	r = dmn_start(&d, spec, &status);
	if (r == START_TIMEOUT) {
		tot.hangs++;
		run_fail(&d, "%s: the daemon did not start in 30 s", label);
		goto out;
	}
	if (r == START_EXITED) {
		struct fp_counts fc = dmn_counts(&d);
		int san = dmn_log_sanitizer(&d);
		/*
		 * A start refused for want of memory: an error message and 1 (2:
		 * usage). What main() set up before is not freed on the way out: a
		 * leak report (an abort with abort_on_error=1) is tolerated here.
		 */
		bool refused = san == SAN_LEAK ||
			       (WIFEXITED(status) && (WEXITSTATUS(status) == 1 ||
						      WEXITSTATUS(status) == 2));

		add_counts(&fc);
		if (san == SAN_ERROR || !refused) {
			if (WIFSIGNALED(status) || san == SAN_ERROR)
				tot.crashes++;
			run_fail(&d, "%s: the daemon failed to start with %s%s", label,
				 status_str(status),
				 san == SAN_ERROR ? " and a sanitizer report" : "");
			goto out;
		}
		if (!dmn_log_has_reason(&d)) {
			run_fail(&d, "%s: the daemon refused to start (%s) without saying why",
				 label, status_str(status));
			goto out;
		}
		tot.refused++;
		if (opt.verbose > 1)
			fprintf(stderr, "fault: %s: start refused cleanly (%s)\n", label,
				status_str(status));
		ok = !dry;
		goto out;
	}
	/*
	 * Rounds of two clients, one on the rings cleaning up, one on the socket
	 * leaving everything to the daemon: lenient until the failure happened,
	 * then one strict round.
	 */
	for (int round = 0; round < 3; round++) {
		bool strict = injected;

		for (int k = 0; k < 2; k++) {
			const char *who = k ? "the client that leaves" : "the client";

			r = run_workload_child(&d, res, (uint64_t)round * 2 + (uint64_t)k + 1, k == 0,
					       k == 1, &cwhy);
			if (r) {
				if (r == -ETIMEDOUT)
					tot.hangs++;
				run_fail(&d, "%s: round %d, %s: %s (in %s)", label, round, who, cwhy,
					 res->cur_op);
				goto out;
			}
			if (!dmn_alive(&d)) {
				tot.crashes++;
				run_fail(&d, "%s: round %d, %s: the daemon died (%s) (first failed "
					 "call: %s)", label, round, who, status_str(-d.pid - 1),
					 res->first_op[0] ? res->first_op : "none");
				goto out;
			}
			if (res->unclean) {
				run_fail(&d, "%s: round %d, %s: %s", label, round, who,
					 res->unclean_msg);
				goto out;
			}
			if (res->failed)
				tot.client_errors++;
			if (res->complete)
				tot.completed++;
			if ((strict || dry) && !res->complete) {
				run_fail(&d, "%s: %s%s did not complete: %s: %d (%s)", label, who,
					 dry ? "" : " (a fresh one after the failure)",
					 res->first_op, res->first_err,
					 iovad_strerror(res->first_err));
				goto out;
			}
			if (opt.verbose > 1)
				fprintf(stderr, "fault: %s: round %d, %s: %u calls, %u failed%s%s\n",
					label, round, who, res->calls, res->failed,
					res->failed ? ", first " : "", res->first_op);
			if (!dmn_quiet_and_clean(&d, why, sizeof(why))) {
				if (!dmn_alive(&d)) {
					tot.crashes++;
					run_fail(&d, "%s: the daemon died (%s)", label,
						 status_str(-d.pid - 1));
				} else {
					run_fail(&d, "%s: round %d: after %s left: %s", label,
						 round, who, why);
				}
				goto out;
			}
			/* A configuration reload between the two (main.c's SIGHUP path). */
			if (!k && round == 0) {
				kill(d.pid, SIGHUP);
				for (int i = 0; i < 200 && !dmn_log_has(&d, "SIGHUP"); i++)
					usleep(1000);
			}
		}
		if (strict || dry)
			break;
		injected = dmn_log_has(&d, "injected failure");
	}
	ok = stop_clean(&d, label);
	if (ok && hits)
		*hits = dmn_counts(&d).hits[0];
out:
	if (d.pid != 0) {
		/* Still running (or died): its failures count, from its log. */
		struct fp_counts fc;

		dmn_stop(&d);
		fc = dmn_counts(&d);
		add_counts(&fc);
	}
	dmn_cleanup(&d, !ok && opt.keep_logs);
	munmap(res, sizeof(*res));
	return ok;
}

static int test_alloc(void)
{
	unsigned long hits = 0, from, to, step, n;
	char spec[64], label[64];
	uint64_t t0 = now_ms();

	/* Dry run: armed (so the hits are counted) with a failure that never comes. */
	if (!alloc_run("alloc=nth:999999999", "dry run", &hits) || !hits) {
		fprintf(stderr, "fault: alloc: the dry run failed\n");
		return 1;
	}
	from = opt.from ? opt.from : 1;
	to = opt.to ? opt.to : hits;
	step = opt.max_runs > 0 && (to - from + 1) > (unsigned long)opt.max_runs ?
		(to - from + 1 + (unsigned long)opt.max_runs - 1) / (unsigned long)opt.max_runs : 1;
	printf("fault: alloc: io=%s, the procedure makes %lu allocations; failing hit %lu..%lu "
	       "step %lu\n", opt.io, hits, from, to, step);
	fflush(stdout);
	for (n = from; n <= to; n += step) {
		snprintf(spec, sizeof(spec), "alloc=nth:%lu", n);
		snprintf(label, sizeof(label), "alloc=nth:%lu", n);
		alloc_run(spec, label, NULL);
		if (opt.verbose && !(tot.runs % 50))
			fprintf(stderr, "fault: alloc: %lu runs, %.1f s\n", tot.runs,
				(double)(now_ms() - t0) / 1000);
		if (tot.errors + tot.crashes + tot.hangs >= 20) {
			fprintf(stderr, "fault: alloc: too many failures, stopping\n");
			break;
		}
	}
	return 0;
}

/* ==== clients in loops: uring_submit and kill ============================================ */

struct slot {
	struct wl_result res;  /* the current workload's */
	_Atomic uint64_t completed, failed_clean, unclean, workloads;
	char unclean_msg[200];
	pid_t pid;
};

static void loop_client(struct slot *sl, const struct dmn *d, uint64_t seed, bool kill_mode,
			int idx)
{
	uint64_t rng = seed;

	setenv("IOVAD_SOCKET", d->sock, 1);
	/* Half on the shared-memory rings, half on the socket. */
	setenv("IOVAD_RINGS", idx % 2 ? "0" : "1", 1);
	for (;;) {
		struct wl w = { .r = &sl->res, .stop_at = -1 };

		memset(&sl->res, 0, offsetof(struct wl_result, heartbeat_ms));
		w.rng = splitmix(&rng);
		if (kill_mode) {
			/* Stop anywhere (or never), and leave dirty a third of the time. */
			w.stop_at = splitmix(&rng) % 4 ? (int)(splitmix(&rng) % 40) : -1;
			w.dirty = splitmix(&rng) % 3 == 0;
		}
		workload(&w);
		atomic_fetch_add(&sl->workloads, 1);
		if (sl->res.unclean) {
			if (!atomic_fetch_add(&sl->unclean, 1))
				memcpy(sl->unclean_msg, sl->res.unclean_msg, sizeof(sl->unclean_msg));
		} else if (sl->res.failed) {
			atomic_fetch_add(&sl->failed_clean, 1);
		} else {
			atomic_fetch_add(&sl->completed, 1);
		}
	}
}

static pid_t spawn_client(struct slot *sl, const struct dmn *d, uint64_t seed, bool kill_mode,
			  int idx)
{
	pid_t pid = fork();

	if (pid < 0) {
		perror("fork");
		exit(2);
	}
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		loop_client(sl, d, seed, kill_mode, idx);
		_exit(0);
	}
	atomic_store(&sl->res.heartbeat_ms, now_ms());
	return pid;
}

/*
 * spec with the seed of every prob: rule moved on by k, so that a rule that
 * failed the daemon's start-up (the same hits fail for the same seed) can be
 * tried with another.
 */
static void spec_reseed(const char *spec, unsigned int k, char *out, size_t len)
{
	size_t o = 0;

	while (*spec && o + 1 < len) {
		const char *item = spec, *end = strchr(spec, ',');
		const char *p;
		size_t n = end ? (size_t)(end - item) : strlen(item);
		char buf[128];

		snprintf(buf, sizeof(buf), "%.*s", (int)n, item);
		p = strstr(buf, "=prob:");
		if (k && p) {
			char *seed = strchr(p + 6, ':');
			unsigned long long sv = seed ? strtoull(seed + 1, NULL, 0) : 0;

			if (seed)
				*seed = '\0';
			o += (size_t)snprintf(out + o, len - o, "%s%s:%llu", o ? "," : "", buf,
					      sv + k);
		} else {
			o += (size_t)snprintf(out + o, len - o, "%s%s", o ? "," : "", buf);
		}
		if (o >= len)
			o = len - 1;
		spec = end ? end + 1 : spec + n;
	}
	out[o < len ? o : len - 1] = '\0';
}

static int test_loop(bool kill_mode)
{
	const char *spec = opt.spec ? opt.spec : kill_mode ? NULL : "uring_submit=every:3";
	const char *label = kill_mode ? "kill" : "uring_submit";
	int n = opt.clients;
	struct slot *slots = mmap(NULL, sizeof(*slots) * (size_t)n, PROT_READ | PROT_WRITE,
				  MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	struct wl_result *res = mmap(NULL, sizeof(*res), PROT_READ | PROT_WRITE,
				     MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	uint64_t rng = opt.seed, end, next_kill;
	struct dmn d;
	char why[256];
	const char *cwhy;
	int status, r;
	bool ok = true;

	if (slots == MAP_FAILED || res == MAP_FAILED) {
		perror("mmap");
		return 2;
	}
	if (kill_mode)
		printf("fault: kill: seed %" PRIu64 " (--seed %" PRIu64 " repeats this run)\n",
		       opt.seed, opt.seed);
	tot.runs++;
	/* The kill test is armed too (to count, and for --spec), failing nothing by default. */
	for (unsigned int k = 0;; k++) {
		char sp[512];

		spec_reseed(spec ? spec : "alloc=nth:999999999999", k, sp, sizeof(sp));
		r = dmn_start(&d, sp, &status);
		if (r != START_EXITED || k == 100 || !strstr(sp, "=prob:")) {
			if (k)
				printf("fault: %s: the daemon started with IOVAD_FAILPOINTS=%s\n",
				       label, sp);
			break;
		}
		dmn_cleanup(&d, false);
	}
	if (r != START_OK) {
		run_fail(&d, "%s: the daemon did not start (%s)", label,
			 r == START_EXITED ? status_str(status) : "timeout");
		dmn_stop(&d);
		dmn_cleanup(&d, opt.keep_logs);
		return 1;
	}
	for (int i = 0; i < n; i++)
		slots[i].pid = spawn_client(&slots[i], &d, splitmix(&rng), kill_mode, i);
	end = now_ms() + (uint64_t)opt.seconds * 1000u;
	next_kill = now_ms() + 20 + splitmix(&rng) % 200;
	while (now_ms() < end && ok) {
		usleep(2000);
		if (!dmn_alive(&d)) {
			tot.crashes++;
			run_fail(&d, "%s: the daemon died (%s) under load", label,
				 status_str(-d.pid - 1));
			ok = false;
			break;
		}
		for (int i = 0; i < n; i++) {
			uint64_t hb = atomic_load(&slots[i].res.heartbeat_ms);

			if (waitpid(slots[i].pid, &status, WNOHANG) == slots[i].pid) {
				run_fail(&d, "%s: client %d exited (%s) in %s", label, i,
					 status_str(status), slots[i].res.cur_op);
				ok = false;
				slots[i].pid = 0;
				continue;
			}
			if (now_ms() > hb + WL_TIMEOUT_MS) {
				tot.hangs++;
				run_fail(&d, "%s: client %d hung in %s for %d s", label, i,
					 slots[i].res.cur_op, WL_TIMEOUT_MS / 1000);
				ok = false;
			}
		}
		if (kill_mode && now_ms() >= next_kill) {
			int i = (int)(splitmix(&rng) % (uint64_t)n);

			if (slots[i].pid > 0) {
				kill(slots[i].pid, SIGKILL);
				waitpid(slots[i].pid, NULL, 0);
				tot.kills++;
				slots[i].pid = spawn_client(&slots[i], &d, splitmix(&rng), true, i);
			}
			next_kill = now_ms() + 5 + splitmix(&rng) % 150;
		}
	}
	for (int i = 0; i < n; i++) {
		if (slots[i].pid > 0) {
			kill(slots[i].pid, SIGKILL);
			waitpid(slots[i].pid, NULL, 0);
		}
		tot.completed += atomic_load(&slots[i].completed);
		tot.client_errors += atomic_load(&slots[i].failed_clean);
		if (atomic_load(&slots[i].unclean)) {
			run_fail(NULL, "%s: client %d: %" PRIu64 " unclean results, the first: %s",
				 label, i, (uint64_t)atomic_load(&slots[i].unclean),
				 slots[i].unclean_msg);
			ok = false;
		}
		/* Other clients unaffected: each got work done. */
		if (!kill_mode && !atomic_load(&slots[i].completed)) {
			run_fail(NULL, "%s: client %d completed no workload in %d s", label, i,
				 opt.seconds);
			ok = false;
		}
	}
	if (!dmn_alive(&d)) {
		if (ok) {
			tot.crashes++;
			run_fail(&d, "%s: the daemon died (%s)", label, status_str(-d.pid - 1));
		}
		ok = false;
		goto out;
	}
	if (!dmn_quiet_and_clean(&d, why, sizeof(why))) {
		run_fail(&d, "%s: after the clients: %s", label, why);
		ok = false;
	}
	/* A new client works, with nothing failing any more... but the spec still applies. */
	r = run_workload_child(&d, res, 99, true, false, &cwhy);
	if (r) {
		if (r == -ETIMEDOUT)
			tot.hangs++;
		run_fail(&d, "%s: a new client: %s (in %s)", label, cwhy, res->cur_op);
		ok = false;
	} else if (res->unclean || (!res->complete && !spec)) {
		run_fail(&d, "%s: a new client: %s", label, res->unclean ? res->unclean_msg :
			 res->first_op);
		ok = false;
	} else if (!dmn_quiet_and_clean(&d, why, sizeof(why))) {
		run_fail(&d, "%s: after the new client: %s", label, why);
		ok = false;
	}
out:
	if (!stop_clean(&d, label))
		ok = false;
	if (!kill_mode && !tot.injected[1]) {
		run_fail(NULL, "%s: no submit failure was injected", label);
		ok = false;
	}
	dmn_cleanup(&d, !ok && opt.keep_logs);
	munmap(slots, sizeof(*slots) * (size_t)n);
	munmap(res, sizeof(*res));
	return 0;
}

/* ==== main ===================================================================================== */

static void usage(FILE *f)
{
	fprintf(f, "usage: iovad-fault alloc|uring_submit|kill [--io uring|epoll] [--daemon PATH]\n"
		   "         [--max-runs N] [--from N] [--to N] [--clients K] [--seconds T]\n"
		   "         [--seed S] [--spec IOVAD_FAILPOINTS] [--keep-logs] [--backtrace] [-v]\n");
}

int main(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "io", required_argument, NULL, 'i' },
		{ "daemon", required_argument, NULL, 'd' },
		{ "max-runs", required_argument, NULL, 'm' },
		{ "from", required_argument, NULL, 'f' },
		{ "to", required_argument, NULL, 't' },
		{ "clients", required_argument, NULL, 'c' },
		{ "seconds", required_argument, NULL, 's' },
		{ "seed", required_argument, NULL, 'S' },
		{ "spec", required_argument, NULL, 'p' },
		{ "keep-logs", no_argument, NULL, 'k' },
		{ "backtrace", no_argument, NULL, 'b' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	const char *test;
	uint64_t t0 = now_ms();
	bool pass;
	int ch;

	if (argc < 2 || argv[1][0] == '-') {
		usage(stderr);
		return 2;
	}
	test = argv[1];
	optind = 2;
	while ((ch = getopt_long(argc, argv, "vh", lo, NULL)) != -1) {
		switch (ch) {
		case 'i':
			opt.io = optarg;
			break;
		case 'd':
			opt.daemon = optarg;
			break;
		case 'm':
			opt.max_runs = atoi(optarg);
			break;
		case 'f':
			opt.from = strtoul(optarg, NULL, 0);
			break;
		case 't':
			opt.to = strtoul(optarg, NULL, 0);
			break;
		case 'c':
			opt.clients = atoi(optarg);
			break;
		case 's':
			opt.seconds = atoi(optarg);
			break;
		case 'S':
			opt.seed = strtoull(optarg, NULL, 0);
			opt.seed_given = true;
			break;
		case 'p':
			opt.spec = optarg;
			break;
		case 'k':
			opt.keep_logs = true;
			break;
		case 'b':
			opt.backtrace = true;
			break;
		case 'v':
			opt.verbose++;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (opt.clients < 1 || opt.clients > 256 || opt.seconds < 1) {
		usage(stderr);
		return 2;
	}
	if (!opt.seed_given) {
		const char *e = getenv("IOVAD_TEST_SEED");

		opt.seed = e && *e ? strtoull(e, NULL, 0) : (uint64_t)time(NULL) ^ (uint64_t)getpid();
	}
	signal(SIGPIPE, SIG_IGN);
	/* The daemon and the clients' fds: a few per client. */
	if (!strcmp(test, "alloc")) {
		if (test_alloc())
			return 1;
	} else if (!strcmp(test, "uring_submit")) {
		if (strcmp(opt.io, "uring")) {
			fprintf(stderr, "fault: uring_submit needs --io uring\n");
			return 2;
		}
		test_loop(false);
	} else if (!strcmp(test, "kill")) {
		test_loop(true);
	} else {
		usage(stderr);
		return 2;
	}
	pass = !tot.errors && !tot.crashes && !tot.hangs;
	printf("fault: %s: io=%s, %lu runs in %.1f s; injected alloc=%lu uring_submit=%lu "
	       "journal_write=%lu journal_sync=%lu; starts refused %lu; workloads completed %lu, "
	       "with clean errors %lu; kills %lu; crashes %lu, hangs %lu, errors %lu: %s\n",
	       test, opt.io, tot.runs, (double)(now_ms() - t0) / 1000, tot.injected[0],
	       tot.injected[1], tot.injected[2], tot.injected[3], tot.refused, tot.completed,
	       tot.client_errors, tot.kills, tot.crashes, tot.hangs, tot.errors,
	       pass ? "PASS" : "FAIL");
	return pass ? 0 : 1;
}
