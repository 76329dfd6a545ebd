// SPDX-License-Identifier: MIT
/*
 * iovad-crashtest - kill -9 the daemon at random points while clients work,
 * and check after every restart that the restored state is what the
 * clients were told.
 *
 * The daemon runs under iovad-supervise with a state directory. Each client
 * process keeps a model of what the daemon acknowledged: which IOVA states
 * it holds (and at which IOVA), which pages of each are linked and synced,
 * and an implicit ODP region. Its operations are batches of link+sync,
 * unlinks, allocations and destroys, plus CPU writes into its own memory;
 * every batch changes the model only once its reply arrives. A reply lost
 * in a crash is libiovad's to recover (RESUME and resend): the client sees
 * a delay, never an error.
 *
 * The checker: after every restart a client notices (iovad_reconnects()),
 * and on a sample of pages all the time, every page of every state in the
 * model is read through the device: a linked page must read exactly the
 * bytes of the memory behind it, an unlinked one must fault; the ODP region
 * must still translate at the same IOVA. The daemon itself compares every
 * replayed request's answer with the recorded one; its log must report 0
 * mismatches for every restore.
 *
 * Exit status: 0 when every check held, 1 otherwise. Prints the seed.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <iovad/iovad.h>

#define PG 4096u
#define SLOT_PAGES 16u
#define NSLOTS 32u
#define MEM_BYTES (NSLOTS * SLOT_PAGES * PG)

struct opts {
	const char *daemon, *supervise;
	const char *failpoints;     /* IOVAD_FAILPOINTS for every incarnation of the daemon */
	unsigned int clients, seconds, kills;
	uint64_t seed;
	bool keep;
};

static uint64_t rng_next(uint64_t *s)
{
	uint64_t x = *s;

	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	*s = x;
	return x;
}

static uint64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* ==== a client ============================================================== */

struct slot {
	bool live;
	struct iovad_iova_state st;
	uint8_t linked[SLOT_PAGES];
};

struct client {
	unsigned int n;
	struct iovad *c;
	struct iovad_dev *d;
	struct iovad_mem *m;
	uint8_t *va;
	uint64_t phys;
	struct iovad_odp *odp;
	uint64_t odp_iova;
	struct slot s[NSLOTS];
	uint64_t rng;
	uint64_t ops, checks, full_checks, reconnects;
};

#define FAIL(cl, ...)                                                                    \
	do {                                                                             \
		fprintf(stderr, "client %u: ", (cl)->n);                                 \
		fprintf(stderr, __VA_ARGS__);                                            \
		fputc('\n', stderr);                                                     \
		return -1;                                                               \
	} while (0)

/* A page as the model says it must look through the device. */
static int check_page(struct client *cl, unsigned int k, unsigned int p)
{
	uint8_t buf[PG];
	uint64_t iova = cl->s[k].st.addr + (uint64_t)p * PG;
	int r = iovad_dev_dma_read(cl->d, iova, buf, PG);

	cl->checks++;
	if (cl->s[k].linked[p]) {
		if (r)
			FAIL(cl, "slot %u page %u: linked at %#" PRIx64 " but the read failed: %s", k,
			     p, iova, strerror(-r));
		if (memcmp(buf, cl->va + ((size_t)k * SLOT_PAGES + p) * PG, PG))
			FAIL(cl, "slot %u page %u at %#" PRIx64 ": other bytes than its memory's", k,
			     p, iova);
	} else if (r != -EFAULT) {
		FAIL(cl, "slot %u page %u at %#" PRIx64 ": not linked, but the read gave %d", k, p,
		     iova, r);
	}
	return 0;
}

static int check_odp(struct client *cl)
{
	uint8_t buf[PG];
	size_t off = (size_t)(rng_next(&cl->rng) % (MEM_BYTES / PG)) * PG;
	int r = iovad_dev_dma_read(cl->d, cl->odp_iova + off, buf, PG);

	if (r)
		FAIL(cl, "ODP region at %#" PRIx64 ": read failed: %s", cl->odp_iova,
		     strerror(-r));
	if (memcmp(buf, cl->va + off, PG))
		FAIL(cl, "ODP region: other bytes than the memory's at offset %zu", off);
	return 0;
}

static int check_all(struct client *cl)
{
	cl->full_checks++;
	for (unsigned int k = 0; k < NSLOTS; k++)
		if (cl->s[k].live)
			for (unsigned int p = 0; p < SLOT_PAGES; p++)
				if (check_page(cl, k, p))
					return -1;
	return check_odp(cl);
}

/* One batch: link+sync or unlink a run of pages of slot k. */
static int batch_run(struct client *cl, unsigned int k, unsigned int a, unsigned int b, bool link)
{
	struct slot *s = &cl->s[k];
	struct iovad_batch *bt;
	uint64_t off = (uint64_t)a * PG, len = (uint64_t)(b - a) * PG;
	int r;

	r = iovad_batch_new(cl->c, &bt);
	if (r)
		FAIL(cl, "batch_new: %s", strerror(-r));
	/* Queueing returns the op's index in the batch (>= 0). */
	if (link) {
		r = iovad_batch_link(bt, cl->d, &s->st, cl->phys + ((uint64_t)k * SLOT_PAGES + a) * PG,
				     off, len, IOVAD_DMA_BIDIRECTIONAL, 0);
		if (r >= 0)
			r = iovad_batch_sync(bt, cl->d, &s->st, off, len);
	} else {
		r = iovad_batch_unlink(bt, cl->d, &s->st, off, len, IOVAD_DMA_BIDIRECTIONAL, 0);
	}
	if (r >= 0)
		r = iovad_batch_submit(bt, NULL, NULL);
	if (!r)
		r = iovad_batch_wait(bt);
	for (size_t i = 0; !r && i < iovad_batch_count(bt); i++)
		r = iovad_batch_op_status(bt, i);
	iovad_batch_free(bt);
	if (r)
		FAIL(cl, "slot %u: %s of pages [%u, %u): %s", k, link ? "link+sync" : "unlink", a,
		     b, strerror(-r));
	for (unsigned int p = a; p < b; p++)
		s->linked[p] = link;
	return 0;
}

static int step(struct client *cl)
{
	unsigned int k = (unsigned int)(rng_next(&cl->rng) % NSLOTS);
	struct slot *s = &cl->s[k];
	unsigned int a = (unsigned int)(rng_next(&cl->rng) % SLOT_PAGES), b;
	uint64_t what = rng_next(&cl->rng) % 100;
	int r;

	cl->ops++;
	if (!s->live) {
		if (!iovad_iova_try_alloc(cl->d, &s->st, cl->phys + (uint64_t)k * SLOT_PAGES * PG,
					  SLOT_PAGES * PG))
			FAIL(cl, "slot %u: try_alloc failed", k);
		s->live = true;
		memset(s->linked, 0, sizeof(s->linked));
		return 0;
	}
	b = a + 1 + (unsigned int)(rng_next(&cl->rng) % (SLOT_PAGES - a));
	if (what < 40) {
		/* Link the unlinked run starting at a. */
		for (b = a; b < SLOT_PAGES && !s->linked[b]; b++)
			;
		return b > a ? batch_run(cl, k, a, b, true) : 0;
	}
	if (what < 60) {
		for (b = a; b < SLOT_PAGES && s->linked[b]; b++)
			;
		return b > a ? batch_run(cl, k, a, b, false) : 0;
	}
	if (what < 65) {
		r = iovad_iova_destroy(cl->d, &s->st, SLOT_PAGES * PG, IOVAD_DMA_BIDIRECTIONAL, 0);
		if (r && r != -ENOENT)
			FAIL(cl, "slot %u: destroy: %s", k, strerror(-r));
		s->live = false;
		return 0;
	}
	if (what < 80) {
		/* The CPU writes the memory: linked pages show it through the device. */
		uint8_t *pg = cl->va + ((size_t)k * SLOT_PAGES + a) * PG;

		for (unsigned int i = 0; i < PG; i += 8) {
			uint64_t v = rng_next(&cl->rng);

			memcpy(pg + i, &v, 8);
		}
		return 0;
	}
	if (what < 95)
		return check_page(cl, k, a);
	return check_odp(cl);
}

static int client_main(unsigned int n, const char *sock, uint64_t seed, unsigned int seconds)
{
	struct client cl = { .n = n, .rng = seed * 2654435761u + n + 1 };
	uint64_t end = mono_ms() + seconds * 1000ull, rc;
	int r;

	r = iovad_connect(sock, &cl.c);
	if (r)
		FAIL(&cl, "connect: %s", strerror(-r));
	if (!iovad_session_durable(cl.c))
		FAIL(&cl, "the daemon does not journal this session");
	r = iovad_dev_open(cl.c, n % 2 ? "sim-lazy0" : "sim0", &cl.d);
	if (!r)
		r = iovad_mem_alloc(cl.c, MEM_BYTES, &cl.m);
	if (!r)
		r = iovad_odp_reg(cl.d, NULL, 0, 0, IOVAD_ACCESS_DEVICE_READ | IOVAD_ACCESS_DEVICE_WRITE,
				  IOVAD_ODP_IMPLICIT, &cl.odp);
	if (r)
		FAIL(&cl, "setup: %s", strerror(-r));
	cl.va = iovad_mem_addr(cl.m);
	cl.phys = iovad_mem_phys(cl.m);
	cl.odp_iova = iovad_odp_mem_iova(cl.odp, cl.m);
	for (size_t i = 0; i < MEM_BYTES; i += 8) {
		uint64_t v = rng_next(&cl.rng);

		memcpy(cl.va + i, &v, 8);
	}
	while (mono_ms() < end) {
		if (step(&cl))
			return 1;
		rc = iovad_reconnects(cl.c);
		if (rc != cl.reconnects) {
			/* The daemon came back: all of the model must hold. */
			cl.reconnects = rc;
			if (check_all(&cl))
				return 1;
		}
	}
	if (check_all(&cl))
		return 1;
	printf("client %u: %" PRIu64 " ops, %" PRIu64 " page checks, %" PRIu64
	       " full checks, %" PRIu64 " restarts lived through\n", n, cl.ops, cl.checks,
	       cl.full_checks, cl.reconnects);
	fflush(stdout); /* the caller _exits */
	iovad_disconnect(cl.c);
	return 0;
}

/* ==== the daemon, and the killer ================================================ */

static pid_t read_pid(const char *pidfile)
{
	char buf[32] = { 0 };
	int fd = open(pidfile, O_RDONLY | O_CLOEXEC);
	ssize_t n;

	if (fd < 0)
		return 0;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	return n > 0 ? (pid_t)atoi(buf) : 0;
}

/* Wait up to ms for a daemon other than old (0: any) to be up. */
static pid_t wait_daemon(const char *pidfile, const char *sock, pid_t old, unsigned int ms)
{
	uint64_t end = mono_ms() + ms;

	while (mono_ms() < end) {
		pid_t p = read_pid(pidfile);
		struct stat sb;

		if (p > 0 && p != old && stat(sock, &sb) == 0)
			return p;
		usleep(2000);
	}
	return 0;
}

static void usage(void)
{
	fprintf(stderr, "usage: iovad-crashtest --daemon IOVAD --supervise IOVAD_SUPERVISE "
			"[--clients N] [--seconds S] [--kills K] [--seed X] [--failpoints SPEC] [--keep]\n");
}

int main(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "daemon", required_argument, NULL, 'd' },
		{ "supervise", required_argument, NULL, 'S' },
		{ "clients", required_argument, NULL, 'c' },
		{ "seconds", required_argument, NULL, 's' },
		{ "kills", required_argument, NULL, 'k' },
		{ "seed", required_argument, NULL, 'x' },
		{ "keep", no_argument, NULL, 'K' },
		{ "failpoints", required_argument, NULL, 'F' },
		{ 0 },
	};
	struct opts o = { .clients = 4, .seconds = 10, .kills = 20 };
	char dir[] = "/tmp/iovad-crash.XXXXXX", sock[128], pidfile[128], state[128], log[128];
	char cmd[2048], line[512];
	pid_t sup, *kids;
	unsigned int kills = 0, bad = 0, restores = 0, injected = 0;
	uint64_t rng, end, mismatches = 0;
	int ch, status, logfd;
	FILE *lf;

	o.seed = (uint64_t)time(NULL) ^ (uint64_t)getpid();
	while ((ch = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		switch (ch) {
		case 'd': o.daemon = optarg; break;
		case 'S': o.supervise = optarg; break;
		case 'c': o.clients = (unsigned int)strtoul(optarg, NULL, 0); break;
		case 's': o.seconds = (unsigned int)strtoul(optarg, NULL, 0); break;
		case 'k': o.kills = (unsigned int)strtoul(optarg, NULL, 0); break;
		case 'x': o.seed = strtoull(optarg, NULL, 0); break;
		case 'K': o.keep = true; break;
		case 'F': o.failpoints = optarg; break;
		default: usage(); return 2;
		}
	}
	if (!o.daemon || !o.supervise || !o.clients) {
		usage();
		return 2;
	}
	if (o.failpoints)
		printf("iovad-crashtest: the daemon runs with IOVAD_FAILPOINTS=%s\n", o.failpoints);
	rng = o.seed | 1;
	printf("iovad-crashtest: seed %" PRIu64 " (rerun with --seed %" PRIu64 "), %u clients, "
	       "%u s, up to %u kills\n", o.seed, o.seed, o.clients, o.seconds, o.kills);
	fflush(stdout);
	if (!mkdtemp(dir))
		return 1;
	snprintf(sock, sizeof(sock), "%s/iovad.sock", dir);
	snprintf(pidfile, sizeof(pidfile), "%s/iovad.pid", dir);
	snprintf(state, sizeof(state), "%s/state", dir);
	snprintf(log, sizeof(log), "%s/iovad.log", dir);
	logfd = open(log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	sup = fork();
	if (sup == 0) {
		dup2(logfd, 1);
		dup2(logfd, 2);
		/* Journal writes and syncs that fail: each one ends the daemon (exit 75). */
		if (o.failpoints)
			setenv("IOVAD_FAILPOINTS", o.failpoints, 1);
		execl(o.supervise, o.supervise, "--listen", sock, "--pidfile", pidfile,
		      "--restart-delay-ms", "1", "--max-restarts", "100000", "--", o.daemon,
		      "--no-socket", "--state-dir", state, (char *)NULL);
		_exit(127);
	}
	if (!wait_daemon(pidfile, sock, 0, 10000)) {
		fprintf(stderr, "iovad-crashtest: the daemon did not start (log: %s)\n", log);
		kill(sup, SIGKILL);
		return 1;
	}
	kids = calloc(o.clients, sizeof(*kids));
	for (unsigned int i = 0; i < o.clients; i++) {
		kids[i] = fork();
		if (kids[i] == 0) {
			int rc = client_main(i, sock, o.seed, o.seconds);

			fflush(NULL);
			_exit(rc);
		}
	}
	/* The killer: any moment, so some kills land in a journal commit. */
	end = mono_ms() + o.seconds * 1000ull;
	while (kills < o.kills && mono_ms() + 1000 < end) {
		pid_t p;

		usleep((useconds_t)(10000 + rng_next(&rng) % 290000));
		p = read_pid(pidfile);
		if (p <= 0 || kill(p, SIGKILL))
			continue;
		kills++;
		if (!wait_daemon(pidfile, sock, p, 10000)) {
			fprintf(stderr, "iovad-crashtest: the daemon did not come back after kill %u\n",
				kills);
			bad++;
			break;
		}
	}
	for (unsigned int i = 0; i < o.clients; i++) {
		if (waitpid(kids[i], &status, 0) < 0 || !WIFEXITED(status) || WEXITSTATUS(status)) {
			fprintf(stderr, "iovad-crashtest: client %u failed\n", i);
			bad++;
		}
	}
	kill(sup, SIGTERM);
	waitpid(sup, &status, 0);
	/* The daemon's own comparison of every replayed request. */
	lf = fopen(log, "r");
	while (lf && fgets(line, sizeof(line), lf)) {
		const char *m = strstr(line, " mismatches");
		char *p;

		if (strstr(line, "journal: commit failed"))
			injected++;
		if (strstr(line, "answered differently") || strstr(line, "restore: ")) {
			fputs(line, stderr);
			bad++;
		}
		if (!strstr(line, "state journal") || !m)
			continue;
		restores++;
		for (p = (char *)m; p > line && p[-1] >= '0' && p[-1] <= '9'; p--)
			;
		mismatches += strtoull(p, NULL, 10);
	}
	if (lf)
		fclose(lf);
	if (mismatches)
		bad++;
	printf("iovad-crashtest: %u kills (kill -9 at random points), %u journal commits failed "
	       "on purpose (the daemon exits 75), %u restores, %" PRIu64 " replay mismatches, %u "
	       "failures\n", kills, injected, restores, mismatches, bad);
	if (bad || o.keep)
		printf("iovad-crashtest: logs kept in %s\n", dir);
	else {
		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
		(void)!system(cmd);
	}
	free(kids);
	return bad ? 1 : 0;
}
