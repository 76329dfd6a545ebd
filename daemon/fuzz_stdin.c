// SPDX-License-Identifier: MIT
/*
 * fuzz_stdin.c - test builds only (iovad-stdin, tests/fuzz/afl): the daemon
 * itself is its one client. Never compiled into iovad.
 *
 * fuzz_stdin_start() reads all of standard input, connects to the socket
 * the daemon listens on and writes those bytes into it from the daemon's
 * own event loop, so they take the whole real path: accept and the access
 * policy, the transport (epoll or io_uring), framing, backpressure,
 * sessions, the fault service, teardown. A frame whose header says
 * MEM_IMPORT carries a sealed memfd as SCM_RIGHTS (sized from its body, as
 * a client's would be), so inputs reach the memory paths. Replies are read
 * and dropped. When all of it is written the socket is half-closed; when
 * the daemon has closed its end (or a short while after, if it does not),
 * the daemon is sent SIGTERM and shuts down the ordinary way, and its exit
 * status says whether everything went as it should: AFL++ (scripts/afl.sh)
 * sees a crash as a signal, a sanitizer report as an abort.
 */
#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "fuzz_stdin.h"
#include "internal.h"

#define INPUT_MAX (1u << 20)
#define MEMFD_MAX (1u << 20)
#define LINGER_MS 500 /* after the last byte, how long the daemon may take to hang up */

struct fuzz_stdin {
	int fd;
	uint8_t *buf;
	size_t len, off;
	size_t frame_end;       /* where the frame being written ends */
	bool fd_sent;           /* its memfd went with its first bytes */
	struct event *wev, *rev, *timer;
	bool done;
};

static struct fuzz_stdin fz;

/* Done, one way or the other: let go of everything, then stop the daemon. */
static void finish(void)
{
	if (fz.done)
		return;
	fz.done = true;
	event_free(fz.wev);
	event_free(fz.rev);
	event_free(fz.timer); /* safe from its own callback: it is not pending any more */
	close(fz.fd);
	free(fz.buf);
	/* The daemon's own shutdown: stop listening, tear down, free, exit 0. */
	raise(SIGTERM);
}

static void timer_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	finish();
}

static void written_all(void)
{
	struct timeval tv = { 0, LINGER_MS * 1000 };

	event_del(fz.wev);
	shutdown(fz.fd, SHUT_WR);
	evtimer_add(fz.timer, &tv);
}

/* A memfd for a MEM_IMPORT frame, as big as its body asks (within reason), sealed. */
static int import_memfd(const uint8_t *frame, size_t len)
{
	struct proto_mem_import mi = { 0 };
	uint64_t size;
	int fd;

	if (len >= sizeof(struct proto_hdr) + sizeof(mi))
		memcpy(&mi, frame + sizeof(struct proto_hdr), sizeof(mi));
	size = mi.offset + mi.size;
	if (size < mi.offset || size > MEMFD_MAX || !size)
		size = MEMFD_MAX;
	fd = memfd_create("iovad-stdin", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (fd < 0)
		return -1;
	if (ftruncate(fd, (off_t)((size + 4095) & ~(uint64_t)4095)) < 0 ||
	    fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

static void write_cb(evutil_socket_t sfd, short what, void *arg)
{
	(void)what;
	(void)arg;
	while (fz.off < fz.len) {
		char cbuf[CMSG_SPACE(sizeof(int))] = { 0 };
		struct iovec iov;
		struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1 };
		int mfd = -1;
		ssize_t n;

		if (fz.off == fz.frame_end) {
			/* The next frame, as far as its header tells; the rest if it cannot. */
			struct proto_hdr h;
			size_t left = fz.len - fz.off;

			fz.frame_end = fz.len;
			fz.fd_sent = true;
			if (left >= sizeof(h)) {
				memcpy(&h, fz.buf + fz.off, sizeof(h));
				if (h.len >= sizeof(h) && h.len <= left)
					fz.frame_end = fz.off + h.len;
				fz.fd_sent = h.type != PROTO_CMD_MEM_IMPORT;
			}
		}
		iov.iov_base = fz.buf + fz.off;
		iov.iov_len = fz.frame_end - fz.off;
		if (!fz.fd_sent) {
			mfd = import_memfd(fz.buf + fz.off, fz.frame_end - fz.off);
			if (mfd >= 0) {
				struct cmsghdr *cm;

				msg.msg_control = cbuf;
				msg.msg_controllen = sizeof(cbuf);
				cm = CMSG_FIRSTHDR(&msg);
				cm->cmsg_level = SOL_SOCKET;
				cm->cmsg_type = SCM_RIGHTS;
				cm->cmsg_len = CMSG_LEN(sizeof(int));
				memcpy(CMSG_DATA(cm), &mfd, sizeof(int));
			}
		}
		n = sendmsg(sfd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (mfd >= 0)
			close(mfd);
		if (n < 0) {
			if (errno == EAGAIN || errno == EINTR)
				return;
			/* The daemon hung up (it refused a frame): nothing more to say. */
			fz.off = fz.len;
			break;
		}
		fz.fd_sent = true;
		fz.off += (size_t)n;
	}
	written_all();
}

static void read_cb(evutil_socket_t sfd, short what, void *arg)
{
	uint8_t buf[64 << 10];
	ssize_t n;

	(void)what;
	(void)arg;
	n = recv(sfd, buf, sizeof(buf), MSG_DONTWAIT);
	if (n > 0 || (n < 0 && (errno == EAGAIN || errno == EINTR)))
		return;
	/* EOF or an error: the daemon closed the connection. */
	finish();
}

int fuzz_stdin_start(struct srv *s)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	size_t cap = 64 << 10;
	ssize_t n;

	if (!s->own_socket_path || strlen(s->own_socket_path) >= sizeof(sa.sun_path)) {
		log_err("fuzz-stdin: needs --socket PATH");
		return -EINVAL;
	}
	fz = (struct fuzz_stdin){ .fd = -1 };
	fz.buf = malloc(cap);
	if (!fz.buf)
		return -ENOMEM;
	while ((n = read(0, fz.buf + fz.len, cap - fz.len)) > 0) {
		fz.len += (size_t)n;
		if (fz.len == cap) {
			uint8_t *nb;

			if (cap >= INPUT_MAX)
				break;
			nb = realloc(fz.buf, cap * 2);
			if (!nb)
				return -ENOMEM;
			fz.buf = nb;
			cap *= 2;
		}
	}
	/* A client that never answers its user faults should cost the run little time. */
	s->odp.user_fault_timeout_ms = 50;
	strcpy(sa.sun_path, s->own_socket_path);
	fz.fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fz.fd < 0 || connect(fz.fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		int r = -errno;

		log_err("fuzz-stdin: connect %s: %s", sa.sun_path, strerror(-r));
		return r;
	}
	fz.wev = event_new(s->base, fz.fd, EV_WRITE | EV_PERSIST, write_cb, NULL);
	fz.rev = event_new(s->base, fz.fd, EV_READ | EV_PERSIST, read_cb, NULL);
	fz.timer = evtimer_new(s->base, timer_cb, NULL);
	if (!fz.wev || !fz.rev || !fz.timer || event_add(fz.wev, NULL) || event_add(fz.rev, NULL))
		return -ENOMEM;
	return 0;
}
