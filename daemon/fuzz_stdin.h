/* SPDX-License-Identifier: MIT */
/*
 * fuzz_stdin.h - test builds only (iovad-stdin): standard input as the
 * daemon's one client, through its own socket (fuzz_stdin.c).
 */
#ifndef IOVAD_DAEMON_FUZZ_STDIN_H
#define IOVAD_DAEMON_FUZZ_STDIN_H

struct srv;

/*
 * Read stdin and feed it to the socket s listens on (--socket) from s's
 * event loop; SIGTERM the daemon once the connection is over.
 * Return: 0, or -errno (no socket of its own, out of memory, connect).
 */
int fuzz_stdin_start(struct srv *s);

#endif /* IOVAD_DAEMON_FUZZ_STDIN_H */
