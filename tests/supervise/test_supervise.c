// SPDX-License-Identifier: MIT
/*
 * test_supervise.c - iovad-supervise as a service manager: the fd store kept
 * across kill -9 (with the last FDSTORE still queued when the daemon dies),
 * FDSTOREREMOVE, the --listen socket kept across restarts with a client
 * waiting in its backlog, notifications from a foreign pid refused, bad fds
 * refused, --fdstore-max, --max-restarts, SIGHUP, SIGTERM and the stop
 * timeout, exec failures and usage errors.
 *
 * The daemon is fdstore-child, driven over a SOCK_SEQPACKET connection that
 * each incarnation opens to the test (see fdstore-child.c). Synchronisation
 * is by events, never by sleeping: the child's hello, its answers, pidfds
 * (a process that died), and sd_notify_barrier() (the supervisor processed
 * every notification before it). The supervisor is stopped with SIGSTOP where
 * a test needs something to happen while it cannot react.
 *
 * IOVAD_SUPERVISE_WRAPPER (e.g. "valgrind --error-exitcode=99 -q") runs the
 * supervisor under a wrapper; every test checks its exit status, so errors
 * the wrapper reports fail the test. IOVAD_TEST_TIMEOUT_SCALE stretches the
 * waits for slow wrappers.
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#define MAX_FDS 64
#define MSG_MAX 65536

struct h {
	char dir[64];
	char ctl_path[128];
	char pidfile[128];
	char log[128];
	char listen_path[128];
	int ctl; /* listening: each incarnation connects here */
	pid_t sup;
	int sup_pidfd;
	int timeout_ms;
	bool passed;
};

struct inc {
	int conn;
	pid_t pid;
	int n;
	int leaked;
	char notify[PATH_MAX];
	int nfd;
	struct {
		int fd;
		char name[256];
		char kind[16];
		char info[300];
	} fds[MAX_FDS];
};

static struct h H;

static pid_t read_pidfile(void);

static int pidfd_open_(pid_t pid)
{
	return (int)syscall(SYS_pidfd_open, pid, 0);
}

/* ==== fixture ============================================================= */

static void setup(void)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	const char *scale = getenv("IOVAD_TEST_TIMEOUT_SCALE");

	memset(&H, 0, sizeof(H));
	H.sup = -1;
	H.sup_pidfd = -1;
	H.timeout_ms = 10000 * (scale && atoi(scale) > 0 ? atoi(scale) : 1);
	strcpy(H.dir, "/tmp/iovad-sup-test.XXXXXX");
	cr_assert_not_null(mkdtemp(H.dir));
	snprintf(H.ctl_path, sizeof(H.ctl_path), "%s/ctl.sock", H.dir);
	snprintf(H.pidfile, sizeof(H.pidfile), "%s/daemon.pid", H.dir);
	snprintf(H.log, sizeof(H.log), "%s/supervise.log", H.dir);
	snprintf(H.listen_path, sizeof(H.listen_path), "%s/run/iovad.sock", H.dir);
	H.ctl = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	cr_assert_geq(H.ctl, 0);
	strcpy(sa.sun_path, H.ctl_path);
	cr_assert_eq(bind(H.ctl, (struct sockaddr *)&sa, sizeof(sa)), 0);
	cr_assert_eq(listen(H.ctl, 16), 0);
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static void dump_log(void)
{
	char buf[4096];
	FILE *f = fopen(H.log, "r");
	size_t n;

	if (!f)
		return;
	fprintf(stderr, "---- %s ----\n", H.log);
	while ((n = fread(buf, 1, sizeof(buf), f)) > 0)
		fwrite(buf, 1, n, stderr);
	fprintf(stderr, "----\n");
	fclose(f);
}

static void teardown(void)
{
	if (!H.passed)
		dump_log();
	if (H.sup > 0) {
		/* A failed test: leave no daemon behind, even one that ignores
		 * the SIGTERM its supervisor's death sends it. */
		pid_t child = read_pidfile();

		if (child > 0)
			kill(child, SIGKILL);
		kill(H.sup, SIGCONT);
		kill(H.sup, SIGKILL);
		waitpid(H.sup, NULL, 0);
	}
	if (H.sup_pidfd >= 0)
		close(H.sup_pidfd);
	close(H.ctl);
	nftw(H.dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

TestSuite(supervise, .init = setup, .fini = teardown, .timeout = 60);

/* ==== the supervisor ====================================================== */

/*
 * Starts iovad-supervise with --pidfile and the given options (NULL-terminated),
 * then "-- fdstore-child CTL" unless the options hold their own "--".
 */
static void sup_start(const char *opt, ...)
{
	const char *argv[64];
	char wrap[512];
	const char *w = getenv("IOVAD_SUPERVISE_WRAPPER");
	bool has_cmd = false;
	va_list ap;
	int n = 0;

	if (w && *w) {
		snprintf(wrap, sizeof(wrap), "%s", w);
		for (char *save = NULL, *t = strtok_r(wrap, " ", &save); t && n < 32;
		     t = strtok_r(NULL, " ", &save))
			argv[n++] = t;
	}
	argv[n++] = IOVAD_SUPERVISE_PATH;
	argv[n++] = "--pidfile";
	argv[n++] = H.pidfile;
	va_start(ap, opt);
	for (const char *a = opt; a && n < 58; a = va_arg(ap, const char *)) {
		has_cmd |= !strcmp(a, "--");
		argv[n++] = a;
	}
	va_end(ap);
	if (!has_cmd) {
		argv[n++] = "--";
		argv[n++] = FDSTORE_CHILD_PATH;
		argv[n++] = H.ctl_path;
	}
	argv[n] = NULL;

	H.sup = fork();
	cr_assert_geq(H.sup, 0);
	if (H.sup == 0) {
		int fd = open(H.log, O_WRONLY | O_CREAT | O_APPEND, 0644);

		/* A test that dies does not leave a supervisor behind. */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (fd < 0 || dup2(fd, 1) < 0 || dup2(fd, 2) < 0)
			_exit(126);
		setenv("RUNTIME_DIRECTORY", H.dir, 1);
		unsetenv("NOTIFY_SOCKET");
		execvp(argv[0], (char **)argv);
		_exit(127);
	}
	H.sup_pidfd = pidfd_open_(H.sup);
	cr_assert_geq(H.sup_pidfd, 0);
}

/* Waits for the supervisor to exit; returns its exit code (128+N: signal N). */
static int sup_wait(void)
{
	struct pollfd p = { .fd = H.sup_pidfd, .events = POLLIN };
	int status;

	cr_assert_eq(poll(&p, 1, H.timeout_ms), 1, "the supervisor did not exit");
	cr_assert_eq(waitpid(H.sup, &status, 0), H.sup);
	H.sup = -1;
	close(H.sup_pidfd);
	H.sup_pidfd = -1;
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* SIGTERM, and it must exit 0: stopped on request, nothing reported. */
static void sup_stop(void)
{
	cr_assert_eq(kill(H.sup, SIGTERM), 0);
	cr_assert_eq(sup_wait(), 0, "exit status of a requested stop");
}

static int log_count(const char *needle)
{
	static char buf[1 << 20];
	FILE *f = fopen(H.log, "r");
	size_t n;
	int count = 0;

	if (!f)
		return 0;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	for (char *p = strstr(buf, needle); p; p = strstr(p + 1, needle))
		count++;
	return count;
}

/* How many memfds named name the supervisor holds (its fd store). */
static int sup_memfds(const char *name)
{
	char dir[64], path[PATH_MAX], target[PATH_MAX], want[300];
	struct dirent *e;
	int count = 0;
	DIR *d;

	snprintf(dir, sizeof(dir), "/proc/%d/fd", (int)H.sup);
	snprintf(want, sizeof(want), "/memfd:%s (deleted)", name);
	d = opendir(dir);
	cr_assert_not_null(d);
	while ((e = readdir(d))) {
		ssize_t n;

		snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
		n = readlink(path, target, sizeof(target) - 1);
		if (n < 0)
			continue;
		target[n] = '\0';
		count += !strcmp(target, want);
	}
	closedir(d);
	return count;
}

static pid_t read_pidfile(void)
{
	FILE *f = fopen(H.pidfile, "r");
	int pid = -1;

	if (!f)
		return -1;
	if (fscanf(f, "%d", &pid) != 1)
		pid = -1;
	fclose(f);
	return pid;
}

/* Kills pid and returns once it is dead (a zombie: not reaped yet). */
static void kill_dead(pid_t pid, int sig)
{
	int pfd = pidfd_open_(pid);
	struct pollfd p = { .fd = pfd, .events = POLLIN };

	cr_assert_geq(pfd, 0);
	cr_assert_eq(kill(pid, sig), 0);
	cr_assert_eq(poll(&p, 1, H.timeout_ms), 1, "pid %d did not die", (int)pid);
	close(pfd);
}

/* ==== incarnations ======================================================== */

static ssize_t recv_msg(int fd, char *buf, size_t size)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };
	ssize_t n;

	cr_assert_eq(poll(&p, 1, H.timeout_ms), 1, "no message from the child");
	n = recv(fd, buf, size - 1, 0);
	cr_assert_geq(n, 0);
	buf[n] = '\0';
	return n;
}

/* The next incarnation: its connection and its report. */
static void inc_accept(struct inc *in)
{
	struct pollfd p = { .fd = H.ctl, .events = POLLIN };
	char *buf = malloc(MSG_MAX), *line, *save = NULL;

	cr_assert_not_null(buf);
	memset(in, 0, sizeof(*in));
	cr_assert_eq(poll(&p, 1, H.timeout_ms), 1, "no incarnation connected");
	in->conn = accept4(H.ctl, NULL, NULL, SOCK_CLOEXEC);
	cr_assert_geq(in->conn, 0);
	recv_msg(in->conn, buf, MSG_MAX);
	for (line = strtok_r(buf, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		int pid;

		if (sscanf(line, "hello pid=%d n=%d leaked=%d notify=%4095s", &pid, &in->n,
			   &in->leaked, in->notify) == 4) {
			in->pid = pid;
		} else {
			cr_assert_lt(in->nfd, MAX_FDS);
			cr_assert_eq(sscanf(line, "fd %d %255s %15s %299s", &in->fds[in->nfd].fd,
					    in->fds[in->nfd].name, in->fds[in->nfd].kind,
					    in->fds[in->nfd].info),
				     4, "bad line '%s'", line);
			in->nfd++;
		}
	}
	free(buf);
	cr_assert_gt(in->pid, 0, "no hello");
	cr_assert_eq(in->nfd, in->n);
	cr_assert_eq(in->leaked, 0, "pid %d inherited %d fds it was not given", (int)in->pid,
		     in->leaked);
	cr_assert_eq(read_pidfile(), in->pid, "the pidfile names the running child");
	for (int i = 0; i < in->nfd; i++)
		cr_assert_eq(in->fds[i].fd, 3 + i);
}

static void inc_cmd(struct inc *in, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* One command; the child must answer "ok". */
static void inc_cmd(struct inc *in, const char *fmt, ...)
{
	char cmd[4096], ans[4096];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	cr_assert_eq(send(in->conn, cmd, (size_t)n, MSG_NOSIGNAL), n);
	recv_msg(in->conn, ans, sizeof(ans));
	cr_assert_str_eq(ans, "ok", "'%s' answered '%s'", cmd, ans);
}

static void inc_expect(struct inc *in, const char *what)
{
	char ans[4096];

	recv_msg(in->conn, ans, sizeof(ans));
	cr_assert_str_eq(ans, what);
}

/* How many fds named name it got; *info the last one's. */
static int inc_count(const struct inc *in, const char *name, const char **info)
{
	int count = 0;

	for (int i = 0; i < in->nfd; i++) {
		if (strcmp(in->fds[i].name, name))
			continue;
		count++;
		if (info)
			*info = in->fds[i].info;
	}
	return count;
}

static void inc_close(struct inc *in)
{
	close(in->conn);
	in->conn = -1;
}

/* ==== tests =============================================================== */

Test(supervise, stored_memfd_survives_kill9)
{
	struct inc a, b;
	const char *info = NULL;
	char want[64];

	sup_start("--restart-delay-ms", "10", NULL);
	inc_accept(&a);
	cr_assert_eq(a.nfd, 0);
	cr_assert_null(getenv("LISTEN_FDS"));

	/*
	 * The supervisor is stopped, so the FDSTORE datagram is still queued
	 * when the child dies: it must be read before the child is reaped and
	 * restarted, or the next incarnation would not get the memfd.
	 */
	cr_assert_eq(kill(H.sup, SIGSTOP), 0);
	inc_cmd(&a, "store blob written-by-%d", (int)a.pid);
	kill_dead(a.pid, SIGKILL);
	cr_assert_eq(kill(H.sup, SIGCONT), 0);
	inc_close(&a);

	inc_accept(&b);
	cr_assert_neq(b.pid, a.pid);
	cr_assert_eq(inc_count(&b, "blob", &info), 1, "the memfd came back");
	snprintf(want, sizeof(want), "written-by-%d", (int)a.pid);
	cr_assert_str_eq(info, want, "with the bytes the first incarnation wrote");
	cr_assert_eq(log_count("was killed by signal 9"), 1);

	/* And to every later incarnation, not only the next one. */
	kill_dead(b.pid, SIGKILL);
	inc_close(&b);
	inc_accept(&b);
	cr_assert_eq(inc_count(&b, "blob", &info), 1);
	cr_assert_str_eq(info, want);
	inc_close(&b);
	sup_stop();
	H.passed = true;
}

Test(supervise, fdstoreremove_drops_every_fd_of_the_name)
{
	struct inc a, b;
	const char *info = NULL;

	sup_start("--restart-delay-ms", "10", NULL);
	inc_accept(&a);
	inc_cmd(&a, "store keep k1");
	inc_cmd(&a, "store blob b1");
	inc_cmd(&a, "store blob b2");
	inc_cmd(&a, "barrier");
	cr_assert_eq(sup_memfds("blob"), 2);
	cr_assert_eq(sup_memfds("keep"), 1);

	inc_cmd(&a, "remove blob");
	inc_cmd(&a, "barrier");
	cr_assert_eq(sup_memfds("blob"), 0, "FDSTOREREMOVE closed both");
	cr_assert_eq(sup_memfds("keep"), 1);
	kill_dead(a.pid, SIGKILL);
	inc_close(&a);

	inc_accept(&b);
	cr_assert_eq(b.nfd, 1);
	cr_assert_eq(inc_count(&b, "keep", &info), 1);
	cr_assert_str_eq(info, "k1");
	cr_assert_eq(inc_count(&b, "blob", NULL), 0);
	inc_close(&b);
	sup_stop();
	H.passed = true;
}

static int connect_to(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	cr_assert_geq(fd, 0);
	strcpy(sa.sun_path, path);
	cr_assert_eq(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0, "connect %s: %s", path,
		     strerror(errno));
	return fd;
}

static void expect_greeting(int fd, pid_t pid)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };
	char buf[64], want[64];
	ssize_t n;

	cr_assert_eq(poll(&p, 1, H.timeout_ms), 1);
	n = read(fd, buf, sizeof(buf) - 1);
	cr_assert_gt(n, 0);
	buf[n] = '\0';
	snprintf(want, sizeof(want), "hello-from-%d", (int)pid);
	cr_assert_str_eq(buf, want);
	close(fd);
}

Test(supervise, listen_socket_is_the_same_across_restarts)
{
	struct inc a, b;
	const char *ino_a = NULL, *ino_b = NULL;
	struct stat st;
	int c1, c2;

	sup_start("--restart-delay-ms", "10", "--listen", H.listen_path, NULL);
	inc_accept(&a);
	cr_assert_eq(a.nfd, 1);
	cr_assert_str_eq(a.fds[0].name, "listen", "the socket comes first, named listen");
	cr_assert_str_eq(a.fds[0].kind, "listen");
	ino_a = a.fds[0].info;
	cr_assert_eq(stat(H.listen_path, &st), 0);
	cr_assert(S_ISSOCK(st.st_mode));
	cr_assert_eq(st.st_mode & 0777, 0666, "default --socket-mode");

	c1 = connect_to(H.listen_path);
	inc_cmd(&a, "accept");
	expect_greeting(c1, a.pid);
	inc_cmd(&a, "store first one");
	inc_cmd(&a, "store second two");

	/* A client that connects while no daemon runs waits in the backlog. */
	cr_assert_eq(kill(H.sup, SIGSTOP), 0);
	kill_dead(a.pid, SIGKILL);
	c2 = connect_to(H.listen_path);
	cr_assert_eq(kill(H.sup, SIGCONT), 0);
	inc_close(&a);

	inc_accept(&b);
	cr_assert_eq(b.nfd, 3);
	cr_assert_eq(inc_count(&b, "listen", &ino_b), 1);
	cr_assert_str_eq(ino_b, ino_a, "the very same socket");
	/* fd 3 the socket, then the stored fds in order, each under its name. */
	cr_assert_str_eq(b.fds[0].name, "listen");
	cr_assert_str_eq(b.fds[0].kind, "listen");
	cr_assert_str_eq(b.fds[1].name, "first");
	cr_assert_str_eq(b.fds[1].info, "one");
	cr_assert_str_eq(b.fds[2].name, "second");
	cr_assert_str_eq(b.fds[2].info, "two");
	inc_cmd(&b, "accept");
	expect_greeting(c2, b.pid);
	inc_close(&b);
	sup_stop();
	cr_assert_neq(stat(H.listen_path, &st), 0, "the socket file is removed at exit");
	H.passed = true;
}

Test(supervise, notification_from_a_foreign_pid_is_refused)
{
	struct inc a, b;

	sup_start("--restart-delay-ms", "10", NULL);
	inc_accept(&a);
	inc_cmd(&a, "foreign alien");
	inc_cmd(&a, "store mine m");
	inc_cmd(&a, "barrier");
	cr_assert_eq(sup_memfds("alien"), 0, "the foreign fd was closed, not stored");
	cr_assert_eq(sup_memfds("mine"), 1);
	cr_assert_eq(log_count("refused a notification from pid"), 1);
	cr_assert_eq(log_count("not the main process"), 1);
	kill_dead(a.pid, SIGKILL);
	inc_close(&a);

	inc_accept(&b);
	cr_assert_eq(inc_count(&b, "mine", NULL), 1);
	cr_assert_eq(inc_count(&b, "alien", NULL), 0);
	inc_close(&b);
	sup_stop();
	H.passed = true;
}

Test(supervise, bad_fds_are_closed_not_stored)
{
	struct inc a, b;
	char longname[300];

	memset(longname, 'x', 256);
	longname[256] = '\0';
	sup_start("--restart-delay-ms", "10", NULL);
	inc_accept(&a);
	inc_cmd(&a, "send 1 FDSTORE=1\\nFDNAME=a:b");
	inc_cmd(&a, "send 1 FDSTORE=1\\nFDNAME=");
	inc_cmd(&a, "send 1 FDSTORE=1\\nFDNAME=%s", longname);
	inc_cmd(&a, "send 2 STATUS=fds without FDSTORE");
	inc_cmd(&a, "send 0 FDSTOREREMOVE=1");
	/* The same open file twice in one message is stored once. */
	inc_cmd(&a, "storedup twice");
	/* 255 characters is still a valid name; FDPOLL=0 is accepted. */
	longname[255] = '\0';
	inc_cmd(&a, "send 1 FDSTORE=1\\nFDPOLL=0\\nFDNAME=%s", longname);
	inc_cmd(&a, "barrier");
	cr_assert_eq(sup_memfds("send"), 1, "only the 255-character name was stored");
	cr_assert_eq(sup_memfds("twice"), 1);
	cr_assert_eq(log_count("invalid FDNAME="), 3);
	cr_assert_eq(log_count("without FDSTORE=1: closed"), 1);
	cr_assert_eq(log_count("FDSTOREREMOVE=1 without a valid FDNAME="), 1);
	kill_dead(a.pid, SIGKILL);
	inc_close(&a);

	inc_accept(&b);
	cr_assert_eq(b.nfd, 2);
	cr_assert_str_eq(b.fds[0].name, "twice", "in arrival order");
	cr_assert_str_eq(b.fds[1].name, longname);
	inc_close(&b);
	sup_stop();
	H.passed = true;
}

Test(supervise, fdstore_max_caps_the_store)
{
	struct inc a, b;

	sup_start("--restart-delay-ms", "10", "--fdstore-max", "3", NULL);
	inc_accept(&a);
	inc_cmd(&a, "storen x 5");
	inc_cmd(&a, "barrier");
	cr_assert_eq(sup_memfds("x"), 3);
	cr_assert_eq(log_count("fd store full (--fdstore-max 3): 2 fds"), 1);
	inc_cmd(&a, "store y 1");
	inc_cmd(&a, "barrier");
	cr_assert_eq(sup_memfds("y"), 0);
	cr_assert_eq(log_count("fd store full"), 2);
	kill_dead(a.pid, SIGKILL);
	inc_close(&a);

	inc_accept(&b);
	cr_assert_eq(b.nfd, 3);
	cr_assert_eq(inc_count(&b, "x", NULL), 3);
	/* Removing makes room again. */
	inc_cmd(&b, "remove x");
	inc_cmd(&b, "store y 1");
	inc_cmd(&b, "barrier");
	cr_assert_eq(sup_memfds("x"), 0);
	cr_assert_eq(sup_memfds("y"), 1);
	inc_close(&b);
	sup_stop();
	H.passed = true;
}

Test(supervise, max_restarts_gives_up_with_exit_1)
{
	struct inc a;

	sup_start("--restart-delay-ms", "10", "--max-restarts", "2", "--restart-window-s", "60",
		  NULL);
	for (int i = 0; i < 3; i++) {
		inc_accept(&a);
		inc_cmd(&a, "exit 3");
		inc_close(&a);
	}
	cr_assert_eq(sup_wait(), 1, "gave up");
	cr_assert_eq(log_count("started pid"), 3, "the first start and two restarts");
	cr_assert_eq(log_count("exited with status 3"), 3);
	cr_assert_eq(log_count("giving up"), 1);
	cr_assert_neq(access(H.pidfile, F_OK), 0);
	H.passed = true;
}

Test(supervise, sigterm_stops_cleanly)
{
	struct inc a;
	char dir[PATH_MAX], *slash;
	struct stat st;

	sup_start("--listen", H.listen_path, "--socket-mode", "0660", NULL);
	inc_accept(&a);
	cr_assert_eq(strncmp(a.notify, H.dir, strlen(H.dir)), 0,
		     "NOTIFY_SOCKET %s under $RUNTIME_DIRECTORY", a.notify);
	snprintf(dir, sizeof(dir), "%s", a.notify);
	slash = strrchr(dir, '/');
	cr_assert_not_null(slash);
	*slash = '\0';
	cr_assert_eq(stat(dir, &st), 0);
	cr_assert(S_ISDIR(st.st_mode));
	cr_assert_eq(stat(H.listen_path, &st), 0);
	cr_assert_eq(st.st_mode & 0777, 0660, "--socket-mode");
	inc_cmd(&a, "ready");

	cr_assert_eq(kill(H.sup, SIGHUP), 0);
	inc_expect(&a, "hup");
	cr_assert_eq(kill(H.sup, SIGTERM), 0);
	inc_expect(&a, "bye");
	cr_assert_eq(sup_wait(), 0);
	cr_assert_eq(log_count("is ready"), 1);
	cr_assert_eq(log_count("status: serving as"), 1);
	cr_assert_eq(log_count("is stopping"), 1);
	cr_assert_eq(log_count("started pid"), 1, "not restarted after a requested stop");
	cr_assert_neq(stat(dir, &st), 0, "the notify directory %s is removed", dir);
	cr_assert_eq(errno, ENOENT);
	cr_assert_neq(stat(H.listen_path, &st), 0, "the listening socket is removed");
	cr_assert_neq(access(H.pidfile, F_OK), 0, "the pidfile is removed");
	cr_assert_eq(kill(a.pid, 0), -1, "the child is gone");
	inc_close(&a);
	H.passed = true;
}

Test(supervise, stop_timeout_kills_a_child_that_ignores_sigterm)
{
	struct inc a;

	sup_start("--stop-timeout-s", "1", NULL);
	inc_accept(&a);
	inc_cmd(&a, "ignoreterm");
	cr_assert_eq(kill(H.sup, SIGTERM), 0);
	inc_expect(&a, "term-ignored");
	cr_assert_eq(sup_wait(), 128 + SIGKILL, "the child's fate is the exit status");
	cr_assert_eq(log_count("after SIGTERM: SIGKILL"), 1);
	inc_close(&a);
	H.passed = true;
}

Test(supervise, exec_failure_is_an_error)
{
	sup_start("--", "/nonexistent/iovad", NULL);
	cr_assert_eq(sup_wait(), 1);
	cr_assert_eq(log_count("cannot execute /nonexistent/iovad"), 1);
	cr_assert_eq(log_count("started pid"), 0);
	H.passed = true;
}

Test(supervise, usage_errors_exit_2)
{
	sup_start(NULL); /* with a command: fine, stop it right away */
	{
		struct inc a;

		inc_accept(&a);
		inc_close(&a);
		sup_stop();
	}
	sup_start("--fdstore-max", "many", NULL);
	cr_assert_eq(sup_wait(), 2);
	sup_start("--socket-mode", "0999", NULL);
	cr_assert_eq(sup_wait(), 2);
	sup_start("--no-such-option", NULL);
	cr_assert_eq(sup_wait(), 2);
	sup_start("--", NULL); /* no COMMAND */
	cr_assert_eq(sup_wait(), 2);
	H.passed = true;
}
