// SPDX-License-Identifier: MIT
/*
 * fuzz_session.c - libFuzzer target for the daemon's sessions: session.c,
 * odp_svc.c, devices.c and the domain engine, driven in-process by
 * sequences of request frames, without a socket.
 *
 * The daemon's own code is linked in whole (everything but main.c), with a
 * server set up as main.c does it from the built-in configuration plus a
 * few devices (two sharing a domain, a non-coherent one, one whose links are
 * visible at once) and tight per-client limits, so that the limits are
 * reached. Two connections (A, an administrator, and B, not) are fake struct
 * conns whose replies land in an evbuffer that this target reads back;
 * frames go straight to session_frame(), and the fault service and timers
 * run through the real event loop (EVLOOP_NONBLOCK) when the input says so
 * and at the end. Memory objects are real sealed memfds passed the way
 * server.c passes SCM_RIGHTS descriptors (conn_add_fds()).
 *
 * Input (all integers little-endian):
 *   byte 0       setup: bit 0/1 send a HELLO for A/B first, bits 2-3 the
 *                version it offers (1 + n % 3)
 *   then records, each
 *     ctl        bit 0 session (A/B); bit 1 raw: the body is a whole frame,
 *                sent as it is; bit 2 fix addresses (below); bit 3 run the
 *                event loop after the frame; bit 4 reconnect the session
 *                first (a fresh one, HELLO again); bits 5-6 MEM_IMPORT's
 *                descriptor: a sealed memfd, an unsealed one, none, or two
 *                (RING_SETUP's: sealed, unsealed, none, or a pipe for a
 *                doorbell); bit 7 submit on the session's shared-memory
 *                ring, once RING_SETUP has given it one: through the
 *                submission ring and the doorbell, the replies taken from
 *                the completion ring. Raw on the ring, the bytes go in as
 *                they are, and a body starting 0xff 0xff instead sets the
 *                ring's sq_tail and cq_head to the next 8 bytes: a client
 *                breaking its own ring
 *     type       the request type, 1 + type % (PROTO_CMD_MAX - 1); >= 0xf0: as is
 *     len        u16, the body's bytes (what is left if fewer)
 *     body
 * Unless raw, the header is built here (magic, the negotiated version, the
 * exact length, an id of our own) and a body is cut or zero-padded to its
 * type's size, with reserved fields cleared, DEV_OPEN's name one of the
 * devices' (byte 0 picks it), a BATCH's count and ops and a DMA's length
 * made consistent and MEM_IMPORT's range made to fit its memfd, so that most
 * frames decode and the fuzzer spends its time in the session rather than
 * the decoder (fuzz_proto covers that). As the server does, a connection
 * the daemon condemned gets no more frames, and one whose device accesses
 * wait for the fault service gets its next frame once they are served. With "fix
 * addresses", an address field v becomes known[v >> 56] + (v & 0xffffff):
 * IOVAs, dma addresses and phys from earlier replies (of either session, so
 * B tries A's), and FAULT_DONE's id and the list requests' session id from
 * the daemon's events and HELLO replies; a top byte of 0xff leaves v as is.
 *
 * Invariants, trapped on (besides ASan, UBSan and LeakSanitizer):
 *   - every reply is a well-formed frame of the session's version, status
 *     0 or -errno, of the request's type (or ERROR), answering a request
 *     that was sent and not answered yet; events have id 0;
 *   - when a session goes, every frame it was sent has been answered,
 *     except the device accesses still parked (which teardown drops);
 *   - after each input, with both sessions gone: no fault waits for the
 *     service, no memory object of a session is left, nothing is mapped in
 *     any domain and every IOVA allocated has been freed.
 *
 * FUZZ_SESSION_TRACE=1 prints every frame, reply and batch result (for
 * writing seeds: gen_corpus_session.py). Replay without libFuzzer:
 * fuzz_session_replay (tests/fuzz/replay/) FILE|DIR...
 */
#include <errno.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <unistd.h>

#include "config.h"
#include "internal.h"
#include "session.h"
#include "ring.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                       \
	do {                              \
		if (!(cond))              \
			__builtin_trap(); \
	} while (0)

#define HDR sizeof(struct proto_hdr)
#define BODY_MAX (16u << 10)
#define MAX_FRAMES 4096u
#define OUR_ID (UINT64_C(1) << 63)  /* ids of frames built here; raw ones never have it */
/*
 * IOVA states and ODP regions are folded below this size (and so is the
 * implicit regions' default). Work proportional to a state's size rather
 * than to what is mapped or backed in it stalls the daemon's only thread;
 * this target found two such paths, both fixed: tearing a state down on a
 * non-coherent device walked it a granule at a time (domain.c's
 * unlink_range_slow; test_dma_api's 64 TiB teardown), and ODP_ADVISE over a
 * sparse implicit region walked its holes the same way (odp.c's
 * resolve_hole; itest_odp's 64 TiB prefetch). Sizes up to 64 TiB keep both
 * fixed.
 */
#define STATE_MAX (UINT64_C(64) << 40)

enum { CTL_B = 1, CTL_RAW = 2, CTL_FIX = 4, CTL_LOOP = 8, CTL_RECONNECT = 16, CTL_RING = 128 };
/* RING_SETUP's ring sizes: twice the 64 KiB max_frame HELLO negotiates. */
#define FZ_RING (128u << 10)
enum { FD_SEALED, FD_UNSEALED, FD_NONE, FD_TWO };

struct fz_conn {
	struct conn *c;
	struct evbuffer *out;   /* c->out: the daemon forgets it when it closes c itself */
	uint16_t version;       /* negotiated, 0 before HELLO's reply */
	uint64_t sent;          /* frames handed to session_frame */
	uint64_t replies;       /* frames answered (events not counted) */
	uint64_t unsure;        /* raw ring bytes: a frame, maybe several, maybe none */
	/* our side of its rings, once RING_SETUP succeeded */
	bool ring;
	struct proto_ring_map m;
	uint32_t sq_tail, cq_head;
	int ring_fd, bell, wake;  /* our copies; the daemon closes its own */
	int setup_fds[3];         /* the accepted RING_SETUP's fds, dup'ed for us */
	int pending_fds[3];       /* those of one in flight */
};

static struct srv srv;
static struct fz_conn conns[2];
static int idle_fd = -1;        /* never readable: the fake connections' read events wait on it */
static bool trace;              /* $FUZZ_SESSION_TRACE: print every frame and reply (seeds) */
static uint64_t next_seq;
/* The type of each frame built here, by sequence number, and whether it was answered. */
static uint16_t sent_type[MAX_FRAMES];
static bool answered[MAX_FRAMES];
/* A BATCH's MAP ops (of its first 64): their results are dma addresses worth knowing. */
static uint64_t map_ops[MAX_FRAMES];

/* What replies told us, for "fix addresses" (rings: the newest overwrite the oldest). */
static struct {
	uint64_t iova[64], phys[64], fault[16], sid[8];
	uint32_t niova, nphys, nfault, nsid;
} known;

/* ---- set-up, once per process --------------------------------------------------- */

static void add_device(struct config *cfg, const char *name, const char *domain, bool nc)
{
	struct cfg_device *d = &cfg->devs[cfg->ndevs++];

	memset(d, 0, sizeof(*d));
	strcpy(d->name, name);
	strcpy(d->domain, domain);
	d->dma_mask_bits = 64;
	d->non_coherent = nc;
	d->not_pci = nc;
}

static void fz_init(void)
{
	static bool done;
	struct config *cfg;
	char err[256];

	if (done)
		return;
	done = true;
	cfg = calloc(1, sizeof(*cfg));
	CHECK(cfg);
	config_defaults(cfg);
	/* Two devices on one domain (an IOMMU group), a non-coherent one, links visible at once. */
	add_device(cfg, "sim0b", "sim0", false);
	strcpy(cfg->doms[cfg->ndoms].name, "nc0");
	cfg->doms[cfg->ndoms++].dom = (struct dom_config){ 0 };
	add_device(cfg, "nc0", "nc0", true);
	strcpy(cfg->doms[cfg->ndoms].name, "vis0");
	cfg->doms[cfg->ndoms++].dom = (struct dom_config){ .visibility = DOM_VISIBLE_ON_LINK };
	add_device(cfg, "vis0", "vis0", false);

	trace = getenv("FUZZ_SESSION_TRACE") != NULL;
	/* Errors only: one the daemon logs while it is fuzzed is worth reading. */
	log_set_level(trace ? LOG_DEBUG_ : LOG_ERR_);
	srv.base = event_base_new();
	srv.scratch = malloc(PROTO_FRAME_MAX);
	CHECK(srv.base && srv.scratch);
	srv.start_ns = now_ns();
	srv.pol.self_uid = getuid();
	srv.io = IO_EPOLL; /* its kick_write is a no-op: replies stay in conn->out for us */
	srv.lim = cfg->lim;
	/* Small enough that an input reaches each limit. */
	srv.lim.max_mems = 4;
	srv.lim.max_mem_bytes = 512u << 10;
	srv.lim.max_states = 8;
	srv.lim.max_maps = 8;
	srv.lim.max_links = 32;
	srv.lim.max_inflight = 4;
	srv.lim.max_fds = 3; /* RING_SETUP's three */
	srv.lim.max_odp = 3;
	srv.rings = cfg->rings;
	srv.odp = cfg->odp;
	srv.odp.window = 16u << 10;
	srv.odp.implicit_size = STATE_MAX;
	/* User faults time out at the next loop run: an answer and a timeout are both reachable. */
	srv.odp.user_fault_timeout_ms = 0;
	idle_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	CHECK(idle_fd >= 0);
	CHECK(devices_init(&srv.devices, srv.base, cfg, err, sizeof(err)) == 0);
	CHECK(odp_svc_init(&srv) == 0);
	free(cfg);
}

/* ---- connections ------------------------------------------------------------------ */

static void conn_link(struct conn *c)
{
	c->next = srv.conns;
	if (srv.conns)
		srv.conns->prev = c;
	srv.conns = c;
	srv.nconns++;
}

static void conn_unlink(struct conn *c)
{
	if (c->prev)
		c->prev->next = c->next;
	else
		srv.conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	srv.nconns--;
}

static void nop_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg; /* frames are fed one by one here: nothing is ever left to read or resume */
}

static void fz_open(int i)
{
	struct fz_conn *z = &conns[i];
	struct conn *c = calloc(1, sizeof(*c));

	CHECK(c);
	c->srv = &srv;
	c->fd = -1;
	c->in = evbuffer_new();
	c->out = evbuffer_new();
	c->resume = event_new(srv.base, -1, 0, nop_cb, c);
	/* The epoll transport pauses and resumes reading through it (server.c). */
	c->rev = event_new(srv.base, idle_fd, EV_READ | EV_PERSIST, nop_cb, c);
	CHECK(c->in && c->out && c->resume && c->rev);
	/* A is root or the daemon's user (admin requests), B is somebody else. */
	c->sess = session_new(&srv, c, 1000 + i, i ? 4242 : getuid(), i ? 4242 : getgid());
	CHECK(c->sess);
	conn_link(c);
	*z = (struct fz_conn){ .c = c, .out = c->out, .ring_fd = -1, .bell = -1, .wake = -1,
			       .setup_fds = { -1, -1, -1 }, .pending_fds = { -1, -1, -1 } };
}

static void fz_replies(struct fz_conn *z);

/* Move what the daemon completed on z's ring into z's output, for fz_replies. */
static void ring_take(struct fz_conn *z)
{
	if (!z->ring)
		return;
	for (;;) {
		uint32_t tail = proto_ring_load(&z->m.hdr->cq_tail), used = tail - z->cq_head;
		const uint8_t *f = z->m.cq + (z->cq_head & (z->m.cq_size - 1));
		struct proto_hdr h;

		if (!used)
			break;
		/*
		 * The daemon publishes whole frames, never more than the ring
		 * holds; unless the client moved its own cq_head (then it reads
		 * nonsense, its own affair, and stops).
		 */
		if (used > z->m.cq_size || used < HDR) {
			CHECK(z->unsure);
			break;
		}
		memcpy(&h, f, HDR);
		if (h.len < HDR || h.len > PROTO_FRAME_MAX || proto_ring_rec(h.len) > used) {
			CHECK(z->unsure);
			break;
		}
		/* After the client broke its ring, what it reads back is not judged. */
		if (!z->unsure)
			evbuffer_add(z->out, f, h.len);
		z->cq_head += proto_ring_rec(h.len);
	}
	proto_ring_store(&z->m.hdr->cq_head, z->cq_head);
}

static void ring_close(struct fz_conn *z)
{
	if (z->ring)
		proto_ring_unmap(&z->m);
	for (int k = 0; k < 3; k++)
		if (z->setup_fds[k] >= 0)
			close(z->setup_fds[k]);
	z->ring = false;
	z->setup_fds[0] = z->setup_fds[1] = z->setup_fds[2] = -1;
	z->ring_fd = z->bell = z->wake = -1;
}

/*
 * Put bytes into z's submission ring as a client would (space permitting),
 * ring the doorbell, and let the loop run the daemon's doorbell callback.
 * Return: whether they went in.
 */
static bool ring_submit(struct fz_conn *z, const uint8_t *b, size_t len)
{
	uint32_t rec = proto_ring_rec((uint32_t)len), head;
	uint64_t one = 1;

	if (!len || len > z->m.sq_size)
		return false;
	head = proto_ring_load(&z->m.hdr->sq_head);
	if (z->m.sq_size - (z->sq_tail - head) < rec)
		return false;
	memcpy(z->m.sq + (z->sq_tail & (z->m.sq_size - 1)), b, len);
	z->sq_tail += rec;
	proto_ring_store(&z->m.hdr->sq_tail, z->sq_tail);
	CHECK(write(z->bell, &one, sizeof(one)) == (ssize_t)sizeof(one));
	event_base_loop(srv.base, EVLOOP_NONBLOCK);
	ring_take(z);
	return true;
}

/* RING_SETUP's descriptors: a ring memfd (sealed or not), two eventfds, or a pipe. */
static void pass_ring_fds(struct fz_conn *z, int mode)
{
	int fds[3] = { -1, -1, -1 }, p[2];

	if (mode == FD_NONE)
		return;
	if (mode == FD_UNSEALED) {
		fds[0] = memfd_create("fuzz-ring", MFD_CLOEXEC);
		if (fds[0] >= 0 && ftruncate(fds[0], (off_t)proto_ring_file_size(FZ_RING, FZ_RING)))
			CHECK(0);
	} else {
		fds[0] = proto_ring_create(FZ_RING, FZ_RING);
	}
	fds[1] = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (mode == FD_TWO && pipe(p) == 0) {
		fds[2] = p[0];
		close(p[1]);
	} else {
		fds[2] = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	}
	CHECK(fds[0] >= 0 && fds[1] >= 0 && fds[2] >= 0);
	for (int k = 0; k < 3; k++) {
		z->pending_fds[k] = dup(fds[k]);
		CHECK(z->pending_fds[k] >= 0);
	}
	conn_add_fds(z->c, fds, 3);
}

/*
 * The daemon closes a session whose ring is broken from the ring's doorbell
 * callback (conn_finish), as it would a socket's: then its connection is gone
 * from srv.conns, and so is everything but its output buffer, which is ours.
 */
static void fz_reap(void)
{
	for (int i = 0; i < 2; i++) {
		struct fz_conn *z = &conns[i];
		bool live = false;

		if (!z->c)
			continue;
		for (struct conn *c = srv.conns; c; c = c->next)
			live |= c == z->c;
		if (live)
			continue;
		fz_replies(z);
		evbuffer_free(z->out);
		ring_close(z);
		for (int k = 0; k < 3; k++)
			if (z->pending_fds[k] >= 0)
				close(z->pending_fds[k]);
		*z = (struct fz_conn){ 0 };
	}
}

/* After a RING_SETUP: map the rings the daemon accepted, or drop what it refused. */
static void ring_adopt(struct fz_conn *z)
{
	if (z->pending_fds[0] < 0)
		return;
	if (!z->ring && session_ring(z->c->sess)) {
		CHECK(proto_ring_map(z->pending_fds[0], FZ_RING, FZ_RING, &z->m) == 0);
		z->ring = true;
		z->sq_tail = z->cq_head = 0;
		memcpy(z->setup_fds, z->pending_fds, sizeof(z->setup_fds));
		z->ring_fd = z->setup_fds[0];
		z->bell = z->setup_fds[1];
		z->wake = z->setup_fds[2];
	} else {
		for (int k = 0; k < 3; k++)
			close(z->pending_fds[k]);
	}
	z->pending_fds[0] = z->pending_fds[1] = z->pending_fds[2] = -1;
}

/* Take what the daemon wrote to z's connection and check it frame by frame. */
static void fz_replies(struct fz_conn *z)
{
	struct evbuffer *out = z->out;
	size_t n = evbuffer_get_length(out), off = 0;
	const uint8_t *p;

	if (!n)
		return;
	p = evbuffer_pullup(out, -1);
	while (off < n) {
		struct proto_hdr h;
		struct proto_status st;
		const uint8_t *b;
		uint64_t seq;

		CHECK(n - off >= HDR);
		memcpy(&h, p + off, HDR);
		CHECK(h.magic == PROTO_MAGIC && h.len >= HDR && h.len <= n - off &&
		      h.len <= PROTO_FRAME_MAX && !h.flags);
		b = p + off + HDR;
		off += h.len;
		if (h.type == PROTO_EVT_FAULT) {
			struct proto_evt_fault ev;

			CHECK(h.id == 0 && h.len == HDR + sizeof(ev) && h.version == z->version &&
			      z->version >= PROTO_VERSION_ODP);
			memcpy(&ev, b, sizeof(ev));
			CHECK(ev.len && (ev.access == 1 || ev.access == 2));
			known.fault[known.nfault++ % 16] = ev.fault_id;
			continue;
		}
		CHECK(h.len >= HDR + sizeof(st));
		memcpy(&st, b, sizeof(st));
		if (trace)
			fprintf(stderr, "  %c <- %s #%" PRIu64 ": %d\n", (int)(z - conns) + 'A',
				proto_cmd_name(h.type), h.id & ~OUR_ID, st.status);
		CHECK(st.status <= 0 && st.status >= -4095);
		CHECK(h.type == PROTO_RPY_ERROR || (h.type & PROTO_RPY));
		z->replies++;
		if (h.type == (PROTO_CMD_HELLO | PROTO_RPY) && !st.status) {
			struct proto_hello_rpy r;

			/* The reply already speaks the version it announces. */
			CHECK(h.len >= HDR + sizeof(r) && !z->version);
			memcpy(&r, b, sizeof(r));
			/* From version 5 the session's token follows (no journal here: not durable). */
			CHECK(h.len == HDR + sizeof(r) + (r.version >= PROTO_VERSION_RESUME ?
							   sizeof(struct proto_session) : 0));
			CHECK(r.version >= PROTO_VERSION_MIN && r.version <= PROTO_VERSION_MAX &&
			      h.version == r.version);
			z->version = r.version;
			known.sid[known.nsid++ % 8] = r.session_id;
		}
		/* Every reply speaks the session's version; before HELLO, the daemon's own. */
		CHECK(h.version == (z->version ? z->version : PROTO_VERSION));
		/* Not ours; or after the client broke its ring, old frames may be read again. */
		if (!(h.id & OUR_ID) || z->unsure)
			continue;
		seq = h.id & ~OUR_ID;
		CHECK(seq < next_seq && seq < MAX_FRAMES && !answered[seq]);
		answered[seq] = true;
		CHECK(h.type == PROTO_RPY_ERROR || h.type == (sent_type[seq] | PROTO_RPY));
		if (h.type == PROTO_RPY_ERROR || st.status)
			continue;
		switch (sent_type[seq]) {
		case PROTO_CMD_IOVA_ALLOC: {
			struct proto_iova_alloc_rpy r;

			memcpy(&r, b, sizeof(r));
			known.iova[known.niova++ % 64] = r.addr;
			break;
		}
		case PROTO_CMD_MEM_IMPORT: {
			struct proto_mem_import_rpy r;

			memcpy(&r, b, sizeof(r));
			known.phys[known.nphys++ % 64] = r.phys;
			known.phys[known.nphys++ % 64] = r.phys + r.size;
			break;
		}
		case PROTO_CMD_ODP_REG: {
			struct proto_odp_reg_rpy r;

			memcpy(&r, b, sizeof(r));
			known.iova[known.niova++ % 64] = r.iova;
			break;
		}
		case PROTO_CMD_BATCH: {
			struct proto_batch_rpy r;

			memcpy(&r, b, sizeof(r));
			CHECK(h.len == HDR + sizeof(r) + (size_t)r.count *
						      sizeof(struct proto_op_result));
			for (uint32_t i = 0; i < r.count; i++) {
				struct proto_op_result res;

				memcpy(&res, b + sizeof(r) + i * sizeof(res), sizeof(res));
				if (trace)
					fprintf(stderr, "    op %u: %d, %#" PRIx64 "\n", i,
						res.status, res.value);
				if (i >= 64)
					continue;
				if (!res.status && (map_ops[seq] >> i & 1))
					known.iova[known.niova++ % 64] = res.value;
			}
			break;
		}
		default:
			break;
		}
	}
	evbuffer_drain(out, n);
}

/* The fault service and due timers, until nothing more is to be done. */
static bool fz_busy(void)
{
	if (srv.fq_head)
		return true;
	for (int i = 0; i < 2; i++)
		if (conns[i].c && conns[i].c->sess->parked)
			return true;
	return false;
}

/* Frames still in a ring: the daemon took none while it had no room or was throttled. */
static bool ring_pending(const struct fz_conn *z)
{
	return z->ring && !z->c->dead && proto_ring_load(&z->m.hdr->sq_head) != z->sq_tail;
}

static void fz_loop(void)
{
	/* Bounded: a retry re-parks at most DMA_RETRIES times, a user fault a few more. */
	for (int i = 0; i < 32; i++) {
		bool pending = false;

		/* The daemon's poller is srv_run(), not run here: its doorbells stand in. */
		for (int k = 0; k < 2; k++)
			if (conns[k].c && ring_pending(&conns[k])) {
				CHECK(write(conns[k].bell, &(uint64_t){ 1 }, 8) == 8);
				pending = true;
			}
		event_base_loop(srv.base, EVLOOP_NONBLOCK);
		for (int k = 0; k < 2; k++)
			if (conns[k].c) {
				ring_take(&conns[k]);
				fz_replies(&conns[k]);
			}
		fz_reap();
		if (!fz_busy() && !pending)
			break;
	}
	for (int i = 0; i < 2; i++)
		if (conns[i].c) {
			ring_take(&conns[i]);
			fz_replies(&conns[i]);
		}
}

static void fz_close(int i)
{
	struct fz_conn *z = &conns[i];
	struct conn *c = z->c;

	if (!c)
		return;
	ring_take(z);
	fz_replies(z);
	/*
	 * Answered, or parked on a fault that teardown now drops unanswered.
	 * Not after a client wrote raw bytes or counters into its own ring:
	 * what it then gets back is its own affair.
	 */
	if (!z->unsure)
		CHECK(z->replies + c->sess->parked == z->sent);
	conn_unlink(c);
	session_free(c->sess);
	for (uint32_t k = 0; k < c->nfds; k++)
		close(c->fds[k]);
	free(c->fds);
	event_free(c->resume);
	event_free(c->rev);
	evbuffer_free(c->in);
	evbuffer_free(z->out);
	free(c);
	ring_close(z);
	z->c = NULL;
}

/* ---- frames ------------------------------------------------------------------------- */

static uint64_t fix_addr(uint64_t v, const uint64_t *tab, uint32_t n, uint32_t cap)
{
	if ((v >> 56) == 0xff || !n)
		return v;
	if (n > cap)
		n = cap;
	return tab[(v >> 56) % n] + (v & 0xffffff);
}

static uint64_t fix_iova(uint64_t v)
{
	return fix_addr(v, known.iova, known.niova, 64);
}

static uint64_t fix_phys(uint64_t v)
{
	return fix_addr(v, known.phys, known.nphys, 64);
}

/* The exact body size of a fixed-size request; 0 for BATCH and DMA_WRITE, -1 unknown. */
static long body_size(uint16_t type)
{
	switch (type) {
	case PROTO_CMD_HELLO:
		return sizeof(struct proto_hello);
	case PROTO_CMD_DEV_OPEN:
		return sizeof(struct proto_dev_open);
	case PROTO_CMD_DEV_CLOSE:
	case PROTO_CMD_DEV_STATS:
	case PROTO_CMD_MEM_FREE:
	case PROTO_CMD_ODP_DEREG:
	case PROTO_CMD_ODP_STATS:
		return 8;
	case PROTO_CMD_MEM_IMPORT:
		return sizeof(struct proto_mem_import);
	case PROTO_CMD_IOVA_ALLOC:
		return sizeof(struct proto_iova_alloc);
	case PROTO_CMD_DMA_READ:
		return sizeof(struct proto_dma);
	case PROTO_CMD_STATUS:
		return 0;
	case PROTO_CMD_LIST_DEVICES:
	case PROTO_CMD_LIST_CLIENTS:
	case PROTO_CMD_CLIENT_MAPS:
	case PROTO_CMD_LIST_ODP:
		return sizeof(struct proto_list);
	case PROTO_CMD_ODP_REG:
		return sizeof(struct proto_odp_reg);
	case PROTO_CMD_ODP_ADVISE:
	case PROTO_CMD_ODP_INVALIDATE:
		return sizeof(struct proto_odp_range);
	case PROTO_CMD_MEM_DISCARD:
		return sizeof(struct proto_mem_range);
	case PROTO_CMD_FAULT_DONE:
		return sizeof(struct proto_fault_done);
	case PROTO_CMD_IOVA_RKEY:
		return sizeof(struct proto_iova_rkey);
	case PROTO_CMD_RING_SETUP:
		return sizeof(struct proto_ring_setup);
	default:
		return -1;
	}
}

static void put32(uint8_t *b, size_t off, uint32_t v)
{
	memcpy(b + off, &v, 4);
}

static uint64_t get64(const uint8_t *b, size_t off)
{
	uint64_t v;

	memcpy(&v, b + off, 8);
	return v;
}

static void put64(uint8_t *b, size_t off, uint64_t v)
{
	memcpy(b + off, &v, 8);
}

/*
 * Make body (blen bytes, room for BODY_MAX) a plausible request of its type;
 * return its new length. *memsz gets the memfd size a MEM_IMPORT needs.
 */
static size_t fix_body(uint16_t type, uint8_t *b, size_t blen, bool addrs, size_t *memsz,
		       uint64_t *maps)
{
	long want = body_size(type);

	if (want > 0 && blen < (size_t)want)
		memset(b + blen, 0, (size_t)want - blen);
	if (want >= 0)
		blen = (size_t)want;
	switch (type) {
	case PROTO_CMD_HELLO:
		put32(b, 12, 0);
		break;
	case PROTO_CMD_RING_SETUP:
		/* Mostly the size the memfd has; now and then what the input says. */
		if (!addrs) {
			put32(b, 0, FZ_RING);
			put32(b, 4, FZ_RING);
		}
		put32(b, 8, 0);
		put32(b, 12, 0);
		break;
	case PROTO_CMD_DEV_OPEN: {
		/* One of the daemon's devices, by index; NUL-padded. */
		uint32_t idx = b[0] % srv.devices.ndevs;

		memset(b, 0, PROTO_DEV_NAME_MAX);
		strcpy((char *)b, srv.devices.devs[idx].name);
		break;
	}
	case PROTO_CMD_DEV_CLOSE:
	case PROTO_CMD_DEV_STATS:
	case PROTO_CMD_MEM_FREE:
	case PROTO_CMD_ODP_DEREG:
		put32(b, 4, 0);
		break;
	case PROTO_CMD_MEM_IMPORT: {
		/* A page-aligned range of a memfd of up to 256 KiB; sometimes one page short. */
		uint64_t offset = (get64(b, 0) & 3) * 4096, size = get64(b, 8);
		bool short_fd = size & 0x40;

		size = ((size & 0x3f) + 1) * 4096;
		put64(b, 0, offset);
		put64(b, 8, size);
		*memsz = offset + size - (short_fd ? 4096 : 0);
		break;
	}
	case PROTO_CMD_IOVA_ALLOC:
		put32(b, 4, 0);
		if (addrs)
			put64(b, 8, fix_phys(get64(b, 8)));
		if (get64(b, 16) > STATE_MAX)
			put64(b, 16, get64(b, 16) % (STATE_MAX + 1));
		break;
	case PROTO_CMD_BATCH: {
		uint32_t count, room;

		if (blen < sizeof(struct proto_batch) + sizeof(struct proto_op)) {
			memset(b + blen, 0, sizeof(struct proto_batch) + sizeof(struct proto_op) -
						    blen);
			blen = sizeof(struct proto_batch) + sizeof(struct proto_op);
		}
		room = (uint32_t)((blen - sizeof(struct proto_batch)) / sizeof(struct proto_op));
		memcpy(&count, b, 4);
		count = 1 + count % (room < srv.lim.max_batch ? room : srv.lim.max_batch);
		put32(b, 0, count);
		put32(b, 4, b[4] & PROTO_BATCH_FLAGS);
		for (uint32_t i = 0; i < count; i++) {
			uint8_t *op = b + sizeof(struct proto_batch) + i * sizeof(struct proto_op);
			uint64_t attrs = get64(op, 40) & PROTO_ATTRS;
			uint16_t opcode;

			/* A valid opcode stays; anything else becomes one. */
			memcpy(&opcode, op, 2);
			if (!opcode || opcode >= PROTO_OP_MAX)
				opcode = (uint16_t)(1 + op[0] % (PROTO_OP_MAX - 1));
			memcpy(op, &opcode, 2);
			if (opcode == PROTO_OP_MAP && i < 64)
				*maps |= UINT64_C(1) << i;
			op[2] %= PROTO_DIR_MAX + 1;
			op[3] = 0;
			put64(op, 40, attrs);
			if (addrs) {
				put64(op, 8, fix_iova(get64(op, 8)));
				put64(op, 16, fix_phys(get64(op, 16)));
			}
		}
		blen = sizeof(struct proto_batch) + count * sizeof(struct proto_op);
		break;
	}
	case PROTO_CMD_DMA_READ: {
		uint32_t len;

		memcpy(&len, b + 4, 4);
		put32(b, 4, 1 + len % 16384);
	}
		/* fall through */
	case PROTO_CMD_IOVA_RKEY:
		if (addrs)
			put64(b, 8, fix_iova(get64(b, 8)));
		if (type == PROTO_CMD_IOVA_RKEY)
			put32(b, 4, 0);
		break;
	case PROTO_CMD_DMA_WRITE:
		if (blen < sizeof(struct proto_dma) + 1) {
			memset(b + blen, 0x5a, sizeof(struct proto_dma) + 1 - blen);
			blen = sizeof(struct proto_dma) + 1;
		}
		put32(b, 4, (uint32_t)(blen - sizeof(struct proto_dma)));
		if (addrs)
			put64(b, 8, fix_iova(get64(b, 8)));
		break;
	case PROTO_CMD_LIST_DEVICES:
	case PROTO_CMD_LIST_CLIENTS:
		put64(b, 0, 0);
		/* fall through */
	case PROTO_CMD_CLIENT_MAPS:
	case PROTO_CMD_LIST_ODP:
		put32(b, 12, 0);
		if (addrs && known.nsid && type != PROTO_CMD_LIST_DEVICES &&
		    type != PROTO_CMD_LIST_CLIENTS)
			put64(b, 0, known.sid[b[0] % (known.nsid < 8 ? known.nsid : 8)]);
		break;
	case PROTO_CMD_ODP_REG:
		put32(b, 24, b[24] & PROTO_ODP_ACCESS);
		put32(b, 28, b[28] & PROTO_ODP_FLAGS);
		/* A region's IOVA is a state too (STATE_MAX); page-aligned, or it is refused. */
		if (get64(b, 16) > STATE_MAX)
			put64(b, 16, get64(b, 16) % (STATE_MAX + 1) & ~UINT64_C(0xfff));
		break;
	case PROTO_CMD_ODP_ADVISE:
	case PROTO_CMD_ODP_INVALIDATE:
		put32(b, 12, 0);
		if (type == PROTO_CMD_ODP_INVALIDATE) {
			put32(b, 4, 0);
			put32(b, 8, 0);
		} else {
			put32(b, 4, b[4] % (PROTO_ADVISE_MAX + 1));
			put32(b, 8, b[8] & PROTO_ADVISE_FLAG_FLUSH);
		}
		break;
	case PROTO_CMD_MEM_DISCARD:
		put32(b, 4, 0);
		break;
	case PROTO_CMD_ODP_STATS:
		put32(b, 4, b[4] & PROTO_ODP_STATS_DAEMON);
		break;
	case PROTO_CMD_FAULT_DONE:
		put32(b, 12, 0);
		if (addrs && known.nfault)
			put64(b, 0, known.fault[b[0] % (known.nfault < 16 ? known.nfault : 16)]);
		break;
	default:
		break;
	}
	return blen;
}

/* A memfd of size bytes, sealed against shrinking or not; -1 on failure. */
static int make_memfd(size_t size, bool seal)
{
	int fd = memfd_create("fuzz-session", MFD_CLOEXEC | MFD_ALLOW_SEALING);

	if (fd < 0)
		return -1;
	if (ftruncate(fd, (off_t)size) < 0 || (seal && fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK) < 0)) {
		close(fd);
		return -1;
	}
	return fd;
}

static void pass_fds(struct conn *c, int mode, size_t memsz)
{
	int fds[2], n = 0;

	if (mode == FD_NONE || !memsz)
		return;
	fds[n] = make_memfd(memsz, mode != FD_UNSEALED);
	n += fds[n] >= 0;
	if (mode == FD_TWO) {
		fds[n] = make_memfd(4096, true);
		n += fds[n] >= 0;
	}
	if (n)
		conn_add_fds(c, fds, n);
}

static void fz_send(int i, uint8_t *frame, size_t len, uint16_t type, int fdmode, size_t memsz,
		    bool on_ring)
{
	struct fz_conn *z = &conns[i];

	/* A frame on the ring carries no fds: its MEM_IMPORT or RING_SETUP takes none. */
	if (on_ring && z->ring) {
		if (trace)
			fprintf(stderr, "%c => %s (%zu bytes, ring)\n", i + 'A',
				proto_cmd_name(type), len);
		if (ring_submit(z, frame, len))
			z->sent++;
		fz_replies(z);
		fz_reap();
		return;
	}
	if (type == PROTO_CMD_MEM_IMPORT)
		pass_fds(z->c, fdmode, memsz);
	if (type == PROTO_CMD_RING_SETUP)
		pass_ring_fds(z, fdmode);
	z->sent++;
	if (trace)
		fprintf(stderr, "%c -> %s (%zu bytes)\n", i + 'A', proto_cmd_name(type), len);
	session_frame(z->c->sess, frame, len);
	ring_adopt(z);
	fz_replies(z);
}

/* A frame built here: header of our own, the session's version (or HELLO's). */
static void fz_frame(int i, uint16_t type, uint16_t version, const uint8_t *body, size_t blen,
		     int fdmode, size_t memsz, uint64_t maps, bool on_ring)
{
	static uint8_t frame[HDR + BODY_MAX];
	struct proto_hdr h;
	uint64_t seq = next_seq;

	if (seq >= MAX_FRAMES)
		return;
	next_seq++;
	sent_type[seq] = type;
	answered[seq] = false;
	map_ops[seq] = maps;
	proto_hdr_init(&h, version, type, (uint32_t)(HDR + blen), OUR_ID | seq);
	memcpy(frame, &h, HDR);
	memcpy(frame + HDR, body, blen);
	fz_send(i, frame, HDR + blen, type, fdmode, memsz, on_ring);
}

static void fz_hello(int i, uint16_t vmax)
{
	struct proto_hello h = { .version_min = PROTO_VERSION_MIN,
				 .version_max = vmax,
				 .max_frame = PROTO_FRAME_DEFAULT,
				 .max_batch = PROTO_BATCH_DEFAULT };

	fz_frame(i, PROTO_CMD_HELLO, vmax, (const uint8_t *)&h, sizeof(h), FD_NONE, 0, 0, false);
}

/* ---- one input ------------------------------------------------------------------------- */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static uint8_t body[BODY_MAX + 64];
	uint16_t vmax;
	size_t pos = 1;

	fz_init();
	if (!size)
		return 0;
	next_seq = 0;
	memset(&known, 0, sizeof(known));
	vmax = (uint16_t)(PROTO_VERSION_MIN + (data[0] >> 2) % PROTO_VERSION_MAX);
	for (int i = 0; i < 2; i++) {
		fz_open(i);
		if (data[0] & (1u << i))
			fz_hello(i, vmax);
	}
	while (pos + 4 <= size) {
		uint8_t ctl = data[pos], t = data[pos + 1];
		size_t blen = (size_t)data[pos + 2] | (size_t)data[pos + 3] << 8, memsz = 0;
		int i = ctl & CTL_B, fdmode = (ctl >> 5) & 3;
		struct fz_conn *z = &conns[i];
		uint16_t type;

		pos += 4;
		if (blen > size - pos)
			blen = size - pos;
		if (blen > BODY_MAX)
			blen = BODY_MAX;
		memcpy(body, data + pos, blen);
		pos += blen;
		/* The daemon ended this session (its ring broke): a client would start a new one. */
		if (!z->c) {
			fz_open(i);
			fz_hello(i, vmax);
		}
		if (ctl & CTL_RECONNECT) {
			fz_close(i);
			fz_open(i);
			fz_hello(i, vmax);
		}
		/* The server stops reading a connection it has condemned. */
		if (z->c->dead)
			continue;
		/* ...and one whose device accesses wait for the service, until they are served. */
		if (session_throttled(z->c->sess))
			fz_loop();
		if ((ctl & CTL_RAW) && (ctl & CTL_RING) && z->ring) {
			/* A client writing whatever it likes into its own ring. */
			if (blen >= 10 && body[0] == 0xff && body[1] == 0xff) {
				uint32_t tail, head;

				memcpy(&tail, body + 2, 4);
				memcpy(&head, body + 6, 4);
				proto_ring_store(&z->m.hdr->sq_tail, tail);
				proto_ring_store(&z->m.hdr->cq_head, head);
				z->sq_tail = tail;
				z->cq_head = head;
				CHECK(write(z->bell, &(uint64_t){ 1 }, 8) == 8);
				/* Taking replies from a head of its own making is the client's affair. */
				z->unsure++;
				event_base_loop(srv.base, EVLOOP_NONBLOCK);
			} else {
				/* Never one of our ids, as on the socket. */
				if (blen >= HDR) {
					struct proto_hdr h;

					memcpy(&h, body, HDR);
					h.id &= ~OUR_ID;
					memcpy(body, &h, HDR);
				}
				if (ring_submit(z, body, blen))
					z->unsure++;
			}
			fz_replies(z);
			fz_reap();
		} else if (ctl & CTL_RAW) {
			struct proto_hdr h;

			if (blen >= HDR) {
				/* Never one of our ids: those are checked against what we sent. */
				memcpy(&h, body, HDR);
				h.id &= ~OUR_ID;
				memcpy(body, &h, HDR);
				type = h.type;
				memsz = 64u << 10;
				/* The same bound on states as on the frames built here. */
				if ((type == PROTO_CMD_IOVA_ALLOC &&
				     blen == HDR + sizeof(struct proto_iova_alloc)) ||
				    (type == PROTO_CMD_ODP_REG &&
				     blen == HDR + sizeof(struct proto_odp_reg)))
					if (get64(body, HDR + 16) > STATE_MAX)
						put64(body, HDR + 16,
						      get64(body, HDR + 16) % STATE_MAX);
			} else {
				type = 0;
			}
			fz_send(i, body, blen, type, fdmode, memsz, false);
		} else {
			uint64_t maps = 0;
			uint16_t version;

			type = t >= 0xf0 ? t : (uint16_t)(1 + t % (PROTO_CMD_MAX - 1));
			blen = fix_body(type, body, blen, ctl & CTL_FIX, &memsz, &maps);
			version = z->version ? z->version : PROTO_VERSION;
			fz_frame(i, type, type == PROTO_CMD_HELLO ? vmax : version, body, blen,
				 fdmode, memsz, maps, ctl & CTL_RING);
		}
		if (ctl & CTL_LOOP)
			fz_loop();
	}
	/* Let every parked access be served (or time out) and answered, then tear down. */
	fz_loop();
	for (int i = 0; i < 2; i++) {
		CHECK(!conns[i].c || conns[i].c->sess->parked == 0);
		fz_close(i);
	}
	fz_loop();
	CHECK(!srv.fq_head && !srv.nconns && !srv.conns);
	for (uint32_t k = 0; k < srv.devices.pmem.nr; k++)
		CHECK(!srv.devices.pmem.objs[k]->priv);
	for (uint32_t d = 0; d < srv.devices.ndoms; d++) {
		struct dom_stats st;

		dom_domain_stats(srv.devices.doms[d], &st);
		CHECK(st.mapped_bytes == 0 && st.iova_allocs == st.iova_frees);
	}
	return 0;
}
