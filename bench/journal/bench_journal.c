// SPDX-License-Identifier: MIT
/*
 * bench-journal - what IOVA-stable restarts cost: journaled requests
 * (link+sync, then unlink, each one BATCH) per second and their latency,
 * with the state journal off, on with sync = none (durable across daemon
 * crashes) and on with sync = fdatasync (across power loss), for 1, 8 and
 * 32 clients, all measured in the same run. The ratio is against "off"
 * with the same number of clients. Group commit shows as fdatasyncs per
 * request well below 1 once several clients share a commit (from the
 * daemon's own count, logged at its exit).
 *
 *   bench-journal [--seconds S] [--quick] [--csv FILE]
 */

#define BENCH_NAME "bench-journal"
#include "../common.h"

#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <sys/wait.h>

#include <iovad/iovad.h>

#define PG 4096u
#define MAXLAT 400000

struct worker {
	const char *sock;
	double seconds;
	uint64_t *lat;
	int nlat;
	uint64_t reqs;
	int err;
};

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	struct iovad *c;
	struct iovad_dev *d;
	struct iovad_mem *m;
	struct iovad_batch *bl, *bu;
	struct iovad_iova_state st;
	uint64_t end;
	int r;

	r = iovad_connect(w->sock, &c);
	if (!r)
		r = iovad_dev_open(c, "sim0", &d);
	if (!r)
		r = iovad_mem_alloc(c, 64 * PG, &m);
	if (!r && !iovad_iova_try_alloc(d, &st, iovad_mem_phys(m), 64 * PG))
		r = -ENOSPC;
	if (!r)
		r = iovad_batch_new(c, &bl);
	if (!r)
		r = iovad_batch_new(c, &bu);
	/* Queueing returns the op's index (>= 0). */
	if (!r)
		r = iovad_batch_link(bl, d, &st, iovad_mem_phys(m), 0, PG, IOVAD_DMA_BIDIRECTIONAL, 0);
	if (r >= 0)
		r = iovad_batch_sync(bl, d, &st, 0, PG);
	if (r >= 0)
		r = iovad_batch_unlink(bu, d, &st, 0, PG, IOVAD_DMA_BIDIRECTIONAL, 0);
	if (r < 0) {
		w->err = r;
		return NULL;
	}
	end = now_ns() + (uint64_t)(w->seconds * 1e9);
	while (now_ns() < end) {
		for (int k = 0; k < 2; k++) {
			struct iovad_batch *b = k ? bu : bl;
			uint64_t t0 = now_ns();

			r = iovad_batch_submit(b, NULL, NULL);
			if (!r)
				r = iovad_batch_wait(b);
			if (!r)
				r = iovad_batch_op_status(b, 0);
			if (r) {
				w->err = r;
				return NULL;
			}
			if (w->nlat < MAXLAT)
				w->lat[w->nlat++] = now_ns() - t0;
			w->reqs++;
		}
	}
	iovad_batch_free(bl);
	iovad_batch_free(bu);
	(void)iovad_iova_destroy(d, &st, 64 * PG, IOVAD_DMA_BIDIRECTIONAL, 0);
	iovad_disconnect(c);
	return NULL;
}

struct result {
	double rps, p50_us, p99_us, syncs_per_req;
};

/* "journal: N commits" from the daemon's exit log, or -1. */
static long commits_logged(const char *log)
{
	FILE *f = fopen(log, "r");
	char line[512];
	long n = -1;

	while (f && fgets(line, sizeof(line), f)) {
		const char *p = strstr(line, "journal: ");

		if (p && strstr(p, " commits"))
			n = strtol(p + 9, NULL, 10);
	}
	if (f)
		fclose(f);
	return n;
}

static struct result run(const char *daemon, const char *mode, int clients, double seconds)
{
	char dir[] = "/tmp/iovad-bj.XXXXXX", sock[128], conf[128], log[128], cmd[256];
	struct worker *w = calloc((size_t)clients, sizeof(*w));
	pthread_t *t = calloc((size_t)clients, sizeof(*t));
	uint64_t *all = NULL, reqs = 0;
	struct result res = { 0 };
	int n = 0, status;
	pid_t pid;
	FILE *f;

	if (!mkdtemp(dir) || !w || !t)
		die("setup", ENOMEM);
	snprintf(sock, sizeof(sock), "%s/s", dir);
	snprintf(conf, sizeof(conf), "%s/iovad.conf", dir);
	snprintf(log, sizeof(log), "%s/log", dir);
	f = fopen(conf, "w");
	if (!f)
		die(conf, errno);
	if (strcmp(mode, "off"))
		fprintf(f, "[persist]\nstate_dir = %s/state\nsync = %s\nrequire_fdstore = no\n", dir,
			mode);
	fclose(f);
	pid = fork();
	if (pid == 0) {
		int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0600);

		dup2(fd, 2);
		prctl(PR_SET_PDEATHSIG, SIGTERM);
		execl(daemon, "iovad", "--config", conf, "--socket", sock, (char *)NULL);
		_exit(127);
	}
	for (int i = 0; i < 500; i++) {
		struct sockaddr_un sa = unix_addr(sock);
		int fd = socket(AF_UNIX, SOCK_STREAM, 0);
		int ok = !connect(fd, (struct sockaddr *)&sa, sizeof(sa));

		close(fd);
		if (ok)
			break;
		usleep(10000);
	}
	for (int i = 0; i < clients; i++) {
		w[i] = (struct worker){ .sock = sock, .seconds = seconds,
					.lat = malloc(MAXLAT * sizeof(uint64_t)) };
		if (!w[i].lat || pthread_create(&t[i], NULL, worker_main, &w[i]))
			die("thread", ENOMEM);
	}
	for (int i = 0; i < clients; i++) {
		pthread_join(t[i], NULL);
		if (w[i].err)
			die("client", w[i].err);
		reqs += w[i].reqs;
		n += w[i].nlat;
	}
	all = malloc((size_t)n * sizeof(*all));
	n = 0;
	for (int i = 0; i < clients; i++) {
		memcpy(all + n, w[i].lat, (size_t)w[i].nlat * sizeof(*all));
		n += w[i].nlat;
		free(w[i].lat);
	}
	kill(pid, SIGTERM);
	waitpid(pid, &status, 0);
	res.rps = (double)reqs / seconds;
	qsort(all, (size_t)n, sizeof(*all), cmp_u64);
	res.p50_us = n ? (double)all[n / 2] / 1e3 : 0;
	res.p99_us = n ? (double)all[(size_t)((double)n * 0.99)] / 1e3 : 0;
	{
		long commits = commits_logged(log);

		res.syncs_per_req = commits >= 0 && reqs ? (double)commits / (double)reqs : -1;
	}
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	(void)!system(cmd);
	free(all);
	free(w);
	free(t);
	return res;
}

int main(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "seconds", required_argument, NULL, 's' },
		{ "quick", no_argument, NULL, 'q' },
		{ "csv", required_argument, NULL, 'c' },
		{ 0 },
	};
	static const char *modes[] = { "off", "none", "fdatasync" };
	static const int nclients[] = { 1, 8, 32 };
	double seconds = 3;
	FILE *csv = NULL;
	int ch;

	while ((ch = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		if (ch == 's')
			seconds = atof(optarg);
		else if (ch == 'q')
			seconds = 0.5;
		else if (ch == 'c')
			csv = fig_open(optarg);
		else
			return 2;
	}
	printf("# journaled requests (BATCH link+sync, then unlink), %s; %.1f s per point\n",
	       transport(), seconds);
	printf("%-10s %7s %12s %9s %9s %10s %14s\n", "journal", "clients", "requests/s", "p50 us",
	       "p99 us", "vs off", "commits/req");
	for (size_t c = 0; c < sizeof(nclients) / sizeof(nclients[0]); c++) {
		struct result base = { 0 };

		for (size_t m = 0; m < sizeof(modes) / sizeof(modes[0]); m++) {
			struct result r = run(IOVAD_DAEMON_PATH, modes[m], nclients[c], seconds);
			char place[32];

			if (m == 0)
				base = r;
			printf("%-10s %7d %12.0f %9.1f %9.1f %10.3f %14.3f\n", modes[m], nclients[c],
			       r.rps, r.p50_us, r.p99_us, base.rps > 0 ? r.rps / base.rps : 0,
			       r.syncs_per_req);
			snprintf(place, sizeof(place), "%s-%dc", modes[m], nclients[c]);
			fig_row(csv, "journaled_requests_per_s", place, r.rps, "req/s",
				m ? base.rps : 0, "");
			fig_row(csv, "journaled_p50", place, r.p50_us, "us", m ? base.p50_us : 0, "");
		}
	}
	return 0;
}
