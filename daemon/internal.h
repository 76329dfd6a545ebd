/* SPDX-License-Identifier: MIT */
/*
 * internal.h - the iovad daemon's modules and how they fit.
 *
 *   main.c     options, start-up in order, signals, shut-down in reverse
 *   log.c      stderr with sd-daemon <N> priority prefixes
 *   devices.c  the device table: domains and devices of the domain engine
 *   rxe.c      the rxe backend's verbs: MRs at IOVAs, DMA as RDMA READ/WRITE
 *   server.c   listening sockets (own and socket-activated), connections,
 *              framing, backpressure; the epoll transport (libevent)
 *   uring.c    the io_uring transport (batched recvmsg/sendmsg)
 *   ring.c     shared-memory rings per session, and the loop that polls them
 *   session.c  one per connection: credentials, limits, the client's
 *              devices, memory, IOVA states and mappings; request dispatch
 *              into the domain engine; teardown on disconnect
 *
 * Data moves one way: transport (bytes, fds) -> server (frames) -> session
 * (decoded requests) -> domain engine, and the reply comes back the same
 * way. The transport knows frames, not IOVAs; the engine knows nothing of
 * sockets or clients. Everything runs on one libevent loop thread.
 */
#ifndef IOVAD_DAEMON_INTERNAL_H
#define IOVAD_DAEMON_INTERNAL_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "domain.h"
#include "odp.h"
#include "proto.h"

struct event_base;
struct event;
struct evbuffer;
struct bufferevent;
struct evconnlistener;
struct rxe_dev;

/* ---- log.c --------------------------------------------------------------- */

enum log_level { LOG_ERR_ = 3, LOG_WARN_ = 4, LOG_NOTICE_ = 5, LOG_INFO_ = 6, LOG_DEBUG_ = 7 };

void log_set_level(int level);
int log_get_level(void);
void log_msg(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
#define log_err(...)    log_msg(LOG_ERR_, __VA_ARGS__)
#define log_warn(...)   log_msg(LOG_WARN_, __VA_ARGS__)
#define log_notice(...) log_msg(LOG_NOTICE_, __VA_ARGS__)
#define log_info(...)   log_msg(LOG_INFO_, __VA_ARGS__)
#define log_debug(...)  log_msg(LOG_DEBUG_, __VA_ARGS__)

/*
 * Two secret tokens (session tokens, peer tokens) equal? Every byte is
 * compared whatever differs first: the time taken gives nothing away.
 */
static inline bool token_eq(const uint8_t *a, const uint8_t *b)
{
	uint8_t diff = 0;

	for (size_t i = 0; i < PROTO_TOKEN_LEN; i++)
		diff |= (uint8_t)(a[i] ^ b[i]);
	return !diff;
}

/* ---- devices.c ------------------------------------------------------------- */

struct dev_entry {
	char name[PROTO_DEV_NAME_MAX];
	uint32_t index;          /* in the device table */
	uint32_t dom_index;      /* in the domain table */
	uint32_t flags;          /* PROTO_DEV_* */
	struct dom_device *dev;
	struct dom_domain *dom;
	struct rxe_dev *rxe;     /* backend = rxe: DMA is RDMA through it; NULL: the engine's */
	bool odp_mr;		 /* rxe, odp = mr, its ODP checked: an ODP region is one ODP MR */
	bool merge_links;        /* [domain] merge_links: contiguous LINKs of a batch, one call */
};

struct dev_table {
	struct pmem_space pmem;
	struct dom_domain **doms;
	uint32_t ndoms;
	struct dev_entry *devs;
	uint32_t ndevs;
	struct event **fq_timers; /* one per domain, for lazy flush queues */
	struct event_base *base;
};

struct config;
/* Return: 0, or -errno with a message in err. */
int devices_init(struct dev_table *t, struct event_base *base, const struct config *cfg,
		 char *err, size_t errlen);
void devices_fini(struct dev_table *t);
struct dev_entry *devices_find(struct dev_table *t, const char *name);
/* Re-arm the flush-queue timer of a lazy domain after its queue changed. */
void devices_fq_arm(struct dev_table *t, uint32_t dom_index);
void devices_stats(const struct dev_entry *e, struct proto_dev_stats *ret);

/* ---- limits and policy ------------------------------------------------------ */

struct limits {
	uint32_t max_mems;        /* memory objects per client */
	uint64_t max_mem_bytes;   /* bytes registered per client */
	uint32_t max_states;      /* live IOVA states per client */
	uint32_t max_maps;        /* live streaming mappings per client */
	uint32_t max_links;       /* link records per client */
	uint32_t max_devs;        /* devices open per connection */
	uint32_t max_inflight;    /* requests read ahead of their replies */
	uint32_t max_frame;
	uint32_t max_batch;
	uint32_t max_fds;         /* received fds not yet claimed by MEM_IMPORT */
	uint32_t max_odp;         /* ODP regions per client */
	size_t out_high;          /* stop reading above this many unsent reply bytes */
	size_t out_low;           /* resume below this */
	uint64_t max_iova_bytes;  /* IOVA reserved per client: states, maps, ODP regions */
	uint64_t max_table_bytes; /* page tables a client's links and maps made the daemon add */
	uint32_t max_conns;       /* connections of users other than root and the daemon's */
	uint32_t max_conns_per_uid;
};

/* [odp]: the fault service */
struct odp_settings {
	enum odp_sync_mode sync;      /* batch (iovad) or per-page (the kernel's) */
	uint64_t window;              /* fault-around bytes, a power of two */
	uint64_t implicit_size;       /* IOVA an implicit region reserves by default */
	uint32_t user_fault_timeout_ms;
};

/* [rings]: the shared-memory rings (ring.c) */
struct ring_settings {
	bool enable;          /* offer RING_SETUP */
	uint32_t spin_us;     /* poll an active ring this long after its last work, then sleep */
	uint32_t spin_max_us; /* ...or up to this long for a ring whose work comes back soon */
	uint32_t max_size;    /* largest submission or completion ring a client may set up */
	uint32_t max_polled;  /* rings polled at once; the least recently busy beyond sleep */
};

struct policy {
	uid_t self_uid;           /* and root: always allowed */
	gid_t sock_gid;           /* members of the socket's group are allowed... */
	bool sock_gid_valid;
	bool allow_socket_group;  /* ...unless the configuration says otherwise */
	uid_t uids[64];           /* [policy] allow_users */
	unsigned int nuids;
	gid_t gids[64];           /* [policy] allow_groups */
	unsigned int ngids;
};

/* ---- server.c -------------------------------------------------------------- */

enum io_backend { IO_EPOLL = 1, IO_URING = 2 };

struct srv_stats {
	uint64_t sessions_total;
	uint64_t frames_in;
	uint64_t frames_bad;
	uint64_t teardowns;
	uint64_t leaked_states;
	uint64_t leaked_maps;
	uint64_t leaked_mems;
	uint64_t denied;
	uint64_t rings_total;     /* sessions that set up rings */
	uint64_t ring_frames;     /* frames taken from submission rings (also in frames_in) */
	uint64_t ring_violations; /* sessions ended for breaking their ring */
};

struct conn;
struct session;
struct pfault;
struct sess_mem;
struct proto_session;
struct proto_req;

/* ODP counters added up over regions (the engine's, and the daemon's own). */
struct odp_totals {
	struct odp_counters c;
	uint64_t user_faults;
	uint64_t user_fault_timeouts;
};

struct srv {
	struct event_base *base;
	struct dev_table devices;
	struct limits lim;
	struct policy pol;
	enum io_backend io;
	struct evconnlistener **listeners;
	uint32_t nlisteners;
	char *own_socket_path;     /* unlinked at exit */
	char *policy_path;         /* the socket file whose group the policy follows */
	struct conn *conns;        /* list */
	uint32_t nconns;
	uint64_t next_session_id;
	uint64_t start_ns;
	struct srv_stats stats;
	struct uring_io *uring;    /* when io == IO_URING */
	uint8_t *scratch;          /* PROTO_FRAME_MAX bytes for building replies */
	/* the ODP fault service (odp_svc.c) */
	struct odp_settings odp;
	struct event *fault_ev;    /* runs the service once per loop iteration */
	struct pfault *fq_head;    /* faults waiting for it, oldest first */
	struct pfault **fq_tail;
	uint64_t next_fault_id;
	struct odp_totals odp_gone;/* regions already deregistered */
	struct odp_hist odp_hist;  /* fault latency, daemon-wide */
	struct peers *peers;       /* rdma_listen: remote RDMA peers (peers.c); NULL when off */
	/* shared-memory rings (ring.c) */
	struct ring_settings rings;
	struct ring_chan *ring_active; /* rings being polled, most recently busy first */
	struct ring_chan *ring_active_tail;
	uint32_t nring_active;
	uint32_t nrings;           /* sessions with rings, polled or asleep */
	uint32_t ring_cpu;         /* 1 + the CPU of the last pass (ring.h's *_cpu) */
	bool ring_colocated;       /* an active ring's client last ran on that CPU */
	struct persist *persist;   /* the state journal (persist.c); NULL when off */
	bool socket_stored;        /* our own socket is in the fd store: never unlink it */
	bool stopping;
};

int srv_listen_path(struct srv *s, const char *path);

/* ---- peers.c: remote RDMA peers of rxe devices ([daemon] rdma_listen) ---- */

/* Listen with rdma_cm on host:port. Return: 0, or -errno with a message in err. */
int peers_start(struct srv *s, const char *host, uint16_t port, char *err, size_t errlen);
/* Drop every peer and stop listening. Idempotent; before devices_fini (their PDs). */
void peers_stop(struct srv *s);
struct session;
/* Drop the remote peers attached to s (its PDs are about to go). */
void peers_session_gone(struct srv *v, const struct session *s);
/* Adopt inherited listening sockets (not those claimed[i]); names from LISTEN_FDNAMES. */
int srv_adopt_inherited(struct srv *s, int n, char **names, const bool *claimed);
/* Is one of our listeners bound to path? */
bool srv_listening_on(struct srv *s, const char *path);
/* Put the socket we bound into the fd store (persist.c). */
void srv_store_own_listener(struct srv *s);
void srv_stop_listening(struct srv *s);
void srv_close_all(struct srv *s);
/* sd_notify STATUS= with live counts (a no-op outside systemd). */
void srv_notify_status(const struct srv *s);
uint64_t now_ns(void);

/* A connection: owned by server.c, its bytes moved by one transport. */
struct conn {
	struct srv *srv;
	int fd;
	uid_t uid;                 /* the peer's, at accept */
	struct session *sess;
	struct evbuffer *in;       /* bytes received, not yet framed */
	struct evbuffer *out;      /* replies not yet sent */
	int *fds;                  /* received fds waiting for MEM_IMPORT */
	uint32_t nfds;
	bool dead;                 /* close once output is flushed (or at once) */
	struct event *resume;      /* re-runs conn_input after yielding to others */
	bool read_paused;
	struct conn *next, *prev;
	/* epoll transport */
	struct event *rev;
	struct bufferevent *bev;
	/* io_uring transport */
	void *uring_priv;
};

/* Called by a transport: bytes (and fds) arrived; frame and dispatch them. */
void conn_input(struct conn *c);
/* Called by a transport when replies drained to the low-water mark (may free c). */
void conn_output_drained(struct conn *c);
/* A connection marked dead outside conn_input: stop reading, flush, close (may free c). */
void conn_finish(struct conn *c);
/* Called by a transport when the peer closed or the socket failed. */
void conn_closed(struct conn *c, int err);
/* Transport hooks (set by the selected backend). */
struct transport_ops {
	int (*attach)(struct conn *c);      /* start I/O on c->fd */
	void (*kick_write)(struct conn *c); /* c->out has new bytes */
	void (*pause_read)(struct conn *c, bool pause);
	/* Stop I/O. The caller closes c->fd, unless the transport kept it (c->fd = -1). */
	void (*detach)(struct conn *c);
};
extern const struct transport_ops epoll_transport;
extern const struct transport_ops uring_transport;
const struct transport_ops *srv_transport(const struct srv *s);
/* Take one received fd (-1 if none). */
int conn_take_fd(struct conn *c);
/* The session's parked accesses went below the limit: read its requests again. */
void conn_unthrottle(struct conn *c);
/* Store fds that arrived with a recvmsg; closes extras above the limit. Return: kept. */
int conn_add_fds(struct conn *c, const int *fds, int n);

/* ---- uring.c ----------------------------------------------------------------- */

struct uring_io;
/* Return: 0, or -errno when io_uring is unavailable (the caller falls back). */
int uring_io_init(struct srv *s);
void uring_io_fini(struct srv *s);

/* ---- odp_svc.c ------------------------------------------------------------------ */

/* Return: 0, -ENOMEM. */
int odp_svc_init(struct srv *s);
void odp_svc_fini(struct srv *s);
/* Run the fault service now if faults wait for it (the ring poller's shortcut). */
void odp_svc_poll(struct srv *s);

/* ---- ring.c: shared-memory rings ---------------------------------------------------- */

struct ring_chan;
struct proto_ring_setup_rpy;
/* The loop: libevent, plus polling of active rings. Returns when the loop is broken. */
void srv_run(struct srv *s);
/* RING_SETUP: takes the frame's three fds. *ret must be NULL (else -EEXIST). */
int ring_setup(struct session *sess, const struct proto_req *req, struct ring_chan **ret,
	       struct proto_ring_setup_rpy *rpy);
void ring_free(struct ring_chan *ch);
/* Queue one frame into the completion ring (or its overflow, when full). */
void ring_send(struct ring_chan *ch, const struct proto_hdr *h, const void *body, size_t blen);
/* Publish the ring's counters and wake the client if it sleeps. */
void ring_publish(struct ring_chan *ch);
/* Before a socket frame: run what the ring holds. Return: false if some had to wait. */
bool ring_drained_for_socket(struct ring_chan *ch);
/* Something the ring waited on changed (e.g. parked accesses were answered): poll it. */
void ring_kick(struct ring_chan *ch);
void ring_stats(const struct ring_chan *ch, uint64_t *frames, uint64_t *doorbells,
		uint64_t *wakeups);

/* ---- persist.c: IOVA-stable restarts ---------------------------------------------- */

/* [persist] */
struct persist_settings {
	char state_dir[256];      /* empty: off */
	bool sync;                /* fdatasync each commit (else written is durable enough) */
	uint32_t grace_ms;        /* a restored session waits this long for RESUME */
	uint64_t checkpoint_bytes;/* rewrite the journal when it grows past this */
	bool require_fdstore;     /* refuse to start without NOTIFY_SOCKET (memfds would die) */
};

struct proto_hello_rpy;
/*
 * persist_open - open the journal in set->state_dir and restore what it
 * holds: sessions come back detached, with their handles and IOVAs, and
 * memory objects from the inherited fds (names "m.<session>.<serial>").
 * Takes the inherited fds it knows (*claimed[i] = true). Then checkpoints.
 * Return: 0, or -errno with a message in err.
 */
int persist_open(struct srv *s, const struct persist_settings *set, int nfds, char **names,
		 bool *claimed, char *err, size_t errlen);
/* Shut-down: the counters, one last commit; sessions stay in the journal. Then, once
 * the connections are closed, persist_free. */
void persist_close(struct srv *s);
void persist_free(struct srv *s);
/* The ring poller's shortcut: commit the records its pass produced at once. */
void persist_poll(struct srv *s);
/* Restore: replies that differed from what the journal recorded (0 when all is well). */
uint64_t persist_mismatches(const struct srv *s);
/* The listening socket the daemon bound itself goes to the fd store too. */
bool persist_store_listener(struct srv *s, int fd);
/* HELLO: give the session its token; journal it if durable. Fills the reply's tail. */
void persist_hello(struct session *sess, struct proto_session *tail);
/* RESUME on placeholder sess: Return: the restored session (now on sess's connection), or NULL
 * with *err. */
struct session *persist_resume(struct session *sess, const struct proto_req *req, int *err);
/* RESUME succeeded and negotiated: journal the session's new limits. */
void persist_resumed(struct session *sess);
/* A session ends for good (not at shut-down). */
void persist_session_end(struct session *sess);
/* A frame for the client: true if persist took it (held until durable, or a replay's). */
bool persist_send(struct session *sess, bool ring, const struct proto_hdr *h, const void *body,
		  size_t len);
/* Bytes of replies held back for durability (backpressure). */
size_t persist_held(const struct session *sess);
/* A reply to the current request: journal the request if it changed state. */
void persist_reply(struct session *sess, uint16_t type, const void *body, size_t len);
/* A resent request the journal already answered? Then answer it again: true. */
bool persist_answered(struct session *sess, const struct proto_req *req, bool ring);
/* A memory object: into the fd store (before its import is journaled) and out. */
int persist_mem_added(struct session *sess, struct sess_mem *m);
void persist_mem_gone(struct session *sess, struct sess_mem *m);
/* For STATUS: journal counters. */
struct proto_status_rpy;

/* ---- session.c ----------------------------------------------------------------- */

struct session *session_new(struct srv *s, struct conn *c, pid_t pid, uid_t uid, gid_t gid);
/* Tear everything down, log the leak report. NULL-safe. */
void session_free(struct session *sess);
/* Handle one complete frame; replies are appended to the connection's output. */
void session_frame(struct session *sess, const uint8_t *frame, size_t len);
/* The same, for a frame from the submission ring: its replies go to the completion ring. */
void session_frame_from(struct session *sess, const uint8_t *frame, size_t len, bool ring);
/* The session's ring, NULL without one. */
struct ring_chan *session_ring(const struct session *sess);
uint32_t session_max_frame(const struct session *sess);
pid_t session_pid(const struct session *sess);
/* The version its frames carry: the negotiated one, or before HELLO the daemon's own. */
uint16_t session_version(const struct session *sess);
uint64_t session_id(const struct session *sess);
bool session_hello_done(const struct session *sess);
/* Too many of its device accesses wait for faults: stop reading its requests. */
bool session_throttled(const struct session *sess);
/* For LIST_CLIENTS. */
void session_entry(const struct session *sess, struct proto_client_entry *ret);

#endif /* IOVAD_DAEMON_INTERNAL_H */
