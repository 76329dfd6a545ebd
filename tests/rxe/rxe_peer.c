// SPDX-License-Identifier: MIT
/*
 * rxe_peer ADDR PORT TOKEN IOVA RKEY LEN SEED - a remote RDMA peer of iovad's rdma_listen,
 * inside the rxe guest: connect with rdma_cm presenting TOKEN (a session's peer token, 32
 * hex digits, as struct proto_peer_hello in the connect's private data; "-" for none),
 * RDMA WRITE LEN bytes of a pattern (byte i is i * 13 + SEED) at (IOVA, RKEY), READ them
 * back and compare. The client that handed out (IOVA, RKEY, TOKEN) then checks the bytes
 * in its own mapping (rxe_client).
 *
 * Exit status: 0 written and read back exactly; 3 the daemon's side refused the access
 * with a remote access error (after which this waits for the daemon to drop the
 * connection, so that its fault is counted before the caller looks); 4 read back other
 * bytes; 6 the daemon rejected the connect (no live session's token); 1 anything else (a
 * message on stderr). Only argv: run by rxe_client.
 *
 * With RXE_PEER_HOLD=SECONDS in the environment it then stays connected until the daemon
 * goes away (0: the daemon's side disconnected; 5: it did not within SECONDS): the
 * SIGKILL test of daemon_test.sh.
 */
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <infiniband/verbs.h>
#include <rdma/rdma_cma.h>

#include "proto.h"

#define TIMEOUT_MS 5000

static struct rdma_event_channel *ch;

static enum rdma_cm_event_type last_event;

/* The next CM event, which must be want. Return: 0, or -1 with a message. */
static int wait_event(enum rdma_cm_event_type want, int timeout_ms)
{
	struct pollfd pfd = { .fd = ch->fd, .events = POLLIN };
	struct rdma_cm_event *ev;
	enum rdma_cm_event_type got;

	if (poll(&pfd, 1, timeout_ms) != 1) {
		fprintf(stderr, "rxe_peer: no %s within %d ms\n", rdma_event_str(want), timeout_ms);
		return -1;
	}
	if (rdma_get_cm_event(ch, &ev)) {
		fprintf(stderr, "rxe_peer: rdma_get_cm_event: %s\n", strerror(errno));
		return -1;
	}
	got = last_event = ev->event;
	rdma_ack_cm_event(ev);
	if (got != want) {
		fprintf(stderr, "rxe_peer: %s, expected %s\n", rdma_event_str(got),
			rdma_event_str(want));
		return -1;
	}
	return 0;
}

/* One signaled RDMA op between buf and (iova, rkey). Return: the completion's status. */
static int rdma_op(struct rdma_cm_id *id, struct ibv_cq *cq, struct ibv_mr *mr, void *buf,
		   uint32_t len, uint64_t iova, uint32_t rkey, bool write)
{
	struct ibv_sge sge = { .addr = (uintptr_t)buf, .length = len, .lkey = mr->lkey };
	struct ibv_send_wr wr = { 0 }, *bad;
	struct ibv_wc wc;
	int n;

	wr.opcode = write ? IBV_WR_RDMA_WRITE : IBV_WR_RDMA_READ;
	wr.sg_list = &sge;
	wr.num_sge = 1;
	wr.send_flags = IBV_SEND_SIGNALED;
	wr.wr.rdma.remote_addr = iova;
	wr.wr.rdma.rkey = rkey;
	if (ibv_post_send(id->qp, &wr, &bad)) {
		fprintf(stderr, "rxe_peer: ibv_post_send: %s\n", strerror(errno));
		return IBV_WC_GENERAL_ERR;
	}
	/* rxe completes within milliseconds; the retry timeout bounds a lost peer. */
	while ((n = ibv_poll_cq(cq, 1, &wc)) == 0)
		;
	return n < 0 ? IBV_WC_GENERAL_ERR : (int)wc.status;
}

int main(int argc, char **argv)
{
	struct rdma_conn_param cp = { .responder_resources = 4, .initiator_depth = 4,
				      .retry_count = 7, .rnr_retry_count = 7 };
	struct rdma_addrinfo hints = { .ai_port_space = RDMA_PS_TCP }, *ai = NULL;
	struct ibv_qp_init_attr qa = { 0 };
	struct rdma_cm_id *id = NULL;
	struct ibv_pd *pd = NULL;
	struct ibv_cq *cq = NULL;
	struct ibv_mr *mr = NULL;
	uint8_t *src, *dst, hello[sizeof(struct proto_peer_hello)];
	uint64_t iova;
	uint32_t rkey, len, seed;
	int st, rc = 1;

	if (argc != 8) {
		fprintf(stderr, "usage: rxe_peer ADDR PORT TOKEN IOVA RKEY LEN SEED\n");
		return 2;
	}
	if (strcmp(argv[3], "-")) {
		struct proto_peer_hello h = { .magic = PROTO_PEER_MAGIC };

		for (size_t i = 0; i < sizeof(h.token); i++) {
			unsigned int b;

			if (sscanf(argv[3] + 2 * i, "%2x", &b) != 1) {
				fprintf(stderr, "rxe_peer: TOKEN must be 32 hex digits\n");
				return 2;
			}
			h.token[i] = (uint8_t)b;
		}
		memcpy(hello, &h, sizeof(h));
		cp.private_data = hello;
		cp.private_data_len = sizeof(h);
	}
	iova = strtoull(argv[4], NULL, 0);
	rkey = (uint32_t)strtoul(argv[5], NULL, 0);
	len = (uint32_t)strtoul(argv[6], NULL, 0);
	seed = (uint32_t)strtoul(argv[7], NULL, 0);
	src = calloc(2, len ? len : 1);
	if (!src || !len)
		return 2;
	dst = src + len;
	for (uint32_t i = 0; i < len; i++)
		src[i] = (uint8_t)(i * 13 + seed);

	ch = rdma_create_event_channel();
	if (!ch || rdma_create_id(ch, &id, NULL, RDMA_PS_TCP) ||
	    rdma_getaddrinfo(argv[1], argv[2], &hints, &ai)) {
		fprintf(stderr, "rxe_peer: rdma_cm setup for %s:%s: %s\n", argv[1], argv[2],
			strerror(errno));
		goto out;
	}
	if (rdma_resolve_addr(id, NULL, ai->ai_dst_addr, TIMEOUT_MS) ||
	    wait_event(RDMA_CM_EVENT_ADDR_RESOLVED, TIMEOUT_MS) ||
	    rdma_resolve_route(id, TIMEOUT_MS) ||
	    wait_event(RDMA_CM_EVENT_ROUTE_RESOLVED, TIMEOUT_MS))
		goto out;
	pd = ibv_alloc_pd(id->verbs);
	cq = pd ? ibv_create_cq(id->verbs, 4, NULL, NULL, 0) : NULL;
	mr = cq ? ibv_reg_mr(pd, src, 2 * (size_t)len, IBV_ACCESS_LOCAL_WRITE) : NULL;
	qa.qp_type = IBV_QPT_RC;
	qa.send_cq = qa.recv_cq = cq;
	qa.cap.max_send_wr = qa.cap.max_recv_wr = 2;
	qa.cap.max_send_sge = qa.cap.max_recv_sge = 1;
	if (!mr || rdma_create_qp(id, pd, &qa)) {
		fprintf(stderr, "rxe_peer: verbs setup: %s\n", strerror(errno));
		goto out;
	}
	if (rdma_connect(id, &cp) || wait_event(RDMA_CM_EVENT_ESTABLISHED, TIMEOUT_MS)) {
		if (last_event == RDMA_CM_EVENT_REJECTED) {
			printf("# rxe_peer: the daemon rejected the connect\n");
			rc = 6;
		} else {
			fprintf(stderr, "rxe_peer: connect to %s:%s failed\n", argv[1], argv[2]);
		}
		goto out;
	}
	st = rdma_op(id, cq, mr, src, len, iova, rkey, true);
	if (st == IBV_WC_SUCCESS)
		st = rdma_op(id, cq, mr, dst, len, iova, rkey, false);
	if (st == IBV_WC_REM_ACCESS_ERR) {
		printf("# rxe_peer: %#" PRIx64 " rkey %#x: %s\n", iova, rkey,
		       ibv_wc_status_str((enum ibv_wc_status)st));
		/* The daemon drops a peer whose access failed: its fault is counted by then. */
		rc = wait_event(RDMA_CM_EVENT_DISCONNECTED, TIMEOUT_MS) ? 1 : 3;
		goto out;
	}
	if (st != IBV_WC_SUCCESS) {
		fprintf(stderr, "rxe_peer: %s\n", ibv_wc_status_str((enum ibv_wc_status)st));
		goto out;
	}
	rc = memcmp(src, dst, len) ? 4 : 0;
	if (!rc && getenv("RXE_PEER_HOLD")) {
		int hold_ms = atoi(getenv("RXE_PEER_HOLD")) * 1000;

		printf("# rxe_peer: holding the connection\n");
		fflush(stdout);
		/* A dead daemon's ids are destroyed by the kernel: it sends us a DREQ. */
		rc = wait_event(RDMA_CM_EVENT_DISCONNECTED, hold_ms) ? 5 : 0;
		goto out;
	}
	rdma_disconnect(id);
	(void)wait_event(RDMA_CM_EVENT_DISCONNECTED, TIMEOUT_MS);
out:
	if (id && id->qp)
		rdma_destroy_qp(id);
	if (mr)
		ibv_dereg_mr(mr);
	if (cq)
		ibv_destroy_cq(cq);
	if (pd)
		ibv_dealloc_pd(pd);
	if (ai)
		rdma_freeaddrinfo(ai);
	if (id)
		rdma_destroy_id(id);
	if (ch)
		rdma_destroy_event_channel(ch);
	free(src);
	return rc;
}
