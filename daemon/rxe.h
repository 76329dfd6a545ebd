/* SPDX-License-Identifier: MIT */
/*
 * rxe.h - a small verbs module: one RDMA device (soft-RoCE in practice), its
 * memory regions at chosen IOVAs, and device DMA done as real RDMA READ and
 * WRITE over a loopback RC QP pair that the daemon owns.
 *
 * It knows nothing of sessions or domains: the caller decides which memory is
 * registered at which IOVA, and which rkey an access uses. Everything here is
 * synchronous and meant for the daemon's single loop thread.
 */
#ifndef IOVAD_DAEMON_RXE_H
#define IOVAD_DAEMON_RXE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define RXE_BOUNCE_SIZE (256u * 1024u)  /* one RDMA op moves at most this */
#define RXE_POLL_TIMEOUT_MS 5000        /* a completion later than this: -ETIMEDOUT */
#define RXE_RKEY_INVALID 0xffffffffu    /* no MR has it: rxe answers a remote access error */

/* What the device may do to an MR's memory (a link's direction). */
#define RXE_ACC_READ  (1u << 0)         /* the device reads it: RDMA READ */
#define RXE_ACC_WRITE (1u << 1)         /* the device writes it: RDMA WRITE */

struct rxe_dev;
struct rxe_pdx;
struct rxe_mr;

/*
 * rxe_open - open RDMA device NAME (e.g. "rxe0"): context, PD, CQ, a bounce
 * buffer and a loopback RC QP pair connected through the port's RoCEv2 GID.
 * Return: 0 and *ret, or -errno with a message in err.
 */
int rxe_open(const char *name, struct rxe_dev **ret, char *err, size_t errlen);
/* Every MR of the device must be deregistered first. NULL-safe. */
void rxe_close(struct rxe_dev *d);
const char *rxe_name(const struct rxe_dev *d);

struct ibv_context;
struct ibv_pd;
/* The device's verbs context if it is librdmacm's (remote peers possible), else NULL. */
struct ibv_context *rxe_cm_context(const struct rxe_dev *d);
/*
 * Protection domains. An MR is reached only through a QP of its own PD: a
 * remote peer's QP in one session's PD cannot touch another session's MRs,
 * whatever rkey it tries. So each session has a PD of its own on the device
 * (rxe_pdx_new), with a loopback QP pair through which the daemon does that
 * session's device DMA, and the device has one more for itself
 * (rxe_default_pdx). Every MR of a PD must be deregistered, and every peer
 * QP in it destroyed, before rxe_pdx_free.
 * Return: 0 and *ret, or -errno.
 */
int rxe_pdx_new(struct rxe_dev *d, struct rxe_pdx **ret);
void rxe_pdx_free(struct rxe_pdx *x); /* NULL-safe */
struct rxe_pdx *rxe_default_pdx(struct rxe_dev *d);
/* The verbs PD: remote peers' QPs are created in it. */
struct ibv_pd *rxe_pdx_pd(const struct rxe_pdx *x);

/*
 * rxe_mr_reg - register [va, va + len) so that RDMA reaches it at
 * [iova, iova + len), with the remote access ACC (RXE_ACC_*).
 * Return: 0 and *ret, or -errno (-EINVAL, -ENOMEM, or what the kernel said).
 */
int rxe_mr_reg(struct rxe_pdx *x, void *va, size_t len, uint64_t iova, unsigned int acc,
	       struct rxe_mr **ret);
uint32_t rxe_mr_rkey(const struct rxe_mr *mr);

/*
 * ODP MRs are off until rxe_odp_enable, which needs a device that advertises
 * ODP that remote READ and WRITE can fault in (rxe: Linux 6.15+), and an ODP
 * MR that passes a check: bytes sent through it land where they were sent and
 * come back. On Debian's 6.18.15 and 7.3.4 the check fails, and can oops the
 * kernel's rxe worker doing so: it is for kernels known to be fixed.
 * Return: 0; -EOPNOTSUPP (no ODP); -EIO (the check failed; rxe_odp_advertised
 * says why).
 */
int rxe_odp_enable(struct rxe_dev *d);
/* Whether ODP MRs are on (rxe_odp_enable succeeded). */
bool rxe_has_odp(const struct rxe_dev *d);
bool rxe_odp_advertised(const struct rxe_dev *d, const char **why);

/*
 * rxe_mr_reg_odp - rxe_mr_reg as an ODP MR (IBV_ACCESS_ON_DEMAND): nothing is
 * pinned, the device faults pages in on access through the kernel (hmm),
 * and a change of the mapping under va (munmap, MADV_DONTNEED, a hole
 * punched in the file) invalidates them through the MMU notifier. The MR
 * must be deregistered before [va, va + len) is unmapped: an ODP MR
 * follows the address, and would fault in whatever is mapped there next.
 * Return: 0 and *ret, -EOPNOTSUPP without ODP, -EINVAL, -errno.
 */
int rxe_mr_reg_odp(struct rxe_pdx *x, void *va, size_t len, uint64_t iova, unsigned int acc,
		   struct rxe_mr **ret);

/*
 * rxe_mr_prefetch - fault [iova, iova + len) of ODP MR mr in now
 * (ibv_advise_mr PREFETCH or PREFETCH_WRITE, synchronous), so that the
 * device's next access does not fault. Where the provider has no
 * advise_mr, the device reads the range once instead.
 * Return: 0 or -errno.
 */
int rxe_mr_prefetch(struct rxe_pdx *x, const struct rxe_mr *mr, uint64_t iova, size_t len,
		    bool write);
/* false once ibv_advise_mr said EOPNOTSUPP (prefetches are reads through the MR since). */
bool rxe_advise_works(const struct rxe_dev *d);
/* NULL-safe. */
void rxe_mr_dereg(struct rxe_mr *mr);

/*
 * rxe_dma - move len bytes between buf and (iova, rkey): WRITE copies buf to
 * the remote side (a device write to memory), otherwise buf receives what is
 * there (a device read). Done through the bounce buffer, RXE_BOUNCE_SIZE at a
 * time; on a failure part of a write may have landed.
 * Return: 0; -EFAULT when rxe refused the access (IBV_WC_REM_ACCESS_ERR, the
 * QPs recovered since); -ETIMEDOUT when no completion came; -EIO otherwise.
 */
int rxe_dma(struct rxe_pdx *x, uint64_t iova, uint32_t rkey, void *buf, size_t len, bool write);

#endif /* IOVAD_DAEMON_RXE_H */
