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
#include <sys/resource.h>
#include <sys/stat.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include "config.h"
#include "failpoint.h"
#include "internal.h"
#ifdef IOVAD_FUZZ_STDIN
#include "fuzz_stdin.h"
#endif

#ifndef IOVAD_VERSION
#define IOVAD_VERSION "0.0.0"
#endif

#define SHUTDOWN_GRACE_MS 2000
#define DEFAULT_CONFIG "/etc/iovad/iovad.conf"

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: iovad [OPTIONS]\n"
		"IOVA mapping service: serves the kernel's IOVA-based DMA API over a Unix socket.\n\n"
		"  -c, --config FILE   configuration (default %s, if it exists)\n"
		"      --check-config FILE\n"
		"                      validate FILE, print the effective configuration, exit\n"
		"  -s, --socket PATH   listen on PATH (default from the configuration, else\n"
		"                      /run/iovad/iovad.sock); sockets passed by systemd\n"
		"                      socket activation are adopted as well\n"
		"      --no-socket     listen only on inherited sockets\n"
		"      --io=BACKEND    uring (default; falls back to epoll if unavailable) or epoll\n"
		"      --state-dir DIR journal every client's state in DIR and restore it at\n"
		"                      start ([persist] state_dir; needs a file-descriptor store:\n"
		"                      systemd or iovad-supervise)\n"
		"  -v, --verbose       more log output (repeat for debug)\n"
		"  -q, --quiet         less log output\n"
		"  -h, --help          this text\n"
		"  -V, --version       the version\n",
		DEFAULT_CONFIG);
}

struct opts {
	const char *config;
	bool config_given;
	const char *check;
	const char *socket;
	bool no_socket;
	enum io_backend io;  /* 0: from the configuration */
	int verbosity;
	const char *state_dir;
};

static int parse_opts(int argc, char **argv, struct opts *o)
{
	static const struct option longopts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "check-config", required_argument, NULL, 'C' },
		{ "socket", required_argument, NULL, 's' },
		{ "no-socket", no_argument, NULL, 'N' },
		{ "io", required_argument, NULL, 'I' },
		{ "state-dir", required_argument, NULL, 'S' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "quiet", no_argument, NULL, 'q' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ 0 },
	};
	int ch;

	*o = (struct opts){ .config = DEFAULT_CONFIG };
	while ((ch = getopt_long(argc, argv, "c:s:vqhV", longopts, NULL)) != -1) {
		switch (ch) {
		case 'c':
			o->config = optarg;
			o->config_given = true;
			break;
		case 'C':
			o->check = optarg;
			break;
		case 's':
			o->socket = optarg;
			break;
		case 'N':
			o->no_socket = true;
			break;
		case 'S':
			if (*optarg != '/') {
				fprintf(stderr, "iovad: --state-dir: an absolute path, please\n");
				return 2;
			}
			o->state_dir = optarg;
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

/* The configuration file, or the built-in one when the default file is absent. */
static int load_config(const struct opts *o, struct config *cfg, const char **used)
{
	char err[512];
	int r;

	*used = NULL;
	if (!o->config_given && access(o->config, F_OK) != 0) {
		config_defaults(cfg);
		return 0;
	}
	r = config_load(o->config, cfg, err, sizeof(err));
	if (r) {
		fprintf(stderr, "<3>iovad: %s\n", err);
		return r;
	}
	*used = o->config;
	return 0;
}

static void apply_policy(struct srv *s, const struct config *cfg)
{
	s->pol.allow_socket_group = cfg->allow_socket_group;
	s->pol.nuids = cfg->nuids;
	memcpy(s->pol.uids, cfg->uids, cfg->nuids * sizeof(cfg->uids[0]));
	s->pol.ngids = cfg->ngids;
	memcpy(s->pol.gids, cfg->gids, cfg->ngids * sizeof(cfg->gids[0]));
}

/*
 * Every client costs the daemon a socket, its memory objects' fds while they
 * are imported, and with rings two eventfds: a thousand clients pass the
 * usual soft limit of 1024. Raise it to the hard limit, as systemd asks
 * programs that need many descriptors to do (its default hard limit is
 * 524288); a limit the daemon cannot raise is only logged.
 */
static void raise_nofile(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) || rl.rlim_cur >= rl.rlim_max)
		return;
	rl.rlim_cur = rl.rlim_max;
	if (setrlimit(RLIMIT_NOFILE, &rl))
		log_info("RLIMIT_NOFILE stays at its soft limit: %s", strerror(errno));
}

struct main_ctx {
	struct srv *srv;
	struct event *watchdog;
	struct timeval watchdog_tv;
	const char *config;  /* the file in use, NULL for the built-in configuration */
	const struct config *cfg;
	struct event *grace;
	uint64_t grace_deadline;
};

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
	/* Remote peers hold QPs in the devices' PDs: they go before the clients' MRs. */
	peers_stop(s);
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

/*
 * WATCHDOG=1 from the event loop itself, at half the interval systemd asked
 * for (WatchdogSec=), so a loop that is stuck stops pinging and gets the
 * daemon restarted.
 */
static void watchdog_cb(evutil_socket_t fd, short what, void *arg)
{
	struct main_ctx *m = arg;

	(void)fd;
	(void)what;
	(void)sd_notify(0, "WATCHDOG=1");
	srv_notify_status(m->srv); /* the mapped-bytes count moves without connects */
	event_add(m->watchdog, &m->watchdog_tv);
}

static int watchdog_start(struct main_ctx *m)
{
	uint64_t usec;
	int r = sd_watchdog_enabled(0, &usec);

	if (r <= 0)
		return r; /* not asked for (0), or a malformed WATCHDOG_USEC (< 0) */
	usec /= 2;
	m->watchdog_tv.tv_sec = (time_t)(usec / 1000000u);
	m->watchdog_tv.tv_usec = (suseconds_t)(usec % 1000000u);
	m->watchdog = evtimer_new(m->srv->base, watchdog_cb, m);
	if (!m->watchdog || event_add(m->watchdog, &m->watchdog_tv))
		return -ENOMEM;
	log_info("watchdog: pinging every %" PRIu64 " ms", usec / 1000u);
	return 1;
}

/* Compare the device topology of two configurations by name and domain. */
static bool same_devices(const struct config *a, const struct config *b)
{
	if (a->ndevs != b->ndevs || a->ndoms != b->ndoms)
		return false;
	for (unsigned int i = 0; i < a->ndevs; i++)
		if (strcmp(a->devs[i].name, b->devs[i].name) ||
		    strcmp(a->devs[i].domain, b->devs[i].domain))
			return false;
	return true;
}

static void hup_cb(evutil_socket_t sig, short what, void *arg)
{
	struct main_ctx *m = arg;
	struct srv *s = m->srv;
	struct config *cfg;
	char err[512];

	(void)sig;
	(void)what;
	/* Re-read the socket's group: SocketGroup= or a chown may have changed it. */
	s->pol.sock_gid_valid = false;
	if (s->policy_path) {
		struct stat st;

		if (stat(s->policy_path, &st) == 0) {
			s->pol.sock_gid = st.st_gid;
			s->pol.sock_gid_valid = true;
		}
	}
	(void)sd_notifyf(0, "RELOADING=1\nMONOTONIC_USEC=%" PRIu64, now_ns() / 1000u);
	if (m->config) {
		cfg = malloc(sizeof(*cfg));
		if (!cfg || config_load(m->config, cfg, err, sizeof(err))) {
			log_err("SIGHUP: %s; keeping the running configuration",
				cfg ? err : "out of memory");
			free(cfg);
			(void)sd_notify(0, "READY=1");
			return;
		}
		/* Policy and limits apply at once, to connected clients too. */
		apply_policy(s, cfg);
		s->lim = cfg->lim;
		s->odp = cfg->odp;
		/* Rings already set up stay; the new settings apply to polling and to new ones. */
		s->rings = cfg->rings;
		if (!same_devices(cfg, m->cfg))
			log_warn("SIGHUP: device and domain changes take effect at the next start");
		free(cfg);
	}
	log_notice("SIGHUP: %s reloaded (policy, limits, odp, rings), %u clients kept",
		   m->config ? m->config : "built-in configuration", s->nconns);
	(void)sd_notify(0, "READY=1");
	srv_notify_status(s);
}

int main(int argc, char **argv)
{
	struct event *sigs[3] = { NULL };
	struct main_ctx m = { 0 };
	struct srv s = { 0 };
	struct config *cfg;
	char err[512] = "";
	struct opts o;
	int r, adopted, nfds = 0;
	char **fd_names = NULL;
	bool *claimed = NULL;

	/* Fault injection (tests): armed by IOVAD_FAILPOINTS, before the first allocation. */
	if (fp_init())
		return 2;
	r = parse_opts(argc, argv, &o);
	if (r)
		return r;
	cfg = malloc(sizeof(*cfg));
	if (!cfg) {
		fprintf(stderr, "<3>iovad: out of memory\n");
		return 1;
	}
	if (o.check) {
		r = config_load(o.check, cfg, err, sizeof(err));
		if (r) {
			fprintf(stderr, "iovad: %s\n", err);
			free(cfg);
			return 1;
		}
		printf("# %s: valid; the effective configuration:\n", o.check);
		config_print(cfg, stdout);
		free(cfg);
		return 0;
	}
	if (load_config(&o, cfg, &m.config)) {
		free(cfg);
		return 1;
	}
	log_set_level(cfg->log_level + o.verbosity);
	signal(SIGPIPE, SIG_IGN);
	raise_nofile();

	s.base = event_base_new();
	s.scratch = malloc(PROTO_FRAME_MAX);
	if (!s.base || !s.scratch) {
		log_err("out of memory");
		return 1;
	}
	s.start_ns = now_ns();
	s.pol.self_uid = getuid();
	s.lim = cfg->lim;
	s.odp = cfg->odp;
	s.rings = cfg->rings;
	apply_policy(&s, cfg);
	m.srv = &s;
	m.cfg = cfg;

	r = devices_init(&s.devices, s.base, cfg, err, sizeof(err));
	if (r) {
		log_err("devices: %s", err[0] ? err : strerror(-r));
		return 1;
	}
	if (cfg->rdma_listen_host[0]) {
		r = peers_start(&s, cfg->rdma_listen_host, cfg->rdma_listen_port, err, sizeof(err));
		if (r) {
			log_err("%s", err);
			return 1;
		}
	}
	if (odp_svc_init(&s)) {
		log_err("fault service: out of memory");
		return 1;
	}
	s.io = o.io ? o.io : cfg->io;
	if (s.io == IO_URING) {
		r = uring_io_init(&s);
		if (r) {
			log_info("io_uring unavailable (%s): using epoll", strerror(-r));
			s.io = IO_EPOLL;
		}
	}
	/* Inherited fds: sockets (activation, or our own from the fd store) and memfds. */
	nfds = sd_listen_fds_with_names(1, &fd_names);
	if (nfds < 0)
		nfds = 0;
	claimed = calloc((size_t)nfds + 1, sizeof(*claimed));
	if (!claimed) {
		log_err("out of memory");
		return 1;
	}
	if (o.state_dir)
		snprintf(cfg->persist.state_dir, sizeof(cfg->persist.state_dir), "%s", o.state_dir);
	if (cfg->persist.state_dir[0]) {
		r = persist_open(&s, &cfg->persist, nfds, fd_names, claimed, err, sizeof(err));
		if (r) {
			log_err("%s", err[0] ? err : strerror(-r));
			return 1;
		}
	}
	adopted = srv_adopt_inherited(&s, nfds, fd_names, claimed);
	if (!o.no_socket) {
		const char *path = o.socket ? o.socket : cfg->socket;

		/* The default directory is ours to create (RuntimeDirectory= does it under systemd). */
		if (!o.socket && !strncmp(path, "/run/iovad/", 11))
			(void)mkdir("/run/iovad", 0755);
		/* Our own socket came back from the fd store: clients may wait in its backlog. */
		if (srv_listening_on(&s, path)) {
			log_info("listening on %s (kept across the restart)", path);
		} else {
			r = srv_listen_path(&s, path);
			if (r) {
				log_err("listen on %s: %s", path, strerror(-r));
				return 1;
			}
			if (s.persist)
				srv_store_own_listener(&s);
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
#ifdef IOVAD_FUZZ_STDIN
	/* iovad-stdin (tests/fuzz/afl) only: stdin is the one client, then SIGTERM. */
	if (fuzz_stdin_start(&s))
		return 1;
#endif

	r = watchdog_start(&m);
	if (r < 0)
		log_warn("watchdog: %s; not pinging", strerror(-r));
	log_notice("iovad %s ready: %u devices, io=%s", IOVAD_VERSION, s.devices.ndevs,
		   s.io == IO_URING ? "io_uring" : "epoll");
	(void)sd_notify(0, "READY=1");
	if (r > 0)
		(void)sd_notify(0, "WATCHDOG=1");
	srv_notify_status(&s);

	/* The loop, polling active shared-memory rings between libevent passes (ring.c). */
	srv_run(&s);

	/* Reverse order: clients (teardown and leak reports), transport, devices. */
	srv_stop_listening(&s);
	peers_stop(&s);
	/* The journal's last commit; the sessions live on in it. */
	persist_close(&s);
	srv_close_all(&s);
	persist_free(&s);
	if (s.io == IO_URING)
		uring_io_fini(&s);
	for (int i = 0; i < 3; i++)
		event_free(sigs[i]);
	event_free(m.grace);
	if (m.watchdog)
		event_free(m.watchdog);
	odp_svc_fini(&s);
	devices_fini(&s.devices);
	event_base_free(s.base);
	free(s.scratch);
	free(cfg);
	free(claimed);
	if (fd_names)
		for (int i = 0; i < nfds; i++)
			free(fd_names[i]);
	free(fd_names);
	log_notice("stopped: %" PRIu64 " sessions served, %" PRIu64 " torn down with leftovers",
		   s.stats.sessions_total, s.stats.teardowns);
	return 0;
}
