/* SPDX-License-Identifier: MIT */
/*
 * internal.h - libiovad's private structures, shared by conn.c (the socket:
 * framing, the pending-request table, the reader role) and client.c (the
 * public calls built on it). Nothing here is exported: the library is built
 * with hidden visibility and a version script.
 *
 * Locking, in order (never take an earlier one while holding a later one):
 *   iovad.send_lock  one frame is written at a time, whole
 *   iovad.lock       everything else in struct iovad, every pending request,
 *                    the state of every batch, the dev/mem/batch/odp lists,
 *                    the queue of user faults and every region's handler
 *   iovad_dev.fault_lock  the per-thread fault records of one device
 * Callbacks (batch completions, user-fault handlers) run with no lock held
 * and without the reader role, so they may make any call, blocking ones too.
 *
 * A durable session's reconnect (conn.c) runs in the thread that holds the
 * reader role, with send_lock taken (or already held, by a writer that met
 * the break while reading): holding both, it alone touches the socket, the
 * rings and rbuf. Writers give send_lock up when they see iovad.broken.
 */
#ifndef IOVAD_LIBCLIENT_INTERNAL_H
#define IOVAD_LIBCLIENT_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "iovad/iovad.h"
#include "proto.h"
#include "ring.h"

/* ---- intrusive doubly-linked lists (all short, all walked under iovad.lock) ---- */

struct ilist {
	struct ilist *prev, *next;
};

static inline void ilist_init(struct ilist *h)
{
	h->prev = h;
	h->next = h;
}

static inline bool ilist_empty(const struct ilist *h)
{
	return h->next == h;
}

static inline void ilist_add_tail(struct ilist *h, struct ilist *n)
{
	n->prev = h->prev;
	n->next = h;
	h->prev->next = n;
	h->prev = n;
}

/* Remove n and leave it pointing at itself, so a second removal is harmless. */
static inline void ilist_del(struct ilist *n)
{
	n->prev->next = n->next;
	n->next->prev = n->prev;
	ilist_init(n);
}

#define ilist_entry(ptr, type, member) ((type *)((char *)(ptr) - offsetof(type, member)))

/* ---- requests in flight ---- */

/* The most fds one frame carries (RING_SETUP's three). */
#define FRAME_FDS_MAX 3

struct ring_new;

/*
 * One request waiting for its reply. Synchronous calls keep it on their
 * stack; a batch owns one for its whole life (and leaves it behind as an
 * orphan when freed in flight, so the reply still has somewhere to land).
 *
 * On a durable session it also keeps what sending it again takes, for the
 * reconnect (conn.c): its body and data stay the caller's (a synchronous
 * caller is blocked until the reply, a batch's body does not change while
 * it is in flight), except for an orphan, whose body is copied into own
 * before its owner frees it; its fds are duplicates, closed once it is done,
 * so a caller's fd closed meanwhile cannot send another file in its place.
 */
struct pending {
	struct ilist node;          /* in iovad.pending, in send order, until done */
	uint64_t id;
	uint16_t cmd;
	bool done;                  /* reply dispatched, or the connection died */
	bool sending;               /* the submitter has not finished writing it */
	bool orphan;                /* its batch was freed: drop the reply, free this */
	bool waiting;               /* its thread sleeps on cond (may take the reader role) */
	int status;                 /* the reply's status, or -ENOTCONN */
	pthread_cond_t cond;        /* signalled when done or handed the reader role */
	void *rpy;                  /* reply body (status first), rpy_len bytes */
	size_t rpy_len;
	void *rdata;                /* DMA_READ: the data that follows on success */
	size_t rdata_len;
	uint32_t count;             /* BATCH: ops sent, the reply must say the same */
	struct iovad_batch *batch;  /* async batch this completes, else NULL */
	struct iovad_odp *odp;      /* ODP_REG: entered in iovad.odps as the reply lands */
	bool ring;                  /* submitted on the ring: its reply comes on the ring */
	size_t rpy_alt_len;         /* another body length a success may have (HELLO: no v5 tail) */
	size_t rpy_got;             /* the body length the reply had */

	/* For a resend after RESUME (durable sessions): under iovad.lock. */
	uint64_t gen;               /* the connection (iovad.gen) it was last written to */
	const void *body;
	size_t blen;
	const void *data;
	size_t dlen;
	void *own;                  /* body and data copied here (orphans), else NULL */
	bool lost;                  /* an orphan whose copy failed: cannot be sent again */
	int nfds;
	int fds[FRAME_FDS_MAX];     /* duplicates of the fds it carries */
	struct ring_new *ring_new;  /* a reconnect's own RING_SETUP: the rings it offers */
};

struct iovad {
	int fd;                     /* the socket, O_NONBLOCK, CLOEXEC */
	int evfd;                   /* eventfd: a completed batch waits for iovad_process */
	int epfd;                   /* iovad_event_fd(): epoll over fd and evfd */
	uint16_t version;           /* negotiated; 0 while HELLO is in flight */
	uint32_t max_frame;         /* negotiated */
	uint32_t max_batch;         /* negotiated, and clamped so a BATCH fits a frame */
	uint32_t max_inflight;
	uint64_t session_id;
	long page_size;

	/*
	 * Durable sessions (protocol 5): the daemon journals the session, so
	 * when the socket breaks (the daemon died or restarts) the reader
	 * reconnects to path, RESUMEs with the token and sends every pending
	 * request again (conn.c). Set by HELLO, constant afterwards.
	 */
	char *path;
	bool durable;               /* HELLO's reply said PROTO_SESSION_DURABLE */
	uint8_t token[PROTO_TOKEN_LEN];
	uint32_t reconnect_ms;      /* $IOVAD_RECONNECT_TIMEOUT_MS; 0: never reconnect */

	pthread_mutex_t send_lock;
	pthread_mutex_t lock;
	uint64_t next_id;
	bool dead;                  /* EOF, I/O error or protocol violation: all -ENOTCONN */
	bool reading;               /* a thread holds the reader role */
	bool broken;                /* the socket broke, a reconnect is due: send nothing on it */
	bool reconnecting;          /* the reader-role holder is reconnecting */
	bool ring_hold;             /* after a resume: socket only while socket requests are out */
	uint64_t gen;               /* bumped by each reconnect: the socket frames went to */
	uint64_t reconnects;        /* successful resumes */
	struct ilist pending;       /* struct pending, oldest first */
	struct ilist done_batches;  /* struct iovad_batch completed, callback not delivered */
	struct ilist devs;          /* struct iovad_dev */
	struct ilist mems;          /* struct iovad_mem */
	struct ilist batches;       /* struct iovad_batch */
	struct ilist odps;          /* struct iovad_odp */
	struct ilist faults;        /* struct odp_evt: user faults received, not yet taken */

	/* Only the reader-role holder touches these; the role is passed under lock. */
	uint8_t *rbuf;              /* PROTO_FRAME_DEFAULT bytes: received, not yet dispatched */
	size_t rlen;

	/*
	 * Shared-memory rings (ring.c), when the daemon offers them: requests
	 * without fds go on the submission ring, and the completion ring
	 * carries their replies and the daemon's events. The socket carries the
	 * rest and tells us when the daemon is gone.
	 */
	bool ring_on;
	struct proto_ring_map ring;
	int ring_bell;              /* eventfd we write when the daemon sleeps */
	int ring_wake;              /* eventfd the daemon writes when we sleep */
	uint64_t ring_spin_ns;      /* how long a waiting reader polls the completion ring */
	uint32_t sq_tail;           /* under send_lock */
	uint32_t cq_head;           /* the reader-role holder's, published under lock */
	uint32_t ring_inflight;     /* under lock: requests on the ring not answered yet */
};

/* ---- ring.c ---- */

/*
 * Returned (positive) by the writers below when the connection was replaced
 * under them, by a reconnect this very thread ran while it waited: the frame
 * being written was sent again with every other pending one, so the writer
 * must stop, and report success.
 */
#define CONN_REPLACED 1

/* Set up the rings after HELLO (unless $IOVAD_RINGS=0). Return: 0 (on or off), -ENOTCONN. */
int ring_open(struct iovad *c);
/*
 * After a resume, behind the resent requests: ask for new rings (unless
 * $IOVAD_RINGS=0) with a RING_SETUP nobody waits for. Its reply adopts them
 * (ring_setup_done_locked). Reader role and send_lock held.
 * Return: 0 (asked, or no rings here), -EPIPE, -ENOTCONN.
 */
int ring_request(struct iovad *c);
/*
 * That RING_SETUP succeeded (lock held): use the rings. Return: 0, or -errno
 * when we cannot (no wakeup): the daemon has them, and would put our events
 * there, so the connection must die, as when ring_open() fails so.
 */
int ring_setup_done_locked(struct iovad *c, struct pending *p);
/* Rings offered but not taken: unmap, close, free. */
void ring_new_free(struct ring_new *n);
void ring_close(struct iovad *c);
/*
 * Write a frame into the submission ring (send_lock held; gen: iovad.gen at
 * registration). Return: 0, CONN_REPLACED, -EPIPE (the connection broke),
 * -ENOTCONN.
 */
int ring_submit(struct iovad *c, const struct iovec *iov, int niov, uint32_t len, uint64_t gen);
/* The daemon's doorbell, if it sleeps and the flags say it wants one. */
void ring_doorbell(struct iovad *c, uint32_t want);

/* ---- conn.c helpers shared with ring.c ---- */

/* Read what is there without blocking, if the reader role is free or ours. */
void conn_read_some(struct iovad *c);
int conn_call_fds(struct iovad *c, struct pending *p, uint16_t cmd, const void *body, size_t blen,
		  const int *fds, int nfds);
/* The connection's state for a writer registered at gen: 0, CONN_REPLACED, -EPIPE, -ENOTCONN. */
int conn_write_state(struct iovad *c, uint64_t gen);
/*
 * Within a reconnect (reader role and send_lock held): register p and write
 * its frame on the socket; nobody waits for it. Return: 0, -EPIPE, -ENOTCONN.
 */
int conn_write_internal(struct iovad *c, struct pending *p, uint16_t cmd, const void *body,
			size_t blen, const int *fds, int nfds);

/* The per-thread fault records of a device: a small table, oldest replaced first. */
#define IOVAD_FAULT_SLOTS 16

struct dev_fault {
	pthread_t thread;
	struct iovad_fault fault;
};

struct iovad_dev {
	struct ilist node;          /* in iovad.devs */
	struct iovad *c;
	uint32_t handle;
	uint32_t flags;             /* IOVAD_DEV_* */
	uint64_t merge_boundary;
	uint64_t dma_mask;
	uint32_t granule_shift;

	pthread_mutex_t fault_lock;
	struct dev_fault faults[IOVAD_FAULT_SLOTS];
	unsigned int nfaults;       /* slots in use */
	unsigned int next_fault;    /* slot to replace when all are in use */
};

struct iovad_mem {
	struct ilist node;          /* in iovad.mems */
	struct iovad *c;
	uint32_t handle;
	void *addr;                 /* our mapping */
	size_t map_len;             /* its length (page-rounded) */
	size_t size;                /* as the daemon reports it */
	uint64_t phys;
	uint32_t implicit_slot;     /* implicit regions see byte 0 at (slot << shift) */
};

struct iovad_odp {
	struct ilist node;          /* in iovad.odps from ODP_REG's reply to dereg */
	struct iovad *c;
	uint32_t handle;
	uint32_t flags;             /* IOVAD_ODP_* */
	uint32_t access;            /* IOVAD_ACCESS_* */
	uint64_t iova;
	uint64_t size;
	uint32_t mem_handle;        /* explicit: the memory object and where the region starts */
	uint64_t offset;
	iovad_odp_fault_cb cb;      /* user-faults handler, under iovad.lock */
	void *cb_arg;
};

/*
 * A PROTO_EVT_FAULT waiting to be taken: by a handler runner when its region
 * has a handler (or when the region is unknown: then the answer is -EFAULT),
 * else by iovad_odp_fault_next(). Which one is decided when it is taken, so
 * a handler set after the fault arrived still gets it.
 */
struct odp_evt {
	struct ilist node;          /* in iovad.faults, oldest first */
	struct iovad_odp *odp;      /* NULL: no such region (any more) */
	struct proto_evt_fault ev;
};

enum batch_state {
	BATCH_OPEN,                 /* being filled (or never submitted since reset) */
	BATCH_SENT,                 /* submitted, no reply yet */
	BATCH_QUEUED,               /* reply in, on iovad.done_batches, callback not run */
	BATCH_DONE,                 /* completed and delivered: results valid */
};

/* What a completed op updates in the caller's memory. */
struct batch_target {
	struct iovad_iova_state *st; /* LINK, DESTROY, FREE */
	uint64_t *ret_dma;           /* MAP */
};

struct iovad_batch {
	struct ilist node;          /* in iovad.batches */
	struct ilist done_node;     /* in iovad.done_batches (or a process() snapshot) */
	struct iovad *c;
	enum batch_state state;
	uint32_t cap;               /* the connection's max_batch */
	uint32_t count;
	int status;                 /* the batch's status once completed */
	bool waited;                /* iovad_batch_wait() is on it: no event-fd wake-up needed */
	uint32_t flushes;
	iovad_batch_cb cb;
	void *arg;
	struct pending *p;
	uint8_t *req;               /* struct proto_batch + cap x struct proto_op: the body */
	uint8_t *rpy;               /* struct proto_batch_rpy + cap x struct proto_op_result */
	struct batch_target *tgt;
};

/* ---- conn.c ---- */

/* Socket, eventfd, epoll and HELLO. Return: 0, -errno. */
int conn_open(const char *path, struct iovad **ret);
/* Close the descriptors and free what conn_open allocated (not the handle lists). */
void conn_close(struct iovad *c);

int pending_init(struct pending *p);
void pending_destroy(struct pending *p);
/* p is about to be orphaned: copy its body, which its owner frees, for a resend (lock held). */
void pending_keep_locked(struct iovad *c, struct pending *p);

/*
 * conn_send - register p and write one frame: header, body, then data
 * (either may be empty); fd (or -1) rides along as SCM_RIGHTS.
 * Return: 0; -EMSGSIZE (frame too big); -ENOTCONN (the connection is dead,
 * p was completed or never registered), or the status of the error frame the
 * daemon sent before closing (an access refusal), which p was completed with.
 */
int conn_send(struct iovad *c, struct pending *p, uint16_t cmd, const void *body, size_t blen,
	      const void *data, size_t dlen, int fd);
/* Wait for p, serving as the reader when no other thread is. */
void conn_wait(struct iovad *c, struct pending *p);
/* conn_send then conn_wait; p->rpy etc. set by the caller. Return: the reply's status. */
int conn_call(struct iovad *c, struct pending *p, uint16_t cmd, const void *body, size_t blen,
	      const void *data, size_t dlen, int fd);
/* Read and dispatch whatever is available without blocking, if nobody else is reading. */
void conn_drain(struct iovad *c);
/* Is the connection dead? (takes the lock) */
bool conn_dead(struct iovad *c);

/* client.c: a batch's reply landed (lock held): apply it and set its status. */
void batch_complete_locked(struct iovad_batch *b, int status);

/* ---- odp.c ---- */

/* ODP_REG's reply landed with status 0 (lock held): fill odp from it and list it. */
void odp_registered_locked(struct iovad *c, struct iovad_odp *odp, const void *rpy);
/* A PROTO_EVT_FAULT frame (lock held): queue it. Return: 0, or -errno (a violation). */
int odp_event_locked(struct iovad *c, const uint8_t *frame, size_t len);
/* Is a fault waiting that odp_run_faults() would take? (lock held) */
bool odp_faults_runnable_locked(const struct iovad *c);
/* May this thread run handlers now (not too deep in nested handlers)? */
bool odp_may_run_faults(void);
/*
 * Run the handlers of the faults queued now (answering those of unknown
 * regions with -EFAULT); no lock held, no reader role. Return: handlers run.
 */
int odp_run_faults(struct iovad *c);
/* Forget every queued fault: the connection died or is being closed (lock held). */
void odp_faults_drop_locked(struct iovad *c);

#endif /* IOVAD_LIBCLIENT_INTERNAL_H */
