// SPDX-License-Identifier: MIT
/*
 * test_proto.c - the wire protocol decoder: the fixed validation order and
 * its errnos, every request type, batches, framing, reply checks, version 2's
 * on-demand paging messages (and that a version-1 session knows none of
 * them), the client's event decoder, versions 3 and 4's types, version 5's
 * RESUME (a first frame like HELLO, in a version-5 header only), and a
 * randomized robustness pass over mutated frames.
 */
#include <criterion/criterion.h>

#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "proto.h"
#include "ring.h"

#define HDR sizeof(struct proto_hdr)
#define BODY(t, f) (HDR + offsetof(t, f))
#define FRAME_ID UINT64_C(0x1122334455667788)
#define NOPS 7u /* ops in the canonical valid BATCH */

/*
 * Decoder limits: before HELLO, a session that negotiated version 1 (a client
 * that offered only 1), one that negotiated version 2, and tight negotiations
 * of each; then sessions of versions 3, 4 and 5. The version-1 tests below
 * keep running on a version-1 session: a daemon that speaks 5 must still
 * serve such a client exactly as before.
 */
static const struct proto_limits lim0 = { 0, PROTO_FRAME_DEFAULT, PROTO_BATCH_DEFAULT };
static const struct proto_limits lim1 = { 1, PROTO_FRAME_DEFAULT, PROTO_BATCH_DEFAULT };
static const struct proto_limits lim_tight = { 1, PROTO_FRAME_MIN, 4 };
static const struct proto_limits lim2 = { PROTO_VERSION_ODP, PROTO_FRAME_DEFAULT,
					  PROTO_BATCH_DEFAULT };
static const struct proto_limits lim2_tight = { PROTO_VERSION_ODP, PROTO_FRAME_MIN, 4 };
static const struct proto_limits lim3 = { PROTO_VERSION_RKEY, PROTO_FRAME_DEFAULT,
					  PROTO_BATCH_DEFAULT };
static const struct proto_limits lim4 = { PROTO_VERSION_RING, PROTO_FRAME_DEFAULT,
					  PROTO_BATCH_DEFAULT };
static const struct proto_limits lim5 = { PROTO_VERSION_RESUME, PROTO_FRAME_DEFAULT,
					  PROTO_BATCH_DEFAULT };
static const struct proto_limits lim5_tight = { PROTO_VERSION_RESUME, PROTO_FRAME_MIN, 4 };

/* The version-2 request types, in order; then version 3's, 4's and 5's. */
#define V2_FIRST PROTO_CMD_ODP_REG
#define V3_FIRST PROTO_CMD_IOVA_RKEY
#define V4_FIRST PROTO_CMD_RING_SETUP
#define V5_FIRST PROTO_CMD_RESUME
#define NV2 (V3_FIRST - V2_FIRST)

/* Room for the largest frame plus slack for unaligned placement. */
static uint8_t buf[PROTO_FRAME_MAX + 64];

/* ---- frame building ------------------------------------------------------ */

static void put16(uint8_t *b, size_t off, uint16_t v)
{
	memcpy(b + off, &v, sizeof(v));
}

static void put32(uint8_t *b, size_t off, uint32_t v)
{
	memcpy(b + off, &v, sizeof(v));
}

static void put64(uint8_t *b, size_t off, uint64_t v)
{
	memcpy(b + off, &v, sizeof(v));
}

static void set_len(uint8_t *b, size_t len)
{
	put32(b, offsetof(struct proto_hdr, len), (uint32_t)len);
}

static void set_version(uint8_t *b, uint16_t version)
{
	put16(b, offsetof(struct proto_hdr, version), version);
}

/* The first version that has a request type (what PROTOCOL.md's table says); 1 if none has. */
static uint16_t type_version(uint16_t type)
{
	if (type >= V5_FIRST && type < PROTO_CMD_MAX)
		return PROTO_VERSION_RESUME;
	if (type >= V4_FIRST && type < PROTO_CMD_MAX)
		return PROTO_VERSION_RING;
	if (type >= V3_FIRST && type < PROTO_CMD_MAX)
		return PROTO_VERSION_RKEY;
	return type >= V2_FIRST && type < PROTO_CMD_MAX ? PROTO_VERSION_ODP : 1;
}

/*
 * The limits a valid frame of type decodes under: its own version's session;
 * HELLO's and RESUME's are the first frame's (RESUME also decodes on a
 * version-5 session, where the daemon answers it -EALREADY: see proto_v5).
 */
static const struct proto_limits *lim_for(uint16_t type)
{
	if (type == PROTO_CMD_HELLO || type == PROTO_CMD_RESUME)
		return &lim0;
	if (type_version(type) == PROTO_VERSION_RING)
		return &lim4;
	if (type_version(type) == PROTO_VERSION_RKEY)
		return &lim3;
	return type_version(type) == 1 ? &lim1 : &lim2;
}

/* A frame of the first version that has its type (HELLO: version 1; RESUME: 5). */
static size_t frame(uint8_t *b, uint16_t type, const void *body, size_t blen)
{
	struct proto_hdr h;

	proto_hdr_init(&h, type_version(type), type, (uint32_t)(HDR + blen), FRAME_ID ^ type);
	memcpy(b, &h, HDR);
	if (blen)
		memcpy(b + HDR, body, blen);
	return HDR + blen;
}

static struct proto_op mkop(uint16_t opcode, uint8_t dir, uint64_t attrs)
{
	return (struct proto_op){ .opcode = opcode,
				  .dir = dir,
				  .dev = 1,
				  .iova = UINT64_C(0x10000) * opcode,
				  .phys = 0x200000,
				  .offset = 0x1000,
				  .size = 0x2000,
				  .attrs = attrs };
}

/* A BATCH whose count field says count, carrying nops ops. */
static size_t batch_frame(uint8_t *b, uint32_t count, uint32_t nops, uint32_t flags,
			  const struct proto_op *ops)
{
	struct proto_batch bt = { .count = count, .flags = flags };
	size_t len = HDR + sizeof(bt) + (size_t)nops * sizeof(struct proto_op);

	frame(b, PROTO_CMD_BATCH, &bt, sizeof(bt));
	if (nops)
		memcpy(b + HDR + sizeof(bt), ops, (size_t)nops * sizeof(struct proto_op));
	set_len(b, len);
	return len;
}

/* n valid ops cycling through every opcode, direction and attribute. */
static void valid_ops(struct proto_op *ops, uint32_t n)
{
	static const uint64_t attrs[] = { 0, 1u << 5, 1u << 10, 1u << 11, PROTO_ATTRS };

	for (uint32_t i = 0; i < n; i++)
		ops[i] = mkop((uint16_t)(1 + i % (PROTO_OP_MAX - 1)), (uint8_t)(i % 3),
			      attrs[i % 5]);
}

/* RESUME's canonical body: the hello part offers 5 and up, then the session's name and token. */
static const struct proto_resume resume_ok = {
	.hello = { PROTO_VERSION_RESUME, PROTO_VERSION_MAX, PROTO_FRAME_DEFAULT,
		   PROTO_BATCH_DEFAULT, 0 },
	.session_id = UINT64_C(0x5e55105e55105e55),
	.token = { 0xa0, 0xa1, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7, 0xa8, 0xa9, 0xaa, 0xab, 0xac,
		   0xad, 0xae, 0xaf },
};

/* The canonical valid frame of each request type. */
static size_t valid_frame(uint8_t *b, uint16_t type)
{
	switch (type) {
	case PROTO_CMD_HELLO: {
		struct proto_hello h = { 1, 1, PROTO_FRAME_DEFAULT, PROTO_BATCH_DEFAULT, 0 };

		return frame(b, type, &h, sizeof(h));
	}
	case PROTO_CMD_DEV_OPEN: {
		struct proto_dev_open d = { .name = "rxe0" };

		return frame(b, type, &d, sizeof(d));
	}
	case PROTO_CMD_DEV_CLOSE:
	case PROTO_CMD_DEV_STATS: {
		struct proto_dev_ref d = { .dev = 3 };

		return frame(b, type, &d, sizeof(d));
	}
	case PROTO_CMD_MEM_IMPORT: {
		struct proto_mem_import m = { .offset = 0x1000, .size = 0x10000 };

		return frame(b, type, &m, sizeof(m));
	}
	case PROTO_CMD_MEM_FREE: {
		struct proto_mem_ref m = { .mem = 2 };

		return frame(b, type, &m, sizeof(m));
	}
	case PROTO_CMD_IOVA_ALLOC: {
		struct proto_iova_alloc a = { .dev = 1, .phys = 0x200123, .size = 0x5000 };

		return frame(b, type, &a, sizeof(a));
	}
	case PROTO_CMD_BATCH: {
		struct proto_op ops[NOPS];

		valid_ops(ops, NOPS);
		return batch_frame(b, NOPS, NOPS, PROTO_BATCH_STOP_ON_ERROR, ops);
	}
	case PROTO_CMD_DMA_READ: {
		struct proto_dma d = { .dev = 1, .len = 512, .iova = 0xfff000 };

		return frame(b, type, &d, sizeof(d));
	}
	case PROTO_CMD_DMA_WRITE: {
		struct proto_dma d = { .dev = 1, .len = 13, .iova = 0xfff000 };
		size_t len = frame(b, type, &d, sizeof(d));

		memcpy(b + len, "hello, device", 13);
		set_len(b, len + 13);
		return len + 13;
	}
	case PROTO_CMD_STATUS:
		return frame(b, type, NULL, 0);
	case PROTO_CMD_LIST_DEVICES:
	case PROTO_CMD_LIST_CLIENTS:
	case PROTO_CMD_CLIENT_MAPS: {
		struct proto_list l = { .start = 7 };

		if (type == PROTO_CMD_CLIENT_MAPS)
			l.session_id = 42;
		return frame(b, type, &l, sizeof(l));
	}
	case PROTO_CMD_ODP_REG: {
		struct proto_odp_reg o = { .dev = 1,
					   .mem = 2,
					   .offset = 0x2000,
					   .len = 0x10000,
					   .access = PROTO_ODP_ACCESS,
					   .flags = PROTO_ODP_USER_FAULTS };

		return frame(b, type, &o, sizeof(o));
	}
	case PROTO_CMD_ODP_DEREG:
	case PROTO_CMD_ODP_STATS: {
		struct proto_odp_ref o = { .odp = 5 };

		return frame(b, type, &o, sizeof(o));
	}
	case PROTO_CMD_ODP_ADVISE: {
		struct proto_odp_range o = { .odp = 5,
					     .advice = PROTO_ADVISE_PREFETCH_WRITE,
					     .flags = PROTO_ADVISE_FLAG_FLUSH,
					     .offset = 0x1000,
					     .len = 0x3000 };

		return frame(b, type, &o, sizeof(o));
	}
	case PROTO_CMD_ODP_INVALIDATE: {
		struct proto_odp_range o = { .odp = 5, .offset = 0x1000, .len = 0x1000 };

		return frame(b, type, &o, sizeof(o));
	}
	case PROTO_CMD_MEM_DISCARD: {
		struct proto_mem_range m = { .mem = 2, .offset = 0x4000, .len = 0x2000 };

		return frame(b, type, &m, sizeof(m));
	}
	case PROTO_CMD_FAULT_DONE: {
		struct proto_fault_done f = { .fault_id = UINT64_C(0x123456789a), .status = -EIO };

		return frame(b, type, &f, sizeof(f));
	}
	case PROTO_CMD_LIST_ODP: {
		struct proto_list l = { .session_id = 42, .start = 3 };

		return frame(b, type, &l, sizeof(l));
	}
	case PROTO_CMD_IOVA_RKEY: {
		struct proto_iova_rkey k = { .dev = 1, .iova = UINT64_C(0xffff0000) };

		return frame(b, type, &k, sizeof(k));
	}
	case PROTO_CMD_RING_SETUP: {
		struct proto_ring_setup g = { .sq_size = PROTO_RING_DEFAULT,
					      .cq_size = PROTO_RING_SIZE_MIN };

		return frame(b, type, &g, sizeof(g));
	}
	case PROTO_CMD_RESUME:
		return frame(b, type, &resume_ok, sizeof(resume_ok));
	default:
		cr_assert_fail("no valid frame for type %u", type);
		return 0;
	}
}

static int decode(const uint8_t *b, size_t len, const struct proto_limits *lim)
{
	struct proto_req req;

	return proto_decode_request(b, len, lim, &req);
}

/* Fixed body length of a type, or -1 for BATCH and DMA_WRITE. */
static long fixed_body(uint16_t type)
{
	switch (type) {
	case PROTO_CMD_HELLO:
		return sizeof(struct proto_hello);
	case PROTO_CMD_DEV_OPEN:
		return sizeof(struct proto_dev_open);
	case PROTO_CMD_DEV_CLOSE:
	case PROTO_CMD_DEV_STATS:
		return sizeof(struct proto_dev_ref);
	case PROTO_CMD_MEM_IMPORT:
		return sizeof(struct proto_mem_import);
	case PROTO_CMD_MEM_FREE:
		return sizeof(struct proto_mem_ref);
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
	case PROTO_CMD_ODP_DEREG:
	case PROTO_CMD_ODP_STATS:
		return sizeof(struct proto_odp_ref);
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
	case PROTO_CMD_RESUME:
		return sizeof(struct proto_resume);
	default:
		return -1;
	}
}

/* ---- proto_frame_len ------------------------------------------------------ */

Test(proto_frame_len, short_input_needs_more)
{
	size_t len = valid_frame(buf, PROTO_CMD_HELLO);

	cr_assert_eq(proto_frame_len(buf, 0, PROTO_FRAME_DEFAULT), 0);
	cr_assert_eq(proto_frame_len(buf, 1, PROTO_FRAME_DEFAULT), 0);
	cr_assert_eq(proto_frame_len(buf, HDR - 1, PROTO_FRAME_DEFAULT), 0);
	/* Even a header that is already visibly bad needs all its bytes first. */
	memset(buf, 0xff, HDR);
	cr_assert_eq(proto_frame_len(buf, HDR - 1, PROTO_FRAME_DEFAULT), 0);
	valid_frame(buf, PROTO_CMD_HELLO);
	cr_assert_eq(proto_frame_len(buf, HDR, PROTO_FRAME_DEFAULT), (int64_t)len);
}

Test(proto_frame_len, reports_length_from_the_header_alone)
{
	valid_frame(buf, PROTO_CMD_DMA_WRITE);
	set_len(buf, 5000); /* the body is not there yet: only the header is read */
	cr_assert_eq(proto_frame_len(buf, HDR, PROTO_FRAME_DEFAULT), 5000);
	set_len(buf, HDR);
	cr_assert_eq(proto_frame_len(buf, HDR, PROTO_FRAME_DEFAULT), (int64_t)HDR);
	set_len(buf, PROTO_FRAME_DEFAULT);
	cr_assert_eq(proto_frame_len(buf, HDR, PROTO_FRAME_DEFAULT), PROTO_FRAME_DEFAULT);
}

Test(proto_frame_len, oversize_and_undersize_len)
{
	valid_frame(buf, PROTO_CMD_STATUS);
	set_len(buf, 0);
	cr_assert_eq(proto_frame_len(buf, HDR, PROTO_FRAME_DEFAULT), -EMSGSIZE);
	set_len(buf, HDR - 1);
	cr_assert_eq(proto_frame_len(buf, HDR, PROTO_FRAME_DEFAULT), -EMSGSIZE);
	set_len(buf, PROTO_FRAME_DEFAULT + 1);
	cr_assert_eq(proto_frame_len(buf, HDR, PROTO_FRAME_DEFAULT), -EMSGSIZE);
	set_len(buf, UINT32_MAX);
	cr_assert_eq(proto_frame_len(buf, HDR, PROTO_FRAME_DEFAULT), -EMSGSIZE);
	/* max_frame above the hard cap is clamped to it. */
	set_len(buf, PROTO_FRAME_MAX);
	cr_assert_eq(proto_frame_len(buf, HDR, UINT32_MAX), PROTO_FRAME_MAX);
	set_len(buf, PROTO_FRAME_MAX + 1);
	cr_assert_eq(proto_frame_len(buf, HDR, UINT32_MAX), -EMSGSIZE);
}

Test(proto_frame_len, bad_magic)
{
	valid_frame(buf, PROTO_CMD_STATUS);
	put32(buf, 0, PROTO_MAGIC ^ 1);
	cr_assert_eq(proto_frame_len(buf, HDR, PROTO_FRAME_DEFAULT), -EBADMSG);
	put32(buf, 0, 0);
	cr_assert_eq(proto_frame_len(buf, HDR, PROTO_FRAME_DEFAULT), -EBADMSG);
	/* Length bounds are checked first, as in proto_decode_request. */
	set_len(buf, 3);
	cr_assert_eq(proto_frame_len(buf, HDR, PROTO_FRAME_DEFAULT), -EMSGSIZE);
}

Test(proto_frame_len, unaligned_offset)
{
	for (size_t off = 1; off < 8; off++) {
		size_t len = valid_frame(buf + off, PROTO_CMD_IOVA_ALLOC);

		cr_assert_eq(proto_frame_len(buf + off, len, PROTO_FRAME_DEFAULT), (int64_t)len);
	}
}

/* ---- proto_decode_request: the validation order ---------------------------- */

Test(proto_decode, length_bounds)
{
	struct proto_limits big = { 1, UINT32_MAX, PROTO_BATCH_MAX };
	size_t len = valid_frame(buf, PROTO_CMD_DEV_STATS);

	cr_assert_eq(decode(buf, 0, &lim1), -EMSGSIZE);
	cr_assert_eq(decode(buf, HDR - 1, &lim1), -EMSGSIZE);
	/* hdr.len must equal the frame's length, either way. */
	cr_assert_eq(decode(buf, len - 1, &lim1), -EMSGSIZE);
	cr_assert_eq(decode(buf, len + 1, &lim1), -EMSGSIZE);
	set_len(buf, len + 8);
	cr_assert_eq(decode(buf, len, &lim1), -EMSGSIZE);
	/* Above the negotiated max_frame, and above the hard cap whatever was negotiated. */
	len = valid_frame(buf, PROTO_CMD_DMA_WRITE);
	put32(buf, BODY(struct proto_dma, len), PROTO_FRAME_DEFAULT + 1 - (uint32_t)len + 13);
	set_len(buf, PROTO_FRAME_DEFAULT + 1);
	cr_assert_eq(decode(buf, PROTO_FRAME_DEFAULT + 1, &lim1), -EMSGSIZE);
	cr_assert_eq(decode(buf, PROTO_FRAME_DEFAULT + 1, &big), 0);
	put32(buf, BODY(struct proto_dma, len), PROTO_FRAME_MAX + 1 - (uint32_t)len + 13);
	set_len(buf, PROTO_FRAME_MAX + 1);
	cr_assert_eq(decode(buf, PROTO_FRAME_MAX + 1, &big), -EMSGSIZE);
	put32(buf, BODY(struct proto_dma, len), PROTO_FRAME_MAX - (uint32_t)len + 13);
	set_len(buf, PROTO_FRAME_MAX);
	cr_assert_eq(decode(buf, PROTO_FRAME_MAX, &big), 0);
}

Test(proto_decode, rejects_bad_magic)
{
	for (uint16_t t = PROTO_CMD_HELLO; t < PROTO_CMD_MAX; t++) {
		size_t len = valid_frame(buf, t);

		put32(buf, 0, PROTO_MAGIC + 0x100);
		cr_assert_eq(decode(buf, len, lim_for(t)), -EBADMSG, "%s", proto_cmd_name(t));
	}
}

Test(proto_decode, length_beats_magic)
{
	size_t len = valid_frame(buf, PROTO_CMD_STATUS);

	put32(buf, 0, 0xdeadbeef);
	set_len(buf, len + 1);
	cr_assert_eq(decode(buf, len, &lim1), -EMSGSIZE);
}

Test(proto_decode, magic_beats_version_and_type)
{
	size_t len = valid_frame(buf, PROTO_CMD_STATUS);

	put32(buf, 0, 0);
	put16(buf, offsetof(struct proto_hdr, type), 0x7777);
	cr_assert_eq(decode(buf, len, &lim1), -EBADMSG);
	cr_assert_eq(decode(buf, len, &lim0), -EBADMSG);
	put16(buf, offsetof(struct proto_hdr, version), 9);
	cr_assert_eq(decode(buf, len, &lim1), -EBADMSG);
	cr_assert_eq(decode(buf, len, &lim0), -EBADMSG);
}

Test(proto_decode, rejects_wrong_version)
{
	/* On a version-1 session, 2 is as wrong as any other version but 1. */
	static const uint16_t bad1[] = { 0, 2, PROTO_VERSION_MAX + 1, 0xffff };
	/* On a version-2 session, 1 is wrong too: the version is fixed by HELLO. */
	static const uint16_t bad2[] = { 0, 1, PROTO_VERSION_MAX + 1, 0xffff };
	/* On a version-5 session, every older version is wrong. */
	static const uint16_t bad5[] = {
		0,
		1,
		PROTO_VERSION_ODP,
		PROTO_VERSION_RKEY,
		PROTO_VERSION_RING,
		PROTO_VERSION_MAX + 1,
		0xffff,
	};
	/* HELLO may carry any version the daemon speaks, and none other. */
	static const uint16_t bad_hello[] = { 0, PROTO_VERSION_MAX + 1, 0xffff };
	/* RESUME only a version that has it. */
	static const uint16_t bad_resume[] = {
		0,
		1,
		PROTO_VERSION_ODP,
		PROTO_VERSION_RKEY,
		PROTO_VERSION_RING,
		PROTO_VERSION_MAX + 1,
		0xffff,
	};
	size_t len = valid_frame(buf, PROTO_CMD_DEV_CLOSE);

	cr_assert_eq(decode(buf, len, &lim1), 0);
	for (size_t i = 0; i < sizeof(bad1) / sizeof(bad1[0]); i++) {
		set_version(buf, bad1[i]);
		cr_assert_eq(decode(buf, len, &lim1), -EPROTONOSUPPORT, "version %u", bad1[i]);
	}
	set_version(buf, PROTO_VERSION_ODP);
	cr_assert_eq(decode(buf, len, &lim2), 0);
	for (size_t i = 0; i < sizeof(bad2) / sizeof(bad2[0]); i++) {
		set_version(buf, bad2[i]);
		cr_assert_eq(decode(buf, len, &lim2), -EPROTONOSUPPORT, "version %u", bad2[i]);
	}
	set_version(buf, PROTO_VERSION_RESUME);
	cr_assert_eq(decode(buf, len, &lim5), 0);
	for (size_t i = 0; i < sizeof(bad5) / sizeof(bad5[0]); i++) {
		set_version(buf, bad5[i]);
		cr_assert_eq(decode(buf, len, &lim5), -EPROTONOSUPPORT, "version %u", bad5[i]);
	}
	/* Before HELLO, HELLO itself must carry a version in range. */
	len = valid_frame(buf, PROTO_CMD_HELLO);
	for (size_t i = 0; i < sizeof(bad_hello) / sizeof(bad_hello[0]); i++) {
		set_version(buf, bad_hello[i]);
		cr_assert_eq(decode(buf, len, &lim0), -EPROTONOSUPPORT, "version %u", bad_hello[i]);
	}
	for (uint16_t v = PROTO_VERSION_MIN; v <= PROTO_VERSION_MAX; v++) {
		set_version(buf, v);
		cr_assert_eq(decode(buf, len, &lim0), 0, "HELLO in version %u", v);
	}
	/* And RESUME, in place of HELLO, a version from 5 on. */
	len = valid_frame(buf, PROTO_CMD_RESUME);
	for (size_t i = 0; i < sizeof(bad_resume) / sizeof(bad_resume[0]); i++) {
		set_version(buf, bad_resume[i]);
		cr_assert_eq(decode(buf, len, &lim0), -EPROTONOSUPPORT, "version %u",
			     bad_resume[i]);
	}
	for (uint16_t v = PROTO_VERSION_RESUME; v <= PROTO_VERSION_MAX; v++) {
		set_version(buf, v);
		cr_assert_eq(decode(buf, len, &lim0), 0, "RESUME in version %u", v);
	}
}

Test(proto_decode, version_beats_type)
{
	size_t len = valid_frame(buf, PROTO_CMD_STATUS);

	put16(buf, offsetof(struct proto_hdr, version), 2);
	put16(buf, offsetof(struct proto_hdr, type), PROTO_CMD_MAX);
	cr_assert_eq(decode(buf, len, &lim1), -EPROTONOSUPPORT);
	put16(buf, offsetof(struct proto_hdr, type), 0);
	cr_assert_eq(decode(buf, len, &lim1), -EPROTONOSUPPORT);
	/* A version-2 type is unknown to version 1, but the wrong version is found first. */
	put16(buf, offsetof(struct proto_hdr, type), PROTO_CMD_ODP_REG);
	cr_assert_eq(decode(buf, len, &lim1), -EPROTONOSUPPORT);
	set_version(buf, 1);
	cr_assert_eq(decode(buf, len, &lim2), -EPROTONOSUPPORT);
	/* RESUME in a version-5 header on a version-4 session: the version is wrong first. */
	put16(buf, offsetof(struct proto_hdr, type), PROTO_CMD_RESUME);
	set_version(buf, PROTO_VERSION_RESUME);
	cr_assert_eq(decode(buf, len, &lim4), -EPROTONOSUPPORT);
}

Test(proto_decode, rejects_unknown_type)
{
	static const uint16_t bad[] = {
		0,
		PROTO_CMD_MAX,
		100,
		PROTO_RPY | PROTO_CMD_HELLO,
		PROTO_RPY | PROTO_CMD_STATUS,
		PROTO_RPY | PROTO_CMD_RESUME,
		PROTO_RPY_ERROR,
	};
	size_t len = valid_frame(buf, PROTO_CMD_STATUS);

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		put16(buf, offsetof(struct proto_hdr, type), bad[i]);
		set_version(buf, 1);
		cr_assert_eq(decode(buf, len, &lim1), -ENOSYS, "type %#x", bad[i]);
		set_version(buf, PROTO_VERSION_ODP);
		cr_assert_eq(decode(buf, len, &lim2), -ENOSYS, "type %#x in version 2", bad[i]);
		set_version(buf, PROTO_VERSION_RESUME);
		cr_assert_eq(decode(buf, len, &lim5), -ENOSYS, "type %#x in version 5", bad[i]);
	}
	/* An event's type is no request, in either direction. */
	put16(buf, offsetof(struct proto_hdr, type), PROTO_EVT_FAULT);
	cr_assert_eq(decode(buf, len, &lim5), -ENOSYS);
	set_version(buf, PROTO_VERSION_ODP);
	cr_assert_eq(decode(buf, len, &lim2), -ENOSYS);
}

Test(proto_decode, type_beats_length)
{
	/* A frame of an unknown type is -ENOSYS whatever its body. */
	static const size_t bodies[] = { 0, 1, 7, 16, 100, 4000 };

	memset(buf, 0xa5, sizeof(buf));
	for (size_t i = 0; i < sizeof(bodies) / sizeof(bodies[0]); i++) {
		frame(buf, PROTO_CMD_MAX + 3, NULL, 0);
		set_len(buf, HDR + bodies[i]);
		put32(buf, offsetof(struct proto_hdr, flags), 1);
		cr_assert_eq(decode(buf, HDR + bodies[i], &lim1), -ENOSYS, "body %zu", bodies[i]);
	}
}

Test(proto_decode, length_beats_reserved)
{
	/* Wrong length and a non-zero hdr.flags: the length is checked first. */
	for (uint16_t t = PROTO_CMD_HELLO; t < PROTO_CMD_MAX; t++) {
		const struct proto_limits *lim = lim_for(t);
		size_t len = valid_frame(buf, t);

		put32(buf, offsetof(struct proto_hdr, flags), 1);
		if (fixed_body(t) <= 0) { /* variable, or nothing to take away */
			buf[len] = 0;
			len++;
		} else {
			len--;
		}
		set_len(buf, len);
		cr_assert_eq(decode(buf, len, lim), -EBADMSG, "%s", proto_cmd_name(t));
	}
}

Test(proto_decode, reserved_beats_ranges)
{
	struct proto_hello h = { 3, 2, 0, 0, 1 }; /* bad versions and limits, reserved set */
	size_t len = frame(buf, PROTO_CMD_HELLO, &h, sizeof(h));

	cr_assert_eq(decode(buf, len, &lim0), -EINVAL);
	put32(buf, BODY(struct proto_hello, reserved), 0);
	cr_assert_eq(decode(buf, len, &lim0), -EPROTONOSUPPORT);
	/* hdr.flags is a reserved field too. */
	put32(buf, offsetof(struct proto_hdr, flags), 1);
	cr_assert_eq(decode(buf, len, &lim0), -EINVAL);
	/* RESUME's hello part, the same way, before HELLO and on a version-5 session. */
	{
		struct proto_resume rs = resume_ok;

		rs.hello = h;
		len = frame(buf, PROTO_CMD_RESUME, &rs, sizeof(rs));
		cr_assert_eq(decode(buf, len, &lim0), -EINVAL);
		cr_assert_eq(decode(buf, len, &lim5), -EINVAL);
		put32(buf, BODY(struct proto_resume, hello.reserved), 0);
		cr_assert_eq(decode(buf, len, &lim0), -EPROTONOSUPPORT);
		cr_assert_eq(decode(buf, len, &lim5), -EPROTONOSUPPORT);
		put32(buf, offsetof(struct proto_hdr, flags), 1);
		cr_assert_eq(decode(buf, len, &lim0), -EINVAL);
		cr_assert_eq(decode(buf, len, &lim5), -EINVAL);
	}
}

Test(proto_decode, only_hello_before_hello)
{
	/* Only HELLO, or RESUME in its place (version 5). */
	for (uint16_t t = PROTO_CMD_HELLO; t < PROTO_CMD_MAX; t++) {
		bool first = t == PROTO_CMD_HELLO || t == PROTO_CMD_RESUME;
		size_t len = valid_frame(buf, t);

		cr_assert_eq(decode(buf, len, &lim0), first ? 0 : -EPROTONOSUPPORT,
			     "%s before HELLO", proto_cmd_name(t));
		/* Whatever version the frame says: a version-5 header lets nothing else in. */
		set_version(buf, PROTO_VERSION_RESUME);
		cr_assert_eq(decode(buf, len, &lim0), first ? 0 : -EPROTONOSUPPORT,
			     "%s in version 5 before HELLO", proto_cmd_name(t));
	}
	/* RESUME, but in the header of a version without it: no first frame either. */
	{
		size_t len = valid_frame(buf, PROTO_CMD_RESUME);

		for (uint16_t v = PROTO_VERSION_MIN; v < PROTO_VERSION_RESUME; v++) {
			set_version(buf, v);
			cr_assert_eq(decode(buf, len, &lim0), -EPROTONOSUPPORT, "version %u", v);
		}
	}
	/* Unknown types too: "anything but HELLO" wins over -ENOSYS. */
	frame(buf, 0, NULL, 0);
	cr_assert_eq(decode(buf, HDR, &lim0), -EPROTONOSUPPORT);
	frame(buf, PROTO_CMD_MAX, NULL, 0);
	cr_assert_eq(decode(buf, HDR, &lim0), -EPROTONOSUPPORT);
	set_version(buf, PROTO_VERSION_RESUME);
	cr_assert_eq(decode(buf, HDR, &lim0), -EPROTONOSUPPORT);
}

Test(proto_decode, hello_after_hello_still_decodes)
{
	/* A second HELLO is well formed: the daemon answers it -EALREADY. */
	size_t len = valid_frame(buf, PROTO_CMD_HELLO);

	cr_assert_eq(decode(buf, len, &lim1), 0);
	set_version(buf, PROTO_VERSION_RESUME);
	cr_assert_eq(decode(buf, len, &lim5), 0);
	/* So is a RESUME on a version-5 session (-EALREADY too). */
	len = valid_frame(buf, PROTO_CMD_RESUME);
	cr_assert_eq(decode(buf, len, &lim5), 0);
}

/* ---- every request type ------------------------------------------------------ */

Test(proto_decode, accepts_every_request_type)
{
	for (uint16_t t = PROTO_CMD_HELLO; t < PROTO_CMD_MAX; t++) {
		const struct proto_limits *lim = lim_for(t);
		size_t len = valid_frame(buf, t);
		struct proto_req req;
		long fb = fixed_body(t);

		memset(&req, 0xcc, sizeof(req));
		cr_assert_eq(proto_decode_request(buf, len, lim, &req), 0, "%s", proto_cmd_name(t));
		cr_assert_eq(req.hdr.magic, PROTO_MAGIC);
		cr_assert_eq(req.hdr.type, t);
		cr_assert_eq(req.hdr.len, len);
		cr_assert_eq(req.hdr.id, FRAME_ID ^ t);
		if (fb >= 0)
			cr_assert_eq(memcmp(&req.u, buf + HDR, (size_t)fb), 0, "%s body",
				     proto_cmd_name(t));
		if (t == PROTO_CMD_BATCH) {
			cr_assert_eq(req.ops, buf + HDR + sizeof(struct proto_batch));
			cr_assert_eq(req.u.batch.count, NOPS);
			cr_assert_eq(req.u.batch.flags, PROTO_BATCH_STOP_ON_ERROR);
		} else {
			cr_assert_null(req.ops, "%s", proto_cmd_name(t));
		}
		if (t == PROTO_CMD_DMA_WRITE) {
			cr_assert_eq(req.data, buf + HDR + sizeof(struct proto_dma));
			cr_assert_eq(req.u.dma.len, 13);
			cr_assert_eq(memcmp(req.data, "hello, device", 13), 0);
		} else {
			cr_assert_null(req.data, "%s", proto_cmd_name(t));
		}
	}
}

Test(proto_decode, decodes_from_an_exactly_sized_heap_buffer)
{
	/* Under ASan or valgrind, any read past the frame is caught here. */
	for (uint16_t t = PROTO_CMD_HELLO; t < PROTO_CMD_MAX; t++) {
		size_t len = valid_frame(buf, t);
		uint8_t *p = malloc(len);

		cr_assert_not_null(p);
		memcpy(p, buf, len);
		cr_assert_eq(proto_frame_len(p, len, PROTO_FRAME_DEFAULT), (int64_t)len);
		cr_assert_eq(decode(p, len, lim_for(t)), 0, "%s", proto_cmd_name(t));
		free(p);
	}
}

Test(proto_decode, unaligned_buffer_offsets)
{
	for (size_t off = 1; off < 8; off++) {
		for (uint16_t t = PROTO_CMD_HELLO; t < PROTO_CMD_MAX; t++) {
			size_t len = valid_frame(buf + off, t);
			struct proto_req req;

			cr_assert_eq(proto_decode_request(buf + off, len, lim_for(t), &req), 0,
				     "%s at +%zu", proto_cmd_name(t), off);
			cr_assert_eq(req.hdr.id, FRAME_ID ^ t);
		}
		/* And the ops of a BATCH read back right from there. */
		{
			struct proto_op ops[NOPS], got;
			struct proto_req req;
			size_t len = valid_frame(buf + off, PROTO_CMD_BATCH);

			valid_ops(ops, NOPS);
			cr_assert_eq(proto_decode_request(buf + off, len, &lim1, &req), 0);
			for (uint32_t i = 0; i < NOPS; i++) {
				proto_op_get(&req, i, &got);
				cr_assert_eq(memcmp(&got, &ops[i], sizeof(got)), 0, "op %u", i);
			}
		}
	}
}

Test(proto_decode, rejects_wrong_length_for_fixed_types)
{
	for (uint16_t t = PROTO_CMD_HELLO; t < PROTO_CMD_MAX; t++) {
		const struct proto_limits *lim = lim_for(t);
		long fb = fixed_body(t);
		size_t len;

		if (fb < 0)
			continue;
		len = valid_frame(buf, t);
		buf[len] = 0;
		set_len(buf, len + 1);
		cr_assert_eq(decode(buf, len + 1, lim), -EBADMSG, "%s + 1", proto_cmd_name(t));
		set_len(buf, len + 8);
		memset(buf + len, 0, 8);
		cr_assert_eq(decode(buf, len + 8, lim), -EBADMSG, "%s + 8", proto_cmd_name(t));
		if (fb == 0)
			continue;
		set_len(buf, len - 1);
		cr_assert_eq(decode(buf, len - 1, lim), -EBADMSG, "%s - 1", proto_cmd_name(t));
		set_len(buf, HDR);
		cr_assert_eq(decode(buf, HDR, lim), -EBADMSG, "%s empty", proto_cmd_name(t));
	}
}

Test(proto_decode, rejects_nonzero_hdr_flags)
{
	static const uint32_t flags[] = { 1, 0x100, 0x80000000u };

	for (uint16_t t = PROTO_CMD_HELLO; t < PROTO_CMD_MAX; t++) {
		const struct proto_limits *lim = lim_for(t);

		for (size_t i = 0; i < sizeof(flags) / sizeof(flags[0]); i++) {
			size_t len = valid_frame(buf, t);

			put32(buf, offsetof(struct proto_hdr, flags), flags[i]);
			cr_assert_eq(decode(buf, len, lim), -EINVAL, "%s flags %#x",
				     proto_cmd_name(t), flags[i]);
		}
	}
}

Test(proto_decode, rejects_nonzero_reserved)
{
	static const struct {
		uint16_t type;
		size_t off;
		unsigned int width;
	} fields[] = {
		{ PROTO_CMD_HELLO, BODY(struct proto_hello, reserved), 4 },
		{ PROTO_CMD_DEV_CLOSE, BODY(struct proto_dev_ref, reserved), 4 },
		{ PROTO_CMD_DEV_STATS, BODY(struct proto_dev_ref, reserved), 4 },
		{ PROTO_CMD_MEM_FREE, BODY(struct proto_mem_ref, reserved), 4 },
		{ PROTO_CMD_IOVA_ALLOC, BODY(struct proto_iova_alloc, reserved), 4 },
		{ PROTO_CMD_LIST_DEVICES, BODY(struct proto_list, reserved), 4 },
		{ PROTO_CMD_LIST_CLIENTS, BODY(struct proto_list, reserved), 4 },
		{ PROTO_CMD_CLIENT_MAPS, BODY(struct proto_list, reserved), 4 },
		/* session_id is meaningful for CLIENT_MAPS only */
		{ PROTO_CMD_LIST_DEVICES, BODY(struct proto_list, session_id), 8 },
		{ PROTO_CMD_LIST_CLIENTS, BODY(struct proto_list, session_id), 8 },
		{ PROTO_CMD_BATCH, BODY(struct proto_batch, flags), 4 },
		/* version 2 */
		{ PROTO_CMD_LIST_ODP, BODY(struct proto_list, reserved), 4 },
		{ PROTO_CMD_ODP_DEREG, BODY(struct proto_odp_ref, flags), 4 },
		{ PROTO_CMD_ODP_ADVISE, BODY(struct proto_odp_range, reserved), 4 },
		{ PROTO_CMD_ODP_INVALIDATE, BODY(struct proto_odp_range, reserved), 4 },
		{ PROTO_CMD_ODP_INVALIDATE, BODY(struct proto_odp_range, advice), 4 },
		{ PROTO_CMD_ODP_INVALIDATE, BODY(struct proto_odp_range, flags), 4 },
		{ PROTO_CMD_MEM_DISCARD, BODY(struct proto_mem_range, reserved), 4 },
		{ PROTO_CMD_FAULT_DONE, BODY(struct proto_fault_done, reserved), 4 },
		/* version 3 */
		{ PROTO_CMD_IOVA_RKEY, BODY(struct proto_iova_rkey, reserved), 4 },
		/* version 4 */
		{ PROTO_CMD_RING_SETUP, BODY(struct proto_ring_setup, flags), 4 },
		{ PROTO_CMD_RING_SETUP, BODY(struct proto_ring_setup, reserved), 4 },
		/* version 5 */
		{ PROTO_CMD_RESUME, BODY(struct proto_resume, hello.reserved), 4 },
	};

	for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
		uint16_t t = fields[i].type;
		const struct proto_limits *lim = lim_for(t);

		for (unsigned int byte = 0; byte < fields[i].width; byte++) {
			size_t len = valid_frame(buf, t);

			cr_assert_eq(decode(buf, len, lim), 0);
			/* BATCH flags: only the STOP_ON_ERROR bit is defined. */
			buf[fields[i].off + byte] |= t == PROTO_CMD_BATCH ? 0x02 : 0x01;
			cr_assert_eq(decode(buf, len, lim), -EINVAL, "%s field at %zu byte %u",
				     proto_cmd_name(t), fields[i].off, byte);
		}
	}
}

Test(proto_decode, batch_flags)
{
	struct proto_op ops[2];
	size_t len;

	valid_ops(ops, 2);
	len = batch_frame(buf, 2, 2, 0, ops);
	cr_assert_eq(decode(buf, len, &lim1), 0);
	len = batch_frame(buf, 2, 2, PROTO_BATCH_STOP_ON_ERROR, ops);
	cr_assert_eq(decode(buf, len, &lim1), 0);
	len = batch_frame(buf, 2, 2, PROTO_BATCH_STOP_ON_ERROR | 0x80000000u, ops);
	cr_assert_eq(decode(buf, len, &lim1), -EINVAL);
}

/* ---- field ranges -------------------------------------------------------------- */

Test(proto_decode, hello_ranges)
{
	static const struct {
		struct proto_hello h;
		int want;
	} cases[] = {
		{ { 1, 1, PROTO_FRAME_MIN, 1, 0 }, 0 },
		{ { 0, 1, PROTO_FRAME_MAX, PROTO_BATCH_MAX, 0 }, 0 },
		{ { 1, 0xffff, UINT32_MAX, UINT32_MAX, 0 }, 0 }, /* the daemon takes the min */
		{ { 2, 1, PROTO_FRAME_DEFAULT, 1, 0 }, -EPROTONOSUPPORT }, /* min > max */
		{ { 0, 0, PROTO_FRAME_DEFAULT, 1, 0 }, -EPROTONOSUPPORT }, /* below ours */
		{ { PROTO_VERSION_MAX + 1, 9, PROTO_FRAME_DEFAULT, 1, 0 }, -EPROTONOSUPPORT },
		/* Version 2: offered alone, or with 1 (the daemon picks the highest). */
		{ { 1, 2, PROTO_FRAME_DEFAULT, 1, 0 }, 0 },
		{ { 2, 2, PROTO_FRAME_DEFAULT, 1, 0 }, 0 },
		{ { 2, 0xffff, PROTO_FRAME_DEFAULT, 1, 0 }, 0 },
		{ { 3, 2, PROTO_FRAME_DEFAULT, 1, 0 }, -EPROTONOSUPPORT }, /* min > max */
		/* Version 3. */
		{ { 3, 3, PROTO_FRAME_DEFAULT, 1, 0 }, 0 },
		{ { 1, 3, PROTO_FRAME_DEFAULT, 1, 0 }, 0 },
		{ { 4, 3, PROTO_FRAME_DEFAULT, 1, 0 }, -EPROTONOSUPPORT }, /* min > max */
		/* Version 4. */
		{ { 4, 4, PROTO_FRAME_DEFAULT, 1, 0 }, 0 },
		{ { 1, 4, PROTO_FRAME_DEFAULT, 1, 0 }, 0 },
		{ { 5, 4, PROTO_FRAME_DEFAULT, 1, 0 }, -EPROTONOSUPPORT }, /* min > max */
		/* Versions 5 and 6, and nothing above them. */
		{ { 5, 5, PROTO_FRAME_DEFAULT, 1, 0 }, 0 },
		{ { 1, 5, PROTO_FRAME_DEFAULT, 1, 0 }, 0 },
		{ { 5, 0xffff, PROTO_FRAME_DEFAULT, 1, 0 }, 0 },
		{ { 6, 6, PROTO_FRAME_DEFAULT, 1, 0 }, 0 },
		{ { 1, 6, PROTO_FRAME_DEFAULT, 1, 0 }, 0 },
		{ { 6, 0xffff, PROTO_FRAME_DEFAULT, 1, 0 }, 0 },
		{ { 7, 7, PROTO_FRAME_DEFAULT, 1, 0 }, -EPROTONOSUPPORT },
		{ { 7, 0xffff, PROTO_FRAME_DEFAULT, 1, 0 }, -EPROTONOSUPPORT },
		{ { 7, 6, PROTO_FRAME_DEFAULT, 1, 0 }, -EPROTONOSUPPORT }, /* min > max */
		{ { 1, 1, PROTO_FRAME_MIN - 1, 1, 0 }, -EINVAL },
		{ { 1, 1, 0, 1, 0 }, -EINVAL },
		{ { 1, 1, PROTO_FRAME_DEFAULT, 0, 0 }, -EINVAL },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		size_t len = frame(buf, PROTO_CMD_HELLO, &cases[i].h, sizeof(cases[i].h));

		cr_assert_eq(decode(buf, len, &lim0), cases[i].want, "case %zu", i);
	}
}

Test(proto_decode, dev_open_names)
{
	struct proto_dev_open d;
	size_t len;

	/* 31 characters and the NUL: the longest name. */
	memset(&d, 0, sizeof(d));
	memset(d.name, 'a', PROTO_DEV_NAME_MAX - 1);
	len = frame(buf, PROTO_CMD_DEV_OPEN, &d, sizeof(d));
	cr_assert_eq(decode(buf, len, &lim1), 0);
	/* Not NUL-terminated. */
	memset(d.name, 'a', PROTO_DEV_NAME_MAX);
	len = frame(buf, PROTO_CMD_DEV_OPEN, &d, sizeof(d));
	cr_assert_eq(decode(buf, len, &lim1), -EINVAL);
	/* Empty. */
	memset(&d, 0, sizeof(d));
	len = frame(buf, PROTO_CMD_DEV_OPEN, &d, sizeof(d));
	cr_assert_eq(decode(buf, len, &lim1), -EINVAL);
	/* Garbage after the NUL, right after it and in the last byte. */
	strcpy(d.name, "rxe0");
	d.name[5] = 'x';
	len = frame(buf, PROTO_CMD_DEV_OPEN, &d, sizeof(d));
	cr_assert_eq(decode(buf, len, &lim1), -EINVAL);
	d.name[5] = 0;
	d.name[PROTO_DEV_NAME_MAX - 1] = 1;
	len = frame(buf, PROTO_CMD_DEV_OPEN, &d, sizeof(d));
	cr_assert_eq(decode(buf, len, &lim1), -EINVAL);
	/* Empty, with garbage behind the leading NUL. */
	memset(&d, 0, sizeof(d));
	d.name[1] = 'x';
	len = frame(buf, PROTO_CMD_DEV_OPEN, &d, sizeof(d));
	cr_assert_eq(decode(buf, len, &lim1), -EINVAL);
}

Test(proto_decode, mem_import_ranges)
{
	static const struct {
		struct proto_mem_import m;
		int want;
	} cases[] = {
		{ { 0, 1 }, 0 },
		{ { 0, 0 }, -EINVAL },
		{ { 0x1000, 0 }, -EINVAL },
		{ { UINT64_MAX - 0x1000, 0x1000 }, 0 },	     /* ends at 2^64 - 1 */
		{ { UINT64_MAX - 0xfff, 0x1000 }, -EINVAL }, /* wraps to 0 */
		{ { 0x1000, UINT64_MAX }, -EINVAL },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		size_t len = frame(buf, PROTO_CMD_MEM_IMPORT, &cases[i].m, sizeof(cases[i].m));

		cr_assert_eq(decode(buf, len, &lim1), cases[i].want, "case %zu", i);
	}
}

/* ---- BATCH -------------------------------------------------------------------------- */

Test(proto_decode, batch_count_zero)
{
	size_t len = batch_frame(buf, 0, 0, 0, NULL);

	cr_assert_eq(decode(buf, len, &lim1), -EBADMSG);
}

Test(proto_decode, batch_count_above_max_batch)
{
	static struct proto_op ops[PROTO_BATCH_DEFAULT + 1];
	size_t len;

	valid_ops(ops, PROTO_BATCH_DEFAULT + 1);
	len = batch_frame(buf, PROTO_BATCH_DEFAULT, PROTO_BATCH_DEFAULT, 0, ops);
	cr_assert_eq(decode(buf, len, &lim1), 0);
	/* One more, with the length to match: over the negotiated limit. */
	len = batch_frame(buf, PROTO_BATCH_DEFAULT + 1, PROTO_BATCH_DEFAULT + 1, 0, ops);
	cr_assert_eq(decode(buf, len, &lim1), -EBADMSG);
	/* The tight negotiation: 4 ops. */
	len = batch_frame(buf, 4, 4, 0, ops);
	cr_assert_eq(decode(buf, len, &lim_tight), 0);
	len = batch_frame(buf, 5, 5, 0, ops);
	cr_assert_eq(decode(buf, len, &lim_tight), -EBADMSG);
}

Test(proto_decode, batch_count_above_hard_cap)
{
	/* Even if a caller's limits allow more, PROTO_BATCH_MAX caps a batch. */
	static struct proto_op ops[PROTO_BATCH_MAX + 1];
	struct proto_limits lim = { 1, PROTO_FRAME_MAX, UINT32_MAX };
	size_t len;

	valid_ops(ops, PROTO_BATCH_MAX + 1);
	len = batch_frame(buf, PROTO_BATCH_MAX, PROTO_BATCH_MAX, 0, ops);
	cr_assert_eq(decode(buf, len, &lim), 0);
	len = batch_frame(buf, PROTO_BATCH_MAX + 1, PROTO_BATCH_MAX + 1, 0, ops);
	cr_assert_eq(decode(buf, len, &lim), -EBADMSG);
	len = batch_frame(buf, UINT32_MAX, 2, 0, ops);
	cr_assert_eq(decode(buf, len, &lim), -EBADMSG);
}

Test(proto_decode, batch_length_mismatch)
{
	struct proto_op ops[4];
	size_t len;

	valid_ops(ops, 4);
	len = batch_frame(buf, 3, 3, 0, ops);
	cr_assert_eq(decode(buf, len, &lim1), 0);
	len = batch_frame(buf, 3, 2, 0, ops);
	cr_assert_eq(decode(buf, len, &lim1), -EBADMSG);
	len = batch_frame(buf, 3, 4, 0, ops);
	cr_assert_eq(decode(buf, len, &lim1), -EBADMSG);
	/* One byte short or long of whole ops. */
	len = batch_frame(buf, 3, 3, 0, ops);
	set_len(buf, len - 1);
	cr_assert_eq(decode(buf, len - 1, &lim1), -EBADMSG);
	buf[len] = 0;
	set_len(buf, len + 1);
	cr_assert_eq(decode(buf, len + 1, &lim1), -EBADMSG);
	/* Too short for even the batch header. */
	frame(buf, PROTO_CMD_BATCH, "\1\0\0\0", 4);
	cr_assert_eq(decode(buf, HDR + 4, &lim1), -EBADMSG);
	frame(buf, PROTO_CMD_BATCH, NULL, 0);
	cr_assert_eq(decode(buf, HDR, &lim1), -EBADMSG);
}

Test(proto_decode, batch_accepts_every_valid_op)
{
	static const uint64_t attrs[] = { 0, 1u << 5, 1u << 10, 1u << 11, PROTO_ATTRS };
	struct proto_op ops[3];

	valid_ops(ops, 3);
	for (uint16_t oc = 1; oc < PROTO_OP_MAX; oc++) {
		for (uint8_t dir = 0; dir <= PROTO_DIR_MAX; dir++) {
			for (size_t a = 0; a < sizeof(attrs) / sizeof(attrs[0]); a++) {
				size_t len;

				ops[1] = mkop(oc, dir, attrs[a]);
				len = batch_frame(buf, 3, 3, 0, ops);
				cr_assert_eq(decode(buf, len, &lim1), 0, "op %u dir %u attrs %#lx",
					     oc, dir, (unsigned long)attrs[a]);
			}
		}
	}
}

Test(proto_decode, batch_bad_op_in_the_middle)
{
	struct proto_op bad[12];
	struct proto_op ops[5];
	size_t nbad = 0;

	bad[nbad++] = mkop(0, 0, 0);
	bad[nbad++] = mkop(PROTO_OP_MAX, 0, 0);
	bad[nbad++] = mkop(0xffff, 0, 0);
	bad[nbad++] = mkop(PROTO_OP_LINK, PROTO_DIR_MAX + 1, 0);
	bad[nbad++] = mkop(PROTO_OP_LINK, 0xff, 0);
	bad[nbad] = mkop(PROTO_OP_SYNC, 0, 0);
	bad[nbad++].reserved = 1;
	bad[nbad] = mkop(PROTO_OP_SYNC, 0, 0);
	bad[nbad++].reserved = 0x80;
	bad[nbad++] = mkop(PROTO_OP_MAP, 1, 1);			/* attrs bit 0 */
	bad[nbad++] = mkop(PROTO_OP_MAP, 1, 1u << 6);		/* next to a known bit */
	bad[nbad++] = mkop(PROTO_OP_MAP, 1, UINT64_C(1) << 63); /* above 32 bits */
	bad[nbad++] = mkop(PROTO_OP_UNMAP, 2, PROTO_ATTRS | (1u << 12));
	cr_assert_leq(nbad, sizeof(bad) / sizeof(bad[0]));

	for (size_t i = 0; i < nbad; i++) {
		for (uint32_t pos = 0; pos < 5; pos++) {
			size_t len;

			valid_ops(ops, 5);
			len = batch_frame(buf, 5, 5, PROTO_BATCH_STOP_ON_ERROR, ops);
			cr_assert_eq(decode(buf, len, &lim1), 0);
			ops[pos] = bad[i];
			len = batch_frame(buf, 5, 5, PROTO_BATCH_STOP_ON_ERROR, ops);
			cr_assert_eq(decode(buf, len, &lim1), -EINVAL, "bad op %zu at %u", i, pos);
		}
	}
}

Test(proto_decode, op_get_reads_each_op)
{
	struct proto_op ops[NOPS], got;
	struct proto_req req;
	size_t len;

	valid_ops(ops, NOPS);
	for (uint32_t i = 0; i < NOPS; i++)
		ops[i].size = 0x1000 * (i + 1);
	len = batch_frame(buf, NOPS, NOPS, 0, ops);
	cr_assert_eq(proto_decode_request(buf, len, &lim1, &req), 0);
	for (uint32_t i = 0; i < NOPS; i++) {
		proto_op_get(&req, i, &got);
		cr_assert_eq(got.opcode, ops[i].opcode);
		cr_assert_eq(got.size, 0x1000 * (i + 1));
		cr_assert_eq(memcmp(&got, &ops[i], sizeof(got)), 0, "op %u", i);
	}
}

/* ---- DMA_READ / DMA_WRITE ----------------------------------------------------------- */

Test(proto_decode, dma_write_length)
{
	struct proto_dma d = { .dev = 1, .len = 8, .iova = 0x1000 };
	size_t len = frame(buf, PROTO_CMD_DMA_WRITE, &d, sizeof(d));

	memset(buf + len, 0x5a, 16);
	set_len(buf, len + 8);
	cr_assert_eq(decode(buf, len + 8, &lim1), 0);
	set_len(buf, len + 7);
	cr_assert_eq(decode(buf, len + 7, &lim1), -EBADMSG);
	set_len(buf, len + 9);
	cr_assert_eq(decode(buf, len + 9, &lim1), -EBADMSG);
	set_len(buf, len);
	cr_assert_eq(decode(buf, len, &lim1), -EBADMSG);
	/* A length that would wrap a 32-bit sum. */
	put32(buf, BODY(struct proto_dma, len), UINT32_MAX);
	set_len(buf, len + 8);
	cr_assert_eq(decode(buf, len + 8, &lim1), -EBADMSG);
	/* Too short for the dma header. */
	set_len(buf, HDR + sizeof(d) - 1);
	cr_assert_eq(decode(buf, HDR + sizeof(d) - 1, &lim1), -EBADMSG);
}

Test(proto_decode, dma_write_len_zero)
{
	struct proto_dma d = { .dev = 1, .len = 0, .iova = 0x1000 };
	size_t len = frame(buf, PROTO_CMD_DMA_WRITE, &d, sizeof(d));

	cr_assert_eq(decode(buf, len, &lim1), -EINVAL);
}

Test(proto_decode, dma_write_fills_the_frame)
{
	uint32_t room = PROTO_FRAME_DEFAULT - (uint32_t)(HDR + sizeof(struct proto_dma));
	struct proto_dma d = { .dev = 1, .len = room, .iova = 0x1000 };
	size_t len = frame(buf, PROTO_CMD_DMA_WRITE, &d, sizeof(d));

	set_len(buf, len + room);
	cr_assert_eq(decode(buf, len + room, &lim1), 0);
}

Test(proto_decode, dma_read_len_bounds)
{
	static const struct proto_limits *lims[] = { &lim1, &lim_tight };

	for (size_t i = 0; i < 2; i++) {
		uint32_t room = lims[i]->max_frame - (uint32_t)(HDR + sizeof(struct proto_dma_rpy));
		struct proto_dma d = { .dev = 1, .len = room, .iova = 0x1000 };
		size_t len = frame(buf, PROTO_CMD_DMA_READ, &d, sizeof(d));

		/* The reply, header and data, must fit in max_frame. */
		cr_assert_eq(decode(buf, len, lims[i]), 0, "max_frame %u", lims[i]->max_frame);
		put32(buf, BODY(struct proto_dma, len), room + 1);
		cr_assert_eq(decode(buf, len, lims[i]), -EINVAL);
		put32(buf, BODY(struct proto_dma, len), UINT32_MAX);
		cr_assert_eq(decode(buf, len, lims[i]), -EINVAL);
		put32(buf, BODY(struct proto_dma, len), 0);
		cr_assert_eq(decode(buf, len, lims[i]), -EINVAL);
		put32(buf, BODY(struct proto_dma, len), 1);
		cr_assert_eq(decode(buf, len, lims[i]), 0);
	}
}

/* ---- version 2: on-demand paging ------------------------------------------------------------ */

Test(proto_v2, v1_session_does_not_know_v2_types)
{
	for (uint16_t t = V2_FIRST; t < V3_FIRST; t++) {
		size_t len = valid_frame(buf, t);

		cr_assert_eq(decode(buf, len, &lim2), 0, "%s", proto_cmd_name(t));
		/* The same frame from a client that negotiated version 1. */
		set_version(buf, 1);
		cr_assert_eq(decode(buf, len, &lim1), -ENOSYS, "%s on version 1",
			     proto_cmd_name(t));
		cr_assert_eq(decode(buf, len, &lim_tight), -ENOSYS, "%s", proto_cmd_name(t));
		/* Like any unknown type: judged before its length and its reserved fields. */
		put32(buf, offsetof(struct proto_hdr, flags), 1);
		cr_assert_eq(decode(buf, len, &lim1), -ENOSYS, "%s flags", proto_cmd_name(t));
		buf[len] = 0;
		set_len(buf, len + 1);
		cr_assert_eq(decode(buf, len + 1, &lim1), -ENOSYS, "%s + 1", proto_cmd_name(t));
		set_len(buf, HDR);
		cr_assert_eq(decode(buf, HDR, &lim1), -ENOSYS, "%s empty", proto_cmd_name(t));
		/* And before HELLO it is anything but HELLO, in either version. */
		len = valid_frame(buf, t);
		cr_assert_eq(decode(buf, len, &lim0), -EPROTONOSUPPORT, "%s", proto_cmd_name(t));
		set_version(buf, 1);
		cr_assert_eq(decode(buf, len, &lim0), -EPROTONOSUPPORT, "%s", proto_cmd_name(t));
	}
}

Test(proto_v2, v2_session_takes_every_v1_type)
{
	for (uint16_t t = PROTO_CMD_HELLO; t < V2_FIRST; t++) {
		size_t len = valid_frame(buf, t);
		struct proto_req req;
		long fb = fixed_body(t);

		set_version(buf, PROTO_VERSION_ODP);
		memset(&req, 0xcc, sizeof(req));
		cr_assert_eq(proto_decode_request(buf, len, &lim2, &req), 0, "%s",
			     proto_cmd_name(t));
		cr_assert_eq(req.hdr.version, PROTO_VERSION_ODP);
		cr_assert_eq(req.hdr.id, FRAME_ID ^ t);
		if (fb >= 0)
			cr_assert_eq(memcmp(&req.u, buf + HDR, (size_t)fb), 0, "%s body",
				     proto_cmd_name(t));
		/* A version-1 frame is no longer right on that session. */
		set_version(buf, 1);
		cr_assert_eq(decode(buf, len, &lim2), -EPROTONOSUPPORT, "%s", proto_cmd_name(t));
	}
	/* The negotiated limits still hold: 4 ops per BATCH in the tight one. */
	{
		struct proto_op ops[5];
		size_t len;

		valid_ops(ops, 5);
		len = batch_frame(buf, 4, 4, 0, ops);
		set_version(buf, PROTO_VERSION_ODP);
		cr_assert_eq(decode(buf, len, &lim2_tight), 0);
		len = batch_frame(buf, 5, 5, 0, ops);
		set_version(buf, PROTO_VERSION_ODP);
		cr_assert_eq(decode(buf, len, &lim2_tight), -EBADMSG);
	}
}

Test(proto_v2, valid_frames_decode_with_their_fields)
{
	struct proto_req req;
	size_t len;

#define DECODE_V2(t)                                                               \
	do {                                                                       \
		len = valid_frame(buf, (t));                                       \
		memset(&req, 0xcc, sizeof(req));                                   \
		cr_assert_eq(proto_decode_request(buf, len, &lim2, &req), 0, "%s", \
			     proto_cmd_name(t));                                   \
		cr_assert_eq(req.hdr.type, (t));                                   \
		cr_assert_eq(req.hdr.version, PROTO_VERSION_ODP);                  \
		cr_assert_eq(req.hdr.id, FRAME_ID ^ (t));                          \
		cr_assert_null(req.ops);                                           \
		cr_assert_null(req.data);                                          \
	} while (0)

	DECODE_V2(PROTO_CMD_ODP_REG);
	cr_assert_eq(req.u.odp_reg.dev, 1);
	cr_assert_eq(req.u.odp_reg.mem, 2);
	cr_assert_eq(req.u.odp_reg.offset, 0x2000);
	cr_assert_eq(req.u.odp_reg.len, 0x10000);
	cr_assert_eq(req.u.odp_reg.access, PROTO_ODP_ACCESS);
	cr_assert_eq(req.u.odp_reg.flags, PROTO_ODP_USER_FAULTS);

	DECODE_V2(PROTO_CMD_ODP_DEREG);
	cr_assert_eq(req.u.odp_ref.odp, 5);
	cr_assert_eq(req.u.odp_ref.flags, 0);

	DECODE_V2(PROTO_CMD_ODP_STATS);
	cr_assert_eq(req.u.odp_ref.odp, 5);
	cr_assert_eq(req.u.odp_ref.flags, 0);

	DECODE_V2(PROTO_CMD_ODP_ADVISE);
	cr_assert_eq(req.u.odp_range.odp, 5);
	cr_assert_eq(req.u.odp_range.advice, PROTO_ADVISE_PREFETCH_WRITE);
	cr_assert_eq(req.u.odp_range.flags, PROTO_ADVISE_FLAG_FLUSH);
	cr_assert_eq(req.u.odp_range.reserved, 0);
	cr_assert_eq(req.u.odp_range.offset, 0x1000);
	cr_assert_eq(req.u.odp_range.len, 0x3000);

	DECODE_V2(PROTO_CMD_ODP_INVALIDATE);
	cr_assert_eq(req.u.odp_range.odp, 5);
	cr_assert_eq(req.u.odp_range.advice, 0);
	cr_assert_eq(req.u.odp_range.flags, 0);
	cr_assert_eq(req.u.odp_range.offset, 0x1000);
	cr_assert_eq(req.u.odp_range.len, 0x1000);

	DECODE_V2(PROTO_CMD_MEM_DISCARD);
	cr_assert_eq(req.u.mem_range.mem, 2);
	cr_assert_eq(req.u.mem_range.reserved, 0);
	cr_assert_eq(req.u.mem_range.offset, 0x4000);
	cr_assert_eq(req.u.mem_range.len, 0x2000);

	DECODE_V2(PROTO_CMD_FAULT_DONE);
	cr_assert_eq(req.u.fault_done.fault_id, UINT64_C(0x123456789a));
	cr_assert_eq(req.u.fault_done.status, -EIO);
	cr_assert_eq(req.u.fault_done.reserved, 0);

	DECODE_V2(PROTO_CMD_LIST_ODP);
	cr_assert_eq(req.u.list.session_id, 42);
	cr_assert_eq(req.u.list.start, 3);
#undef DECODE_V2
}

Test(proto_v2, exact_length)
{
	for (uint16_t t = V2_FIRST; t < V3_FIRST; t++) {
		size_t len = valid_frame(buf, t);

		cr_assert_eq(decode(buf, len, &lim2), 0, "%s", proto_cmd_name(t));
		set_len(buf, len - 1);
		cr_assert_eq(decode(buf, len - 1, &lim2), -EBADMSG, "%s - 1", proto_cmd_name(t));
		buf[len] = 0;
		set_len(buf, len + 1);
		cr_assert_eq(decode(buf, len + 1, &lim2), -EBADMSG, "%s + 1", proto_cmd_name(t));
		/* hdr.len must agree with the bytes, before the type's length is judged. */
		set_len(buf, len);
		cr_assert_eq(decode(buf, len + 1, &lim2), -EMSGSIZE, "%s", proto_cmd_name(t));
		cr_assert_eq(decode(buf, len - 1, &lim2), -EMSGSIZE, "%s", proto_cmd_name(t));
	}
}

static int decode_body(uint16_t type, const void *body, size_t blen)
{
	size_t len = frame(buf, type, body, blen);

	return decode(buf, len, &lim2);
}

Test(proto_v2, odp_reg_rules)
{
	const uint32_t acc = PROTO_ODP_ACCESS, imp = PROTO_ODP_IMPLICIT;
	const uint32_t uf = PROTO_ODP_USER_FAULTS;
	const struct {
		struct proto_odp_reg o;
		int want;
	} cases[] = {
		/* explicit: dev, mem, offset, len, access, flags */
		{ { 1, 2, 0, 0x1000, acc, 0 }, 0 },
		{ { 1, 2, 0, 0x1000, PROTO_ODP_ACCESS_DEVICE_READ, uf }, 0 },
		{ { 0, 2, 0, 0x1000, acc, 0 }, -EINVAL },		   /* no device */
		{ { 1, 0, 0, 0x1000, acc, 0 }, -EINVAL },		   /* no memory object */
		{ { 1, 2, 0x1000, 0, acc, 0 }, -EINVAL },		   /* empty */
		{ { 1, 2, UINT64_MAX - 0x1000, 0x1000, acc, 0 }, 0 },	   /* ends at 2^64 - 1 */
		{ { 1, 2, UINT64_MAX - 0xfff, 0x1000, acc, 0 }, -EINVAL }, /* wraps to 0 */
		{ { 1, 2, 1, UINT64_MAX, acc, 0 }, -EINVAL },
		/* unknown rights and flags */
		{ { 1, 2, 0, 0x1000, 0x8, 0 }, -EINVAL },
		{ { 1, 2, 0, 0x1000, acc | 0x80000000u, 0 }, -EINVAL },
		{ { 1, 2, 0, 0x1000, acc, 0x4 }, -EINVAL },
		{ { 1, 2, 0, 0x1000, acc, uf | 0x80000000u }, -EINVAL },
		/* implicit: no object, no offset, len 0 (the default) or the size wanted */
		{ { 1, 0, 0, 0, acc, imp }, 0 },
		{ { 1, 0, 0, UINT64_C(1) << 40, acc, imp | uf }, 0 },
		{ { 1, 0, 0, UINT64_MAX, acc, imp }, 0 },
		{ { 1, 2, 0, 0, acc, imp }, -EINVAL },
		{ { 1, 0, 0x1000, 0, acc, imp }, -EINVAL },
		{ { 0, 0, 0, 0, acc, imp }, -EINVAL },
		{ { 1, 0, 0, 0, acc, imp | 0x4 }, -EINVAL },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		cr_assert_eq(decode_body(PROTO_CMD_ODP_REG, &cases[i].o, sizeof(cases[i].o)),
			     cases[i].want, "case %zu", i);
}

Test(proto_v2, odp_dereg_and_stats_rules)
{
	static const struct {
		uint16_t type;
		struct proto_odp_ref o;
		int want;
	} cases[] = {
		{ PROTO_CMD_ODP_DEREG, { 5, 0 }, 0 },
		{ PROTO_CMD_ODP_DEREG, { UINT32_MAX, 0 }, 0 },
		{ PROTO_CMD_ODP_DEREG, { 0, 0 }, -EINVAL },
		{ PROTO_CMD_ODP_DEREG, { 5, 1 }, -EINVAL },
		{ PROTO_CMD_ODP_DEREG, { 5, 0x80000000u }, -EINVAL },
		/* STATS: a region, the client's totals (odp 0), or the daemon's */
		{ PROTO_CMD_ODP_STATS, { 5, 0 }, 0 },
		{ PROTO_CMD_ODP_STATS, { 0, 0 }, 0 },
		{ PROTO_CMD_ODP_STATS, { 0, PROTO_ODP_STATS_DAEMON }, 0 },
		{ PROTO_CMD_ODP_STATS, { 5, PROTO_ODP_STATS_DAEMON }, -EINVAL },
		{ PROTO_CMD_ODP_STATS, { 0, 0x2 }, -EINVAL },
		{ PROTO_CMD_ODP_STATS, { 0, PROTO_ODP_STATS_DAEMON | 0x80000000u }, -EINVAL },
		{ PROTO_CMD_ODP_STATS, { 5, 0x80000000u }, -EINVAL },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		cr_assert_eq(decode_body(cases[i].type, &cases[i].o, sizeof(cases[i].o)),
			     cases[i].want, "case %zu", i);
}

Test(proto_v2, odp_advise_and_invalidate_rules)
{
	const uint16_t adv = PROTO_CMD_ODP_ADVISE, inv = PROTO_CMD_ODP_INVALIDATE;
	const uint32_t flush = PROTO_ADVISE_FLAG_FLUSH;
	const struct {
		uint16_t type;
		struct proto_odp_range o; /* odp, advice, flags, reserved, offset, len */
		int want;
	} cases[] = {
		{ adv, { 5, PROTO_ADVISE_PREFETCH, 0, 0, 0, 0x1000 }, 0 },
		{ adv, { 5, PROTO_ADVISE_PREFETCH_WRITE, flush, 0, 0x1000, 0x1000 }, 0 },
		{ adv, { 5, PROTO_ADVISE_PREFETCH_NO_FAULT, 0, 0, 0, 0x1000 }, 0 },
		{ adv, { 5, PROTO_ADVISE_MAX + 1, 0, 0, 0, 0x1000 }, -EINVAL },
		{ adv, { 5, UINT32_MAX, 0, 0, 0, 0x1000 }, -EINVAL },
		{ adv, { 5, 0, 0x2, 0, 0, 0x1000 }, -EINVAL },
		{ adv, { 5, 0, flush | 0x80000000u, 0, 0, 0x1000 }, -EINVAL },
		{ adv, { 5, 0, 0, 1, 0, 0x1000 }, -EINVAL },
		{ adv, { 0, 0, 0, 0, 0, 0x1000 }, -EINVAL },
		{ adv, { 5, 0, 0, 0, 0x1000, 0 }, -EINVAL },
		{ adv, { 5, 0, 0, 0, UINT64_MAX - 0x1000, 0x1000 }, 0 },
		{ adv, { 5, 0, 0, 0, UINT64_MAX - 0xfff, 0x1000 }, -EINVAL },
		/* INVALIDATE: no advice, no flags */
		{ inv, { 5, 0, 0, 0, 0, 0x1000 }, 0 },
		{ inv, { 5, 0, 0, 0, UINT64_MAX - 0x1000, 0x1000 }, 0 },
		{ inv, { 5, PROTO_ADVISE_PREFETCH_WRITE, 0, 0, 0, 0x1000 }, -EINVAL },
		{ inv, { 5, 0, flush, 0, 0, 0x1000 }, -EINVAL },
		{ inv, { 5, 0, 0, 0x100, 0, 0x1000 }, -EINVAL },
		{ inv, { 0, 0, 0, 0, 0, 0x1000 }, -EINVAL },
		{ inv, { 5, 0, 0, 0, 0, 0 }, -EINVAL },
		{ inv, { 5, 0, 0, 0, 1, UINT64_MAX }, -EINVAL },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		cr_assert_eq(decode_body(cases[i].type, &cases[i].o, sizeof(cases[i].o)),
			     cases[i].want, "case %zu (%s)", i, proto_cmd_name(cases[i].type));
}

Test(proto_v2, mem_discard_rules)
{
	static const struct {
		struct proto_mem_range m; /* mem, reserved, offset, len */
		int want;
	} cases[] = {
		{ { 2, 0, 0, 0x1000 }, 0 },
		{ { UINT32_MAX, 0, 0x10000, 0x4000 }, 0 },
		{ { 2, 0, UINT64_MAX - 0x1000, 0x1000 }, 0 },
		{ { 0, 0, 0, 0x1000 }, -EINVAL },
		{ { 2, 1, 0, 0x1000 }, -EINVAL },
		{ { 2, 0x80000000u, 0, 0x1000 }, -EINVAL },
		{ { 2, 0, 0x1000, 0 }, -EINVAL },
		{ { 2, 0, UINT64_MAX - 0xfff, 0x1000 }, -EINVAL },
		{ { 2, 0, 0x1000, UINT64_MAX }, -EINVAL },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		cr_assert_eq(decode_body(PROTO_CMD_MEM_DISCARD, &cases[i].m, sizeof(cases[i].m)),
			     cases[i].want, "case %zu", i);
}

Test(proto_v2, fault_done_rules)
{
	static const struct {
		struct proto_fault_done f; /* fault_id, status, reserved */
		int want;
	} cases[] = {
		{ { 1, 0, 0 }, 0 },
		{ { 0, 0, 0 }, 0 }, /* any id: an unknown one is the daemon's -ENOENT */
		{ { UINT64_MAX, -EFAULT, 0 }, 0 },
		{ { 7, -1, 0 }, 0 },
		{ { 7, -4095, 0 }, 0 },
		{ { 7, -4096, 0 }, -EINVAL },
		{ { 7, INT32_MIN, 0 }, -EINVAL },
		{ { 7, 1, 0 }, -EINVAL },
		{ { 7, INT32_MAX, 0 }, -EINVAL },
		{ { 7, 0, 1 }, -EINVAL },
		{ { 7, 0, 0x80000000u }, -EINVAL },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		cr_assert_eq(decode_body(PROTO_CMD_FAULT_DONE, &cases[i].f, sizeof(cases[i].f)),
			     cases[i].want, "case %zu", i);
}

Test(proto_v2, list_odp_rules)
{
	static const struct {
		struct proto_list l; /* session_id, start, reserved */
		int want;
	} cases[] = {
		{ { 0, 0, 0 }, 0 },  /* every session's regions */
		{ { 42, 0, 0 }, 0 }, /* one session's */
		{ { UINT64_MAX, UINT32_MAX, 0 }, 0 },
		{ { 0, 0, 1 }, -EINVAL },
		{ { 42, 3, 0x80000000u }, -EINVAL },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		cr_assert_eq(decode_body(PROTO_CMD_LIST_ODP, &cases[i].l, sizeof(cases[i].l)),
			     cases[i].want, "case %zu", i);
}

/* ---- proto_decode_event ------------------------------------------------------------------- */

#define EVT_LEN (HDR + sizeof(struct proto_evt_fault))

static const struct proto_evt_fault evt_ok = {
	.fault_id = UINT64_C(0xfeedface01),
	.odp = 3,
	.access = 2,
	.offset = 0x200000,
	.len = 0x10000,
	.iova = UINT64_C(0x7f0000212345),
};

/* A FAULT event in version 2, its body blen bytes of e. */
static size_t event_frame(uint8_t *b, const struct proto_evt_fault *e, size_t blen)
{
	struct proto_hdr h;

	proto_hdr_init(&h, PROTO_VERSION_ODP, PROTO_EVT_FAULT, (uint32_t)(HDR + blen), 0);
	memcpy(b, &h, HDR);
	memset(b + HDR, 0, blen);
	memcpy(b + HDR, e, blen < sizeof(*e) ? blen : sizeof(*e));
	return HDR + blen;
}

static int decode_event(const uint8_t *b, size_t len)
{
	struct proto_evt_fault e;

	return proto_decode_event(b, len, PROTO_VERSION_ODP, PROTO_FRAME_DEFAULT, &e);
}

Test(proto_event, accepts_a_fault)
{
	struct proto_evt_fault e;
	size_t len = event_frame(buf, &evt_ok, sizeof(evt_ok));

	cr_assert_eq(len, EVT_LEN);
	memset(&e, 0xcc, sizeof(e));
	cr_assert_eq(proto_decode_event(buf, len, PROTO_VERSION_ODP, PROTO_FRAME_DEFAULT, &e), 0);
	cr_assert_eq(e.fault_id, evt_ok.fault_id);
	cr_assert_eq(e.odp, 3);
	cr_assert_eq(e.access, 2);
	cr_assert_eq(e.offset, 0x200000);
	cr_assert_eq(e.len, 0x10000);
	cr_assert_eq(e.iova, evt_ok.iova);
	/* The smallest max_frame either side may negotiate holds one. */
	cr_assert_eq(proto_decode_event(buf, len, PROTO_VERSION_ODP, PROTO_FRAME_MIN, &e), 0);
	/* Any byte offset, and an exactly sized heap copy (ASan: no read past it). */
	for (size_t off = 1; off < 8; off++) {
		event_frame(buf + off, &evt_ok, sizeof(evt_ok));
		memset(&e, 0, sizeof(e));
		cr_assert_eq(decode_event(buf + off, len), 0, "at +%zu", off);
		cr_assert_eq(proto_decode_event(buf + off, len, PROTO_VERSION_ODP,
						PROTO_FRAME_DEFAULT, &e),
			     0);
		cr_assert_eq(memcmp(&e, &evt_ok, sizeof(e)), 0, "at +%zu", off);
	}
	{
		uint8_t *p = malloc(len);

		cr_assert_not_null(p);
		event_frame(p, &evt_ok, sizeof(evt_ok));
		cr_assert_eq(decode_event(p, len), 0);
		free(p);
	}
}

Test(proto_event, length_bounds)
{
	size_t len = event_frame(buf, &evt_ok, sizeof(evt_ok));
	struct proto_evt_fault e;

	cr_assert_eq(decode_event(buf, 0), -EMSGSIZE);
	cr_assert_eq(decode_event(buf, HDR - 1), -EMSGSIZE);
	/* hdr.len must equal the frame's length, either way. */
	cr_assert_eq(decode_event(buf, len - 1), -EMSGSIZE);
	cr_assert_eq(decode_event(buf, len + 1), -EMSGSIZE);
	/* Above the negotiated max_frame, and above the hard cap whatever it is. */
	cr_assert_eq(proto_decode_event(buf, len, PROTO_VERSION_ODP, (uint32_t)len - 1, &e),
		     -EMSGSIZE);
	set_len(buf, PROTO_FRAME_MAX + 1);
	cr_assert_eq(
		proto_decode_event(buf, PROTO_FRAME_MAX + 1, PROTO_VERSION_ODP, UINT32_MAX, &e),
		-EMSGSIZE);
	/* Length bounds come before the magic. */
	len = event_frame(buf, &evt_ok, sizeof(evt_ok));
	put32(buf, 0, 0);
	cr_assert_eq(decode_event(buf, len - 1), -EMSGSIZE);
}

Test(proto_event, rejects_bad_magic_and_version)
{
	size_t len = event_frame(buf, &evt_ok, sizeof(evt_ok));
	struct proto_evt_fault e;

	/* No events on a version-1 session, nor before HELLO. */
	cr_assert_eq(proto_decode_event(buf, len, 1, PROTO_FRAME_DEFAULT, &e), -EPROTONOSUPPORT);
	cr_assert_eq(proto_decode_event(buf, len, 0, PROTO_FRAME_DEFAULT, &e), -EPROTONOSUPPORT);
	set_version(buf, 1);
	cr_assert_eq(proto_decode_event(buf, len, 1, PROTO_FRAME_DEFAULT, &e), -EPROTONOSUPPORT);
	/* On a version-2 session, the frame must say 2. */
	cr_assert_eq(decode_event(buf, len), -EPROTONOSUPPORT);
	set_version(buf, PROTO_VERSION_MAX + 1);
	cr_assert_eq(decode_event(buf, len), -EPROTONOSUPPORT);
	/* Magic before version. */
	put32(buf, 0, PROTO_MAGIC ^ 0x100);
	cr_assert_eq(decode_event(buf, len), -EBADMSG);
	/* Version before type. */
	event_frame(buf, &evt_ok, sizeof(evt_ok));
	set_version(buf, 1);
	put16(buf, offsetof(struct proto_hdr, type), PROTO_CMD_ODP_REG | PROTO_RPY);
	cr_assert_eq(decode_event(buf, len), -EPROTONOSUPPORT);
}

Test(proto_event, rejects_what_is_no_event)
{
	static const uint16_t types[] = {
		0,
		PROTO_CMD_FAULT_DONE,
		PROTO_CMD_FAULT_DONE | PROTO_RPY,
		PROTO_EVT_FAULT | PROTO_RPY,
		PROTO_EVT_FAULT + 1,
		PROTO_RPY_ERROR,
	};
	size_t len;

	for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
		len = event_frame(buf, &evt_ok, sizeof(evt_ok));
		put16(buf, offsetof(struct proto_hdr, type), types[i]);
		cr_assert_eq(decode_event(buf, len), -EBADMSG, "type %#x", types[i]);
	}
	/* Header flags are reserved; a non-zero id is a reply's. */
	len = event_frame(buf, &evt_ok, sizeof(evt_ok));
	put32(buf, offsetof(struct proto_hdr, flags), 1);
	cr_assert_eq(decode_event(buf, len), -EBADMSG);
	len = event_frame(buf, &evt_ok, sizeof(evt_ok));
	put64(buf, offsetof(struct proto_hdr, id), 1);
	cr_assert_eq(decode_event(buf, len), -EBADMSG);
	put64(buf, offsetof(struct proto_hdr, id), UINT64_C(1) << 63);
	cr_assert_eq(decode_event(buf, len), -EBADMSG);
}

Test(proto_event, exact_length)
{
	static const size_t bodies[] = { 0,
					 8,
					 sizeof(struct proto_evt_fault) - 1,
					 sizeof(struct proto_evt_fault) + 1,
					 sizeof(struct proto_evt_fault) + 8,
					 4000 };

	for (size_t i = 0; i < sizeof(bodies) / sizeof(bodies[0]); i++) {
		size_t len = event_frame(buf, &evt_ok, bodies[i]);

		cr_assert_eq(decode_event(buf, len), -EBADMSG, "body %zu", bodies[i]);
	}
}

Test(proto_event, ranges)
{
	static const struct {
		uint32_t access;
		uint64_t offset, len;
		int want;
	} cases[] = {
		{ 1, 0, 0x1000, 0 },
		{ 2, 0, 0x1000, 0 },
		{ 0, 0, 0x1000, -EINVAL },
		{ 3, 0, 0x1000, -EINVAL },
		{ UINT32_MAX, 0, 0x1000, -EINVAL },
		{ 1, 0x1000, 0, -EINVAL },
		{ 1, UINT64_MAX - 0x1000, 0x1000, 0 },
		{ 1, UINT64_MAX - 0xfff, 0x1000, -EINVAL },
		{ 2, 0, UINT64_MAX, 0 },
		{ 2, 1, UINT64_MAX, -EINVAL },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct proto_evt_fault e = evt_ok;
		size_t len;

		e.access = cases[i].access;
		e.offset = cases[i].offset;
		e.len = cases[i].len;
		len = event_frame(buf, &e, sizeof(e));
		cr_assert_eq(decode_event(buf, len), cases[i].want, "case %zu", i);
	}
	/* fault_id and iova are the daemon's to choose: any value goes. */
	{
		struct proto_evt_fault e = evt_ok;
		size_t len;

		e.fault_id = 0;
		e.iova = UINT64_MAX;
		len = event_frame(buf, &e, sizeof(e));
		cr_assert_eq(decode_event(buf, len), 0);
	}
}

/* ---- proto_check_reply ------------------------------------------------------------------ */

static size_t reply_frame(uint8_t *b, uint16_t type, int32_t status, size_t blen)
{
	struct proto_hdr h;
	struct proto_status st = { .status = status };

	/* The reply tests below speak for a version-1 session. */
	proto_hdr_init(&h, 1, type, (uint32_t)(HDR + blen), 77);
	memcpy(b, &h, HDR);
	memset(b + HDR, 0, blen);
	memcpy(b + HDR, &st, sizeof(st));
	return HDR + blen;
}

#define RPY_OPEN (HDR + sizeof(struct proto_dev_open_rpy))

Test(proto_check_reply, right_type)
{
	size_t len = reply_frame(buf, PROTO_CMD_DEV_OPEN | PROTO_RPY, 0,
				 sizeof(struct proto_dev_open_rpy));

	cr_assert_eq(
		proto_check_reply(buf, len, 1, PROTO_FRAME_DEFAULT, PROTO_CMD_DEV_OPEN, RPY_OPEN),
		0);
	/* Version 0: before HELLO's reply, any version is taken. */
	put16(buf, offsetof(struct proto_hdr, version), 7);
	cr_assert_eq(
		proto_check_reply(buf, len, 0, PROTO_FRAME_DEFAULT, PROTO_CMD_DEV_OPEN, RPY_OPEN),
		0);
	cr_assert_eq(
		proto_check_reply(buf, len, 1, PROTO_FRAME_DEFAULT, PROTO_CMD_DEV_OPEN, RPY_OPEN),
		-EPROTONOSUPPORT);
	/* Longer than min_len is fine: DMA_READ and lists carry data. */
	len = reply_frame(buf, PROTO_CMD_DMA_READ | PROTO_RPY, 0,
			  sizeof(struct proto_dma_rpy) + 64);
	cr_assert_eq(proto_check_reply(buf, len, 1, PROTO_FRAME_DEFAULT, PROTO_CMD_DMA_READ,
				       HDR + sizeof(struct proto_dma_rpy)),
		     0);
}

Test(proto_check_reply, rpy_error_accepted)
{
	size_t len = reply_frame(buf, PROTO_RPY_ERROR, -EMSGSIZE, sizeof(struct proto_status));

	cr_assert_eq(proto_check_reply(buf, len, 1, PROTO_FRAME_DEFAULT, PROTO_CMD_BATCH,
				       HDR + sizeof(struct proto_batch_rpy)),
		     0);
	cr_assert_eq(proto_check_reply(buf, len, 0, PROTO_FRAME_DEFAULT, PROTO_CMD_HELLO,
				       HDR + sizeof(struct proto_hello_rpy)),
		     0);
}

Test(proto_check_reply, wrong_type)
{
	size_t len = reply_frame(buf, PROTO_CMD_DEV_CLOSE | PROTO_RPY, 0,
				 sizeof(struct proto_dev_open_rpy));

	cr_assert_eq(
		proto_check_reply(buf, len, 1, PROTO_FRAME_DEFAULT, PROTO_CMD_DEV_OPEN, RPY_OPEN),
		-EBADMSG);
	/* The request's own type, without the reply bit. */
	put16(buf, offsetof(struct proto_hdr, type), PROTO_CMD_DEV_OPEN);
	cr_assert_eq(
		proto_check_reply(buf, len, 1, PROTO_FRAME_DEFAULT, PROTO_CMD_DEV_OPEN, RPY_OPEN),
		-EBADMSG);
	/* Right type, but a reserved header flag. */
	put16(buf, offsetof(struct proto_hdr, type), PROTO_CMD_DEV_OPEN | PROTO_RPY);
	put32(buf, offsetof(struct proto_hdr, flags), 4);
	cr_assert_eq(
		proto_check_reply(buf, len, 1, PROTO_FRAME_DEFAULT, PROTO_CMD_DEV_OPEN, RPY_OPEN),
		-EBADMSG);
}

Test(proto_check_reply, short_reply_with_negative_status_accepted)
{
	size_t len = reply_frame(buf, PROTO_CMD_DEV_OPEN | PROTO_RPY, -ENODEV,
				 sizeof(struct proto_status));

	cr_assert_eq(
		proto_check_reply(buf, len, 1, PROTO_FRAME_DEFAULT, PROTO_CMD_DEV_OPEN, RPY_OPEN),
		0);
}

Test(proto_check_reply, short_reply_with_status_zero_rejected)
{
	size_t len =
		reply_frame(buf, PROTO_CMD_DEV_OPEN | PROTO_RPY, 0, sizeof(struct proto_status));

	cr_assert_eq(
		proto_check_reply(buf, len, 1, PROTO_FRAME_DEFAULT, PROTO_CMD_DEV_OPEN, RPY_OPEN),
		-EBADMSG);
	len = reply_frame(buf, PROTO_CMD_DEV_OPEN | PROTO_RPY, 5, sizeof(struct proto_status));
	cr_assert_eq(
		proto_check_reply(buf, len, 1, PROTO_FRAME_DEFAULT, PROTO_CMD_DEV_OPEN, RPY_OPEN),
		-EBADMSG);
}

Test(proto_check_reply, frame_checks)
{
	size_t len =
		reply_frame(buf, PROTO_CMD_STATUS | PROTO_RPY, 0, sizeof(struct proto_status_rpy));
	size_t min = HDR + sizeof(struct proto_status_rpy);

	/* Shorter than a header and a status. */
	cr_assert_eq(proto_check_reply(buf, HDR + 7, 1, PROTO_FRAME_DEFAULT, PROTO_CMD_STATUS, min),
		     -EMSGSIZE);
	/* hdr.len disagrees with the frame. */
	cr_assert_eq(proto_check_reply(buf, len - 8, 1, PROTO_FRAME_DEFAULT, PROTO_CMD_STATUS, min),
		     -EMSGSIZE);
	/* Longer than max_frame. */
	cr_assert_eq(proto_check_reply(buf, len, 1, (uint32_t)len - 1, PROTO_CMD_STATUS, min),
		     -EMSGSIZE);
	cr_assert_eq(proto_check_reply(buf, len, 1, (uint32_t)len, PROTO_CMD_STATUS, min), 0);
	/* Bad magic. */
	put32(buf, 0, ~PROTO_MAGIC);
	cr_assert_eq(proto_check_reply(buf, len, 1, PROTO_FRAME_DEFAULT, PROTO_CMD_STATUS, min),
		     -EBADMSG);
	/* And from an unaligned offset. */
	len = reply_frame(buf + 3, PROTO_CMD_STATUS | PROTO_RPY, 0,
			  sizeof(struct proto_status_rpy));
	cr_assert_eq(proto_check_reply(buf + 3, len, 1, PROTO_FRAME_DEFAULT, PROTO_CMD_STATUS, min),
		     0);
}

/* ---- helpers ------------------------------------------------------------------------------ */

Test(proto_misc, cmd_names_and_hdr_init)
{
	struct proto_hdr h;

	cr_assert_str_eq(proto_cmd_name(PROTO_CMD_HELLO), "HELLO");
	cr_assert_str_eq(proto_cmd_name(PROTO_CMD_CLIENT_MAPS), "CLIENT_MAPS");
	cr_assert_str_eq(proto_cmd_name(PROTO_CMD_BATCH | PROTO_RPY), "BATCH");
	cr_assert_str_eq(proto_cmd_name(PROTO_RPY_ERROR), "ERROR");
	cr_assert_str_eq(proto_cmd_name(0), "UNKNOWN");
	cr_assert_str_eq(proto_cmd_name(PROTO_CMD_MAX), "UNKNOWN");
	cr_assert_str_eq(proto_cmd_name(PROTO_CMD_ODP_REG), "ODP_REG");
	cr_assert_str_eq(proto_cmd_name(PROTO_CMD_FAULT_DONE | PROTO_RPY), "FAULT_DONE");
	cr_assert_str_eq(proto_cmd_name(PROTO_CMD_LIST_ODP), "LIST_ODP");
	cr_assert_str_eq(proto_cmd_name(PROTO_EVT_FAULT), "EVT_FAULT");
	cr_assert_str_eq(proto_cmd_name(PROTO_EVT_FAULT | PROTO_RPY), "UNKNOWN");
	cr_assert_str_eq(proto_cmd_name(PROTO_CMD_RESUME), "RESUME");
	cr_assert_str_eq(proto_cmd_name(PROTO_CMD_RESUME | PROTO_RPY), "RESUME");
	for (uint16_t t = PROTO_CMD_HELLO; t < PROTO_CMD_MAX; t++) {
		cr_assert_not_null(proto_cmd_name(t), "type %u", t);
		cr_assert_str_neq(proto_cmd_name(t), "UNKNOWN");
		for (uint16_t u = PROTO_CMD_HELLO; u < t; u++)
			cr_assert_str_neq(proto_cmd_name(t), proto_cmd_name(u));
	}
	memset(&h, 0xff, sizeof(h));
	proto_hdr_init(&h, 1, PROTO_CMD_STATUS, 24, 99);
	cr_assert_eq(h.magic, PROTO_MAGIC);
	cr_assert_eq(h.version, 1);
	cr_assert_eq(h.type, PROTO_CMD_STATUS);
	cr_assert_eq(h.len, 24);
	cr_assert_eq(h.flags, 0);
	cr_assert_eq(h.id, 99);
}

/* ---- randomized robustness -------------------------------------------------------------- */

struct rng {
	uint64_t s;
};

static uint64_t rnd(struct rng *r)
{
	/* splitmix64 */
	uint64_t z = (r->s += UINT64_C(0x9e3779b97f4a7c15));

	z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
	z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
	return z ^ (z >> 31);
}

static uint32_t rnd_below(struct rng *r, uint32_t n)
{
	return (uint32_t)(rnd(r) % n);
}

static bool documented(int r)
{
	return r == 0 || r == -EMSGSIZE || r == -EBADMSG || r == -EPROTONOSUPPORT || r == -ENOSYS ||
	       r == -EINVAL;
}

/* What a successful decode promises, checked against the frame it came from. */
static void check_decoded(const uint8_t *b, size_t len, const struct proto_limits *lim,
			  const struct proto_req *req)
{
	cr_assert_eq(req->hdr.len, len);
	cr_assert_eq(req->hdr.magic, PROTO_MAGIC);
	cr_assert_eq(req->hdr.flags, 0);
	cr_assert(req->hdr.type >= PROTO_CMD_HELLO && req->hdr.type < PROTO_CMD_MAX);
	if (!lim->version) {
		/* The first frame: HELLO, or RESUME in a header of version 5 or later. */
		cr_assert(req->hdr.type == PROTO_CMD_HELLO || req->hdr.type == PROTO_CMD_RESUME);
		cr_assert(req->hdr.version <= PROTO_VERSION_MAX);
		cr_assert_geq(req->hdr.version, type_version(req->hdr.type));
	} else {
		cr_assert_eq(req->hdr.version, lim->version);
		/* A session never decodes a type its version does not have. */
		cr_assert_geq(lim->version, type_version(req->hdr.type));
	}
	switch (req->hdr.type) {
	case PROTO_CMD_HELLO:
	case PROTO_CMD_RESUME: {
		const struct proto_hello *h =
			req->hdr.type == PROTO_CMD_HELLO ? &req->u.hello : &req->u.resume.hello;

		cr_assert(!h->reserved && h->max_frame >= PROTO_FRAME_MIN && h->max_batch);
		cr_assert(h->version_min <= h->version_max && h->version_min <= PROTO_VERSION_MAX);
		cr_assert_geq(h->version_max, type_version(req->hdr.type));
		break;
	}
	case PROTO_CMD_ODP_REG: {
		const struct proto_odp_reg *o = &req->u.odp_reg;

		cr_assert(o->dev && !(o->access & ~PROTO_ODP_ACCESS) &&
			  !(o->flags & ~PROTO_ODP_FLAGS));
		if (o->flags & PROTO_ODP_IMPLICIT)
			cr_assert(!o->mem && !o->offset);
		else
			cr_assert(o->mem && o->len && o->offset + o->len > o->offset);
		break;
	}
	case PROTO_CMD_ODP_DEREG:
		cr_assert(req->u.odp_ref.odp && !req->u.odp_ref.flags);
		break;
	case PROTO_CMD_ODP_STATS:
		cr_assert(!(req->u.odp_ref.flags & ~PROTO_ODP_STATS_DAEMON));
		cr_assert(!req->u.odp_ref.flags || !req->u.odp_ref.odp);
		break;
	case PROTO_CMD_ODP_ADVISE:
	case PROTO_CMD_ODP_INVALIDATE: {
		const struct proto_odp_range *o = &req->u.odp_range;

		cr_assert(o->odp && !o->reserved && o->len && o->offset + o->len > o->offset);
		cr_assert(o->advice <= PROTO_ADVISE_MAX && !(o->flags & ~PROTO_ADVISE_FLAG_FLUSH));
		if (req->hdr.type == PROTO_CMD_ODP_INVALIDATE)
			cr_assert(!o->advice && !o->flags);
		break;
	}
	case PROTO_CMD_MEM_DISCARD: {
		const struct proto_mem_range *m = &req->u.mem_range;

		cr_assert(m->mem && !m->reserved && m->len && m->offset + m->len > m->offset);
		break;
	}
	case PROTO_CMD_FAULT_DONE:
		cr_assert(!req->u.fault_done.reserved);
		cr_assert(req->u.fault_done.status <= 0 && req->u.fault_done.status >= -4095);
		break;
	case PROTO_CMD_LIST_ODP:
		cr_assert(!req->u.list.reserved);
		break;
	default:
		break;
	}
	if (req->hdr.type == PROTO_CMD_BATCH) {
		uint32_t n = req->u.batch.count;

		cr_assert(n >= 1 && n <= lim->max_batch && n <= PROTO_BATCH_MAX);
		cr_assert_eq(req->ops + (size_t)n * sizeof(struct proto_op), b + len);
		for (uint32_t i = 0; i < n; i++) {
			struct proto_op op;

			proto_op_get(req, i, &op);
			cr_assert(op.opcode >= 1 && op.opcode < PROTO_OP_MAX);
			cr_assert(op.dir <= PROTO_DIR_MAX && !op.reserved);
			cr_assert_eq(op.attrs & ~(uint64_t)PROTO_ATTRS, 0);
		}
	}
	if (req->hdr.type == PROTO_CMD_DMA_WRITE)
		cr_assert_eq(req->data + req->u.dma.len, b + len);
	if (req->hdr.type == PROTO_CMD_DMA_READ)
		cr_assert_leq(HDR + sizeof(struct proto_dma_rpy) + req->u.dma.len, lim->max_frame);
	if (req->hdr.type == PROTO_CMD_DEV_OPEN)
		cr_assert(req->u.dev_open.name[0] &&
			  memchr(req->u.dev_open.name, 0, PROTO_DEV_NAME_MAX));
}

static const uint32_t interesting[] = {
	0,
	1,
	2,
	7,
	8,
	15,
	16,
	23,
	24,
	25,
	40,
	48,
	255,
	256,
	257,
	1023,
	1024,
	1025,
	4095,
	4096,
	PROTO_FRAME_DEFAULT - 48,
	PROTO_FRAME_DEFAULT - 47,
	PROTO_FRAME_DEFAULT,
	PROTO_FRAME_DEFAULT + 1,
	PROTO_FRAME_MAX,
	0x7fffffff,
	0x80000000u,
	UINT32_MAX,
};

static uint32_t pick_interesting(struct rng *r)
{
	return interesting[rnd_below(r, sizeof(interesting) / sizeof(interesting[0]))];
}

static void robustness(uint64_t seed, unsigned int iters)
{
	/* Before HELLO, then in order of version: lims[i] for i >= 1 never goes down. */
	static const struct proto_limits *lims[] = {
		&lim0, &lim1, &lim_tight, &lim2, &lim2_tight, &lim3, &lim4, &lim5, &lim5_tight,
	};
	const uint32_t nlims = sizeof(lims) / sizeof(lims[0]);
	struct rng rng = { seed };
	uint64_t hits[6] = { 0 }; /* 0, EMSGSIZE, EBADMSG, EPROTONOSUPPORT, ENOSYS, EINVAL */
	static uint8_t src[PROTO_FRAME_MAX];

	for (unsigned int it = 0; it < iters; it++) {
		uint16_t t = (uint16_t)(PROTO_CMD_HELLO + rnd_below(&rng, PROTO_CMD_MAX - 1));
		const struct proto_limits *lim = lims[rnd_below(&rng, nlims)];
		size_t len = valid_frame(src, t), cap, off = rnd_below(&rng, 8);
		unsigned int nmut = 1 + rnd_below(&rng, 4);
		struct proto_req req;
		uint8_t *p;
		int64_t fl;
		int r;

		/*
		 * Mostly the HELLO-state that lets the type through: HELLO before
		 * HELLO, RESUME there too or on a version-5 session, any other type
		 * on a session of its version or a later one.
		 */
		if (rnd_below(&rng, 4)) {
			if (t == PROTO_CMD_HELLO || (t == PROTO_CMD_RESUME && rnd_below(&rng, 2))) {
				lim = &lim0;
			} else {
				uint32_t first = 1;

				while (lims[first]->version < type_version(t))
					first++;
				lim = lims[first + rnd_below(&rng, nlims - first)];
			}
		}
		/*
		 * A session's frames carry its version; so a version-2 type sent
		 * to a version-1 session (the other quarter) meets the -ENOSYS
		 * of a type that version does not have.
		 */
		if (lim->version && t != PROTO_CMD_HELLO)
			set_version(src, lim->version);
		for (unsigned int m = 0; m < nmut; m++) {
			switch (rnd_below(&rng, 7)) {
			case 0: /* bit flips */
			case 1:
				for (unsigned int k = 1 + rnd_below(&rng, 3); k && len; k--) {
					size_t at = rnd_below(&rng, (uint32_t)len);

					src[at] ^= (uint8_t)(1u << rnd_below(&rng, 8));
				}
				break;
			case 2: /* truncation, hdr.len left alone or fixed up */
				len = rnd_below(&rng, (uint32_t)len + 1);
				if (len >= HDR && rnd_below(&rng, 2))
					set_len(src, len);
				break;
			case 3: /* extension with random bytes */
				for (unsigned int k = 1 + rnd_below(&rng, 64); k && len < 4096; k--)
					src[len++] = (uint8_t)rnd(&rng);
				if (rnd_below(&rng, 2))
					set_len(src, len);
				break;
			case 4: /* hdr.len rewrite: an interesting value or off by a few */
				if (len < HDR)
					break;
				if (rnd_below(&rng, 2))
					set_len(src, pick_interesting(&rng));
				else
					set_len(src, len + rnd_below(&rng, 9) - 4);
				break;
			case 5: /* an interesting 32-bit value at an aligned offset */
				if (len >= HDR + 4)
					put32(src, 4 * rnd_below(&rng, (uint32_t)(len / 4)),
					      pick_interesting(&rng));
				break;
			default: /* a random byte */
				if (len)
					src[rnd_below(&rng, (uint32_t)len)] = (uint8_t)rnd(&rng);
				break;
			}
		}
		/* An exactly sized heap copy: reading past len is an ASan/valgrind error. */
		cap = off + len;
		p = malloc(cap ? cap : 1);
		cr_assert_not_null(p);
		memcpy(p + off, src, len);
		r = proto_decode_request(p + off, len, lim, &req);
		cr_assert(documented(r), "iteration %u: type %u len %zu returned %d", it, t, len,
			  r);
		if (!r)
			check_decoded(p + off, len, lim, &req);
		fl = proto_frame_len(p + off, len, lim->max_frame);
		cr_assert(fl == 0 || fl == -EMSGSIZE || fl == -EBADMSG ||
				  (fl >= (int64_t)HDR && fl <= (int64_t)lim->max_frame),
			  "iteration %u: frame_len %" PRId64, it, fl);
		if (!r)
			cr_assert_eq(fl, (int64_t)len);
		switch (r) {
		case 0:
			hits[0]++;
			break;
		case -EMSGSIZE:
			hits[1]++;
			break;
		case -EBADMSG:
			hits[2]++;
			break;
		case -EPROTONOSUPPORT:
			hits[3]++;
			break;
		case -ENOSYS:
			hits[4]++;
			break;
		default:
			hits[5]++;
			break;
		}
		free(p);
	}
	/* The mutations must reach every outcome, or they test too little. */
	for (int i = 0; i < 6; i++)
		cr_assert_gt(hits[i], 0, "seed %" PRIu64 ": outcome %d never seen", seed, i);
}

#define ROBUST_ITERS 200000u

Test(proto_robust, random_mutations_fixed_seed, .timeout = 600)
{
	robustness(UINT64_C(0x70707e5eed), ROBUST_ITERS);
}

Test(proto_robust, random_mutations_env_seed, .timeout = 600)
{
	const char *env = getenv("IOVAD_TEST_SEED");
	uint64_t seed;

	if (env && *env)
		seed = strtoull(env, NULL, 0);
	else if (getrandom(&seed, sizeof(seed), 0) != (ssize_t)sizeof(seed))
		seed = (uint64_t)time(NULL) ^ ((uint64_t)clock() << 32);
	fprintf(stderr,
		"proto robustness: seed=%" PRIu64 " (rerun with IOVAD_TEST_SEED=%" PRIu64 ")\n",
		seed, seed);
	robustness(seed, ROBUST_ITERS);
}

/* ---- version 3: remote peers ------------------------------------------------------------ */

Test(proto_v3, iova_rkey_decodes)
{
	size_t len = valid_frame(buf, PROTO_CMD_IOVA_RKEY);
	struct proto_req req;

	cr_assert_eq(proto_decode_request(buf, len, &lim3, &req), 0);
	cr_assert_eq(req.hdr.version, PROTO_VERSION_RKEY);
	cr_assert_eq(req.u.iova_rkey.dev, 1);
	cr_assert_eq(req.u.iova_rkey.iova, UINT64_C(0xffff0000));
	cr_assert_str_eq(proto_cmd_name(PROTO_CMD_IOVA_RKEY), "IOVA_RKEY");
	cr_assert_str_eq(proto_cmd_name(PROTO_CMD_IOVA_RKEY | PROTO_RPY), "IOVA_RKEY");
}

Test(proto_v3, older_sessions_do_not_know_iova_rkey)
{
	static const struct proto_limits *older[] = { &lim1, &lim_tight, &lim2, &lim2_tight };

	for (size_t i = 0; i < sizeof(older) / sizeof(older[0]); i++) {
		size_t len = valid_frame(buf, PROTO_CMD_IOVA_RKEY);

		/* The frame carries the session's own version: the type is what is unknown. */
		set_version(buf, older[i]->version);
		cr_assert_eq(decode(buf, len, older[i]), -ENOSYS, "version %u", older[i]->version);
		/* Judged before its length and its reserved fields, like any unknown type. */
		put32(buf, BODY(struct proto_iova_rkey, reserved), 1);
		cr_assert_eq(decode(buf, len, older[i]), -ENOSYS, "version %u", older[i]->version);
		set_len(buf, HDR);
		cr_assert_eq(decode(buf, HDR, older[i]), -ENOSYS, "version %u", older[i]->version);
	}
	/* Before HELLO: anything but HELLO. */
	cr_assert_eq(decode(buf, valid_frame(buf, PROTO_CMD_IOVA_RKEY), &lim0), -EPROTONOSUPPORT);
}

Test(proto_v3, v3_session_takes_older_types)
{
	for (uint16_t t = PROTO_CMD_HELLO + 1; t < V3_FIRST; t++) {
		size_t len = valid_frame(buf, t);

		set_version(buf, PROTO_VERSION_RKEY);
		cr_assert_eq(decode(buf, len, &lim3), 0, "%s", proto_cmd_name(t));
		/* The version is fixed by HELLO: 2 is wrong on a version-3 session. */
		set_version(buf, PROTO_VERSION_ODP);
		cr_assert_eq(decode(buf, len, &lim3), -EPROTONOSUPPORT, "%s", proto_cmd_name(t));
	}
}

Test(proto_v3, iova_rkey_validation_order)
{
	struct proto_iova_rkey k = { .dev = 1, .iova = 0x1000 };
	size_t len;

	/* exact length */
	len = frame(buf, PROTO_CMD_IOVA_RKEY, &k, sizeof(k));
	buf[len] = 0;
	set_len(buf, len + 1);
	cr_assert_eq(decode(buf, len + 1, &lim3), -EBADMSG);
	set_len(buf, len - 1);
	cr_assert_eq(decode(buf, len - 1, &lim3), -EBADMSG);
	/* reserved before ranges: dev 0 and reserved set is -EINVAL from the reserved step */
	k = (struct proto_iova_rkey){ .dev = 0, .reserved = 1 };
	len = frame(buf, PROTO_CMD_IOVA_RKEY, &k, sizeof(k));
	cr_assert_eq(decode(buf, len, &lim3), -EINVAL);
	/* a length error beats the reserved field */
	set_len(buf, len + 1);
	buf[len] = 0;
	cr_assert_eq(decode(buf, len + 1, &lim3), -EBADMSG);
	/* ranges: dev 0 is no handle; every IOVA, 0 and ~0 included, is a fair question */
	k = (struct proto_iova_rkey){ .dev = 0, .iova = 0x1000 };
	len = frame(buf, PROTO_CMD_IOVA_RKEY, &k, sizeof(k));
	cr_assert_eq(decode(buf, len, &lim3), -EINVAL);
	k = (struct proto_iova_rkey){ .dev = 7, .iova = 0 };
	len = frame(buf, PROTO_CMD_IOVA_RKEY, &k, sizeof(k));
	cr_assert_eq(decode(buf, len, &lim3), 0);
	k.iova = UINT64_MAX;
	len = frame(buf, PROTO_CMD_IOVA_RKEY, &k, sizeof(k));
	cr_assert_eq(decode(buf, len, &lim3), 0);
}

Test(proto_v3, iova_rkey_reply_checks)
{
	struct proto_iova_rkey_rpy rpy = { .rkey = 0x1234, .mr_iova = 0x10000, .mr_len = 0x4000 };
	uint8_t out[HDR + sizeof(rpy)];
	struct proto_hdr h;

	proto_hdr_init(&h, PROTO_VERSION_RKEY, PROTO_CMD_IOVA_RKEY | PROTO_RPY, sizeof(out), 5);
	memcpy(out, &h, HDR);
	memcpy(out + HDR, &rpy, sizeof(rpy));
	cr_assert_eq(proto_check_reply(out, sizeof(out), PROTO_VERSION_RKEY, PROTO_FRAME_DEFAULT,
				       PROTO_CMD_IOVA_RKEY, sizeof(out)), 0);
	/* Status alone: only for a failure (-ENOENT: nothing of the client's registered there). */
	h.len = HDR + sizeof(struct proto_status);
	memcpy(out, &h, HDR);
	put32(out, HDR, (uint32_t)-ENOENT);
	cr_assert_eq(proto_check_reply(out, h.len, PROTO_VERSION_RKEY, PROTO_FRAME_DEFAULT,
				       PROTO_CMD_IOVA_RKEY, sizeof(out)), 0);
	put32(out, HDR, 0);
	cr_assert_eq(proto_check_reply(out, h.len, PROTO_VERSION_RKEY, PROTO_FRAME_DEFAULT,
				       PROTO_CMD_IOVA_RKEY, sizeof(out)), -EBADMSG);
}

/* ---- version 4: shared-memory rings -------------------------------------------------------- */

Test(proto_v4, ring_setup_decodes)
{
	size_t len = valid_frame(buf, PROTO_CMD_RING_SETUP);
	struct proto_req req;

	cr_assert_eq(proto_decode_request(buf, len, &lim4, &req), 0);
	cr_assert_eq(req.hdr.version, PROTO_VERSION_RING);
	cr_assert_eq(req.u.ring_setup.sq_size, PROTO_RING_DEFAULT);
	cr_assert_eq(req.u.ring_setup.cq_size, PROTO_RING_SIZE_MIN);
	cr_assert_str_eq(proto_cmd_name(PROTO_CMD_RING_SETUP), "RING_SETUP");
}

Test(proto_v4, older_sessions_do_not_know_ring_setup)
{
	static const struct proto_limits *older[] = { &lim1, &lim2, &lim3 };

	for (size_t i = 0; i < sizeof(older) / sizeof(older[0]); i++) {
		size_t len = valid_frame(buf, PROTO_CMD_RING_SETUP);

		set_version(buf, older[i]->version);
		cr_assert_eq(decode(buf, len, older[i]), -ENOSYS, "version %u", older[i]->version);
	}
	cr_assert_eq(decode(buf, valid_frame(buf, PROTO_CMD_RING_SETUP), &lim0), -EPROTONOSUPPORT);
}

Test(proto_v4, ring_sizes_are_powers_of_two_within_bounds)
{
	static const struct {
		uint32_t sq, cq;
		int want;
	} cases[] = {
		{ PROTO_RING_SIZE_MIN, PROTO_RING_SIZE_MIN, 0 },
		{ PROTO_RING_SIZE_MAX, PROTO_RING_SIZE_MAX, 0 },
		{ PROTO_RING_SIZE_MIN / 2, PROTO_RING_SIZE_MIN, -EINVAL },
		{ PROTO_RING_SIZE_MIN, PROTO_RING_SIZE_MAX * 2, -EINVAL },
		{ PROTO_RING_DEFAULT + 4096, PROTO_RING_DEFAULT, -EINVAL },
		{ PROTO_RING_DEFAULT, PROTO_RING_DEFAULT - 8, -EINVAL },
		{ 0, PROTO_RING_DEFAULT, -EINVAL },
		{ PROTO_RING_DEFAULT, UINT32_MAX, -EINVAL },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct proto_ring_setup g = { .sq_size = cases[i].sq, .cq_size = cases[i].cq };
		size_t len = frame(buf, PROTO_CMD_RING_SETUP, &g, sizeof(g));

		cr_assert_eq(decode(buf, len, &lim4), cases[i].want, "case %zu", i);
	}
	/* Reserved fields are judged before the sizes. */
	{
		struct proto_ring_setup g = { .sq_size = 3, .cq_size = 3, .flags = 1 };
		size_t len = frame(buf, PROTO_CMD_RING_SETUP, &g, sizeof(g));

		cr_assert_eq(decode(buf, len, &lim4), -EINVAL);
		set_len(buf, len + 8);
		memset(buf + len, 0, 8);
		cr_assert_eq(decode(buf, len + 8, &lim4), -EBADMSG);
	}
}

/* ---- version 5: durable sessions ------------------------------------------------------------ */

/* A RESUME frame carrying blen bytes of rs (zeros past its end), in a header of version. */
static size_t resume_frame(uint8_t *b, const struct proto_resume *rs, size_t blen, uint16_t version)
{
	uint8_t body[2 * sizeof(*rs)] = { 0 };
	size_t len;

	cr_assert_leq(blen, sizeof(body));
	memcpy(body, rs, blen < sizeof(*rs) ? blen : sizeof(*rs));
	len = frame(b, PROTO_CMD_RESUME, body, blen);
	set_version(b, version);
	return len;
}

Test(proto_v5, resume_decodes_as_the_first_frame)
{
	size_t len = valid_frame(buf, PROTO_CMD_RESUME);
	struct proto_req req;

	cr_assert_eq(len, HDR + 40);
	memset(&req, 0xcc, sizeof(req));
	cr_assert_eq(proto_decode_request(buf, len, &lim0, &req), 0);
	cr_assert_eq(req.hdr.type, PROTO_CMD_RESUME);
	cr_assert_eq(req.hdr.version, PROTO_VERSION_RESUME);
	cr_assert_eq(req.hdr.id, FRAME_ID ^ PROTO_CMD_RESUME);
	cr_assert_eq(req.u.resume.hello.version_min, PROTO_VERSION_RESUME);
	cr_assert_eq(req.u.resume.hello.version_max, PROTO_VERSION_MAX);
	cr_assert_eq(req.u.resume.hello.max_frame, PROTO_FRAME_DEFAULT);
	cr_assert_eq(req.u.resume.hello.max_batch, PROTO_BATCH_DEFAULT);
	cr_assert_eq(req.u.resume.session_id, resume_ok.session_id);
	cr_assert_eq(memcmp(req.u.resume.token, resume_ok.token, PROTO_TOKEN_LEN), 0);
	cr_assert_null(req.ops);
	cr_assert_null(req.data);
	/* The wire layout: the hello part, the session's id at 16, the token at 24. */
	cr_assert_eq(sizeof(struct proto_resume), 40);
	cr_assert_eq(offsetof(struct proto_resume, session_id), 16);
	cr_assert_eq(offsetof(struct proto_resume, token), 24);
	/* Whether id and token name a session is the daemon's to say (-ENOENT, -EACCES). */
	{
		struct proto_resume rs = resume_ok;

		rs.session_id = 0;
		memset(rs.token, 0, sizeof(rs.token));
		len = resume_frame(buf, &rs, sizeof(rs), PROTO_VERSION_RESUME);
		cr_assert_eq(decode(buf, len, &lim0), 0);
		rs.session_id = UINT64_MAX;
		memset(rs.token, 0xff, sizeof(rs.token));
		len = resume_frame(buf, &rs, sizeof(rs), PROTO_VERSION_RESUME);
		cr_assert_eq(decode(buf, len, &lim0), 0);
	}
}

Test(proto_v5, resume_needs_a_version_5_header)
{
	static const uint16_t bad[] = {
		0,
		1,
		PROTO_VERSION_ODP,
		PROTO_VERSION_RKEY,
		PROTO_VERSION_RING,
		PROTO_VERSION_MAX + 1,
		0xffff,
	};
	size_t len;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct proto_hello h = resume_ok.hello;

		len = resume_frame(buf, &resume_ok, sizeof(resume_ok), bad[i]);
		cr_assert_eq(decode(buf, len, &lim0), -EPROTONOSUPPORT, "version %u", bad[i]);
		/* The version step comes before the length and the reserved fields. */
		len = resume_frame(buf, &resume_ok, sizeof(resume_ok) + 8, bad[i]);
		put32(buf, BODY(struct proto_resume, hello.reserved), 1);
		cr_assert_eq(decode(buf, len, &lim0), -EPROTONOSUPPORT, "version %u", bad[i]);
		/* Where HELLO, the same hello part, is fine in any version the daemon speaks. */
		len = frame(buf, PROTO_CMD_HELLO, &h, sizeof(h));
		set_version(buf, bad[i]);
		cr_assert_eq(decode(buf, len, &lim0),
			     bad[i] >= PROTO_VERSION_MIN && bad[i] <= PROTO_VERSION_MAX
				     ? 0
				     : -EPROTONOSUPPORT,
			     "HELLO in version %u", bad[i]);
	}
	for (uint16_t v = PROTO_VERSION_RESUME; v <= PROTO_VERSION_MAX; v++) {
		len = resume_frame(buf, &resume_ok, sizeof(resume_ok), v);
		cr_assert_eq(decode(buf, len, &lim0), 0, "version %u", v);
	}
	/* Magic before version. */
	len = resume_frame(buf, &resume_ok, sizeof(resume_ok), PROTO_VERSION_RING);
	put32(buf, 0, PROTO_MAGIC ^ 0x10000);
	cr_assert_eq(decode(buf, len, &lim0), -EBADMSG);
}

Test(proto_v5, resume_hello_part_ranges)
{
	/* Negotiated as HELLO's, but version_max must reach 5: the client must speak RESUME. */
	static const struct {
		struct proto_hello h;
		int want, hello; /* RESUME's answer; HELLO's, for the same fields */
	} cases[] = {
		{ { 5, 5, PROTO_FRAME_DEFAULT, 1, 0 }, 0, 0 },
		{ { 1, 5, PROTO_FRAME_DEFAULT, 1, 0 }, 0, 0 },
		{ { 0, 5, PROTO_FRAME_MIN, 1, 0 }, 0, 0 },
		{ { 5, 0xffff, PROTO_FRAME_DEFAULT, 1, 0 }, 0, 0 },
		{ { 1, 0xffff, UINT32_MAX, UINT32_MAX, 0 }, 0, 0 }, /* the daemon takes the min */
		/* a client that does not speak 5 */
		{ { 1, 4, PROTO_FRAME_DEFAULT, 1, 0 }, -EPROTONOSUPPORT, 0 },
		{ { 4, 4, PROTO_FRAME_DEFAULT, 1, 0 }, -EPROTONOSUPPORT, 0 },
		{ { 1, 1, PROTO_FRAME_DEFAULT, 1, 0 }, -EPROTONOSUPPORT, 0 },
		{ { 0, 0, PROTO_FRAME_DEFAULT, 1, 0 }, -EPROTONOSUPPORT, -EPROTONOSUPPORT },
		/* version 6 speaks RESUME as well */
		{ { 6, 6, PROTO_FRAME_DEFAULT, 1, 0 }, 0, 0 },
		/* min > max, and nothing the daemon speaks */
		{ { 6, 5, PROTO_FRAME_DEFAULT, 1, 0 }, -EPROTONOSUPPORT, -EPROTONOSUPPORT },
		{ { 5, 4, PROTO_FRAME_DEFAULT, 1, 0 }, -EPROTONOSUPPORT, -EPROTONOSUPPORT },
		{ { 7, 7, PROTO_FRAME_DEFAULT, 1, 0 }, -EPROTONOSUPPORT, -EPROTONOSUPPORT },
		{ { 7, 0xffff, PROTO_FRAME_DEFAULT, 1, 0 }, -EPROTONOSUPPORT, -EPROTONOSUPPORT },
		/* the limits, as HELLO's */
		{ { 5, 5, PROTO_FRAME_MIN - 1, 1, 0 }, -EINVAL, -EINVAL },
		{ { 5, 5, 0, 1, 0 }, -EINVAL, -EINVAL },
		{ { 5, 5, PROTO_FRAME_DEFAULT, 0, 0 }, -EINVAL, -EINVAL },
		/* the versions are judged before the limits */
		{ { 1, 4, 0, 0, 0 }, -EPROTONOSUPPORT, -EINVAL },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct proto_resume rs = resume_ok;
		size_t len;

		rs.hello = cases[i].h;
		len = resume_frame(buf, &rs, sizeof(rs), PROTO_VERSION_RESUME);
		cr_assert_eq(decode(buf, len, &lim0), cases[i].want, "case %zu", i);
		/* The same on a version-5 session (where the daemon then answers -EALREADY). */
		cr_assert_eq(decode(buf, len, &lim5), cases[i].want, "case %zu in version 5", i);
		len = frame(buf, PROTO_CMD_HELLO, &cases[i].h, sizeof(cases[i].h));
		cr_assert_eq(decode(buf, len, &lim0), cases[i].hello, "case %zu as HELLO", i);
	}
}

Test(proto_v5, resume_reserved)
{
	static const struct proto_limits *lims[] = { &lim0, &lim5 };

	for (size_t l = 0; l < sizeof(lims) / sizeof(lims[0]); l++) {
		for (unsigned int byte = 0; byte < 4; byte++) {
			size_t len = valid_frame(buf, PROTO_CMD_RESUME);

			cr_assert_eq(decode(buf, len, lims[l]), 0);
			buf[BODY(struct proto_resume, hello.reserved) + byte] = 0x80;
			cr_assert_eq(decode(buf, len, lims[l]), -EINVAL, "version %u byte %u",
				     lims[l]->version, byte);
		}
		/* hdr.flags, as everywhere. */
		{
			size_t len = valid_frame(buf, PROTO_CMD_RESUME);

			put32(buf, offsetof(struct proto_hdr, flags), 1);
			cr_assert_eq(decode(buf, len, lims[l]), -EINVAL);
		}
		/* Reserved before ranges: with a version_max below 5 too. */
		{
			struct proto_resume rs = resume_ok;
			size_t len;

			rs.hello.version_max = PROTO_VERSION_RING;
			rs.hello.reserved = 1;
			len = resume_frame(buf, &rs, sizeof(rs), PROTO_VERSION_RESUME);
			cr_assert_eq(decode(buf, len, lims[l]), -EINVAL);
		}
	}
}

Test(proto_v5, resume_exact_length)
{
	/* Nothing, a HELLO's body (the likely mistake), a byte short or long, a word long. */
	static const size_t bodies[] = { 0,
					 8,
					 sizeof(struct proto_hello),
					 sizeof(struct proto_resume) - 1,
					 sizeof(struct proto_resume) + 1,
					 sizeof(struct proto_resume) + 8 };
	static const struct proto_limits *lims[] = { &lim0, &lim5 };

	for (size_t l = 0; l < sizeof(lims) / sizeof(lims[0]); l++) {
		for (size_t i = 0; i < sizeof(bodies) / sizeof(bodies[0]); i++) {
			size_t len = resume_frame(buf, &resume_ok, bodies[i], PROTO_VERSION_RESUME);

			cr_assert_eq(decode(buf, len, lims[l]), -EBADMSG, "version %u body %zu",
				     lims[l]->version, bodies[i]);
			/* Length before reserved fields. */
			put32(buf, offsetof(struct proto_hdr, flags), 1);
			if (bodies[i] >= BODY(struct proto_resume, hello.reserved) + 4 - HDR)
				put32(buf, BODY(struct proto_resume, hello.reserved), 1);
			cr_assert_eq(decode(buf, len, lims[l]), -EBADMSG, "version %u body %zu",
				     lims[l]->version, bodies[i]);
		}
		/* hdr.len must agree with the bytes first. */
		{
			size_t len = valid_frame(buf, PROTO_CMD_RESUME);

			cr_assert_eq(decode(buf, len + 1, lims[l]), -EMSGSIZE);
			cr_assert_eq(decode(buf, len - 1, lims[l]), -EMSGSIZE);
		}
	}
}

Test(proto_v5, resume_on_established_sessions)
{
	static const struct proto_limits *older[] = {
		&lim1, &lim_tight, &lim2, &lim2_tight, &lim3, &lim4,
	};
	static const struct proto_limits *v5[] = { &lim5, &lim5_tight };

	/* Version 5: well formed (the daemon answers -EALREADY). */
	for (size_t i = 0; i < sizeof(v5) / sizeof(v5[0]); i++) {
		size_t len = valid_frame(buf, PROTO_CMD_RESUME);
		struct proto_req req;

		cr_assert_eq(proto_decode_request(buf, len, v5[i], &req), 0);
		cr_assert_eq(req.u.resume.session_id, resume_ok.session_id);
		/* In the session's version only. */
		set_version(buf, PROTO_VERSION_RING);
		cr_assert_eq(decode(buf, len, v5[i]), -EPROTONOSUPPORT);
	}
	/* Older versions: a type they do not have, whatever its body. */
	for (size_t i = 0; i < sizeof(older) / sizeof(older[0]); i++) {
		uint16_t v = older[i]->version;
		size_t len = resume_frame(buf, &resume_ok, sizeof(resume_ok), v);

		cr_assert_eq(decode(buf, len, older[i]), -ENOSYS, "version %u", v);
		put32(buf, BODY(struct proto_resume, hello.reserved), 1);
		put32(buf, offsetof(struct proto_hdr, flags), 1);
		cr_assert_eq(decode(buf, len, older[i]), -ENOSYS, "version %u", v);
		len = resume_frame(buf, &resume_ok, sizeof(struct proto_hello), v);
		cr_assert_eq(decode(buf, len, older[i]), -ENOSYS, "version %u", v);
		len = resume_frame(buf, &resume_ok, 0, v);
		cr_assert_eq(decode(buf, len, older[i]), -ENOSYS, "version %u", v);
		/* Still in the session's version: a version-5 header is wrong there first. */
		len = resume_frame(buf, &resume_ok, sizeof(resume_ok), PROTO_VERSION_RESUME);
		cr_assert_eq(decode(buf, len, older[i]), -EPROTONOSUPPORT, "version %u", v);
	}
}

Test(proto_v5, v5_session_takes_older_types)
{
	for (uint16_t t = PROTO_CMD_HELLO; t < V5_FIRST; t++) {
		size_t len = valid_frame(buf, t);
		struct proto_req req;
		long fb = fixed_body(t);

		set_version(buf, PROTO_VERSION_RESUME);
		memset(&req, 0xcc, sizeof(req));
		cr_assert_eq(proto_decode_request(buf, len, &lim5, &req), 0, "%s",
			     proto_cmd_name(t));
		cr_assert_eq(req.hdr.version, PROTO_VERSION_RESUME);
		cr_assert_eq(req.hdr.id, FRAME_ID ^ t);
		if (fb >= 0)
			cr_assert_eq(memcmp(&req.u, buf + HDR, (size_t)fb), 0, "%s body",
				     proto_cmd_name(t));
		/* The version is fixed by HELLO: 4 is wrong on a version-5 session. */
		set_version(buf, PROTO_VERSION_RING);
		cr_assert_eq(decode(buf, len, &lim5), -EPROTONOSUPPORT, "%s", proto_cmd_name(t));
	}
	/* The negotiated limits still hold: 4 ops per BATCH in the tight one. */
	{
		struct proto_op ops[5];
		size_t len;

		valid_ops(ops, 5);
		len = batch_frame(buf, 4, 4, 0, ops);
		set_version(buf, PROTO_VERSION_RESUME);
		cr_assert_eq(decode(buf, len, &lim5_tight), 0);
		len = batch_frame(buf, 5, 5, 0, ops);
		set_version(buf, PROTO_VERSION_RESUME);
		cr_assert_eq(decode(buf, len, &lim5_tight), -EBADMSG);
	}
}

/* HELLO's and RESUME's reply at version 5: proto_hello_rpy, then proto_session. */
#define RPY_HELLO5 (HDR + sizeof(struct proto_hello_rpy) + sizeof(struct proto_session))

static size_t hello5_reply(uint8_t *b, uint16_t type, uint32_t flags)
{
	struct proto_hello_rpy rpy = { .version = PROTO_VERSION_RESUME,
				       .max_frame = PROTO_FRAME_DEFAULT,
				       .max_batch = PROTO_BATCH_DEFAULT,
				       .max_inflight = 64,
				       .session_id = resume_ok.session_id };
	struct proto_session tail = { .flags = flags };
	struct proto_hdr h;

	memcpy(tail.token, resume_ok.token, sizeof(tail.token));
	proto_hdr_init(&h, PROTO_VERSION_RESUME, type, (uint32_t)RPY_HELLO5, 9);
	memcpy(b, &h, HDR);
	memcpy(b + HDR, &rpy, sizeof(rpy));
	memcpy(b + HDR + sizeof(rpy), &tail, sizeof(tail));
	return RPY_HELLO5;
}

Test(proto_v5, hello_and_resume_replies)
{
	static const int32_t errs[] = { -ENOENT, -EACCES, -EBUSY, -EALREADY, -EINVAL };
	size_t len;

	/* 72 bytes after the header: the token at 48, the flags at 64. */
	cr_assert_eq(RPY_HELLO5 - HDR, 72);
	cr_assert_eq(sizeof(struct proto_session), 24);
	cr_assert_eq(offsetof(struct proto_session, flags), PROTO_TOKEN_LEN);
	cr_assert_eq(PROTO_SESSION_DURABLE, 1);
	/* Before HELLO's reply the client knows no version yet (0). */
	len = hello5_reply(buf, PROTO_CMD_HELLO | PROTO_RPY, PROTO_SESSION_DURABLE);
	cr_assert_eq(
		proto_check_reply(buf, len, 0, PROTO_FRAME_DEFAULT, PROTO_CMD_HELLO, RPY_HELLO5),
		0);
	/* A daemon without a journal: the same length, flags 0. */
	len = hello5_reply(buf, PROTO_CMD_HELLO | PROTO_RPY, 0);
	cr_assert_eq(
		proto_check_reply(buf, len, 0, PROTO_FRAME_DEFAULT, PROTO_CMD_HELLO, RPY_HELLO5),
		0);
	len = hello5_reply(buf, PROTO_CMD_RESUME | PROTO_RPY, PROTO_SESSION_DURABLE);
	cr_assert_eq(
		proto_check_reply(buf, len, 0, PROTO_FRAME_DEFAULT, PROTO_CMD_RESUME, RPY_HELLO5),
		0);
	/* RESUME's reply answers RESUME, not HELLO. */
	cr_assert_eq(
		proto_check_reply(buf, len, 0, PROTO_FRAME_DEFAULT, PROTO_CMD_HELLO, RPY_HELLO5),
		-EBADMSG);
	/* A successful reply without the tail (a version-4 one) is too short at version 5. */
	set_len(buf, HDR + sizeof(struct proto_hello_rpy));
	cr_assert_eq(proto_check_reply(buf, HDR + sizeof(struct proto_hello_rpy), 0,
				       PROTO_FRAME_DEFAULT, PROTO_CMD_RESUME, RPY_HELLO5),
		     -EBADMSG);
	/* A refused RESUME: the status alone. */
	for (size_t i = 0; i < sizeof(errs) / sizeof(errs[0]); i++) {
		len = hello5_reply(buf, PROTO_CMD_RESUME | PROTO_RPY, 0);
		set_len(buf, HDR + sizeof(struct proto_status));
		put32(buf, HDR, (uint32_t)errs[i]);
		cr_assert_eq(proto_check_reply(buf, HDR + sizeof(struct proto_status), 0,
					       PROTO_FRAME_DEFAULT, PROTO_CMD_RESUME, RPY_HELLO5),
			     0, "status %d", errs[i]);
	}
	put32(buf, HDR, 0);
	cr_assert_eq(proto_check_reply(buf, HDR + sizeof(struct proto_status), 0,
				       PROTO_FRAME_DEFAULT, PROTO_CMD_RESUME, RPY_HELLO5),
		     -EBADMSG);
	/* A RESUME in a version-4 header: RPY_ERROR with -EPROTONOSUPPORT. */
	put16(buf, offsetof(struct proto_hdr, type), PROTO_RPY_ERROR);
	put32(buf, HDR, (uint32_t)-EPROTONOSUPPORT);
	cr_assert_eq(proto_check_reply(buf, HDR + sizeof(struct proto_status), 0,
				       PROTO_FRAME_DEFAULT, PROTO_CMD_RESUME, RPY_HELLO5),
		     0);
}
