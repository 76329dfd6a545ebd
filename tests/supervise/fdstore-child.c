// SPDX-License-Identifier: MIT
/*
 * fdstore-child.c - the daemon stand-in of tests/supervise: iovad-supervise
 * runs it, and the test drives it. It uses libsystemd's real calls, so what
 * passes here passes for a daemon using them under systemd.
 *
 *   fdstore-child CONTROL_SOCKET
 *
 * At start it connects to CONTROL_SOCKET (SOCK_SEQPACKET, the test listens)
 * and sends a report of what it inherited:
 *
 *   hello pid=P n=N leaked=L notify=PATH
 *   fd FD NAME KIND INFO       (one line per fd from sd_listen_fds_with_names)
 *
 * KIND is "listen" (a listening Unix stream socket; INFO ino=INODE), "memfd"
 * (INFO: its contents) or "other". leaked counts open fds beyond 2 that are
 * not among the N passed ones: it must be 0. Then it runs one command per
 * message and answers "ok" (or "err ..."):
 *
 *   store NAME TEXT      a memfd holding TEXT, FDSTORE=1 FDNAME=NAME
 *   storen NAME COUNT    COUNT memfds in one FDSTORE=1 message
 *   storedup NAME        one memfd twice (fd and a dup) in one message
 *   remove NAME          FDSTOREREMOVE=1 FDNAME=NAME
 *   send NFDS MESSAGE    MESSAGE ("\n" for newlines) with NFDS memfds named
 *                        "send"
 *   foreign NAME         a forked grandchild stores a memfd NAME (its own pid)
 *   barrier              sd_notify_barrier(): all before it was processed
 *   ready                READY=1 and a STATUS=
 *   accept               accept one connection on the fd named "listen" and
 *                        write "hello-from-PID" to it
 *   ignoreterm           ignore SIGTERM from now on
 *   exit CODE            answer, then exit with CODE
 *
 * On SIGHUP it sends "hup"; on SIGTERM "bye" (after STOPPING=1) and exits 0,
 * or with ignoreterm "term-ignored" and goes on.
 */
#include <dirent.h>
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#define MSG_MAX 65536

static int ctl = -1;
static char **names;
static int nfds;

static void reply(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void reply(const char *fmt, ...)
{
	char buf[4096];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	if (ctl >= 0 && n > 0)
		(void)send(ctl, buf, (size_t)n, MSG_NOSIGNAL);
}

/* Open fds above 2 that sd_listen_fds_with_names() did not account for. */
static int count_leaked(int passed)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	int leaked = 0;

	if (!d)
		return -1;
	while ((e = readdir(d))) {
		int fd = atoi(e->d_name);

		if (e->d_name[0] == '.' || fd == dirfd(d) || fd <= 2)
			continue;
		if (fd >= SD_LISTEN_FDS_START + passed)
			leaked++;
	}
	closedir(d);
	return leaked;
}

static int memfd_with(const char *name, const char *text)
{
	int fd = memfd_create(name, MFD_CLOEXEC);

	if (fd < 0)
		return -errno;
	if (write(fd, text, strlen(text)) != (ssize_t)strlen(text)) {
		close(fd);
		return -EIO;
	}
	return fd;
}

static void hello(int leaked)
{
	char *buf = malloc(MSG_MAX);
	const char *ns = getenv("NOTIFY_SOCKET");
	size_t len = 0;

	if (!buf)
		exit(1);
	len += (size_t)snprintf(buf + len, MSG_MAX - len, "hello pid=%d n=%d leaked=%d notify=%s\n",
				(int)getpid(), nfds, leaked, ns ? ns : "-");
	for (int i = 0; i < nfds && len < MSG_MAX - 512; i++) {
		int fd = SD_LISTEN_FDS_START + i;
		char info[300] = "-";
		const char *kind = "other";
		struct stat st;
		ssize_t n;

		if (sd_is_socket_unix(fd, SOCK_STREAM, 1, NULL, 0) > 0 && fstat(fd, &st) == 0) {
			kind = "listen";
			snprintf(info, sizeof(info), "ino=%lu", (unsigned long)st.st_ino);
		} else if ((n = pread(fd, info, 256, 0)) >= 0) {
			kind = "memfd";
			info[n] = '\0';
			if (!n)
				strcpy(info, "-");
		}
		len += (size_t)snprintf(buf + len, MSG_MAX - len, "fd %d %s %s %s\n", fd,
					names && names[i] ? names[i] : "?", kind, info);
	}
	(void)send(ctl, buf, len, MSG_NOSIGNAL);
	free(buf);
}

static int find_fd(const char *name)
{
	for (int i = 0; i < nfds; i++)
		if (names && names[i] && !strcmp(names[i], name))
			return SD_LISTEN_FDS_START + i;
	return -1;
}

static void cmd_store(const char *name, const char *text, int count, bool dup_it)
{
	int fds[300], n = 0, r = 0;
	char msg[512];

	if (count > (int)(sizeof(fds) / sizeof(fds[0])) - 1)
		count = (int)(sizeof(fds) / sizeof(fds[0])) - 1;
	for (; n < count; n++) {
		fds[n] = memfd_with(name, text);
		if (fds[n] < 0) {
			r = fds[n];
			goto out;
		}
	}
	if (dup_it) {
		fds[n] = dup(fds[0]);
		if (fds[n] < 0) {
			r = -errno;
			goto out;
		}
		n++;
	}
	snprintf(msg, sizeof(msg), "FDSTORE=1\nFDNAME=%s", name);
	r = sd_pid_notify_with_fds(0, 0, msg, fds, (unsigned int)n);
out:
	for (int i = 0; i < n; i++)
		close(fds[i]);
	if (r <= 0)
		reply("err store %s: %s", name, r ? strerror(-r) : "no NOTIFY_SOCKET");
	else
		reply("ok");
}

static void cmd_send(int n, const char *text)
{
	char msg[8192], *p = msg;
	int fds[16] = { 0 }, k = 0, r = 0;

	for (; *text && p < msg + sizeof(msg) - 1; text++) {
		if (text[0] == '\\' && text[1] == 'n') {
			*p++ = '\n';
			text++;
		} else {
			*p++ = *text;
		}
	}
	*p = '\0';
	if (n > 16)
		n = 16;
	for (; k < n; k++) {
		fds[k] = memfd_with("send", "x");
		if (fds[k] < 0) {
			r = fds[k];
			goto out;
		}
	}
	r = sd_pid_notify_with_fds(0, 0, msg, n ? fds : NULL, (unsigned int)n);
out:
	for (int i = 0; i < k; i++)
		close(fds[i]);
	if (r <= 0)
		reply("err send: %s", r ? strerror(-r) : "no NOTIFY_SOCKET");
	else
		reply("ok");
}

static void cmd_foreign(const char *name)
{
	int status;
	pid_t pid = fork();

	if (pid < 0) {
		reply("err fork: %s", strerror(errno));
		return;
	}
	if (pid == 0) {
		char msg[300];
		int fd = memfd_with(name, "foreign");

		snprintf(msg, sizeof(msg), "FDSTORE=1\nFDNAME=%s", name);
		_exit(fd < 0 || sd_pid_notify_with_fds(0, 0, msg, &fd, 1) <= 0);
	}
	if (waitpid(pid, &status, 0) < 0 || !WIFEXITED(status) || WEXITSTATUS(status))
		reply("err foreign sender failed");
	else
		reply("ok");
}

static void cmd_accept(void)
{
	int lfd = find_fd("listen"), c;
	struct pollfd p;
	char msg[64];

	if (lfd < 0) {
		reply("err no fd named listen");
		return;
	}
	p = (struct pollfd){ .fd = lfd, .events = POLLIN };
	if (poll(&p, 1, 10000) != 1) {
		reply("err nothing to accept");
		return;
	}
	c = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
	if (c < 0) {
		reply("err accept: %s", strerror(errno));
		return;
	}
	snprintf(msg, sizeof(msg), "hello-from-%d", (int)getpid());
	(void)!write(c, msg, strlen(msg));
	close(c);
	reply("ok");
}

static void command(char *line)
{
	char *save = NULL, *verb = strtok_r(line, " ", &save);
	char *a1 = strtok_r(NULL, " ", &save);
	char *rest = save && *save ? save : NULL;

	if (!verb) {
		reply("err empty");
	} else if (!strcmp(verb, "store") && a1 && rest) {
		cmd_store(a1, rest, 1, false);
	} else if (!strcmp(verb, "storen") && a1 && rest) {
		cmd_store(a1, "n", atoi(rest), false);
	} else if (!strcmp(verb, "storedup") && a1) {
		cmd_store(a1, "dup", 1, true);
	} else if (!strcmp(verb, "remove") && a1) {
		int r = sd_pid_notifyf(0, 0, "FDSTOREREMOVE=1\nFDNAME=%s", a1);

		r <= 0 ? reply("err remove: %d", r) : reply("ok");
	} else if (!strcmp(verb, "send") && a1 && rest) {
		cmd_send(atoi(a1), rest);
	} else if (!strcmp(verb, "foreign") && a1) {
		cmd_foreign(a1);
	} else if (!strcmp(verb, "barrier")) {
		int r = sd_notify_barrier(0, 10 * 1000000ULL);

		r < 0 ? reply("err barrier: %s", strerror(-r)) : reply("ok");
	} else if (!strcmp(verb, "ready")) {
		int r = sd_notifyf(0, "READY=1\nSTATUS=serving as %d", (int)getpid());

		r <= 0 ? reply("err ready: %d", r) : reply("ok");
	} else if (!strcmp(verb, "accept")) {
		cmd_accept();
	} else if (!strcmp(verb, "ignoreterm")) {
		reply("ok");
	} else if (!strcmp(verb, "exit") && a1) {
		reply("ok");
		exit(atoi(a1));
	} else {
		reply("err unknown command");
	}
}

int main(int argc, char **argv)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	bool ignore_term = false;
	struct pollfd pfd[2];
	sigset_t mask;
	int leaked, sfd;
	char *buf;

	if (argc != 2 || strlen(argv[1]) >= sizeof(sa.sun_path)) {
		fprintf(stderr, "usage: fdstore-child CONTROL_SOCKET\n");
		return 2;
	}
	/* Before anything of ours is opened. */
	nfds = sd_listen_fds_with_names(0, &names);
	if (nfds < 0) {
		fprintf(stderr, "fdstore-child: sd_listen_fds_with_names: %s\n", strerror(-nfds));
		return 1;
	}
	leaked = count_leaked(nfds);

	sigemptyset(&mask);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGHUP);
	sigprocmask(SIG_BLOCK, &mask, NULL);
	sfd = signalfd(-1, &mask, SFD_CLOEXEC);
	ctl = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	strcpy(sa.sun_path, argv[1]);
	if (sfd < 0 || ctl < 0 || connect(ctl, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		fprintf(stderr, "fdstore-child: cannot reach %s: %s\n", argv[1], strerror(errno));
		return 1;
	}
	hello(leaked);

	buf = malloc(MSG_MAX);
	if (!buf)
		return 1;
	pfd[0] = (struct pollfd){ .fd = sfd, .events = POLLIN };
	pfd[1] = (struct pollfd){ .fd = ctl, .events = POLLIN };
	for (;;) {
		if (poll(pfd, ctl >= 0 ? 2 : 1, -1) < 0)
			continue;
		if (pfd[0].revents) {
			struct signalfd_siginfo si;

			if (read(sfd, &si, sizeof(si)) != sizeof(si))
				continue;
			if (si.ssi_signo == SIGHUP) {
				reply("hup");
			} else if (ignore_term) {
				reply("term-ignored");
			} else {
				(void)sd_notify(0, "STOPPING=1");
				reply("bye");
				free(buf);
				return 0;
			}
		}
		if (ctl >= 0 && pfd[1].revents) {
			ssize_t n = recv(ctl, buf, MSG_MAX - 1, 0);

			if (n <= 0) {
				/* The test is gone: wait for a signal only. */
				close(ctl);
				ctl = -1;
				continue;
			}
			buf[n] = '\0';
			if (!strcmp(buf, "ignoreterm"))
				ignore_term = true;
			command(buf);
		}
	}
}
