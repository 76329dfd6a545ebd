// SPDX-License-Identifier: MIT
/*
 * iovad-supervise.c - a small supervisor that plays systemd's part for iovad
 * where systemd is not PID 1 (CI, containers): it runs the daemon as its
 * child, restarts it whenever it dies, and speaks the service manager's side
 * of the notify protocol, the file-descriptor store included. What the daemon
 * stores with sd_pid_notify_with_fds("FDSTORE=1\nFDNAME=...") comes back to
 * its next incarnation as LISTEN_FDS/LISTEN_FDNAMES/LISTEN_PID, exactly as
 * under a unit with FileDescriptorStoreMax=, so a crashed daemon finds its
 * clients' memfds again. With --listen it also owns the listening socket, as
 * a socket unit would: clients that connect while the daemon is down wait in
 * the backlog instead of getting ECONNREFUSED.
 *
 * The event loop is one poll() over two fds: a signalfd (SIGCHLD, SIGTERM,
 * SIGINT and SIGHUP are blocked and read from it) and the notify socket, with
 * a timeout for the restart delay and the stop timeout. No libevent: two fds
 * do not need it. SIGCHLD through the signalfd rather than a pidfd, because
 * the child must be inspected before it is reaped (below) and waitid(WNOWAIT)
 * does that for any kernel, valgrind included; the signalfd is needed for the
 * other signals anyway.
 *
 * Ordering that matters:
 *  - When the child dies, every notification it sent is already queued on our
 *    socket (a datagram is queued when sendmsg() returns). We see the zombie
 *    with waitid(WNOWAIT), drain the socket while the zombie still holds its
 *    pid (its messages still come from the main pid), and only then reap it.
 *    systemd does the same: it peeks at SIGCHLD with WNOWAIT and dispatches
 *    notifications at a higher priority. So a dying daemon's last FDSTORE is
 *    never lost, and its pid cannot have been reused by then.
 *  - In the child between fork and exec, the fds to pass are first duplicated
 *    above the target range and then moved to 3, 4, ...: a source may itself
 *    sit in that range. Everything above is then marked close-on-exec
 *    (close_range), so nothing else reaches the daemon, even fds our own
 *    parent leaked to us.
 *  - The child waits on a pipe until the pidfile names it, so whoever reads
 *    the pidfile after the daemon is up sees the right pid.
 *
 * Internally functions return 0 or -errno; main() maps that to the exit
 * status: 0 stopped on request, 1 gave up or failed, 2 usage error.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <linux/kcmp.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <syslog.h>
#include <systemd/sd-daemon.h>
#include <time.h>
#include <unistd.h>

#ifndef IOVAD_VERSION
#define IOVAD_VERSION "0.0.0"
#endif

#define PROG "iovad-supervise"
#define EXIT_GAVE_UP 1
#define EXIT_USAGE 2

/* systemd's limits for one notification: PIPE_BUF bytes, 768 fds. */
#define NOTIFY_BUFFER_MAX 4096
#define NOTIFY_FD_MAX 768
#define NOTIFY_RCVBUF (8u << 20)
#define FDNAME_MAX 255
#define FDNAME_DEFAULT "stored"
#define LISTEN_NAME "listen"

#define DEFAULT_FDSTORE_MAX 4096u
#define DEFAULT_RESTART_DELAY_MS 100u
#define DEFAULT_MAX_RESTARTS 10u
#define DEFAULT_RESTART_WINDOW_S 60u
#define DEFAULT_STOP_TIMEOUT_S 10u
#define DEFAULT_SOCKET_MODE 0666
/* Bounds on what a command line can make us allocate or wait for. */
#define MAX_FDSTORE_MAX 65536u
#define MAX_MAX_RESTARTS 100000u
#define MAX_SECONDS (7u * 24 * 3600)
#define MAX_DELAY_MS (3600u * 1000)

#define NEVER UINT64_MAX

struct stored_fd {
	char *name;
	int fd;
	dev_t dev; /* fstat() at arrival: a cheap first test for duplicates */
	ino_t ino;
};

struct opts {
	const char *listen_path;
	mode_t socket_mode;
	unsigned int fdstore_max;
	unsigned int restart_delay_ms;
	unsigned int max_restarts;
	unsigned int restart_window_s;
	unsigned int stop_timeout_s;
	const char *pidfile;
	int verbose;
	char **argv; /* COMMAND [ARGS...] */
};

struct sup {
	struct opts o;
	int sigfd;
	int notify_fd;
	char *notify_dir; /* our private directory, removed at exit */
	char *notify_path;
	int listen_fd;
	bool listen_bound; /* listen_path is ours to unlink at exit */
	dev_t listen_dev;
	ino_t listen_ino;

	struct stored_fd *store; /* in arrival order */
	size_t nstore, store_cap;

	pid_t child; /* the main pid, 0 while none runs */
	uint64_t child_start_ms;
	uint64_t restart_at; /* when to start the next incarnation, or NEVER */
	uint64_t kill_at;    /* when to SIGKILL a child that ignores SIGTERM */
	uint64_t *restarts;  /* ring of the last max_restarts restart times */
	size_t nrestarts;    /* used slots of the ring */
	size_t restart_head;

	bool stopping; /* asked to stop: do not restart */
	bool fatal;    /* the first exec failed: exit 1 once reaped */
	bool done;
	int exit_code;
	bool outer_ready; /* READY=1 passed on to our own manager */

	sigset_t orig_mask;
	struct rlimit orig_nofile;
	pid_t self;
};

/* ==== logging ============================================================= */

static int verbosity;

static void say(int prio, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* One line per write(), so our lines never interleave with the child's. */
static void say(int prio, const char *fmt, ...)
{
	char line[1024];
	va_list ap;
	int n;

	if (prio >= LOG_DEBUG && verbosity < 1)
		return;
	n = snprintf(line, sizeof(line), PROG ": %s",
		     prio <= LOG_ERR	   ? "error: "
		     : prio == LOG_WARNING ? "warning: "
					   : "");
	va_start(ap, fmt);
	vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
	va_end(ap);
	n = (int)strlen(line);
	line[n++] = '\n';
	(void)!write(STDERR_FILENO, line, (size_t)n);
}

/* Text from the child goes to our log with control characters masked. */
static void sanitize(char *dst, size_t size, const char *src)
{
	size_t i;

	for (i = 0; i + 1 < size && src[i]; i++)
		dst[i] = (unsigned char)src[i] < 0x20 || src[i] == 0x7f ? '?' : src[i];
	dst[i] = '\0';
}

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* ==== the fd store ======================================================== */

/*
 * As systemd's fdname_is_valid(): printable ASCII without ':' (the separator
 * of LISTEN_FDNAMES), at most 255 characters. Unlike systemd we also refuse
 * the empty name: libsystemd 252's sd_listen_fds_with_names() drops empty
 * fields when it splits LISTEN_FDNAMES and then fails with -EINVAL for every
 * fd, so one empty name would cost the daemon all its stored fds.
 */
static bool fdname_is_valid(const char *s)
{
	size_t n = 0;

	for (; s[n]; n++)
		if (s[n] < ' ' || s[n] > '~' || s[n] == ':')
			return false;
	return n > 0 && n <= FDNAME_MAX;
}

/*
 * Whether two fds are the same open file, as systemd's same_fd(): kcmp() if
 * the kernel lets us, else the same inode and the same status flags (which at
 * least tells the two ends of a pipe apart).
 */
static bool same_fd(int a, int b)
{
	pid_t pid = getpid();
	long r = syscall(SYS_kcmp, pid, pid, KCMP_FILE, a, b);
	int fa, fb;

	if (r >= 0)
		return r == 0;
	fa = fcntl(a, F_GETFL);
	fb = fcntl(b, F_GETFL);
	return fa >= 0 && fa == fb;
}

/*
 * Takes ownership of fd. Full store: the fd is closed, as systemd does
 * ("Hit fd store limit"); the caller warns once per message. An fd already in
 * the store is not stored twice (systemd removes duplicates as well).
 * Returns 1 when stored, 0 when dropped as a duplicate, -errno otherwise.
 */
static int store_add(struct sup *s, const char *name, int fd)
{
	struct stored_fd *e;
	struct stat st;
	char *dup;
	size_t i;

	if (s->nstore >= s->o.fdstore_max) {
		close(fd);
		return -ENOSPC;
	}
	if (fstat(fd, &st) < 0) {
		int err = -errno;

		close(fd);
		return err;
	}
	for (i = 0; i < s->nstore; i++) {
		e = &s->store[i];
		if (e->dev == st.st_dev && e->ino == st.st_ino && same_fd(e->fd, fd)) {
			say(LOG_DEBUG, "fd '%s' is already stored as '%s': not stored twice", name,
			    e->name);
			close(fd);
			return 0;
		}
	}
	if (s->nstore == s->store_cap) {
		size_t cap = s->store_cap ? 2 * s->store_cap : 16;

		e = realloc(s->store, cap * sizeof(*e));
		if (!e) {
			close(fd);
			return -ENOMEM;
		}
		s->store = e;
		s->store_cap = cap;
	}
	dup = strdup(name);
	if (!dup) {
		close(fd);
		return -ENOMEM;
	}
	s->store[s->nstore++] = (struct stored_fd){
		.name = dup,
		.fd = fd,
		.dev = st.st_dev,
		.ino = st.st_ino,
	};
	say(LOG_DEBUG, "fd store: added '%s' (%zu stored)", name, s->nstore);
	return 1;
}

/* FDSTOREREMOVE=1: close and drop every stored fd of that name. */
static void store_remove(struct sup *s, const char *name)
{
	size_t i, j = 0, removed = 0;

	for (i = 0; i < s->nstore; i++) {
		if (!strcmp(s->store[i].name, name)) {
			close(s->store[i].fd);
			free(s->store[i].name);
			removed++;
			continue;
		}
		s->store[j++] = s->store[i];
	}
	s->nstore = j;
	say(LOG_DEBUG, "fd store: removed %zu fd%s named '%s' (%zu stored)", removed,
	    removed == 1 ? "" : "s", name, s->nstore);
}

static void store_clear(struct sup *s)
{
	for (size_t i = 0; i < s->nstore; i++) {
		close(s->store[i].fd);
		free(s->store[i].name);
	}
	free(s->store);
	s->store = NULL;
	s->nstore = s->store_cap = 0;
}

/* ==== notifications ======================================================= */

static void close_fds(const int *fds, size_t n)
{
	for (size_t i = 0; i < n; i++)
		close(fds[i]);
}

static void outer_notify_ready(struct sup *s, pid_t pid)
{
	/* Our own manager, if any: ready once the first incarnation is. */
	if (!s->outer_ready) {
		(void)sd_notifyf(0, "READY=1\nSTATUS=%s running as pid %d", s->o.argv[0], (int)pid);
		s->outer_ready = true;
	} else {
		(void)sd_notifyf(0, "STATUS=%s running as pid %d", s->o.argv[0], (int)pid);
	}
}

/*
 * One notification from the main pid; takes ownership of fds. The keys are
 * those of sd_notify(3); unknown ones are logged at debug level and ignored,
 * as systemd ignores what it does not know.
 */
static void notify_handle(struct sup *s, pid_t pid, char *msg, int *fds, size_t nfds)
{
	const char *fdname = NULL;
	bool fdstore = false, fdstoreremove = false, barrier = false;
	char *line, *save = NULL, text[512];
	size_t full = 0, failed = 0;

	for (line = strtok_r(msg, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		if (!strcmp(line, "READY=1")) {
			say(LOG_INFO, "pid %d is ready", (int)pid);
			outer_notify_ready(s, pid);
		} else if (!strncmp(line, "STATUS=", 7)) {
			sanitize(text, sizeof(text), line + 7);
			say(LOG_INFO, "pid %d status: %s", (int)pid, text);
		} else if (!strcmp(line, "STOPPING=1")) {
			say(LOG_INFO, "pid %d is stopping", (int)pid);
		} else if (!strcmp(line, "RELOADING=1")) {
			say(LOG_INFO, "pid %d is reloading", (int)pid);
		} else if (!strcmp(line, "WATCHDOG=1")) {
			say(LOG_DEBUG, "pid %d: watchdog ping", (int)pid);
		} else if (!strcmp(line, "FDSTORE=1")) {
			fdstore = true;
		} else if (!strcmp(line, "FDSTOREREMOVE=1")) {
			fdstoreremove = true;
		} else if (!strncmp(line, "FDNAME=", 7)) {
			if (!fdname)
				fdname = line + 7;
		} else if (!strcmp(line, "BARRIER=1")) {
			barrier = true;
		} else if (!strncmp(line, "MAINPID=", 8) || !strcmp(line, "FDPOLL=0")) {
			/* MAINPID: the main pid is the one we started. FDPOLL=0:
			 * we never poll stored fds, so there is nothing to turn off. */
		} else {
			sanitize(text, sizeof(text), line);
			say(LOG_DEBUG, "pid %d: ignoring '%s'", (int)pid, text);
		}
	}

	/* Remove before adding, as systemd: one message can replace a name. */
	if (fdstoreremove) {
		if (fdname && fdname_is_valid(fdname))
			store_remove(s, fdname);
		else
			say(LOG_WARNING, "pid %d: FDSTOREREMOVE=1 without a valid FDNAME=: ignored",
			    (int)pid);
	}
	if (!nfds)
		return;
	if (!fdstore) {
		/* BARRIER=1 carries one fd that we only have to close. */
		if (!barrier)
			say(LOG_WARNING, "pid %d sent %zu fd%s without FDSTORE=1: closed", (int)pid,
			    nfds, nfds == 1 ? "" : "s");
		close_fds(fds, nfds);
		return;
	}
	if (!fdname)
		fdname = FDNAME_DEFAULT;
	if (!fdname_is_valid(fdname)) {
		sanitize(text, sizeof(text), fdname);
		say(LOG_WARNING,
		    "pid %d: invalid FDNAME='%s' (printable ASCII without ':', "
		    "1 to %d characters): %zu fd%s closed",
		    (int)pid, text, FDNAME_MAX, nfds, nfds == 1 ? "" : "s");
		close_fds(fds, nfds);
		return;
	}
	for (size_t i = 0; i < nfds; i++) {
		int r = store_add(s, fdname, fds[i]);

		if (r == -ENOSPC)
			full++;
		else if (r < 0)
			failed++;
	}
	if (full)
		say(LOG_WARNING,
		    "fd store full (--fdstore-max %u): %zu fd%s named '%s' from "
		    "pid %d closed",
		    s->o.fdstore_max, full, full == 1 ? "" : "s", fdname, (int)pid);
	if (failed)
		say(LOG_WARNING, "could not store %zu fd%s named '%s' from pid %d: closed", failed,
		    failed == 1 ? "" : "s", fdname, (int)pid);
}

/*
 * Reads one datagram. Returns 0 when one was handled (or refused), -EAGAIN
 * when the queue is empty. Refused messages lose their fds.
 */
static int notify_recv_one(struct sup *s)
{
	char buf[NOTIFY_BUFFER_MAX + 1];
	union {
		struct cmsghdr align;
		char buf[CMSG_SPACE(sizeof(struct ucred)) +
			 CMSG_SPACE(sizeof(int) * NOTIFY_FD_MAX)];
	} control;
	struct iovec iov = { .iov_base = buf, .iov_len = NOTIFY_BUFFER_MAX };
	struct msghdr mh = {
		.msg_iov = &iov,
		.msg_iovlen = 1,
		.msg_control = &control,
		.msg_controllen = sizeof(control),
	};
	struct ucred cred = { .pid = 0 };
	bool have_cred = false;
	int fds[NOTIFY_FD_MAX];
	size_t nfds = 0;
	struct cmsghdr *c;
	ssize_t n;

	do
		n = recvmsg(s->notify_fd, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC | MSG_TRUNC);
	while (n < 0 && errno == EINTR);
	if (n < 0) {
		if (errno != EAGAIN)
			say(LOG_WARNING, "notify socket: %s", strerror(errno));
		return -EAGAIN;
	}
	for (c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
		if (c->cmsg_level != SOL_SOCKET)
			continue;
		if (c->cmsg_type == SCM_RIGHTS) {
			size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);

			if (k > NOTIFY_FD_MAX - nfds)
				k = NOTIFY_FD_MAX - nfds;
			memcpy(fds + nfds, CMSG_DATA(c), k * sizeof(int));
			nfds += k;
		} else if (c->cmsg_type == SCM_CREDENTIALS &&
			   c->cmsg_len == CMSG_LEN(sizeof(struct ucred))) {
			memcpy(&cred, CMSG_DATA(c), sizeof(cred));
			have_cred = true;
		}
	}
	if (mh.msg_flags & MSG_CTRUNC) {
		say(LOG_WARNING,
		    "notification with too many fds (more than %d) or control data: "
		    "dropped",
		    NOTIFY_FD_MAX);
		goto refuse;
	}
	if (n > NOTIFY_BUFFER_MAX || (mh.msg_flags & MSG_TRUNC)) {
		say(LOG_WARNING, "notification longer than %d bytes: dropped", NOTIFY_BUFFER_MAX);
		goto refuse;
	}
	if (!have_cred || cred.pid <= 0) {
		say(LOG_WARNING, "notification without sender credentials: refused");
		goto refuse;
	}
	/* NotifyAccess=main: only the process we started may talk to us. */
	if (s->child <= 0 || cred.pid != s->child) {
		if (s->child > 0)
			say(LOG_WARNING,
			    "refused a notification from pid %d: not the main "
			    "process (pid %d)%s",
			    (int)cred.pid, (int)s->child, nfds ? ", its fds closed" : "");
		else
			say(LOG_WARNING,
			    "refused a notification from pid %d: no main process "
			    "runs%s",
			    (int)cred.pid, nfds ? ", its fds closed" : "");
		goto refuse;
	}
	buf[n] = '\0';
	notify_handle(s, cred.pid, buf, fds, nfds);
	return 0;

refuse:
	close_fds(fds, nfds);
	return 0;
}

static void notify_drain(struct sup *s)
{
	while (notify_recv_one(s) != -EAGAIN)
		;
}

/* Our private directory with the notify socket in it. */
static int notify_open(struct sup *s)
{
	const char *env = getenv("RUNTIME_DIRECTORY");
	char base[PATH_MAX] = "";
	const char *bases[3];
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int one = 1, rcv = NOTIFY_RCVBUF, nb = 0, r;
	mode_t old;

	/* Under systemd RUNTIME_DIRECTORY may list several: take the first. */
	if (env && *env) {
		snprintf(base, sizeof(base), "%s", env);
		base[strcspn(base, ":")] = '\0';
		bases[nb++] = base;
	}
	bases[nb++] = "/run";
	bases[nb++] = "/tmp";
	for (int i = 0; i < nb && !s->notify_dir; i++) {
		char *tmpl;

		if (access(bases[i], W_OK | X_OK) < 0)
			continue;
		if (asprintf(&tmpl, "%s/" PROG ".XXXXXX", bases[i]) < 0)
			return -ENOMEM;
		if (mkdtemp(tmpl))
			s->notify_dir = tmpl;
		else
			free(tmpl);
	}
	if (!s->notify_dir) {
		say(LOG_ERR, "cannot create a directory for the notify socket in %s%s/run or /tmp",
		    nb == 3 ? base : "", nb == 3 ? ", " : "");
		return -EACCES;
	}
	/* The daemon may drop privileges: let it reach the socket, as systemd's
	 * /run/systemd/notify. Senders are told apart by their credentials. */
	(void)chmod(s->notify_dir, 0755);
	if (asprintf(&s->notify_path, "%s/notify", s->notify_dir) < 0) {
		s->notify_path = NULL;
		return -ENOMEM;
	}
	if (strlen(s->notify_path) >= sizeof(sa.sun_path)) {
		say(LOG_ERR, "notify socket path too long: %s", s->notify_path);
		return -ENAMETOOLONG;
	}
	strcpy(sa.sun_path, s->notify_path);

	s->notify_fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (s->notify_fd < 0)
		return -errno;
	if (setsockopt(s->notify_fd, SOL_SOCKET, SO_PASSCRED, &one, sizeof(one)) < 0)
		return -errno;
	/* A dying daemon may send a burst: a large queue, as systemd's. */
	if (setsockopt(s->notify_fd, SOL_SOCKET, SO_RCVBUFFORCE, &rcv, sizeof(rcv)) < 0)
		(void)setsockopt(s->notify_fd, SOL_SOCKET, SO_RCVBUF, &rcv, sizeof(rcv));
	old = umask(0);
	r = bind(s->notify_fd, (struct sockaddr *)&sa, sizeof(sa));
	umask(old);
	if (r < 0) {
		r = -errno;
		say(LOG_ERR, "bind %s: %s", s->notify_path, strerror(-r));
		return r;
	}
	return 0;
}

/* ==== the listening socket ================================================ */

static int mkdir_parents(const char *path)
{
	char *p = strdup(path), *slash;

	if (!p)
		return -ENOMEM;
	for (slash = strchr(p + 1, '/'); slash; slash = strchr(slash + 1, '/')) {
		*slash = '\0';
		if (mkdir(p, 0755) < 0 && errno != EEXIST) {
			int err = -errno;

			free(p);
			return err;
		}
		*slash = '/';
	}
	free(p);
	return 0;
}

/*
 * Binds --listen PATH. A socket file already there is replaced only when
 * nobody listens on it (a stale file from a previous run); a live one is an
 * error, and so is anything that is not a socket.
 */
static int listen_open(struct sup *s)
{
	const char *path = s->o.listen_path;
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct stat st;
	mode_t old;
	int fd, r;

	if (strlen(path) >= sizeof(sa.sun_path)) {
		say(LOG_ERR, "--listen path too long (at most %zu bytes): %s",
		    sizeof(sa.sun_path) - 1, path);
		return -ENAMETOOLONG;
	}
	strcpy(sa.sun_path, path);
	r = mkdir_parents(path);
	if (r < 0) {
		say(LOG_ERR, "cannot create the directory of %s: %s", path, strerror(-r));
		return r;
	}
	if (lstat(path, &st) == 0) {
		if (!S_ISSOCK(st.st_mode)) {
			say(LOG_ERR, "%s exists and is not a socket", path);
			return -EEXIST;
		}
		fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
		if (fd < 0)
			return -errno;
		r = connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ? errno : 0;
		close(fd);
		if (r != ECONNREFUSED) {
			say(LOG_ERR, "%s is in use (something listens on it)", path);
			return -EADDRINUSE;
		}
		say(LOG_INFO, "removing stale socket %s", path);
		if (unlink(path) < 0 && errno != ENOENT)
			return -errno;
	}

	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	/* The mode through the umask at bind(), not a chmod() after it: no window
	 * in which the socket has the wrong permissions. */
	old = umask(~s->o.socket_mode & 0777);
	r = bind(fd, (struct sockaddr *)&sa, sizeof(sa));
	umask(old);
	if (r < 0 || listen(fd, SOMAXCONN) < 0 || stat(path, &st) < 0) {
		r = -errno;
		say(LOG_ERR, "cannot listen on %s: %s", path, strerror(-r));
		close(fd);
		return r;
	}
	s->listen_fd = fd;
	s->listen_bound = true;
	s->listen_dev = st.st_dev;
	s->listen_ino = st.st_ino;
	say(LOG_INFO, "listening on %s", path);
	return 0;
}

static void listen_close(struct sup *s)
{
	struct stat st;

	if (s->listen_fd < 0)
		return;
	close(s->listen_fd);
	s->listen_fd = -1;
	/* Unlink only what is still our socket file. */
	if (s->listen_bound && lstat(s->o.listen_path, &st) == 0 && st.st_dev == s->listen_dev &&
	    st.st_ino == s->listen_ino)
		unlink(s->o.listen_path);
}

/* ==== the child =========================================================== */

static int pidfile_write(const char *path, pid_t pid)
{
	char *tmp;
	FILE *f;
	int r = 0;

	if (asprintf(&tmp, "%s.%d.tmp", path, (int)getpid()) < 0)
		return -ENOMEM;
	/* "e": O_CLOEXEC. Written aside and renamed: readers never see half a pid. */
	f = fopen(tmp, "we");
	if (!f) {
		r = -errno;
		goto out;
	}
	fprintf(f, "%d\n", (int)pid);
	if (fclose(f) != 0 || rename(tmp, path) < 0) {
		r = -errno;
		unlink(tmp);
	}
out:
	free(tmp);
	return r;
}

static bool env_is_ours(const char *e)
{
	static const char *const keys[] = {
		"NOTIFY_SOCKET=",  "LISTEN_FDS=", "LISTEN_PID=",    "LISTEN_FDNAMES=",
		"LISTEN_PIDFDID=", "FDSTORE=",	  "WATCHDOG_USEC=", "WATCHDOG_PID=",
	};

	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
		if (!strncmp(e, keys[i], strlen(keys[i])))
			return true;
	return false;
}

/* Everything the child needs, prepared before fork(). */
struct spawn {
	int *src; /* fds to pass, in order */
	size_t nfds;
	char **envp;
	char *pidvar;  /* "LISTEN_PID=" + room for the pid, in envp */
	char *vars[5]; /* our variables in envp, freed after */
	char *names;   /* LISTEN_FDNAMES' value, for the log */
};

static void spawn_free(struct spawn *sp)
{
	free(sp->src);
	free(sp->envp);
	for (size_t i = 0; i < sizeof(sp->vars) / sizeof(sp->vars[0]); i++)
		free(sp->vars[i]);
	free(sp->names);
}

extern char **environ;

static int spawn_prepare(struct sup *s, struct spawn *sp)
{
	size_t nenv = 0, len = 0, k = 0, v = 0;
	char *p;

	memset(sp, 0, sizeof(*sp));
	sp->nfds = (s->listen_fd >= 0) + s->nstore;
	sp->src = calloc(sp->nfds + 1, sizeof(int));
	if (!sp->src)
		goto nomem;
	if (s->listen_fd >= 0) {
		sp->src[k++] = s->listen_fd;
		len += sizeof(LISTEN_NAME);
	}
	for (size_t i = 0; i < s->nstore; i++) {
		sp->src[k++] = s->store[i].fd;
		len += strlen(s->store[i].name) + 1;
	}
	sp->names = malloc(len + 1);
	if (!sp->names)
		goto nomem;
	p = sp->names;
	*p = '\0';
	if (s->listen_fd >= 0)
		p = stpcpy(stpcpy(p, LISTEN_NAME), ":");
	for (size_t i = 0; i < s->nstore; i++)
		p = stpcpy(stpcpy(p, s->store[i].name), ":");
	if (p > sp->names)
		p[-1] = '\0';

	for (char **e = environ; *e; e++)
		nenv++;
	sp->envp = calloc(nenv + 6, sizeof(char *));
	if (!sp->envp)
		goto nomem;
	k = 0;
	for (char **e = environ; *e; e++)
		if (!env_is_ours(*e))
			sp->envp[k++] = *e;
	if (asprintf(&sp->vars[v++], "NOTIFY_SOCKET=%s", s->notify_path) < 0 ||
	    asprintf(&sp->vars[v++], "FDSTORE=%u", s->o.fdstore_max) < 0)
		goto nomem_vars;
	/* As systemd: the LISTEN_* variables only when there are fds to pass. */
	if (sp->nfds) {
		if (asprintf(&sp->vars[v++], "LISTEN_FDS=%zu", sp->nfds) < 0 ||
		    asprintf(&sp->vars[v++], "LISTEN_FDNAMES=%s", sp->names) < 0 ||
		    asprintf(&sp->vars[v++], "LISTEN_PID=%-20d", 0) < 0)
			goto nomem_vars;
		sp->pidvar = sp->vars[v - 1];
	}
	for (size_t i = 0; i < v; i++)
		sp->envp[k++] = sp->vars[i];
	sp->envp[k] = NULL;
	return 0;

nomem_vars:
	sp->vars[v - 1] = NULL; /* asprintf() leaves it undefined on failure */
nomem:
	spawn_free(sp);
	return -ENOMEM;
}

/*
 * Between fork() and exec(): only system calls and the memory prepared by
 * spawn_prepare() (we are single-threaded, so that memory is consistent).
 * Reports an exec failure as an errno on ex_wr (close-on-exec: EOF means the
 * exec worked).
 */
static void __attribute__((noreturn))
child_exec(struct sup *s, struct spawn *sp, const int go[2], const int ex[2])
{
	int first = SD_LISTEN_FDS_START + (int)sp->nfds, ex_wr = ex[1], err, fd;
	char c;

	/* Our copies of the parent's ends, or the read below never sees EOF. */
	close(go[1]);
	close(ex[0]);
	/* Without the supervisor there is no fd store and no restart: go too. */
	if (prctl(PR_SET_PDEATHSIG, SIGTERM) < 0)
		_exit(127);
	/* Wait until the pidfile names us (EOF: written, or the parent died). */
	while (read(go[0], &c, 1) < 0 && errno == EINTR)
		;
	close(go[0]);
	if (getppid() != s->self)
		_exit(127);

	fd = fcntl(ex_wr, F_DUPFD_CLOEXEC, first);
	if (fd < 0)
		goto fail;
	ex_wr = fd;
	for (size_t i = 0; i < sp->nfds; i++) {
		sp->src[i] = fcntl(sp->src[i], F_DUPFD_CLOEXEC, first);
		if (sp->src[i] < 0)
			goto fail;
	}
	/* dup2() clears close-on-exec on the copy: these are the inherited ones. */
	for (size_t i = 0; i < sp->nfds; i++)
		if (dup2(sp->src[i], SD_LISTEN_FDS_START + (int)i) < 0)
			goto fail;
	if (close_range((unsigned int)first, ~0u, CLOSE_RANGE_CLOEXEC) < 0) {
		long max = sysconf(_SC_OPEN_MAX);

		for (fd = first; fd < max; fd++)
			(void)fcntl(fd, F_SETFD, FD_CLOEXEC);
	}
	if (sp->pidvar) {
		char digits[16], *p = sp->pidvar + strlen("LISTEN_PID=");
		pid_t pid = getpid();
		int n = 0;

		do
			digits[n++] = (char)('0' + pid % 10);
		while ((pid /= 10) > 0);
		while (n > 0)
			*p++ = digits[--n];
		*p = '\0';
	}
	(void)setrlimit(RLIMIT_NOFILE, &s->orig_nofile);
	signal(SIGPIPE, SIG_DFL);
	sigprocmask(SIG_SETMASK, &s->orig_mask, NULL);
	execvpe(s->o.argv[0], s->o.argv, sp->envp);
fail:
	err = errno;
	(void)!write(ex_wr, &err, sizeof(err));
	_exit(127);
}

static void pidfile_remove(struct sup *s)
{
	if (s->o.pidfile)
		unlink(s->o.pidfile);
}

/*
 * Starts one incarnation. Returns 0 when it runs (exec done), -errno when it
 * could not be started; a child that failed to exec still has to be reaped,
 * and s->child names it.
 */
static int child_start(struct sup *s)
{
	struct spawn sp;
	int go[2], ex[2], err = 0, r;
	ssize_t n;
	pid_t pid;

	/* Whatever is still queued belongs to no one now: refused, fds closed. */
	notify_drain(s);
	r = spawn_prepare(s, &sp);
	if (r < 0)
		return r;
	if (pipe2(go, O_CLOEXEC) < 0) {
		r = -errno;
		goto out;
	}
	if (pipe2(ex, O_CLOEXEC) < 0) {
		r = -errno;
		close(go[0]);
		close(go[1]);
		goto out;
	}
	pid = fork();
	if (pid < 0) {
		r = -errno;
		close(go[0]);
		close(go[1]);
		close(ex[0]);
		close(ex[1]);
		goto out;
	}
	if (pid == 0)
		child_exec(s, &sp, go, ex);

	close(go[0]);
	close(ex[1]);
	s->child = pid;
	s->child_start_ms = now_ms();
	if (s->o.pidfile) {
		r = pidfile_write(s->o.pidfile, pid);
		if (r < 0)
			say(LOG_WARNING, "cannot write pidfile %s: %s", s->o.pidfile, strerror(-r));
	}
	close(go[1]);
	do
		n = read(ex[0], &err, sizeof(err));
	while (n < 0 && errno == EINTR);
	close(ex[0]);
	if (n == sizeof(err)) {
		say(LOG_ERR, "cannot execute %s: %s", s->o.argv[0], strerror(err));
		r = -err;
		goto out;
	}
	say(LOG_INFO, "started pid %d (%s) with %zu fd%s", (int)pid, s->o.argv[0], sp.nfds,
	    sp.nfds == 1 ? "" : "s");
	say(LOG_DEBUG, "passed fds: %s", sp.nfds ? sp.names : "(none)");
	r = 0;
out:
	spawn_free(&sp);
	return r;
}

/* Records a restart; false when the budget for the window is spent. */
static bool restart_allowed(struct sup *s, uint64_t now)
{
	uint64_t window = (uint64_t)s->o.restart_window_s * 1000;
	size_t recent = 0;

	for (size_t i = 0; i < s->nrestarts; i++)
		if (now - s->restarts[i] < window)
			recent++;
	if (recent >= s->o.max_restarts)
		return false;
	s->restarts[s->restart_head] = now;
	s->restart_head = (s->restart_head + 1) % s->o.max_restarts;
	if (s->nrestarts < s->o.max_restarts)
		s->nrestarts++;
	return true;
}

static void schedule_restart(struct sup *s)
{
	uint64_t now = now_ms();

	if (!restart_allowed(s, now)) {
		say(LOG_ERR,
		    "%s died again after %u restart%s within %u s (--max-restarts %u, "
		    "--restart-window-s %u): giving up",
		    s->o.argv[0], s->o.max_restarts, s->o.max_restarts == 1 ? "" : "s",
		    s->o.restart_window_s, s->o.max_restarts, s->o.restart_window_s);
		s->exit_code = EXIT_GAVE_UP;
		s->done = true;
		return;
	}
	s->restart_at = now + s->o.restart_delay_ms;
	say(LOG_INFO, "restarting in %u ms", s->o.restart_delay_ms);
}

/* systemd counts these signals as a clean stop, as it does exit code 0. */
static bool clean_signal(int sig)
{
	return sig == SIGHUP || sig == SIGINT || sig == SIGTERM || sig == SIGPIPE;
}

static void child_exited(struct sup *s, int status)
{
	pid_t pid = s->child;
	uint64_t ms = now_ms() - s->child_start_ms;
	int code;

	if (WIFSIGNALED(status)) {
		say(LOG_INFO, "pid %d was killed by signal %d (%s) after %" PRIu64 ".%03u s",
		    (int)pid, WTERMSIG(status), strsignal(WTERMSIG(status)), ms / 1000,
		    (unsigned int)(ms % 1000));
		code = clean_signal(WTERMSIG(status)) ? 0 : 128 + WTERMSIG(status);
	} else {
		say(LOG_INFO, "pid %d exited with status %d after %" PRIu64 ".%03u s", (int)pid,
		    WEXITSTATUS(status), ms / 1000, (unsigned int)(ms % 1000));
		code = WEXITSTATUS(status);
	}
	s->child = 0;
	s->kill_at = NEVER;
	pidfile_remove(s);
	if (s->fatal) {
		s->exit_code = EXIT_GAVE_UP;
		s->done = true;
	} else if (s->stopping) {
		s->exit_code = code;
		s->done = true;
	} else {
		schedule_restart(s);
	}
}

/*
 * SIGCHLD. The child is inspected without reaping it (WNOWAIT): while it is a
 * zombie its pid stays its own, so what it sent before dying is drained here
 * and still accepted from the main pid. Then it is reaped.
 */
static void child_reap(struct sup *s)
{
	siginfo_t si;
	int status;

	if (s->child <= 0)
		return;
	memset(&si, 0, sizeof(si));
	if (waitid(P_PID, (id_t)s->child, &si, WEXITED | WNOHANG | WNOWAIT) < 0 || si.si_pid == 0)
		return;
	notify_drain(s);
	while (waitpid(s->child, &status, 0) < 0) {
		if (errno != EINTR) {
			say(LOG_ERR, "waitpid %d: %s", (int)s->child, strerror(errno));
			status = W_EXITCODE(255, 0);
			break;
		}
	}
	child_exited(s, status);
}

static void stop_request(struct sup *s, int sig)
{
	if (!s->stopping) {
		say(LOG_INFO, "%s: stopping", strsignal(sig));
		(void)sd_notify(0, "STOPPING=1");
		s->stopping = true;
	}
	if (s->child <= 0) {
		s->exit_code = 0;
		s->done = true;
		return;
	}
	/* Forwarded as SIGTERM whatever we got, as systemd's KillSignal=. */
	kill(s->child, SIGTERM);
	if (s->kill_at == NEVER)
		s->kill_at = now_ms() + (uint64_t)s->o.stop_timeout_s * 1000;
}

static void signals_handle(struct sup *s)
{
	struct signalfd_siginfo si;

	while (read(s->sigfd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
		switch (si.ssi_signo) {
		case SIGCHLD:
			child_reap(s);
			break;
		case SIGTERM:
		case SIGINT:
			stop_request(s, (int)si.ssi_signo);
			break;
		case SIGHUP:
			if (s->child > 0) {
				say(LOG_INFO, "SIGHUP: passed on to pid %d", (int)s->child);
				kill(s->child, SIGHUP);
			}
			break;
		}
	}
	/* SIGCHLDs coalesce; a cheap second look costs nothing. */
	child_reap(s);
}

/* ==== main ================================================================ */

static int run(struct sup *s)
{
	struct pollfd pfd[2] = {
		{ .fd = s->sigfd, .events = POLLIN },
		{ .fd = s->notify_fd, .events = POLLIN },
	};
	int r;

	r = child_start(s);
	if (r < 0) {
		if (s->child <= 0)
			return r;
		/* The first exec failed: no point in trying again. */
		s->fatal = true;
		s->stopping = true;
	}
	while (!s->done) {
		uint64_t now = now_ms(), deadline = NEVER;
		int timeout = -1;

		if (!s->stopping && s->child <= 0)
			deadline = s->restart_at;
		else if (s->stopping && s->child > 0)
			deadline = s->kill_at;
		if (deadline != NEVER)
			timeout = deadline <= now ? 0 : (int)(deadline - now);
		if (poll(pfd, 2, timeout) < 0 && errno != EINTR)
			return -errno;
		/* Signals first: a dead child's last messages are drained (and
		 * accepted from it) on the way to reaping it. */
		if (pfd[0].revents)
			signals_handle(s);
		if (pfd[1].revents)
			notify_drain(s);
		if (s->done)
			break;

		now = now_ms();
		if (!s->stopping && s->child <= 0 && s->restart_at != NEVER &&
		    now >= s->restart_at) {
			s->restart_at = NEVER;
			r = child_start(s);
			if (r < 0 && s->child <= 0) {
				say(LOG_ERR, "cannot start %s: %s", s->o.argv[0], strerror(-r));
				schedule_restart(s);
			}
			/* An exec failure: the child exits 127 and is restarted
			 * (or not) like any other death. */
		}
		if (s->stopping && s->child > 0 && s->kill_at != NEVER && now >= s->kill_at) {
			say(LOG_WARNING, "pid %d still runs %u s after SIGTERM: SIGKILL",
			    (int)s->child, s->o.stop_timeout_s);
			kill(s->child, SIGKILL);
			s->kill_at = NEVER;
		}
	}
	return 0;
}

static int setup(struct sup *s)
{
	sigset_t mask;
	struct rlimit rl;
	int r;

	s->self = getpid();
	/* Make sure 0, 1 and 2 are taken, so no socket of ours becomes a stdio fd. */
	for (;;) {
		int fd = open("/dev/null", O_RDWR | O_CLOEXEC);

		if (fd < 0)
			break;
		if (fd > 2) {
			close(fd);
			break;
		}
		/* A stdio fd must survive exec(): the child inherits it. */
		(void)fcntl(fd, F_SETFD, 0);
	}
	/* Up to --fdstore-max fds arrive through recvmsg(): raise our soft limit
	 * to the hard one, and give the child the original back. */
	if (getrlimit(RLIMIT_NOFILE, &s->orig_nofile) == 0) {
		rl = s->orig_nofile;
		rl.rlim_cur = rl.rlim_max;
		(void)setrlimit(RLIMIT_NOFILE, &rl);
	} else {
		s->orig_nofile.rlim_cur = s->orig_nofile.rlim_max = RLIM_INFINITY;
	}
	signal(SIGPIPE, SIG_IGN);
	sigemptyset(&mask);
	sigaddset(&mask, SIGCHLD);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGHUP);
	if (sigprocmask(SIG_BLOCK, &mask, &s->orig_mask) < 0)
		return -errno;
	s->sigfd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
	if (s->sigfd < 0)
		return -errno;
	if (s->o.max_restarts) {
		s->restarts = calloc(s->o.max_restarts, sizeof(*s->restarts));
		if (!s->restarts)
			return -ENOMEM;
	}
	r = notify_open(s);
	if (r < 0)
		return r;
	if (s->o.listen_path) {
		r = listen_open(s);
		if (r < 0)
			return r;
	}
	return 0;
}

static void teardown(struct sup *s)
{
	store_clear(s);
	listen_close(s);
	if (s->notify_fd >= 0)
		close(s->notify_fd);
	if (s->notify_path)
		unlink(s->notify_path);
	if (s->notify_dir)
		rmdir(s->notify_dir);
	if (s->sigfd >= 0)
		close(s->sigfd);
	pidfile_remove(s);
	free(s->notify_path);
	free(s->notify_dir);
	free(s->restarts);
}

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: " PROG " [OPTIONS] -- COMMAND [ARGS...]\n"
		"Run COMMAND and restart it whenever it dies, playing systemd's part of the\n"
		"notify protocol (sd_notify(3)): READY=1, STATUS=, STOPPING=1, RELOADING=1,\n"
		"WATCHDOG=1 are logged; FDSTORE=1 with FDNAME= keeps the fds sent with it,\n"
		"FDSTOREREMOVE=1 with FDNAME= closes every stored fd of that name, BARRIER=1\n"
		"is answered. Only COMMAND's own pid may notify (NotifyAccess=main).\n"
		"\n"
		"Each incarnation gets NOTIFY_SOCKET, and as fds 3, 4, ... the --listen socket\n"
		"(named \"listen\") and then the stored fds in the order they arrived, with\n"
		"LISTEN_FDS, LISTEN_FDNAMES and LISTEN_PID as systemd sets them (not set when\n"
		"there is no fd to pass). No other fd is inherited.\n"
		"\n"
		"Options:\n"
		"  -l, --listen PATH          create a listening Unix stream socket at PATH\n"
		"                             and pass it to every incarnation, so clients\n"
		"                             wait in its backlog while COMMAND is down\n"
		"  -m, --socket-mode MODE     its permissions, octal (default 0666)\n"
		"  -p, --pidfile PATH         write the pid of the running COMMAND to PATH at\n"
		"                             every start; removed when it dies\n"
		"      --fdstore-max N        keep at most N stored fds; more are closed\n"
		"                             with a warning (default %u)\n"
		"      --restart-delay-ms MS  wait MS ms before a restart (default %u)\n"
		"      --max-restarts N       give up (exit 1) when COMMAND dies again after\n"
		"                             N restarts within --restart-window-s (default %u)\n"
		"      --restart-window-s S   that window in seconds (default %u)\n"
		"      --stop-timeout-s S     on stop, SIGKILL COMMAND if it still runs S\n"
		"                             seconds after SIGTERM (default %u)\n"
		"  -v, --verbose              also log fd store changes and watchdog pings\n"
		"  -h, --help                 this text\n"
		"  -V, --version              the version\n"
		"\n"
		"Signals: SIGTERM or SIGINT stops: SIGTERM to COMMAND, wait for it, exit.\n"
		"SIGHUP is passed on to COMMAND.\n"
		"\n"
		"The notify socket lives in a private directory under $RUNTIME_DIRECTORY,\n"
		"else /run, else /tmp, removed at exit (so is the --listen socket).\n"
		"\n"
		"Exit status: 0 stopped on request and COMMAND exited 0 or on SIGTERM (or\n"
		"SIGINT, SIGHUP, SIGPIPE); after a stop request, COMMAND's own exit code if\n"
		"it was another, 128+N if signal N killed it; 1 gave up (--max-restarts), the\n"
		"first start failed, or another error; 2 usage error.\n",
		DEFAULT_FDSTORE_MAX, DEFAULT_RESTART_DELAY_MS, DEFAULT_MAX_RESTARTS,
		DEFAULT_RESTART_WINDOW_S, DEFAULT_STOP_TIMEOUT_S);
}

static int usage_error(void)
{
	fprintf(stderr, "Try '" PROG " --help' for more information.\n");
	return EXIT_USAGE;
}

static int parse_uint(const char *opt, const char *arg, unsigned int max, int base,
		      unsigned int *ret)
{
	unsigned long v;
	char *end;

	errno = 0;
	v = strtoul(arg, &end, base);
	if (errno || end == arg || *end || arg[0] == '-' || v > max) {
		fprintf(stderr, PROG ": invalid %s '%s' (%s number, at most %u%s)\n", opt, arg,
			base == 8 ? "an octal" : "a", max, base == 8 ? " decimal" : "");
		return -EINVAL;
	}
	*ret = (unsigned int)v;
	return 0;
}

enum {
	OPT_FDSTORE_MAX = 0x100,
	OPT_RESTART_DELAY,
	OPT_MAX_RESTARTS,
	OPT_RESTART_WINDOW,
	OPT_STOP_TIMEOUT,
};

static int parse_args(int argc, char **argv, struct opts *o)
{
	static const struct option longopts[] = {
		{ "listen", required_argument, NULL, 'l' },
		{ "socket-mode", required_argument, NULL, 'm' },
		{ "pidfile", required_argument, NULL, 'p' },
		{ "fdstore-max", required_argument, NULL, OPT_FDSTORE_MAX },
		{ "restart-delay-ms", required_argument, NULL, OPT_RESTART_DELAY },
		{ "max-restarts", required_argument, NULL, OPT_MAX_RESTARTS },
		{ "restart-window-s", required_argument, NULL, OPT_RESTART_WINDOW },
		{ "stop-timeout-s", required_argument, NULL, OPT_STOP_TIMEOUT },
		{ "verbose", no_argument, NULL, 'v' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ 0 }
	};
	unsigned int mode;
	int c;

	/* "+": stop at COMMAND, whose options are its own. */
	while ((c = getopt_long(argc, argv, "+l:m:p:vhV", longopts, NULL)) != -1) {
		switch (c) {
		case 'l':
			o->listen_path = optarg;
			break;
		case 'm':
			if (parse_uint("--socket-mode", optarg, 0777, 8, &mode))
				return usage_error();
			o->socket_mode = (mode_t)mode;
			break;
		case 'p':
			o->pidfile = optarg;
			break;
		case OPT_FDSTORE_MAX:
			if (parse_uint("--fdstore-max", optarg, MAX_FDSTORE_MAX, 10,
				       &o->fdstore_max))
				return usage_error();
			break;
		case OPT_RESTART_DELAY:
			if (parse_uint("--restart-delay-ms", optarg, MAX_DELAY_MS, 10,
				       &o->restart_delay_ms))
				return usage_error();
			break;
		case OPT_MAX_RESTARTS:
			if (parse_uint("--max-restarts", optarg, MAX_MAX_RESTARTS, 10,
				       &o->max_restarts))
				return usage_error();
			break;
		case OPT_RESTART_WINDOW:
			if (parse_uint("--restart-window-s", optarg, MAX_SECONDS, 10,
				       &o->restart_window_s))
				return usage_error();
			break;
		case OPT_STOP_TIMEOUT:
			if (parse_uint("--stop-timeout-s", optarg, MAX_SECONDS, 10,
				       &o->stop_timeout_s))
				return usage_error();
			break;
		case 'v':
			o->verbose++;
			break;
		case 'h':
			usage(stdout);
			exit(0);
		case 'V':
			printf(PROG " %s\n", IOVAD_VERSION);
			exit(0);
		default:
			return usage_error();
		}
	}
	if (optind >= argc) {
		fprintf(stderr, PROG ": no COMMAND given\n");
		return usage_error();
	}
	if (o->listen_path && !*o->listen_path) {
		fprintf(stderr, PROG ": --listen needs a path\n");
		return usage_error();
	}
	o->argv = argv + optind;
	return 0;
}

int main(int argc, char **argv)
{
	struct sup s = {
		.o = {
			.socket_mode = DEFAULT_SOCKET_MODE,
			.fdstore_max = DEFAULT_FDSTORE_MAX,
			.restart_delay_ms = DEFAULT_RESTART_DELAY_MS,
			.max_restarts = DEFAULT_MAX_RESTARTS,
			.restart_window_s = DEFAULT_RESTART_WINDOW_S,
			.stop_timeout_s = DEFAULT_STOP_TIMEOUT_S,
		},
		.sigfd = -1,
		.notify_fd = -1,
		.listen_fd = -1,
		.restart_at = NEVER,
		.kill_at = NEVER,
		.exit_code = EXIT_GAVE_UP,
	};
	int r;

	r = parse_args(argc, argv, &s.o);
	if (r)
		return r;
	verbosity = s.o.verbose;

	r = setup(&s);
	if (r == 0)
		r = run(&s);
	if (r < 0) {
		say(LOG_ERR, "%s", strerror(-r));
		s.exit_code = EXIT_GAVE_UP;
		if (s.child > 0) {
			/* Do not leave the daemon behind without its manager. */
			kill(s.child, SIGKILL);
			(void)waitpid(s.child, NULL, 0);
		}
	}
	teardown(&s);
	say(LOG_DEBUG, "exit %d", s.exit_code);
	return s.exit_code;
}
