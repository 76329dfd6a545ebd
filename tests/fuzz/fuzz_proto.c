// SPDX-License-Identifier: MIT
/*
 * fuzz_proto.c - libFuzzer target for the wire protocol decoder.
 *
 * One input is used four ways:
 *  (a) proto_frame_len on its first bytes;
 *  (b) proto_decode_request on the whole input as one frame, before HELLO
 *      (version 0) and after it (sessions of version 1 and 2, default frame
 *      and batch limits), at the input's own (exactly sized) address and at
 *      an odd one, walking every op of a decoded BATCH with proto_op_get;
 *  (c) as a byte stream that a server cuts into frames with proto_frame_len
 *      and decodes one by one, negotiating on a decoded HELLO as the daemon
 *      does and stopping where the daemon would close the connection;
 *  (d) a client's view: proto_check_reply, and proto_decode_event on a
 *      version-2 session (and on a version-1 one, which has no events).
 * Besides memory errors (ASan) and undefined behaviour (UBSan), the target
 * traps on any result outside the documented contract.
 */
#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define HDR sizeof(struct proto_hdr)

#define CHECK(cond)                       \
	do {                              \
		if (!(cond))              \
			__builtin_trap(); \
	} while (0)

static const struct proto_limits lim_before = { 0, PROTO_FRAME_DEFAULT, PROTO_BATCH_DEFAULT };
static const struct proto_limits lim_after = { 1, PROTO_FRAME_DEFAULT, PROTO_BATCH_DEFAULT };
static const struct proto_limits lim_after2 = { PROTO_VERSION_ODP, PROTO_FRAME_DEFAULT,
						PROTO_BATCH_DEFAULT };
static const struct proto_limits lim_after3 = { PROTO_VERSION_RKEY, PROTO_FRAME_DEFAULT,
						PROTO_BATCH_DEFAULT };
static const struct proto_limits lim_after5 = { PROTO_VERSION_RESUME, PROTO_FRAME_DEFAULT,
						PROTO_BATCH_DEFAULT };

static volatile uint8_t sink;

/* A non-empty range that does not wrap, the decoders' rule for offset and len. */
static bool range_ok(uint64_t offset, uint64_t len)
{
	return len && offset + len > offset;
}

static bool documented(int r)
{
	return r == 0 || r == -EMSGSIZE || r == -EBADMSG || r == -EPROTONOSUPPORT || r == -ENOSYS ||
	       r == -EINVAL;
}

/* What a successful decode promises about the frame at b, len bytes. */
static void check_req(const uint8_t *b, size_t len, const struct proto_limits *lim,
		      const struct proto_req *req)
{
	uint8_t x = 0;

	CHECK(req->hdr.len == len && req->hdr.magic == PROTO_MAGIC && !req->hdr.flags);
	CHECK(req->hdr.type >= PROTO_CMD_HELLO && req->hdr.type < PROTO_CMD_MAX);
	/* The first frame: HELLO, or RESUME in a header of version 5 or later. */
	CHECK(lim->version ? req->hdr.version == lim->version :
			     req->hdr.type == PROTO_CMD_HELLO ||
				     (req->hdr.type == PROTO_CMD_RESUME &&
				      req->hdr.version >= PROTO_VERSION_RESUME &&
				      req->hdr.version <= PROTO_VERSION_MAX));
	/* A session never decodes a type newer than its version. */
	CHECK(req->hdr.type < PROTO_CMD_ODP_REG || !lim->version ||
	      lim->version >= PROTO_VERSION_ODP);
	CHECK(req->hdr.type < PROTO_CMD_IOVA_RKEY || !lim->version ||
	      lim->version >= PROTO_VERSION_RKEY);
	CHECK(req->hdr.type < PROTO_CMD_RING_SETUP || !lim->version ||
	      lim->version >= PROTO_VERSION_RING);
	CHECK(req->hdr.type < PROTO_CMD_RESUME || !lim->version ||
	      lim->version >= PROTO_VERSION_RESUME);
	switch (req->hdr.type) {
	case PROTO_CMD_BATCH: {
		uint32_t n = req->u.batch.count;

		CHECK(n >= 1 && n <= lim->max_batch && n <= PROTO_BATCH_MAX);
		CHECK(!(req->u.batch.flags & ~PROTO_BATCH_FLAGS));
		CHECK(req->ops + (size_t)n * sizeof(struct proto_op) == b + len);
		for (uint32_t i = 0; i < n; i++) {
			struct proto_op op;

			proto_op_get(req, i, &op);
			CHECK(op.opcode >= 1 && op.opcode < PROTO_OP_MAX);
			CHECK(op.dir <= PROTO_DIR_MAX && !op.reserved);
			CHECK(!(op.attrs & ~(uint64_t)PROTO_ATTRS));
		}
		break;
	}
	case PROTO_CMD_DMA_WRITE:
		CHECK(req->u.dma.len && req->data + req->u.dma.len == b + len);
		/* Touch every byte the daemon would copy out. */
		for (uint32_t i = 0; i < req->u.dma.len; i++)
			x ^= req->data[i];
		sink = x;
		break;
	case PROTO_CMD_DMA_READ:
		CHECK(req->u.dma.len &&
		      HDR + sizeof(struct proto_dma_rpy) + req->u.dma.len <= lim->max_frame);
		break;
	case PROTO_CMD_DEV_OPEN:
		CHECK(req->u.dev_open.name[0] &&
		      memchr(req->u.dev_open.name, 0, PROTO_DEV_NAME_MAX));
		break;
	case PROTO_CMD_HELLO:
		CHECK(req->u.hello.max_frame >= PROTO_FRAME_MIN && req->u.hello.max_batch);
		CHECK(req->u.hello.version_min <= req->u.hello.version_max &&
		      req->u.hello.version_min <= PROTO_VERSION_MAX &&
		      req->u.hello.version_max >= PROTO_VERSION_MIN);
		break;
	case PROTO_CMD_ODP_REG: {
		const struct proto_odp_reg *o = &req->u.odp_reg;

		CHECK(o->dev && !(o->access & ~PROTO_ODP_ACCESS) && !(o->flags & ~PROTO_ODP_FLAGS));
		if (o->flags & PROTO_ODP_IMPLICIT)
			CHECK(!o->mem && !o->offset);
		else
			CHECK(o->mem && range_ok(o->offset, o->len));
		break;
	}
	case PROTO_CMD_ODP_DEREG:
		CHECK(req->u.odp_ref.odp && !req->u.odp_ref.flags);
		break;
	case PROTO_CMD_ODP_STATS:
		CHECK(!(req->u.odp_ref.flags & ~PROTO_ODP_STATS_DAEMON));
		CHECK(!req->u.odp_ref.flags || !req->u.odp_ref.odp);
		break;
	case PROTO_CMD_ODP_ADVISE:
	case PROTO_CMD_ODP_INVALIDATE: {
		const struct proto_odp_range *o = &req->u.odp_range;

		CHECK(o->odp && !o->reserved && range_ok(o->offset, o->len));
		CHECK(o->advice <= PROTO_ADVISE_MAX && !(o->flags & ~PROTO_ADVISE_FLAG_FLUSH));
		if (req->hdr.type == PROTO_CMD_ODP_INVALIDATE)
			CHECK(!o->advice && !o->flags);
		break;
	}
	case PROTO_CMD_MEM_DISCARD: {
		const struct proto_mem_range *m = &req->u.mem_range;

		CHECK(m->mem && !m->reserved && range_ok(m->offset, m->len));
		break;
	}
	case PROTO_CMD_FAULT_DONE:
		CHECK(!req->u.fault_done.reserved);
		CHECK(req->u.fault_done.status <= 0 && req->u.fault_done.status >= -4095);
		break;
	case PROTO_CMD_LIST_ODP:
		CHECK(!req->u.list.reserved);
		break;
	case PROTO_CMD_IOVA_RKEY:
		CHECK(req->u.iova_rkey.dev && !req->u.iova_rkey.reserved);
		break;
	case PROTO_CMD_RESUME: {
		const struct proto_hello *h = &req->u.resume.hello;

		CHECK(!h->reserved && h->max_frame >= PROTO_FRAME_MIN && h->max_batch);
		CHECK(h->version_min <= h->version_max && h->version_min <= PROTO_VERSION_MAX &&
		      h->version_max >= PROTO_VERSION_RESUME);
		CHECK(!req->ops && !req->data);
		break;
	}
	default:
		CHECK(!req->ops && !req->data);
		break;
	}
}

static int decode_checked(const uint8_t *b, size_t len, const struct proto_limits *lim,
			  struct proto_req *req)
{
	int r = proto_decode_request(b, len, lim, req);

	CHECK(documented(r));
	if (!r)
		check_req(b, len, lim, req);
	return r;
}

/* (c): a server's read loop over a stream of frames. */
static void stream(const uint8_t *data, size_t size)
{
	struct proto_limits lim = lim_before;
	size_t off = 0;

	while (off < size) {
		int64_t fl = proto_frame_len(data + off, size - off, lim.max_frame);
		struct proto_req req;
		int r;

		CHECK(fl == 0 || fl == -EMSGSIZE || fl == -EBADMSG ||
		      (fl >= (int64_t)HDR && fl <= (int64_t)lim.max_frame));
		if (fl <= 0 || (size_t)fl > size - off)
			return; /* needs more bytes, or unframeable: closed */
		r = decode_checked(data + off, (size_t)fl, &lim, &req);
		/* Framing errors close the connection; the rest are answered. */
		if (r == -EMSGSIZE || r == -EPROTONOSUPPORT ||
		    (r == -EBADMSG && req.hdr.magic != PROTO_MAGIC))
			return;
		if (!r && !lim.version &&
		    (req.hdr.type == PROTO_CMD_HELLO || req.hdr.type == PROTO_CMD_RESUME)) {
			/* The daemon's choice: the highest version both sides speak. */
			const struct proto_hello *h = req.hdr.type == PROTO_CMD_HELLO ?
							      &req.u.hello :
							      &req.u.resume.hello;

			lim.version = PROTO_VERSION_MAX;
			if (h->version_max < lim.version)
				lim.version = h->version_max;
			if (h->max_frame < lim.max_frame)
				lim.max_frame = h->max_frame;
			if (h->max_batch < lim.max_batch)
				lim.max_batch = h->max_batch;
		}
		off += (size_t)fl;
	}
}

/* (d): what a client's proto_decode_event promises. */
static void event(const uint8_t *data, size_t size)
{
	struct proto_evt_fault e;
	int r = proto_decode_event(data, size, PROTO_VERSION_ODP, PROTO_FRAME_DEFAULT, &e);

	CHECK(r == 0 || r == -EMSGSIZE || r == -EBADMSG || r == -EPROTONOSUPPORT || r == -EINVAL);
	if (!r) {
		struct proto_hdr h;

		memcpy(&h, data, sizeof(h));
		CHECK(size == HDR + sizeof(e) && h.len == size && h.magic == PROTO_MAGIC);
		CHECK(h.version == PROTO_VERSION_ODP && h.type == PROTO_EVT_FAULT);
		CHECK(!h.flags && !h.id);
		CHECK((e.access == 1 || e.access == 2) && range_ok(e.offset, e.len));
		CHECK(!memcmp(&e, data + HDR, sizeof(e)));
	}
	/* A version-1 session has no events, and a session before HELLO neither. */
	r = proto_decode_event(data, size, 1, PROTO_FRAME_DEFAULT, &e);
	CHECK(r == -EMSGSIZE || r == -EBADMSG || r == -EPROTONOSUPPORT);
	r = proto_decode_event(data, size, 0, PROTO_FRAME_DEFAULT, &e);
	CHECK(r == -EMSGSIZE || r == -EBADMSG || r == -EPROTONOSUPPORT);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct proto_req req;
	int64_t fl;
	uint8_t *odd;
	int r2;

	/* (a) framing */
	fl = proto_frame_len(data, size, PROTO_FRAME_DEFAULT);
	CHECK(size < HDR ? fl == 0 : fl != 0);
	CHECK(fl <= 0 || (fl >= (int64_t)HDR && fl <= PROTO_FRAME_DEFAULT));
	CHECK(fl >= 0 || fl == -EMSGSIZE || fl == -EBADMSG);

	/* (b) one frame, before and after HELLO, on a version-1 and a version-2 session */
	(void)decode_checked(data, size, &lim_before, &req);
	if (decode_checked(data, size, &lim_after, &req) == 0)
		CHECK(fl == (int64_t)size);
	r2 = decode_checked(data, size, &lim_after2, &req);
	if (r2 == 0)
		CHECK(fl == (int64_t)size);
	/* On a version-5 session: RESUME decodes there too (the daemon's -EALREADY). */
	if (decode_checked(data, size, &lim_after5, &req) == 0)
		CHECK(fl == (int64_t)size);
	/* A version-3 request from a version-2 client: a type it does not have. */
	if (decode_checked(data, size, &lim_after3, &req) == 0 &&
	    req.hdr.type >= PROTO_CMD_IOVA_RKEY) {
		uint8_t *v2 = malloc(size);

		if (v2) {
			const uint16_t two = PROTO_VERSION_ODP;

			memcpy(v2, data, size);
			memcpy(v2 + offsetof(struct proto_hdr, version), &two, sizeof(two));
			CHECK(proto_decode_request(v2, size, &lim_after2, &req) == -ENOSYS);
			free(v2);
		}
	}
	/* The same version-2 request from a version-1 client: a type it does not have. */
	if (r2 == 0 && req.hdr.type >= PROTO_CMD_ODP_REG) {
		uint8_t *v1 = malloc(size);

		if (v1) {
			const uint16_t one = 1;

			memcpy(v1, data, size);
			memcpy(v1 + offsetof(struct proto_hdr, version), &one, sizeof(one));
			CHECK(proto_decode_request(v1, size, &lim_after, &req) == -ENOSYS);
			free(v1);
		}
	}

	/* The same at an odd address: the decoders must not assume alignment. */
	odd = malloc(size + 1);
	if (odd) {
		struct proto_evt_fault ea, eb;
		int a, b;

		memcpy(odd + 1, data, size);
		a = proto_decode_request(odd + 1, size, &lim_after, &req);
		b = proto_decode_request(data, size, &lim_after, &req);
		CHECK(a == b);
		a = proto_decode_request(odd + 1, size, &lim_after2, &req);
		CHECK(a == r2);
		a = proto_decode_event(odd + 1, size, PROTO_VERSION_ODP, PROTO_FRAME_DEFAULT, &ea);
		b = proto_decode_event(data, size, PROTO_VERSION_ODP, PROTO_FRAME_DEFAULT, &eb);
		CHECK(a == b && (a || !memcmp(&ea, &eb, sizeof(ea))));
		free(odd);
	}

	/* (d) a client's view of the same bytes: a reply, or an event */
	if (size >= HDR) {
		int r = proto_check_reply(data, size, PROTO_VERSION, PROTO_FRAME_DEFAULT,
					  (uint16_t)(data[6] & 0x1f), HDR + data[size - 1]);

		CHECK(r == 0 || r == -EMSGSIZE || r == -EBADMSG || r == -EPROTONOSUPPORT);
	}
	event(data, size);

	/* (c) a stream of frames */
	stream(data, size);
	return 0;
}
