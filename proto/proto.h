/* SPDX-License-Identifier: MIT */
/*
 * proto.h - the iovad wire protocol (see PROTOCOL.md for the prose).
 *
 * Version history (numbers are never reused; a changed message gets a new
 * type, as chrony's candm.h does):
 *   1  first version: HELLO, devices, memory import, IOVA alloc, batches of
 *      link/sync/unlink/destroy/free/map/unmap, device DMA, admin queries.
 *   2  on-demand paging: ODP_REG/DEREG/ADVISE/INVALIDATE, MEM_DISCARD,
 *      ODP_STATS, user-handled faults (the FAULT event and FAULT_DONE), and
 *      the admin LIST_ODP. MEM_IMPORT's reply fills implicit_slot. The
 *      daemon sends PROTO_EVT_FAULT frames (unsolicited, id 0) only to a
 *      client that registered a region with PROTO_ODP_USER_FAULTS.
 *   3  remote peers: IOVA_RKEY, the rkey of the verbs MR that covers an IOVA
 *      of the client's on an rxe device, to hand to an RDMA peer of the
 *      daemon's rdma_cm listener.
 *   4  shared-memory rings: RING_SETUP hands the daemon a sealed memfd with
 *      a submission and a completion ring, and two eventfd doorbells (see
 *      ring.h). The rings carry the same frames as the socket.
 *   5  durable sessions: at version 5 HELLO's reply carries a session token
 *      (struct proto_session after struct proto_hello_rpy). A daemon with a
 *      state journal keeps the session's devices, memory, IOVA states,
 *      links, mappings and ODP regions across its own restart; RESUME,
 *      sent instead of HELLO on a new connection, reattaches them. The
 *      client then resends every request it had no reply to, with the same
 *      id: the daemon answers one it already made durable from its record
 *      of the reply, and runs the others.
 *
 * Framing: a SOCK_STREAM Unix socket carries frames. Every frame starts with
 * struct proto_hdr; hdr.len is the whole frame, header included. Requests
 * carry a client-chosen id, echoed in the reply, so a client may pipeline.
 * Every reply body starts with struct proto_status (status = 0 or -errno).
 * A memory object's fd travels as SCM_RIGHTS on the MEM_IMPORT frame's bytes.
 *
 * All integers are little-endian and every struct has a fixed size and
 * layout, checked below. Reserved fields must be zero. The implementation
 * targets little-endian hosts (a _Static_assert says so); a big-endian port
 * would convert fields in proto.c, the only place that reads frames.
 */
#ifndef IOVAD_PROTO_H
#define IOVAD_PROTO_H

#include <stddef.h>
#include <stdint.h>

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "iovad's wire structs are little-endian; add conversions in proto.c to port"
#endif

#define PROTO_MAGIC        0x44564f49u /* "IOVD" */
#define PROTO_VERSION_MIN  1
#define PROTO_VERSION_MAX 6
#define PROTO_VERSION_ODP  2  /* the first version with the ODP messages */
#define PROTO_VERSION_RKEY 3  /* the first version with IOVA_RKEY */
#define PROTO_VERSION_RING 4  /* the first version with RING_SETUP */
#define PROTO_VERSION_RESUME 5 /* the first version with session tokens and RESUME */
#define PROTO_VERSION_PEER 6   /* the first version with peer tokens (IOVA_RKEY's reply) */
#define PROTO_VERSION      PROTO_VERSION_MAX

/* Limits. The daemon offers values up to these in HELLO; a client asks for less. */
#define PROTO_FRAME_MIN    4096u              /* smallest max_frame either side may offer */
#define PROTO_FRAME_MAX    (256u << 10)       /* hard cap on any frame */
#define PROTO_FRAME_DEFAULT (64u << 10)
#define PROTO_BATCH_MAX    1024u              /* hard cap on ops per BATCH */
#define PROTO_BATCH_DEFAULT 256u
#define PROTO_DEV_NAME_MAX 32u                /* NUL included */

/* Request types. A reply has the request's type with PROTO_RPY set. */
enum proto_cmd {
	PROTO_CMD_HELLO = 1,
	PROTO_CMD_DEV_OPEN = 2,
	PROTO_CMD_DEV_CLOSE = 3,
	PROTO_CMD_DEV_STATS = 4,
	PROTO_CMD_MEM_IMPORT = 5,
	PROTO_CMD_MEM_FREE = 6,
	PROTO_CMD_IOVA_ALLOC = 7,
	PROTO_CMD_BATCH = 8,
	PROTO_CMD_DMA_READ = 9,
	PROTO_CMD_DMA_WRITE = 10,
	PROTO_CMD_STATUS = 11,        /* admin */
	PROTO_CMD_LIST_DEVICES = 12,  /* admin */
	PROTO_CMD_LIST_CLIENTS = 13,  /* admin */
	PROTO_CMD_CLIENT_MAPS = 14,   /* admin */
	PROTO_CMD_ODP_REG = 15,       /* version 2 and later from here on */
	PROTO_CMD_ODP_DEREG = 16,
	PROTO_CMD_ODP_ADVISE = 17,
	PROTO_CMD_ODP_INVALIDATE = 18,
	PROTO_CMD_MEM_DISCARD = 19,
	PROTO_CMD_ODP_STATS = 20,
	PROTO_CMD_FAULT_DONE = 21,
	PROTO_CMD_LIST_ODP = 22,      /* admin */
	PROTO_CMD_IOVA_RKEY = 23,     /* version 3 and later from here on */
	PROTO_CMD_RING_SETUP = 24,    /* version 4 and later from here on */
	PROTO_CMD_RESUME = 25,        /* version 5 and later from here on */
	PROTO_CMD_MAX,
};
#define PROTO_RPY        0x8000u
/* Sent instead of a reply when a frame cannot be attributed; the daemon then closes. */
#define PROTO_RPY_ERROR  0xffffu
/* Unsolicited daemon -> client events (hdr.id 0, no status). */
#define PROTO_EVT_FAULT  0x4001u  /* body: struct proto_evt_fault */

/* Batch operations. */
enum proto_opcode {
	PROTO_OP_LINK = 1,    /* dma_iova_link(state at iova, phys, offset, size, dir, attrs) */
	PROTO_OP_SYNC = 2,    /* dma_iova_sync(state, offset, size) */
	PROTO_OP_UNLINK = 3,  /* dma_iova_unlink(state, offset, size, dir, attrs) */
	PROTO_OP_DESTROY = 4, /* dma_iova_destroy(state, size = mapped_len, dir, attrs) */
	PROTO_OP_FREE = 5,    /* dma_iova_free(state) */
	PROTO_OP_MAP = 6,     /* dma_map_phys(phys, size, dir, attrs) -> value = dma */
	PROTO_OP_UNMAP = 7,   /* dma_unmap_phys(iova = dma, size, dir, attrs) */
	PROTO_OP_MAX,
};

/* BATCH flags */
#define PROTO_BATCH_STOP_ON_ERROR 0x1u /* later ops get -ECANCELED after a failure */
#define PROTO_BATCH_FLAGS         PROTO_BATCH_STOP_ON_ERROR

/* Device flags (DEV_OPEN reply, LIST_DEVICES) */
#define PROTO_DEV_IDENTITY     0x1u
#define PROTO_DEV_UNTRUSTED    0x2u
#define PROTO_DEV_NON_COHERENT 0x4u
#define PROTO_DEV_LAZY         0x8u
#define PROTO_DEV_VISIBLE_ON_LINK 0x10u
#define PROTO_DEV_ODP_MR 0x20u /* rxe with ODP: an ODP region is one ODP MR */

/* DMA directions and attributes, as the kernel's (and domain.h's). */
#define PROTO_DIR_MAX 2u
#define PROTO_ATTRS   ((1u << 5) | (1u << 10) | (1u << 11))

struct proto_hdr {
	uint32_t magic;
	uint16_t version;
	uint16_t type;
	uint32_t len;      /* whole frame, header included */
	uint32_t flags;    /* reserved: 0 */
	uint64_t id;       /* client-chosen, echoed in the reply */
};

struct proto_status {
	int32_t status;    /* 0 or -errno */
	uint32_t reserved;
};

/* HELLO: negotiates the version and the limits. Must be the first frame. */
struct proto_hello {
	uint16_t version_min;
	uint16_t version_max;
	uint32_t max_frame;  /* largest frame the client will send or accept */
	uint32_t max_batch;  /* most ops the client will put in one BATCH */
	uint32_t reserved;
};

struct proto_hello_rpy {
	struct proto_status st;
	uint16_t version;    /* chosen: the highest both sides speak */
	uint16_t reserved;
	uint32_t max_frame;  /* min(client, daemon) */
	uint32_t max_batch;  /* min(client, daemon) */
	uint32_t max_inflight; /* requests the daemon reads ahead before it stops reading */
	uint64_t session_id;
	uint32_t max_mems;   /* this client's limits */
	uint32_t max_states;
	uint64_t max_mem_bytes;
};

/*
 * Version 5: HELLO's and RESUME's replies go on with the session's token.
 * The reply is then sizeof(proto_hello_rpy) + sizeof(proto_session) bytes.
 */
#define PROTO_TOKEN_LEN 16
#define PROTO_SESSION_DURABLE 0x1u /* journaled: survives the daemon's restart */
struct proto_session {
	uint8_t token[PROTO_TOKEN_LEN]; /* secret: with session_id, reattaches the session */
	uint32_t flags;                 /* PROTO_SESSION_* */
	uint32_t reserved;
};

/*
 * RESUME (version 5): the first frame of a new connection instead of HELLO,
 * reattaching a session that survived a daemon restart (or whose connection
 * broke while the daemon was restarting). The hello part negotiates as
 * HELLO does; version_max must be at least 5. Errors: -ENOENT (no such
 * session: the daemon lost it, or it was not durable, or its grace period
 * ended), -EACCES (wrong token, or another uid), -EBUSY (another
 * connection holds it).
 */
struct proto_resume {
	struct proto_hello hello;
	uint64_t session_id;
	uint8_t token[PROTO_TOKEN_LEN];
};

struct proto_dev_open {
	char name[PROTO_DEV_NAME_MAX]; /* NUL-terminated, NUL-padded */
};

struct proto_dev_open_rpy {
	struct proto_status st;
	uint32_t dev;           /* handle, valid on this connection only */
	uint32_t flags;         /* PROTO_DEV_* */
	uint64_t merge_boundary;
	uint64_t dma_mask;
	uint32_t granule_shift; /* 0 on an identity domain */
	uint32_t reserved;
};

struct proto_dev_ref {
	uint32_t dev;
	uint32_t reserved;
};

/* Counters of a device's domain since the daemon started. */
struct proto_dev_stats {
	uint64_t iova_allocs;
	uint64_t iova_frees;
	uint64_t links;
	uint64_t unlinks;
	uint64_t syncs;
	uint64_t iotlb_flushes;
	uint64_t bounced_bytes;
	uint64_t io_page_faults;
	uint64_t map_phys;
	uint64_t unmap_phys;
	uint64_t dma_reads;
	uint64_t dma_writes;
	uint64_t dma_bytes;
	uint64_t free_busy;
	uint64_t mapped_bytes;
	uint64_t table_bytes;
};

struct proto_dev_stats_rpy {
	struct proto_status st;
	struct proto_dev_stats stats;
};

/* MEM_IMPORT: one fd rides along as SCM_RIGHTS. */
struct proto_mem_import {
	uint64_t offset;  /* page-aligned offset in the fd */
	uint64_t size;
};

struct proto_mem_import_rpy {
	struct proto_status st;
	uint32_t mem;     /* handle */
	uint32_t implicit_slot; /* v2: offset of byte 0 in the client's implicit ODP
				 * space, in PROTO_IMPLICIT_SLOT units (v1: 0) */
	uint64_t phys;    /* synthetic phys of byte 0 */
	uint64_t size;    /* rounded up to the page size */
};

struct proto_mem_ref {
	uint32_t mem;
	uint32_t reserved;
};

struct proto_iova_alloc {
	uint32_t dev;
	uint32_t reserved;
	uint64_t phys;
	uint64_t size;
};

/* status -EOPNOTSUPP: identity domain; -ENOSPC: no IOVA space (try_alloc's false). */
struct proto_iova_alloc_rpy {
	struct proto_status st;
	uint64_t addr;
	uint64_t size;
};

struct proto_op {
	uint16_t opcode;  /* PROTO_OP_* */
	uint8_t dir;      /* 0..PROTO_DIR_MAX */
	uint8_t reserved;
	uint32_t dev;
	uint64_t iova;    /* the state's addr (LINK..FREE) or the dma address (UNMAP) */
	uint64_t phys;    /* LINK, MAP */
	uint64_t offset;  /* LINK, SYNC, UNLINK */
	uint64_t size;    /* LINK, SYNC, UNLINK, DESTROY (mapped_len), MAP, UNMAP */
	uint64_t attrs;   /* PROTO_ATTRS bits */
};

struct proto_batch {
	uint32_t count;
	uint32_t flags;   /* PROTO_BATCH_* */
	/* struct proto_op ops[count]; */
};

struct proto_op_result {
	int32_t status;
	uint32_t reserved;
	uint64_t value;   /* LINK: the state's new __size; MAP: the dma address;
			   * DESTROY, FREE: PROTO_OP_STATE_RELEASED when the state is gone,
			   * which a DESTROY may report with an error (holes: -ENOENT) */
};

#define PROTO_OP_STATE_RELEASED 1u

struct proto_batch_rpy {
	struct proto_status st; /* 0 if the batch was accepted, whatever the ops did */
	uint32_t count;         /* == the request's count */
	uint32_t flushes;       /* IOTLB flushes the batch's syncs cost (0 or 1) */
	/* struct proto_op_result results[count]; */
};

struct proto_dma {
	uint32_t dev;
	uint32_t len;     /* bytes; DMA_WRITE: that many bytes follow */
	uint64_t iova;
};

struct proto_fault {
	uint64_t iova;
	uint32_t access;  /* 1 read, 2 write */
	uint32_t reason;  /* enum dom_fault_reason; 0 when no fault */
};

/* DMA_READ reply: status 0 then len bytes follow; -EFAULT with the fault. */
struct proto_dma_rpy {
	struct proto_status st;
	struct proto_fault fault;
};

/* ---- on-demand paging (version 2) ----------------------------------------- */

#define PROTO_IMPLICIT_SLOT_SHIFT 21  /* implicit_slot units: 2 MiB */

/* Region rights */
#define PROTO_ODP_ACCESS_LOCAL_READ   0x1u
#define PROTO_ODP_ACCESS_DEVICE_READ  0x2u
#define PROTO_ODP_ACCESS_DEVICE_WRITE 0x4u
#define PROTO_ODP_ACCESS              0x7u
/* Region flags */
#define PROTO_ODP_IMPLICIT    0x1u  /* all of the client's memory objects, one IOVA range */
#define PROTO_ODP_USER_FAULTS 0x2u  /* faults go to the client as PROTO_EVT_FAULT */
#define PROTO_ODP_FLAGS       0x3u

/* ODP_REG. Explicit: mem, offset, len (page-aligned, inside mem). Implicit:
 * mem 0, offset 0, len 0 (the daemon's implicit size) or the size wanted. */
struct proto_odp_reg {
	uint32_t dev;
	uint32_t mem;
	uint64_t offset;
	uint64_t len;
	uint32_t access;  /* PROTO_ODP_ACCESS_* */
	uint32_t flags;   /* PROTO_ODP_* */
};

struct proto_odp_reg_rpy {
	struct proto_status st;
	uint32_t odp;     /* handle */
	uint32_t reserved;
	uint64_t iova;    /* the region's first IOVA */
	uint64_t size;    /* bytes of IOVA reserved */
};

/* ODP_DEREG, ODP_STATS */
struct proto_odp_ref {
	uint32_t odp;     /* ODP_STATS: 0 = totals (see flags) */
	uint32_t flags;   /* ODP_STATS: PROTO_ODP_STATS_DAEMON; else 0 */
};
#define PROTO_ODP_STATS_DAEMON 0x1u  /* with odp 0: the daemon's totals (admin only) */

/* Advice, as ibv_advise_mr's */
#define PROTO_ADVISE_PREFETCH          0u
#define PROTO_ADVISE_PREFETCH_WRITE    1u
#define PROTO_ADVISE_PREFETCH_NO_FAULT 2u
#define PROTO_ADVISE_MAX               2u
#define PROTO_ADVISE_FLAG_FLUSH        0x1u  /* synchronous: reply once mapped */

/* ODP_ADVISE, ODP_INVALIDATE (advice and flags 0) */
struct proto_odp_range {
	uint32_t odp;
	uint32_t advice;
	uint32_t flags;
	uint32_t reserved;
	uint64_t offset;
	uint64_t len;
};

/* MEM_DISCARD */
struct proto_mem_range {
	uint32_t mem;
	uint32_t reserved;
	uint64_t offset;  /* page-aligned */
	uint64_t len;     /* page multiple */
};

struct proto_odp_counters {
	uint64_t page_faults;
	uint64_t page_faults_handled;
	uint64_t page_invalidations;
	uint64_t page_invalidations_handled;
	uint64_t page_prefetch;
	uint64_t fault_errors;
	uint64_t fault_retries;
	uint64_t perm_upgrades;
	uint64_t syncs;
	uint64_t flushes;
	uint64_t user_faults;        /* PROTO_EVT_FAULT sent */
	uint64_t user_fault_timeouts;
	uint64_t mapped_bytes;       /* now */
	uint64_t fault_count;        /* faults in the latency histogram */
	uint64_t fault_p50_ns;
	uint64_t fault_p99_ns;
};

struct proto_odp_stats_rpy {
	struct proto_status st;
	struct proto_odp_counters c;
};

/* PROTO_EVT_FAULT: a device access needs [offset, offset + len) of region odp. */
struct proto_evt_fault {
	uint64_t fault_id;
	uint32_t odp;
	uint32_t access;  /* 1 read, 2 write */
	uint64_t offset;  /* region offset, page-aligned: the fault-around window */
	uint64_t len;
	uint64_t iova;    /* the access that faulted */
};

/* FAULT_DONE: the client's answer; status 0 = resolved, -errno = failed. */
struct proto_fault_done {
	uint64_t fault_id;
	int32_t status;
	uint32_t reserved;
};

struct proto_odp_entry {
	uint64_t session_id;
	uint32_t odp;
	uint32_t dev;     /* index in LIST_DEVICES order */
	uint32_t flags;   /* PROTO_ODP_* */
	uint32_t access;
	uint64_t iova;
	uint64_t size;
	struct proto_odp_counters c;
};

/* ---- admin queries (uid 0 or the daemon's own uid) ------------------------ */

struct proto_status_rpy {
	struct proto_status st;
	uint64_t uptime_ns;
	uint32_t pid;
	uint32_t io_backend;   /* 1 epoll (libevent), 2 io_uring */
	uint32_t clients;
	uint32_t devices;
	uint64_t sessions_total;
	uint64_t frames_in;
	uint64_t frames_bad;
	uint64_t teardowns;     /* sessions that ended holding resources */
	uint64_t leaked_states; /* IOVA states torn down on disconnect */
	uint64_t leaked_maps;
	uint64_t leaked_mems;
	uint64_t mem_bytes;     /* bytes of client memory imported now */
};

/* LIST_DEVICES / LIST_CLIENTS / CLIENT_MAPS / LIST_ODP page through with start. */
struct proto_list {
	uint64_t session_id;  /* CLIENT_MAPS; LIST_ODP (0 = all sessions); else 0 */
	uint32_t start;
	uint32_t reserved;
};

struct proto_list_rpy {
	struct proto_status st;
	uint32_t count;  /* entries in this reply */
	uint32_t total;  /* entries in all */
	/* entries[count] */
};

struct proto_dev_entry {
	char name[PROTO_DEV_NAME_MAX];
	uint32_t flags;
	uint32_t granule_shift;
	uint64_t dma_mask;
	uint32_t domain;      /* index of the domain: devices sharing one share it */
	uint32_t reserved;
	struct proto_dev_stats stats;
};

struct proto_client_entry {
	uint64_t session_id;
	uint32_t pid;
	uint32_t uid;
	uint32_t gid;
	uint32_t flags;       /* PROTO_CLIENT_*, version 4 on; 0 to older sessions */
	uint64_t mems;
	uint64_t mem_bytes;
	uint64_t states;
	uint64_t maps;
	uint64_t linked_bytes;
	uint64_t requests;
};

#define PROTO_CLIENT_RINGS 0x1u  /* the session set up shared-memory rings */

struct proto_map_entry {
	uint32_t dev;         /* index in LIST_DEVICES order */
	uint32_t kind;        /* 1 IOVA state, 2 streaming map */
	uint64_t iova;
	uint64_t size;
	uint64_t linked_bytes;
};

/* ---- remote peers (version 3) -------------------------------------------- */

/* IOVA_RKEY: the MR covering iova in the client's states or ODP regions on dev. */
struct proto_iova_rkey {
	uint32_t dev;
	uint32_t reserved;
	uint64_t iova;
};

/* Status 0: a peer may RDMA at [mr_iova, mr_iova + mr_len) with rkey. */
struct proto_iova_rkey_rpy {
	struct proto_status st;
	uint32_t rkey;
	uint32_t reserved;
	uint64_t mr_iova;
	uint64_t mr_len;
};

/*
 * Version 6: the reply goes on with the session's peer token. A remote peer
 * of rdma_listen presents it, in struct proto_peer_hello as the private
 * data of its rdma_cm connect, and its QP is then made in that session's
 * PD: it reaches that session's MRs and no other's, whatever rkey it tries.
 * A connect without a token that names a live session is rejected. Like
 * rkeys, the token changes when the daemon restarts.
 */
struct proto_peer_token {
	uint8_t token[PROTO_TOKEN_LEN];
};

#define PROTO_PEER_MAGIC 0x50564f49u /* "IOVP" */
struct proto_peer_hello {
	uint32_t magic;	   /* PROTO_PEER_MAGIC */
	uint32_t reserved; /* 0 */
	uint8_t token[PROTO_TOKEN_LEN];
};

/* ---- layout checks --------------------------------------------------------- */

#define PROTO_CHECK(type, size) _Static_assert(sizeof(struct type) == (size), #type " size")
PROTO_CHECK(proto_peer_token, 16);
PROTO_CHECK(proto_peer_hello, 24);
PROTO_CHECK(proto_hdr, 24);
PROTO_CHECK(proto_status, 8);
PROTO_CHECK(proto_hello, 16);
PROTO_CHECK(proto_hello_rpy, 48);
PROTO_CHECK(proto_session, 24);
PROTO_CHECK(proto_resume, 40);
PROTO_CHECK(proto_dev_open, 32);
PROTO_CHECK(proto_dev_open_rpy, 40);
PROTO_CHECK(proto_dev_ref, 8);
PROTO_CHECK(proto_dev_stats, 128);
PROTO_CHECK(proto_dev_stats_rpy, 136);
PROTO_CHECK(proto_mem_import, 16);
PROTO_CHECK(proto_mem_import_rpy, 32);
PROTO_CHECK(proto_mem_ref, 8);
PROTO_CHECK(proto_iova_alloc, 24);
PROTO_CHECK(proto_iova_alloc_rpy, 24);
PROTO_CHECK(proto_op, 48);
PROTO_CHECK(proto_batch, 8);
PROTO_CHECK(proto_op_result, 16);
PROTO_CHECK(proto_batch_rpy, 16);
PROTO_CHECK(proto_dma, 16);
PROTO_CHECK(proto_fault, 16);
PROTO_CHECK(proto_dma_rpy, 24);
PROTO_CHECK(proto_status_rpy, 96);
PROTO_CHECK(proto_list, 16);
PROTO_CHECK(proto_list_rpy, 16);
PROTO_CHECK(proto_dev_entry, 184);
PROTO_CHECK(proto_client_entry, 72);
PROTO_CHECK(proto_map_entry, 32);
PROTO_CHECK(proto_odp_reg, 32);
PROTO_CHECK(proto_odp_reg_rpy, 32);
PROTO_CHECK(proto_odp_ref, 8);
PROTO_CHECK(proto_odp_range, 32);
PROTO_CHECK(proto_mem_range, 24);
PROTO_CHECK(proto_odp_counters, 128);
PROTO_CHECK(proto_odp_stats_rpy, 136);
PROTO_CHECK(proto_evt_fault, 40);
PROTO_CHECK(proto_fault_done, 16);
PROTO_CHECK(proto_odp_entry, 168);
PROTO_CHECK(proto_iova_rkey, 16);
PROTO_CHECK(proto_iova_rkey_rpy, 32);
_Static_assert(offsetof(struct proto_hdr, len) == 8, "hdr.len offset");
_Static_assert(offsetof(struct proto_hdr, id) == 16, "hdr.id offset");
_Static_assert(offsetof(struct proto_op, iova) == 8, "op.iova offset");
_Static_assert(offsetof(struct proto_op, attrs) == 40, "op.attrs offset");
_Static_assert(offsetof(struct proto_hello_rpy, session_id) == 24, "hello session_id offset");

/*
 * RING_SETUP (version 4): the frame carries three fds as SCM_RIGHTS, in this
 * order: the ring memfd (sealed F_SEAL_SHRINK | F_SEAL_GROW, exactly
 * PROTO_RING_HDR_SIZE + sq_size + cq_size bytes), the daemon's doorbell
 * (an eventfd the client writes) and the client's (an eventfd the daemon
 * writes). Sizes are powers of two, at least twice the negotiated
 * max_frame, at most the daemon's [rings] max_size.
 */
struct proto_ring_setup {
	uint32_t sq_size;
	uint32_t cq_size;
	uint32_t flags;      /* reserved: 0 */
	uint32_t reserved;
};

struct proto_ring_setup_rpy {
	struct proto_status st;
	uint32_t spin_us;    /* how long the daemon polls an active ring before it sleeps */
	uint32_t reserved;
};

PROTO_CHECK(proto_ring_setup, 16);
PROTO_CHECK(proto_ring_setup_rpy, 16);

/* ---- decoding ------------------------------------------------------------ */

/* Per-connection negotiated state the decoder checks frames against. */
struct proto_limits {
	uint16_t version;    /* 0 until HELLO: then only HELLO (or RESUME, version >= 5) is accepted */
	uint32_t max_frame;
	uint32_t max_batch;
};

/* A decoded, validated request. Pointers point into the frame. */
struct proto_req {
	struct proto_hdr hdr;
	union {
		struct proto_hello hello;
		struct proto_resume resume;
		struct proto_dev_open dev_open;
		struct proto_dev_ref dev_ref;
		struct proto_mem_import mem_import;
		struct proto_mem_ref mem_ref;
		struct proto_iova_alloc iova_alloc;
		struct proto_batch batch;
		struct proto_dma dma;
		struct proto_list list;
		struct proto_odp_reg odp_reg;
		struct proto_odp_ref odp_ref;
		struct proto_odp_range odp_range;
		struct proto_mem_range mem_range;
		struct proto_fault_done fault_done;
		struct proto_iova_rkey iova_rkey;
		struct proto_ring_setup ring_setup;
	} u;
	const uint8_t *ops;       /* BATCH: count x struct proto_op, validated */
	const uint8_t *data;      /* DMA_WRITE: len bytes */
};

/*
 * proto_frame_len - how long the frame starting at buf is, from its first
 * avail bytes. Return: the length (>= sizeof(hdr)), 0 if more bytes are
 * needed to tell, -EMSGSIZE if the header claims a length outside
 * [sizeof(hdr), max_frame], -EBADMSG on a bad magic.
 */
int64_t proto_frame_len(const void *buf, size_t avail, uint32_t max_frame);

/*
 * proto_decode_request - validate one complete request frame of len bytes,
 * in this order: length bounds, header magic, version, type, exact length
 * for the type, zeroed reserved fields, then field ranges (batch ops
 * included). Never trusts a length and never asserts on input.
 * Return: 0 with *ret filled; -EMSGSIZE (length bounds), -EBADMSG (magic,
 * or a length that does not match the type), -EPROTONOSUPPORT (version, or
 * anything but HELLO or RESUME before HELLO, or RESUME in a header below
 * version 5), -ENOSYS (unknown type), -EINVAL
 * (non-zero reserved field, or a field out of range); -ENOSYS also for a
 * type the negotiated version does not have. On any error ret->hdr
 * holds as much of the header as the frame had (zeros otherwise), so an
 * error reply can echo the request's id. A BATCH count of 0 or above
 * max_batch is -EBADMSG: the count decides the frame's length.
 */
int proto_decode_request(const void *buf, size_t len, const struct proto_limits *lim,
			 struct proto_req *ret);

/*
 * proto_op_get - op i of a decoded BATCH (already validated), copied out so
 * the frame may sit at any alignment. Inline: a 256-op batch calls it per
 * op in the daemon's hottest loop.
 */
static inline void proto_op_get(const struct proto_req *req, uint32_t i, struct proto_op *ret)
{
	__builtin_memcpy(ret, req->ops + (size_t)i * sizeof(*ret), sizeof(*ret));
}

/*
 * proto_check_reply - validate a reply frame's header against the request
 * type it answers: magic, version, type == cmd | PROTO_RPY (or
 * PROTO_RPY_ERROR with a negative status), zero flags, len within
 * [min_len, max_frame].
 * Return: 0, or -EBADMSG / -EMSGSIZE / -EPROTONOSUPPORT.
 */
int proto_check_reply(const void *buf, size_t len, uint16_t version, uint32_t max_frame,
		      uint16_t cmd, size_t min_len);

/*
 * proto_decode_event - validate an unsolicited event frame (the client side):
 * length bounds, magic, version (== the negotiated one, >= PROTO_VERSION_ODP),
 * type PROTO_EVT_FAULT, zero flags and id, exact length, then access 1 or 2,
 * len > 0, offset + len not wrapping.
 * Return: 0 with *ret filled; -EMSGSIZE (length bounds); -EBADMSG (magic,
 * type, flags, id, length); -EPROTONOSUPPORT (version); -EINVAL (fields).
 */
int proto_decode_event(const void *buf, size_t len, uint16_t version, uint32_t max_frame,
		       struct proto_evt_fault *ret);

/* proto_hdr_init - a header for a frame of len bytes. */
void proto_hdr_init(struct proto_hdr *h, uint16_t version, uint16_t type, uint32_t len,
		    uint64_t id);

const char *proto_cmd_name(uint16_t type);

#endif /* IOVAD_PROTO_H */
