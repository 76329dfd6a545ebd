// SPDX-License-Identifier: MIT
/*
 * rxe.c - device DMA as real RDMA on a verbs device (soft-RoCE), see rxe.h.
 *
 * The daemon plays both ends of an RC connection per PD (struct rxe_pdx: the
 * device's own, and one per session): QP "req" posts RDMA READs and WRITEs,
 * QP "resp" is its peer and owns no work requests, so the only completions
 * on the device's one CQ are the req QPs', one at a time. A remote access
 * error puts both
 * QPs in ERR (measured by tests/rxe/rxe_check.c); they are recovered at once,
 * RESET -> INIT -> RTR -> RTS, so the next access works.
 *
 * Facts about rxe on Linux 6.1 that shape this (PLATFORM-NOTES.md): no ODP,
 * ibv_reg_mr_iova2 works, and a PD cannot be shared across processes, so the
 * MRs and the QPs must live in one process: this one.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include <infiniband/verbs.h>
#include <rdma/rdma_cma.h>

#include "rxe.h"

#define SPIN_POLLS 20000        /* busy polls before sleeping between polls */
#define SLEEP_NS 50000          /* then poll every 50 us */

struct rxe_dev {
	char name[IBV_SYSFS_NAME_MAX];
	struct ibv_context *ctx;
	bool cm_ctx;            /* ctx is librdmacm's: not ours to close, and peers may use it */
	struct ibv_cq *cq;	/* every loopback pair's: one access is in flight at a time */
	void *bounce;		/* registered in every PD, one MR each */
	struct rxe_pdx *def;	/* the device's own PD (odp_check, rxe_default_pdx) */
	union ibv_gid gid;
	int gidx;
	enum ibv_mtu mtu;
	bool odp_advertised; /* the device says remote READ and WRITE can fault (rxe: 6.15+) */
	bool odp;	     /* ...and its ODP MRs passed odp_check: they are used */
	bool advise_works;   /* ibv_advise_mr did not say EOPNOTSUPP (yet) */
	char odp_why[160];   /* why advertised ODP is not used */
};

/* A PD and the loopback pair through which the daemon reaches its MRs (rxe.h). */
struct rxe_pdx {
	struct rxe_dev *d;
	struct ibv_pd *pd;
	struct ibv_mr *bounce_mr;
	struct ibv_qp *req, *resp;
};

struct rxe_mr {
	struct ibv_mr *mr;
};

/*
 * The GID to talk to ourselves through: RoCEv2 (UDP, routable) and carrying
 * an IPv4 address (::ffff:a.b.c.d), as rxe creates one for the netdev's
 * address. An IPv6 link-local one would do too but may come later (DAD).
 */
static int find_gid(struct rxe_dev *d, int tbl_len)
{
	int fallback = -1;

	for (int i = 0; i < tbl_len; i++) {
		struct ibv_gid_entry e;

		if (ibv_query_gid_ex(d->ctx, 1, (uint32_t)i, &e, 0))
			continue;
		if (e.gid_type != IBV_GID_TYPE_ROCE_V2)
			continue;
		if (!memcmp(e.gid.raw, "\0\0\0\0\0\0\0\0\0\0\xff\xff", 12)) {
			d->gid = e.gid;
			return i;
		}
		if (fallback < 0) {
			d->gid = e.gid;
			fallback = i;
		}
	}
	return fallback;
}

/* One QP from RESET to RTS, connected to QP number dqpn at our own GID. */
static int qp_to_rts(struct rxe_dev *d, struct ibv_qp *qp, uint32_t dqpn)
{
	struct ibv_qp_attr a;
	int r;

	memset(&a, 0, sizeof(a));
	a.qp_state = IBV_QPS_INIT;
	a.port_num = 1;
	a.qp_access_flags = IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE |
			    IBV_ACCESS_REMOTE_READ;
	r = ibv_modify_qp(qp, &a, IBV_QP_STATE | IBV_QP_PKEY_INDEX | IBV_QP_PORT |
			  IBV_QP_ACCESS_FLAGS);
	if (r)
		return -r;

	memset(&a, 0, sizeof(a));
	a.qp_state = IBV_QPS_RTR;
	a.path_mtu = d->mtu;
	a.dest_qp_num = dqpn;
	a.max_dest_rd_atomic = 1;
	a.min_rnr_timer = 12;
	a.ah_attr.is_global = 1;
	a.ah_attr.grh.dgid = d->gid;
	a.ah_attr.grh.sgid_index = (uint8_t)d->gidx;
	a.ah_attr.grh.hop_limit = 1;
	a.ah_attr.port_num = 1;
	r = ibv_modify_qp(qp, &a, IBV_QP_STATE | IBV_QP_AV | IBV_QP_PATH_MTU | IBV_QP_DEST_QPN |
			  IBV_QP_RQ_PSN | IBV_QP_MAX_DEST_RD_ATOMIC | IBV_QP_MIN_RNR_TIMER);
	if (r)
		return -r;

	memset(&a, 0, sizeof(a));
	a.qp_state = IBV_QPS_RTS;
	a.timeout = 14;
	a.retry_cnt = 7;
	a.rnr_retry = 7;
	a.max_rd_atomic = 1;
	r = ibv_modify_qp(qp, &a, IBV_QP_STATE | IBV_QP_TIMEOUT | IBV_QP_RETRY_CNT |
			  IBV_QP_RNR_RETRY | IBV_QP_SQ_PSN | IBV_QP_MAX_QP_RD_ATOMIC);
	return -r;
}

/*
 * Both QPs to RESET (which drops whatever they held), drain the CQ of the
 * flushed completions, and reconnect. Used after an error completion, which
 * leaves both in ERR, and after a timeout, so a late completion cannot land
 * in the bounce buffer under the next access.
 */
static int recover(struct rxe_pdx *x)
{
	struct ibv_qp_attr a = { .qp_state = IBV_QPS_RESET };
	struct ibv_wc wc;
	int r;

	r = ibv_modify_qp(x->req, &a, IBV_QP_STATE);
	if (!r)
		r = ibv_modify_qp(x->resp, &a, IBV_QP_STATE);
	if (r)
		return -r;
	while (ibv_poll_cq(x->d->cq, 1, &wc) > 0)
		;
	r = qp_to_rts(x->d, x->req, x->resp->qp_num);
	return r ? r : qp_to_rts(x->d, x->resp, x->req->qp_num);
}

static uint64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/*
 * Wait for the one outstanding completion. rxe completes in a kernel thread
 * (or inline), usually within microseconds: spin first, as a sleep costs a
 * wake-up; then poll with short sleeps so a stuck op cannot spin a core.
 * Return: 0 and *wc; -ETIMEDOUT; -EIO if polling failed.
 */
static int wait_one(struct rxe_dev *d, struct ibv_wc *wc)
{
	const struct timespec nap = { .tv_nsec = SLEEP_NS };
	uint64_t end = 0;
	int n;

	for (unsigned int spins = 0;; spins++) {
		n = ibv_poll_cq(d->cq, 1, wc);
		if (n)
			return n == 1 ? 0 : -EIO;
		if (spins < SPIN_POLLS)
			continue;
		if (!end)
			end = mono_ns() + (uint64_t)RXE_POLL_TIMEOUT_MS * 1000000u;
		else if (mono_ns() > end)
			return -ETIMEDOUT;
		nanosleep(&nap, NULL);
	}
}

static int rdma_one(struct rxe_pdx *x, uint64_t iova, uint32_t rkey, uint32_t len, bool write);
static int mr_reg(struct rxe_pdx *x, void *va, size_t len, uint64_t iova, unsigned int acc,
		  unsigned int extra, struct rxe_mr **ret);

/*
 * Before its ODP MRs carry anything, the device must move bytes through one
 * correctly: over three fresh pages, an RDMA WRITE of ODP_CHECK_LEN bytes at
 * ODP_CHECK_OFF (unaligned, crossing a page, several packets at any MTU
 * below 4096), at an IOVA that is not the buffer's address (iovad's regions
 * never are), must land exactly there and nowhere else, and an RDMA READ
 * must bring them back. Debian's 6.18.15 and 7.3.4 kernels advertise ODP on
 * rxe and fail this (measured with tests/rxe): at an IOVA other than the
 * address the access gets a remote access error, or oopses the kernel's rxe
 * worker (an out-of-bounds read in rxe_odp_map_range_and_lock: seen in one
 * boot of four), and at IOVA = address every packet of a WRITE lands at the
 * start of its page. That is why it runs only on request (rxe_odp_enable,
 * [device] odp = mr), never by default.
 * Return: whether ODP MRs may be used; why not in why.
 */
#define ODP_CHECK_IOVA 0x10000000ull
#define ODP_CHECK_OFF 100u
#define ODP_CHECK_LEN 5000u

static bool odp_check(struct rxe_dev *d, char *why, size_t whylen)
{
	const size_t len = 3 * 4096;
	uint8_t *buf = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	struct rxe_mr *mr = NULL;
	bool ok = false;
	int r;

	if (buf == MAP_FAILED) {
		snprintf(why, whylen, "cannot map the check's buffer: %s", strerror(errno));
		return false;
	}
	r = mr_reg(d->def, buf, len, ODP_CHECK_IOVA, RXE_ACC_READ | RXE_ACC_WRITE,
		   IBV_ACCESS_ON_DEMAND, &mr);
	if (r) {
		snprintf(why, whylen, "an ODP registration failed: %s", strerror(-r));
		goto out;
	}
	for (uint32_t i = 0; i < ODP_CHECK_LEN; i++)
		((uint8_t *)d->bounce)[i] = (uint8_t)(i * 13 + 7);
	r = rdma_one(d->def, ODP_CHECK_IOVA + ODP_CHECK_OFF, rxe_mr_rkey(mr), ODP_CHECK_LEN, true);
	if (r) {
		snprintf(why, whylen,
			 "an RDMA WRITE through an ODP MR at an IOVA other than its "
			 "address failed: %s",
			 r == -EFAULT ? "remote access error" : strerror(-r));
		goto out;
	}
	for (uint32_t i = 0; i < len; i++) {
		uint8_t want = i >= ODP_CHECK_OFF && i < ODP_CHECK_OFF + ODP_CHECK_LEN
				       ? (uint8_t)((i - ODP_CHECK_OFF) * 13 + 7)
				       : 0;

		if (buf[i] != want) {
			snprintf(why, whylen,
				 "an RDMA WRITE of %u bytes at offset %u of an ODP MR left byte "
				 "%" PRIu32 " %#x instead of %#x",
				 ODP_CHECK_LEN, ODP_CHECK_OFF, i, buf[i], want);
			goto out;
		}
	}
	memset(d->bounce, 0, ODP_CHECK_LEN);
	r = rdma_one(d->def, ODP_CHECK_IOVA + ODP_CHECK_OFF, rxe_mr_rkey(mr), ODP_CHECK_LEN, false);
	if (r || memcmp(d->bounce, buf + ODP_CHECK_OFF, ODP_CHECK_LEN)) {
		snprintf(why, whylen, "an RDMA READ through an ODP MR %s",
			 r ? strerror(-r) : "brought back other bytes");
		goto out;
	}
	ok = true;
out:
	rxe_mr_dereg(mr);
	munmap(buf, len);
	memset(d->bounce, 0, ODP_CHECK_LEN);
	return ok;
}

int rxe_pdx_new(struct rxe_dev *d, struct rxe_pdx **ret)
{
	struct ibv_qp_init_attr qa;
	struct rxe_pdx *x;
	int r;

	*ret = NULL;
	x = calloc(1, sizeof(*x));
	if (!x)
		return -ENOMEM;
	x->d = d;
	errno = 0;
	x->pd = ibv_alloc_pd(d->ctx);
	if (x->pd)
		x->bounce_mr =
			ibv_reg_mr(x->pd, d->bounce, RXE_BOUNCE_SIZE, IBV_ACCESS_LOCAL_WRITE);
	if (!x->bounce_mr) {
		r = errno ? -errno : -ENOMEM;
		goto fail;
	}
	memset(&qa, 0, sizeof(qa));
	qa.qp_type = IBV_QPT_RC;
	qa.cap.max_send_wr = qa.cap.max_recv_wr = 4;
	qa.cap.max_send_sge = qa.cap.max_recv_sge = 1;
	qa.send_cq = qa.recv_cq = d->cq;
	errno = 0;
	x->req = ibv_create_qp(x->pd, &qa);
	x->resp = x->req ? ibv_create_qp(x->pd, &qa) : NULL;
	if (!x->req || !x->resp) {
		r = errno ? -errno : -ENOMEM;
		goto fail;
	}
	r = qp_to_rts(d, x->req, x->resp->qp_num);
	if (!r)
		r = qp_to_rts(d, x->resp, x->req->qp_num);
	if (r)
		goto fail;
	*ret = x;
	return 0;
fail:
	rxe_pdx_free(x);
	return r;
}

void rxe_pdx_free(struct rxe_pdx *x)
{
	if (!x)
		return;
	if (x->req)
		ibv_destroy_qp(x->req);
	if (x->resp)
		ibv_destroy_qp(x->resp);
	if (x->bounce_mr)
		ibv_dereg_mr(x->bounce_mr);
	if (x->pd)
		ibv_dealloc_pd(x->pd);
	free(x);
}

struct rxe_pdx *rxe_default_pdx(struct rxe_dev *d)
{
	return d->def;
}

struct ibv_pd *rxe_pdx_pd(const struct rxe_pdx *x)
{
	return x->pd;
}

int rxe_open(const char *name, struct rxe_dev **ret, char *err, size_t errlen)
{
	struct ibv_port_attr port;
	struct ibv_device **list;
	struct ibv_device *dev = NULL;
	struct rxe_dev *d;
	int n = 0, r;

	*ret = NULL;
	d = calloc(1, sizeof(*d));
	if (!d) {
		snprintf(err, errlen, "rdma device %s: out of memory", name);
		return -ENOMEM;
	}
	snprintf(d->name, sizeof(d->name), "%s", name);
	/*
	 * A QP that rdma_cm accepts lives in the context librdmacm opened for the
	 * device (cm_id->verbs), and a PD serves only QPs of its own context; so
	 * that remote peers' QPs share the PD of the MRs, take librdmacm's context.
	 * Without rdma_cm (no rdma_ucm module) open our own: DMA works, peers not.
	 */
	{
		struct ibv_context **cms = rdma_get_devices(&n);

		for (int i = 0; cms && i < n && !d->ctx; i++)
			if (!strcmp(ibv_get_device_name(cms[i]->device), name))
				d->ctx = cms[i];
		if (cms)
			rdma_free_devices(cms);
		d->cm_ctx = d->ctx != NULL;
		n = 0;
	}
	errno = 0;
	list = d->ctx ? NULL : ibv_get_device_list(&n);
	if (d->ctx)
		goto opened;
	if (!list) {
		r = errno ? -errno : -ENODEV;
		snprintf(err, errlen, "rdma device %s: cannot list RDMA devices: %s", name,
			 strerror(-r));
		goto fail;
	}
	for (int i = 0; i < n && !dev; i++)
		if (!strcmp(ibv_get_device_name(list[i]), name))
			dev = list[i];
	if (!dev) {
		r = -ENODEV;
		snprintf(err, errlen, "rdma device %s: not found (%d RDMA device(s))", name, n);
		ibv_free_device_list(list);
		goto fail;
	}
	errno = 0;
	d->ctx = ibv_open_device(dev);
	ibv_free_device_list(list);
	if (!d->ctx) {
		r = errno ? -errno : -ENODEV;
		snprintf(err, errlen, "rdma device %s: ibv_open_device: %s", name, strerror(-r));
		goto fail;
	}
opened:
	r = -ibv_query_port(d->ctx, 1, &port);
	if (r || port.state != IBV_PORT_ACTIVE) {
		r = r ? r : -ENETDOWN;
		snprintf(err, errlen, "rdma device %s: port 1 is not active (%s)", name,
			 r == -ENETDOWN ? ibv_port_state_str(port.state) : strerror(-r));
		goto fail;
	}
	d->mtu = port.active_mtu;
	/*
	 * ODP: rxe has it from Linux 6.15. A remote READ and WRITE must be able
	 * to fault (the RC responder's caps), as the daemon's own loopback QP
	 * and remote peers both reach the MRs that way.
	 */
	{
		struct ibv_device_attr_ex ax;
		const uint32_t need = IBV_ODP_SUPPORT_READ | IBV_ODP_SUPPORT_WRITE;

		memset(&ax, 0, sizeof(ax));
		if (!ibv_query_device_ex(d->ctx, NULL, &ax))
			d->odp_advertised =
				(ax.odp_caps.general_caps & IBV_ODP_SUPPORT) &&
				(ax.odp_caps.per_transport_caps.rc_odp_caps & need) == need;
		d->advise_works = true;
	}
	d->gidx = find_gid(d, port.gid_tbl_len);
	if (d->gidx < 0) {
		r = -EADDRNOTAVAIL;
		snprintf(err, errlen, "rdma device %s: no RoCEv2 GID on port 1", name);
		goto fail;
	}

	errno = 0;
	d->cq = ibv_create_cq(d->ctx, 16, NULL, NULL, 0);
	if (!d->cq) {
		r = errno ? -errno : -ENOMEM;
		snprintf(err, errlen, "rdma device %s: cannot create a CQ: %s", name, strerror(-r));
		goto fail;
	}
	d->bounce = aligned_alloc(4096, RXE_BOUNCE_SIZE);
	if (!d->bounce) {
		r = -ENOMEM;
		snprintf(err, errlen, "rdma device %s: out of memory", name);
		goto fail;
	}
	memset(d->bounce, 0, RXE_BOUNCE_SIZE);
	r = rxe_pdx_new(d, &d->def);
	if (r) {
		snprintf(err, errlen,
			 "rdma device %s: cannot make a PD with its loopback QPs "
			 "(GID %d): %s",
			 name, d->gidx, strerror(-r));
		goto fail;
	}
	*ret = d;
	return 0;
fail:
	rxe_close(d);
	return r;
}

void rxe_close(struct rxe_dev *d)
{
	if (!d)
		return;
	rxe_pdx_free(d->def);
	if (d->cq)
		ibv_destroy_cq(d->cq);
	if (d->ctx && !d->cm_ctx)
		ibv_close_device(d->ctx);
	free(d->bounce);
	free(d);
}

const char *rxe_name(const struct rxe_dev *d)
{
	return d->name;
}

struct ibv_context *rxe_cm_context(const struct rxe_dev *d)
{
	return d->cm_ctx ? d->ctx : NULL;
}

/* Register [va, va + len) at iova with remote access acc, plus the verbs flags extra. */
static int mr_reg(struct rxe_pdx *x, void *va, size_t len, uint64_t iova, unsigned int acc,
		  unsigned int extra, struct rxe_mr **ret)
{
	unsigned int flags = IBV_ACCESS_LOCAL_WRITE | extra;
	struct rxe_mr *m;

	*ret = NULL;
	if (!len || (acc & ~(RXE_ACC_READ | RXE_ACC_WRITE)))
		return -EINVAL;
	if (acc & RXE_ACC_READ)
		flags |= IBV_ACCESS_REMOTE_READ;
	if (acc & RXE_ACC_WRITE)
		flags |= IBV_ACCESS_REMOTE_WRITE;
	m = malloc(sizeof(*m));
	if (!m)
		return -ENOMEM;
	errno = 0;
	m->mr = ibv_reg_mr_iova2(x->pd, va, len, iova, flags);
	if (!m->mr) {
		int r = errno ? -errno : -ENOMEM;

		free(m);
		return r;
	}
	*ret = m;
	return 0;
}

int rxe_mr_reg(struct rxe_pdx *x, void *va, size_t len, uint64_t iova, unsigned int acc,
	       struct rxe_mr **ret)
{
	return mr_reg(x, va, len, iova, acc, 0, ret);
}

bool rxe_has_odp(const struct rxe_dev *d)
{
	return d->odp;
}

int rxe_odp_enable(struct rxe_dev *d)
{
	if (d->odp)
		return 0;
	if (!d->odp_advertised) {
		snprintf(d->odp_why, sizeof(d->odp_why), "the device has no ODP");
		return -EOPNOTSUPP;
	}
	/* Trust, but check: an ODP MR that loses bytes must never carry a client's. */
	d->odp = odp_check(d, d->odp_why, sizeof(d->odp_why));
	return d->odp ? 0 : -EIO;
}

bool rxe_odp_advertised(const struct rxe_dev *d, const char **why)
{
	if (why)
		*why = d->odp_why;
	return d->odp_advertised;
}

int rxe_mr_reg_odp(struct rxe_pdx *x, void *va, size_t len, uint64_t iova, unsigned int acc,
		   struct rxe_mr **ret)
{
	*ret = NULL;
	if (!x->d->odp)
		return -EOPNOTSUPP;
	/* An ODP MR nobody may touch has no use: the device would only fault. */
	if (!acc)
		return -EINVAL;
	return mr_reg(x, va, len, iova, acc, IBV_ACCESS_ON_DEMAND, ret);
}

int rxe_mr_prefetch(struct rxe_pdx *x, const struct rxe_mr *mr, uint64_t iova, size_t len,
		    bool write)
{
	struct rxe_dev *d = x->d;
	struct ibv_sge sge = { .addr = iova, .length = 0, .lkey = mr->mr->lkey };
	int r;

	while (len && d->advise_works) {
		/* ibv_sge's length is 32 bits: at most 1 GiB per call. */
		sge.length = len < (1u << 30) ? (uint32_t)len : 1u << 30;
		errno = 0;
		r = ibv_advise_mr(x->pd,
				  write ? IBV_ADVISE_MR_ADVICE_PREFETCH_WRITE
					: IBV_ADVISE_MR_ADVICE_PREFETCH,
				  IBV_ADVISE_MR_FLAG_FLUSH, &sge, 1);
		if (r < 0)
			r = errno ? errno : EIO;
		if (r == EOPNOTSUPP) {
			d->advise_works = false;
			break;
		}
		if (r)
			return -r;
		sge.addr += sge.length;
		len -= sge.length;
	}
	/*
	 * A provider without advise_mr (rdma-core's rxe before it learnt it):
	 * the device touches the range itself, an RDMA READ through the MR,
	 * and the kernel faults it in as for any access (read-only where a
	 * write was advised: the first write faults once more).
	 */
	while (len) {
		uint32_t n = len < RXE_BOUNCE_SIZE ? (uint32_t)len : RXE_BOUNCE_SIZE;

		r = rdma_one(x, sge.addr, mr->mr->rkey, n, false);
		if (r)
			return r;
		sge.addr += n;
		len -= n;
	}
	return 0;
}

bool rxe_advise_works(const struct rxe_dev *d)
{
	return d->advise_works;
}

uint32_t rxe_mr_rkey(const struct rxe_mr *mr)
{
	return mr->mr->rkey;
}

void rxe_mr_dereg(struct rxe_mr *mr)
{
	if (!mr)
		return;
	/* Fails only on a busy MR (a bound MW) or a dead device: nothing to retry. */
	ibv_dereg_mr(mr->mr);
	free(mr);
}

/* One RDMA op of len <= RXE_BOUNCE_SIZE between the bounce buffer and (iova, rkey). */
static int rdma_one(struct rxe_pdx *x, uint64_t iova, uint32_t rkey, uint32_t len, bool write)
{
	struct ibv_sge sge = {
		.addr = (uintptr_t)x->d->bounce,
		.length = len,
		.lkey = x->bounce_mr->lkey,
	};
	struct ibv_send_wr wr, *bad;
	struct ibv_wc wc;
	int r;

	memset(&wr, 0, sizeof(wr));
	wr.opcode = write ? IBV_WR_RDMA_WRITE : IBV_WR_RDMA_READ;
	wr.sg_list = &sge;
	wr.num_sge = 1;
	wr.send_flags = IBV_SEND_SIGNALED;
	wr.wr.rdma.remote_addr = iova;
	wr.wr.rdma.rkey = rkey;
	r = ibv_post_send(x->req, &wr, &bad);
	if (r) {
		/* A QP left in ERR by something unexpected: one recovery, one retry. */
		if (recover(x) || ibv_post_send(x->req, &wr, &bad))
			return -EIO;
	}
	r = wait_one(x->d, &wc);
	if (r) {
		recover(x);
		return r;
	}
	if (wc.status == IBV_WC_SUCCESS)
		return 0;
	/* Any error completion leaves the QPs in ERR: recover before answering. */
	r = recover(x);
	if (wc.status == IBV_WC_REM_ACCESS_ERR)
		return r ? -EIO : -EFAULT;
	return -EIO;
}

int rxe_dma(struct rxe_pdx *x, uint64_t iova, uint32_t rkey, void *buf, size_t len, bool write)
{
	struct rxe_dev *d = x->d;
	uint8_t *p = buf;

	while (len) {
		uint32_t n = len < RXE_BOUNCE_SIZE ? (uint32_t)len : RXE_BOUNCE_SIZE;
		int r;

		if (write)
			memcpy(d->bounce, p, n);
		r = rdma_one(x, iova, rkey, n, write);
		if (r)
			return r;
		if (!write)
			memcpy(p, d->bounce, n);
		p += n;
		iova += n;
		len -= n;
	}
	return 0;
}
