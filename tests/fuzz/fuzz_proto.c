// SPDX-License-Identifier: MIT
/*
 * fuzz_proto.c - libFuzzer target for the wire protocol decoder.
 *
 * One input is used three ways:
 *  (a) proto_frame_len on its first bytes;
 *  (b) proto_decode_request on the whole input as one frame, before HELLO
 *      (version 0) and after it (version 1, default frame and batch limits),
 *      at the input's own (exactly sized) address and at an odd one, walking
 *      every op of a decoded BATCH with proto_op_get;
 *  (c) as a byte stream that a server cuts into frames with proto_frame_len
 *      and decodes one by one, negotiating on a decoded HELLO and stopping
 *      where the daemon would close the connection.
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

static volatile uint8_t sink;

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
	CHECK(lim->version ? req->hdr.version == lim->version : req->hdr.type == PROTO_CMD_HELLO);
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
		break;
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
		if (!r && req.hdr.type == PROTO_CMD_HELLO && !lim.version) {
			lim.version = PROTO_VERSION;
			if (req.u.hello.max_frame < lim.max_frame)
				lim.max_frame = req.u.hello.max_frame;
			if (req.u.hello.max_batch < lim.max_batch)
				lim.max_batch = req.u.hello.max_batch;
		}
		off += (size_t)fl;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct proto_req req;
	int64_t fl;
	uint8_t *odd;

	/* (a) framing */
	fl = proto_frame_len(data, size, PROTO_FRAME_DEFAULT);
	CHECK(size < HDR ? fl == 0 : fl != 0);
	CHECK(fl <= 0 || (fl >= (int64_t)HDR && fl <= PROTO_FRAME_DEFAULT));
	CHECK(fl >= 0 || fl == -EMSGSIZE || fl == -EBADMSG);

	/* (b) one frame, before and after HELLO */
	(void)decode_checked(data, size, &lim_before, &req);
	if (decode_checked(data, size, &lim_after, &req) == 0)
		CHECK(fl == (int64_t)size);

	/* The same at an odd address: the decoder must not assume alignment. */
	odd = malloc(size + 1);
	if (odd) {
		int a, b;

		memcpy(odd + 1, data, size);
		a = proto_decode_request(odd + 1, size, &lim_after, &req);
		b = proto_decode_request(data, size, &lim_after, &req);
		CHECK(a == b);
		free(odd);
	}

	/* A client's view of the same bytes as a reply. */
	if (size >= HDR) {
		int r = proto_check_reply(data, size, PROTO_VERSION, PROTO_FRAME_DEFAULT,
					  (uint16_t)(data[6] & 0x0f), HDR + data[size - 1]);

		CHECK(r == 0 || r == -EMSGSIZE || r == -EBADMSG || r == -EPROTONOSUPPORT);
	}

	/* (c) a stream of frames */
	stream(data, size);
	return 0;
}
