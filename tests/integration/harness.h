/* SPDX-License-Identifier: MIT */
/*
 * harness.h - integration tests run the real iovad binary on a temporary
 * socket, with the I/O backend from $IOVAD_TEST_IO (ctest registers every
 * suite once per backend), and talk to it through libiovad or raw frames.
 */
#ifndef IOVAD_TESTS_HARNESS_H
#define IOVAD_TESTS_HARNESS_H

#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "proto.h"
#include <iovad/iovad.h>

struct daemon {
	pid_t pid;
	char dir[64];
	char sock[128];
};

static inline const char *test_io(void)
{
	const char *io = getenv("IOVAD_TEST_IO");

	return io && *io ? io : "uring";
}

static inline int raw_connect(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	size_t len = strlen(path);
	int fd;

	if (len >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	memcpy(sa.sun_path, path, len + 1);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		int r = -errno;

		close(fd);
		return r;
	}
	return fd;
}

static inline void daemon_start_config(struct daemon *d, const char *config);

static inline void daemon_start(struct daemon *d)
{
	daemon_start_config(d, NULL);
}

/* Start iovad, with --config FILE when config is not NULL. */
static inline void daemon_start_config(struct daemon *d, const char *config)
{
	char io[32];
	const char *cfgopt = config ? "--config" : "-q";
	const char *cfgval = config ? config : "-q";

	memset(d, 0, sizeof(*d));
	strcpy(d->dir, "/tmp/iovad-it-XXXXXX");
	cr_assert_not_null(mkdtemp(d->dir));
	snprintf(d->sock, sizeof(d->sock), "%s/iovad.sock", d->dir);
	snprintf(io, sizeof(io), "--io=%s", test_io());
	d->pid = fork();
	cr_assert_geq(d->pid, 0);
	if (d->pid == 0) {
		const char *vg = getenv("IOVAD_TEST_VALGRIND_LOG");

		/*
		 * The daemon must not outlive its test, nor hold the test worker's
		 * descriptors (Criterion's pipes): a daemon left behind by a test
		 * that timed out would otherwise keep the runner waiting for EOF.
		 */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		close_range(3, ~0U, 0);

		/* scripts/test.sh runs the daemon under valgrind and reads these logs. */
		if (vg && *vg) {
			char logopt[256];

			snprintf(logopt, sizeof(logopt), "--log-file=%s", vg);
			execlp("valgrind", "valgrind", "--error-exitcode=99", "--leak-check=full",
			       "--errors-for-leak-kinds=definite", logopt, IOVAD_DAEMON_PATH,
			       "--socket", d->sock, io, "-q", cfgopt, cfgval, (char *)NULL);
		} else {
			execl(IOVAD_DAEMON_PATH, "iovad", "--socket", d->sock, io, "-q", cfgopt,
			      cfgval, (char *)NULL);
		}
		_exit(127);
	}
	/* Ready when it accepts a connection (at most 30 s: valgrind starts slowly). */
	for (int i = 0; i < 3000; i++) {
		int fd = raw_connect(d->sock);

		if (fd >= 0) {
			close(fd);
			setenv("IOVAD_SOCKET", d->sock, 1);
			return;
		}
		usleep(10000);
	}
	cr_assert_fail("iovad did not start on %s", d->sock);
}

/* Stop with SIGTERM; return the exit status (0 is a graceful shutdown). */
static inline int daemon_stop(struct daemon *d)
{
	int status = -1;

	if (d->pid <= 0)
		return 0;
	kill(d->pid, SIGTERM);
	for (int i = 0; i < 4000; i++) {
		if (waitpid(d->pid, &status, WNOHANG) == d->pid)
			break;
		usleep(5000);
	}
	if (waitpid(d->pid, &status, WNOHANG) == 0) {
		kill(d->pid, SIGKILL);
		waitpid(d->pid, &status, 0);
		status = -1;
	}
	d->pid = 0;
	unlink(d->sock);
	rmdir(d->dir);
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128;
}

static inline long daemon_rss_kb(const struct daemon *d)
{
	char path[64], line[256];
	long kb = -1;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)d->pid);
	f = fopen(path, "r");
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "VmRSS: %ld kB", &kb) == 1)
			break;
	fclose(f);
	return kb;
}

static inline int daemon_nfds(const struct daemon *d)
{
	char cmd[96];
	int n = -1;
	FILE *f;

	snprintf(cmd, sizeof(cmd), "ls /proc/%d/fd | wc -l", (int)d->pid);
	f = popen(cmd, "r");
	if (f) {
		if (fscanf(f, "%d", &n) != 1)
			n = -1;
		pclose(f);
	}
	return n;
}

static inline bool daemon_alive(const struct daemon *d)
{
	return d->pid > 0 && kill(d->pid, 0) == 0 && waitpid(d->pid, NULL, WNOHANG) == 0;
}

/* ---- raw frames ------------------------------------------------------------- */

#define RAW_MAX_FDS 64

/*
 * A frame stamped with version (the session's negotiated one, after HELLO),
 * with nfds descriptors (at most RAW_MAX_FDS) riding along as SCM_RIGHTS.
 * Return: 0, or -errno (-EINVAL: too many fds, or a body longer than a frame).
 */
static inline int raw_send_fds(int fd, uint16_t version, uint16_t type, uint64_t id,
			       const void *body, size_t len, const int *fds, int nfds)
{
	uint8_t buf[PROTO_FRAME_MAX];
	union {
		char c[CMSG_SPACE(sizeof(int) * RAW_MAX_FDS)];
		struct cmsghdr a;
	} cm;
	struct iovec iov = { buf, sizeof(struct proto_hdr) + len };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
	struct proto_hdr h;

	if (nfds < 0 || nfds > RAW_MAX_FDS || len > sizeof(buf) - sizeof(h))
		return -EINVAL;
	proto_hdr_init(&h, version, type, (uint32_t)iov.iov_len, id);
	memcpy(buf, &h, sizeof(h));
	if (len)
		memcpy(buf + sizeof(h), body, len);
	if (nfds) {
		struct cmsghdr *c;

		memset(&cm, 0, sizeof(cm));
		mh.msg_control = cm.c;
		mh.msg_controllen = CMSG_SPACE(sizeof(int) * (size_t)nfds);
		c = CMSG_FIRSTHDR(&mh);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int) * (size_t)nfds);
		memcpy(CMSG_DATA(c), fds, sizeof(int) * (size_t)nfds);
	}
	return sendmsg(fd, &mh, MSG_NOSIGNAL) == (ssize_t)iov.iov_len ? 0 : -errno;
}

/*
 * The counts of one failpoint site (daemon/failpoint.h) in the last
 * "failpoints at exit:" line of a daemon's log, as
 * "... SITE H hits, F failed; ...". Return: whether the line names it.
 */
static inline bool fp_exit_counts(const char *log, const char *site, unsigned long *hits,
				  unsigned long *fails)
{
	const char *line = NULL, *p, *eol;
	char key[64];

	for (p = strstr(log, "failpoints at exit:"); p; p = strstr(p + 1, "failpoints at exit:"))
		line = p;
	if (!line)
		return false;
	eol = strchr(line, '\n');
	snprintf(key, sizeof(key), " %s ", site);
	p = strstr(line, key);
	return p && (!eol || p < eol) &&
	       sscanf(p + strlen(key), "%lu hits, %lu failed", hits, fails) == 2;
}

/* A frame stamped with version (the session's negotiated one, after HELLO). */
static inline int raw_send_v(int fd, uint16_t version, uint16_t type, uint64_t id, const void *body,
			     size_t len)
{
	return raw_send_fds(fd, version, type, id, body, len, NULL, 0);
}

/* A frame of the newest version (sessions that negotiated PROTO_VERSION). */
static inline int raw_send(int fd, uint16_t type, uint64_t id, const void *body, size_t len)
{
	return raw_send_v(fd, PROTO_VERSION, type, id, body, len);
}

/* Read one frame (header + body) within timeout_ms. Return: its length, 0 on EOF, -errno. */
static inline int raw_recv(int fd, void *buf, size_t cap, int timeout_ms)
{
	uint8_t *b = buf;
	size_t got = 0, want = sizeof(struct proto_hdr);

	while (got < want) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		ssize_t n;

		if (poll(&p, 1, timeout_ms) <= 0)
			return -ETIMEDOUT;
		n = recv(fd, b + got, want - got, 0);
		if (n == 0)
			return 0;
		if (n < 0)
			return -errno;
		got += (size_t)n;
		if (got == sizeof(struct proto_hdr)) {
			struct proto_hdr h;

			memcpy(&h, b, sizeof(h));
			if (h.len < sizeof(h) || h.len > cap)
				return -EMSGSIZE;
			want = h.len;
		}
	}
	return (int)got;
}

static inline int32_t frame_status(const void *buf)
{
	struct proto_status st;

	memcpy(&st, (const uint8_t *)buf + sizeof(struct proto_hdr), sizeof(st));
	return st.status;
}

static inline uint16_t frame_type(const void *buf)
{
	struct proto_hdr h;

	memcpy(&h, buf, sizeof(h));
	return h.type;
}

static inline int raw_hello(int fd)
{
	struct proto_hello h = { .version_min = PROTO_VERSION_MIN,
				 .version_max = PROTO_VERSION_MAX,
				 .max_frame = PROTO_FRAME_DEFAULT,
				 .max_batch = PROTO_BATCH_DEFAULT };
	uint8_t buf[256];
	int n;

	if (raw_send(fd, PROTO_CMD_HELLO, 1, &h, sizeof(h)))
		return -EIO;
	n = raw_recv(fd, buf, sizeof(buf), 2000);
	if (n <= 0)
		return n ? n : -ECONNRESET;
	return frame_status(buf);
}

/* Admin STATUS over a fresh raw connection. */
static inline struct proto_status_rpy daemon_status(const struct daemon *d)
{
	struct proto_status_rpy rpy = { 0 };
	uint8_t buf[512];
	int fd = raw_connect(d->sock);

	cr_assert_geq(fd, 0);
	cr_assert_eq(raw_hello(fd), 0);
	cr_assert_eq(raw_send(fd, PROTO_CMD_STATUS, 2, NULL, 0), 0);
	cr_assert_eq(raw_recv(fd, buf, sizeof(buf), 2000),
		     (int)(sizeof(struct proto_hdr) + sizeof(rpy)));
	memcpy(&rpy, buf + sizeof(struct proto_hdr), sizeof(rpy));
	close(fd);
	return rpy;
}

/* Wait until the daemon has torn down `want` sessions (teardown is asynchronous to close()). */
static inline struct proto_status_rpy daemon_wait_teardowns(const struct daemon *d, uint64_t want)
{
	struct proto_status_rpy st = daemon_status(d);

	for (int i = 0; i < 200 && st.teardowns < want; i++) {
		usleep(10000);
		st = daemon_status(d);
	}
	return st;
}

static inline void fill_pattern(void *p, size_t len, unsigned int seed)
{
	uint8_t *b = p;

	for (size_t i = 0; i < len; i++)
		b[i] = (uint8_t)(seed * 131 + i * 7 + (i >> 9));
}

#endif /* IOVAD_TESTS_HARNESS_H */
