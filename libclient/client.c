// SPDX-License-Identifier: MIT
/*
 * client.c - libiovad's public calls: connection, devices, memory, the
 * IOVA-based DMA API, the simulated device's DMA, batches and messages.
 * The socket, framing and the reader role are in conn.c.
 *
 * Rules the header leaves open, decided here:
 * - Handles die with their connection: iovad_disconnect() frees every device,
 *   memory object (unmapping it), ODP region and batch still open on it, so
 *   nothing leaks, and none of those handles may be used afterwards.
 *   In-flight batches' callbacks do not run, nor do queued fault handlers.
 * - A batch's callback runs exactly once: in iovad_batch_wait() on that batch
 *   if it is called before iovad_process() picked the batch up, else in
 *   iovad_process(). Other batches a waiting thread happens to complete are
 *   left for iovad_process(). A batch is "in flight" (reset/queue refuse with
 *   -EBUSY) from submit until its completion has been delivered that way,
 *   so every submitted batch must eventually meet one of the two.
 * - iovad_dev_last_fault() keeps the last fault per (device, thread) in a
 *   table of IOVAD_FAULT_SLOTS threads per device, the least recently
 *   added thread's record replaced first; -ENOENT if this thread has none.
 * - Device DMA of len 0 is -EINVAL, as the daemon has it.
 * - A state without an IOVA (zeroed by try_alloc's failure, destroy or free)
 *   is -EINVAL here, as the engine's dma_iova_* have it; a state that is not
 *   this client's is the daemon's -ENOENT.
 * - The ODP calls (odp.c) need protocol version 2: on an older daemon they
 *   are -EOPNOTSUPP without a round trip. A region must not be deregistered
 *   while its fault handler may be running (the handler is given a pointer
 *   to it); faults still queued for it are answered -EFAULT.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "internal.h"

_Static_assert(sizeof(struct iovad_fault) == sizeof(struct proto_fault), "fault layout");
_Static_assert(IOVAD_DEV_IDENTITY == PROTO_DEV_IDENTITY && IOVAD_DEV_LAZY == PROTO_DEV_LAZY &&
		       IOVAD_DEV_UNTRUSTED == PROTO_DEV_UNTRUSTED &&
		       IOVAD_DEV_NON_COHERENT == PROTO_DEV_NON_COHERENT,
	       "device flags are the wire's");
_Static_assert((IOVAD_ATTR_SKIP_CPU_SYNC | IOVAD_ATTR_MMIO | IOVAD_ATTR_REQUIRE_COHERENT) ==
		       PROTO_ATTRS,
	       "attrs are the wire's");

#define IOVAD_DEV_FLAGS \
	(IOVAD_DEV_IDENTITY | IOVAD_DEV_UNTRUSTED | IOVAD_DEV_NON_COHERENT | IOVAD_DEV_LAZY)

/* ---- requests ---- */

/* One synchronous request: what goes out and where the reply lands. */
struct call {
	uint16_t cmd;
	const void *body;
	size_t blen;
	const void *data;     /* appended after body (DMA_WRITE payload) */
	size_t dlen;
	bool pass_fd;
	int fd;               /* SCM_RIGHTS, when pass_fd */
	void *rpy;            /* reply body, status first */
	size_t rpy_len;
	void *rdata;          /* DMA_READ payload */
	size_t rdata_len;
	uint32_t count;       /* BATCH: ops sent */
};

static int rpc(struct iovad *c, const struct call *k)
{
	struct pending p;
	int r;

	r = pending_init(&p);
	if (r)
		return r;
	p.rpy = k->rpy;
	p.rpy_len = k->rpy_len;
	p.rdata = k->rdata;
	p.rdata_len = k->rdata_len;
	p.count = k->count;
	r = conn_call(c, &p, k->cmd, k->body, k->blen, k->data, k->dlen, k->pass_fd ? k->fd : -1);
	pending_destroy(&p);
	return r;
}

/* ---- connection ---- */

int iovad_connect(const char *socket_path, struct iovad **ret)
{
	const char *path = socket_path;

	if (!ret)
		return -EINVAL;
	/* secure_getenv: a set-id program must not be pointed at another daemon. */
	if (!path)
		path = secure_getenv("IOVAD_SOCKET");
	if (!path || !*path)
		path = IOVAD_DEFAULT_SOCKET;
	return conn_open(path, ret);
}

static void dev_free(struct iovad_dev *d)
{
	pthread_mutex_destroy(&d->fault_lock);
	free(d);
}

static void mem_free(struct iovad_mem *m)
{
	munmap(m->addr, m->map_len);
	free(m);
}

static void batch_free(struct iovad_batch *b)
{
	if (b->p) {
		pending_destroy(b->p);
		free(b->p);
	}
	free(b->req);
	free(b->rpy);
	free(b->tgt);
	free(b);
}

void iovad_disconnect(struct iovad *c)
{
	if (!c)
		return;
	/*
	 * The caller guarantees no other thread uses c any more. Orphans (the
	 * pendings of batches freed in flight) are ours to free; the other
	 * pendings belong to batches, freed with them below.
	 */
	pthread_mutex_lock(&c->lock);
	while (!ilist_empty(&c->pending)) {
		struct pending *p = ilist_entry(c->pending.next, struct pending, node);

		ilist_del(&p->node);
		if (p->orphan) {
			pending_destroy(p);
			free(p);
		}
	}
	while (!ilist_empty(&c->batches)) {
		struct iovad_batch *b = ilist_entry(c->batches.next, struct iovad_batch, node);

		ilist_del(&b->node);
		batch_free(b);
	}
	while (!ilist_empty(&c->devs)) {
		struct iovad_dev *d = ilist_entry(c->devs.next, struct iovad_dev, node);

		ilist_del(&d->node);
		dev_free(d);
	}
	while (!ilist_empty(&c->mems)) {
		struct iovad_mem *m = ilist_entry(c->mems.next, struct iovad_mem, node);

		ilist_del(&m->node);
		mem_free(m);
	}
	odp_faults_drop_locked(c);
	while (!ilist_empty(&c->odps)) {
		struct iovad_odp *o = ilist_entry(c->odps.next, struct iovad_odp, node);

		ilist_del(&o->node);
		free(o);
	}
	pthread_mutex_unlock(&c->lock);
	conn_close(c);
}

uint64_t iovad_session_id(const struct iovad *c)
{
	return c ? c->session_id : 0;
}

bool iovad_uses_rings(const struct iovad *c)
{
	return c && c->ring_on;
}

bool iovad_session_durable(const struct iovad *c)
{
	return c && c->durable;
}

uint64_t iovad_reconnects(const struct iovad *c)
{
	struct iovad *mc = (struct iovad *)c; /* the lock is not part of its value */
	uint64_t n;

	if (!c)
		return 0;
	pthread_mutex_lock(&mc->lock);
	n = c->reconnects;
	pthread_mutex_unlock(&mc->lock);
	return n;
}

/* ---- devices ---- */

int iovad_dev_open(struct iovad *c, const char *name, struct iovad_dev **ret)
{
	struct proto_dev_open req = { 0 };
	struct proto_dev_open_rpy rpy;
	struct iovad_dev *d;
	size_t n;
	int r;

	if (!c || !name || !ret)
		return -EINVAL;
	n = strnlen(name, PROTO_DEV_NAME_MAX);
	if (n == 0 || n == PROTO_DEV_NAME_MAX)
		return -EINVAL;
	memcpy(req.name, name, n); /* NUL-padded: the rest of req is zero */

	d = calloc(1, sizeof(*d));
	if (!d)
		return -ENOMEM;
	r = -pthread_mutex_init(&d->fault_lock, NULL);
	if (r)
		goto err_free;
	r = rpc(c, &(struct call){ .cmd = PROTO_CMD_DEV_OPEN, .body = &req, .blen = sizeof(req),
				   .rpy = &rpy, .rpy_len = sizeof(rpy) });
	if (r)
		goto err_destroy_lock;
	d->c = c;
	d->handle = rpy.dev;
	d->flags = rpy.flags & IOVAD_DEV_FLAGS;
	d->merge_boundary = rpy.merge_boundary;
	d->dma_mask = rpy.dma_mask;
	d->granule_shift = rpy.granule_shift;
	pthread_mutex_lock(&c->lock);
	ilist_add_tail(&c->devs, &d->node);
	pthread_mutex_unlock(&c->lock);
	*ret = d;
	return 0;

err_destroy_lock:
	pthread_mutex_destroy(&d->fault_lock);
err_free:
	free(d);
	return r;
}

/*
 * DEV_CLOSE and MEM_FREE: tell the daemon, then forget the handle. Nothing
 * is to be done about a failure: the handle goes either way, and the
 * daemon drops everything with the session (linked memory stays pinned
 * there until its last mapping goes).
 */
static void release_handle(struct iovad *c, uint16_t cmd, uint32_t handle, struct ilist *node)
{
	/* DEV_CLOSE's and MEM_FREE's bodies are both { u32 handle, u32 reserved }. */
	struct proto_dev_ref req = { .dev = handle };
	struct proto_status rpy;

	_Static_assert(sizeof(struct proto_dev_ref) == sizeof(struct proto_mem_ref), "ref layout");
	(void)rpc(c, &(struct call){ .cmd = cmd, .body = &req, .blen = sizeof(req), .rpy = &rpy,
				     .rpy_len = sizeof(rpy) });
	pthread_mutex_lock(&c->lock);
	ilist_del(node);
	pthread_mutex_unlock(&c->lock);
}

void iovad_dev_close(struct iovad_dev *d)
{
	if (!d)
		return;
	release_handle(d->c, PROTO_CMD_DEV_CLOSE, d->handle, &d->node);
	dev_free(d);
}

uint32_t iovad_dev_flags(const struct iovad_dev *d)
{
	return d ? d->flags : 0;
}

int iovad_dev_stats(struct iovad_dev *d, struct iovad_dev_stats *ret)
{
	struct proto_dev_ref req = { 0 };
	struct proto_dev_stats_rpy rpy;
	const struct proto_dev_stats *s = &rpy.stats;
	int r;

	if (!d || !ret)
		return -EINVAL;
	req.dev = d->handle;
	r = rpc(d->c, &(struct call){ .cmd = PROTO_CMD_DEV_STATS, .body = &req,
				      .blen = sizeof(req), .rpy = &rpy, .rpy_len = sizeof(rpy) });
	if (r)
		return r;
	/* Field by field: the public struct may grow or reorder independently of the wire. */
	*ret = (struct iovad_dev_stats){
		.size = sizeof(*ret),
		.iova_allocs = s->iova_allocs,
		.iova_frees = s->iova_frees,
		.links = s->links,
		.unlinks = s->unlinks,
		.syncs = s->syncs,
		.iotlb_flushes = s->iotlb_flushes,
		.bounced_bytes = s->bounced_bytes,
		.io_page_faults = s->io_page_faults,
		.map_phys = s->map_phys,
		.unmap_phys = s->unmap_phys,
		.dma_reads = s->dma_reads,
		.dma_writes = s->dma_writes,
		.dma_bytes = s->dma_bytes,
		.free_busy = s->free_busy,
		.mapped_bytes = s->mapped_bytes,
		.table_bytes = s->table_bytes,
	};
	return 0;
}

/* IOVA_RKEY for iova; from version 6 the reply goes on with the session's peer token, in *tok. */
static int rkey_query(struct iovad_dev *d, uint64_t iova, struct proto_iova_rkey_rpy *rpy,
		      struct proto_peer_token *tok)
{
	struct proto_iova_rkey req = { .dev = d->handle, .iova = iova };

	return rpc(d->c,
		   &(struct call){ .cmd = PROTO_CMD_IOVA_RKEY,
				   .body = &req,
				   .blen = sizeof(req),
				   .rpy = rpy,
				   .rpy_len = sizeof(*rpy),
				   .rdata = tok,
				   .rdata_len = d->c->version >= PROTO_VERSION_PEER ? sizeof(*tok)
										    : 0 });
}

int iovad_iova_rkey(struct iovad_dev *d, uint64_t iova, uint32_t *rkey)
{
	struct proto_iova_rkey_rpy rpy;
	struct proto_peer_token tok;
	int r;

	if (!d || !rkey)
		return -EINVAL;
	/* A daemon that negotiated less does not know the type: it would answer -ENOSYS. */
	if (d->c->version < PROTO_VERSION_RKEY)
		return -EOPNOTSUPP;
	r = rkey_query(d, iova, &rpy, &tok);
	if (r)
		return r;
	*rkey = rpy.rkey;
	return 0;
}

int iovad_iova_peer_key(struct iovad_dev *d, uint64_t iova, struct iovad_peer_key *ret)
{
	struct proto_iova_rkey_rpy rpy;
	struct proto_peer_token tok;
	int r;

	if (!d || !ret)
		return -EINVAL;
	/* Before version 6 the daemon has no peer tokens, and its peers are not kept apart. */
	if (d->c->version < PROTO_VERSION_PEER)
		return -EOPNOTSUPP;
	r = rkey_query(d, iova, &rpy, &tok);
	if (r)
		return r;
	memset(ret, 0, sizeof(*ret));
	ret->mr_iova = rpy.mr_iova;
	ret->mr_len = rpy.mr_len;
	ret->rkey = rpy.rkey;
	memcpy(ret->token, tok.token, sizeof(ret->token));
	return 0;
}

/* ---- memory ---- */

/* Round size up to the page size; 0 if that overflows. */
static size_t page_align(const struct iovad *c, size_t size)
{
	size_t mask = (size_t)c->page_size - 1;

	if (size > SIZE_MAX - mask)
		return 0;
	return (size + mask) & ~mask;
}

/* Send MEM_IMPORT for fd's [offset, offset + size), already mapped at addr, and make m. */
static int mem_register(struct iovad *c, int fd, uint64_t offset, size_t size, void *addr,
			size_t map_len, struct iovad_mem **ret)
{
	struct proto_mem_import req = { .offset = offset, .size = size };
	struct proto_mem_import_rpy rpy;
	struct iovad_mem *m;
	int r;

	m = calloc(1, sizeof(*m));
	if (!m)
		return -ENOMEM;
	r = rpc(c, &(struct call){ .cmd = PROTO_CMD_MEM_IMPORT, .body = &req, .blen = sizeof(req),
				   .pass_fd = true, .fd = fd, .rpy = &rpy,
				   .rpy_len = sizeof(rpy) });
	if (r) {
		free(m);
		return r;
	}
	m->c = c;
	m->handle = rpy.mem;
	m->addr = addr;
	m->map_len = map_len;
	/* The daemon's (page-rounded) size, but never more than we can touch. */
	m->size = rpy.size && rpy.size <= map_len ? (size_t)rpy.size : map_len;
	m->phys = rpy.phys;
	/* 0 from a version 1 daemon, where no region can use it. */
	m->implicit_slot = rpy.implicit_slot;
	pthread_mutex_lock(&c->lock);
	ilist_add_tail(&c->mems, &m->node);
	pthread_mutex_unlock(&c->lock);
	*ret = m;
	return 0;
}

int iovad_mem_alloc(struct iovad *c, size_t size, struct iovad_mem **ret)
{
	size_t len;
	void *addr;
	int fd, r;

	if (!c || !ret || !size)
		return -EINVAL;
	len = page_align(c, size);
	if (!len || len > (size_t)INT64_MAX)
		return -ENOMEM;
	fd = memfd_create("iovad-mem", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (fd < 0)
		return -errno;
	if (ftruncate(fd, (off_t)len) < 0) {
		r = -errno;
		goto err_close;
	}
	/*
	 * The daemon maps this too: sealing the size means nobody (us included)
	 * can shrink the file under its mapping and make it fault (SIGBUS).
	 */
	if (fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW) < 0) {
		r = -errno;
		goto err_close;
	}
	addr = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (addr == MAP_FAILED) {
		r = -errno;
		goto err_close;
	}
	r = mem_register(c, fd, 0, len, addr, len, ret);
	if (r)
		goto err_unmap;
	/* The daemon holds its own duplicate now; our mapping keeps the memory alive. */
	close(fd);
	return 0;

err_unmap:
	munmap(addr, len);
err_close:
	close(fd);
	return r;
}

int iovad_mem_import(struct iovad *c, int fd, uint64_t offset, size_t size,
		     struct iovad_mem **ret)
{
	size_t len;
	void *addr;
	int r;

	if (!c || !ret || !size)
		return -EINVAL;
	if (fd < 0)
		return -EBADF;
	if (offset & ((uint64_t)c->page_size - 1) || offset > (uint64_t)INT64_MAX ||
	    size > (uint64_t)INT64_MAX - offset)
		return -EINVAL;
	len = page_align(c, size);
	if (!len)
		return -EINVAL;
	addr = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, (off_t)offset);
	if (addr == MAP_FAILED) {
		r = -errno;
		/* Not a file we can share writably (read-only, a pipe, ...) is a bad fd to us. */
		return r == -EACCES || r == -ENODEV ? -EBADF : r;
	}
	r = mem_register(c, fd, offset, size, addr, len, ret);
	if (r)
		munmap(addr, len);
	return r;
}

void *iovad_mem_addr(const struct iovad_mem *m)
{
	return m ? m->addr : NULL;
}

size_t iovad_mem_size(const struct iovad_mem *m)
{
	return m ? m->size : 0;
}

uint64_t iovad_mem_phys(const struct iovad_mem *m)
{
	return m ? m->phys : 0;
}

void iovad_mem_free(struct iovad_mem *m)
{
	if (!m)
		return;
	release_handle(m->c, PROTO_CMD_MEM_FREE, m->handle, &m->node);
	mem_free(m);
}

/* ---- the IOVA-based DMA API ---- */

bool iovad_iova_try_alloc(struct iovad_dev *d, struct iovad_iova_state *st, uint64_t phys,
			  size_t size)
{
	struct proto_iova_alloc req = { 0 };
	struct proto_iova_alloc_rpy rpy;
	int r;

	if (st)
		memset(st, 0, sizeof(*st));
	if (!d || !st || !size || ((uint64_t)size & IOVAD_IOVA_USE_SWIOTLB)) {
		errno = EINVAL;
		return false;
	}
	req.dev = d->handle;
	req.phys = phys;
	req.size = size;
	r = rpc(d->c, &(struct call){ .cmd = PROTO_CMD_IOVA_ALLOC, .body = &req,
				      .blen = sizeof(req), .rpy = &rpy, .rpy_len = sizeof(rpy) });
	if (r) {
		/* -EOPNOTSUPP: identity domain; -ENOSPC: no room; anything else as is. */
		errno = -r;
		return false;
	}
	st->addr = rpy.addr;
	st->__size = rpy.size;
	return true;
}

bool iovad_use_iova(const struct iovad_iova_state *st)
{
	return st && st->__size != 0;
}

size_t iovad_iova_size(const struct iovad_iova_state *st)
{
	return st ? (size_t)(st->__size & ~IOVAD_IOVA_USE_SWIOTLB) : 0;
}

static bool dir_attrs_ok(enum iovad_dma_dir dir, unsigned long attrs)
{
	return (unsigned int)dir <= PROTO_DIR_MAX && !(attrs & ~(unsigned long)PROTO_ATTRS);
}

/* What a successful op changes in the caller's memory (the reply is the daemon's word). */
static void apply_result(uint16_t opcode, const struct proto_op_result *res,
			 const struct batch_target *t)
{
	/*
	 * A DESTROY that found holes (-ENOENT) still releases the state; the
	 * daemon says so with value PROTO_OP_STATE_RELEASED, and the caller's
	 * state must not outlive it.
	 */
	if (res->status && (opcode == PROTO_OP_DESTROY || opcode == PROTO_OP_FREE) && t->st &&
	    res->value == PROTO_OP_STATE_RELEASED)
		memset(t->st, 0, sizeof(*t->st));
	if (res->status)
		return;
	switch (opcode) {
	case PROTO_OP_LINK:
		/* LINK reports the state's new __size: it carries the bounce bit. */
		if (t->st && (res->value & IOVAD_IOVA_USE_SWIOTLB))
			t->st->__size = res->value;
		break;
	case PROTO_OP_DESTROY:
	case PROTO_OP_FREE:
		if (t->st)
			memset(t->st, 0, sizeof(*t->st));
		break;
	case PROTO_OP_MAP:
		if (t->ret_dma)
			*t->ret_dma = res->value;
		break;
	default:
		break;
	}
}

/* A BATCH of one op; returns the op's status (or the batch's, or -ENOTCONN). */
static int single_op(struct iovad_dev *d, struct proto_op *op, const struct batch_target *t)
{
	struct {
		struct proto_batch b;
		struct proto_op op;
	} req = { .b = { .count = 1 } };
	struct {
		struct proto_batch_rpy b;
		struct proto_op_result res;
	} rpy;
	int r;

	_Static_assert(sizeof(req) == sizeof(struct proto_batch) + sizeof(struct proto_op),
		       "one-op batch is packed");
	_Static_assert(sizeof(rpy) == sizeof(struct proto_batch_rpy) +
					      sizeof(struct proto_op_result),
		       "one-op batch reply is packed");
	op->dev = d->handle;
	req.op = *op;
	r = rpc(d->c, &(struct call){ .cmd = PROTO_CMD_BATCH, .body = &req, .blen = sizeof(req),
				      .rpy = &rpy, .rpy_len = sizeof(rpy), .count = 1 });
	if (r)
		return r;
	apply_result(op->opcode, &rpy.res, t);
	return rpy.res.status;
}

/*
 * Each operation is built here once, for iovad_iova_*() and iovad_batch_*()
 * alike: the same argument checks, the same fields, and the same target to
 * update when the daemon's answer comes back.
 */
static int state_op(struct proto_op *op, struct batch_target *t, uint16_t opcode,
		    struct iovad_iova_state *st, enum iovad_dma_dir dir, unsigned long attrs)
{
	if (!st || !dir_attrs_ok(dir, attrs) || !iovad_use_iova(st))
		return -EINVAL;
	*op = (struct proto_op){ .opcode = opcode, .dir = (uint8_t)dir, .iova = st->addr,
				 .attrs = attrs };
	*t = (struct batch_target){ .st = st };
	return 0;
}

static int link_op(struct proto_op *op, struct batch_target *t, struct iovad_iova_state *st,
		   uint64_t phys, size_t offset, size_t size, enum iovad_dma_dir dir,
		   unsigned long attrs)
{
	int r = state_op(op, t, PROTO_OP_LINK, st, dir, attrs);

	if (r)
		return r;
	op->phys = phys;
	op->offset = offset;
	op->size = size;
	return 0;
}

static int sync_op(struct proto_op *op, struct batch_target *t, struct iovad_iova_state *st,
		   size_t offset, size_t size)
{
	int r = state_op(op, t, PROTO_OP_SYNC, st, IOVAD_DMA_BIDIRECTIONAL, 0);

	if (r)
		return r;
	op->offset = offset;
	op->size = size;
	return 0;
}

static int unlink_op(struct proto_op *op, struct batch_target *t, struct iovad_iova_state *st,
		     size_t offset, size_t size, enum iovad_dma_dir dir, unsigned long attrs)
{
	int r = state_op(op, t, PROTO_OP_UNLINK, st, dir, attrs);

	if (r)
		return r;
	op->offset = offset;
	op->size = size;
	return 0;
}

static int destroy_op(struct proto_op *op, struct batch_target *t, struct iovad_iova_state *st,
		      size_t mapped_len, enum iovad_dma_dir dir, unsigned long attrs)
{
	int r = state_op(op, t, PROTO_OP_DESTROY, st, dir, attrs);

	if (r)
		return r;
	op->size = mapped_len;
	return 0;
}

static int free_op(struct proto_op *op, struct batch_target *t, struct iovad_iova_state *st)
{
	return state_op(op, t, PROTO_OP_FREE, st, IOVAD_DMA_BIDIRECTIONAL, 0);
}

static int map_op(struct proto_op *op, struct batch_target *t, uint64_t phys, size_t size,
		  enum iovad_dma_dir dir, unsigned long attrs, uint64_t *ret_dma)
{
	if (!ret_dma || !dir_attrs_ok(dir, attrs))
		return -EINVAL;
	*op = (struct proto_op){ .opcode = PROTO_OP_MAP, .dir = (uint8_t)dir, .phys = phys,
				 .size = size, .attrs = attrs };
	*t = (struct batch_target){ .ret_dma = ret_dma };
	return 0;
}

static int unmap_op(struct proto_op *op, struct batch_target *t, uint64_t dma, size_t size,
		    enum iovad_dma_dir dir, unsigned long attrs)
{
	if (!dir_attrs_ok(dir, attrs))
		return -EINVAL;
	*op = (struct proto_op){ .opcode = PROTO_OP_UNMAP, .dir = (uint8_t)dir, .iova = dma,
				 .size = size, .attrs = attrs };
	*t = (struct batch_target){ 0 };
	return 0;
}

/* One op alone: a batch of one, one round trip. built: the builder's result. */
static int single(struct iovad_dev *d, int built, struct proto_op *op, struct batch_target *t)
{
	if (!d)
		return -EINVAL;
	return built ? built : single_op(d, op, t);
}

int iovad_iova_link(struct iovad_dev *d, struct iovad_iova_state *st, uint64_t phys,
		    size_t offset, size_t size, enum iovad_dma_dir dir, unsigned long attrs)
{
	struct proto_op op;
	struct batch_target t;

	return single(d, link_op(&op, &t, st, phys, offset, size, dir, attrs), &op, &t);
}

int iovad_iova_sync(struct iovad_dev *d, struct iovad_iova_state *st, size_t offset, size_t size)
{
	struct proto_op op;
	struct batch_target t;

	return single(d, sync_op(&op, &t, st, offset, size), &op, &t);
}

int iovad_iova_unlink(struct iovad_dev *d, struct iovad_iova_state *st, size_t offset,
		      size_t size, enum iovad_dma_dir dir, unsigned long attrs)
{
	struct proto_op op;
	struct batch_target t;

	return single(d, unlink_op(&op, &t, st, offset, size, dir, attrs), &op, &t);
}

int iovad_iova_destroy(struct iovad_dev *d, struct iovad_iova_state *st, size_t mapped_len,
		       enum iovad_dma_dir dir, unsigned long attrs)
{
	struct proto_op op;
	struct batch_target t;

	return single(d, destroy_op(&op, &t, st, mapped_len, dir, attrs), &op, &t);
}

int iovad_iova_free(struct iovad_dev *d, struct iovad_iova_state *st)
{
	struct proto_op op;
	struct batch_target t;

	return single(d, free_op(&op, &t, st), &op, &t);
}

uint64_t iovad_get_merge_boundary(struct iovad_dev *d)
{
	return d ? d->merge_boundary : 0;
}

int iovad_map_phys(struct iovad_dev *d, uint64_t phys, size_t size, enum iovad_dma_dir dir,
		   unsigned long attrs, uint64_t *ret_dma)
{
	struct proto_op op;
	struct batch_target t;

	return single(d, map_op(&op, &t, phys, size, dir, attrs, ret_dma), &op, &t);
}

int iovad_unmap_phys(struct iovad_dev *d, uint64_t dma, size_t size, enum iovad_dma_dir dir,
		     unsigned long attrs)
{
	struct proto_op op;
	struct batch_target t;

	return single(d, unmap_op(&op, &t, dma, size, dir, attrs), &op, &t);
}

/* ---- the simulated device ---- */

static void fault_record(struct iovad_dev *d, const struct proto_fault *f)
{
	pthread_t self = pthread_self();
	unsigned int i;

	pthread_mutex_lock(&d->fault_lock);
	for (i = 0; i < d->nfaults; i++)
		if (pthread_equal(d->faults[i].thread, self))
			break;
	if (i == d->nfaults) {
		if (d->nfaults < IOVAD_FAULT_SLOTS) {
			d->nfaults++;
		} else {
			i = d->next_fault;
			d->next_fault = (d->next_fault + 1) % IOVAD_FAULT_SLOTS;
		}
		d->faults[i].thread = self;
	}
	d->faults[i].fault = (struct iovad_fault){ .iova = f->iova, .access = f->access,
						   .reason = f->reason };
	pthread_mutex_unlock(&d->fault_lock);
}

int iovad_dev_last_fault(const struct iovad_dev *d, struct iovad_fault *ret)
{
	struct iovad_dev *dev = (struct iovad_dev *)d; /* the lock is not part of its value */
	pthread_t self = pthread_self();
	int r = -ENOENT;

	if (!d || !ret)
		return -EINVAL;
	pthread_mutex_lock(&dev->fault_lock);
	for (unsigned int i = 0; i < dev->nfaults; i++) {
		if (pthread_equal(dev->faults[i].thread, self)) {
			*ret = dev->faults[i].fault;
			r = 0;
			break;
		}
	}
	pthread_mutex_unlock(&dev->fault_lock);
	return r;
}

/* One DMA_READ or DMA_WRITE of at most a frame's worth. */
static int dma_chunk(struct iovad_dev *d, bool write, uint64_t iova, void *buf, uint32_t len)
{
	struct proto_dma req = { .dev = d->handle, .len = len, .iova = iova };
	struct proto_dma_rpy rpy;
	int r;

	if (write)
		r = rpc(d->c, &(struct call){ .cmd = PROTO_CMD_DMA_WRITE, .body = &req,
					      .blen = sizeof(req), .data = buf, .dlen = len,
					      .rpy = &rpy, .rpy_len = sizeof(rpy) });
	else
		r = rpc(d->c, &(struct call){ .cmd = PROTO_CMD_DMA_READ, .body = &req,
					      .blen = sizeof(req), .rpy = &rpy,
					      .rpy_len = sizeof(rpy), .rdata = buf,
					      .rdata_len = len });
	if (r == -EFAULT)
		fault_record(d, &rpy.fault);
	return r;
}

/*
 * Larger transfers go in frame-sized pieces, one after the other, so that
 * the first failure stops the rest (pipelining them would let the device
 * carry on past a fault). What the pieces before a failure moved stays moved.
 */
static int dma_rw(struct iovad_dev *d, bool write, uint64_t iova, void *buf, size_t len)
{
	size_t room, done = 0;
	int r;

	if (!d || !buf || !len || iova + len < iova)
		return -EINVAL;
	room = d->c->max_frame - sizeof(struct proto_hdr) -
	       (write ? sizeof(struct proto_dma) : sizeof(struct proto_dma_rpy));
	while (done < len) {
		size_t n = len - done < room ? len - done : room;

		r = dma_chunk(d, write, iova + done, (uint8_t *)buf + done, (uint32_t)n);
		if (r)
			return r;
		done += n;
	}
	return 0;
}

int iovad_dev_dma_write(struct iovad_dev *d, uint64_t iova, const void *buf, size_t len)
{
	return dma_rw(d, true, iova, (void *)buf, len);
}

int iovad_dev_dma_read(struct iovad_dev *d, uint64_t iova, void *buf, size_t len)
{
	return dma_rw(d, false, iova, buf, len);
}

/* ---- batches ---- */

int iovad_batch_new(struct iovad *c, struct iovad_batch **ret)
{
	struct iovad_batch *b;
	int r = -ENOMEM;

	if (!c || !ret)
		return -EINVAL;
	b = calloc(1, sizeof(*b));
	if (!b)
		return -ENOMEM;
	b->c = c;
	b->cap = c->max_batch;
	ilist_init(&b->node);
	ilist_init(&b->done_node);
	b->req = calloc(1, sizeof(struct proto_batch) + (size_t)b->cap * sizeof(struct proto_op));
	b->rpy = calloc(1, sizeof(struct proto_batch_rpy) +
				   (size_t)b->cap * sizeof(struct proto_op_result));
	b->tgt = calloc(b->cap, sizeof(*b->tgt));
	b->p = malloc(sizeof(*b->p));
	if (!b->req || !b->rpy || !b->tgt || !b->p)
		goto err_free;
	r = pending_init(b->p);
	if (r)
		goto err_free;
	b->p->batch = b;
	b->p->rpy = b->rpy;
	pthread_mutex_lock(&c->lock);
	ilist_add_tail(&c->batches, &b->node);
	pthread_mutex_unlock(&c->lock);
	*ret = b;
	return 0;

err_free:
	free(b->p);
	b->p = NULL;
	batch_free(b);
	return r;
}

void iovad_batch_free(struct iovad_batch *b)
{
	struct iovad *c;

	if (!b)
		return;
	c = b->c;
	pthread_mutex_lock(&c->lock);
	ilist_del(&b->node);
	switch (b->state) {
	case BATCH_SENT:
		/*
		 * The reply is still coming and must land somewhere: the pending
		 * entry stays behind, tied to nothing, and frees itself then
		 * (or at disconnect). The caller's states are not updated.
		 */
		b->p->orphan = true;
		/* A reconnect may have to send it again after b->req is gone. */
		pending_keep_locked(c, b->p);
		b->p->batch = NULL;
		b->p->rpy = NULL;
		b->p = NULL;
		break;
	case BATCH_QUEUED:
		ilist_del(&b->done_node); /* completed, callback never to run */
		break;
	default:
		break;
	}
	pthread_mutex_unlock(&c->lock);
	batch_free(b);
}

/* Lock held. Ops may be added to an open batch, or to a done one (which reopens it). */
static int batch_room_locked(struct iovad_batch *b)
{
	if (b->state == BATCH_SENT || b->state == BATCH_QUEUED)
		return -EBUSY;
	if (b->count >= b->cap)
		return -ENOSPC;
	b->state = BATCH_OPEN;
	return 0;
}

int iovad_batch_reset(struct iovad_batch *b)
{
	int r = 0;

	if (!b)
		return -EINVAL;
	pthread_mutex_lock(&b->c->lock);
	if (b->state == BATCH_SENT || b->state == BATCH_QUEUED) {
		r = -EBUSY;
	} else {
		b->state = BATCH_OPEN;
		b->count = 0;
		b->status = 0;
		b->flushes = 0;
	}
	pthread_mutex_unlock(&b->c->lock);
	return r;
}

static int batch_add(struct iovad_batch *b, struct iovad_dev *d, struct proto_op *op,
		     const struct batch_target *t)
{
	int r;

	if (!b || !d || d->c != b->c)
		return -EINVAL;
	op->dev = d->handle;
	pthread_mutex_lock(&b->c->lock);
	r = batch_room_locked(b);
	if (!r) {
		memcpy(b->req + sizeof(struct proto_batch) + (size_t)b->count * sizeof(*op), op,
		       sizeof(*op));
		b->tgt[b->count] = *t;
		r = (int)b->count++;
	}
	pthread_mutex_unlock(&b->c->lock);
	return r;
}

/* One op queued in a batch. */
static int batched(struct iovad_batch *b, struct iovad_dev *d, int built, struct proto_op *op,
		   struct batch_target *t)
{
	return built ? built : batch_add(b, d, op, t);
}

int iovad_batch_link(struct iovad_batch *b, struct iovad_dev *d, struct iovad_iova_state *st,
		     uint64_t phys, size_t offset, size_t size, enum iovad_dma_dir dir,
		     unsigned long attrs)
{
	struct proto_op op;
	struct batch_target t;

	return batched(b, d, link_op(&op, &t, st, phys, offset, size, dir, attrs), &op, &t);
}

int iovad_batch_sync(struct iovad_batch *b, struct iovad_dev *d, struct iovad_iova_state *st,
		     size_t offset, size_t size)
{
	struct proto_op op;
	struct batch_target t;

	return batched(b, d, sync_op(&op, &t, st, offset, size), &op, &t);
}

int iovad_batch_unlink(struct iovad_batch *b, struct iovad_dev *d, struct iovad_iova_state *st,
		       size_t offset, size_t size, enum iovad_dma_dir dir, unsigned long attrs)
{
	struct proto_op op;
	struct batch_target t;

	return batched(b, d, unlink_op(&op, &t, st, offset, size, dir, attrs), &op, &t);
}

int iovad_batch_destroy(struct iovad_batch *b, struct iovad_dev *d, struct iovad_iova_state *st,
			size_t mapped_len, enum iovad_dma_dir dir, unsigned long attrs)
{
	struct proto_op op;
	struct batch_target t;

	return batched(b, d, destroy_op(&op, &t, st, mapped_len, dir, attrs), &op, &t);
}

int iovad_batch_iova_free(struct iovad_batch *b, struct iovad_dev *d, struct iovad_iova_state *st)
{
	struct proto_op op;
	struct batch_target t;

	return batched(b, d, free_op(&op, &t, st), &op, &t);
}

int iovad_batch_map(struct iovad_batch *b, struct iovad_dev *d, uint64_t phys, size_t size,
		    enum iovad_dma_dir dir, unsigned long attrs, uint64_t *ret_dma)
{
	struct proto_op op;
	struct batch_target t;

	return batched(b, d, map_op(&op, &t, phys, size, dir, attrs, ret_dma), &op, &t);
}

int iovad_batch_unmap(struct iovad_batch *b, struct iovad_dev *d, uint64_t dma, size_t size,
		      enum iovad_dma_dir dir, unsigned long attrs)
{
	struct proto_op op;
	struct batch_target t;

	return batched(b, d, unmap_op(&op, &t, dma, size, dir, attrs), &op, &t);
}

size_t iovad_batch_count(const struct iovad_batch *b)
{
	struct iovad_batch *mb = (struct iovad_batch *)b;
	size_t n;

	if (!b)
		return 0;
	pthread_mutex_lock(&mb->c->lock);
	n = b->count;
	pthread_mutex_unlock(&mb->c->lock);
	return n;
}

static struct proto_op_result *batch_result(const struct iovad_batch *b, size_t i)
{
	return (struct proto_op_result *)(b->rpy + sizeof(struct proto_batch_rpy)) + i;
}

/*
 * Called by conn.c with the lock held when the batch's reply has been copied
 * into b->rpy (status 0 or a batch-level error) or the connection died.
 */
void batch_complete_locked(struct iovad_batch *b, int status)
{
	struct proto_batch_rpy br;

	memcpy(&br, b->rpy, sizeof(br));
	b->status = status;
	b->flushes = status ? 0 : br.flushes;
	for (uint32_t i = 0; i < b->count; i++) {
		struct proto_op_result *res = batch_result(b, i);
		struct proto_op op;

		if (status) {
			/* The daemon ran none of them (or we will never know). */
			*res = (struct proto_op_result){ .status = -ECANCELED };
			continue;
		}
		memcpy(&op, b->req + sizeof(struct proto_batch) + (size_t)i * sizeof(op),
		       sizeof(op));
		apply_result(op.opcode, res, &b->tgt[i]);
	}
}

int iovad_batch_submit(struct iovad_batch *b, iovad_batch_cb cb, void *arg)
{
	struct proto_batch hdr = { 0 };
	struct iovad *c;
	int r;

	if (!b)
		return -EINVAL;
	c = b->c;
	pthread_mutex_lock(&c->lock);
	if (b->state == BATCH_SENT || b->state == BATCH_QUEUED) {
		pthread_mutex_unlock(&c->lock);
		return -EBUSY;
	}
	if (!b->count) {
		pthread_mutex_unlock(&c->lock);
		return -EINVAL;
	}
	b->state = BATCH_SENT;
	b->cb = cb;
	b->arg = arg;
	hdr.count = b->count;
	memcpy(b->req, &hdr, sizeof(hdr));
	b->p->rpy_len = sizeof(struct proto_batch_rpy) +
			(size_t)b->count * sizeof(struct proto_op_result);
	b->p->count = b->count;
	pthread_mutex_unlock(&c->lock);

	r = conn_send(c, b->p, PROTO_CMD_BATCH, b->req,
		      sizeof(struct proto_batch) + (size_t)b->count * sizeof(struct proto_op),
		      NULL, 0, -1);
	if (r) {
		/* Failed submits never call back: the batch is as it was, ready to reuse. */
		pthread_mutex_lock(&c->lock);
		b->state = BATCH_OPEN;
		pthread_mutex_unlock(&c->lock);
	}
	return r;
}

/* Take a queued batch off its list and mark it delivered. Lock held. */
static void batch_deliver_locked(struct iovad_batch *b)
{
	ilist_del(&b->done_node);
	b->state = BATCH_DONE;
}

int iovad_batch_wait(struct iovad_batch *b)
{
	struct iovad *c;
	iovad_batch_cb cb = NULL;
	void *arg = NULL;
	int status;

	if (!b)
		return -EINVAL;
	c = b->c;
	pthread_mutex_lock(&c->lock);
	if (b->state == BATCH_OPEN) {
		pthread_mutex_unlock(&c->lock);
		return -EINVAL; /* never submitted: nothing to wait for */
	}
	b->waited = true;
	pthread_mutex_unlock(&c->lock);
	conn_wait(c, b->p);
	pthread_mutex_lock(&c->lock);
	b->waited = false;
	if (b->state == BATCH_QUEUED) {
		batch_deliver_locked(b);
		cb = b->cb;
		arg = b->arg;
	}
	status = b->status;
	pthread_mutex_unlock(&c->lock);
	/* Our own callback, here, once; iovad_process() skips a delivered batch. */
	if (cb)
		cb(b, status, arg);
	return status;
}

int iovad_batch_op_status(const struct iovad_batch *b, size_t i)
{
	struct iovad_batch *mb = (struct iovad_batch *)b;
	int r;

	if (!b)
		return -EINVAL;
	pthread_mutex_lock(&mb->c->lock);
	if (i >= b->count)
		r = -EINVAL;
	else if (b->state == BATCH_SENT || b->state == BATCH_QUEUED)
		r = -EBUSY;
	else if (b->state == BATCH_OPEN)
		r = -ECANCELED; /* not run (yet) */
	else
		r = batch_result(b, i)->status;
	pthread_mutex_unlock(&mb->c->lock);
	return r;
}

int iovad_batch_flushes(const struct iovad_batch *b)
{
	struct iovad_batch *mb = (struct iovad_batch *)b;
	int r;

	if (!b)
		return -EINVAL;
	pthread_mutex_lock(&mb->c->lock);
	if (b->state == BATCH_SENT || b->state == BATCH_QUEUED)
		r = -EBUSY;
	else if (b->state == BATCH_OPEN)
		r = 0;
	else
		r = b->flushes > INT_MAX ? INT_MAX : (int)b->flushes;
	pthread_mutex_unlock(&mb->c->lock);
	return r;
}

int iovad_event_fd(struct iovad *c)
{
	return c ? c->epfd : -EINVAL;
}

int iovad_process(struct iovad *c)
{
	struct ilist todo;
	uint64_t v;
	int n = 0;

	if (!c)
		return -EINVAL;
	/* Reset the wakeup first: a completion queued after this one sets it again. */
	(void)!read(c->evfd, &v, sizeof(v));
	conn_drain(c);
	/*
	 * Deliver what is queued now, not what callbacks cause to complete
	 * meanwhile (that could go on for ever). Entries stay reachable from
	 * todo, so iovad_batch_free/wait from a callback can still unlink them.
	 */
	ilist_init(&todo);
	pthread_mutex_lock(&c->lock);
	if (!ilist_empty(&c->done_batches)) {
		todo.next = c->done_batches.next;
		todo.prev = c->done_batches.prev;
		todo.next->prev = &todo;
		todo.prev->next = &todo;
		ilist_init(&c->done_batches);
	}
	while (!ilist_empty(&todo)) {
		struct iovad_batch *b = ilist_entry(todo.next, struct iovad_batch, done_node);
		iovad_batch_cb cb;
		void *arg;
		int status;

		batch_deliver_locked(b);
		cb = b->cb;
		arg = b->arg;
		status = b->status;
		pthread_mutex_unlock(&c->lock);
		if (cb) {
			cb(b, status, arg);
			n++;
		}
		pthread_mutex_lock(&c->lock);
	}
	pthread_mutex_unlock(&c->lock);
	/* User-fault handlers of the faults queued now (odp.c), counted as callbacks too. */
	n += odp_run_faults(c);
	pthread_mutex_lock(&c->lock);
	if (!n && c->dead)
		n = -ENOTCONN;
	pthread_mutex_unlock(&c->lock);
	return n;
}

/* ---- messages ---- */

const char *iovad_strerror(int err)
{
	static _Thread_local char buf[128];

	switch (err) {
	case 0:
		return "success";
	case -ENOTCONN:
		return "the daemon is gone (connection closed)";
	case -ENOENT:
		return "no such IOVA state or mapping of this client (or no daemon socket)";
	case -EFAULT:
		return "I/O page fault, or an address outside this client's memory";
	case -EBUSY:
		return "busy: ranges still linked, or a batch still in flight";
	case -EDQUOT:
		return "over this client's limit";
	case -EACCES:
		return "permission denied by the socket or the daemon's policy";
	case -EPERM:
		return "operation not permitted for this device (MMIO or bounce rules)";
	case -EIO:
		return "address beyond the device's DMA mask";
	case -EEXIST:
		return "range already linked or mapped";
	case -EINVAL:
		return "invalid argument";
	case -ENOMEM:
		return "out of memory (client, daemon, page tables or bounce pool)";
	case -ENOSPC:
		return "no IOVA space left, or the batch is full";
	case -ENODEV:
		return "no such device";
	case -EBADF:
		return "bad handle or file descriptor";
	case -EMFILE:
		return "too many devices open on this connection";
	case -EOPNOTSUPP:
		return "not supported by this device (identity domain or non-coherent), "
		       "or by the daemon (on-demand paging needs protocol version 2)";
	case -ETIMEDOUT:
		return "a user-handled fault was not answered in time";
	case -EAGAIN:
		return "nothing to take now (no fault queued), or try again";
	case -EPROTONOSUPPORT:
		return "the daemon speaks no protocol version this library does";
	case -ECANCELED:
		return "operation not run (an earlier one failed, or the connection died)";
	case -ECONNREFUSED:
		return "no daemon listening on the socket";
	case -EMSGSIZE:
		return "request too large for the negotiated frame size";
	case -EPROTO:
		return "protocol error from the daemon";
	default:
		break;
	}
	if (err == INT_MIN) {
		snprintf(buf, sizeof(buf), "unknown error %d", err);
		return buf;
	}
	/* GNU strerror_r: may return a static string instead of filling buf. */
	return strerror_r(err < 0 ? -err : err, buf, sizeof(buf));
}
