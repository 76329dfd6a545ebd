// SPDX-License-Identifier: MIT
/*
 * proto.c - decoding and validation of iovad frames.
 *
 * The order of checks is fixed, as in chrony's cmdmon.c: length bounds,
 * header magic, version, type, exact length for the type, zeroed reserved
 * fields, then field ranges. Frames are copied into aligned structs before
 * any field is read, so a frame may sit at any offset in a buffer. A type
 * is known only from the version that introduced it on (req_since), so a
 * version-1 session sees version 2's types exactly as unknown ones (and a
 * version-2 session version 3's).
 * proto_decode_event is the client's side: the daemon's unsolicited events.
 */
#include "proto.h"
#include "ring.h"

#include <errno.h>
#include <stdbool.h>
#include <string.h>

/* Body length of each request type; -1: variable (checked by the type). */
static const int32_t req_body_len[PROTO_CMD_MAX] = {
	[PROTO_CMD_HELLO] = sizeof(struct proto_hello),
	[PROTO_CMD_DEV_OPEN] = sizeof(struct proto_dev_open),
	[PROTO_CMD_DEV_CLOSE] = sizeof(struct proto_dev_ref),
	[PROTO_CMD_DEV_STATS] = sizeof(struct proto_dev_ref),
	[PROTO_CMD_MEM_IMPORT] = sizeof(struct proto_mem_import),
	[PROTO_CMD_MEM_FREE] = sizeof(struct proto_mem_ref),
	[PROTO_CMD_IOVA_ALLOC] = sizeof(struct proto_iova_alloc),
	[PROTO_CMD_BATCH] = -1,
	[PROTO_CMD_DMA_READ] = sizeof(struct proto_dma),
	[PROTO_CMD_DMA_WRITE] = -1,
	[PROTO_CMD_STATUS] = 0,
	[PROTO_CMD_LIST_DEVICES] = sizeof(struct proto_list),
	[PROTO_CMD_LIST_CLIENTS] = sizeof(struct proto_list),
	[PROTO_CMD_CLIENT_MAPS] = sizeof(struct proto_list),
	[PROTO_CMD_ODP_REG] = sizeof(struct proto_odp_reg),
	[PROTO_CMD_ODP_DEREG] = sizeof(struct proto_odp_ref),
	[PROTO_CMD_ODP_ADVISE] = sizeof(struct proto_odp_range),
	[PROTO_CMD_ODP_INVALIDATE] = sizeof(struct proto_odp_range),
	[PROTO_CMD_MEM_DISCARD] = sizeof(struct proto_mem_range),
	[PROTO_CMD_ODP_STATS] = sizeof(struct proto_odp_ref),
	[PROTO_CMD_FAULT_DONE] = sizeof(struct proto_fault_done),
	[PROTO_CMD_LIST_ODP] = sizeof(struct proto_list),
	[PROTO_CMD_IOVA_RKEY] = sizeof(struct proto_iova_rkey),
	[PROTO_CMD_RING_SETUP] = sizeof(struct proto_ring_setup),
	[PROTO_CMD_RESUME] = sizeof(struct proto_resume),
};

/*
 * The first version that knows each type. A type newer than the session's
 * version is unknown to it (-ENOSYS), exactly as a type no version defines:
 * a version-1 peer must not see a message its version never had.
 */
static uint16_t req_since(uint16_t type)
{
	if (type >= PROTO_CMD_RESUME)
		return PROTO_VERSION_RESUME;
	if (type >= PROTO_CMD_RING_SETUP)
		return PROTO_VERSION_RING;
	if (type >= PROTO_CMD_IOVA_RKEY)
		return PROTO_VERSION_RKEY;
	return type >= PROTO_CMD_ODP_REG ? PROTO_VERSION_ODP : PROTO_VERSION_MIN;
}

static const char *const cmd_names[PROTO_CMD_MAX] = {
	[PROTO_CMD_HELLO] = "HELLO",
	[PROTO_CMD_DEV_OPEN] = "DEV_OPEN",
	[PROTO_CMD_DEV_CLOSE] = "DEV_CLOSE",
	[PROTO_CMD_DEV_STATS] = "DEV_STATS",
	[PROTO_CMD_MEM_IMPORT] = "MEM_IMPORT",
	[PROTO_CMD_MEM_FREE] = "MEM_FREE",
	[PROTO_CMD_IOVA_ALLOC] = "IOVA_ALLOC",
	[PROTO_CMD_BATCH] = "BATCH",
	[PROTO_CMD_DMA_READ] = "DMA_READ",
	[PROTO_CMD_DMA_WRITE] = "DMA_WRITE",
	[PROTO_CMD_STATUS] = "STATUS",
	[PROTO_CMD_LIST_DEVICES] = "LIST_DEVICES",
	[PROTO_CMD_LIST_CLIENTS] = "LIST_CLIENTS",
	[PROTO_CMD_CLIENT_MAPS] = "CLIENT_MAPS",
	[PROTO_CMD_ODP_REG] = "ODP_REG",
	[PROTO_CMD_ODP_DEREG] = "ODP_DEREG",
	[PROTO_CMD_ODP_ADVISE] = "ODP_ADVISE",
	[PROTO_CMD_ODP_INVALIDATE] = "ODP_INVALIDATE",
	[PROTO_CMD_MEM_DISCARD] = "MEM_DISCARD",
	[PROTO_CMD_ODP_STATS] = "ODP_STATS",
	[PROTO_CMD_FAULT_DONE] = "FAULT_DONE",
	[PROTO_CMD_LIST_ODP] = "LIST_ODP",
	[PROTO_CMD_IOVA_RKEY] = "IOVA_RKEY",
	[PROTO_CMD_RING_SETUP] = "RING_SETUP",
	[PROTO_CMD_RESUME] = "RESUME",
};

const char *proto_cmd_name(uint16_t type)
{
	uint16_t cmd = type & (uint16_t)~PROTO_RPY;

	if (type == PROTO_RPY_ERROR)
		return "ERROR";
	/* Checked before the reply bit is masked: 0xc001 is no event. */
	if (type == PROTO_EVT_FAULT)
		return "EVT_FAULT";
	if (cmd == 0 || cmd >= PROTO_CMD_MAX)
		return "UNKNOWN";
	return cmd_names[cmd];
}

void proto_hdr_init(struct proto_hdr *h, uint16_t version, uint16_t type, uint32_t len,
		    uint64_t id)
{
	memset(h, 0, sizeof(*h));
	h->magic = PROTO_MAGIC;
	h->version = version;
	h->type = type;
	h->len = len;
	h->id = id;
}

int64_t proto_frame_len(const void *buf, size_t avail, uint32_t max_frame)
{
	struct proto_hdr h;

	if (avail < sizeof(h))
		return 0;
	memcpy(&h, buf, sizeof(h));
	if (max_frame > PROTO_FRAME_MAX)
		max_frame = PROTO_FRAME_MAX;
	if (h.len < sizeof(h) || h.len > max_frame)
		return -EMSGSIZE;
	if (h.magic != PROTO_MAGIC)
		return -EBADMSG;
	return h.len;
}

static bool all_zero(const void *p, size_t n)
{
	const uint8_t *b = p;

	for (size_t i = 0; i < n; i++)
		if (b[i])
			return false;
	return true;
}

static int check_op(const struct proto_op *op)
{
	if (op->reserved)
		return -EINVAL;
	if (op->opcode == 0 || op->opcode >= PROTO_OP_MAX || op->dir > PROTO_DIR_MAX ||
	    (op->attrs & ~(uint64_t)PROTO_ATTRS))
		return -EINVAL;
	return 0;
}

/* Reserved fields of fixed bodies, checked after the exact length. */
static int check_reserved(const struct proto_req *r)
{
	switch (r->hdr.type) {
	case PROTO_CMD_HELLO:
		return r->u.hello.reserved ? -EINVAL : 0;
	case PROTO_CMD_RESUME:
		return r->u.resume.hello.reserved ? -EINVAL : 0;
	case PROTO_CMD_DEV_OPEN: {
		const char *n = r->u.dev_open.name;
		size_t len = strnlen(n, PROTO_DEV_NAME_MAX);

		/* NUL-terminated, and NUL-padded after the terminator. */
		if (len == PROTO_DEV_NAME_MAX || !all_zero(n + len, PROTO_DEV_NAME_MAX - len))
			return -EINVAL;
		return 0;
	}
	case PROTO_CMD_DEV_CLOSE:
	case PROTO_CMD_DEV_STATS:
		return r->u.dev_ref.reserved ? -EINVAL : 0;
	case PROTO_CMD_MEM_FREE:
		return r->u.mem_ref.reserved ? -EINVAL : 0;
	case PROTO_CMD_IOVA_ALLOC:
		return r->u.iova_alloc.reserved ? -EINVAL : 0;
	case PROTO_CMD_LIST_DEVICES:
	case PROTO_CMD_LIST_CLIENTS:
		if (r->u.list.session_id)
			return -EINVAL;
		/* fall through */
	case PROTO_CMD_CLIENT_MAPS:
	case PROTO_CMD_LIST_ODP:
		return r->u.list.reserved ? -EINVAL : 0;
	/*
	 * Undefined bits of a flags or rights field are reserved, as BATCH's
	 * flags are: a later version may give them a meaning, so an older
	 * daemon must refuse them rather than silently ignore them. A field
	 * a type does not use (DEREG's flags, INVALIDATE's advice and flags)
	 * is reserved the same way.
	 */
	case PROTO_CMD_ODP_REG:
		if ((r->u.odp_reg.access & ~PROTO_ODP_ACCESS) ||
		    (r->u.odp_reg.flags & ~PROTO_ODP_FLAGS))
			return -EINVAL;
		return 0;
	case PROTO_CMD_ODP_DEREG:
		return r->u.odp_ref.flags ? -EINVAL : 0;
	case PROTO_CMD_ODP_STATS:
		return (r->u.odp_ref.flags & ~PROTO_ODP_STATS_DAEMON) ? -EINVAL : 0;
	case PROTO_CMD_ODP_ADVISE: {
		const struct proto_odp_range *o = &r->u.odp_range;

		return o->reserved || (o->flags & ~PROTO_ADVISE_FLAG_FLUSH) ? -EINVAL : 0;
	}
	case PROTO_CMD_ODP_INVALIDATE: {
		const struct proto_odp_range *o = &r->u.odp_range;

		return o->reserved || o->flags || o->advice ? -EINVAL : 0;
	}
	case PROTO_CMD_MEM_DISCARD:
		return r->u.mem_range.reserved ? -EINVAL : 0;
	case PROTO_CMD_FAULT_DONE:
		return r->u.fault_done.reserved ? -EINVAL : 0;
	case PROTO_CMD_IOVA_RKEY:
		return r->u.iova_rkey.reserved ? -EINVAL : 0;
	case PROTO_CMD_RING_SETUP:
		return r->u.ring_setup.flags || r->u.ring_setup.reserved ? -EINVAL : 0;
	default:
		return 0;
	}
}

/* A non-empty [offset, offset + len) that ends at or below 2^64 - 1. */
static bool range_ok(uint64_t offset, uint64_t len)
{
	return len && offset + len > offset;
}

/* The largest errno a status may carry (the kernel's MAX_ERRNO). */
#define PROTO_ERRNO_MAX 4095

static int check_ranges(const struct proto_req *r, const struct proto_limits *lim)
{
	switch (r->hdr.type) {
	case PROTO_CMD_HELLO:
	case PROTO_CMD_RESUME: {
		const struct proto_hello *h = &r->u.hello;
		uint16_t floor = PROTO_VERSION_MIN;

		if (r->hdr.type == PROTO_CMD_RESUME) {
			h = &r->u.resume.hello;
			floor = PROTO_VERSION_RESUME;
		}
		if (h->version_min > h->version_max || h->version_max < floor ||
		    h->version_min > PROTO_VERSION_MAX)
			return -EPROTONOSUPPORT;
		if (h->max_frame < PROTO_FRAME_MIN || h->max_batch == 0)
			return -EINVAL;
		return 0;
	}
	case PROTO_CMD_DEV_OPEN:
		return r->u.dev_open.name[0] ? 0 : -EINVAL;
	case PROTO_CMD_MEM_IMPORT: {
		const struct proto_mem_import *m = &r->u.mem_import;

		if (!m->size || m->offset + m->size < m->offset)
			return -EINVAL;
		return 0;
	}
	case PROTO_CMD_DMA_READ: {
		const uint32_t head = sizeof(struct proto_hdr) + sizeof(struct proto_dma_rpy);
		uint32_t max = lim->max_frame < PROTO_FRAME_MAX ? lim->max_frame : PROTO_FRAME_MAX;

		/* The reply must fit in a frame: header, status and fault, then the bytes. */
		if (!r->u.dma.len || max < head || r->u.dma.len > max - head)
			return -EINVAL;
		return 0;
	}
	case PROTO_CMD_DMA_WRITE:
		return r->u.dma.len ? 0 : -EINVAL;
	case PROTO_CMD_ODP_REG: {
		const struct proto_odp_reg *o = &r->u.odp_reg;

		if (!o->dev)
			return -EINVAL;
		/* Implicit: the client's whole memory, so no object and no offset to name. */
		if (o->flags & PROTO_ODP_IMPLICIT)
			return o->mem || o->offset ? -EINVAL : 0;
		return o->mem && range_ok(o->offset, o->len) ? 0 : -EINVAL;
	}
	case PROTO_CMD_ODP_DEREG:
		return r->u.odp_ref.odp ? 0 : -EINVAL;
	case PROTO_CMD_ODP_STATS:
		/* The daemon's totals are not a region's: they need odp 0. */
		if ((r->u.odp_ref.flags & PROTO_ODP_STATS_DAEMON) && r->u.odp_ref.odp)
			return -EINVAL;
		return 0;
	case PROTO_CMD_ODP_ADVISE:
		if (r->u.odp_range.advice > PROTO_ADVISE_MAX)
			return -EINVAL;
		/* fall through */
	case PROTO_CMD_ODP_INVALIDATE: {
		const struct proto_odp_range *o = &r->u.odp_range;

		return o->odp && range_ok(o->offset, o->len) ? 0 : -EINVAL;
	}
	case PROTO_CMD_MEM_DISCARD: {
		const struct proto_mem_range *m = &r->u.mem_range;

		return m->mem && range_ok(m->offset, m->len) ? 0 : -EINVAL;
	}
	case PROTO_CMD_FAULT_DONE: {
		int32_t st = r->u.fault_done.status;

		/* 0 or a negative errno: anything else could not be passed on as one. */
		return st <= 0 && st >= -PROTO_ERRNO_MAX ? 0 : -EINVAL;
	}
	case PROTO_CMD_IOVA_RKEY:
		/* Handle 0 is never a device; any IOVA is a question the daemon can answer. */
		return r->u.iova_rkey.dev ? 0 : -EINVAL;
	case PROTO_CMD_RING_SETUP: {
		const struct proto_ring_setup *g = &r->u.ring_setup;

		/* Powers of two within the protocol's bounds; the daemon's own limit is tighter. */
		return proto_ring_size_ok(g->sq_size) && proto_ring_size_ok(g->cq_size) ? 0 : -EINVAL;
	}
	default:
		return 0;
	}
}

int proto_decode_request(const void *buf, size_t len, const struct proto_limits *lim,
			 struct proto_req *ret)
{
	const uint8_t *b = buf;
	size_t body;
	int32_t want;
	int r;

	/* 1. length bounds; ret->hdr is filled first so an error reply can echo the id */
	memset(ret, 0, sizeof(*ret));
	if (len < sizeof(ret->hdr))
		return -EMSGSIZE;
	memcpy(&ret->hdr, b, sizeof(ret->hdr));
	if (len > lim->max_frame || len > PROTO_FRAME_MAX || ret->hdr.len != len)
		return -EMSGSIZE;
	/* 2. header */
	if (ret->hdr.magic != PROTO_MAGIC)
		return -EBADMSG;
	/* 3. version: only HELLO (or RESUME, from version 5) until one has been accepted */
	if (!lim->version) {
		bool resume = ret->hdr.type == PROTO_CMD_RESUME;

		if ((ret->hdr.type != PROTO_CMD_HELLO && !resume) ||
		    ret->hdr.version < (resume ? PROTO_VERSION_RESUME : PROTO_VERSION_MIN) ||
		    ret->hdr.version > PROTO_VERSION_MAX)
			return -EPROTONOSUPPORT;
	} else if (ret->hdr.version != lim->version) {
		return -EPROTONOSUPPORT;
	}
	/* 4. type: known, and known to the negotiated version (HELLO is in all) */
	if (ret->hdr.type == 0 || ret->hdr.type >= PROTO_CMD_MAX ||
	    (lim->version && lim->version < req_since(ret->hdr.type)))
		return -ENOSYS;
	/* 5. exact length */
	body = len - sizeof(ret->hdr);
	b += sizeof(ret->hdr);
	want = req_body_len[ret->hdr.type];
	if (want >= 0) {
		if (body != (size_t)want)
			return -EBADMSG;
		memcpy(&ret->u, b, body);
	} else if (ret->hdr.type == PROTO_CMD_BATCH) {
		if (body < sizeof(struct proto_batch))
			return -EBADMSG;
		memcpy(&ret->u.batch, b, sizeof(ret->u.batch));
		if (ret->u.batch.count == 0 || ret->u.batch.count > lim->max_batch ||
		    ret->u.batch.count > PROTO_BATCH_MAX)
			return -EBADMSG;
		if (body != sizeof(struct proto_batch) +
			    (size_t)ret->u.batch.count * sizeof(struct proto_op))
			return -EBADMSG;
		ret->ops = b + sizeof(struct proto_batch);
	} else { /* DMA_WRITE */
		if (body < sizeof(struct proto_dma))
			return -EBADMSG;
		memcpy(&ret->u.dma, b, sizeof(ret->u.dma));
		if (body != sizeof(struct proto_dma) + (size_t)ret->u.dma.len)
			return -EBADMSG;
		ret->data = b + sizeof(struct proto_dma);
	}
	/* 6. reserved fields */
	if (ret->hdr.flags)
		return -EINVAL;
	r = check_reserved(ret);
	if (r)
		return r;
	if (ret->hdr.type == PROTO_CMD_BATCH) {
		if (ret->u.batch.flags & ~PROTO_BATCH_FLAGS)
			return -EINVAL;
		for (uint32_t i = 0; i < ret->u.batch.count; i++) {
			struct proto_op op;

			proto_op_get(ret, i, &op);
			r = check_op(&op);
			if (r)
				return r;
		}
	}
	/* 7. field ranges */
	return check_ranges(ret, lim);
}

int proto_check_reply(const void *buf, size_t len, uint16_t version, uint32_t max_frame,
		      uint16_t cmd, size_t min_len)
{
	struct proto_hdr h;

	if (len < sizeof(h) + sizeof(struct proto_status) || len > max_frame ||
	    len > PROTO_FRAME_MAX)
		return -EMSGSIZE;
	memcpy(&h, buf, sizeof(h));
	if (h.len != len)
		return -EMSGSIZE;
	if (h.magic != PROTO_MAGIC)
		return -EBADMSG;
	if (version && h.version != version)
		return -EPROTONOSUPPORT;
	if (h.flags)
		return -EBADMSG;
	if (h.type == PROTO_RPY_ERROR) {
		struct proto_status st;

		/* An error frame always carries a failure. */
		memcpy(&st, (const uint8_t *)buf + sizeof(h), sizeof(st));
		return st.status < 0 ? 0 : -EBADMSG;
	}
	if (h.type != (cmd | PROTO_RPY))
		return -EBADMSG;
	/* A failed request may answer with the status alone. */
	if (len < min_len) {
		struct proto_status st;

		memcpy(&st, (const uint8_t *)buf + sizeof(h), sizeof(st));
		if (st.status >= 0)
			return -EBADMSG;
	}
	return 0;
}

int proto_decode_event(const void *buf, size_t len, uint16_t version, uint32_t max_frame,
		       struct proto_evt_fault *ret)
{
	struct proto_hdr h;

	memset(ret, 0, sizeof(*ret));
	if (len < sizeof(h) || len > max_frame || len > PROTO_FRAME_MAX)
		return -EMSGSIZE;
	memcpy(&h, buf, sizeof(h));
	if (h.len != len)
		return -EMSGSIZE;
	if (h.magic != PROTO_MAGIC)
		return -EBADMSG;
	/* A version-1 session has no events: the daemon may not send one there. */
	if (version < PROTO_VERSION_ODP || h.version != version)
		return -EPROTONOSUPPORT;
	/*
	 * An event is unsolicited: id 0 is what tells it from a reply, so a
	 * non-zero id, like set header flags, means a frame that is no event.
	 */
	if (h.type != PROTO_EVT_FAULT || h.flags || h.id)
		return -EBADMSG;
	if (len != sizeof(h) + sizeof(*ret))
		return -EBADMSG;
	memcpy(ret, (const uint8_t *)buf + sizeof(h), sizeof(*ret));
	/* proto_evt_fault has no reserved field: the ranges are all that is left. */
	if ((ret->access != 1 && ret->access != 2) || !range_ok(ret->offset, ret->len))
		return -EINVAL;
	return 0;
}
