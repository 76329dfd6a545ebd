// SPDX-License-Identifier: MIT
/*
 * rxe_check - assert, inside the rxe guest (tests/rxe/vm.sh), the platform facts that iovad's
 * rxe backend will rely on, and report the ones it must work around. TAP output, one line per
 * check; exit 0 only if every asserted check holds.
 *
 * Asserted: the device (RXE_DEV, default rxe0) exists and port 1 is ACTIVE; ibv_reg_mr_iova2
 * registers a buffer at a chosen IOVA; over a loopback RC QP pair (GID index RXE_GID_IDX) an
 * RDMA WRITE and an RDMA READ at (that IOVA, rkey) move the right bytes to the right place; an
 * RDMA WRITE outside the MR completes with IBV_WC_REM_ACCESS_ERR and leaves the requester QP
 * in ERR; RESET -> RTS recovers it.
 *
 * Reported (pass unless self-contradictory): whether IBV_ACCESS_ON_DEMAND registration and
 * ibv_advise_mr work (on 6.1 they fail with EINVAL and EOPNOTSUPP). They fail the run only if
 * ODP works although the device advertises no ODP support: then nobody can tell which is true.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <infiniband/verbs.h>

#include "tap.h"

#define MR_IOVA		0x1000000000ULL	/* the "chosen IOVA": far from any VA of the buffer */
#define MR_LEN		(64 * 1024)
#define XFER_LEN	4096
#define WRITE_OFF	8192		/* where the WRITE lands inside the MR */
#define READ_OFF	16384		/* where the READ takes its bytes from */
#define POLL_MS		10000		/* a completion later than this is a failure */
#define PLAN		11

static void __attribute__((noreturn)) bail(const char *why)
{
	printf("Bail out! %s\n", why);
	exit(1);
}

static const char *errname(int e)
{
	const char *n = strerrorname_np(e);

	return n ? n : "?";
}

struct loop {
	struct ibv_context *ctx;
	struct ibv_pd *pd;
	struct ibv_cq *cq_a, *cq_b;
	struct ibv_qp *a, *b;		/* a sends, b is its responder */
	union ibv_gid gid;
	int gidx;
};

/* RESET -> INIT -> RTR -> RTS, connected to QP number dqpn on our own GID. */
static int qp_to_rts(struct ibv_qp *qp, uint32_t dqpn, const struct loop *l)
{
	struct ibv_qp_attr a;

	memset(&a, 0, sizeof(a));
	a.qp_state = IBV_QPS_INIT;
	a.port_num = 1;
	a.qp_access_flags = IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE |
			    IBV_ACCESS_REMOTE_READ;
	if (ibv_modify_qp(qp, &a, IBV_QP_STATE | IBV_QP_PKEY_INDEX | IBV_QP_PORT |
			  IBV_QP_ACCESS_FLAGS))
		return -1;

	memset(&a, 0, sizeof(a));
	a.qp_state = IBV_QPS_RTR;
	a.path_mtu = IBV_MTU_1024;
	a.dest_qp_num = dqpn;
	a.max_dest_rd_atomic = 1;
	a.min_rnr_timer = 12;
	a.ah_attr.is_global = 1;
	a.ah_attr.grh.dgid = l->gid;
	a.ah_attr.grh.sgid_index = l->gidx;
	a.ah_attr.grh.hop_limit = 1;
	a.ah_attr.port_num = 1;
	if (ibv_modify_qp(qp, &a, IBV_QP_STATE | IBV_QP_AV | IBV_QP_PATH_MTU | IBV_QP_DEST_QPN |
			  IBV_QP_RQ_PSN | IBV_QP_MAX_DEST_RD_ATOMIC | IBV_QP_MIN_RNR_TIMER))
		return -2;

	memset(&a, 0, sizeof(a));
	a.qp_state = IBV_QPS_RTS;
	a.timeout = 14;
	a.retry_cnt = 7;
	a.rnr_retry = 7;
	a.max_rd_atomic = 1;
	if (ibv_modify_qp(qp, &a, IBV_QP_STATE | IBV_QP_TIMEOUT | IBV_QP_RETRY_CNT |
			  IBV_QP_RNR_RETRY | IBV_QP_SQ_PSN | IBV_QP_MAX_QP_RD_ATOMIC))
		return -3;
	return 0;
}

static int connect_pair(const struct loop *l)
{
	int r = qp_to_rts(l->a, l->b->qp_num, l);

	return r ? r : qp_to_rts(l->b, l->a->qp_num, l);
}

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Busy-poll one completion; -1 on timeout or poll error. */
static int poll_one(struct ibv_cq *cq, struct ibv_wc *wc)
{
	int64_t end = now_ms() + POLL_MS;
	int n;

	do {
		n = ibv_poll_cq(cq, 1, wc);
		if (n)
			return n == 1 ? 0 : -1;
	} while (now_ms() < end);
	return -1;
}

/*
 * Post one signaled RDMA op of XFER_LEN bytes from/to laddr (in lmr) to/from (raddr, rkey) on
 * QP a and wait for it. Returns the completion status, or -1 if none came.
 */
static int rdma_op(const struct loop *l, enum ibv_wr_opcode op, struct ibv_mr *lmr, void *laddr,
		   uint64_t raddr, uint32_t rkey)
{
	struct ibv_sge sge = {
		.addr = (uintptr_t)laddr, .length = XFER_LEN, .lkey = lmr->lkey,
	};
	struct ibv_send_wr wr, *bad;
	struct ibv_wc wc;

	memset(&wr, 0, sizeof(wr));
	wr.opcode = op;
	wr.sg_list = &sge;
	wr.num_sge = 1;
	wr.send_flags = IBV_SEND_SIGNALED;
	wr.wr.rdma.remote_addr = raddr;
	wr.wr.rdma.rkey = rkey;
	if (ibv_post_send(l->a, &wr, &bad)) {
		printf("# ibv_post_send: %s\n", strerror(errno));
		return -1;
	}
	if (poll_one(l->cq_a, &wc)) {
		printf("# no completion within %d ms\n", POLL_MS);
		return -1;
	}
	return wc.status;
}

static enum ibv_qp_state qp_state(struct ibv_qp *qp)
{
	struct ibv_qp_attr a;
	struct ibv_qp_init_attr ia;

	if (ibv_query_qp(qp, &a, IBV_QP_STATE, &ia))
		return (enum ibv_qp_state)-1;
	return a.qp_state;
}

static const char *state_name(enum ibv_qp_state s)
{
	static const char *const names[] = {
		[IBV_QPS_RESET] = "RESET", [IBV_QPS_INIT] = "INIT", [IBV_QPS_RTR] = "RTR",
		[IBV_QPS_RTS] = "RTS", [IBV_QPS_SQD] = "SQD", [IBV_QPS_SQE] = "SQE",
		[IBV_QPS_ERR] = "ERR",
	};

	if ((unsigned int)s < sizeof(names) / sizeof(names[0]) && names[s])
		return names[s];
	return "?";
}

static const char *wc_name(int status)
{
	return status < 0 ? "no completion" : ibv_wc_status_str((enum ibv_wc_status)status);
}

/* The ODP facts: checks 10 and 11. */
static void check_odp(const struct loop *l, void *buf, struct ibv_mr *plain_mr)
{
	int acc = IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE | IBV_ACCESS_REMOTE_READ;
	struct ibv_device_attr_ex ax;
	struct ibv_mr *odp;
	struct ibv_sge sge;
	bool caps;
	int r, e;

	memset(&ax, 0, sizeof(ax));
	r = ibv_query_device_ex(l->ctx, NULL, &ax);
	caps = !r && (ax.odp_caps.general_caps & IBV_ODP_SUPPORT);
	printf("# device ODP caps: %s general=0x%" PRIx64 " rc=0x%x\n",
	       r ? "query failed" : caps ? "advertised" : "none", ax.odp_caps.general_caps,
	       ax.odp_caps.per_transport_caps.rc_odp_caps);

	errno = 0;
	odp = ibv_reg_mr(l->pd, buf, MR_LEN, acc | IBV_ACCESS_ON_DEMAND);
	e = errno;
	if (!odp)
		tap(true, "fact: ibv_reg_mr(IBV_ACCESS_ON_DEMAND) fails: %s (%s)%s", errname(e),
		    strerror(e), caps ? " although the device advertises ODP" : "; no ODP here");
	else
		tap(caps, "fact: ibv_reg_mr(IBV_ACCESS_ON_DEMAND) works%s",
		    caps ? " and the device advertises ODP" :
			   " BUT the device advertises no ODP: cannot tell which is true");

	sge.addr = (uintptr_t)buf;
	sge.length = XFER_LEN;
	sge.lkey = odp ? odp->lkey : plain_mr->lkey;
	r = ibv_advise_mr(l->pd, IBV_ADVISE_MR_ADVICE_PREFETCH_WRITE, IBV_ADVISE_MR_FLAG_FLUSH,
			  &sge, 1);
	if (r)
		tap(true, "fact: ibv_advise_mr(PREFETCH_WRITE) on the %s MR fails: %s (%s)",
		    odp ? "ODP" : "plain", errname(r), strerror(r));
	else
		tap(caps, "fact: ibv_advise_mr(PREFETCH_WRITE) on the %s MR works%s",
		    odp ? "ODP" : "plain",
		    caps ? "" : " BUT the device advertises no ODP: cannot tell which is true");
	if (odp)
		ibv_dereg_mr(odp);
}

int main(void)
{
	const char *want = getenv("RXE_DEV") ? getenv("RXE_DEV") : "rxe0";
	const char *gidx_env = getenv("RXE_GID_IDX");
	int acc = IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE | IBV_ACCESS_REMOTE_READ;
	struct ibv_qp_init_attr qa;
	struct ibv_port_attr port;
	struct ibv_device **list;
	struct ibv_mr *mr, *lmr;
	struct loop l;
	char *buf, *lbuf;
	int i, n, st, r;
	bool same;

	memset(&l, 0, sizeof(l));
	l.gidx = gidx_env ? atoi(gidx_env) : 1;
	printf("1..%d\n", PLAN);

	/* 1, 2: the device and its port */
	list = ibv_get_device_list(&n);
	for (i = 0; list && i < n; i++)
		if (!strcmp(ibv_get_device_name(list[i]), want))
			break;
	tap(list && i < n, "device %s is present (%d RDMA device(s))", want, list ? n : 0);
	if (!list || i == n)
		bail("no device");
	l.ctx = ibv_open_device(list[i]);
	if (!l.ctx)
		bail("ibv_open_device failed");
	r = ibv_query_port(l.ctx, 1, &port);
	tap(!r && port.state == IBV_PORT_ACTIVE, "%s port 1 is ACTIVE (state %s, active_mtu %d)",
	    want, r ? "unknown" : ibv_port_state_str(port.state), r ? 0 : 128 << port.active_mtu);
	if (r || port.state != IBV_PORT_ACTIVE)
		bail("port not active");

	/* 3: a buffer registered at a chosen IOVA, and a plain one on the local side */
	l.pd = ibv_alloc_pd(l.ctx);
	buf = aligned_alloc(4096, MR_LEN);
	lbuf = aligned_alloc(4096, MR_LEN);
	if (!l.pd || !buf || !lbuf)
		bail("ibv_alloc_pd or allocation failed");
	memset(buf, 0, MR_LEN);
	memset(lbuf, 0, MR_LEN);
	errno = 0;
	mr = ibv_reg_mr_iova2(l.pd, buf, MR_LEN, MR_IOVA, acc);
	r = errno;
	tap(mr, "ibv_reg_mr_iova2(va %p, %d bytes) at iova 0x%llx%s%s", (void *)buf, MR_LEN,
	    MR_IOVA, mr ? "" : ": ", mr ? "" : strerror(r));
	lmr = ibv_reg_mr(l.pd, lbuf, MR_LEN, acc);
	if (!mr || !lmr)
		bail("memory registration failed");

	/* 4: two RC QPs connected to each other through our own RoCEv2 GID */
	l.cq_a = ibv_create_cq(l.ctx, 16, NULL, NULL, 0);
	l.cq_b = ibv_create_cq(l.ctx, 16, NULL, NULL, 0);
	if (!l.cq_a || !l.cq_b)
		bail("ibv_create_cq failed");
	memset(&qa, 0, sizeof(qa));
	qa.qp_type = IBV_QPT_RC;
	qa.cap.max_send_wr = qa.cap.max_recv_wr = 8;
	qa.cap.max_send_sge = qa.cap.max_recv_sge = 1;
	qa.send_cq = qa.recv_cq = l.cq_a;
	l.a = ibv_create_qp(l.pd, &qa);
	qa.send_cq = qa.recv_cq = l.cq_b;
	l.b = ibv_create_qp(l.pd, &qa);
	if (!l.a || !l.b)
		bail("ibv_create_qp failed");
	r = ibv_query_gid(l.ctx, 1, l.gidx, &l.gid);
	if (!r)
		r = connect_pair(&l);
	tap(!r, "loopback RC QPs %u <-> %u reach RTS (GID index %d)", l.a->qp_num, l.b->qp_num,
	    l.gidx);
	if (r)
		bail("cannot connect the QPs");

	/* 5: WRITE lands at buf + WRITE_OFF, and only there */
	for (i = 0; i < XFER_LEN; i++)
		lbuf[i] = (char)(i * 7 + 1);
	st = rdma_op(&l, IBV_WR_RDMA_WRITE, lmr, lbuf, MR_IOVA + WRITE_OFF, mr->rkey);
	same = !memcmp(buf + WRITE_OFF, lbuf, XFER_LEN);
	for (i = 0; i < WRITE_OFF && same; i++)
		same = !buf[i];
	tap(st == IBV_WC_SUCCESS && same, "RDMA WRITE to iova 0x%llx (rkey 0x%x): %s, bytes %s",
	    MR_IOVA + WRITE_OFF, mr->rkey, wc_name(st), same ? "at the right place" : "WRONG");

	/* 6: READ brings back what is at buf + READ_OFF */
	for (i = 0; i < XFER_LEN; i++)
		buf[READ_OFF + i] = (char)(i * 13 + 5);
	st = rdma_op(&l, IBV_WR_RDMA_READ, lmr, lbuf + XFER_LEN, MR_IOVA + READ_OFF, mr->rkey);
	same = !memcmp(lbuf + XFER_LEN, buf + READ_OFF, XFER_LEN);
	tap(st == IBV_WC_SUCCESS && same, "RDMA READ from iova 0x%llx: %s, bytes %s",
	    MR_IOVA + READ_OFF, wc_name(st), same ? "right" : "WRONG");

	/* 7, 8: a WRITE just past the MR is refused and kills the requester QP */
	st = rdma_op(&l, IBV_WR_RDMA_WRITE, lmr, lbuf, MR_IOVA + MR_LEN, mr->rkey);
	tap(st == IBV_WC_REM_ACCESS_ERR, "RDMA WRITE outside the MR (iova 0x%llx): %s",
	    MR_IOVA + MR_LEN, wc_name(st));
	tap(qp_state(l.a) == IBV_QPS_ERR,
	    "requester QP is %s after the access error (responder QP: %s): it needs recovery",
	    state_name(qp_state(l.a)), state_name(qp_state(l.b)));

	/* 9: recovery = drain, both QPs to RESET, reconnect; a WRITE works again */
	{
		struct ibv_qp_attr ra = { .qp_state = IBV_QPS_RESET };
		struct ibv_wc wc;

		while (ibv_poll_cq(l.cq_a, 1, &wc) > 0 || ibv_poll_cq(l.cq_b, 1, &wc) > 0)
			;
		r = ibv_modify_qp(l.a, &ra, IBV_QP_STATE) || ibv_modify_qp(l.b, &ra, IBV_QP_STATE);
		if (!r)
			r = connect_pair(&l);
		memset(buf + WRITE_OFF, 0, XFER_LEN);
		st = r ? -1 : rdma_op(&l, IBV_WR_RDMA_WRITE, lmr, lbuf, MR_IOVA + WRITE_OFF,
				      mr->rkey);
		same = !memcmp(buf + WRITE_OFF, lbuf, XFER_LEN);
		tap(!r && st == IBV_WC_SUCCESS && same,
		    "QP recovery (RESET -> RTS on both QPs): %s, WRITE after it: %s",
		    r ? "FAILED" : "done", wc_name(st));
	}

	/* 10, 11: ODP, reported */
	check_odp(&l, buf, mr);

	ibv_destroy_qp(l.a);
	ibv_destroy_qp(l.b);
	ibv_destroy_cq(l.cq_a);
	ibv_destroy_cq(l.cq_b);
	ibv_dereg_mr(lmr);
	ibv_dereg_mr(mr);
	ibv_dealloc_pd(l.pd);
	ibv_close_device(l.ctx);
	ibv_free_device_list(list);
	free(buf);
	free(lbuf);
	return tap_done("rxe_check", PLAN);
}
