/* SPDX-License-Identifier: MIT */
/*
 * session.h - the daemon's per-client state, shared by session.c (devices,
 * memory, IOVA states, streaming mappings, dispatch, teardown) and
 * odp_svc.c (ODP regions, the fault service, user-handled faults).
 * Private to the daemon.
 */
#ifndef IOVAD_DAEMON_SESSION_H
#define IOVAD_DAEMON_SESSION_H

/* libbsd's tree.h uses the BSD attribute, which only its overlay mode defines. */
#ifndef __unused
#define __unused __attribute__((__unused__))
#endif
#include <bsd/sys/tree.h>

#include "internal.h"
#include "mr_set.h"

struct sess_mem {
	struct session *sess;
	uint32_t handle;        /* 1-based slot; 0 once the client freed it */
	uint32_t pins;          /* link records and mappings into it */
	struct pmem_obj *obj;
	uint64_t implicit_off;  /* where implicit ODP regions see byte 0 */
	uint64_t serial;        /* names its fd in the fd store (persist.c) */
};

/* A link record's MR on an rxe device (link_rec.mr). */
enum { LINK_MR_NONE = 0, LINK_MR_REG, LINK_MR_PENDING /* its MR went, re-register it */ };

struct link_rec {
	uint64_t off;           /* from the state's addr */
	uint64_t size;
	uint64_t phys;
	struct sess_mem *mem;
	uint8_t dir;            /* enum dma_data_direction: the MR's remote access */
	uint8_t mr;             /* LINK_MR_*; always NONE on a sim device */
	uint8_t attrs;          /* LINK_ATTR_*: the link's DMA attributes, for a checkpoint */
};
/* DMA attributes, packed into link_rec.attrs. */
#define LINK_ATTR_SKIP_CPU_SYNC 0x1u
#define LINK_ATTR_MMIO          0x2u
#define LINK_ATTR_COHERENT      0x4u

struct sess_state {
	uint32_t dom;           /* key: domain index, then base */
	uint32_t dev;           /* device table index it was allocated on */
	uint64_t base;          /* addr rounded down to the granule */
	uint64_t span;          /* bytes of IOVA from base */
	struct dma_iova_state st;
	uint64_t linked;        /* bytes in link records */
	struct link_rec *links;
	uint32_t nlinks, cap;
	struct mr_set mrs;      /* rxe backend: the synced records' MRs */
};

struct sess_map {
	uint32_t dom;           /* key: domain index, then base */
	uint32_t dev;
	uint64_t base;          /* dma rounded down to the granule */
	uint64_t span;
	uint64_t dma;
	uint64_t size;
	struct sess_mem *mem;   /* NULL on an identity domain's map of... never: always set */
	struct rxe_mr *mr;      /* rxe backend: the MR at [dma, dma + size); NULL on sim */
	uint64_t phys;          /* what was mapped, as asked (a checkpoint maps it again) */
	uint32_t dir;
	uint32_t attrs;
};

/* A vector of elements sorted by (dom, base), each starting with those two keys. */
/*
 * A session's IOVA states, streaming mappings and ODP spans, each ordered by
 * (domain, base): a red-black tree (libbsd's sys/tree.h, the BSD macros),
 * so that adding or removing one costs O(log n) however many the session
 * holds. Every element starts with struct skey; elements never move while
 * they live.
 */
struct svec_node {
	RB_ENTRY(svec_node) link;
	uint32_t dom;           /* the element's key, copied: the tree compares nodes */
	uint64_t base;
} __attribute__((aligned(16)));  /* the element follows the node */
RB_HEAD(svec_tree, svec_node);

struct svec {
	struct svec_tree t;
	uint32_t n;
	size_t esz;
};

struct session {
	struct srv *srv;
	struct conn *conn;
	uint64_t id;
	pid_t pid;
	uid_t uid;
	gid_t gid;
	struct proto_limits plim;   /* negotiated; version 0 until HELLO */
	uint32_t max_frame;
	struct dev_entry *devs[64]; /* handle - 1 -> device; NULL when closed */
	struct sess_mem **mems;     /* handle - 1 -> mem; NULL when free */
	uint32_t nmem_slots;
	uint32_t nmems;
	uint64_t mem_bytes;
	struct svec states;         /* struct sess_state */
	struct svec maps;           /* struct sess_map */
	uint32_t nlinks;            /* link records over all states */
	uint64_t iova_bytes;        /* IOVA its states, mappings and ODP regions hold */
	uint64_t table_bytes;       /* page tables its links and maps added (max_table_bytes) */
	uint64_t requests;
	uint32_t pinned_orphans;    /* freed by the client, still pinned */
	struct sess_state *last;    /* last state found; batches hit one state in a row */
	/* on-demand paging (odp_svc.c) */
	struct sess_mem **by_slot;  /* live objects sorted by implicit_off */
	uint32_t nby_slot, by_slot_cap;
	struct sess_odp **odps;     /* handle - 1 -> region; NULL when free */
	uint32_t nodp_slots;
	uint32_t nodps;
	struct svec odp_spans;      /* struct odp_span, for DMA lookups */
	struct ufault *ufaults;     /* user faults waiting for this client */
	uint32_t parked;            /* device accesses waiting for the fault service */
	uint32_t uparked;           /* of those, waiting for this client's own answer */
	struct odp_totals odp_gone; /* counters of regions already deregistered */
	struct odp_hist odp_hist;   /* fault latency over all its regions */
	/* shared-memory rings (ring.c) */
	struct ring_chan *ring;     /* NULL until RING_SETUP */
	bool in_ring;               /* the frame being handled came from the ring */
	bool in_frame;              /* a frame's handler runs: the caller flushes the socket */
	/* persistence (persist.c) */
	struct sess_persist *ps;    /* NULL unless the session is durable */
	const uint8_t *cur_frame;   /* the request being handled (persist_reply journals it) */
	size_t cur_len;
	uint64_t cur_fd_serial;     /* MEM_IMPORT: its object's serial, for the journal */
	struct replay *rp;          /* restore: the recorded reply the handler must reproduce */
	/* rxe backend: the session's PD and loopback QPs on each device (rxe.h) */
	struct rxe_pdx **pdx;		     /* by device table index, each made on first use */
	uint8_t peer_token[PROTO_TOKEN_LEN]; /* what a remote peer presents to reach its MRs */
};

/*
 * Restore: a journaled request runs again with its recorded reply at hand,
 * so the handler takes the same handles and addresses (replay_* below), and
 * what it sends is compared with the record instead of going out.
 */
struct replay {
	uint16_t type;              /* the recorded reply's */
	const uint8_t *body;
	size_t len;
	int fd;                     /* MEM_IMPORT: the object's fd from the fd store, or -1 */
	uint64_t fd_serial;
	bool checkpoint;            /* synthesized by a checkpoint: only key fields are real */
	bool sent;
	bool mismatch;
};

/* An ODP region's IOVA span, in a tree ordered like states and maps. */
struct odp_span {
	uint32_t dom;           /* key: domain index, then base */
	uint32_t dev;
	uint64_t base;          /* the region's first IOVA */
	uint64_t span;          /* its size */
	struct sess_odp *o;
};

struct skey {
	uint32_t dom;
	uint32_t dev;
	uint64_t base;
};

void svec_init(struct svec *s, size_t esz);
/* Free what is left (the caller has torn the elements down). */
void svec_fini(struct svec *s);
void *svec_first(const struct svec *s);
void *svec_last(const struct svec *s);
void *svec_next(const struct svec *s, const void *e);
/* The element at position i in order: O(i), for the admin listings that page by position. */
void *svec_at(const struct svec *s, uint32_t i);
void *svec_insert(struct svec *s, uint32_t dom, uint64_t base);
void svec_remove(struct svec *s, void *e);
void *svec_find(const struct svec *s, uint32_t dom, uint64_t base);
void *svec_containing(const struct svec *s, uint32_t dom, uint64_t iova, uint64_t len,
		      size_t span_off);

/*
 * The session's PD on rxe device e, made with its loopback QPs on first use:
 * every MR of the session on e is registered in it, and its device DMA and
 * its remote peers go through it. Return: 0 and *ret, or -errno.
 */
int sess_pdx(struct session *s, const struct dev_entry *e, struct rxe_pdx **ret);

/* Would size more bytes of IOVA take the client over max_iova_bytes? */
bool iova_over_quota(const struct session *s, uint64_t size);

uint8_t *scratch(struct session *s);
/* One frame to the client, on the ring (ring) or the socket. Replies go where the request came from. */
void sess_send(struct session *s, bool ring, uint64_t id, uint16_t type, const void *body,
	       size_t len);
void reply(struct session *s, const struct proto_req *req, uint16_t type, const void *body,
	   size_t len);
void reply_status(struct session *s, const struct proto_req *req, int status);
struct sess_mem *mem_by_handle(struct session *s, uint32_t h);
struct dev_entry *dev_by_handle(struct session *s, uint32_t h);
bool is_admin(const struct session *s);

/* ---- session.c, for persist.c ---- */
/* Run a decoded request's handler (HELLO and RESUME excluded). */
void session_dispatch(struct session *s, const struct proto_req *req);
/* Link records of a state, and whether [off, off + size) of it is published (synced). */
bool session_range_synced(struct session *s, const struct sess_state *ss, uint64_t off,
			  uint64_t size);

/* ---- session.c, for odp_svc.c ---- */
/* Device DMA on an rxe device (e->rxe) through s's MRs: 0, or -EFAULT with *f
 * (reason NOT_PRESENT, iova the first byte no MR covers), or rxe_dma's -errno. */
int rxe_dev_dma(struct session *s, const struct dev_entry *e, uint64_t iova, uint8_t *buf,
		uint64_t len, bool write, struct dom_fault *f);

/* ---- odp_svc.c ---- */

/* Request handlers: 0 when a reply was queued (or will be), else -errno to reply. */
int odp_handle_reg(struct session *s, const struct proto_req *req);
int odp_handle_dereg(struct session *s, const struct proto_req *req);
int odp_handle_advise(struct session *s, const struct proto_req *req);
int odp_handle_invalidate(struct session *s, const struct proto_req *req);
int odp_handle_discard(struct session *s, const struct proto_req *req);
int odp_handle_stats(struct session *s, const struct proto_req *req);
int odp_handle_fault_done(struct session *s, const struct proto_req *req);
int odp_handle_list(struct session *s, const struct proto_req *req);
/* A device access by s faulted (*f) inside one of its regions? Park it for the
 * fault service. Return: 1 parked (the reply comes later); 0 not an ODP fault
 * (answer with the fault); -EAGAIN (too many accesses already wait for this
 * client's own answers to user faults). */
int odp_dma_fault(struct session *s, struct dev_entry *e, const struct proto_req *req,
		  const struct dom_fault *f);
/* Is [iova, iova + len) inside one of s's regions on e's domain? */
bool odp_dma_allowed(struct session *s, const struct dev_entry *e, uint64_t iova, uint64_t len);
/* rxe device: if iova is in one of s's ODP regions on e, the rkey of the MR holding it
 * (RXE_RKEY_INVALID if none) and in *left the bytes from iova with that rkey: true. */
bool odp_rxe_key(struct session *s, const struct dev_entry *e, uint64_t iova, uint32_t *rkey,
		 uint64_t *left);
/* A memory object arrived: give it an implicit offset. Return: 0, -ENOMEM. */
/* rxe device: the MR that holds iova in one of s's ODP regions on e (faulted in), if any. */
bool odp_rxe_mr(struct session *s, const struct dev_entry *e, uint64_t iova, uint32_t *rkey,
		uint64_t *mr_iova, uint64_t *mr_len);
int odp_mem_added(struct session *s, struct sess_mem *m);
/* The client dropped a memory object: invalidate every region over it. */
void odp_mem_removed(struct session *s, struct sess_mem *m);
/* Checkpoint: the ODP_REG request and reply that would rebuild region h. false: none. */
bool odp_region_request(struct session *s, uint32_t h, struct proto_odp_reg *q,
			struct proto_odp_reg_rpy *r);
/* Add s's live regions' counters to *t. */
void odp_session_totals(const struct session *s, struct odp_totals *t);
/* Teardown: every region, parked access and user fault of s. */
void odp_session_free(struct session *s);

#endif /* IOVAD_DAEMON_SESSION_H */
