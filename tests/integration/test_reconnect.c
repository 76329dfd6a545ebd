// SPDX-License-Identifier: MIT
/*
 * test_reconnect.c - libiovad's durable sessions (protocol 5): HELLO's
 * reply with and without the session token, the reconnect after a broken
 * connection (RESUME, the resend of every pending request with its id,
 * fds included), and the failures that end it (RESUME refused, the
 * timeout, $IOVAD_RECONNECT_TIMEOUT_MS=0).
 *
 * Three suites:
 *   reconnect  the real daemon without a state journal: HELLO v5 and a
 *              non-durable session, which fails cleanly when the daemon dies;
 *   fake       a scripted daemon in a thread of the test (raw frames), which
 *              plays every reply size and every RESUME answer, so the
 *              library's side is tested whatever the daemon's can do;
 *   durable    the real daemon under iovad-supervise with --state-dir,
 *              killed with SIGKILL while the client works: nothing is
 *              redone by the test, and the same IOVAs must read back the
 *              same bytes; a request in flight across the kill runs once.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <ftw.h>
#include <pthread.h>
#include <stdarg.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include "harness.h"

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* ==== the real daemon, no journal ========================================== */

static struct daemon d;

static void plain_setup(void)
{
	unsetenv("IOVAD_RECONNECT_TIMEOUT_MS");
	daemon_start(&d);
}

static void plain_teardown(void)
{
	daemon_stop(&d);
}

TestSuite(reconnect, .init = plain_setup, .fini = plain_teardown, .timeout = 60);

Test(reconnect, hello_v5_is_accepted_and_not_durable_without_a_journal)
{
	struct proto_hello h = { .version_min = PROTO_VERSION_MIN,
				 .version_max = PROTO_VERSION_MAX,
				 .max_frame = PROTO_FRAME_DEFAULT,
				 .max_batch = PROTO_BATCH_DEFAULT };
	struct proto_hello_rpy rpy;
	struct proto_session sess;
	uint8_t buf[256];
	struct iovad *c;
	int fd, n;

	/* What the daemon says at version 5: hello_rpy, and the token unless it predates it. */
	fd = raw_connect(d.sock);
	cr_assert_geq(fd, 0);
	cr_assert_eq(raw_send(fd, PROTO_CMD_HELLO, 1, &h, sizeof(h)), 0);
	n = raw_recv(fd, buf, sizeof(buf), 2000);
	cr_assert(n == (int)(sizeof(struct proto_hdr) + sizeof(rpy)) ||
			  n == (int)(sizeof(struct proto_hdr) + sizeof(rpy) + sizeof(sess)),
		  "HELLO reply of %d bytes", n);
	memcpy(&rpy, buf + sizeof(struct proto_hdr), sizeof(rpy));
	cr_assert_eq(rpy.st.status, 0);
	cr_assert_eq(rpy.version, PROTO_VERSION_MAX, "the highest both speak (6: RESUME and more)");
	if (n > (int)(sizeof(struct proto_hdr) + sizeof(rpy))) {
		memcpy(&sess, buf + sizeof(struct proto_hdr) + sizeof(rpy), sizeof(sess));
		cr_assert_eq(sess.flags & PROTO_SESSION_DURABLE, 0, "no state directory, no journal");
	}
	close(fd);

	/* The library takes either, and the session is not durable. */
	cr_assert_eq(iovad_connect(d.sock, &c), 0);
	cr_assert_not(iovad_session_durable(c));
	cr_assert_eq(iovad_reconnects(c), 0);
	cr_assert_neq(iovad_session_id(c), 0);
	iovad_disconnect(c);
}

struct stats_call {
	struct iovad_dev *dev;
	int r;
	uint64_t done_ms;
};

static void *stats_thread(void *arg)
{
	struct stats_call *k = arg;
	struct iovad_dev_stats s;

	k->r = iovad_dev_stats(k->dev, &s);
	k->done_ms = now_ms();
	return NULL;
}

Test(reconnect, a_non_durable_session_fails_cleanly_when_the_daemon_is_killed)
{
	struct stats_call k = { 0 };
	struct iovad_dev_stats s;
	struct iovad_dev *dev;
	struct iovad_mem *m;
	struct iovad *c;
	pthread_t t;
	uint64_t t0;

	cr_assert_eq(iovad_connect(d.sock, &c), 0);
	cr_assert_not(iovad_session_durable(c));
	cr_assert_eq(iovad_dev_open(c, "sim0", &dev), 0);
	cr_assert_eq(iovad_mem_alloc(c, 1 << 16, &m), 0);

	/* A request in flight: the daemon is stopped before it reads it, then killed. */
	cr_assert_eq(kill(d.pid, SIGSTOP), 0);
	k.dev = dev;
	cr_assert_eq(pthread_create(&t, NULL, stats_thread, &k), 0);
	usleep(50000);
	t0 = now_ms();
	cr_assert_eq(kill(d.pid, SIGKILL), 0);
	cr_assert_eq(waitpid(d.pid, NULL, 0), d.pid);
	d.pid = 0;
	pthread_join(t, NULL);
	cr_assert_eq(k.r, -ENOTCONN, "in flight: %d", k.r);
	cr_assert_lt(k.done_ms - t0, 2000, "failed at once, no reconnect");

	/* And every later call. */
	cr_assert_eq(iovad_dev_stats(dev, &s), -ENOTCONN);
	cr_assert_eq(iovad_dev_open(c, "sim0", &dev), -ENOTCONN);
	cr_assert_eq(iovad_reconnects(c), 0);
	cr_assert_lt(iovad_process(c), 0);
	iovad_disconnect(c);
	unlink(d.sock);
	rmdir(d.dir);
}

/* ==== a scripted daemon ===================================================== */

#define FAKE_SESSION 0x5e55107ull

struct fake;
typedef void (*fake_script)(struct fake *f);

struct fake {
	char dir[64];
	char sock[128];
	int lfd;
	pthread_t thread;
	fake_script script;
	int hello_size;            /* body bytes of HELLO's reply: 48 or 72 */
	uint16_t version;          /* negotiated */
	uint8_t token[PROTO_TOKEN_LEN];
	uint32_t flags;            /* proto_session.flags */
	int resume_status;         /* what RESUME gets */
	char err[256];             /* the script's first failure */
	/* what the script saw, for the test to check */
	uint64_t first_id, resent_id;
	int connections;
	int resumes;
	bool same_file;
	uint32_t resent_len;
};

static struct fake fk;

static void fake_fail(struct fake *f, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void fake_fail(struct fake *f, const char *fmt, ...)
{
	va_list ap;

	if (f->err[0])
		return;
	va_start(ap, fmt);
	vsnprintf(f->err, sizeof(f->err), fmt, ap);
	va_end(ap);
}

/* Accept one client within ms. Return: its fd, or -1. */
static int fake_accept(struct fake *f, int ms)
{
	struct pollfd p = { .fd = f->lfd, .events = POLLIN };
	int fd;

	if (poll(&p, 1, ms) <= 0)
		return -1;
	fd = accept4(f->lfd, NULL, NULL, SOCK_CLOEXEC);
	if (fd >= 0)
		f->connections++;
	return fd;
}

/*
 * Read one frame; its fds (SCM_RIGHTS come with the first byte) in fds.
 * Return: its length, 0 on EOF or timeout, -1 if it is not a frame.
 */
static int fake_recv(int fd, uint8_t *buf, size_t cap, int *fds, int *nfds, int ms)
{
	size_t got = 0, want = sizeof(struct proto_hdr);

	*nfds = 0;
	while (got < want) {
		union {
			char b[CMSG_SPACE(sizeof(int) * 4)];
			struct cmsghdr align;
		} cm;
		struct iovec iov = { .iov_base = buf + got, .iov_len = want - got };
		struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cm.b,
				     .msg_controllen = sizeof(cm.b) };
		struct pollfd p = { .fd = fd, .events = POLLIN };
		ssize_t n;

		if (poll(&p, 1, ms) <= 0)
			return 0;
		n = recvmsg(fd, &mh, MSG_CMSG_CLOEXEC);
		if (n <= 0)
			return 0;
		for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
			if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
				int k = (int)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));

				memcpy(fds + *nfds, CMSG_DATA(c), sizeof(int) * (size_t)k);
				*nfds += k;
			}
		}
		got += (size_t)n;
		if (got == sizeof(struct proto_hdr)) {
			struct proto_hdr h;

			memcpy(&h, buf, sizeof(h));
			if (h.magic != PROTO_MAGIC || h.len < sizeof(h) || h.len > cap)
				return -1;
			want = h.len;
		}
	}
	return (int)got;
}

static struct proto_hdr frame_hdr(const uint8_t *buf)
{
	struct proto_hdr h;

	memcpy(&h, buf, sizeof(h));
	return h;
}

/* Replies carry the version the fake negotiated (one fake per test process). */
static uint16_t fake_version = PROTO_VERSION_RESUME;

static void fake_send(int fd, uint16_t type, uint64_t id, const void *body, size_t len)
{
	uint8_t buf[512];
	struct proto_hdr h;

	proto_hdr_init(&h, fake_version, type, (uint32_t)(sizeof(h) + len), id);
	memcpy(buf, &h, sizeof(h));
	memcpy(buf + sizeof(h), body, len);
	(void)!send(fd, buf, sizeof(h) + len, MSG_NOSIGNAL);
}

static void fake_status(int fd, const struct proto_hdr *req, int status)
{
	struct proto_status st = { .status = status };

	fake_send(fd, req->type | PROTO_RPY, req->id, &st, sizeof(st));
}

/* The HELLO or RESUME reply: hello_rpy, then the token unless hello_size says 48. */
static void fake_hello_reply(struct fake *f, int fd, const struct proto_hdr *req)
{
	struct {
		struct proto_hello_rpy h;
		struct proto_session s;
	} rpy = {
		.h = { .version = f->version, .max_frame = PROTO_FRAME_DEFAULT,
		       .max_batch = PROTO_BATCH_DEFAULT, .max_inflight = 64,
		       .session_id = FAKE_SESSION, .max_mems = 64, .max_states = 64,
		       .max_mem_bytes = 1ull << 30 },
		.s = { .flags = f->flags },
	};

	memcpy(rpy.s.token, f->token, sizeof(rpy.s.token));
	fake_send(fd, req->type | PROTO_RPY, req->id, &rpy, (size_t)f->hello_size);
}

/*
 * The next request of a client, answering HELLO and refusing RING_SETUP
 * (so every transport of the test matrix stays on the socket here).
 * Return: its length (frame in buf, fds in fds), or 0 when the client went.
 */
static int fake_next(struct fake *f, int fd, uint8_t *buf, size_t cap, int *fds, int *nfds)
{
	for (;;) {
		int n = fake_recv(fd, buf, cap, fds, nfds, 5000);
		struct proto_hdr h;

		if (n <= 0)
			return n < 0 ? (fake_fail(f, "not a frame"), 0) : 0;
		h = frame_hdr(buf);
		if (h.type == PROTO_CMD_HELLO) {
			fake_hello_reply(f, fd, &h);
			continue;
		}
		if (h.type == PROTO_CMD_RING_SETUP) {
			for (int i = 0; i < *nfds; i++)
				close(fds[i]);
			fake_status(fd, &h, -EOPNOTSUPP);
			continue;
		}
		return n;
	}
}

/* Answer whatever comes with a bare failure (the calls left: DEV_CLOSE, MEM_FREE) until EOF. */
static void fake_until_eof(struct fake *f, int fd)
{
	uint8_t buf[4096];
	int fds[4], nfds;

	while (fake_next(f, fd, buf, sizeof(buf), fds, &nfds) > 0) {
		struct proto_hdr h = frame_hdr(buf);

		for (int i = 0; i < nfds; i++)
			close(fds[i]);
		fake_status(fd, &h, -EOPNOTSUPP);
	}
	close(fd);
}

/* Expect RESUME on a new connection and answer it with f->resume_status. Return: fd, or -1. */
static int fake_resume(struct fake *f)
{
	uint8_t buf[512];
	struct proto_resume req;
	struct proto_hdr h;
	int fd = fake_accept(f, 5000), fds[4], nfds, n;

	if (fd < 0) {
		fake_fail(f, "no reconnect");
		return -1;
	}
	n = fake_recv(fd, buf, sizeof(buf), fds, &nfds, 5000);
	h = frame_hdr(buf);
	if (n != (int)(sizeof(h) + sizeof(req)) || h.type != PROTO_CMD_RESUME ||
	    h.version != PROTO_VERSION_RESUME) {
		fake_fail(f, "expected RESUME, got type %u len %d", h.type, n);
		close(fd);
		return -1;
	}
	memcpy(&req, buf + sizeof(h), sizeof(req));
	if (req.session_id != FAKE_SESSION || memcmp(req.token, f->token, sizeof(req.token)) ||
	    req.hello.version_max < PROTO_VERSION_RESUME || req.hello.reserved) {
		fake_fail(f, "RESUME for session %#llx with another token",
			  (unsigned long long)req.session_id);
		close(fd);
		return -1;
	}
	f->resumes++;
	if (f->resume_status) {
		fake_status(fd, &h, f->resume_status);
		close(fd);
		return -1;
	}
	fake_hello_reply(f, fd, &h);
	return fd;
}

static void *fake_main(void *arg)
{
	struct fake *f = arg;

	f->script(f);
	return NULL;
}

static void fake_start(struct fake *f, fake_script script, int hello_size, uint32_t flags)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };

	memset(f, 0, sizeof(*f));
	strcpy(f->dir, "/tmp/iovad-fake-XXXXXX");
	cr_assert_not_null(mkdtemp(f->dir));
	snprintf(f->sock, sizeof(f->sock), "%s/fake.sock", f->dir);
	memcpy(sa.sun_path, f->sock, strlen(f->sock) + 1);
	f->lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	cr_assert_geq(f->lfd, 0);
	cr_assert_eq(bind(f->lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	cr_assert_eq(listen(f->lfd, 8), 0);
	f->script = script;
	f->hello_size = hello_size;
	f->version = fake_version = PROTO_VERSION_RESUME;
	f->flags = flags;
	for (int i = 0; i < PROTO_TOKEN_LEN; i++)
		f->token[i] = (uint8_t)(0xa0 + i * 7);
	cr_assert_eq(pthread_create(&f->thread, NULL, fake_main, f), 0);
}

/* Wait for the script and check it saw what it expected. */
static void fake_join(struct fake *f)
{
	pthread_join(f->thread, NULL);
	cr_assert_eq(f->err[0], 0, "fake daemon: %s", f->err);
}

static void fake_setup(void)
{
	unsetenv("IOVAD_RECONNECT_TIMEOUT_MS");
	fk.lfd = -1;
}

static void fake_teardown(void)
{
	if (fk.lfd >= 0)
		close(fk.lfd);
	unlink(fk.sock);
	rmdir(fk.dir);
}

TestSuite(fake, .init = fake_setup, .fini = fake_teardown, .timeout = 60);

#define HELLO_V4_SIZE ((int)sizeof(struct proto_hello_rpy))
#define HELLO_V5_SIZE ((int)(sizeof(struct proto_hello_rpy) + sizeof(struct proto_session)))

/* DEV_OPEN arrives, and the connection breaks before its reply. */
static void script_break_at_dev_open(struct fake *f)
{
	uint8_t buf[4096];
	int fds[4], nfds, fd = fake_accept(f, 5000), n;

	if (fd < 0)
		return fake_fail(f, "no client");
	n = fake_next(f, fd, buf, sizeof(buf), fds, &nfds);
	if (!n || frame_hdr(buf).type != PROTO_CMD_DEV_OPEN)
		return fake_fail(f, "expected DEV_OPEN");
	f->first_id = frame_hdr(buf).id;
	close(fd);
}

/* ...and the library must not come back. */
static void script_break_no_reconnect(struct fake *f)
{
	int fd;

	script_break_at_dev_open(f);
	fd = fake_accept(f, 500);
	if (fd >= 0) {
		fake_fail(f, "a non-durable session reconnected");
		close(fd);
	}
}

static void check_no_reconnect(int hello_size, uint32_t flags, uint16_t version)
{
	struct iovad_dev *dev;
	struct iovad *c;

	fake_start(&fk, script_break_no_reconnect, hello_size, flags);
	fk.version = fake_version = version;
	cr_assert_eq(iovad_connect(fk.sock, &c), 0);
	cr_assert_eq(iovad_session_id(c), FAKE_SESSION);
	cr_assert_eq(iovad_session_durable(c), flags == PROTO_SESSION_DURABLE &&
						       hello_size == HELLO_V5_SIZE);
	cr_assert_eq(iovad_dev_open(c, "sim0", &dev), -ENOTCONN);
	cr_assert_eq(iovad_dev_open(c, "sim0", &dev), -ENOTCONN);
	cr_assert_eq(iovad_reconnects(c), 0);
	fake_join(&fk);
	cr_assert_eq(fk.connections, 1);
	iovad_disconnect(c);
}

Test(fake, a_48_byte_hello_reply_is_a_session_that_is_not_durable)
{
	check_no_reconnect(HELLO_V4_SIZE, 0, PROTO_VERSION_RESUME);
}

Test(fake, a_version_4_daemon_is_spoken_to_as_ever)
{
	check_no_reconnect(HELLO_V4_SIZE, 0, PROTO_VERSION_RING);
}

Test(fake, a_72_byte_reply_without_the_durable_flag_does_not_reconnect)
{
	check_no_reconnect(HELLO_V5_SIZE, 0, PROTO_VERSION_RESUME);
}

Test(fake, a_timeout_of_0_never_reconnects)
{
	setenv("IOVAD_RECONNECT_TIMEOUT_MS", "0", 1);
	check_no_reconnect(HELLO_V5_SIZE, PROTO_SESSION_DURABLE, PROTO_VERSION_RESUME);
}

static void script_resume_refused(struct fake *f)
{
	script_break_at_dev_open(f);
	(void)fake_resume(f);
}

Test(fake, a_refused_resume_fails_what_was_pending_with_enotconn)
{
	int errs[] = { -ENOENT, -EACCES, -EBUSY, -EPROTONOSUPPORT };

	for (size_t i = 0; i < sizeof(errs) / sizeof(errs[0]); i++) {
		struct iovad_dev *dev;
		struct iovad *c;

		fake_start(&fk, script_resume_refused, HELLO_V5_SIZE, PROTO_SESSION_DURABLE);
		fk.resume_status = errs[i];
		cr_assert_eq(iovad_connect(fk.sock, &c), 0);
		cr_assert(iovad_session_durable(c));
		cr_assert_eq(iovad_dev_open(c, "sim0", &dev), -ENOTCONN, "RESUME got %d", errs[i]);
		cr_assert_eq(iovad_dev_open(c, "sim0", &dev), -ENOTCONN);
		cr_assert_eq(iovad_reconnects(c), 0);
		fake_join(&fk);
		cr_assert_eq(fk.resumes, 1);
		iovad_disconnect(c);
		close(fk.lfd);
		unlink(fk.sock);
		rmdir(fk.dir);
		fk.lfd = -1;
	}
}

static void script_resume_then_answer(struct fake *f)
{
	struct proto_dev_open_rpy rpy = { .dev = 7, .dma_mask = ~0ull, .granule_shift = 12 };
	struct proto_dev_stats_rpy srpy = { .stats = { .links = 42 } };
	uint8_t buf[4096], first[4096];
	int fds[4], nfds, fd, n, n0;

	fd = fake_accept(f, 5000);
	if (fd < 0)
		return fake_fail(f, "no client");
	n0 = fake_next(f, fd, first, sizeof(first), fds, &nfds);
	if (!n0 || frame_hdr(first).type != PROTO_CMD_DEV_OPEN)
		return fake_fail(f, "expected DEV_OPEN");
	f->first_id = frame_hdr(first).id;
	close(fd);
	fd = fake_resume(f);
	if (fd < 0)
		return;
	/* The same request again: same id, same bytes. */
	n = fake_next(f, fd, buf, sizeof(buf), fds, &nfds);
	if (n != n0 || memcmp(buf, first, (size_t)n))
		return fake_fail(f, "DEV_OPEN not sent again as it was (len %d, was %d)", n, n0);
	f->resent_id = frame_hdr(buf).id;
	fake_send(fd, PROTO_CMD_DEV_OPEN | PROTO_RPY, f->resent_id, &rpy, sizeof(rpy));
	/* Then the next call, with a later id. */
	n = fake_next(f, fd, buf, sizeof(buf), fds, &nfds);
	if (!n || frame_hdr(buf).type != PROTO_CMD_DEV_STATS || frame_hdr(buf).id <= f->resent_id)
		return fake_fail(f, "expected DEV_STATS after the resend");
	fake_send(fd, PROTO_CMD_DEV_STATS | PROTO_RPY, frame_hdr(buf).id, &srpy, sizeof(srpy));
	fake_until_eof(f, fd);
}

Test(fake, a_pending_request_is_sent_again_with_its_id_after_resume)
{
	struct iovad_dev_stats s;
	struct iovad_dev *dev;
	struct iovad *c;

	fake_start(&fk, script_resume_then_answer, HELLO_V5_SIZE, PROTO_SESSION_DURABLE);
	cr_assert_eq(iovad_connect(fk.sock, &c), 0);
	cr_assert(iovad_session_durable(c));
	cr_assert_eq(iovad_dev_open(c, "sim0", &dev), 0);
	cr_assert_eq(iovad_reconnects(c), 1);
	cr_assert_eq(iovad_dev_stats(dev, &s), 0);
	cr_assert_eq(s.links, 42);
	iovad_dev_close(dev); /* DEV_CLOSE: the fake only reads it */
	iovad_disconnect(c);
	fake_join(&fk);
	cr_assert_eq(fk.first_id, fk.resent_id);
	cr_assert_eq(fk.connections, 2);
}

/* MEM_IMPORT's fd is sent again: the same file, though the first went to a dead socket. */
static void script_mem_import_again(struct fake *f)
{
	struct proto_mem_import_rpy rpy = { .mem = 3, .phys = 0x40000000ull, .size = 1 << 16 };
	uint8_t buf[4096], first[4096];
	int fds[4], nfds, fd, n, n0;
	struct stat a, b;

	fd = fake_accept(f, 5000);
	if (fd < 0)
		return fake_fail(f, "no client");
	n0 = fake_next(f, fd, first, sizeof(first), fds, &nfds);
	if (!n0 || frame_hdr(first).type != PROTO_CMD_MEM_IMPORT || nfds != 1)
		return fake_fail(f, "expected MEM_IMPORT with its fd");
	if (fstat(fds[0], &a))
		return fake_fail(f, "fstat");
	close(fds[0]);
	close(fd);
	fd = fake_resume(f);
	if (fd < 0)
		return;
	n = fake_next(f, fd, buf, sizeof(buf), fds, &nfds);
	if (n != n0 || memcmp(buf, first, (size_t)n) || nfds != 1)
		return fake_fail(f, "MEM_IMPORT not sent again as it was, with an fd (%d)", nfds);
	f->same_file = !fstat(fds[0], &b) && a.st_dev == b.st_dev && a.st_ino == b.st_ino;
	close(fds[0]);
	fake_send(fd, PROTO_CMD_MEM_IMPORT | PROTO_RPY, frame_hdr(buf).id, &rpy, sizeof(rpy));
	fake_until_eof(f, fd);
}

Test(fake, mem_import_sends_its_fd_again)
{
	struct iovad_mem *m;
	struct iovad *c;

	fake_start(&fk, script_mem_import_again, HELLO_V5_SIZE, PROTO_SESSION_DURABLE);
	cr_assert_eq(iovad_connect(fk.sock, &c), 0);
	cr_assert_eq(iovad_mem_alloc(c, 1 << 16, &m), 0);
	cr_assert_eq(iovad_mem_phys(m), 0x40000000ull);
	cr_assert_eq(iovad_reconnects(c), 1);
	iovad_mem_free(m);
	iovad_disconnect(c);
	fake_join(&fk);
	cr_assert(fk.same_file, "the resent fd is the same memfd");
}

/* A frame cut by the break (half of a 60 KB DMA_WRITE) goes again whole. */
#define BIG_WRITE 60000

static void script_cut_frame(struct fake *f)
{
	struct proto_dev_open_rpy drpy = { .dev = 9, .dma_mask = ~0ull, .granule_shift = 12 };
	struct proto_dma_rpy rpy = { 0 };
	static uint8_t buf[PROTO_FRAME_MAX];
	uint8_t want[BIG_WRITE];
	int fds[4], nfds, fd, n;
	struct proto_dma dma;

	fd = fake_accept(f, 5000);
	if (fd < 0)
		return fake_fail(f, "no client");
	n = fake_next(f, fd, buf, sizeof(buf), fds, &nfds);
	if (!n || frame_hdr(buf).type != PROTO_CMD_DEV_OPEN)
		return fake_fail(f, "expected DEV_OPEN");
	fake_send(fd, PROTO_CMD_DEV_OPEN | PROTO_RPY, frame_hdr(buf).id, &drpy, sizeof(drpy));
	/* Only the first 1000 bytes of the DMA_WRITE, then the daemon is gone. */
	for (size_t got = 0; got < 1000;) {
		ssize_t k = recv(fd, buf + got, 1000 - got, 0);

		if (k <= 0)
			return fake_fail(f, "the DMA_WRITE did not come");
		got += (size_t)k;
	}
	f->first_id = frame_hdr(buf).id;
	close(fd);
	fd = fake_resume(f);
	if (fd < 0)
		return;
	n = fake_next(f, fd, buf, sizeof(buf), fds, &nfds);
	f->resent_id = frame_hdr(buf).id;
	f->resent_len = (uint32_t)n;
	memcpy(&dma, buf + sizeof(struct proto_hdr), sizeof(dma));
	fill_pattern(want, sizeof(want), 11);
	if (frame_hdr(buf).type != PROTO_CMD_DMA_WRITE || dma.len != BIG_WRITE ||
	    n != (int)(sizeof(struct proto_hdr) + sizeof(dma) + BIG_WRITE) ||
	    memcmp(buf + sizeof(struct proto_hdr) + sizeof(dma), want, sizeof(want)))
		return fake_fail(f, "the DMA_WRITE came again cut or changed (%d bytes)", n);
	fake_send(fd, PROTO_CMD_DMA_WRITE | PROTO_RPY, frame_hdr(buf).id, &rpy, sizeof(rpy));
	fake_until_eof(f, fd);
}

Test(fake, a_frame_cut_by_the_break_is_sent_again_whole)
{
	static uint8_t data[BIG_WRITE];
	struct iovad_dev *dev;
	struct iovad *c;

	fill_pattern(data, sizeof(data), 11);
	fake_start(&fk, script_cut_frame, HELLO_V5_SIZE, PROTO_SESSION_DURABLE);
	cr_assert_eq(iovad_connect(fk.sock, &c), 0);
	cr_assert_eq(iovad_dev_open(c, "sim0", &dev), 0);
	cr_assert_eq(iovad_dev_dma_write(dev, 0x100000, data, sizeof(data)), 0);
	cr_assert_eq(iovad_reconnects(c), 1);
	iovad_disconnect(c);
	fake_join(&fk);
	cr_assert_eq(fk.first_id, fk.resent_id);
}

/* An async batch in flight: its reply comes after the resume, through the event fd. */
static void script_batch_again(struct fake *f)
{
	struct proto_dev_open_rpy drpy = { .dev = 5, .dma_mask = ~0ull, .granule_shift = 12 };
	struct {
		struct proto_batch_rpy b;
		struct proto_op_result res[2];
	} rpy = { .b = { .count = 2, .flushes = 1 } };
	uint8_t buf[4096], first[4096];
	int fds[4], nfds, fd, n, n0;

	fd = fake_accept(f, 5000);
	if (fd < 0)
		return fake_fail(f, "no client");
	n = fake_next(f, fd, buf, sizeof(buf), fds, &nfds);
	if (!n || frame_hdr(buf).type != PROTO_CMD_DEV_OPEN)
		return fake_fail(f, "expected DEV_OPEN");
	fake_send(fd, PROTO_CMD_DEV_OPEN | PROTO_RPY, frame_hdr(buf).id, &drpy, sizeof(drpy));
	n0 = fake_next(f, fd, first, sizeof(first), fds, &nfds);
	if (!n0 || frame_hdr(first).type != PROTO_CMD_BATCH)
		return fake_fail(f, "expected BATCH");
	f->first_id = frame_hdr(first).id;
	close(fd);
	fd = fake_resume(f);
	if (fd < 0)
		return;
	n = fake_next(f, fd, buf, sizeof(buf), fds, &nfds);
	if (n != n0 || memcmp(buf, first, (size_t)n))
		return fake_fail(f, "BATCH not sent again as it was");
	f->resent_id = frame_hdr(buf).id;
	fake_send(fd, PROTO_CMD_BATCH | PROTO_RPY, f->resent_id, &rpy, sizeof(rpy));
	fake_until_eof(f, fd);
}

static void batch_done(struct iovad_batch *b, int status, void *arg)
{
	(void)b;
	*(int *)arg = status + 1000;
}

Test(fake, an_async_batch_completes_through_the_event_fd_after_resume)
{
	struct iovad_iova_state st = { .addr = 0x200000, .__size = 0x2000 };
	struct epoll_event ev;
	struct iovad_batch *b;
	struct iovad_dev *dev;
	struct iovad *c;
	int got = 0;
	uint64_t end;

	fake_start(&fk, script_batch_again, HELLO_V5_SIZE, PROTO_SESSION_DURABLE);
	cr_assert_eq(iovad_connect(fk.sock, &c), 0);
	cr_assert_eq(iovad_dev_open(c, "sim0", &dev), 0);
	cr_assert_eq(iovad_batch_new(c, &b), 0);
	cr_assert_eq(iovad_batch_link(b, dev, &st, 0x1000000, 0, 0x2000, IOVAD_DMA_TO_DEVICE, 0),
		     0);
	cr_assert_eq(iovad_batch_sync(b, dev, &st, 0, 0x2000), 1);
	cr_assert_eq(iovad_batch_submit(b, batch_done, &got), 0);
	/* An event loop: the break, the reconnect and the reply all go through iovad_process. */
	end = now_ms() + 10000;
	while (!got && now_ms() < end) {
		int ep = epoll_create1(EPOLL_CLOEXEC);
		struct epoll_event w = { .events = EPOLLIN };

		cr_assert_eq(epoll_ctl(ep, EPOLL_CTL_ADD, iovad_event_fd(c), &w), 0);
		(void)epoll_wait(ep, &ev, 1, 100);
		close(ep);
		cr_assert_geq(iovad_process(c), 0);
	}
	cr_assert_eq(got, 1000, "batch status %d", got - 1000);
	cr_assert_eq(iovad_batch_op_status(b, 0), 0);
	cr_assert_eq(iovad_batch_flushes(b), 1);
	cr_assert_eq(iovad_reconnects(c), 1);
	iovad_batch_free(b);
	iovad_disconnect(c);
	fake_join(&fk);
	cr_assert_eq(fk.first_id, fk.resent_id);
}

/* Nobody comes back: the socket is gone too. */
static void script_vanish(struct fake *f)
{
	script_break_at_dev_open(f);
	close(f->lfd);
	f->lfd = -1;
	unlink(f->sock);
}

Test(fake, no_daemon_within_the_timeout_fails_with_enotconn)
{
	struct iovad_dev *dev;
	struct iovad *c;
	uint64_t t0, dt;

	setenv("IOVAD_RECONNECT_TIMEOUT_MS", "300", 1);
	fake_start(&fk, script_vanish, HELLO_V5_SIZE, PROTO_SESSION_DURABLE);
	cr_assert_eq(iovad_connect(fk.sock, &c), 0);
	t0 = now_ms();
	cr_assert_eq(iovad_dev_open(c, "sim0", &dev), -ENOTCONN);
	dt = now_ms() - t0;
	cr_assert_geq(dt, 250, "gave up after %llu ms", (unsigned long long)dt);
	cr_assert_lt(dt, 5000, "gave up after %llu ms", (unsigned long long)dt);
	cr_assert_eq(iovad_dev_open(c, "sim0", &dev), -ENOTCONN);
	cr_assert_eq(iovad_reconnects(c), 0);
	iovad_disconnect(c);
	fake_join(&fk);
}

/* ==== the real daemon with a journal, under iovad-supervise ================= */

#ifdef IOVAD_SUPERVISE_PATH

struct sup {
	pid_t pid;
	char dir[64];
	char sock[128];
	char pidfile[128];
	char state[128];
	char log[128];
};

static struct sup sv;

static pid_t sup_daemon_pid(const struct sup *s)
{
	char buf[32] = { 0 };
	int fd = open(s->pidfile, O_RDONLY | O_CLOEXEC);
	ssize_t n;

	if (fd < 0)
		return 0;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	return n > 0 ? (pid_t)atoi(buf) : 0;
}

/* Wait for a daemon other than old to run and answer HELLO. Return: its pid. */
static pid_t sup_wait_daemon(const struct sup *s, pid_t old)
{
	for (int i = 0; i < 2000; i++) {
		pid_t p = sup_daemon_pid(s);
		int fd;

		if (p > 0 && p != old && (fd = raw_connect(s->sock)) >= 0) {
			int r = raw_hello(fd);

			close(fd);
			if (r == 0)
				return p;
		}
		usleep(5000);
	}
	{
		char line[512];
		FILE *f = fopen(s->log, "r");

		while (f && fgets(line, sizeof(line), f))
			fprintf(stderr, "log: %s", line);
		if (f)
			fclose(f);
	}
	cr_assert_fail("the daemon did not come up (log: %s)", s->log);
	return 0;
}

/* The supervisor in dir (its socket, pidfile and log there), the daemon journaling to state. */
static void sup_start_in(struct sup *s, const char *dir, const char *state)
{
	char io[32];

	memset(s, 0, sizeof(*s));
	snprintf(s->dir, sizeof(s->dir), "%s", dir);
	snprintf(s->sock, sizeof(s->sock), "%s/iovad.sock", s->dir);
	snprintf(s->pidfile, sizeof(s->pidfile), "%s/iovad.pid", s->dir);
	snprintf(s->log, sizeof(s->log), "%s/iovad.log", s->dir);
	snprintf(s->state, sizeof(s->state), "%s", state);
	snprintf(io, sizeof(io), "--io=%s", test_io());
	s->pid = fork();
	cr_assert_geq(s->pid, 0);
	if (s->pid == 0) {
		int log = open(s->log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);

		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (log >= 0) {
			dup2(log, 1);
			dup2(log, 2);
		}
		close_range(3, ~0U, 0);
		execl(IOVAD_SUPERVISE_PATH, "iovad-supervise", "--listen", s->sock, "--pidfile",
		      s->pidfile, "--restart-delay-ms", "1", "--max-restarts", "1000", "--",
		      IOVAD_DAEMON_PATH, "--no-socket", "--state-dir", s->state, io, "-q", "-q",
		      (char *)NULL);
		_exit(127);
	}
	(void)sup_wait_daemon(s, 0);
}

static void sup_start(struct sup *s)
{
	char dir[64] = "/tmp/iovad-dur-XXXXXX", state[128];

	cr_assert_not_null(mkdtemp(dir));
	snprintf(state, sizeof(state), "%s/state", dir);
	sup_start_in(s, dir, state);
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static void sup_stop(struct sup *s)
{
	if (s->pid > 0) {
		kill(s->pid, SIGTERM);
		for (int i = 0; i < 2000 && waitpid(s->pid, NULL, WNOHANG) == 0; i++)
			usleep(5000);
		kill(s->pid, SIGKILL);
		waitpid(s->pid, NULL, 0);
		s->pid = 0;
	}
	if (s->dir[0])
		nftw(s->dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
	s->dir[0] = 0;
}

/*
 * kill -9 the supervisor, so nobody restarts the daemon, then the daemon, and
 * wait until neither holds the listening socket any more.
 */
static void sup_kill_all(struct sup *s)
{
	pid_t p = sup_daemon_pid(s);
	int fd = 0;

	kill(s->pid, SIGKILL);
	waitpid(s->pid, NULL, 0);
	s->pid = 0;
	if (p > 0)
		kill(p, SIGKILL);
	for (int i = 0; i < 1000 && (fd = raw_connect(s->sock)) >= 0; i++) {
		close(fd);
		usleep(5000);
	}
	cr_assert_lt(fd, 0, "the killed daemon still listens");
}

/* kill -9 the daemon and wait for its successor (the client is not told). */
static void sup_kill_daemon(struct sup *s)
{
	pid_t p = sup_daemon_pid(s);

	cr_assert_gt(p, 0);
	cr_assert_eq(kill(p, SIGKILL), 0);
	(void)sup_wait_daemon(s, p);
}

static void durable_setup(void)
{
	unsetenv("IOVAD_RECONNECT_TIMEOUT_MS");
	sup_start(&sv);
}

static void durable_teardown(void)
{
	sup_stop(&sv);
}

TestSuite(durable, .init = durable_setup, .fini = durable_teardown, .timeout = 120);

static struct iovad *durable_connect(void)
{
	struct iovad *c;

	cr_assert_eq(iovad_connect(sv.sock, &c), 0);
	cr_assert(iovad_session_durable(c), "the daemon with --state-dir journals the session");
	return c;
}

Test(durable, a_restart_keeps_handles_iovas_and_bytes)
{
	struct iovad *c = durable_connect();
	size_t len = 64 << 10;
	uint8_t out[4096], in[4096];
	struct iovad_dev_stats s;
	struct iovad_iova_state st;
	struct iovad_dev *dev;
	struct iovad_mem *m;
	uint64_t phys, sid = iovad_session_id(c);
	bool rings = iovad_uses_rings(c);
	uint8_t *va;

	cr_assert_eq(iovad_dev_open(c, "sim0", &dev), 0);
	cr_assert_eq(iovad_mem_alloc(c, len, &m), 0);
	va = iovad_mem_addr(m);
	phys = iovad_mem_phys(m);
	cr_assert(iovad_iova_try_alloc(dev, &st, phys, len));
	cr_assert_eq(iovad_iova_link(dev, &st, phys, 0, len / 2, IOVAD_DMA_BIDIRECTIONAL, 0), 0);
	cr_assert_eq(iovad_iova_sync(dev, &st, 0, len / 2), 0);
	fill_pattern(out, sizeof(out), 21);
	cr_assert_eq(iovad_dev_dma_write(dev, st.addr + 8192, out, sizeof(out)), 0);

	sup_kill_daemon(&sv);

	/* Nothing redone: the same IOVA reads the same bytes through the same handles. */
	cr_assert_eq(iovad_dev_dma_read(dev, st.addr + 8192, in, sizeof(in)), 0);
	cr_assert_arr_eq(in, out, sizeof(out));
	cr_assert_eq(iovad_reconnects(c), 1);
	cr_assert_eq(iovad_session_id(c), sid);
	/* The restored daemon maps the same memory: a CPU write shows through the device. */
	fill_pattern(va + 12288, 4096, 22);
	cr_assert_eq(iovad_dev_dma_read(dev, st.addr + 12288, in, sizeof(in)), 0);
	cr_assert_arr_eq(in, va + 12288, sizeof(in));
	/* Asked for behind the resent requests, so in use by the next round trip. */
	cr_assert_eq(iovad_uses_rings(c), rings, "rings set up again if they were in use");
	/* What was not linked still faults; what was linked is linked once. */
	cr_assert_eq(iovad_dev_dma_read(dev, st.addr + len / 2, in, 16), -EFAULT);
	cr_assert_eq(iovad_iova_link(dev, &st, phys, 0, 4096, IOVAD_DMA_BIDIRECTIONAL, 0), -EEXIST);
	cr_assert_eq(iovad_iova_link(dev, &st, phys + len / 2, len / 2, len / 2,
				     IOVAD_DMA_BIDIRECTIONAL, 0), 0);
	cr_assert_eq(iovad_dev_stats(dev, &s), 0);
	cr_assert_eq(iovad_iova_destroy(dev, &st, len, IOVAD_DMA_BIDIRECTIONAL, 0), 0);

	/* Twice more, and the session is still the same one. */
	sup_kill_daemon(&sv);
	cr_assert(iovad_iova_try_alloc(dev, &st, phys, len));
	sup_kill_daemon(&sv);
	cr_assert_eq(iovad_iova_link(dev, &st, phys, 0, len, IOVAD_DMA_TO_DEVICE, 0), 0);
	cr_assert_eq(iovad_reconnects(c), 3);
	cr_assert_eq(iovad_iova_destroy(dev, &st, len, IOVAD_DMA_TO_DEVICE, 0), 0);
	iovad_mem_free(m);
	iovad_dev_close(dev);
	iovad_disconnect(c);
}

struct link_call {
	struct iovad_dev *dev;
	struct iovad_iova_state *st;
	uint64_t phys;
	size_t len;
	int r;
};

static void *link_thread(void *arg)
{
	struct link_call *k = arg;

	k->r = iovad_iova_link(k->dev, k->st, k->phys, 0, k->len, IOVAD_DMA_BIDIRECTIONAL, 0);
	return NULL;
}

Test(durable, a_link_in_flight_across_the_kill_runs_exactly_once)
{
	struct iovad *c = durable_connect();
	struct iovad_iova_state st;
	struct link_call k = { 0 };
	struct iovad_dev *dev;
	struct iovad_mem *m;
	uint8_t in[64];
	pthread_t t;
	pid_t p;

	cr_assert_eq(iovad_dev_open(c, "sim0", &dev), 0);
	cr_assert_eq(iovad_mem_alloc(c, 1 << 16, &m), 0);
	cr_assert(iovad_iova_try_alloc(dev, &st, iovad_mem_phys(m), 1 << 16));
	/* The daemon is stopped before it reads the link, and killed with it unread. */
	p = sup_daemon_pid(&sv);
	cr_assert_eq(kill(p, SIGSTOP), 0);
	k = (struct link_call){ .dev = dev, .st = &st, .phys = iovad_mem_phys(m), .len = 1 << 16 };
	cr_assert_eq(pthread_create(&t, NULL, link_thread, &k), 0);
	usleep(50000);
	cr_assert_eq(kill(p, SIGKILL), 0);
	pthread_join(t, NULL);
	/* Once: a second run would have answered -EEXIST. */
	cr_assert_eq(k.r, 0, "the link in flight: %d", k.r);
	cr_assert_eq(iovad_reconnects(c), 1);
	cr_assert_eq(iovad_iova_link(dev, &st, iovad_mem_phys(m), 0, 4096,
				     IOVAD_DMA_BIDIRECTIONAL, 0), -EEXIST);
	cr_assert_eq(iovad_iova_sync(dev, &st, 0, 1 << 16), 0);
	cr_assert_eq(iovad_dev_dma_read(dev, st.addr, in, sizeof(in)), 0);
	cr_assert_eq(iovad_iova_destroy(dev, &st, 1 << 16, IOVAD_DMA_BIDIRECTIONAL, 0), 0);
	iovad_mem_free(m);
	iovad_dev_close(dev);
	iovad_disconnect(c);
}

/*
 * Rounds of alloc, a batch of links and a sync, a check through the device,
 * and destroy, streamed while the daemon is killed at random moments: some
 * requests are unread, some made durable with their replies lost. Each must
 * run exactly once: a link run twice says -EEXIST, a destroy -ENOENT.
 */
#define STREAM_PAGES 16

struct stream {
	struct iovad *c;
	struct iovad_dev *dev;
	struct iovad_mem *m;
	uint64_t rounds;
	int bad;
	char why[160];
	volatile bool stop;
};

static void *stream_thread(void *arg)
{
	struct stream *s = arg;
	uint64_t phys = iovad_mem_phys(s->m);
	uint8_t *va = iovad_mem_addr(s->m);
	struct iovad_iova_state st;
	struct iovad_batch *b;
	uint8_t in[4096];
	int r;

	if (iovad_batch_new(s->c, &b))
		return NULL;
	while (!s->stop && !s->bad) {
		unsigned int p = (unsigned int)(s->rounds % STREAM_PAGES);

		if (!iovad_iova_try_alloc(s->dev, &st, phys, STREAM_PAGES * 4096)) {
			s->bad = errno;
			snprintf(s->why, sizeof(s->why), "alloc: %d", errno);
			break;
		}
		iovad_batch_reset(b);
		for (unsigned int i = 0; i < STREAM_PAGES; i++)
			iovad_batch_link(b, s->dev, &st, phys + i * 4096, i * 4096, 4096,
					 IOVAD_DMA_BIDIRECTIONAL, 0);
		iovad_batch_sync(b, s->dev, &st, 0, STREAM_PAGES * 4096);
		r = iovad_batch_submit(b, NULL, NULL);
		if (!r)
			r = iovad_batch_wait(b);
		for (unsigned int i = 0; !r && i <= STREAM_PAGES; i++)
			r = iovad_batch_op_status(b, i);
		if (r) {
			s->bad = r;
			snprintf(s->why, sizeof(s->why), "round %llu: batch: %d",
				 (unsigned long long)s->rounds, r);
			break;
		}
		r = iovad_dev_dma_read(s->dev, st.addr + p * 4096, in, sizeof(in));
		if (r || memcmp(in, va + p * 4096, sizeof(in))) {
			s->bad = r ? r : -EIO;
			snprintf(s->why, sizeof(s->why), "round %llu: read back: %d",
				 (unsigned long long)s->rounds, r);
			break;
		}
		r = iovad_iova_destroy(s->dev, &st, STREAM_PAGES * 4096, IOVAD_DMA_BIDIRECTIONAL, 0);
		if (r) {
			s->bad = r;
			snprintf(s->why, sizeof(s->why), "round %llu: destroy: %d",
				 (unsigned long long)s->rounds, r);
			break;
		}
		s->rounds++;
	}
	iovad_batch_free(b);
	return NULL;
}

Test(durable, requests_streamed_across_kills_each_run_exactly_once)
{
	struct stream s = { .c = durable_connect() };
	uint64_t rc;
	pthread_t t;
	int kills = 0;

	srand((unsigned int)getpid());
	cr_assert_eq(iovad_dev_open(s.c, "sim0", &s.dev), 0);
	cr_assert_eq(iovad_mem_alloc(s.c, STREAM_PAGES * 4096, &s.m), 0);
	fill_pattern(iovad_mem_addr(s.m), STREAM_PAGES * 4096, 5);
	cr_assert_eq(pthread_create(&t, NULL, stream_thread, &s), 0);
	for (int i = 0; i < 4 && !s.bad; i++) {
		uint64_t before = s.rounds;

		usleep(20000 + (useconds_t)(rand() % 80000));
		sup_kill_daemon(&sv);
		kills++;
		/* Let the client come back and do some rounds before the next one. */
		for (int k = 0; k < 1000 && s.rounds < before + 3 && !s.bad; k++)
			usleep(5000);
	}
	usleep(50000);
	s.stop = true;
	pthread_join(t, NULL);
	cr_assert_eq(s.bad, 0, "%s", s.why);
	rc = iovad_reconnects(s.c);
	cr_assert(rc >= 1 && rc <= (uint64_t)kills, "%llu resumes for %d kills",
		  (unsigned long long)rc, kills);
	cr_assert_gt(s.rounds, 10);
	iovad_mem_free(s.m);
	iovad_dev_close(s.dev);
	iovad_disconnect(s.c);
}

/*
 * Threads at once, so the break meets writers holding send_lock and
 * waiters asleep as well as the reader: each thread writes and reads back
 * its own pages through its own state, with device DMA (synchronous) and
 * unlink/link batches (asynchronous, waited for), while the daemon dies.
 */
#define MT_THREADS 4

struct mt {
	struct iovad *c;
	struct iovad_dev *dev;
	struct iovad_mem *m;
	int n;
	uint64_t rounds;
	int bad;
	char why[160];
	volatile bool *stop;
};

static void *mt_thread(void *arg)
{
	struct mt *t = arg;
	uint64_t phys = iovad_mem_phys(t->m) + (uint64_t)t->n * 8 * 4096;
	struct iovad_iova_state st;
	uint8_t out[4096], in[4096];
	struct iovad_batch *b;
	int r;

	if (!iovad_iova_try_alloc(t->dev, &st, phys, 8 * 4096) || iovad_batch_new(t->c, &b)) {
		t->bad = -1;
		return NULL;
	}
	r = iovad_iova_link(t->dev, &st, phys, 0, 8 * 4096, IOVAD_DMA_BIDIRECTIONAL, 0);
	if (!r)
		r = iovad_iova_sync(t->dev, &st, 0, 8 * 4096);
	while (!r && !*t->stop) {
		unsigned int p = (unsigned int)(t->rounds % 8);

		fill_pattern(out, sizeof(out), (unsigned int)(t->n * 1000 + t->rounds));
		r = iovad_dev_dma_write(t->dev, st.addr + p * 4096, out, sizeof(out));
		if (!r)
			r = iovad_dev_dma_read(t->dev, st.addr + p * 4096, in, sizeof(in));
		if (!r && memcmp(in, out, sizeof(in)))
			r = -EIO;
		if (r)
			break;
		/* Unlink and link that page again, async, then wait: each op runs once. */
		iovad_batch_reset(b);
		iovad_batch_unlink(b, t->dev, &st, p * 4096, 4096, IOVAD_DMA_BIDIRECTIONAL, 0);
		iovad_batch_link(b, t->dev, &st, phys + p * 4096, p * 4096, 4096,
				 IOVAD_DMA_BIDIRECTIONAL, 0);
		iovad_batch_sync(b, t->dev, &st, p * 4096, 4096);
		r = iovad_batch_submit(b, NULL, NULL);
		if (!r)
			r = iovad_batch_wait(b);
		for (unsigned int i = 0; !r && i < 3; i++)
			r = iovad_batch_op_status(b, i);
		t->rounds++;
	}
	if (r) {
		t->bad = r;
		snprintf(t->why, sizeof(t->why), "thread %d round %llu: %d", t->n,
			 (unsigned long long)t->rounds, r);
	}
	iovad_batch_free(b);
	return NULL;
}

Test(durable, threads_at_once_see_only_a_delay)
{
	struct iovad *c = durable_connect();
	struct mt t[MT_THREADS];
	pthread_t th[MT_THREADS];
	volatile bool stop = false;
	struct iovad_dev *dev;
	struct iovad_mem *m;
	uint64_t rc;

	srand((unsigned int)getpid() * 7u);
	cr_assert_eq(iovad_dev_open(c, "sim0", &dev), 0);
	cr_assert_eq(iovad_mem_alloc(c, MT_THREADS * 8 * 4096, &m), 0);
	for (int i = 0; i < MT_THREADS; i++) {
		t[i] = (struct mt){ .c = c, .dev = dev, .m = m, .n = i, .stop = &stop };
		cr_assert_eq(pthread_create(&th[i], NULL, mt_thread, &t[i]), 0);
	}
	for (int k = 0; k < 4; k++) {
		usleep(30000 + (useconds_t)(rand() % 70000));
		sup_kill_daemon(&sv);
	}
	usleep(100000);
	stop = true;
	for (int i = 0; i < MT_THREADS; i++) {
		pthread_join(th[i], NULL);
		cr_assert_eq(t[i].bad, 0, "%s", t[i].why);
		cr_assert_gt(t[i].rounds, 5);
	}
	rc = iovad_reconnects(c);
	cr_assert(rc >= 1 && rc <= 4, "%llu resumes for 4 kills", (unsigned long long)rc);
	iovad_mem_free(m);
	iovad_dev_close(dev);
	iovad_disconnect(c);
}

Test(durable, an_odp_region_keeps_its_iova)
{
	struct iovad *c = durable_connect();
	uint8_t out[256], in[256];
	struct iovad_dev *dev;
	struct iovad_odp *odp;
	struct iovad_mem *m;
	uint64_t iova;

	cr_assert_eq(iovad_dev_open(c, "sim0", &dev), 0);
	cr_assert_eq(iovad_mem_alloc(c, 1 << 16, &m), 0);
	cr_assert_eq(iovad_odp_reg(dev, NULL, 0, 0,
				   IOVAD_ACCESS_DEVICE_READ | IOVAD_ACCESS_DEVICE_WRITE,
				   IOVAD_ODP_IMPLICIT, &odp), 0);
	iova = iovad_odp_mem_iova(odp, m);
	cr_assert_neq(iova, 0);
	fill_pattern(out, sizeof(out), 31);
	cr_assert_eq(iovad_dev_dma_write(dev, iova + 4096, out, sizeof(out)), 0);
	sup_kill_daemon(&sv);
	cr_assert_eq(iovad_dev_dma_read(dev, iova + 4096, in, sizeof(in)), 0);
	cr_assert_arr_eq(in, out, sizeof(out));
	cr_assert_eq(iovad_reconnects(c), 1);
	cr_assert_eq(iovad_odp_dereg(odp), 0);
	iovad_mem_free(m);
	iovad_dev_close(dev);
	iovad_disconnect(c);
}

Test(durable, a_daemon_that_lost_the_session_refuses_resume)
{
	struct iovad *c = durable_connect();
	struct iovad_dev_stats st;
	struct iovad_dev *dev;
	char dir[64], state[128];

	cr_assert_eq(iovad_dev_open(c, "sim0", &dev), 0);
	/* Supervisor and daemon gone; a new pair on the same socket with an empty journal. */
	sup_kill_all(&sv);
	snprintf(dir, sizeof(dir), "%s", sv.dir);
	snprintf(state, sizeof(state), "%s/state2", dir);
	sup_start_in(&sv, dir, state);
	/* RESUME: -ENOENT, so what was pending and all that follows fail. */
	cr_assert_eq(iovad_dev_stats(dev, &st), -ENOTCONN);
	cr_assert_eq(iovad_dev_stats(dev, &st), -ENOTCONN);
	cr_assert_eq(iovad_reconnects(c), 0);
	iovad_disconnect(c);
}

Test(durable, no_daemon_within_the_timeout_fails_with_enotconn)
{
	struct iovad *c;
	struct iovad_dev_stats s;
	struct iovad_dev *dev;
	uint64_t t0, dt;

	setenv("IOVAD_RECONNECT_TIMEOUT_MS", "300", 1);
	c = durable_connect();
	cr_assert_eq(iovad_dev_open(c, "sim0", &dev), 0);
	sup_kill_all(&sv);
	t0 = now_ms();
	cr_assert_eq(iovad_dev_stats(dev, &s), -ENOTCONN);
	dt = now_ms() - t0;
	cr_assert_geq(dt, 250, "gave up after %llu ms", (unsigned long long)dt);
	cr_assert_lt(dt, 5000, "gave up after %llu ms", (unsigned long long)dt);
	cr_assert_eq(iovad_reconnects(c), 0);
	iovad_disconnect(c);
}

#else /* !IOVAD_SUPERVISE_PATH */

/* Not a skip: without the supervisor the durable suite cannot run, and says so. */
Test(durable, needs_iovad_supervise)
{
	cr_assert_fail("iovad-supervise is not built: the durable suite cannot run");
}

#endif
