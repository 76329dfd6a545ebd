// SPDX-License-Identifier: MIT
/*
 * main.c - iovad: options, start-up in dependency order, signals, and
 * shut-down in reverse.
 */
#include <errno.h>
#include <event2/event.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include "internal.h"

#ifndef IOVAD_VERSION
#define IOVAD_VERSION "0.0.0"
#endif

#define SHUTDOWN_GRACE_MS 2000

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: iovad [OPTIONS]\n"
		"IOVA mapping service: serves the kernel's IOVA-based DMA API over a Unix socket.\n\n"
		"  -s, --socket PATH   listen on PATH (default %s); sockets passed by\n"
		"                      systemd socket activation are adopted as well\n"
		"      --no-socket     listen only on inherited sockets\n"
		"      --io=BACKEND    uring (default; falls back to epoll if unavailable) or epoll\n"
		"  -v, --verbose       more log output (repeat for debug)\n"
		"  -q, --quiet         less log output\n"
		"  -h, --help          this text\n"
		"  -V, --version       the version\n",
		"/run/iovad/iovad.sock");
}

struct opts {
	const char *socket;
	bool no_socket;
	enum io_backend io;
	bool io_forced;
	int verbosity;
};

static int parse_opts(int argc, char **argv, struct opts *o)
{
	static const struct option longopts[] = {
		{ "socket", required_argument, NULL, 's' },
		{ "no-socket", no_argument, NULL, 'N' },
		{ "io", required_argument, NULL, 'I' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "quiet", no_argument, NULL, 'q' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ 0 },
	};
	int ch;

	*o = (struct opts){ .socket = "/run/iovad/iovad.sock", .io = IO_URING };
	while ((ch = getopt_long(argc, argv, "s:vqhV", longopts, NULL)) != -1) {
		switch (ch) {
		case 's':
			o->socket = optarg;
			break;
		case 'N':
			o->no_socket = true;
			break;
		case 'I':
			if (!strcmp(optarg, "epoll")) {
				o->io = IO_EPOLL;
			} else if (!strcmp(optarg, "uring")) {
				o->io = IO_URING;
			} else {
				fprintf(stderr, "iovad: --io: expected 'uring' or 'epoll', not '%s'\n",
					optarg);
				return 2;
			}
			o->io_forced = true;
			break;
		case 'v':
			o->verbosity++;
			break;
		case 'q':
			o->verbosity--;
			break;
		case 'h':
			usage(stdout);
			exit(0);
		case 'V':
			printf("iovad %s\n", IOVAD_VERSION);
			exit(0);
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "iovad: unexpected argument '%s'\n", argv[optind]);
		return 2;
	}
	return 0;
}

static void default_limits(struct limits *l)
{
	*l = (struct limits){
		.max_mems = 4096,
		.max_mem_bytes = UINT64_C(64) << 30,
		.max_states = 65536,
		.max_maps = 65536,
		.max_links = 1u << 20,
		.max_devs = 64,
		.max_inflight = 64,
		.max_frame = PROTO_FRAME_DEFAULT,
		.max_batch = PROTO_BATCH_DEFAULT,
		.max_fds = 16,
		.out_high = 1u << 20,
		.out_low = 256u << 10,
	};
}

struct main_ctx {
	struct srv *srv;
	struct event *grace;
	uint64_t grace_deadline;
};

static void notify_status(const struct srv *s)
{
	(void)sd_notifyf(0, "STATUS=%u clients, %" PRIu64 " bytes of client memory", s->nconns,
			 s->devices.pmem.stats.bytes);
}

/* Shutting down: exit once every connection is gone or the grace period ends. */
static void grace_cb(evutil_socket_t fd, short what, void *arg)
{
	struct main_ctx *m = arg;
	struct timeval tv = { 0, 20000 };

	(void)fd;
	(void)what;
	if (!m->srv->nconns || now_ns() >= m->grace_deadline) {
		event_base_loopbreak(m->srv->base);
		return;
	}
	event_add(m->grace, &tv);
}

static void stop_cb(evutil_socket_t sig, short what, void *arg)
{
	struct main_ctx *m = arg;
	struct srv *s = m->srv;

	(void)what;
	if (s->stopping)
		return;
	log_notice("signal %d: shutting down (%u clients)", (int)sig, s->nconns);
	(void)sd_notify(0, "STOPPING=1");
	s->stopping = true;
	srv_stop_listening(s);
	/* Take no new requests; let what was answered go out, then tear down. */
	for (struct conn *c = s->conns; c; c = c->next) {
		c->dead = true;
		if (!c->read_paused) {
			c->read_paused = true;
			srv_transport(s)->pause_read(c, true);
		}
	}
	m->grace_deadline = now_ns() + (uint64_t)SHUTDOWN_GRACE_MS * 1000000u;
	grace_cb(-1, 0, m);
}

static void hup_cb(evutil_socket_t sig, short what, void *arg)
{
	struct main_ctx *m = arg;

	(void)sig;
	(void)what;
	/*
	 * The policy is the socket's group: re-read it. Limits come from the
	 * configuration file once there is one; clients stay connected.
	 */
	m->srv->pol.sock_gid_valid = false;
	if (m->srv->own_socket_path) {
		struct stat st;

		if (stat(m->srv->own_socket_path, &st) == 0) {
			m->srv->pol.sock_gid = st.st_gid;
			m->srv->pol.sock_gid_valid = true;
		}
	}
	log_notice("SIGHUP: policy reloaded (socket group %u), %u clients kept",
		   (unsigned int)m->srv->pol.sock_gid, m->srv->nconns);
	notify_status(m->srv);
}

int main(int argc, char **argv)
{
	struct event *sigs[3] = { NULL };
	struct main_ctx m = { 0 };
	struct srv s = { 0 };
	struct opts o;
	int r, adopted;

	r = parse_opts(argc, argv, &o);
	if (r)
		return r;
	log_set_level(LOG_NOTICE_ + o.verbosity);
	signal(SIGPIPE, SIG_IGN);

	s.base = event_base_new();
	s.scratch = malloc(PROTO_FRAME_MAX);
	if (!s.base || !s.scratch) {
		log_err("out of memory");
		return 1;
	}
	s.start_ns = now_ns();
	s.pol.self_uid = getuid();
	default_limits(&s.lim);
	m.srv = &s;

	r = devices_init_default(&s.devices, s.base);
	if (r) {
		log_err("devices: %s", strerror(-r));
		return 1;
	}
	s.io = o.io;
	if (s.io == IO_URING) {
		r = uring_io_init(&s);
		if (r) {
			if (o.io_forced)
				log_warn("io_uring unavailable (%s): using epoll", strerror(-r));
			else
				log_info("io_uring unavailable (%s): using epoll", strerror(-r));
			s.io = IO_EPOLL;
		}
	}
	adopted = srv_adopt_inherited(&s);
	if (!o.no_socket) {
		r = srv_listen_path(&s, o.socket);
		if (r) {
			log_err("listen on %s: %s", o.socket, strerror(-r));
			return 1;
		}
	} else if (!adopted) {
		log_err("--no-socket, and no socket was inherited");
		return 1;
	}

	sigs[0] = evsignal_new(s.base, SIGTERM, stop_cb, &m);
	sigs[1] = evsignal_new(s.base, SIGINT, stop_cb, &m);
	sigs[2] = evsignal_new(s.base, SIGHUP, hup_cb, &m);
	m.grace = evtimer_new(s.base, grace_cb, &m);
	for (int i = 0; i < 3; i++)
		if (!sigs[i] || event_add(sigs[i], NULL))
			return 1;

	log_notice("iovad %s ready: %u devices, io=%s", IOVAD_VERSION, s.devices.ndevs,
		   s.io == IO_URING ? "io_uring" : "epoll");
	(void)sd_notify(0, "READY=1");
	notify_status(&s);

	event_base_dispatch(s.base);

	/* Reverse order: clients (teardown and leak reports), transport, devices. */
	srv_stop_listening(&s);
	srv_close_all(&s);
	if (s.io == IO_URING)
		uring_io_fini(&s);
	for (int i = 0; i < 3; i++)
		event_free(sigs[i]);
	event_free(m.grace);
	devices_fini(&s.devices);
	event_base_free(s.base);
	free(s.scratch);
	log_notice("stopped: %" PRIu64 " sessions served, %" PRIu64 " torn down with leftovers",
		   s.stats.sessions_total, s.stats.teardowns);
	return 0;
}
